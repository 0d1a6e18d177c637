//! The task endpoint: what containers reach at `169.254.170.2`, as on ECS: their task
//! role's credentials (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`) and their task's
//! metadata and stats (`ECS_CONTAINER_METADATA_URI_V4`, `ECS_CONTAINER_METADATA_URI`).
//!
//! How a request gets here. Each agent serves its own tasks on an ephemeral port on
//! loopback (kept across restarts in `ECS_DATADIR`, since the ids its containers hold name
//! it); only the shared port's holder connects to it, so it need not face any network. The NAT rules (`nat`) send `169.254.170.2:80` to the host's shared port, 51679,
//! which one agent on the host holds; it answers for its own tasks and forwards the rest
//! to the agent named in the id (`forward`). So bridge, host and awsvpc containers alike
//! reach their agent, however many agents share the host.
//!
//! Who may read what. Every container gets an id of its own for metadata, and every task
//! with a task role one for credentials (`ids`: 128 random bits): an id opens only its
//! own task. The runner registers ids and publishes snapshots of its tasks (`tasks`); the
//! session stores the credentials the control plane sends (`credentials`). Execution
//! role credentials are kept for the agent's own use ([`Endpoint::execution_role`]) and
//! are never served.
//!
//! Layering: `ids`, `env`, `metadata` and `credentials`' bodies are pure; `server` and
//! `forward` are the HTTP edge; `stats` reads Docker through `docker`; `nat` runs
//! iptables.

pub mod credentials;
pub mod env;
pub mod execution;
pub mod forward;
pub mod ids;
pub mod metadata;
pub mod nat;
pub mod server;
pub mod stats;
pub mod tasks;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use agent_protocol::{RoleType, TaskCredentials};
use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::docker::Docker;
pub use credentials::CredentialsStore;
pub use ids::EndpointId;
pub use metadata::HostFacts;
pub use tasks::Tasks;

/// The ECS agent's port for the task endpoint, which the NAT rules point at.
pub const SHARED_PORT: u16 = 51679;

/// How an endpoint starts.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The port to serve this agent's tasks on (loopback), if still free: the one a
    /// previous run used. Otherwise any free port.
    pub port: Option<u16>,
    /// The host's shared port to hold when free; `None` for none.
    pub shared_port: Option<u16>,
    /// Whether to install the NAT rules that send `169.254.170.2:80` to `shared_port`
    /// (only agents holding the real shared port should: tests of forwarding do not).
    pub nat: bool,
    pub host: HostFacts,
}

impl EndpointConfig {
    pub fn new(host: HostFacts) -> EndpointConfig {
        EndpointConfig { port: None, shared_port: Some(SHARED_PORT), nat: true, host }
    }
}

/// One agent's task endpoint: its tasks' ids and snapshots, their credentials, and the
/// servers answering from them. Shared by the session, the runner and the servers.
pub struct Endpoint {
    port: u16,
    tasks: Tasks,
    credentials: CredentialsStore,
    host: HostFacts,
    docker: Docker,
    rates: stats::Rates,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("port", &self.port).finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Starts serving until `shutdown`: this agent's port at once, the shared port
    /// whenever it is free; installs the NAT rules first (a failure is logged, not fatal).
    pub async fn start(config: EndpointConfig, shutdown: CancellationToken) -> anyhow::Result<Arc<Endpoint>> {
        let listener = match config.port {
            Some(p) => match bind_loopback(p).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(port = p, error = %e, "the task endpoint's previous port is taken; the ids of containers started before cannot be served");
                    bind_loopback(0).await?
                }
            },
            None => bind_loopback(0).await?,
        };
        let port = listener.local_addr()?.port();
        let docker = Docker::connect().await.context("connecting to the Docker engine for task stats")?;
        let endpoint = Arc::new(Endpoint {
            port,
            tasks: Tasks::default(),
            credentials: CredentialsStore::default(),
            host: config.host,
            docker,
            rates: stats::Rates::default(),
        });
        tracing::info!(port, "task endpoint listening on loopback");
        tokio::spawn(server::serve(listener, server::router(endpoint.clone()), shutdown.clone()));
        if let Some(shared) = config.shared_port {
            if config.nat {
                nat::install_or_warn(shared).await;
            }
            tokio::spawn(forward::hold_shared_port(endpoint.clone(), shared, shutdown));
        }
        Ok(endpoint)
    }

    /// The port this agent's own endpoint listens on (loopback); every id it hands out
    /// names it.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A fresh id of this agent.
    pub fn new_id(&self) -> EndpointId {
        EndpointId::random(self.port)
    }

    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    pub fn credentials(&self) -> &CredentialsStore {
        &self.credentials
    }

    /// The newest execution role credentials of a task, for the agent's own calls made
    /// for it (ECR pulls, awslogs, secrets). Never served to containers.
    pub fn execution_role(&self, task_arn: &str) -> Option<TaskCredentials> {
        self.credentials.get(task_arn, RoleType::ExecutionRole)
    }

    /// Forgets a task that has stopped: its ids open nothing any more and its
    /// credentials are dropped.
    pub fn forget_task(&self, task_arn: &str) {
        self.tasks.forget(task_arn);
        self.credentials.forget_task(task_arn);
    }
}

async fn bind_loopback(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await
}
