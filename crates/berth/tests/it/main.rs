//! Integration tests: a real `berth` process per test, driven by the official AWS SDK for
//! Rust, the `aws` CLI, or raw HTTP where a test must send what no SDK would.

mod accepted_input;
mod attributes;
mod awslogs;
mod awsvpc;
mod bad_input;
mod clusters;
mod connections;
mod datadir_lock;
mod durability;
mod ec2;
mod ecr;
mod ecr_images;
mod ecr_lifecycle;
mod ecr_policies;
mod ecr_scan;
mod elb;
mod events;
mod fargate;
mod hosts;
mod iam;
mod instances;
mod logs;
mod logs_api;
mod logs_tail;
mod postgres;
mod registry_faults;
mod registry_s3;
mod secrets;
mod security;
mod service_lb;
mod services;
mod settings;
mod shutdown;
mod skew;
mod ssm;
mod support;
mod tagging;
mod task_definitions;
mod task_roles;
mod task_secrets;
mod tasks;
mod wire_shapes;

use testkit::Berth;

/// Starts a fresh server for one test.
pub async fn berth() -> Berth {
    Berth::start(env!("CARGO_BIN_EXE_berth")).await
}
