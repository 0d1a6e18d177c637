//! Tasks on real Docker through `berth up`'s agent and extra `berth agent` processes
//! sharing the machine's engine: run, stop, failures, placement across instances, and
//! restarts of the control plane and of an agent.

use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{
    ContainerDefinition, PlacementConstraint, PlacementConstraintType, PlacementStrategy, PlacementStrategyType,
    PortMapping, Task,
};
use aws_sdk_ecs::Client;
use testkit::images::simplehttp_image;
use testkit::Berth;

use crate::services::{cleanup, wait_instances, Cleanup};

use crate::support::RepositoryUri;

const DEADLINE: Duration = Duration::from_secs(60);

/// The cleanup comes first so that a test's `let (_c, b)` drops it last: containers are
/// removed once the server and its agent are gone, and nothing restarts them.
async fn berth_with_agent() -> (Cleanup, Berth) {
    let image = simplehttp_image();
    assert!(!image.is_empty());
    let b = Berth::start_with_agent(env!("CARGO_BIN_EXE_berth"), &[]).await;
    let cleanup = cleanup(&b, "default");
    (cleanup, b)
}

async fn register(ecs: &Client, family: &str, command: &[&str], image: &str) {
    ecs.register_task_definition()
        .family(family)
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image(image)
                .memory(32)
                .set_command(Some(command.iter().map(|s| s.to_string()).collect()))
                .port_mappings(PortMapping::builder().container_port(8080).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
}

async fn wait_status(ecs: &Client, cluster: &str, task: &str, status: &str) -> Task {
    let deadline = Instant::now() + DEADLINE;
    let mut last = None;
    loop {
        if let Ok(d) = ecs.describe_tasks().cluster(cluster).tasks(task).send().await {
            last = d.tasks().first().cloned();
            if let Some(t) = last.as_ref().filter(|t| t.last_status() == Some(status)) {
                return t.clone();
            }
        }
        assert!(Instant::now() < deadline, "task {task} did not reach {status}; last seen: {last:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn run_curl_and_stop() {
    let (_c, b) = berth_with_agent().await;
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    register(&ecs, "web", &["serve", "--port", "8080"], simplehttp_image()).await;
    let r = ecs.run_task().task_definition("web").started_by("test").send().await.unwrap();
    assert!(r.failures().is_empty(), "{:?}", r.failures());
    let arn = r.tasks()[0].task_arn().unwrap().to_string();
    assert_eq!(r.tasks()[0].desired_status(), Some("RUNNING"));
    let t = wait_status(&ecs, "default", &arn, "RUNNING").await;
    let c = &t.containers()[0];
    assert!(c.runtime_id().is_some());
    let port = c.network_bindings()[0].host_port().unwrap();
    assert!(port > 0, "a dynamic host port was chosen");
    let body = testkit::http_get_text(&format!("http://127.0.0.1:{port}/")).await;
    assert!(body.contains("hello"), "{body}");
    assert!(t.started_at().is_some() && t.pull_started_at().is_some());
    let listed = ecs.list_tasks().started_by("test").send().await.unwrap();
    assert_eq!(listed.task_arns(), std::slice::from_ref(&arn));

    let stopped = ecs.stop_task().task(&arn).reason("done").send().await.unwrap();
    assert_eq!(stopped.task().unwrap().desired_status(), Some("STOPPED"));
    let t = wait_status(&ecs, "default", &arn, "STOPPED").await;
    assert_eq!(t.stop_code().map(|c| c.as_str()), Some("UserInitiated"));
    assert_eq!(t.stopped_reason(), Some("done"));
    assert!(t.stopped_at().is_some());
    assert!(t.containers()[0].exit_code().is_some());
    // The instance's resources are free again.
    let err = ecs.delete_cluster().cluster("default").send().await.unwrap_err();
    assert_eq!(testkit::error_code(&err), "ClusterContainsContainerInstancesException");
}

#[tokio::test]
async fn failures_are_reported_as_ecs_does() {
    let (_c, b) = berth_with_agent().await;
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    register(&ecs, "exits", &["exit", "3"], simplehttp_image()).await;
    register(&ecs, "missing", &["serve"], "berth-test/does-not-exist:1").await;
    let exits =
        ecs.run_task().task_definition("exits").send().await.unwrap().tasks()[0].task_arn().unwrap().to_string();
    let missing =
        ecs.run_task().task_definition("missing").send().await.unwrap().tasks()[0].task_arn().unwrap().to_string();

    let t = wait_status(&ecs, "default", &exits, "STOPPED").await;
    assert_eq!(t.stop_code().map(|c| c.as_str()), Some("EssentialContainerExited"));
    assert_eq!(t.containers()[0].exit_code(), Some(3));
    assert_eq!(t.desired_status(), Some("STOPPED"));

    let t = wait_status(&ecs, "default", &missing, "STOPPED").await;
    assert_eq!(t.stop_code().map(|c| c.as_str()), Some("TaskFailedToStart"));
    let reason = t.stopped_reason().unwrap_or_default();
    assert!(reason.starts_with("CannotPullContainerError"), "{reason}");
}

#[tokio::test]
async fn tasks_survive_a_control_plane_kill_9() {
    let (_c, mut b) = berth_with_agent().await;
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    register(&ecs, "web", &["serve", "--port", "8080"], simplehttp_image()).await;
    let arn = ecs.run_task().task_definition("web").send().await.unwrap().tasks()[0].task_arn().unwrap().to_string();
    let before = wait_status(&ecs, "default", &arn, "RUNNING").await;

    b.kill9();
    b.restart().await;
    let ecs = b.ecs().await;
    // The embedded agent comes back with the server, finds its container and reports it.
    wait_instances(&ecs, "default", 1).await;
    let after = wait_status(&ecs, "default", &arn, "RUNNING").await;
    assert_eq!(
        after.containers()[0].runtime_id(),
        before.containers()[0].runtime_id(),
        "the container was adopted, not replaced"
    );
    ecs.stop_task().task(&arn).send().await.unwrap();
    wait_status(&ecs, "default", &arn, "STOPPED").await;
}

#[tokio::test]
async fn placement_across_agents_on_one_engine() {
    let (_c, b) = berth_with_agent().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("demo").send().await.unwrap();
    let _cleanup = cleanup(&b, "demo");
    let _a = b.spawn_agent("demo", &[("BERTH_AVAILABILITY_ZONE", "us-east-1a"), ("BERTH_INSTANCE_TYPE", "t3.small")]);
    let _b2 = b.spawn_agent("demo", &[("BERTH_AVAILABILITY_ZONE", "us-east-1b"), ("BERTH_INSTANCE_TYPE", "t3.small")]);
    let _m = b.spawn_agent("demo", &[("BERTH_AVAILABILITY_ZONE", "us-east-1c"), ("BERTH_INSTANCE_TYPE", "m5.large")]);
    wait_instances(&ecs, "demo", 3).await;
    register(&ecs, "sleeper", &["sleep"], simplehttp_image()).await;

    let t3 = PlacementConstraint::builder()
        .r#type(PlacementConstraintType::MemberOf)
        .expression("attribute:ecs.instance-type =~ t3.*")
        .build();
    let spread = PlacementStrategy::builder()
        .r#type(PlacementStrategyType::Spread)
        .field("attribute:ecs.availability-zone")
        .build();
    let r = ecs
        .run_task()
        .cluster("demo")
        .task_definition("sleeper")
        .count(2)
        .placement_constraints(t3)
        .placement_strategy(spread)
        .send()
        .await
        .unwrap();
    assert_eq!(r.tasks().len(), 2, "{:?}", r.failures());
    let zones: std::collections::BTreeSet<_> =
        r.tasks().iter().map(|t| t.availability_zone().unwrap_or_default().to_string()).collect();
    assert_eq!(
        zones,
        ["us-east-1a".to_string(), "us-east-1b".to_string()].into_iter().collect(),
        "spread over the two t3 zones"
    );

    let distinct = PlacementConstraint::builder().r#type(PlacementConstraintType::DistinctInstance).build();
    let r = ecs
        .run_task()
        .cluster("demo")
        .task_definition("sleeper")
        .count(3)
        .group("g")
        .placement_constraints(distinct)
        .send()
        .await
        .unwrap();
    let instances: std::collections::BTreeSet<_> =
        r.tasks().iter().map(|t| t.container_instance_arn().unwrap().to_string()).collect();
    assert_eq!(instances.len(), 3, "distinctInstance puts each task on its own instance");

    for t in ecs.list_tasks().cluster("demo").send().await.unwrap().task_arns() {
        ecs.stop_task().cluster("demo").task(t).send().await.unwrap();
    }
}

#[tokio::test]
async fn an_agent_restart_keeps_its_containers() {
    let (_c, b) = berth_with_agent().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("solo").send().await.unwrap();
    let _cleanup = cleanup(&b, "solo");
    let env = [("BERTH_INSTANCE_TYPE", "t3.small")];
    let mut agent = b.spawn_agent("solo", &env);
    let instances = wait_instances(&ecs, "solo", 1).await;
    register(&ecs, "sleeper", &["sleep"], simplehttp_image()).await;
    let arn = ecs.run_task().cluster("solo").task_definition("sleeper").send().await.unwrap().tasks()[0]
        .task_arn()
        .unwrap()
        .to_string();
    let before = wait_status(&ecs, "solo", &arn, "RUNNING").await;

    agent.kill9();
    // Its channel closes with the process: the instance shows as disconnected.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let d =
            ecs.describe_container_instances().cluster("solo").container_instances(&instances[0]).send().await.unwrap();
        if !d.container_instances()[0].agent_connected() {
            break;
        }
        assert!(Instant::now() < deadline, "agentConnected stayed true after the agent died");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = wait_status(&ecs, "solo", &arn, "RUNNING").await;
    assert_eq!(
        t.containers()[0].runtime_id(),
        before.containers()[0].runtime_id(),
        "the task is left as it is meanwhile"
    );
    agent.restart(&b, "solo", &env);
    let again = wait_instances(&ecs, "solo", 1).await;
    assert_eq!(again, instances, "the agent re-registered as the same instance");
    ecs.stop_task().cluster("solo").task(&arn).send().await.unwrap();
    let after = wait_status(&ecs, "solo", &arn, "STOPPED").await;
    assert_eq!(after.containers()[0].runtime_id(), before.containers()[0].runtime_id());
}

#[tokio::test]
async fn start_task_resource_failures_and_submitted_state() {
    let (_c, b) = berth_with_agent().await;
    let ecs = b.ecs().await;
    let instances = wait_instances(&ecs, "default", 1).await;
    register(&ecs, "sleeper", &["sleep"], simplehttp_image()).await;

    // StartTask places on the named instance.
    let r = ecs.start_task().task_definition("sleeper").container_instances(&instances[0]).send().await.unwrap();
    let arn = r.tasks()[0].task_arn().unwrap().to_string();
    assert_eq!(r.tasks()[0].container_instance_arn(), Some(instances[0].as_str()));
    wait_status(&ecs, "default", &arn, "RUNNING").await;

    // Managed tags and the task definition's tags, when asked for, and only then.
    let td_arn = format!("arn:aws:ecs:us-east-1:{}:task-definition/sleeper:1", b.key.account);
    ecs.tag_resource()
        .resource_arn(&td_arn)
        .tags(aws_sdk_ecs::types::Tag::builder().key("team").value("web").build())
        .send()
        .await
        .unwrap();
    let tagged = ecs
        .run_task()
        .task_definition("sleeper")
        .enable_ecs_managed_tags(true)
        .propagate_tags(aws_sdk_ecs::types::PropagateTags::TaskDefinition)
        .tags(aws_sdk_ecs::types::Tag::builder().key("run").value("1").build())
        .send()
        .await
        .unwrap();
    let tagged_arn = tagged.tasks()[0].task_arn().unwrap().to_string();
    let d = ecs.describe_tasks().tasks(&tagged_arn).include(aws_sdk_ecs::types::TaskField::Tags).send().await.unwrap();
    let mut tags: Vec<(String, String)> =
        d.tasks()[0].tags().iter().map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string())).collect();
    tags.sort();
    assert_eq!(
        tags,
        [("aws:ecs:clusterName", "default"), ("run", "1"), ("team", "web")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    let plain = ecs.describe_tasks().tasks(&arn).include(aws_sdk_ecs::types::TaskField::Tags).send().await.unwrap();
    assert!(plain.tasks()[0].tags().is_empty(), "no tags unless asked for");
    ecs.stop_task().task(&tagged_arn).send().await.unwrap();

    // A task larger than the instance fails to place with ECS's reason.
    ecs.register_task_definition()
        .family("huge")
        .container_definitions(
            ContainerDefinition::builder().name("c").image(simplehttp_image()).memory(100_000_000).build(),
        )
        .send()
        .await
        .unwrap();
    let r = ecs.run_task().task_definition("huge").send().await.unwrap();
    assert!(r.tasks().is_empty());
    assert_eq!(r.failures()[0].reason(), Some("RESOURCE:MEMORY"));

    // A state change submitted through the API stops the task, and its agent stops the
    // container.
    ecs.submit_task_state_change().task(&arn).status("STOPPED").reason("stopped from outside").send().await.unwrap();
    let t = wait_status(&ecs, "default", &arn, "STOPPED").await;
    assert_eq!(t.stopped_reason(), Some("stopped from outside"));
    assert_eq!(t.desired_status(), Some("STOPPED"));
}

#[tokio::test]
async fn dynamic_host_ports_come_from_the_configured_range() {
    let (_c, b) = berth_with_agent().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("ranged").send().await.unwrap();
    let _cleanup = cleanup(&b, "ranged");
    // Below the kernel's ephemeral range (32768-60999), where client sockets of the tests
    // running beside this one cannot already hold the port Docker picks.
    let _agent = b.spawn_agent("ranged", &[("ECS_DYNAMIC_HOST_PORT_RANGE", "30100-30199")]);
    wait_instances(&ecs, "ranged", 1).await;
    register(&ecs, "web", &["serve", "--port", "8080"], simplehttp_image()).await;
    let arn = ecs.run_task().cluster("ranged").task_definition("web").send().await.unwrap().tasks()[0]
        .task_arn()
        .unwrap()
        .to_string();
    let t = wait_status(&ecs, "ranged", &arn, "RUNNING").await;
    let port = t.containers()[0].network_bindings()[0].host_port().unwrap();
    assert!((30100..=30199).contains(&port), "host port {port} is outside ECS_DYNAMIC_HOST_PORT_RANGE");
    let body = testkit::http_get_text(&format!("http://127.0.0.1:{port}/")).await;
    assert!(body.contains("hello"));
    ecs.stop_task().cluster("ranged").task(&arn).send().await.unwrap();
}

#[tokio::test]
async fn binpack_fills_the_instance_with_least_memory_left() {
    let (_c, b) = berth_with_agent().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("packed").send().await.unwrap();
    let _cleanup = cleanup(&b, "packed");
    // Same engine, different reservations: the third instance has the least memory left.
    let _a = b.spawn_agent("packed", &[("ECS_RESERVED_MEMORY", "0")]);
    let _b2 = b.spawn_agent("packed", &[("ECS_RESERVED_MEMORY", "1000")]);
    let _c3 = b.spawn_agent("packed", &[("ECS_RESERVED_MEMORY", "2000")]);
    let arns = wait_instances(&ecs, "packed", 3).await;
    let d =
        ecs.describe_container_instances().cluster("packed").set_container_instances(Some(arns)).send().await.unwrap();
    let memory = |i: &aws_sdk_ecs::types::ContainerInstance| {
        i.remaining_resources()
            .iter()
            .find(|r| r.name() == Some("MEMORY"))
            .map(|r| r.integer_value())
            .unwrap_or_default()
    };
    let smallest =
        d.container_instances().iter().min_by_key(|i| memory(i)).unwrap().container_instance_arn().unwrap().to_string();
    register(&ecs, "sleeper", &["sleep"], simplehttp_image()).await;
    let binpack = PlacementStrategy::builder().r#type(PlacementStrategyType::Binpack).field("memory").build();
    let r = ecs
        .run_task()
        .cluster("packed")
        .task_definition("sleeper")
        .count(3)
        .placement_strategy(binpack)
        .send()
        .await
        .unwrap();
    assert_eq!(r.tasks().len(), 3, "{:?}", r.failures());
    for t in r.tasks() {
        assert_eq!(t.container_instance_arn(), Some(smallest.as_str()), "binpack keeps filling the fullest instance");
    }
    for t in r.tasks() {
        ecs.stop_task().cluster("packed").task(t.task_arn().unwrap()).send().await.unwrap();
    }
}

#[tokio::test]
async fn tasks_run_images_from_berths_registry_without_a_docker_login() {
    let (_c, b) = berth_with_agent().await;
    let ecs = b.ecs().await;
    let ecr = b.ecr().await;
    wait_instances(&ecs, "default", 1).await;
    let uri = ecr.create_repository().repository_name("web").send().await.unwrap().uri();
    // Push with skopeo and explicit credentials: the machine's Docker login state is untouched.
    let token = ecr.get_authorization_token().send().await.unwrap().authorization_data()[0]
        .authorization_token()
        .unwrap()
        .to_string();
    use base64::Engine;
    let creds = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(token).unwrap()).unwrap();
    let status = std::process::Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false", "--dest-creds", &creds])
        .arg(format!("docker-daemon:{}", simplehttp_image()))
        .arg(format!("docker://{uri}:1.0"))
        .status()
        .expect("run skopeo (scripts/install-test-deps.sh installs it)");
    assert!(status.success(), "skopeo push failed");

    let image = format!("{uri}:1.0");
    register(&ecs, "from-ecr", &["serve", "--port", "8080"], &image).await;
    let arn =
        ecs.run_task().task_definition("from-ecr").send().await.unwrap().tasks()[0].task_arn().unwrap().to_string();
    let t = wait_status(&ecs, "default", &arn, "RUNNING").await;
    assert!(t.containers()[0].image_digest().is_some_and(|d| d.starts_with("sha256:")));
    ecs.stop_task().task(&arn).send().await.unwrap();
    wait_status(&ecs, "default", &arn, "STOPPED").await;
    testkit::images::remove_containers_with_label("com.amazonaws.ecs.task-arn", &arn);
    let _ = std::process::Command::new("docker").args(["rmi", &image]).output();
}

#[tokio::test]
async fn an_instance_version_counts_tasks_placed_on_it_and_leaving_it() {
    let (_c, b) = berth_with_agent().await;
    let ecs = b.ecs().await;
    let instance = wait_instances(&ecs, "default", 1).await.remove(0);
    let version = async || {
        let d = ecs.describe_container_instances().container_instances(&instance).send().await.unwrap();
        d.container_instances()[0].version()
    };
    register(&ecs, "sleeper", &["sleep", "600"], simplehttp_image()).await;
    let v0 = version().await;
    let r = ecs.run_task().task_definition("sleeper").send().await.unwrap();
    let arn = r.tasks()[0].task_arn().unwrap().to_string();
    let v1 = version().await;
    assert!(v1 > v0, "placing a task counts: {v0} -> {v1}");
    wait_status(&ecs, "default", &arn, "RUNNING").await;
    ecs.stop_task().task(&arn).send().await.unwrap();
    wait_status(&ecs, "default", &arn, "STOPPED").await;
    let v2 = version().await;
    assert!(v2 > v1, "a task leaving counts: {v1} -> {v2}");
}

/// What `docker info` says of the engine's host: the instance registers its Docker
/// version as the ECS agent words it, and its architecture, which its tasks report.
#[tokio::test]
async fn instances_and_tasks_report_the_engines_host() {
    let (_c, b) = berth_with_agent().await;
    let ecs = b.ecs().await;
    let instance = wait_instances(&ecs, "default", 1).await.remove(0);
    let engine = std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}} {{.Architecture}}"])
        .output()
        .unwrap();
    let engine = String::from_utf8(engine.stdout).unwrap();
    let (version, arch) = engine.trim().split_once(' ').unwrap();
    let arch = if arch == "aarch64" { "arm64" } else { arch };
    let d = ecs.describe_container_instances().container_instances(&instance).send().await.unwrap();
    let i = &d.container_instances()[0];
    let docker_version = i.version_info().and_then(|v| v.docker_version()).unwrap();
    assert_eq!(docker_version, format!("DockerVersion: {version}"));
    let attr =
        |name: &str| i.attributes().iter().find(|a| a.name() == name).and_then(|a| a.value()).map(str::to_string);
    assert_eq!(attr("ecs.cpu-architecture").as_deref(), Some(arch));

    register(&ecs, "web", &["sleep", "600"], simplehttp_image()).await;
    let r = ecs.run_task().task_definition("web").send().await.unwrap();
    let t = &r.tasks()[0];
    let task_arch = t.attributes().iter().find(|a| a.name() == "ecs.cpu-architecture").and_then(|a| a.value());
    assert_eq!(task_arch, Some(arch));
    assert_eq!(t.ephemeral_storage(), None, "only Fargate tasks report their ephemeral storage");
    ecs.stop_task().task(t.task_arn().unwrap()).send().await.unwrap();
}
