//! How the runner behaves: the ECS agent's settings it honours.

use std::sync::Arc;
use std::time::Duration;

use crate::awslogs::Shipping;
use crate::endpoint::Endpoint;
use crate::registry_login::RegistryLogin;

/// `ECS_IMAGE_PULL_BEHAVIOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullBehavior {
    /// Pull; if the pull fails, use the cached image if there is one.
    #[default]
    Default,
    /// Pull; if the pull fails, the task fails.
    Always,
    /// Pull only if this agent has not pulled the image before (or it was removed since).
    Once,
    /// Pull only if the image is not cached.
    PreferCached,
}

/// How the runner behaves, from the ECS agent's settings.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub instance_arn: String,
    pub pull_behavior: PullBehavior,
    /// `ECS_CONTAINER_STOP_TIMEOUT`: grace between SIGTERM and SIGKILL when a container
    /// has no `stopTimeout` of its own.
    pub stop_timeout: Duration,
    /// `ECS_CONTAINER_START_TIMEOUT`: how long a `docker start` may take, and how long a
    /// dependency without its own `startTimeout` may take to reach its condition.
    pub start_timeout: Duration,
    /// `ECS_DYNAMIC_HOST_PORT_RANGE`: where Docker picks host ports for port mappings
    /// without one; `None` leaves it to Docker's ephemeral range.
    pub dynamic_port_range: Option<(u16, u16)>,
    /// Credentials for images of Berth's own registry; `None` pulls without credentials.
    pub registry_login: Option<Arc<RegistryLogin>>,
    /// Where `awslogs` containers' output goes; `None` fails such containers at start.
    pub awslogs: Option<Arc<Shipping>>,
    /// The task endpoint its containers are told about (metadata, task role credentials);
    /// `None`: containers get no endpoint variables.
    pub endpoint: Option<Arc<Endpoint>>,
    /// Reads task definitions' secrets; `None` fails tasks that have any.
    pub secrets: Option<Arc<crate::secrets::Fetcher>>,
}

impl RunnerConfig {
    /// The ECS agent's defaults: pull behaviour `default`, 30 s stop timeout, 3 min start timeout.
    pub fn new(instance_arn: impl Into<String>) -> Self {
        RunnerConfig {
            instance_arn: instance_arn.into(),
            pull_behavior: PullBehavior::Default,
            stop_timeout: Duration::from_secs(30),
            start_timeout: Duration::from_secs(180),
            dynamic_port_range: None,
            registry_login: None,
            awslogs: None,
            endpoint: None,
            secrets: None,
        }
    }
}
