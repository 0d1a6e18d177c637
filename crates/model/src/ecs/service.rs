//! ECS services: names, the rules of a deployment configuration, deployments, and the
//! service event log with ECS's wording.
//!
//! Everything here is pure: the control plane's controller decides *what* to do with the
//! numbers and messages these types produce, and when.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::shapes::{
    CapacityProviderStrategyItem, DeploymentAlarms, DeploymentConfiguration, DeploymentControllerType, LoadBalancer,
    NetworkConfiguration, PlacementConstraint, PlacementStrategy, PropagateTags, SchedulingStrategy,
    ServiceConnectConfiguration, ServiceDeploymentStatus, ServiceRegistry, ServiceVolumeConfiguration,
    VpcLatticeConfiguration,
};
use crate::ids::{is_ecs_name, ClusterName, Family, Scope};
use crate::tags::Tags;
use crate::{Arn, Invalid, Timestamp};

/// The most events a service keeps; ECS shows the 100 most recent.
pub const MAX_EVENTS: usize = 100;
/// Finished deployments kept for `ListServiceDeployments` and `DescribeServiceRevisions`.
pub const MAX_HISTORY: usize = 50;
/// The largest desired count of one service (ECS's quota of tasks per service).
pub const MAX_DESIRED_COUNT: i32 = 5000;
/// A problem event that repeats is shown again only after this long, as in ECS.
pub const REPEAT_PROBLEM_AFTER_SECONDS: f64 = 6.0 * 3600.0;
/// The longest wait between launches of a service whose tasks keep failing to start
/// (ECS's service throttle logic).
pub const MAX_THROTTLE_SECONDS: f64 = 27.0 * 60.0;
/// Consecutive start failures before launches are spaced out.
pub const THROTTLE_AFTER_FAILURES: u32 = 3;
/// A task that stops on its own sooner than this after it started counts as a failed
/// start for the throttle, one that stays healthy this long ends the throttle, and a
/// deployment completes only once its tasks have been up this long.
///
/// Decision: ECS documents the throttle for tasks that never reach RUNNING, yet on ECS a
/// task whose container exits at once still spends tens of seconds between placement
/// and STOPPED (ENI, pull, agent cycle), which paces its replacements, and ECS reports
/// such crash loops as "unable to consistently start tasks". Berth starts a container in
/// a fraction of a second, so without this rule a crashing revision would relaunch
/// hundreds of times a minute and bury the service's events.
pub const STARTED_AFTER_SECONDS: f64 = 10.0;

/// A service name: up to 255 letters, numbers, hyphens and underscores, unique in its
/// cluster among services that are not INACTIVE.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceName(String);

impl ServiceName {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if is_ecs_name(s) {
            Ok(ServiceName(s.to_string()))
        } else {
            Err(Invalid::Parameter(
                "Service name must be 1 to 255 characters: letters, numbers, hyphens and underscores.".into(),
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServiceName {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        ServiceName::parse(&s)
    }
}

impl From<ServiceName> for String {
    fn from(v: ServiceName) -> String {
        v.0
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn service_arn(scope: &Scope, cluster: &ClusterName, name: &ServiceName) -> Arn {
    scope.arn("ecs", &format!("service/{cluster}/{name}"))
}

/// How a request names a service: its name, or its ARN in the long
/// (`service/<cluster>/<name>`) or the old short (`service/<name>`) format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    pub name: ServiceName,
    /// The cluster the ARN names, if it names one.
    pub cluster: Option<ClusterName>,
}

impl ServiceRef {
    /// Parses a reference; `Ok(None)` is a well-formed ARN of another account or region,
    /// which names a service this caller cannot see.
    pub fn parse(s: &str, scope: &Scope) -> Result<Option<Self>, Invalid> {
        if !s.starts_with("arn:") {
            return Ok(Some(ServiceRef { name: ServiceName::parse(s)?, cluster: None }));
        }
        let arn = Arn::parse(s)?;
        let bad = || Invalid::Parameter(format!("'{s}' is not a service ARN."));
        let rest = arn.resource.strip_prefix("service/").ok_or_else(bad)?;
        let (cluster, name) = match rest.split_once('/') {
            Some((c, n)) => (Some(ClusterName::parse(c).map_err(|_| bad())?), n),
            None => (None, rest),
        };
        let name = ServiceName::parse(name).map_err(|_| bad())?;
        if arn.service != "ecs" || !arn.is_in(scope) {
            return Ok(None);
        }
        Ok(Some(ServiceRef { name, cluster }))
    }
}

/// A service's lifecycle: DeleteService makes it DRAINING until its tasks have stopped,
/// then INACTIVE (still describable, as in ECS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceStatus {
    Active,
    Draining,
    Inactive,
}

impl ServiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceStatus::Active => "ACTIVE",
            ServiceStatus::Draining => "DRAINING",
            ServiceStatus::Inactive => "INACTIVE",
        }
    }
}

