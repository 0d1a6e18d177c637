//! Clusters: CreateCluster, DescribeClusters, ListClusters, UpdateCluster,
//! UpdateClusterSettings, PutClusterCapacityProviders, DeleteCluster.

use aws_sdk_ecs::types::{
    CapacityProviderStrategyItem, ClusterConfiguration, ClusterField, ClusterSetting, ClusterSettingName,
    ExecuteCommandConfiguration, ExecuteCommandLogging, Tag,
};
use testkit::error_code;

use crate::berth;

#[tokio::test]
async fn create_describe_list_delete() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let created = ecs
        .create_cluster()
        .cluster_name("demo")
        .tags(Tag::builder().key("team").value("web").build())
        .send()
        .await
        .unwrap();
    let c = created.cluster().unwrap();
    assert_eq!(c.cluster_name(), Some("demo"));
    assert_eq!(c.status(), Some("ACTIVE"));
    assert_eq!(c.cluster_arn(), Some(format!("arn:aws:ecs:us-east-1:{}:cluster/demo", b.key.account).as_str()));

    // Idempotent on an existing name: same cluster, no error.
    let again = ecs.create_cluster().cluster_name("demo").send().await.unwrap();
    assert_eq!(again.cluster().unwrap().cluster_arn(), c.cluster_arn());

    let d = ecs
        .describe_clusters()
        .clusters("demo")
        .clusters(c.cluster_arn().unwrap())
        .clusters("missing")
        .include(ClusterField::Tags)
        .include(ClusterField::Statistics)
        .include(ClusterField::Settings)
        .send()
        .await
        .unwrap();
    assert_eq!(d.clusters().len(), 2);
    assert_eq!(d.clusters()[0].tags()[0].key(), Some("team"));
    assert!(d.clusters()[0].statistics().iter().any(|s| s.name() == Some("runningEC2TasksCount")));
    assert_eq!(d.clusters()[0].settings()[0].name(), Some(&ClusterSettingName::ContainerInsights));
    assert_eq!(d.failures().len(), 1);
    assert_eq!(d.failures()[0].reason(), Some("MISSING"));
    assert!(d.failures()[0].arn().unwrap().ends_with(":cluster/missing"));

    // Without include, tags are not returned.
    let plain = ecs.describe_clusters().clusters("demo").send().await.unwrap();
    assert!(plain.clusters()[0].tags().is_empty());

    let listed = ecs.list_clusters().send().await.unwrap();
    assert_eq!(listed.cluster_arns(), [c.cluster_arn().unwrap().to_string()]);

    let deleted = ecs.delete_cluster().cluster("demo").send().await.unwrap();
    assert_eq!(deleted.cluster().unwrap().status(), Some("INACTIVE"));
    assert!(ecs.list_clusters().send().await.unwrap().cluster_arns().is_empty());
    let d = ecs.describe_clusters().clusters("demo").send().await.unwrap();
    assert_eq!(d.clusters()[0].status(), Some("INACTIVE"));
    let err = ecs.delete_cluster().cluster("demo").send().await.unwrap_err();
    assert_eq!(error_code(&err), "ClusterNotFoundException");
    // Creating it again brings it back ACTIVE.
    let back = ecs.create_cluster().cluster_name("demo").send().await.unwrap();
    assert_eq!(back.cluster().unwrap().status(), Some("ACTIVE"));
}

#[tokio::test]
async fn default_cluster_and_describe_without_names() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let d = ecs.describe_clusters().send().await.unwrap();
    assert!(d.clusters().is_empty());
    assert!(d.failures()[0].arn().unwrap().ends_with(":cluster/default"));
    let c = ecs.create_cluster().send().await.unwrap();
    assert_eq!(c.cluster().unwrap().cluster_name(), Some("default"));
    let d = ecs.describe_clusters().send().await.unwrap();
    assert_eq!(d.clusters()[0].cluster_name(), Some("default"));
}

#[tokio::test]
async fn list_clusters_paginates() {
    let b = berth().await;
    let ecs = b.ecs().await;
    for i in 0..7 {
        ecs.create_cluster().cluster_name(format!("c{i}")).send().await.unwrap();
    }
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let page = ecs.list_clusters().max_results(3).set_next_token(token).send().await.unwrap();
        assert!(page.cluster_arns().len() <= 3);
        all.extend(page.cluster_arns().iter().cloned());
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(all.len(), 7);
    let err = ecs.list_clusters().max_results(101).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    let err = ecs.list_clusters().next_token("garbage").send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
}

