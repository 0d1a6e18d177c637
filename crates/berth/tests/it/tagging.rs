//! Tagging: TagResource, UntagResource, ListTagsForResource on every taggable ECS
//! resource Berth has: clusters, task definitions, services, tasks, container instances.

use aws_sdk_ecs::types::{ContainerDefinition, Tag};
use aws_sdk_ecs::Client;
use testkit::error_code;

use crate::berth;
use crate::services::{cleanup, wait_instances};

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

/// The resource's tags as (key, value) pairs, in the order the server returns them.
async fn tags_of(ecs: &Client, arn: &str) -> Vec<(String, String)> {
    let r = ecs.list_tags_for_resource().resource_arn(arn).send().await.unwrap();
    r.tags()
        .iter()
        .map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string()))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn cluster(ecs: &Client, name: &str) -> String {
    let c = ecs.create_cluster().cluster_name(name).send().await.unwrap();
    c.cluster().unwrap().cluster_arn().unwrap().to_string()
}

async fn task_definition(ecs: &Client, family: &str) -> String {
    let c = ContainerDefinition::builder().name("app").image("nginx").memory(64).build();
    let r = ecs.register_task_definition().family(family).container_definitions(c).send().await.unwrap();
    r.task_definition().unwrap().task_definition_arn().unwrap().to_string()
}

#[tokio::test]
async fn tag_list_untag_a_cluster() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let arn = cluster(&ecs, "demo").await;
    assert!(tags_of(&ecs, &arn).await.is_empty());

    ecs.tag_resource().resource_arn(&arn).tags(tag("team", "web")).tags(tag("env", "dev")).send().await.unwrap();
    assert_eq!(tags_of(&ecs, &arn).await, pairs(&[("team", "web"), ("env", "dev")]));

    // Tagging an existing key overwrites its value and keeps the others.
    ecs.tag_resource().resource_arn(&arn).tags(tag("env", "prod")).tags(tag("cost", "42")).send().await.unwrap();
    let mut got = tags_of(&ecs, &arn).await;
    got.sort();
    assert_eq!(got, pairs(&[("cost", "42"), ("env", "prod"), ("team", "web")]));

    // Untagging removes the keys named; unknown keys are ignored.
    ecs.untag_resource().resource_arn(&arn).tag_keys("team").tag_keys("nonexistent").send().await.unwrap();
    let mut got = tags_of(&ecs, &arn).await;
    got.sort();
    assert_eq!(got, pairs(&[("cost", "42"), ("env", "prod")]));

    // The tags are the cluster's: DescribeClusters with TAGS shows the same.
    let d =
        ecs.describe_clusters().clusters("demo").include(aws_sdk_ecs::types::ClusterField::Tags).send().await.unwrap();
    assert_eq!(d.clusters()[0].tags().len(), 2);
}

#[tokio::test]
async fn tag_list_untag_a_task_definition() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let arn = task_definition(&ecs, "web").await;
    let other = task_definition(&ecs, "web").await;

    ecs.tag_resource().resource_arn(&arn).tags(tag("owner", "alice")).send().await.unwrap();
    ecs.tag_resource().resource_arn(&arn).tags(tag("owner", "bob")).send().await.unwrap();
    assert_eq!(tags_of(&ecs, &arn).await, pairs(&[("owner", "bob")]));
    // Tags belong to one revision.
    assert!(tags_of(&ecs, &other).await.is_empty());

    let d = ecs
        .describe_task_definition()
        .task_definition("web:1")
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(d.tags()[0].value(), Some("bob"));

    ecs.untag_resource().resource_arn(&arn).tag_keys("owner").send().await.unwrap();
    assert!(tags_of(&ecs, &arn).await.is_empty());

    // An INACTIVE revision can still be tagged.
    ecs.deregister_task_definition().task_definition(&arn).send().await.unwrap();
    ecs.tag_resource().resource_arn(&arn).tags(tag("state", "retired")).send().await.unwrap();
    assert_eq!(tags_of(&ecs, &arn).await, pairs(&[("state", "retired")]));

    let missing = arn.replace(":1", ":9");
    let err = ecs.tag_resource().resource_arn(&missing).tags(tag("a", "b")).send().await.unwrap_err();
    assert_eq!(error_code(&err), "ResourceNotFoundException");
    let err = ecs.untag_resource().resource_arn(&missing).tag_keys("a").send().await.unwrap_err();
    assert_eq!(error_code(&err), "ResourceNotFoundException");
    ecs.list_tags_for_resource().resource_arn(&missing).send().await.unwrap_err();
}

