//! Serving: bind, admit connections within their bounds (`admission`), serve each under
//! its deadlines (`conn`, `body`), route, and shut down gracefully. On PostgreSQL, a
//! replica binds first and, while another leads, passes its connections to the leader
//! (`standby`); it serves them itself from the moment it leads.
//!
//! Shutdown, on SIGTERM or SIGINT: the token is cancelled, the listener stops accepting,
//! open connections finish their requests (for at most [`DRAIN_TIMEOUT`]), and then the
//! process waits (for at most [`TASKS_TIMEOUT`]) for every task it spawned, all of which go
//! through one [`Tracker`] and end when they see the token cancelled.

mod admission;
mod body;
mod conn;
pub(crate) mod follower;
mod standby;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use control_plane::ControlPlane;

use crate::cli::ServerArgs;
use crate::datadir::DataDir;
use crate::tracker::Tracker;
use admission::{Admission, Admitted, Lane};

/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the spawned tasks may take to end after the connections have drained (they
/// see the shutdown at the same moment as the listener, so most have ended by then).
pub const TASKS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to complete a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(args: ServerArgs, with_agent: bool) -> anyhow::Result<()> {
    let claim = DataDir::claim(&args.data.data_dir)?;
    let listener = listen(args.listen).with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let tls = match (&args.tls.tls_cert, &args.tls.tls_key) {
        (Some(cert), Some(key)) => Some(load_tls(cert, key)?),
        _ => None,
    };
    let public = aws_api::PublicAddress { tls: tls.is_some(), advertise_host: args.advertise_host.clone() };
    let dir = Arc::new(match &args.data.store {
        None => claim.open_sqlite()?,
        Some(store) => {
            // While another replica leads, this one follows it (or, serving TLS, passes
            // its connections to it).
            let own = standby::endpoint(args.advertise_host.as_deref(), addr);
            let standby = standby::Standby::new(store.clone(), own.clone(), addr, args.connections.max_connections);
            let retire = CancellationToken::new();
            let dir = if tls.is_some() {
                tokio::select! {
                    dir = claim.lead(store, &own) => dir?,
                    never = standby.clone().serve(&listener) => match never {},
                }
            } else {
                let setup = follower::Setup {
                    store: store.clone(),
                    config: control_config(&args)?,
                    public: public.clone(),
                    standby: standby.clone(),
                };
                tokio::select! {
                    dir = claim.lead(store, &own) => dir?,
                    never = follower::run(setup, &listener, &args.connections, retire.clone()) => match never {},
                }
            };
            // From here on only this server accepts on the listener; the follower's
            // connections close after their requests.
            retire.cancel();
            standby.lead();
            dir
        }
    });
    let created = dir.credentials()?.bootstrap()?;
    let config = control_plane::Config { logs_dir: Some(args.data.data_dir.join("logs")), ..control_config(&args)? };
    let control = Arc::new(ControlPlane::open_with(dir.store(), config)?);
    // Before the endpoint is published: a blob store that cannot be used stops the start.
    let registry_dir = args.data.data_dir.join("registry");
    let blobs = match &args.blobs {
        None => registry::BlobStore::open(&registry_dir).context("opening the registry's blobs")?,
        Some(location) => registry::BlobStore::open_s3(location.clone(), registry_dir.join("spool"))
            .await
            .with_context(|| format!("opening the registry's blobs at {location}"))?,
    };
    if with_agent && !args.no_agent {
        prepare_subnet_networks(&dir, args.vpc_cidr).await?;
    }

    let url = format!("{}://{addr}", public.scheme());
    // The CA bundle is recorded before the endpoint, so that whoever sees an https
    // endpoint (`berth env`) also finds what to trust it with.
    let ca = args.tls.tls_ca.as_ref().or(args.tls.tls_cert.as_ref()).filter(|_| tls.is_some());
    let ca = ca.map(std::path::absolute).transpose().context("resolving the CA bundle's path")?;
    dir.write_ca_bundle(ca.as_deref())?;
    dir.write_endpoint(&url)?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "listening on a non-loopback address: the API is reachable from the network");
    }
    if let Some((account, key)) = created {
        eprintln!(
            "Created account {} with access key {}.\nPoint the aws CLI at Berth with:  eval \"$(berth env --data-dir {})\"",
            account.id,
            key.id,
            args.data.data_dir.display()
        );
    }

    let registry = aws_api::ecr::registry::open(
        control.clone(),
        &registry_dir,
        blobs,
        addr.to_string(),
        public.clone(),
        crate::vulndb::dir(&args.data.data_dir),
    )
    .await?;
    let api = aws_api::Api { control: control.clone(), registry: Some(registry.clone()), public: public.clone() };
    let mut app = Router::new().route("/_berth/health", get(health)).merge(aws_api::router(api.clone()));
    if args.data.store.is_some() {
        // Only replicas on PostgreSQL have followers; SQLite's requests skip the layer.
        app = app.layer(axum::middleware::from_fn_with_state(dir.store(), stamp_position));
    }
    let app = app.layer(axum::middleware::map_request(host_from_authority));

    let shutdown = CancellationToken::new();
    let tasks = Tracker::default();
    tasks.spawn("signal handler", signal_shutdown(shutdown.clone()));
    // On PostgreSQL, a replica that another has replaced as leader stops (its commits are
    // refused from then on) and says so in its exit status.
    {
        let (dir, shutdown) = (dir.clone(), shutdown.clone());
        tasks.spawn("leadership", async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = dir.leadership_lost() => shutdown.cancel(),
            }
        });
    }
    match &args.data.store {
        Some(store) => tracing::info!(%url, data_dir = %args.data.data_dir.display(), %store, "berth is serving"),
        None => tracing::info!(%url, data_dir = %args.data.data_dir.display(), "berth is serving"),
    }
    // The load balancers serve what the store holds before the API answers: after a
    // restart, traffic flows again as soon as the process is back.
    start_load_balancers(&control, &args, &tasks, shutdown.clone()).await;
    // The service controller keeps every service at its desired state until shutdown.
    tasks.spawn("service controller", control.clone().run_service_controller(shutdown.clone().cancelled_owned()));
    // Stopped tasks are forgotten after the retention, as ECS does, until shutdown.
    let reaper = control.clone().run_task_reaper(args.stopped_task_retention, shutdown.clone().cancelled_owned());
    tasks.spawn("task reaper", reaper);
    // Tasks' role credentials are renewed before they expire, until shutdown.
    let roles =
        control.clone().run_role_refresh(std::time::Duration::from_secs(60), shutdown.clone().cancelled_owned());
    tasks.spawn("task role credentials", roles);
    // Lifecycle policies are enforced at start and then every interval, until shutdown.
    let lifecycle = control_plane::ecr::registry::enforcement::run_schedule(
        control.clone(),
        registry.clone(),
        args.lifecycle_interval,
        shutdown.clone().cancelled_owned(),
    );
    tasks.spawn("ECR lifecycle schedule", lifecycle);
    let gc = control_plane::ecr::registry::gc::run_schedule(
        registry,
        args.registry_gc_interval,
        shutdown.clone().cancelled_owned(),
    );
    tasks.spawn("registry garbage collection", gc);
    let expiry = control_plane::logs::run_expiry(
        control.clone(),
        control_plane::logs::EXPIRY_INTERVAL,
        shutdown.clone().cancelled_owned(),
    );
    tasks.spawn("log retention", expiry);
    // Secrets past their recovery window are removed, until shutdown.
    let purge = control_plane::secrets::run_purge(
        control.clone(),
        control_plane::secrets::PURGE_INTERVAL,
        shutdown.clone().cancelled_owned(),
    );
    tasks.spawn("secret deletion", purge);
    // EventBridge's schedule rules fire and start their ECS targets' tasks, until shutdown.
    let rules = control_plane::events::run_schedule(
        control.clone(),
        control_plane::events::FIRING_INTERVAL,
        shutdown.clone().cancelled_owned(),
    );
    tasks.spawn("EventBridge schedules", rules);
    if with_agent && !args.no_agent {
        if public.tls {
            // The agent's channel is a plain WebSocket client; it cannot reach a TLS
            // listener yet.
            tracing::warn!("the local agent does not run with --tls-cert yet; this host runs no tasks (start `berth agent` hosts against a plain-HTTP Berth)");
        } else {
            // With an advertised host the agent goes by that name too, so the images it
            // pulls (named after it) get the registry credentials it fetches.
            let agent_url = match &public.advertise_host {
                Some(host) => format!("http://{host}"),
                None => url.clone(),
            };
            for kind in [LocalAgent::Instance, LocalAgent::Fargate] {
                spawn_local_agent(&dir, &agent_url, &args.data.data_dir, kind, &tasks, shutdown.clone())?;
            }
        }
    }
    let connections = serve(&listener, tls, app, &args.connections, shutdown).await;
    drop(listener);
    if !connections.wait(DRAIN_TIMEOUT).await {
        tracing::warn!("connections still open after the drain timeout; closing them");
    }
    tasks.wait(TASKS_TIMEOUT).await;
    if dir.deposed() {
        anyhow::bail!("another replica leads the database now; this one stopped (start it again to stand by)");
    }
    tracing::info!("berth stopped");
    Ok(())
}

