//! The host's shared endpoint port (the ECS agent's 51679), where the NAT rules send
//! every container's requests to `169.254.170.2`.
//!
//! Several agents may run on one host. Whichever binds the shared port first holds it and
//! serves its own tasks there; a request whose id it does not know is forwarded to the
//! agent named by the id's port, on loopback. The others try to bind every
//! [`RETRY_EVERY`], so that one takes over when the holder exits.
//!
//! Only answers that carry the endpoint's marker header are relayed: an id can name any
//! local port, and whatever else listens there must not have its answers handed to a
//! container. A failed forward answers as an unknown id does.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use super::ids::EndpointId;
use super::server::{self, MARKER};
use super::Endpoint;

/// How often an agent that does not hold the shared port tries to take it.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How long a forwarded request may take: stats take Docker about two seconds.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest answer relayed (a task's stats are a few kilobytes per container).
const MAX_BODY: usize = 4 << 20;

/// Holds the shared port whenever it is free, until `shutdown`.
pub async fn hold_shared_port(endpoint: Arc<Endpoint>, port: u16, shutdown: CancellationToken) {
    let mut told = false;
    loop {
        match bind(port) {
            Ok(listener) => {
                tracing::info!(port, own_port = endpoint.port(), "holding the host's shared task endpoint port");
                server::serve(listener, shared_router(endpoint.clone()), shutdown.clone()).await;
                return;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) if !told => {
                told = true;
                tracing::warn!(port, error = %e, "cannot listen on the shared task endpoint port; retrying");
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY_EVERY) => {}
        }
    }
}

/// Binds the shared port on every address (the NAT rules deliver to the bridges' own
/// addresses and to loopback). `SO_REUSEADDR` lets a new holder bind while the previous
/// one's connections linger in TIME_WAIT; it never lets two listeners share a port on
/// Linux (that would take `SO_REUSEPORT`, which is not set).
fn bind(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))?;
    socket.listen(1024)
}

/// The routes of the shared port: this agent's, with foreign ids forwarded.
pub fn shared_router(endpoint: Arc<Endpoint>) -> Router {
    server::router(endpoint.clone()).layer(axum::middleware::from_fn_with_state(endpoint, forward_foreign))
}

async fn forward_foreign(State(e): State<Arc<Endpoint>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    match routing_id(&path) {
        Some(id) if id.port() != e.port() && !e.tasks.knows(&id) => forward(id.port(), &path).await,
        _ => next.run(request).await,
    }
}

/// The id a request path is routed by, if it has one.
pub fn routing_id(path: &str) -> Option<EndpointId> {
    let rest = path
        .strip_prefix("/v2/credentials/")
        .or_else(|| path.strip_prefix("/v3/"))
        .or_else(|| path.strip_prefix("/v4/"))?;
    let segment = rest.split('/').next().unwrap_or_default();
    EndpointId::parse(segment).ok()
}

/// GETs `path` from the agent whose endpoint listens on `port`, on loopback.
async fn forward(port: u16, path: &str) -> Response {
    match tokio::time::timeout(FORWARD_TIMEOUT, get(port, path)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(port, error = %e, "forwarding a task endpoint request failed");
            server::unknown_id(path)
        }
        Err(_) => {
            tracing::debug!(port, "forwarding a task endpoint request timed out");
            server::unknown_id(path)
        }
    }
}

async fn get(port: u16, path: &str) -> Result<Response, String> {
    let stream =
        tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await.map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let request = http::Request::get(path)
        .header(header::HOST, format!("127.0.0.1:{port}"))
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let answer = sender.send_request(request).await.map_err(|e| format!("request: {e}"))?;
    if !answer.headers().contains_key(MARKER) {
        return Err(format!("port {port} is not a task endpoint"));
    }
    let status = StatusCode::from_u16(answer.status().as_u16()).map_err(|e| e.to_string())?;
    let body = Limited::new(answer.into_body(), MAX_BODY).collect().await.map_err(|e| format!("body: {e}"))?;
    let text = String::from_utf8(body.to_bytes().to_vec()).map_err(|_| "the answer is not UTF-8".to_string())?;
    Ok(server::json(status, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_by_the_id_in_their_path() {
        let id = EndpointId::random(40000);
        for path in [
            format!("/v2/credentials/{id}"),
            format!("/v4/{id}"),
            format!("/v4/{id}/task"),
            format!("/v4/{id}/task/stats"),
            format!("/v3/{id}/stats"),
        ] {
            assert_eq!(routing_id(&path), Some(id), "{path}");
        }
        for path in ["/", "/v2/credentials/", "/v4/", "/v4/x/task", "/v1/credentials", "/v5/40000-00"] {
            assert_eq!(routing_id(path), None, "{path}");
        }
        assert_eq!(routing_id(&format!("/v2/credentials/{id}/x")), Some(id), "answered as unknown by the owner");
    }
}
