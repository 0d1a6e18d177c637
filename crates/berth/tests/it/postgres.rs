//! `berth server --store postgres://...` against a real PostgreSQL (Debian's, one
//! throwaway cluster per test): the official SDK on it, state across restarts, `kill -9`
//! under writes, a database that is down at start, and standbys that take over from a
//! killed or deposed leader.

use std::time::Duration;

use testkit::postgres::{TestPostgres, DATABASE};
use testkit::Berth;

use crate::durability::{container, writes_survive_kill_9};

/// One master key for servers that share a database (their sealed values must open on
/// each); any 32 bytes, in base64.
pub(crate) const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub(crate) async fn server(pg: &TestPostgres) -> Berth {
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

/// Sessions waiting for the leader election's lock.
fn standbys(pg: &TestPostgres) -> String {
    pg.psql(DATABASE, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
}

/// A second server on `pg`, started on a port chosen now (which an agent can be told
/// before it listens), once it waits as a standby; it resolves when it serves.
async fn standby_on_a_port(pg: &TestPostgres) -> (u16, tokio::task::JoinHandle<Berth>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = pg.url();
    let standby = tokio::spawn(async move {
        let listen = format!("127.0.0.1:{port}");
        Berth::start_on_store_listening(env!("CARGO_BIN_EXE_berth"), &url, &[("BERTH_MASTER_KEY", MASTER_KEY)], &listen)
            .await
    });
    assert!(testkit::eventually(Duration::from_secs(20), || async { standbys(pg) == "1" }).await, "no standby waits");
    (port, standby)
}

/// An ECS client of `key` at `127.0.0.1:port`, which does not retry.
pub(crate) async fn ecs_at(port: u16, key: &testkit::Key) -> aws_sdk_ecs::Client {
    aws_sdk_ecs::Client::new(&testkit::sdk_config_at(&format!("http://127.0.0.1:{port}"), key, "us-east-1").await)
}

#[tokio::test]
async fn a_standby_takes_over_from_a_killed_leader_and_a_deposed_leader_stops() {
    let pg = TestPostgres::start();
    let mut first = server(&pg).await;
    let ecs1 = first.ecs().await;
    ecs1.create_cluster().cluster_name("from-first").send().await.unwrap();

    // A second server on the database stands by: it leads nothing while the first leads,
    // and passes the calls made to it to the first.
    let (port, second) = standby_on_a_port(&pg).await;
    ecs1.create_cluster().cluster_name("while-standing-by").send().await.unwrap();
    let via_second = ecs_at(port, &first.key).await;
    via_second.create_cluster().cluster_name("through-the-standby").send().await.unwrap();
    let read_back = via_second.describe_clusters().clusters("through-the-standby").send().await.unwrap();
    assert_eq!(read_back.clusters().len(), 1, "a write through the standby reads back through it: {read_back:?}");
    assert_eq!(ecs1.list_clusters().send().await.unwrap().cluster_arns().len(), 3, "the first holds every write");
    assert!(!second.is_finished(), "the standby led while the first led");
    // `berth status` names the leader (the first's data dir and endpoint) and the standby.
    let status = first.command(&["status"]);
    let first_dir = first.data_dir().display().to_string();
    let first_at = first.endpoint.trim_start_matches("http://").to_string();
    let lines: Vec<&str> = status.lines().collect();
    assert!(lines[0].starts_with("leader:") && lines[0].contains(&first_dir), "{status}");
    assert!(lines[0].contains(&format!("serving at {first_at}")), "{status}");
    assert!(lines[1].starts_with("standby:") && !lines[1].contains(&first_dir), "{status}");

    // The leader dies: the standby leads, with everything the first committed, at the
    // address its clients already use.
    let killed = std::time::Instant::now();
    first.kill9();
    // A call made through the standby meanwhile, on a new connection, waits for a leader:
    // here, the standby itself once it leads. (A connection already passed to the dead
    // leader is closed with it; SDKs retry that as a transient error.)
    let fresh = ecs_at(port, &first.key).await;
    let during = tokio::spawn(async move { fresh.create_cluster().cluster_name("during-failover").send().await });
    let mut second = second.await.unwrap();
    let took_over = killed.elapsed();
    assert!(second.log().contains("this replica leads"), "{}", second.log());
    during.await.unwrap().expect("a call made during the failover is served by the new leader");
    via_second.create_cluster().cluster_name("from-second").send().await.unwrap();
    let clusters = via_second.list_clusters().send().await.unwrap();
    assert_eq!(clusters.cluster_arns().len(), 5, "{clusters:?}");
    eprintln!("the standby served {took_over:?} after the leader's kill -9");
    assert!(took_over < Duration::from_secs(15), "takeover took {took_over:?}");

    // A third stands by; then the second's election session is cut (as a partition from
    // the database would end it): the third leads, and the second stops rather than go on
    // as a replica whose writes are refused.
    let url = pg.url();
    let third = tokio::spawn(async move {
        Berth::start_on_store(env!("CARGO_BIN_EXE_berth"), &url, &[("BERTH_MASTER_KEY", MASTER_KEY)]).await
    });
    assert!(testkit::eventually(Duration::from_secs(20), || async { standbys(&pg) == "1" }).await, "no standby waits");
    pg.psql(DATABASE, "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted");
    let third = third.await.unwrap();
    stops_deposed(&mut second, Duration::from_secs(20)).await;
    let ecs3 = third.ecs_as(&first.key, "us-east-1").await;
    assert_eq!(ecs3.list_clusters().send().await.unwrap().cluster_arns().len(), 5);
    ecs3.create_cluster().cluster_name("from-third").send().await.unwrap();
}

/// Waits (for at most `limit`) until `replica`, which another replica has replaced as the
/// leader, has stopped with a failure status saying so.
pub(crate) async fn stops_deposed(replica: &mut Berth, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        match replica.exit_status() {
            Some(status) => break status,
            None if std::time::Instant::now() > deadline => panic!("the replaced leader still runs: {}", replica.log()),
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert!(!status.success(), "a replaced leader exits with a failure");
    assert!(replica.log().contains("another replica leads now"), "{}", replica.log());
}

/// Whether the server at `port` answers as a follower with a view of its own (before it
/// has one, it passes connections to the leader, whose health check says no role).
pub(crate) async fn follows(port: u16) -> bool {
    testkit::http_get_text(&format!("http://127.0.0.1:{port}/_berth/health")).await.contains("follower")
}

/// Stops (`SIGSTOP`) or continues (`SIGCONT`) a process.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_follower_answers_reads_from_its_own_view_and_passes_writes_to_the_leader() {
    let pg = TestPostgres::start();
    let first = server(&pg).await;
    let ecs1 = first.ecs().await;
    ecs1.create_cluster().cluster_name("before").send().await.unwrap();
    let (port, second) = standby_on_a_port(&pg).await;
    assert!(testkit::eventually(Duration::from_secs(20), || follows(port)).await, "the standby never followed");
    let via = ecs_at(port, &first.key).await;

    // A write through the follower is the leader's, and reads back through the follower
    // at once (the follower waits for its view to reach the write).
    for i in 0..20 {
        let name = format!("through-{i}");
        via.create_cluster().cluster_name(&name).send().await.unwrap();
        let read = via.describe_clusters().clusters(&name).send().await.unwrap();
        assert_eq!(read.clusters().len(), 1, "read-your-writes through the follower: {read:?}");
    }
    // A write made at the leader reaches the follower's view.
    ecs1.create_cluster().cluster_name("at-the-leader").send().await.unwrap();
    let seen = || async {
        let read = via.describe_clusters().clusters("at-the-leader").send().await.unwrap();
        read.clusters().len() == 1
    };
    assert!(testkit::eventually(Duration::from_secs(10), seen).await, "the leader's write never reached the follower");
    // A key made a moment ago at the leader works through the follower (which passes a key
    // it does not know yet on to the leader), for the JSON and the query protocols.
    let iam = aws_sdk_iam::Client::new(&first.sdk_config(&first.key, "us-east-1").await);
    iam.create_user().user_name("ci").send().await.unwrap();
    let made = iam.create_access_key().user_name("ci").send().await.unwrap();
    let made = made.access_key().unwrap();
    let ci = testkit::Key {
        account: first.key.account.clone(),
        id: made.access_key_id().to_string(),
        secret: made.secret_access_key().to_string(),
    };
    let ci_config = testkit::sdk_config_at(&format!("http://127.0.0.1:{port}"), &ci, "us-east-1").await;
    let who = aws_sdk_sts::Client::new(&ci_config).get_caller_identity().send().await.unwrap();
    assert!(who.arn().unwrap().ends_with(":user/ci"), "{who:?}");

    // The follower's reads are its own: with the leader stopped, they are still answered.
    let leader = first.pid().unwrap();
    signal(leader, "-STOP");
    let listed = tokio::time::timeout(Duration::from_secs(5), via.list_clusters().send()).await;
    let described =
        tokio::time::timeout(Duration::from_secs(5), via.describe_clusters().clusters("before").send()).await;
    let who =
        tokio::time::timeout(Duration::from_secs(5), aws_sdk_sts::Client::new(&ci_config).get_caller_identity().send())
            .await;
    signal(leader, "-CONT");
    assert_eq!(listed.expect("a read waited for the stopped leader").unwrap().cluster_arns().len(), 22);
    assert_eq!(described.expect("a read waited for the stopped leader").unwrap().clusters().len(), 1);
    assert!(who.expect("a read waited for the stopped leader").is_ok());
    assert!(!second.is_finished(), "the follower led while the first led");
    second.abort();
}

#[tokio::test]
async fn an_agent_given_every_replica_follows_the_leader_and_its_tasks_keep_running() {
    use crate::support::running_tasks;
    let pg = TestPostgres::start();
    let first = server(&pg).await;
    let _cleanup = crate::services::cleanup(&first, "ha");
    let mut first = first;
    let (port, standby) = standby_on_a_port(&pg).await;

    let ecs1 = first.ecs().await;
    ecs1.create_cluster().cluster_name("ha").send().await.unwrap();
    let replicas = format!("{},http://127.0.0.1:{port}", first.endpoint);
    let _agent = first.spawn_agent("ha", &[("ECS_BACKEND_HOST", &replicas)]);
    crate::services::wait_instances(&ecs1, "ha", 1).await;
    ecs1.register_task_definition()
        .family("web")
        .container_definitions(crate::support::web_container(None))
        .send()
        .await
        .unwrap();
    let before = crate::support::web_service_running(&ecs1, "ha", "web").await;

    // The leader dies; the standby leads, the agent reaches it, the task runs on.
    first.kill9();
    let second = standby.await.unwrap();
    let ecs2 = second.ecs_as(&first.key, "us-east-1").await;
    crate::services::wait_instances(&ecs2, "ha", 1).await;
    assert_eq!(running_tasks(&ecs2, "ha").await, before, "the same task, the same container");
    let inspect = std::process::Command::new("docker")
        .args(["inspect", "--format", "{{.State.Running}}", &before[0].container])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&inspect.stdout).trim(), "true");

    // The new leader reconciles the service through the agent.
    ecs2.update_service().cluster("ha").service("web").desired_count(2).send().await.unwrap();
    crate::services::eventually("two tasks run", async || running_tasks(&ecs2, "ha").await.len() == 2).await;
    ecs2.update_service().cluster("ha").service("web").desired_count(0).send().await.unwrap();
    ecs2.delete_service().cluster("ha").service("web").send().await.unwrap();
}