/// The control plane's settings from the server's flags (CloudWatch Logs' events are
/// added by the leader, which alone keeps them).
fn control_config(args: &ServerArgs) -> anyhow::Result<control_plane::Config> {
    Ok(control_plane::Config {
        agent_timeout: args.agent_timeout,
        lost_instance_grace: args.lost_instance_grace,
        logs_dir: None,
        sealer: control_plane::sealing::Sealer::for_data_dir(&args.data.data_dir)?,
    })
}

/// On a request a follower passed on, the answer names the change log position the
/// store has reached after it, for the follower to wait for (see `follower`).
async fn stamp_position(
    axum::extract::State(store): axum::extract::State<Arc<dyn store::Store>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let passed = request.headers().contains_key(follower::VIA_HEADER);
    let mut response = next.run(request).await;
    if let Some(position) = store.position().filter(|_| passed) {
        response.headers_mut().insert(follower::POSITION_HEADER, position.into());
    }
    response
}

/// How many connections the kernel may queue before Berth accepts them. std's and mio's
/// 128 drops a burst (4,000 clients at once): the clients believe they are connected, the
/// server never sees them, and their requests wait for the kernel's SYN-ACK retries.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As std does on Unix: a restarted server can bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How often the data plane is brought in line with the control plane even without an
/// ELBv2 change: instance targets resolve through container instances, which change by
/// other means, and listeners that could not bind are retried.
const LB_RESYNC: Duration = Duration::from_secs(5);

