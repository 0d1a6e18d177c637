//! The ECS operations. Reads use the published state; changes go through the writer.
//!
//! Decisions where ECS is silent or where one machine differs from AWS:
//! - Access keys act as the account's root principal; a root principal's account setting
//!   is the account default, as in ECS.
//! - A deleted cluster stays describable as `INACTIVE`; creating it again makes a fresh
//!   ACTIVE cluster. Only the capacity providers `FARGATE` and `FARGATE_SPOT` exist.
//! - `compatibilities` is computed: always `EC2`; `EXTERNAL` unless `awsvpc`; `FARGATE`
//!   when the definition passes Fargate's rules.
//! - An instance with no connected agent takes no new tasks (placement failure `AGENT`);
//!   its tasks stay as they are until the agent returns or it is deregistered. An instance
//!   whose agent has been away for `--lost-instance-grace` (5 min) is lost: its service
//!   tasks are recorded STOPPED with a reason saying so and replaced elsewhere (ECS waits
//!   forever); standalone tasks are never touched.
//! - Tasks start in `PENDING` (bridge, host and none networking need no provisioning).
//! - STOPPED tasks are forgotten after `--stopped-task-retention` (1 h, as ECS) by
//!   [`reaper`], never while a container may still run or its service still tracks them.
//! - Services (the rules themselves are in `services::controller`'s docs): a task without
//!   container health checks is healthy once RUNNING (ECS waits 40 s without a load
//!   balancer); every task of a deployment that stops on its own counts toward the
//!   circuit breaker, whose threshold is half the desired count rounded up, within
//!   3..200; a rollback makes the last COMPLETED deployment PRIMARY again, keeping its
//!   tasks; the throttle applies to the primary deployment's tasks that never reached
//!   RUNNING, as in ECS, and to those that stopped on their own within 10 s of starting
//!   (no delay for the first two, then 5 s doubling up to 27 min; ended by a task healthy
//!   for 10 s or a new task definition); an event identical to the newest is not repeated
//!   within six hours; `maximumPercent` counts
//!   every task not yet STOPPED, is at least 100, and is exactly 100 for DAEMON; scale-in
//!   stops tasks that are not yet healthy first; problem events are not repeated within
//!   six hours unless resolved; DeleteService of a DAEMON service needs no `force`, and a
//!   deleted service is DRAINING until its tasks stopped, then INACTIVE. A StopTask of a
//!   service task behind a load balancer stops it at once (not drained).

pub mod attributes;
pub(crate) mod awsvpc;
pub mod clusters;
pub(crate) mod fargate;
pub mod instances;
pub(crate) mod launch;
#[cfg(test)]
mod mirror_tests;
pub(crate) mod placement;
pub mod reaper;
pub mod run_task;
pub mod services;
pub mod settings;
pub mod tagging;
pub mod task_definitions;
pub(crate) mod task_roles;
pub mod tasks;

use crate::ops::Ops;
use crate::ControlPlane;

/// The marker of ECS's operations: `cp.ecs().create_cluster(...)`.
#[derive(Debug)]
pub enum Ecs {}

impl ControlPlane {
    /// The ECS operations.
    pub fn ecs(&self) -> Ops<'_, Ecs> {
        Ops::new(self)
    }
}

/// One entry of a `failures` list: what was asked for and why it could not be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub arn: String,
    pub reason: String,
    pub detail: Option<String>,
}
