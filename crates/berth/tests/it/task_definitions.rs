//! Task definitions: RegisterTaskDefinition, DescribeTaskDefinition, ListTaskDefinitions,
//! ListTaskDefinitionFamilies, DeregisterTaskDefinition, DeleteTaskDefinitions.

use std::collections::HashMap;

use aws_sdk_ecs::types::{
    Compatibility, ContainerCondition, ContainerDefinition, ContainerDependency, ContainerRestartPolicy, HealthCheck,
    HostEntry, HostVolumeProperties, KernelCapabilities, KeyValuePair, LinuxParameters, LogConfiguration, LogDriver,
    MountPoint, NetworkMode, PortMapping, Secret, SortOrder, SystemControl, Tag, TaskDefinitionFamilyStatus,
    TaskDefinitionField, TaskDefinitionStatus, Tmpfs, TransportProtocol, Ulimit, UlimitName, Volume, VolumeFrom,
};
use aws_sdk_ecs::Client;
use testkit::error_code;

use crate::berth;

/// A minimal valid container: a name, an image and a hard memory limit.
fn container(name: &str) -> ContainerDefinition {
    ContainerDefinition::builder().name(name).image("nginx:latest").memory(128).build()
}

/// Registers a one-container bridge task definition in `family` and returns its ARN.
async fn register(ecs: &Client, family: &str) -> String {
    let r = ecs.register_task_definition().family(family).container_definitions(container("app")).send().await.unwrap();
    r.task_definition().unwrap().task_definition_arn().unwrap().to_string()
}

fn td_arn(account: &str, family: &str, revision: i32) -> String {
    format!("arn:aws:ecs:us-east-1:{account}:task-definition/{family}:{revision}")
}

/// Every ARN ListTaskDefinitions returns, following next tokens with pages of `max`.
async fn list_all(
    ecs: &Client,
    family: Option<&str>,
    status: Option<TaskDefinitionStatus>,
    sort: Option<SortOrder>,
    max: i32,
) -> Vec<String> {
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let page = ecs
            .list_task_definitions()
            .set_family_prefix(family.map(str::to_string))
            .set_status(status.clone())
            .set_sort(sort.clone())
            .max_results(max)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        assert!(page.task_definition_arns().len() <= max as usize, "page larger than maxResults {max}");
        all.extend(page.task_definition_arns().iter().cloned());
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return all;
        }
    }
}

async fn families(ecs: &Client, prefix: Option<&str>, status: Option<TaskDefinitionFamilyStatus>) -> Vec<String> {
    let r = ecs
        .list_task_definition_families()
        .set_family_prefix(prefix.map(str::to_string))
        .set_status(status)
        .send()
        .await
        .unwrap();
    r.families().to_vec()
}

#[tokio::test]
async fn revisions_increment_per_family() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let acct = &b.key.account;
    assert_eq!(register(&ecs, "web").await, td_arn(acct, "web", 1));
    assert_eq!(register(&ecs, "web").await, td_arn(acct, "web", 2));
    assert_eq!(register(&ecs, "api").await, td_arn(acct, "api", 1));
    assert_eq!(register(&ecs, "web").await, td_arn(acct, "web", 3));

    // A revision number is never reused, even after the latest one is deregistered.
    ecs.deregister_task_definition().task_definition("web:3").send().await.unwrap();
    assert_eq!(register(&ecs, "web").await, td_arn(acct, "web", 4));
}

