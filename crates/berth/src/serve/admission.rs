//! Admission: which connections the API server takes, and on what terms.
//!
//! Two bounds keep one client from locking the others out: at most `--max-connections`
//! are served at once, and at most `--max-connections-per-client` of them come from one
//! address. When a new connection finds a bound reached, the connection within that bound
//! that has been idle longest (no request in progress: silent since it opened, or kept
//! alive between requests) is closed to make room, as nginx reuses its idle connections
//! when its workers are full. Idle connections cost their client nothing to reopen, while
//! a new client turned away cannot be served at all. Only when every connection within
//! the bound is busy with a request is the new one turned away: a connection over the
//! client's bound is closed; one over the server's bound gets one of [`HEALTH_RESERVE`]
//! reserved connections that answer only `GET /_berth/health` (503 to anything else), so
//! a supervisor's health check and an operator still see the server alive.
//!
//! (Before, the loop waited for a free slot before accepting, which left new clients,
//! health checks included, in the kernel's backlog for as long as the holders pleased.)
//!
//! The deadlines that free slots are set in `serve`: `--header-timeout` (30 s) for a
//! request's headers, which also closes a connection idle that long; `--body-timeout`
//! (30 s) for a pause in a body and `--min-body-rate` (1 KiB/s after that grace) for a
//! dripping one (`body`). For comparison: nginx waits 60 s for headers and between body
//! reads and keeps idle connections 75 s; Apache's mod_reqtimeout allows 20–40 s for
//! headers and 20 s plus 500 B/s for bodies; HAProxy has no defaults and its manual
//! suggests 10 s for a request's headers. Berth's clients are SDKs, CLIs and agents that
//! send a request's headers in one write: 30 s (hyper's own default) is generous to a slow
//! link, and with eviction a silent socket holds nothing anyone else needs. 256
//! connections per address is far above what one CLI, SDK or `docker push` opens (tens).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::conn::Activity;
use crate::tracker::Tracker;

/// Connections kept for health checks once `--max-connections` are busy.
pub const HEALTH_RESERVE: usize = 16;

/// Which service a connection gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The whole API.
    Full,
    /// Only the health check: every connection was busy when it arrived.
    HealthOnly,
}

/// A connection that was admitted: serve it in its lane, watch `activity`, close it when
/// `evict` is cancelled, and drop `ticket` when it closes.
#[derive(Debug)]
pub struct Admitted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub lane: Lane,
    pub activity: Arc<Activity>,
    pub evict: CancellationToken,
    pub ticket: Ticket,
}

/// The connection bounds of one listener.
#[derive(Debug, Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max: usize,
    per_client: usize,
    open: Mutex<Open>,
}

/// The open connections.
#[derive(Debug, Default)]
struct Open {
    next_id: u64,
    /// Connections counted against `--max-connections`.
    full: usize,
    reserve: usize,
    /// Connections counted against each client's bound.
    per_client: HashMap<IpAddr, usize>,
    connections: HashMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    ip: IpAddr,
    lane: Lane,
    activity: Arc<Activity>,
    evict: CancellationToken,
}

impl Open {
    fn client_count(&self, ip: IpAddr) -> usize {
        self.per_client.get(&ip).copied().unwrap_or(0)
    }

    fn uncount(&mut self, ip: IpAddr, lane: Lane) {
        match lane {
            Lane::Full => self.full -= 1,
            Lane::HealthOnly => self.reserve -= 1,
        }
        if let Some(n) = self.per_client.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&ip);
            }
        }
    }

    /// Closes the longest-idle connection of the full lane (of `ip` only, if given) and
    /// gives its slots up at once, for a new connection to take: the closing one is gone
    /// within moments, and a newcomer that waited for it would wait behind every other
    /// newcomer. Whether there was one.
    fn evict_idlest(&mut self, ip: Option<IpAddr>) -> bool {
        let victim = self
            .connections
            .iter()
            .filter(|(_, e)| e.lane == Lane::Full && ip.is_none_or(|ip| e.ip == ip) && !e.evict.is_cancelled())
            .filter_map(|(id, e)| Some((e.activity.idle_since()?, *id)))
            .min_by_key(|(since, _)| *since);
        let Some((_, id)) = victim else { return false };
        let entry = &self.connections[&id];
        entry.evict.cancel();
        let (ip, lane) = (entry.ip, entry.lane);
        self.uncount(ip, lane);
        true
    }
}

impl Admission {
    /// `per_client` 0 means no per-client bound.
    pub fn new(max: usize, per_client: usize) -> Admission {
        Admission { inner: Arc::new(Inner { max, per_client, open: Mutex::default() }) }
    }