#[tokio::test]
async fn at_most_fifty_tags() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let arn = cluster(&ecs, "demo").await;

    // 51 in one request.
    let many: Vec<Tag> = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
    let err = ecs.tag_resource().resource_arn(&arn).set_tags(Some(many)).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    assert!(tags_of(&ecs, &arn).await.is_empty());

    // 50 is fine, in two requests.
    let first: Vec<Tag> = (0..45).map(|i| tag(&format!("k{i}"), "v")).collect();
    ecs.tag_resource().resource_arn(&arn).set_tags(Some(first)).send().await.unwrap();
    let more: Vec<Tag> = (45..50).map(|i| tag(&format!("k{i}"), "v")).collect();
    ecs.tag_resource().resource_arn(&arn).set_tags(Some(more)).send().await.unwrap();
    assert_eq!(tags_of(&ecs, &arn).await.len(), 50);

    // Overwriting keeps the count at 50 and is allowed.
    ecs.tag_resource().resource_arn(&arn).tags(tag("k0", "changed")).send().await.unwrap();

    // The 51st is refused, and the refused request (which also overwrites k1) changes nothing.
    let err = ecs
        .tag_resource()
        .resource_arn(&arn)
        .tags(tag("k1", "changed"))
        .tags(tag("k50", "v"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    let now = tags_of(&ecs, &arn).await;
    assert_eq!(now.len(), 50);
    assert!(now.contains(&("k0".into(), "changed".into())));
    assert!(now.contains(&("k1".into(), "v".into())));
    assert!(!now.iter().any(|(k, _)| k == "k50"));
}

#[tokio::test]
async fn invalid_tags_are_refused() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let arn = cluster(&ecs, "demo").await;
    ecs.tag_resource().resource_arn(&arn).tags(tag("keep", "me")).send().await.unwrap();
    for (k, v) in [("aws:x", "1"), ("AWS:created", "1"), ("", "1"), (&*"k".repeat(129), "1"), ("ok", &*"v".repeat(257))]
    {
        let err = ecs.tag_resource().resource_arn(&arn).tags(tag(k, v)).tags(tag("new", "1")).send().await.unwrap_err();
        assert_eq!(error_code(&err), "InvalidParameterException", "tag {k:?}={v:?}");
    }
    assert_eq!(tags_of(&ecs, &arn).await, pairs(&[("keep", "me")]));

    // Creating a cluster with an aws: tag is refused the same way.
    let err = ecs.create_cluster().cluster_name("other").tags(tag("aws:x", "1")).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
}

