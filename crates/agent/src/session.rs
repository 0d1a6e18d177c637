//! The agent's life: register the container instance, hold the channel to the control
//! plane open (reconnecting with backoff), keep one runner per task in line with the
//! desired state it receives, and send every state report back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use agent_protocol::{
    DesiredStatus, TaskAssignment, TaskCredentials, TaskReport, TaskStatus, ToAgent, ToServer, CONNECT_PATH,
    HEARTBEAT_SECONDS, INSTANCE_PARAM,
};

use crate::awslogs::Shipping;
use crate::config::AgentConfig;
use crate::docker::EngineHost;
use crate::endpoint::{Endpoint, EndpointConfig, HostFacts};
use crate::runner::{Runner, RunnerConfig};

/// The version this agent reports in `versionInfo`.
pub const AGENT_VERSION: &str = concat!("berth-", env!("CARGO_PKG_VERSION"));
/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often the agent pings the control plane over its channel (a WebSocket ping, which
/// the server's WebSocket answers by itself), and how long a silence ends the channel.
/// Far shorter than the protocol's heartbeats: a control plane that died with its host or
/// lost its network sends no FIN or RST, and only silence tells; the agent should be at
/// the next leader within seconds. The server's own view of the agent keeps the
/// heartbeats' pace, so a busy moment does not mark instances disconnected.
const PING_INTERVAL: Duration = Duration::from_secs(2);
const SILENCE_LIMIT: Duration = Duration::from_secs(6);

/// Capabilities this agent offers, named as the ECS agent names them, so that task
/// definitions needing them can be placed here.
const CAPABILITIES: &[&str] = &[
    // awslogs: shipped by the agent itself (see `awslogs`).
    "com.amazonaws.ecs.capability.logging-driver.awslogs",
    "com.amazonaws.ecs.capability.logging-driver.json-file",
    "com.amazonaws.ecs.capability.logging-driver.none",
    "com.amazonaws.ecs.capability.task-iam-role",
    "ecs.capability.container-health-check",
    "ecs.capability.container-ordering",
    "ecs.capability.docker-plugin.local",
    // The execution role's uses (see `endpoint::execution`, `secrets`).
    "ecs.capability.execution-role-awslogs",
    "ecs.capability.execution-role-ecr-pull",
    "ecs.capability.private-registry-authentication.secretsmanager",
    "ecs.capability.secrets.asm.environment-variables",
    "ecs.capability.secrets.ssm.environment-variables",
    // awsvpc: a pause container per task holds its interface (see `pause`, `awsvpc`).
    "ecs.capability.task-eni",
];

/// One task the agent is running: where to send its desired state.
struct Running {
    desired: watch::Sender<TaskAssignment>,
    handle: tokio::task::JoinHandle<()>,
}

/// The state file in `ECS_DATADIR`: which instance this host registered as.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    container_instance_arn: Option<String>,
    instance_id: Option<String>,
    /// The task endpoint's port: the ids in running containers' environment name it, so
    /// a restarted agent takes the same one again.
    #[serde(default)]
    endpoint_port: Option<u16>,
}

fn load_saved(config: &AgentConfig) -> Saved {
    std::fs::read(config.data_dir.join("agent.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save(config: &AgentConfig, saved: &Saved) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating ECS_DATADIR {}", config.data_dir.display()))?;
    let tmp = config.data_dir.join("agent.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(saved)?)?;
    std::fs::rename(&tmp, config.data_dir.join("agent.json"))?;
    Ok(())
}

fn random_hex(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..n).map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0')).collect()
}