#[tokio::test]
async fn register_returns_defaults_and_metadata() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let c = ContainerDefinition::builder()
        .name("web")
        .image("nginx:latest")
        .memory(256)
        .port_mappings(PortMapping::builder().container_port(80).host_port(8080).build())
        .health_check(HealthCheck::builder().command("CMD-SHELL").command("curl -f http://localhost/").build().unwrap())
        .build();
    let r = ecs
        .register_task_definition()
        .family("web")
        .container_definitions(c)
        .tags(Tag::builder().key("team").value("web").build())
        .tags(Tag::builder().key("env").value("prod").build())
        .send()
        .await
        .unwrap();
    let td = r.task_definition().unwrap();
    assert_eq!(td.family(), Some("web"));
    assert_eq!(td.revision(), 1);
    assert_eq!(td.status(), Some(&TaskDefinitionStatus::Active));
    assert_eq!(td.network_mode(), Some(&NetworkMode::Bridge));
    assert_eq!(td.compatibilities(), [Compatibility::Ec2, Compatibility::External]);
    assert_eq!(td.registered_by(), Some(format!("arn:aws:iam::{}:root", b.key.account).as_str()));
    assert!(td.registered_at().is_some());
    assert!(td.deregistered_at().is_none());

    let c = &td.container_definitions()[0];
    assert_eq!(c.cpu(), 0);
    assert_eq!(c.essential(), Some(true));
    let pm = &c.port_mappings()[0];
    assert_eq!(pm.protocol(), Some(&TransportProtocol::Tcp));
    assert_eq!((pm.container_port(), pm.host_port()), (Some(80), Some(8080)));
    let hc = c.health_check().unwrap();
    assert_eq!((hc.interval(), hc.timeout(), hc.retries()), (Some(30), Some(5), Some(3)));

    let tags: Vec<_> = r.tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
    assert_eq!(tags, [("team", "web"), ("env", "prod")]);
}

#[tokio::test]
async fn fargate_task_size_is_normalized() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let c = ContainerDefinition::builder()
        .name("app")
        .image("nginx")
        .port_mappings(PortMapping::builder().container_port(8080).build())
        .build();
    let r = ecs
        .register_task_definition()
        .family("fg")
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("0.25 vCPU")
        .memory("0.5GB")
        .container_definitions(c)
        .send()
        .await
        .unwrap();
    let td = r.task_definition().unwrap();
    assert_eq!(td.cpu(), Some("256"));
    assert_eq!(td.memory(), Some("512"));
    assert_eq!(td.network_mode(), Some(&NetworkMode::Awsvpc));
    assert_eq!(td.requires_compatibilities(), [Compatibility::Fargate]);
    assert_eq!(td.compatibilities(), [Compatibility::Ec2, Compatibility::Fargate]);
    // In awsvpc mode the host port is the container port.
    assert_eq!(td.container_definitions()[0].port_mappings()[0].host_port(), Some(8080));
    // The normalized values are what is stored.
    let d = ecs.describe_task_definition().task_definition("fg").send().await.unwrap();
    assert_eq!((d.task_definition().unwrap().cpu(), d.task_definition().unwrap().memory()), (Some("256"), Some("512")));
}

#[tokio::test]
async fn invalid_task_definitions_are_refused() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let no_memory = ContainerDefinition::builder().name("a").image("nginx").build();
    let depends_on_ghost = ContainerDefinition::builder()
        .name("a")
        .image("nginx")
        .memory(64)
        .depends_on(
            ContainerDependency::builder()
                .container_name("ghost")
                .condition(ContainerCondition::Start)
                .build()
                .unwrap(),
        )
        .build();
    let awsvpc_ports = ContainerDefinition::builder()
        .name("a")
        .image("nginx")
        .memory(64)
        .port_mappings(PortMapping::builder().container_port(80).host_port(81).build())
        .build();

    let cases = vec![
        (
            "container without memory on EC2",
            ecs.register_task_definition().family("f").container_definitions(no_memory),
        ),
        (
            "duplicate container names",
            ecs.register_task_definition()
                .family("f")
                .container_definitions(container("a"))
                .container_definitions(container("a")),
        ),
        (
            "dependsOn an unknown container",
            ecs.register_task_definition().family("f").container_definitions(depends_on_ghost),
        ),
        (
            "Fargate with 256 CPU and 4096 MiB",
            ecs.register_task_definition()
                .family("f")
                .network_mode(NetworkMode::Awsvpc)
                .requires_compatibilities(Compatibility::Fargate)
                .cpu("256")
                .memory("4096")
                .container_definitions(container("a")),
        ),
        (
            "awsvpc hostPort != containerPort",
            ecs.register_task_definition()
                .family("f")
                .network_mode(NetworkMode::Awsvpc)
                .container_definitions(awsvpc_ports),
        ),
    ];
    for (what, req) in cases {
        let err = req.send().await.unwrap_err();
        assert_eq!(error_code(&err), "ClientException", "{what}");
    }

    let err = ecs
        .register_task_definition()
        .family("f")
        .container_definitions(container("a"))
        .tags(Tag::builder().key("aws:x").value("1").build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    let many: Vec<Tag> = (0..51).map(|i| Tag::builder().key(format!("k{i}")).value("v").build()).collect();
    let err = ecs
        .register_task_definition()
        .family("f")
        .container_definitions(container("a"))
        .set_tags(Some(many))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");

    // None of the refused requests registered anything.
    assert!(list_all(&ecs, None, None, None, 100).await.is_empty());
    assert!(families(&ecs, None, Some(TaskDefinitionFamilyStatus::All)).await.is_empty());
}

