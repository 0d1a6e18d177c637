//! Fargate: tasks on capacity the account never registers or sees.
//!
//! Fargate capacity is agents started with `BERTH_CAPACITY=FARGATE` (`berth up` starts one
//! on the local Docker engine): they register into the hidden pool
//! [`model::ids::ClusterName::fargate_pool`], which has no cluster record, so no ECS call lists its
//! instances, and they run the Fargate tasks of every cluster of their account. A Fargate
//! task is placed on the pool instance with the most room left for its task-level cpu and
//! memory; when no instance has room, it fails to place with Fargate's own reason.
//! Fargate tasks are awsvpc tasks: each gets its interface in one of its subnets.

use std::collections::HashMap;

use model::ecs::shapes::{CapacityProviderStrategyItem, Compatibility, NetworkMode};
use model::ecs::task::{InstanceStatus, Resources};
use model::ecs::{Cluster, TaskDefinition};
use model::Scope;

use super::instances::fargate_views;
use crate::agents::Agents;
use crate::error::{Error, Result};
use crate::state::State;

/// Why a Fargate task could not be placed, as Fargate words it.
pub(crate) const CAPACITY_UNAVAILABLE: &str =
    "Capacity is unavailable at this time. Please try again later or in a different availability zone";

use model::ecs::task::FARGATE_PLATFORM_VERSION as PLATFORM_VERSION;

/// The capacity providers every cluster may use (after PutClusterCapacityProviders).
pub(crate) const PROVIDERS: [&str; 2] = ["FARGATE", "FARGATE_SPOT"];

/// Checks a capacity provider strategy against the cluster: every provider associated with
/// it (PutClusterCapacityProviders) and one Berth runs.
pub(crate) fn check_strategy(cluster: &Cluster, items: &[CapacityProviderStrategyItem]) -> Result<()> {
    for item in items {
        let name = item.capacity_provider.as_deref().unwrap_or_default();
        if !cluster.capacity_providers.iter().any(|p| p == name) {
            return Err(Error::parameter(format!(
                "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster: {name}."
            )));
        }
        if !PROVIDERS.contains(&name) {
            return Err(Error::Unsupported(format!(
                "Capacity provider {name} is not available in this version of Berth; use FARGATE or FARGATE_SPOT."
            )));
        }
    }
    Ok(())
}

/// Whether tasks of this launch type or capacity provider strategy run on Fargate.
pub(crate) fn on_fargate(launch_type: Option<&str>, strategy: &[CapacityProviderStrategyItem]) -> bool {
    launch_type == Some("FARGATE")
        || strategy.iter().any(|i| i.capacity_provider.as_deref().is_some_and(|p| PROVIDERS.contains(&p)))
}

/// The capacity provider of the next task, given how many live tasks each provider of
/// the strategy already runs: first each provider's `base` in order, then the one that
/// would have the fewest tasks beyond its base for its `weight` with this one (ties to the
/// larger weight, then the earlier). Providers of weight 0 get their base only.
pub(crate) fn next_provider(
    strategy: &[CapacityProviderStrategyItem],
    running: &HashMap<String, usize>,
) -> Option<String> {
    let name = |i: &CapacityProviderStrategyItem| i.capacity_provider.clone().unwrap_or_default();
    let count = |i: &CapacityProviderStrategyItem| running.get(&name(i)).copied().unwrap_or(0);
    if let Some(i) = strategy.iter().find(|i| count(i) < i.base.unwrap_or(0).max(0) as usize) {
        return Some(name(i));
    }
    strategy
        .iter()
        .filter(|i| i.weight.unwrap_or(0) > 0)
        .enumerate()
        .min_by(|(ia, a), (ib, b)| {
            let load = |i: &CapacityProviderStrategyItem| {
                let beyond = count(i).saturating_sub(i.base.unwrap_or(0).max(0) as usize) as f64 + 1.0;
                beyond / f64::from(i.weight.unwrap_or(1))
            };
            load(a).total_cmp(&load(b)).then(b.weight.cmp(&a.weight)).then(ia.cmp(ib))
        })
        .map(|(_, i)| name(i))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, base: i32, weight: i32) -> CapacityProviderStrategyItem {
        CapacityProviderStrategyItem { capacity_provider: Some(name.into()), base: Some(base), weight: Some(weight) }
    }

    #[test]
    fn base_first_then_by_weight() {
        let strategy = [item("FARGATE", 1, 1), item("FARGATE_SPOT", 0, 3)];
        let mut running: HashMap<String, usize> = HashMap::new();
        let mut order = Vec::new();
        for _ in 0..8 {
            let p = next_provider(&strategy, &running).unwrap();
            *running.entry(p.clone()).or_default() += 1;
            order.push(p);
        }
        // The base first, then three Spot tasks for every on-demand one beyond the base.
        assert_eq!(order[..5], ["FARGATE", "FARGATE_SPOT", "FARGATE_SPOT", "FARGATE_SPOT", "FARGATE"], "{order:?}");
        assert_eq!((running["FARGATE"], running["FARGATE_SPOT"]), (2, 6), "{order:?}");
        // Weight 0: base only.
        let only_base = [item("FARGATE", 2, 0), item("FARGATE_SPOT", 0, 1)];
        let mut running = HashMap::new();
        for _ in 0..5 {
            let p = next_provider(&only_base, &running).unwrap();
            *running.entry(p).or_default() += 1;
        }
        assert_eq!((running["FARGATE"], running["FARGATE_SPOT"]), (2, 3));
    }
}
