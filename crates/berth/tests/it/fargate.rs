//! Fargate tasks through `berth up` (whose second local agent is the account's Fargate
//! capacity), on real Docker: they run without any container instance of their cluster,
//! report what Fargate reports, are reachable at their own address, and fail to place with
//! Fargate's reason when capacity runs out; ECS's checks of Fargate requests.

use std::time::Duration;

use aws_sdk_ecs::types::{
    AwsVpcConfiguration, Compatibility, ContainerDefinition, LaunchType, NetworkConfiguration, NetworkMode,
    PortMapping, Task,
};
use aws_sdk_ecs::Client;
use testkit::images::simplehttp_image;
use testkit::{error_code, Berth};

use crate::services::{cleanup, eventually};

use crate::support::attachment_detail;

async fn subnet(b: &Berth) -> String {
    let ec2 = crate::ec2::ec2(b).await;
    ec2.describe_subnets().send().await.unwrap().subnets()[0].subnet_id().unwrap().to_string()
}

fn vpc_config(subnet: &str) -> NetworkConfiguration {
    NetworkConfiguration::builder()
        .awsvpc_configuration(AwsVpcConfiguration::builder().subnets(subnet).build().unwrap())
        .build()
}

async fn register(ecs: &Client, family: &str, cpu: &str, memory: &str) {
    ecs.register_task_definition()
        .family(family)
        .requires_compatibilities(Compatibility::Fargate)
        .network_mode(NetworkMode::Awsvpc)
        .cpu(cpu)
        .memory(memory)
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image(simplehttp_image())
                .set_command(Some(vec!["serve".into(), "--port".into(), "8080".into()]))
                .port_mappings(PortMapping::builder().container_port(8080).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
}

async fn describe(ecs: &Client, arn: &str) -> Task {
    ecs.describe_tasks().cluster("demo").tasks(arn).send().await.unwrap().tasks()[0].clone()
}

/// Runs one task of `family` on Fargate in cluster `demo`, again until it is placed: capacity
/// exists only while the Fargate agent is connected.
async fn run_once_placed(ecs: &Client, family: &str, subnet: &str) -> aws_sdk_ecs::operation::run_task::RunTaskOutput {
    let mut run = None;
    eventually("a Fargate task is placed", async || {
        let r = ecs
            .run_task()
            .cluster("demo")
            .launch_type(LaunchType::Fargate)
            .task_definition(family)
            .network_configuration(vpc_config(subnet))
            .send()
            .await
            .unwrap();
        let placed = !r.tasks().is_empty();
        run = Some(r);
        placed
    })
    .await;
    run.unwrap()
}

#[tokio::test]
async fn fargate_tasks_run_on_capacity_nobody_registers() {
    assert!(!simplehttp_image().is_empty());
    // Declared first, dropped last: containers go once the server and agents are gone.
    let _c;
    let mut b = Berth::start_with_agent(env!("CARGO_BIN_EXE_berth"), &[]).await;
    _c = cleanup(&b, "demo");
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("demo").send().await.unwrap();
    register(&ecs, "web-fargate", "256", "512").await;
    let subnet = subnet(&b).await;

    // Capacity appears once `berth up`'s Fargate agent has registered.
    let run = run_once_placed(&ecs, "web-fargate", &subnet).await;
    let arn = run.tasks()[0].task_arn().unwrap().to_string();
    eventually("the Fargate task runs", async || describe(&ecs, &arn).await.last_status() == Some("RUNNING")).await;
    let t = describe(&ecs, &arn).await;
    assert_eq!(t.launch_type(), Some(&LaunchType::Fargate));
    assert_eq!(t.container_instance_arn(), None, "Fargate tasks name no instance");
    assert_eq!(t.platform_version(), Some("1.4.0"));
    assert_eq!(t.platform_family(), Some("Linux"));
    assert_eq!(t.connectivity(), Some(&aws_sdk_ecs::types::Connectivity::Connected));
    assert_eq!((t.cpu(), t.memory()), (Some("256"), Some("512")));
    let a = &t.attachments()[0];
    assert_eq!((a.r#type(), a.status()), (Some("ElasticNetworkInterface"), Some("ATTACHED")));
    let ip = attachment_detail(&t, "privateIPv4Address");
    assert!(!ip.is_empty());
    // us-east-1's form of EC2's private DNS names; Fargate's default 20 GiB of storage.
    assert_eq!(attachment_detail(&t, "privateDnsName"), format!("ip-{}.ec2.internal", ip.replace('.', "-")));
    assert_eq!(t.ephemeral_storage().map(|e| e.size_in_gib()), Some(20));
    let body = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("http://{ip}:8080/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.starts_with("hello from"), "{body}");
    // kill -9 of Berth (and of its agents): the task keeps running and keeps its address.
    b.kill9();
    b.restart().await;
    let ecs = b.ecs().await;
    let after = describe(&ecs, &arn).await;
    assert_eq!(after.last_status(), Some("RUNNING"));
    assert_eq!(attachment_detail(&after, "privateIPv4Address"), ip);
    let again = reqwest::get(format!("http://{ip}:8080/")).await.unwrap();
    assert_eq!(again.status(), 200);
    // The cluster has no container instance, and the capacity is nowhere to be listed.
    let listed = ecs.list_container_instances().cluster("demo").send().await.unwrap();
    assert!(listed.container_instance_arns().is_empty());
    let e = ecs.list_container_instances().cluster("berth-fargate-capacity").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ClusterNotFoundException");
    // Cluster statistics count the task, and a service, as Fargate's.
    ecs.create_service()
        .cluster("demo")
        .service_name("idle")
        .task_definition("web-fargate")
        .launch_type(LaunchType::Fargate)
        .network_configuration(vpc_config(&subnet))
        .desired_count(0)
        .send()
        .await
        .unwrap();
    let d = ecs
        .describe_clusters()
        .clusters("demo")
        .include(aws_sdk_ecs::types::ClusterField::Statistics)
        .send()
        .await
        .unwrap();
    let c = &d.clusters()[0];
    let stat = |name: &str| c.statistics().iter().find(|s| s.name() == Some(name)).and_then(|s| s.value()).unwrap();
    assert_eq!((stat("runningFargateTasksCount"), stat("runningEC2TasksCount")), ("1", "0"));
    assert_eq!((stat("activeFargateServiceCount"), stat("activeEC2ServiceCount")), ("1", "0"));
    assert_eq!((c.running_tasks_count(), c.active_services_count()), (1, 1));

    // A task definition that asks for more storage: its tasks report it.
    ecs.register_task_definition()
        .family("disk")
        .requires_compatibilities(Compatibility::Fargate)
        .network_mode(NetworkMode::Awsvpc)
        .cpu("256")
        .memory("512")
        .ephemeral_storage(aws_sdk_ecs::types::EphemeralStorage::builder().size_in_gib(30).build())
        .container_definitions(
            ContainerDefinition::builder().name("c").image(simplehttp_image()).command("sleep").command("600").build(),
        )
        .send()
        .await
        .unwrap();
    // The Fargate agent reconnects after the restart in its own time; until it has, RunTask
    // answers with Fargate's capacity reason, as it would before the first registration.
    let r = run_once_placed(&ecs, "disk", &subnet).await;
    let disk = &r.tasks()[0];
    assert_eq!(disk.ephemeral_storage().map(|e| e.size_in_gib()), Some(30));
    ecs.stop_task().cluster("demo").task(disk.task_arn().unwrap()).send().await.unwrap();

    // More than the capacity holds: Fargate's reason, nothing placed.
    register(&ecs, "huge", "16384", "122880").await;
    let r = ecs
        .run_task()
        .cluster("demo")
        .launch_type(LaunchType::Fargate)
        .task_definition("huge")
        .network_configuration(vpc_config(&subnet))
        .send()
        .await
        .unwrap();
    assert!(r.tasks().is_empty());
    assert_eq!(
        r.failures()[0].reason(),
        Some("Capacity is unavailable at this time. Please try again later or in a different availability zone")
    );

    ecs.stop_task().cluster("demo").task(&arn).send().await.unwrap();
    eventually("the Fargate task stops", async || describe(&ecs, &arn).await.last_status() == Some("STOPPED")).await;
}

#[tokio::test]
async fn fargate_requests_are_checked_as_ecs_checks_them() {
    let b = Berth::start(env!("CARGO_BIN_EXE_berth")).await;
    let ecs = b.ecs().await;
    ecs.create_cluster().send().await.unwrap();
    register(&ecs, "web-fargate", "256", "512").await;
    ecs.register_task_definition()
        .family("ec2-only")
        .network_mode(NetworkMode::Awsvpc)
        .container_definitions(ContainerDefinition::builder().name("web").image(simplehttp_image()).memory(16).build())
        .send()
        .await
        .unwrap();
    let subnet = subnet(&b).await;
    let run = |td: &str| ecs.run_task().launch_type(LaunchType::Fargate).task_definition(td);
    let cases = [
        (run("ec2-only").network_configuration(vpc_config(&subnet)), "does not support launch_type FARGATE"),
        (run("web-fargate"), "Network Configuration must be provided"),
        (run("web-fargate").network_configuration(vpc_config("subnet-00000000000000000")), "does not exist"),
        (run("web-fargate").network_configuration(vpc_config(&subnet)).platform_version("1.3.0"), "platform version"),
    ];
    for (call, says) in cases {
        let e = call.send().await.unwrap_err();
        assert_eq!(error_code(&e), "InvalidParameterException", "{says}");
        let message = e.into_service_error().meta().message().unwrap_or_default().to_string();
        assert!(message.contains(says), "{says}: {message}");
    }
    // Without any Fargate capacity (no agent), a valid request places nothing and says why.
    let r = run("web-fargate").network_configuration(vpc_config(&subnet)).send().await.unwrap();
    assert!(r.tasks().is_empty());
    assert!(r.failures()[0].reason().unwrap().starts_with("Capacity is unavailable"));
    // Invalid cpu/memory pairs never get registered.
    let e = ecs
        .register_task_definition()
        .family("bad-size")
        .requires_compatibilities(Compatibility::Fargate)
        .network_mode(NetworkMode::Awsvpc)
        .cpu("256")
        .memory("4096")
        .container_definitions(ContainerDefinition::builder().name("web").image(simplehttp_image()).build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "ClientException");
}

#[tokio::test]
async fn a_fargate_service_spreads_over_providers_serves_behind_ip_targets_and_survives_spot_interruptions() {
    use crate::service_lb::{alb_of, behind, targets_in, Load};
    use aws_sdk_ecs::types::CapacityProviderStrategyItem;
    use aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum;
    use std::sync::atomic::Ordering;

    assert!(!simplehttp_image().is_empty());
    // Declared first, dropped last: containers go once the server and agents are gone.
    let _c;
    let b = Berth::start_with_agent(env!("CARGO_BIN_EXE_berth"), &[]).await;
    _c = cleanup(&b, "demo");
    let ecs = b.ecs().await;
    ecs.create_cluster()
        .cluster_name("demo")
        .capacity_providers("FARGATE")
        .capacity_providers("FARGATE_SPOT")
        .send()
        .await
        .unwrap();
    register(&ecs, "web-fargate", "256", "512").await;
    let subnet = subnet(&b).await;
    let alb = alb_of(&b, "fargate", "ip").await;
    let provider = |name: &str, base: i32, weight: i32| {
        CapacityProviderStrategyItem::builder().capacity_provider(name).base(base).weight(weight).build().unwrap()
    };
    ecs.create_service()
        .cluster("demo")
        .service_name("web")
        .task_definition("web-fargate")
        .desired_count(4)
        .capacity_provider_strategy(provider("FARGATE", 1, 1))
        .capacity_provider_strategy(provider("FARGATE_SPOT", 0, 3))
        .network_configuration(vpc_config(&subnet))
        .load_balancers(behind(&alb.tg))
        .send()
        .await
        .unwrap();
    let s = crate::services::wait_steady(&ecs, "demo", "web").await;
    assert_eq!(s.running_count(), 4);
    let tasks = crate::services::service_tasks(&ecs, "demo", "web", "RUNNING").await;
    let spot: Vec<&Task> = tasks.iter().filter(|t| t.capacity_provider_name() == Some("FARGATE_SPOT")).collect();
    let on_demand = tasks.iter().filter(|t| t.capacity_provider_name() == Some("FARGATE")).count();
    assert_eq!((on_demand, spot.len()), (1, 3), "base 1 on FARGATE, then 1:3");
    // The targets are the tasks' own addresses on the container port.
    let ips: std::collections::BTreeSet<(String, i32)> =
        tasks.iter().map(|t| (attachment_detail(t, "privateIPv4Address"), 8080)).collect();
    assert_eq!(targets_in(&alb, TargetHealthStateEnum::Healthy).await, ips);

    // A rolling update under load fails no request.
    let load = Load::start(format!("http://{}/", alb.dns));
    eventually("requests pass", async || load.ok.load(Ordering::Relaxed) > 20).await;
    ecs.update_service().cluster("demo").service("web").force_new_deployment(true).send().await.unwrap();
    eventually("the new deployment replaced every task", async || {
        let s = crate::services::describe(&ecs, "demo", "web").await;
        let now = crate::services::service_tasks(&ecs, "demo", "web", "RUNNING").await;
        s.deployments().len() == 1
            && s.running_count() == 4
            && now.iter().all(|t| !tasks.iter().any(|o| o.task_arn() == t.task_arn()))
    })
    .await;
    crate::services::wait_steady(&ecs, "demo", "web").await;
    let (ok, failed, _) = load.finish().await;
    assert!(failed.is_empty(), "{} of {ok} requests failed during the rolling update: {failed:?}", failed.len());

    // A Spot interruption: SpotInterruption, and the service replaces the task.
    let tasks = crate::services::service_tasks(&ecs, "demo", "web", "RUNNING").await;
    let victim = tasks.iter().find(|t| t.capacity_provider_name() == Some("FARGATE_SPOT")).unwrap();
    let arn = victim.task_arn().unwrap().to_string();
    let out = b.command(&["fargate", "interrupt", "--cluster", "demo", "--task", &arn]);
    assert!(out.contains("interrupted"), "{out}");
    eventually("the interrupted task stops and is replaced", async || {
        let t = describe(&ecs, &arn).await;
        let running = crate::services::service_tasks(&ecs, "demo", "web", "RUNNING").await;
        t.last_status() == Some("STOPPED")
            && t.stop_code() == Some(&aws_sdk_ecs::types::TaskStopCode::SpotInterruption)
            && running.len() == 4
            && running.iter().all(|r| r.last_status() == Some("RUNNING"))
    })
    .await;
    let on_demand = tasks.iter().find(|t| t.capacity_provider_name() == Some("FARGATE")).unwrap();
    let e = b.try_command(&["fargate", "interrupt", "--cluster", "demo", "--task", on_demand.task_arn().unwrap()]);
    assert!(e.is_err_and(|e| e.contains("InvalidParameterException")), "only Spot tasks can be interrupted");

    // RunTask with a strategy instead of a launch type; not both.
    let r = ecs
        .run_task()
        .cluster("demo")
        .task_definition("web-fargate")
        .capacity_provider_strategy(provider("FARGATE_SPOT", 0, 1))
        .network_configuration(vpc_config(&subnet))
        .send()
        .await
        .unwrap();
    let t = &r.tasks()[0];
    assert_eq!((t.launch_type(), t.capacity_provider_name()), (Some(&LaunchType::Fargate), Some("FARGATE_SPOT")));
    let e = ecs
        .run_task()
        .cluster("demo")
        .task_definition("web-fargate")
        .launch_type(LaunchType::Fargate)
        .capacity_provider_strategy(provider("FARGATE", 0, 1))
        .network_configuration(vpc_config(&subnet))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
}
