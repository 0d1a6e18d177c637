//! Replicas on hosts of their own (`testkit::netns`): three `berth server`s, each in a
//! network namespace with its own address on a private bridge, sharing a PostgreSQL that
//! listens on the bridge, and an agent on a fourth host given all three. A host is cut off the network
//! whole (its cable out: PostgreSQL, clients and the agent all lose it at once), or from
//! PostgreSQL alone (its own firewall), and PostgreSQL is restarted under the replicas.
//! Needs root (namespaces, iptables).

use std::time::{Duration, Instant};

use testkit::netns::{Host, Net};
use testkit::postgres::{TestPostgres, DATABASE};
use testkit::Berth;

use crate::postgres::{stops_deposed, MASTER_KEY};
use crate::support::running_tasks;

const CLUSTER: &str = "hosts";

/// A replica in `host`; it resolves once it leads (a follower serves before that).
fn replica(host: &Host, url: &str) -> tokio::task::JoinHandle<Berth> {
    let (host, url) = (host.clone(), url.to_string());
    tokio::spawn(async move {
        Berth::start_on_store_in(env!("CARGO_BIN_EXE_berth"), &host, &url, &[("BERTH_MASTER_KEY", MASTER_KEY)]).await
    })
}

fn endpoint(host: &Host) -> String {
    format!("http://{}:7447", host.address)
}

async fn follows(host: &Host) -> bool {
    testkit::http_get_text(&format!("{}/_berth/health", endpoint(host))).await.contains("follower")
}

async fn ecs_at(host: &Host, key: &testkit::Key) -> aws_sdk_ecs::Client {
    aws_sdk_ecs::Client::new(&testkit::sdk_config_at(&endpoint(host), key, "us-east-1").await)
}

async fn cluster_names(ecs: &aws_sdk_ecs::Client) -> Vec<String> {
    let list = ecs.list_clusters().send().await.unwrap();
    let mut names: Vec<String> =
        list.cluster_arns().iter().map(|a| a.rsplit('/').next().unwrap().to_string()).collect();
    names.sort();
    names
}

/// PostgreSQL listening on the bridge of `net` too, with the test database.
fn postgres_on(net: &Net) -> TestPostgres {
    let mut pg = TestPostgres::create();
    pg.listen_also(&net.gateway().to_string(), &net.block());
    pg.start_server();
    pg.create_database(DATABASE);
    pg
}

