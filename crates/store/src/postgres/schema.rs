//! The PostgreSQL schema, created and upgraded by numbered migrations.
//!
//! Everything lives in the schema `berth`, so Berth can share a database with other
//! applications. `berth.schema_version` lists the migrations applied; a store refuses a
//! database that has one this code does not know (written by a newer Berth). Migrations run
//! in one transaction under an advisory lock, so replicas starting together apply each
//! exactly once.

use tokio_postgres::Client;

use crate::StoreError;

use super::db_error;

/// The advisory lock (`pg_advisory_xact_lock`) that serializes migrations.
const MIGRATION_LOCK: i64 = 0x6265_7274_6801; // "berth" and 1

/// The SQLSTATE `berth.commit_batch` raises when the caller's epoch is not the lease's.
pub(super) const FENCED_SQLSTATE: &str = "BF001";

/// The channel `berth.commit_batch` notifies with the new change sequence number.
pub const CHANGES_CHANNEL: &str = "berth_changes";

/// How many change log entries are kept: a follower further behind reloads everything.
pub const CHANGES_KEPT: i64 = 10_000;

/// The migrations, in order; the version of each is its position plus one.
const MIGRATIONS: &[&str] = &[
    // 1: records, the writer lease, the change log, and the one function every commit
    // calls (one round trip a batch).
    r#"
    CREATE TABLE berth.records (
        tbl text COLLATE "C" NOT NULL,
        key text COLLATE "C" NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (tbl, key)
    );
    -- One row. `epoch` grows by one each time a store takes the lease; a commit names the
    -- epoch it was opened with and is refused unless it is still the lease's.
    CREATE TABLE berth.lease (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        epoch bigint NOT NULL,
        holder text NOT NULL,
        taken_at timestamptz NOT NULL
    );
    INSERT INTO berth.lease (epoch, holder, taken_at) VALUES (0, '', now());
    -- One row: the last change sequence number. Updating it inside the commit's
    -- transaction holds its row lock until the commit, so numbers are handed out in
    -- commit order and without gaps: the committed changes are always a prefix.
    CREATE TABLE berth.change_counter (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        seq bigint NOT NULL
    );
    INSERT INTO berth.change_counter (seq) VALUES (0);
    -- Which keys each committed batch touched (a follower reads their current values);
    -- `batch` is the committing store's token, which resolves a commit whose outcome the
    -- store did not hear.
    CREATE TABLE berth.changes (
        seq bigint PRIMARY KEY,
        epoch bigint NOT NULL,
        batch bigint NOT NULL,
        committed_at timestamptz NOT NULL DEFAULT now(),
        tbls text[] NOT NULL,
        keys text[] NOT NULL
    );
    CREATE INDEX changes_batch ON berth.changes (batch);
    CREATE FUNCTION berth.commit_batch(
        p_epoch bigint, p_batch bigint,
        put_tbl text[], put_key text[], put_val bytea[],
        del_tbl text[], del_key text[]
    ) RETURNS bigint LANGUAGE plpgsql AS $fn$
    DECLARE
        leased bigint;
        next_seq bigint;
    BEGIN
        IF p_epoch IS NOT NULL THEN
            -- FOR SHARE: a store taking the lease waits for this commit to end, and this
            -- commit sees any lease taken before it.
            SELECT epoch INTO leased FROM berth.lease FOR SHARE;
            IF leased <> p_epoch THEN
                RAISE EXCEPTION 'this writer holds epoch % of the lease, which is now at epoch %', p_epoch, leased
                    USING ERRCODE = 'BF001';
            END IF;
        END IF;
        INSERT INTO berth.records (tbl, key, value)
            SELECT * FROM unnest(put_tbl, put_key, put_val)
            ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value;
        DELETE FROM berth.records r
            USING unnest(del_tbl, del_key) AS d(tbl, key)
            WHERE r.tbl = d.tbl AND r.key = d.key;
        UPDATE berth.change_counter SET seq = seq + 1 RETURNING seq INTO next_seq;
        INSERT INTO berth.changes (seq, epoch, batch, tbls, keys)
            VALUES (next_seq, coalesce(p_epoch, 0), p_batch, put_tbl || del_tbl, put_key || del_key);
        -- Trimmed in steps, every thousandth batch, so a commit rarely pays for it.
        IF next_seq % 1000 = 0 THEN
            DELETE FROM berth.changes WHERE seq <= next_seq - 10000;
        END IF;
        PERFORM pg_notify('berth_changes', next_seq::text);
        RETURN next_seq;
    END
    $fn$;
    "#,
    // 2: where the leader serves, so that standbys can pass connections to it.
    r#"
    ALTER TABLE berth.lease ADD COLUMN endpoint text NOT NULL DEFAULT '';
    "#,
];

/// Brings the schema to this code's version.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(db_error)?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS berth;
         CREATE TABLE IF NOT EXISTS berth.schema_version (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .await
    .map_err(db_error)?;
    let row =
        tx.query_one("SELECT coalesce(max(version), 0) FROM berth.schema_version", &[]).await.map_err(db_error)?;
    let applied: i32 = row.get(0);
    let known = MIGRATIONS.len() as i32;
    if applied > known {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {applied}, newer than this Berth ({known}); run a newer Berth"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let version = i as i32 + 1;
        tracing::info!(version, "migrating the PostgreSQL schema");
        tx.batch_execute(sql).await.map_err(db_error)?;
        tx.execute("INSERT INTO berth.schema_version (version) VALUES ($1)", &[&version]).await.map_err(db_error)?;
    }
    tx.commit().await.map_err(db_error)
}
