//! Tasks' roles end to end: the control plane assumes a task's role as
//! `ecs-tasks.amazonaws.com`, the agent serves the credentials at `169.254.170.2` to the
//! task's containers only, and they call Berth as the role's session.

use aws_sdk_ecs::types::ContainerDefinition;
use testkit::error_code;
use testkit::images::simplehttp_image;

use crate::iam::{config_with, iam, ECS_TASKS_TRUST};
use crate::services::{berth_with_agent, eventually, task_id, wait_instances};

/// Runs one task of `family` in the default cluster and waits until it has stopped.
async fn run_until_stopped(ecs: &aws_sdk_ecs::Client, family: &str) -> aws_sdk_ecs::types::Task {
    let r = ecs.run_task().task_definition(family).send().await.unwrap();
    let arn = r.tasks()[0].task_arn().unwrap().to_string();
    let describe = || async { ecs.describe_tasks().tasks(&arn).send().await.unwrap().tasks()[0].clone() };
    eventually("the task to stop", async || describe().await.last_status() == Some("STOPPED")).await;
    describe().await
}

#[tokio::test]
async fn a_tasks_container_calls_aws_as_its_task_role() {
    let (_c, b) = berth_with_agent(&[]).await;
    let account = b.key.account.clone();
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    let iam = iam(&b).await;
    iam.create_role().role_name("web-task").assume_role_policy_document(ECS_TASKS_TRUST).send().await.unwrap();
    iam.put_role_policy()
        .role_name("web-task")
        .policy_name("list")
        .policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:ListClusters","Resource":"*"}]}"#,
        )
        .send()
        .await
        .unwrap();
    // The role by name, as task definitions may give it.
    let register = async |family: &str, command: &[&str]| {
        let app = crate::support::app_container(command).build();
        ecs.register_task_definition()
            .family(family)
            .task_role_arn("web-task")
            .container_definitions(app)
            .send()
            .await
            .unwrap();
    };
    register("creds", &["fetch", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]).await;
    let task = run_until_stopped(&ecs, "creds").await;
    let app = &task.containers()[0];
    assert_eq!(app.exit_code(), Some(0), "{task:?}");

    // What the container read is the role's credentials.
    let out = std::process::Command::new("docker").args(["logs", app.runtime_id().unwrap()]).output().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the credentials as JSON");
    assert_eq!(body["RoleArn"], format!("arn:aws:iam::{account}:role/web-task"));
    let (id, secret, token) = (
        body["AccessKeyId"].as_str().unwrap(),
        body["SecretAccessKey"].as_str().unwrap(),
        body["Token"].as_str().unwrap(),
    );
    let config = config_with(&b, id, secret, Some(token)).await;
    let me = aws_sdk_sts::Client::new(&config).get_caller_identity().send().await.unwrap();
    assert_eq!(me.arn(), Some(format!("arn:aws:sts::{account}:assumed-role/web-task/{}", task_id(&task)).as_str()));
    let as_task = aws_sdk_ecs::Client::new(&config);
    as_task.list_clusters().send().await.unwrap();
    let e = as_task.describe_clusters().send().await.unwrap_err();
    assert_eq!(error_code(&e), "AccessDeniedException");

    // A task of the role that keeps running while the role is deleted.
    register("creds-live", &["sleep", "600"]).await;
    let live = ecs.run_task().task_definition("creds-live").send().await.unwrap().tasks()[0].clone();
    let live_arn = live.task_arn().unwrap().to_string();
    let describe_live = || async { ecs.describe_tasks().tasks(&live_arn).send().await.unwrap().tasks()[0].clone() };
    eventually("the live task to run", async || describe_live().await.last_status() == Some("RUNNING")).await;

    // The role deleted: its sessions stop working at once.
    iam.delete_role_policy().role_name("web-task").policy_name("list").send().await.unwrap();
    iam.delete_role().role_name("web-task").send().await.unwrap();
    let e = as_task.list_clusters().send().await.unwrap_err();
    assert_eq!(error_code(&e), "UnrecognizedClientException");
    // The running task is not stopped for it: its endpoint still answers with the
    // credentials it has (no new ones come), and the SDK inside sees them refused.
    let runtime = describe_live().await.containers()[0].runtime_id().unwrap().to_string();
    let out = std::process::Command::new("docker")
        .args(["inspect", &runtime, "--format", "{{json .Config.Env}}"])
        .output()
        .unwrap();
    let env: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    let uri = env.iter().find_map(|e| e.strip_prefix("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=")).unwrap();
    let held: serde_json::Value = serde_json::from_str(
        &reqwest::get(format!("http://127.0.0.1:51679{uri}")).await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    let (id, secret, token) =
        (held["AccessKeyId"].as_str().unwrap(), held["SecretAccessKey"].as_str().unwrap(), held["Token"].as_str());
    let as_live = aws_sdk_ecs::Client::new(&config_with(&b, id, secret, token).await);
    let e = as_live.list_clusters().send().await.unwrap_err();
    assert_eq!(error_code(&e), "UnrecognizedClientException");
    let still = describe_live().await;
    assert_eq!(still.last_status(), Some("RUNNING"), "{still:?}");
    ecs.stop_task().task(&live_arn).send().await.unwrap();
}

