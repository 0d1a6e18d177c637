//! Which replica leads: the one whose session holds PostgreSQL's advisory lock
//! [`LEADER_LOCK`]. Every `berth server` on the same database joins the election before it
//! takes the writer lease; one leads, the others wait as standbys, each blocked in
//! `pg_advisory_lock`. When the leader's session ends (its process dies, its host stops
//! answering PostgreSQL's keepalives, an operator terminates it), PostgreSQL grants the
//! lock to one waiting standby, which then takes the lease (fencing the old leader's
//! commits, see the module above) and loads the state.
//!
//! - Sessions are watched from both ends: TCP keepalives on the client (so a leader
//!   cut off from PostgreSQL learns it) and on the server (`tcp_keepalives_*`, so
//!   PostgreSQL releases a dead host's lock): about [`KEEPALIVE_DETECTION`].
//! - A leader whose election session breaks (PostgreSQL restarted, a network cut) tries to
//!   take the lock again on a new session. If its old session still holds it (the client
//!   gave up on a connection the server still keeps), that session is ended first. If it
//!   gets the lock back before any standby, it still leads with the lease it holds; if a
//!   standby got it first, [`Leadership::lost`] resolves and the server stops: its commits are refused from the standby's lease on,
//!   and a stopped replica is plainly visible, where a replica that can no longer write is
//!   not.

use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::Client;

use super::{db_error, open_client, open_watched, PgUrl};
use crate::StoreError;

/// The advisory lock's key: "berth_ld".
pub const LEADER_LOCK: i64 = 0x6265_7274_685f_6c64;
/// Keepalive probes: idle time, interval and count. Four seconds of silence end a session:
/// a new leader within five seconds of a partition or a dead host (issue 18's target), at
/// the cost of deposing a leader whose network to PostgreSQL stalls that long (it stops,
/// fenced, and its supervisor starts it again as a follower).
const KEEPALIVE: (Duration, Duration, u32) = (Duration::from_secs(2), Duration::from_secs(1), 2);
/// About how long a dead session's lock is held before PostgreSQL releases it.
pub const KEEPALIVE_DETECTION: Duration = Duration::from_secs(4);
/// Waits between attempts to reach PostgreSQL.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// This replica's leadership, held until it is dropped or lost.
pub struct Leadership {
    lost: watch::Receiver<bool>,
    keeper: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership").field("lost", &*self.lost.borrow()).finish()
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        // Ends the session, which lets a standby lead.
        self.keeper.abort();
    }
}

impl Leadership {
    /// Waits until this replica leads (at once when no other does), retrying while
    /// PostgreSQL cannot be reached. `holder` names the replica to people (in
    /// `pg_stat_activity` and the log).
    pub async fn acquire(url: &PgUrl, holder: &str) -> Result<Leadership, StoreError> {
        let session = lock(url, holder, true).await?.expect("a waiting lock is always taken");
        let (tx, lost) = watch::channel(false);
        let keeper = tokio::spawn(keep(url.clone(), holder.to_string(), session, tx));
        Ok(Leadership { lost, keeper })
    }

    /// Resolves once another replica leads.
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|l| *l).await;
    }

    /// Whether another replica leads now.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }
}

/// A session holding the lock, its backend's process id, and what resolves when its
/// connection ends.
struct Session {
    /// Held, never used: dropping it ends the session, which frees the lock.
    _client: Client,
    pid: i32,
    ended: tokio::task::JoinHandle<()>,
}

/// A session holding the lock: waiting for it (`wait`) or only trying.
/// `Ok(None)`: another session holds it.
async fn try_session(url: &PgUrl, holder: &str, wait: bool) -> Result<Option<Session>, StoreError> {
    let mut config = url.config().clone();
    let (idle, interval, retries) = KEEPALIVE;
    config.application_name(holder).keepalives(true).keepalives_idle(idle).keepalives_interval(interval);
    config.keepalives_retries(retries).connect_timeout(Duration::from_secs(5));
    let (client, ended) = open_watched(&config).await?;
    let server_side = format!(
        "SET tcp_keepalives_idle = {}; SET tcp_keepalives_interval = {}; SET tcp_keepalives_count = {retries}",
        idle.as_secs(),
        interval.as_secs()
    );
    client.batch_execute(&server_side).await.map_err(db_error)?;
    let got: bool =
        client.query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK]).await.map_err(db_error)?.get(0);
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await.map_err(db_error)?.get(0);
    if got {
        return Ok(Some(Session { _client: client, pid, ended }));
    }
    if !wait {
        return Ok(None);
    }
    let leader: String = client
        .query_opt("SELECT holder FROM berth.lease", &[])
        .await
        .ok()
        .flatten()
        .map(|r| r.get(0))
        .unwrap_or_default();
    tracing::info!(leader = %leader, "standby: another replica leads; this one takes over when it stops");
    client.execute("SELECT pg_advisory_lock($1)", &[&LEADER_LOCK]).await.map_err(db_error)?;
    Ok(Some(Session { _client: client, pid, ended }))
}