#[tokio::test]
async fn describe_by_family_revision_and_arn() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let r1 = ecs
        .register_task_definition()
        .family("web")
        .container_definitions(container("v1"))
        .tags(Tag::builder().key("rev").value("1").build())
        .send()
        .await
        .unwrap();
    let arn1 = r1.task_definition().unwrap().task_definition_arn().unwrap().to_string();
    ecs.register_task_definition().family("web").container_definitions(container("v2")).send().await.unwrap();

    // A bare family names the latest ACTIVE revision.
    let d = ecs.describe_task_definition().task_definition("web").send().await.unwrap();
    let td = d.task_definition().unwrap();
    assert_eq!(td.revision(), 2);
    assert_eq!(td.container_definitions()[0].name(), Some("v2"));

    let d = ecs.describe_task_definition().task_definition("web:1").send().await.unwrap();
    assert_eq!(d.task_definition().unwrap().container_definitions()[0].name(), Some("v1"));
    assert!(d.tags().is_empty(), "tags are only returned when asked for");

    let d =
        ecs.describe_task_definition().task_definition(&arn1).include(TaskDefinitionField::Tags).send().await.unwrap();
    assert_eq!(d.task_definition().unwrap().task_definition_arn(), Some(arn1.as_str()));
    assert_eq!(d.tags().len(), 1);
    assert_eq!((d.tags()[0].key(), d.tags()[0].value()), (Some("rev"), Some("1")));

    for missing in ["nope", "web:3", "nope:1", &td_arn(&b.key.account, "web", 9)] {
        let err = ecs.describe_task_definition().task_definition(missing).send().await.unwrap_err();
        assert_eq!(error_code(&err), "ClientException", "{missing}");
    }

    // Another account cannot describe it by ARN.
    let other = b.create_account();
    let theirs = b.ecs_as(&other, "us-east-1").await;
    let err = theirs.describe_task_definition().task_definition(&arn1).send().await.unwrap_err();
    assert_eq!(error_code(&err), "ClientException");
    assert!(theirs.list_task_definitions().send().await.unwrap().task_definition_arns().is_empty());
}

#[tokio::test]
async fn list_task_definitions_filters_and_sorts() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let acct = &b.key.account;
    for _ in 0..3 {
        register(&ecs, "web").await;
    }
    register(&ecs, "web-api").await;
    register(&ecs, "db").await;
    ecs.deregister_task_definition().task_definition("web:2").send().await.unwrap();

    // ACTIVE is the default status; the order is family, then revision.
    let all = list_all(&ecs, None, None, None, 100).await;
    assert_eq!(
        all,
        [td_arn(acct, "db", 1), td_arn(acct, "web", 1), td_arn(acct, "web", 3), td_arn(acct, "web-api", 1)]
    );

    // familyPrefix matches the whole family name, not a prefix of it.
    let web = list_all(&ecs, Some("web"), None, None, 100).await;
    assert_eq!(web, [td_arn(acct, "web", 1), td_arn(acct, "web", 3)]);
    let web = list_all(&ecs, Some("web"), Some(TaskDefinitionStatus::Active), Some(SortOrder::Desc), 100).await;
    assert_eq!(web, [td_arn(acct, "web", 3), td_arn(acct, "web", 1)]);
    let inactive = list_all(&ecs, Some("web"), Some(TaskDefinitionStatus::Inactive), None, 100).await;
    assert_eq!(inactive, [td_arn(acct, "web", 2)]);
    assert!(list_all(&ecs, Some("we"), None, None, 100).await.is_empty());
    assert!(list_all(&ecs, Some("db"), Some(TaskDefinitionStatus::Inactive), None, 100).await.is_empty());
}

