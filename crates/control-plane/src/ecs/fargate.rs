//! Fargate: tasks on capacity the account never registers or sees.
//!
//! Fargate capacity is agents started with `BERTH_CAPACITY=FARGATE` (`berth up` starts one
//! on the local Docker engine): they register into the hidden pool
//! [`model::ids::ClusterName::fargate_pool`], which has no cluster record, so no ECS call lists its
//! instances, and they run the Fargate tasks of every cluster of their account. A Fargate
//! task is placed on the pool instance with the most room left for its task-level cpu and
//! memory; when no instance has room, it fails to place with Fargate's own reason.
//! Fargate tasks are awsvpc tasks: each gets its interface in one of its subnets.

use model::ecs::shapes::{Compatibility, NetworkMode};
use model::ecs::task::{InstanceStatus, Resources};
use model::ecs::TaskDefinition;
use model::Scope;

use super::instances::fargate_views;
use crate::agents::Agents;
use crate::error::{Error, Result};
use crate::state::State;

/// Why a Fargate task could not be placed, as Fargate words it.
pub(crate) const CAPACITY_UNAVAILABLE: &str =
    "Capacity is unavailable at this time. Please try again later or in a different availability zone";

/// The platform version every Fargate task reports (`LATEST` resolves to it).
pub(crate) const PLATFORM_VERSION: &str = "1.4.0";

/// Checks that the task definition can run on Fargate, with ECS's messages.
pub(crate) fn check_task_definition(td: &TaskDefinition) -> Result<()> {
    let compatible = td.spec.doc.requires_compatibilities.as_ref().is_some_and(|c| c.contains(&Compatibility::Fargate));
    if !compatible {
        return Err(Error::parameter("Task definition does not support launch_type FARGATE."));
    }
    if td.spec.network_mode() != NetworkMode::Awsvpc {
        return Err(Error::parameter("Fargate only supports network mode 'awsvpc'."));
    }
    Ok(())
}

/// Checks a `platformVersion`: `LATEST` or the one Berth runs.
pub(crate) fn check_platform_version(v: Option<&str>) -> Result<()> {
    match v {
        None | Some("LATEST") | Some(PLATFORM_VERSION) => Ok(()),
        Some(other) => Err(Error::parameter(format!(
            "The specified platform version {other} does not exist. Berth's Fargate runs {PLATFORM_VERSION} (LATEST)."
        ))),
    }
}

/// Chooses pool instances for `count` tasks needing `reserved`: each goes to the ACTIVE,
/// connected instance with the most memory left (then cpu), so load spreads. Returns the
/// instance ids, fewer than `count` when capacity runs out.
pub(crate) fn place(agents: &Agents, state: &State, scope: &Scope, reserved: &Resources, count: usize) -> Vec<String> {
    let mut views = fargate_views(agents, state, scope);
    let mut out = Vec::new();
    for _ in 0..count {
        let best = views
            .values_mut()
            .filter(|v| v.instance.status == InstanceStatus::Active && v.agent_connected)
            .filter(|v| v.remaining.cpu >= reserved.cpu && v.remaining.memory >= reserved.memory)
            .max_by(|a, b| {
                (a.remaining.memory, a.remaining.cpu, &b.instance.id).cmp(&(
                    b.remaining.memory,
                    b.remaining.cpu,
                    &a.instance.id,
                ))
            });
        let Some(v) = best else { break };
        v.remaining.cpu -= reserved.cpu;
        v.remaining.memory -= reserved.memory;
        out.push(v.instance.id.clone());
    }
    out
}
