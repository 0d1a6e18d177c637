//! A standby's listener. While another replica leads the PostgreSQL store, this one
//! accepts connections all the same and passes each, byte for byte, to the leader's
//! endpoint (recorded with the store's lease), so that clients, agents and load balancers
//! may be given any replica's address. Once this replica leads, its own server takes the
//! listener over (see `serve::run`).
//!
//! Connections are passed whole (at layer 4) while the replica has no view of its own yet
//! (it is reading the store), and for good when it serves TLS: the agent's WebSocket,
//! registry uploads, HTTP/2 and TLS go through unchanged, and every request is
//! authenticated and applied by the leader as if it had come directly (SigV4 signs the
//! `Host` header, which arrives unchanged). Once a plain-HTTP replica has its view, it
//! serves requests itself as a follower (`follower`), and finds the leader through
//! [`Standby::leader_endpoint`]. What passing costs: one more hop, and the leader counts
//! a standby's connections as one client's (`--max-connections-per-client`).
//!
//! During a failover the lease still names the old leader until the new one takes it: a
//! connection waits (for at most [`FAILOVER_WAIT`]) until a leader accepts it, re-reading
//! the lease between attempts. A standby never passes connections to its own endpoint,
//! unless this replica has become the leader meanwhile ([`Standby::lead`]): then the
//! connections still waiting go to its own server, on its listener.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore};

use store::PgUrl;

/// How long a connection waits for a leader to accept it before it is closed: longer than
/// a dead host's lock takes to be released ([`store::KEEPALIVE_DETECTION`]).
pub const FAILOVER_WAIT: Duration = Duration::from_secs(15);
/// How long one attempt to reach the leader may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Between attempts to reach a leader: from the first wait, doubled up to the last.
pub(super) const RETRY_FIRST: Duration = Duration::from_millis(25);
pub(super) const RETRY_MAX: Duration = Duration::from_millis(500);

/// Passes connections to the leader of the replicas on one store.
pub struct Standby {
    store: PgUrl,
    /// This replica's own endpoint, never passed to while it stands by.
    own: String,
    /// Where this replica's own server can be reached from here once it leads.
    local: SocketAddr,
    /// Set when this replica leads and its own server has the listener.
    leading: AtomicBool,
    /// The leader's endpoint as last read from the lease. The lock also makes connections
    /// that find no leader read the lease one at a time.
    leader: Mutex<Option<String>>,
    /// Connections being passed, bounded like the server's (`--max-connections`).
    slots: Arc<Semaphore>,
}

