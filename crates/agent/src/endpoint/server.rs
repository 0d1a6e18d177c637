//! The endpoint's HTTP server: the routes of credentials (`/v2/credentials/<id>`) and of
//! task metadata (`/v3/<id>...`, `/v4/<id>...`), and the connection loop both of the
//! agent's listeners use.
//!
//! Every answer carries [`MARKER`], so that the agent holding the shared port relays only
//! what another agent's endpoint said (see `forward`). Unknown ids get the ECS agent's
//! answers: 400 with `{"code","message"}` for credentials, 404 (version 4) or 400
//! (version 3) with a JSON string for metadata.

use std::sync::Arc;
use std::time::Duration;

use agent_protocol::RoleType;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::credentials::{self, Refusal};
use super::ids::EndpointId;
use super::metadata::{self, Version};
use super::stats::{self, StatsError};
use super::Endpoint;

/// The header on every answer of a Berth task endpoint.
pub const MARKER: &str = "x-berth-task-endpoint";
/// Connections open at once on one listener; requests are small and quick.
const MAX_CONNECTIONS: usize = 512;
/// How long a client may take to send its request's headers (as the ECS agent's 5 s).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may stay open at all: stats take Docker about two seconds.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The routes, answering from `endpoint`'s own tasks.
pub fn router(endpoint: Arc<Endpoint>) -> Router {
    let v = |version: Version| {
        Router::new()
            .route("/{id}", get(move |s, p| container(s, p, version)))
            .route("/{id}/task", get(move |s, p| task(s, p, version, false)))
            .route("/{id}/taskWithTags", get(move |s, p| task(s, p, version, true)))
            .route("/{id}/stats", get(move |s, p| container_stats(s, p, version)))
            .route("/{id}/task/stats", get(move |s, p| task_stats(s, p, version)))
    };
    Router::new()
        .route("/v2/credentials", get(no_credentials_id))
        .route("/v2/credentials/", get(no_credentials_id))
        .route("/v2/credentials/{*id}", get(task_credentials))
        .nest("/v3", v(Version::V3))
        .nest("/v4", v(Version::V4))
        .fallback(|| async { json(StatusCode::NOT_FOUND, "\"Not found\"".into()) })
        .with_state(endpoint)
}

/// Serves `router` on `listener` until `shutdown`, each connection bounded in time.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    lb::accept::accept(&listener, MAX_CONNECTIONS, &shutdown, |accepted| {
        let service = TowerToHyperService::new(router.clone());
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = accepted.permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).keep_alive(false);
            let conn = builder.serve_connection(TokioIo::new(accepted.stream), service);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn) => {}
            }
        });
    })
    .await;
}

/// A JSON answer, marked as the endpoint's.
pub fn json(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(MARKER, HeaderValue::from_static("1"));
    r
}

/// What an id no agent here knows gets, for a request to `path`.
pub fn unknown_id(path: &str) -> Response {
    if path.starts_with("/v2/credentials") {
        return refused(Refusal::UnknownId);
    }
    let version = if path.starts_with("/v3/") { Version::V3 } else { Version::V4 };
    unknown_metadata_id(version)
}

fn refused(r: Refusal) -> Response {
    json(StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST), r.body())
}

fn unknown_metadata_id(v: Version) -> Response {
    let (status, name) = match v {
        Version::V3 => (StatusCode::BAD_REQUEST, "V3"),
        Version::V4 => (StatusCode::NOT_FOUND, "V4"),
    };
    let message = format!("{name} metadata handler: no task of this agent has this endpoint ID");
    json(status, serde_json::Value::String(message).to_string())
}

async fn no_credentials_id() -> Response {
    refused(Refusal::NoId)
}

async fn task_credentials(State(e): State<Arc<Endpoint>>, Path(id): Path<String>) -> Response {
    let Some(task_arn) = EndpointId::parse(&id).ok().and_then(|id| e.tasks.by_credentials_id(&id)) else {
        return refused(Refusal::UnknownId);
    };
    // Only the task role is ever served; the execution role stays with the agent.
    match e.credentials.get(&task_arn, RoleType::TaskRole) {
        Some(c) => {
            tracing::debug!(task = %task_arn, role = %c.role_arn, "served task role credentials");
            json(StatusCode::OK, credentials::body(&c))
        }
        None => refused(Refusal::NotYet),
    }
}

/// The task and container an id in a metadata path opens, or the answer for an unknown id.
fn lookup(e: &Endpoint, id: &str, v: Version) -> Result<super::tasks::Found, Box<Response>> {
    EndpointId::parse(id)
        .ok()
        .and_then(|id| e.tasks.by_metadata_id(&id))
        .ok_or_else(|| Box::new(unknown_metadata_id(v)))
}

async fn container(State(e): State<Arc<Endpoint>>, Path(id): Path<String>, v: Version) -> Response {
    let found = match lookup(&e, &id, v) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    match found.container() {
        Some(c) => json(StatusCode::OK, metadata::container(c, v)),
        None => unknown_metadata_id(v),
    }
}

async fn task(State(e): State<Arc<Endpoint>>, Path(id): Path<String>, v: Version, tags: bool) -> Response {
    match lookup(&e, &id, v) {
        Ok(found) => json(StatusCode::OK, metadata::task(&found.task, &e.host, v, tags)),
        Err(r) => *r,
    }
}

async fn container_stats(State(e): State<Arc<Endpoint>>, Path(id): Path<String>, v: Version) -> Response {
    let found = match lookup(&e, &id, v) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let Some(c) = found.container() else { return unknown_metadata_id(v) };
    match stats::container(&e.docker, &e.rates, c, v).await {
        Ok(s) => json(StatusCode::OK, s.to_string()),
        Err(StatsError::NotCreated) => {
            json(StatusCode::NOT_FOUND, "\"stats handler: the container has not been created yet\"".into())
        }
        Err(StatsError::Docker(err)) => {
            tracing::warn!(container = %c.name, error = %err, "cannot read a container's stats");
            json(StatusCode::INTERNAL_SERVER_ERROR, "\"failed to get stats\"".into())
        }
    }
}

async fn task_stats(State(e): State<Arc<Endpoint>>, Path(id): Path<String>, v: Version) -> Response {
    match lookup(&e, &id, v) {
        Ok(found) => json(StatusCode::OK, stats::task(&e.docker, &e.rates, &found.task, v).await.to_string()),
        Err(r) => *r,
    }
}
