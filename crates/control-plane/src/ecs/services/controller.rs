//! The service controller: compares every service with its tasks and acts, so that each
//! service converges to its desired state and stays there.
//!
//! A pass is idempotent: it reads the state, decides, and records its decisions (new
//! tasks, tasks to stop, deployment and event changes) as one change of the writer, so
//! they are durable and no two passes can act on the same facts. After a `kill -9` the
//! next pass simply continues from what was committed. Each pass first runs on a copy of
//! the published state; only services for which that dry run would change something are
//! reconciled again inside the writer, so an idle controller never writes. A service
//! found steady is not even dry-run again until something it depends on changes
//! (`settled`), so an idle cluster's pass reads no task.
//!
//! The rules, per service:
//!
//! - Tasks belong to the deployment named by their `startedBy`. A task is *live* until it
//!   is reported STOPPED (unless its instance is lost), *active* while it is live and
//!   its desired status is RUNNING, and *healthy* when active, RUNNING and, if it has
//!   container health checks, HEALTHY.
//! - Live tasks never exceed `maximumPercent` of the desired count; healthy tasks are
//!   stopped only while `minimumHealthyPercent` of it stays healthy. Unhealthy and
//!   pending tasks that must go are stopped at once.
//! - Tasks of older deployments, tasks on DRAINING instances and excess tasks are
//!   replaced (REPLICA) or removed (DAEMON) within those limits.
//! - Ended tasks are accounted once: failures count toward the circuit breaker of their
//!   deployment, and the primary deployment's tasks that never reached RUNNING, or
//!   stopped within seconds of starting, space out further launches (ECS's service
//!   throttle logic; see `STARTED_AFTER_SECONDS` for why quick exits count).
//! - A deployment is COMPLETED once its desired count of tasks is healthy, alone, and has
//!   been up for `STARTED_AFTER_SECONDS`, so a crash loop fails it rather than completes it.
//! - Behind a load balancer (see [`super::targets`]), a task is healthy only when its
//!   targets are, is registered when it runs and drained before it is stopped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use model::ecs::service::{
    events, throttle_seconds, DeploymentStatus, RolloutState, Service, ServiceStatus, STARTED_AFTER_SECONDS,
    THROTTLE_AFTER_FAILURES,
};
use model::ecs::shapes::{
    PropagateTags, SchedulingStrategy, ServiceDeploymentStatus, TaskDefinitionPlacementConstraintType,
};
use model::ecs::task::{
    container_instance_arn, ContainerInstance, DesiredStatus, HealthStatus, InstanceStatus, StopCode, Task, TaskStatus,
};
use model::ecs::TaskDefinition;
use model::tags::Tags;
use model::Timestamp;

use super::targets::{self, Health, LbHealth, TaskTarget};
use super::ServiceKey;
use crate::agents::Agents;
use crate::ec2::{Network, NetworkConfig};
use crate::ecs::instances::cluster_views;
use crate::ecs::launch::{self, placement_instance, Hosts, Launch, NoAddress};
use crate::ecs::placement::Placements;
use crate::ecs::{awsvpc, fargate};
use crate::state::{State, Touched};
use crate::ControlPlane;

/// How often the controller looks at every service even when nothing woke it: throttled
/// launches, health-check grace periods and lost instances are time-based.
const TICK: Duration = Duration::from_secs(1);

/// Where the controller's decisions go during one pass.
pub(crate) struct Pass<'a> {
    pub state: &'a mut State,
    pub touched: Vec<Touched>,
    /// Tasks created or told to stop, to push to their agents after the commit.
    pub changed: Vec<Task>,
    pub now: Timestamp,
    agents: &'a Agents,
    placements: &'a Placements,
    /// Container instance ARNs whose agent has been gone longer than the grace.
    lost: &'a HashSet<String>,
    grace_seconds: u64,
    seen: &'a SeenRunning,
    /// Target health as the load balancer's data plane reported it when the pass began.
    health: &'a Health,
    /// The zones and VPC block, for the subnets of awsvpc tasks.
    network: &'a NetworkConfig,
    instances: &'a InstancesById,
    rng: StdRng,
}

/// Every container instance by id, read once per pass (the controller changes no
/// instance): tasks name theirs by id, and a lookup here builds no key. Hashed with
/// foldhash: the ids are ours, not a caller's, and every member of every service is looked
/// up in every pass.
pub(crate) type InstancesById = HashMap<String, Arc<ContainerInstance>, foldhash::fast::RandomState>;

pub(crate) fn instances_by_id(state: &State) -> InstancesById {
    state.instances.values().map(|i| (i.id.clone(), i.clone())).collect()
}

/// What a pass knows besides the state: read once when the pass begins.
#[derive(Clone, Copy)]
pub(crate) struct Facts<'a> {
    pub agents: &'a Agents,
    pub placements: &'a Placements,
    pub lost: &'a HashSet<String>,
    pub grace: Duration,
    pub seen: &'a SeenRunning,
    pub health: &'a Health,
    pub network: &'a NetworkConfig,
    pub instances: &'a InstancesById,
}

