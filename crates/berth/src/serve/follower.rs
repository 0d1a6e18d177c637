//! A follower replica's server. While another replica leads the PostgreSQL store, this
//! one keeps a view of the state of its own, current from the store's change log
//! (`berth.changes`, woken by `LISTEN berth_changes`), answers the reads that view
//! suffices for (`aws_api::replica`), and passes every other request to the leader.
//!
//! - **Reads** are answered here, so they scale with the replicas and go on while no
//!   replica leads (PostgreSQL or the leader gone): the view stays as it was last read.
//! - **Everything else** (writes, the agents' channel, the registry, Logs' events, and a
//!   read the view could not answer: a key this view does not know yet) is passed to the
//!   leader request by request, marked with [`VIA_HEADER`]. The leader answers with its
//!   change log position after the request ([`POSITION_HEADER`]), and this replica holds
//!   the answer until its view has reached that position (for at most [`CATCH_UP_WAIT`]):
//!   a client that wrote through a follower reads its write there. An upgrade (the agent's
//!   WebSocket) is passed on and the two upgraded connections joined.
//! - **During a failover** a request waits for a leader (for at most
//!   `standby::FAILOVER_WAIT`) and is sent again when the old leader did not accept the
//!   connection; a request whose connection broke after it was sent is answered 503, as
//!   its outcome is unknown (SDKs retry it).
//!
//! What it costs: one more hop for writes; the leader sees a passed request come from
//! this replica's address, so `aws:SourceIp` conditions name the follower for them.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use control_plane::ControlPlane;
use store::{Catchup, ChangeFeed, PgStore, PgUrl, Store};

use super::standby::{Standby, FAILOVER_WAIT, RETRY_FIRST, RETRY_MAX};

/// Marks a request a follower passes to the leader: the leader then answers with its
/// change log position in [`POSITION_HEADER`].
pub const VIA_HEADER: &str = "x-berth-via-follower";
/// The leader's change log position after it answered a passed request.
pub const POSITION_HEADER: &str = "x-berth-position";

/// How long the answer to a passed request waits for this replica's view to reach the
/// leader's position.
const CATCH_UP_WAIT: Duration = Duration::from_secs(5);
/// The view is brought forward at least this often, should a notification be lost.
const POLL: Duration = Duration::from_secs(1);
/// How often a follower reads the lease for a new leader (see [`watch_leader`]).
const LEASE_CHECK: Duration = Duration::from_secs(1);
/// The largest API request body a follower holds to answer or pass on: more than any
/// operation accepts (ECR's layer parts, 28 MiB); the leader refuses what is too large.
const MAX_HELD: usize = 32 * 1024 * 1024;
/// The longest wait between attempts to read the store (from the standby's first wait,
/// doubled).
const STORE_RETRY_MAX: Duration = Duration::from_secs(10);

/// What a follower's server needs to start.
pub struct Setup {
    pub store: PgUrl,
    pub config: control_plane::Config,
    pub public: aws_api::PublicAddress,
    pub standby: Arc<Standby>,
}

/// A follower replica's view and its way to the leader.
struct Follower {
    /// The AWS API answered from this replica's view.
    local: Router,
    standby: Arc<Standby>,
    client: Client<HttpConnector, Body>,
    /// The change log position the view reflects.
    applied: watch::Receiver<i64>,
    /// Cancelled once this replica leads: its view is no longer brought forward, and the
    /// answers it passes on from itself need not wait for it.
    retired: CancellationToken,
}

/// Serves `listener` as a follower until dropped (when this replica comes to lead): the
/// connections are passed whole until the view is read, then served here. Connections
/// in progress when this ends close once `retire` is cancelled, after their requests.
pub async fn run(
    setup: Setup,
    listener: &TcpListener,
    limits: &crate::cli::ConnectionArgs,
    retire: CancellationToken,
) -> Infallible {
    let standby = setup.standby.clone();
    let (follower, tail) = tokio::select! {
        ready = open(setup, retire.clone()) => ready,
        never = standby.serve(listener) => match never {},
    };
    tracing::info!("following the leading replica: reads are answered from this replica's view");
    let app = Router::new()
        .route("/_berth/health", get(health))
        .fallback(handle)
        .with_state(follower)
        .layer(axum::middleware::map_request(super::host_from_authority));
    tokio::select! {
        never = tail => match never {},
        // Only `retire` ends it, once this future is no longer polled.
        _ = super::serve(listener, None, app, limits, retire) => std::future::pending().await,
    }
}

/// Reads the store (retrying while PostgreSQL cannot be reached) and opens the view; the
/// future returned keeps it current.
async fn open(
    setup: Setup,
    retire: CancellationToken,
) -> (Arc<Follower>, impl std::future::Future<Output = Infallible>) {
    let (control, applied, tail, store) = follow(&setup.store, setup.config, true).await;
    let api = aws_api::Api { control, registry: None, public: setup.public };
    // A leader cut off the network refuses nothing: its connections time out.
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(super::standby::CONNECT_TIMEOUT));
    let follower = Arc::new(Follower {
        local: aws_api::router(api),
        standby: setup.standby.clone(),
        client: Client::builder(TokioExecutor::new()).build(connector),
        applied,
        retired: retire,
    });
    let keep_up = async move {
        tokio::select! {
            never = tail => never,
            never = watch_leader(store, setup.standby) => never,
        }
    };
    (follower, keep_up)
}

