//! The task runner against the real Docker engine, with the `simplehttp` test image.
//!
//! Each test runs tasks under its own container-instance ARN (so tests never see each
//! other's containers), waits for reports with deadlines, and removes what it created.
//! Definitions are written as ECS JSON and given to the runner unvalidated, so that health
//! checks can use one-second intervals that ECS's registration rules would refuse.

use std::time::{Duration, Instant};

use agent::awsvpc::PAUSE_CONTAINER_NAME;
use agent::docker::labels;
use agent::runner::{PullBehavior, ESSENTIAL_EXITED_REASON, OOM_REASON, PAUSE_EXITED_REASON};
use agent_protocol::{
    ContainerStatus, DesiredStatus, HealthStatus, IngressRule, IpProtocol, StopCode, TaskAssignment, TaskReport,
    TaskStatus,
};
use model::ecs::shapes::TaskOverride;
use serde_json::{json, Value};

mod support;
use support::*;

#[tokio::test]
async fn serves_on_a_dynamic_host_port_and_stops_on_request() {
    let instance = Instance::new();
    // `default` pull behaviour: the pull fails (no registry here) and the cached image is used.
    let runner = instance.runner(PullBehavior::Default).await;
    let web = with(
        container("web", &["serve"]),
        json!({
            "portMappings": [{ "containerPort": 8080 }],
            "environment": [{ "name": "GREETING", "value": "from-definition" }],
            "dockerLabels": { "team": "berth" },
        }),
    );
    let mut a = assignment("web", json!({}), vec![web]);
    a.overrides = Some(
        serde_json::from_value::<TaskOverride>(json!({
            "containerOverrides": [{ "name": "web", "environment": [{ "name": "GREETING", "value": "overridden" }] }]
        }))
        .unwrap(),
    );
    let mut task = Running::start(&runner, a);

    let pending = task.until("PENDING", |r| r.last_status == TaskStatus::Pending).await;
    assert_eq!(ctr(&pending, "web").last_status, ContainerStatus::Pending);
    let running = task.until("RUNNING", |r| r.last_status == TaskStatus::Running).await;
    let web = ctr(&running, "web");
    assert_eq!(web.last_status, ContainerStatus::Running);
    assert!(running.pull_started_at.is_some() && running.pull_stopped_at.is_some() && running.started_at.is_some());
    assert!(web.image_digest.as_deref().is_some_and(|d| d.starts_with("sha256:")), "{web:?}");
    let binding = &web.network_bindings[0];
    assert_eq!((binding.bind_ip.as_deref(), binding.container_port), (Some("0.0.0.0"), Some(8080)));
    let port = binding.host_port.expect("host port");
    assert!(port > 0);

    let (_, body) = get(&format!("http://127.0.0.1:{port}/")).await;
    assert!(body.contains("greeting=overridden"), "{body}");
    let id = web.runtime_id.clone().expect("runtime id");
    let name = docker_inspect(&id, "{{.Name}}");
    assert!(name.starts_with("/ecs-web-1-web-"), "{name}");
    let label = |k: &str| docker_inspect(&id, &format!("{{{{index .Config.Labels \"{k}\"}}}}"));
    assert_eq!(label(labels::TASK_ARN), task.arn());
    assert_eq!(label(labels::INSTANCE), instance.arn);
    assert_eq!(label(labels::CONTAINER_NAME), "web");
    assert_eq!(label("team"), "berth");

    task.stop("Scaling down");
    task.until("STOPPING", |r| r.last_status == TaskStatus::Stopping).await;
    let stopped = task.stopped().await;
    assert_eq!(stopped.stop_code, Some(StopCode::UserInitiated));
    assert_eq!(stopped.stopped_reason.as_deref(), Some("Scaling down"));
    assert!(stopped.execution_stopped_at.is_some());
    let web = ctr(&stopped, "web");
    assert_eq!((web.last_status, web.exit_code), (ContainerStatus::Stopped, Some(0)), "SIGTERM ends simplehttp with 0");
    // ECS keeps a stopped task's containers until cleanup.
    assert_eq!(task_container_count(&task.arn()), 1);
    runner.remove_task_containers(&task.arn()).await.unwrap();
    assert_eq!(task_container_count(&task.arn()), 0);
}

#[tokio::test]
async fn stop_timeout_ends_in_sigkill_for_a_container_that_ignores_sigterm() {
    let instance = Instance::new();
    let runner = instance.runner(PullBehavior::PreferCached).await;
    let a = assignment(
        "stops",
        json!({}),
        vec![
            with(container("stubborn", &["sleep", "--ignore-sigterm"]), json!({ "stopTimeout": 1 })),
            container("polite", &["sleep"]),
        ],
    );
    let mut task = Running::start(&runner, a);
    let running = task.until("RUNNING", |r| r.last_status == TaskStatus::Running).await;
    // Both processes must have their SIGTERM disposition in place before the stop, or the
    // polite one (PID 1 of its container) would ignore the signal and be killed too.
    for name in ["stubborn", "polite"] {
        wait_for_output(ctr(&running, name).runtime_id.as_deref().unwrap(), "sleeping").await;
    }
    let asked = Instant::now();
    task.stop("test");
    let stopped = task.stopped().await;
    assert!(asked.elapsed() >= Duration::from_secs(1), "the grace period was not given");
    assert_eq!(ctr(&stopped, "polite").exit_code, Some(0));
    assert_eq!(ctr(&stopped, "stubborn").exit_code, Some(137), "SIGKILL after stopTimeout");
}

