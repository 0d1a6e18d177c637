//! Replicas whose clocks disagree: one runs with libfaketime (Debian's `faketime`), its
//! wall clock five minutes behind the other replica's, the agent's and the clients' (its
//! monotonic clock, which timeouts and keepalives use, untouched). Leadership and
//! durability read no clock; what does (SigV4's window, the times a service controller
//! compares with the agents' reports) must carry on.

use std::time::{Duration, Instant};

use testkit::postgres::TestPostgres;
use testkit::Berth;

use crate::postgres::{ecs_at, follows, server, MASTER_KEY};
use crate::support::{running_tasks, web_container};

const CLUSTER: &str = "skew";
/// How far the second replica's clock is behind.
const BEHIND: &str = "-300s";

/// Debian's libfaketime (package `faketime`, which `scripts/install-test-deps.sh` installs).
fn libfaketime() -> String {
    let found = std::fs::read_dir("/usr/lib").unwrap().filter_map(|e| {
        let path = e.ok()?.path().join("faketime").join("libfaketime.so.1");
        path.exists().then(|| path.display().to_string())
    });
    found.into_iter().next().expect("libfaketime is not installed; run scripts/install-test-deps.sh")
}

#[tokio::test]
async fn a_replica_whose_clock_is_behind_takes_over_and_its_cluster_carries_on() {
    let pg = TestPostgres::start();
    let mut first = server(&pg).await;
    let _cleanup = crate::services::cleanup(&first, CLUSTER);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = pg.url();
    let libfaketime = libfaketime();
    let second = tokio::spawn(async move {
        // libfaketime preloaded into the server itself (the `faketime` command would run it
        // as its child, which a kill of the child the test holds would leave running).
        let env = [
            ("BERTH_MASTER_KEY", MASTER_KEY),
            ("LD_PRELOAD", libfaketime.as_str()),
            ("FAKETIME", BEHIND),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ];
        let listen = format!("127.0.0.1:{port}");
        Berth::start_replica_under(env!("CARGO_BIN_EXE_berth"), &url, &env, &listen, &[]).await
    });
    assert!(testkit::eventually(Duration::from_secs(30), || follows(port)).await, "the skewed replica never followed");
    let ecs1 = first.ecs().await;
    ecs1.create_cluster().cluster_name(CLUSTER).send().await.unwrap();
    // Requests signed five minutes after its clock's time are within SigV4's window.
    let via_second = ecs_at(port, &first.key).await;
    assert!(
        testkit::eventually(Duration::from_secs(10), || async {
            via_second.describe_clusters().clusters(CLUSTER).send().await.is_ok_and(|d| d.clusters().len() == 1)
        })
        .await
    );

    let replicas = format!("{},http://127.0.0.1:{port}", first.endpoint);
    let _agent = first.spawn_agent(CLUSTER, &[("ECS_BACKEND_HOST", &replicas)]);
    crate::services::wait_instances(&ecs1, CLUSTER, 1).await;
    let a = ecs1
        .register_task_definition()
        .family("web")
        .container_definitions(web_container(Some("a")))
        .send()
        .await
        .unwrap();
    let a = a.task_definition().unwrap().task_definition_arn().unwrap().to_string();
    let before = crate::support::web_service_running(&ecs1, CLUSTER, &a).await;

    // The skewed replica leads: its service controller compares its clock with times the
    // first and the agent wrote, five minutes later than its own.
    first.kill9();
    let second = second.await.unwrap();
    let ecs2 = second.ecs_as(&first.key, "us-east-1").await;
    crate::services::wait_instances(&ecs2, CLUSTER, 1).await;
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(10) {
        assert_eq!(running_tasks(&ecs2, CLUSTER).await, before, "the task runs on, in the same container, unreplaced");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A deployment under it replaces the task and completes, as under a leader in step.
    let b = ecs2
        .register_task_definition()
        .family("web")
        .container_definitions(web_container(Some("b")))
        .send()
        .await
        .unwrap();
    let b = b.task_definition().unwrap().task_definition_arn().unwrap().to_string();
    ecs2.update_service().cluster(CLUSTER).service("web").task_definition(&b).send().await.unwrap();
    let since = Instant::now();
    crate::services::eventually("the deployment completes", async || {
        let s = ecs2.describe_services().cluster(CLUSTER).services("web").send().await.unwrap();
        let s = &s.services()[0];
        let d = s.deployments();
        d.len() == 1
            && d[0].rollout_state().map(|r| r.as_str()) == Some("COMPLETED")
            && running_tasks(&ecs2, CLUSTER).await.iter().map(|t| t.task_definition.as_str()).collect::<Vec<_>>()
                == [b.as_str()]
    })
    .await;
    eprintln!("the deployment completed {:?} after the update", since.elapsed());
    ecs2.update_service().cluster(CLUSTER).service("web").desired_count(0).send().await.unwrap();
    ecs2.delete_service().cluster(CLUSTER).service("web").send().await.unwrap();
}