impl<'a> Pass<'a> {
    pub(crate) fn new(state: &'a mut State, now: Timestamp, facts: Facts<'a>, seed: u64) -> Self {
        Pass {
            instances: facts.instances,
            state,
            touched: Vec::new(),
            changed: Vec::new(),
            now,
            agents: facts.agents,
            placements: facts.placements,
            lost: facts.lost,
            grace_seconds: facts.grace.as_secs(),
            seen: facts.seen,
            health: facts.health,
            network: facts.network,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn put_task(&mut self, t: &Task) {
        let touched = launch::put(self.state, t.clone());
        self.touched.push(touched);
    }

    fn event_id(&mut self) -> String {
        crate::ecs::tasks::uuid(&mut self.rng)
    }

    /// Tells a task to stop on behalf of the service scheduler.
    fn stop(&mut self, t: &mut Task, reason: &str) {
        self.mark_stopping(t, reason);
        self.changed.push(t.clone());
    }

    /// Records the scheduler's stop (desired STOPPED, code, reason, time) without telling
    /// the agent yet.
    fn mark_stopping(&mut self, t: &mut Task, reason: &str) {
        t.desired_status = DesiredStatus::Stopped;
        t.stop_code.get_or_insert(StopCode::ServiceSchedulerInitiated);
        t.stopped_reason.get_or_insert_with(|| reason.to_string());
        t.stopping_at.get_or_insert(self.now);
        t.version += 1;
        self.put_task(t);
    }

    /// Stops a task of the service: a task registered with a load balancer is deregistered
    /// and drained first (DEACTIVATING; its agent keeps it running meanwhile), any other
    /// is told to stop at once.
    fn stop_member(&mut self, m: &mut Member, reason: &str) {
        if m.task.last_status != TaskStatus::Running || m.targets.is_empty() {
            self.stop(Arc::make_mut(&mut m.task), reason);
            return;
        }
        let t = Arc::make_mut(&mut m.task);
        t.last_status = TaskStatus::Deactivating;
        self.mark_stopping(t, reason);
    }
}

/// One task of the service, with what the controller needs to know about it.
struct Member {
    /// Shared with the state until the controller changes it (`Arc::make_mut`): a pass
    /// over services with nothing to do copies no task.
    task: Arc<Task>,
    /// Index into the service's live deployments; `None` for a deployment it no longer has.
    deployment: Option<usize>,
    /// Whether its task definition has an essential container with a health check.
    checked: bool,
    /// Its instance is DRAINING.
    draining: bool,
    /// Its instance is lost, deregistered or gone: the task is written off.
    written_off: bool,
    /// Its deployment runs behind load balancers.
    behind_lb: bool,
    /// The targets it is in its deployment's target groups (once it has a port binding).
    targets: Vec<TaskTarget>,
    lb: LbHealth,
}

impl Member {
    /// The id of the instance it was placed on.
    fn instance(&self) -> Option<&String> {
        self.task.container_instance.as_ref()
    }
    fn live(&self) -> bool {
        self.task.last_status != TaskStatus::Stopped && !self.written_off
    }
    fn active(&self) -> bool {
        self.live() && self.task.desired_status == DesiredStatus::Running
    }
    fn healthy(&self) -> bool {
        self.active()
            && self.task.last_status == TaskStatus::Running
            && (!self.checked || self.task.health_status == HealthStatus::Healthy)
            && (!self.behind_lb || self.lb == LbHealth::Healthy)
    }
    /// Told to stop and waiting for the load balancer to drain it.
    fn deactivating(&self) -> bool {
        self.live() && self.task.last_status == TaskStatus::Deactivating
    }
    fn pending(&self) -> bool {
        self.active() && self.task.last_status < TaskStatus::Running
    }
    /// How long it has run, in seconds, if it has started: its agent's start time against
    /// the leader's clock, unless that lies in the leader's future (see [`SeenRunning`]).
    fn age(&self, now: Timestamp, seen: &SeenRunning) -> Option<f64> {
        let age = now.epoch_seconds() - self.task.started_at?.epoch_seconds();
        Some(if age >= 0.0 { age } else { seen.seconds(&self.task.id) })
    }
    /// Whether it has run for at least `seconds`.
    fn started_for(&self, now: Timestamp, seen: &SeenRunning, seconds: f64) -> bool {
        self.age(now, seen).is_some_and(|age| age >= seconds)
    }
}

fn has_health_checks(td: &TaskDefinition) -> bool {
    td.spec.containers().iter().any(|c| c.essential.unwrap_or(true) && c.health_check.is_some())
}

/// The service's tasks (by group, started by one of its deployments) as members.
fn members(pass: &Pass<'_>, svc: &Service) -> Vec<Member> {
    let group = svc.task_group();
    // A service's tasks share a few revisions: each is looked up once.
    let mut checked: HashMap<(&str, u32), bool, foldhash::fast::RandomState> = HashMap::default();
    pass.state
        .group_tasks(&svc.scope, &svc.cluster, &group)
        .filter(|t| t.started_by.as_deref().is_some_and(|s| s.starts_with("ecs-svc/")))
        .map(|t| {
            let instance = t.container_instance.as_deref().and_then(|id| pass.instances.get(id));
            let written_off = match instance {
                None => true,
                Some(i) => {
                    i.status == InstanceStatus::Inactive
                        || (!pass.lost.is_empty() && pass.lost.contains(&i.arn().to_string()))
                }
            };
            let key = (t.family.as_str(), t.revision);
            let checked = *checked.entry(key).or_insert_with(|| {
                pass.state
                    .task_definitions
                    .get(&(t.scope.clone(), t.family.clone(), t.revision))
                    .is_some_and(|td| has_health_checks(td))
            });
            // The load balancers of the revision the task runs (its own deployment's, even
            // when that deployment has finished).
            let lbs = svc
                .deployments
                .iter()
                .chain(&svc.history)
                .find(|d| Some(d.id.as_str()) == t.started_by.as_deref())
                .or(svc.deployments.first())
                .map(|d| d.revision.load_balancers.as_slice())
                .unwrap_or_default();
            let targets = targets::targets_of(pass.state, t, lbs, instance.map(|i| i.ec2_instance_id.as_str()));
            let lb = if lbs.is_empty() {
                LbHealth::Healthy
            } else {
                targets::lb_health(pass.state, pass.health, &svc.scope, &targets)
            };
            Member {
                behind_lb: !lbs.is_empty(),
                targets,
                lb,
                deployment: svc.deployments.iter().position(|d| Some(d.id.as_str()) == t.started_by.as_deref()),
                checked,
                draining: instance.is_some_and(|i| i.status == InstanceStatus::Draining),
                written_off,
                task: t.clone(),
            }
        })
        .collect()
}

/// Reconciles one service; afterwards the service and its tasks in `pass.state` are as
/// the controller wants them.
pub(crate) fn reconcile(pass: &mut Pass<'_>, key: &ServiceKey) {
    let Some(orig) = pass.state.services.get(key).cloned() else { return };
    if orig.status == ServiceStatus::Inactive || orig.deployments.is_empty() {
        return;
    }
    let mut svc = orig.as_ref().clone();
    let mut tasks = members(pass, &svc);

    account_ended_tasks(pass, &mut svc, &tasks);
    write_off_lost_tasks(pass, &mut svc, &mut tasks);
    finish_draining(pass, &mut tasks);
    replace_unhealthy_tasks(pass, &mut svc, &mut tasks);

    if svc.status == ServiceStatus::Draining {
        // DeleteService: every task goes, with no regard for the deployment limits.
        let ids = stop_all(pass, &mut svc, &mut tasks, "Service is being deleted");
        if !ids.is_empty() {
            let id = pass.event_id();
            svc.record(id, pass.now, events::stopped(&svc.name, &ids));
        }
        if !tasks.iter().any(Member::live) {
            svc.status = ServiceStatus::Inactive;
            let live = std::mem::take(&mut svc.deployments);
            for d in live {
                svc.retire(d, pass.now);
            }
        }
    } else {
        circuit_breaker(pass, &mut svc, &mut tasks);
        match svc.settings.scheduling_strategy {
            SchedulingStrategy::Replica => replica(pass, &mut svc, &mut tasks),
            SchedulingStrategy::Daemon => daemon(pass, &mut svc, &mut tasks),
        }
        bookkeeping(pass, &mut svc, &tasks);
    }
    sync_targets(pass, &mut svc, &tasks);

    if svc != *orig {
        pass.state.services.insert(key.clone(), Arc::new(svc));
        pass.touched.push(Touched::Service(key.0.clone(), key.1.clone(), key.2.clone()));
    }
}

/// Accounts each ended task the scheduler started exactly once.
///
/// Every task that stops on its own counts toward its deployment's circuit breaker. The
/// throttle counts only the primary deployment's failed starts (tasks that never reached
/// RUNNING, or stopped within [`STARTED_AFTER_SECONDS`]) while that deployment may still
/// launch: once a deployment is replaced, rolled back or failed, its dying tasks neither
/// throttle its successor nor say the service cannot start tasks.
fn account_ended_tasks(pass: &mut Pass<'_>, svc: &mut Service, tasks: &[Member]) {
    let now = pass.now.epoch_seconds();
    let launching = svc.deployments.first().filter(|p| p.rollout_state != RolloutState::Failed).map(|p| p.id.clone());
    let tracked: Vec<String> = svc.tracked.iter().cloned().collect();
    for id in tracked {
        let Some(m) = tasks.iter().find(|m| m.task.id == id) else {
            svc.tracked.remove(&id);
            continue;
        };
        let t = &m.task;
        if t.last_status != TaskStatus::Stopped {
            // One task that starts and stays healthy is enough to end the throttle.
            let settled = m.started_for(pass.now, pass.seen, STARTED_AFTER_SECONDS);
            if settled && m.healthy() && svc.throttle.consecutive_failures > 0 {
                svc.throttle = Default::default();
            }
            continue;
        }
        svc.tracked.remove(&id);
        // Stopped on purpose, or reclaimed Spot capacity: not a failure of the deployment.
        let by_request = matches!(
            t.stop_code,
            Some(StopCode::UserInitiated | StopCode::ServiceSchedulerInitiated | StopCode::SpotInterruption)
        );
        if by_request {
            continue;
        }
        if let Some(d) = svc
            .deployments
            .iter_mut()
            .chain(svc.history.iter_mut())
            .find(|d| Some(d.id.as_str()) == t.started_by.as_deref())
        {
            d.failed_tasks += 1;
            d.updated_at = pass.now;
        }
        let ended = t.stopped_at.map_or(now, |s| s.epoch_seconds());
        let failed_start = t.started_at.is_none_or(|s| ended - s.epoch_seconds() < STARTED_AFTER_SECONDS);
        if !failed_start {
            svc.throttle = Default::default();
            continue;
        }
        if launching.is_none() || t.started_by != launching {
            continue;
        }
        // Space out the next launches.
        let n = svc.throttle.consecutive_failures + 1;
        svc.throttle.consecutive_failures = n;
        let wait = throttle_seconds(n);
        svc.throttle.next_launch_at =
            (wait > 0.0).then(|| Timestamp::from_epoch_seconds(pass.now.epoch_seconds() + wait));
        if n >= THROTTLE_AFTER_FAILURES {
            let id = pass.event_id();
            svc.record_problem(id, pass.now, events::throttled(&svc.name));
        }
    }
}

/// Writes off the tasks of instances that are lost or deregistered, so that they are
/// replaced; their agents stop them if they ever come back.
fn write_off_lost_tasks(pass: &mut Pass<'_>, svc: &mut Service, tasks: &mut [Member]) {
    let mut by_instance: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, m) in tasks.iter().enumerate() {
        let desired = m.task.desired_status == DesiredStatus::Running && m.task.last_status != TaskStatus::Stopped;
        if m.written_off && desired {
            by_instance.entry(m.instance().cloned().unwrap_or_default()).or_default().push(i);
        }
    }
    for (instance, idx) in by_instance {
        let arn = container_instance_arn(&svc.scope, &svc.cluster, &instance).to_string();
        let lost = pass.lost.contains(&arn);
        let reason = if lost {
            format!(
                "Container instance {instance} was not heard from for more than {} seconds; the service replaced the task",
                pass.grace_seconds
            )
        } else {
            format!("Container instance {instance} was deregistered; the service replaced the task")
        };
        let mut ids = Vec::new();
        for i in idx {
            pass.stop(Arc::make_mut(&mut tasks[i].task), &reason);
            // Recorded STOPPED: nothing will report on it any more, and a service whose
            // replacement runs is steady. A returning agent is not sent the task (its
            // full set lists no STOPPED task), so it stops the container.
            let t = Arc::make_mut(&mut tasks[i].task);
            t.last_status = TaskStatus::Stopped;
            t.stopped_at.get_or_insert(pass.now);
            pass.put_task(t);
            svc.tracked.remove(&tasks[i].task.id);
            ids.push(tasks[i].task.id.clone());
        }
        let message = if lost {
            events::instance_lost(&svc.name, &instance, pass.grace_seconds, &ids)
        } else {
            events::stopped(&svc.name, &ids)
        };
        let id = pass.event_id();
        svc.record(id, pass.now, message);
    }
}

/// Replaces tasks whose container health checks fail, or that a target group reports
/// unhealthy, once the grace period is over.
fn replace_unhealthy_tasks(pass: &mut Pass<'_>, svc: &mut Service, tasks: &mut [Member]) {
    let grace = f64::from(svc.settings.health_check_grace_period_seconds.unwrap_or(0).max(0));
    for m in tasks.iter_mut() {
        let running = m.active() && m.task.last_status == TaskStatus::Running;
        if !running || m.age(pass.now, pass.seen).unwrap_or(0.0) < grace {
            continue;
        }
        let (reason, message) = if m.checked && m.task.health_status == HealthStatus::Unhealthy {
            ("Task failed container health checks".to_string(), events::health_check_failed(&svc.name, &m.task.id))
        } else if let LbHealth::Unhealthy { target, reason } = &m.lb {
            (
                format!("Task failed ELB health checks in (target-group {})", target.tg_arn),
                events::target_unhealthy(&svc.name, &target.key.id, target.key.port, &target.tg_arn, reason),
            )
        } else {
            continue;
        };
        pass.stop_member(m, &reason);
        svc.tracked.remove(&m.task.id);
        if let Some(d) = m.deployment.and_then(|i| svc.deployments.get_mut(i)) {
            d.failed_tasks += 1;
            d.updated_at = pass.now;
        }
        let id = pass.event_id();
        svc.record(id, pass.now, message);
    }
}

/// Tells the agents to stop deactivating tasks that the load balancer has drained.
fn finish_draining(pass: &mut Pass<'_>, tasks: &mut [Member]) {
    let now = pass.now.epoch_seconds();
    for m in tasks.iter_mut().filter(|m| m.deactivating()) {
        if !targets::drained(pass.state, pass.health, &m.task, &m.targets, now) {
            continue;
        }
        let t = Arc::make_mut(&mut m.task);
        t.last_status = TaskStatus::Stopping;
        t.version += 1;
        pass.put_task(t);
        pass.changed.push(t.clone());
    }
}

/// Registers the targets of running tasks and deregisters those of tasks that stop or
/// drain, in the same change as the decisions of the pass.
fn sync_targets(pass: &mut Pass<'_>, svc: &mut Service, tasks: &[Member]) {
    let wanted: std::collections::BTreeSet<TaskTarget> = tasks
        .iter()
        .filter(|m| m.active() && m.task.last_status == TaskStatus::Running)
        .flat_map(|m| m.targets.iter().cloned())
        .collect();
    if wanted.is_empty() && svc.targets.is_empty() {
        return;
    }
    let (touched, messages) = targets::sync(pass.state, svc, &wanted);
    pass.touched.extend(touched);
    for message in messages {
        let id = pass.event_id();
        svc.record(id, pass.now, message);
    }
}

fn stop_all(pass: &mut Pass<'_>, svc: &mut Service, tasks: &mut [Member], reason: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for m in tasks.iter_mut().filter(|m| m.active()) {
        pass.stop_member(m, reason);
        svc.tracked.remove(&m.task.id);
        ids.push(m.task.id.clone());
    }
    ids
}