impl Standby {
    /// A standby listening on `listening`, which other replicas reach at `own`.
    pub fn new(store: PgUrl, own: String, listening: SocketAddr, max_connections: usize) -> Arc<Standby> {
        let mut local = listening;
        if local.ip().is_unspecified() {
            local.set_ip(match local {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        Arc::new(Standby {
            store,
            own,
            local,
            leading: AtomicBool::new(false),
            leader: Mutex::new(None),
            slots: Arc::new(Semaphore::new(max_connections)),
        })
    }

    /// Says this replica leads now and its server accepts on the listener: connections
    /// still waiting for a leader go there.
    pub fn lead(&self) {
        self.leading.store(true, Ordering::Release);
    }

    /// Accepts connections and passes each to the leader, until dropped (its connections
    /// in progress go on until they end).
    pub async fn serve(self: Arc<Self>, listener: &TcpListener) -> Infallible {
        tracing::info!(own = %self.own, "standing by: connections are passed to the leading replica");
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, mostly: the next accept may succeed once some close.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "at --max-connections; closing a new connection");
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let _slot = slot;
                this.pass(stream, peer).await;
            });
        }
    }

    async fn pass(&self, mut client: TcpStream, peer: SocketAddr) {
        let Some((mut leader, at)) = self.connect().await else {
            tracing::warn!(%peer, wait = ?FAILOVER_WAIT, "no leading replica accepted the connection; it was closed");
            return;
        };
        let _ = client.set_nodelay(true);
        let _ = leader.set_nodelay(true);
        match tokio::io::copy_bidirectional(&mut client, &mut leader).await {
            Ok((up, down)) => tracing::debug!(%peer, leader = %at, up, down, "passed a connection"),
            Err(e) => tracing::debug!(%peer, leader = %at, error = %e, "a passed connection ended with an error"),
        }
    }

    /// The leader's endpoint, waiting (for at most [`FAILOVER_WAIT`]) while no replica
    /// leads.
    pub async fn leader_endpoint(&self) -> Option<String> {
        let deadline = Instant::now() + FAILOVER_WAIT;
        let mut wait = RETRY_FIRST;
        loop {
            if let Some(at) = self.leader().await {
                return Some(at);
            }
            if Instant::now() + wait > deadline {
                return None;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// A connection to the leader and its endpoint, waiting through a failover.
    async fn connect(&self) -> Option<(TcpStream, String)> {
        let deadline = Instant::now() + FAILOVER_WAIT;
        let mut wait = RETRY_FIRST;
        loop {
            if let Some(at) = self.leader().await {
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(at.as_str())).await {
                    Ok(Ok(stream)) => return Some((stream, at)),
                    Ok(Err(e)) => tracing::debug!(leader = %at, error = %e, "the leader did not accept a connection"),
                    Err(_) => tracing::debug!(leader = %at, "the leader did not accept a connection in time"),
                }
                self.forget(&at).await;
            }
            if Instant::now() + wait > deadline {
                return None;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// The leader's endpoint: the one known, or the lease's if a replica leads now.
    async fn leader(&self) -> Option<String> {
        if self.leading.load(Ordering::Acquire) {
            return Some(self.local.to_string());
        }
        let mut known = self.leader.lock().await;
        if known.is_none() {
            match store::Replicas::read(&self.store).await {
                Ok(r) if r.leading && !r.endpoint.is_empty() && r.endpoint != self.own => {
                    tracing::info!(leader = %r.endpoint, holder = %r.leader, "passing connections to the leader");
                    *known = Some(r.endpoint);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "reading the lease for the leader's endpoint"),
            }
        }
        known.clone()
    }

    /// Takes `endpoint` as the leader's from now on: the lease names a new holder, which
    /// serves there (empty: it did not say; this replica's own: it leads, see
    /// [`Standby::lead`]).
    pub async fn learn(&self, endpoint: &str) {
        if endpoint.is_empty() || endpoint == self.own {
            return;
        }
        let mut known = self.leader.lock().await;
        if known.as_deref() != Some(endpoint) {
            tracing::info!(leader = %endpoint, "a new leader took the lease; passing requests to it");
            *known = Some(endpoint.to_string());
        }
    }

    /// Forgets `at` as the leader's endpoint (unless another connection already has): it
    /// did not accept a connection.
    pub async fn forget(&self, at: &str) {
        let mut known = self.leader.lock().await;
        if known.as_deref() == Some(at) {
            *known = None;
        }
    }
}

/// Where the other replicas reach this one: `--advertise-host` (with the listening port
/// unless it names one), else the address listened on, with this host's name in place of
/// an unspecified address (0.0.0.0).
pub fn endpoint(advertise_host: Option<&str>, listening: SocketAddr) -> String {
    let port = listening.port();
    match advertise_host {
        Some(host) if has_port(host) => host.to_string(),
        Some(host) => format!("{host}:{port}"),
        None if listening.ip().is_unspecified() => format!("{}:{port}", crate::datadir::hostname()),
        None => listening.to_string(),
    }
}

/// Whether `host` (as `--advertise-host` accepts it) ends with a port.
fn has_port(host: &str) -> bool {
    match host.rsplit_once(':') {
        Some((h, _)) => !h.contains(':') || h.ends_with(']'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_the_advertised_host_with_a_port() {
        let on = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(endpoint(Some("a.example"), on("0.0.0.0:7447")), "a.example:7447");
        assert_eq!(endpoint(Some("a.example:80"), on("0.0.0.0:7447")), "a.example:80");
        assert_eq!(endpoint(Some("[fd00::1]"), on("[::]:7447")), "[fd00::1]:7447");
        assert_eq!(endpoint(Some("[fd00::1]:9"), on("[::]:7447")), "[fd00::1]:9");
        assert_eq!(endpoint(None, on("10.0.0.5:7447")), "10.0.0.5:7447");
        assert!(endpoint(None, on("0.0.0.0:7447")).ends_with(":7447"));
        assert!(!endpoint(None, on("0.0.0.0:7447")).starts_with("0.0.0.0"));
    }
}