#[tokio::test]
async fn awslogs_ships_with_the_tasks_execution_role() {
    use aws_sdk_ecs::types::{LogConfiguration, LogDriver};
    let (_c, b) = berth_with_agent(&[]).await;
    let account = b.key.account.clone();
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    let iam = iam(&b).await;
    for role in ["exec", "exec-without-logs"] {
        iam.create_role().role_name(role).assume_role_policy_document(ECS_TASKS_TRUST).send().await.unwrap();
    }
    iam.attach_role_policy()
        .role_name("exec")
        .policy_arn("arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy")
        .send()
        .await
        .unwrap();
    let register = |family: &'static str, role: &'static str| {
        let ecs = ecs.clone();
        let account = account.clone();
        async move {
            let logs = LogConfiguration::builder()
                .log_driver(LogDriver::Awslogs)
                .options("awslogs-group", format!("/ecs/{family}"))
                .options("awslogs-region", "us-east-1")
                .options("awslogs-stream-prefix", "ecs")
                .build()
                .unwrap();
            ecs.register_task_definition()
                .family(family)
                .execution_role_arn(format!("arn:aws:iam::{account}:role/{role}"))
                .container_definitions(
                    ContainerDefinition::builder()
                        .name("app")
                        .image(simplehttp_image())
                        .memory(16)
                        .set_command(Some(vec!["print".into(), "3".into()]))
                        .log_configuration(logs)
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
    };
    register("shipped", "exec").await;
    register("refused", "exec-without-logs").await;

    // The AWS-managed execution role policy allows the stream and the events
    // (logs:CreateLogStream, logs:PutLogEvents), not the group: it is made first.
    let logs = aws_sdk_cloudwatchlogs::Client::new(&b.sdk_config(&b.key, "us-east-1").await);
    logs.create_log_group().log_group_name("/ecs/shipped").send().await.unwrap();
    logs.create_log_group().log_group_name("/ecs/refused").send().await.unwrap();
    let task = run_until_stopped(&ecs, "shipped").await;
    assert_eq!(task.containers()[0].exit_code(), Some(0), "{task:?}");
    let stream = format!("ecs/app/{}", task_id(&task));
    let events = logs
        .get_log_events()
        .log_group_name("/ecs/shipped")
        .log_stream_name(&stream)
        .start_from_head(true)
        .send()
        .await
        .unwrap();
    let lines: Vec<_> = events.events().iter().map(|e| e.message().unwrap().to_string()).collect();
    assert_eq!(lines, ["line 1", "line 2", "line 3"]);

    // A role without CloudWatch Logs permissions: the container cannot start, as with
    // Docker's awslogs driver.
    let task = run_until_stopped(&ecs, "refused").await;
    let reason = task.containers()[0].reason().unwrap_or_default().to_string();
    assert!(reason.starts_with("CannotStartContainerError"), "{reason}");
    assert!(reason.contains("AccessDeniedException"), "{reason}");
}

#[tokio::test]
async fn images_are_pulled_from_ecr_with_the_tasks_execution_role() {
    let (_c, b) = berth_with_agent(&[]).await;
    let account = b.key.account.clone();
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    let uri = crate::support::create_repository(&b.ecr().await, "app").await;
    let mut root = crate::support::Docker::login(&b).await;
    let image = format!("{uri}:v1");
    root.run(&["tag", simplehttp_image(), &image]);
    root.run(&["push", "-q", &image]);
    // Not cached under its name: the task's agent must pull it.
    root.remove_local(&image);
    root.made.push(image.clone());

    let iam = iam(&b).await;
    for role in ["exec", "exec-without-ecr"] {
        iam.create_role().role_name(role).assume_role_policy_document(ECS_TASKS_TRUST).send().await.unwrap();
    }
    iam.attach_role_policy()
        .role_name("exec")
        .policy_arn("arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy")
        .send()
        .await
        .unwrap();
    for (family, role) in [("pulled", "exec"), ("refused", "exec-without-ecr")] {
        ecs.register_task_definition()
            .family(family)
            .execution_role_arn(format!("arn:aws:iam::{account}:role/{role}"))
            .container_definitions(
                ContainerDefinition::builder()
                    .name("app")
                    .image(&image)
                    .memory(16)
                    .set_command(Some(vec!["exit".into(), "0".into()]))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    // The role without ECR permissions first, while the image is not on the host.
    let task = run_until_stopped(&ecs, "refused").await;
    let reason = task.stopped_reason().unwrap_or_default().to_string();
    assert!(reason.starts_with("CannotPullContainerError"), "{reason}");
    assert!(reason.contains("ecr:GetAuthorizationToken"), "{reason}");
    let task = run_until_stopped(&ecs, "pulled").await;
    assert_eq!(task.containers()[0].exit_code(), Some(0), "{task:?}");
}

/// Berth's endpoint as containers reach it: through the default bridge's gateway, which is
/// this host (the server listens on every interface for these tests).
fn endpoint_from_containers(endpoint: &str) -> String {
    // Docker names the gateway only when it was given one; otherwise it is the subnet's
    // first address.
    let out = std::process::Command::new("docker")
        .args([
            "network",
            "inspect",
            "bridge",
            "-f",
            "{{(index .IPAM.Config 0).Gateway}} {{(index .IPAM.Config 0).Subnet}}",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let gateway = match text.split_whitespace().collect::<Vec<_>>().as_slice() {
        [gateway, _] => gateway.to_string(),
        [subnet] => {
            let base: std::net::Ipv4Addr = subnet.split('/').next().unwrap().parse().unwrap();
            std::net::Ipv4Addr::from(u32::from(base) + 1).to_string()
        }
        other => panic!("the default bridge network: {other:?}"),
    };
    let port = endpoint.rsplit(':').next().unwrap();
    format!("http://{gateway}:{port}")
}

#[tokio::test]
async fn the_official_sdk_in_a_container_finds_its_task_role() {
    use aws_sdk_ecs::types::{AwsVpcConfiguration, KeyValuePair, NetworkConfiguration, NetworkMode};
    let image = testkit::images::sdk_probe_image();
    // Declared first, dropped last: containers go once the server and agents are gone.
    let _c;
    let b = testkit::Berth::start_with_agent_on_all_interfaces(env!("CARGO_BIN_EXE_berth"), &[]).await;
    _c = crate::services::cleanup(&b, "default");
    let account = b.key.account.clone();
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    let iam = iam(&b).await;
    // GetCallerIdentity needs no permission: the role needs only to trust ECS's tasks.
    iam.create_role().role_name("probe-task").assume_role_policy_document(ECS_TASKS_TRUST).send().await.unwrap();
    let endpoint = endpoint_from_containers(&b.endpoint);
    let env = |k: &str, v: &str| KeyValuePair::builder().name(k).value(v).build();
    for (family, mode) in [("probe-bridge", NetworkMode::Bridge), ("probe-vpc", NetworkMode::Awsvpc)] {
        ecs.register_task_definition()
            .family(family)
            .network_mode(mode)
            .task_role_arn("probe-task")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("app")
                    .image(image)
                    .memory(128)
                    .environment(env("AWS_ENDPOINT_URL", &endpoint))
                    .environment(env("AWS_REGION", "us-east-1"))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let ec2 = crate::ec2::ec2(&b).await;
    let subnet = ec2.describe_subnets().send().await.unwrap().subnets()[0].subnet_id().unwrap().to_string();
    let vpc = NetworkConfiguration::builder()
        .awsvpc_configuration(AwsVpcConfiguration::builder().subnets(subnet).build().unwrap())
        .build();
    for (family, network) in [("probe-bridge", None), ("probe-vpc", Some(vpc))] {
        let r = ecs.run_task().task_definition(family).set_network_configuration(network).send().await.unwrap();
        assert!(r.failures().is_empty(), "{:?}", r.failures());
        let arn = r.tasks()[0].task_arn().unwrap().to_string();
        let describe = || async { ecs.describe_tasks().tasks(&arn).send().await.unwrap().tasks()[0].clone() };
        eventually("the probe to stop", async || describe().await.last_status() == Some("STOPPED")).await;
        let task = describe().await;
        let app = &task.containers()[0];
        let out = std::process::Command::new("docker").args(["logs", app.runtime_id().unwrap()]).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(app.exit_code(), Some(0), "{family}: {stderr}");
        let expected = format!("arn:aws:sts::{account}:assumed-role/probe-task/{}", task_id(&task));
        assert_eq!(stdout.trim(), expected, "{family}");
    }
}

#[tokio::test]
async fn an_agent_acts_as_its_instance_role() {
    let b = crate::berth().await;
    let account = b.key.account.clone();
    let iam = iam(&b).await;
    // The host's own key may do nothing but assume the instance role.
    iam.create_user().user_name("host").send().await.unwrap();
    let key = iam.create_access_key().user_name("host").send().await.unwrap().access_key.unwrap();
    let role_arn = format!("arn:aws:iam::{account}:role/ecsInstanceRole");
    let assume = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"{role_arn}"}}]}}"#
    );
    iam.put_user_policy().user_name("host").policy_name("assume").policy_document(assume).send().await.unwrap();
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{account}:root"}},"Action":"sts:AssumeRole"}}]}}"#
    );
    iam.create_role().role_name("ecsInstanceRole").assume_role_policy_document(trust).send().await.unwrap();
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("hosts").send().await.unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", key.access_key_id()),
        ("AWS_SECRET_ACCESS_KEY", key.secret_access_key()),
        ("ECS_INSTANCE_IAM_ROLE", role_arn.as_str()),
    ];

    // Without the role's permissions the agent cannot register, and says why.
    let agent = b.spawn_agent("hosts", &env);
    eventually("the agent to give up", async || agent.log().contains("AccessDenied")).await;
    drop(agent);
    assert!(ecs.list_container_instances().cluster("hosts").send().await.unwrap().container_instance_arns().is_empty());

    // With them, it registers and holds its channel as the role's session.
    iam.attach_role_policy()
        .role_name("ecsInstanceRole")
        .policy_arn("arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role")
        .send()
        .await
        .unwrap();
    let agent = b.spawn_agent("hosts", &env);
    wait_instances(&ecs, "hosts", 1).await;
    eventually("the session as the role", async || agent.log().contains("acting as the instance role")).await;
    eventually("the agent's channel", async || agent.log().contains("channel to the control plane open")).await;
}
