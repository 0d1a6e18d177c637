//! The Docker Engine edge: the only module that knows the Engine API (through `bollard`).
//!
//! It turns an ECS container definition into a Docker create request ([`create_body`], a
//! pure function), and Docker's answers into the few facts the runner needs
//! ([`Observed`], [`Event`]). Errors carry Docker's own message, because ECS shows it to
//! the user after a prefix such as `CannotPullContainerError: `.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use std::net::Ipv4Addr;

use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, DeviceMapping, EndpointIpamConfig, EndpointSettings, HealthConfig,
    HealthStatusEnum, HostConfig, HostConfigLogConfig, Ipam, IpamConfig, Network, NetworkCreateRequest,
    NetworkingConfig, PortBinding, ResourcesUlimits, VolumeCreateOptions,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, EventsOptions, InspectContainerOptions, InspectNetworkOptions,
    ListContainersOptions, ListNetworksOptions, ListVolumesOptions, LogsOptions, RemoveContainerOptions,
    RemoveVolumeOptions, StatsOptions, StopContainerOptions, WaitContainerOptions,
};
use futures_util::{Stream, StreamExt};
use model::ecs::shapes::{ContainerDefinition, NetworkMode, TransportProtocol};

use crate::awsvpc::Ipv4Cidr;
use crate::pause::{PauseImage, PAUSE_PATH};

/// Label keys the ECS agent puts on every container, and ours for the owning instance.
pub mod labels {
    pub const CLUSTER: &str = "com.amazonaws.ecs.cluster";
    pub const TASK_ARN: &str = "com.amazonaws.ecs.task-arn";
    pub const CONTAINER_NAME: &str = "com.amazonaws.ecs.container-name";
    pub const FAMILY: &str = "com.amazonaws.ecs.task-definition-family";
    pub const REVISION: &str = "com.amazonaws.ecs.task-definition-version";
    pub const INSTANCE: &str = "berth.container-instance";
    /// On Docker networks that stand for a subnet: `true`, marking the network as Berth's.
    pub const MANAGED: &str = "berth.managed";
    /// On Docker networks that stand for a subnet: the subnet's id.
    pub const SUBNET_ID: &str = "berth.subnet-id";
}

/// Every call but `stop` (which waits for the container) and the streams is bounded by
/// this, so that a hung engine turns into an error rather than a hung task.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// A pull may legitimately take long; the runner's desired state can still cancel it.
const PULL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// A failed Engine call, by how the runner reacts to it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DockerError {
    /// The object (container, image, volume) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Anything else; the message is Docker's, fit to show after an ECS error prefix.
    #[error("{0}")]
    Failed(String),
}

impl DockerError {
    fn from_bollard(e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError { status_code: 404, message } => DockerError::NotFound(message),
            E::DockerResponseServerError { message, .. } => DockerError::Failed(message),
            E::DockerStreamError { error } => DockerError::Failed(error),
            other => DockerError::Failed(other.to_string()),
        }
    }
}

type Result<T> = std::result::Result<T, DockerError>;

async fn bounded<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = std::result::Result<T, bollard::errors::Error>>,
) -> Result<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r.map_err(DockerError::from_bollard),
        Err(_) => Err(DockerError::Failed(format!("{what}: the Docker engine did not answer within {limit:?}"))),
    }
}

/// A handle on the local Docker engine; cheap to clone.
#[derive(Clone)]
pub struct Docker {
    client: bollard::Docker,
}

/// A container as `docker inspect` shows it, reduced to what the runner reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub id: String,
    pub name: String,
    pub state: RunState,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    /// Docker's error for a container that could not run (`State.Error`).
    pub error: Option<String>,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    /// `None` when the container has no health check.
    pub health: Option<Health>,
    /// Published ports: (container port, protocol, host port), IPv4 bindings only.
    pub ports: Vec<(i32, TransportProtocol, i32)>,
    /// The image id (`sha256:...`) the container runs.
    pub image_id: String,
    /// When Docker created it (`Created`).
    pub created_at: Option<SystemTime>,
    /// Its environment as `NAME=value` (`Config.Env`): an adopted container's task
    /// endpoint ids are read back from it.
    pub env: Vec<String>,
    /// Its IPv4 address on each Docker network it is attached to, by network name.
    pub addresses: Vec<(String, Ipv4Addr)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Created and never started.
    Created,
    Running,
    /// Not running after having been started (exited or dead).
    Exited,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

/// A container event; the runner only uses it as a cue to inspect the container.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    /// `start`, `die`, `oom`, `health_status: healthy`, `destroy`, ...
    pub action: String,
}

/// A container found by its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub id: String,
    pub labels: HashMap<String, String>,
}

/// A Docker volume the task needs.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeSpec {
    pub name: String,
    pub driver: Option<String>,
    pub driver_opts: HashMap<String, String>,
    pub labels: HashMap<String, String>,
}

/// The engine's host, as `docker info` reports it.
#[derive(Debug, Clone)]
pub struct EngineHost {
    pub cpus: i64,
    pub memory_bytes: i64,
    pub version: String,
    pub architecture: String,
}

impl Docker {
    /// Connects over the local socket (`DOCKER_HOST` if set) and negotiates the API version,
    /// so an older engine (20.10 speaks 1.41) gets requests it understands.
    pub async fn connect() -> anyhow::Result<Docker> {
        let client = bollard::Docker::connect_with_local_defaults()?
            // Our own per-call bounds apply; this one only has to outlast `docker stop`.
            .with_timeout(Duration::from_secs(3600));
        let client = tokio::time::timeout(CALL_TIMEOUT, client.negotiate_version())
            .await
            .map_err(|_| anyhow::anyhow!("the Docker engine did not answer within {CALL_TIMEOUT:?}"))??;
        Ok(Docker { client })
    }