#[tokio::test]
async fn an_essential_container_exit_stops_the_others() {
    let instance = Instance::new();
    let runner = instance.runner(PullBehavior::PreferCached).await;
    let a = assignment(
        "exits",
        json!({}),
        vec![
            container("job", &["exit", "3", "--after-ms", "1500"]),
            with(container("helper", &["exit", "0"]), json!({ "essential": false })),
            with(container("side", &["sleep"]), json!({ "essential": false })),
        ],
    );
    let mut task = Running::start(&runner, a);
    // A non-essential container's exit leaves the task running.
    task.until("helper exited while the task runs", |r| {
        r.last_status == TaskStatus::Running && ctr(r, "helper").exit_code == Some(0)
    })
    .await;
    let stopped = task.stopped().await;
    assert_eq!(stopped.stop_code, Some(StopCode::EssentialContainerExited));
    assert_eq!(stopped.stopped_reason.as_deref(), Some(ESSENTIAL_EXITED_REASON));
    assert_eq!(ctr(&stopped, "job").exit_code, Some(3));
    assert_eq!(ctr(&stopped, "side").exit_code, Some(0), "stopped by the runner with SIGTERM");
    assert!(task.seen.iter().any(|r| r.last_status == TaskStatus::Stopping));
}

#[tokio::test]
async fn pull_failures_stop_the_task_as_failed_to_start() {
    let instance = Instance::new();
    // `always`: the image is cached, but the pull fails, and that is final.
    let always = instance.runner(PullBehavior::Always).await;
    let mut a = Running::start(&always, assignment("pulls", json!({}), vec![container("app", &["sleep"])]));
    // `default`: the pull fails and there is no cached image to fall back to.
    let default = instance.runner(PullBehavior::Default).await;
    let missing = json!({ "name": "app", "image": format!("berth-test/missing:{}", hex()), "essential": true });
    let mut b = Running::start(&default, assignment("pulls", json!({}), vec![missing]));
    for task in [&mut a, &mut b] {
        let stopped = task.stopped().await;
        assert_eq!(stopped.stop_code, Some(StopCode::TaskFailedToStart));
        let reason = stopped.stopped_reason.clone().unwrap_or_default();
        assert!(reason.starts_with("CannotPullContainerError:"), "{reason}");
        let app = ctr(&stopped, "app");
        assert!(app.reason.as_deref().unwrap_or_default().starts_with("CannotPullContainerError:"), "{app:?}");
        assert_eq!((app.last_status, app.runtime_id.as_deref()), (ContainerStatus::Stopped, None));
        assert!(stopped.pull_started_at.is_some() && stopped.pull_stopped_at.is_some());
        assert_eq!(task_container_count(&task.arn()), 0);
    }
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_reported_out_of_memory() {
    let instance = Instance::new();
    let runner = instance.runner(PullBehavior::PreferCached).await;
    let hog = with(container("hog", &["oom"]), json!({ "memory": 8, "linuxParameters": { "maxSwap": 0 } }));
    let mut task = Running::start(&runner, assignment("oom", json!({}), vec![hog]));
    let stopped = task.stopped().await;
    let hog = ctr(&stopped, "hog");
    assert_eq!(hog.reason.as_deref(), Some(OOM_REASON));
    assert_eq!(hog.exit_code, Some(137));
    assert_eq!(stopped.stop_code, Some(StopCode::EssentialContainerExited));
}

#[tokio::test]
async fn depends_on_orders_start_by_success_start_and_health() {
    let instance = Instance::new();
    let runner = instance.runner(PullBehavior::PreferCached).await;
    let health = json!({ "command": ["CMD", "/simplehttp", "check"], "interval": 1, "timeout": 2, "retries": 2 });
    let a = assignment(
        "deps",
        json!({}),
        vec![
            with(container("init", &["exit", "0", "--after-ms", "300"]), json!({ "essential": false })),
            with(container("db", &["serve"]), json!({ "healthCheck": health })),
            with(
                container("app", &["sleep"]),
                json!({ "dependsOn": [
                    { "containerName": "init", "condition": "SUCCESS" },
                    { "containerName": "db", "condition": "HEALTHY" },
                ]}),
            ),
            with(
                container("proxy", &["sleep"]),
                json!({ "dependsOn": [{ "containerName": "db", "condition": "START" }] }),
            ),
        ],
    );
    let mut task = Running::start(&runner, a);
    let running = task.until("RUNNING", |r| r.last_status == TaskStatus::Running).await;
    assert_eq!(ctr(&running, "app").last_status, ContainerStatus::Running);
    for r in &task.seen {
        if ctr(r, "app").last_status != ContainerStatus::Pending {
            assert_eq!(ctr(r, "init").exit_code, Some(0), "app ran before init succeeded: {r:#?}");
            assert_eq!(ctr(r, "db").health_status, HealthStatus::Healthy, "app ran before db was healthy: {r:#?}");
        }
        if ctr(r, "proxy").last_status != ContainerStatus::Pending {
            assert_ne!(ctr(r, "db").last_status, ContainerStatus::Pending, "proxy ran before db started: {r:#?}");
        }
        if r.last_status == TaskStatus::Pending {
            assert!(r.containers.iter().any(|c| c.last_status == ContainerStatus::Pending));
        }
    }
    // The engine's own clock agrees: app started after init finished.
    let at = |name: &str, field: &str| {
        let text = docker_inspect(ctr(&running, name).runtime_id.as_deref().unwrap(), field);
        time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).unwrap()
    };
    let (init_done, app_started) = (at("init", "{{.State.FinishedAt}}"), at("app", "{{.State.StartedAt}}"));
    assert!(app_started > init_done, "app started {app_started}, init finished {init_done}");
    assert_eq!(running.health_status, HealthStatus::Healthy, "db is the only essential container with a check");

    task.stop("test");
    let stopped = task.stopped().await;
    assert_eq!(stopped.stop_code, Some(StopCode::UserInitiated));
    // Stop order is the reverse of dependencies: app and proxy stop before db.
    let db_stopped = task.seen.iter().position(|r| ctr(r, "db").last_status == ContainerStatus::Stopped).unwrap();
    for dependent in ["app", "proxy"] {
        let s = task.seen.iter().position(|r| ctr(r, dependent).last_status == ContainerStatus::Stopped).unwrap();
        assert!(s <= db_stopped, "{dependent} stopped after db");
    }
}

