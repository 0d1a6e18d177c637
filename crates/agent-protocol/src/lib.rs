//! The agent channel: what the control plane and an agent say to each other.
//!
//! Modelled on the ECS agent's ACS session. The agent opens a WebSocket to
//! `GET /_berth/agent/v1/connect?containerInstance=<arn>`, signed with SigV4 like any API
//! call. Messages are JSON text frames of [`ToAgent`] and [`ToServer`].
//!
//! - The server pushes the desired state of the instance's tasks the moment it changes
//!   ([`ToAgent::Tasks`]); the first message after connecting carries the full set, so a
//!   reconnecting agent reconciles from it. The agent acknowledges each by `seq`.
//! - The agent reports every task and container state change ([`ToServer::TaskState`]).
//!   This carries what `SubmitTaskStateChange` does plus what that wire shape cannot
//!   (health status, stop code, timestamps), so one message keeps task and containers
//!   consistent.
//! - Both sides send heartbeats; a side that hears nothing for three intervals drops the
//!   connection, and the agent reconnects with backoff.
//!
//! The control plane and the agent share these types and nothing else.

use serde::{Deserialize, Serialize};

use model::ecs::shapes::{NetworkBinding, RegisterTaskDefinitionRequest, TaskOverride};
pub use model::ecs::task::{ContainerStatus, DesiredStatus, HealthStatus, StopCode, TaskStatus};
use model::Timestamp;

/// The path of the channel's endpoint.
pub const CONNECT_PATH: &str = "/_berth/agent/v1/connect";
/// The query parameter naming the container instance.
pub const INSTANCE_PARAM: &str = "containerInstance";
/// Seconds between heartbeats, in both directions.
pub const HEARTBEAT_SECONDS: u64 = 10;

/// From the control plane to an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ToAgent {
    /// The desired state of tasks on this instance. With `full`, these are all the tasks
    /// the instance should know about (tasks it has that are not listed must be stopped);
    /// otherwise they are changes.
    #[serde(rename_all = "camelCase")]
    Tasks {
        seq: u64,
        full: bool,
        tasks: Vec<TaskAssignment>,
    },
    Heartbeat,
}

/// From an agent to the control plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ToServer {
    /// The agent has taken the `Tasks` message with this `seq` into its desired state.
    Ack {
        seq: u64,
    },
    /// A task's state as the agent sees it now, with all its containers.
    TaskState(TaskReport),
    Heartbeat,
}

/// What the control plane wants for one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskAssignment {
    pub task_arn: String,
    pub cluster_arn: String,
    pub family: String,
    pub revision: u32,
    pub desired_status: DesiredStatus,
    /// Why the task should stop, when `desired_status` is `Stopped` (shown as `stoppedReason`).
    pub stop_reason: Option<String>,
    /// The task definition as registered (validated, defaults filled).
    pub definition: RegisterTaskDefinitionRequest,
    pub overrides: Option<TaskOverride>,
}

/// One task as the agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskReport {
    pub task_arn: String,
    pub last_status: TaskStatus,
    pub containers: Vec<ContainerReport>,
    pub health_status: HealthStatus,
    pub stop_code: Option<StopCode>,
    pub stopped_reason: Option<String>,
    pub pull_started_at: Option<Timestamp>,
    pub pull_stopped_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub execution_stopped_at: Option<Timestamp>,
}

/// One container of a task as the agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerReport {
    pub name: String,
    pub last_status: ContainerStatus,
    /// The Docker container id.
    pub runtime_id: Option<String>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub network_bindings: Vec<NetworkBinding>,
    pub health_status: HealthStatus,
    pub image_digest: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_tagged_json() {
        let m = ToServer::Ack { seq: 7 };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(text, r#"{"type":"ack","seq":7}"#);
        assert_eq!(serde_json::from_str::<ToServer>(&text).unwrap(), m);
        let t = ToAgent::Tasks { seq: 1, full: true, tasks: vec![] };
        assert_eq!(serde_json::from_str::<ToAgent>(&serde_json::to_string(&t).unwrap()).unwrap(), t);
    }
}