    /// What the engine says of its host: CPU count, total memory in bytes, its version and
    /// the machine's architecture (the host's, which may not be this process's when
    /// `DOCKER_HOST` names another machine).
    pub async fn host(&self) -> Result<EngineHost> {
        let info = bounded(CALL_TIMEOUT, "info", self.client.info()).await?;
        Ok(EngineHost {
            cpus: info.ncpu.unwrap_or(0),
            memory_bytes: info.mem_total.unwrap_or(0),
            version: info.server_version.unwrap_or_default(),
            architecture: info.architecture.unwrap_or_default(),
        })
    }

    /// Pulls `image` (without a tag, `latest`, as `docker pull` does).
    /// Pulls `image`, with registry credentials `(user, password)` when given.
    pub async fn pull(&self, image: &str, credentials: Option<(String, String)>) -> Result<()> {
        let options = CreateImageOptions { from_image: Some(with_default_tag(image)), ..Default::default() };
        let credentials = credentials.map(|(username, password)| bollard::auth::DockerCredentials {
            username: Some(username),
            password: Some(password),
            ..Default::default()
        });
        let mut stream = self.client.create_image(Some(options), None, credentials);
        let drain = async {
            while let Some(item) = stream.next().await {
                let info = item?;
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    return Err(bollard::errors::Error::DockerStreamError { error: e });
                }
            }
            Ok(())
        };
        bounded(PULL_TIMEOUT, "pull", drain).await
    }

    /// The digest ECS reports for a local image: its registry digest when it came from a
    /// registry, else its image id. `NotFound` when the image is not present.
    pub async fn image_digest(&self, image: &str) -> Result<String> {
        let inspect = bounded(CALL_TIMEOUT, "image inspect", self.client.inspect_image(image)).await?;
        let repo_digest =
            inspect.repo_digests.unwrap_or_default().into_iter().find_map(|d| d.split_once('@').map(|(_, h)| h.into()));
        Ok(repo_digest.or(inspect.id).unwrap_or_default())
    }

    /// Creates the volume unless one of that name exists (Docker answers with the existing
    /// one when driver and options agree).
    pub async fn ensure_volume(&self, v: &VolumeSpec) -> Result<()> {
        let options = VolumeCreateOptions {
            name: Some(v.name.clone()),
            driver: v.driver.clone(),
            driver_opts: Some(v.driver_opts.clone()),
            labels: Some(v.labels.clone()),
            ..Default::default()
        };
        bounded(CALL_TIMEOUT, "volume create", self.client.create_volume(options)).await.map(|_| ())
    }

    pub async fn volume_exists(&self, name: &str) -> Result<bool> {
        match bounded(CALL_TIMEOUT, "volume inspect", self.client.inspect_volume(name)).await {
            Ok(_) => Ok(true),
            Err(DockerError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Names of volumes carrying all these labels.
    pub async fn volumes_with_labels(&self, wanted: &[(&str, &str)]) -> Result<Vec<String>> {
        let options = ListVolumesOptions { filters: Some(label_filters(wanted)) };
        let list = bounded(CALL_TIMEOUT, "volume list", self.client.list_volumes(Some(options))).await?;
        Ok(list.volumes.unwrap_or_default().into_iter().map(|v| v.name).collect())
    }

    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        let options = RemoveVolumeOptions { force: false };
        bounded(CALL_TIMEOUT, "volume remove", self.client.remove_volume(name, Some(options))).await
    }

    /// Makes sure the Docker network standing for a subnet exists with exactly its settings
    /// (a bridge whose IPAM has the subnet's CIDR and gateway, labelled as Berth's with the
    /// subnet id), creating it if needed.
    ///
    /// Tasks and agents may race to create the same network. The engine refuses the loser
    /// (a second pool with the same CIDR overlaps the first), so a failed create is followed
    /// by another look: the network in place with the same settings is success. (Engines
    /// before API 1.44 do not refuse a second network of the same name by themselves; a
    /// second one with the same CIDR they do refuse.)
    pub async fn ensure_subnet_network(&self, want: &SubnetNetwork) -> std::result::Result<(), NetworkSetupError> {
        if let Some(existing) = self.network(&want.name).await.map_err(NetworkSetupError::Docker)? {
            return same_settings(want, &existing);
        }
        // A Berth that is gone (a fresh data dir, another account) may have left a network
        // in the way; nothing attached means no task needs it any more.
        for gone in
            self.remove_unused_subnet_networks(want.cidr, &want.name).await.map_err(NetworkSetupError::Docker)?
        {
            tracing::info!(network = %gone, subnet = %want.cidr, "removed an unused Docker network of another subnet that overlapped subnet {}", want.subnet_id);
        }
        self.check_no_overlap(want).await?;
        let request = NetworkCreateRequest {
            name: want.name.clone(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig {
                    subnet: Some(want.cidr.to_string()),
                    gateway: Some(want.gateway.to_string()),
                    ..Default::default()
                }]),
                options: None,
            }),
            labels: Some(HashMap::from([
                (labels::MANAGED.to_string(), "true".to_string()),
                (labels::SUBNET_ID.to_string(), want.subnet_id.clone()),
            ])),
            ..Default::default()
        };
        let Err(e) = bounded(CALL_TIMEOUT, "network create", self.client.create_network(request)).await else {
            tracing::info!(network = %want.name, subnet = %want.cidr, "created the Docker network for subnet {}", want.subnet_id);
            return Ok(());
        };
        // The engine reserves the winner's pool before its network can be found by name, so
        // the loser looks again for a moment before it believes its error.
        for wait_ms in [0, 50, 100, 200, 400, 800] {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            if let Ok(Some(existing)) = self.network(&want.name).await {
                return same_settings(want, &existing);
            }
        }
        self.check_no_overlap(want).await?;
        Err(NetworkSetupError::Docker(e))
    }

    /// The Docker networks Berth made for subnets (label `berth.managed`) whose block
    /// overlaps `block`, with the containers attached to them.
    pub async fn subnet_networks_overlapping(&self, block: Ipv4Cidr) -> Result<Vec<ManagedNetwork>> {
        let options = ListNetworksOptions { filters: Some(label_filters(&[(labels::MANAGED, "true")])) };
        let list = bounded(CALL_TIMEOUT, "network list", self.client.list_networks(Some(options))).await?;
        let mut out = vec![];
        for n in list {
            let cidrs = ipv4_subnets(&n);
            let name = n.name.clone().unwrap_or_default();
            if name.is_empty() || !cidrs.iter().any(|c| c.overlaps(&block)) {
                continue;
            }
            // The list leaves out what is attached; only an inspection tells.
            let Some(full) = self.network(&name).await? else { continue };
            let options = ListContainersOptions {
                all: false,
                filters: Some(HashMap::from([("network".to_string(), vec![name.clone()])])),
                ..Default::default()
            };
            let attached = bounded(CALL_TIMEOUT, "list", self.client.list_containers(Some(options))).await?;
            let subnet_id = full.labels.as_ref().and_then(|l| l.get(labels::SUBNET_ID)).cloned().unwrap_or_default();
            out.push(ManagedNetwork {
                name,
                subnet_id,
                cidrs,
                endpoints: full.containers.map_or(0, |c| c.len()),
                attached: attached.into_iter().map(|c| c.labels.unwrap_or_default()).collect(),
            });
        }
        Ok(out)
    }

    /// Removes the subnet networks overlapping `block` (other than `keep`) that nothing is
    /// attached to, and names them. One that gains a container meanwhile is left: the
    /// engine refuses to remove a network with active endpoints.
    pub async fn remove_unused_subnet_networks(&self, block: Ipv4Cidr, keep: &str) -> Result<Vec<String>> {
        let mut removed = vec![];
        for n in self.subnet_networks_overlapping(block).await? {
            if n.name == keep || n.endpoints > 0 || !n.attached.is_empty() {
                continue;
            }
            match bounded(CALL_TIMEOUT, "network remove", self.client.remove_network(&n.name)).await {
                Ok(()) | Err(DockerError::NotFound(_)) => removed.push(n.name),
                Err(e) => tracing::warn!(network = %n.name, error = %e, "could not remove an unused subnet network"),
            }
        }
        Ok(removed)
    }

    /// The network called exactly `name`, if there is one.
    async fn network(&self, name: &str) -> Result<Option<Network>> {
        let inspect = self.client.inspect_network(name, None::<InspectNetworkOptions>);
        match bounded(CALL_TIMEOUT, "network inspect", inspect).await {
            // The engine also matches id prefixes; only the name counts here.
            Ok(n) if n.name.as_deref() == Some(name) => Ok(Some(n)),
            Ok(_) | Err(DockerError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Fails with [`NetworkSetupError::Overlap`] naming the first other network whose IPv4
    /// subnet overlaps the wanted one.
    async fn check_no_overlap(&self, want: &SubnetNetwork) -> std::result::Result<(), NetworkSetupError> {
        let list = self.client.list_networks(None::<ListNetworksOptions>);
        let networks = bounded(CALL_TIMEOUT, "network list", list).await.map_err(NetworkSetupError::Docker)?;
        for n in networks {
            let name = n.name.clone().unwrap_or_default();
            if name == want.name {
                continue;
            }
            for other in ipv4_subnets(&n) {
                if other.overlaps(&want.cidr) {
                    return Err(NetworkSetupError::Overlap {
                        name: want.name.clone(),
                        cidr: want.cidr,
                        other: name,
                        other_cidr: other,
                    });
                }
            }
        }
        Ok(())
    }

    /// Imports the pause image from its in-memory root filesystem unless the engine has it.
    pub async fn ensure_pause_image(&self, image: &PauseImage) -> Result<()> {
        match bounded(CALL_TIMEOUT, "image inspect", self.client.inspect_image(&image.reference)).await {
            Ok(_) => return Ok(()),
            Err(DockerError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let (repo, tag) = image.reference.rsplit_once(':').unwrap_or((&image.reference, "latest"));
        let options = CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(repo.into()),
            tag: Some(tag.into()),
            changes: vec![format!("ENTRYPOINT [\"{PAUSE_PATH}\"]")],
            ..Default::default()
        };
        let body = bollard::body_full(image.rootfs_tar.clone().into());
        let mut stream = self.client.create_image(Some(options), Some(body), None);
        let drain = async {
            while let Some(item) = stream.next().await {
                item?;
            }
            Ok(())
        };
        bounded(CALL_TIMEOUT, "image import", drain).await?;
        tracing::info!(image = %image.reference, "imported the pause image");
        Ok(())
    }

    /// Creates an awsvpc task's pause container and returns its id. Engines before API 1.44
    /// take the MAC address only from the container's configuration, later ones only from the
    /// endpoint's, so the request depends on the negotiated version.
    pub async fn create_pause(&self, name: &str, spec: &PauseSpec) -> Result<String> {
        let v = self.client.client_version();
        let container_wide_mac = (v.major_version, v.minor_version) < (1, 44);
        self.create(name, pause_body(spec, container_wide_mac)).await
    }

    /// Creates a container and returns its id.
    pub async fn create(&self, name: &str, body: ContainerCreateBody) -> Result<String> {
        let options = CreateContainerOptions { name: Some(name.to_string()), ..Default::default() };
        let created = bounded(CALL_TIMEOUT, "create", self.client.create_container(Some(options), body)).await?;
        Ok(created.id)
    }

    pub async fn start(&self, id: &str, limit: Duration) -> Result<()> {
        bounded(
            limit,
            "start",
            self.client.start_container(id, None::<bollard::query_parameters::StartContainerOptions>),
        )
        .await
    }

    /// `docker stop`: the container's stop signal (SIGTERM), then SIGKILL after `grace`.
    /// Returns once the container has stopped.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptions { t: Some(t), signal: None };
        let limit = grace + CALL_TIMEOUT;
        bounded(limit, "stop", self.client.stop_container(id, Some(options))).await
    }

    pub async fn remove(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptions { force: true, v: true, link: false };
        bounded(CALL_TIMEOUT, "remove", self.client.remove_container(id, Some(options))).await
    }

    pub async fn inspect(&self, id: &str) -> Result<Observed> {
        let options = InspectContainerOptions { size: false };
        let c = bounded(CALL_TIMEOUT, "inspect", self.client.inspect_container(id, Some(options))).await?;
        let state = c.state.unwrap_or_default();
        let started_at = state.started_at.as_deref().and_then(parse_time);
        let run_state = match state.status {
            Some(ContainerStateStatusEnum::RUNNING)
            | Some(ContainerStateStatusEnum::PAUSED)
            | Some(ContainerStateStatusEnum::RESTARTING) => RunState::Running,
            Some(ContainerStateStatusEnum::CREATED) => RunState::Created,
            // `exited`, `dead`, `removing`: it ran, or tried to, and is not running now.
            _ => RunState::Exited,
        };
        let health = state.health.and_then(|h| match h.status {
            Some(HealthStatusEnum::HEALTHY) => Some(Health::Healthy),
            Some(HealthStatusEnum::UNHEALTHY) => Some(Health::Unhealthy),
            Some(HealthStatusEnum::STARTING) => Some(Health::Starting),
            _ => None,
        });
        let mut ports = Vec::new();
        for (key, bindings) in c.network_settings.as_ref().and_then(|n| n.ports.clone()).unwrap_or_default() {
            let Some((port, proto)) = key.split_once('/') else { continue };
            let (Ok(port), protocol) =
                (port.parse::<i32>(), if proto == "udp" { TransportProtocol::Udp } else { TransportProtocol::Tcp })
            else {
                continue;
            };
            for b in bindings.unwrap_or_default() {
                let ipv4 = b.host_ip.as_deref().is_none_or(|ip| !ip.contains(':'));
                if let (true, Some(Ok(host))) = (ipv4, b.host_port.as_deref().map(str::parse::<i32>)) {
                    if !ports.contains(&(port, protocol, host)) {
                        ports.push((port, protocol, host));
                    }
                }
            }
        }
        ports.sort_by_key(|(p, proto, h)| (*p, proto.as_str(), *h));
        let mut addresses: Vec<(String, Ipv4Addr)> = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|(name, e)| Some((name.clone(), e.ip_address.as_deref()?.parse().ok()?)))
            .collect();
        addresses.sort();
        Ok(Observed {
            id: c.id.unwrap_or_default(),
            name: c.name.unwrap_or_default().trim_start_matches('/').to_string(),
            state: run_state,
            exit_code: state.exit_code.map(|c| c as i32),
            oom_killed: state.oom_killed.unwrap_or(false),
            error: state.error.filter(|e| !e.is_empty()),
            started_at,
            finished_at: state.finished_at.as_deref().and_then(parse_time),
            health,
            ports,
            image_id: c.image.unwrap_or_default(),
            created_at: c.created.as_deref().and_then(parse_time),
            env: c.config.and_then(|c| c.env).unwrap_or_default(),
            addresses,
        })
    }

    /// One sample of a container's resource use, as Docker's stats API gives it (JSON),
    /// with `precpu_stats` filled: Docker takes two samples a second apart, so that CPU
    /// use can be computed from one answer as from ECS's.
    pub async fn stats(&self, id: &str) -> Result<serde_json::Value> {
        let options = StatsOptions { stream: false, one_shot: false };
        let first = bounded(CALL_TIMEOUT, "stats", async {
            match self.client.stats(id, Some(options)).next().await {
                Some(r) => r.map(Some),
                None => Ok(None),
            }
        })
        .await?;
        let stats = first.ok_or_else(|| DockerError::Failed(format!("Docker returned no stats for {id}")))?;
        serde_json::to_value(stats).map_err(|e| DockerError::Failed(format!("stats of {id}: {e}")))
    }

    /// The host PID of a running container's first process (`State.Pid`); `None` when it
    /// does not run.
    pub async fn pid(&self, id: &str) -> Result<Option<u32>> {
        let options = InspectContainerOptions { size: false };
        let c = bounded(CALL_TIMEOUT, "inspect", self.client.inspect_container(id, Some(options))).await?;
        Ok(c.state.and_then(|s| s.pid).filter(|p| *p > 0).and_then(|p| u32::try_from(p).ok()))
    }

    /// All containers (running or not) carrying all these labels.
    pub async fn containers_with_labels(&self, wanted: &[(&str, &str)]) -> Result<Vec<Found>> {
        let options = ListContainersOptions { all: true, filters: Some(label_filters(wanted)), ..Default::default() };
        let list = bounded(CALL_TIMEOUT, "list", self.client.list_containers(Some(options))).await?;
        Ok(list
            .into_iter()
            .map(|c| Found { id: c.id.unwrap_or_default(), labels: c.labels.unwrap_or_default() })
            .collect())
    }

    /// The file a container's log is kept in and its format, when Docker keeps it with the
    /// `local` or `json-file` driver (the agent can then read it without the engine
    /// serving it); `None` for any other driver. Inspect names a json-file's path; a
    /// `local` log is `<engine root>/containers/<id>/local-logs/container.log`, which
    /// inspect leaves out.
    pub async fn log_file(&self, id: &str) -> Result<Option<(std::path::PathBuf, crate::awslogs::LogFormat)>> {
        use crate::awslogs::LogFormat;
        let options = InspectContainerOptions { size: false };
        let c = bounded(CALL_TIMEOUT, "inspect", self.client.inspect_container(id, Some(options))).await?;
        let driver = c.host_config.and_then(|h| h.log_config).and_then(|l| l.typ);
        Ok(match (driver.as_deref(), c.log_path, c.id) {
            (Some("json-file"), Some(path), _) if !path.is_empty() => Some((path.into(), LogFormat::JsonFile)),
            (Some("local"), _, Some(full_id)) => {
                let info = bounded(CALL_TIMEOUT, "info", self.client.info()).await?;
                info.docker_root_dir.filter(|d| !d.is_empty()).map(|root| {
                    let path = std::path::Path::new(&root).join("containers").join(full_id).join("local-logs");
                    (path.join("container.log"), LogFormat::Local)
                })
            }
            _ => None,
        })
    }

    /// Resolves once the container is not running (at once if it is not), or when the
    /// engine's answer fails: the caller inspects the container then, not trusting it.
    pub fn exited(&self, id: &str) -> impl std::future::Future<Output = ()> + Send + 'static {
        let options = WaitContainerOptions { condition: "not-running".into() };
        let mut wait = self.client.wait_container(id, Some(options));
        async move {
            // A non-zero exit code comes as an error: an exit all the same.
            let _ = wait.next().await;
        }
    }

    /// What a container printed, with Docker's timestamps, from `since_secs` (seconds
    /// since the epoch) on, following until the container stops. A TTY container's output
    /// comes as [`LogChunk::Console`] pieces that need not end on a line.
    pub fn logs(&self, id: &str, since_secs: i64) -> impl Stream<Item = Result<LogChunk>> + Send + 'static {
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            since: i32::try_from(since_secs).unwrap_or(i32::MAX),
            until: 0,
            timestamps: true,
            tail: "all".into(),
        };
        self.client.logs(id, Some(options)).filter_map(|item| async move {
            match item {
                Ok(LogOutput::StdOut { message }) => Some(Ok(LogChunk::Stdout(message))),
                Ok(LogOutput::StdErr { message }) => Some(Ok(LogChunk::Stderr(message))),
                Ok(LogOutput::Console { message }) => Some(Ok(LogChunk::Console(message))),
                Ok(LogOutput::StdIn { .. }) => None,
                Err(e) => Some(Err(DockerError::from_bollard(e))),
            }
        })
    }

    /// Container events since `since` (the engine replays what it still holds) and from
    /// then on, for containers carrying all these labels. The stream ends or fails when the
    /// connection to the engine does.
    pub fn events(
        &self,
        wanted: &[(&str, &str)],
        since: SystemTime,
    ) -> impl Stream<Item = Result<Event>> + Send + 'static {
        let mut filters = label_filters(wanted);
        filters.insert("type".into(), vec!["container".into()]);
        let since = since.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let options = EventsOptions {
            filters: Some(filters),
            since: Some(format!("{}.{:09}", since.as_secs(), since.subsec_nanos())),
            until: None,
        };
        self.client.events(Some(options)).map(|item| {
            let m = item.map_err(DockerError::from_bollard)?;
            Ok(Event { id: m.actor.and_then(|a| a.id).unwrap_or_default(), action: m.action.unwrap_or_default() })
        })
    }
}

