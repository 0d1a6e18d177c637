//! The task metadata endpoint's answers (versions 3 and 4), rendered from a snapshot of
//! what the runner knows of a task. Pure: the runner builds [`TaskSnapshot`]s, the server
//! renders them.
//!
//! Shapes follow ECS's documented responses: PascalCase members, times in RFC 3339 UTC
//! with Docker's nanoseconds, members without a value left out. Version 4 adds to
//! version 3 the task's `LaunchType`, each container's `LogDriver` and `LogOptions`, and
//! the awsvpc interface's details in `Networks`, and each container's `ContainerARN`
//! (the control plane sends them with the task). `taskWithTags` adds the task's and its
//! container instance's tags (`TaskTags`, `ContainerInstanceTags`) to the task.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

/// What the runner knows of one task, as the metadata endpoint shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSnapshot {
    pub task_arn: String,
    pub cluster_arn: String,
    pub family: String,
    pub revision: u32,
    pub desired_status: String,
    pub known_status: String,
    /// The definition's task-level `cpu` (units or vCPU) and `memory` (MiB or GB).
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub pull_started_at: Option<SystemTime>,
    pub pull_stopped_at: Option<SystemTime>,
    pub execution_stopped_at: Option<SystemTime>,
    pub containers: Vec<ContainerSnapshot>,
    pub task_tags: BTreeMap<String, String>,
    pub instance_tags: BTreeMap<String, String>,
}

/// One container of a task, the pause container of an awsvpc task included.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSnapshot {
    pub name: String,
    /// Its ECS ARN; none for the pause container, which ECS does not list.
    pub arn: Option<String>,
    pub docker_name: String,
    pub docker_id: Option<String>,
    pub image: String,
    pub image_id: Option<String>,
    /// The pause container (type `CNI_PAUSE`).
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub desired_status: String,
    pub known_status: String,
    pub exit_code: Option<i32>,
    pub cpu: i32,
    pub memory: Option<i32>,
    pub created_at: Option<SystemTime>,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub log_driver: Option<String>,
    pub log_options: BTreeMap<String, String>,
    pub ports: Vec<Port>,
    pub networks: Vec<Network>,
    /// `HEALTHY`, `UNHEALTHY` or `UNKNOWN` for a container with a health check.
    pub health: Option<String>,
    /// The Docker id of the container whose network counters are this one's: the pause
    /// container under awsvpc (its containers share its namespace), else its own.
    pub network_stats_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub container_port: i32,
    pub protocol: String,
    pub host_port: i32,
    pub host_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// `bridge`, `host`, `awsvpc`, or the Docker network's name.
    pub mode: String,
    pub ipv4_addresses: Vec<String>,
    /// An awsvpc task's interface (version 4 shows it).
    pub interface: Option<Interface>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub mac_address: String,
    pub subnet_cidr: String,
    /// The gateway with the subnet's prefix length, e.g. `10.0.2.1/24`.
    pub gateway_cidr: String,
    pub private_dns_name: String,
}

/// What the agent itself adds to every task's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub availability_zone: String,
    /// `EC2`, or `FARGATE` for an agent that is Fargate capacity.
    pub launch_type: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V3,
    V4,
}

/// `${ECS_CONTAINER_METADATA_URI_V4}/task` (or v3's), as JSON text in ECS's member order;
/// with `tags`, `/taskWithTags`.
pub fn task(t: &TaskSnapshot, host: &HostFacts, v: Version, tags: bool) -> String {
    let cluster = t.cluster_arn.rsplit_once(":cluster/").map_or(t.cluster_arn.as_str(), |(_, name)| name);
    let body = TaskBody {
        cluster,
        task_arn: &t.task_arn,
        family: &t.family,
        revision: t.revision.to_string(),
        desired_status: &t.desired_status,
        known_status: &t.known_status,
        limits: task_limits(t.cpu.as_deref(), t.memory.as_deref()),
        pull_started_at: t.pull_started_at.map(rfc3339),
        pull_stopped_at: t.pull_stopped_at.map(rfc3339),
        execution_stopped_at: t.execution_stopped_at.map(rfc3339),
        availability_zone: &host.availability_zone,
        launch_type: (v == Version::V4).then_some(host.launch_type.as_str()),
        containers: t.containers.iter().map(|c| container_body(c, v)).collect(),
        task_tags: tags.then_some(&t.task_tags),
        container_instance_tags: tags.then_some(&t.instance_tags),
    };
    serde_json::to_string(&body).unwrap_or_default()
}