/// The deployment circuit breaker of a rolling update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitBreaker {
    pub enable: bool,
    pub rollback: bool,
}

/// How many tasks may run during a deployment, with ECS's defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentConfig {
    pub minimum_healthy_percent: i32,
    pub maximum_percent: i32,
    pub circuit_breaker: CircuitBreaker,
    /// CloudWatch alarms are accepted and shown; Berth has no alarms to watch.
    pub alarms: Option<DeploymentAlarms>,
}

/// The task counts a deployment must stay within, from the desired count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Healthy tasks that must keep running (minimumHealthyPercent, rounded up).
    pub lower: u32,
    /// Tasks that may be RUNNING or PENDING at once (maximumPercent, rounded down).
    pub upper: u32,
}

impl DeploymentConfig {
    /// ECS's defaults: replica services keep 100% healthy and may run 200%; daemon services
    /// may stop every task first (0%) and never run more than one per instance (100%).
    pub fn defaults(strategy: SchedulingStrategy) -> Self {
        let (minimum_healthy_percent, maximum_percent) = match strategy {
            SchedulingStrategy::Replica => (100, 200),
            SchedulingStrategy::Daemon => (0, 100),
        };
        DeploymentConfig {
            minimum_healthy_percent,
            maximum_percent,
            circuit_breaker: CircuitBreaker::default(),
            alarms: None,
        }
    }

    /// Applies a request's `deploymentConfiguration` over `base` (the service's current
    /// configuration, or the defaults) and checks the result.
    pub fn merge(
        base: &DeploymentConfig,
        given: Option<&DeploymentConfiguration>,
        strategy: SchedulingStrategy,
    ) -> Result<Self, Invalid> {
        let mut c = base.clone();
        if let Some(g) = given {
            if let Some(m) = g.minimum_healthy_percent {
                c.minimum_healthy_percent = m;
            }
            if let Some(m) = g.maximum_percent {
                c.maximum_percent = m;
            }
            if let Some(cb) = &g.deployment_circuit_breaker {
                c.circuit_breaker =
                    CircuitBreaker { enable: cb.enable.unwrap_or(false), rollback: cb.rollback.unwrap_or(false) };
            }
            if let Some(a) = &g.alarms {
                c.alarms = Some(a.clone());
            }
            if g.strategy.is_some_and(|s| s != super::shapes::DeploymentStrategy::Rolling)
                || g.lifecycle_hooks.as_ref().is_some_and(|h| !h.is_empty())
                || g.linear_configuration.is_some()
                || g.canary_configuration.is_some()
            {
                return Err(Invalid::Parameter(
                    "Only the ROLLING deployment strategy is available; blue/green, linear and canary deployments and lifecycle hooks are not."
                        .into(),
                ));
            }
        }
        c.check(strategy)?;
        Ok(c)
    }

    /// ECS's limits on the percentages. `rollback` without `enable` is accepted, as ECS
    /// accepts it: a disabled circuit breaker never fails a deployment, so it never rolls
    /// one back either.
    fn check(&self, strategy: SchedulingStrategy) -> Result<(), Invalid> {
        let (min, max) = (self.minimum_healthy_percent, self.maximum_percent);
        if !(0..=100).contains(&min) {
            return Err(Invalid::Parameter(format!("minimumHealthyPercent must be between 0 and 100; got {min}.")));
        }
        if max < 100 {
            return Err(Invalid::Parameter(format!(
                "maximumPercent must be at least 100, or the service could never run its desired count; got {max}."
            )));
        }
        if strategy == SchedulingStrategy::Daemon && max != 100 {
            return Err(Invalid::Parameter(format!(
                "The maximumPercent of a service with the DAEMON scheduling strategy must be 100; got {max}."
            )));
        }
        Ok(())
    }

