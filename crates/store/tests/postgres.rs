//! `PgStore` against a real PostgreSQL server (Debian's, started by `testkit::postgres`):
//! the store contract, fencing, the change log and its notifications, migrations.

use std::time::Duration;

use store::{Mutation, PgStore, PgUrl, Record, Store, StoreError};
use testkit::postgres::{TestPostgres, DATABASE};

fn put(t: &str, k: &str, v: &str) -> Mutation {
    Mutation::Put(Record { table: t.into(), key: k.into(), value: v.as_bytes().to_vec() })
}

fn del(t: &str, k: &str) -> Mutation {
    Mutation::Delete { table: t.into(), key: k.into() }
}

fn url(pg: &TestPostgres) -> PgUrl {
    PgUrl::parse(&pg.url()).unwrap()
}

fn flat(records: &[Record]) -> Vec<(&str, &str, &str)> {
    records.iter().map(|r| (r.table.as_str(), r.key.as_str(), std::str::from_utf8(&r.value).unwrap())).collect()
}

#[test]
fn commits_round_trip_in_order_and_survive_reopen() {
    let pg = TestPostgres::start();
    {
        let s = PgStore::open_writer(&url(&pg), "test").unwrap();
        // Keys in an order a non-binary collation would sort differently.
        s.commit(&[put("b", "1", "z"), put("a", "b", "x"), put("a", "B", "y"), put("a", "_", "w")]).unwrap();
        s.commit(&[put("a", "b", "x2"), del("a", "_"), del("a", "missing")]).unwrap();
        // Within a batch the last mutation of a key wins, as if applied in order.
        s.commit(&[put("c", "1", "first"), del("c", "1"), put("c", "2", "gone"), del("c", "2"), put("c", "2", "last")])
            .unwrap();
        s.commit(&[]).unwrap();
    }
    let s = PgStore::open_writer(&url(&pg), "again").unwrap();
    let all = s.load().unwrap();
    assert_eq!(flat(&all), vec![("a", "B", "y"), ("a", "b", "x2"), ("b", "1", "z"), ("c", "2", "last")]);
    assert_eq!(s.get("b", "1").unwrap().as_deref(), Some(&b"z"[..]));
    assert_eq!(s.get("a", "_").unwrap(), None);
    assert_eq!(s.get("nope", "1").unwrap(), None);
}

#[test]
fn a_failed_batch_writes_nothing() {
    let pg = TestPostgres::start();
    let s = PgStore::open_writer(&url(&pg), "test").unwrap();
    s.commit(&[put("a", "1", "before")]).unwrap();
    // PostgreSQL's text cannot hold NUL: the second record fails the whole batch.
    let err = s.commit(&[put("a", "1", "after"), put("a", "2", "new"), put("a", "bad\0key", "x")]).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(flat(&s.load().unwrap()), vec![("a", "1", "before")]);
    // Nothing of it reached the change log either, and the store still works.
    assert_eq!(pg.psql(DATABASE, "SELECT count(*) FROM berth.changes"), "1");
    s.commit(&[put("a", "2", "later")]).unwrap();
    assert_eq!(pg.psql(DATABASE, "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM berth.changes"), "1,2");
}

#[test]
fn a_writer_whose_lease_was_taken_can_never_commit_again() {
    let pg = TestPostgres::start();
    let first = PgStore::open_writer(&url(&pg), "first").unwrap();
    first.commit(&[put("a", "1", "from first")]).unwrap();
    let second = PgStore::open_writer(&url(&pg), "second").unwrap();
    assert!(second.epoch().unwrap().0 > first.epoch().unwrap().0);

    let err = first.commit(&[put("a", "1", "stale"), put("a", "2", "stale")]).unwrap_err();
    assert!(matches!(err, StoreError::Fenced(_)), "{err:?}");
    assert!(err.to_string().contains("no longer the store's writer"), "{err}");
    // Fenced for good, not only once.
    assert!(matches!(first.commit(&[put("a", "3", "stale")]), Err(StoreError::Fenced(_))));
    second.commit(&[put("a", "2", "from second")]).unwrap();
    assert_eq!(flat(&second.load().unwrap()), vec![("a", "1", "from first"), ("a", "2", "from second")]);
    assert_eq!(pg.psql(DATABASE, "SELECT holder FROM berth.lease"), "second");
    // Reads still work on the fenced store (a follower's role).
    assert_eq!(first.get("a", "2").unwrap().as_deref(), Some(&b"from second"[..]));
}