/// Fails the primary deployment once enough of its tasks failed, and rolls back to the
/// last completed deployment if asked to.
fn circuit_breaker(pass: &mut Pass<'_>, svc: &mut Service, tasks: &mut [Member]) {
    let cb = svc.settings.deployment_config.circuit_breaker;
    let Some(primary) = svc.deployments.first() else { return };
    if !cb.enable
        || primary.rollout_state != RolloutState::InProgress
        || primary.failed_tasks < primary.circuit_breaker_threshold()
    {
        return;
    }
    let now = pass.now;
    let failed_id = primary.id.clone();
    {
        let p = &mut svc.deployments[0];
        p.rollout_state = RolloutState::Failed;
        p.rollout_state_reason = "ECS deployment circuit breaker: tasks failed to start.".into();
        p.updated_at = now;
    }
    let id = pass.event_id();
    svc.record(id, now, events::deployment_failed(&svc.name, &failed_id));
    // The most recent COMPLETED deployment, live (still running tasks) or finished.
    let live = svc.deployments.iter().skip(1).position(|d| d.rollout_state == RolloutState::Completed).map(|i| i + 1);
    let target = match (cb.rollback, live) {
        (false, _) => None,
        (true, Some(i)) => Some(svc.deployments.remove(i)),
        (true, None) => {
            svc.history.iter().position(|d| d.rollout_state == RolloutState::Completed).map(|i| svc.history.remove(i))
        }
    };
    let Some(mut target) = target else {
        let p = &mut svc.deployments[0];
        p.deployment_status =
            if cb.rollback { ServiceDeploymentStatus::RollbackFailed } else { ServiceDeploymentStatus::Stopped };
        p.status_reason = Some(p.rollout_state_reason.clone());
        p.finished_at = Some(now);
        return;
    };
    let reason = format!("ECS deployment circuit breaker: rolling back to deploymentId {}.", target.id);
    {
        let p = &mut svc.deployments[0];
        p.status = DeploymentStatus::Active;
        p.deployment_status = ServiceDeploymentStatus::RollbackInProgress;
        p.status_reason = Some("ECS deployment circuit breaker: tasks failed to start.".into());
        p.rollback = Some(model::ecs::service::Rollback {
            reason: reason.clone(),
            started_at: now,
            revision_id: target.revision.id.clone(),
        });
    }
    target.status = DeploymentStatus::Primary;
    target.rollout_state = RolloutState::InProgress;
    target.rollout_state_reason = reason;
    target.desired_count = svc.desired_count;
    target.failed_tasks = 0;
    target.updated_at = now;
    target.finished_at = None;
    let target_id = target.id.clone();
    svc.deployments.insert(0, target);
    svc.throttle = Default::default();
    let id = pass.event_id();
    svc.record(id, now, events::rolling_back(&svc.name, &target_id));
    // Deployment indexes moved: renumber the members.
    for m in tasks.iter_mut() {
        m.deployment = svc.deployments.iter().position(|d| Some(d.id.as_str()) == m.task.started_by.as_deref());
    }
}