    fn open(&self) -> MutexGuard<'_, Open> {
        self.inner.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The terms for a connection from `ip`, closing an idle one if a bound is reached, or
    /// `None` if it must be closed itself.
    fn admit(&self, ip: IpAddr) -> Option<(Lane, Arc<Activity>, CancellationToken, Ticket)> {
        let mut open = self.open();
        let per_client = self.inner.per_client;
        if per_client != 0 && open.client_count(ip) >= per_client && !open.evict_idlest(Some(ip)) {
            return None;
        }
        let lane = if open.full < self.inner.max || open.evict_idlest(None) {
            Lane::Full
        } else if open.reserve < HEALTH_RESERVE {
            Lane::HealthOnly
        } else {
            return None;
        };
        let id = open.next_id;
        open.next_id += 1;
        match lane {
            Lane::Full => open.full += 1,
            Lane::HealthOnly => open.reserve += 1,
        }
        *open.per_client.entry(ip).or_default() += 1;
        let (activity, evict) = (Activity::new(), CancellationToken::new());
        open.connections.insert(id, Entry { ip, lane, activity: activity.clone(), evict: evict.clone() });
        Some((lane, activity, evict, Ticket { admission: self.clone(), id }))
    }

    fn release(&self, id: u64) {
        let mut open = self.open();
        let Some(entry) = open.connections.remove(&id) else { return };
        // An evicted connection gave its slots up when it was asked to close.
        if !entry.evict.is_cancelled() {
            open.uncount(entry.ip, entry.lane);
        }
    }

    /// Accepts connections on `listener` until `cancel`. One that is not admitted is closed
    /// at once; each admitted one is served by `serve`, with `TCP_NODELAY` set, in a task of
    /// its own on `tasks`.
    pub async fn accept<F, Fut>(&self, listener: &TcpListener, cancel: &CancellationToken, tasks: &Tracker, serve: F)
    where
        F: Fn(Admitted) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        while let Some((stream, peer)) = lb::accept::next_connection(listener, cancel).await {
            let Some((lane, activity, evict, ticket)) = self.admit(peer.ip()) else {
                tracing::debug!(%peer, "connection refused: every connection within its bound is busy");
                continue;
            };
            if lane == Lane::HealthOnly {
                tracing::warn!(%peer, "every connection is busy: this one only gets the health check");
            }
            tasks.spawn("API connection", serve(Admitted { stream, peer, lane, activity, evict, ticket }));
        }
    }
}

/// A connection's share of the bounds, given back on drop.
#[derive(Debug)]
pub struct Ticket {
    admission: Admission,
    id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.release(self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    /// Plays a connection that closes when asked: drops its ticket on eviction.
    fn close_on_evict(admitted: (Lane, Arc<Activity>, CancellationToken, Ticket)) -> Lane {
        let (lane, _, evict, ticket) = admitted;
        tokio::spawn(async move {
            evict.cancelled().await;
            drop(ticket);
        });
        lane
    }

    #[tokio::test]
    async fn a_full_client_makes_room_by_closing_its_idlest_connection() {
        let admission = Admission::new(100, 2);
        let first = admission.admit(A).unwrap();
        let first_evicted = first.2.clone();
        close_on_evict(first);
        tokio::time::sleep(Duration::from_millis(5)).await;
        close_on_evict(admission.admit(A).unwrap());
        assert_eq!(close_on_evict(admission.admit(A).unwrap()), Lane::Full);
        assert!(first_evicted.is_cancelled(), "the oldest idle connection made room");
        assert_eq!(admission.open().client_count(A), 2);
    }

    #[tokio::test]
    async fn busy_connections_are_kept_and_the_reserve_answers_health() {
        let admission = Admission::new(2, 0);
        // Two connections in the middle of a request: not idle, never evicted.
        let busy: Vec<_> = (0..2).map(|_| ()).collect::<Vec<_>>();
        let mut held = Vec::new();
        for _ in busy {
            let admitted = admission.admit(A).unwrap();
            held.push((admitted.1.begin_request(), admitted));
        }
        let (lane, ..) = admission.admit(B).unwrap();
        assert_eq!(lane, Lane::HealthOnly);
        assert!(held.iter().all(|(_, a)| !a.2.is_cancelled()));
    }

    #[tokio::test]
    async fn over_a_busy_clients_bound_the_connection_is_refused() {
        let admission = Admission::new(100, 1);
        let admitted = admission.admit(A).unwrap();
        let _request = admitted.1.begin_request();
        assert!(admission.admit(A).is_none());
        assert!(admission.admit(B).is_some(), "other clients are served");
    }

    #[tokio::test]
    async fn the_reserve_is_bounded_too() {
        let admission = Admission::new(0, 0);
        let held: Vec<_> = (0..HEALTH_RESERVE).map(|_| admission.admit(A)).collect();
        assert!(held.iter().all(|a| a.as_ref().is_some_and(|a| a.0 == Lane::HealthOnly)));
        assert!(admission.admit(B).is_none());
        drop(held);
        assert!(admission.open().per_client.is_empty(), "closed connections hold no count");
    }
}
