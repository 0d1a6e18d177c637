//! The embedded store: one SQLite database in write-ahead-log mode, fsync on every commit.

use std::fs::{File, TryLockError};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use crate::{Mutation, Record, Store, StoreError};

/// The schema version this code writes; older databases are migrated on open.
const SCHEMA_VERSION: i64 = 1;

/// A SQLite database file holding all records.
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// With [`SqliteStore::open_exclusive`], a descriptor of the database file holding an
    /// exclusive `flock`. On Linux `flock` and SQLite's own `fcntl` locks do not interact,
    /// so readers in other processes still work. Declared after `conn` so that it is
    /// closed after the connection: closing any descriptor of a file drops all of the
    /// process's `fcntl` locks on it, SQLite's included.
    _exclusive: Option<File>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`. The file is created readable by
    /// its owner only, because it holds secret access keys; SQLite gives its WAL and
    /// shared-memory files the same permissions.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_owner_only(path)?;
        Self::connect(path, None)
    }

    /// Opens the database as [`SqliteStore::open`] does, for a process that must be its
    /// only writer: it holds an exclusive lock on the file for as long as the store lives,
    /// so a second such process, whatever path it reaches the file by, gets
    /// [`StoreError::InUse`]. The lock is the kernel's, so it ends with the process, even
    /// one killed with SIGKILL. [`SqliteStore::open`] ignores it.
    pub fn open_exclusive(path: &Path) -> Result<Self, StoreError> {
        create_owner_only(path)?;
        let file = File::open(path).map_err(|e| StoreError::Unavailable(format!("opening {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Self::connect(path, Some(file)),
            Err(TryLockError::WouldBlock) => Err(StoreError::InUse(path.display().to_string())),
            Err(TryLockError::Error(e)) => Err(StoreError::Unavailable(format!("locking {}: {e}", path.display()))),
        }
    }

    fn connect(path: &Path, exclusive: Option<File>) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(unavailable)?;
        // WAL lets readers in other processes (`berth account ...`) work beside the server;
        // synchronous=FULL fsyncs the log on every commit, which is what makes an
        // acknowledged write survive a power loss and not only a process crash.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             PRAGMA busy_timeout=10000;
             PRAGMA foreign_keys=ON;",
        )
        .map_err(unavailable)?;
        migrate(&conn)?;
        Ok(SqliteStore { path: path.to_path_buf(), conn: Mutex::new(conn), _exclusive: exclusive })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction open (rusqlite rolls
        // back on drop), so the connection is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Creates the database file if it is missing, readable by its owner only.
fn create_owner_only(path: &Path) -> Result<(), StoreError> {
    // Two processes may start at once: the one that did not create the file uses it.
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StoreError::Unavailable(format!("creating {}: {e}", path.display()))),
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| StoreError::Unavailable(format!("restricting {}: {e}", path.display())))
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS records (
             tbl TEXT NOT NULL,
             key TEXT NOT NULL,
             value BLOB NOT NULL,
             PRIMARY KEY (tbl, key)
         ) WITHOUT ROWID;",
    )
    .map_err(unavailable)?;
    let version: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE name = 'schema_version'", [], |r| r.get(0))
        .optional()
        .map_err(unavailable)?;
    match version {
        None => {
            conn.execute("INSERT INTO meta (name, value) VALUES ('schema_version', ?1)", params![SCHEMA_VERSION])
                .map_err(unavailable)?;
        }
        Some(v) if v > SCHEMA_VERSION => {
            return Err(StoreError::Corrupt(format!(
                "the database has schema version {v}, newer than this Berth ({SCHEMA_VERSION}); run a newer Berth"
            )))
        }
        Some(_) => {}
    }
    Ok(())
}

impl Store for SqliteStore {
    fn load(&self) -> Result<Vec<Record>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT tbl, key, value FROM records ORDER BY tbl, key").map_err(unavailable)?;
        let rows = stmt
            .query_map([], |r| Ok(Record { table: r.get(0)?, key: r.get(1)?, value: r.get(2)? }))
            .map_err(unavailable)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
    }

    fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let conn = self.conn();
        conn.query_row("SELECT value FROM records WHERE tbl = ?1 AND key = ?2", params![table, key], |r| r.get(0))
            .optional()
            .map_err(unavailable)
    }

    fn commit(&self, batch: &[Mutation]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(unavailable)?;
        {
            let mut put = tx
                .prepare_cached("INSERT INTO records (tbl, key, value) VALUES (?1, ?2, ?3) ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value")
                .map_err(unavailable)?;
            let mut del = tx.prepare_cached("DELETE FROM records WHERE tbl = ?1 AND key = ?2").map_err(unavailable)?;
            for m in batch {
                match m {
                    Mutation::Put(r) => put.execute(params![r.table, r.key, r.value]).map_err(unavailable)?,
                    Mutation::Delete { table, key } => del.execute(params![table, key]).map_err(unavailable)?,
                };
            }
        }
        tx.commit().map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(t: &str, k: &str, v: &str) -> Mutation {
        Mutation::Put(Record { table: t.into(), key: k.into(), value: v.as_bytes().to_vec() })
    }

    #[test]
    fn commits_survive_reopen_and_deletes_apply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.commit(&[put("a", "1", "x"), put("a", "2", "y"), put("b", "1", "z")]).unwrap();
            s.commit(&[put("a", "1", "x2"), Mutation::Delete { table: "a".into(), key: "2".into() }]).unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let all = s.load().unwrap();
        let flat: Vec<_> = all.iter().map(|r| (r.table.as_str(), r.key.as_str(), r.value.as_slice())).collect();
        assert_eq!(flat, vec![("a", "1", &b"x2"[..]), ("b", "1", &b"z"[..])]);
        assert_eq!(s.get("b", "1").unwrap().as_deref(), Some(&b"z"[..]));
        assert_eq!(s.get("b", "2").unwrap(), None);
    }

    #[test]
    fn database_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.db");
        SqliteStore::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn an_exclusive_store_shuts_out_other_exclusive_opens_but_not_shared_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.db");
        let server = SqliteStore::open_exclusive(&path).unwrap();
        // Another path to the same file is the same file to the kernel.
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        for p in [&path, &link] {
            assert!(matches!(SqliteStore::open_exclusive(p), Err(StoreError::InUse(_))), "{}", p.display());
        }
        // `berth account ...` writes beside the server.
        SqliteStore::open(&path).unwrap().commit(&[put("a", "1", "x")]).unwrap();
        assert_eq!(server.get("a", "1").unwrap().as_deref(), Some(&b"x"[..]));
        server.commit(&[put("a", "2", "y")]).unwrap();
        drop(server);
        let again = SqliteStore::open_exclusive(&link).unwrap();
        assert_eq!(again.load().unwrap().len(), 2);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.conn().execute("UPDATE meta SET value = 99 WHERE name = 'schema_version'", []).unwrap();
        }
        assert!(matches!(SqliteStore::open(&path), Err(StoreError::Corrupt(_))));
    }
}
