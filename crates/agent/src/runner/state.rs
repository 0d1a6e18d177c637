//! What a task run knows about each of its containers: its phase, the Engine call in
//! flight, its start conditions on the others, what Docker last said. Data only: `rules`
//! decides on it, `task` acts on the decisions.

use std::net::Ipv4Addr;
use std::time::{Instant, SystemTime};

use agent_protocol::HealthStatus;
use model::ecs::shapes::{ContainerDefinition, NetworkBinding};

use crate::endpoint::EndpointId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not created yet.
    Waiting,
    /// Created, never started.
    Created,
    /// Running (or being restarted by its restart policy).
    Running,
    Stopped,
}

/// A start condition on another container: ECS's `dependsOn` conditions, plus `Created`,
/// which `volumesFrom` implies (links imply `Start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    Created,
    Start,
    Complete,
    Success,
    Healthy,
}

impl Cond {
    pub fn name(self) -> &'static str {
        match self {
            Cond::Created => "CREATED",
            Cond::Start => "START",
            Cond::Complete => "COMPLETE",
            Cond::Success => "SUCCESS",
            Cond::Healthy => "HEALTHY",
        }
    }
}

/// Container `on` (an index into the task's containers) must reach `cond` first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dep {
    pub on: usize,
    pub cond: Cond,
}

/// An Engine call in flight for a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    Create,
    Start,
    Stop,
    /// Removing an awsvpc task's pause container, the last step of its teardown.
    Remove,
}

/// Where an awsvpc task's security group rules stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firewall {
    /// Nothing to enforce (not awsvpc, or the control plane sent no rules).
    None,
    /// To be installed once the pause container runs.
    Wanted,
    Installing,
    Installed,
}

#[derive(Debug)]
pub struct Ctr {
    pub name: String,
    /// The pause container of an awsvpc task: run like the others, never reported.
    pub internal: bool,
    /// The definition with the task's overrides applied.
    pub def: ContainerDefinition,
    pub essential: bool,
    pub deps: Vec<Dep>,
    pub docker_name: String,
    pub id: Option<String>,
    pub phase: Phase,
    pub pending: Option<Pending>,
    /// When it last started running, for dependency timeouts and the restart policy.
    pub started: Option<Instant>,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub ever_started: bool,
    pub ever_healthy: bool,
    pub stop_sent: bool,
    /// Docker reported an `oom` event for it.
    pub oom_event: bool,
    /// A SIGKILL exit not of the agent's doing waits until then for Docker's OOM verdict.
    pub exit_hold_until: Option<Instant>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub bindings: Vec<NetworkBinding>,
    pub health: HealthStatus,
    pub image_digest: Option<String>,
    /// Its task endpoint id for metadata (none for the pause container, or without an
    /// endpoint); an adopted container's is read back from its environment.
    pub endpoint_id: Option<EndpointId>,
    /// What Docker last said of it that only the metadata endpoint shows.
    pub created_at: Option<SystemTime>,
    pub image_id: Option<String>,
    /// Its address on each Docker network, by network name.
    pub addresses: Vec<(String, Ipv4Addr)>,
    /// Its resolved secrets, held in memory until it is created (its `Debug` shows names only).
    pub secrets: crate::secrets::ForContainer,
}

impl Ctr {
    pub fn new(docker_name: String, def: ContainerDefinition, deps: Vec<Dep>) -> Ctr {
        Ctr {
            name: def.name.clone().unwrap_or_default(),
            internal: false,
            essential: def.essential != Some(false),
            deps,
            docker_name,
            def,
            id: None,
            phase: Phase::Waiting,
            pending: None,
            started: None,
            started_at: None,
            finished_at: None,
            ever_started: false,
            ever_healthy: false,
            stop_sent: false,
            oom_event: false,
            exit_hold_until: None,
            exit_code: None,
            reason: None,
            bindings: vec![],
            health: HealthStatus::Unknown,
            image_digest: None,
            endpoint_id: None,
            created_at: None,
            image_id: None,
            addresses: vec![],
            secrets: Default::default(),
        }
    }
}
