//! awsvpc tasks on a container instance (`berth up`'s agent, real Docker): each task gets
//! its own address in one of its subnets, reachable from this machine; its containers
//! share it and reach each other on localhost; addresses are never shared by two live
//! tasks and are free again once a task stops; ECS's checks of `networkConfiguration`.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerDefinition, HealthCheck, NetworkConfiguration, NetworkMode,
    PortMapping, Task,
};
use aws_sdk_ecs::Client;
use testkit::images::simplehttp_image;
use testkit::{error_code, Berth};

use crate::services::{cleanup, eventually};
use crate::support::attachment_detail as detail;

async fn subnets(b: &Berth) -> Vec<(String, String)> {
    let ec2 = crate::ec2::ec2(b).await;
    let s = ec2.describe_subnets().send().await.unwrap();
    s.subnets().iter().map(|s| (s.subnet_id().unwrap().to_string(), s.cidr_block().unwrap().to_string())).collect()
}

fn vpc_config(subnet: &str, public: Option<AssignPublicIp>) -> NetworkConfiguration {
    NetworkConfiguration::builder()
        .awsvpc_configuration(
            AwsVpcConfiguration::builder().subnets(subnet).set_assign_public_ip(public).build().unwrap(),
        )
        .build()
}

/// `web` serves on 8080; `probe` is healthy only while it reaches `web` on localhost.
async fn register(ecs: &Client) {
    ecs.register_task_definition()
        .family("vpc")
        .network_mode(NetworkMode::Awsvpc)
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image(simplehttp_image())
                .memory(16)
                .set_command(Some(vec!["serve".into(), "--port".into(), "8080".into()]))
                .port_mappings(PortMapping::builder().container_port(8080).build())
                .build(),
        )
        .container_definitions(
            ContainerDefinition::builder()
                .name("probe")
                .image(simplehttp_image())
                .memory(16)
                .essential(false)
                .set_command(Some(vec!["sleep".into()]))
                .health_check(
                    HealthCheck::builder()
                        .command("CMD")
                        .command("/simplehttp")
                        .command("check")
                        .command("--port")
                        .command("8080")
                        .interval(5)
                        .retries(3)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
}

async fn describe(ecs: &Client, arn: &str) -> Task {
    ecs.describe_tasks().tasks(arn).send().await.unwrap().tasks()[0].clone()
}

#[tokio::test]
async fn awsvpc_tasks_get_their_own_reachable_addresses() {
    assert!(!simplehttp_image().is_empty());
    // Declared first, dropped last: containers go once the server and agents are gone.
    let _c;
    let b = Berth::start_with_agent(env!("CARGO_BIN_EXE_berth"), &[]).await;
    _c = cleanup(&b, "default");
    let ecs = b.ecs().await;
    crate::services::wait_instances(&ecs, "default", 1).await;
    register(&ecs).await;
    let nets = subnets(&b).await;
    let (subnet, cidr) = nets[0].clone();

    let run = ecs
        .run_task()
        .task_definition("vpc")
        .count(2)
        .network_configuration(vpc_config(&subnet, None))
        .send()
        .await
        .unwrap();
    assert!(run.failures().is_empty(), "{:?}", run.failures());
    let arns: Vec<String> = run.tasks().iter().map(|t| t.task_arn().unwrap().to_string()).collect();
    let mut addresses = BTreeSet::new();
    for arn in &arns {
        eventually("the task runs and its containers reach each other on localhost", async || {
            let t = describe(&ecs, arn).await;
            t.last_status() == Some("RUNNING")
                && t.containers().iter().any(|c| {
                    c.name() == Some("probe") && c.health_status() == Some(&aws_sdk_ecs::types::HealthStatus::Healthy)
                })
        })
        .await;
        let t = describe(&ecs, arn).await;
        let a = &t.attachments()[0];
        assert_eq!((a.r#type(), a.status()), (Some("ElasticNetworkInterface"), Some("ATTACHED")));
        assert_eq!(detail(&t, "subnetId"), subnet);
        assert!(detail(&t, "networkInterfaceId").starts_with("eni-"));
        let ip = detail(&t, "privateIPv4Address");
        let web = t.containers().iter().find(|c| c.name() == Some("web")).unwrap();
        assert_eq!(web.network_interfaces()[0].private_ipv4_address(), Some(ip.as_str()));
        assert!(web.network_bindings().is_empty(), "awsvpc tasks publish no host ports");
        let prefix = cidr.split('.').take(2).collect::<Vec<_>>().join(".");
        assert!(ip.starts_with(&prefix), "{ip} in {cidr}");
        // Reachable from this machine at its own address, on the container's port.
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
        addresses.insert(ip);
    }
    assert_eq!(addresses.len(), 2, "two live tasks never share an address");

    // A stopped task's address goes to the next task.
    let first = describe(&ecs, &arns[0]).await;
    let freed = detail(&first, "privateIPv4Address");
    ecs.stop_task().task(&arns[0]).send().await.unwrap();
    eventually("the task stops and its interface is deleted", async || {
        let t = describe(&ecs, &arns[0]).await;
        t.last_status() == Some("STOPPED") && t.attachments()[0].status() == Some("DELETED")
    })
    .await;
    let again =
        ecs.run_task().task_definition("vpc").network_configuration(vpc_config(&subnet, None)).send().await.unwrap();
    let t = &again.tasks()[0];
    assert_eq!(detail(t, "privateIPv4Address"), freed, "the lowest free address is reused");
}

#[tokio::test]
async fn network_configuration_is_checked_as_ecs_checks_it() {
    // Declared first, dropped last: containers go once the server and agents are gone.
    let _c;
    let b = Berth::start_with_agent(env!("CARGO_BIN_EXE_berth"), &[]).await;
    _c = cleanup(&b, "default");
    let ecs = b.ecs().await;
    // The cluster exists once the agent has registered; the checks under test come after.
    crate::services::wait_instances(&ecs, "default", 1).await;
    register(&ecs).await;
    ecs.register_task_definition()
        .family("bridge")
        .container_definitions(ContainerDefinition::builder().name("web").image(simplehttp_image()).memory(16).build())
        .send()
        .await
        .unwrap();
    let nets = subnets(&b).await;
    let subnet = nets[0].0.clone();
    let cases = [
        (ecs.run_task().task_definition("vpc"), "must be provided when networkMode 'awsvpc'"),
        (
            ecs.run_task().task_definition("vpc").network_configuration(vpc_config("subnet-0123456789abcdef0", None)),
            "does not exist",
        ),
        (
            ecs.run_task()
                .task_definition("vpc")
                .network_configuration(vpc_config(&subnet, Some(AssignPublicIp::Enabled))),
            "Assign public IP is not supported for this launch type",
        ),
        (
            ecs.run_task().task_definition("bridge").network_configuration(vpc_config(&subnet, None)),
            "not valid for the given networkMode",
        ),
    ];
    for (call, says) in cases {
        let e = call.send().await.unwrap_err();
        assert_eq!(error_code(&e), "InvalidParameterException");
        let message = e.into_service_error().meta().message().unwrap_or_default().to_string();
        assert!(message.contains(says), "{says}: {message}");
    }
    let listed = ecs.list_tasks().send().await.unwrap();
    assert!(listed.task_arns().is_empty(), "nothing ran");
}

#[tokio::test]
async fn security_groups_decide_who_reaches_an_awsvpc_task() {
    assert!(!simplehttp_image().is_empty());
    // Declared first, dropped last: containers go once the server and agents are gone.
    let _c;
    let b = Berth::start_with_agent(env!("CARGO_BIN_EXE_berth"), &[]).await;
    _c = cleanup(&b, "default");
    let ecs = b.ecs().await;
    crate::services::wait_instances(&ecs, "default", 1).await;
    register(&ecs).await;
    let ec2 = crate::ec2::ec2(&b).await;
    let vpc = ec2.describe_vpcs().send().await.unwrap().vpcs()[0].clone();
    let (subnet, _) = subnets(&b).await.remove(0);
    let group = |name: &'static str| {
        let ec2 = ec2.clone();
        async move {
            ec2.create_security_group()
                .group_name(name)
                .description(name)
                .send()
                .await
                .unwrap()
                .group_id()
                .unwrap()
                .to_string()
        }
    };
    let closed = group("closed").await;
    let web = group("web").await;
    ec2.authorize_security_group_ingress()
        .group_id(&web)
        .ip_protocol("tcp")
        .from_port(8080)
        .to_port(8080)
        .cidr_ip(vpc.cidr_block().unwrap())
        .send()
        .await
        .unwrap();
    let run = |sg: String| {
        let config = NetworkConfiguration::builder()
            .awsvpc_configuration(AwsVpcConfiguration::builder().subnets(&subnet).security_groups(sg).build().unwrap())
            .build();
        ecs.run_task().task_definition("vpc").network_configuration(config).send()
    };
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let mut answers = Vec::new();
    for sg in [web, closed] {
        let arn = run(sg).await.unwrap().tasks()[0].task_arn().unwrap().to_string();
        eventually("the task runs", async || describe(&ecs, &arn).await.last_status() == Some("RUNNING")).await;
        let ip = detail(&describe(&ecs, &arn).await, "privateIPv4Address");
        answers.push(client.get(format!("http://{ip}:8080/")).send().await.is_ok());
    }
    assert_eq!(answers, [true, false], "allowed on 8080 from the VPC; nothing allowed");
    let e = run("sg-0123456789abcdef0".into()).await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
}

#[tokio::test]
async fn a_subnet_without_free_addresses_places_no_more_tasks() {
    assert!(!simplehttp_image().is_empty());
    // A /24 VPC has /28 subnets: 16 addresses, of which the first four and the last are
    // never handed out, so 11 tasks fit.
    let n = std::process::id() % 200;
    let vpc = format!("10.{}.{}.0/24", 200 + n % 50, n);
    let _c;
    let b = Berth::start_with_agent(env!("CARGO_BIN_EXE_berth"), &[("BERTH_VPC_CIDR", vpc.as_str())]).await;
    _c = cleanup(&b, "default");
    let ecs = b.ecs().await;
    crate::services::wait_instances(&ecs, "default", 1).await;
    ecs.register_task_definition()
        .family("tiny")
        .network_mode(NetworkMode::Awsvpc)
        .container_definitions(
            ContainerDefinition::builder()
                .name("c")
                .image(simplehttp_image())
                .memory(8)
                .set_command(Some(vec!["sleep".into()]))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let (subnet, _) = subnets(&b).await.remove(0);
    let run = |count: i32| {
        ecs.run_task().task_definition("tiny").count(count).network_configuration(vpc_config(&subnet, None)).send()
    };
    assert_eq!(run(10).await.unwrap().tasks().len(), 10);
    let r = run(2).await.unwrap();
    assert_eq!(r.tasks().len(), 1, "the eleventh address is the last");
    let f = &r.failures()[0];
    assert_eq!(f.reason(), Some("RESOURCE:ENI"));
    assert!(f.detail().is_some_and(|d| d.contains("No free IPv4 addresses") && d.contains(&subnet)), "{f:?}");
}
