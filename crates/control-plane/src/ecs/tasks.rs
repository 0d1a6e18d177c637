//! Tasks: placement and creation (RunTask, StartTask), stopping, description, listing,
//! and the state reported by agents.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::{rngs::StdRng, Rng, SeedableRng};

use agent_protocol::{TaskAssignment, TaskReport};
use model::ecs::shapes::{NetworkMode, TaskOverride};
use model::ecs::task::{
    ContainerStatus, DesiredStatus, HealthStatus, InstanceStatus, Resources, StopCode, Task, TaskContainer, TaskStatus,
};
use model::ecs::{TaskDefinition, TaskDefinitionStatus};
use model::ids::ClusterName;
use model::tags::Tags;
use model::{Arn, Scope};

use super::clusters::active_cluster;
use super::instances::{cluster_views, find_instance, InstanceView};
use super::task_definitions::resolve;
use super::Failure;
use super::{awsvpc, fargate};
use crate::ecs::Ecs;
use crate::error::{Error, Result};
use crate::state::{State, Touched};
use crate::Caller;
use crate::Ops;
use crate::{Page, Txn};

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

/// An instance as the scheduler sees it.
pub(crate) fn placement_instance(v: &InstanceView) -> scheduler::Instance {
    let i = &v.instance;
    let mut attributes: BTreeMap<String, Option<String>> = i.attributes.iter().cloned().collect();
    attributes.extend(v.custom_attributes.iter().cloned());
    scheduler::Instance {
        arn: i.arn().to_string(),
        ec2_instance_id: i.ec2_instance_id.clone(),
        attributes,
        remaining_cpu: v.remaining.cpu,
        remaining_memory: v.remaining.memory,
        used_ports_tcp: v.remaining.ports_tcp.iter().copied().collect(),
        used_ports_udp: v.remaining.ports_udp.iter().copied().collect(),
        running_tasks_count: v.running_tasks,
        agent_connected: v.agent_connected,
        agent_version: i.agent_version.clone(),
        registered_at: i.registered_at.epoch_seconds(),
        draining: i.status != InstanceStatus::Active,
        task_groups: v.task_groups.clone(),
    }
}

/// What one task of `td` with `overrides` reserves on an instance, as ECS counts it: the
/// task-level size if set, else the containers' cpu and memory (or memoryReservation).
pub(crate) fn reservation(td: &TaskDefinition, overrides: Option<&TaskOverride>) -> Resources {
    let doc = &td.spec.doc;
    let over = |name: &str| {
        overrides
            .and_then(|o| o.container_overrides.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.name.as_deref() == Some(name)))
    };
    let mut cpu = 0i64;
    let mut memory = 0i64;
    let mut ports_tcp = Vec::new();
    let mut ports_udp = Vec::new();
    let mode = td.spec.network_mode();
    for c in td.spec.containers() {
        let name = c.name.as_deref().unwrap_or_default();
        let o = over(name);
        cpu += i64::from(o.and_then(|o| o.cpu).or(c.cpu).unwrap_or(0));
        let mem = o.and_then(|o| o.memory).or(c.memory);
        let res = o.and_then(|o| o.memory_reservation).or(c.memory_reservation);
        memory += i64::from(res.or(mem).unwrap_or(0));
        for pm in c.port_mappings.iter().flatten() {
            let host = match mode {
                NetworkMode::Host => pm.container_port,
                NetworkMode::Bridge => pm.host_port.filter(|p| *p > 0),
                _ => None,
            };
            if let Some(p) = host.and_then(|p| u16::try_from(p).ok()) {
                match pm.protocol {
                    Some(model::ecs::shapes::TransportProtocol::Udp) => ports_udp.push(p),
                    _ => ports_tcp.push(p),
                }
            }
        }
    }
    let task_cpu = overrides.and_then(|o| o.cpu.clone()).or_else(|| doc.cpu.clone()).and_then(|c| c.parse().ok());
    let task_mem = overrides.and_then(|o| o.memory.clone()).or_else(|| doc.memory.clone()).and_then(|m| m.parse().ok());
    Resources { cpu: task_cpu.unwrap_or(cpu), memory: task_mem.unwrap_or(memory), ports_tcp, ports_udp }
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

