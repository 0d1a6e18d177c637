//! Tasks: stopping, description, listing, and the state reported by agents. Starting
//! them is [`super::run_task`]'s (RunTask, StartTask) and `launch`'s.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::Rng;

use agent_protocol::{TaskAssignment, TaskReport};
use model::ecs::task::{ContainerStatus, DesiredStatus, InstanceStatus, StopCode, Task, TaskStatus};
use model::ids::ClusterName;
use model::{Arn, Scope};

use super::clusters::active_cluster;
use super::instances::find_instance;
use super::Failure;
use crate::ecs::Ecs;
use crate::error::{Error, Result};
use crate::state::State;
use crate::Caller;
use crate::Ops;
use crate::{Page, Txn};

/// A state change submitted through the API rather than the agent channel.
#[derive(Debug, Clone, Default)]
pub struct StateChange {
    pub status: Option<TaskStatus>,
    pub reason: Option<String>,
    pub containers: Vec<agent_protocol::ContainerReport>,
    pub pull_started_at: Option<model::Timestamp>,
    pub pull_stopped_at: Option<model::Timestamp>,
    pub execution_stopped_at: Option<model::Timestamp>,
}

/// Filters of ListTasks.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub container_instance: Option<String>,
    pub family: Option<String>,
    pub started_by: Option<String>,
    pub service_name: Option<String>,
    pub desired_status: Option<DesiredStatus>,
    pub launch_type: Option<String>,
}

pub(crate) fn random_hex(n: usize, rng: &mut impl Rng) -> String {
    (0..n).map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0')).collect()
}

pub(crate) fn uuid(rng: &mut impl Rng) -> String {
    let h = random_hex(32, rng);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Finds a task by ARN or id in a cluster.
pub fn find_task<'a>(state: &'a State, scope: &Scope, cluster: &ClusterName, r: &str) -> Option<&'a Arc<Task>> {
    let id = if r.starts_with("arn:") {
        let arn = Arn::parse(r).ok()?;
        if !arn.is_in(scope) {
            return None;
        }
        arn.resource.strip_prefix("task/")?.rsplit('/').next()?.to_string()
    } else {
        r.to_string()
    };
    state.tasks().get(&(scope.clone(), cluster.clone(), id))
}

