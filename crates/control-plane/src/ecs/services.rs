//! Services: create, update, delete, describe and list them, their deployments and
//! revisions. What keeps each service at its desired state is the controller in
//! `controller`; the operations here only record what the user asked for and wake it.

pub(crate) mod controller;
pub(crate) mod settled;
mod spec;
pub(crate) mod targets;

pub use spec::{ServiceSpec, ServiceUpdate};

use std::sync::Arc;

use rand::{Rng, SeedableRng};

use model::ecs::service::{
    service_arn, Deployment, DeploymentConfig, DeploymentStatus, Revision, RolloutState, Service, ServiceName,
    ServiceRef, ServiceSettings, ServiceStatus, MAX_DESIRED_COUNT,
};
use model::ecs::shapes::{
    CapacityProviderStrategyItem, DeploymentControllerType, LaunchType, LoadBalancer, NetworkMode, PlacementConstraint,
    PlacementStrategy, SchedulingStrategy, ServiceDeploymentStatus,
};
use model::ecs::task::{DesiredStatus, TaskStatus};
use model::ecs::{Cluster, TaskDefinition, TaskDefinitionStatus};
use model::ids::ClusterName;
use model::tags::Tags;
use model::{Arn, Scope, Timestamp};

use super::clusters::active_cluster;
use super::fargate;
use super::task_definitions::resolve;
use super::Failure;
use crate::ecs::Ecs;
use crate::error::{ConflictKind, Error, NotFoundKind, Result};
use crate::state::{State, Touched};
use crate::Caller;
use crate::Ops;
use crate::Page;

/// Services are keyed by account and region, cluster and name.
pub type ServiceKey = (Scope, ClusterName, ServiceName);

/// The most services one DescribeServices call takes.
pub const MAX_DESCRIBE: usize = 10;
/// The most service deployments or revisions one describe call takes.
pub const MAX_DESCRIBE_DEPLOYMENTS: usize = 20;
const MAX_LOAD_BALANCERS: usize = 5;
const MAX_CONSTRAINTS: usize = 10;
const MAX_STRATEGIES: usize = 5;

/// Task counts of one deployment (or of the whole service).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub running: u32,
    pub pending: u32,
}

/// A service with the counts ECS reports, computed from its tasks.
#[derive(Debug, Clone)]
pub struct ServiceView {
    pub service: Arc<Service>,
    pub counts: Counts,
    /// Per live deployment, in the order of `service.deployments`.
    pub deployments: Vec<Counts>,
}

/// A service revision with the service it belongs to.
pub type RevisionView = (Arc<Service>, Revision);

/// A deployment with the service it belongs to and the task counts of the revisions it
/// moves between.
#[derive(Debug, Clone)]
pub struct DeploymentView {
    pub service: Arc<Service>,
    pub deployment: Deployment,
    /// Running and pending tasks per revision id.
    pub revisions: Vec<(String, Counts)>,
}

fn not_found() -> Error {
    Error::NotFound { kind: NotFoundKind::Service, message: "Service not found.".into() }
}

fn not_active() -> Error {
    Error::Conflict { kind: ConflictKind::ServiceNotActive, message: "Service was not ACTIVE.".into() }
}

/// Finds a service of `cluster` by name or ARN. An ARN that names another cluster or
/// another account's service finds nothing.
pub fn find_service<'a>(
    state: &'a State,
    scope: &Scope,
    cluster: &ClusterName,
    r: &str,
) -> Result<Option<&'a Arc<Service>>> {
    let Some(r) = ServiceRef::parse(r, scope)? else { return Ok(None) };
    if r.cluster.as_ref().is_some_and(|c| c != cluster) {
        return Ok(None);
    }
    Ok(state.services.get(&(scope.clone(), cluster.clone(), r.name)))
}

/// Counts of the service's tasks, overall and per live deployment.
pub fn view_of(state: &State, svc: &Arc<Service>) -> ServiceView {
    let group = svc.task_group();
    let mut counts = Counts::default();
    let mut deployments = vec![Counts::default(); svc.deployments.len()];
    for t in state.group_tasks(&svc.scope, &svc.cluster, &group) {
        let running = t.last_status == TaskStatus::Running;
        let pending = t.desired_status == DesiredStatus::Running && t.last_status < TaskStatus::Running;
        let slot = svc.deployments.iter().position(|d| Some(d.id.as_str()) == t.started_by.as_deref());
        for c in std::iter::once(&mut counts).chain(slot.map(|i| &mut deployments[i])) {
            c.running += u32::from(running);
            c.pending += u32::from(pending);
        }
    }
    ServiceView { service: svc.clone(), counts, deployments }
}