/// Whether the primary deployment may launch tasks now.
fn may_launch(pass: &Pass<'_>, svc: &Service) -> bool {
    let failed = svc.deployments.first().is_none_or(|p| p.rollout_state == RolloutState::Failed);
    let throttled = svc.throttle.next_launch_at.is_some_and(|t| t.epoch_seconds() > pass.now.epoch_seconds());
    !failed && !throttled
}

/// REPLICA: keep `desiredCount` tasks of the primary deployment on ACTIVE instances.
fn replica(pass: &mut Pass<'_>, svc: &mut Service, tasks: &mut [Member]) {
    let desired = svc.desired_count;
    if let Some(p) = svc.deployments.first_mut() {
        if p.desired_count != desired {
            p.desired_count = desired;
            p.updated_at = pass.now;
        }
    }
    let bounds = svc.settings.deployment_config.bounds(desired);
    let keep: Vec<usize> = (0..tasks.len())
        .filter(|&i| tasks[i].active() && tasks[i].deployment == Some(0) && !tasks[i].draining)
        .collect();
    let excess = keep.len().saturating_sub(desired as usize);
    let excess_set: HashSet<usize> = scale_in_order(pass, svc, tasks, &keep).into_iter().take(excess).collect();
    let kept = keep.len() - excess;

    let outgoing: Vec<usize> = (0..tasks.len())
        .filter(|&i| {
            let m = &tasks[i];
            m.active() && (m.deployment != Some(0) || m.draining || excess_set.contains(&i))
        })
        .collect();
    let stopped = stop_outgoing(pass, svc, tasks, &outgoing, bounds.lower);

    let live = tasks.iter().filter(|m| m.live()).count();
    let need = (desired as usize).saturating_sub(kept);
    let room = (bounds.upper as usize).saturating_sub(live);
    let mut started = 0;
    if need > 0 && room > 0 && may_launch(pass, svc) {
        started = launch(pass, svc, need.min(room), None);
    }
    let in_transit = tasks.iter().any(|m| m.pending() || (m.live() && !m.active()));
    if need > 0 && room == 0 && stopped == 0 && started == 0 && !in_transit && !outgoing.is_empty() {
        let id = pass.event_id();
        svc.record_problem(id, pass.now, events::stuck(&svc.name));
    }
}

/// DAEMON: one task of the primary deployment on every ACTIVE instance that satisfies
/// the placement constraints, and none elsewhere.
fn daemon(pass: &mut Pass<'_>, svc: &mut Service, tasks: &mut [Member]) {
    let Some(td) = primary_task_definition(pass.state, svc) else { return };
    let eligible = eligible_instances(pass, svc, &td);
    let desired = eligible.len() as u32;
    if svc.desired_count != desired {
        svc.desired_count = desired;
    }
    if let Some(p) = svc.deployments.first_mut() {
        if p.desired_count != desired {
            p.desired_count = desired;
            p.updated_at = pass.now;
        }
    }
    let bounds = svc.settings.deployment_config.bounds(desired);
    // The oldest primary task on each eligible instance stays; every other active task goes.
    let mut covered: HashSet<String> = HashSet::new();
    let mut order: Vec<usize> = (0..tasks.len()).filter(|&i| tasks[i].active()).collect();
    order.sort_by(|&a, &b| {
        tasks[a].task.created_at.epoch_seconds().total_cmp(&tasks[b].task.created_at.epoch_seconds())
    });
    let mut outgoing = Vec::new();
    for i in order {
        let m = &tasks[i];
        let instance = m.instance().cloned().unwrap_or_default();
        if m.deployment == Some(0) && eligible.contains(&instance) && covered.insert(instance) {
            continue;
        }
        outgoing.push(i);
    }
    stop_outgoing(pass, svc, tasks, &outgoing, bounds.lower);

    let live = tasks.iter().filter(|m| m.live()).count();
    let mut room = (bounds.upper as usize).saturating_sub(live);
    if !may_launch(pass, svc) {
        return;
    }
    for instance in &eligible {
        if room == 0 {
            break;
        }
        // Wait until an outgoing task on the instance has stopped: it may hold the
        // resources and ports the new one needs.
        let busy = tasks.iter().any(|m| m.live() && m.instance().map(String::as_str) == Some(instance.as_str()));
        if covered.contains(instance) || busy {
            continue;
        }
        room -= launch(pass, svc, 1, Some(instance));
    }
}

/// Stops outgoing tasks: those that are not healthy at once, healthy ones while more than
/// `lower` healthy tasks remain. Returns how many were stopped.
fn stop_outgoing(
    pass: &mut Pass<'_>,
    svc: &mut Service,
    tasks: &mut [Member],
    outgoing: &[usize],
    lower: u32,
) -> usize {
    let healthy = tasks.iter().filter(|m| m.healthy()).count();
    let mut budget = healthy.saturating_sub(lower as usize);
    // Unhealthy first, then older deployments first (they sit later in the list).
    let mut order = outgoing.to_vec();
    order.sort_by_key(|&i| (tasks[i].healthy(), std::cmp::Reverse(tasks[i].deployment.unwrap_or(usize::MAX))));
    let mut ids = Vec::new();
    for i in order {
        if tasks[i].healthy() {
            if budget == 0 {
                continue;
            }
            budget -= 1;
        }
        let reason = if tasks[i].draining {
            "Container instance is draining; the service replaced the task"
        } else if tasks[i].deployment == Some(0) {
            "Scaling activity initiated by (deployment) the service scheduler"
        } else {
            "Scaling activity initiated by (deployment) a newer deployment of the service"
        };
        pass.stop_member(&mut tasks[i], reason);
        svc.tracked.remove(&tasks[i].task.id);
        ids.push(tasks[i].task.id.clone());
    }
    if !ids.is_empty() {
        let draining = ids.iter().filter(|id| tasks.iter().any(|m| &m.task.id == *id && m.deactivating())).count();
        let id = pass.event_id();
        svc.record(id, pass.now, events::stopped(&svc.name, &ids));
        if draining > 0 {
            let id = pass.event_id();
            svc.record(id, pass.now, events::draining(&svc.name, draining));
        }
    }
    ids.len()
}