/// Runs the agent until `shutdown`. Running containers are left running on shutdown: a
/// restarted agent adopts them.
pub async fn run(mut config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    for k in &config.unknown {
        tracing::warn!(setting = %k, "unknown ECS agent setting; it is ignored");
    }
    // The registry goes by each replica's name; every client of the agent reaches the
    // control plane through one address (a forwarder to the replicas when there are
    // several: see `backends`).
    let registry_hosts = crate::backends::names(&config.backend);
    if config.backend.contains(',') {
        let replicas = crate::backends::parse(&config.backend)?;
        let addr = crate::backends::forward(replicas, shutdown.clone()).await?;
        config.backend = format!("http://{addr}");
    }
    let mut saved = load_saved(&config);
    let instance_id =
        config.instance_id.clone().or(saved.instance_id.clone()).unwrap_or_else(|| format!("i-{}", random_hex(17)));
    let identity = agent_identity(&config, &instance_id).await?;
    let endpoint = start_endpoint(&config, saved.endpoint_port, &shutdown).await?;
    saved.endpoint_port = Some(endpoint.port());
    // The instance ARN is only known after registration, which needs the engine's
    // resources; the runner learns it before it runs anything.
    let mut runner = Runner::connect(RunnerConfig {
        instance_arn: String::new(),
        pull_behavior: config.pull_behavior,
        stop_timeout: config.stop_timeout,
        start_timeout: config.start_timeout,
        dynamic_port_range: config.dynamic_port_range,
        registry_login: Some(Arc::new(registry_login(&config, registry_hosts, &identity).await)),
        awslogs: Some(Arc::new(Shipping::new(
            sdk_config(&config, identity.clone()).await,
            &config.data_dir,
            config.awslogs_cache.clone(),
            config.awslogs_reader,
        ))),
        endpoint: Some(endpoint.clone()),
        secrets: Some(Arc::new(crate::secrets::Fetcher::new(sdk_config(&config, identity.clone()).await))),
    })
    .await
    .context("connecting to the Docker engine")?;
    let host = runner.engine_host().await.context("reading the Docker engine's resources")?;
    let ecs = aws_sdk_ecs::Client::new(&sdk_config(&config, identity.clone()).await);
    let arn = register(&ecs, &config, &instance_id, saved.container_instance_arn.clone(), &host).await?;
    saved.container_instance_arn = Some(arn.clone());
    saved.instance_id = Some(instance_id);
    save(&config, &saved)?;
    tracing::info!(container_instance = %arn, cluster = %config.cluster, "registered");

    runner.set_instance(arn.clone());
    let runner = Arc::new(runner);
    let mut session = Session {
        config: &config,
        identity,
        arn,
        runner,
        endpoint,
        tasks: HashMap::new(),
        last_reports: HashMap::new(),
    };
    session.serve(shutdown).await
}

/// Starts the task endpoint (see `endpoint`): an agent that is Fargate capacity tells its
/// tasks their launch type is FARGATE.
async fn start_endpoint(
    config: &AgentConfig,
    port: Option<u16>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<Endpoint>> {
    let fargate = config.cluster == model::ids::ClusterName::FARGATE_POOL;
    let host = HostFacts {
        availability_zone: config.availability_zone.clone(),
        launch_type: if fargate { "FARGATE" } else { "EC2" }.to_string(),
    };
    let endpoint_config = EndpointConfig { port, ..EndpointConfig::new(host) };
    Endpoint::start(endpoint_config, shutdown.clone()).await.context("starting the task endpoint")
}

/// Credentials for Berth's registry, which answers on the control plane's own addresses
/// (`hosts`, as ECS_BACKEND_HOST names them).
async fn registry_login(
    config: &AgentConfig,
    hosts: Vec<String>,
    identity: &SharedCredentialsProvider,
) -> crate::registry_login::RegistryLogin {
    let ecr = aws_sdk_ecr::Client::new(&sdk_config(config, identity.clone()).await);
    crate::registry_login::RegistryLogin::new(hosts, ecr)
}

/// The agent's own identity: the keys it was given, or, with `ECS_INSTANCE_IAM_ROLE`,
/// sessions of that role assumed with them (session name: the instance id, as EC2 names
/// an instance profile's sessions) and renewed before they expire. Assumed once here, so
/// that a role the keys may not assume stops the agent with the reason at start.
async fn agent_identity(config: &AgentConfig, instance_id: &str) -> anyhow::Result<SharedCredentialsProvider> {
    let keys = aws_credential_types::Credentials::new(
        &config.access_key_id,
        config.secret_access_key.0.as_str(),
        None,
        None,
        "berth-agent",
    );
    let Some(role) = &config.instance_role else { return Ok(SharedCredentialsProvider::new(keys)) };
    let base = sdk_config(config, SharedCredentialsProvider::new(keys)).await;
    let provider =
        aws_config::sts::AssumeRoleProvider::builder(role).session_name(instance_id).configure(&base).build().await;
    let provider = SharedCredentialsProvider::new(provider);
    provider.provide_credentials().await.map_err(|e| {
        anyhow::anyhow!(
            "assuming the instance role {role} (ECS_INSTANCE_IAM_ROLE) with the agent's access key {}: {}",
            config.access_key_id,
            aws_sdk_ecs::error::DisplayErrorContext(&e)
        )
    })?;
    tracing::info!(role = %role, "acting as the instance role");
    Ok(provider)
}

async fn sdk_config(config: &AgentConfig, identity: SharedCredentialsProvider) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&config.backend)
        .region(aws_config::Region::new(config.region.clone()))
        .credentials_provider(identity)
        .load()
        .await
}