#[tokio::test]
async fn after_postgresql_restarts_exactly_one_replica_leads_with_every_acknowledged_write() {
    let mut pg = TestPostgres::start();
    let mut first = server(&pg).await;
    let ecs1 = first.ecs().await;
    let (port, mut standby) = standby_on_a_port(&pg).await;
    for i in 0..20 {
        ecs1.create_cluster().cluster_name(format!("before-{i}")).send().await.unwrap();
    }

    // Every session ends; both replicas reach the database again and race for the lock.
    pg.stop_server();
    pg.start_server();
    let ecs2 = ecs_at(port, &first.key).await;
    // Writes go on at the first while things settle: into one of two ends, the first
    // leading with the second standing by again, or the second leading and the first
    // stopped. A write the first acknowledged before the second's lease fenced it counts.
    let mut acked: Vec<String> = (0..20).map(|i| format!("before-{i}")).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    let leader = loop {
        let name = format!("after-{n}");
        if ecs1.create_cluster().cluster_name(&name).send().await.is_ok() {
            acked.push(name);
            n += 1;
            if standbys(&pg) == "1" {
                break 1;
            }
        }
        if first.exit_status().is_some() {
            break 2;
        }
        assert!(std::time::Instant::now() < deadline, "the replicas did not settle: {}", first.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A standby that won the race after the last write may still depose the first: the
    // writes are checked at whichever leads once that is settled.
    // The second's Berth is kept until the end: dropping it would stop that server.
    let (leader, ecs, _second) = match (leader, ecs1.list_clusters().send().await) {
        (1, Ok(_)) => (1, &ecs1, None),
        _ => {
            let second =
                tokio::time::timeout(Duration::from_secs(30), &mut standby).await.expect("the standby leads").unwrap();
            (2, &ecs2, Some(second))
        }
    };
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let page = ecs.list_clusters().set_next_token(token).send().await.unwrap();
        names.extend(page.cluster_arns().iter().map(|a| a.rsplit('/').next().unwrap().to_string()));
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    for a in &acked {
        assert!(names.contains(a), "{a} was acknowledged and is lost (leader {leader})");
    }
    if leader == 2 {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            match first.exit_status() {
                Some(s) => break s,
                None => assert!(std::time::Instant::now() < deadline, "the deposed first still runs: {}", first.log()),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(!status.success(), "the deposed first replica says it failed");
    }
    eprintln!("replica {leader} leads after the restart");
}

#[tokio::test]
async fn an_image_pushed_through_a_follower_is_pulled_at_the_same_address_after_a_failover() {
    let pg = TestPostgres::start();
    let s3 = testkit::s3::TestS3::start();
    let blobs = s3.blobs_url();
    let mut env: Vec<(&str, &str)> = vec![("BERTH_MASTER_KEY", MASTER_KEY), ("BERTH_BLOBS", &blobs)];
    env.extend(s3.credentials_env());
    let bin = env!("CARGO_BIN_EXE_berth");
    let mut first = Berth::start_on_store(bin, &pg.url(), &env).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (url, listen) = (pg.url(), format!("127.0.0.1:{port}"));
    let env_owned: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let second = tokio::spawn(async move {
        let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Berth::start_on_store_listening(bin, &url, &env, &listen).await
    });
    assert!(testkit::eventually(Duration::from_secs(20), || follows(port)).await, "the standby never followed");

    // Pushed through the follower, which passes the registry's requests to the leader:
    // blobs in the bucket, the manifest and tag in PostgreSQL.
    let at = format!("http://127.0.0.1:{port}");
    let ecr = aws_sdk_ecr::Client::new(&testkit::sdk_config_at(&at, &first.key, "us-east-1").await);
    let uri = crate::support::create_repository(&ecr, "shared").await;
    assert!(uri.starts_with(&format!("127.0.0.1:{port}/")), "{uri}");
    let image = format!("{uri}:v1");
    let mut docker = crate::support::Docker::login_at(&at, &ecr).await;
    docker.run(&["tag", testkit::images::simplehttp_image(), &image]);
    docker.made.push(image.clone());
    docker.run(&["push", "-q", &image]);
    assert_eq!(pg.psql(DATABASE, "SELECT count(*) FROM berth.records WHERE tbl = 'registry.tags'"), "1");

    // The first's machine is gone; the second leads at the address the image names.
    first.kill9();
    let second = second.await.unwrap();
    let ecr = second.ecr_as(&first.key, "us-east-1").await;
    let docker = crate::support::Docker::login_at(&at, &ecr).await;
    docker.remove_local(&image);
    docker.run(&["pull", "-q", &image]);
    assert_eq!(docker.image_id(&image), docker.image_id(testkit::images::simplehttp_image()));
    let tags = ecr.list_images().repository_name("shared").send().await.unwrap();
    assert_eq!(tags.image_ids().len(), 1, "{tags:?}");
}

#[tokio::test]
async fn a_leader_cut_off_from_postgresql_is_replaced_and_never_commits_again() {
    let pg = TestPostgres::start();
    // The first reaches PostgreSQL at the address the partition will cut; the second at
    // the other one.
    let bin = env!("CARGO_BIN_EXE_berth");
    let mut first = Berth::start_on_store(bin, &pg.url_at("127.0.0.2"), &[("BERTH_MASTER_KEY", MASTER_KEY)]).await;
    let (port, second) = standby_on_a_port(&pg).await;
    assert!(testkit::eventually(Duration::from_secs(20), || follows(port)).await, "the standby never followed");
    let via_second = ecs_at(port, &first.key).await;
    for i in 0..5 {
        via_second.create_cluster().cluster_name(format!("before-{i}")).send().await.unwrap();
    }
    let at_first = ecs_at(first.endpoint.rsplit(':').next().unwrap().parse().unwrap(), &first.key).await;

    // The cable between the first and PostgreSQL is cut: neither end is told.
    let cut = testkit::postgres::Partition::cut("127.0.0.2", pg.port());
    let since = std::time::Instant::now();
    // A write the first takes during the partition can never be committed.
    let stranded = tokio::spawn(async move { at_first.create_cluster().cluster_name("stranded").send().await });
    // PostgreSQL's keepalives end the first's sessions: the second leads.
    let second = tokio::time::timeout(Duration::from_secs(60), second).await.expect("no replica took over").unwrap();
    let took_over = since.elapsed();
    eprintln!("the second led {took_over:?} after the partition");
    let ecs2 = second.ecs_as(&first.key, "us-east-1").await;
    ecs2.create_cluster().cluster_name("after").send().await.unwrap();

    // Healed: the first finds another replica leading and stops; what it took during the
    // partition was never acknowledged and is nowhere.
    drop(cut);
    stops_deposed(&mut first, Duration::from_secs(60)).await;
    if let Ok(Ok(answer)) = tokio::time::timeout(Duration::from_secs(5), stranded).await {
        assert!(answer.is_err(), "a write taken by the cut-off leader was acknowledged: {answer:?}");
    }
    let names: Vec<String> = ecs2
        .list_clusters()
        .send()
        .await
        .unwrap()
        .cluster_arns()
        .iter()
        .map(|a| a.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(names.iter().all(|n| n != "stranded"), "{names:?}");
    assert_eq!(pg.psql(DATABASE, "SELECT count(*) FROM berth.records WHERE key LIKE '%/stranded'"), "0");
    assert!(took_over < Duration::from_secs(30), "takeover took {took_over:?}");
}
