//! The shared store: records in PostgreSQL, committed by one fenced writer at a time.
//!
//! Design (the base that followers, forwarding and failover build on):
//! - **One writer, fenced.** `berth.lease` holds an `epoch`. [`PgStore::open_writer`]
//!   takes the lease by incrementing it, and every commit of that store calls
//!   `berth.commit_batch` with its epoch, which locks the lease row for share and refuses
//!   (SQLSTATE `BF001`, [`StoreError::Fenced`]) unless the epoch is still the lease's. So
//!   once another store has taken the lease, the old one can never commit again, even if
//!   it has not noticed; and a store taking the lease waits for a commit in flight.
//!   *When* a replica takes the lease is decided by an election (`election`: a session
//!   advisory lock held by the leader, taken over when its session dies); fencing does
//!   not depend on it being right.
//! - **A change log for followers.** Each commit appends `(seq, epoch, batch, tables,
//!   keys)` to `berth.changes` and `NOTIFY berth_changes, '<seq>'` after it commits.
//!   Sequence numbers come from a counter row updated inside the commit, so they follow
//!   commit order without gaps: a follower that reads `seq > last` with the records in one
//!   snapshot sees a prefix, applies the touched keys' current values, and waits for the
//!   next notification. The log keeps the last [`CHANGES_KEPT`] batches (trimmed every
//!   thousandth commit); a follower further behind reloads everything with `load`.
//! - **One round trip a commit.** A batch is three pairs of arrays handed to one function
//!   call, which runs as its own transaction; PostgreSQL's default `synchronous_commit`
//!   makes it durable before the answer.
//! - **Safe from any thread.** [`Store`] is synchronous and is called both from the
//!   control plane's writer thread and from async handlers (authentication reads keys on a
//!   cache miss). The connection therefore lives on a runtime of its own (one thread); a
//!   call hands a future to it and waits on a channel, which never nests runtimes.
//!   Concurrent calls share the one connection (tokio-postgres pipelines them); a broken
//!   connection is replaced on the next call.
//! - **A commit whose answer was lost is resolved, not guessed.** When the connection
//!   breaks (or PostgreSQL stops answering) during a commit, the store opens a new
//!   connection, ends the old session if it is still there and waits until it is gone (its
//!   transaction is then either committed or rolled back for good), and looks for the
//!   commit's token in the change log. If it cannot find out within [`RESOLVE_TIMEOUT`] it
//!   answers [`StoreError::OutcomeUnknown`], and the caller re-reads the store.
//! - **A store without the lease** ([`PgStore::open_unleased`]) commits unfenced: it is for
//!   Berth's commands (`berth account`, `berth key`) that write only the tables the
//!   control plane reads through (accounts and keys), never those its writer owns.

mod election;
mod follow;
mod schema;
mod url;

pub use election::{Leadership, Replicas, KEEPALIVE_DETECTION, LEADER_LOCK};
pub use follow::ChangeFeed;

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Statement};

use crate::{Mutation, Record, Store, StoreError};

pub use schema::{CHANGES_CHANNEL, CHANGES_KEPT};
pub use url::PgUrl;

/// The longest any one store call may take before it fails as unavailable: PostgreSQL
/// behind a partition must not hang the writer forever.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a commit whose answer was lost may take to be resolved.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The lease this store holds, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(pub i64);

/// A PostgreSQL database holding all records.
pub struct PgStore {
    url: PgUrl,
    shared: Arc<Shared>,
    /// The connection's own runtime; taken on drop to shut it down without blocking (a
    /// store may be dropped inside another runtime, where blocking panics).
    runtime: Option<tokio::runtime::Runtime>,
    epoch: Option<Epoch>,
    /// Tokens of this store's commits: a random base plus a counter, so a commit whose
    /// answer was lost can be looked up in the change log.
    batches: AtomicI64,
}