/// Reads the lease every [`LEASE_CHECK`]: when its epoch grows, a new leader took it, and
/// requests go to the endpoint it names from then on. Without this, a follower would
/// learn of the new leader only when the old one stopped accepting connections, which a
/// leader whose host is cut off the network never does: its connections just hang.
async fn watch_leader(store: Arc<PgStore>, standby: Arc<Standby>) -> Infallible {
    let mut seen = None;
    loop {
        let reader = store.clone();
        match tokio::task::spawn_blocking(move || reader.lease()).await {
            Ok(Ok((epoch, endpoint))) => {
                if seen != Some(epoch) {
                    standby.learn(&endpoint).await;
                    seen = Some(epoch);
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "reading the lease failed; the known leader is kept"),
            Err(e) => tracing::error!(error = %e, "reading the lease panicked"),
        }
        tokio::time::sleep(LEASE_CHECK).await;
    }
}

/// A follower's control plane on the store at `url`, read (retrying while PostgreSQL
/// cannot be reached); the change log position its view reflects; and the future that
/// keeps it current; and the store, for further reads. With `sealed`, the master key of
/// `config` must open the store's sealed values.
pub async fn follow(
    url: &PgUrl,
    config: control_plane::Config,
    sealed: bool,
) -> (Arc<ControlPlane>, watch::Receiver<i64>, impl std::future::Future<Output = Infallible>, Arc<PgStore>) {
    let mut wait = RETRY_FIRST;
    let (store, feed, position, control) = loop {
        let (url, config) = (url.clone(), config.clone());
        let opened = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let store = Arc::new(PgStore::open_unleased(&url).with_context(|| format!("opening the store {url}"))?);
            // The feed first: nothing committed after the snapshot goes unnoticed.
            let feed = store.change_feed()?;
            let (position, records) = store.snapshot()?;
            if sealed {
                config.sealer.verify_records(&records)?;
            }
            let control = ControlPlane::open_follower(store.clone() as Arc<dyn Store>, config, records)?;
            Ok((store, feed, position, Arc::new(control)))
        })
        .await;
        match opened {
            Ok(Ok(opened)) => break opened,
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?wait, "a follower cannot read the store yet; retrying")
            }
            Err(e) => tracing::error!(error = %e, "reading the store panicked; retrying"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(STORE_RETRY_MAX);
    };
    let (applied, watching) = watch::channel(position);
    (control.clone(), watching, tail(store.clone(), feed, control, applied), store)
}