/// A piece of a container's log output.
#[derive(Debug, Clone)]
pub enum LogChunk {
    /// One entry of stdout, `<time> <text>`.
    Stdout(bytes::Bytes),
    Stderr(bytes::Bytes),
    /// Raw output of a TTY container: entries, each `<time> <text>`, not cut on entries.
    Console(bytes::Bytes),
}

/// The Docker network that stands for an awsvpc subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetNetwork {
    pub name: String,
    pub subnet_id: String,
    pub cidr: Ipv4Cidr,
    pub gateway: Ipv4Addr,
}

/// A Docker network Berth made for a subnet, as found on the engine.
#[derive(Debug, Clone)]
pub struct ManagedNetwork {
    pub name: String,
    /// Its `berth.subnet-id` label.
    pub subnet_id: String,
    pub cidrs: Vec<Ipv4Cidr>,
    /// Endpoints the engine counts (running containers on it).
    pub endpoints: usize,
    /// The labels of the running containers attached to it.
    pub attached: Vec<HashMap<String, String>>,
}

/// Why the Docker network for a subnet cannot be used. The messages say what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetworkSetupError {
    /// A network of that name exists with settings other than the subnet's.
    #[error(
        "the Docker network {name} exists but does not stand for subnet {subnet_id} ({want}): it has {found}; \
         remove it (docker network rm {name}, once no container uses it) and Berth creates it anew"
    )]
    Mismatch { name: String, subnet_id: String, want: String, found: String },
    /// Another network's subnet overlaps this one's, so Docker cannot route both.
    #[error(
        "cannot create the Docker network {name} for {cidr}: it overlaps the Docker network {other} ({other_cidr}); \
         remove that network, or use a subnet whose CIDR block no Docker network on this host overlaps"
    )]
    Overlap { name: String, cidr: Ipv4Cidr, other: String, other_cidr: Ipv4Cidr },
    #[error("{0}")]
    Docker(DockerError),
}