#[tokio::test]
async fn a_leader_cut_off_the_network_is_replaced_its_agent_and_tasks_follow_and_it_stops_once_back() {
    let mut net = Net::new();
    let hosts: Vec<Host> = ["a", "b", "c"].into_iter().map(|n| net.host(n)).collect();
    // The agent on a host of its own; the containers it runs are the machine's Docker's.
    let agent_host = net.host("agent");
    let pg = postgres_on(&net);
    let url = pg.url_at(&net.gateway().to_string());

    let mut first = replica(&hosts[0], &url).await.unwrap();
    let _cleanup = crate::services::cleanup(&first, CLUSTER);
    let mut waiting = vec![replica(&hosts[1], &url), replica(&hosts[2], &url)];
    for host in &hosts[1..] {
        assert!(testkit::eventually(Duration::from_secs(30), || follows(host)).await, "{} never followed", host.name);
    }
    let key = first.key.clone();
    let ecs1 = first.ecs().await;
    ecs1.create_cluster().cluster_name(CLUSTER).send().await.unwrap();
    // Writes through a follower cross from its host to the leader's.
    let via_b = ecs_at(&hosts[1], &key).await;
    for i in 0..5 {
        via_b.create_cluster().cluster_name(format!("before-{i}")).send().await.unwrap();
    }
    let replicas: Vec<String> = hosts.iter().map(endpoint).collect();
    let _agent = first.spawn_agent_in(&agent_host, CLUSTER, &[("ECS_BACKEND_HOST", &replicas.join(","))]);
    crate::services::wait_instances(&ecs1, CLUSTER, 1).await;
    let web = crate::support::web_container(None);
    ecs1.register_task_definition().family("web").container_definitions(web).send().await.unwrap();
    let before = crate::support::web_service_running(&ecs1, CLUSTER, "web").await;

    // The leader's host loses its cable: one of the others leads.
    let cut = hosts[0].cut();
    let since = Instant::now();
    let (next, _, rest) = futures_util::future::select_all(waiting.drain(..)).await;
    let next = next.unwrap();
    let took_over = since.elapsed();
    let led = hosts.iter().find(|h| next.endpoint == endpoint(h)).expect("the new leader is one of the hosts");
    let other = hosts[1..].iter().find(|h| h.name != led.name).unwrap();
    eprintln!("{} led {took_over:?} after {}'s cable was cut", led.name, hosts[0].name);
    let ecs2 = next.ecs_as(&key, "us-east-1").await;

    // The agent finds the new leader; the task runs on in the same container.
    crate::services::wait_instances(&ecs2, CLUSTER, 1).await;
    eprintln!("the agent was connected again {:?} after the cut", since.elapsed());
    assert_eq!(running_tasks(&ecs2, CLUSTER).await, before, "the same task, the same container");
    let inspect = std::process::Command::new("docker")
        .args(["inspect", "--format", "{{.State.Running}}", &before[0].container])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&inspect.stdout).trim(), "true");
    // The new leader reconciles the service through the agent, and takes writes through
    // the third host (which follows it now).
    ecs2.update_service().cluster(CLUSTER).service("web").desired_count(2).send().await.unwrap();
    crate::services::eventually("two tasks run", async || running_tasks(&ecs2, CLUSTER).await.len() == 2).await;
    let via_other = ecs_at(other, &key).await;
    assert!(testkit::eventually(Duration::from_secs(30), || follows(other)).await, "{} does not follow", other.name);
    via_other.create_cluster().cluster_name("after").send().await.unwrap();

    // The cable back: the first finds another replica leading and stops.
    drop(cut);
    stops_deposed(&mut first, Duration::from_secs(60)).await;
    let names = cluster_names(&via_other).await;
    assert_eq!(names, ["after", "before-0", "before-1", "before-2", "before-3", "before-4", CLUSTER], "{names:?}");
    assert!(took_over < Duration::from_secs(30), "takeover took {took_over:?}");

    ecs2.update_service().cluster(CLUSTER).service("web").desired_count(0).send().await.unwrap();
    ecs2.delete_service().cluster(CLUSTER).service("web").send().await.unwrap();
    drop(rest);
}

#[tokio::test]
async fn a_leader_cut_off_from_postgresql_alone_is_replaced_and_after_postgresql_restarts_every_write_is_there() {
    let mut net = Net::new();
    let hosts: Vec<Host> = ["a", "b"].into_iter().map(|n| net.host(n)).collect();
    let mut pg = postgres_on(&net);
    let url = pg.url_at(&net.gateway().to_string());
    let mut first = replica(&hosts[0], &url).await.unwrap();
    let second = replica(&hosts[1], &url);
    assert!(testkit::eventually(Duration::from_secs(30), || follows(&hosts[1])).await, "b never followed");
    let via_b = ecs_at(&hosts[1], &first.key).await;
    for i in 0..5 {
        via_b.create_cluster().cluster_name(format!("before-{i}")).send().await.unwrap();
    }

    // a loses PostgreSQL but not its clients: b leads once PostgreSQL's keepalives end a's
    // sessions, and takes writes.
    let cut = hosts[0].cut_from(net.gateway(), pg.port());
    let since = Instant::now();
    let _second = tokio::time::timeout(Duration::from_secs(60), second).await.expect("b never led").unwrap();
    eprintln!("b led {:?} after a was cut off from PostgreSQL", since.elapsed());
    via_b.create_cluster().cluster_name("after-cut").send().await.unwrap();
    drop(cut);
    stops_deposed(&mut first, Duration::from_secs(60)).await;

    // PostgreSQL restarts under the leader: it leads again, with every write.
    pg.stop_server();
    pg.start_server();
    crate::services::eventually("a write after PostgreSQL restarted", async || {
        via_b.create_cluster().cluster_name("after-restart").send().await.is_ok()
    })
    .await;
    let names = cluster_names(&via_b).await;
    let expected = ["after-cut", "after-restart", "before-0", "before-1", "before-2", "before-3", "before-4"];
    assert_eq!(names, expected, "{names:?}");
}