#[tokio::test]
async fn unknown_and_malformed_arns() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let missing = format!("arn:aws:ecs:us-east-1:{}:cluster/nope", b.key.account);
    let err = ecs.tag_resource().resource_arn(&missing).tags(tag("a", "b")).send().await.unwrap_err();
    assert_eq!(error_code(&err), "ClusterNotFoundException");
    let err = ecs.list_tags_for_resource().resource_arn(&missing).send().await.unwrap_err();
    assert_eq!(error_code(&err), "ClusterNotFoundException");
    let err = ecs.untag_resource().resource_arn(&missing).tag_keys("a").send().await.unwrap_err();
    assert_eq!(error_code(&err), "ClusterNotFoundException");

    // A deleted (INACTIVE) cluster is not taggable either.
    let arn = cluster(&ecs, "gone").await;
    ecs.delete_cluster().cluster("gone").send().await.unwrap();
    let err = ecs.tag_resource().resource_arn(&arn).tags(tag("a", "b")).send().await.unwrap_err();
    assert_eq!(error_code(&err), "ClusterNotFoundException");

    for bad in ["not-an-arn", "arn:aws:ecs", "demo", "arn:aws:s3:::bucket"] {
        let err = ecs.list_tags_for_resource().resource_arn(bad).send().await.unwrap_err();
        assert_eq!(error_code(&err), "InvalidParameterException", "{bad}");
        let err = ecs.tag_resource().resource_arn(bad).tags(tag("a", "b")).send().await.unwrap_err();
        assert_eq!(error_code(&err), "InvalidParameterException", "{bad}");
    }
}

#[tokio::test]
async fn another_accounts_resources_are_not_reachable() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let arn = cluster(&ecs, "demo").await;
    let td = task_definition(&ecs, "web").await;
    ecs.tag_resource().resource_arn(&arn).tags(tag("team", "web")).send().await.unwrap();

    let other = b.create_account();
    let theirs = b.ecs_as(&other, "us-east-1").await;
    for target in [&arn, &td] {
        // Not found from their side (the code for ListTagsForResource is pinned down in
        // `list_tags_for_resource_answers_with_its_own_errors`).
        theirs.list_tags_for_resource().resource_arn(target).send().await.unwrap_err();
        let err = theirs.tag_resource().resource_arn(target).tags(tag("team", "evil")).send().await.unwrap_err();
        let code = error_code(&err);
        assert!(["ResourceNotFoundException", "ClusterNotFoundException"].contains(&code.as_str()), "{target}: {code}");
        let err = theirs.untag_resource().resource_arn(target).tag_keys("team").send().await.unwrap_err();
        let code = error_code(&err);
        assert!(["ResourceNotFoundException", "ClusterNotFoundException"].contains(&code.as_str()), "{target}: {code}");
    }
    // Nor is the same ARN in another region of the same account.
    let west = b.ecs_as(&b.key, "us-west-2").await;
    west.tag_resource().resource_arn(&arn).tags(tag("team", "west")).send().await.unwrap_err();

    assert_eq!(tags_of(&ecs, &arn).await, pairs(&[("team", "web")]));
    assert!(tags_of(&ecs, &td).await.is_empty());
}

/// ECS documents ListTagsForResource's errors as ClientException,
/// ClusterNotFoundException, InvalidParameterException and ServerException (the SDK
/// models no ResourceNotFoundException for it and reports one as unhandled).
#[tokio::test]

async fn list_tags_for_resource_answers_with_its_own_errors() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let td = task_definition(&ecs, "web").await;
    let other = b.create_account();
    let theirs = b.ecs_as(&other, "us-east-1").await;
    let missing_revision = td.replace(":1", ":9");
    let service = format!("arn:aws:ecs:us-east-1:{}:service/demo/web", b.key.account);
    for (client, arn) in [(&ecs, &missing_revision), (&ecs, &service), (&theirs, &td)] {
        let err = client.list_tags_for_resource().resource_arn(arn).send().await.unwrap_err();
        let code = error_code(&err);
        assert!(["ClientException", "InvalidParameterException"].contains(&code.as_str()), "{arn}: {code}");
    }
}

