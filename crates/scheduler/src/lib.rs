//! ECS task placement: given a snapshot of container instances and one task's needs, decide
//! where each copy of the task goes, exactly as Amazon ECS documents placement.
//!
//! Placement is a pure function of its inputs (the index a caller keeps only remembers
//! what follows from them). It does no I/O, reads no clock and owns no randomness: the
//! `random` strategy draws from the `Rng` the caller passes, so a seeded caller gets the
//! same plan every time and tests are exact. Nothing here knows the AWS
//! wire format; the control plane converts ECS shapes into [`Instance`], [`TaskNeeds`],
//! [`Constraint`] and [`Strategy`] at its edge, and turns a [`Plan`] back into tasks and
//! `failures`.
//!
//! Layering: `query` is the cluster query language (lexer, parser, evaluator); `rules`
//! turns ECS `placementConstraints` and `placementStrategy` entries into typed rules;
//! `place` runs the placement process and depends on both. Neither `query` nor `rules`
//! knows about placement. `index` is the [`Cluster`] a caller keeps between calls so that
//! `place` does not redo per-instance work (group counts, attribute values, verdicts of
//! constraints that look only at the instance).

mod error;
mod index;
mod place;
pub mod query;
mod rules;

use std::collections::{BTreeMap, BTreeSet};

pub use error::PlacementError;
pub use index::Cluster;
pub use place::place;
pub use query::{eval, parse_expression, Expr};
pub use rules::{parse_constraint, parse_strategy, BinpackField, Constraint, SpreadField, Strategy};

/// A container instance as placement sees it: what it offers and what already runs on it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Instance {
    /// The container instance ARN; unique within the snapshot.
    pub arn: String,
    /// The EC2 instance id (`ec2InstanceId` in the query language).
    pub ec2_instance_id: String,
    /// Built-in (`ecs.*`) and custom attributes. A capability is an attribute without a
    /// value: it exists, but compares equal to nothing.
    pub attributes: BTreeMap<String, Option<String>>,
    /// CPU units not yet reserved.
    pub remaining_cpu: i64,
    /// MiB not yet reserved.
    pub remaining_memory: i64,
    /// Host TCP ports already taken, by the agent's reservations and by running tasks.
    pub used_ports_tcp: BTreeSet<u16>,
    /// Host UDP ports already taken.
    pub used_ports_udp: BTreeSet<u16>,
    pub running_tasks_count: u32,
    pub agent_connected: bool,
    /// The container agent's version, such as `1.87.0`.
    pub agent_version: String,
    /// When the instance registered, in seconds since the Unix epoch.
    pub registered_at: f64,
    /// A `DRAINING` instance takes no new tasks; placement ignores it entirely.
    pub draining: bool,
    /// The task group of every task on the instance, one entry per task.
    pub task_groups: Vec<String>,
}

/// One task to place: what placement reserves for it and what it demands of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskNeeds {
    /// CPU units to reserve (task-level `cpu`, else the sum of the containers' `cpu`).
    pub cpu: i64,
    /// MiB to reserve (task-level `memory`, else per container `memory` or else
    /// `memoryReservation`, summed).
    pub memory: i64,
    /// Non-zero host ports the task binds.
    pub static_ports_tcp: Vec<u16>,
    pub static_ports_udp: Vec<u16>,
    /// The task group, such as `family:web` or `service:web`.
    pub group: String,
    /// Attribute names that must exist on the instance (`requiresAttributes`).
    pub required_attributes: Vec<String>,
}

/// The outcome of [`place`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// For each placed task, in order, the index of its instance in the snapshot.
    pub placements: Vec<usize>,
    /// Filled when a task could not be placed: why each instance was rejected for it.
    /// Empty if every task was placed, and empty when the snapshot has no instance that
    /// takes tasks at all (the caller then reports ECS's `MISSING`).
    pub failures: Vec<Failure>,
}

/// Why one container instance could not take a task, as in a RunTask `failures` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The container instance ARN.
    pub arn: String,
    /// `AGENT`, `RESOURCE:CPU`, `RESOURCE:MEMORY`, `RESOURCE:PORTS` or `ATTRIBUTE`.
    pub reason: String,
}