/// The assignment an agent receives for a task.
pub(crate) fn assignment(state: &State, t: &Task) -> Option<TaskAssignment> {
    let td = state.task_definitions.get(&(t.scope.clone(), t.family.clone(), t.revision))?;
    Some(TaskAssignment {
        task_arn: t.arn().to_string(),
        cluster_arn: model::ecs::cluster_arn(&t.scope, &t.cluster).to_string(),
        family: t.family.to_string(),
        revision: t.revision,
        // A task the service scheduler is draining from its load balancer (DEACTIVATING)
        // keeps running until the drain is over; only then is the agent told to stop it.
        desired_status: if t.last_status == TaskStatus::Deactivating {
            DesiredStatus::Running
        } else {
            t.desired_status
        },
        stop_reason: t.stopped_reason.clone(),
        definition: td.spec.doc.clone(),
        overrides: t.overrides.clone(),
        network: t.eni.as_ref().and_then(|e| {
            Some(agent_protocol::AwsvpcNetwork {
                attachment_id: e.attachment_id.clone(),
                subnet_id: e.subnet_id.clone(),
                subnet_cidr: e.subnet_cidr.clone(),
                gateway: super::awsvpc::gateway(&e.subnet_cidr)?,
                private_ipv4_address: e.private_ipv4,
                mac_address: e.mac.clone(),
                docker_network: agent_protocol::docker_network_name(&e.subnet_id),
                // The inbound rules of its security groups, as they are now: the agent
                // installs them in the task's namespace before its containers start.
                ingress: Some(crate::ec2::security_groups::ingress_rules(
                    state,
                    &t.scope,
                    &e.vpc_cidr,
                    &e.security_groups,
                )),
            })
        }),
        container_arns: t.containers.iter().map(|c| (c.name.clone(), t.container_arn(c).to_string())).collect(),
        task_tags: t.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        instance_tags: t
            .container_instance
            .as_ref()
            .and_then(|id| state.instances.get(&(t.scope.clone(), t.cluster.clone(), id.clone())))
            .map(|i| i.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
            .unwrap_or_default(),
    })
}

/// A copy of the task named by `task` in the cluster, to change and store back.
fn task_to_change(state: &State, scope: &Scope, cluster: Option<&str>, task: &str) -> Result<Task> {
    let cluster = active_cluster(state, scope, cluster)?.name.clone();
    let t = find_task(state, scope, &cluster, task)
        .ok_or_else(|| Error::parameter("The referenced task was not found."))?;
    Ok(t.as_ref().clone())
}

fn insert_task(txn: &mut Txn<'_>, t: Task) {
    let touched = super::launch::put(txn.state, t);
    txn.touch(touched);
}

impl Ops<'_, Ecs> {
    /// Sends the current assignment of each task to its instance's agent.
    pub(crate) fn push_tasks(&self, tasks: &[Task]) {
        let state = self.view();
        let mut by_instance: BTreeMap<(String, Scope), Vec<TaskAssignment>> = BTreeMap::new();
        for t in tasks {
            let (Some(arn), Some(a)) = (t.host_arn(), assignment(&state, t)) else { continue };
            by_instance.entry((arn.to_string(), t.scope.clone())).or_default().push(a);
        }
        for ((arn, scope), assignments) in by_instance {
            // Credentials first: a container may ask for them as soon as it starts.
            self.send_credentials(&scope, &arn, &assignments);
            self.agents.push(&arn, assignments);
        }
    }

    /// Asks a task to stop: its desired status becomes STOPPED and its agent stops it.
    pub async fn stop_task(
        &self,
        caller: &Caller,
        cluster: Option<String>,
        task: String,
        reason: Option<String>,
    ) -> Result<Task> {
        if reason.as_ref().is_some_and(|r| r.len() > 255) {
            return Err(Error::parameter("reason must be at most 255 characters."));
        }
        let reason = reason.unwrap_or_else(|| "Task stopped by user".into());
        // A task that stops for another reason already keeps that one.
        self.stop_with(caller, cluster, task, |t| {
            t.stop_code.get_or_insert(StopCode::UserInitiated);
            t.stopped_reason.get_or_insert(reason);
            Ok(())
        })
        .await
    }

    /// Interrupts a FARGATE_SPOT task as Fargate reclaims Spot capacity, for testing how
    /// an application and its service cope: the task is told to stop (its containers get
    /// SIGTERM, then SIGKILL after their stop timeout, Fargate's two-minute warning when
    /// that is 120 s) with stop code `SpotInterruption`; a service replaces it.
    pub async fn interrupt_spot_task(&self, caller: &Caller, cluster: Option<String>, task: String) -> Result<Task> {
        self.stop_with(caller, cluster, task, |t| {
            if t.capacity_provider.as_deref() != Some("FARGATE_SPOT") {
                return Err(Error::parameter(
                    "Only tasks placed with the FARGATE_SPOT capacity provider can be interrupted.",
                ));
            }
            t.stop_code = Some(StopCode::SpotInterruption);
            t.stopped_reason = Some("Your Spot Task was interrupted.".into());
            Ok(())
        })
        .await
    }

    /// Tells a task to stop, with the code and reason `why` sets (or refuses); a task
    /// already told to stop is left as it is. Its agent is told at once, and a service
    /// that owns it replaces it.
    async fn stop_with(
        &self,
        caller: &Caller,
        cluster: Option<String>,
        task: String,
        why: impl FnOnce(&mut Task) -> Result<()> + Send + 'static,
    ) -> Result<Task> {
        let scope = caller.scope.clone();
        let t = self
            .write(move |txn| {
                let mut t = task_to_change(txn.state, &scope, cluster.as_deref(), &task)?;
                if t.desired_status == DesiredStatus::Stopped {
                    // Checked all the same: a refusal does not depend on timing.
                    let mut copy = t.clone();
                    why(&mut copy)?;
                    return Ok(t);
                }
                why(&mut t)?;
                t.desired_status = DesiredStatus::Stopped;
                t.stopping_at.get_or_insert(txn.now);
                t.version += 1;
                insert_task(txn, t.clone());
                Ok(t)
            })
            .await?;
        self.push_tasks(std::slice::from_ref(&t));
        self.wake_services();
        Ok(t)
    }

    pub fn describe_tasks(
        &self,
        caller: &Caller,
        cluster: Option<&str>,
        refs: &[String],
    ) -> Result<(Vec<Task>, Vec<Failure>)> {
        if refs.is_empty() || refs.len() > 100 {
            return Err(Error::parameter("Pass between 1 and 100 tasks."));
        }
        let state = self.view();
        let cluster = active_cluster(&state, &caller.scope, cluster)?.name.clone();
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for r in refs {
            match find_task(&state, &caller.scope, &cluster, r) {
                Some(t) => found.push(t.as_ref().clone()),
                None => failures.push(Failure { arn: r.clone(), reason: "MISSING".into(), detail: None }),
            }
        }
        Ok((found, failures))
    }

    /// Task ARNs of a cluster. Without a desired status filter, ECS lists RUNNING ones.
    pub fn list_tasks(
        &self,
        caller: &Caller,
        cluster: Option<&str>,
        f: &TaskFilter,
        page: &Page,
    ) -> Result<(Vec<String>, Option<String>)> {
        let state = self.view();
        let cluster = active_cluster(&state, &caller.scope, cluster)?.name.clone();
        let instance = match &f.container_instance {
            None => None,
            Some(r) => Some(
                find_instance(&state, &caller.scope, &cluster, r)
                    .ok_or_else(|| Error::parameter(format!("Container instance {r} was not found in the cluster.")))?
                    .id
                    .clone(),
            ),
        };
        let desired = f.desired_status.unwrap_or(DesiredStatus::Running);
        let items = state
            .cluster_tasks(&caller.scope, &cluster)
            .filter(|t| t.desired_status == desired)
            .filter(|t| instance.is_none() || t.container_instance == instance)
            .filter(|t| f.family.as_ref().is_none_or(|fam| t.family.as_str() == fam))
            .filter(|t| f.started_by.is_none() || t.started_by == f.started_by)
            .filter(|t| f.service_name.as_ref().is_none_or(|s| t.group == format!("service:{s}")))
            .filter(|t| f.launch_type.as_ref().is_none_or(|l| &t.launch_type == l))
            .map(|t| (t.id.clone(), t.arn().to_string()));
        Ok(page.take(items, false))
    }

    /// Applies a state report from the agent of `instance_arn`. An agent may only report
    /// tasks placed on its own instance.
    pub async fn report_task_state(&self, scope: &Scope, instance_arn: &str, report: TaskReport) -> Result<()> {
        let scope = scope.clone();
        let instance_arn = instance_arn.to_string();
        self.write(move |txn| {
            let arn = Arn::parse(&report.task_arn).map_err(Error::from)?;
            let rest = arn.resource.strip_prefix("task/").ok_or_else(|| Error::parameter("not a task ARN"))?;
            let (cluster, id) = rest.split_once('/').ok_or_else(|| Error::parameter("not a task ARN"))?;
            let cluster = ClusterName::parse(cluster)?;
            let Some(t) = txn.state.tasks().get(&(scope.clone(), cluster.clone(), id.to_string())) else {
                return Err(Error::parameter("The referenced task was not found."));
            };
            let owner = t.host_arn().map(|a| a.to_string()).unwrap_or_default();
            if owner != instance_arn {
                return Err(Error::parameter("The task does not belong to this container instance."));
            }
            let mut t = t.as_ref().clone();
            if apply_report(&mut t, &report, txn.now) {
                insert_task(txn, t);
            }
            Ok(())
        })
        .await?;
        // The service controller reacts at once to tasks that start, turn healthy or stop.
        self.wake_services();
        Ok(())
    }

    /// `SubmitTaskStateChange` / `SubmitContainerStateChange` from a client of the caller's
    /// account: the parts given are merged into what the task already reports, through the
    /// same rules as an agent's report.
    pub async fn submit_state_change(
        &self,
        caller: &Caller,
        cluster: Option<String>,
        task: String,
        change: StateChange,
    ) -> Result<()> {
        let scope = caller.scope.clone();
        let t = self
            .write(move |txn| {
                let mut t = task_to_change(txn.state, &scope, cluster.as_deref(), &task)?;
                let report = TaskReport {
                    task_arn: t.arn().to_string(),
                    last_status: change.status.unwrap_or(t.last_status),
                    containers: t
                        .containers
                        .iter()
                        .map(|c| {
                            let given = change.containers.iter().find(|g| g.name == c.name);
                            agent_protocol::ContainerReport {
                                name: c.name.clone(),
                                last_status: given.map_or(c.last_status, |g| g.last_status),
                                runtime_id: given.and_then(|g| g.runtime_id.clone()),
                                exit_code: given.and_then(|g| g.exit_code),
                                reason: given.and_then(|g| g.reason.clone()),
                                network_bindings: given.map(|g| g.network_bindings.clone()).unwrap_or_default(),
                                health_status: c.health_status,
                                image_digest: given.and_then(|g| g.image_digest.clone()),
                            }
                        })
                        .collect(),
                    health_status: t.health_status,
                    stop_code: None,
                    stopped_reason: change.reason.clone(),
                    pull_started_at: change.pull_started_at,
                    pull_stopped_at: change.pull_stopped_at,
                    started_at: None,
                    execution_stopped_at: change.execution_stopped_at,
                };
                if apply_report(&mut t, &report, txn.now) {
                    insert_task(txn, t.clone());
                }
                Ok(t)
            })
            .await?;
        // The agent of the instance learns of a stop decided elsewhere.
        if t.desired_status == DesiredStatus::Stopped {
            self.push_tasks(std::slice::from_ref(&t));
        }
        self.wake_services();
        Ok(())
    }

    /// Opens an agent's channel for a live instance of the caller's account and sends it the
    /// full task set.
    pub fn agent_attach(
        &self,
        caller: &Caller,
        instance_arn: &str,
    ) -> Result<(u64, tokio::sync::mpsc::UnboundedReceiver<agent_protocol::ToAgent>)> {
        let state = self.view();
        let arn = Arn::parse(instance_arn).map_err(Error::from)?;
        let (cluster, _) = arn
            .resource
            .strip_prefix("container-instance/")
            .and_then(|r| r.split_once('/'))
            .ok_or_else(|| Error::parameter("containerInstance must be a container instance ARN."))?;
        let cluster = ClusterName::parse(cluster)?;
        let live = find_instance(&state, &caller.scope, &cluster, instance_arn)
            .is_some_and(|i| i.status != InstanceStatus::Inactive);
        if !live {
            return Err(Error::NotFound {
                kind: crate::error::NotFoundKind::Resource,
                message: format!("The container instance {instance_arn} is not registered; register it first."),
            });
        }
        let (connection, rx) = self.agents.attach(instance_arn);
        let assignments = self.assignments_for(&caller.scope, instance_arn);
        self.send_credentials(&caller.scope, instance_arn, &assignments);
        self.agents.send_full(instance_arn, connection, assignments);
        // A connected instance can take service tasks (and DAEMON services want one).
        self.wake_services();
        Ok((connection, rx))
    }

    /// The tasks an agent should know about: everything placed on its instance that has
    /// not been reported STOPPED, and tasks recorded STOPPED without their agent's word
    /// (a lost instance's service tasks) whose containers may still run there.
    pub fn assignments_for(&self, scope: &Scope, instance_arn: &str) -> Vec<TaskAssignment> {
        let state = self.view();
        let Ok(arn) = Arn::parse(instance_arn) else { return Vec::new() };
        let Some((cluster, id)) = arn.resource.strip_prefix("container-instance/").and_then(|r| r.split_once('/'))
        else {
            return Vec::new();
        };
        let Ok(cluster) = ClusterName::parse(cluster) else { return Vec::new() };
        let mine = |t: &&Arc<Task>| {
            t.container_instance.as_deref() == Some(id) && (t.last_status != TaskStatus::Stopped || may_run(t))
        };
        if cluster.as_str() == ClusterName::FARGATE_POOL {
            // Fargate capacity serves tasks of every cluster of the account.
            return state
                .tasks()
                .values()
                .filter(|t| &t.scope == scope && t.is_fargate())
                .filter(mine)
                .filter_map(|t| assignment(&state, t))
                .collect();
        }
        state.cluster_tasks(scope, &cluster).filter(mine).filter_map(|t| assignment(&state, t)).collect()
    }
}