#[tokio::test]
async fn an_unmet_success_dependency_fails_the_task() {
    let instance = Instance::new();
    let runner = instance.runner(PullBehavior::PreferCached).await;
    let a = assignment(
        "unmet",
        json!({}),
        vec![
            with(container("init", &["exit", "1"]), json!({ "essential": false })),
            with(
                container("app", &["sleep"]),
                json!({ "dependsOn": [{ "containerName": "init", "condition": "SUCCESS" }] }),
            ),
        ],
    );
    let mut task = Running::start(&runner, a);
    let stopped = task.stopped().await;
    assert_eq!(stopped.stop_code, Some(StopCode::TaskFailedToStart));
    let reason = stopped.stopped_reason.clone().unwrap_or_default();
    assert!(reason.contains("SUCCESS") && reason.contains("exited with code 1"), "{reason}");
    let app = ctr(&stopped, "app");
    assert_eq!((app.last_status, app.runtime_id.as_deref()), (ContainerStatus::Stopped, None), "app never created");
    assert_eq!(ctr(&stopped, "init").exit_code, Some(1));
}

#[tokio::test]
async fn health_checks_are_reported_per_container_and_for_the_task() {
    let instance = Instance::new();
    let runner = instance.runner(PullBehavior::PreferCached).await;
    let good = json!({ "command": ["CMD", "/simplehttp", "check"], "interval": 1, "retries": 2 });
    let bad = json!({ "command": ["CMD", "/simplehttp", "exit", "1"], "interval": 1, "retries": 1 });
    let healthy =
        assignment("healthy", json!({}), vec![with(container("web", &["serve"]), json!({ "healthCheck": good }))]);
    let sick = assignment(
        "sick",
        json!({}),
        vec![
            with(container("web", &["serve"]), json!({ "healthCheck": good })),
            with(container("worker", &["sleep"]), json!({ "healthCheck": bad })),
            // Without a health check, a container does not count towards the task's health.
            container("plain", &["sleep"]),
        ],
    );
    let mut a = Running::start(&runner, healthy);
    let mut b = Running::start(&runner, sick);
    let r = a.until("task HEALTHY", |r| r.health_status == HealthStatus::Healthy).await;
    assert_eq!(ctr(&r, "web").health_status, HealthStatus::Healthy);
    let r = b
        .until("worker UNHEALTHY and web HEALTHY", |r| {
            ctr(r, "worker").health_status == HealthStatus::Unhealthy
                && ctr(r, "web").health_status == HealthStatus::Healthy
        })
        .await;
    assert_eq!(r.health_status, HealthStatus::Unhealthy);
    assert_eq!(ctr(&r, "plain").health_status, HealthStatus::Unknown);
    assert!(b.seen.iter().all(|r| r.health_status != HealthStatus::Healthy), "never healthy with worker unhealthy");
    a.stop("test");
    b.stop("test");
    a.stopped().await;
    b.stopped().await;
}

#[tokio::test]
async fn a_restarted_agent_adopts_its_containers() {
    let instance = Instance::new();
    let a = assignment(
        "adopt",
        json!({}),
        vec![with(container("web", &["serve"]), json!({ "portMappings": [{ "containerPort": 8080 }] }))],
    );
    let arn = a.task_arn.clone();

    let first = instance.runner(PullBehavior::PreferCached).await;
    let mut task = Running::start(&first, a.clone());
    let running = task.until("RUNNING", |r| r.last_status == TaskStatus::Running).await;
    let id = ctr(&running, "web").runtime_id.clone().unwrap();
    // The agent dies: its task loop ends without stopping anything.
    task.handle.abort();
    drop(first);

    let second = instance.runner(PullBehavior::PreferCached).await;
    assert_eq!(second.discover().await.unwrap(), vec![arn.clone()]);
    let mut task = Running::start(&second, a.clone());
    let adopted = task.until("RUNNING", |r| r.last_status == TaskStatus::Running).await;
    let web = ctr(&adopted, "web");
    assert_eq!(web.runtime_id.as_deref(), Some(id.as_str()), "the same container");
    assert_eq!(web.network_bindings, ctr(&running, "web").network_bindings);
    assert_eq!(adopted.started_at, running.started_at, "the task keeps its real start time");
    assert_eq!(task_container_count(&arn), 1, "no duplicate container");
    assert!(task.seen.iter().all(|r| r.last_status != TaskStatus::Pending), "an adopted running task is not PENDING");
    task.handle.abort();
    drop(second);

    // While no agent runs, the container exits; the next agent reports the exit as it was.
    let out = std::process::Command::new("docker").args(["stop", "-t", "30", &id]).output().unwrap();
    assert!(out.status.success());
    let third = instance.runner(PullBehavior::PreferCached).await;
    let mut task = Running::start(&third, a);
    let stopped = task.stopped().await;
    let web = ctr(&stopped, "web");
    assert_eq!((web.runtime_id.as_deref(), web.exit_code), (Some(id.as_str()), Some(0)));
    assert_eq!(stopped.stop_code, Some(StopCode::EssentialContainerExited));
    assert_eq!(task_container_count(&arn), 1);
}

