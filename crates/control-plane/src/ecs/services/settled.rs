//! Steady services the controller need not look at again: a pass over a cluster where
//! nothing happens should cost next to nothing (issue 19: an idle cluster under 1% of a
//! CPU), yet building a service's members and reconciling them is most of a pass.
//!
//! A service is *settled* when a dry run of `reconcile` changed nothing and left it in a
//! state where no rule of the controller depends on the time: a REPLICA service, ACTIVE,
//! whose single deployment has completed with every task healthy (ECS's steady state,
//! `steady_reported_at` set), and whose launch throttle is clear. Until what it was
//! decided from changes, another run would decide the same, so it is skipped. What it was
//! decided from, and how a change is seen without comparing values:
//!
//! - the service itself and its task group (`Arc` and persistent-map identity: any write
//!   to either makes a new one; the entry holds them, so an address is never reused
//!   while it is compared),
//! - each of its tasks' container instances (status, existence; the same identity test),
//!   looked at only when some instance changed: a pass over an idle cluster then reads no
//!   task at all (reading 50,000 of them, scattered in memory, was most of such a pass),
//! - the instances whose agents are lost (compared whole each pass: a change re-decides
//!   every service),
//! - for a service behind a load balancer, the ELB state and the targets' health as the
//!   data plane reports it,
//! - the time only through the steady-state event, which ECS repeats every six hours:
//!   an entry lapses then.
//!
//! DAEMON services are never settled: a new instance in the cluster is theirs to run on.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use imbl::OrdMap;
use model::ecs::service::{Service, ServiceStatus, Throttle, REPEAT_PROBLEM_AFTER_SECONDS};
use model::ecs::shapes::SchedulingStrategy;
use model::ecs::task::Task;
use model::Timestamp;

use super::targets::Health;
use super::ServiceKey;
use crate::state::elb::ElbState;
use crate::state::State;

/// What one settled service was decided from.
struct Entry {
    service: Arc<Service>,
    group: Option<OrdMap<String, Arc<Task>>>,
    /// The ids of the instances its tasks name (while `group` is the same, so are they).
    instances: Vec<String>,
    /// When ECS would repeat the steady-state event (epoch seconds).
    until: f64,
    behind_lb: bool,
}

/// The settled services, and what every one of them depends on.
#[derive(Default)]
pub(crate) struct Settled {
    entries: HashMap<ServiceKey, Entry>,
    lost: HashSet<String>,
    health: Option<Arc<Health>>,
    elb: Option<ElbState>,
    /// The state the last pass read.
    last: Option<Arc<State>>,
    /// No task changed since the last pass: no group needs looking up.
    tasks_unchanged: bool,
}

impl Settled {
    /// Starts a pass: forgets the entries whose shared inputs changed since the last.
    pub(crate) fn begin(&mut self, state: &Arc<State>, lost: &HashSet<String>, health: &Arc<Health>) {
        if *lost != self.lost {
            self.entries.clear();
            self.lost = lost.clone();
        }
        let elb_same = self.elb.as_ref().is_some_and(|e| same_elb(e, &state.elb));
        let health_same = self.health.as_ref().is_some_and(|h| Arc::ptr_eq(h, health) || **h == **health);
        if !(elb_same && health_same) {
            self.entries.retain(|_, e| !e.behind_lb);
            self.elb = Some(state.elb.clone());
            self.health = Some(health.clone());
        }
        let last = self.last.replace(state.clone());
        self.tasks_unchanged = last.as_ref().is_some_and(|l| l.same_tasks(state));
        match last {
            Some(last) if last.instances.ptr_eq(&state.instances) => {}
            Some(last) => {
                let changed = changed_instances(&last, state);
                self.entries.retain(|_, e| !e.instances.iter().any(|id| changed.contains(id.as_str())));
            }
            None => self.entries.clear(),
        }
    }

    /// Whether the service `key` (now `svc`) is settled and nothing it was decided from
    /// has changed.
    pub(crate) fn holds(&self, state: &State, key: &ServiceKey, svc: &Arc<Service>, now: Timestamp) -> bool {
        let Some(e) = self.entries.get(key) else { return false };
        if !Arc::ptr_eq(&e.service, svc) || now.epoch_seconds() >= e.until {
            return false;
        }
        if self.tasks_unchanged {
            return true;
        }
        match (&e.group, state.task_group(&svc.scope, &svc.cluster, &svc.task_group())) {
            (None, None) => true,
            (Some(was), Some(is)) => was.ptr_eq(is),
            _ => false,
        }
    }

    /// Records the outcome of a dry run of `key` that changed nothing: settled if the
    /// service is in a state where no rule depends on the time, else forgotten.
    pub(crate) fn record(&mut self, state: &State, key: &ServiceKey) {
        let Some(svc) = state.services.get(key) else {
            self.entries.remove(key);
            return;
        };
        let until = match steady_until(svc) {
            Some(until) => until,
            None => {
                self.entries.remove(key);
                return;
            }
        };
        let group = state.task_group(&svc.scope, &svc.cluster, &svc.task_group()).cloned();
        let mut on: Vec<String> =
            group.iter().flat_map(|g| g.values()).filter_map(|t| t.container_instance.clone()).collect();
        on.sort_unstable();
        on.dedup();
        let entry = Entry {
            instances: on,
            group,
            service: svc.clone(),
            until,
            behind_lb: svc.deployments.iter().chain(&svc.history).any(|d| !d.revision.load_balancers.is_empty()),
        };
        self.entries.insert(key.clone(), entry);
    }

    /// Forgets `key`: a dry run would change it. (Kept, its entry could pass for current
    /// again once nothing changes, while it was decided from an older state.)
    pub(crate) fn forget(&mut self, key: &ServiceKey) {
        self.entries.remove(key);
    }

    /// Forgets the entries of services that are gone, once they outnumber the services.
    pub(crate) fn prune(&mut self, state: &State) {
        if self.entries.len() > state.services.len() {
            self.entries.retain(|k, _| state.services.contains_key(k));
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Until when a service that a dry run left unchanged stays as it is without any input
/// changing, if it is steady; `None` if a rule of the controller may act on it with time.
fn steady_until(svc: &Service) -> Option<f64> {
    let clear = svc.throttle == Throttle::default();
    let replica = svc.settings.scheduling_strategy == SchedulingStrategy::Replica;
    if svc.status != ServiceStatus::Active || !replica || !clear || svc.deployments.len() != 1 {
        return None;
    }
    svc.steady_reported_at.map(|at| at.epoch_seconds() + REPEAT_PROBLEM_AFTER_SECONDS)
}

/// The ids of the instances added, changed or removed between two states.
fn changed_instances<'a>(old: &'a State, new: &'a State) -> HashSet<&'a str> {
    let mut changed = HashSet::new();
    for (k, i) in new.instances.iter() {
        if old.instances.get(k).is_none_or(|was| !Arc::ptr_eq(was, i)) {
            changed.insert(k.2.as_str());
        }
    }
    for k in old.instances.keys() {
        if !new.instances.contains_key(k) {
            changed.insert(k.2.as_str());
        }
    }
    changed
}

fn same_elb(a: &ElbState, b: &ElbState) -> bool {
    a.load_balancers.ptr_eq(&b.load_balancers)
        && a.target_groups.ptr_eq(&b.target_groups)
        && a.listeners.ptr_eq(&b.listeners)
        && a.rules.ptr_eq(&b.rules)
}
