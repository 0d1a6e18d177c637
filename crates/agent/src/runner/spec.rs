//! What a task's containers are on Docker, built without the Engine: their names,
//! definitions with overrides, dependencies (and the pause container an awsvpc task
//! adds), volumes, labels, the inputs of each create request ([`CreateSpec`]) and the
//! network bindings ECS reports for what Docker published.

use std::collections::HashMap;
use std::time::Duration;

use agent_protocol::TaskAssignment;
use model::ecs::shapes::{
    ContainerCondition, ContainerDefinition, ContainerOverride, NetworkBinding, NetworkMode, Scope, TransportProtocol,
};

use super::settings::RunnerConfig;
use super::state::{Cond, Ctr, Dep};
use crate::awslogs::{self, AwsLogs};
use crate::awsvpc::{self, TaskNetwork, PAUSE_CONTAINER_NAME};
use crate::docker::{self, labels, CreateSpec, PauseSpec, SubnetNetwork, VolumeSpec};
use crate::endpoint::{self, EndpointId};
use crate::pause::PauseImage;

/// Where a task's volume comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum VolumeSource {
    HostPath(String),
    /// A Docker volume: created for this task, or shared (`autoprovision` creates it when
    /// it is missing; otherwise it must exist).
    Docker {
        spec: VolumeSpec,
        shared: bool,
        autoprovision: bool,
    },
}

/// An awsvpc task's checked network attachment and the pause image for this machine.
#[derive(Debug, Clone)]
pub struct Awsvpc {
    pub network: TaskNetwork,
    pub image: PauseImage,
}

impl Awsvpc {
    /// The network of an awsvpc task whose attachment and pause image are in order; for
    /// any other, `None` (`rules::unsupported` fails an awsvpc task that is not in order
    /// before anything runs).
    pub fn of(mode: NetworkMode, a: &TaskAssignment) -> Option<Awsvpc> {
        match (mode, &a.network) {
            (NetworkMode::Awsvpc, Some(n)) => awsvpc::check(n)
                .ok()
                .zip(crate::pause::pause_image().ok())
                .map(|(network, image)| Awsvpc { network, image }),
            _ => None,
        }
    }

    /// The Docker network standing for the task's subnet.
    pub fn subnet_network(&self) -> SubnetNetwork {
        let n = &self.network;
        SubnetNetwork {
            name: n.attachment.docker_network.clone(),
            subnet_id: n.attachment.subnet_id.clone(),
            cidr: n.cidr,
            gateway: n.attachment.gateway,
        }
    }
}

/// The task's containers, overrides applied and dependencies resolved. With a pause
/// image (an awsvpc task), its pause container comes last and every other container
/// depends on it (START).
pub fn containers(a: &TaskAssignment, mode: NetworkMode, pause_image: Option<&str>) -> Vec<Ctr> {
    let defs = a.definition.container_definitions.clone().unwrap_or_default();
    let overrides: Vec<ContainerOverride> =
        a.overrides.as_ref().and_then(|o| o.container_overrides.clone()).unwrap_or_default();
    let index: HashMap<String, usize> =
        defs.iter().enumerate().map(|(i, d)| (d.name.clone().unwrap_or_default(), i)).collect();
    let mut ctrs: Vec<Ctr> = defs
        .iter()
        .map(|d| {
            let name = d.name.clone().unwrap_or_default();
            let o = overrides.iter().find(|o| o.name.as_deref() == Some(name.as_str()));
            let def = apply_override(d, o);
            let deps = dependencies(&def, &index, mode);
            Ctr::new(docker_name(a, &name), def, deps)
        })
        .collect();
    if let Some(image) = pause_image {
        let pause = ctrs.len();
        for c in &mut ctrs {
            c.deps.push(Dep { on: pause, cond: Cond::Start });
        }
        let def = ContainerDefinition {
            name: Some(PAUSE_CONTAINER_NAME.into()),
            image: Some(image.into()),
            essential: Some(true),
            // PID 1 without handlers ignores SIGTERM: SIGKILL it at once.
            stop_timeout: Some(0),
            ..Default::default()
        };
        let mut c = Ctr::new(docker_name(a, "internalecspause"), def, vec![]);
        c.internal = true;
        ctrs.push(c);
    }
    ctrs
}