/// `${ECS_CONTAINER_METADATA_URI_V4}` (or v3's): one container, as JSON text.
pub fn container(c: &ContainerSnapshot, v: Version) -> String {
    serde_json::to_string(&container_body(c, v)).unwrap_or_default()
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TaskBody<'a> {
    cluster: &'a str,
    #[serde(rename = "TaskARN")]
    task_arn: &'a str,
    family: &'a str,
    revision: String,
    desired_status: &'a str,
    known_status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    limits: Option<Limits>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pull_started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pull_stopped_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_stopped_at: Option<String>,
    availability_zone: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    launch_type: Option<&'a str>,
    containers: Vec<ContainerBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_tags: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_instance_tags: Option<&'a BTreeMap<String, String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerBody<'a> {
    docker_id: &'a str,
    name: &'a str,
    docker_name: &'a str,
    image: &'a str,
    #[serde(rename = "ImageID")]
    image_id: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<PortBody<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
    desired_status: &'a str,
    known_status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    limits: Limits,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
    #[serde(rename = "Type")]
    kind: &'static str,
    #[serde(rename = "ContainerARN", skip_serializing_if = "Option::is_none")]
    container_arn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<Health<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_driver: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_options: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    networks: Vec<NetworkBody<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Limits {
    #[serde(rename = "CPU", skip_serializing_if = "Option::is_none")]
    cpu: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PortBody<'a> {
    container_port: i32,
    protocol: &'a str,
    host_port: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_ip: Option<&'a str>,
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'a str,
}

#[derive(Serialize)]
struct NetworkBody<'a> {
    #[serde(rename = "NetworkMode")]
    mode: &'a str,
    #[serde(rename = "IPv4Addresses", skip_serializing_if = "Vec::is_empty")]
    ipv4_addresses: &'a Vec<String>,
    #[serde(rename = "AttachmentIndex", skip_serializing_if = "Option::is_none")]
    attachment_index: Option<u32>,
    #[serde(rename = "MACAddress", skip_serializing_if = "Option::is_none")]
    mac_address: Option<&'a str>,
    #[serde(rename = "IPv4SubnetCIDRBlock", skip_serializing_if = "Option::is_none")]
    subnet_cidr: Option<&'a str>,
    #[serde(rename = "PrivateDNSName", skip_serializing_if = "Option::is_none")]
    private_dns_name: Option<&'a str>,
    #[serde(rename = "SubnetGatewayIpv4Address", skip_serializing_if = "Option::is_none")]
    gateway: Option<&'a str>,
}

fn container_body(c: &ContainerSnapshot, v: Version) -> ContainerBody<'_> {
    let v4 = v == Version::V4;
    ContainerBody {
        docker_id: c.docker_id.as_deref().unwrap_or_default(),
        name: &c.name,
        docker_name: &c.docker_name,
        image: &c.image,
        image_id: c.image_id.as_deref().unwrap_or_default(),
        ports: c
            .ports
            .iter()
            .map(|p| PortBody {
                container_port: p.container_port,
                protocol: &p.protocol,
                host_port: p.host_port,
                host_ip: p.host_ip.as_deref(),
            })
            .collect(),
        labels: &c.labels,
        desired_status: &c.desired_status,
        known_status: &c.known_status,
        exit_code: c.exit_code,
        limits: Limits { cpu: Some(f64::from(c.cpu)), memory: Some(i64::from(c.memory.unwrap_or(0))) },
        created_at: c.created_at.map(rfc3339),
        started_at: c.started_at.map(rfc3339),
        finished_at: c.finished_at.map(rfc3339),
        kind: if c.internal { "CNI_PAUSE" } else { "NORMAL" },
        container_arn: c.arn.as_deref().filter(|_| v4),
        health: c.health.as_deref().map(|status| Health { status }),
        log_driver: c.log_driver.as_deref().filter(|_| v4),
        log_options: (v4 && !c.log_options.is_empty()).then_some(&c.log_options),
        networks: c
            .networks
            .iter()
            .map(|n| {
                let i = n.interface.as_ref().filter(|_| v4);
                NetworkBody {
                    mode: &n.mode,
                    ipv4_addresses: &n.ipv4_addresses,
                    attachment_index: i.map(|_| 0),
                    mac_address: i.map(|i| i.mac_address.as_str()),
                    subnet_cidr: i.map(|i| i.subnet_cidr.as_str()),
                    private_dns_name: i.map(|i| i.private_dns_name.as_str()),
                    gateway: i.map(|i| i.gateway_cidr.as_str()),
                }
            })
            .collect(),
    }
}

