//! Services behind load balancers: which target each task is, registering tasks once they
//! run, draining them before they stop, and what the load balancer says of their health.
//!
//! As ECS does it: a task of a service with `loadBalancers` is registered in each of the
//! target groups once it is RUNNING (`instance` targets: the instance's EC2 id and the
//! host port bound to the container port; `ip` targets, for awsvpc tasks: the task's
//! address and the container port). It counts as healthy only while every target
//! group reports it `healthy`. When the scheduler stops it, it is deregistered first and
//! reads DEACTIVATING until the load balancer has drained it (no request left in flight,
//! or the deregistration delay is over); only then is its agent told to stop it. Tasks
//! that stop by themselves are deregistered at once.
//!
//! The controller reads target health from the data plane's board once per pass
//! ([`Health`]), so every decision of a pass sees the same facts. Registrations are
//! changes of the target groups in the same writer change as the task decisions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use elb::health::{Board, State as TargetState, TargetHealth, TargetKey};
use elb::resources::{Target, TargetGroup, TargetType};
use model::ecs::service::{events, Service, ServiceTarget};
use model::ecs::shapes::LoadBalancer;
use model::ecs::task::Task;
use model::Scope;

use crate::elb::ElbKey;
use crate::state::{State, Touched};

/// How long a deactivating task waits at least after its deregistration, so that the data
/// plane has applied it (it applies committed changes asynchronously) before the board's
/// silence about the target is taken as "drained".
pub(crate) const SETTLE_SECONDS: f64 = 1.0;

/// Extra time past the deregistration delay after which a task is stopped even if the
/// board still lists it as draining (a data plane that stopped reporting must not keep a
/// deployment waiting forever).
const DRAIN_MARGIN_SECONDS: f64 = 5.0;

/// What the data plane reported of every target group, read once per pass.
pub(crate) type Health = HashMap<String, HashMap<TargetKey, TargetHealth>>;

pub(crate) fn read_board(board: &Board) -> Health {
    board.groups().into_iter().map(|arn| (arn.clone(), board.group(&arn))).collect()
}

/// One target a task is in one target group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TaskTarget {
    pub tg_arn: String,
    pub tg_id: String,
    pub key: TargetKey,
}

impl TaskTarget {
    fn record(&self) -> ServiceTarget {
        ServiceTarget { target_group_arn: self.tg_arn.clone(), id: self.key.id.clone(), port: self.key.port }
    }
}

/// The target group an ARN names, if it exists in `scope`.
pub(crate) fn target_group<'s>(state: &'s State, scope: &Scope, arn: &str) -> Option<&'s Arc<TargetGroup>> {
    let id = arn.rsplit('/').next()?;
    state.elb.target_groups.get(&(scope.clone(), id.to_string())).filter(|tg| tg.arn() == arn)
}

/// The targets task `t` is in the target groups of `lbs`: none until it has the port
/// binding (or address) a target needs.
pub(crate) fn targets_of(
    state: &State,
    t: &Task,
    lbs: &[LoadBalancer],
    ec2_instance_id: Option<&str>,
) -> Vec<TaskTarget> {
    let mut out = Vec::new();
    for lb in lbs {
        let (Some(arn), Some(name), Some(port)) = (&lb.target_group_arn, &lb.container_name, lb.container_port) else {
            continue;
        };
        let Some(tg) = target_group(state, &t.scope, arn) else { continue };
        let key = match tg.target_type {
            TargetType::Instance => {
                let host_port = t
                    .containers
                    .iter()
                    .filter(|c| &c.name == name)
                    .flat_map(|c| &c.network_bindings)
                    .find(|b| b.container_port == Some(port))
                    .and_then(|b| b.host_port)
                    .and_then(|p| u16::try_from(p).ok());
                match (ec2_instance_id, host_port) {
                    (Some(id), Some(p)) => TargetKey { id: id.to_string(), port: p },
                    _ => continue,
                }
            }
            // awsvpc tasks: their own address and the container port itself.
            TargetType::Ip => match (&t.eni, u16::try_from(port)) {
                (Some(eni), Ok(p)) => TargetKey { id: eni.private_ipv4.to_string(), port: p },
                _ => continue,
            },
        };
        out.push(TaskTarget { tg_arn: arn.clone(), tg_id: tg.id.clone(), key });
    }
    out
}