/// Compares an existing network with the wanted one.
fn same_settings(want: &SubnetNetwork, n: &Network) -> std::result::Result<(), NetworkSetupError> {
    let driver = n.driver.clone().unwrap_or_default();
    let configs = n.ipam.as_ref().and_then(|i| i.config.clone()).unwrap_or_default();
    let subnet_label = n.labels.as_ref().and_then(|l| l.get(labels::SUBNET_ID)).cloned();
    let same_ipam = matches!(configs.as_slice(), [c]
        if c.subnet.as_deref().and_then(|s| Ipv4Cidr::parse(s).ok()) == Some(want.cidr)
            && c.gateway.as_deref().and_then(|g| g.parse::<Ipv4Addr>().ok()) == Some(want.gateway));
    if driver == "bridge" && same_ipam && subnet_label.as_deref() == Some(want.subnet_id.as_str()) {
        return Ok(());
    }
    let ipam: Vec<String> = configs
        .iter()
        .map(|c| format!("{} gateway {}", c.subnet.as_deref().unwrap_or("?"), c.gateway.as_deref().unwrap_or("none")))
        .collect();
    Err(NetworkSetupError::Mismatch {
        name: want.name.clone(),
        subnet_id: want.subnet_id.clone(),
        want: format!("bridge, {} gateway {}", want.cidr, want.gateway),
        found: format!(
            "driver {driver}, subnets [{}], label {}={}",
            ipam.join(", "),
            labels::SUBNET_ID,
            subnet_label.as_deref().unwrap_or("(none)")
        ),
    })
}

