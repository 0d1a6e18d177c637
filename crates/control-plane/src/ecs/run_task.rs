//! RunTask and StartTask: the request's rules, checked in ECS's order, then one launch
//! (see `launch`) inside the writer.

use rand::{rngs::StdRng, Rng, SeedableRng};

use model::ecs::shapes::{CapacityProviderStrategyItem, NetworkMode, TaskOverride};
use model::ecs::task::{InstanceStatus, Task};
use model::ecs::{Cluster, TaskDefinition, TaskDefinitionStatus};
use model::ids::ClusterName;
use model::tags::Tags;
use model::Scope;

use super::clusters::active_cluster;
use super::instances::find_instance;
use super::launch::{self, Hosts, Launch, NoAddress};
use super::task_definitions::resolve;
use super::Failure;
use super::{awsvpc, fargate};
use crate::ecs::Ecs;
use crate::error::{Error, Result};
use crate::state::State;
use crate::Caller;
use crate::Ops;

/// The most tasks one RunTask or StartTask call may start.
pub const MAX_TASKS_PER_CALL: i32 = 10;

/// What RunTask and StartTask ask for.
#[derive(Debug, Clone, Default)]
pub struct TaskRequest {
    pub cluster: Option<String>,
    pub task_definition: String,
    pub count: i32,
    pub group: Option<String>,
    pub started_by: Option<String>,
    pub overrides: Option<TaskOverride>,
    /// (type, expression) pairs, parsed by the scheduler.
    pub constraints: Vec<(String, Option<String>)>,
    /// (type, field) pairs, parsed by the scheduler.
    pub strategies: Vec<(String, Option<String>)>,
    pub tags: Vec<(String, String)>,
    pub launch_type: Option<String>,
    /// StartTask: the instances to start on, one task each.
    pub instances: Option<Vec<String>>,
    /// `enableECSManagedTags`: tag tasks with `aws:ecs:clusterName`.
    pub managed_tags: bool,
    /// `propagateTags` = TASK_DEFINITION: tasks also get the task definition's tags.
    pub propagate_task_definition_tags: bool,
    /// `networkConfiguration`: required for (and only for) awsvpc task definitions.
    pub network: Option<model::ecs::shapes::NetworkConfiguration>,
    /// `platformVersion` (Fargate only).
    pub platform_version: Option<String>,
    /// `capacityProviderStrategy` (instead of a launch type; else the cluster's default).
    pub capacity_provider_strategy: Vec<model::ecs::shapes::CapacityProviderStrategyItem>,
}

impl Ops<'_, Ecs> {
    /// Places and creates tasks. Tasks that cannot be placed are reported as failures with
    /// ECS's reasons; the placed ones are pushed to their agents once durable.
    pub async fn run_task(&self, caller: &Caller, mut req: TaskRequest) -> Result<(Vec<Task>, Vec<Failure>)> {
        // An empty startedBy or group is taken as none given, as ECS does.
        req.started_by = req.started_by.take().filter(|s| !s.is_empty());
        req.group = req.group.take().filter(|g| !g.is_empty());
        let checked = check_request(&req)?;
        if !caller.is_root() {
            // Passing the roles the task runs with needs iam:PassRole on each.
            let state = self.view();
            if let Ok(td) = task_definition(&state, &caller.scope, &req.task_definition, false) {
                let roles = super::task_roles::definition_roles(&caller.scope, &td, req.overrides.as_ref());
                super::task_roles::check_pass_role(self, caller, &roles)?;
            }
        }
        let scope = caller.scope.clone();
        let agents = self.agents.clone();
        let placements = self.placements.clone();
        let network = self.elb.network(&scope);
        let seed: u64 = rand::thread_rng().gen();
        let (tasks, failures) = self
            .write(move |txn| {
                let mut rng = StdRng::seed_from_u64(seed);
                let cluster = active_cluster(txn.state, &scope, req.cluster.as_deref())?.clone();
                let capacity = capacity_of(&cluster, &req, checked.fargate)?;
                let cluster = cluster.name.clone();
                let td = task_definition(txn.state, &scope, &req.task_definition, capacity.fargate)?;
                let awsvpc = awsvpc::check(
                    txn.state,
                    &scope,
                    &network,
                    req.network.as_ref(),
                    td.spec.network_mode() == NetworkMode::Awsvpc,
                    capacity.fargate,
                )?;
                check_overrides(&td, req.overrides.as_ref())?;
                super::task_roles::check(txn.state, &scope, &td, req.overrides.as_ref())?;
                let tags = task_tags(&req, &td, &cluster, checked.tags)?;
                let rules = (&checked.constraints[..], &checked.strategies[..]);
                let hosts = hosts_for(txn.state, &scope, &cluster, &req, &capacity, rules)?;
                let order = Launch {
                    scope: &scope,
                    cluster: &cluster,
                    td: &td,
                    count: req.count as usize,
                    hosts,
                    network: awsvpc.as_ref(),
                    overrides: req.overrides.as_ref(),
                    group: req.group.clone().unwrap_or_else(|| format!("family:{}", td.family)),
                    started_by: req.started_by.clone(),
                    tags,
                    on_no_address: NoAddress::FailTask,
                    now: txn.now,
                };
                let launched = launch::launch((&agents, &placements), txn.state, &order, &mut rng);
                for t in launched.touched {
                    txn.touch(t);
                }
                let failures = launched.unplaced.into_iter().chain(launched.no_address).collect();
                Ok((launched.tasks, failures))
            })
            .await?;
        self.push_tasks(&tasks);
        Ok((tasks, failures))
    }
}