    /// The healthy floor and the running ceiling for `desired` tasks.
    pub fn bounds(&self, desired: u32) -> Bounds {
        let d = u64::from(desired);
        let lower = (d * self.minimum_healthy_percent as u64).div_ceil(100);
        let upper = d * self.maximum_percent as u64 / 100;
        Bounds { lower: lower as u32, upper: upper.max(d) as u32 }
    }
}

/// The failures after which the circuit breaker fails a deployment: half the desired
/// count (rounded up), at least 3 and at most 200, as the ECS guide documents.
pub fn circuit_breaker_threshold(desired: u32) -> u32 {
    desired.div_ceil(2).clamp(3, 200)
}

/// How long to wait before the next launch after `failures` consecutive tasks failed to
/// reach RUNNING: nothing for the first few, then doubling from 5 s up to 27 minutes.
pub fn throttle_seconds(failures: u32) -> f64 {
    if failures < THROTTLE_AFTER_FAILURES {
        return 0.0;
    }
    let doublings = (failures - THROTTLE_AFTER_FAILURES).min(16);
    (5.0 * f64::from(1u32 << doublings)).min(MAX_THROTTLE_SECONDS)
}

/// A deployment's place among the service's deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentStatus {
    /// The newest: what the service converges to.
    Primary,
    /// Older and still running tasks that are being replaced.
    Active,
    /// Finished: no tasks left.
    Inactive,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Primary => "PRIMARY",
            DeploymentStatus::Active => "ACTIVE",
            DeploymentStatus::Inactive => "INACTIVE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutState {
    InProgress,
    Completed,
    Failed,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::InProgress => "IN_PROGRESS",
            RolloutState::Completed => "COMPLETED",
            RolloutState::Failed => "FAILED",
        }
    }
}

/// What a deployment runs: the parts of a service that a change of starts a new
/// deployment (ECS's "service revision").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    /// The number in the revision's ARN (`service-revision/<cluster>/<service>/<id>`).
    pub id: String,
    pub family: Family,
    pub revision: u32,
    pub launch_type: Option<String>,
    pub capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    pub platform_version: Option<String>,
    pub network_configuration: Option<NetworkConfiguration>,
    pub load_balancers: Vec<LoadBalancer>,
    pub service_registries: Vec<ServiceRegistry>,
    pub service_connect_configuration: Option<ServiceConnectConfiguration>,
    pub volume_configurations: Vec<ServiceVolumeConfiguration>,
    pub vpc_lattice_configurations: Vec<VpcLatticeConfiguration>,
    pub created_at: Timestamp,
}

impl Revision {
    /// Whether `other` runs the same thing (everything but identity and time).
    pub fn same_config(&self, other: &Revision) -> bool {
        let strip =
            |r: &Revision| Revision { id: String::new(), created_at: Timestamp::from_epoch_seconds(0.0), ..r.clone() };
        strip(self) == strip(other)
    }
}

/// A circuit-breaker rollback: which revision the service went back to, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    pub reason: String,
    pub started_at: Timestamp,
    pub revision_id: String,
}

/// One deployment of a service: a revision and how its rollout is going. Tasks belong to
/// the deployment whose id is their `startedBy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// `ecs-svc/` and 19 digits, as in ECS.
    pub id: String,
    /// The id in the ARN of the matching service deployment.
    pub deployment_id: String,
    pub status: DeploymentStatus,
    pub revision: Revision,
    pub desired_count: u32,
    /// Tasks of this deployment that failed (stopped on their own or failed health checks).
    pub failed_tasks: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub rollout_state: RolloutState,
    pub rollout_state_reason: String,
    /// The service deployment's own status (`ListServiceDeployments`).
    pub deployment_status: ServiceDeploymentStatus,
    pub status_reason: Option<String>,
    /// The configuration the deployment ran with.
    pub config: DeploymentConfig,
    /// Revisions running when the deployment started, with their task counts.
    pub sources: Vec<(String, u32)>,
    pub finished_at: Option<Timestamp>,
    pub rollback: Option<Rollback>,
}

