//! Launching tasks: the one place where RunTask, StartTask and the service controller
//! turn "`count` tasks of this task definition, placed so" into placed, recorded tasks.
//!
//! A launch runs inside a writer change (RunTask's, or the controller pass's), so what it
//! reads (instances' free resources, addresses in use) cannot change under it. It places
//! tasks on container instances with the scheduler, or on Fargate capacity by the
//! capacity provider strategy's base and weight; gives each awsvpc task its interface;
//! and records each task in the state before placing the next, so the next sees the
//! address the previous one took. What a caller must check first (the request's rules,
//! the task definition's fit) and what it makes of the outcome (an API answer, service
//! events) stay with the caller.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rand::Rng;

use model::ecs::shapes::{CapacityProviderStrategyItem, NetworkMode, TaskOverride, TransportProtocol};
use model::ecs::task::{
    ContainerInstance, ContainerStatus, DesiredStatus, HealthStatus, InstanceStatus, Resources, Task, TaskContainer,
    TaskStatus,
};
use model::ecs::TaskDefinition;
use model::ids::ClusterName;
use model::tags::Tags;
use model::{Scope, Timestamp};

use super::instances::{cluster_views, InstanceView};
use super::placement::{self, Placements};
use super::tasks::{random_hex, uuid};
use super::{awsvpc, fargate, Failure};
use crate::agents::Agents;
use crate::state::{State, Touched};

/// What to launch, and where.
pub(crate) struct Launch<'a> {
    pub scope: &'a Scope,
    pub cluster: &'a ClusterName,
    pub td: &'a TaskDefinition,
    /// How many tasks (for [`Hosts::EachOf`], one per instance instead).
    pub count: usize,
    pub hosts: Hosts<'a>,
    /// Where awsvpc tasks get their interface; `None` for the other network modes.
    pub network: Option<&'a awsvpc::Placement>,
    pub overrides: Option<&'a TaskOverride>,
    pub group: String,
    pub started_by: Option<String>,
    pub tags: Tags,
    pub on_no_address: NoAddress,
    pub now: Timestamp,
}

/// Where tasks may go.
pub(crate) enum Hosts<'a> {
    /// Any of these container instances, as the scheduler chooses under these rules.
    Scheduled {
        /// In id order.
        candidates: Vec<Arc<ContainerInstance>>,
        /// The candidates are every live instance of the cluster (RunTask, a service's
        /// launch), so the cluster's kept placement index serves.
        whole_cluster: bool,
        constraints: &'a [scheduler::Constraint],
        strategies: &'a [scheduler::Strategy],
    },
    /// StartTask: one task on each of these instances that has room for it.
    EachOf(Vec<Arc<ContainerInstance>>),
    /// Fargate capacity. Each task's capacity provider is the strategy's next one, given
    /// how many live tasks each provider already runs (`running`).
    Fargate { strategy: &'a [CapacityProviderStrategyItem], running: HashMap<String, usize> },
}

/// What a launch does when a placed task finds no free address in its subnets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoAddress {
    /// That task fails; the next ones are still tried (RunTask, StartTask).
    FailTask,
    /// The launch ends there (the service controller, which reports it and tries again
    /// on a later pass).
    Stop,
}

/// What a launch did.
#[derive(Debug, Default)]
pub(crate) struct Launched {
    /// The tasks created, already in the state.
    pub tasks: Vec<Task>,
    /// Tasks that found no host, with ECS's reasons: for container instances, the
    /// scheduler's reason for each instance it rejected; for Fargate, one
    /// [`fargate::CAPACITY_UNAVAILABLE`] per missing task.
    pub unplaced: Vec<Failure>,
    /// Tasks placed that got no address (`RESOURCE:ENI`, with why in `detail`).
    pub no_address: Vec<Failure>,
    /// The records the launch wrote, for the writer to commit.
    pub touched: Vec<Touched>,
}