/// A network's IPv4 subnets (IPv6 ones and unparsable ones are skipped).
fn ipv4_subnets(n: &Network) -> Vec<Ipv4Cidr> {
    let configs = n.ipam.as_ref().and_then(|i| i.config.as_ref());
    configs.into_iter().flatten().filter_map(|c| c.subnet.as_deref().and_then(|s| Ipv4Cidr::parse(s).ok())).collect()
}

/// An awsvpc task's pause container.
#[derive(Debug, Clone)]
pub struct PauseSpec {
    pub image: String,
    /// The Docker network standing for the task's subnet.
    pub network: String,
    pub ipv4: Ipv4Addr,
    pub mac: String,
    pub labels: HashMap<String, String>,
}

/// The create request of a pause container: the fixed address and MAC address on the
/// subnet's network, no published ports, SIGKILL at once on stop (it has no handlers).
pub fn pause_body(spec: &PauseSpec, container_wide_mac: bool) -> ContainerCreateBody {
    let endpoint = EndpointSettings {
        ipam_config: Some(EndpointIpamConfig { ipv4_address: Some(spec.ipv4.to_string()), ..Default::default() }),
        mac_address: Some(spec.mac.clone()),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: Some(vec![PAUSE_PATH.to_string()]),
        labels: Some(spec.labels.clone()),
        mac_address: container_wide_mac.then(|| spec.mac.clone()),
        stop_timeout: Some(0),
        host_config: Some(HostConfig {
            network_mode: Some(spec.network.clone()),
            cpu_shares: Some(MIN_CPU_SHARES),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(spec.network.clone(), endpoint)])),
        }),
        ..Default::default()
    }
}