/// Brings the view forward after every commit, forever. A change the view could not take
/// (a record it cannot read) leaves the mirror of records out of step with the published
/// view, so the next attempt reads every record again.
async fn tail(
    store: Arc<PgStore>,
    feed: ChangeFeed,
    control: Arc<ControlPlane>,
    applied: watch::Sender<i64>,
) -> Infallible {
    let mut wait = RETRY_FIRST;
    let mut reload = false;
    loop {
        let after = *applied.borrow();
        let reader = store.clone();
        let read = tokio::task::spawn_blocking(move || match reload {
            true => reader.snapshot().map(|(through, records)| Catchup::Everything { through, records }),
            false => reader.catch_up(after),
        })
        .await;
        let failed = match read {
            Ok(Ok(catchup)) => {
                let (through, everything, more) = match &catchup {
                    Catchup::Changes { through, more, .. } => (*through, false, *more),
                    Catchup::Everything { through, .. } => (*through, true, false),
                };
                match control.follow(catchup) {
                    Ok(()) => {
                        if everything {
                            tracing::info!(position = through, "this replica's view read every record again");
                        }
                        applied.send_replace(through);
                        wait = RETRY_FIRST;
                        reload = false;
                        if more {
                            continue;
                        }
                        // What is committed from now on notifies the feed, which holds
                        // the wake-up until the next wait.
                        false
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "applying the change log failed; reading every record again");
                        reload = true;
                        true
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, retry_in = ?wait, "reading the change log failed; reads are answered from the view as it is");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the change log panicked; retrying");
                true
            }
        };
        if failed {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(STORE_RETRY_MAX);
            continue;
        }
        tokio::select! {
            _ = feed.changed() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// `GET /_berth/health` of a follower: it serves, and says it follows.
async fn health() -> impl IntoResponse {
    ([(http::header::CONTENT_TYPE, "application/json")], r#"{"status":"ok","role":"follower"}"#)
}

/// Every request but the health check: answered here or passed to the leader.
async fn handle(State(follower): State<Arc<Follower>>, request: Request) -> Response {
    if request.method() != Method::POST || request.uri().path() != "/" {
        return follower.pass_streaming(request).await;
    }
    let (parts, body) = request.into_parts();
    let body = match hold(body).await {
        Ok(body) => body,
        Err(e) => return unavailable(StatusCode::BAD_REQUEST, &format!("The request body could not be read: {e}")),
    };
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    if aws_api::replica::follower_answers(target, &body) {
        let local = Request::from_parts(parts.clone(), Body::from(body.clone()));
        let response = match follower.local.clone().oneshot(local).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        if !response.headers().contains_key(aws_api::error::DEFER_HEADER) {
            return response;
        }
    }
    follower.pass_held(parts, body).await
}

/// A request's whole body, of at most [`MAX_HELD`] bytes.
async fn hold(body: Body) -> Result<Bytes, axum::BoxError> {
    use http_body_util::BodyExt;
    Ok(http_body_util::Limited::new(body, MAX_HELD).collect().await?.to_bytes())
}

impl Follower {
    /// Passes a request whose body is held, sending it again while a failover has left
    /// no leader to accept it.
    async fn pass_held(&self, parts: Parts, body: Bytes) -> Response {
        let deadline = Instant::now() + FAILOVER_WAIT;
        let mut wait = RETRY_FIRST;
        loop {
            let Some(at) = self.standby.leader_endpoint().await else { return no_leader() };
            match self.client.request(outbound(&parts, &at, Body::from(body.clone()), false)).await {
                Ok(response) => return self.answer(response).await,
                Err(e) if e.is_connect() && Instant::now() + wait < deadline => {
                    tracing::debug!(leader = %at, error = %e, "the leader did not accept a passed request; waiting for one");
                    self.standby.forget(&at).await;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                }
                Err(e) => return lost(&at, &e),
            }
        }
    }

    /// Passes a request with its body as it comes (registry blobs, the agent's upgrade).
    async fn pass_streaming(&self, mut request: Request) -> Response {
        let upgrade = request.headers().contains_key(http::header::UPGRADE);
        let client_side = upgrade.then(|| hyper::upgrade::on(&mut request));
        let Some(at) = self.standby.leader_endpoint().await else { return no_leader() };
        let (parts, body) = request.into_parts();
        let mut response = match self.client.request(outbound(&parts, &at, body, upgrade)).await {
            Ok(response) => response,
            Err(e) => {
                if e.is_connect() {
                    self.standby.forget(&at).await;
                }
                return lost(&at, &e);
            }
        };
        if let (StatusCode::SWITCHING_PROTOCOLS, Some(client_side)) = (response.status(), client_side) {
            let leader_side = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                let (Ok(client), Ok(leader)) = (client_side.await, leader_side.await) else {
                    tracing::debug!("a passed upgrade did not complete");
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(leader)).await;
            });
            let (parts, _) = response.into_parts();
            return Response::from_parts(parts, Body::empty());
        }
        self.answer(response).await
    }

    /// The leader's answer, once this replica's view has reached the position it names.
    async fn answer(&self, response: http::Response<hyper::body::Incoming>) -> Response {
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let position = parts.headers.remove(POSITION_HEADER);
        if let Some(position) = position.as_ref().and_then(|v| v.to_str().ok()?.parse::<i64>().ok()) {
            let mut applied = self.applied.clone();
            let reached = tokio::select! {
                r = tokio::time::timeout(CATCH_UP_WAIT, applied.wait_for(|p| *p >= position)) => r.is_ok(),
                _ = self.retired.cancelled() => true,
            };
            if !reached {
                tracing::warn!(
                    position,
                    applied = *self.applied.borrow(),
                    "this replica's view did not reach the leader's position in time; answering without it"
                );
            }
        }
        Response::from_parts(parts, Body::new(body))
    }
}

/// The request to send the leader at `at`: the client's, with its `Host` (which SigV4
/// signs), marked as passed by a follower.
fn outbound(parts: &Parts, at: &str, body: Body, upgrade: bool) -> http::Request<Body> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = http::Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = format!("http://{at}{path}").parse().unwrap_or_default();
    let headers = request.headers_mut();
    headers.clone_from(&parts.headers);
    if !upgrade {
        strip_hop_by_hop(headers);
    }
    headers.insert(VIA_HEADER, HeaderValue::from_static("1"));
    request
}

/// Headers that describe one connection, not the message: they are not passed on.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"] {
        headers.remove(name);
    }
}

fn no_leader() -> Response {
    unavailable(
        StatusCode::SERVICE_UNAVAILABLE,
        "No Berth replica leads at the moment (a failover, or PostgreSQL unreachable); retry shortly.",
    )
}

fn lost(at: &str, e: &hyper_util::client::legacy::Error) -> Response {
    tracing::warn!(leader = %at, error = %e, "passing a request to the leader failed");
    unavailable(
        StatusCode::SERVICE_UNAVAILABLE,
        "The leading Berth replica did not answer the request passed to it; retry it.",
    )
}

fn unavailable(status: StatusCode, message: &str) -> Response {
    let code = if status.is_server_error() { "ServiceUnavailableException" } else { "SerializationException" };
    let body = serde_json::json!({ "__type": code, "message": message }).to_string();
    (status, [(http::header::CONTENT_TYPE, "application/x-amz-json-1.1")], body).into_response()
}
