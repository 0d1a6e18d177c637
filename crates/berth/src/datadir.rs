//! The data directory: its layout, its permissions, the files other commands read, and
//! the lock that lets one server at a time use it.
//!
//! Decision: a server holds two kernel locks (`flock`) for its whole life: one on
//! `berth.lock`, whose content names the holder for the refusal message, and one on the
//! database file itself, which also catches a second server that reaches the database by
//! another path (or after `berth.lock` was deleted). The kernel drops both when the
//! process ends however it ends, so a `kill -9` leaves nothing to clean up, and the lock
//! file is never removed (removing it would let two processes lock two different files).
//! `berth account`, `berth key` and the other commands do not take the lock: SQLite
//! serializes their writes with the server's.
//!
//! With `--store postgres://...` the records live in PostgreSQL instead (the data dir
//! keeps logs, registry blobs and the master key, still under the server's lock): the
//! server opens the store as its writer, taking the lease that fences any previous writer
//! of that database, and waits for a PostgreSQL that is not up yet, retrying with backoff;
//! the other commands open it without the lease (see `store::PgStore`).

use std::fs::{File, TryLockError};
use std::io::{Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use control_plane::auth::Credentials;
use store::{PgStore, PgUrl, SqliteStore, Store, StoreError};

/// The database file inside the data dir.
const DATABASE: &str = "berth.db";
/// Locked by the server using the data dir; says which process that is.
const LOCK: &str = "berth.lock";
/// Written on start with the URL the server answers on, read by `berth env`.
const ENDPOINT: &str = "endpoint";
/// Written on start when Berth serves TLS: the path of the CA bundle clients need.
const CA_BUNDLE: &str = "ca-bundle";

#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    store: Arc<dyn Store>,
    /// Held by the server for as long as it runs; `None` for the other commands.
    lock: Option<ServerLock>,
    /// On PostgreSQL, this server's leadership among the replicas on the database.
    leadership: Option<store::Leadership>,
}

impl DataDir {
    /// Creates the data dir if needed (owner-only: it holds secret keys) and claims it for
    /// this server process. Fails at once, naming the holder, if another server has it.
    /// The store is opened by what [`Claim`] is turned into.
    pub fn claim(path: &Path) -> anyhow::Result<Claim> {
        std::fs::create_dir_all(path).with_context(|| format!("creating the data dir {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting the data dir {} to its owner", path.display()))?;
        let lock = ServerLock::take(path)?;
        Ok(Claim { path: path.to_path_buf(), lock })
    }

    /// Opens a data dir that `berth up` has already created, with its store.
    pub fn open_existing(path: &Path, store: Option<&PgUrl>) -> anyhow::Result<Self> {
        if let Some(url) = store {
            if !path.is_dir() {
                bail!(
                    "{} is not a Berth data dir; start Berth with `berth server --data-dir {} --store ...` first",
                    path.display(),
                    path.display()
                );
            }
            let store = PgStore::open_unleased(url).with_context(|| format!("opening the store {url}"))?;
            return Ok(DataDir { path: path.to_path_buf(), store: Arc::new(store), lock: None, leadership: None });
        }
        if !path.join(DATABASE).exists() {
            bail!(
                "{} is not a Berth data dir; start Berth with `berth up --data-dir {}` first",
                path.display(),
                path.display()
            );
        }
        Self::open(path)
    }

    fn open(path: &Path) -> anyhow::Result<Self> {
        let store = SqliteStore::open(&path.join(DATABASE))
            .with_context(|| format!("opening the store in {}", path.display()))?;
        Ok(DataDir { path: path.to_path_buf(), store: Arc::new(store), lock: None, leadership: None })
    }

    /// Resolves once another replica leads (never on SQLite, where this server is the
    /// only one): the server then stops.
    pub async fn leadership_lost(&self) {
        match &self.leadership {
            Some(l) => l.lost().await,
            None => std::future::pending().await,
        }
    }