/// Whether a STOPPED task may still have a running container: one was created and was
/// never reported stopped.
pub(crate) fn may_run(t: &Task) -> bool {
    t.containers.iter().any(|c| c.runtime_id.is_some() && c.last_status != ContainerStatus::Stopped)
}

/// Merges an agent's report into the task; returns whether anything changed. Status
/// never moves backwards, so a late, stale report cannot undo a newer one.
fn apply_report(t: &mut Task, r: &TaskReport, now: model::Timestamp) -> bool {
    let before = t.clone();
    if r.last_status > t.last_status {
        t.last_status = r.last_status;
    }
    if matches!(
        t.last_status,
        TaskStatus::Deactivating | TaskStatus::Stopping | TaskStatus::Deprovisioning | TaskStatus::Stopped
    ) {
        t.stopping_at.get_or_insert(now);
    }
    if t.last_status == TaskStatus::Stopped {
        t.stopped_at.get_or_insert(now);
        // A task that stopped by itself will not be started again.
        t.desired_status = DesiredStatus::Stopped;
    }
    if t.stop_code.is_none() {
        t.stop_code = r.stop_code;
    }
    if t.stopped_reason.is_none() {
        t.stopped_reason = r.stopped_reason.clone();
    }
    t.health_status = r.health_status;
    t.pull_started_at = t.pull_started_at.or(r.pull_started_at);
    t.pull_stopped_at = t.pull_stopped_at.or(r.pull_stopped_at);
    t.started_at = t.started_at.or(r.started_at);
    t.execution_stopped_at = t.execution_stopped_at.or(r.execution_stopped_at);
    for rc in &r.containers {
        if let Some(c) = t.containers.iter_mut().find(|c| c.name == rc.name) {
            if rc.last_status >= c.last_status {
                c.last_status = rc.last_status;
            }
            c.runtime_id = rc.runtime_id.clone().or(c.runtime_id.take());
            c.exit_code = rc.exit_code.or(c.exit_code);
            c.reason = rc.reason.clone().or(c.reason.take());
            if !rc.network_bindings.is_empty() {
                c.network_bindings = rc.network_bindings.clone();
            }
            c.health_status = rc.health_status;
            c.image_digest = rc.image_digest.clone().or(c.image_digest.take());
        }
    }
    let changed = *t != before;
    if changed {
        t.version += 1;
    }
    changed
}