/// Places and records the tasks `l` asks for.
pub(crate) fn launch(
    (agents, placements): (&Agents, &Placements),
    state: &mut State,
    l: &Launch<'_>,
    rng: &mut impl Rng,
) -> Launched {
    let reserved = reservation(l.td, l.overrides);
    match &l.hosts {
        Hosts::Fargate { strategy, running } => launch_fargate(agents, state, l, &reserved, strategy, running, rng),
        Hosts::Scheduled { candidates, whole_cluster, constraints, strategies } => {
            let request = placement::Request {
                scope: l.scope,
                cluster: l.cluster,
                candidates,
                whole_cluster: *whole_cluster,
                needs: &needs(l, &reserved),
                count: l.count,
                constraints,
                strategies,
            };
            let plan = placements.place(agents, state, &request, &mut *rng);
            let unplaced = plan.failures.into_iter().map(unplaced).collect();
            launch_on(state, l, &reserved, candidates, &plan.placements, unplaced, rng)
        }
        Hosts::EachOf(candidates) => {
            let (candidates, instances) = snapshot(agents, state, l, candidates);
            let needs = needs(l, &reserved);
            let mut placed = Vec::new();
            let mut failures = Vec::new();
            for idx in 0..instances.len() {
                let plan = scheduler::place(&instances[idx..=idx], &needs, 1, &[], &[], &mut *rng);
                if plan.placements.is_empty() {
                    failures.extend(plan.failures.into_iter().map(unplaced));
                } else {
                    placed.push(idx);
                }
            }
            launch_on(state, l, &reserved, &candidates, &placed, failures, rng)
        }
    }
}

/// The container instances that can take tasks: every one not deregistered, by id (the
/// scheduler breaks remaining ties by snapshot order, so the order must be stable).
pub(crate) fn live_instances(state: &State, scope: &Scope, cluster: &ClusterName) -> Vec<Arc<ContainerInstance>> {
    state.cluster_instances(scope, cluster).filter(|i| i.status != InstanceStatus::Inactive).cloned().collect()
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
    let mut cpu = 0i64;
    let mut memory = 0i64;
    let mut ports_tcp = Vec::new();
    let mut ports_udp = Vec::new();
    let mode = td.spec.network_mode();
    for c in td.spec.containers() {
        let o = container_override(overrides, c.name.as_deref().unwrap_or_default());
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
                    Some(TransportProtocol::Udp) => ports_udp.push(p),
                    _ => ports_tcp.push(p),
                }
            }
        }
    }
    let task_cpu = overrides.and_then(|o| o.cpu.clone()).or_else(|| doc.cpu.clone()).and_then(|c| c.parse().ok());
    let task_mem = overrides.and_then(|o| o.memory.clone()).or_else(|| doc.memory.clone()).and_then(|m| m.parse().ok());
    Resources { cpu: task_cpu.unwrap_or(cpu), memory: task_mem.unwrap_or(memory), ports_tcp, ports_udp }
}

/// Adds ECS's managed tags of a new task: its cluster's name, and its service's if a
/// service started it.
pub(crate) fn add_managed_tags(tags: &mut Tags, cluster: &ClusterName, service: Option<&str>) {
    tags.insert_managed("aws:ecs:clusterName", cluster.as_str());
    if let Some(name) = service {
        tags.insert_managed("aws:ecs:serviceName", name);
    }
}

/// Records a task in the state; returns the record to commit.
pub(crate) fn put(state: &mut State, t: Task) -> Touched {
    let touched = Touched::Task(t.scope.clone(), t.cluster.clone(), t.id.clone());
    state.put_task(Arc::new(t));
    touched
}

/// The candidates that have a view, and the scheduler's snapshot of them; plans name
/// instances by index, so the two stay aligned.
fn snapshot(
    agents: &Agents,
    state: &State,
    l: &Launch<'_>,
    candidates: &[Arc<ContainerInstance>],
) -> (Vec<Arc<ContainerInstance>>, Vec<scheduler::Instance>) {
    let views = cluster_views(agents, state, l.scope, l.cluster);
    let candidates: Vec<_> = candidates.iter().filter(|i| views.contains_key(&i.id)).cloned().collect();
    let instances = candidates.iter().map(|i| placement_instance(&views[&i.id])).collect();
    (candidates, instances)
}

fn needs(l: &Launch<'_>, reserved: &Resources) -> scheduler::TaskNeeds {
    scheduler::TaskNeeds {
        cpu: reserved.cpu,
        memory: reserved.memory,
        static_ports_tcp: reserved.ports_tcp.clone(),
        static_ports_udp: reserved.ports_udp.clone(),
        group: l.group.clone(),
        required_attributes: l.td.spec.requires_attributes.clone(),
    }
}

fn unplaced(f: scheduler::Failure) -> Failure {
    Failure { arn: f.arn, reason: f.reason, detail: None }
}

fn no_address(arn: String, detail: String) -> Failure {
    Failure { arn, reason: "RESOURCE:ENI".into(), detail: Some(detail) }
}