/// Starts the load balancer data plane with the stored configuration, then applies every
/// ELBv2 change as it is committed.
async fn start_load_balancers(
    control: &Arc<ControlPlane>,
    args: &ServerArgs,
    tasks: &Tracker,
    shutdown: CancellationToken,
) {
    control.elb.configure(control_plane::ec2::NetworkConfig {
        zone_suffixes: args.availability_zones.clone(),
        lb_pool: args.lb_address_pool,
        vpc: args.vpc_cidr,
    });
    let dataplane = lb::DataPlane::new(control.elb.board.clone(), shutdown.clone());
    dataplane.apply(&control.elb_snapshot()).await;
    let control = control.clone();
    tasks.spawn("load balancer configuration", async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = control.elb.changed.notified() => {}
                _ = tokio::time::sleep(LB_RESYNC) => {}
            }
            dataplane.apply(&control.elb_snapshot()).await;
        }
    });
}

/// Before the local agents start: clears the Docker engine of unused subnet networks that
/// overlap the default VPC, and refuses to start when another live Berth's tasks hold one
/// (see `agent::subnets`). Without a reachable engine there is nothing to check; the agents
/// say so themselves.
async fn prepare_subnet_networks(dir: &DataDir, vpc: control_plane::ec2::Ipv4Block) -> anyhow::Result<()> {
    let Ok(docker) = agent::docker::Docker::connect().await else { return Ok(()) };
    let accounts: Vec<String> = dir.credentials()?.list()?.into_iter().map(|(a, _)| a.id.to_string()).collect();
    let block = agent::awsvpc::Ipv4Cidr::parse(&vpc.to_string()).map_err(anyhow::Error::msg)?;
    for name in agent::subnets::prepare(&docker, block, &accounts).await? {
        tracing::info!(network = %name, vpc = %vpc, "removed an unused Docker subnet network an earlier Berth left in this Berth's default VPC");
    }
    Ok(())
}

