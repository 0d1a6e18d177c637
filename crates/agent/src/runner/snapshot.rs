//! What the task metadata endpoint shows of a task: a snapshot of the run's state, built
//! without the Engine. The pause container of an awsvpc task is shown (type `CNI_PAUSE`),
//! as ECS shows it.

use std::collections::BTreeMap;

use agent_protocol::{DesiredStatus, TaskAssignment, TaskReport};
use model::ecs::shapes::NetworkMode;

use super::spec::Awsvpc;
use super::state::{Ctr, Phase};
use crate::docker::labels;
use crate::endpoint::metadata::{private_dns_name, ContainerSnapshot, Interface, Network, Port, TaskSnapshot};

/// The task as the run knows it now; `progress` is its task-wide report.
pub fn task(
    a: &TaskAssignment,
    progress: &TaskReport,
    ctrs: &[Ctr],
    mode: NetworkMode,
    awsvpc: Option<&Awsvpc>,
) -> TaskSnapshot {
    let pause_id = ctrs.iter().find(|c| c.internal).and_then(|c| c.id.clone());
    TaskSnapshot {
        task_arn: a.task_arn.clone(),
        cluster_arn: a.cluster_arn.clone(),
        family: a.family.clone(),
        revision: a.revision,
        desired_status: a.desired_status.as_str().to_string(),
        known_status: progress.last_status.as_str().to_string(),
        cpu: a.definition.cpu.clone(),
        memory: a.definition.memory.clone(),
        pull_started_at: progress.pull_started_at.map(system_time),
        pull_stopped_at: progress.pull_stopped_at.map(system_time),
        execution_stopped_at: progress.execution_stopped_at.map(system_time),
        containers: ctrs.iter().map(|c| container(a, c, mode, awsvpc, pause_id.as_deref())).collect(),
        task_tags: a.task_tags.clone(),
        instance_tags: a.instance_tags.clone(),
    }
}

fn container(
    a: &TaskAssignment,
    c: &Ctr,
    mode: NetworkMode,
    awsvpc: Option<&Awsvpc>,
    pause_id: Option<&str>,
) -> ContainerSnapshot {
    let running = a.desired_status == DesiredStatus::Running;
    let (desired, known) = match (c.internal, c.phase) {
        (true, Phase::Running) if running => ("RESOURCES_PROVISIONED", "RESOURCES_PROVISIONED"),
        (true, phase) => (if running { "RESOURCES_PROVISIONED" } else { "STOPPED" }, known_status(phase)),
        (false, phase) => (a.desired_status.as_str(), known_status(phase)),
    };
    let mut docker_labels: BTreeMap<String, String> =
        c.def.docker_labels.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
    docker_labels.extend([
        (labels::CLUSTER.to_string(), a.cluster_arn.clone()),
        (labels::TASK_ARN.to_string(), a.task_arn.clone()),
        (labels::CONTAINER_NAME.to_string(), c.name.clone()),
        (labels::FAMILY.to_string(), a.family.clone()),
        (labels::REVISION.to_string(), a.revision.to_string()),
    ]);
    let log = c.def.log_configuration.as_ref();
    ContainerSnapshot {
        name: c.name.clone(),
        arn: a.container_arns.get(&c.name).filter(|_| !c.internal).cloned(),
        docker_name: c.docker_name.clone(),
        docker_id: c.id.clone(),
        image: c.def.image.clone().unwrap_or_default(),
        image_id: c.image_id.clone(),
        internal: c.internal,
        labels: docker_labels,
        desired_status: desired.to_string(),
        known_status: known.to_string(),
        exit_code: c.exit_code.filter(|_| c.phase == Phase::Stopped),
        cpu: c.def.cpu.unwrap_or(0),
        memory: c.def.memory.or(c.def.memory_reservation),
        created_at: c.created_at,
        started_at: c.started_at,
        finished_at: c.finished_at.filter(|_| c.phase == Phase::Stopped),
        log_driver: log.and_then(|l| l.log_driver).map(|d| d.as_str().to_string()),
        log_options: log.and_then(|l| l.options.clone()).unwrap_or_default(),
        ports: ports(c, mode),
        networks: networks(c, mode, awsvpc, &a.task_arn),
        health: c.def.health_check.as_ref().map(|_| c.health.as_str().to_string()),
        network_stats_from: match mode {
            NetworkMode::Awsvpc => pause_id.map(str::to_string),
            _ => c.id.clone(),
        },
    }
}

/// The ECS agent's names for a container's known status.
fn known_status(phase: Phase) -> &'static str {
    match phase {
        Phase::Waiting => "NONE",
        Phase::Created => "CREATED",
        Phase::Running => "RUNNING",
        Phase::Stopped => "STOPPED",
    }
}

/// Published ports: what Docker bound, or under awsvpc the container ports themselves
/// (the task's own address has them), as ECS shows them.
fn ports(c: &Ctr, mode: NetworkMode) -> Vec<Port> {
    if mode == NetworkMode::Awsvpc {
        return c
            .def
            .port_mappings
            .iter()
            .flatten()
            .filter_map(|pm| {
                let port = pm.container_port?;
                let protocol = pm.protocol.map_or("tcp", |p| p.as_str()).to_string();
                Some(Port { container_port: port, protocol, host_port: port, host_ip: None })
            })
            .collect();
    }
    c.bindings
        .iter()
        .filter_map(|b| {
            Some(Port {
                container_port: b.container_port?,
                protocol: b.protocol.map_or("tcp", |p| p.as_str()).to_string(),
                host_port: b.host_port?,
                host_ip: b.bind_ip.clone(),
            })
        })
        .collect()
}