#[tokio::test]
async fn list_task_definitions_paginates() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let acct = &b.key.account;
    // Eleven revisions, so that ordering is numeric (web:2 before web:10).
    for _ in 0..11 {
        register(&ecs, "web").await;
    }
    for _ in 0..3 {
        register(&ecs, "api").await;
    }
    let mut expected: Vec<String> = (1..=3).map(|r| td_arn(acct, "api", r)).collect();
    expected.extend((1..=11).map(|r| td_arn(acct, "web", r)));
    assert_eq!(list_all(&ecs, None, None, None, 100).await, expected);

    for max in [1, 2, 3, 5, 13, 14] {
        let asc = list_all(&ecs, None, None, None, max).await;
        assert_eq!(asc, expected, "ASC with maxResults {max}");
        let desc = list_all(&ecs, None, None, Some(SortOrder::Desc), max).await;
        let mut reversed = expected.clone();
        reversed.reverse();
        assert_eq!(desc, reversed, "DESC with maxResults {max}");
    }
    let web_desc = list_all(&ecs, Some("web"), None, Some(SortOrder::Desc), 4).await;
    assert_eq!(web_desc, (1..=11).rev().map(|r| td_arn(acct, "web", r)).collect::<Vec<_>>());

    let err = ecs.list_task_definitions().max_results(101).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    let err = ecs.list_task_definitions().next_token("garbage").send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
}

#[tokio::test]
async fn list_task_definition_families_by_prefix_and_status() {
    let b = berth().await;
    let ecs = b.ecs().await;
    register(&ecs, "web").await;
    register(&ecs, "web").await;
    register(&ecs, "web-api").await;
    register(&ecs, "db").await;
    // web keeps one ACTIVE revision; web-api has none left.
    ecs.deregister_task_definition().task_definition("web:1").send().await.unwrap();
    ecs.deregister_task_definition().task_definition("web-api:1").send().await.unwrap();

    assert_eq!(families(&ecs, None, None).await, ["db", "web"]);
    assert_eq!(families(&ecs, None, Some(TaskDefinitionFamilyStatus::Active)).await, ["db", "web"]);
    assert_eq!(families(&ecs, None, Some(TaskDefinitionFamilyStatus::Inactive)).await, ["web-api"]);
    assert_eq!(families(&ecs, None, Some(TaskDefinitionFamilyStatus::All)).await, ["db", "web", "web-api"]);
    // Here familyPrefix really is a prefix.
    assert_eq!(families(&ecs, Some("we"), Some(TaskDefinitionFamilyStatus::All)).await, ["web", "web-api"]);
    assert_eq!(families(&ecs, Some("web"), None).await, ["web"]);
    assert!(families(&ecs, Some("x"), Some(TaskDefinitionFamilyStatus::All)).await.is_empty());

    let page = ecs
        .list_task_definition_families()
        .status(TaskDefinitionFamilyStatus::All)
        .max_results(2)
        .send()
        .await
        .unwrap();
    assert_eq!(page.families(), ["db", "web"]);
    let rest = ecs
        .list_task_definition_families()
        .status(TaskDefinitionFamilyStatus::All)
        .max_results(2)
        .next_token(page.next_token().expect("a second page"))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.families(), ["web-api"]);
    assert!(rest.next_token().is_none());
}

#[tokio::test]
async fn deregister_marks_inactive_and_describe_falls_back() {
    let b = berth().await;
    let ecs = b.ecs().await;
    register(&ecs, "web").await;
    let arn2 = register(&ecs, "web").await;

    let err = ecs.deregister_task_definition().task_definition("web").send().await.unwrap_err();
    assert_eq!(error_code(&err), "ClientException");

    let r = ecs.deregister_task_definition().task_definition(&arn2).send().await.unwrap();
    let td = r.task_definition().unwrap();
    assert_eq!(td.status(), Some(&TaskDefinitionStatus::Inactive));
    assert!(td.deregistered_at().is_some());

    // The family now names the previous ACTIVE revision; the INACTIVE one stays describable.
    let d = ecs.describe_task_definition().task_definition("web").send().await.unwrap();
    assert_eq!(d.task_definition().unwrap().revision(), 1);
    let d = ecs.describe_task_definition().task_definition("web:2").send().await.unwrap();
    assert_eq!(d.task_definition().unwrap().status(), Some(&TaskDefinitionStatus::Inactive));
    assert!(d.task_definition().unwrap().deregistered_at().is_some());

    // With no ACTIVE revision left, the bare family names nothing.
    ecs.deregister_task_definition().task_definition("web:1").send().await.unwrap();
    let err = ecs.describe_task_definition().task_definition("web").send().await.unwrap_err();
    assert_eq!(error_code(&err), "ClientException");

    let err = ecs.deregister_task_definition().task_definition("web:7").send().await.unwrap_err();
    assert_eq!(error_code(&err), "ClientException");
}