/// The order in which kept tasks are removed when there are too many: tasks not yet
/// healthy first, then as the service's first placement strategy would rebalance (spread:
/// from the fullest zone or instance; binpack: from the emptiest instance; random).
fn scale_in_order(pass: &mut Pass<'_>, svc: &Service, tasks: &[Member], keep: &[usize]) -> Vec<usize> {
    if keep.len() <= svc.desired_count as usize {
        return Vec::new();
    }
    let strategies = strategies(svc);
    let views = cluster_views(pass.agents, pass.state, &svc.scope, &svc.cluster);
    let mut left: Vec<usize> = keep.to_vec();
    let mut out = Vec::new();
    while !left.is_empty() {
        let count_by = |f: &dyn Fn(&Member) -> Option<String>, left: &[usize], m: &Member| {
            let v = f(m);
            left.iter().filter(|&&j| f(&tasks[j]) == v).count() as i64
        };
        let mut best: Option<(usize, (bool, i64, i64, u64))> = None;
        for (pos, &i) in left.iter().enumerate() {
            let m = &tasks[i];
            let (k1, k2) = match strategies.first() {
                Some(scheduler::Strategy::Binpack(field)) => {
                    let v = m.instance().and_then(|id| views.get(id));
                    let rem = v.map_or(0, |v| match field {
                        scheduler::BinpackField::Cpu => v.remaining.cpu,
                        scheduler::BinpackField::Memory => v.remaining.memory,
                    });
                    (rem, 0)
                }
                Some(scheduler::Strategy::Random) => (0, 0),
                Some(scheduler::Strategy::Spread(scheduler::SpreadField::Attribute(a))) => {
                    let attr = |m: &Member| -> Option<String> {
                        let v = m.instance().and_then(|id| views.get(id))?;
                        placement_instance(v).attributes.get(a.as_str()).cloned().flatten()
                    };
                    (count_by(&attr, &left, m), count_by(&|m: &Member| m.instance().cloned(), &left, m))
                }
                Some(scheduler::Strategy::Spread(scheduler::SpreadField::InstanceId)) | None => {
                    (count_by(&|m: &Member| m.instance().cloned(), &left, m), 0)
                }
            };
            let key = (!m.healthy(), k1, k2, pass.rng.gen::<u64>());
            if best.as_ref().is_none_or(|(_, b)| key > *b) {
                best = Some((pos, key));
            }
        }
        let Some((pos, _)) = best else { break };
        out.push(left.remove(pos));
    }
    out
}

/// The service's placement strategies, or ECS's default for services: spread over
/// availability zones, then over instances.
fn strategies(svc: &Service) -> Vec<scheduler::Strategy> {
    let given: Vec<scheduler::Strategy> = svc
        .settings
        .placement_strategy
        .iter()
        .filter_map(|s| {
            scheduler::parse_strategy(s.type_.map(|t| t.as_str()).unwrap_or_default(), s.field.as_deref()).ok()
        })
        .collect();
    if given.is_empty() && svc.settings.scheduling_strategy == SchedulingStrategy::Replica {
        let mut d = scheduler::Strategy::service_default();
        d.push(scheduler::Strategy::Spread(scheduler::SpreadField::InstanceId));
        return d;
    }
    given
}

/// The service's constraints and its task definition's `memberOf` constraints.
fn constraints(svc: &Service, td: &TaskDefinition) -> Vec<scheduler::Constraint> {
    let from_service = svc.settings.placement_constraints.iter().filter_map(|c| {
        scheduler::parse_constraint(c.type_.map(|t| t.as_str()).unwrap_or_default(), c.expression.as_deref()).ok()
    });
    let from_td = td
        .spec
        .doc
        .placement_constraints
        .iter()
        .flatten()
        .filter(|c| c.type_ == Some(TaskDefinitionPlacementConstraintType::MemberOf))
        .filter_map(|c| scheduler::parse_constraint("memberOf", c.expression.as_deref()).ok());
    from_service.chain(from_td).collect()
}

fn primary_task_definition(state: &State, svc: &Service) -> Option<Arc<TaskDefinition>> {
    let r = &svc.deployments.first()?.revision;
    state.task_definitions.get(&(svc.scope.clone(), r.family.clone(), r.revision)).cloned()
}

/// Instance ids (in the cluster) that a DAEMON service runs on: ACTIVE, not lost, with
/// the attributes the task definition requires and satisfying every `memberOf`.
fn eligible_instances(pass: &Pass<'_>, svc: &Service, td: &TaskDefinition) -> Vec<String> {
    let constraints = constraints(svc, td);
    let views = cluster_views(pass.agents, pass.state, &svc.scope, &svc.cluster);
    let mut out: Vec<String> = views
        .values()
        .filter(|v| v.instance.status == InstanceStatus::Active && !pass.lost.contains(&v.instance.arn().to_string()))
        .filter(|v| {
            let i = placement_instance(v);
            td.spec.requires_attributes.iter().all(|a| i.attributes.contains_key(a))
                && constraints.iter().all(|c| match c {
                    scheduler::Constraint::MemberOf(e) => scheduler::eval(e, &i),
                    scheduler::Constraint::DistinctInstance => true,
                })
        })
        .map(|v| v.instance.id.clone())
        .collect();
    out.sort();
    out
}

/// Places and creates up to `count` tasks of the primary deployment (on `only` if given);
/// records the events; returns how many started.
fn launch(pass: &mut Pass<'_>, svc: &mut Service, count: usize, only: Option<&str>) -> usize {
    let Some(td) = primary_task_definition(pass.state, svc) else { return 0 };
    let Some(primary) = svc.deployments.first() else { return 0 };
    let deployment_id = primary.id.clone();
    let rev = primary.revision.clone();
    let network = Network::of(&svc.scope, pass.network);
    let on_fargate = fargate::on_fargate(rev.launch_type.as_deref(), &rev.capacity_provider_strategy);
    let awsvpc = td.spec.network_mode() == model::ecs::shapes::NetworkMode::Awsvpc;
    let vpc =
        match awsvpc::check(pass.state, &svc.scope, &network, rev.network_configuration.as_ref(), awsvpc, on_fargate) {
            Ok(v) => v,
            Err(e) => {
                // The network configuration was valid when given; a security group deleted
                // since makes it invalid.
                let id = pass.event_id();
                svc.record_problem(id, pass.now, events::unable_to_place_reason(&svc.name, &e.to_string()));
                return 0;
            }
        };
    if let Err(e) = super::super::task_roles::check(pass.state, &svc.scope, &td, None) {
        let id = pass.event_id();
        let message = format!("(service {}) failed to launch a task with (error {e}).", svc.name);
        svc.record_problem(id, pass.now, message);
        return 0;
    }
    let group = svc.task_group();
    let (constraints, strategies) =
        if on_fargate || only.is_some() { (Vec::new(), Vec::new()) } else { (constraints(svc, &td), strategies(svc)) };
    let hosts = if on_fargate {
        let running = running_by_provider(pass.state, svc, &group);
        Hosts::Fargate { strategy: &rev.capacity_provider_strategy, running }
    } else {
        let candidates = launch::live_instances(pass.state, &svc.scope, &svc.cluster)
            .into_iter()
            .filter(|i| only.is_none_or(|id| i.id == id))
            .collect();
        Hosts::Scheduled {
            candidates,
            whole_cluster: only.is_none(),
            constraints: &constraints,
            strategies: &strategies,
        }
    };
    let order = Launch {
        scope: &svc.scope,
        cluster: &svc.cluster,
        td: &td,
        count,
        hosts,
        network: vpc.as_ref(),
        overrides: None,
        group,
        started_by: Some(deployment_id),
        tags: task_tags(svc, &td),
        on_no_address: NoAddress::Stop,
        now: pass.now,
    };
    let launched = launch::launch((pass.agents, pass.placements), pass.state, &order, &mut pass.rng);
    pass.touched.extend(launched.touched);
    pass.changed.extend(launched.tasks.iter().cloned());
    let ids: Vec<String> = launched.tasks.iter().map(|t| t.id.clone()).collect();
    let no_address = launched.no_address.into_iter().next().and_then(|f| f.detail);
    record_started(pass, svc, &ids, no_address);
    if on_fargate {
        if !launched.unplaced.is_empty() {
            let id = pass.event_id();
            let message = events::unable_to_place_reason(&svc.name, fargate::CAPACITY_UNAVAILABLE);
            svc.record_problem(id, pass.now, message);
        }
    } else if ids.len() < count {
        let closest = launched.unplaced.first().map(|f| {
            let id = f.arn.rsplit('/').next().unwrap_or(&f.arn).to_string();
            (id, f.reason.clone())
        });
        let message = events::unable_to_place(&svc.name, closest.as_ref().map(|(i, r)| (i.as_str(), r.as_str())));
        let id = pass.event_id();
        svc.record_problem(id, pass.now, message);
    }
    ids.len()
}