fn networks(c: &Ctr, mode: NetworkMode, awsvpc: Option<&Awsvpc>, task_arn: &str) -> Vec<Network> {
    match (mode, awsvpc) {
        (NetworkMode::Awsvpc, Some(a)) => {
            let n = &a.network.attachment;
            let region = task_arn.split(':').nth(3).unwrap_or_default();
            let prefix = n.subnet_cidr.split_once('/').map_or("", |(_, p)| p);
            vec![Network {
                mode: "awsvpc".into(),
                ipv4_addresses: vec![n.private_ipv4_address.to_string()],
                interface: Some(Interface {
                    mac_address: n.mac_address.clone(),
                    subnet_cidr: n.subnet_cidr.clone(),
                    gateway_cidr: format!("{}/{prefix}", n.gateway),
                    private_dns_name: private_dns_name(n.private_ipv4_address, region),
                }),
            }]
        }
        (NetworkMode::Bridge, _) if !c.addresses.is_empty() => c
            .addresses
            .iter()
            .map(|(name, ip)| Network { mode: name.clone(), ipv4_addresses: vec![ip.to_string()], interface: None })
            .collect(),
        (mode, _) => vec![Network { mode: mode.as_str().to_string(), ipv4_addresses: vec![], interface: None }],
    }
}

fn system_time(t: model::Timestamp) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t.epoch_seconds().max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::fixtures::{assignment, ctr, network};
    use agent_protocol::TaskStatus;
    use model::ecs::shapes::{NetworkBinding, PortMapping, RegisterTaskDefinitionRequest, TransportProtocol};

    #[test]
    fn a_bridge_task_shows_its_containers_as_docker_has_them() {
        let a = assignment(RegisterTaskDefinitionRequest { cpu: Some("512".into()), ..Default::default() });
        let mut web = ctr("web", vec![]);
        web.phase = Phase::Running;
        web.id = Some("abc".into());
        web.image_id = Some("sha256:1".into());
        web.addresses = vec![("bridge".into(), [172, 17, 0, 5].into())];
        web.bindings = vec![NetworkBinding {
            bind_ip: Some("0.0.0.0".into()),
            container_port: Some(8080),
            host_port: Some(32768),
            protocol: Some(TransportProtocol::Tcp),
            ..Default::default()
        }];
        let mut done = ctr("job", vec![]);
        (done.phase, done.exit_code) = (Phase::Stopped, Some(3));
        let mut progress = TaskReport::new(&a.task_arn, TaskStatus::Running);
        progress.pull_started_at = Some(model::Timestamp::from_epoch_seconds(1.5));
        let t = task(&a, &progress, &[web, done], NetworkMode::Bridge, None);
        assert_eq!((t.known_status.as_str(), t.desired_status.as_str()), ("RUNNING", "RUNNING"));
        assert_eq!((t.cpu.as_deref(), t.revision), (Some("512"), 1));
        assert_eq!(t.pull_started_at, Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(1500)));
        let web = &t.containers[0];
        assert_eq!((web.known_status.as_str(), web.docker_id.as_deref()), ("RUNNING", Some("abc")));
        assert_eq!(
            web.networks,
            vec![Network { mode: "bridge".into(), ipv4_addresses: vec!["172.17.0.5".into()], interface: None }]
        );
        assert_eq!(
            web.ports,
            vec![Port {
                container_port: 8080,
                protocol: "tcp".into(),
                host_port: 32768,
                host_ip: Some("0.0.0.0".into())
            }]
        );
        assert_eq!(web.labels[labels::CONTAINER_NAME], "web");
        assert_eq!(web.labels[labels::TASK_ARN], a.task_arn);
        assert_eq!(web.network_stats_from.as_deref(), Some("abc"));
        assert_eq!(web.exit_code, None);
        assert_eq!((t.containers[1].known_status.as_str(), t.containers[1].exit_code), ("STOPPED", Some(3)));
    }

    #[test]
    fn an_awsvpc_task_shows_its_interface_and_its_pause_container() {
        let mut a = assignment(RegisterTaskDefinitionRequest::default());
        a.network = Some(network([10, 0, 1, 7]));
        let awsvpc = Awsvpc {
            network: crate::awsvpc::check(a.network.as_ref().unwrap()).unwrap(),
            image: crate::pause::pause_image_for("x86_64").unwrap(),
        };
        let mut web = ctr("web", vec![]);
        web.def.port_mappings = Some(vec![PortMapping { container_port: Some(80), ..Default::default() }]);
        let mut pause = ctr("~internal~ecs~pause", vec![]);
        (pause.internal, pause.phase, pause.id) = (true, Phase::Running, Some("pauseid".into()));
        let t = task(
            &a,
            &TaskReport::new(&a.task_arn, TaskStatus::Pending),
            &[web, pause],
            NetworkMode::Awsvpc,
            Some(&awsvpc),
        );
        let (web, pause) = (&t.containers[0], &t.containers[1]);
        assert_eq!(web.known_status, "NONE");
        assert_eq!(web.ports, vec![Port { container_port: 80, protocol: "tcp".into(), host_port: 80, host_ip: None }]);
        let n = &web.networks[0];
        assert_eq!((n.mode.as_str(), n.ipv4_addresses.as_slice()), ("awsvpc", &["10.0.1.7".to_string()][..]));
        let i = n.interface.as_ref().unwrap();
        assert_eq!(i.gateway_cidr, "10.0.1.1/24");
        assert_eq!(i.private_dns_name, "ip-10-0-1-7.ec2.internal");
        assert_eq!(
            web.network_stats_from.as_deref(),
            Some("pauseid"),
            "the namespace's counters are the pause container's"
        );
        assert!(pause.internal);
        assert_eq!(
            (pause.known_status.as_str(), pause.desired_status.as_str()),
            ("RESOURCES_PROVISIONED", "RESOURCES_PROVISIONED")
        );
    }
}