/// Running and pending tasks per revision of the service.
fn revision_counts(state: &State, svc: &Service) -> Vec<(String, Counts)> {
    let group = svc.task_group();
    let mut out: Vec<(String, Counts)> = Vec::new();
    for t in state.group_tasks(&svc.scope, &svc.cluster, &group) {
        let Some(d) = svc.all_deployments().find(|d| Some(d.id.as_str()) == t.started_by.as_deref()) else { continue };
        let i = match out.iter().position(|(r, _)| *r == d.revision.id) {
            Some(i) => i,
            None => {
                out.push((d.revision.id.clone(), Counts::default()));
                out.len() - 1
            }
        };
        out[i].1.running += u32::from(t.last_status == TaskStatus::Running);
        out[i].1.pending +=
            u32::from(t.desired_status == DesiredStatus::Running && t.last_status < TaskStatus::Running);
    }
    out
}

fn digits(n: usize, rng: &mut impl Rng) -> String {
    let first = char::from(b'1' + rng.gen_range(0..9u8));
    std::iter::once(first).chain((1..n).map(|_| char::from(b'0' + rng.gen_range(0..10u8)))).collect()
}

fn alphanumeric(n: usize, rng: &mut impl Rng) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..n).map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())])).collect()
}

fn check_desired_count(n: i32) -> Result<u32> {
    if !(0..=MAX_DESIRED_COUNT).contains(&n) {
        return Err(Error::parameter(format!("desiredCount must be between 0 and {MAX_DESIRED_COUNT}; got {n}.")));
    }
    Ok(n as u32)
}

fn check_grace(g: Option<i32>) -> Result<()> {
    if g.is_some_and(|g| g < 0) {
        return Err(Error::parameter("healthCheckGracePeriodSeconds must not be negative."));
    }
    Ok(())
}

fn check_placement(constraints: &[PlacementConstraint], strategies: &[PlacementStrategy]) -> Result<()> {
    if constraints.len() > MAX_CONSTRAINTS {
        return Err(Error::parameter(format!("A service can have at most {MAX_CONSTRAINTS} placement constraints.")));
    }
    if strategies.len() > MAX_STRATEGIES {
        return Err(Error::parameter(format!("A service can have at most {MAX_STRATEGIES} placement strategies.")));
    }
    for c in constraints {
        scheduler::parse_constraint(c.type_.map(|t| t.as_str()).unwrap_or_default(), c.expression.as_deref())
            .map_err(|e| Error::parameter(e.to_string()))?;
    }
    for s in strategies {
        scheduler::parse_strategy(s.type_.map(|t| t.as_str()).unwrap_or_default(), s.field.as_deref())
            .map_err(|e| Error::parameter(e.to_string()))?;
    }
    Ok(())
}

fn check_controller(c: Option<DeploymentControllerType>) -> Result<()> {
    match c {
        None | Some(DeploymentControllerType::Ecs) => Ok(()),
        Some(other) => Err(Error::Unsupported(format!(
            "The {other} deployment controller is not available in this version of Berth; use ECS (rolling updates)."
        ))),
    }
}

/// Features of a revision that Berth cannot run yet.
fn check_revision_features(r: &Revision) -> Result<()> {
    if r.service_connect_configuration.as_ref().is_some_and(|c| c.enabled == Some(true)) {
        return Err(Error::Unsupported("Service Connect is not available in this version of Berth.".into()));
    }
    if !r.volume_configurations.is_empty() {
        return Err(Error::Unsupported(
            "Volumes configured at deployment (Amazon EBS) are not available in this version of Berth.".into(),
        ));
    }
    if !r.vpc_lattice_configurations.is_empty() {
        return Err(Error::Unsupported("VPC Lattice is not available in this version of Berth.".into()));
    }
    for reg in &r.service_registries {
        if reg.registry_arn.is_none() {
            return Err(Error::parameter("Each service registry needs a registryArn."));
        }
    }
    Ok(())
}

/// Checks the task definition a deployment would run, and its fit with the revision.
fn check_task_definition(td: &TaskDefinition, r: &Revision) -> Result<()> {
    if td.status != TaskDefinitionStatus::Active {
        return Err(Error::client(format!("TaskDefinition is inactive: {}", td.arn())));
    }
    if r.launch_type.as_deref() == Some("EC2")
        && td.spec.doc.requires_compatibilities.as_ref().is_some_and(|c| !c.iter().any(|c| c.as_str() == "EC2"))
    {
        return Err(Error::client("Task definition does not support launch_type EC2."));
    }
    let awsvpc = td.spec.network_mode() == NetworkMode::Awsvpc;
    match (awsvpc, r.network_configuration.is_some()) {
        (false, true) => {
            return Err(Error::parameter(
                "Network Configuration is not valid for the given networkMode of this task definition.",
            ))
        }
        (true, false) => {
            return Err(Error::parameter(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
            ))
        }
        (true, true) | (false, false) => {}
    }
    if fargate::on_fargate(r.launch_type.as_deref(), &r.capacity_provider_strategy) {
        fargate::check_task_definition(td)?;
        fargate::check_platform_version(r.platform_version.as_deref())?;
    } else if r.platform_version.is_some() {
        return Err(Error::parameter("The platform version must be null when specifying an EC2 launch type."));
    }
    check_load_balancers(&r.load_balancers, td)
}