#[test]
fn a_lease_taken_during_a_commit_waits_for_it() {
    let pg = TestPostgres::start();
    let first = PgStore::open_writer(&url(&pg), "first").unwrap();
    // Hold the lease row locked for share (as a commit in flight does) from another
    // session; taking the lease must wait until that transaction ends.
    let holder = std::thread::spawn({
        let url = pg.url();
        move || {
            let out = std::process::Command::new("psql")
                .args([&url, "-X", "-v", "ON_ERROR_STOP=1", "-c"])
                .arg("BEGIN; SELECT epoch FROM berth.lease FOR SHARE; SELECT pg_sleep(1); COMMIT;")
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let second = PgStore::open_writer(&url(&pg), "second").unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400), "took the lease in {:?}", started.elapsed());
    holder.join().unwrap();
    assert!(matches!(first.commit(&[put("a", "1", "x")]), Err(StoreError::Fenced(_))));
    second.commit(&[put("a", "1", "y")]).unwrap();
}

#[test]
fn stores_without_the_lease_neither_fence_nor_are_fenced() {
    let pg = TestPostgres::start();
    let writer = PgStore::open_writer(&url(&pg), "server").unwrap();
    let command = PgStore::open_unleased(&url(&pg)).unwrap();
    assert_eq!(command.epoch(), None);
    command.commit(&[put("iam.accounts", "1", "acct")]).unwrap();
    writer.commit(&[put("ecs.clusters", "c", "x")]).unwrap();
    assert_eq!(writer.get("iam.accounts", "1").unwrap().as_deref(), Some(&b"acct"[..]));
}

#[test]
fn every_commit_is_logged_in_order_and_notified() {
    let pg = TestPostgres::start();
    let s = PgStore::open_writer(&url(&pg), "test").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (_listening, mut notes) = rt.block_on(listen(&pg.url()));
    s.commit(&[put("a", "1", "x"), put("b", "2", "y")]).unwrap();
    s.commit(&[del("a", "1")]).unwrap();
    let got: Vec<String> = rt.block_on(async {
        let mut got = Vec::new();
        while got.len() < 2 {
            let note = tokio::time::timeout(Duration::from_secs(10), notes.recv()).await.unwrap().unwrap();
            got.push(note);
        }
        got
    });
    assert_eq!(got, vec!["1", "2"]);
    let log = pg.psql(DATABASE, "SELECT seq, epoch, tbls, keys FROM berth.changes ORDER BY seq");
    let epoch = s.epoch().unwrap().0;
    assert_eq!(log, format!("1|{epoch}|{{a,b}}|{{1,2}}\n2|{epoch}|{{a}}|{{1}}"));
}

/// Subscribes to the change channel; the payloads arrive on the receiver as long as the
/// returned client lives.
async fn listen(url: &str) -> (tokio_postgres::Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // Polling the connection's messages is also what carries the client's requests.
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.payload().to_string());
            }
        }
    });
    client.batch_execute(&format!("LISTEN {}", store::CHANGES_CHANNEL)).await.unwrap();
    (client, rx)
}

#[test]
fn the_change_log_is_trimmed_every_thousandth_batch() {
    let pg = TestPostgres::start();
    let s = PgStore::open_writer(&url(&pg), "test").unwrap();
    pg.psql(
        DATABASE,
        "INSERT INTO berth.changes (seq, epoch, batch, tbls, keys) VALUES
             (1, 0, 0, '{}', '{}'), (1000, 0, 0, '{}', '{}'), (1001, 0, 0, '{}', '{}');
         UPDATE berth.change_counter SET seq = 10999;",
    );
    s.commit(&[put("a", "1", "x")]).unwrap();
    assert_eq!(pg.psql(DATABASE, "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM berth.changes"), "1001,11000");
}