#[tokio::test]
async fn delete_task_definitions() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let arn1 = register(&ecs, "web").await;
    let arn2 = register(&ecs, "web").await;
    ecs.deregister_task_definition().task_definition(&arn1).send().await.unwrap();

    let r = ecs.delete_task_definitions().task_definitions(&arn1).task_definitions("web:2").send().await.unwrap();
    assert_eq!(r.task_definitions().len(), 1);
    let deleted = &r.task_definitions()[0];
    assert_eq!(deleted.task_definition_arn(), Some(arn1.as_str()));
    assert_eq!(deleted.status(), Some(&TaskDefinitionStatus::DeleteInProgress));
    assert!(deleted.delete_requested_at().is_some());
    assert_eq!(r.failures().len(), 1, "the ACTIVE revision cannot be deleted");
    // Failures name the full ARN of a well-formed reference.
    assert_eq!(r.failures()[0].arn(), Some(arn2.as_str()));
    assert!(r.failures()[0].reason().is_some());

    // The ACTIVE revision is untouched; the deleted one is no longer listed as INACTIVE.
    let d = ecs.describe_task_definition().task_definition(&arn2).send().await.unwrap();
    assert_eq!(d.task_definition().unwrap().status(), Some(&TaskDefinitionStatus::Active));
    assert!(list_all(&ecs, Some("web"), Some(TaskDefinitionStatus::Inactive), None, 100).await.is_empty());
    assert_eq!(list_all(&ecs, Some("web"), Some(TaskDefinitionStatus::DeleteInProgress), None, 100).await, [arn1]);

    let eleven: Vec<String> = (1..=11).map(|r| format!("web:{r}")).collect();
    let err = ecs.delete_task_definitions().set_task_definitions(Some(eleven)).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
}

