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

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

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
    /// Temporary credentials of tasks' roles: sent when a task with a role is assigned,
    /// and again before they expire. The newest for a task and role replaces the older.
    #[serde(rename_all = "camelCase")]
    Credentials {
        credentials: Vec<TaskCredentials>,
    },
    Heartbeat,
}

/// Which of a task's roles credentials are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RoleType {
    /// `taskRoleArn`: served to the task's containers by the credential endpoint.
    TaskRole,
    /// `executionRoleArn`: used by the agent itself for the task (image pulls from ECR,
    /// awslogs, secrets), never served to containers.
    ExecutionRole,
}

/// Temporary credentials of one role of one task, as STS issued them to
/// `ecs-tasks.amazonaws.com` for it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCredentials {
    pub task_arn: String,
    pub role: RoleType,
    pub role_arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// When they expire, in seconds since the epoch.
    pub expiration: i64,
}

impl std::fmt::Debug for TaskCredentials {
    // Secrets never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskCredentials")
            .field("task_arn", &self.task_arn)
            .field("role", &self.role)
            .field("role_arn", &self.role_arn)
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
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
    /// The task's network attachment when its network mode is `awsvpc`; `None` otherwise.
    /// Absent from messages of control planes that predate it, which therefore still decode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<AwsvpcNetwork>,
    /// Each container's ARN by its name, as DescribeTasks shows it (the task metadata
    /// endpoint's `ContainerARN`). Empty from control planes that predate it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub container_arns: BTreeMap<String, String>,
    /// The task's tags and its container instance's, for the metadata endpoint's
    /// `taskWithTags` (`TaskTags`, `ContainerInstanceTags`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub task_tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub instance_tags: BTreeMap<String, String>,
}

/// An `awsvpc` task's elastic network interface, as the control plane allocated it: the
/// agent gives the task its own network namespace (a pause container) on the Docker
/// network that stands for the subnet, with exactly this address and MAC address.
///
/// The agent decides none of this: the control plane chooses the address (never handing
/// one to two live tasks) and names the Docker network, so all agents on one engine agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsvpcNetwork {
    /// The id of the task's `ElasticNetworkInterface` attachment (the `id` of its entry in
    /// the task's `attachments`), a UUID.
    pub attachment_id: String,
    /// The EC2 subnet the interface is in, e.g. `subnet-0a1b2c3d4e5f60718`.
    pub subnet_id: String,
    /// The subnet's IPv4 CIDR block as `DescribeSubnets` gives it, e.g. `10.0.1.0/24`.
    pub subnet_cidr: String,
    /// The subnet's gateway: as in a VPC, the first address after the network address
    /// (`10.0.1.1` for `10.0.1.0/24`). Docker's bridge puts it on the host, which is how the
    /// host (and the load balancer in it) routes to the task's address.
    pub gateway: Ipv4Addr,
    /// The task's address in the subnet: `privateIPv4Address` of the attachment.
    pub private_ipv4_address: Ipv4Addr,
    /// The interface's MAC address, six lowercase hex pairs separated by colons
    /// (`0a:58:0a:00:01:07`): `macAddress` of the attachment.
    pub mac_address: String,
    /// The Docker network standing for the subnet: [`docker_network_name`] of `subnet_id`.
    pub docker_network: String,
    /// The inbound rules of the task's security groups, which the agent enforces for the
    /// task's address: traffic in is accepted only if a rule allows it (replies to the
    /// task's own connections, and localhost inside the task, always are). `None`: no
    /// enforcement (control planes that predate it send none); `Some(vec![])`: nothing
    /// may connect in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<IngressRule>>,
}

/// One inbound rule of a security group, its source resolved to an IPv4 block.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressRule {
    pub protocol: IpProtocol,
    /// As in EC2: for `tcp` and `udp` the first port of the range; for `icmp` the ICMP
    /// type (-1: every type); ignored for `all`.
    pub from_port: i32,
    /// As in EC2: for `tcp` and `udp` the last port of the range; for `icmp` the ICMP code
    /// (-1: every code); ignored for `all`.
    pub to_port: i32,
    /// Where the traffic may come from, e.g. `10.0.0.0/16` or `192.0.2.1/32`.
    pub cidr: String,
}

/// The protocols a security group rule can name here (EC2's `-1` is `all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpProtocol {
    Tcp,
    Udp,
    Icmp,
    All,
}

impl IpProtocol {
    /// EC2's name for it: `tcp`, `udp`, `icmp`, `-1`.
    pub fn as_ec2(self) -> &'static str {
        match self {
            IpProtocol::Tcp => "tcp",
            IpProtocol::Udp => "udp",
            IpProtocol::Icmp => "icmp",
            IpProtocol::All => "-1",
        }
    }
}

/// The name of the Docker network that stands for an EC2 subnet: `berth-<subnet-id>`, e.g.
/// `berth-subnet-0a1b2c3d4e5f60718`. Every agent on an engine uses the same network for a
/// subnet, so tasks of one subnet reach each other as in a VPC.
pub fn docker_network_name(subnet_id: &str) -> String {
    format!("berth-{subnet_id}")
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

impl TaskReport {
    /// A report of `last_status` that says nothing more yet: no containers, no times, no
    /// stop code, health UNKNOWN.
    pub fn new(task_arn: impl Into<String>, last_status: TaskStatus) -> TaskReport {
        TaskReport {
            task_arn: task_arn.into(),
            last_status,
            containers: vec![],
            health_status: HealthStatus::Unknown,
            stop_code: None,
            stopped_reason: None,
            pull_started_at: None,
            pull_stopped_at: None,
            started_at: None,
            execution_stopped_at: None,
        }
    }
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

    #[test]
    fn assignments_without_a_network_still_decode_and_awsvpc_ones_round_trip() {
        let old = serde_json::json!({
            "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/c/1", "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/c",
            "family": "f", "revision": 1, "desiredStatus": "RUNNING", "stopReason": null,
            "definition": { "family": "f", "containerDefinitions": [] }, "overrides": null,
        });
        let mut a: TaskAssignment = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(a.network, None);
        assert_eq!(serde_json::to_value(&a).unwrap(), old, "no network member when there is none");
        a.network = Some(AwsvpcNetwork {
            attachment_id: "7d4c7a56-4c8b-4b8e-9a45-0f3d4c2b1a09".into(),
            subnet_id: "subnet-0a1b2c3d".into(),
            subnet_cidr: "10.0.1.0/24".into(),
            gateway: Ipv4Addr::new(10, 0, 1, 1),
            private_ipv4_address: Ipv4Addr::new(10, 0, 1, 7),
            mac_address: "0a:58:0a:00:01:07".into(),
            docker_network: docker_network_name("subnet-0a1b2c3d"),
            ingress: Some(vec![IngressRule {
                protocol: IpProtocol::Tcp,
                from_port: 8080,
                to_port: 8080,
                cidr: "10.0.0.0/16".into(),
            }]),
        });
        let text = serde_json::to_string(&a).unwrap();
        assert!(text.contains(r#""privateIpv4Address":"10.0.1.7""#), "{text}");
        assert!(text.contains(r#""dockerNetwork":"berth-subnet-0a1b2c3d""#), "{text}");
        assert!(text.contains(r#""protocol":"tcp""#), "{text}");
        assert_eq!(serde_json::from_str::<TaskAssignment>(&text).unwrap(), a);
    }
}