fn check_started_by(s: &str) -> Result<()> {
    let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::parameter("startedBy must be 1 to 128 letters, numbers, hyphens, slashes and underscores."))
    }
}

/// What every task created by one RunTask or StartTask call shares.
pub(crate) struct Creation<'a> {
    pub scope: &'a Scope,
    pub cluster: &'a ClusterName,
    pub td: &'a TaskDefinition,
    pub req: &'a TaskRequest,
    pub tags: &'a Tags,
    pub now: model::Timestamp,
}

pub(crate) fn new_task(c: &Creation<'_>, instance: &str, reserved: Resources, rng: &mut impl Rng) -> Task {
    let Creation { scope, cluster, td, req, tags, now } = *c;
    let over = |name: &str| {
        req.overrides
            .as_ref()
            .and_then(|o| o.container_overrides.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.name.as_deref() == Some(name)))
    };
    let containers = td
        .spec
        .containers()
        .iter()
        .map(|c| {
            let name = c.name.clone().unwrap_or_default();
            let o = over(&name);
            TaskContainer {
                image: c.image.clone().unwrap_or_default(),
                id: uuid(rng),
                last_status: ContainerStatus::Pending,
                runtime_id: None,
                exit_code: None,
                reason: None,
                network_bindings: Vec::new(),
                health_status: HealthStatus::Unknown,
                image_digest: None,
                essential: c.essential.unwrap_or(true),
                cpu: o.and_then(|o| o.cpu).or(c.cpu).unwrap_or(0),
                memory: o.and_then(|o| o.memory).or(c.memory),
                memory_reservation: o.and_then(|o| o.memory_reservation).or(c.memory_reservation),
                name,
            }
        })
        .collect();
    Task {
        scope: scope.clone(),
        cluster: cluster.clone(),
        id: random_hex(32, rng),
        family: td.family.clone(),
        revision: td.revision,
        container_instance: Some(instance.to_string()),
        launch_type: "EC2".into(),
        overrides: req.overrides.clone(),
        group: req.group.clone().unwrap_or_else(|| format!("family:{}", td.family)),
        started_by: req.started_by.clone(),
        tags: tags.clone(),
        desired_status: DesiredStatus::Running,
        last_status: TaskStatus::Pending,
        health_status: HealthStatus::Unknown,
        stop_code: None,
        stopped_reason: None,
        created_at: now,
        pull_started_at: None,
        pull_stopped_at: None,
        started_at: None,
        stopping_at: None,
        stopped_at: None,
        execution_stopped_at: None,
        containers,
        cpu: td.spec.doc.cpu.clone().unwrap_or_else(|| reserved.cpu.to_string()),
        memory: td.spec.doc.memory.clone().unwrap_or_else(|| reserved.memory.to_string()),
        reserved,
        version: 1,
        eni: None,
        capacity_provider: None,
    }
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
    state.tasks.get(&(scope.clone(), cluster.clone(), id))
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
    let key = (t.scope.clone(), t.cluster.clone(), t.id.clone());
    txn.state.tasks.insert(key.clone(), Arc::new(t));
    txn.touch(Touched::Task(key.0, key.1, key.2));
}