impl Deployment {
    pub fn circuit_breaker_threshold(&self) -> u32 {
        circuit_breaker_threshold(self.desired_count)
    }
}

/// One entry of a service's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceEvent {
    pub id: String,
    pub created_at: Timestamp,
    pub message: String,
}

/// What the service scheduler remembers between passes about launches that keep failing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throttle {
    /// Tasks that stopped in a row without ever reaching RUNNING.
    pub consecutive_failures: u32,
    /// No task is launched before this moment.
    pub next_launch_at: Option<Timestamp>,
}

/// Service settings that apply to every deployment (a change takes effect on the next
/// placement or task, without a new deployment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSettings {
    pub scheduling_strategy: SchedulingStrategy,
    pub deployment_controller: DeploymentControllerType,
    pub deployment_config: DeploymentConfig,
    pub placement_constraints: Vec<PlacementConstraint>,
    pub placement_strategy: Vec<PlacementStrategy>,
    pub health_check_grace_period_seconds: Option<i32>,
    pub role_arn: Option<String>,
    pub propagate_tags: Option<PropagateTags>,
    pub enable_ecs_managed_tags: bool,
    pub enable_execute_command: bool,
    pub availability_zone_rebalancing: Option<super::shapes::AvailabilityZoneRebalancing>,
}

/// An ECS service as the control plane keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub scope: Scope,
    pub cluster: ClusterName,
    pub name: ServiceName,
    pub status: ServiceStatus,
    pub settings: ServiceSettings,
    /// For DAEMON services: the number of instances that should run a task, as last
    /// computed by the scheduler.
    pub desired_count: u32,
    /// Live deployments, the PRIMARY first.
    pub deployments: Vec<Deployment>,
    /// Finished deployments, newest first, at most [`MAX_HISTORY`].
    pub history: Vec<Deployment>,
    /// Newest first, at most [`MAX_EVENTS`].
    pub events: Vec<ServiceEvent>,
    pub tags: Tags,
    pub created_at: Timestamp,
    pub created_by: String,
    pub client_token: Option<String>,
    /// Tasks the scheduler started whose end it has not accounted for yet (failure
    /// counts of the circuit breaker and the throttle).
    pub tracked: BTreeSet<String>,
    pub throttle: Throttle,
    /// When "has reached a steady state" was last said; `None` while not steady.
    pub steady_reported_at: Option<Timestamp>,
    /// The last problem event, so that a repeating problem is said once every six hours.
    pub last_problem: Option<(String, Timestamp)>,
    /// The targets the scheduler registered for the service's tasks and has not
    /// deregistered yet: only these does it ever deregister, so targets registered by
    /// hand in the same target groups are left alone.
    #[serde(default)]
    pub targets: BTreeSet<ServiceTarget>,
}

/// A target registered on behalf of a service: a target group and the target in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceTarget {
    pub target_group_arn: String,
    /// An EC2 instance id (target type `instance`) or an IPv4 address (`ip`).
    pub id: String,
    pub port: u16,
}

impl Service {
    pub fn arn(&self) -> Arn {
        service_arn(&self.scope, &self.cluster, &self.name)
    }

    pub fn primary(&self) -> Option<&Deployment> {
        self.deployments.first()
    }

    pub fn primary_mut(&mut self) -> Option<&mut Deployment> {
        self.deployments.first_mut()
    }

    /// Every deployment, live ones first.
    pub fn all_deployments(&self) -> impl Iterator<Item = &Deployment> {
        self.deployments.iter().chain(self.history.iter())
    }

    /// The group every task of the service carries.
    pub fn task_group(&self) -> String {
        format!("service:{}", self.name)
    }

    /// Adds an event at the head of the log, keeping at most [`MAX_EVENTS`]. An event
    /// identical to the newest one is not repeated within six hours, as ECS omits them.
    pub fn record(&mut self, id: String, now: Timestamp, message: String) {
        if let Some(last) = self.events.first() {
            let recent = now.epoch_seconds() - last.created_at.epoch_seconds() < REPEAT_PROBLEM_AFTER_SECONDS;
            if last.message == message && recent {
                return;
            }
        }
        self.events.insert(0, ServiceEvent { id, created_at: now, message });
        self.events.truncate(MAX_EVENTS);
    }

