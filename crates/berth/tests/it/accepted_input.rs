//! Inputs AWS accepts that Berth once refused, driven with the official SDK: a tool that
//! works against AWS must not fail on Berth's validation. Each case also checks the limit
//! AWS does keep, with AWS's error code.
//!
//! What was compared with botocore's models and ECS's, ECR's and ELBv2's API references
//! (issue 17), and found no stricter than AWS: cluster, service, family, container and
//! volume names (255 letters, digits, `-`, `_`); tags (128/256 characters, letters,
//! digits, white space and `_.:/=+-@`, 50 a resource, `aws:` reserved); attribute names
//! and values; image names; `startedBy` and `group` lengths; ECR repository names (the
//! OCI grammar, which also takes the `__` and `--` separators ECR's model pattern does
//! not); ELBv2 load balancer and target group names (consecutive hyphens allowed,
//! `internal-` refused for load balancers) and security groups (any of the VPC). Found
//! stricter, and relaxed (a case below each): an empty `clientToken`, `startedBy` with
//! spaces, an empty `role` on CreateService, empty `taskRoleArn`/`executionRoleArn` on
//! RegisterTaskDefinition, a circuit breaker with `rollback` but not `enable`.

use aws_sdk_ecs::types::ContainerDefinition;
use aws_sdk_ecs::Client;
use testkit::images::simplehttp_image;
use testkit::{error_code, Berth};

use crate::berth;
use crate::services::{cleanup, wait_instances, Cleanup};

/// A server whose agent is connected to `default`, and a task definition `web` whose task
/// sleeps; returns the instance's ARN. The cleanup comes first so that it is dropped last.
async fn berth_with_instance() -> (Cleanup, Berth, Client, String) {
    let b = Berth::start_with_agent(env!("CARGO_BIN_EXE_berth"), &[]).await;
    let c = cleanup(&b, "default");
    let ecs = b.ecs().await;
    let instance = wait_instances(&ecs, "default", 1).await.remove(0);
    ecs.register_task_definition()
        .family("web")
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image(simplehttp_image())
                .memory(16)
                .command("sleep")
                .command("600")
                .build(),
        )
        .send()
        .await
        .unwrap();
    (c, b, ecs, instance)
}

/// startedBy values ECS takes (any characters, up to 128 for RunTask and 36 for
/// StartTask) and the first length it refuses.
fn started_by_cases() -> Vec<(&'static str, String, bool)> {
    vec![
        ("RunTask", "ECS Deploy".into(), true),
        ("RunTask", "events-rule/nightly job".into(), true),
        ("RunTask", "x y".repeat(42) + "zz", true),
        ("RunTask", "é".repeat(128), true),
        ("RunTask", "a".repeat(129), false),
        ("StartTask", "ecs-deploy run #2".into(), true),
        ("StartTask", "a b".repeat(12), true),
        ("StartTask", "a".repeat(37), false),
    ]
}

#[tokio::test]
async fn started_by_takes_any_characters_up_to_aws_lengths() {
    let (_c, _b, ecs, instance) = berth_with_instance().await;
    for (op, started_by, accepted) in started_by_cases() {
        let result = match op {
            "RunTask" => ecs
                .run_task()
                .task_definition("web")
                .started_by(&started_by)
                .send()
                .await
                .map(|r| r.tasks().to_vec())
                .map_err(|e| error_code(&e)),
            _ => ecs
                .start_task()
                .task_definition("web")
                .container_instances(&instance)
                .started_by(&started_by)
                .send()
                .await
                .map(|r| r.tasks().to_vec())
                .map_err(|e| error_code(&e)),
        };
        match (accepted, result) {
            (true, Ok(tasks)) => {
                assert_eq!(tasks.len(), 1, "{op} {started_by:?}");
                assert_eq!(tasks[0].started_by(), Some(started_by.as_str()));
                let listed = ecs.list_tasks().started_by(&started_by).send().await.unwrap();
                assert_eq!(listed.task_arns(), [tasks[0].task_arn().unwrap()], "{op} {started_by:?}");
            }
            (false, Err(code)) => assert_eq!(code, "InvalidParameterException", "{op} {started_by:?}"),
            (accepted, got) => panic!("{op} startedBy {started_by:?}: expected accepted={accepted}, got {got:?}"),
        }
    }
}