/// What the calls running on the store's runtime share.
struct Shared {
    config: tokio_postgres::Config,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    /// The change log's sequence number of this store's latest commit.
    position: AtomicI64,
    /// A follower's connection for its reads of the change log (`follow`).
    follow: tokio::sync::Mutex<Option<Client>>,
}

/// One connection with its prepared statements.
struct Conn {
    client: Client,
    /// The server process of this session, to wait for it to end when its answer is lost.
    backend: i32,
    get: Statement,
    load: Statement,
    commit: Statement,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.url).field("epoch", &self.epoch).finish()
    }
}

impl PgStore {
    /// Connects, migrates the schema, and takes the writer lease for `holder` (a name for
    /// people: host and process). Any store that held the lease is fenced from then on.
    pub fn open_writer(url: &PgUrl, holder: &str) -> Result<Self, StoreError> {
        Self::open_writer_at(url, holder, "")
    }

    /// [`PgStore::open_writer`] for a server that other replicas reach at `endpoint`
    /// (`host:port`), recorded with the lease: standbys pass their connections there.
    pub fn open_writer_at(url: &PgUrl, holder: &str, endpoint: &str) -> Result<Self, StoreError> {
        let mut store = Self::connect(url)?;
        let (holder, endpoint) = (holder.to_string(), endpoint.to_string());
        let epoch = store.call(move |conn| async move {
            let row = conn
                .client
                .query_one(
                    "UPDATE berth.lease SET epoch = epoch + 1, holder = $1, endpoint = $2, taken_at = now() \
                     RETURNING epoch",
                    &[&holder, &endpoint],
                )
                .await
                .map_err(db_error)?;
            Ok(Epoch(row.get(0)))
        })?;
        tracing::info!(url = %url, epoch = epoch.0, "took the PostgreSQL store's writer lease");
        store.epoch = Some(epoch);
        Ok(store)
    }

    /// Connects and migrates the schema without taking the lease: its commits are not
    /// fenced (see the module docs for who may use it).
    pub fn open_unleased(url: &PgUrl) -> Result<Self, StoreError> {
        Self::connect(url)
    }

    /// The lease this store took, if it is a writer.
    pub fn epoch(&self) -> Option<Epoch> {
        self.epoch
    }

    fn connect(url: &PgUrl) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("berth-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("starting the PostgreSQL client's thread: {e}")))?;
        let base = std::hash::RandomState::new().build_hasher().finish() as i64 & (i64::MAX >> 1);
        let store = PgStore {
            url: url.clone(),
            shared: Arc::new(Shared {
                config: url.config().clone(),
                conn: tokio::sync::Mutex::new(None),
                position: AtomicI64::new(0),
                follow: tokio::sync::Mutex::new(None),
            }),
            runtime: Some(runtime),
            epoch: None,
            batches: AtomicI64::new(base),
        };
        let shared = store.shared.clone();
        store.run(async move {
            let mut client = open_client(&shared.config).await?;
            schema::migrate(&mut client).await
        })?;
        // The first call opens the connection the store keeps.
        store.call(|_| async { Ok(()) })?;
        Ok(store)
    }

    /// Runs `f` with the store's connection (opening one if there is none or it broke) on
    /// the store's runtime, and waits for it from whatever thread this is.
    fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Conn>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send,
    {
        let shared = self.shared.clone();
        self.run(async move {
            let conn = shared.connection().await?;
            f(conn).await
        })
    }

    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let Some(runtime) = &self.runtime else {
            return Err(StoreError::Unavailable("the store is closed".into()));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let outcome = match tokio::time::timeout(CALL_TIMEOUT, fut).await {
                Ok(outcome) => outcome,
                Err(_) => Err(StoreError::Unavailable(format!("PostgreSQL did not answer within {CALL_TIMEOUT:?}"))),
            };
            let _ = tx.send(outcome);
        });
        rx.recv().map_err(|_| StoreError::Unavailable("the PostgreSQL client's thread stopped".into()))?
    }
}