    /// Whether another replica leads now (never on SQLite).
    pub fn deposed(&self) -> bool {
        self.leadership.as_ref().is_some_and(store::Leadership::is_lost)
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    pub fn credentials(&self) -> anyhow::Result<Credentials> {
        Ok(Credentials::new(self.store()))
    }

    /// An access key of `account` (the first account's when `None`), for Berth's own
    /// commands that call the running server.
    pub fn account_key(&self, account: Option<&str>) -> anyhow::Result<control_plane::auth::AccessKey> {
        let creds = self.credentials()?;
        match account {
            None => creds.first_key()?.context("the data dir has no access key; run `berth up` once to create one"),
            Some(id) => {
                let accounts = creds.list()?;
                let Some((_, keys)) = accounts.into_iter().find(|(a, _)| a.id.as_str() == id) else {
                    bail!("there is no account {id}; `berth account list` shows the accounts");
                };
                keys.into_iter().next().context("that account has no access key; create one with `berth key create`")
            }
        }
    }

    pub fn write_endpoint(&self, url: &str) -> anyhow::Result<()> {
        // Written to a temporary name and renamed, so a reader never sees half a URL.
        let tmp = self.path.join(format!("{ENDPOINT}.tmp"));
        std::fs::write(&tmp, url).context("writing the endpoint file")?;
        std::fs::rename(&tmp, self.path.join(ENDPOINT)).context("writing the endpoint file")?;
        if let Some(lock) = &self.lock {
            lock.record(Some(url)).context("recording the endpoint in the lock file")?;
        }
        Ok(())
    }

    /// Records (or, with `None`, forgets) the CA bundle that `berth env` hands out.
    pub fn write_ca_bundle(&self, path: Option<&Path>) -> anyhow::Result<()> {
        let file = self.path.join(CA_BUNDLE);
        match path {
            Some(p) => {
                let tmp = self.path.join(format!("{CA_BUNDLE}.tmp"));
                std::fs::write(&tmp, p.as_os_str().as_encoded_bytes()).context("writing the ca-bundle file")?;
                std::fs::rename(&tmp, &file).context("writing the ca-bundle file")?;
            }
            None => match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).context("removing the ca-bundle file");
                }
                _ => {}
            },
        }
        Ok(())
    }

    /// The CA bundle of a Berth serving TLS.
    pub fn ca_bundle(&self) -> anyhow::Result<Option<PathBuf>> {
        match std::fs::read_to_string(self.path.join(CA_BUNDLE)) {
            Ok(text) => Ok(Some(PathBuf::from(text.trim_end_matches('\n')))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context("reading the ca-bundle file"),
        }
    }

    pub fn endpoint(&self) -> anyhow::Result<String> {
        let text = std::fs::read_to_string(self.path.join(ENDPOINT))?;
        Ok(text.trim().to_string())
    }
}

/// A data dir this server holds, before its store is open.
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
    lock: ServerLock,
}

impl Claim {
    /// Opens the data dir's SQLite database exclusively.
    pub fn open_sqlite(self) -> anyhow::Result<DataDir> {
        let Claim { path, lock } = self;
        let store = match SqliteStore::open_exclusive(&path.join(DATABASE)) {
            Ok(store) => store,
            Err(StoreError::InUse(_)) => {
                // Reached by another path than its server's data dir: name that server if
                // its lock file is beside the database (and is not the one just taken).
                let db = std::fs::canonicalize(path.join(DATABASE)).unwrap_or_else(|_| path.join(DATABASE));
                let own = std::fs::canonicalize(&path).ok();
                let holder = match db.parent() {
                    Some(d) if Some(d) != own.as_deref() => describe_holder(&d.join(LOCK)),
                    _ => String::new(),
                };
                bail!(
                    "the database {} is in use by another Berth server{holder}: stop it, or use another --data-dir",
                    db.display()
                );
            }
            Err(e) => return Err(e).with_context(|| format!("opening the store in {}", path.display())),
        };
        Ok(DataDir { path, store: Arc::new(store), lock: Some(lock), leadership: None })
    }