/// What [`check_request`] learned from the request alone.
struct Checked {
    /// The launch type is FARGATE.
    fargate: bool,
    constraints: Vec<scheduler::Constraint>,
    strategies: Vec<scheduler::Strategy>,
    tags: Tags,
}

/// The rules a request must satisfy whatever the state: counts, launch type, names,
/// placement rules, tags.
fn check_request(req: &TaskRequest) -> Result<Checked> {
    if req.instances.is_none() && !(1..=MAX_TASKS_PER_CALL).contains(&req.count) {
        return Err(Error::parameter(format!("count must be between 1 and {MAX_TASKS_PER_CALL}.")));
    }
    let fargate = match req.launch_type.as_deref() {
        None | Some("EC2") => false,
        Some("FARGATE") => true,
        Some(other) => {
            return Err(Error::Unsupported(format!(
                "Launch type {other} is not available in this version of Berth; use EC2 or FARGATE."
            )))
        }
    };
    if req.launch_type.is_some() && !req.capacity_provider_strategy.is_empty() {
        return Err(Error::parameter(
            "Specifying both a launchType and capacityProviderStrategy is not supported. Remove one and try again.",
        ));
    }
    if fargate && req.instances.is_some() {
        return Err(Error::parameter("StartTask places tasks on container instances; use RunTask for FARGATE."));
    }
    if let Some(s) = &req.started_by {
        check_started_by(s, req.instances.is_some())?;
    }
    if req.group.as_ref().is_some_and(|g| g.len() > 255) {
        return Err(Error::parameter("group must be at most 255 characters."));
    }
    if req.constraints.len() > 10 || req.strategies.len() > 5 {
        return Err(Error::parameter("At most 10 placement constraints and 5 placement strategies."));
    }
    let constraints = req
        .constraints
        .iter()
        .map(|(t, e)| scheduler::parse_constraint(t, e.as_deref()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::parameter(e.to_string()))?;
    let strategies = req
        .strategies
        .iter()
        .map(|(t, f)| scheduler::parse_strategy(t, f.as_deref()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::parameter(e.to_string()))?;
    let tags = Tags::parse(req.tags.clone())?;
    Ok(Checked { fargate, constraints, strategies, tags })
}

/// Where the tasks run: on Fargate (by launch type or capacity provider strategy) or on
/// container instances.
struct Capacity {
    fargate: bool,
    strategy: Vec<CapacityProviderStrategyItem>,
}

/// Without a launch type, the request's capacity provider strategy or else the
/// cluster's default one decides (StartTask names its instances instead); Fargate takes
/// no placement rules, and only Fargate a platform version.
fn capacity_of(cluster: &Cluster, req: &TaskRequest, fargate: bool) -> Result<Capacity> {
    let strategy = match (&req.launch_type, &req.instances) {
        (None, None) if !req.capacity_provider_strategy.is_empty() => req.capacity_provider_strategy.clone(),
        (None, None) => cluster.default_capacity_provider_strategy.clone(),
        _ => Vec::new(),
    };
    fargate::check_strategy(cluster, &strategy)?;
    let fargate = fargate || !strategy.is_empty();
    if fargate {
        if !req.constraints.is_empty() || !req.strategies.is_empty() {
            return Err(Error::parameter(
                "Task placement constraints and strategies are not supported with launch type FARGATE.",
            ));
        }
        fargate::check_platform_version(req.platform_version.as_deref())?;
    } else if req.platform_version.is_some() {
        return Err(Error::parameter("The platform version must be null when specifying an EC2 launch type."));
    }
    Ok(Capacity { fargate, strategy })
}

/// The ACTIVE task definition the request names, fit for Fargate if the tasks run there.
fn task_definition(state: &State, scope: &Scope, reference: &str, fargate: bool) -> Result<TaskDefinition> {
    let td = resolve(state, scope, reference)?.clone();
    if td.status != TaskDefinitionStatus::Active {
        return Err(Error::client(format!("TaskDefinition is inactive: {}", td.arn())));
    }
    if fargate {
        fargate::check_task_definition(&td)?;
    }
    Ok(td)
}

/// The tasks' tags: the request's, over the task definition's if propagated, and the
/// managed cluster name if asked for.
fn task_tags(req: &TaskRequest, td: &TaskDefinition, cluster: &ClusterName, own: Tags) -> Result<Tags> {
    let mut tags = own;
    if req.propagate_task_definition_tags {
        // The request's own tags win over propagated ones with the same key.
        let mut merged = td.tags.clone();
        merged.merge(tags.iter().map(|(k, v)| (k.to_string(), v.to_string())))?;
        tags = merged;
    }
    if req.managed_tags {
        launch::add_managed_tags(&mut tags, cluster, None);
    }
    Ok(tags)
}

/// Where the tasks may go: Fargate capacity, the instances StartTask names (each must be
/// a live instance of the cluster), or any live instance of the cluster.
fn hosts_for<'a>(
    state: &State,
    scope: &Scope,
    cluster: &ClusterName,
    req: &TaskRequest,
    capacity: &'a Capacity,
    (constraints, strategies): (&'a [scheduler::Constraint], &'a [scheduler::Strategy]),
) -> Result<Hosts<'a>> {
    if capacity.fargate {
        return Ok(Hosts::Fargate { strategy: &capacity.strategy, running: Default::default() });
    }
    let candidates = match &req.instances {
        None => launch::live_instances(state, scope, cluster),
        Some(refs) => {
            if refs.is_empty() || refs.len() > MAX_TASKS_PER_CALL as usize {
                return Err(Error::parameter("Pass between 1 and 10 container instances."));
            }
            let mut out = Vec::new();
            for r in refs {
                let i = find_instance(state, scope, cluster, r)
                    .filter(|i| i.status != InstanceStatus::Inactive)
                    .ok_or_else(|| Error::parameter(format!("Container instance {r} was not found in the cluster.")))?;
                out.push(i.clone());
            }
            out
        }
    };
    if candidates.is_empty() {
        return Err(Error::parameter("No Container Instances were found in your cluster."));
    }
    Ok(match req.instances {
        // StartTask: one task on each named instance, if it fits.
        Some(_) => Hosts::EachOf(candidates),
        None => Hosts::Scheduled { candidates, whole_cluster: true, constraints, strategies },
    })
}