impl Shared {
    async fn connection(&self) -> Result<Arc<Conn>, StoreError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(conn.clone());
        }
        *slot = None;
        let client = open_client(&self.config).await?;
        let prepare = |sql| client.prepare(sql);
        let get = prepare("SELECT value FROM berth.records WHERE tbl = $1 AND key = $2").await.map_err(db_error)?;
        let load = prepare("SELECT tbl, key, value FROM berth.records ORDER BY tbl, key").await.map_err(db_error)?;
        let commit = prepare("SELECT berth.commit_batch($1, $2, $3, $4, $5, $6, $7)").await.map_err(db_error)?;
        let backend = client.query_one("SELECT pg_backend_pid()", &[]).await.map_err(db_error)?.get(0);
        let conn = Arc::new(Conn { client, backend, get, load, commit });
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

/// Opens a connection and drives it on the current runtime until it closes.
async fn open_client(config: &tokio_postgres::Config) -> Result<Client, StoreError> {
    Ok(open_watched(config).await?.0)
}

/// [`open_client`], with a handle that resolves once the connection has ended, whatever
/// ended it (the leader election waits on it).
async fn open_watched(config: &tokio_postgres::Config) -> Result<(Client, tokio::task::JoinHandle<()>), StoreError> {
    let (client, connection) = config.connect(NoTls).await.map_err(db_error)?;
    let ended = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "the PostgreSQL connection closed");
        }
    });
    Ok((client, ended))
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Whether `e` says for certain that the statement failed: an error of the statement
/// itself. An error that ends the session (FATAL, operator intervention such as a
/// terminated backend or a shutdown, a broken connection) may come after the commit was
/// already durable, so its outcome must be looked up.
fn refused(e: &tokio_postgres::Error) -> bool {
    let Some(d) = e.as_db_error() else {
        return false;
    };
    let code = d.code().code();
    !(matches!(d.severity(), "FATAL" | "PANIC") || code.starts_with("57") || code.starts_with("08"))
}