/// The task-level limits: CPU in vCPUs, memory in MiB; left out when the definition sets
/// neither.
fn task_limits(cpu: Option<&str>, memory: Option<&str>) -> Option<Limits> {
    let cpu = cpu.and_then(|c| match c.trim().strip_suffix("vCPU").or(c.trim().strip_suffix("vcpu")) {
        Some(v) => v.trim().parse::<f64>().ok(),
        None => c.trim().parse::<f64>().ok().map(|units| units / 1024.0),
    });
    let memory = memory.and_then(|m| match m.trim().strip_suffix("GB").or(m.trim().strip_suffix("gb")) {
        Some(g) => g.trim().parse::<f64>().ok().map(|g| (g * 1024.0) as i64),
        None => m.trim().parse::<i64>().ok(),
    });
    (cpu.is_some() || memory.is_some()).then_some(Limits { cpu, memory })
}

/// RFC 3339 in UTC with the nanoseconds Docker gives (`2020-10-02T00:15:07.620912337Z`).
pub fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

pub use model::ec2::private_dns_name;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::time::{Duration, UNIX_EPOCH};

    fn parse(text: String) -> Value {
        serde_json::from_str(&text).expect("JSON")
    }

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    fn curl(internal: bool) -> ContainerSnapshot {
        ContainerSnapshot {
            name: if internal { "~internal~ecs~pause".into() } else { "curl".into() },
            arn: (!internal).then(|| "arn:aws:ecs:us-west-2:111122223333:container/default/158d1c80/1f73d099".into()),
            docker_name: "ecs-curltest-26-curl-a0e7dba5aca6d8cb2e00".into(),
            docker_id: Some("ee08638adaaf".into()),
            image: "curltest:latest".into(),
            image_id: Some("sha256:d691691e".into()),
            internal,
            labels: BTreeMap::from([("com.amazonaws.ecs.container-name".to_string(), "curl".to_string())]),
            desired_status: "RUNNING".into(),
            known_status: "RUNNING".into(),
            exit_code: None,
            cpu: 10,
            memory: Some(128),
            created_at: Some(at(1_601_599_386, 326_590_752)),
            started_at: Some(at(1_601_599_386, 767_535_449)),
            finished_at: None,
            log_driver: Some("awslogs".into()),
            log_options: BTreeMap::from([("awslogs-group".to_string(), "/ecs/metadata".to_string())]),
            ports: vec![],
            networks: vec![Network {
                mode: "awsvpc".into(),
                ipv4_addresses: vec!["10.0.2.61".into()],
                interface: Some(Interface {
                    mac_address: "0e:10:e2:01:bd:91".into(),
                    subnet_cidr: "10.0.2.0/24".into(),
                    gateway_cidr: "10.0.2.1/24".into(),
                    private_dns_name: "ip-10-0-2-61.us-west-2.compute.internal".into(),
                }),
            }],
            health: None,
            network_stats_from: None,
        }
    }

    fn snapshot() -> TaskSnapshot {
        TaskSnapshot {
            task_arn: "arn:aws:ecs:us-west-2:111122223333:task/default/158d1c80".into(),
            cluster_arn: "arn:aws:ecs:us-west-2:111122223333:cluster/default".into(),
            family: "curltest".into(),
            revision: 26,
            desired_status: "RUNNING".into(),
            known_status: "RUNNING".into(),
            cpu: Some("256".into()),
            memory: Some("512".into()),
            pull_started_at: Some(at(1_601_599_386, 202_617_438)),
            pull_stopped_at: Some(at(1_601_599_386, 312_884_650)),
            execution_stopped_at: None,
            containers: vec![curl(false)],
            task_tags: BTreeMap::from([("team".to_string(), "web".to_string())]),
            instance_tags: BTreeMap::new(),
        }
    }

    fn host() -> HostFacts {
        HostFacts { availability_zone: "us-west-2d".into(), launch_type: "EC2".into() }
    }

    #[test]
    fn a_v4_task_has_ecs_documented_members() {
        let v = parse(task(&snapshot(), &host(), Version::V4, false));
        assert_eq!(
            v,
            json!({
                "Cluster": "default",
                "TaskARN": "arn:aws:ecs:us-west-2:111122223333:task/default/158d1c80",
                "Family": "curltest",
                "Revision": "26",
                "DesiredStatus": "RUNNING",
                "KnownStatus": "RUNNING",
                "Limits": { "CPU": 0.25, "Memory": 512 },
                "PullStartedAt": "2020-10-02T00:43:06.202617438Z",
                "PullStoppedAt": "2020-10-02T00:43:06.31288465Z",
                "AvailabilityZone": "us-west-2d",
                "LaunchType": "EC2",
                "Containers": [{
                    "DockerId": "ee08638adaaf",
                    "Name": "curl",
                    "ContainerARN": "arn:aws:ecs:us-west-2:111122223333:container/default/158d1c80/1f73d099",
                    "DockerName": "ecs-curltest-26-curl-a0e7dba5aca6d8cb2e00",
                    "Image": "curltest:latest",
                    "ImageID": "sha256:d691691e",
                    "Labels": { "com.amazonaws.ecs.container-name": "curl" },
                    "DesiredStatus": "RUNNING",
                    "KnownStatus": "RUNNING",
                    "Limits": { "CPU": 10.0, "Memory": 128 },
                    "CreatedAt": "2020-10-02T00:43:06.326590752Z",
                    "StartedAt": "2020-10-02T00:43:06.767535449Z",
                    "Type": "NORMAL",
                    "LogDriver": "awslogs",
                    "LogOptions": { "awslogs-group": "/ecs/metadata" },
                    "Networks": [{
                        "NetworkMode": "awsvpc",
                        "IPv4Addresses": ["10.0.2.61"],
                        "AttachmentIndex": 0,
                        "MACAddress": "0e:10:e2:01:bd:91",
                        "IPv4SubnetCIDRBlock": "10.0.2.0/24",
                        "PrivateDNSName": "ip-10-0-2-61.us-west-2.compute.internal",
                        "SubnetGatewayIpv4Address": "10.0.2.1/24",
                    }],
                }],
            })
        );
    }

    #[test]
    fn v3_leaves_out_what_v4_added() {
        let v = parse(task(&snapshot(), &host(), Version::V3, false));
        assert!(v.get("LaunchType").is_none());
        let c = &v["Containers"][0];
        assert!(c.get("LogDriver").is_none() && c.get("LogOptions").is_none() && c.get("ContainerARN").is_none());
        assert_eq!(c["Networks"], json!([{ "NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.2.61"] }]));
        assert_eq!(parse(container(&snapshot().containers[0], Version::V3)), *c, "the container path shows the same");
    }

    #[test]
    fn task_with_tags_adds_the_task_and_instance_tags() {
        let v = parse(task(&snapshot(), &host(), Version::V4, true));
        assert_eq!((&v["TaskTags"], &v["ContainerInstanceTags"]), (&json!({ "team": "web" }), &json!({})));
        let plain = parse(task(&snapshot(), &host(), Version::V4, false));
        assert!(plain.get("TaskTags").is_none() && plain.get("ContainerInstanceTags").is_none());
    }

    #[test]
    fn unset_members_are_left_out_and_the_pause_container_has_its_type() {
        let mut c = curl(true);
        (c.docker_id, c.image_id, c.created_at, c.started_at, c.log_driver) = (None, None, None, None, None);
        c.labels.clear();
        c.log_options.clear();
        c.networks.clear();
        c.exit_code = Some(137);
        c.finished_at = Some(at(1, 0));
        c.memory = None;
        c.health = Some("HEALTHY".into());
        c.ports = vec![Port {
            container_port: 80,
            protocol: "tcp".into(),
            host_port: 32768,
            host_ip: Some("0.0.0.0".into()),
        }];
        let text = container(&c, Version::V4);
        assert!(text.starts_with(r#"{"DockerId":"","Name":"~internal~ecs~pause","#), "ECS's member order: {text}");
        let v = parse(text);
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "DesiredStatus",
                "DockerId",
                "DockerName",
                "ExitCode",
                "FinishedAt",
                "Health",
                "Image",
                "ImageID",
                "KnownStatus",
                "Limits",
                "Name",
                "Ports",
                "Type"
            ]
        );
        assert_eq!((v["DockerId"].as_str(), v["ImageID"].as_str()), (Some(""), Some("")));
        assert_eq!(v["Type"], "CNI_PAUSE");
        assert_eq!(v["Limits"], json!({ "CPU": 10.0, "Memory": 0 }));
        assert_eq!(v["FinishedAt"], "1970-01-01T00:00:01Z");
        assert_eq!(
            v["Ports"],
            json!([{ "ContainerPort": 80, "Protocol": "tcp", "HostPort": 32768, "HostIp": "0.0.0.0" }])
        );
        assert_eq!(v["Health"], json!({ "status": "HEALTHY" }));

        let mut t = snapshot();
        (t.cpu, t.memory) = (None, None);
        assert!(parse(task(&t, &host(), Version::V4, false)).get("Limits").is_none());
        (t.cpu, t.memory) = (Some("1 vCPU".into()), Some("2 GB".into()));
        assert_eq!(parse(task(&t, &host(), Version::V4, false))["Limits"], json!({ "CPU": 1.0, "Memory": 2048 }));
    }

    #[test]
    fn private_dns_names_follow_ec2() {
        let ip = std::net::Ipv4Addr::new(10, 0, 2, 61);
        assert_eq!(private_dns_name(ip, "us-west-2"), "ip-10-0-2-61.us-west-2.compute.internal");
        assert_eq!(private_dns_name(ip, "us-east-1"), "ip-10-0-2-61.ec2.internal");
    }
}
