//! EventBridge driven by the official `aws-sdk-eventbridge`: rules (put, update,
//! describe, list with paging, enable, disable, delete), schedule expressions accepted and
//! refused as EventBridge does, targets with ECS parameters and per-entry failures, tags;
//! and schedule rules that really fire and start tasks on the machine's Docker engine,
//! that stay quiet while disabled, and whose missed firing runs once after `kill -9`.

use std::time::{Duration, Instant};

use aws_sdk_ecs::types::ContainerDefinition;
use aws_sdk_eventbridge::types::{EcsParameters, LaunchType, RuleState, Tag, Target};
use aws_sdk_eventbridge::Client;
use testkit::images::simplehttp_image;
use testkit::{error_code, Berth};

use crate::berth;
use crate::services::{berth_with_agent, wait_instances};

async fn events(b: &Berth) -> Client {
    Client::new(&b.sdk_config(&b.key, "us-east-1").await)
}

fn cluster_arn(b: &Berth, cluster: &str) -> String {
    format!("arn:aws:ecs:us-east-1:{}:cluster/{cluster}", b.key.account)
}

fn role_arn(b: &Berth) -> String {
    format!("arn:aws:iam::{}:role/ecsEventsRole", b.key.account)
}

fn ecs_target(b: &Berth, id: &str, task_definition: &str) -> Target {
    Target::builder()
        .id(id)
        .arn(cluster_arn(b, "default"))
        .role_arn(role_arn(b))
        .ecs_parameters(EcsParameters::builder().task_definition_arn(task_definition).task_count(1).build().unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn rules_are_put_described_listed_enabled_disabled_and_deleted() {
    let b = berth().await;
    let c = events(&b).await;
    let arn = c
        .put_rule()
        .name("nightly")
        .schedule_expression("cron(0 3 * * ? *)")
        .description("Nightly report")
        .role_arn(role_arn(&b))
        .tags(Tag::builder().key("team").value("data").build().unwrap())
        .send()
        .await
        .unwrap()
        .rule_arn()
        .unwrap()
        .to_string();
    assert_eq!(arn, format!("arn:aws:events:us-east-1:{}:rule/nightly", b.key.account));
    let d = c.describe_rule().name("nightly").send().await.unwrap();
    assert_eq!(d.arn(), Some(arn.as_str()));
    assert_eq!(d.schedule_expression(), Some("cron(0 3 * * ? *)"));
    assert_eq!(d.state(), Some(&RuleState::Enabled));
    assert_eq!(d.description(), Some("Nightly report"));
    assert_eq!(d.event_bus_name(), Some("default"));
    assert_eq!(d.created_by(), Some(b.key.account.as_str()));

    // PutRule on an existing name replaces its definition; tags accumulate.
    c.put_rule()
        .name("nightly")
        .schedule_expression("rate(1 day)")
        .state(RuleState::Disabled)
        .tags(Tag::builder().key("env").value("prod").build().unwrap())
        .send()
        .await
        .unwrap();
    let d = c.describe_rule().name("nightly").send().await.unwrap();
    assert_eq!(d.schedule_expression(), Some("rate(1 day)"));
    assert_eq!(d.state(), Some(&RuleState::Disabled));
    assert_eq!(d.description(), None);
    c.enable_rule().name("nightly").send().await.unwrap();
    assert_eq!(c.describe_rule().name("nightly").send().await.unwrap().state(), Some(&RuleState::Enabled));
    c.disable_rule().name("nightly").send().await.unwrap();
    assert_eq!(c.describe_rule().name("nightly").send().await.unwrap().state(), Some(&RuleState::Disabled));

    // Tags.
    let tags = c.list_tags_for_resource().resource_arn(&arn).send().await.unwrap();
    let mut keys: Vec<&str> = tags.tags().iter().map(|t| t.key()).collect();
    keys.sort();
    assert_eq!(keys, ["env", "team"]);
    c.untag_resource().resource_arn(&arn).tag_keys("env").send().await.unwrap();
    c.tag_resource()
        .resource_arn(&arn)
        .tags(Tag::builder().key("owner").value("me").build().unwrap())
        .send()
        .await
        .unwrap();
    let tags = c.list_tags_for_resource().resource_arn(&arn).send().await.unwrap();
    let mut keys: Vec<&str> = tags.tags().iter().map(|t| t.key()).collect();
    keys.sort();
    assert_eq!(keys, ["owner", "team"]);
    let missing = format!("arn:aws:events:us-east-1:{}:rule/missing", b.key.account);
    let e = c.list_tags_for_resource().resource_arn(missing).send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceNotFoundException");

    // Event pattern rules are stored as given.
    let pattern = r#"{"source":["aws.ecs"],"detail-type":["ECS Task State Change"]}"#;
    c.put_rule().name("on-stop").event_pattern(pattern).send().await.unwrap();
    assert_eq!(c.describe_rule().name("on-stop").send().await.unwrap().event_pattern(), Some(pattern));

    // Listing: by prefix, and in pages.
    for i in 0..5 {
        c.put_rule().name(format!("job-{i}")).schedule_expression("rate(5 minutes)").send().await.unwrap();
    }
    let all = c.list_rules().send().await.unwrap();
    assert_eq!(all.rules().len(), 7);
    let jobs = c.list_rules().name_prefix("job-").send().await.unwrap();
    assert_eq!(jobs.rules().len(), 5);
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let page = c.list_rules().name_prefix("job-").limit(2).set_next_token(token).send().await.unwrap();
        names.extend(page.rules().iter().map(|r| r.name().unwrap().to_string()));
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(names, ["job-0", "job-1", "job-2", "job-3", "job-4"]);

    // Delete; deleting again succeeds, as EventBridge's does.
    c.delete_rule().name("job-0").send().await.unwrap();
    c.delete_rule().name("job-0").send().await.unwrap();
    let e = c.describe_rule().name("job-0").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceNotFoundException");
    let e = c.enable_rule().name("job-0").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceNotFoundException");

    // Only the default bus exists.
    let e = c.list_rules().event_bus_name("custom").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceNotFoundException");
    let e = c.put_rule().name("x").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ValidationException");
    let e = c.put_rule().name("bad name").schedule_expression("rate(1 day)").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ValidationException");
    let e = c.put_rule().name("p").event_pattern("[1, 2]").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidEventPatternException");
}

#[tokio::test]
async fn schedule_expressions_are_checked_as_eventbridge_checks_them() {
    let b = berth().await;
    let c = events(&b).await;
    let accepted = [
        "rate(1 minute)",
        "rate(15 minutes)",
        "rate(1 hour)",
        "rate(2 hours)",
        "rate(1 day)",
        "rate(30 days)",
        "cron(0 10 * * ? *)",
        "cron(15 12 * * ? *)",
        "cron(0 18 ? * MON-FRI *)",
        "cron(0 8 1 * ? *)",
        "cron(0/15 * * * ? *)",
        "cron(0/5 8-17 ? * MON-FRI *)",
        "cron(0 9 ? * 2#1 *)",
        "cron(0 0 L * ? *)",
        "cron(0 0 LW * ? *)",
        "cron(0 0 15W * ? *)",
        "cron(0 0 ? * 6L *)",
        "cron(0,30 1,2 ? JAN,JUL * 2030-2040)",
    ];
    for (i, s) in accepted.iter().enumerate() {
        let r = c.put_rule().name(format!("ok-{i}")).schedule_expression(*s).send().await;
        assert!(r.is_ok(), "{s} was refused: {:?}", r.err());
    }
    let refused = [
        "rate(1 minutes)",
        "rate(5 minute)",
        "rate(0 minutes)",
        "rate(1 second)",
        "rate(1.5 hours)",
        "rate(2 weeks)",
        "cron(0 10 * * * *)",
        "cron(0 10 ? * ? *)",
        "cron(0 10 * * ?)",
        "cron(60 10 * * ? *)",
        "cron(0 24 * * ? *)",
        "cron(0 0 32 * ? *)",
        "cron(0 0 * 13 ? *)",
        "cron(0 0 ? * 8 *)",
        "cron(0 0 ? * 2#6 *)",
        "cron(0 0 * * ? 1969)",
        "at(2030-01-01T00:00:00)",
        "daily",
    ];
    for s in refused {
        let e = c.put_rule().name("bad").schedule_expression(s).send().await.unwrap_err();
        assert_eq!(error_code(&e), "ValidationException", "{s}");
        assert!(
            aws_sdk_eventbridge::error::DisplayErrorContext(&e).to_string().contains("ScheduleExpression is not valid"),
            "{s}"
        );
    }
    assert_eq!(c.list_rules().send().await.unwrap().rules().len(), accepted.len(), "no refused rule was stored");
}

#[tokio::test]
async fn targets_are_put_listed_replaced_and_removed() {
    let b = berth().await;
    let c = events(&b).await;
    c.put_rule().name("r").schedule_expression("rate(1 hour)").send().await.unwrap();
    let e = c.put_targets().rule("missing").targets(ecs_target(&b, "t", "web")).send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceNotFoundException");

    let full = Target::builder()
        .id("job")
        .arn(cluster_arn(&b, "default"))
        .role_arn(role_arn(&b))
        .input(r#"{"containerOverrides":[{"name":"web","command":["sleep"]}]}"#)
        .ecs_parameters(
            EcsParameters::builder()
                .task_definition_arn(format!("arn:aws:ecs:us-east-1:{}:task-definition/web:1", b.key.account))
                .task_count(2)
                .launch_type(LaunchType::Ec2)
                .group("batch")
                .enable_ecs_managed_tags(true)
                .reference_id("ref-1")
                .tags(Tag::builder().key("job").value("nightly").build().unwrap())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    // Refused per entry: more tasks than RunTask starts; the others are put.
    let too_many = Target::builder()
        .id("big")
        .arn(cluster_arn(&b, "default"))
        .role_arn(role_arn(&b))
        .ecs_parameters(EcsParameters::builder().task_definition_arn("web").task_count(11).build().unwrap())
        .build()
        .unwrap();
    let queue = Target::builder().id("q").arn(format!("arn:aws:sqs:us-east-1:{}:jobs", b.key.account)).build().unwrap();
    let r = c.put_targets().rule("r").targets(full.clone()).targets(too_many).targets(queue).send().await.unwrap();
    assert_eq!(r.failed_entry_count(), 1);
    assert_eq!(r.failed_entries()[0].target_id(), Some("big"));
    assert_eq!(r.failed_entries()[0].error_code(), Some("ValidationException"));

    let listed = c.list_targets_by_rule().rule("r").send().await.unwrap();
    let ids: Vec<&str> = listed.targets().iter().map(|t| t.id()).collect();
    assert_eq!(ids, ["job", "q"]);
    assert_eq!(listed.targets()[0], full, "a target is answered as it was put");

    // Put again by id replaces.
    c.put_targets().rule("r").targets(ecs_target(&b, "job", "web:2")).send().await.unwrap();
    let listed = c.list_targets_by_rule().rule("r").send().await.unwrap();
    assert_eq!(listed.targets().len(), 2);
    assert_eq!(listed.targets()[0].ecs_parameters().unwrap().task_definition_arn(), "web:2");

    let names = c.list_rule_names_by_target().target_arn(cluster_arn(&b, "default")).send().await.unwrap();
    assert_eq!(names.rule_names(), ["r"]);

    // An ECS target needs a role; Input must be JSON.
    let no_role = Target::builder()
        .id("x")
        .arn(cluster_arn(&b, "default"))
        .ecs_parameters(EcsParameters::builder().task_definition_arn("web").build().unwrap())
        .build()
        .unwrap();
    let e = c.put_targets().rule("r").targets(no_role).send().await.unwrap_err();
    assert_eq!(error_code(&e), "ValidationException");
    let mut bad_input = ecs_target(&b, "y", "web");
    bad_input.input = Some("{not json".into());
    let e = c.put_targets().rule("r").targets(bad_input).send().await.unwrap_err();
    assert_eq!(error_code(&e), "ValidationException");

    // At most five targets per rule.
    for i in 0..3 {
        c.put_targets().rule("r").targets(ecs_target(&b, &format!("t{i}"), "web")).send().await.unwrap();
    }
    let e = c.put_targets().rule("r").targets(ecs_target(&b, "t3", "web")).send().await.unwrap_err();
    assert_eq!(error_code(&e), "LimitExceededException");

    // A rule with targets is deleted only with Force.
    let e = c.delete_rule().name("r").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ValidationException");
    let r = c.remove_targets().rule("r").ids("q").ids("t0").send().await.unwrap();
    assert_eq!(r.failed_entry_count(), 0);
    assert_eq!(c.list_targets_by_rule().rule("r").send().await.unwrap().targets().len(), 3);
    c.delete_rule().name("r").force(true).send().await.unwrap();
    let e = c.list_targets_by_rule().rule("r").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceNotFoundException");
}

async fn register(ecs: &aws_sdk_ecs::Client, family: &str) {
    ecs.register_task_definition()
        .family(family)
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image(simplehttp_image())
                .memory(32)
                .set_command(Some(vec!["serve".into(), "--port".into(), "8080".into()]))
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// The tasks a rule started (any status).
async fn started_by(ecs: &aws_sdk_ecs::Client, rule: &str) -> Vec<String> {
    let mut arns = Vec::new();
    for status in [aws_sdk_ecs::types::DesiredStatus::Running, aws_sdk_ecs::types::DesiredStatus::Stopped] {
        let l = ecs.list_tasks().started_by(format!("events-rule/{rule}")).desired_status(status).send().await.unwrap();
        arns.extend(l.task_arns().iter().cloned());
    }
    arns
}

async fn wait_started(ecs: &aws_sdk_ecs::Client, rule: &str, n: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let arns = started_by(ecs, rule).await;
        if arns.len() >= n {
            return arns;
        }
        assert!(Instant::now() < deadline, "rule {rule} started {} tasks, not {n}, in {within:?}", arns.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_schedule_rule_starts_its_tasks_and_a_disabled_one_does_not() {
    let (_c, b) = berth_with_agent(&[]).await;
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    register(&ecs, "cron-job").await;
    let c = events(&b).await;
    for (name, state) in [("every-minute", RuleState::Enabled), ("switched-off", RuleState::Disabled)] {
        c.put_rule().name(name).schedule_expression("rate(1 minute)").state(state).send().await.unwrap();
        let mut target = ecs_target(&b, "job", "cron-job");
        target.input = Some(r#"{"containerOverrides":[{"name":"web","command":["sleep"]}]}"#.into());
        c.put_targets().rule(name).targets(target).send().await.unwrap();
    }
    let put = Instant::now();
    let arns = wait_started(&ecs, "every-minute", 1, Duration::from_secs(90)).await;
    assert!(put.elapsed() >= Duration::from_secs(55), "the first firing comes one period after the rule, not at once");
    let d = ecs.describe_tasks().tasks(&arns[0]).send().await.unwrap();
    let t = &d.tasks()[0];
    assert_eq!(t.started_by(), Some("events-rule/every-minute"));
    assert_eq!(t.group(), Some("family:cron-job"));
    let o = &t.overrides().unwrap().container_overrides()[0];
    assert_eq!(o.command(), ["sleep"], "the target's Input carries RunTask's overrides");
    assert!(started_by(&ecs, "switched-off").await.is_empty(), "a disabled rule does not fire");
    for arn in started_by(&ecs, "every-minute").await {
        ecs.stop_task().task(arn).send().await.unwrap();
    }
}

#[tokio::test]
async fn a_firing_missed_while_the_server_was_down_runs_once() {
    let (_c, mut b) = berth_with_agent(&[]).await;
    let ecs = b.ecs().await;
    wait_instances(&ecs, "default", 1).await;
    register(&ecs, "catch-up").await;
    let c = events(&b).await;
    c.put_rule().name("catch-up").schedule_expression("rate(1 minute)").send().await.unwrap();
    c.put_targets().rule("catch-up").targets(ecs_target(&b, "job", "catch-up")).send().await.unwrap();

    // Down for two periods: two firings are missed.
    b.kill9();
    tokio::time::sleep(Duration::from_secs(130)).await;
    b.restart().await;
    let ecs = b.ecs().await;
    let arns = wait_started(&ecs, "catch-up", 1, Duration::from_secs(40)).await;
    assert_eq!(arns.len(), 1);
    // The missed firings were one firing: nothing more comes before the next period.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(started_by(&ecs, "catch-up").await.len(), 1, "a missed firing runs once, not once per period");
    for arn in arns {
        ecs.stop_task().task(arn).send().await.unwrap();
    }
}