/// How many live tasks of the service each capacity provider runs.
fn running_by_provider(state: &State, svc: &Service, group: &str) -> HashMap<String, usize> {
    let mut by_provider: HashMap<String, usize> = HashMap::new();
    for t in state.group_tasks(&svc.scope, &svc.cluster, group).filter(|t| t.holds_resources()) {
        if let Some(p) = &t.capacity_provider {
            *by_provider.entry(p.clone()).or_default() += 1;
        }
    }
    by_provider
}

/// The tags of the service's new tasks: propagated from the service or the task
/// definition, and ECS's managed tags if enabled.
fn task_tags(svc: &Service, td: &TaskDefinition) -> Tags {
    let mut tags = match svc.settings.propagate_tags {
        Some(PropagateTags::Service) => svc.tags.clone(),
        Some(PropagateTags::TaskDefinition) => td.tags.clone(),
        _ => Tags::default(),
    };
    if svc.settings.enable_ecs_managed_tags {
        launch::add_managed_tags(&mut tags, &svc.cluster, Some(svc.name.as_str()));
    }
    tags
}

/// Tracks the tasks just started and says so, or why the last could not have an address
/// (its subnets had none left).
fn record_started(pass: &mut Pass<'_>, svc: &mut Service, ids: &[String], no_address: Option<String>) {
    if let Some(reason) = no_address {
        let id = pass.event_id();
        svc.record_problem(id, pass.now, events::unable_to_place_reason(&svc.name, &reason));
    }
    for id in ids {
        svc.tracked.insert(id.clone());
    }
    if !ids.is_empty() {
        let id = pass.event_id();
        svc.record(id, pass.now, events::started(&svc.name, ids));
        // A placement problem is resolved once tasks place again.
        svc.last_problem = None;
    }
}

/// Deployment counts, retirement of drained deployments, completion, and steady state.
fn bookkeeping(pass: &mut Pass<'_>, svc: &mut Service, tasks: &[Member]) {
    let (now, seen) = (pass.now, pass.seen);
    // Older deployments keep what they still run; once empty they are finished.
    let mut i = 1;
    while i < svc.deployments.len() {
        let id = svc.deployments[i].id.clone();
        let mine = |m: &&Member| m.task.started_by.as_deref() == Some(id.as_str());
        let active = tasks.iter().filter(mine).filter(|m| m.active()).count() as u32;
        let live = tasks.iter().filter(mine).filter(|m| m.live()).count();
        let d = &mut svc.deployments[i];
        if d.status != DeploymentStatus::Active {
            d.status = DeploymentStatus::Active;
        }
        if d.desired_count != active {
            d.desired_count = active;
            d.updated_at = now;
        }
        if live == 0 {
            let d = svc.deployments.remove(i);
            svc.retire(d, now);
        } else {
            i += 1;
        }
    }
    let desired = svc.desired_count as usize;
    // A deployment completes only once its tasks have stayed up past STARTED_AFTER_SECONDS:
    // a crash-looping revision's tasks are each RUNNING for an instant, and completing then
    // would leave the circuit breaker nothing to fail (or roll back) once they exit.
    let primary_healthy = tasks
        .iter()
        .filter(|m| {
            m.deployment == Some(0) && m.healthy() && !m.draining && m.started_for(now, seen, STARTED_AFTER_SECONDS)
        })
        .count();
    let live = tasks.iter().filter(|m| m.live()).count();
    let settled = primary_healthy == desired && live == desired && svc.deployments.len() == 1;
    let Some(p) = svc.deployments.first_mut() else { return };
    if p.rollout_state == RolloutState::InProgress && settled {
        p.rollout_state = RolloutState::Completed;
        p.rollout_state_reason = format!("ECS deployment {} completed.", p.id);
        if p.deployment_status == ServiceDeploymentStatus::InProgress {
            p.deployment_status = ServiceDeploymentStatus::Successful;
        }
        p.finished_at = Some(now);
        p.updated_at = now;
        let (dep_id, revision) = (p.id.clone(), p.revision.id.clone());
        // A circuit-breaker rollback to this revision has succeeded.
        for d in svc.history.iter_mut().chain(svc.deployments.iter_mut()) {
            let rolled_back_here = d.rollback.as_ref().is_some_and(|r| r.revision_id == revision);
            if rolled_back_here && d.deployment_status == ServiceDeploymentStatus::RollbackInProgress {
                d.deployment_status = ServiceDeploymentStatus::RollbackSuccessful;
                d.finished_at = Some(now);
            }
        }
        let id = pass.event_id();
        svc.record(id, now, events::deployment_completed(&svc.name, &dep_id));
    }
    let steady = settled
        && svc.deployments.first().is_some_and(|p| p.rollout_state == RolloutState::Completed)
        && tasks.iter().filter(|m| m.active()).all(Member::healthy);
    if !steady {
        svc.steady_reported_at = None;
        return;
    }
    let due = svc
        .steady_reported_at
        .is_none_or(|at| now.epoch_seconds() - at.epoch_seconds() >= model::ecs::service::REPEAT_PROBLEM_AFTER_SECONDS);
    if due {
        svc.steady_reported_at = Some(now);
        let id = pass.event_id();
        svc.record(id, now, events::steady(&svc.name));
    }
}

/// When this replica's controller first asked how long each task has run (its monotonic
/// clock, in memory). A task's age is its agent's `startedAt` against the leader's clock;
/// a start time in the leader's future says the two clocks disagree (the leader's is
/// behind), and then the time since the leader first saw the task running stands in, so
/// that a deployment completes and a grace period ends after the time it names rather than
/// after the skew. After a failover the new leader counts afresh, which only ever
/// lengthens such a wait. A leader whose clock is ahead cannot tell: its ages are longer
/// by the skew.
#[derive(Debug, Default)]
pub(crate) struct SeenRunning {
    since: std::sync::Mutex<HashMap<String, Instant>>,
}

impl SeenRunning {
    /// Seconds since the task `id` was first asked about.
    fn seconds(&self, id: &str) -> f64 {
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        since.entry(id.to_string()).or_insert_with(Instant::now).elapsed().as_secs_f64()
    }

    /// Forgets tasks that are gone, once there are more entries than the state has tasks.
    fn prune(&self, state: &State) {
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        if since.len() > 2 * state.tasks().len() + 1024 {
            let live: HashSet<&str> = state.tasks().values().map(|t| t.id.as_str()).collect();
            since.retain(|id, _| live.contains(id.as_str()));
        }
    }
}

