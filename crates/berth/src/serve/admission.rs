//! Admission: which connections the API server takes, and on what terms.
//!
//! Three bounds keep one client from locking the others out:
//! - at most `--max-connections` are served at once;
//! - at most `--max-connections-per-client` of them come from one address;
//! - beyond the first bound, a reserve of [`HEALTH_RESERVE`] connections answers only
//!   `GET /_berth/health` (503 to anything else), so that a supervisor's health check and
//!   an operator can still see the server alive while it is saturated.
//!
//! A connection over a bound is closed as soon as it is accepted. (The loop used to wait
//! for a free slot before accepting, which left new clients, health checks included, in
//! the kernel's backlog for as long as the holders pleased.)
//!
//! The deadlines that free slots are set in `serve`: `--header-timeout` (30 s) for a
//! request's headers, which with hyper also closes a kept-alive connection idle that long;
//! `--body-timeout` (30 s) for a pause in a body and `--min-body-rate` (1 KiB/s after
//! that grace) for a dripping one ([`super::body`]). For comparison: nginx waits 60 s for
//! headers and between body reads and keeps idle connections 75 s; Apache's
//! mod_reqtimeout allows 20–40 s for headers and 20 s plus 500 B/s for bodies; HAProxy has
//! no defaults and its manual suggests 10 s for a request's headers. Berth's clients are
//! SDKs, CLIs and agents on the same host or network, which send a request's headers in
//! one write: 30 s (hyper's own default) is generous to a slow link and short enough that
//! 4,096 silent sockets are gone within half a minute. 256 connections per address is far
//! above what one CLI, SDK or `docker push` opens (tens) and still leaves a saturating
//! client 1/16 of the default bound.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Connections kept for health checks once `--max-connections` are open.
pub const HEALTH_RESERVE: usize = 16;

/// How long to pause after a failed accept before trying again: the failures that
/// persist (out of file descriptors and the like) would otherwise make the loop spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Which service a connection gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The whole API.
    Full,
    /// Only the health check: the server was at its bound when the connection arrived.
    HealthOnly,
}

/// A connection that was admitted, with what it holds of the bounds: drop it when the
/// connection closes.
#[derive(Debug)]
pub struct Admitted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub lane: Lane,
    pub ticket: Ticket,
}

/// A connection's share of the bounds, given back on drop.
#[derive(Debug)]
pub struct Ticket {
    _slot: OwnedSemaphorePermit,
    _client: ClientSlot,
}

/// The connection bounds of one listener.
#[derive(Debug, Clone)]
pub struct Admission {
    full: Arc<Semaphore>,
    reserve: Arc<Semaphore>,
    clients: Arc<Clients>,
}

impl Admission {
    /// `per_client` 0 means no per-client bound.
    pub fn new(max: usize, per_client: usize) -> Admission {
        Admission {
            full: Arc::new(Semaphore::new(max)),
            reserve: Arc::new(Semaphore::new(HEALTH_RESERVE)),
            clients: Arc::new(Clients { max: per_client, open: Mutex::default() }),
        }
    }

    /// The terms for a connection from `peer`, or `None` if it must be closed.
    fn admit(&self, peer: IpAddr) -> Option<(Lane, Ticket)> {
        let client = self.clients.take(peer)?;
        if let Ok(slot) = self.full.clone().try_acquire_owned() {
            return Some((Lane::Full, Ticket { _slot: slot, _client: client }));
        }
        let slot = self.reserve.clone().try_acquire_owned().ok()?;
        Some((Lane::HealthOnly, Ticket { _slot: slot, _client: client }))
    }

    /// Accepts connections on `listener` until `cancel`, and hands each admitted one to
    /// `handle` with `TCP_NODELAY` set; the others are closed at once. `handle` runs on
    /// the loop itself, so it only spawns.
    pub async fn accept(&self, listener: &TcpListener, cancel: &CancellationToken, mut handle: impl FnMut(Admitted)) {
        loop {
            let (stream, peer) = tokio::select! {
                _ = cancel.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
            };
            let Some((lane, ticket)) = self.admit(peer.ip()) else {
                tracing::debug!(%peer, "connection refused: the server or this client is at its connection bound");
                continue;
            };
            if lane == Lane::HealthOnly {
                tracing::warn!(%peer, "at --max-connections: this connection only gets the health check");
            }
            let _ = stream.set_nodelay(true);
            handle(Admitted { stream, peer, lane, ticket });
        }
    }
}

/// Open connections per client address.
#[derive(Debug)]
struct Clients {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl Clients {
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_default();
        if self.max != 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot { clients: self.clone(), ip })
    }
}

/// One connection of one client address; the count goes down on drop, and the address
/// is forgotten with its last connection.
#[derive(Debug)]
struct ClientSlot {
    clients: Arc<Clients>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn bounds_each_client_and_keeps_a_health_reserve() {
        let admission = Admission::new(3, 2);
        let a1 = admission.admit(A).unwrap();
        let _a2 = admission.admit(A).unwrap();
        assert!(admission.admit(A).is_none(), "a third connection of one client is over its bound");
        let b1 = admission.admit(B).unwrap();
        assert_eq!(b1.0, Lane::Full);
        // The server is full: B's next connection is served the health check only.
        let b2 = admission.admit(B).unwrap();
        assert_eq!(b2.0, Lane::HealthOnly);
        drop(a1);
        assert_eq!(admission.admit(A).unwrap().0, Lane::Full, "a closed connection frees its slots");
    }

    #[test]
    fn the_reserve_is_bounded_too() {
        let admission = Admission::new(0, 0);
        let held: Vec<_> = (0..HEALTH_RESERVE).map(|_| admission.admit(A).unwrap()).collect();
        assert!(held.iter().all(|(lane, _)| *lane == Lane::HealthOnly));
        assert!(admission.admit(B).is_none());
        assert!(admission.clients.open.lock().unwrap().get(&B).is_none(), "a refused client holds no count");
    }
}