/// Creates the tasks the scheduler placed on `candidates` (by index), each awsvpc task
/// with an address in its instance's zone.
fn launch_on(
    state: &mut State,
    l: &Launch<'_>,
    reserved: &Resources,
    candidates: &[Arc<ContainerInstance>],
    placements: &[usize],
    unplaced: Vec<Failure>,
    rng: &mut impl Rng,
) -> Launched {
    let mut out = Launched { unplaced, ..Default::default() };
    for &idx in placements {
        let instance = &candidates[idx];
        let mut t = new_task(l, &instance.id, reserved.clone(), rng);
        if let Some(network) = l.network {
            let zone = instance.attribute("ecs.availability-zone").cloned().flatten();
            match awsvpc::allocate(state, l.scope, network, zone.as_deref(), rng) {
                Ok(eni) => t.eni = Some(eni),
                Err(detail) => {
                    out.no_address.push(no_address(instance.arn().to_string(), detail));
                    match l.on_no_address {
                        NoAddress::FailTask => continue,
                        NoAddress::Stop => break,
                    }
                }
            }
        }
        out.record(state, t);
    }
    out
}

/// Places tasks on Fargate capacity, each with the capacity provider its strategy gives
/// next and an address in a zone of its subnets chosen at random (Fargate spreads tasks
/// over them).
fn launch_fargate(
    agents: &Agents,
    state: &mut State,
    l: &Launch<'_>,
    reserved: &Resources,
    strategy: &[CapacityProviderStrategyItem],
    running: &HashMap<String, usize>,
    rng: &mut impl Rng,
) -> Launched {
    // Fargate task definitions are awsvpc, which the callers have checked.
    let Some(network) = l.network else { return Launched::default() };
    let hosts = fargate::place(agents, state, l.scope, reserved, l.count);
    let cluster_arn = model::ecs::cluster_arn(l.scope, l.cluster).to_string();
    let unplaced = (hosts.len()..l.count)
        .map(|_| Failure { arn: cluster_arn.clone(), reason: fargate::CAPACITY_UNAVAILABLE.into(), detail: None })
        .collect();
    let mut out = Launched { unplaced, ..Default::default() };
    let mut by_provider = running.clone();
    for host in &hosts {
        let mut t = new_task(l, host, reserved.clone(), rng);
        t.launch_type = "FARGATE".into();
        t.capacity_provider = fargate::next_provider(strategy, &by_provider);
        if let Some(p) = &t.capacity_provider {
            *by_provider.entry(p.clone()).or_default() += 1;
        }
        let zones: Vec<&str> = network.subnets.iter().map(|s| s.zone.name.as_str()).collect();
        let zone = zones[rng.gen_range(0..zones.len())];
        match awsvpc::allocate(state, l.scope, network, Some(zone), rng) {
            Ok(eni) => t.eni = Some(eni),
            Err(detail) => {
                out.no_address.push(no_address(cluster_arn.clone(), detail));
                match l.on_no_address {
                    NoAddress::FailTask => continue,
                    NoAddress::Stop => break,
                }
            }
        }
        out.record(state, t);
    }
    out
}

impl Launched {
    fn record(&mut self, state: &mut State, t: Task) {
        self.touched.push(put(state, t.clone()));
        self.tasks.push(t);
    }
}

fn container_override<'o>(
    overrides: Option<&'o TaskOverride>,
    name: &str,
) -> Option<&'o model::ecs::shapes::ContainerOverride> {
    overrides
        .and_then(|o| o.container_overrides.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name.as_deref() == Some(name)))
}

/// A new PENDING task of the launch on `instance` (a container instance id).
fn new_task(l: &Launch<'_>, instance: &str, reserved: Resources, rng: &mut impl Rng) -> Task {
    let td = l.td;
    let containers = td
        .spec
        .containers()
        .iter()
        .map(|c| {
            let name = c.name.clone().unwrap_or_default();
            let o = container_override(l.overrides, &name);
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
        scope: l.scope.clone(),
        cluster: l.cluster.clone(),
        id: random_hex(32, rng),
        family: td.family.clone(),
        revision: td.revision,
        container_instance: Some(instance.to_string()),
        launch_type: "EC2".into(),
        overrides: l.overrides.cloned(),
        group: l.group.clone(),
        started_by: l.started_by.clone(),
        tags: l.tags.clone(),
        desired_status: DesiredStatus::Running,
        last_status: TaskStatus::Pending,
        health_status: HealthStatus::Unknown,
        stop_code: None,
        stopped_reason: None,
        created_at: l.now,
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