/// Remembers since when each instance's agent has been disconnected, to tell a brief
/// disconnection from a lost instance. In memory only: after a restart every agent gets
/// a fresh grace period to reconnect.
#[derive(Debug, Default)]
pub(crate) struct LostInstances {
    since: HashMap<String, Instant>,
}

impl LostInstances {
    /// The ARNs of instances whose agent has been away longer than `grace`.
    pub(crate) fn update(&mut self, state: &State, agents: &Agents, grace: Duration) -> HashSet<String> {
        let now = Instant::now();
        let mut seen = HashSet::new();
        let mut lost = HashSet::new();
        for i in state.instances.values().filter(|i| i.status != InstanceStatus::Inactive) {
            let arn = i.arn().to_string();
            if agents.connected(&arn) {
                continue;
            }
            let since = *self.since.entry(arn.clone()).or_insert(now);
            if now.duration_since(since) > grace {
                lost.insert(arn.clone());
            }
            seen.insert(arn);
        }
        self.since.retain(|arn, _| seen.contains(arn));
        lost
    }
}

impl ControlPlane {
    /// One pass of the service controller over every service, as its loop makes them, with
    /// every connected agent counted as present (for `examples/controller_pass.rs`).
    pub async fn service_controller_pass(&self) -> crate::Result<()> {
        self.services_pass(&mut LostInstances::default()).await
    }

    /// Wakes the service controller.
    pub(crate) fn wake_services(&self) {
        self.services_wake.notify_one();
    }

