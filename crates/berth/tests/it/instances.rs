//! Container instances and task placement through the API, with instances registered by
//! the SDK as an agent would (no Docker needed): RegisterContainerInstance, Describe/List
//! (query filter), UpdateContainerInstancesState, Deregister, RunTask placement and its
//! failures, StopTask, DescribeTasks, ListTasks, DeleteCluster refusals.

use aws_sdk_ecs::types::{
    Attribute, ContainerDefinition, ContainerInstanceStatus, PlacementConstraint, PlacementConstraintType,
    PlacementStrategy, PlacementStrategyType, PortMapping, Resource,
};
use aws_sdk_ecs::Client;
use testkit::error_code;

use crate::berth;

/// Registers an instance with `cpu` units, `memory` MiB and the given attributes.
async fn register(ecs: &Client, cluster: &str, cpu: i32, memory: i32, attrs: &[(&str, &str)]) -> String {
    let mut req = ecs
        .register_container_instance()
        .cluster(cluster)
        .total_resources(Resource::builder().name("CPU").r#type("INTEGER").integer_value(cpu).build())
        .total_resources(Resource::builder().name("MEMORY").r#type("INTEGER").integer_value(memory).build())
        .total_resources(Resource::builder().name("PORTS").r#type("STRINGSET").string_set_value("22").build());
    for (k, v) in attrs {
        req = req.attributes(Attribute::builder().name(*k).value(*v).build().unwrap());
    }
    let r = req.send().await.unwrap();
    r.container_instance().unwrap().container_instance_arn().unwrap().to_string()
}

async fn web_task_definition(ecs: &Client, memory: i32, host_port: Option<i32>) {
    let mut pm = PortMapping::builder().container_port(8080);
    if let Some(p) = host_port {
        pm = pm.host_port(p);
    }
    ecs.register_task_definition()
        .family("web")
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image("simplehttp:latest")
                .memory(memory)
                .cpu(256)
                .port_mappings(pm.build())
                .build(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn registration_describe_and_filters() {
    let b = berth().await;
    let ecs = b.ecs().await;
    // Registering without a cluster creates `default`, as ECS does.
    let a = register(
        &ecs,
        "default",
        2048,
        4096,
        &[("ecs.availability-zone", "us-east-1a"), ("ecs.instance-type", "t3.medium")],
    )
    .await;
    let c = register(
        &ecs,
        "default",
        1024,
        2048,
        &[("ecs.availability-zone", "us-east-1b"), ("ecs.instance-type", "m5.large")],
    )
    .await;
    assert!(a.contains(":container-instance/default/"));
    let d = ecs.describe_clusters().clusters("default").send().await.unwrap();
    assert_eq!(d.clusters()[0].status(), Some("ACTIVE"));

    let listed = ecs.list_container_instances().cluster("default").send().await.unwrap();
    assert_eq!(listed.container_instance_arns().len(), 2);
    let t3 = ecs.list_container_instances().filter("attribute:ecs.instance-type =~ t3.*").send().await.unwrap();
    assert_eq!(t3.container_instance_arns(), std::slice::from_ref(&a));
    let err = ecs.list_container_instances().filter("attribute:ecs.instance-type ==").send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");

    let d =
        ecs.describe_container_instances().container_instances(&a).container_instances("nope").send().await.unwrap();
    let i = &d.container_instances()[0];
    assert_eq!(i.status(), Some("ACTIVE"));
    assert!(!i.agent_connected(), "no agent channel is open for an SDK-registered instance");
    let cpu = i.remaining_resources().iter().find(|r| r.name() == Some("CPU")).unwrap();
    assert_eq!(cpu.integer_value(), 2048);
    assert_eq!(d.failures()[0].reason(), Some("MISSING"));

    // Draining removes an instance from the ACTIVE list.
    let u = ecs
        .update_container_instances_state()
        .container_instances(&c)
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    assert_eq!(u.container_instances()[0].status(), Some("DRAINING"));
    let active = ecs.list_container_instances().status(ContainerInstanceStatus::Active).send().await.unwrap();
    assert_eq!(active.container_instance_arns(), std::slice::from_ref(&a));

    // Custom attributes attach to instances now.
    ecs.put_attributes()
        .attributes(Attribute::builder().name("stack").value("prod").target_id(&a).build().unwrap())
        .send()
        .await
        .unwrap();
    let prod = ecs.list_container_instances().filter("attribute:stack == prod").send().await.unwrap();
    assert_eq!(prod.container_instance_arns(), std::slice::from_ref(&a));

    let dereg = ecs.deregister_container_instance().container_instance(&c).send().await.unwrap();
    assert_eq!(dereg.container_instance().unwrap().status(), Some("INACTIVE"));
    assert_eq!(ecs.list_container_instances().send().await.unwrap().container_instance_arns().len(), 1);
    let err = ecs.delete_cluster().cluster("default").send().await.unwrap_err();
    assert_eq!(error_code(&err), "ClusterContainsContainerInstancesException");
}

#[tokio::test]
async fn run_task_places_and_reports_failures() {
    let b = berth().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("demo").send().await.unwrap();
    web_task_definition(&ecs, 512, None).await;
    // No instances: ECS's error.
    let err = ecs.run_task().cluster("demo").task_definition("web").send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");

    let a = register(&ecs, "demo", 1024, 1024, &[("ecs.availability-zone", "us-east-1a")]).await;
    // Instances without an open agent channel take no tasks (reason AGENT).
    let r = ecs.run_task().cluster("demo").task_definition("web").send().await.unwrap();
    assert!(r.tasks().is_empty());
    assert_eq!(r.failures()[0].arn(), Some(a.as_str()));
    assert_eq!(r.failures()[0].reason(), Some("AGENT"));

    let err = ecs.run_task().cluster("demo").task_definition("web").count(11).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    let err = ecs.run_task().cluster("demo").task_definition("missing").send().await.unwrap_err();
    assert_eq!(error_code(&err), "ClientException");
    let bad =
        PlacementConstraint::builder().r#type(PlacementConstraintType::MemberOf).expression("attribute:x ==").build();
    let err =
        ecs.run_task().cluster("demo").task_definition("web").placement_constraints(bad).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    let spread = PlacementStrategy::builder().r#type(PlacementStrategyType::Binpack).field("disk").build();
    let err =
        ecs.run_task().cluster("demo").task_definition("web").placement_strategy(spread).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    let o = aws_sdk_ecs::types::TaskOverride::builder()
        .container_overrides(aws_sdk_ecs::types::ContainerOverride::builder().name("nope").build())
        .build();
    let err = ecs.run_task().cluster("demo").task_definition("web").overrides(o).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    assert!(ecs.list_tasks().cluster("demo").send().await.unwrap().task_arns().is_empty(), "nothing was created");
}

#[tokio::test]
async fn version_counts_every_change_of_an_instance() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let a = register(&ecs, "default", 1024, 2048, &[]).await;
    let version = async || {
        let d = ecs.describe_container_instances().container_instances(&a).send().await.unwrap();
        d.container_instances()[0].version()
    };
    assert_eq!(version().await, 1);
    for (status, expected) in [(ContainerInstanceStatus::Draining, 2), (ContainerInstanceStatus::Active, 3)] {
        let u = ecs.update_container_instances_state().container_instances(&a).status(status).send().await.unwrap();
        assert_eq!(u.container_instances()[0].version(), expected);
    }
    // Setting the same state again changes nothing, so counts nothing.
    ecs.update_container_instances_state()
        .container_instances(&a)
        .status(ContainerInstanceStatus::Active)
        .send()
        .await
        .unwrap();
    assert_eq!(version().await, 3);
    let d = ecs.deregister_container_instance().container_instance(&a).send().await.unwrap();
    assert_eq!(d.container_instance().unwrap().version(), 4);
}
