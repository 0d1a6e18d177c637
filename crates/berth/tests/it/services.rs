//! Services on real Docker through `berth up`'s agent and extra `berth agent` processes:
//! convergence, replacement of killed containers, rolling updates within the deployment
//! limits, the circuit breaker with rollback, DAEMON services, draining, lost instances,
//! a control-plane `kill -9` mid-deployment, and ECS's answers to bad input.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_ecs::client::Waiters;
use aws_sdk_ecs::types::{
    ContainerDefinition, DeploymentCircuitBreaker, DeploymentConfiguration, PlacementConstraint,
    PlacementConstraintType, PortMapping, SchedulingStrategy, Service, ServiceField, Tag, Task,
};
use aws_sdk_ecs::Client;
use testkit::images::{remove_containers_with_label, simplehttp_image};
use testkit::{error_code, Berth};

pub(crate) const DEADLINE: Duration = Duration::from_secs(90);

/// Removes every container the test's cluster created (Fargate tasks' included: they are
/// labelled with their own cluster), whatever happens in the test.
/// Then the Docker networks of the server's subnets, once nothing is attached to them.
pub(crate) struct Cleanup {
    cluster: String,
    vpc: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove_containers_with_label("com.amazonaws.ecs.cluster", &self.cluster);
        if let Some(vpc) = &self.vpc {
            testkit::images::remove_unused_subnet_networks(vpc);
        }
    }
}

pub(crate) fn cleanup(b: &Berth, cluster: &str) -> Cleanup {
    let cluster = format!("arn:aws:ecs:us-east-1:{}:cluster/{cluster}", b.key.account);
    Cleanup { cluster, vpc: b.vpc_block().map(str::to_string) }
}

/// The cleanup comes first so that a test's `let (_c, b)` drops it last: containers are
/// removed once the server and its agents are gone, and no service restarts them.
pub(crate) async fn berth_with_agent(env: &[(&str, &str)]) -> (Cleanup, Berth) {
    assert!(!simplehttp_image().is_empty());
    let b = Berth::start_with_agent(env!("CARGO_BIN_EXE_berth"), env).await;
    let c = cleanup(&b, "default");
    (c, b)
}

