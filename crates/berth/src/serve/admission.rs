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
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conn::Activity;
use crate::tracker::Tracker;

/// Connections kept for health checks once `--max-connections` are busy.
pub const HEALTH_RESERVE: usize = 16;

/// How long a new connection waits for an evicted one to close.
const EVICTION_WAIT: Duration = Duration::from_millis(500);

/// How long to pause after a failed accept before trying again: the failures that
/// persist (out of file descriptors and the like) would otherwise make the loop spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

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
    /// Signalled whenever a connection closes.
    closed: Notify,
}

/// The open connections.
#[derive(Debug, Default)]
struct Open {
    next_id: u64,
    full: usize,
    reserve: usize,
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

/// What a new connection finds.
enum Decision {
    Admit(Lane),
    /// Wait for a connection to close (one was asked to).
    Wait,
    Refuse,
}

impl Open {
    fn client_count(&self, ip: IpAddr) -> usize {
        self.per_client.get(&ip).copied().unwrap_or(0)
    }

    /// Asks the longest-idle connection of the full lane (of `ip` only, if given) to
    /// close; whether there was one.
    fn evict_idlest(&mut self, ip: Option<IpAddr>) -> bool {
        let victim = self
            .connections
            .values()
            .filter(|e| e.lane == Lane::Full && ip.is_none_or(|ip| e.ip == ip) && !e.evict.is_cancelled())
            .filter_map(|e| Some((e.activity.idle_since()?, e)))
            .min_by_key(|(since, _)| *since);
        match victim {
            Some((_, e)) => {
                e.evict.cancel();
                true
            }
            None => false,
        }
    }

    /// Connections already asked to close count as gone: they close within moments.
    fn closing(&self, ip: Option<IpAddr>) -> usize {
        self.connections
            .values()
            .filter(|e| e.lane == Lane::Full && ip.is_none_or(|ip| e.ip == ip) && e.evict.is_cancelled())
            .count()
    }
}

impl Admission {
    /// `per_client` 0 means no per-client bound.
    pub fn new(max: usize, per_client: usize) -> Admission {
        Admission { inner: Arc::new(Inner { max, per_client, open: Mutex::default(), closed: Notify::new() }) }
    }

    fn open(&self) -> MutexGuard<'_, Open> {
        self.inner.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What a connection from `ip` may have now, asking an idle one to close if a bound
    /// is reached.
    fn decide(&self, open: &mut Open, ip: IpAddr) -> Decision {
        let per_client = self.inner.per_client;
        if per_client != 0 && open.client_count(ip) >= per_client {
            if open.client_count(ip) - open.closing(Some(ip)) < per_client && open.closing(Some(ip)) > 0 {
                return Decision::Wait;
            }
            return if open.evict_idlest(Some(ip)) { Decision::Wait } else { Decision::Refuse };
        }
        if open.full < self.inner.max {
            return Decision::Admit(Lane::Full);
        }
        if open.full - open.closing(None) < self.inner.max && open.closing(None) > 0 {
            return Decision::Wait;
        }
        if open.evict_idlest(None) {
            return Decision::Wait;
        }
        if open.reserve < HEALTH_RESERVE {
            Decision::Admit(Lane::HealthOnly)
        } else {
            Decision::Refuse
        }
    }

    /// The terms for a connection from `ip`, or `None` if it must be closed. It may wait
    /// (briefly) for an idle connection it asked to close.
    async fn admit(&self, ip: IpAddr) -> Option<(Lane, Arc<Activity>, CancellationToken, Ticket)> {
        let deadline = Instant::now() + EVICTION_WAIT;
        loop {
            let closed = self.inner.closed.notified();
            tokio::pin!(closed);
            {
                let mut open = self.open();
                match self.decide(&mut open, ip) {
                    Decision::Admit(lane) => {
                        let id = open.next_id;
                        open.next_id += 1;
                        match lane {
                            Lane::Full => open.full += 1,
                            Lane::HealthOnly => open.reserve += 1,
                        }
                        *open.per_client.entry(ip).or_default() += 1;
                        let (activity, evict) = (Activity::new(), CancellationToken::new());
                        let entry = Entry { ip, lane, activity: activity.clone(), evict: evict.clone() };
                        open.connections.insert(id, entry);
                        return Some((lane, activity, evict, Ticket { admission: self.clone(), id }));
                    }
                    Decision::Refuse => return None,
                    Decision::Wait => {
                        closed.as_mut().enable();
                    }
                }
            }
            if tokio::time::timeout_at(deadline, closed).await.is_err() {
                return None;
            }
        }
    }

    fn release(&self, id: u64) {
        let mut open = self.open();
        let Some(entry) = open.connections.remove(&id) else { return };
        match entry.lane {
            Lane::Full => open.full -= 1,
            Lane::HealthOnly => open.reserve -= 1,
        }
        if let Some(n) = open.per_client.get_mut(&entry.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_client.remove(&entry.ip);
            }
        }
        drop(open);
        self.inner.closed.notify_waiters();
    }

    /// Accepts connections on `listener` until `cancel`; each gets a task of its own on
    /// `tasks` (admission may wait for an idle connection to close), which closes it at
    /// once if it is not admitted and otherwise runs `serve` with `TCP_NODELAY` set.
    pub async fn accept<F, Fut>(&self, listener: &TcpListener, cancel: &CancellationToken, tasks: &Tracker, serve: F)
    where
        F: Fn(Admitted) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
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
            let (admission, serve) = (self.clone(), serve.clone());
            tasks.spawn("API connection", async move {
                let Some((lane, activity, evict, ticket)) = admission.admit(peer.ip()).await else {
                    tracing::debug!(%peer, "connection refused: every connection within its bound is busy");
                    return;
                };
                if lane == Lane::HealthOnly {
                    tracing::warn!(%peer, "every connection is busy: this one only gets the health check");
                }
                let _ = stream.set_nodelay(true);
                serve(Admitted { stream, peer, lane, activity, evict, ticket }).await;
            });
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
        let first = admission.admit(A).await.unwrap();
        let first_evicted = first.2.clone();
        close_on_evict(first);
        tokio::time::sleep(Duration::from_millis(5)).await;
        close_on_evict(admission.admit(A).await.unwrap());
        assert_eq!(close_on_evict(admission.admit(A).await.unwrap()), Lane::Full);
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
            let admitted = admission.admit(A).await.unwrap();
            held.push((admitted.1.begin_request(), admitted));
        }
        let (lane, ..) = admission.admit(B).await.unwrap();
        assert_eq!(lane, Lane::HealthOnly);
        assert!(held.iter().all(|(_, a)| !a.2.is_cancelled()));
    }

    #[tokio::test]
    async fn over_a_busy_clients_bound_the_connection_is_refused() {
        let admission = Admission::new(100, 1);
        let admitted = admission.admit(A).await.unwrap();
        let _request = admitted.1.begin_request();
        assert!(admission.admit(A).await.is_none());
        assert!(admission.admit(B).await.is_some(), "other clients are served");
    }

    #[tokio::test]
    async fn the_reserve_is_bounded_too() {
        let admission = Admission::new(0, 0);
        let held: Vec<_> = futures_util::future::join_all((0..HEALTH_RESERVE).map(|_| admission.admit(A))).await;
        assert!(held.iter().all(|a| a.as_ref().is_some_and(|a| a.0 == Lane::HealthOnly)));
        assert!(admission.admit(B).await.is_none());
        drop(held);
        assert!(admission.open().per_client.is_empty(), "closed connections hold no count");
    }
}