fn check_overrides(td: &TaskDefinition, overrides: Option<&TaskOverride>) -> Result<()> {
    let Some(o) = overrides else { return Ok(()) };
    for c in o.container_overrides.iter().flatten() {
        let name = c.name.as_deref().unwrap_or_default();
        if !td.spec.containers().iter().any(|d| d.name.as_deref() == Some(name)) {
            return Err(Error::parameter(format!(
                "Override for container named {name} is not a container in the TaskDefinition."
            )));
        }
        if c.memory.is_some_and(|m| m < model::ecs::task_definition::MIN_CONTAINER_MEMORY_MIB) {
            return Err(Error::parameter(format!(
                "Invalid memory override for container {name}: the minimum is 6 MiB."
            )));
        }
        if c.cpu.is_some_and(|v| v < 0) || c.memory_reservation.is_some_and(|v| v < 0) {
            return Err(Error::parameter(format!(
                "Invalid override for container {name}: values must not be negative."
            )));
        }
        if let (Some(m), Some(r)) = (c.memory, c.memory_reservation) {
            if r > m {
                return Err(Error::parameter(format!(
                    "Invalid override for container {name}: memoryReservation exceeds memory."
                )));
            }
        }
    }
    Ok(())
}

/// ECS limits only the length of `startedBy`: 128 characters for RunTask, 36 for
/// StartTask. Its documentation lists letters, digits, `-`, `/` and `_`, but ECS takes any
/// character (ecs-deploy sends "ECS Deploy"), so Berth does too.
fn check_started_by(s: &str, start_task: bool) -> Result<()> {
    let max = if start_task { 36 } else { 128 };
    if s.chars().count() > max {
        return Err(Error::parameter(format!("startedBy longer than {max}.")));
    }
    Ok(())
}
