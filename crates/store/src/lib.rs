//! The durable store: opaque records in named tables, written in atomic, durable batches.
//!
//! The store knows nothing of ECS. The control plane serializes its resources into
//! [`Record`]s and commits every change through [`Store::commit`]; on start it reads them
//! all back with [`Store::load`] to rebuild its in-memory view. This crate is the only one
//! that contains SQL.
//!
//! Two implementations: [`SqliteStore`], one embedded file (the default, `berth up`), and
//! [`PgStore`], a PostgreSQL database that several replicas share, written by one fenced
//! writer at a time and carrying a change log for followers (its module docs give the
//! design).

mod postgres;
mod sqlite;

pub use postgres::{
    ChangeFeed, Epoch, Leadership, PgStore, PgUrl, Replicas, CHANGES_CHANNEL, CHANGES_KEPT, KEEPALIVE_DETECTION,
    LEADER_LOCK,
};
pub use sqlite::SqliteStore;

/// One stored value: `value` is the serialized resource, `(table, key)` its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub table: String,
    pub key: String,
    pub value: Vec<u8>,
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Put(Record),
    Delete { table: String, key: String },
}

/// What went wrong, named by how the caller reacts.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The batch was not written; nothing of it is visible. Retrying may succeed.
    #[error("the store could not complete the operation: {0}")]
    Unavailable(String),
    /// Stored data cannot be read back as written; an operator must look.
    #[error("the store holds data it cannot read: {0}")]
    Corrupt(String),
    /// Another process holds the store exclusively; it must stop before this one opens it.
    #[error("the store is in use by another process: {0}")]
    InUse(String),
    /// Another store has taken the writer lease since this one took it: this store must
    /// stop writing (it will never commit again) and leave writes to the new leader.
    /// Nothing of the batch was written.
    #[error("this replica is no longer the store's writer: {0}")]
    Fenced(String),
    /// The connection failed while a commit was in flight and the store could not find out
    /// whether it was committed: the caller must read the store again (`load`) before it
    /// relies on what it believes the store holds.
    #[error("the store may or may not have committed the batch: {0}")]
    OutcomeUnknown(String),
}

/// One record as a follower learns it from the change log: its value now, or gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub table: String,
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// What a follower reads to catch up with the writer ([`PgStore::catch_up`]).
#[derive(Debug)]
pub enum Catchup {
    /// The records touched by the batches after the follower's position, up to and
    /// including `through`, as they are at `through`; `more` when later batches are
    /// committed already (one read takes a bounded number of batches).
    Changes { through: i64, changes: Vec<Change>, more: bool },
    /// The log no longer reaches back to the follower's position: every record, as of
    /// `through`.
    Everything { through: i64, records: Vec<Record> },
}

/// A durable, transactional home for records.
pub trait Store: std::fmt::Debug + Send + Sync + 'static {
    /// Every record, in `(table, key)` order.
    fn load(&self) -> Result<Vec<Record>, StoreError>;
    /// One record, read from durable storage (not from any cache).
    fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Applies all mutations atomically. Returns only once they are durable: after a
    /// crash at any later moment, `load` returns them.
    fn commit(&self, batch: &[Mutation]) -> Result<(), StoreError>;
    /// Where this store's last commit is in the change log followers read: the log's
    /// sequence number of that batch (PostgreSQL), or `None` for a store without one.
    fn position(&self) -> Option<i64> {
        None
    }
}
