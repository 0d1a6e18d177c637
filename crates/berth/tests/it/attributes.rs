//! Custom attributes: PutAttributes, DeleteAttributes, ListAttributes. No container
//! instance can exist yet in this version (the agent registers them later), so every
//! target is unknown.

use aws_sdk_ecs::types::{Attribute, TargetType};
use testkit::error_code;

use crate::berth;

fn attr(name: &str, value: Option<&str>, target: &str) -> Attribute {
    Attribute::builder()
        .name(name)
        .set_value(value.map(str::to_string))
        .target_type(TargetType::ContainerInstance)
        .target_id(target)
        .build()
        .unwrap()
}

fn instance_arn(account: &str) -> String {
    format!("arn:aws:ecs:us-east-1:{account}:container-instance/demo/0123456789abcdef0123456789abcdef")
}

#[tokio::test]
async fn unknown_targets_and_clusters() {
    let b = berth().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("demo").send().await.unwrap();
    let target = instance_arn(&b.key.account);

    let err =
        ecs.put_attributes().cluster("demo").attributes(attr("stack", Some("prod"), &target)).send().await.unwrap_err();
    assert_eq!(error_code(&err), "TargetNotFoundException");
    let err = ecs
        .put_attributes()
        .cluster("demo")
        .attributes(attr("stack", None, "0123456789abcdef0123456789abcdef"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "TargetNotFoundException");
    let err =
        ecs.delete_attributes().cluster("demo").attributes(attr("stack", None, &target)).send().await.unwrap_err();
    assert_eq!(error_code(&err), "TargetNotFoundException");

    for cluster in [Some("nope"), None] {
        let err = ecs
            .put_attributes()
            .set_cluster(cluster.map(str::to_string))
            .attributes(attr("stack", Some("prod"), &target))
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "ClusterNotFoundException", "{cluster:?}");
        let err = ecs
            .delete_attributes()
            .set_cluster(cluster.map(str::to_string))
            .attributes(attr("stack", None, &target))
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "ClusterNotFoundException", "{cluster:?}");
    }

    let l = ecs.list_attributes().cluster("demo").target_type(TargetType::ContainerInstance).send().await.unwrap();
    assert!(l.attributes().is_empty());
}

#[tokio::test]
async fn invalid_attributes_are_refused() {
    let b = berth().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("demo").send().await.unwrap();
    let target = instance_arn(&b.key.account);

    for (name, value) in [
        ("has space", None),
        ("semi;colon", None),
        ("", None),
        (&*"n".repeat(129), None),
        ("ok", Some("bad!value")),
        ("ok", Some(&*"v".repeat(129))),
    ] {
        let err = ecs.put_attributes().cluster("demo").attributes(attr(name, value, &target)).send().await.unwrap_err();
        assert_eq!(error_code(&err), "InvalidParameterException", "{name:?}={value:?}");
    }

    let eleven: Vec<Attribute> = (0..11).map(|i| attr(&format!("a{i}"), Some("v"), &target)).collect();
    let err = ecs.put_attributes().cluster("demo").set_attributes(Some(eleven.clone())).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    let err = ecs.delete_attributes().cluster("demo").set_attributes(Some(eleven)).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
}

#[tokio::test]
async fn list_attributes() {
    let b = berth().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("demo").send().await.unwrap();
    let cluster_arn = format!("arn:aws:ecs:us-east-1:{}:cluster/demo", b.key.account);

    for cluster in ["demo", cluster_arn.as_str()] {
        let l = ecs.list_attributes().cluster(cluster).target_type(TargetType::ContainerInstance).send().await.unwrap();
        assert!(l.attributes().is_empty());
        assert!(l.next_token().is_none());
    }
    let l = ecs
        .list_attributes()
        .cluster("demo")
        .target_type(TargetType::ContainerInstance)
        .attribute_name("ecs.os-type")
        .attribute_value("linux")
        .send()
        .await
        .unwrap();
    assert!(l.attributes().is_empty());

    let err = ecs
        .list_attributes()
        .cluster("demo")
        .target_type(TargetType::ContainerInstance)
        .attribute_value("linux")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");

    let err =
        ecs.list_attributes().cluster("nope").target_type(TargetType::ContainerInstance).send().await.unwrap_err();
    assert_eq!(error_code(&err), "ClusterNotFoundException");
    let err = ecs
        .list_attributes()
        .cluster("demo")
        .target_type(TargetType::ContainerInstance)
        .max_results(101)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
}

/// ECS documents that an attribute value "can't start or end with a space".
#[tokio::test]

async fn attribute_values_may_not_start_or_end_with_a_space() {
    let b = berth().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("demo").send().await.unwrap();
    let target = instance_arn(&b.key.account);
    // A value with an inner space is fine (the target is what is missing).
    let err =
        ecs.put_attributes().cluster("demo").attributes(attr("stack", Some("a b"), &target)).send().await.unwrap_err();
    assert_eq!(error_code(&err), "TargetNotFoundException");
    for value in [" lead", "trail ", " "] {
        let err = ecs
            .put_attributes()
            .cluster("demo")
            .attributes(attr("stack", Some(value), &target))
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "InvalidParameterException", "{value:?}");
    }
}