    /// Runs the service controller until `shutdown` completes: a pass whenever something
    /// it reacts to changes, and at least every second.
    pub async fn run_service_controller(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut lost = LostInstances::default();
        loop {
            if let Err(e) = self.services_pass(&mut lost).await {
                tracing::warn!(error = %e, "service controller pass failed; retrying");
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.services_wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// One pass over every service.
    pub(crate) async fn services_pass(&self, lost: &mut LostInstances) -> crate::Result<()> {
        let view = self.view();
        let lost = Arc::new(lost.update(&view, &self.agents, self.lost_instance_grace));
        let health = Arc::new(targets::read_board(&self.elb.board));
        let network = Arc::new(self.elb.network_config());
        let grace = self.lost_instance_grace;
        let seen = self.services_seen.clone();
        seen.prune(&view);
        // The dry run: which services would change? Settled ones are not asked again
        // (see `settled`).
        let mut scratch = (*view).clone();
        let by_id = instances_by_id(&view);
        let seed: u64 = rand::thread_rng().gen();
        let mut work = Vec::new();
        {
            let mut settled = self.services_settled.lock().unwrap_or_else(|p| p.into_inner());
            settled.begin(&view, &lost, &health);
            let now = Timestamp::now();
            for (k, svc) in view.services.iter() {
                if svc.status == ServiceStatus::Inactive || settled.holds(&view, k, svc, now) {
                    continue;
                }
                let facts = Facts {
                    agents: &self.agents,
                    placements: &self.placements,
                    lost: &lost,
                    grace,
                    seen: &seen,
                    health: &health,
                    network: &network,
                    instances: &by_id,
                };
                let mut pass = Pass::new(&mut scratch, now, facts, seed);
                reconcile(&mut pass, k);
                if pass.touched.is_empty() {
                    settled.record(&view, k);
                } else {
                    settled.forget(k);
                    work.push(k.clone());
                }
            }
            settled.prune(&view);
        }
        if work.is_empty() {
            return Ok(());
        }
        let agents = self.agents.clone();
        let placements = self.placements.clone();
        let seed: u64 = rand::thread_rng().gen();
        let (changed, targets_changed) = self
            .write(move |txn| {
                let by_id = instances_by_id(txn.state);
                let facts = Facts {
                    agents: &agents,
                    placements: &placements,
                    lost: &lost,
                    grace,
                    seen: &seen,
                    health: &health,
                    network: &network,
                    instances: &by_id,
                };
                let mut pass = Pass::new(txn.state, txn.now, facts, seed);
                for k in &work {
                    reconcile(&mut pass, k);
                }
                let Pass { touched, changed, .. } = pass;
                let targets_changed = touched.iter().any(|t| matches!(t, Touched::Elb(_)));
                for t in touched {
                    txn.touch(t);
                }
                Ok((changed, targets_changed))
            })
            .await?;
        if targets_changed {
            self.elb.changed.notify_one();
        }
        self.ecs().push_tasks(&changed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The controller against the real writer and store, with simulated agents: at every
    //! step of a rolling deployment the limits hold, and the deployment completes.

    use super::*;
    use crate::ecs::instances::NewInstance;
    use crate::ecs::services::{ServiceSpec, ServiceUpdate};
    use crate::Caller;
    use agent_protocol::TaskReport;
    use model::ecs::shapes as w;
    use model::ecs::task::Resources;
    use model::{AccountId, Region, Scope};
    use rand::seq::SliceRandom;

    struct World {
        cp: Arc<ControlPlane>,
        caller: Caller,
        _links: Vec<tokio::sync::mpsc::UnboundedReceiver<agent_protocol::ToAgent>>,
        _dir: tempfile::TempDir,
    }

    async fn world(instances: usize) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(store::SqliteStore::open(&dir.path().join("db")).unwrap());
        let cp = Arc::new(ControlPlane::open(store).unwrap());
        let scope =
            Scope { account: AccountId::parse("123456789012").unwrap(), region: Region::parse("us-east-1").unwrap() };
        let caller = Caller::root(scope);
        let mut links = Vec::new();
        for i in 0..instances {
            let zone = format!("us-east-1{}", ["a", "b", "c"][i % 3]);
            let inst = cp
                .ecs()
                .register_container_instance(
                    &caller,
                    NewInstance {
                        resources: Resources { cpu: 4096, memory: 8192, ..Default::default() },
                        attributes: vec![("ecs.availability-zone".into(), Some(zone))],
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            links.push(cp.agents.attach(&inst.arn().to_string()).1);
        }
        for command in ["one", "two"] {
            let td = serde_json::json!({
                "family": "web",
                "containerDefinitions": [{"name": "web", "image": "simplehttp", "memory": 32, "command": [command]}],
            });
            let td = model::ecs::NewTaskDefinition::parse(serde_json::from_value(td).unwrap()).unwrap();
            cp.ecs().register_task_definition(&caller, td).await.unwrap();
        }
        World { cp, caller, _links: links, _dir: dir }
    }

    fn tasks_of(w: &World) -> Vec<Task> {
        let view = w.cp.view();
        view.tasks().values().filter(|t| t.group == "service:web").map(|t| t.as_ref().clone()).collect()
    }

    /// A report of `status`; a task reported RUNNING started long enough ago to count as
    /// started (the passes here follow one another far quicker than real tasks run).
    fn report(t: &Task, status: TaskStatus, now: Timestamp) -> TaskReport {
        let started = Timestamp::from_epoch_seconds(now.epoch_seconds() - STARTED_AFTER_SECONDS);
        TaskReport {
            started_at: (status >= TaskStatus::Running).then_some(started),
            ..TaskReport::new(t.arn().to_string(), status)
        }
    }

    /// The agents do some of what they were told: start pending tasks, stop stopping ones.
    async fn agents_act(w: &World, rng: &mut StdRng) {
        let mut todo: Vec<(Task, TaskStatus)> = tasks_of(w)
            .into_iter()
            .filter_map(|t| match (t.desired_status, t.last_status) {
                (DesiredStatus::Running, s) if s < TaskStatus::Running => Some((t, TaskStatus::Running)),
                (DesiredStatus::Stopped, s) if s < TaskStatus::Stopped => Some((t, TaskStatus::Stopped)),
                _ => None,
            })
            .collect();
        todo.shuffle(rng);
        let n = todo.len().div_ceil(2);
        for (t, status) in todo.into_iter().take(n) {
            let instance = container_instance_arn(&t.scope, &t.cluster, t.container_instance.as_deref().unwrap());
            w.cp.ecs()
                .report_task_state(&w.caller.scope, &instance.to_string(), report(&t, status, Timestamp::now()))
                .await
                .unwrap();
        }
    }

    async fn pass(w: &World, lost: &mut LostInstances) {
        w.cp.services_pass(lost).await.unwrap();
        w.cp.view().check_indexes();
    }

    fn service(w: &World) -> Arc<Service> {
        w.cp.view().services.values().next().unwrap().clone()
    }

    fn steady(s: &Service) -> bool {
        s.deployments.len() == 1 && s.deployments[0].rollout_state == RolloutState::Completed
    }

    /// Drives the service to its steady state, the agents doing all they are told.
    async fn until_steady(w: &World, lost: &mut LostInstances, rng: &mut StdRng) {
        for _ in 0..50 {
            pass(w, lost).await;
            if steady(&service(w)) && tasks_of(w).iter().all(|t| t.last_status != TaskStatus::Pending) {
                pass(w, lost).await;
                return;
            }
            agents_act(w, rng).await;
        }
        panic!("the service did not reach its steady state: {:?}", service(w));
    }

    fn running(w: &World) -> Vec<Task> {
        tasks_of(w).into_iter().filter(|t| t.last_status == TaskStatus::Running).collect()
    }

    #[tokio::test]
    async fn a_steady_service_is_skipped_until_its_tasks_or_instances_change() {
        let w = world(3).await;
        let mut lost = LostInstances::default();
        let mut rng = StdRng::seed_from_u64(7);
        let req = ServiceSpec {
            name: "web".into(),
            task_definition: Some("web:1".into()),
            desired_count: Some(3),
            ..Default::default()
        };
        w.cp.ecs().create_service(&w.caller, req).await.unwrap();
        until_steady(&w, &mut lost, &mut rng).await;
        assert_eq!(w.cp.services_settled.lock().unwrap().len(), 1, "steady, so settled");
        let before = w.cp.view();
        pass(&w, &mut lost).await;
        assert!(Arc::ptr_eq(&before, &w.cp.view()), "a settled service's pass wrote");

        // A task exits on its own: the service is looked at again and replaces it.
        let gone = running(&w).remove(0);
        let instance = container_instance_arn(&gone.scope, &gone.cluster, gone.container_instance.as_deref().unwrap());
        let exited = TaskReport {
            stop_code: Some(StopCode::EssentialContainerExited),
            ..report(&gone, TaskStatus::Stopped, Timestamp::now())
        };
        w.cp.ecs().report_task_state(&w.caller.scope, &instance.to_string(), exited).await.unwrap();
        pass(&w, &mut lost).await;
        let live = tasks_of(&w).into_iter().filter(|t| t.last_status != TaskStatus::Stopped).count();
        assert_eq!(live, 3, "the exited task was replaced");
        until_steady(&w, &mut lost, &mut rng).await;
        assert_eq!(w.cp.services_settled.lock().unwrap().len(), 1);

        // An instance is drained: its tasks move, although nothing of the service changed.
        let on = running(&w).remove(0).container_instance.unwrap();
        w.cp.ecs()
            .update_container_instances_state(&w.caller, None, vec![on.clone()], InstanceStatus::Draining)
            .await
            .unwrap();
        pass(&w, &mut lost).await;
        // Replacements start first (the default limits keep 100% healthy meanwhile).
        let live = tasks_of(&w).into_iter().filter(|t| t.last_status != TaskStatus::Stopped).count();
        assert!(live > 3, "the draining instance's tasks are being replaced: {live} live");
        let moved = |w: &World| {
            let live: Vec<Task> = tasks_of(w).into_iter().filter(|t| t.last_status != TaskStatus::Stopped).collect();
            live.len() == 3 && live.iter().all(|t| t.container_instance.as_deref() != Some(&on))
        };
        for _ in 0..50 {
            if moved(&w) {
                break;
            }
            agents_act(&w, &mut rng).await;
            pass(&w, &mut lost).await;
        }
        assert!(moved(&w), "the tasks left the draining instance: {:?}", tasks_of(&w));
        until_steady(&w, &mut lost, &mut rng).await;

        // The service updated: a new deployment starts at once.
        let update = ServiceUpdate { service: "web".into(), desired_count: Some(4), ..Default::default() };
        w.cp.ecs().update_service(&w.caller, update).await.unwrap();
        pass(&w, &mut lost).await;
        let live = tasks_of(&w).into_iter().filter(|t| t.last_status != TaskStatus::Stopped).count();
        assert_eq!(live, 4, "scaled out");
    }

    #[tokio::test]
    async fn a_rolling_deployment_stays_within_its_limits_at_every_step() {
        for seed in 0..4u64 {
            let w = world(3).await;
            let mut lost = LostInstances::default();
            let mut rng = StdRng::seed_from_u64(seed);
            let config = w::DeploymentConfiguration {
                minimum_healthy_percent: Some(50),
                maximum_percent: Some(150),
                ..Default::default()
            };
            let req = ServiceSpec {
                name: "web".into(),
                task_definition: Some("web:1".into()),
                desired_count: Some(6),
                deployment_configuration: Some(config),
                ..Default::default()
            };
            w.cp.ecs().create_service(&w.caller, req).await.unwrap();
            for _ in 0..50 {
                pass(&w, &mut lost).await;
                if steady(&service(&w)) {
                    break;
                }
                agents_act(&w, &mut rng).await;
            }
            assert!(steady(&service(&w)), "seed {seed}: the first deployment completed");
            let zones: BTreeMap<String, usize> = tasks_of(&w).iter().fold(BTreeMap::new(), |mut m, t| {
                *m.entry(t.container_instance.clone().unwrap()).or_default() += 1;
                m
            });
            assert_eq!(zones.values().copied().collect::<Vec<_>>(), vec![2, 2, 2], "seed {seed}: spread evenly");

            let update =
                ServiceUpdate { service: "web".into(), task_definition: Some("web:2".into()), ..Default::default() };
            w.cp.ecs().update_service(&w.caller, update).await.unwrap();
            let mut steps = 0;
            loop {
                pass(&w, &mut lost).await;
                let tasks = tasks_of(&w);
                let healthy = tasks
                    .iter()
                    .filter(|t| t.desired_status == DesiredStatus::Running && t.last_status == TaskStatus::Running)
                    .count();
                let live = tasks.iter().filter(|t| t.last_status != TaskStatus::Stopped).count();
                assert!(healthy >= 3, "seed {seed} step {steps}: {healthy} healthy, below 50% of 6");
                assert!(live <= 9, "seed {seed} step {steps}: {live} live, above 150% of 6");
                let s = service(&w);
                if steady(&s) && s.deployments[0].revision.revision == 2 {
                    let running: Vec<_> = tasks.iter().filter(|t| t.last_status == TaskStatus::Running).collect();
                    assert_eq!(running.len(), 6);
                    assert!(running.iter().all(|t| t.revision == 2));
                    assert!(s.events.iter().any(|e| e.message.ends_with("has reached a steady state.")));
                    break;
                }
                steps += 1;
                assert!(steps < 200, "seed {seed}: the deployment did not complete");
                agents_act(&w, &mut rng).await;
            }
            // Nothing left to do: a further pass does not even write.
            let before = w.cp.view();
            pass(&w, &mut lost).await;
            assert!(Arc::ptr_eq(&before, &w.cp.view()), "seed {seed}: an idle pass wrote");
        }
    }
}