#[tokio::test]
async fn volumes_are_shared_mounted_and_cleaned_up() {
    let instance = Instance::new();
    let runner = instance.runner(PullBehavior::PreferCached).await;
    let host_dir = tempfile::tempdir().unwrap();
    let mounts = |ro: bool| {
        json!([
            { "sourceVolume": "scratch", "containerPath": "/data", "readOnly": ro },
            { "sourceVolume": "host", "containerPath": "/host" },
        ])
    };
    let a = assignment(
        "volumes",
        json!({ "volumes": [
            { "name": "scratch" },
            { "name": "host", "host": { "sourcePath": host_dir.path().to_str().unwrap() } },
        ]}),
        vec![
            with(
                container("writer", &["touch", "/data/hello"]),
                json!({ "essential": false, "mountPoints": mounts(false) }),
            ),
            with(
                container("host-writer", &["touch", "/host/from-container"]),
                json!({ "essential": false, "mountPoints": mounts(false) }),
            ),
            with(
                container("reader", &["serve"]),
                json!({
                    "mountPoints": mounts(true),
                    "portMappings": [{ "containerPort": 8080 }],
                    "dependsOn": [{ "containerName": "writer", "condition": "SUCCESS" }],
                }),
            ),
        ],
    );
    let mut task = Running::start(&runner, a);
    let running = task.until("RUNNING", |r| r.last_status == TaskStatus::Running).await;
    let port = ctr(&running, "reader").network_bindings[0].host_port.unwrap();
    assert_eq!(get(&format!("http://127.0.0.1:{port}/file/data/hello")).await, (200, "touched\n".to_string()));
    task.until("host-writer done", |r| ctr(r, "host-writer").exit_code == Some(0)).await;
    assert!(host_dir.path().join("from-container").exists(), "the host bind mount is writable");
    task.stop("test");
    task.stopped().await;

    let volume_filter = format!("label={}={}", labels::TASK_ARN, task.arn());
    let volumes = || {
        let out = std::process::Command::new("docker")
            .args(["volume", "ls", "-q", "--filter", &volume_filter])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(volumes(), 1, "the task's scratch volume");
    runner.remove_task_containers(&task.arn()).await.unwrap();
    assert_eq!((task_container_count(&task.arn()), volumes()), (0, 0));
}

#[tokio::test]
async fn the_restart_policy_restarts_unless_the_exit_code_is_ignored() {
    let instance = Instance::new();
    let runner = instance.runner(PullBehavior::PreferCached).await;
    // restartAttemptPeriod 0 (ECS's minimum is 60) lets a container that ran briefly restart.
    let policy = json!({ "enabled": true, "ignoredExitCodes": [0], "restartAttemptPeriod": 0 });
    let flaky = with(container("flaky", &["exit", "3", "--after-ms", "300"]), json!({ "restartPolicy": policy }));
    let done = with(container("done", &["exit", "0", "--after-ms", "300"]), json!({ "restartPolicy": policy }));
    let mut restarting = Running::start(&runner, assignment("restarts", json!({}), vec![flaky]));
    let mut finishing = Running::start(&runner, assignment("restarts", json!({}), vec![done]));

    let running = restarting.until("RUNNING", |r| r.last_status == TaskStatus::Running).await;
    let id = ctr(&running, "flaky").runtime_id.clone().unwrap();
    let first_start = docker_inspect(&id, "{{.State.StartedAt}}");
    let deadline = Instant::now() + DEADLINE;
    // Docker's start time of the same container moves on: it was started again in place.
    while docker_inspect(&id, "{{.State.StartedAt}}") == first_start {
        assert!(Instant::now() < deadline, "flaky was not restarted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(restarting
        .seen
        .iter()
        .all(|r| r.last_status == TaskStatus::Pending || r.last_status == TaskStatus::Running));

    let stopped = finishing.stopped().await;
    assert_eq!(stopped.stop_code, Some(StopCode::EssentialContainerExited), "exit code 0 is ignored: no restart");
    assert_eq!(ctr(&stopped, "done").exit_code, Some(0));

    restarting.stop("test");
    let stopped = restarting.stopped().await;
    assert_eq!(stopped.stop_code, Some(StopCode::UserInitiated));
    assert_eq!(ctr(&stopped, "flaky").runtime_id.as_deref(), Some(id.as_str()));
    assert_eq!(task_container_count(&restarting.arn()), 1);
}

#[tokio::test]
async fn a_task_stopped_before_it_starts_never_creates_containers() {
    let instance = Instance::new();
    let runner = instance.runner(PullBehavior::PreferCached).await;
    let mut a = assignment("early", json!({}), vec![container("app", &["sleep"])]);
    a.desired_status = DesiredStatus::Stopped;
    a.stop_reason = Some("changed my mind".into());
    let mut task = Running::start(&runner, a);
    let stopped = task.stopped().await;
    assert_eq!(task.seen.len(), 1, "straight to STOPPED: {:#?}", task.seen);
    assert_eq!(stopped.stop_code, Some(StopCode::UserInitiated));
    assert_eq!(stopped.stopped_reason.as_deref(), Some("changed my mind"));
    assert_eq!(ctr(&stopped, "app").last_status, ContainerStatus::Stopped);
    assert_eq!(task_container_count(&task.arn()), 0);
}

#[tokio::test]
async fn create_start_and_engine_failures_end_as_stopped() {
    let instance = Instance::new();
    let runner = instance.runner(PullBehavior::PreferCached).await;
    let bad_mount = with(
        container("app", &["sleep"]),
        json!({ "mountPoints": [{ "sourceVolume": "v", "containerPath": "relative" }] }),
    );
    let mut create =
        Running::start(&runner, assignment("fails", json!({ "volumes": [{ "name": "v" }] }), vec![bad_mount]));
    let no_binary = with(container("app", &[]), json!({ "entryPoint": ["/no-such-binary"] }));
    let mut start = Running::start(&runner, assignment("fails", json!({}), vec![no_binary]));
    let mut removed = Running::start(&runner, assignment("fails", json!({}), vec![container("app", &["sleep"])]));

    for (task, prefix) in [(&mut create, "CannotCreateContainerError:"), (&mut start, "CannotStartContainerError:")] {
        let stopped = task.stopped().await;
        assert_eq!(stopped.stop_code, Some(StopCode::TaskFailedToStart));
        assert!(stopped.stopped_reason.as_deref().unwrap_or_default().starts_with(prefix), "{stopped:#?}");
        assert!(ctr(&stopped, "app").reason.as_deref().unwrap_or_default().starts_with(prefix), "{stopped:#?}");
    }

    // Someone removes the container behind the agent's back: the task ends, it does not hang.
    let running = removed.until("RUNNING", |r| r.last_status == TaskStatus::Running).await;
    let id = ctr(&running, "app").runtime_id.clone().unwrap();
    let out = std::process::Command::new("docker").args(["rm", "-f", &id]).output().unwrap();
    assert!(out.status.success());
    let stopped = removed.stopped().await;
    assert_eq!(stopped.stop_code, Some(StopCode::EssentialContainerExited));
    assert!(
        ctr(&stopped, "app").reason.as_deref().unwrap_or_default().starts_with("DockerStateError:"),
        "{stopped:#?}"
    );
}

#[tokio::test]
async fn container_settings_reach_docker_in_every_network_mode() {
    let instance = Instance::new();
    let runner = instance.runner(PullBehavior::PreferCached).await;
    let tuned = with(
        container("tuned", &["sleep"]),
        json!({
            "cpu": 256, "memory": 64, "memoryReservation": 32,
            "ulimits": [{ "name": "nofile", "softLimit": 1024, "hardLimit": 2048 }],
            "readonlyRootFilesystem": true,
            "linuxParameters": { "initProcessEnabled": true, "capabilities": { "add": ["NET_ADMIN"], "drop": ["MKNOD"] } },
            "extraHosts": [{ "hostname": "db.local", "ipAddress": "127.0.0.2" }],
            "dnsServers": ["127.0.0.1"],
            "hostname": "tuned-host", "user": "1000", "workingDirectory": "/tmp",
            "logConfiguration": { "logDriver": "json-file", "options": { "max-size": "1m" } },
            "stopTimeout": 7,
        }),
    );
    let linked = with(container("linked", &["sleep"]), json!({ "links": ["tuned:alias"] }));
    let mut bridge = Running::start(&runner, assignment("settings", json!({}), vec![tuned, linked]));
    let port = 20000 + rand::random::<u16>() % 10000;
    let host_web = with(
        container("web", &["serve", "--port", &port.to_string()]),
        json!({ "portMappings": [{ "containerPort": port }] }),
    );
    let mut host = Running::start(&runner, assignment("settings", json!({ "networkMode": "host" }), vec![host_web]));
    let none_web = with(container("web", &["serve"]), json!({ "portMappings": [{ "containerPort": 8080 }] }));
    let mut none = Running::start(&runner, assignment("settings", json!({ "networkMode": "none" }), vec![none_web]));

    let r = bridge.until("RUNNING", |r| r.last_status == TaskStatus::Running).await;
    let inspect = |id: &str| -> Value { serde_json::from_str(&docker_inspect(id, "{{json .}}")).unwrap() };
    let c = inspect(ctr(&r, "tuned").runtime_id.as_deref().unwrap());
    let h = &c["HostConfig"];
    assert_eq!((h["CpuShares"].as_i64(), h["Memory"].as_i64()), (Some(256), Some(64 << 20)));
    assert_eq!(h["MemoryReservation"].as_i64(), Some(32 << 20));
    assert_eq!(h["Ulimits"], json!([{ "Name": "nofile", "Soft": 1024, "Hard": 2048 }]));
    assert_eq!((h["ReadonlyRootfs"].as_bool(), h["Init"].as_bool()), (Some(true), Some(true)));
    assert_eq!((h["CapAdd"].clone(), h["CapDrop"].clone()), (json!(["NET_ADMIN"]), json!(["MKNOD"])));
    assert_eq!((h["ExtraHosts"].clone(), h["Dns"].clone()), (json!(["db.local:127.0.0.2"]), json!(["127.0.0.1"])));
    // The daemon adds its own default log options; ours must be among them.
    assert_eq!(
        (h["LogConfig"]["Type"].as_str(), h["LogConfig"]["Config"]["max-size"].as_str()),
        (Some("json-file"), Some("1m"))
    );
    assert_eq!(h["NetworkMode"], "bridge");
    let config = &c["Config"];
    assert_eq!((config["Hostname"].as_str(), config["User"].as_str()), (Some("tuned-host"), Some("1000")));
    assert_eq!((config["WorkingDir"].as_str(), config["StopTimeout"].as_i64()), (Some("/tmp"), Some(7)));
    let links = inspect(ctr(&r, "linked").runtime_id.as_deref().unwrap())["HostConfig"]["Links"].clone();
    assert!(links[0].as_str().unwrap_or_default().ends_with("/alias"), "{links}");

    let r = host.until("RUNNING", |r| r.last_status == TaskStatus::Running).await;
    let b = &ctr(&r, "web").network_bindings;
    assert_eq!((b.len(), b[0].host_port, b[0].container_port), (1, Some(i32::from(port)), Some(i32::from(port))));
    assert_eq!(get(&format!("http://127.0.0.1:{port}/health")).await.0, 200);

    let r = none.until("RUNNING", |r| r.last_status == TaskStatus::Running).await;
    assert!(ctr(&r, "web").network_bindings.is_empty());

    for task in [&mut bridge, &mut host, &mut none] {
        task.stop("test");
        task.stopped().await;
    }
}

#[tokio::test]
async fn a_dependency_that_misses_its_start_timeout_fails_the_task() {
    let instance = Instance::new();
    let runner = instance.runner(PullBehavior::PreferCached).await;
    let never_healthy = json!({ "command": ["CMD", "/simplehttp", "exit", "1"], "interval": 1, "retries": 10 });
    let a = assignment(
        "timeout",
        json!({}),
        vec![
            with(container("db", &["sleep"]), json!({ "healthCheck": never_healthy, "startTimeout": 1 })),
            with(
                container("app", &["sleep"]),
                json!({ "dependsOn": [{ "containerName": "db", "condition": "HEALTHY" }] }),
            ),
        ],
    );
    let mut task = Running::start(&runner, a);
    let stopped = task.stopped().await;
    assert_eq!(stopped.stop_code, Some(StopCode::TaskFailedToStart));
    let reason = stopped.stopped_reason.clone().unwrap_or_default();
    assert!(reason.contains("HEALTHY") && reason.contains("start timeout of 1s"), "{reason}");
    assert_eq!(ctr(&stopped, "app").runtime_id, None);
    assert_eq!(ctr(&stopped, "db").exit_code, Some(0), "db was stopped with SIGTERM");
}

// --- awsvpc ---------------------------------------------------------------------------

/// An awsvpc task on `subnet` at address `.host`: `web` serves on 8080, and `sidecar` is
/// healthy only while it reaches `web` on localhost (its health check GETs
/// http://127.0.0.1:8080/health).
fn awsvpc_task(subnet: &Subnet, host: u8) -> TaskAssignment {
    let web =
        with(container("web", &["serve", "--port", "8080"]), json!({ "portMappings": [{ "containerPort": 8080 }] }));
    let check = json!({ "command": ["CMD", "/simplehttp", "check", "--port", "8080"], "interval": 1, "retries": 30 });
    let sidecar = with(container("sidecar", &["sleep"]), json!({ "healthCheck": check }));
    let mut a = assignment("awsvpc", json!({ "networkMode": "awsvpc" }), vec![web, sidecar]);
    a.network = Some(subnet.attachment(host));
    a
}

/// Ids of the task's pause containers, running or not.
fn pause_containers(arn: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={}={arn}", labels::TASK_ARN)])
        .args(["--filter", &format!("label={}={}", labels::CONTAINER_NAME, PAUSE_CONTAINER_NAME)])
        .arg("--no-trunc")
        .output()
        .expect("docker");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn healthy(r: &TaskReport) -> bool {
    r.last_status == TaskStatus::Running && r.health_status == HealthStatus::Healthy
}

#[tokio::test]
async fn an_awsvpc_task_has_its_own_address_which_its_containers_share() {
    let subnet = Subnet::new();
    let instance = Instance::new();
    let runner = instance.runner(PullBehavior::PreferCached).await;
    let mut task = Running::start(&runner, awsvpc_task(&subnet, 7));
    let arn = task.arn();
    // The sidecar turns healthy only by reaching web on localhost.
    let r = task.until("RUNNING and HEALTHY", healthy).await;
    let names: Vec<&str> = r.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["web", "sidecar"], "the pause container is not reported");
    assert!(r.containers.iter().all(|c| c.network_bindings.is_empty()), "no bindings under awsvpc, as on ECS");

    // The host reaches the task's address directly, on the container port.
    let (status, _) = get(&format!("http://{}:8080/health", subnet.ip(7))).await;
    assert_eq!(status, 200);
    let pause = pause_containers(&arn);
    assert_eq!(pause.len(), 1);
    let endpoint = format!("{{{{ (index .NetworkSettings.Networks \"{}\").IPAddress }}}}", subnet.network);
    assert_eq!(docker_inspect(&pause[0], &endpoint), subnet.ip(7).to_string());
    // The MAC address inside the namespace, not only what Docker recorded.
    let pid = docker_inspect(&pause[0], "{{.State.Pid}}");
    let mac = std::fs::read_to_string(format!("/proc/{pid}/root/sys/class/net/eth0/address")).unwrap();
    assert_eq!(mac.trim(), subnet.mac(7));
    assert_eq!(docker_inspect(&pause[0], "{{len .HostConfig.PortBindings}}"), "0", "no published ports");
    for c in &r.containers {
        let mode = docker_inspect(c.runtime_id.as_deref().unwrap(), "{{.HostConfig.NetworkMode}}");
        assert_eq!(mode, format!("container:{}", pause[0]), "{} joins the pause container's namespace", c.name);
    }

    task.stop("test");
    let stopped = task.stopped().await;
    assert!(stopped.containers.iter().all(|c| c.last_status == ContainerStatus::Stopped));
    assert!(pause_containers(&arn).is_empty(), "the pause container is removed");
    assert_eq!(task_container_count(&arn), 2, "the task's own containers stay, as on ECS");
    assert_eq!(subnet.networks().len(), 1, "the subnet's network stays for other tasks");

    // The address is free again: another task gets it.
    let mut again = Running::start(&runner, awsvpc_task(&subnet, 7));
    again.until("RUNNING and HEALTHY", healthy).await;
    let (status, _) = get(&format!("http://{}:8080/health", subnet.ip(7))).await;
    assert_eq!(status, 200);
    again.stop("test");
    again.stopped().await;
    assert!(pause_containers(&again.arn()).is_empty());
}

#[tokio::test]
async fn a_restarted_agent_adopts_an_awsvpc_task_and_its_pause_container() {
    let subnet = Subnet::new();
    let instance = Instance::new();
    let a = awsvpc_task(&subnet, 9);
    let arn = a.task_arn.clone();
    let first = instance.runner(PullBehavior::PreferCached).await;
    let mut task = Running::start(&first, a.clone());
    let running = task.until("RUNNING and HEALTHY", healthy).await;
    let pause = pause_containers(&arn);
    // The agent dies: its task loop ends without stopping anything.
    task.handle.abort();
    drop(first);

    let second = instance.runner(PullBehavior::PreferCached).await;
    assert_eq!(second.discover().await.unwrap(), vec![arn.clone()]);
    let mut task = Running::start(&second, a);
    let adopted = task.until("RUNNING and HEALTHY", healthy).await;
    assert_eq!(pause_containers(&arn), pause, "the same pause container, and no second one");
    assert_eq!(task_container_count(&arn), 3);
    for (before, after) in running.containers.iter().zip(&adopted.containers) {
        assert_eq!(before.runtime_id, after.runtime_id, "{} is adopted", before.name);
    }
    let (status, _) = get(&format!("http://{}:8080/health", subnet.ip(9))).await;
    assert_eq!(status, 200);

    // The task's network namespace is gone with its pause container: the task stops.
    let out = std::process::Command::new("docker").args(["kill", &pause[0]]).output().unwrap();
    assert!(out.status.success());
    let stopped = task.stopped().await;
    assert_eq!(stopped.stop_code, Some(StopCode::EssentialContainerExited));
    assert_eq!(stopped.stopped_reason.as_deref(), Some(PAUSE_EXITED_REASON));
    assert!(pause_containers(&arn).is_empty());
}

#[tokio::test]
async fn awsvpc_tasks_starting_together_on_a_new_subnet_share_one_network() {
    let subnet = Subnet::new();
    let instance = Instance::new();
    subnet.remove_network();
    // Two agents on one engine, each with a task on the subnet whose network is missing.
    let runners =
        [instance.runner(PullBehavior::PreferCached).await, instance.runner(PullBehavior::PreferCached).await];
    let mut tasks: Vec<Running> =
        [10, 11].iter().zip(&runners).map(|(host, r)| Running::start(r, awsvpc_task(&subnet, *host))).collect();
    for t in &mut tasks {
        t.until("RUNNING and HEALTHY", healthy).await;
    }
    let networks = subnet.networks();
    assert_eq!(networks.len(), 1, "one network for the subnet");
    let ipam = "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} {{.Driver}}";
    let settings = std::process::Command::new("docker").args(["network", "inspect", "-f", ipam, &networks[0]]).output();
    let settings = String::from_utf8_lossy(&settings.unwrap().stdout).trim().to_string();
    assert_eq!(settings, format!("{} {} bridge", subnet.cidr(), subnet.ip(1)));
    for host in [10, 11] {
        assert_eq!(get(&format!("http://{}:8080/health", subnet.ip(host))).await.0, 200);
    }
    for t in &mut tasks {
        t.stop("test");
        t.stopped().await;
    }
}

#[tokio::test]
async fn a_conflicting_docker_network_fails_the_task_with_what_to_do() {
    let subnet = Subnet::new();
    let instance = Instance::new();
    let runner = instance.runner(PullBehavior::PreferCached).await;

    // A network of the wanted name that stands for another subnet.
    let mut named = awsvpc_task(&subnet, 7);
    named.network.as_mut().unwrap().subnet_id = "subnet-someoneelse".into();
    // A new subnet whose block overlaps a Docker network of the user's own (Berth removes
    // only its own unused subnet networks, so this one stays in the way).
    let theirs = UserNetwork::new();
    let mut overlapping = awsvpc_task(&subnet, 7);
    let n = overlapping.network.as_mut().unwrap();
    n.subnet_id = format!("subnet-{}", hex());
    n.docker_network = agent_protocol::docker_network_name(&n.subnet_id);
    n.subnet_cidr = format!("10.214.{}.0/25", theirs.third_octet);
    n.gateway = std::net::Ipv4Addr::new(10, 214, theirs.third_octet, 1);
    n.private_ipv4_address = std::net::Ipv4Addr::new(10, 214, theirs.third_octet, 7);
    let overlapping_network = n.docker_network.clone();
    // No attachment at all (a control plane that does not allocate addresses).
    let mut unattached = awsvpc_task(&subnet, 7);
    unattached.network = None;

    for (a, expected) in [
        (
            named,
            vec![
                "ResourceInitializationError: the Docker network",
                "exists but does not stand for subnet subnet-someoneelse",
                "docker network rm",
            ],
        ),
        (
            overlapping,
            vec![
                "ResourceInitializationError: cannot create",
                "overlaps the Docker network",
                theirs.name.as_str(),
                "remove that network",
            ],
        ),
        (unattached, vec!["CannotCreateContainerError: network mode awsvpc without a network attachment"]),
    ] {
        let mut task = Running::start(&runner, a);
        let stopped = task.stopped().await;
        assert_eq!(stopped.stop_code, Some(StopCode::TaskFailedToStart));
        let reason = stopped.stopped_reason.clone().unwrap_or_default();
        for part in expected {
            assert!(reason.contains(part), "{reason:?} should contain {part:?}");
        }
        assert_eq!(task_container_count(&task.arn()), 0, "nothing was created");
    }
    let out = std::process::Command::new("docker").args(["network", "inspect", &overlapping_network]).output();
    assert!(!out.unwrap().status.success(), "the overlapping network was not created");
}

/// A Docker network Berth did not make (no `berth.managed` label), in a free /24 of
/// 10.214.0.0/16; removed when dropped.
struct UserNetwork {
    name: String,
    third_octet: u8,
}

impl UserNetwork {
    fn new() -> UserNetwork {
        for _ in 0..64 {
            let n = UserNetwork { name: format!("user-net-{}", hex()), third_octet: rand::random() };
            let out = std::process::Command::new("docker")
                .args(["network", "create", "--driver", "bridge"])
                .args(["--subnet", &format!("10.214.{}.0/24", n.third_octet)])
                .arg(&n.name)
                .output()
                .expect("docker");
            if out.status.success() {
                return n;
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("overlaps"), "docker network create: {err}");
        }
        panic!("no free /24 in 10.214.0.0/16");
    }
}

impl Drop for UserNetwork {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["network", "rm", &self.name]).output();
    }
}