/// The definition with a container override applied: command, cpu and memory replace;
/// environment variables merge over the definition's by name.
pub fn apply_override(def: &ContainerDefinition, o: Option<&ContainerOverride>) -> ContainerDefinition {
    let mut d = def.clone();
    let Some(o) = o else { return d };
    if o.command.is_some() {
        d.command = o.command.clone();
    }
    if let Some(env) = &o.environment {
        let merged = d.environment.get_or_insert_with(Vec::new);
        for kv in env {
            match merged.iter_mut().find(|m| m.name == kv.name) {
                Some(m) => m.value = kv.value.clone(),
                None => merged.push(kv.clone()),
            }
        }
    }
    d.cpu = o.cpu.or(d.cpu);
    d.memory = o.memory.or(d.memory);
    d.memory_reservation = o.memory_reservation.or(d.memory_reservation);
    d
}

/// dependsOn, plus what links (the target must run) and volumesFrom (the source must
/// exist) imply.
pub fn dependencies(def: &ContainerDefinition, index: &HashMap<String, usize>, mode: NetworkMode) -> Vec<Dep> {
    let mut deps = vec![];
    for d in def.depends_on.iter().flatten() {
        let Some(&on) = d.container_name.as_ref().and_then(|n| index.get(n)) else { continue };
        let cond = match d.condition {
            Some(ContainerCondition::Complete) => Cond::Complete,
            Some(ContainerCondition::Success) => Cond::Success,
            Some(ContainerCondition::Healthy) => Cond::Healthy,
            Some(ContainerCondition::Start) | None => Cond::Start,
        };
        deps.push(Dep { on, cond });
    }
    if mode == NetworkMode::Bridge {
        for l in def.links.iter().flatten() {
            if let Some(&on) = index.get(l.split(':').next().unwrap_or_default()) {
                deps.push(Dep { on, cond: Cond::Start });
            }
        }
    }
    for vf in def.volumes_from.iter().flatten() {
        if let Some(&on) = vf.source_container.as_ref().and_then(|n| index.get(n)) {
            deps.push(Dep { on, cond: Cond::Created });
        }
    }
    deps
}

/// `ecs-<family>-<revision>-<container>-<random hex>`, as the ECS agent names containers.
pub fn docker_name(a: &TaskAssignment, container: &str) -> String {
    format!("ecs-{}-{}-{container}-{:016x}{:04x}", a.family, a.revision, rand::random::<u64>(), rand::random::<u16>())
}

/// The task's volumes by name. Docker volumes scoped to the task (and volumes with neither
/// a host path nor a Docker configuration, which ECS makes Docker-managed) get a name
/// derived from the task id, so that a restarted agent finds the same ones.
pub fn task_volumes(a: &TaskAssignment, instance_arn: &str) -> HashMap<String, VolumeSource> {
    let task_id = a.task_arn.rsplit('/').next().unwrap_or_default();
    let task_labels = HashMap::from([
        (labels::CLUSTER.to_string(), a.cluster_arn.clone()),
        (labels::TASK_ARN.to_string(), a.task_arn.clone()),
        (labels::INSTANCE.to_string(), instance_arn.to_string()),
    ]);
    let mut out = HashMap::new();
    for v in a.definition.volumes.iter().flatten() {
        let name = v.name.clone().unwrap_or_default();
        let task_scoped = |driver, driver_opts, mut extra: HashMap<String, String>| {
            extra.extend(task_labels.clone());
            VolumeSource::Docker {
                spec: VolumeSpec {
                    name: format!("ecs-{}-{}-{name}-{task_id}", a.family, a.revision),
                    driver,
                    driver_opts,
                    labels: extra,
                },
                shared: false,
                autoprovision: true,
            }
        };
        let source = match (&v.host, &v.docker_volume_configuration) {
            (Some(h), _) if h.source_path.is_some() => {
                VolumeSource::HostPath(h.source_path.clone().unwrap_or_default())
            }
            (_, Some(dv)) => {
                let driver = dv.driver.clone();
                let opts: HashMap<String, String> =
                    dv.driver_opts.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
                let extra: HashMap<String, String> =
                    dv.labels.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
                if dv.scope == Some(Scope::Shared) {
                    VolumeSource::Docker {
                        spec: VolumeSpec { name: name.clone(), driver, driver_opts: opts, labels: extra },
                        shared: true,
                        autoprovision: dv.autoprovision == Some(true),
                    }
                } else {
                    task_scoped(driver, opts, extra)
                }
            }
            _ => task_scoped(None, HashMap::new(), HashMap::new()),
        };
        out.insert(name, source);
    }
    out
}

