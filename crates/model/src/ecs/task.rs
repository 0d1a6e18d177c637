//! Tasks and container instances: the lifecycle ECS reports, and the records the control
//! plane keeps of them.

use serde::{Deserialize, Serialize};

use super::shapes::{NetworkBinding, TaskOverride};
use crate::ids::{ClusterName, Family, Scope};
use crate::tags::Tags;
use crate::{Arn, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DesiredStatus {
    Running,
    Stopped,
}

/// A task's lifecycle as ECS reports it in `lastStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Provisioning,
    Pending,
    Activating,
    Running,
    Deactivating,
    Stopping,
    Deprovisioning,
    Stopped,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Provisioning => "PROVISIONING",
            TaskStatus::Pending => "PENDING",
            TaskStatus::Activating => "ACTIVATING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Deactivating => "DEACTIVATING",
            TaskStatus::Stopping => "STOPPING",
            TaskStatus::Deprovisioning => "DEPROVISIONING",
            TaskStatus::Stopped => "STOPPED",
        }
    }
}

/// A container's lifecycle as ECS reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContainerStatus {
    Pending,
    Running,
    Stopped,
}

impl ContainerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerStatus::Pending => "PENDING",
            ContainerStatus::Running => "RUNNING",
            ContainerStatus::Stopped => "STOPPED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
    Unknown,
}

/// Why a task stopped, in ECS's words (`stopCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopCode {
    TaskFailedToStart,
    EssentialContainerExited,
    UserInitiated,
    ServiceSchedulerInitiated,
    SpotInterruption,
    TerminationNotice,
}

impl StopCode {
    pub fn as_str(self) -> &'static str {
        match self {
            StopCode::TaskFailedToStart => "TaskFailedToStart",
            StopCode::EssentialContainerExited => "EssentialContainerExited",
            StopCode::UserInitiated => "UserInitiated",
            StopCode::ServiceSchedulerInitiated => "ServiceSchedulerInitiated",
            StopCode::SpotInterruption => "SpotInterruption",
            StopCode::TerminationNotice => "TerminationNotice",
        }
    }
}

impl DesiredStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredStatus::Running => "RUNNING",
            DesiredStatus::Stopped => "STOPPED",
        }
    }
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "HEALTHY",
            HealthStatus::Unhealthy => "UNHEALTHY",
            HealthStatus::Unknown => "UNKNOWN",
        }
    }
}

/// Whether a container instance takes new tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceStatus {
    Active,
    Draining,
    /// Deregistered: kept so that its ARN still describes, as ECS does for a while.
    Inactive,
}

impl InstanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Active => "ACTIVE",
            InstanceStatus::Draining => "DRAINING",
            InstanceStatus::Inactive => "INACTIVE",
        }
    }
}

/// Resources an instance offers, or a task takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu: i64,
    pub memory: i64,
    pub ports_tcp: Vec<u16>,
    pub ports_udp: Vec<u16>,
}

/// A host registered into a cluster by its agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerInstance {
    pub scope: Scope,
    pub cluster: ClusterName,
    /// The id in the ARN (`container-instance/<cluster>/<id>`).
    pub id: String,
    pub ec2_instance_id: String,
    pub status: InstanceStatus,
    pub registered: Resources,
    /// Built-in and custom attributes; capabilities have no value.
    pub attributes: Vec<(String, Option<String>)>,
    pub agent_version: String,
    pub agent_hash: String,
    pub docker_version: String,
    pub registered_at: Timestamp,
    pub tags: Tags,
    /// ECS's version counter: 1 at registration, one more with every change to the
    /// instance or to what it holds (tasks placed on it or leaving it). The writer keeps it.
    #[serde(default = "first_version")]
    pub version: i64,
}

fn first_version() -> i64 {
    1
}

impl ContainerInstance {
    pub fn arn(&self) -> Arn {
        container_instance_arn(&self.scope, &self.cluster, &self.id)
    }

