//! Task definitions' `secrets` end to end: values kept in SSM Parameter Store and Secrets
//! Manager reach a real container's environment, read with the task's execution role,
//! and appear nowhere else (Berth's log, its store, DescribeTasks, the container's labels).

use aws_sdk_ecs::types::{ContainerDefinition, Secret};
use testkit::images::simplehttp_image;

use crate::iam::{iam, ECS_TASKS_TRUST};
use crate::services::{berth_with_agent, eventually, wait_instances};

const SSM_VALUE: &str = "ssm-value-7f3a9c";
const SM_PASSWORD: &str = "sm-password-51d2e8";

/// Runs one task of `family` and waits until it has stopped.
async fn run_until_stopped(ecs: &aws_sdk_ecs::Client, family: &str) -> aws_sdk_ecs::types::Task {
    let r = ecs.run_task().task_definition(family).send().await.unwrap();
    let arn = r.tasks()[0].task_arn().unwrap().to_string();
    let describe = || async { ecs.describe_tasks().tasks(&arn).send().await.unwrap().tasks()[0].clone() };
    eventually("the task to stop", async || describe().await.last_status() == Some("STOPPED")).await;
    describe().await
}

fn secret(name: &str, from: &str) -> Secret {
    Secret::builder().name(name).value_from(from).build().unwrap()
}

/// A task definition whose one container prints `vars` from its environment.
async fn register(ecs: &aws_sdk_ecs::Client, family: &str, role: &str, secrets: Vec<Secret>, vars: &[&str]) {
    let command: Vec<&str> = std::iter::once("env").chain(vars.iter().copied()).collect();
    let app = crate::support::app_container(&command).set_secrets(Some(secrets)).build();
    ecs.register_task_definition()
        .family(family)
        .execution_role_arn(role)
        .container_definitions(app)
        .send()
        .await
        .unwrap();
}