#[tokio::test]
async fn empty_started_by_and_group_are_none_given() {
    let (_c, _b, ecs, _) = berth_with_instance().await;
    let r = ecs.run_task().task_definition("web").started_by("").group("").send().await.unwrap();
    assert_eq!(r.tasks().len(), 1, "{:?}", r.failures());
    let t = &r.tasks()[0];
    assert_eq!(t.group(), Some("family:web"));
    assert_eq!(t.started_by(), None);
    let e = ecs.run_task().task_definition("web").group("g".repeat(256)).send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
}

#[tokio::test]
async fn empty_client_token_is_no_token() {
    let b = berth().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().send().await.unwrap();
    let web = ContainerDefinition::builder().name("web").image("nginx").memory(16).build();
    ecs.register_task_definition().family("web").container_definitions(web).send().await.unwrap();
    let create = |token: &str| {
        ecs.create_service()
            .service_name("api")
            .task_definition("web")
            .desired_count(0)
            .client_token(token)
            .role("")
            .send()
    };
    // Ansible's ecs_service sends an empty clientToken and an empty role unless told
    // otherwise; the service has no load balancer, which a real role would need.
    let s = create("").await.unwrap();
    assert_eq!(s.service().unwrap().service_name(), Some("api"));
    assert_eq!(s.service().unwrap().role_arn(), None);
    // With no token a second create of the same name is not idempotent, as in ECS.
    let e = create("").await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");

    // A given token keeps ECS's limits: up to 36 characters from 33 to 126.
    let e = ecs
        .create_service()
        .service_name("other")
        .task_definition("web")
        .desired_count(0)
        .client_token("t".repeat(37))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
    let token = "!~".repeat(18);
    let first = ecs.create_service().service_name("other").task_definition("web").desired_count(0);
    first.clone().client_token(&token).send().await.unwrap();
    first.client_token(&token).send().await.unwrap();
}

/// ecs-deploy re-registers a task definition with `taskRoleArn: ""` and
/// `executionRoleArn: ""` when the old one has no roles: ECS takes them as no role, so
/// the new revision describes without roles and its tasks run.
#[tokio::test]
async fn empty_role_arns_are_no_roles() {
    let (_c, _b, ecs, _) = berth_with_instance().await;
    let web = ContainerDefinition::builder()
        .name("web")
        .image(simplehttp_image())
        .memory(16)
        .command("sleep")
        .command("600")
        .build();
    let td = ecs
        .register_task_definition()
        .family("deployed")
        .task_role_arn("")
        .execution_role_arn("")
        .container_definitions(web)
        .send()
        .await
        .unwrap();
    let td = td.task_definition().unwrap();
    assert_eq!((td.task_role_arn(), td.execution_role_arn()), (None, None));
    let r = ecs.run_task().task_definition("deployed").send().await.unwrap();
    assert_eq!(r.tasks().len(), 1, "{:?}", r.failures());
}

/// A circuit breaker with `rollback: true` but `enable: false` (what some templates
/// write when they turn the breaker off) is accepted and stays off; ECS's percentages
/// are still checked.
#[tokio::test]
async fn rollback_without_an_enabled_circuit_breaker_is_accepted() {
    use aws_sdk_ecs::types::{DeploymentCircuitBreaker, DeploymentConfiguration};
    let b = berth().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().send().await.unwrap();
    let web = ContainerDefinition::builder().name("web").image("nginx").memory(16).build();
    ecs.register_task_definition().family("web").container_definitions(web).send().await.unwrap();
    let config = |min: i32| {
        DeploymentConfiguration::builder()
            .minimum_healthy_percent(min)
            .deployment_circuit_breaker(DeploymentCircuitBreaker::builder().enable(false).rollback(true).build())
            .build()
    };
    let s = ecs
        .create_service()
        .service_name("api")
        .task_definition("web")
        .desired_count(0)
        .deployment_configuration(config(50))
        .send()
        .await
        .unwrap();
    let cb = s.service().unwrap().deployment_configuration().unwrap().deployment_circuit_breaker().unwrap();
    assert_eq!((cb.enable(), cb.rollback()), (false, true));
    let e = ecs
        .create_service()
        .service_name("other")
        .task_definition("web")
        .desired_count(0)
        .deployment_configuration(config(-1))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
}