impl Ops<'_, Ecs> {
    /// Places and creates tasks. Tasks that cannot be placed are reported as failures with
    /// ECS's reasons; the placed ones are pushed to their agents once durable.
    pub async fn run_task(&self, caller: &Caller, req: TaskRequest) -> Result<(Vec<Task>, Vec<Failure>)> {
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
            check_started_by(s)?;
        }
        if req.group.as_ref().is_some_and(|g| g.is_empty() || g.len() > 255) {
            return Err(Error::parameter("group must be 1 to 255 characters."));
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
        let scope = caller.scope.clone();
        let agents = self.agents.clone();
        let network = self.elb.network(&scope);
        let seed: u64 = rand::thread_rng().gen();
        let (tasks, failures) = self
            .write(move |txn| {
                let mut rng = StdRng::seed_from_u64(seed);
                let cluster = active_cluster(txn.state, &scope, req.cluster.as_deref())?.clone();
                // Without a launch type, the request's strategy or else the cluster's
                // default one decides (StartTask names its instances instead).
                let strategy = match (&req.launch_type, &req.instances) {
                    (None, None) if !req.capacity_provider_strategy.is_empty() => {
                        req.capacity_provider_strategy.clone()
                    }
                    (None, None) => cluster.default_capacity_provider_strategy.clone(),
                    _ => Vec::new(),
                };
                fargate::check_strategy(&cluster, &strategy)?;
                let fargate = fargate || !strategy.is_empty();
                if fargate {
                    if !req.constraints.is_empty() || !req.strategies.is_empty() {
                        return Err(Error::parameter(
                            "Task placement constraints and strategies are not supported with launch type FARGATE.",
                        ));
                    }
                    fargate::check_platform_version(req.platform_version.as_deref())?;
                } else if req.platform_version.is_some() {
                    return Err(Error::parameter(
                        "The platform version must be null when specifying an EC2 launch type.",
                    ));
                }
                let cluster = cluster.name.clone();
                let td = resolve(txn.state, &scope, &req.task_definition)?.clone();
                if td.status != TaskDefinitionStatus::Active {
                    return Err(Error::client(format!("TaskDefinition is inactive: {}", td.arn())));
                }
                if fargate {
                    fargate::check_task_definition(&td)?;
                }
                let awsvpc = awsvpc::check(
                    txn.state,
                    &scope,
                    &network,
                    req.network.as_ref(),
                    td.spec.network_mode() == NetworkMode::Awsvpc,
                    fargate,
                )?;
                check_overrides(&td, req.overrides.as_ref())?;
                let mut tags = tags;
                if req.propagate_task_definition_tags {
                    // The request's own tags win over propagated ones with the same key.
                    let mut merged = td.tags.clone();
                    merged.merge(tags.iter().map(|(k, v)| (k.to_string(), v.to_string())))?;
                    tags = merged;
                }
                if req.managed_tags {
                    tags.insert_managed("aws:ecs:clusterName", cluster.as_str());
                }
                let reserved = reservation(&td, req.overrides.as_ref());
                if fargate {
                    let placement = awsvpc.as_ref().expect("Fargate task definitions are awsvpc");
                    let hosts = fargate::place(&agents, txn.state, &scope, &reserved, req.count as usize);
                    let mut failures: Vec<Failure> = (hosts.len()..req.count as usize)
                        .map(|_| Failure {
                            arn: model::ecs::cluster_arn(&scope, &cluster).to_string(),
                            reason: fargate::CAPACITY_UNAVAILABLE.into(),
                            detail: None,
                        })
                        .collect();
                    let creation =
                        Creation { scope: &scope, cluster: &cluster, td: &td, req: &req, tags: &tags, now: txn.now };
                    let mut tasks = Vec::new();
                    let mut by_provider = std::collections::HashMap::new();
                    for host in hosts {
                        let mut t = new_task(&creation, &host, reserved.clone(), &mut rng);
                        t.launch_type = "FARGATE".into();
                        t.capacity_provider = fargate::next_provider(&strategy, &by_provider);
                        if let Some(p) = &t.capacity_provider {
                            *by_provider.entry(p.clone()).or_insert(0) += 1;
                        }
                        // Fargate spreads tasks over the zones of their subnets.
                        let zones: Vec<&str> = placement.subnets.iter().map(|s| s.zone.name.as_str()).collect();
                        let zone = zones[rng.gen_range(0..zones.len())];
                        match awsvpc::allocate(txn.state, &scope, placement, Some(zone), &mut rng) {
                            Ok(eni) => t.eni = Some(eni),
                            Err(detail) => {
                                failures.push(Failure {
                                    arn: model::ecs::cluster_arn(&scope, &cluster).to_string(),
                                    reason: "RESOURCE:ENI".into(),
                                    detail: Some(detail),
                                });
                                continue;
                            }
                        }
                        insert_task(txn, t.clone());
                        tasks.push(t);
                    }
                    return Ok((tasks, failures));
                }
                let candidates: Vec<Arc<model::ecs::task::ContainerInstance>> = match &req.instances {
                    None => txn
                        .state
                        .cluster_instances(&scope, &cluster)
                        .filter(|i| i.status != InstanceStatus::Inactive)
                        .cloned()
                        .collect(),
                    Some(refs) => {
                        if refs.is_empty() || refs.len() > MAX_TASKS_PER_CALL as usize {
                            return Err(Error::parameter("Pass between 1 and 10 container instances."));
                        }
                        let mut out = Vec::new();
                        for r in refs {
                            let i = find_instance(txn.state, &scope, &cluster, r)
                                .filter(|i| i.status != InstanceStatus::Inactive)
                                .ok_or_else(|| {
                                    Error::parameter(format!("Container instance {r} was not found in the cluster."))
                                })?;
                            out.push(i.clone());
                        }
                        out
                    }
                };
                if candidates.is_empty() {
                    return Err(Error::parameter("No Container Instances were found in your cluster."));
                }
                let views = cluster_views(&agents, txn.state, &scope, &cluster);
                // Plans name instances by index, so `candidates` and `instances` stay aligned.
                let candidates: Vec<_> = candidates.into_iter().filter(|i| views.contains_key(&i.id)).collect();
                let instances: Vec<scheduler::Instance> =
                    candidates.iter().map(|i| placement_instance(&views[&i.id])).collect();
                let needs = scheduler::TaskNeeds {
                    cpu: reserved.cpu,
                    memory: reserved.memory,
                    static_ports_tcp: reserved.ports_tcp.clone(),
                    static_ports_udp: reserved.ports_udp.clone(),
                    group: req.group.clone().unwrap_or_else(|| format!("family:{}", td.family)),
                    required_attributes: td.spec.requires_attributes.clone(),
                };
                let (placements, failures) = match &req.instances {
                    // StartTask: one task on each named instance, if it fits.
                    Some(_) => {
                        let mut placed = Vec::new();
                        let mut failures = Vec::new();
                        for idx in 0..instances.len() {
                            let plan = scheduler::place(&instances[idx..=idx], &needs, 1, &[], &[], &mut rng);
                            if plan.placements.is_empty() {
                                failures.extend(plan.failures);
                            } else {
                                placed.push(idx);
                            }
                        }
                        (placed, failures)
                    }
                    None => {
                        let plan = scheduler::place(
                            &instances,
                            &needs,
                            req.count as usize,
                            &constraints,
                            &strategies,
                            &mut rng,
                        );
                        (plan.placements, plan.failures)
                    }
                };
                let mut tasks = Vec::new();
                let mut failures = failures
                    .into_iter()
                    .map(|f| Failure { arn: f.arn, reason: f.reason, detail: None })
                    .collect::<Vec<_>>();
                let creation =
                    Creation { scope: &scope, cluster: &cluster, td: &td, req: &req, tags: &tags, now: txn.now };
                for idx in placements {
                    let instance = &candidates[idx];
                    let mut t = new_task(&creation, &instance.id, reserved.clone(), &mut rng);
                    if let Some(placement) = &awsvpc {
                        let zone = instance.attribute("ecs.availability-zone").cloned().flatten();
                        match awsvpc::allocate(txn.state, &scope, placement, zone.as_deref(), &mut rng) {
                            Ok(eni) => t.eni = Some(eni),
                            Err(detail) => {
                                failures.push(Failure {
                                    arn: instance.arn().to_string(),
                                    reason: "RESOURCE:ENI".into(),
                                    detail: Some(detail),
                                });
                                continue;
                            }
                        }
                    }
                    insert_task(txn, t.clone());
                    tasks.push(t);
                }
                Ok((tasks, failures))
            })
            .await?;
        self.push_tasks(&tasks);
        Ok((tasks, failures))
    }

    /// Sends the current assignment of each task to its instance's agent.
    pub(crate) fn push_tasks(&self, tasks: &[Task]) {
        let state = self.view();
        let mut by_instance: BTreeMap<String, Vec<TaskAssignment>> = BTreeMap::new();
        for t in tasks {
            let (Some(arn), Some(a)) = (t.host_arn(), assignment(&state, t)) else { continue };
            by_instance.entry(arn.to_string()).or_default().push(a);
        }
        for (arn, assignments) in by_instance {
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
            let Some(t) = txn.state.tasks.get(&(scope.clone(), cluster.clone(), id.to_string())) else {
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
        self.agents.send_full(instance_arn, connection, self.assignments_for(&caller.scope, instance_arn));
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
                .tasks
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