/// Whether a TCP connection to `url`'s address times out (a dropped SYN), as opposed to
/// being answered or refused.
async fn connect_times_out(addr: &str) -> bool {
    let attempt = tokio::time::timeout(Duration::from_millis(1500), tokio::net::TcpStream::connect(addr)).await;
    attempt.is_err()
}

fn tcp_from(port: i32, cidr: String) -> IngressRule {
    IngressRule { protocol: IpProtocol::Tcp, from_port: port, to_port: port, cidr }
}

/// An awsvpc task at `.host` whose security groups allow `rules` in.
fn guarded_task(subnet: &Subnet, host: u8, rules: Vec<IngressRule>) -> TaskAssignment {
    let mut a = awsvpc_task(subnet, host);
    a.network.as_mut().unwrap().ingress = Some(rules);
    a
}

/// The rules in the filter table of a running container's network namespace.
fn namespace_rules(container: &str) -> String {
    let pid = docker_inspect(container, "{{.State.Pid}}");
    let out = std::process::Command::new("nsenter")
        .args([&format!("--net=/proc/{pid}/ns/net"), "--", "iptables", "-S"])
        .output()
        .expect("nsenter");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn security_group_rules_decide_who_reaches_an_awsvpc_task() {
    let subnet = Subnet::new();
    let instance = Instance::new();
    let runner = instance.runner(PullBehavior::PreferCached).await;
    // Traffic from the host to the subnet leaves through the bridge, from the gateway.
    let host = format!("{}/32", subnet.ip(1));
    let mut open = Running::start(&runner, guarded_task(&subnet, 20, vec![tcp_from(8080, host.clone())]));
    let mut other_port = Running::start(&runner, guarded_task(&subnet, 21, vec![tcp_from(9090, "0.0.0.0/0".into())]));
    let mut other_source =
        Running::start(&runner, guarded_task(&subnet, 22, vec![tcp_from(8080, "10.9.9.9/32".into())]));
    let mut closed = Running::start(&runner, guarded_task(&subnet, 23, vec![]));
    // Every task turns healthy: its sidecar reaches web over localhost whatever the rules.
    for t in [&mut open, &mut other_port, &mut other_source, &mut closed] {
        t.until("RUNNING and HEALTHY", healthy).await;
    }

    assert_eq!(get(&format!("http://{}:8080/health", subnet.ip(20))).await.0, 200);
    for h in [21, 22, 23] {
        assert!(connect_times_out(&format!("{}:8080", subnet.ip(h))).await, ".{h} must not be reachable");
    }
    // The rules are in the task's namespace, each naming the task.
    let pause = pause_containers(&open.arn());
    let rules = namespace_rules(&pause[0]);
    assert!(rules.contains(&format!("-A BERTH-INGRESS -s {host} -p tcp -m tcp --dport 8080 ")), "{rules}");
    assert!(rules.contains(&open.arn()), "{rules}");
    assert!(rules.lines().last().unwrap_or_default().ends_with("-j DROP"), "{rules}");

    // Stopping the task takes its namespace, and the rules in it, away; the next task on
    // the same address gets its own rules and nothing of the old ones.
    let pid = docker_inspect(&pause[0], "{{.State.Pid}}");
    open.stop("test");
    open.stopped().await;
    assert!(pause_containers(&open.arn()).is_empty());
    assert!(!std::path::Path::new(&format!("/proc/{pid}/ns/net")).exists(), "the namespace is gone");
    let mut again = Running::start(&runner, guarded_task(&subnet, 20, vec![]));
    again.until("RUNNING and HEALTHY", healthy).await;
    assert!(connect_times_out(&format!("{}:8080", subnet.ip(20))).await, "the old rules are gone");
    assert!(!namespace_rules(&pause_containers(&again.arn())[0]).contains(&open.arn()));

    for t in [&mut again, &mut other_port, &mut other_source, &mut closed] {
        t.stop("test");
        t.stopped().await;
    }
}

#[tokio::test]
async fn a_restarted_agent_installs_the_rules_of_an_adopted_task_again() {
    let subnet = Subnet::new();
    let instance = Instance::new();
    let a = guarded_task(&subnet, 24, vec![tcp_from(8080, format!("{}/32", subnet.ip(1)))]);
    let arn = a.task_arn.clone();
    let first = instance.runner(PullBehavior::PreferCached).await;
    let mut task = Running::start(&first, a.clone());
    task.until("RUNNING and HEALTHY", healthy).await;
    task.handle.abort();
    drop(first);
    // Someone flushes the namespace's rules while no agent runs: everything gets in.
    let pause = pause_containers(&arn);
    let pid = docker_inspect(&pause[0], "{{.State.Pid}}");
    let out = std::process::Command::new("nsenter")
        .args([&format!("--net=/proc/{pid}/ns/net"), "--", "iptables", "-F"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!namespace_rules(&pause[0]).contains("-j DROP"));

    let second = instance.runner(PullBehavior::PreferCached).await;
    let mut task = Running::start(&second, a);
    task.until("RUNNING and HEALTHY", healthy).await;
    let deadline = Instant::now() + DEADLINE;
    while !namespace_rules(&pause[0]).contains("-j DROP") {
        assert!(Instant::now() < deadline, "the adopted task's rules were not installed again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pause_containers(&arn), pause);
    assert_eq!(get(&format!("http://{}:8080/health", subnet.ip(24))).await.0, 200);
    task.stop("test");
    task.stopped().await;
}

#[tokio::test]
async fn rules_that_cannot_be_enforced_fail_the_task() {
    let subnet = Subnet::new();
    let instance = Instance::new();
    let runner = instance.runner(PullBehavior::PreferCached).await;
    let mut task = Running::start(&runner, guarded_task(&subnet, 25, vec![tcp_from(8080, "10.0.0.1/8".into())]));
    let stopped = task.stopped().await;
    assert_eq!(stopped.stop_code, Some(StopCode::TaskFailedToStart));
    assert!(stopped.stopped_reason.unwrap_or_default().contains("security group rule source"));
    assert_eq!(task_container_count(&task.arn()), 0, "nothing was created");
}