/// Takes the lock, retrying while PostgreSQL is unreachable (or its session breaks while
/// waiting). `Ok(None)` (only without `wait`): another replica holds it.
async fn lock(url: &PgUrl, holder: &str, wait: bool) -> Result<Option<Session>, StoreError> {
    let mut backoff = RETRY_FIRST;
    loop {
        match try_session(url, holder, wait).await {
            Ok(Some(session)) => {
                tracing::info!(holder = %holder, "this replica leads");
                return Ok(Some(session));
            }
            Ok(None) => return Ok(None),
            Err(StoreError::Unavailable(e)) => {
                tracing::warn!(store = %url, retry_in = ?backoff, error = %e, "PostgreSQL is not reachable yet; retrying (leader election)");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Holds the session; when it breaks, takes the lock again if no standby has, else says
/// the leadership is lost.
async fn keep(url: PgUrl, holder: String, mut session: Session, lost: watch::Sender<bool>) {
    loop {
        // The session holds the lock for as long as its connection lives.
        let _ = (&mut session.ended).await;
        tracing::warn!("the leader election's PostgreSQL session ended; taking the lock again");
        match lock_again(&url, &holder, session.pid).await {
            Ok(Some(again)) => session = again,
            Ok(None) => {
                tracing::error!("another replica leads now; this one stops");
                let _ = lost.send(true);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot take the leader lock again; this replica stops");
                let _ = lost.send(true);
                return;
            }
        }
    }
}

/// The lock again on a new session, after the session of process `old` broke. The server
/// may not have noticed yet that `old` is gone and still hold the lock for it: then `old`
/// is ended, and whoever waited longest (a standby, if one waits) gets the lock.
async fn lock_again(url: &PgUrl, holder: &str, old: i32) -> Result<Option<Session>, StoreError> {
    if let Some(session) = lock(url, holder, false).await? {
        return Ok(Some(session));
    }
    let ended: bool = session_client(url, holder)
        .await?
        .query_one(
            "SELECT count(pg_terminate_backend(l.pid)) > 0 FROM pg_locks l WHERE l.pid = $1 AND l.granted \
             AND l.locktype = 'advisory' AND l.classid = ($2::bigint >> 32)::oid \
             AND l.objid = ($2::bigint & 4294967295)::oid AND l.objsubid = 1",
            &[&old, &LEADER_LOCK],
        )
        .await
        .map_err(db_error)?
        .get(0);
    if !ended {
        return Ok(None);
    }
    tracing::warn!(pid = old, "this replica's old election session still held the lock; it was ended");
    // Ending a backend releases its locks a moment later.
    for _ in 0..20 {
        if let Some(session) = lock(url, holder, false).await? {
            return Ok(Some(session));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(None)
}

/// A session for a question to the server.
async fn session_client(url: &PgUrl, name: &str) -> Result<Client, StoreError> {
    let mut config = url.config().clone();
    config.application_name(name).connect_timeout(Duration::from_secs(5));
    open_client(&config).await
}

/// Who leads the replicas on a database, and who stands by, as `berth status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replicas {
    /// The lease's holder (the leader, or the last one if none leads now), its epoch and
    /// when it took the lease (RFC 3339).
    pub leader: String,
    /// Where the lease's holder serves (`host:port`; empty if it did not say).
    pub endpoint: String,
    pub epoch: i64,
    pub since: String,
    /// Whether a session holds the leader lock now.
    pub leading: bool,
    /// The replicas waiting for the lock, by name.
    pub standbys: Vec<String>,
    /// The last change committed (the change log's sequence number).
    pub last_change: i64,
}

impl Replicas {
    pub async fn read(url: &PgUrl) -> Result<Replicas, StoreError> {
        let client = session_client(url, "berth status").await?;
        let lease = client
            .query_one(
                "SELECT holder, epoch, to_char(taken_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), endpoint \
                 FROM berth.lease",
                &[],
            )
            .await
            .map_err(db_error)?;
        // An advisory lock on a bigint key is held under its two halves.
        let sessions = client
            .query(
                "SELECT a.application_name, l.granted FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid \
                 AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 ORDER BY a.backend_start",
                &[&LEADER_LOCK],
            )
            .await
            .map_err(db_error)?;
        let last_change: i64 =
            client.query_one("SELECT seq FROM berth.change_counter", &[]).await.map_err(db_error)?.get(0);
        Ok(Replicas {
            leader: lease.get(0),
            endpoint: lease.get(3),
            epoch: lease.get(1),
            since: lease.get(2),
            leading: sessions.iter().any(|r| r.get::<_, bool>(1)),
            standbys: sessions.iter().filter(|r| !r.get::<_, bool>(1)).map(|r| r.get(0)).collect(),
            last_change,
        })
    }
}