/// Waits until `n` instances of `cluster` have a connected agent; returns their ARNs.
pub(crate) async fn wait_instances(ecs: &Client, cluster: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(l) = ecs.list_container_instances().cluster(cluster).send().await {
            let arns = l.container_instance_arns().to_vec();
            if arns.len() >= n {
                let d = ecs
                    .describe_container_instances()
                    .cluster(cluster)
                    .set_container_instances(Some(arns.clone()))
                    .send()
                    .await;
                if let Ok(d) = d {
                    let connected: Vec<String> = d
                        .container_instances()
                        .iter()
                        .filter(|i| i.agent_connected())
                        .filter_map(|i| i.container_instance_arn().map(str::to_string))
                        .collect();
                    if connected.len() >= n {
                        return connected;
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "{n} connected instances did not appear in {cluster}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn register(ecs: &Client, family: &str, command: &[&str]) {
    ecs.register_task_definition()
        .family(family)
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image(simplehttp_image())
                .memory(16)
                .set_command(Some(command.iter().map(|s| s.to_string()).collect()))
                .port_mappings(PortMapping::builder().container_port(8080).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
}

fn deployment(min: i32, max: i32, breaker: Option<bool>) -> DeploymentConfiguration {
    let mut b = DeploymentConfiguration::builder().minimum_healthy_percent(min).maximum_percent(max);
    if let Some(rollback) = breaker {
        b = b.deployment_circuit_breaker(DeploymentCircuitBreaker::builder().enable(true).rollback(rollback).build());
    }
    b.build()
}

pub(crate) async fn describe(ecs: &Client, cluster: &str, name: &str) -> Service {
    let d = ecs.describe_services().cluster(cluster).services(name).send().await.unwrap();
    d.services().first().cloned().unwrap_or_else(|| panic!("service {name} not found: {:?}", d.failures()))
}

/// The service's tasks with the given desired status, described.
pub(crate) async fn service_tasks(ecs: &Client, cluster: &str, name: &str, desired: &str) -> Vec<Task> {
    let status = aws_sdk_ecs::types::DesiredStatus::from(desired);
    let mut arns = Vec::new();
    let mut token = None;
    loop {
        let l = ecs
            .list_tasks()
            .cluster(cluster)
            .service_name(name)
            .desired_status(status.clone())
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        arns.extend(l.task_arns().iter().cloned());
        token = l.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let mut out = Vec::new();
    for chunk in arns.chunks(100) {
        let d = ecs.describe_tasks().cluster(cluster).set_tasks(Some(chunk.to_vec())).send().await.unwrap();
        out.extend(d.tasks().iter().cloned());
    }
    out
}

pub(crate) fn is_steady(s: &Service) -> bool {
    s.deployments().len() == 1
        && s.running_count() == s.desired_count()
        && s.pending_count() == 0
        && s.deployments()[0].rollout_state() == Some(&aws_sdk_ecs::types::DeploymentRolloutState::Completed)
}

/// Waits until the service is steady and says so in its events.
pub(crate) async fn wait_steady(ecs: &Client, cluster: &str, name: &str) -> Service {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let s = describe(ecs, cluster, name).await;
        let said =
            s.events().first().and_then(|e| e.message()).is_some_and(|m| m.ends_with("has reached a steady state."));
        if is_steady(&s) && said {
            return s;
        }
        assert!(Instant::now() < deadline, "service {name} did not become steady: {s:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn messages(s: &Service) -> Vec<String> {
    s.events().iter().filter_map(|e| e.message().map(str::to_string)).collect()
}

pub(crate) async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn task_id(t: &Task) -> String {
    t.task_arn().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn bad_input_gets_ecs_errors_and_changes_nothing() {
    let b = crate::berth().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("demo").send().await.unwrap();
    register(&ecs, "web", &["serve"]).await;
    let create = || ecs.create_service().cluster("demo").service_name("web").task_definition("web");

    let cases = [
        (create().task_definition("nope").desired_count(1), "ClientException"),
        (create().desired_count(-1), "InvalidParameterException"),
        (create(), "InvalidParameterException"),
        (create().desired_count(1).deployment_configuration(deployment(101, 200, None)), "InvalidParameterException"),
        (create().desired_count(1).deployment_configuration(deployment(50, 90, None)), "InvalidParameterException"),
        (create().scheduling_strategy(SchedulingStrategy::Daemon).desired_count(1), "InvalidParameterException"),
        (
            create().scheduling_strategy(SchedulingStrategy::Daemon).deployment_configuration(deployment(0, 200, None)),
            "InvalidParameterException",
        ),
        (create().service_name("bad name").desired_count(1), "InvalidParameterException"),
        (create().cluster("missing").desired_count(1), "ClusterNotFoundException"),
        (
            create().desired_count(1).launch_type(aws_sdk_ecs::types::LaunchType::Ec2).capacity_provider_strategy(
                aws_sdk_ecs::types::CapacityProviderStrategyItem::builder()
                    .capacity_provider("FARGATE")
                    .build()
                    .unwrap(),
            ),
            "InvalidParameterException",
        ),
        (
            create().desired_count(1).load_balancers(
                aws_sdk_ecs::types::LoadBalancer::builder()
                    .target_group_arn(
                        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/0123456789abcdef",
                    )
                    .container_name("web")
                    .container_port(9999)
                    .build(),
            ),
            "InvalidParameterException",
        ),
    ];
    for (req, code) in cases {
        let err = req.send().await.unwrap_err();
        assert_eq!(error_code(&err), code, "{}", aws_sdk_ecs::error::DisplayErrorContext(&err));
    }
    assert!(ecs.list_services().cluster("demo").send().await.unwrap().service_arns().is_empty(), "nothing was created");

    // A valid service; a second one of the same name is refused.
    let s = create()
        .desired_count(2)
        .tags(Tag::builder().key("team").value("web").build())
        .send()
        .await
        .unwrap()
        .service
        .unwrap();
    assert_eq!(s.status(), Some("ACTIVE"));
    assert_eq!(s.deployments().len(), 1);
    assert_eq!(s.deployments()[0].status(), Some("PRIMARY"));
    assert_eq!(s.deployments()[0].id().map(|i| i.starts_with("ecs-svc/")), Some(true));
    let cfg = s.deployment_configuration().unwrap();
    assert_eq!((cfg.minimum_healthy_percent(), cfg.maximum_percent()), (Some(100), Some(200)));
    let err = create().desired_count(1).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");

    // Nothing can place without instances; the event says why, once.
    eventually("a placement failure event", || async {
        messages(&describe(&ecs, "demo", "web").await)
            .iter()
            .any(|m| m.contains("was unable to place a task") && m.contains("No Container Instances were found"))
    })
    .await;
    let d = ecs
        .describe_services()
        .cluster("demo")
        .services("web")
        .services("ghost")
        .include(ServiceField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(d.services()[0].tags().len(), 1);
    assert_eq!(d.failures()[0].reason(), Some("MISSING"));
    let plain = describe(&ecs, "demo", "web").await;
    assert!(plain.tags().is_empty(), "tags only with include=TAGS");

    let err = ecs.update_service().cluster("demo").service("ghost").desired_count(1).send().await.unwrap_err();
    assert_eq!(error_code(&err), "ServiceNotFoundException");
    let err = ecs.delete_service().cluster("demo").service("web").send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException", "scaled above 0");
    let err = ecs.delete_cluster().cluster("demo").send().await.unwrap_err();
    assert_eq!(error_code(&err), "ClusterContainsServicesException");
    let c = ecs.describe_clusters().clusters("demo").send().await.unwrap();
    assert_eq!(c.clusters()[0].active_services_count(), 1);

    // Pagination and filters of ListServices.
    for i in 0..4 {
        create().service_name(format!("more{i}")).desired_count(0).send().await.unwrap();
    }
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let l = ecs.list_services().cluster("demo").max_results(2).set_next_token(token).send().await.unwrap();
        assert!(l.service_arns().len() <= 2);
        seen.extend(l.service_arns().iter().cloned());
        token = l.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    let daemons =
        ecs.list_services().cluster("demo").scheduling_strategy(SchedulingStrategy::Daemon).send().await.unwrap();
    assert!(daemons.service_arns().is_empty());

    // Scaled to 0, delete without force; the waiter sees it INACTIVE.
    ecs.update_service().cluster("demo").service("web").desired_count(0).send().await.unwrap();
    let gone = ecs.delete_service().cluster("demo").service("web").send().await.unwrap().service.unwrap();
    assert_eq!(gone.status(), Some("DRAINING"));
    ecs.wait_until_services_inactive()
        .cluster("demo")
        .services("web")
        .wait(Duration::from_secs(60))
        .await
        .expect("services-inactive");
    let err = ecs.update_service().cluster("demo").service("web").desired_count(1).send().await.unwrap_err();
    assert_eq!(error_code(&err), "ServiceNotActiveException");
    // The name is free again.
    create().desired_count(0).send().await.unwrap();
}

#[tokio::test]
async fn a_replica_service_converges_and_replaces_a_killed_container() {
    let (_c, b) = berth_with_agent(&[]).await;
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    register(&ecs, "web", &["serve", "--port", "8080"]).await;
    ecs.create_service()
        .service_name("web")
        .task_definition("web")
        .desired_count(3)
        .enable_ecs_managed_tags(true)
        .propagate_tags(aws_sdk_ecs::types::PropagateTags::Service)
        .tags(Tag::builder().key("team").value("web").build())
        .send()
        .await
        .unwrap();
    ecs.wait_until_services_stable().services("web").wait(Duration::from_secs(120)).await.expect("services-stable");
    let s = wait_steady(&ecs, "default", "web").await;
    let events = messages(&s);
    assert!(events.iter().any(|m| m.starts_with("(service web) has started 3 tasks: (task ")), "{events:?}");
    assert!(events.iter().any(|m| m.contains("deployment completed.")), "{events:?}");
    let dep = s.deployments()[0].id().unwrap().to_string();

    let tasks = service_tasks(&ecs, "default", "web", "RUNNING").await;
    assert_eq!(tasks.len(), 3);
    for t in &tasks {
        assert_eq!(t.group(), Some("service:web"));
        assert_eq!(t.started_by(), Some(dep.as_str()));
    }
    let d = ecs
        .describe_tasks()
        .tasks(tasks[0].task_arn().unwrap())
        .include(aws_sdk_ecs::types::TaskField::Tags)
        .send()
        .await
        .unwrap();
    let mut tags: Vec<(String, String)> =
        d.tasks()[0].tags().iter().map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string())).collect();
    tags.sort();
    assert_eq!(
        tags,
        [("aws:ecs:clusterName", "default"), ("aws:ecs:serviceName", "web"), ("team", "web")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
    );

    // docker kill: the service notices the stop and starts a replacement.
    let victim = &tasks[0];
    let container = victim.containers()[0].runtime_id().unwrap().to_string();
    let out = std::process::Command::new("docker").args(["kill", &container]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let victim_id = task_id(victim);
    eventually("the killed task to be replaced", || async {
        let running = service_tasks(&ecs, "default", "web", "RUNNING").await;
        running.len() == 3
            && running.iter().all(|t| t.last_status() == Some("RUNNING"))
            && !running.iter().any(|t| task_id(t) == victim_id)
    })
    .await;
    let s = wait_steady(&ecs, "default", "web").await;
    assert_eq!(s.deployments()[0].failed_tasks(), 1, "the killed task counts as failed");

    // forceNewDeployment: the same revision, a new deployment with new tasks.
    let before: BTreeSet<String> = service_tasks(&ecs, "default", "web", "RUNNING").await.iter().map(task_id).collect();
    let forced = ecs.update_service().service("web").force_new_deployment(true).send().await.unwrap().service.unwrap();
    let new_dep = forced.deployments()[0].id().unwrap().to_string();
    assert_ne!(new_dep, dep);
    eventually("the forced deployment to complete", || async {
        let s = describe(&ecs, "default", "web").await;
        is_steady(&s) && s.deployments()[0].id() == Some(new_dep.as_str())
    })
    .await;
    let after = service_tasks(&ecs, "default", "web", "RUNNING").await;
    assert!(after.iter().all(|t| !before.contains(&task_id(t)) && t.started_by() == Some(new_dep.as_str())));

    // Scale in: the service stops tasks and says so.
    ecs.update_service().service("web").desired_count(1).send().await.unwrap();
    eventually("scale in to 1", || async { is_steady(&describe(&ecs, "default", "web").await) }).await;
    let s = describe(&ecs, "default", "web").await;
    assert!(
        messages(&s).iter().any(|m| m.starts_with("(service web) has stopped 2 running tasks:")),
        "{:?}",
        messages(&s)
    );
    ecs.delete_service().service("web").force(true).send().await.unwrap();
    ecs.wait_until_services_inactive().services("web").wait(Duration::from_secs(60)).await.expect("inactive");
    assert!(service_tasks(&ecs, "default", "web", "RUNNING").await.is_empty());
}

#[tokio::test]
async fn a_rolling_update_never_drops_below_the_minimum() {
    let (_c, b) = berth_with_agent(&[]).await;
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    register(&ecs, "web", &["serve", "--port", "8080"]).await;
    register(&ecs, "web", &["serve", "--port", "8080", "--v2"]).await;
    ecs.create_service()
        .service_name("web")
        .task_definition("web:1")
        .desired_count(4)
        .deployment_configuration(deployment(50, 200, None))
        .send()
        .await
        .unwrap();
    wait_steady(&ecs, "default", "web").await;

    ecs.update_service().service("web").task_definition("web:2").send().await.unwrap();
    // Checked continuously: never fewer than 2 RUNNING (50% of 4), never more than 8 (200%).
    let deadline = Instant::now() + DEADLINE;
    let mut seen_both = false;
    loop {
        let tasks = service_tasks(&ecs, "default", "web", "RUNNING").await;
        let stopping = service_tasks(&ecs, "default", "web", "STOPPED").await;
        let running = tasks.iter().chain(stopping.iter()).filter(|t| t.last_status() == Some("RUNNING")).count();
        let live = tasks.iter().chain(stopping.iter()).filter(|t| t.last_status() != Some("STOPPED")).count();
        assert!(running >= 2, "only {running} tasks RUNNING during the deployment");
        assert!(live <= 8, "{live} tasks at once, above maximumPercent");
        let revs: BTreeSet<_> = tasks.iter().filter_map(|t| t.task_definition_arn().map(str::to_string)).collect();
        seen_both |= revs.len() == 2;
        let s = describe(&ecs, "default", "web").await;
        if is_steady(&s) && s.task_definition().is_some_and(|t| t.ends_with("web:2")) {
            assert!(tasks.iter().all(|t| t.task_definition_arn().unwrap().ends_with("web:2")));
            break;
        }
        assert!(Instant::now() < deadline, "the deployment did not complete: {s:#?}");
    }
    assert!(seen_both, "old and new tasks ran side by side");
    let s = wait_steady(&ecs, "default", "web").await;
    assert!(messages(&s).iter().any(|m| m.starts_with("(service web) has stopped")));
    // The deployment is listed with its revisions.
    let listed = ecs.list_service_deployments().service("web").send().await.unwrap();
    let briefs = listed.service_deployments();
    assert_eq!(briefs.len(), 2);
    assert!(briefs.iter().all(|d| d.status() == Some(&aws_sdk_ecs::types::ServiceDeploymentStatus::Successful)));
    let arn = briefs[0].service_deployment_arn().unwrap();
    let d = ecs.describe_service_deployments().service_deployment_arns(arn).send().await.unwrap();
    let sd = &d.service_deployments()[0];
    assert_eq!(sd.source_service_revisions().len(), 1);
    let target = sd.target_service_revision().unwrap().arn().unwrap();
    let r = ecs.describe_service_revisions().service_revision_arns(target).send().await.unwrap();
    assert!(r.service_revisions()[0].task_definition().unwrap().ends_with("web:2"));
    ecs.delete_service().service("web").force(true).send().await.unwrap();
}

#[tokio::test]
async fn the_circuit_breaker_fails_a_crashing_deployment_and_rolls_back() {
    let (_c, b) = berth_with_agent(&[]).await;
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    register(&ecs, "web", &["serve", "--port", "8080"]).await;
    // The new revision's containers cannot start at all, so its tasks never reach RUNNING.
    // (A container that exits at once may be seen RUNNING first; under load both new
    // tasks could look RUNNING at once, the old ones be drained, and the deployment
    // complete before it crashes: then there is nothing left to roll back.)
    ecs.register_task_definition()
        .family("web")
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image(simplehttp_image())
                .memory(16)
                .entry_point("/no-such-program")
                .port_mappings(PortMapping::builder().container_port(8080).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    ecs.create_service()
        .service_name("web")
        .task_definition("web:1")
        .desired_count(2)
        .deployment_configuration(deployment(100, 200, Some(true)))
        .send()
        .await
        .unwrap();
    let before = wait_steady(&ecs, "default", "web").await;
    let first = before.deployments()[0].id().unwrap().to_string();

    let updated = ecs.update_service().service("web").task_definition("web:2").send().await.unwrap().service.unwrap();
    let failed = updated.deployments()[0].id().unwrap().to_string();
    assert_ne!(failed, first);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let s = describe(&ecs, "default", "web").await;
        if is_steady(&s) && s.task_definition().is_some_and(|t| t.ends_with("web:1")) {
            break;
        }
        // On a timeout, say where the deployment stands.
        let story: Vec<String> = s
            .deployments()
            .iter()
            .map(|d| {
                format!(
                    "{:?} {:?} failed={} running={}",
                    d.id(),
                    d.rollout_state(),
                    d.failed_tasks(),
                    d.running_count()
                )
            })
            .collect();
        assert!(Instant::now() < deadline, "no rollback: deployments {story:?}, events {:?}", messages(&s));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = wait_steady(&ecs, "default", "web").await;
    let events = messages(&s);
    let failed_msg = format!("(service web) (deployment {failed}) deployment failed: tasks failed to start.");
    assert!(events.contains(&failed_msg), "{events:?}");
    assert!(events.contains(&format!("(service web) rolling back to deployment {first}.")), "{events:?}");
    assert_eq!(s.deployments()[0].id(), Some(first.as_str()), "the completed deployment is PRIMARY again");
    // The old tasks kept running throughout (minimumHealthyPercent 100).
    let running = service_tasks(&ecs, "default", "web", "RUNNING").await;
    assert_eq!(running.len(), 2);
    assert!(running.iter().all(|t| t.started_by() == Some(first.as_str())));

    let listed = ecs.list_service_deployments().service("web").send().await.unwrap();
    let rolled = listed
        .service_deployments()
        .iter()
        .find(|d| d.status() == Some(&aws_sdk_ecs::types::ServiceDeploymentStatus::RollbackSuccessful))
        .expect("the failed deployment shows its rollback");
    let d = ecs
        .describe_service_deployments()
        .service_deployment_arns(rolled.service_deployment_arn().unwrap())
        .send()
        .await
        .unwrap();
    let sd = &d.service_deployments()[0];
    let breaker = sd.deployment_circuit_breaker().unwrap();
    assert_eq!(breaker.threshold(), 3);
    assert!(breaker.failure_count() >= 3);
    assert!(sd.rollback().is_some());
    ecs.delete_service().service("web").force(true).send().await.unwrap();
}

#[tokio::test]
async fn tasks_that_never_start_are_throttled() {
    let (_c, b) = berth_with_agent(&[]).await;
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    ecs.register_task_definition()
        .family("missing")
        .container_definitions(
            ContainerDefinition::builder().name("c").image("berth-test/does-not-exist:1").memory(16).build(),
        )
        .send()
        .await
        .unwrap();
    ecs.create_service().service_name("broken").task_definition("missing").desired_count(1).send().await.unwrap();
    eventually("the throttle event", || async {
        messages(&describe(&ecs, "default", "broken").await)
            .iter()
            .any(|m| m == "(service broken) is unable to consistently start tasks successfully. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.")
    })
    .await;
    // Throttled: launches are spaced out instead of retried in a loop.
    let count = || async {
        let s = describe(&ecs, "default", "broken").await;
        messages(&s).iter().filter(|m| m.contains("has started")).count()
    };
    let started = count().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(count().await <= started + 1, "launches continued without pause");
    ecs.delete_service().service("broken").force(true).send().await.unwrap();
}

/// How many tasks the service has started, running or stopped.
async fn started_tasks(ecs: &Client, name: &str) -> usize {
    let mut n = 0;
    for desired in ["RUNNING", "STOPPED"] {
        n += service_tasks(ecs, "default", name, desired).await.len();
    }
    n
}

#[tokio::test]
async fn a_crash_looping_service_is_throttled() {
    let (_c, b) = berth_with_agent(&[]).await;
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    // Its container starts, then exits at once: the task reaches RUNNING, or nearly.
    register(&ecs, "crash", &["exit", "1"]).await;
    ecs.create_service().service_name("crash").task_definition("crash").desired_count(2).send().await.unwrap();
    let throttled = "(service crash) is unable to consistently start tasks successfully. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.";
    eventually("the throttle event", || async {
        messages(&describe(&ecs, "default", "crash").await).iter().any(|m| m == throttled)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    // Two at once, two more at once, then 5 s, 10 s, 20 s, 40 s apart: at most 8 in 20 s
    // (without the throttle, hundreds).
    let started = started_tasks(&ecs, "crash").await;
    assert!(started <= 8, "{started} tasks started in about 20 s");
    let s = describe(&ecs, "default", "crash").await;
    let events = messages(&s);
    let said = events.iter().filter(|m| *m == throttled).count();
    let launches = events.iter().filter(|m| m.contains("has started")).count();
    assert!(said < launches, "the throttle is said at most once per launch: {events:?}");
    ecs.delete_service().service("crash").force(true).send().await.unwrap();
}

#[tokio::test]
async fn a_rolled_back_deployment_says_nothing_more_about_its_tasks() {
    let (_c, b) = berth_with_agent(&[]).await;
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    register(&ecs, "web", &["serve", "--port", "8080"]).await;
    register(&ecs, "web", &["exit", "1"]).await;
    ecs.create_service()
        .service_name("web")
        .task_definition("web:1")
        .desired_count(2)
        .deployment_configuration(deployment(100, 200, Some(true)))
        .send()
        .await
        .unwrap();
    let first = wait_steady(&ecs, "default", "web").await.deployments()[0].id().unwrap().to_string();
    ecs.update_service().service("web").task_definition("web:2").send().await.unwrap();
    let rolling_back = format!("(service web) rolling back to deployment {first}.");
    eventually("the rollback", || async { messages(&describe(&ecs, "default", "web").await).contains(&rolling_back) })
        .await;
    let s = wait_steady(&ecs, "default", "web").await;
    let events = messages(&s);
    let at = events.iter().position(|m| *m == rolling_back).unwrap();
    assert!(
        !events[..at].iter().any(|m| m.contains("unable to consistently start")),
        "nothing about the failed deployment's tasks after its rollback: {events:?}"
    );
    assert!(events.iter().any(|m| m.contains("deployment failed: tasks failed to start")), "{events:?}");
    ecs.delete_service().service("web").force(true).send().await.unwrap();
}

#[tokio::test]
async fn a_daemon_service_follows_instances_joining_and_draining() {
    let (_c, b) = berth_with_agent(&[]).await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("daemons").send().await.unwrap();
    let _clean = cleanup(&b, "daemons");
    let _a = b.spawn_agent("daemons", &[]);
    let first = wait_instances(&ecs, "daemons", 1).await;
    register(&ecs, "logger", &["sleep"]).await;
    ecs.create_service()
        .cluster("daemons")
        .service_name("logger")
        .task_definition("logger")
        .scheduling_strategy(SchedulingStrategy::Daemon)
        .send()
        .await
        .unwrap();
    eventually("one task on the one instance", || async {
        let s = describe(&ecs, "daemons", "logger").await;
        s.desired_count() == 1 && is_steady(&s)
    })
    .await;

    let _b2 = b.spawn_agent("daemons", &[]);
    let both = wait_instances(&ecs, "daemons", 2).await;
    let second = both.iter().find(|a| !first.contains(a)).unwrap().clone();
    eventually("a task on the instance that joined", || async {
        let tasks = service_tasks(&ecs, "daemons", "logger", "RUNNING").await;
        let on: BTreeSet<_> = tasks
            .iter()
            .filter(|t| t.last_status() == Some("RUNNING"))
            .filter_map(|t| t.container_instance_arn().map(str::to_string))
            .collect();
        on.len() == 2 && tasks.len() == 2
    })
    .await;

    ecs.update_container_instances_state()
        .cluster("daemons")
        .container_instances(&second)
        .status(aws_sdk_ecs::types::ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    eventually("no task on the DRAINING instance", || async {
        let tasks = service_tasks(&ecs, "daemons", "logger", "RUNNING").await;
        let s = describe(&ecs, "daemons", "logger").await;
        tasks.len() == 1 && tasks[0].container_instance_arn() != Some(second.as_str()) && s.desired_count() == 1
    })
    .await;
    ecs.delete_service().cluster("daemons").service("logger").send().await.unwrap();
    ecs.wait_until_services_inactive()
        .cluster("daemons")
        .services("logger")
        .wait(Duration::from_secs(60))
        .await
        .unwrap();
}

#[tokio::test]
async fn draining_moves_service_tasks_and_leaves_standalone_tasks() {
    let (_c, b) = berth_with_agent(&[]).await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("drain").send().await.unwrap();
    let _clean = cleanup(&b, "drain");
    let _a = b.spawn_agent("drain", &[("BERTH_AVAILABILITY_ZONE", "us-east-1a")]);
    let _b2 = b.spawn_agent("drain", &[("BERTH_AVAILABILITY_ZONE", "us-east-1b")]);
    let instances = wait_instances(&ecs, "drain", 2).await;
    register(&ecs, "sleeper", &["sleep"]).await;
    ecs.create_service()
        .cluster("drain")
        .service_name("svc")
        .task_definition("sleeper")
        .desired_count(2)
        .send()
        .await
        .unwrap();
    wait_steady(&ecs, "drain", "svc").await;
    let tasks = service_tasks(&ecs, "drain", "svc", "RUNNING").await;
    let zones: BTreeSet<_> = tasks.iter().filter_map(|t| t.availability_zone().map(str::to_string)).collect();
    assert_eq!(zones.len(), 2, "the default strategy spreads over availability zones");
    let target = instances[0].clone();
    let standalone = ecs
        .start_task()
        .cluster("drain")
        .task_definition("sleeper")
        .container_instances(&target)
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .task_arn()
        .unwrap()
        .to_string();

    ecs.update_container_instances_state()
        .cluster("drain")
        .container_instances(&target)
        .status(aws_sdk_ecs::types::ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    eventually("the service tasks to leave the DRAINING instance", || async {
        let tasks = service_tasks(&ecs, "drain", "svc", "RUNNING").await;
        tasks.len() == 2
            && tasks
                .iter()
                .all(|t| t.container_instance_arn() != Some(target.as_str()) && t.last_status() == Some("RUNNING"))
    })
    .await;
    wait_steady(&ecs, "drain", "svc").await;
    let d = ecs.describe_tasks().cluster("drain").tasks(&standalone).send().await.unwrap();
    assert_eq!(d.tasks()[0].last_status(), Some("RUNNING"), "standalone tasks are left alone");
    assert_eq!(d.tasks()[0].desired_status(), Some("RUNNING"));
    ecs.stop_task().cluster("drain").task(&standalone).send().await.unwrap();
    ecs.delete_service().cluster("drain").service("svc").force(true).send().await.unwrap();
}

#[tokio::test]
async fn the_tasks_of_a_lost_instance_move_elsewhere() {
    let (_c, b) = berth_with_agent(&[("BERTH_LOST_INSTANCE_GRACE", "2")]).await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("lossy").send().await.unwrap();
    let _clean = cleanup(&b, "lossy");
    let env_a = [("BERTH_AVAILABILITY_ZONE", "us-east-1a")];
    let mut a = b.spawn_agent("lossy", &env_a);
    let b2 = b.spawn_agent("lossy", &[("BERTH_AVAILABILITY_ZONE", "us-east-1b")]);
    wait_instances(&ecs, "lossy", 2).await;
    register(&ecs, "sleeper", &["sleep"]).await;
    let distinct = PlacementConstraint::builder().r#type(PlacementConstraintType::DistinctInstance).build();
    ecs.create_service()
        .cluster("lossy")
        .service_name("svc")
        .task_definition("sleeper")
        .desired_count(1)
        .placement_constraints(distinct)
        .send()
        .await
        .unwrap();
    wait_steady(&ecs, "lossy", "svc").await;
    let t = service_tasks(&ecs, "lossy", "svc", "RUNNING").await.remove(0);
    let victim_instance = t.container_instance_arn().unwrap().to_string();
    let zone = t.availability_zone().unwrap().to_string();
    if zone != "us-east-1a" {
        // The task is on B: lose B instead, the test is symmetric.
        drop(b2);
    } else {
        a.kill9();
    }
    eventually("the task to be replaced on the other instance", || async {
        let tasks = service_tasks(&ecs, "lossy", "svc", "RUNNING").await;
        tasks.len() == 1
            && tasks[0].container_instance_arn() != Some(victim_instance.as_str())
            && tasks[0].last_status() == Some("RUNNING")
    })
    .await;
    let s = wait_steady(&ecs, "lossy", "svc").await;
    let events = messages(&s);
    assert!(events.iter().any(|m| m.contains("has not been heard from for more than 2 seconds")), "{events:?}");
    let old = ecs.describe_tasks().cluster("lossy").tasks(t.task_arn().unwrap()).send().await.unwrap();
    assert_eq!(old.tasks()[0].desired_status(), Some("STOPPED"));
    assert_eq!(old.tasks()[0].last_status(), Some("STOPPED"), "written off");
    let container = t.containers()[0].runtime_id().unwrap().to_string();
    let running = |id: String| async move {
        let out =
            std::process::Command::new("docker").args(["inspect", "-f", "{{.State.Running}}", &id]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "true"
    };
    assert!(running(container.clone()).await, "the lost instance's container still runs meanwhile");
    if zone == "us-east-1a" {
        // The agent comes back and stops the written-off task's container.
        a.restart(&b, "lossy", &env_a);
        eventually("the returning agent to stop the old container", || async { !running(container.clone()).await })
            .await;
        wait_steady(&ecs, "lossy", "svc").await;
    }
    ecs.delete_service().cluster("lossy").service("svc").force(true).send().await.unwrap();
}

#[tokio::test]
async fn a_deployment_continues_after_a_control_plane_kill_9() {
    let (_c, mut b) = berth_with_agent(&[]).await;
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    register(&ecs, "web", &["sleep"]).await;
    register(&ecs, "web", &["sleep", "--v2"]).await;
    ecs.create_service()
        .service_name("web")
        .task_definition("web:1")
        .desired_count(4)
        .deployment_configuration(deployment(50, 150, None))
        .send()
        .await
        .unwrap();
    wait_steady(&ecs, "default", "web").await;
    ecs.update_service().service("web").task_definition("web:2").send().await.unwrap();
    // Kill in the middle: some new tasks exist, the deployment is not done.
    eventually("the deployment to be under way", || async {
        let tasks = service_tasks(&ecs, "default", "web", "RUNNING").await;
        tasks.iter().any(|t| t.task_definition_arn().is_some_and(|a| a.ends_with("web:2")))
    })
    .await;
    let before_kill: Vec<String> = service_tasks(&ecs, "default", "web", "RUNNING")
        .await
        .into_iter()
        .chain(service_tasks(&ecs, "default", "web", "STOPPED").await)
        .filter_map(|t| t.task_arn().map(str::to_string))
        .collect();
    b.kill9();
    b.restart().await;
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    eventually("the deployment to finish after the restart", || async {
        let s = describe(&ecs, "default", "web").await;
        is_steady(&s) && s.task_definition().is_some_and(|t| t.ends_with("web:2"))
    })
    .await;
    // No task was lost: every task known before the kill is still known.
    for arn in &before_kill {
        let d = ecs.describe_tasks().tasks(arn).send().await.unwrap();
        assert_eq!(d.tasks().len(), 1, "task {arn} was lost");
    }
    // No duplicates: exactly 4 service tasks run, and exactly 4 containers.
    let running = service_tasks(&ecs, "default", "web", "RUNNING").await;
    assert_eq!(running.len(), 4);
    assert!(running.iter().all(|t| t.task_definition_arn().unwrap().ends_with("web:2")));
    let cluster = format!("arn:aws:ecs:us-east-1:{}:cluster/default", b.key.account);
    eventually("exactly 4 containers of the service", || async {
        let out = std::process::Command::new("docker")
            .args(["ps", "-q", "--filter", &format!("label=com.amazonaws.ecs.cluster={cluster}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count() == 4
    })
    .await;
    ecs.delete_service().service("web").force(true).send().await.unwrap();
}

async fn register_checked(ecs: &Client, family: &str, check_port: &str) {
    let check = aws_sdk_ecs::types::HealthCheck::builder()
        .set_command(Some(["CMD", "/simplehttp", "check", "--port", check_port].map(String::from).to_vec()))
        .interval(5)
        .timeout(2)
        .retries(1)
        .build()
        .unwrap();
    ecs.register_task_definition()
        .family(family)
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image(simplehttp_image())
                .memory(16)
                .set_command(Some(["serve", "--port", "8080"].map(String::from).to_vec()))
                .health_check(check)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn container_health_checks_gate_deployments_and_failing_tasks_are_replaced() {
    let (_c, b) = berth_with_agent(&[]).await;
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    register_checked(&ecs, "checked", "8080").await;
    register_checked(&ecs, "checked", "9999").await;
    ecs.create_service()
        .service_name("web")
        .task_definition("checked:1")
        .desired_count(2)
        .deployment_configuration(deployment(100, 200, Some(true)))
        .send()
        .await
        .unwrap();
    wait_steady(&ecs, "default", "web").await;
    let tasks = service_tasks(&ecs, "default", "web", "RUNNING").await;
    assert!(
        tasks.iter().all(|t| t.health_status() == Some(&aws_sdk_ecs::types::HealthStatus::Healthy)),
        "steady means HEALTHY"
    );

    // Revision 2 fails its health check: its tasks run but never count as healthy, are
    // replaced, and the circuit breaker rolls back; the healthy tasks stay throughout.
    ecs.update_service().service("web").task_definition("checked:2").send().await.unwrap();
    eventually("the rollback to revision 1", || async {
        let s = describe(&ecs, "default", "web").await;
        let events = messages(&s);
        is_steady(&s)
            && s.task_definition().is_some_and(|t| t.ends_with("checked:1"))
            && events.iter().any(|m| m.contains("rolling back to deployment"))
    })
    .await;
    let s = describe(&ecs, "default", "web").await;
    assert!(messages(&s).iter().any(|m| m.contains("failed container health checks.")), "{:?}", messages(&s));
    let running = service_tasks(&ecs, "default", "web", "RUNNING").await;
    assert_eq!(running.len(), 2);
    assert!(running.iter().all(|t| t.task_definition_arn().unwrap().ends_with("checked:1")));
    ecs.delete_service().service("web").force(true).send().await.unwrap();
}