/// A task definition with many `ContainerDefinition` members set comes back as registered.
#[tokio::test]
async fn large_task_definition_round_trips() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let kv = |n: &str, v: &str| KeyValuePair::builder().name(n).value(v).build();
    let labels: HashMap<String, String> = [("com.example.team", "web"), ("com.example.tier", "front")]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let log_options: HashMap<String, String> =
        [("awslogs-group", "/ecs/web"), ("awslogs-region", "us-east-1"), ("awslogs-stream-prefix", "web")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
    let web = ContainerDefinition::builder()
        .name("web")
        .image("public.ecr.aws/nginx/nginx:1.27")
        .cpu(256)
        .memory(512)
        .memory_reservation(256)
        .essential(true)
        .links("sidecar:side")
        .port_mappings(
            PortMapping::builder()
                .container_port(80)
                .host_port(8080)
                .protocol(TransportProtocol::Tcp)
                .name("http")
                .build(),
        )
        .port_mappings(
            PortMapping::builder().container_port(53).host_port(5353).protocol(TransportProtocol::Udp).build(),
        )
        .entry_point("/docker-entrypoint.sh")
        .command("nginx")
        .command("-g")
        .command("daemon off;")
        .environment(kv("MODE", "production"))
        .environment(kv("URL", "http://example.com/?a=1&b=2"))
        .mount_points(
            MountPoint::builder().source_volume("data").container_path("/var/lib/data").read_only(true).build(),
        )
        .volumes_from(VolumeFrom::builder().source_container("sidecar").read_only(false).build())
        .linux_parameters(
            LinuxParameters::builder()
                .capabilities(KernelCapabilities::builder().add("NET_ADMIN").drop("MKNOD").build())
                .init_process_enabled(true)
                .shared_memory_size(64)
                .tmpfs(
                    Tmpfs::builder().container_path("/tmp/scratch").size(32).mount_options("noexec").build().unwrap(),
                )
                .build(),
        )
        .secrets(
            Secret::builder()
                .name("DB_PASSWORD")
                .value_from("arn:aws:ssm:us-east-1:123456789012:parameter/db")
                .build()
                .unwrap(),
        )
        .depends_on(
            ContainerDependency::builder()
                .container_name("sidecar")
                .condition(ContainerCondition::Start)
                .build()
                .unwrap(),
        )
        .start_timeout(60)
        .stop_timeout(30)
        .hostname("web-host")
        .user("nginx")
        .working_directory("/srv")
        .disable_networking(false)
        .privileged(false)
        .readonly_root_filesystem(true)
        .dns_servers("10.0.0.2")
        .dns_search_domains("example.internal")
        .extra_hosts(HostEntry::builder().hostname("db.local").ip_address("10.0.0.5").build().unwrap())
        .docker_security_options("no-new-privileges")
        .interactive(false)
        .pseudo_terminal(false)
        .docker_labels("com.example.team", "web")
        .docker_labels("com.example.tier", "front")
        .ulimits(Ulimit::builder().name(UlimitName::Nofile).soft_limit(1024).hard_limit(4096).build().unwrap())
        .log_configuration(
            LogConfiguration::builder()
                .log_driver(LogDriver::Awslogs)
                .set_options(Some(log_options.clone()))
                .build()
                .unwrap(),
        )
        .health_check(
            HealthCheck::builder()
                .command("CMD-SHELL")
                .command("curl -f http://localhost/ || exit 1")
                .interval(10)
                .timeout(3)
                .retries(4)
                .start_period(20)
                .build()
                .unwrap(),
        )
        .system_controls(SystemControl::builder().namespace("net.core.somaxconn").value("1024").build())
        .restart_policy(
            ContainerRestartPolicy::builder()
                .enabled(true)
                .ignored_exit_codes(0)
                .restart_attempt_period(120)
                .build()
                .unwrap(),
        )
        .build();
    let sidecar = ContainerDefinition::builder()
        .name("sidecar")
        .image("busybox")
        .memory(64)
        .essential(false)
        .command("sleep")
        .command("infinity")
        .build();
    let volume =
        Volume::builder().name("data").host(HostVolumeProperties::builder().source_path("/srv/data").build()).build();
    let r = ecs
        .register_task_definition()
        .family("big")
        .task_role_arn("arn:aws:iam::123456789012:role/web-task")
        .execution_role_arn("arn:aws:iam::123456789012:role/web-exec")
        .volumes(volume.clone())
        .container_definitions(web.clone())
        .container_definitions(sidecar)
        .send()
        .await
        .unwrap();
    assert_eq!(r.task_definition().unwrap().revision(), 1);

    let d = ecs.describe_task_definition().task_definition("big:1").send().await.unwrap();
    let td = d.task_definition().unwrap();
    assert_eq!(td.task_role_arn(), Some("arn:aws:iam::123456789012:role/web-task"));
    assert_eq!(td.execution_role_arn(), Some("arn:aws:iam::123456789012:role/web-exec"));
    assert_eq!(td.volumes(), [volume]);
    assert_eq!(td.container_definitions().len(), 2);
    let got = td.container_definitions().iter().find(|c| c.name() == Some("web")).expect("web container");

    macro_rules! same {
        ($($member:ident),* $(,)?) => {$(
            assert_eq!(got.$member(), web.$member(), concat!("member ", stringify!($member)));
        )*};
    }
    same!(
        name,
        image,
        cpu,
        memory,
        memory_reservation,
        essential,
        links,
        port_mappings,
        entry_point,
        command,
        environment,
        mount_points,
        volumes_from,
        linux_parameters,
        secrets,
        depends_on,
        start_timeout,
        stop_timeout,
        hostname,
        user,
        working_directory,
        disable_networking,
        privileged,
        readonly_root_filesystem,
        dns_servers,
        dns_search_domains,
        extra_hosts,
        docker_security_options,
        interactive,
        pseudo_terminal,
        docker_labels,
        ulimits,
        log_configuration,
        health_check,
        system_controls,
        restart_policy,
    );
    assert_eq!(got.docker_labels(), Some(&labels));
    assert_eq!(got.log_configuration().unwrap().options(), Some(&log_options));
    let side = td.container_definitions().iter().find(|c| c.name() == Some("sidecar")).expect("sidecar container");
    assert_eq!(side.essential(), Some(false));
    assert_eq!(side.command(), ["sleep", "infinity"]);
}