    /// Records a problem unless the same problem was recorded within six hours and has
    /// not been resolved since (ECS omits such duplicates). Returns whether it was recorded.
    pub fn record_problem(&mut self, id: String, now: Timestamp, message: String) -> bool {
        if let Some((last, at)) = &self.last_problem {
            if *last == message && now.epoch_seconds() - at.epoch_seconds() < REPEAT_PROBLEM_AFTER_SECONDS {
                return false;
            }
        }
        self.last_problem = Some((message.clone(), now));
        self.record(id, now, message);
        true
    }

    /// Moves a finished deployment into the history.
    pub fn retire(&mut self, mut d: Deployment, now: Timestamp) {
        d.status = DeploymentStatus::Inactive;
        d.desired_count = 0;
        d.updated_at = now;
        d.finished_at.get_or_insert(now);
        self.history.insert(0, d);
        self.history.truncate(MAX_HISTORY);
    }
}

pub fn service_revision_arn(scope: &Scope, cluster: &ClusterName, service: &ServiceName, id: &str) -> Arn {
    scope.arn("ecs", &format!("service-revision/{cluster}/{service}/{id}"))
}

pub fn service_deployment_arn(scope: &Scope, cluster: &ClusterName, service: &ServiceName, id: &str) -> Arn {
    scope.arn("ecs", &format!("service-deployment/{cluster}/{service}/{id}"))
}

/// The service event log's messages, worded as ECS words them.
pub mod events {
    use super::ServiceName;

    fn task_list(ids: &[String]) -> String {
        ids.iter().map(|id| format!("(task {id})")).collect::<Vec<_>>().join(" ")
    }

    pub fn started(s: &ServiceName, ids: &[String]) -> String {
        format!("(service {s}) has started {} tasks: {}.", ids.len(), task_list(ids))
    }

    pub fn stopped(s: &ServiceName, ids: &[String]) -> String {
        format!("(service {s}) has stopped {} running tasks: {}.", ids.len(), task_list(ids))
    }

    pub fn steady(s: &ServiceName) -> String {
        format!("(service {s}) has reached a steady state.")
    }

    pub fn deployment_completed(s: &ServiceName, deployment: &str) -> String {
        format!("(service {s}) (deployment {deployment}) deployment completed.")
    }

    pub fn deployment_failed(s: &ServiceName, deployment: &str) -> String {
        format!("(service {s}) (deployment {deployment}) deployment failed: tasks failed to start.")
    }

    pub fn rolling_back(s: &ServiceName, deployment: &str) -> String {
        format!("(service {s}) rolling back to deployment {deployment}.")
    }

    pub fn throttled(s: &ServiceName) -> String {
        format!("(service {s}) is unable to consistently start tasks successfully. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.")
    }

    pub fn stuck(s: &ServiceName) -> String {
        format!("(service {s}) was unable to stop or start tasks during a deployment because of the service deployment configuration. Update the minimumHealthyPercent or maximumPercent value and try again.")
    }

    pub fn registered_targets(s: &ServiceName, n: usize, target_group: &str) -> String {
        format!("(service {s}) registered {n} targets in (target-group {target_group})")
    }

    pub fn deregistered_targets(s: &ServiceName, n: usize, target_group: &str) -> String {
        format!("(service {s}) deregistered {n} targets in (target-group {target_group})")
    }

    pub fn draining(s: &ServiceName, n: usize) -> String {
        format!("(service {s}) has begun draining connections on {n} tasks.")
    }

    /// A target the load balancer found unhealthy (`instance` with its port, or an IP).
    pub fn target_unhealthy(s: &ServiceName, target: &str, port: u16, target_group: &str, reason: &str) -> String {
        let at = if target.starts_with("i-") {
            format!("(instance {target}) (port {port})")
        } else {
            format!("(ip {target}) (port {port})")
        };
        format!("(service {s}) {at} is unhealthy in (target-group {target_group}) due to (reason {reason}).")
    }

    pub fn health_check_failed(s: &ServiceName, task: &str) -> String {
        format!("(service {s}) (task {task}) failed container health checks.")
    }

