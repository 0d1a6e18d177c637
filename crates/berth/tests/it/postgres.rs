//! `berth server --store postgres://...` against a real PostgreSQL (Debian's, one
//! throwaway cluster per test): the official SDK on it, state across restarts, `kill -9`
//! under writes, a database that is down at start, and a second server fencing the first.

use testkit::postgres::{TestPostgres, DATABASE};
use testkit::Berth;

use crate::durability::{container, writes_survive_kill_9};

/// One master key for servers that share a database (their sealed values must open on
/// each); any 32 bytes, in base64.
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

async fn server(pg: &TestPostgres) -> Berth {
    Berth::start_on_store(env!("CARGO_BIN_EXE_berth"), &pg.url(), &[("BERTH_MASTER_KEY", MASTER_KEY)]).await
}

#[tokio::test]
async fn the_sdk_works_on_postgres_and_state_survives_a_restart() {
    let pg = TestPostgres::start();
    let mut b = server(&pg).await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("demo").send().await.unwrap();
    ecs.register_task_definition().family("web").container_definitions(container()).send().await.unwrap();
    ecs.register_task_definition().family("web").container_definitions(container()).send().await.unwrap();
    ecs.deregister_task_definition().task_definition("web:1").send().await.unwrap();
    // Accounts and keys are in PostgreSQL too: `berth account create` beside the server.
    let other = b.create_account();

    // The records are PostgreSQL's, and the data dir has no SQLite database.
    assert!(!b.data_dir().join("berth.db").exists());
    let clusters = pg.psql(DATABASE, "SELECT count(*) FROM berth.records WHERE tbl LIKE 'ecs.%'");
    assert_ne!(clusters, "0");

    b.restart().await;
    let ecs = b.ecs().await;
    let listed = ecs.list_clusters().send().await.unwrap();
    assert_eq!(listed.cluster_arns().len(), 1, "{listed:?}");
    let td = ecs.describe_task_definition().task_definition("web:1").send().await.unwrap();
    assert_eq!(td.task_definition().unwrap().status().unwrap().as_str(), "INACTIVE");
    let latest = ecs.describe_task_definition().task_definition("web").send().await.unwrap();
    assert_eq!(latest.task_definition().unwrap().revision(), 2);
    // The other account's key authenticates after the restart, and sees its own (empty)
    // resources only.
    let theirs = b.ecs_as(&other, "us-east-1").await;
    assert!(theirs.list_clusters().send().await.unwrap().cluster_arns().is_empty());
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_on_postgres() {
    let pg = TestPostgres::start();
    let mut b = server(&pg).await;
    writes_survive_kill_9(&mut b).await;
}

#[tokio::test]
async fn a_server_started_before_its_database_waits_for_it() {
    let mut pg = TestPostgres::create();
    let url = pg.url();
    // The server starts first; the database comes up a moment later.
    let late = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        pg.start_server();
        pg.create_database(DATABASE);
        pg
    });
    let b = Berth::start_on_store(env!("CARGO_BIN_EXE_berth"), &url, &[]).await;
    let _pg = late.join().unwrap();
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("late").send().await.unwrap();
    let log = b.log();
    assert!(log.contains("PostgreSQL is not reachable yet; retrying"), "{log}");
    // The log names the database without leaking anything else of the URL's secrets.
    assert!(log.contains(&format!("store={url}")), "{log}");
}

#[tokio::test]
async fn a_second_server_on_the_database_fences_the_first() {
    let pg = TestPostgres::start();
    let first = server(&pg).await;
    let ecs1 = first.ecs().await;
    ecs1.create_cluster().cluster_name("from-first").send().await.unwrap();

    let second = server(&pg).await;
    // The first still believes it leads; its writes are refused and leave nothing.
    let refused = ecs1.create_cluster().cluster_name("stale").send().await.unwrap_err();
    assert_eq!(testkit::error_code(&refused), "ServerException");
    assert!(first.log().contains("this replica lost the writer lease"), "{}", first.log());

    // The second, which loaded everything the first committed, writes.
    let ecs2 = second.ecs_as(&first.key, "us-east-1").await;
    ecs2.create_cluster().cluster_name("from-second").send().await.unwrap();
    let names: Vec<String> = ecs2
        .describe_clusters()
        .clusters("from-first")
        .clusters("stale")
        .clusters("from-second")
        .send()
        .await
        .unwrap()
        .clusters()
        .iter()
        .map(|c| c.cluster_name().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["from-first", "from-second"]);
}