fn logs_of(container_id: &str) -> String {
    let out = std::process::Command::new("docker").args(["logs", container_id]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn secrets_reach_the_containers_environment_and_nowhere_else() {
    let (_c, b) = berth_with_agent(&[]).await;
    let account = b.key.account.clone();
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    let config = b.sdk_config(&b.key, "us-east-1").await;
    let ssm = aws_sdk_ssm::Client::new(&config);
    let sm = aws_sdk_secretsmanager::Client::new(&config);
    ssm.put_parameter()
        .name("/web/db-password")
        .value(SSM_VALUE)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let created = sm
        .create_secret()
        .name("web/db")
        .secret_string(format!(r#"{{"user":"app","password":"{SM_PASSWORD}"}}"#))
        .send()
        .await
        .unwrap();
    let secret_arn = created.arn().unwrap().to_string();

    let iam = iam(&b).await;
    iam.create_role().role_name("exec").assume_role_policy_document(ECS_TASKS_TRUST).send().await.unwrap();
    iam.put_role_policy()
        .role_name("exec")
        .policy_name("read-secrets")
        .policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ssm:GetParameters","secretsmanager:GetSecretValue"],"Resource":"*"}]}"#,
        )
        .send()
        .await
        .unwrap();
    iam.create_role().role_name("bare").assume_role_policy_document(ECS_TASKS_TRUST).send().await.unwrap();

    let secrets = vec![
        secret("DB_PASSWORD", &format!("arn:aws:ssm:us-east-1:{account}:parameter/web/db-password")),
        secret("DB_PASSWORD_BY_NAME", "/web/db-password"),
        secret("DB_USER", &format!("{secret_arn}:user::")),
        secret("DB_PASS", &format!("arn:aws:secretsmanager:us-east-1:{account}:secret:web/db:password::")),
    ];
    let vars = ["DB_PASSWORD", "DB_PASSWORD_BY_NAME", "DB_USER", "DB_PASS"];
    register(&ecs, "with-secrets", "exec", secrets.clone(), &vars).await;
    let task = run_until_stopped(&ecs, "with-secrets").await;
    let app = &task.containers()[0];
    assert_eq!(app.exit_code(), Some(0), "{task:?}");
    let id = app.runtime_id().unwrap().to_string();
    assert_eq!(
        logs_of(&id),
        format!("DB_PASSWORD={SSM_VALUE}\nDB_PASSWORD_BY_NAME={SSM_VALUE}\nDB_USER=app\nDB_PASS={SM_PASSWORD}\n")
    );

    // Nowhere else: DescribeTasks, the container's labels, Berth's log and its files.
    let described = format!("{task:?}");
    assert!(!described.contains(SSM_VALUE) && !described.contains(SM_PASSWORD));
    let inspect = std::process::Command::new("docker")
        .args(["inspect", "--format", "{{json .Config.Labels}}", &id])
        .output()
        .unwrap();
    let labels = String::from_utf8_lossy(&inspect.stdout);
    assert!(!labels.contains(SSM_VALUE) && !labels.contains(SM_PASSWORD), "{labels}");
    for needle in [SSM_VALUE, SM_PASSWORD] {
        assert_eq!(
            crate::support::files_containing(b.data_dir(), needle),
            Vec::<std::path::PathBuf>::new(),
            "{needle} in clear"
        );
    }

    // The same on Fargate (`berth up`'s Fargate agent, an awsvpc task).
    let subnet = crate::ec2::ec2(&b).await.describe_subnets().send().await.unwrap().subnets()[0]
        .subnet_id()
        .unwrap()
        .to_string();
    ecs.register_task_definition()
        .family("fargate-secrets")
        .execution_role_arn("exec")
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .cpu("256")
        .memory("512")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image(simplehttp_image())
                .set_command(Some(vec!["env".into(), "DB_PASSWORD".into(), "DB_USER".into()]))
                .set_secrets(Some(vec![secrets[0].clone(), secrets[2].clone()]))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let vpc = aws_sdk_ecs::types::NetworkConfiguration::builder()
        .awsvpc_configuration(aws_sdk_ecs::types::AwsVpcConfiguration::builder().subnets(subnet).build().unwrap())
        .build();
    let mut arn = None;
    eventually("a Fargate task is placed", async || {
        let r = ecs
            .run_task()
            .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
            .task_definition("fargate-secrets")
            .network_configuration(vpc.clone())
            .send()
            .await
            .unwrap();
        arn = r.tasks().first().and_then(|t| t.task_arn()).map(str::to_string);
        arn.is_some()
    })
    .await;
    let arn = arn.unwrap();
    let describe = || async { ecs.describe_tasks().tasks(&arn).send().await.unwrap().tasks()[0].clone() };
    eventually("the Fargate task to stop", async || describe().await.last_status() == Some("STOPPED")).await;
    let task = describe().await;
    let app = task.containers().iter().find(|c| c.name() == Some("app")).unwrap();
    assert_eq!(app.exit_code(), Some(0), "{task:?}");
    assert_eq!(logs_of(app.runtime_id().unwrap()), format!("DB_PASSWORD={SSM_VALUE}\nDB_USER=app\n"));

    // A log driver's secretOptions reach Docker's log options.
    ssm.put_parameter()
        .name("/logs/max-size")
        .value("7m")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    ecs.register_task_definition()
        .family("log-secrets")
        .execution_role_arn("exec")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image(simplehttp_image())
                .memory(16)
                .set_command(Some(vec!["env".into()]))
                .log_configuration(
                    aws_sdk_ecs::types::LogConfiguration::builder()
                        .log_driver(aws_sdk_ecs::types::LogDriver::JsonFile)
                        .secret_options(secret("max-size", "/logs/max-size"))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let task = run_until_stopped(&ecs, "log-secrets").await;
    let id = task.containers()[0].runtime_id().unwrap().to_string();
    let inspect = std::process::Command::new("docker")
        .args(["inspect", "--format", "{{json .HostConfig.LogConfig}}", &id])
        .output()
        .unwrap();
    let log_config = String::from_utf8_lossy(&inspect.stdout);
    assert!(log_config.contains(r#""max-size":"7m""#), "{log_config}");

    // An execution role without the permission, and a parameter that does not exist,
    // stop the task with ECS's reason.
    register(&ecs, "denied", "bare", secrets[..1].to_vec(), &vars).await;
    let task = run_until_stopped(&ecs, "denied").await;
    let reason = task.stopped_reason().unwrap_or_default();
    assert!(
        reason.starts_with("ResourceInitializationError: unable to pull secrets or registry auth:")
            && reason.contains("AccessDenied"),
        "{reason}"
    );
    register(&ecs, "missing", "exec", vec![secret("X", "/web/nothing-here")], &vars).await;
    let task = run_until_stopped(&ecs, "missing").await;
    let reason = task.stopped_reason().unwrap_or_default();
    assert!(reason.contains("invalid parameters: /web/nothing-here"), "{reason}");

    // A new value is seen by the next task.
    sm.put_secret_value()
        .secret_id("web/db")
        .secret_string(r#"{"user":"app2","password":"rotated"}"#)
        .send()
        .await
        .unwrap();
    let task = run_until_stopped(&ecs, "with-secrets").await;
    assert!(logs_of(task.containers()[0].runtime_id().unwrap()).contains("DB_USER=app2\n"));

    // A secret deleted under the definition: the next task fails to start with ECS's reason.
    sm.delete_secret().secret_id("web/db").force_delete_without_recovery(true).send().await.unwrap();
    let task = run_until_stopped(&ecs, "with-secrets").await;
    let reason = task.stopped_reason().unwrap_or_default();
    assert!(
        reason.starts_with("ResourceInitializationError: unable to pull secrets or registry auth:")
            && reason.contains("ResourceNotFoundException"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_data_dir_without_its_master_key_refuses_to_start() {
    let mut b = crate::berth().await;
    let ssm = aws_sdk_ssm::Client::new(&b.sdk_config(&b.key, "us-east-1").await);
    ssm.put_parameter()
        .name("/db/password")
        .value(SSM_VALUE)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    b.kill9();
    // As if the data dir were copied without its key: a new key would open nothing.
    std::fs::remove_file(b.data_dir().join("master.key")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["up", "--no-agent", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(b.data_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the master key does not open this data dir") && stderr.contains("master.key"), "{stderr}");
}

#[tokio::test]
async fn repository_credentials_from_a_secret_authenticate_the_pull() {
    use base64::Engine as _;
    let (_c, b) = berth_with_agent(&[]).await;
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    let ecr = b.ecr().await;
    let uri = crate::support::create_repository(&ecr, "private").await;
    let mut docker = crate::support::Docker::login(&b).await;
    let image = format!("{uri}:v1");
    docker.run(&["tag", testkit::images::simplehttp_image(), &image]);
    docker.run(&["push", "-q", &image]);
    docker.remove_local(&image);
    docker.made.push(image.clone());

    // The registry's own login, as a secret with username and password.
    let token = ecr.get_authorization_token().send().await.unwrap().authorization_data()[0]
        .authorization_token()
        .unwrap()
        .to_string();
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(token).unwrap()).unwrap();
    let password = decoded.strip_prefix("AWS:").unwrap();
    let sm = aws_sdk_secretsmanager::Client::new(&b.sdk_config(&b.key, "us-east-1").await);
    let good = sm
        .create_secret()
        .name("registry/good")
        .secret_string(format!(r#"{{"username":"AWS","password":"{password}"}}"#))
        .send()
        .await
        .unwrap();
    let bad = sm
        .create_secret()
        .name("registry/bad")
        .secret_string(r#"{"username":"AWS","password":"not-the-token"}"#)
        .send()
        .await
        .unwrap();
    // The execution role may read the secrets but not pull from ECR itself: only the
    // repository's credentials can get the image.
    let iam = iam(&b).await;
    iam.create_role().role_name("exec").assume_role_policy_document(ECS_TASKS_TRUST).send().await.unwrap();
    iam.put_role_policy()
        .role_name("exec")
        .policy_name("read-secrets")
        .policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#,
        )
        .send()
        .await
        .unwrap();
    for (family, secret) in [("with-bad-credentials", bad.arn().unwrap()), ("with-credentials", good.arn().unwrap())] {
        ecs.register_task_definition()
            .family(family)
            .execution_role_arn("exec")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("app")
                    .image(&image)
                    .memory(16)
                    .set_command(Some(vec!["exit".into(), "0".into()]))
                    .repository_credentials(
                        aws_sdk_ecs::types::RepositoryCredentials::builder()
                            .credentials_parameter(secret)
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    // The wrong password first, while the image is not on the host.
    let task = run_until_stopped(&ecs, "with-bad-credentials").await;
    let reason = task.stopped_reason().unwrap_or_default();
    assert!(reason.starts_with("CannotPullContainerError"), "{reason}");
    let task = run_until_stopped(&ecs, "with-credentials").await;
    assert_eq!(task.containers()[0].exit_code(), Some(0), "{task:?}");
}