fn label_filters(wanted: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), wanted.iter().map(|(k, v)| format!("{k}={v}")).collect())])
}

/// `repo` → `repo:latest`; a reference with a tag or digest stays as it is. Without a tag,
/// the Engine's pull endpoint would fetch every tag of the repository.
fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// Docker's RFC 3339 timestamps; its zero time (year 1) means "never".
fn parse_time(s: &str) -> Option<SystemTime> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    if t.year() <= 1 {
        return None;
    }
    Some(SystemTime::from(t))
}

/// Everything about one container that comes from outside its definition.
#[derive(Debug, Clone)]
pub struct CreateSpec<'a> {
    /// The definition with the task's overrides already applied.
    pub def: &'a ContainerDefinition,
    pub network_mode: NetworkMode,
    /// For `awsvpc`: the id of the pause container whose network namespace it joins.
    pub network_container: Option<String>,
    pub labels: HashMap<String, String>,
    /// `source:containerPath[:ro]`, the source being a host path or a volume name.
    pub binds: Vec<String>,
    /// `dockerName:alias`.
    pub links: Vec<String>,
    /// `dockerName[:ro]`.
    pub volumes_from: Vec<String>,
    pub stop_timeout: Duration,
    /// Where Docker picks dynamic host ports (`ECS_DYNAMIC_HOST_PORT_RANGE`).
    pub dynamic_port_range: Option<(u16, u16)>,
    /// The log driver and its options, as Docker is to run them (`awslogs` is shipped by
    /// the agent from a local driver, see `awslogs::local_driver`).
    pub log_driver: Option<(String, HashMap<String, String>)>,
    /// Variables the agent adds to the definition's (the task endpoint's); they replace
    /// any of the definition's with the same name.
    pub extra_env: Vec<(String, String)>,
}

const MIB: i64 = 1024 * 1024;
/// The least CPU shares the kernel accepts; the ECS agent raises 0 and 1 to it.
const MIN_CPU_SHARES: i64 = 2;

