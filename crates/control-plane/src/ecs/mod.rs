//! The ECS operations. Reads use the published state; changes go through the writer.

pub mod attributes;
pub(crate) mod awsvpc;
pub mod clusters;
pub(crate) mod fargate;
pub mod instances;
pub(crate) mod launch;
pub mod reaper;
pub mod run_task;
pub mod services;
pub mod settings;
pub mod tagging;
pub mod task_definitions;
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