/// Load balancers are validated and kept; registering targets is the load balancer's job.
fn check_load_balancers(lbs: &[LoadBalancer], td: &TaskDefinition) -> Result<()> {
    if lbs.len() > MAX_LOAD_BALANCERS {
        return Err(Error::parameter(format!("A service can use at most {MAX_LOAD_BALANCERS} target groups.")));
    }
    for (i, lb) in lbs.iter().enumerate() {
        match (&lb.target_group_arn, &lb.load_balancer_name) {
            (Some(_), Some(_)) => {
                return Err(Error::parameter(
                    "A load balancer entry names either a targetGroupArn or a loadBalancerName, not both.",
                ))
            }
            (None, Some(_)) => {
                return Err(Error::Unsupported(
                    "Classic Load Balancers are not available in Berth; use an Application Load Balancer target group (targetGroupArn).".into(),
                ))
            }
            (None, None) => return Err(Error::parameter("Each load balancer entry needs a targetGroupArn.")),
            (Some(arn), None) => {
                let ok = Arn::parse(arn).is_ok_and(|a| {
                    a.service == "elasticloadbalancing" && a.resource.starts_with("targetgroup/")
                });
                if !ok {
                    return Err(Error::parameter(format!("'{arn}' is not a target group ARN.")));
                }
            }
        }
        let name = lb
            .container_name
            .as_deref()
            .ok_or_else(|| Error::parameter("Each load balancer entry needs a containerName."))?;
        let port =
            lb.container_port.ok_or_else(|| Error::parameter("Each load balancer entry needs a containerPort."))?;
        let Some(c) = td.spec.containers().iter().find(|c| c.name.as_deref() == Some(name)) else {
            return Err(Error::parameter(format!(
                "The container {name} does not exist in the task definition {}.",
                td.arn()
            )));
        };
        if !c.port_mappings.iter().flatten().any(|pm| pm.container_port == Some(port)) {
            return Err(Error::parameter(format!(
                "The container {name} did not have a container port {port} defined."
            )));
        }
        if lbs[..i].iter().any(|o| {
            o.target_group_arn == lb.target_group_arn
                && o.container_name == lb.container_name
                && o.container_port == lb.container_port
        }) {
            return Err(Error::parameter("The same target group, container and port are given twice."));
        }
    }
    Ok(())
}

/// The target groups of a revision exist in the caller's account and region, a load
/// balancer routes to them, and they take the kind of target the task definition's network
/// mode makes (`ip` for awsvpc, `instance` otherwise), as ECS checks at CreateService.
fn check_target_groups(state: &State, scope: &Scope, r: &Revision, td: &TaskDefinition) -> Result<()> {
    let awsvpc = td.spec.network_mode() == NetworkMode::Awsvpc;
    for arn in r.load_balancers.iter().filter_map(|lb| lb.target_group_arn.as_deref()) {
        let Some(tg) = targets::target_group(state, scope, arn) else {
            return Err(Error::parameter(format!("The target group with targetGroupArn {arn} does not exist.")));
        };
        if state.elb.lbs_using(scope, arn).is_empty() {
            return Err(Error::parameter(format!(
                "The target group with targetGroupArn {arn} does not have an associated load balancer."
            )));
        }
        let (kind, fits) = match tg.target_type {
            elb::resources::TargetType::Instance => ("instance", !awsvpc),
            elb::resources::TargetType::Ip => ("ip", awsvpc),
        };
        if !fits {
            return Err(Error::parameter(format!(
                "The provided target group {arn} has target type {kind}, which is incompatible with the {} network mode specified in the task definition.",
                td.spec.network_mode().as_str()
            )));
        }
    }
    Ok(())
}