/// Tags set, overwritten, listed, shown by the resource's Describe call and removed, on
/// one resource; the resource also keeps the tags ECS set on it (`aws:`).
async fn round_trip(ecs: &Client, arn: &str) {
    let before = tags_of(ecs, arn).await;
    ecs.tag_resource().resource_arn(arn).tags(tag("team", "web")).tags(tag("env", "dev")).send().await.unwrap();
    ecs.tag_resource().resource_arn(arn).tags(tag("env", "prod")).send().await.unwrap();
    let mut expected = before.clone();
    expected.extend(pairs(&[("team", "web"), ("env", "prod")]));
    assert_eq!(tags_of(ecs, arn).await, expected, "{arn}");
    let err = ecs.tag_resource().resource_arn(arn).tags(tag("aws:owner", "me")).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException", "{arn}");
    let many: Vec<Tag> = (0..49).map(|i| tag(&format!("k{i}"), "v")).collect();
    let err = ecs.tag_resource().resource_arn(arn).set_tags(Some(many)).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException", "{arn}: 51 tags");
    ecs.untag_resource().resource_arn(arn).tag_keys("team").tag_keys("env").send().await.unwrap();
    assert_eq!(tags_of(ecs, arn).await, before, "{arn}");
    ecs.tag_resource().resource_arn(arn).tags(tag("kept", "yes")).send().await.unwrap();
}

#[tokio::test]
async fn services_tasks_and_container_instances_are_taggable() {
    let b = testkit::Berth::start_with_agent(env!("CARGO_BIN_EXE_berth"), &[]).await;
    let _c = cleanup(&b, "default");
    let ecs = b.ecs().await;
    let instance = wait_instances(&ecs, "default", 1).await.remove(0);
    let sleeper = ContainerDefinition::builder()
        .name("app")
        .image(testkit::images::simplehttp_image())
        .memory(16)
        .command("sleep")
        .command("600")
        .build();
    ecs.register_task_definition().family("web").container_definitions(sleeper).send().await.unwrap();
    let svc = ecs.create_service().service_name("api").task_definition("web").desired_count(0).send().await.unwrap();
    let service = svc.service().unwrap().service_arn().unwrap().to_string();
    let run = ecs.run_task().task_definition("web").enable_ecs_managed_tags(true).send().await.unwrap();
    let task = run.tasks()[0].task_arn().unwrap().to_string();
    assert!(tags_of(&ecs, &task).await.iter().any(|(k, _)| k == "aws:ecs:clusterName"), "managed tag");

    for arn in [&service, &task, &instance] {
        round_trip(&ecs, arn).await;
    }
    // Each Describe call shows the tags with `include: TAGS`.
    let d =
        ecs.describe_services().services("api").include(aws_sdk_ecs::types::ServiceField::Tags).send().await.unwrap();
    assert_eq!(d.services()[0].tags()[0].key(), Some("kept"));
    let d = ecs.describe_tasks().tasks(&task).include(aws_sdk_ecs::types::TaskField::Tags).send().await.unwrap();
    assert!(d.tasks()[0].tags().iter().any(|t| t.key() == Some("kept")));
    let d = ecs
        .describe_container_instances()
        .container_instances(&instance)
        .include(aws_sdk_ecs::types::ContainerInstanceField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(d.container_instances()[0].tags()[0].key(), Some("kept"));

    // The old ARN forms, without the cluster, name the same resources.
    let short = format!("arn:aws:ecs:us-east-1:{}:service/api", b.key.account);
    assert_eq!(tags_of(&ecs, &short).await, pairs(&[("kept", "yes")]));
    let id = task.rsplit('/').next().unwrap();
    let short = format!("arn:aws:ecs:us-east-1:{}:task/{id}", b.key.account);
    ecs.untag_resource().resource_arn(&short).tag_keys("kept").send().await.unwrap();
    assert!(!tags_of(&ecs, &task).await.iter().any(|(k, _)| k == "kept"));

    // Missing ones are not found.
    for missing in [service.replace("/api", "/nope"), task.replace(id, "0123456789abcdef"), instance.clone() + "0"] {
        let err = ecs.tag_resource().resource_arn(&missing).tags(tag("a", "b")).send().await.unwrap_err();
        assert_eq!(error_code(&err), "ResourceNotFoundException", "{missing}");
    }
}