/// ECS's name for the engine host's architecture (`docker info` says `x86_64` or
/// `aarch64`; ECS says `x86_64` or `arm64`). An engine that does not say is taken to run
/// where the agent runs.
fn cpu_architecture(engine: &str) -> String {
    let arch = if engine.is_empty() { std::env::consts::ARCH } else { engine };
    match arch {
        "aarch64" => "arm64".to_string(),
        other => other.to_string(),
    }
}

/// `versionInfo.dockerVersion` as the ECS agent reports it: `DockerVersion: 27.5.1`.
fn docker_version(engine: &str) -> String {
    format!("DockerVersion: {engine}")
}

async fn register(
    ecs: &aws_sdk_ecs::Client,
    config: &AgentConfig,
    instance_id: &str,
    previous: Option<String>,
    host: &EngineHost,
) -> anyhow::Result<String> {
    use aws_sdk_ecs::types::{Attribute, Resource, VersionInfo};
    // CPU units are cores × 1024 and memory is in MiB, as the ECS agent registers them.
    let (cpu, memory) = (host.cpus * 1024, host.memory_bytes / (1024 * 1024));
    let int = |name: &str, v: i64| Resource::builder().name(name).r#type("INTEGER").integer_value(v as i32).build();
    let ports = |name: &str, p: &[u16]| {
        Resource::builder()
            .name(name)
            .r#type("STRINGSET")
            .set_string_set_value(Some(p.iter().map(u16::to_string).collect()))
            .build()
    };
    let arch = cpu_architecture(&host.architecture);
    let mut attributes = vec![
        Attribute::builder().name("ecs.os-type").value("linux").build()?,
        Attribute::builder().name("ecs.os-family").value("LINUX").build()?,
        Attribute::builder().name("ecs.cpu-architecture").value(arch).build()?,
        Attribute::builder().name("ecs.availability-zone").value(&config.availability_zone).build()?,
        Attribute::builder().name("ecs.instance-type").value(&config.instance_type).build()?,
    ];
    for cap in CAPABILITIES {
        attributes.push(Attribute::builder().name(*cap).build()?);
    }
    // The Docker remote API versions this engine speaks, as the ECS agent advertises them.
    for minor in 17..=41 {
        attributes.push(
            Attribute::builder().name(format!("com.amazonaws.ecs.capability.docker-remote-api.1.{minor}")).build()?,
        );
    }
    for (k, v) in &config.instance_attributes {
        attributes.push(Attribute::builder().name(k).value(v).build()?);
    }
    let identity = serde_json::json!({
        "instanceId": instance_id,
        "availabilityZone": config.availability_zone,
        "instanceType": config.instance_type,
        "region": config.region,
    });
    let mut backoff = Duration::from_millis(200);
    loop {
        let result = ecs
            .register_container_instance()
            .cluster(&config.cluster)
            .instance_identity_document(identity.to_string())
            .set_container_instance_arn(previous.clone())
            .total_resources(int("CPU", cpu))
            .total_resources(int("MEMORY", (memory - config.reserved_memory_mib).max(0)))
            .total_resources(ports("PORTS", &config.reserved_ports_tcp))
            .total_resources(ports("PORTS_UDP", &config.reserved_ports_udp))
            .version_info(
                VersionInfo::builder()
                    .agent_version(AGENT_VERSION)
                    .agent_hash(env!("CARGO_PKG_VERSION"))
                    .docker_version(docker_version(&host.version))
                    .build(),
            )
            .set_attributes(Some(attributes.clone()))
            .send()
            .await;
        match result {
            Ok(r) => {
                return r
                    .container_instance()
                    .and_then(|i| i.container_instance_arn())
                    .map(str::to_string)
                    .context("RegisterContainerInstance returned no ARN")
            }
            Err(e) => {
                let text = aws_sdk_ecs::error::DisplayErrorContext(&e).to_string();
                // Errors the server names are the user's to fix; retrying will not help.
                if matches!(&e, aws_sdk_ecs::error::SdkError::ServiceError(_)) {
                    anyhow::bail!("RegisterContainerInstance failed: {text}");
                }
                tracing::warn!(error = %text, "cannot reach the control plane yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

struct Session<'a> {
    config: &'a AgentConfig,
    /// The agent's own identity (see [`agent_identity`]); the channel is signed with it.
    identity: SharedCredentialsProvider,
    arn: String,
    runner: Arc<Runner>,
    endpoint: Arc<Endpoint>,
    tasks: HashMap<String, Running>,
    /// The newest report of each task, resent after a reconnect so that nothing reported
    /// while disconnected is lost.
    last_reports: HashMap<String, TaskReport>,
}

impl Session<'_> {
    async fn serve(&mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let (report_tx, mut report_rx) = mpsc::unbounded_channel::<TaskReport>();
        let mut backoff = Duration::from_millis(100);
        loop {
            let conn = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                c = self.connect() => c,
            };
            let mut ws = match conn {
                Ok(ws) => {
                    backoff = Duration::from_millis(100);
                    tracing::info!("channel to the control plane open");
                    ws
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in = ?backoff, "cannot open the channel to the control plane");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            for report in self.last_reports.values() {
                let text = serde_json::to_string(&ToServer::TaskState(report.clone()))?;
                if ws.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            let mut heartbeat = tokio::time::interval(Duration::from_secs(HEARTBEAT_SECONDS));
            let mut ping = tokio::time::interval(PING_INTERVAL);
            let mut last_heard = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        let _ = ws.close(None).await;
                        return Ok(());
                    }
                    report = report_rx.recv() => {
                        let Some(report) = report else { continue };
                        let text = serde_json::to_string(&ToServer::TaskState(report.clone()))?;
                        self.remember(report);
                        if ws.send(Message::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                    frame = ws.next() => {
                        let Some(Ok(frame)) = frame else { break };
                        last_heard = tokio::time::Instant::now();
                        let Message::Text(text) = frame else { continue };
                        match serde_json::from_str::<ToAgent>(&text) {
                            Ok(ToAgent::Tasks { seq, full, tasks }) => {
                                self.reconcile(tasks, full, &report_tx);
                                let ack = serde_json::to_string(&ToServer::Ack { seq })?;
                                if ws.send(Message::Text(ack.into())).await.is_err() {
                                    break;
                                }
                            }
                            Ok(ToAgent::Credentials { credentials }) => self.take_credentials(credentials),
                            Ok(ToAgent::Heartbeat) => {}
                            Err(e) => tracing::warn!(error = %e, "unreadable message from the control plane"),
                        }
                    }
                    _ = ping.tick() => {
                        if last_heard.elapsed() > SILENCE_LIMIT {
                            tracing::warn!(silent_for = ?last_heard.elapsed(), "the control plane does not answer; reconnecting");
                            break;
                        }
                        if ws.send(Message::Ping(Default::default())).await.is_err() {
                            break;
                        }
                    }
                    _ = heartbeat.tick() => {
                        let text = serde_json::to_string(&ToServer::Heartbeat)?;
                        if ws.send(Message::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                }
            }
            tracing::warn!("channel to the control plane closed; reconnecting");
        }
    }

    /// Stores tasks' role credentials for the task endpoint, except those of tasks that
    /// have already stopped here (they would never be dropped).
    fn take_credentials(&mut self, credentials: Vec<TaskCredentials>) {
        let stopped = |arn: &str| {
            !self.tasks.contains_key(arn)
                && self.last_reports.get(arn).is_some_and(|r| r.last_status == TaskStatus::Stopped)
        };
        let wanted: Vec<TaskCredentials> = credentials.into_iter().filter(|c| !stopped(&c.task_arn)).collect();
        for c in &wanted {
            tracing::debug!(task = %c.task_arn, role = ?c.role, role_arn = %c.role_arn, expiration = c.expiration, "role credentials received");
        }
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        self.endpoint.credentials().put(wanted, now);
    }

    fn remember(&mut self, report: TaskReport) {
        self.last_reports.insert(report.task_arn.clone(), report);
        // Forget what the control plane already has for good: stopped tasks whose runner
        // is done. Keeping the newest few hundred bounds the memory of a long-lived agent.
        if self.last_reports.len() > 512 {
            let done: Vec<String> = self
                .last_reports
                .iter()
                .filter(|(arn, r)| r.last_status == TaskStatus::Stopped && !self.tasks.contains_key(*arn))
                .map(|(arn, _)| arn.clone())
                .collect();
            for arn in done {
                self.last_reports.remove(&arn);
            }
        }
    }

    /// Brings the running set in line with the desired state received.
    fn reconcile(&mut self, assignments: Vec<TaskAssignment>, full: bool, reports: &mpsc::UnboundedSender<TaskReport>) {
        self.tasks.retain(|_, r| !r.handle.is_finished());
        if full {
            // Tasks the control plane no longer lists must not keep running.
            let listed: Vec<&str> = assignments.iter().map(|a| a.task_arn.as_str()).collect();
            for (arn, r) in &self.tasks {
                if !listed.contains(&arn.as_str()) {
                    let mut stop = r.desired.borrow().clone();
                    stop.desired_status = DesiredStatus::Stopped;
                    stop.stop_reason.get_or_insert_with(|| "Task is no longer known to the control plane".into());
                    let _ = r.desired.send(stop);
                }
            }
        }
        for a in assignments {
            match self.tasks.get(&a.task_arn) {
                Some(r) => {
                    let _ = r.desired.send(a);
                }
                None => {
                    // A task that is already stopped and not running here needs nothing.
                    if a.desired_status == DesiredStatus::Stopped
                        && self.last_reports.get(&a.task_arn).is_some_and(|r| r.last_status == TaskStatus::Stopped)
                    {
                        continue;
                    }
                    let arn = a.task_arn.clone();
                    let (tx, rx) = watch::channel(a);
                    let runner = self.runner.clone();
                    let reports = reports.clone();
                    let handle = tokio::spawn(async move { runner.run_task(rx, reports).await });
                    self.tasks.insert(arn, Running { desired: tx, handle });
                }
            }
        }
    }

    /// Opens the WebSocket, signed with SigV4 like an API call.
    async fn connect(
        &self,
    ) -> anyhow::Result<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>>
    {
        let query = format!(
            "{INSTANCE_PARAM}={}",
            percent_encoding::utf8_percent_encode(&self.arn, percent_encoding::NON_ALPHANUMERIC)
        );
        let http_url = format!("{}{CONNECT_PATH}?{query}", self.config.backend);
        let ws_url = http_url.replacen("http", "ws", 1);
        let credentials = self.identity.provide_credentials().await.context("the agent's credentials")?;
        let signed = sign_get(&http_url, credentials, &self.config.region)?;
        let mut request = ws_url.as_str().into_client_request()?;
        for (k, v) in signed {
            request.headers_mut().insert(http::HeaderName::from_bytes(k.as_bytes())?, http::HeaderValue::from_str(&v)?);
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await.map_err(|e| match e {
            // The control plane says why it refused (an AWS error body): show that.
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                anyhow::anyhow!("opening the agent channel: refused with {}: {body}", response.status())
            }
            e => anyhow::Error::new(e).context("opening the agent channel"),
        })?;
        Ok(ws)
    }
}

/// SigV4 headers for a GET of `url` (service `ecs`), with the session token if the
/// credentials are a session's.
fn sign_get(
    url: &str,
    credentials: aws_credential_types::Credentials,
    region: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    let identity: aws_smithy_runtime_api::client::identity::Identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("ecs")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()?
        .into();
    let request = SignableRequest::new("GET", url, std::iter::empty(), SignableBody::Bytes(b""))?;
    let (instructions, _) = sign(request, &params)?.into_parts();
    let (headers, _) = instructions.into_parts();
    Ok(headers.into_iter().map(|h| (h.name().to_string(), h.value().to_string())).collect())
}

#[cfg(test)]
mod host_tests {
    use super::*;

    #[test]
    fn the_engine_host_is_named_as_ecs_names_it() {
        assert_eq!(cpu_architecture("aarch64"), "arm64");
        assert_eq!(cpu_architecture("x86_64"), "x86_64");
        assert_eq!(docker_version("27.5.1"), "DockerVersion: 27.5.1");
    }
}