#[test]
fn migrations_apply_once_and_a_newer_schema_is_refused() {
    let pg = TestPostgres::start();
    drop(PgStore::open_writer_at(&url(&pg), "a", "a.example:7447").unwrap());
    drop(PgStore::open_unleased(&url(&pg)).unwrap());
    assert_eq!(
        pg.psql(DATABASE, "SELECT string_agg(version::text, ',' ORDER BY version) FROM berth.schema_version"),
        "1,2"
    );
    // The leader's endpoint is kept with its lease (version 2), for standbys to pass on to.
    assert_eq!(pg.psql(DATABASE, "SELECT holder || ' ' || endpoint FROM berth.lease"), "a a.example:7447");
    pg.psql(DATABASE, "INSERT INTO berth.schema_version (version) VALUES (99)");
    let err = PgStore::open_writer(&url(&pg), "b").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("newer than this Berth"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_from_async_code_and_drops_there_do_not_panic() {
    let pg = TestPostgres::start();
    let s = std::sync::Arc::new(PgStore::open_writer(&url(&pg), "test").unwrap());
    s.commit(&[put("k", "1", "v")]).unwrap();
    // As authentication does on a cache miss: a synchronous read inside a handler.
    let reads: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.get("k", "1").unwrap() })
        })
        .collect();
    for r in reads {
        assert_eq!(r.await.unwrap().as_deref(), Some(&b"v"[..]));
    }
    drop(s);
}

#[test]
fn a_server_that_goes_away_fails_calls_and_a_restarted_one_serves_them_again() {
    let mut pg = TestPostgres::start();
    let s = PgStore::open_writer(&url(&pg), "test").unwrap();
    s.commit(&[put("a", "1", "x")]).unwrap();
    pg.stop_server();
    assert!(matches!(s.commit(&[put("a", "2", "y")]), Err(StoreError::Unavailable(_))));
    assert!(matches!(s.get("a", "1"), Err(StoreError::Unavailable(_))));
    pg.start_server();
    // The broken connection is replaced on the next call; the lease is still this store's.
    s.commit(&[put("a", "3", "z")]).unwrap();
    assert_eq!(flat(&s.load().unwrap()), vec![("a", "1", "x"), ("a", "3", "z")]);
}

#[test]
fn connecting_to_nothing_is_unavailable_with_the_address() {
    let pg = TestPostgres::create();
    let err = PgStore::open_writer(&url(&pg), "test").unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[test]
fn a_commit_whose_session_is_killed_is_resolved_as_not_committed() {
    let pg = TestPostgres::start();
    let s = std::sync::Arc::new(PgStore::open_writer(&url(&pg), "test").unwrap());
    s.commit(&[put("a", "1", "before")]).unwrap();
    // Another session holds the lease row, so the commit waits inside its transaction;
    // then its session is terminated, and its answer never comes.
    let blocker = std::thread::spawn({
        let url = pg.url();
        move || {
            std::process::Command::new("psql")
                .args([&url, "-X", "-c"])
                .arg("BEGIN; SELECT epoch FROM berth.lease FOR UPDATE; SELECT pg_sleep(3); COMMIT;")
                .output()
                .unwrap()
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let committing = std::thread::spawn({
        let s = s.clone();
        move || s.commit(&[put("a", "1", "lost"), put("a", "2", "lost")])
    });
    let waiting =
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%commit_batch%' AND wait_event_type = 'Lock'";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pg.psql(DATABASE, waiting) != "1" {
        assert!(std::time::Instant::now() < deadline, "the commit never waited for the lease row");
        std::thread::sleep(Duration::from_millis(20));
    }
    pg.psql(
        DATABASE,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%commit_batch%' AND pid <> pg_backend_pid()",
    );
    let outcome = committing.join().unwrap();
    assert!(matches!(outcome, Err(StoreError::Unavailable(ref m)) if m.contains("not committed")), "{outcome:?}");
    blocker.join().unwrap();
    assert_eq!(flat(&s.load().unwrap()), vec![("a", "1", "before")]);
    s.commit(&[put("a", "2", "after")]).unwrap();
}