    /// Waits until this server leads the replicas on the PostgreSQL store `url` (at once
    /// when none does; as a standby while another leads), then takes its writer lease,
    /// recording `endpoint` (`host:port`, where the other replicas reach this one) with it,
    /// and waiting for the database to be reachable.
    pub async fn lead(self, url: &PgUrl, endpoint: &str) -> anyhow::Result<DataDir> {
        let Claim { path, lock } = self;
        let holder = format!("{} pid {} data dir {}", hostname(), std::process::id(), path.display());
        let leadership = store::Leadership::acquire(url, &holder)
            .await
            .with_context(|| format!("joining the leader election on {url}"))?;
        let store = open_writer_with_retry(url, holder, endpoint.to_string()).await?;
        Ok(DataDir { path, store: Arc::new(store), lock: Some(lock), leadership: Some(leadership) })
    }
}

/// The first wait before retrying an unreachable PostgreSQL, doubled after each failure
/// up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Opens the PostgreSQL store as the writer, retrying for as long as it takes while the
/// database is unreachable (a server started before its database, or with it): each
/// failure is logged with the next wait. A database this Berth cannot use (a newer schema)
/// fails at once.
async fn open_writer_with_retry(url: &PgUrl, holder: String, endpoint: String) -> anyhow::Result<PgStore> {
    let mut wait = RETRY_FIRST;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let (u, h, e) = (url.clone(), holder.clone(), endpoint.clone());
        match tokio::task::spawn_blocking(move || PgStore::open_writer_at(&u, &h, &e)).await? {
            Ok(store) => return Ok(store),
            Err(StoreError::Unavailable(e)) => {
                tracing::warn!(store = %url, attempt, retry_in = ?wait, error = %e, "PostgreSQL is not reachable yet; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
            Err(e) => return Err(e).with_context(|| format!("opening the store {url}")),
        }
    }
}

/// This host's name, for the lease's holder.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into())
}

/// The lock of a server on its data dir: an exclusive `flock` on `berth.lock`, which
/// holds the server's process id, start time and, once it listens, its endpoint.
#[derive(Debug)]
struct ServerLock {
    file: File,
    started: String,
}

impl ServerLock {
    fn take(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(LOCK);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => bail!(
                "the data dir {} is in use by another Berth server{}: stop it, or use another --data-dir",
                dir.display(),
                describe_holder(&path)
            ),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking the data dir's lock file {}", path.display()))
            }
        }
        let started =
            time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let lock = ServerLock { file, started };
        lock.record(None).with_context(|| format!("writing the lock file {}", path.display()))?;
        Ok(lock)
    }

    /// Rewrites the lock file with this process's id, start time and `endpoint`.
    fn record(&self, endpoint: Option<&str>) -> std::io::Result<()> {
        let mut text = format!("pid {}\nstarted {}\n", std::process::id(), self.started);
        if let Some(url) = endpoint {
            text.push_str(&format!("endpoint {url}\n"));
        }
        let mut file = &self.file;
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(text.as_bytes())
    }
}

/// The server running on the data dir at `dir`, described from its lock file (`process
/// 1234, started ..., serving ...`); `None` when no server holds the lock.
pub fn describe_server(dir: &Path) -> Option<String> {
    let path = dir.join(LOCK);
    let file = std::fs::File::open(&path).ok()?;
    match file.try_lock_shared() {
        // Nobody holds it exclusively: no server runs.
        Ok(()) => None,
        Err(_) => Some(describe_holder(&path).trim().trim_start_matches('(').trim_end_matches(')').to_string()),
    }
}

/// ` (process 1234, started ..., serving ...)` from the lock file at `path`, or nothing if
/// it names no process.
fn describe_holder(path: &Path) -> String {
    // The holder writes its id right after locking; a start racing with it may find the
    // file still empty for a moment.
    let mut text = String::new();
    for _ in 0..20 {
        text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains("pid ") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')).map(str::trim);
    let Some(pid) = field("pid") else {
        return String::new();
    };
    let mut out = format!(" (process {pid}");
    if let Some(started) = field("started") {
        out.push_str(&format!(", started {started}"));
    }
    if let Some(endpoint) = field("endpoint") {
        out.push_str(&format!(", serving {endpoint}"));
    }
    out.push(')');
    out
}