    /// Berth's own event: ECS never replaces the tasks of an instance whose agent is gone.
    pub fn instance_lost(s: &ServiceName, instance: &str, grace_seconds: u64, ids: &[String]) -> String {
        format!(
            "(service {s}) (container-instance {instance}) has not been heard from for more than {grace_seconds} seconds; its {} tasks are replaced elsewhere: {}.",
            ids.len(),
            task_list(ids)
        )
    }

    /// Why a task could not be placed, when no container instance is to blame (Fargate
    /// capacity, addresses of a subnet).
    pub fn unable_to_place_reason(s: &ServiceName, reason: &str) -> String {
        format!("(service {s}) was unable to place a task. Reason: {reason}.")
    }

    /// Why no instance took a task, from the first rejected instance's placement reason.
    pub fn unable_to_place(s: &ServiceName, closest: Option<(&str, &str)>) -> String {
        const TAIL: &str = "For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.";
        let lead = format!(
            "(service {s}) was unable to place a task because no container instance met all of its requirements."
        );
        let Some((instance, reason)) = closest else {
            return format!("{lead} Reason: No Container Instances were found in your cluster. {TAIL}");
        };
        let why = match reason {
            "RESOURCE:CPU" => "has insufficient CPU units available.".to_string(),
            "RESOURCE:MEMORY" => "has insufficient memory available.".to_string(),
            "RESOURCE:PORTS" => "is already using a port required by your task.".to_string(),
            "ATTRIBUTE" => "is missing an attribute required by your task.".to_string(),
            other => format!("encountered error \"{other}\"."),
        };
        format!("{lead} The closest matching (container-instance {instance}) {why} {TAIL}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccountId, Region};

    fn scope() -> Scope {
        Scope { account: AccountId::parse("123456789012").unwrap(), region: Region::parse("us-east-1").unwrap() }
    }

    #[test]
    fn bounds_round_as_ecs_documents() {
        let c = DeploymentConfig {
            minimum_healthy_percent: 50,
            maximum_percent: 200,
            ..DeploymentConfig::defaults(SchedulingStrategy::Replica)
        };
        assert_eq!(c.bounds(4), Bounds { lower: 2, upper: 8 });
        // 50% of 3 rounds up to 2; 150% of 3 rounds down to 4.
        assert_eq!(c.bounds(3).lower, 2);
        let c = DeploymentConfig { maximum_percent: 150, ..c };
        assert_eq!(c.bounds(3).upper, 4);
        assert_eq!(c.bounds(0), Bounds { lower: 0, upper: 0 });
    }

    #[test]
    fn circuit_breaker_threshold_is_half_the_desired_count_within_3_and_200() {
        assert_eq!(circuit_breaker_threshold(1), 3);
        assert_eq!(circuit_breaker_threshold(6), 3);
        assert_eq!(circuit_breaker_threshold(7), 4);
        assert_eq!(circuit_breaker_threshold(10), 5);
        assert_eq!(circuit_breaker_threshold(1000), 200);
    }

    #[test]
    fn throttle_grows_to_27_minutes() {
        assert_eq!(throttle_seconds(0), 0.0);
        assert_eq!(throttle_seconds(2), 0.0);
        assert_eq!(throttle_seconds(3), 5.0);
        assert_eq!(throttle_seconds(4), 10.0);
        assert_eq!(throttle_seconds(100), MAX_THROTTLE_SECONDS);
    }

    #[test]
    fn deployment_configuration_rules() {
        let replica = DeploymentConfig::defaults(SchedulingStrategy::Replica);
        let given = |min: Option<i32>, max: Option<i32>| DeploymentConfiguration {
            minimum_healthy_percent: min,
            maximum_percent: max,
            ..Default::default()
        };
        let c = DeploymentConfig::merge(&replica, Some(&given(Some(50), None)), SchedulingStrategy::Replica).unwrap();
        assert_eq!((c.minimum_healthy_percent, c.maximum_percent), (50, 200));
        for (min, max) in [(Some(-1), None), (Some(101), None), (None, Some(99))] {
            assert!(DeploymentConfig::merge(&replica, Some(&given(min, max)), SchedulingStrategy::Replica).is_err());
        }
        let daemon = DeploymentConfig::defaults(SchedulingStrategy::Daemon);
        assert_eq!((daemon.minimum_healthy_percent, daemon.maximum_percent), (0, 100));
        assert!(DeploymentConfig::merge(&daemon, Some(&given(None, Some(200))), SchedulingStrategy::Daemon).is_err());
    }

    #[test]
    fn service_refs() {
        let s = scope();
        let r = ServiceRef::parse("web", &s).unwrap().unwrap();
        assert_eq!((r.name.as_str(), r.cluster), ("web", None));
        let r = ServiceRef::parse("arn:aws:ecs:us-east-1:123456789012:service/demo/web", &s).unwrap().unwrap();
        assert_eq!((r.name.as_str(), r.cluster.unwrap().as_str()), ("web", "demo"));
        let r = ServiceRef::parse("arn:aws:ecs:us-east-1:123456789012:service/web", &s).unwrap().unwrap();
        assert_eq!(r.name.as_str(), "web");
        assert!(ServiceRef::parse("arn:aws:ecs:us-east-1:999999999999:service/demo/web", &s).unwrap().is_none());
        assert!(ServiceRef::parse("we b", &s).is_err());
        assert!(ServiceRef::parse("arn:aws:ecs:us-east-1:123456789012:task/demo/web", &s).is_err());
    }

    #[test]
    fn events_are_newest_first_bounded_and_problems_do_not_repeat() {
        let name = ServiceName::parse("web").unwrap();
        assert_eq!(
            events::started(&name, &["a".into(), "b".into()]),
            "(service web) has started 2 tasks: (task a) (task b)."
        );
        assert_eq!(events::steady(&name), "(service web) has reached a steady state.");
        let mut s = Service {
            scope: scope(),
            cluster: ClusterName::default_cluster(),
            name: name.clone(),
            status: ServiceStatus::Active,
            settings: ServiceSettings {
                scheduling_strategy: SchedulingStrategy::Replica,
                deployment_controller: DeploymentControllerType::Ecs,
                deployment_config: DeploymentConfig::defaults(SchedulingStrategy::Replica),
                placement_constraints: vec![],
                placement_strategy: vec![],
                health_check_grace_period_seconds: None,
                role_arn: None,
                propagate_tags: None,
                enable_ecs_managed_tags: false,
                enable_execute_command: false,
                availability_zone_rebalancing: None,
            },
            desired_count: 1,
            deployments: vec![],
            history: vec![],
            events: vec![],
            tags: Tags::default(),
            created_at: Timestamp::from_epoch_seconds(0.0),
            created_by: String::new(),
            client_token: None,
            tracked: BTreeSet::new(),
            throttle: Throttle::default(),
            steady_reported_at: None,
            last_problem: None,
            targets: Default::default(),
        };
        for i in 0..150 {
            s.record(i.to_string(), Timestamp::from_epoch_seconds(f64::from(i)), format!("m{i}"));
        }
        assert_eq!(s.events.len(), MAX_EVENTS);
        assert_eq!(s.events[0].message, "m149");
        let t = |x: f64| Timestamp::from_epoch_seconds(x);
        assert!(s.record_problem("p1".into(), t(1000.0), "no room".into()));
        assert!(!s.record_problem("p2".into(), t(2000.0), "no room".into()));
        assert!(s.record_problem("p3".into(), t(1000.0 + REPEAT_PROBLEM_AFTER_SECONDS + 1.0), "no room".into()));
        // An event identical to the newest is not repeated within the window; after
        // another event, or once the window has passed, it is.
        let late = 1000.0 + REPEAT_PROBLEM_AFTER_SECONDS + 10.0;
        s.record("r1".into(), t(late), "registered 1 targets".into());
        s.record("r2".into(), t(late + 1.0), "registered 1 targets".into());
        assert_eq!(s.events[0].id, "r1");
        s.record("x".into(), t(late + 2.0), "something else".into());
        s.record("r3".into(), t(late + 3.0), "registered 1 targets".into());
        assert_eq!(s.events[0].id, "r3");
        s.record("r4".into(), t(late + 3.0 + REPEAT_PROBLEM_AFTER_SECONDS), "registered 1 targets".into());
        assert_eq!(s.events[0].id, "r4");
    }
}