/// Finds out whether the commit with `token`, sent on the session of server process
/// `backend` whose answer was lost (`why`), was committed: its sequence number if so.
async fn resolve(shared: &Shared, backend: i32, token: i64, why: String) -> Result<i64, StoreError> {
    tracing::warn!(error = %why, "the answer to a commit was lost; finding out whether it was committed");
    let attempt = async {
        loop {
            match resolve_once(shared, backend, token).await {
                Ok(found) => return found,
                Err(e) => {
                    tracing::debug!(error = %e, "resolving a lost commit: PostgreSQL is not reachable yet");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    };
    match tokio::time::timeout(RESOLVE_TIMEOUT, attempt).await {
        Ok(Some(seq)) => Ok(seq),
        Ok(None) => Err(StoreError::Unavailable(format!("PostgreSQL: {why}; the batch was not committed"))),
        Err(_) => Err(StoreError::OutcomeUnknown(format!("PostgreSQL: {why}"))),
    }
}

/// One attempt of [`resolve`]: the old session ended, then the change log read.
async fn resolve_once(shared: &Shared, backend: i32, token: i64) -> Result<Option<i64>, StoreError> {
    let conn = shared.connection().await?;
    if conn.backend != backend {
        // Ending it makes its transaction roll back if it has not committed yet; once it
        // is gone, the change log tells the outcome for good.
        conn.client.execute("SELECT pg_terminate_backend($1)", &[&backend]).await.map_err(db_error)?;
        loop {
            let row = conn
                .client
                .query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&backend])
                .await
                .map_err(db_error)?;
            if row.get::<_, i64>(0) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let row =
        conn.client.query_opt("SELECT seq FROM berth.changes WHERE batch = $1", &[&token]).await.map_err(db_error)?;
    Ok(row.map(|r| r.get(0)))
}

/// Maps a PostgreSQL error to how the caller reacts.
fn db_error(e: tokio_postgres::Error) -> StoreError {
    if e.code().is_some_and(|c| c.code() == schema::FENCED_SQLSTATE) {
        let message = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string());
        return StoreError::Fenced(message);
    }
    if e.code() == Some(&SqlState::DATA_CORRUPTED) || e.code() == Some(&SqlState::INDEX_CORRUPTED) {
        return StoreError::Corrupt(e.to_string());
    }
    // Display of a server error is only "db error"; its message is in the source.
    match e.as_db_error() {
        Some(d) => StoreError::Unavailable(format!("PostgreSQL: {}: {}", d.code().code(), d.message())),
        None => StoreError::Unavailable(format!("PostgreSQL: {e}")),
    }
}

/// A batch as `berth.commit_batch` takes it: each key once, the last mutation of it wins
/// (as if applied in order), puts and deletes apart.
#[derive(Debug, Default)]
struct Arrays {
    put_tbl: Vec<String>,
    put_key: Vec<String>,
    put_val: Vec<Vec<u8>>,
    del_tbl: Vec<String>,
    del_key: Vec<String>,
}

impl Arrays {
    fn of(batch: &[Mutation]) -> Arrays {
        // An upsert may not touch one row twice, so repeated keys are folded first.
        let mut last: BTreeMap<(&str, &str), Option<&[u8]>> = BTreeMap::new();
        for m in batch {
            match m {
                Mutation::Put(r) => last.insert((&r.table, &r.key), Some(&r.value)),
                Mutation::Delete { table, key } => last.insert((table, key), None),
            };
        }
        let mut a = Arrays::default();
        for ((table, key), value) in last {
            match value {
                Some(v) => {
                    a.put_tbl.push(table.to_string());
                    a.put_key.push(key.to_string());
                    a.put_val.push(v.to_vec());
                }
                None => {
                    a.del_tbl.push(table.to_string());
                    a.del_key.push(key.to_string());
                }
            }
        }
        a
    }
}

impl Store for PgStore {
    fn load(&self) -> Result<Vec<Record>, StoreError> {
        self.call(|conn| async move {
            let rows = conn.client.query(&conn.load, &[]).await.map_err(db_error)?;
            Ok(rows.into_iter().map(|r| Record { table: r.get(0), key: r.get(1), value: r.get(2) }).collect())
        })
    }

    fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (table, key) = (table.to_string(), key.to_string());
        self.call(move |conn| async move {
            let row = conn.client.query_opt(&conn.get, &[&table, &key]).await.map_err(db_error)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn commit(&self, batch: &[Mutation]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let a = Arrays::of(batch);
        let epoch = self.epoch.map(|e| e.0);
        let token = self.batches.fetch_add(1, Ordering::Relaxed);
        let shared = self.shared.clone();
        self.run(async move {
            let conn = shared.connection().await?;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
                [&epoch, &token, &a.put_tbl, &a.put_key, &a.put_val, &a.del_tbl, &a.del_key];
            let sent = conn.client.query_one(&conn.commit, &params);
            // The call's own timeout must not cut a commit short: this one leaves time to
            // resolve it.
            let seq = match tokio::time::timeout(CALL_TIMEOUT - RESOLVE_TIMEOUT, sent).await {
                Ok(Ok(row)) => row.get(0),
                // PostgreSQL refused the statement: the transaction is over, and it failed.
                Ok(Err(e)) if refused(&e) => return Err(db_error(e)),
                Ok(Err(e)) => resolve(&shared, conn.backend, token, e.to_string()).await?,
                Err(_) => resolve(&shared, conn.backend, token, "PostgreSQL did not answer".into()).await?,
            };
            shared.position.fetch_max(seq, Ordering::Release);
            Ok(())
        })
    }

    fn position(&self) -> Option<i64> {
        Some(self.shared.position.load(Ordering::Acquire))
    }
}