#[tokio::test]
async fn updates_settings_configuration_and_capacity_providers() {
    let b = berth().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("demo").send().await.unwrap();

    let s = ClusterSetting::builder().name(ClusterSettingName::ContainerInsights).value("enhanced").build();
    let u = ecs.update_cluster_settings().cluster("demo").settings(s).send().await.unwrap();
    assert_eq!(u.cluster().unwrap().settings()[0].value(), Some("enhanced"));
    let bad = ClusterSetting::builder().name(ClusterSettingName::ContainerInsights).value("sometimes").build();
    let err = ecs.update_cluster_settings().cluster("demo").settings(bad).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");

    let conf = ClusterConfiguration::builder()
        .execute_command_configuration(
            ExecuteCommandConfiguration::builder().logging(ExecuteCommandLogging::Default).build(),
        )
        .build();
    let u = ecs.update_cluster().cluster("demo").configuration(conf).send().await.unwrap();
    assert_eq!(
        u.cluster().unwrap().configuration().unwrap().execute_command_configuration().unwrap().logging(),
        Some(&ExecuteCommandLogging::Default)
    );
    let overridden = ClusterConfiguration::builder()
        .execute_command_configuration(
            ExecuteCommandConfiguration::builder().logging(ExecuteCommandLogging::Override).build(),
        )
        .build();
    let err = ecs.update_cluster().cluster("demo").configuration(overridden).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");

    let item = |name: &str, weight: i32, base: i32| {
        CapacityProviderStrategyItem::builder().capacity_provider(name).weight(weight).base(base).build().unwrap()
    };
    let u = ecs
        .put_cluster_capacity_providers()
        .cluster("demo")
        .capacity_providers("FARGATE")
        .capacity_providers("FARGATE_SPOT")
        .default_capacity_provider_strategy(item("FARGATE", 1, 1))
        .default_capacity_provider_strategy(item("FARGATE_SPOT", 3, 0))
        .send()
        .await
        .unwrap();
    let c = u.cluster().unwrap();
    assert_eq!(c.capacity_providers(), ["FARGATE", "FARGATE_SPOT"]);
    assert_eq!(c.default_capacity_provider_strategy().len(), 2);

    // A strategy may only use providers of the cluster, only one may have a base, and
    // providers must exist.
    for (providers, strategy) in [
        (vec!["FARGATE"], vec![item("FARGATE_SPOT", 1, 0)]),
        (vec!["FARGATE", "FARGATE_SPOT"], vec![item("FARGATE", 1, 1), item("FARGATE_SPOT", 1, 2)]),
        (vec!["my-asg-provider"], vec![]),
    ] {
        let err = ecs
            .put_cluster_capacity_providers()
            .cluster("demo")
            .set_capacity_providers(Some(providers.iter().map(|s| s.to_string()).collect()))
            .set_default_capacity_provider_strategy(Some(strategy))
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "InvalidParameterException");
    }
    // The failed requests changed nothing.
    let d = ecs.describe_clusters().clusters("demo").send().await.unwrap();
    assert_eq!(d.clusters()[0].capacity_providers(), ["FARGATE", "FARGATE_SPOT"]);

    let err = ecs.update_cluster().cluster("nope").send().await.unwrap_err();
    assert_eq!(error_code(&err), "ClusterNotFoundException");
}

#[tokio::test]
async fn invalid_cluster_names_are_refused() {
    let b = berth().await;
    let ecs = b.ecs().await;
    for name in ["has space", "x".repeat(256).as_str(), "semi;colon", ""] {
        let err = ecs.create_cluster().cluster_name(name).send().await.unwrap_err();
        assert_eq!(error_code(&err), "InvalidParameterException", "name {name:?}");
    }
    assert!(ecs.list_clusters().send().await.unwrap().cluster_arns().is_empty());
}

#[tokio::test]
async fn regions_and_accounts_are_separate() {
    let b = berth().await;
    let east = b.ecs().await;
    let west = b.ecs_as(&b.key, "us-west-2").await;
    east.create_cluster().cluster_name("demo").send().await.unwrap();
    assert!(west.list_clusters().send().await.unwrap().cluster_arns().is_empty());
    let w = west.create_cluster().cluster_name("demo").send().await.unwrap();
    assert!(w.cluster().unwrap().cluster_arn().unwrap().starts_with("arn:aws:ecs:us-west-2:"));

    let other = b.create_account();
    let theirs = b.ecs_as(&other, "us-east-1").await;
    assert!(theirs.list_clusters().send().await.unwrap().cluster_arns().is_empty());
    // Naming our cluster by its ARN does not reach it from the other account.
    let arn = format!("arn:aws:ecs:us-east-1:{}:cluster/demo", b.key.account);
    let d = theirs.describe_clusters().clusters(&arn).send().await.unwrap();
    assert!(d.clusters().is_empty());
    assert_eq!(d.failures()[0].reason(), Some("MISSING"));
    let err = theirs.delete_cluster().cluster(&arn).send().await.unwrap_err();
    assert_eq!(error_code(&err), "ClusterNotFoundException");
    assert_eq!(east.list_clusters().send().await.unwrap().cluster_arns().len(), 1);
}
