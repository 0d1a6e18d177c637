//! Reading the change log, for followers: a snapshot of every record with the log's
//! position it reflects, the records touched since a position, and a feed that wakes the
//! follower when the writer commits (`LISTEN berth_changes`).
//!
//! Both reads run in one `REPEATABLE READ` transaction, so the records they return are
//! exactly those as of the position they name: the change counter and the records are
//! updated in the same transaction by every commit (see `schema.rs`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::{db_error, schema, PgStore};
use crate::{Catchup, Change, Record, StoreError};

/// The most batches one catch-up reads: a follower far behind catches up in steps, each
/// bounded in memory, and publishes between them.
const MAX_BATCHES: i64 = 2_000;

/// Between attempts to open the feed's connection: from the first, doubled up to the last.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

impl PgStore {
    /// Every record, and the change log's position they reflect.
    pub fn snapshot(&self) -> Result<(i64, Vec<Record>), StoreError> {
        let shared = self.shared.clone();
        self.run(async move {
            let mut slot = shared.follow_connection().await?;
            let client = slot.as_mut().expect("opened above");
            let tx = read_snapshot(client).await?;
            let head = head(&tx).await?;
            let records = all_records(&tx).await?;
            tx.commit().await.map_err(db_error)?;
            Ok((head, records))
        })
    }

    /// The lease's epoch and where its holder serves (`host:port`, empty if it did not
    /// say): a follower that sees the epoch grow knows a new leader took over, and where
    /// to pass requests, without waiting for the old one to stop answering.
    pub fn lease(&self) -> Result<(i64, String), StoreError> {
        let shared = self.shared.clone();
        self.run(async move {
            let mut slot = shared.follow_connection().await?;
            let client = slot.as_mut().expect("opened above");
            let row = client.query_one("SELECT epoch, endpoint FROM berth.lease", &[]).await.map_err(db_error)?;
            Ok((row.get(0), row.get(1)))
        })
    }

    /// What changed after position `after`: the touched records' current values (at most
    /// [`MAX_BATCHES`] batches' worth), or every record when the log was trimmed past
    /// `after` or the database is not the one `after` came from (its log is behind it).
    pub fn catch_up(&self, after: i64) -> Result<Catchup, StoreError> {
        let shared = self.shared.clone();
        self.run(async move {
            let mut slot = shared.follow_connection().await?;
            let client = slot.as_mut().expect("opened above");
            let tx = read_snapshot(client).await?;
            let head = head(&tx).await?;
            if head == after {
                tx.commit().await.map_err(db_error)?;
                return Ok(Catchup::Changes { through: after, changes: Vec::new(), more: false });
            }
            let oldest: i64 = tx
                .query_one("SELECT coalesce(min(seq), $1::bigint + 1) FROM berth.changes", &[&head])
                .await
                .map_err(db_error)?
                .get(0);
            if head < after || oldest > after + 1 {
                let records = all_records(&tx).await?;
                tx.commit().await.map_err(db_error)?;
                return Ok(Catchup::Everything { through: head, records });
            }
            let through = head.min(after + MAX_BATCHES);
            let rows = tx
                .query(
                    "SELECT tbls, keys FROM berth.changes WHERE seq > $1 AND seq <= $2 ORDER BY seq",
                    &[&after, &through],
                )
                .await
                .map_err(db_error)?;
            let mut touched = BTreeSet::new();
            for row in rows {
                let (tables, keys): (Vec<String>, Vec<String>) = (row.get(0), row.get(1));
                touched.extend(tables.into_iter().zip(keys));
            }
            let (tables, keys): (Vec<String>, Vec<String>) = touched.into_iter().unzip();
            let rows = tx
                .query(
                    "SELECT d.tbl, d.key, r.value FROM unnest($1::text[], $2::text[]) AS d(tbl, key) \
                     LEFT JOIN berth.records r ON r.tbl = d.tbl AND r.key = d.key",
                    &[&tables, &keys],
                )
                .await
                .map_err(db_error)?;
            let changes =
                rows.into_iter().map(|r| Change { table: r.get(0), key: r.get(1), value: r.get(2) }).collect();
            tx.commit().await.map_err(db_error)?;
            Ok(Catchup::Changes { through, changes, more: through < head })
        })
    }

    /// A feed that wakes its follower after each commit of any replica.
    pub fn change_feed(&self) -> Result<ChangeFeed, StoreError> {
        let Some(runtime) = &self.runtime else {
            return Err(StoreError::Unavailable("the store is closed".into()));
        };
        let wake = Arc::new(tokio::sync::Notify::new());
        let task = runtime.spawn(listen(self.shared.config.clone(), wake.clone()));
        Ok(ChangeFeed { wake, task })
    }
}

/// Wakes a follower when the change log grows. Notifications are coalesced: a follower
/// woken once reads everything committed until then. When the feed's connection breaks,
/// it wakes the follower too (it may have missed notifications) and reconnects.
#[derive(Debug)]
pub struct ChangeFeed {
    wake: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl ChangeFeed {
    /// Resolves at the next commit after the previous call returned (or at once if one
    /// came since).
    pub async fn changed(&self) {
        self.wake.notified().await;
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps a connection listening on the change channel, forever.
async fn listen(config: tokio_postgres::Config, wake: Arc<tokio::sync::Notify>) {
    let mut wait = RETRY_FIRST;
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                let statement = format!("LISTEN {}", schema::CHANGES_CHANNEL);
                let listening = client.batch_execute(&statement);
                // The connection is driven by polling its messages, so both go together.
                let mut listening = std::pin::pin!(listening);
                let subscribed = loop {
                    tokio::select! {
                        r = &mut listening => break r.is_ok(),
                        m = messages.next() => if !matches!(m, Some(Ok(_))) { break false },
                    }
                };
                if subscribed {
                    wait = RETRY_FIRST;
                    // Whatever was committed before LISTEN took effect is read now.
                    wake.notify_one();
                    while let Some(Ok(message)) = messages.next().await {
                        if let AsyncMessage::Notification(_) = message {
                            wake.notify_one();
                        }
                    }
                }
                tracing::debug!("the change feed's connection closed; reconnecting");
                wake.notify_one();
            }
            Err(e) => tracing::debug!(error = %e, retry_in = ?wait, "the change feed cannot connect to PostgreSQL"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
}

impl super::Shared {
    /// The follower's own connection (opened if there is none or it broke): a transaction
    /// needs a connection of its own, and the store's is shared by concurrent calls.
    async fn follow_connection(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, StoreError> {
        let mut slot = self.follow.lock().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = Some(super::open_client(&self.config).await?);
        }
        Ok(slot)
    }
}

/// A read-only transaction that sees one snapshot for all its statements.
async fn read_snapshot(client: &mut Client) -> Result<tokio_postgres::Transaction<'_>, StoreError> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db_error)
}

/// Every record, in the transaction's snapshot.
async fn all_records(tx: &tokio_postgres::Transaction<'_>) -> Result<Vec<Record>, StoreError> {
    let rows = tx.query("SELECT tbl, key, value FROM berth.records ORDER BY tbl, key", &[]).await.map_err(db_error)?;
    Ok(rows.into_iter().map(|r| Record { table: r.get(0), key: r.get(1), value: r.get(2) }).collect())
}

/// The change log's position: the sequence number of the latest committed batch.
async fn head(tx: &tokio_postgres::Transaction<'_>) -> Result<i64, StoreError> {
    Ok(tx.query_one("SELECT seq FROM berth.change_counter", &[]).await.map_err(db_error)?.get(0))
}