/// The Docker create request for an ECS container, as the ECS agent builds it.
pub fn create_body(spec: &CreateSpec<'_>) -> ContainerCreateBody {
    let d = spec.def;
    let bridge = spec.network_mode == NetworkMode::Bridge;
    // An awsvpc container joins its pause container's network namespace; Docker refuses
    // ports, hostname, DNS settings and links for such a container (the container port is
    // the port on the task's address).
    let joined = spec.network_mode == NetworkMode::Awsvpc;
    let network_mode = match (joined, &spec.network_container) {
        (true, Some(id)) => format!("container:{id}"),
        _ => spec.network_mode.as_str().to_string(),
    };
    let mut exposed: HashMap<String, HashMap<(), ()>> = HashMap::new();
    let mut published: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    if !matches!(spec.network_mode, NetworkMode::None | NetworkMode::Awsvpc) {
        for pm in d.port_mappings.iter().flatten() {
            let proto = pm.protocol.unwrap_or(TransportProtocol::Tcp).as_str();
            let ports: Vec<i32> = match (pm.container_port, pm.container_port_range.as_deref()) {
                (Some(p), _) => vec![p],
                (None, Some(range)) => port_range(range),
                (None, None) => vec![],
            };
            for p in ports {
                let key = format!("{p}/{proto}");
                exposed.insert(key.clone(), HashMap::new());
                if bridge {
                    // No host port (or 0) lets Docker choose one: from the configured range
                    // (Docker accepts `start-end` and picks a free port in it), else from
                    // its ephemeral range.
                    let host = pm.host_port.filter(|h| *h > 0 && pm.container_port.is_some());
                    let dynamic = spec.dynamic_port_range.map(|(a, b)| format!("{a}-{b}")).unwrap_or_default();
                    let binding =
                        PortBinding { host_ip: None, host_port: Some(host.map_or(dynamic, |h| h.to_string())) };
                    published.insert(key, Some(vec![binding]));
                }
            }
        }
    }
    let lp = d.linux_parameters.as_ref();
    let memory = d.memory.map(|m| i64::from(m) * MIB);
    let memory_swap = lp.and_then(|l| l.max_swap).and_then(|swap| memory.map(|m| m + i64::from(swap) * MIB));
    let healthcheck = d.health_check.as_ref().map(|h| {
        let secs = |s: Option<i32>, default: i64| s.map(i64::from).unwrap_or(default) * 1_000_000_000;
        HealthConfig {
            test: h.command.clone(),
            interval: Some(secs(h.interval, 30)),
            timeout: Some(secs(h.timeout, 5)),
            retries: Some(h.retries.map(i64::from).unwrap_or(3)),
            start_period: Some(secs(h.start_period, 0)),
            start_interval: None,
        }
    });
    let host_config = HostConfig {
        network_mode: Some(network_mode),
        port_bindings: (!published.is_empty()).then_some(published),
        cpu_shares: Some(d.cpu.map(i64::from).unwrap_or(0).max(MIN_CPU_SHARES)),
        memory,
        memory_reservation: d.memory_reservation.map(|m| i64::from(m) * MIB),
        memory_swap,
        memory_swappiness: lp.and_then(|l| l.swappiness).map(i64::from),
        ulimits: d.ulimits.as_ref().map(|us| {
            us.iter()
                .map(|u| ResourcesUlimits {
                    name: u.name.map(|n| n.as_str().to_string()),
                    soft: u.soft_limit.map(i64::from),
                    hard: u.hard_limit.map(i64::from),
                })
                .collect()
        }),
        binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
        volumes_from: (!spec.volumes_from.is_empty()).then(|| spec.volumes_from.clone()),
        links: (!spec.links.is_empty() && !joined).then(|| spec.links.clone()),
        privileged: d.privileged,
        readonly_rootfs: d.readonly_root_filesystem,
        init: lp.and_then(|l| l.init_process_enabled),
        cap_add: lp.and_then(|l| l.capabilities.as_ref()).and_then(|c| c.add.clone()),
        cap_drop: lp.and_then(|l| l.capabilities.as_ref()).and_then(|c| c.drop.clone()),
        devices: lp.and_then(|l| l.devices.as_ref()).map(|ds| {
            ds.iter()
                .map(|dev| DeviceMapping {
                    path_on_host: dev.host_path.clone(),
                    path_in_container: dev.container_path.clone().or_else(|| dev.host_path.clone()),
                    cgroup_permissions: Some(match &dev.permissions {
                        Some(ps) => ps.iter().map(|p| &p.as_str()[..1]).collect(),
                        None => "rwm".into(),
                    }),
                })
                .collect()
        }),
        shm_size: lp.and_then(|l| l.shared_memory_size).map(|m| i64::from(m) * MIB),
        tmpfs: lp.and_then(|l| l.tmpfs.as_ref()).map(|ts| {
            ts.iter()
                .map(|t| {
                    let mut opts = vec![format!("size={}m", t.size.unwrap_or(0))];
                    opts.extend(t.mount_options.iter().flatten().cloned());
                    (t.container_path.clone().unwrap_or_default(), opts.join(","))
                })
                .collect()
        }),
        sysctls: d.system_controls.as_ref().filter(|s| !s.is_empty()).map(|s| {
            s.iter().map(|c| (c.namespace.clone().unwrap_or_default(), c.value.clone().unwrap_or_default())).collect()
        }),
        dns: d.dns_servers.clone().filter(|_| !joined),
        dns_search: d.dns_search_domains.clone().filter(|_| !joined),
        extra_hosts: d.extra_hosts.as_ref().filter(|_| !joined).map(|hs| {
            hs.iter()
                .map(|h| format!("{}:{}", h.hostname.as_deref().unwrap_or(""), h.ip_address.as_deref().unwrap_or("")))
                .collect()
        }),
        security_opt: d.docker_security_options.clone(),
        log_config: spec.log_driver.as_ref().map(|(driver, options)| HostConfigLogConfig {
            typ: Some(driver.clone()),
            config: (!options.is_empty()).then(|| options.clone()),
        }),
        ..Default::default()
    };
    ContainerCreateBody {
        image: d.image.clone(),
        entrypoint: d.entry_point.clone(),
        cmd: d.command.clone(),
        env: environment(d, &spec.extra_env),
        working_dir: d.working_directory.clone(),
        user: d.user.clone(),
        hostname: d.hostname.clone().filter(|_| !joined),
        labels: Some(spec.labels.clone()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck,
        stop_timeout: Some(spec.stop_timeout.as_secs() as i64),
        network_disabled: d.disable_networking,
        open_stdin: d.interactive,
        tty: d.pseudo_terminal,
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// The definition's variables, then the agent's, which win over the definition's of the
/// same name; `None` when there are none.
fn environment(d: &ContainerDefinition, extra: &[(String, String)]) -> Option<Vec<String>> {
    let taken = |name: &str| extra.iter().any(|(k, _)| k == name);
    let own = d.environment.iter().flatten().filter(|kv| !taken(kv.name.as_deref().unwrap_or("")));
    let env: Vec<String> = own
        .map(|kv| format!("{}={}", kv.name.as_deref().unwrap_or(""), kv.value.as_deref().unwrap_or("")))
        .chain(extra.iter().map(|(k, v)| format!("{k}={v}")))
        .collect();
    (d.environment.is_some() || !env.is_empty()).then_some(env)
}

/// `"8000-8002"` → `[8000, 8001, 8002]`; anything else → nothing.
pub fn port_range(range: &str) -> Vec<i32> {
    let Some((a, b)) = range.split_once('-') else {
        return range.trim().parse().map(|p| vec![p]).unwrap_or_default();
    };
    match (a.trim().parse::<i32>(), b.trim().parse::<i32>()) {
        (Ok(a), Ok(b)) if a <= b && b - a < 10_000 => (a..=b).collect(),
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ecs::shapes::{HealthCheck, KeyValuePair, PortMapping};

    fn spec(def: &ContainerDefinition, mode: NetworkMode) -> ContainerCreateBody {
        create_body(&CreateSpec {
            def,
            network_mode: mode,
            network_container: (mode == NetworkMode::Awsvpc).then(|| "pauseid".to_string()),
            labels: HashMap::new(),
            binds: vec![],
            links: vec![],
            volumes_from: vec![],
            stop_timeout: Duration::from_secs(30),
            dynamic_port_range: None,
            log_driver: None,
            extra_env: vec![],
        })
    }

    #[test]
    fn the_agents_variables_follow_the_definitions_and_replace_same_named_ones() {
        let kv = |k: &str, v: &str| KeyValuePair { name: Some(k.into()), value: Some(v.into()) };
        let def = ContainerDefinition {
            environment: Some(vec![kv("A", "1"), kv("ECS_CONTAINER_METADATA_URI_V4", "mine")]),
            ..Default::default()
        };
        let extra = vec![("ECS_CONTAINER_METADATA_URI_V4".to_string(), "http://169.254.170.2/v4/x".to_string())];
        assert_eq!(
            environment(&def, &extra),
            Some(vec!["A=1".to_string(), "ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/x".to_string()])
        );
        assert_eq!(environment(&ContainerDefinition::default(), &[]), None, "no Env at all without variables");
        assert_eq!(environment(&ContainerDefinition::default(), &extra).map(|e| e.len()), Some(1));
    }

    #[test]
    fn maps_ports_resources_and_health_check() {
        let def = ContainerDefinition {
            image: Some("img".into()),
            cpu: Some(0),
            memory: Some(8),
            memory_reservation: Some(4),
            environment: Some(vec![KeyValuePair { name: Some("A".into()), value: Some("1".into()) }]),
            port_mappings: Some(vec![
                PortMapping { container_port: Some(80), host_port: Some(0), ..Default::default() },
                PortMapping {
                    container_port: Some(53),
                    host_port: Some(5353),
                    protocol: Some(TransportProtocol::Udp),
                    ..Default::default()
                },
            ]),
            health_check: Some(HealthCheck {
                command: Some(vec!["CMD".into(), "/check".into()]),
                interval: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        };
        let body = spec(&def, NetworkMode::Bridge);
        let host = body.host_config.as_ref().unwrap();
        assert_eq!(host.cpu_shares, Some(2), "cpu 0 becomes the kernel's minimum of 2 shares");
        assert_eq!((host.memory, host.memory_reservation), (Some(8 * MIB), Some(4 * MIB)));
        let ports = host.port_bindings.as_ref().unwrap();
        assert_eq!(ports["80/tcp"].as_ref().unwrap()[0].host_port.as_deref(), Some(""));
        assert_eq!(ports["53/udp"].as_ref().unwrap()[0].host_port.as_deref(), Some("5353"));
        assert_eq!(body.env, Some(vec!["A=1".to_string()]));
        let hc = body.healthcheck.unwrap();
        assert_eq!((hc.interval, hc.timeout, hc.retries), (Some(1_000_000_000), Some(5_000_000_000), Some(3)));

        let host_mode = spec(&def, NetworkMode::Host);
        assert!(host_mode.host_config.unwrap().port_bindings.is_none());
        assert!(host_mode.exposed_ports.unwrap().contains_key("80/tcp"));
        assert!(spec(&def, NetworkMode::None).exposed_ports.is_none());

        let awsvpc = spec(&def, NetworkMode::Awsvpc);
        assert!(awsvpc.exposed_ports.is_none(), "the container port is the task address's port");
        let host = awsvpc.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("container:pauseid"));
        assert!(host.port_bindings.is_none());
    }

    #[test]
    fn pause_containers_hold_the_address_and_mac() {
        let spec = PauseSpec {
            image: "berth/pause:x".into(),
            network: "berth-subnet-1".into(),
            ipv4: Ipv4Addr::new(10, 213, 4, 7),
            mac: "0a:58:0a:d5:04:07".into(),
            labels: HashMap::from([("k".to_string(), "v".to_string())]),
        };
        let body = pause_body(&spec, false);
        let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
        let e = &endpoints["berth-subnet-1"];
        assert_eq!(e.ipam_config.as_ref().unwrap().ipv4_address.as_deref(), Some("10.213.4.7"));
        assert_eq!(e.mac_address.as_deref(), Some("0a:58:0a:d5:04:07"));
        assert_eq!(body.mac_address, None, "API 1.44 and later take the MAC address from the endpoint only");
        assert_eq!(pause_body(&spec, true).mac_address.as_deref(), Some("0a:58:0a:d5:04:07"));
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("berth-subnet-1"));
        assert!(host.port_bindings.is_none() && body.exposed_ports.is_none());
    }

    #[test]
    fn image_references_get_latest_only_without_tag_or_digest() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(with_default_tag("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(with_default_tag("localhost:5000/app:v1"), "localhost:5000/app:v1");
        assert_eq!(with_default_tag("app@sha256:abc"), "app@sha256:abc");
    }

    #[test]
    fn port_ranges() {
        assert_eq!(port_range("8000-8002"), vec![8000, 8001, 8002]);
        assert_eq!(port_range("9"), vec![9]);
        assert!(port_range("9-1").is_empty());
    }

    #[test]
    fn docker_zero_time_is_never() {
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        assert!(parse_time("2024-05-01T10:00:00.123456789Z").is_some());
    }
}