    pub fn attribute(&self, name: &str) -> Option<&Option<String>> {
        self.attributes.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

pub fn container_instance_arn(scope: &Scope, cluster: &ClusterName, id: &str) -> Arn {
    scope.arn("ecs", &format!("container-instance/{cluster}/{id}"))
}

pub fn task_arn(scope: &Scope, cluster: &ClusterName, id: &str) -> Arn {
    scope.arn("ecs", &format!("task/{cluster}/{id}"))
}

/// One container of a task, as last reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskContainer {
    pub name: String,
    pub image: String,
    /// ECS's id for the container: `container/<cluster>/<task id>/<uuid>` in its ARN.
    pub id: String,
    pub last_status: ContainerStatus,
    pub runtime_id: Option<String>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub network_bindings: Vec<NetworkBinding>,
    pub health_status: HealthStatus,
    pub image_digest: Option<String>,
    pub essential: bool,
    pub cpu: i32,
    pub memory: Option<i32>,
    pub memory_reservation: Option<i32>,
}

/// A task: one run of a task definition on a container instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub scope: Scope,
    pub cluster: ClusterName,
    pub id: String,
    pub family: Family,
    pub revision: u32,
    pub container_instance: Option<String>,
    pub launch_type: String,
    pub overrides: Option<TaskOverride>,
    pub group: String,
    pub started_by: Option<String>,
    pub tags: Tags,
    pub desired_status: DesiredStatus,
    pub last_status: TaskStatus,
    pub health_status: HealthStatus,
    pub stop_code: Option<StopCode>,
    pub stopped_reason: Option<String>,
    pub created_at: Timestamp,
    pub pull_started_at: Option<Timestamp>,
    pub pull_stopped_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub stopping_at: Option<Timestamp>,
    pub stopped_at: Option<Timestamp>,
    pub execution_stopped_at: Option<Timestamp>,
    pub containers: Vec<TaskContainer>,
    /// What placement reserved on the instance; released when the task stops.
    pub reserved: Resources,
    /// Task-level cpu and memory as ECS reports them (strings, as in the API).
    pub cpu: String,
    pub memory: String,
    /// Increases with every change, as ECS's `version`.
    pub version: i64,
    /// The task's elastic network interface (awsvpc network mode).
    #[serde(default)]
    pub eni: Option<Eni>,
    /// The capacity provider it was placed with (`FARGATE`, `FARGATE_SPOT`), if any.
    #[serde(default)]
    pub capacity_provider: Option<String>,
}

/// The platform version every Fargate task runs and reports (`LATEST` resolves to it).
pub const FARGATE_PLATFORM_VERSION: &str = "1.4.0";

/// An awsvpc task's elastic network interface: its own address in one of its subnets.
/// The address is the task's while the task may hold it (until it is STOPPED), and is
/// then free for another task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eni {
    /// The id of the task's `ElasticNetworkInterface` attachment (a UUID).
    pub attachment_id: String,
    /// `eni-` and 17 hex digits.
    pub eni_id: String,
    pub subnet_id: String,
    pub subnet_cidr: String,
    pub availability_zone: String,
    pub private_ipv4: std::net::Ipv4Addr,
    /// Derived from the address (`0a:58:` and its four bytes), so unique while it is.
    pub mac: String,
    pub security_groups: Vec<String>,
    /// The VPC's block, which rules with a security group as source allow.
    #[serde(default)]
    pub vpc_cidr: String,
}

impl Task {
    pub fn arn(&self) -> Arn {
        task_arn(&self.scope, &self.cluster, &self.id)
    }

    /// The ARN of one of its containers, as DescribeTasks and the task metadata endpoint
    /// show it: `container/<cluster>/<task id>/<container id>`.
    pub fn container_arn(&self, c: &TaskContainer) -> Arn {
        self.scope.arn("ecs", &format!("container/{}/{}/{}", self.cluster, self.id, c.id))
    }

    /// Whether the task runs on Fargate capacity rather than on a container instance of
    /// its cluster.
    pub fn is_fargate(&self) -> bool {
        self.launch_type == "FARGATE"
    }

    /// The cluster of the instance the task runs on: its own cluster, or, on Fargate, the
    /// hidden pool of Fargate capacity ([`ClusterName::fargate_pool`]).
    pub fn host_cluster(&self) -> ClusterName {
        if self.is_fargate() {
            ClusterName::fargate_pool()
        } else {
            self.cluster.clone()
        }
    }

    /// The ARN of the instance the task runs on, if it was placed.
    pub fn host_arn(&self) -> Option<Arn> {
        let id = self.container_instance.as_deref()?;
        Some(container_instance_arn(&self.scope, &self.host_cluster(), id))
    }

    /// Whether the task still holds resources on its instance.
    pub fn holds_resources(&self) -> bool {
        self.last_status != TaskStatus::Stopped
    }
}