/// Where tasks run: a launch type, or a capacity provider strategy of the cluster.
fn launch_target(
    cluster: &Cluster,
    launch_type: Option<LaunchType>,
    providers: &[CapacityProviderStrategyItem],
    strategy: SchedulingStrategy,
) -> Result<(Option<String>, Vec<CapacityProviderStrategyItem>)> {
    if launch_type.is_some() && !providers.is_empty() {
        return Err(Error::parameter(
            "Specifying both a launchType and capacityProviderStrategy is not supported. Remove one and try again.",
        ));
    }
    match launch_type {
        Some(LaunchType::Ec2) => return Ok((Some("EC2".into()), Vec::new())),
        Some(LaunchType::Fargate) if strategy == SchedulingStrategy::Daemon => {
            return Err(Error::parameter("The DAEMON scheduling strategy does not support the FARGATE launch type."))
        }
        Some(LaunchType::Fargate) => return Ok((Some("FARGATE".into()), Vec::new())),
        Some(other) => {
            return Err(Error::Unsupported(format!(
                "Launch type {other} is not available in this version of Berth; use EC2 or FARGATE."
            )))
        }
        None => {}
    }
    let items = if providers.is_empty() { &cluster.default_capacity_provider_strategy[..] } else { providers };
    if items.is_empty() {
        return Ok((Some("EC2".into()), Vec::new()));
    }
    fargate::check_strategy(cluster, items)?;
    if strategy == SchedulingStrategy::Daemon {
        return Err(Error::parameter("The DAEMON scheduling strategy does not support a capacity provider strategy."));
    }
    Ok((None, items.to_vec()))
}

/// The idempotency token of a CreateService call. ECS takes an empty token as no token
/// (Ansible's `ecs_service` sends one unless told otherwise); a given one is up to 36
/// ASCII characters from 33 to 126.
fn client_token(t: Option<String>) -> Result<Option<String>> {
    let Some(t) = t.filter(|t| !t.is_empty()) else { return Ok(None) };
    if t.len() > 36 || !t.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(Error::parameter("clientToken must be up to 36 ASCII characters in the range 33-126."));
    }
    Ok(Some(t))
}

/// A new PRIMARY deployment of `revision`.
fn new_deployment(
    revision: Revision,
    desired: u32,
    config: &DeploymentConfig,
    sources: Vec<(String, u32)>,
    now: Timestamp,
    rng: &mut impl Rng,
) -> Deployment {
    let id = format!("ecs-svc/{}", digits(19, rng));
    Deployment {
        rollout_state_reason: format!("ECS deployment {id} in progress."),
        id,
        deployment_id: alphanumeric(21, rng),
        status: DeploymentStatus::Primary,
        revision,
        desired_count: desired,
        failed_tasks: 0,
        created_at: now,
        updated_at: now,
        rollout_state: RolloutState::InProgress,
        deployment_status: ServiceDeploymentStatus::InProgress,
        status_reason: None,
        config: config.clone(),
        sources,
        finished_at: None,
        rollback: None,
    }
}

fn put(txn: &mut crate::Txn<'_>, svc: Service) -> Arc<Service> {
    let key = (svc.scope.clone(), svc.cluster.clone(), svc.name.clone());
    let svc = Arc::new(svc);
    txn.state.services.insert(key.clone(), svc.clone());
    txn.touch(Touched::Service(key.0, key.1, key.2));
    svc
}