/// The agents `berth up` runs on this host's Docker engine.
#[derive(Debug, Clone, Copy)]
enum LocalAgent {
    /// A container instance of `ECS_CLUSTER` (`default`).
    Instance,
    /// The account's Fargate capacity.
    Fargate,
}

/// Starts an agent of `berth up`, which registers this host's Docker engine. It is a
/// convenience: if Docker is not there, the API still serves and the log says why.
/// Decision: both agents offer the whole engine, so the host's resources are counted
/// once for EC2 tasks and once for Fargate tasks.
fn spawn_local_agent(
    dir: &DataDir,
    url: &str,
    data_dir: &std::path::Path,
    kind: LocalAgent,
    tasks: &Tracker,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let key = dir.credentials()?.first_key()?.context("the data dir has no access key")?;
    let (state_dir, capacity, task) = match kind {
        LocalAgent::Instance => ("agent", "EC2", "local agent"),
        LocalAgent::Fargate => ("fargate-agent", "FARGATE", "local Fargate agent"),
    };
    let vars: std::collections::BTreeMap<String, String> = [
        ("ECS_BACKEND_HOST", url.to_string()),
        ("AWS_ACCESS_KEY_ID", key.id.clone()),
        ("AWS_SECRET_ACCESS_KEY", key.secret.clone()),
        ("ECS_DATADIR", data_dir.join(state_dir).display().to_string()),
        ("BERTH_CAPACITY", capacity.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    // The user's other ECS agent settings (ECS_CLUSTER, ECS_RESERVED_MEMORY, ...) apply.
    .chain(std::env::vars().filter(|(k, _)| k.starts_with("ECS_") && k != "ECS_BACKEND_HOST" && k != "ECS_DATADIR"))
    .collect();
    match agent::config::AgentConfig::load(&vars, None) {
        Ok(config) => {
            tasks.spawn(task, async move {
                if let Err(e) = agent::session::run(config, shutdown).await {
                    tracing::error!(error = %format!("{e:#}"), "the local agent stopped; this host runs no tasks");
                }
            });
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the local agent is misconfigured; this host runs no tasks")
        }
    }
    Ok(())
}

/// HTTP/2 carries the host in the `:authority` pseudo-header, which hyper puts into the
/// URI; SigV4 signs it as `host` and the registry's addresses name it, so it is made the
/// `Host` header as in HTTP/1.1.
async fn host_from_authority(mut request: axum::extract::Request) -> axum::extract::Request {
    if !request.headers().contains_key(axum::http::header::HOST) {
        let authority = request.uri().authority().map(|a| a.as_str().to_string());
        if let Some(value) = authority.and_then(|a| axum::http::HeaderValue::from_str(&a).ok()) {
            request.headers_mut().insert(axum::http::header::HOST, value);
        }
    }
    request
}

/// Reads the certificate chain and private key of `--tls-cert`/`--tls-key` (PEM).
fn load_tls(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<TlsAcceptor> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the TLS certificate chain {} (PEM)", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the TLS private key {} (PEM: PKCS#8, PKCS#1 or SEC1)", key.display()))?;
    // The provider is named rather than taken from the process default, which is
    // ambiguous when dependencies enable more than one.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("configuring TLS")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not belong together")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until `shutdown` within the bounds of [`admission`]; returns the
/// open ones, which finish their requests (`shutdown` makes them close after). With
/// `tls`, each connection's handshake runs in its own task, so a slow client never holds
/// up the accept loop.
async fn serve(
    listener: &TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: &crate::cli::ConnectionArgs,
    shutdown: CancellationToken,
) -> Tracker {
    let admission = Admission::new(limits.max_connections, limits.max_connections_per_client);
    let connections = Tracker::default();
    let pace =
        body::Pace { max_pause: limits.body_timeout, min_rate: limits.min_body_rate, drains: connections.clone() };
    let full = Lanes { app, health: health_only_app(), header_timeout: limits.header_timeout, pace };
    let stop = shutdown.clone();
    let serve_one = move |admitted: Admitted| {
        let (tls, full, shutdown) = (tls.clone(), full.clone(), stop.clone());
        async move {
            let Admitted { stream, peer, lane, activity, evict, ticket } = admitted;
            // The connection's slots are given back when this task ends.
            let _ticket = ticket;
            let watch = Watch { peer, lane, activity, evict, shutdown };
            let Some(tls) = tls else {
                return full.serve(stream, watch).await;
            };
            let handshake = tokio::select! {
                _ = watch.shutdown.cancelled() => return,
                _ = watch.evict.cancelled() => return,
                r = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)) => r,
            };
            match handshake {
                Ok(Ok(stream)) => full.serve(stream, watch).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    };
    admission.accept(listener, &shutdown, &connections, serve_one).await;
    connections
}

/// What a connection is served, by its [`Lane`].
#[derive(Clone)]
struct Lanes {
    app: Router,
    health: Router,
    header_timeout: Duration,
    pace: body::Pace,
}

/// What a connection's task watches besides the connection: its activity (for the idle
/// timeout), and the signals to close it.
struct Watch {
    peer: std::net::SocketAddr,
    lane: Lane,
    activity: Arc<conn::Activity>,
    /// Cancelled when a new connection needs this idle one's slot.
    evict: CancellationToken,
    shutdown: CancellationToken,
}

/// How long a reserved connection may take to send its health check.
const RESERVE_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

impl Lanes {
    /// Serves one connection until it closes, is found idle, is evicted, or shutdown
    /// (after which its requests in progress finish).
    async fn serve<IO>(&self, io: IO, watch: Watch)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Watch { peer, lane, activity, evict, shutdown } = watch;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        let (app, header_timeout) = match lane {
            Lane::Full => (self.app.clone(), self.header_timeout),
            Lane::HealthOnly => {
                // One quick answer per connection: the reserve is for a look, not a session.
                builder.http1().keep_alive(false);
                (self.health.clone(), RESERVE_HEADER_TIMEOUT.min(self.header_timeout))
            }
        };
        builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
        let service = TowerToHyperService::new(conn::Supervised::new(app, activity.clone(), self.pace.clone(), peer));
        let io = TokioIo::new(conn::Watched::new(io, activity.clone()));
        let conn = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(conn);
        let mut closing = false;
        let result = loop {
            tokio::select! {
                r = conn.as_mut() => break r,
                _ = shutdown.cancelled(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = evict.cancelled(), if !closing => {
                    tracing::debug!(%peer, "closing an idle connection to make room for a new one");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = activity.until_idle(header_timeout), if !closing => {
                    tracing::debug!(%peer, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// The app of a connection taken beyond `--max-connections`: the health check, and a 503
/// that says why for everything else.
fn health_only_app() -> Router {
    Router::new().route("/_berth/health", get(health)).fallback(|| async {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::CONTENT_TYPE, "application/json"), (axum::http::header::CONNECTION, "close")],
            r#"{"__type":"ServiceUnavailableException","message":"Berth is at its --max-connections bound; retry shortly."}"#,
        )
    })
}

async fn health() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], r#"{"status":"ok"}"#)
}

/// Cancels `token` on SIGTERM or SIGINT; ends when `token` is cancelled, by a signal or
/// otherwise.
pub async fn signal_shutdown(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop berth with SIGKILL");
        return;
    };
    tokio::select! {
        _ = token.cancelled() => return,
        _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
    }
    token.cancel();
}