/// What the Docker specs of a task's containers read besides the containers themselves.
pub struct TaskSpec<'a> {
    pub assignment: &'a TaskAssignment,
    pub config: &'a RunnerConfig,
    pub network_mode: NetworkMode,
    pub volumes: &'a HashMap<String, VolumeSource>,
    /// The task's credentials id, for a task with a task role and an endpoint.
    pub credentials_id: Option<EndpointId>,
}

impl<'a> TaskSpec<'a> {
    /// The create request's inputs for container `i` of `ctrs`, or why it cannot be
    /// created (the container's `CannotCreateContainerError` reason).
    pub fn create(&self, ctrs: &'a [Ctr], i: usize) -> Result<CreateSpec<'a>, String> {
        let c = &ctrs[i];
        let mut binds = vec![];
        for mp in c.def.mount_points.iter().flatten() {
            let volume = mp.source_volume.as_deref().unwrap_or_default();
            let source = match self.volumes.get(volume) {
                Some(VolumeSource::HostPath(p)) => p.clone(),
                Some(VolumeSource::Docker { spec, .. }) => spec.name.clone(),
                None => {
                    return Err(format!("CannotCreateContainerError: mount point refers to unknown volume '{volume}'"))
                }
            };
            let ro = if mp.read_only == Some(true) { ":ro" } else { "" };
            binds.push(format!("{source}:{}{ro}", mp.container_path.as_deref().unwrap_or_default()));
        }
        let by_name = |n: &str| ctrs.iter().find(|o| o.name == n).map(|o| o.docker_name.clone());
        let links = if self.network_mode == NetworkMode::Bridge {
            c.def
                .links
                .iter()
                .flatten()
                .filter_map(|l| {
                    let (target, alias) = l.split_once(':').unwrap_or((l, l));
                    by_name(target).map(|d| format!("{d}:{alias}"))
                })
                .collect()
        } else {
            vec![]
        };
        let volumes_from = c
            .def
            .volumes_from
            .iter()
            .flatten()
            .filter_map(|vf| {
                let source = by_name(vf.source_container.as_deref().unwrap_or_default())?;
                Some(if vf.read_only == Some(true) { format!("{source}:ro") } else { source })
            })
            .collect();
        let mut labels: HashMap<String, String> =
            c.def.docker_labels.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.extend(self.labels(&c.name));
        let log_driver = match c.def.log_configuration.as_ref() {
            Some(l) => {
                let options: HashMap<String, String> = l.options.clone().unwrap_or_default().into_iter().collect();
                let driver = l.log_driver.map(|d| d.as_str().to_string()).unwrap_or_default();
                if driver == "awslogs" {
                    AwsLogs::parse(&options).map_err(|e| format!("CannotCreateContainerError: {e}"))?;
                }
                let default_cache = awslogs::CacheFileSize::default();
                let cache = self.config.awslogs.as_deref().map_or(&default_cache, |s| s.cache());
                let (driver, mut options) = awslogs::local_driver(&driver, &options, cache);
                options.extend(c.secrets.log_options.iter().cloned());
                Some((driver, options))
            }
            None => None,
        };
        Ok(CreateSpec {
            def: &c.def,
            network_mode: self.network_mode,
            network_container: ctrs.iter().find(|c| c.internal).and_then(|c| c.id.clone()),
            labels,
            binds,
            links,
            volumes_from,
            stop_timeout: stop_timeout(&c.def, self.config.stop_timeout),
            dynamic_port_range: self.config.dynamic_port_range,
            log_driver,
            extra_env: c
                .endpoint_id
                .map(|id| endpoint::env::container_env(&id, self.credentials_id.as_ref()))
                .unwrap_or_default()
                .into_iter()
                .chain(c.secrets.env.iter().cloned())
                .collect(),
        })
    }

    /// The create request's inputs for the pause container `c` of an awsvpc task.
    pub fn pause(&self, c: &Ctr, awsvpc: &Awsvpc) -> PauseSpec {
        let n = &awsvpc.network.attachment;
        PauseSpec {
            image: awsvpc.image.reference.clone(),
            network: n.docker_network.clone(),
            ipv4: n.private_ipv4_address,
            mac: n.mac_address.clone(),
            labels: self.labels(&c.name).into_iter().collect(),
        }
    }

    /// The labels that tie a container to this task and instance (adoption finds
    /// containers by them).
    pub fn labels(&self, container: &str) -> [(String, String); 6] {
        let a = self.assignment;
        [
            // The task's cluster, as the ECS agent labels it (for Fargate capacity, not the
            // pool the agent registered in).
            (labels::CLUSTER.to_string(), a.cluster_arn.clone()),
            (labels::TASK_ARN.to_string(), a.task_arn.clone()),
            (labels::CONTAINER_NAME.to_string(), container.to_string()),
            (labels::FAMILY.to_string(), a.family.clone()),
            (labels::REVISION.to_string(), a.revision.to_string()),
            (labels::INSTANCE.to_string(), self.config.instance_arn.clone()),
        ]
    }
}

/// The grace between SIGTERM and SIGKILL: the container's own `stopTimeout`, else the
/// agent's.
pub fn stop_timeout(def: &ContainerDefinition, agent_default: Duration) -> Duration {
    match def.stop_timeout {
        Some(s) if s >= 0 => Duration::from_secs(s as u64),
        _ => agent_default,
    }
}

/// What ECS reports as network bindings: bridge ports as Docker published them; in host
/// mode the container ports themselves; none in `none` mode.
pub fn bindings(
    mode: NetworkMode,
    def: &ContainerDefinition,
    published: &[(i32, TransportProtocol, i32)],
) -> Vec<NetworkBinding> {
    let binding = |container: i32, protocol: TransportProtocol, host: i32| NetworkBinding {
        bind_ip: Some("0.0.0.0".into()),
        container_port: Some(container),
        host_port: Some(host),
        protocol: Some(protocol),
        ..Default::default()
    };
    match mode {
        NetworkMode::Bridge => published.iter().map(|(c, p, h)| binding(*c, *p, *h)).collect(),
        NetworkMode::Host => def
            .port_mappings
            .iter()
            .flatten()
            .flat_map(|pm| {
                let protocol = pm.protocol.unwrap_or(TransportProtocol::Tcp);
                let ports = match (pm.container_port, pm.container_port_range.as_deref()) {
                    (Some(p), _) => vec![p],
                    (None, Some(r)) => docker::port_range(r),
                    (None, None) => vec![],
                };
                ports.into_iter().map(move |p| binding(p, protocol, p))
            })
            .collect(),
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::fixtures::{assignment, ctr, network};
    use model::ecs::shapes::{
        ContainerDependency, DockerVolumeConfiguration, HostVolumeProperties, KeyValuePair, MountPoint, PortMapping,
        RegisterTaskDefinitionRequest, TaskOverride, Volume, VolumeFrom,
    };

    fn kv(k: &str, v: &str) -> KeyValuePair {
        KeyValuePair { name: Some(k.into()), value: Some(v.into()) }
    }

    #[test]
    fn overrides_replace_command_and_merge_environment() {
        let def = ContainerDefinition {
            command: Some(vec!["a".into()]),
            environment: Some(vec![kv("A", "1"), kv("B", "2")]),
            memory: Some(64),
            ..Default::default()
        };
        let o = ContainerOverride {
            command: Some(vec!["b".into()]),
            environment: Some(vec![kv("B", "3"), kv("C", "4")]),
            memory: Some(128),
            ..Default::default()
        };
        let d = apply_override(&def, Some(&o));
        assert_eq!(d.command, Some(vec!["b".to_string()]));
        assert_eq!(d.environment, Some(vec![kv("A", "1"), kv("B", "3"), kv("C", "4")]));
        assert_eq!(d.memory, Some(128));
    }

    #[test]
    fn links_and_volumes_from_are_dependencies() {
        let index = HashMap::from([("db".to_string(), 0), ("data".to_string(), 1)]);
        let def = ContainerDefinition {
            links: Some(vec!["db:database".into()]),
            volumes_from: Some(vec![VolumeFrom { source_container: Some("data".into()), read_only: None }]),
            depends_on: Some(vec![ContainerDependency {
                container_name: Some("data".into()),
                condition: Some(ContainerCondition::Success),
            }]),
            ..Default::default()
        };
        let deps = dependencies(&def, &index, NetworkMode::Bridge);
        let pairs: Vec<(usize, Cond)> = deps.iter().map(|d| (d.on, d.cond)).collect();
        assert_eq!(pairs, vec![(1, Cond::Success), (0, Cond::Start), (1, Cond::Created)]);
        assert_eq!(dependencies(&def, &index, NetworkMode::Host).len(), 2, "links exist only in bridge mode");
    }

    fn named(name: &str) -> ContainerDefinition {
        ContainerDefinition { name: Some(name.into()), image: Some("busybox".into()), ..Default::default() }
    }

    fn task(mode: NetworkMode, defs: Vec<ContainerDefinition>, volumes: Vec<Volume>) -> TaskAssignment {
        assignment(RegisterTaskDefinitionRequest {
            network_mode: Some(mode),
            container_definitions: Some(defs),
            volumes: Some(volumes),
            ..Default::default()
        })
    }

    fn config() -> RunnerConfig {
        RunnerConfig::new("arn:aws:ecs:us-east-1:000000000000:container-instance/c/i")
    }

    #[test]
    fn an_awsvpc_task_gets_a_pause_container_that_every_other_depends_on() {
        let a = task(NetworkMode::Awsvpc, vec![named("web"), named("side")], vec![]);
        let ctrs = containers(&a, NetworkMode::Awsvpc, Some("berth/pause:x"));
        assert_eq!(ctrs.len(), 3);
        let pause = &ctrs[2];
        assert!(pause.internal && pause.essential && pause.deps.is_empty());
        assert_eq!(pause.name, PAUSE_CONTAINER_NAME);
        assert_eq!(pause.def.image.as_deref(), Some("berth/pause:x"));
        assert_eq!(pause.def.stop_timeout, Some(0), "SIGKILL at once: it ignores SIGTERM");
        assert!(pause.docker_name.starts_with("ecs-fam-1-internalecspause-"));
        for c in &ctrs[..2] {
            assert!(!c.internal);
            assert_eq!(c.deps, vec![Dep { on: 2, cond: Cond::Start }]);
        }
        let bridge = containers(&a, NetworkMode::Bridge, None);
        assert!(bridge.len() == 2 && bridge.iter().all(|c| !c.internal && c.deps.is_empty()));
    }

    #[test]
    fn containers_take_their_own_override_and_essential_flag() {
        let mut a = task(
            NetworkMode::Bridge,
            vec![named("web"), ContainerDefinition { essential: Some(false), ..named("side") }],
            vec![],
        );
        a.overrides = Some(TaskOverride {
            container_overrides: Some(vec![ContainerOverride {
                name: Some("side".into()),
                command: Some(vec!["true".into()]),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let ctrs = containers(&a, NetworkMode::Bridge, None);
        assert_eq!((ctrs[0].def.command.as_ref(), ctrs[0].essential), (None, true));
        assert_eq!((ctrs[1].def.command.clone(), ctrs[1].essential), (Some(vec!["true".to_string()]), false));
    }

    #[test]
    fn docker_names_follow_the_ecs_agent() {
        let a = task(NetworkMode::Bridge, vec![], vec![]);
        let name = docker_name(&a, "web");
        let suffix = name.strip_prefix("ecs-fam-1-web-").unwrap();
        assert!(suffix.len() == 20 && suffix.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
        assert_ne!(name, docker_name(&a, "web"), "a fresh name for every container");
    }

    fn host(name: &str, path: &str) -> Volume {
        Volume {
            name: Some(name.into()),
            host: Some(HostVolumeProperties { source_path: Some(path.into()) }),
            ..Default::default()
        }
    }

    fn docker_volume(name: &str, dv: DockerVolumeConfiguration) -> Volume {
        Volume { name: Some(name.into()), docker_volume_configuration: Some(dv), ..Default::default() }
    }

    #[test]
    fn volumes_are_host_paths_task_scoped_or_shared_docker_volumes() {
        let shared = DockerVolumeConfiguration {
            scope: Some(Scope::Shared),
            autoprovision: Some(true),
            driver: Some("local".into()),
            ..Default::default()
        };
        let scoped = DockerVolumeConfiguration {
            labels: Some([("team".to_string(), "a".to_string())].into()),
            ..Default::default()
        };
        let empty = Volume { name: Some("scratch".into()), ..Default::default() };
        let a = task(
            NetworkMode::Bridge,
            vec![],
            vec![host("logs", "/var/log"), docker_volume("cache", shared), docker_volume("data", scoped), empty],
        );
        let v = task_volumes(&a, "instance-1");
        assert_eq!(v["logs"], VolumeSource::HostPath("/var/log".into()));
        let VolumeSource::Docker { spec, shared, autoprovision } = &v["cache"] else { panic!("{:?}", v["cache"]) };
        assert_eq!(
            (spec.name.as_str(), spec.driver.as_deref(), *shared, *autoprovision),
            ("cache", Some("local"), true, true)
        );
        assert!(spec.labels.is_empty(), "a shared volume is not the task's");
        for (name, user_labels) in [("data", 1), ("scratch", 0)] {
            let VolumeSource::Docker { spec, shared, autoprovision } = &v[name] else { panic!("{:?}", v[name]) };
            assert_eq!(spec.name, format!("ecs-fam-1-{name}-abc"), "named for the task, found again after a restart");
            assert!(!*shared && *autoprovision);
            assert_eq!(spec.labels.len(), 3 + user_labels);
            assert_eq!(spec.labels[labels::INSTANCE], "instance-1");
            assert_eq!(spec.labels[labels::TASK_ARN], a.task_arn);
        }
    }

    #[test]
    fn a_create_spec_binds_volumes_and_names_links_and_volumes_from_by_docker_name() {
        let mount = |volume: &str, path: &str, ro| MountPoint {
            source_volume: Some(volume.into()),
            container_path: Some(path.into()),
            read_only: ro,
        };
        let web = ContainerDefinition {
            mount_points: Some(vec![mount("logs", "/logs", Some(true)), mount("data", "/data", None)]),
            links: Some(vec!["db:database".into(), "cache".into()]),
            volumes_from: Some(vec![VolumeFrom { source_container: Some("db".into()), read_only: Some(true) }]),
            docker_labels: Some([("app".to_string(), "web".to_string())].into()),
            ..named("web")
        };
        let a = task(
            NetworkMode::Bridge,
            vec![],
            vec![host("logs", "/var/log"), docker_volume("data", DockerVolumeConfiguration::default())],
        );
        let config = config();
        let volumes = task_volumes(&a, &config.instance_arn);
        let ctrs = [Ctr::new("ecs-web".into(), web, vec![]), ctr("db", vec![]), ctr("cache", vec![])];
        let spec = TaskSpec {
            assignment: &a,
            config: &config,
            network_mode: NetworkMode::Bridge,
            volumes: &volumes,
            credentials_id: None,
        };
        let s = spec.create(&ctrs, 0).unwrap();
        assert_eq!(s.binds, vec!["/var/log:/logs:ro".to_string(), "ecs-fam-1-data-abc:/data".to_string()]);
        assert_eq!(s.links, vec!["ecs-db:database".to_string(), "ecs-cache:cache".to_string()]);
        assert_eq!(s.volumes_from, vec!["ecs-db:ro".to_string()]);
        assert_eq!(s.labels["app"], "web");
        assert_eq!(s.labels[labels::CLUSTER], a.cluster_arn, "the task's cluster");
        assert_eq!(s.labels[labels::CONTAINER_NAME], "web");
        assert_eq!(s.labels[labels::INSTANCE], config.instance_arn);
        assert_eq!(s.labels[labels::REVISION], "1");
        assert_eq!(s.network_container, None);

        let host_mode = TaskSpec { network_mode: NetworkMode::Host, ..spec };
        assert!(host_mode.create(&ctrs, 0).unwrap().links.is_empty(), "links exist only in bridge mode");
        let no_volumes = HashMap::new();
        let bare = TaskSpec { volumes: &no_volumes, ..host_mode };
        assert_eq!(
            bare.create(&ctrs, 0).unwrap_err(),
            "CannotCreateContainerError: mount point refers to unknown volume 'logs'"
        );
    }

    fn awsvpc() -> Awsvpc {
        Awsvpc {
            network: awsvpc::check(&network([10, 0, 1, 7])).unwrap(),
            image: crate::pause::pause_image_for("x86_64").unwrap(),
        }
    }

    #[test]
    fn awsvpc_containers_join_the_pause_container_and_it_holds_the_address() {
        let a = task(NetworkMode::Awsvpc, vec![named("web")], vec![]);
        let config = config();
        let volumes = HashMap::new();
        let spec = TaskSpec {
            assignment: &a,
            config: &config,
            network_mode: NetworkMode::Awsvpc,
            volumes: &volumes,
            credentials_id: None,
        };
        let mut ctrs = containers(&a, NetworkMode::Awsvpc, Some("berth/pause:x"));
        ctrs[1].id = Some("pauseid".into());
        assert_eq!(spec.create(&ctrs, 0).unwrap().network_container.as_deref(), Some("pauseid"));

        let net = awsvpc();
        let p = spec.pause(&ctrs[1], &net);
        assert_eq!(
            (p.network.as_str(), p.ipv4, p.mac.as_str()),
            ("berth-subnet-1", [10, 0, 1, 7].into(), "0a:58:0a:00:01:07")
        );
        assert_eq!(p.image, net.image.reference);
        assert_eq!(p.labels[labels::CONTAINER_NAME], PAUSE_CONTAINER_NAME);
        assert_eq!(p.labels[labels::TASK_ARN], a.task_arn);
        let subnet = net.subnet_network();
        assert_eq!(
            (subnet.name.as_str(), subnet.subnet_id.as_str(), subnet.cidr.to_string()),
            ("berth-subnet-1", "subnet-1", "10.0.1.0/24".into())
        );
    }

    #[test]
    fn stop_timeouts_are_the_containers_own_else_the_agents() {
        let agent = Duration::from_secs(30);
        let with = |t| ContainerDefinition { stop_timeout: t, ..Default::default() };
        assert_eq!(stop_timeout(&with(Some(2)), agent), Duration::from_secs(2));
        assert_eq!(stop_timeout(&with(Some(0)), agent), Duration::ZERO);
        assert_eq!(stop_timeout(&with(None), agent), agent);
        assert_eq!(stop_timeout(&with(Some(-1)), agent), agent);

        let a = task(NetworkMode::Bridge, vec![named("web")], vec![]);
        let config = RunnerConfig { stop_timeout: Duration::from_secs(7), ..config() };
        let volumes = HashMap::new();
        let spec = TaskSpec {
            assignment: &a,
            config: &config,
            network_mode: NetworkMode::Bridge,
            volumes: &volumes,
            credentials_id: None,
        };
        let mut ctrs = [ctr("web", vec![])];
        assert_eq!(spec.create(&ctrs, 0).unwrap().stop_timeout, Duration::from_secs(7));
        ctrs[0].def.stop_timeout = Some(3);
        assert_eq!(spec.create(&ctrs, 0).unwrap().stop_timeout, Duration::from_secs(3));
    }

    #[test]
    fn port_mappings_bind_static_dynamic_and_ranged_ports() {
        let pm = |container: Option<i32>, host: Option<i32>, range: Option<&str>, udp: bool| PortMapping {
            container_port: container,
            host_port: host,
            container_port_range: range.map(Into::into),
            protocol: udp.then_some(TransportProtocol::Udp),
            ..Default::default()
        };
        let mut web = ctr("web", vec![]);
        web.def.port_mappings = Some(vec![
            pm(Some(80), Some(8080), None, false),
            pm(Some(81), None, None, false),
            pm(Some(53), Some(0), None, true),
            pm(None, Some(9000), Some("7000-7001"), false),
        ]);
        let a = task(NetworkMode::Bridge, vec![], vec![]);
        let config = RunnerConfig { dynamic_port_range: Some((20000, 20100)), ..config() };
        let volumes = HashMap::new();
        let spec = TaskSpec {
            assignment: &a,
            config: &config,
            network_mode: NetworkMode::Bridge,
            volumes: &volumes,
            credentials_id: None,
        };
        let ctrs = [web];
        let body = docker::create_body(&spec.create(&ctrs, 0).unwrap());
        let ports = body.host_config.unwrap().port_bindings.unwrap();
        let host = |key: &str| ports[key].as_ref().unwrap()[0].host_port.clone().unwrap();
        assert_eq!(host("80/tcp"), "8080", "static");
        assert_eq!(host("81/tcp"), "20000-20100", "dynamic, from the agent's range");
        assert_eq!(host("53/udp"), "20000-20100", "host port 0 is dynamic too");
        assert_eq!(
            (host("7000/tcp"), host("7001/tcp")),
            ("20000-20100".into(), "20000-20100".into()),
            "a range is always dynamic"
        );
        assert_eq!(ports.len(), 5);
    }

    #[test]
    fn bindings_are_what_docker_published_or_the_container_ports_in_host_mode() {
        let def = ContainerDefinition {
            port_mappings: Some(vec![
                PortMapping { container_port: Some(80), ..Default::default() },
                PortMapping {
                    container_port_range: Some("7000-7001".into()),
                    protocol: Some(TransportProtocol::Udp),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let published = [(80, TransportProtocol::Tcp, 32768), (53, TransportProtocol::Udp, 32769)];
        let pairs = |b: Vec<NetworkBinding>| -> Vec<(i32, i32, TransportProtocol)> {
            b.iter().map(|b| (b.container_port.unwrap(), b.host_port.unwrap(), b.protocol.unwrap())).collect()
        };
        assert_eq!(
            pairs(bindings(NetworkMode::Bridge, &def, &published)),
            vec![(80, 32768, TransportProtocol::Tcp), (53, 32769, TransportProtocol::Udp)]
        );
        assert_eq!(
            pairs(bindings(NetworkMode::Host, &def, &published)),
            vec![
                (80, 80, TransportProtocol::Tcp),
                (7000, 7000, TransportProtocol::Udp),
                (7001, 7001, TransportProtocol::Udp)
            ]
        );
        assert!(bindings(NetworkMode::None, &def, &published).is_empty());
        assert!(bindings(NetworkMode::Awsvpc, &def, &published).is_empty());
        assert_eq!(bindings(NetworkMode::Bridge, &def, &published)[0].bind_ip.as_deref(), Some("0.0.0.0"));
    }
}