/// What the load balancer says of one task, over all its target groups.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LbHealth {
    /// Healthy in every target group (or in groups no load balancer uses, where nothing
    /// is checked).
    Healthy,
    /// Not registered yet, or still in its first health checks.
    Pending,
    /// Unhealthy in this target group, for this reason.
    Unhealthy { target: TaskTarget, reason: String },
}

pub(crate) fn lb_health(state: &State, health: &Health, scope: &Scope, targets: &[TaskTarget]) -> LbHealth {
    if targets.is_empty() {
        return LbHealth::Pending;
    }
    let mut all_healthy = true;
    for t in targets {
        if state.elb.lbs_using(scope, &t.tg_arn).is_empty() {
            continue;
        }
        match health.get(&t.tg_arn).and_then(|g| g.get(&t.key)) {
            Some(h) if h.state == TargetState::Healthy => {}
            Some(h) if h.state == TargetState::Unhealthy => {
                let reason = h.description.clone().unwrap_or_else(|| "Health checks failed".into());
                return LbHealth::Unhealthy { target: t.clone(), reason };
            }
            _ => all_healthy = false,
        }
    }
    if all_healthy {
        LbHealth::Healthy
    } else {
        LbHealth::Pending
    }
}

/// Whether a deactivating task's targets are gone from the load balancer: deregistered,
/// no longer on the board (drained), and past the settle time; or past the drain limit.
pub(crate) fn drained(state: &State, health: &Health, t: &Task, targets: &[TaskTarget], now: f64) -> bool {
    let since = t.stopping_at.map_or(now, |s| s.epoch_seconds());
    let elapsed = now - since;
    if elapsed < SETTLE_SECONDS {
        return false;
    }
    let limit = targets
        .iter()
        .filter_map(|tt| target_group(state, &t.scope, &tt.tg_arn))
        .map(|tg| tg.attributes.deregistration_delay().as_secs_f64())
        .fold(0.0, f64::max)
        + DRAIN_MARGIN_SECONDS;
    if elapsed >= limit {
        return true;
    }
    targets.iter().all(|tt| {
        let listed = target_group(state, &t.scope, &tt.tg_arn)
            .is_some_and(|tg| tg.targets.iter().any(|x| x.id == tt.key.id && x.port == tt.key.port));
        let on_board = health.get(&tt.tg_arn).is_some_and(|g| g.contains_key(&tt.key));
        !listed && !on_board
    })
}

/// Changes to the target groups that make the service's registrations exactly `wanted`:
/// registers what is missing and deregisters what the service registered and no longer
/// wants. Returns the touched records and the events to record.
pub(crate) fn sync(state: &mut State, svc: &mut Service, wanted: &BTreeSet<TaskTarget>) -> (Vec<Touched>, Vec<String>) {
    let scope = svc.scope.clone();
    let wanted_records: BTreeSet<ServiceTarget> = wanted.iter().map(TaskTarget::record).collect();
    // Per target group: what to add and what to remove.
    let mut plan: BTreeMap<String, (Vec<&TaskTarget>, Vec<ServiceTarget>)> = BTreeMap::new();
    for t in wanted {
        plan.entry(t.tg_arn.clone()).or_default().0.push(t);
    }
    for r in svc.targets.iter().filter(|r| !wanted_records.contains(r)) {
        plan.entry(r.target_group_arn.clone()).or_default().1.push(r.clone());
    }
    let mut touched = Vec::new();
    let mut messages = Vec::new();
    for (arn, (add, remove)) in plan {
        let Some(tg) = target_group(state, &scope, &arn).cloned() else { continue };
        let mut next = tg.as_ref().clone();
        let mut added = 0;
        for t in add {
            if !next.targets.iter().any(|x| x.id == t.key.id && x.port == t.key.port) {
                next.targets.push(Target { id: t.key.id.clone(), port: t.key.port, availability_zone: None });
                added += 1;
            }
        }
        let before = next.targets.len();
        next.targets.retain(|x| !remove.iter().any(|r| r.id == x.id && r.port == x.port));
        let removed = before - next.targets.len();
        if added + removed == 0 {
            continue;
        }
        if added > 0 {
            messages.push(events::registered_targets(&svc.name, added, &arn));
        }
        if removed > 0 {
            messages.push(events::deregistered_targets(&svc.name, removed, &arn));
        }
        state.elb.target_groups.insert((scope.clone(), tg.id.clone()), Arc::new(next));
        touched.push(Touched::Elb(ElbKey::TargetGroup(scope.clone(), tg.id.clone())));
    }
    svc.targets = wanted_records;
    (touched, messages)
}