impl Ops<'_, Ecs> {
    pub async fn create_service(&self, caller: &Caller, mut r: ServiceSpec) -> Result<ServiceView> {
        r.client_token = client_token(r.client_token.take())?;
        // An empty role is no role: Ansible's `ecs_service` sends `role: ""` unless told
        // otherwise, also for services without a load balancer, and ECS creates them.
        r.role = r.role.take().filter(|role| !role.is_empty());
        let name = ServiceName::parse(&r.name)?;
        let strategy = r.scheduling_strategy.unwrap_or(SchedulingStrategy::Replica);
        check_controller(r.deployment_controller)?;
        let desired = match (strategy, r.desired_count) {
            (SchedulingStrategy::Replica, Some(n)) => check_desired_count(n)?,
            (SchedulingStrategy::Replica, None) => {
                return Err(Error::parameter("desiredCount is required for a service with the REPLICA scheduling strategy."))
            }
            (SchedulingStrategy::Daemon, Some(_)) => {
                return Err(Error::parameter(
                    "The DAEMON scheduling strategy does not support a desiredCount: it runs one task on each container instance.",
                ))
            }
            (SchedulingStrategy::Daemon, None) => 0,
        };
        let constraints = r.placement_constraints.clone();
        let strategies = r.placement_strategy.clone();
        check_placement(&constraints, &strategies)?;
        if strategy == SchedulingStrategy::Daemon && !strategies.is_empty() {
            return Err(Error::parameter("The DAEMON scheduling strategy does not support placement strategies."));
        }
        check_grace(r.health_check_grace_period_seconds)?;
        let config = DeploymentConfig::merge(
            &DeploymentConfig::defaults(strategy),
            r.deployment_configuration.as_ref(),
            strategy,
        )?;
        let load_balancers = r.load_balancers.clone();
        if r.role.is_some() && load_balancers.is_empty() {
            return Err(Error::parameter("A role can only be given for a service that uses a load balancer."));
        }
        let td_ref = r.task_definition.clone().ok_or_else(|| Error::parameter("taskDefinition is required."))?;
        let tags = Tags::parse(r.tags.clone())?;
        let scope = caller.scope.clone();
        let created_by = caller.principal_arn();
        let seed: u64 = rand::thread_rng().gen();
        let view = self
            .write(move |txn| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let cluster = active_cluster(txn.state, &scope, r.cluster.as_deref())?.clone();
                if let Some(existing) = txn.state.services.get(&(scope.clone(), cluster.name.clone(), name.clone())) {
                    match existing.status {
                        ServiceStatus::Active
                            if r.client_token.is_some() && existing.client_token == r.client_token =>
                        {
                            return Ok(view_of(txn.state, existing));
                        }
                        ServiceStatus::Active => {
                            return Err(Error::parameter("Creation of service was not idempotent."))
                        }
                        ServiceStatus::Draining => {
                            return Err(Error::parameter("Unable to Start a service that is still Draining."))
                        }
                        ServiceStatus::Inactive => {}
                    }
                }
                let (launch_type, providers) =
                    launch_target(&cluster, r.launch_type, &r.capacity_provider_strategy, strategy)?;
                let td = resolve(txn.state, &scope, &td_ref)?.clone();
                let revision = Revision {
                    id: digits(19, &mut rng),
                    family: td.family.clone(),
                    revision: td.revision,
                    launch_type,
                    capacity_provider_strategy: providers,
                    platform_version: r.platform_version.clone(),
                    network_configuration: r.network_configuration.clone(),
                    load_balancers,
                    service_registries: r.service_registries.clone(),
                    service_connect_configuration: r.service_connect_configuration.clone(),
                    volume_configurations: r.volume_configurations.clone(),
                    vpc_lattice_configurations: r.vpc_lattice_configurations.clone(),
                    created_at: txn.now,
                };
                check_revision_features(&revision)?;
                check_task_definition(&td, &revision)?;
                check_target_groups(txn.state, &scope, &revision, &td)?;
                let deployment = new_deployment(revision, desired, &config, Vec::new(), txn.now, &mut rng);
                let svc = Service {
                    scope: scope.clone(),
                    cluster: cluster.name.clone(),
                    name: name.clone(),
                    status: ServiceStatus::Active,
                    settings: ServiceSettings {
                        scheduling_strategy: strategy,
                        deployment_controller: DeploymentControllerType::Ecs,
                        deployment_config: config,
                        placement_constraints: constraints,
                        placement_strategy: strategies,
                        health_check_grace_period_seconds: r.health_check_grace_period_seconds,
                        role_arn: r.role.clone(),
                        propagate_tags: r.propagate_tags,
                        enable_ecs_managed_tags: r.enable_ecs_managed_tags,
                        enable_execute_command: r.enable_execute_command,
                        availability_zone_rebalancing: r.availability_zone_rebalancing,
                    },
                    desired_count: desired,
                    deployments: vec![deployment],
                    history: Vec::new(),
                    events: Vec::new(),
                    tags,
                    created_at: txn.now,
                    created_by,
                    client_token: r.client_token.clone(),
                    tracked: Default::default(),
                    throttle: Default::default(),
                    steady_reported_at: None,
                    last_problem: None,
                    targets: Default::default(),
                };
                let svc = put(txn, svc);
                Ok(view_of(txn.state, &svc))
            })
            .await?;
        self.wake_services();
        Ok(view)
    }

    pub async fn update_service(&self, caller: &Caller, r: ServiceUpdate) -> Result<ServiceView> {
        let reference = r.service.clone();
        check_controller(r.deployment_controller)?;
        let desired = r.desired_count.map(check_desired_count).transpose()?;
        check_placement(
            r.placement_constraints.as_deref().unwrap_or_default(),
            r.placement_strategy.as_deref().unwrap_or_default(),
        )?;
        check_grace(r.health_check_grace_period_seconds)?;
        let scope = caller.scope.clone();
        let seed: u64 = rand::thread_rng().gen();
        let view = self
            .write(move |txn| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let cluster = active_cluster(txn.state, &scope, r.cluster.as_deref())?.clone();
                let existing = find_service(txn.state, &scope, &cluster.name, &reference)?.ok_or_else(not_found)?;
                if existing.status != ServiceStatus::Active {
                    return Err(not_active());
                }
                let mut svc = existing.as_ref().clone();
                let strategy = svc.settings.scheduling_strategy;
                if let Some(n) = desired {
                    if strategy == SchedulingStrategy::Daemon {
                        return Err(Error::parameter(
                            "The DAEMON scheduling strategy does not support a desiredCount: it runs one task on each container instance.",
                        ));
                    }
                    svc.desired_count = n;
                }
                let config = DeploymentConfig::merge(
                    &svc.settings.deployment_config,
                    r.deployment_configuration.as_ref(),
                    strategy,
                )?;
                svc.settings.deployment_config = config.clone();
                if let Some(c) = &r.placement_constraints {
                    svc.settings.placement_constraints = c.clone();
                }
                if let Some(s) = &r.placement_strategy {
                    if strategy == SchedulingStrategy::Daemon && !s.is_empty() {
                        return Err(Error::parameter("The DAEMON scheduling strategy does not support placement strategies."));
                    }
                    svc.settings.placement_strategy = s.clone();
                }
                if let Some(g) = r.health_check_grace_period_seconds {
                    svc.settings.health_check_grace_period_seconds = Some(g);
                }
                if let Some(e) = r.enable_execute_command {
                    svc.settings.enable_execute_command = e;
                }
                if let Some(m) = r.enable_ecs_managed_tags {
                    svc.settings.enable_ecs_managed_tags = m;
                }
                if let Some(p) = r.propagate_tags {
                    svc.settings.propagate_tags = Some(p);
                }
                if let Some(z) = r.availability_zone_rebalancing {
                    svc.settings.availability_zone_rebalancing = Some(z);
                }
                let current = svc.deployments.first().map(|d| d.revision.clone()).ok_or_else(not_active)?;
                let mut rev = current.clone();
                let td = match &r.task_definition {
                    Some(t) => resolve(txn.state, &scope, t)?.clone(),
                    None => txn
                        .state
                        .task_definitions
                        .get(&(scope.clone(), rev.family.clone(), rev.revision))
                        .map(|t| t.as_ref().clone())
                        .ok_or_else(|| Error::client("The service's task definition no longer exists."))?,
                };
                rev.family = td.family.clone();
                rev.revision = td.revision;
                if let Some(p) = &r.capacity_provider_strategy {
                    let (lt, items) = launch_target(&cluster, None, p, strategy)?;
                    rev.launch_type = lt;
                    rev.capacity_provider_strategy = items;
                }
                if let Some(n) = &r.network_configuration {
                    rev.network_configuration = Some(n.clone());
                }
                if let Some(l) = &r.load_balancers {
                    rev.load_balancers = l.clone();
                }
                if let Some(s) = &r.service_registries {
                    rev.service_registries = s.clone();
                }
                if let Some(c) = &r.service_connect_configuration {
                    rev.service_connect_configuration = Some(c.clone());
                }
                if let Some(v) = &r.volume_configurations {
                    rev.volume_configurations = v.clone();
                }
                if let Some(v) = &r.vpc_lattice_configurations {
                    rev.vpc_lattice_configurations = v.clone();
                }
                if let Some(p) = &r.platform_version {
                    rev.platform_version = Some(p.clone());
                }
                check_revision_features(&rev)?;
                // A changed task definition is checked like a new one; an unchanged one
                // may have been deregistered since and still runs.
                if r.task_definition.is_some() || !rev.same_config(&current) {
                    check_task_definition(&td, &rev)?;
                }
                if r.load_balancers.is_some() || r.task_definition.is_some() {
                    check_target_groups(txn.state, &scope, &rev, &td)?;
                }
                if svc.settings.role_arn.is_some() && rev.load_balancers.is_empty() {
                    return Err(Error::parameter("A role can only be given for a service that uses a load balancer."));
                }
                let force = r.force_new_deployment;
                if force || !rev.same_config(&current) {
                    let group = svc.task_group();
                    let sources = svc
                        .deployments
                        .iter()
                        .map(|d| {
                            let n = txn
                                .state
                                .group_tasks(&svc.scope, &svc.cluster, &group)
                                .filter(|t| t.started_by.as_deref() == Some(d.id.as_str()))
                                .filter(|t| t.desired_status == DesiredStatus::Running)
                                .count() as u32;
                            (d.revision.id.clone(), n)
                        })
                        .collect();
                    if let Some(p) = svc.deployments.first_mut() {
                        p.status = DeploymentStatus::Active;
                        p.updated_at = txn.now;
                        if p.rollout_state == RolloutState::InProgress {
                            p.deployment_status = ServiceDeploymentStatus::Stopped;
                            p.status_reason = Some("Superseded by a newer deployment of the service.".into());
                            p.finished_at = Some(txn.now);
                        }
                    }
                    rev.id = digits(19, &mut rng);
                    rev.created_at = txn.now;
                    if rev.family != current.family || rev.revision != current.revision {
                        // ECS: a new task definition ends the service throttle at once.
                        svc.throttle = Default::default();
                    }
                    let d = new_deployment(rev, svc.desired_count, &config, sources, txn.now, &mut rng);
                    svc.deployments.insert(0, d);
                } else if let Some(p) = svc.deployments.first_mut() {
                    p.config = config;
                }
                let svc = put(txn, svc);
                Ok(view_of(txn.state, &svc))
            })
            .await?;
        self.wake_services();
        Ok(view)
    }

    /// DeleteService: the service becomes DRAINING, its tasks stop, and then it is
    /// INACTIVE. Without `force`, a REPLICA service must be scaled to zero first.
    pub async fn delete_service(
        &self,
        caller: &Caller,
        cluster: Option<String>,
        service: String,
        force: bool,
    ) -> Result<ServiceView> {
        let scope = caller.scope.clone();
        let view = self
            .write(move |txn| {
                let cluster = active_cluster(txn.state, &scope, cluster.as_deref())?.name.clone();
                let existing = find_service(txn.state, &scope, &cluster, &service)?.ok_or_else(not_found)?;
                match existing.status {
                    ServiceStatus::Active => {}
                    ServiceStatus::Draining => return Ok(view_of(txn.state, existing)),
                    ServiceStatus::Inactive => return Err(not_active()),
                }
                let mut svc = existing.as_ref().clone();
                let replica = svc.settings.scheduling_strategy == SchedulingStrategy::Replica;
                if replica && !force && svc.desired_count > 0 {
                    return Err(Error::parameter("The service cannot be stopped while it is scaled above 0."));
                }
                svc.status = ServiceStatus::Draining;
                svc.desired_count = 0;
                for d in &mut svc.deployments {
                    d.desired_count = 0;
                    d.updated_at = txn.now;
                }
                let svc = put(txn, svc);
                Ok(view_of(txn.state, &svc))
            })
            .await?;
        self.wake_services();
        Ok(view)
    }

    /// DescribeServices: up to ten services by name or ARN; unknown ones are failures
    /// with reason MISSING.
    pub fn describe_services(
        &self,
        caller: &Caller,
        cluster: Option<&str>,
        refs: &[String],
    ) -> Result<(Vec<ServiceView>, Vec<Failure>)> {
        if refs.is_empty() || refs.len() > MAX_DESCRIBE {
            return Err(Error::parameter(format!("Pass between 1 and {MAX_DESCRIBE} services.")));
        }
        let state = self.view();
        let cluster = active_cluster(&state, &caller.scope, cluster)?.name.clone();
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for r in refs {
            match find_service(&state, &caller.scope, &cluster, r)? {
                Some(s) => found.push(view_of(&state, s)),
                None => {
                    let arn = match ServiceRef::parse(r, &caller.scope)? {
                        Some(sr) if !r.starts_with("arn:") => {
                            service_arn(&caller.scope, &cluster, &sr.name).to_string()
                        }
                        _ => r.clone(),
                    };
                    failures.push(Failure { arn, reason: "MISSING".into(), detail: None });
                }
            }
        }
        Ok((found, failures))
    }

    /// Service ARNs of a cluster (not INACTIVE ones), in name order.
    pub fn list_services(
        &self,
        caller: &Caller,
        cluster: Option<&str>,
        launch_type: Option<LaunchType>,
        scheduling: Option<SchedulingStrategy>,
        page: &Page,
    ) -> Result<(Vec<String>, Option<String>)> {
        let state = self.view();
        let cluster = active_cluster(&state, &caller.scope, cluster)?.name.clone();
        let items = state
            .cluster_services(&caller.scope, &cluster)
            .filter(|s| s.status != ServiceStatus::Inactive)
            .filter(|s| scheduling.is_none_or(|k| s.settings.scheduling_strategy == k))
            .filter(|s| {
                launch_type
                    .is_none_or(|l| s.primary().and_then(|d| d.revision.launch_type.as_deref()) == Some(l.as_str()))
            })
            .map(|s| (s.name.to_string(), s.arn().to_string()))
            .collect::<Vec<_>>();
        Ok(page.take(items.into_iter(), false))
    }

    /// Services of the caller that use a Service Connect namespace (by name or ARN).
    pub fn list_services_by_namespace(
        &self,
        caller: &Caller,
        namespace: &str,
        page: &Page,
    ) -> Result<(Vec<String>, Option<String>)> {
        if namespace.is_empty() {
            return Err(Error::parameter("namespace is required."));
        }
        let short = namespace.rsplit('/').next().unwrap_or(namespace);
        let state = self.view();
        let items = state
            .services
            .iter()
            .filter(|((s, _, _), v)| *s == caller.scope && v.status == ServiceStatus::Active)
            .filter(|(_, v)| {
                v.primary()
                    .and_then(|d| d.revision.service_connect_configuration.as_ref())
                    .and_then(|c| c.namespace.as_deref())
                    .is_some_and(|n| n == namespace || n == short)
            })
            .map(|((_, c, n), v)| (format!("{c}/{n}"), v.arn().to_string()))
            .collect::<Vec<_>>();
        Ok(page.take(items.into_iter(), false))
    }

    /// The deployments of one service, newest first, filtered by status and creation time.
    pub fn list_service_deployments(
        &self,
        caller: &Caller,
        cluster: Option<&str>,
        service: &str,
        statuses: &[ServiceDeploymentStatus],
        created: (Option<Timestamp>, Option<Timestamp>),
        page: &Page,
    ) -> Result<(Vec<DeploymentView>, Option<String>)> {
        let state = self.view();
        let cluster = active_cluster(&state, &caller.scope, cluster)?.name.clone();
        let svc = find_service(&state, &caller.scope, &cluster, service)?.ok_or_else(not_found)?;
        let counts = revision_counts(&state, svc);
        let mut all: Vec<&Deployment> = svc.all_deployments().collect();
        all.sort_by(|a, b| b.created_at.epoch_seconds().total_cmp(&a.created_at.epoch_seconds()));
        let items = all
            .into_iter()
            .filter(|d| statuses.is_empty() || statuses.contains(&d.deployment_status))
            .filter(|d| created.0.is_none_or(|b| d.created_at.epoch_seconds() < b.epoch_seconds()))
            .filter(|d| created.1.is_none_or(|a| d.created_at.epoch_seconds() > a.epoch_seconds()))
            // Descending creation time as a key that sorts: the inverted time, then the id.
            .map(|d| {
                let key = format!(
                    "{:020}/{}",
                    u64::MAX / 2 - (d.created_at.epoch_seconds() * 1000.0) as u64,
                    d.deployment_id
                );
                (key, DeploymentView { service: svc.clone(), deployment: d.clone(), revisions: counts.clone() })
            })
            .collect::<Vec<_>>();
        Ok(page.take(items.into_iter(), false))
    }

    pub fn describe_service_deployments(
        &self,
        caller: &Caller,
        arns: &[String],
    ) -> Result<(Vec<DeploymentView>, Vec<Failure>)> {
        self.by_service_arn(caller, arns, "service-deployment", |svc, id| {
            svc.all_deployments().find(|d| d.deployment_id == id).cloned()
        })
    }

    pub fn describe_service_revisions(
        &self,
        caller: &Caller,
        arns: &[String],
    ) -> Result<(Vec<RevisionView>, Vec<Failure>)> {
        let (found, failures) = self.by_service_arn(caller, arns, "service-revision", |svc, id| {
            svc.all_deployments().find(|d| d.revision.id == id).cloned()
        })?;
        Ok((found.into_iter().map(|v| (v.service, v.deployment.revision)).collect(), failures))
    }

    /// Looks up `<kind>/<cluster>/<service>/<id>` ARNs of the caller.
    fn by_service_arn(
        &self,
        caller: &Caller,
        arns: &[String],
        kind: &str,
        pick: impl Fn(&Service, &str) -> Option<Deployment>,
    ) -> Result<(Vec<DeploymentView>, Vec<Failure>)> {
        if arns.is_empty() || arns.len() > MAX_DESCRIBE_DEPLOYMENTS {
            return Err(Error::parameter(format!("Pass between 1 and {MAX_DESCRIBE_DEPLOYMENTS} ARNs.")));
        }
        let state = self.view();
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for arn in arns {
            let parsed = Arn::parse(arn).map_err(|_| Error::parameter(format!("'{arn}' is not a valid ARN.")))?;
            let parts: Option<(&str, &str, &str)> = parsed.resource.strip_prefix(&format!("{kind}/")).and_then(|r| {
                let mut it = r.splitn(3, '/');
                Some((it.next()?, it.next()?, it.next()?))
            });
            let Some((cluster, service, id)) = parts else {
                return Err(Error::parameter(format!("'{arn}' is not a {kind} ARN.")));
            };
            let hit = (parsed.service == "ecs" && parsed.is_in(&caller.scope))
                .then(|| Some((ClusterName::parse(cluster).ok()?, ServiceName::parse(service).ok()?)))
                .flatten()
                .and_then(|(c, s)| state.services.get(&(caller.scope.clone(), c, s)))
                .and_then(|svc| pick(svc, id).map(|d| (svc, d)));
            match hit {
                Some((svc, d)) => found.push(DeploymentView {
                    service: svc.clone(),
                    deployment: d,
                    revisions: revision_counts(&state, svc),
                }),
                None => failures.push(Failure { arn: arn.clone(), reason: "MISSING".into(), detail: None }),
            }
        }
        Ok((found, failures))
    }
}
