//! Tasks with the awslogs log driver on real containers: what they print reaches
//! CloudWatch Logs streams named as ECS names them, exactly once, before the task is
//! STOPPED, across agent crashes, in bounded memory; failures show ECS's reasons.

use aws_sdk_cloudwatchlogs::Client as Logs;
use aws_sdk_ecs::types::{Compatibility, ContainerDefinition, LogConfiguration, LogDriver, NetworkMode, Task};
use aws_sdk_ecs::Client;
use testkit::images::simplehttp_image;
use testkit::Berth;

use crate::services::{cleanup, eventually, task_id, wait_instances};

fn awslogs(options: &[(&str, &str)]) -> LogConfiguration {
    let mut l = LogConfiguration::builder().log_driver(LogDriver::Awslogs);
    for (k, v) in options {
        l = l.options(*k, *v);
    }
    l.build().unwrap()
}

fn container(name: &str, command: &[&str], logs: LogConfiguration, essential: bool) -> ContainerDefinition {
    ContainerDefinition::builder()
        .name(name)
        .image(simplehttp_image())
        .memory(32)
        .essential(essential)
        .set_command(Some(command.iter().map(|s| s.to_string()).collect()))
        .log_configuration(logs)
        .build()
}

async fn register(ecs: &Client, family: &str, containers: Vec<ContainerDefinition>) {
    ecs.register_task_definition().family(family).set_container_definitions(Some(containers)).send().await.unwrap();
}

async fn run(ecs: &Client, cluster: &str, family: &str) -> String {
    let r = ecs.run_task().cluster(cluster).task_definition(family).send().await.unwrap();
    assert!(r.failures().is_empty(), "{:?}", r.failures());
    r.tasks()[0].task_arn().unwrap().to_string()
}

async fn describe(ecs: &Client, cluster: &str, arn: &str) -> Task {
    ecs.describe_tasks().cluster(cluster).tasks(arn).send().await.unwrap().tasks()[0].clone()
}

async fn wait_status(ecs: &Client, cluster: &str, arn: &str, status: &str) -> Task {
    eventually(&format!("the task is {status}"), async || {
        describe(ecs, cluster, arn).await.last_status() == Some(status)
    })
    .await;
    describe(ecs, cluster, arn).await
}

/// Every message of a stream, oldest first, read as a user pages `get-log-events`.
async fn messages(logs: &Logs, group: &str, stream: &str) -> Vec<String> {
    let mut out = vec![];
    let mut token: Option<String> = None;
    loop {
        let page = logs
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        out.extend(page.events().iter().map(|e| e.message().unwrap_or_default().to_string()));
        let next = page.next_forward_token().map(str::to_string);
        if page.events().is_empty() || next == token {
            return out;
        }
        token = next;
    }
}

fn numbered(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("line {i}")).collect()
}

async fn setup(cluster: &str) -> (crate::services::Cleanup, Berth, testkit::Agent, Client, Logs) {
    assert!(!simplehttp_image().is_empty());
    let b = crate::berth().await;
    let c = cleanup(&b, cluster);
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name(cluster).send().await.unwrap();
    let agent = b.spawn_agent(cluster, &[]);
    wait_instances(&ecs, cluster, 1).await;
    let logs = Logs::new(&b.sdk_config(&b.key, "us-east-1").await);
    (c, b, agent, ecs, logs)
}

#[tokio::test]
async fn an_awslogs_task_ships_every_line_to_streams_named_as_ecs_names_them_before_it_stops() {
    let (_c, _b, _agent, ecs, logs) = setup("awslogs").await;
    let group = [("awslogs-group", "/ecs/app"), ("awslogs-region", "us-east-1"), ("awslogs-create-group", "true")];
    // Non-blocking delivery with a buffer: Docker takes the options (on its local driver).
    let prefixed =
        [&group[..], &[("awslogs-stream-prefix", "ecs"), ("mode", "non-blocking"), ("max-buffer-size", "4m")]].concat();
    let multiline = [&group[..], &[("awslogs-stream-prefix", "ecs"), ("awslogs-multiline-pattern", "^line")]].concat();
    register(
        &ecs,
        "app",
        vec![
            container("app", &["print", "50", "--every-ms", "20"], awslogs(&prefixed), true),
            container("trace", &["print", "5", "--trace", "--stderr"], awslogs(&multiline), false),
            container("bare", &["print", "3"], awslogs(&group), false),
        ],
    )
    .await;
    let arn = run(&ecs, "awslogs", "app").await;
    let t = wait_status(&ecs, "awslogs", &arn, "STOPPED").await;
    let id = task_id(&t);

    // STOPPED comes after the last line is stored: no waiting here.
    assert_eq!(messages(&logs, "/ecs/app", &format!("ecs/app/{id}")).await, numbered(50));
    let traces = messages(&logs, "/ecs/app", &format!("ecs/trace/{id}")).await;
    let joined: Vec<String> = (1..=5).map(|i| format!("line {i}\n  at frame one\n  at frame two")).collect();
    assert_eq!(traces, joined, "multi-line events are joined at the pattern");
    // Without a prefix, the stream is named after the container's Docker id.
    let bare = t.containers().iter().find(|c| c.name() == Some("bare")).unwrap();
    let runtime_id = bare.runtime_id().unwrap();
    assert_eq!(messages(&logs, "/ecs/app", runtime_id).await, numbered(3));
    let streams = logs.describe_log_streams().log_group_name("/ecs/app").send().await.unwrap();
    assert_eq!(streams.log_streams().len(), 3);
    // `docker logs` still shows the output.
    let app = t.containers().iter().find(|c| c.name() == Some("app")).unwrap().runtime_id().unwrap();
    let out = std::process::Command::new("docker").args(["logs", app]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("line 50\n"));
    assert_eq!(t.stop_code(), Some(&aws_sdk_ecs::types::TaskStopCode::EssentialContainerExited));
}

#[tokio::test]
async fn awslogs_failures_stop_the_task_with_ecs_reasons() {
    let (_c, _b, _agent, ecs, _logs) = setup("awslogs-bad").await;
    register(&ecs, "nogroup", vec![container("app", &["print", "1"], awslogs(&[("awslogs-group", "/missing")]), true)])
        .await;
    let arn = run(&ecs, "awslogs-bad", "nogroup").await;
    let t = wait_status(&ecs, "awslogs-bad", &arn, "STOPPED").await;
    let reason = t.containers()[0].reason().unwrap_or_default();
    assert!(reason.starts_with("CannotStartContainerError: "), "{reason}");
    assert!(reason.contains("ResourceNotFoundException"), "{reason}");
    assert_eq!(t.stop_code(), Some(&aws_sdk_ecs::types::TaskStopCode::TaskFailedToStart));

    let colour = awslogs(&[("awslogs-group", "/g"), ("awslogs-colour", "blue")]);
    register(&ecs, "badopt", vec![container("app", &["print", "1"], colour, true)]).await;
    let arn = run(&ecs, "awslogs-bad", "badopt").await;
    let t = wait_status(&ecs, "awslogs-bad", &arn, "STOPPED").await;
    assert_eq!(
        t.containers()[0].reason(),
        Some("CannotCreateContainerError: unknown log opt 'awslogs-colour' for awslogs log driver")
    );

    // Fargate names streams by prefix only, so registration wants one.
    let e = ecs
        .register_task_definition()
        .family("fargate-logs")
        .requires_compatibilities(Compatibility::Fargate)
        .network_mode(NetworkMode::Awsvpc)
        .cpu("256")
        .memory("512")
        .container_definitions(container("app", &["print", "1"], awslogs(&[("awslogs-group", "/g")]), true))
        .send()
        .await
        .unwrap_err();
    assert_eq!(testkit::error_code(&e), "ClientException");
}

#[tokio::test]
async fn a_killed_agent_resumes_shipping_with_nothing_lost_and_nothing_twice() {
    let (_c, b, mut agent, ecs, logs) = setup("awslogs-kill").await;
    let options = [("awslogs-group", "/ecs/counter"), ("awslogs-create-group", "true"), ("awslogs-stream-prefix", "c")];
    register(&ecs, "counter", vec![container("count", &["print", "0", "--every-ms", "1"], awslogs(&options), true)])
        .await;
    let arn = run(&ecs, "awslogs-kill", "counter").await;
    let t = wait_status(&ecs, "awslogs-kill", &arn, "RUNNING").await;
    let stream = format!("c/count/{}", task_id(&t));
    let mut seen = 0;
    for _ in 0..3 {
        let want = seen + 300;
        eventually("more lines are shipped", async || {
            seen = messages(&logs, "/ecs/counter", &stream).await.len();
            seen >= want
        })
        .await;
        // SIGKILL in the middle of shipping; the container goes on printing meanwhile.
        agent.kill9();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        agent.restart(&b, "awslogs-kill", &[]);
    }
    ecs.stop_task().cluster("awslogs-kill").task(&arn).send().await.unwrap();
    wait_status(&ecs, "awslogs-kill", &arn, "STOPPED").await;
    let all = messages(&logs, "/ecs/counter", &stream).await;
    assert!(all.len() > seen, "lines printed while the agent was down arrive");
    assert_eq!(all, numbered(all.len()), "every line once, in order");
}

#[tokio::test]
async fn a_container_printing_100_mb_without_a_newline_is_shipped_in_bounded_memory() {
    let (_c, _b, agent, ecs, logs) = setup("awslogs-flood").await;
    let options = [("awslogs-group", "/ecs/flood"), ("awslogs-create-group", "true"), ("awslogs-stream-prefix", "f")];
    register(&ecs, "flood", vec![container("flood", &["flood", "100000000"], awslogs(&options), true)]).await;
    let arn = run(&ecs, "awslogs-flood", "flood").await;
    let t = wait_status(&ecs, "awslogs-flood", &arn, "STOPPED").await;
    let events = messages(&logs, "/ecs/flood", &format!("f/flood/{}", task_id(&t))).await;
    let total: usize = events.iter().map(String::len).sum();
    assert_eq!(total, 100_000_000, "bytes shipped in {} events", events.len());
    assert!(events.iter().all(|e| e.len() <= 256 * 1024 - 26 && e.bytes().all(|b| b == b'x')));
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid().unwrap())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(peak_kib < 150 * 1024, "the agent peaked at {peak_kib} KiB");
}

#[tokio::test]
async fn the_log_file_is_followed_across_rotations_and_an_agent_restart() {
    // Files of 64 KB (about 800 lines each): the container's output rotates several times.
    let cluster = "awslogs-rotate";
    let env = [("BERTH_AWSLOGS_CACHE_FILE_SIZE", "64k")];
    assert!(!simplehttp_image().is_empty());
    let b = crate::berth().await;
    let _c = cleanup(&b, cluster);
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name(cluster).send().await.unwrap();
    let mut agent = b.spawn_agent(cluster, &env);
    wait_instances(&ecs, cluster, 1).await;
    let logs = Logs::new(&b.sdk_config(&b.key, "us-east-1").await);
    let options = [("awslogs-group", "/ecs/rotate"), ("awslogs-create-group", "true"), ("awslogs-stream-prefix", "r")];
    register(&ecs, "rotate", vec![container("r", &["print", "6000", "--every-ms", "1"], awslogs(&options), true)])
        .await;
    let arn = run(&ecs, cluster, "rotate").await;
    let t = wait_status(&ecs, cluster, &arn, "RUNNING").await;
    let stream = format!("r/r/{}", task_id(&t));
    eventually("lines are shipped", async || messages(&logs, "/ecs/rotate", &stream).await.len() >= 1500).await;
    // Restarted while the files rotate: the new agent finds its place in `.1` or the
    // current file by the cursor's marks.
    agent.restart(&b, cluster, &env);
    let t = wait_status(&ecs, cluster, &arn, "STOPPED").await;
    let runtime_id = t.containers()[0].runtime_id().unwrap().to_string();
    // Docker's `local` log, which inspect does not name.
    let root = std::process::Command::new("docker").args(["info", "--format", "{{.DockerRootDir}}"]).output().unwrap();
    let root = String::from_utf8_lossy(&root.stdout).trim().to_string();
    let rotated = format!("{root}/containers/{runtime_id}/local-logs/container.log.1");
    assert!(std::path::Path::new(&rotated).exists(), "the log rotated ({rotated})");
    assert_eq!(messages(&logs, "/ecs/rotate", &stream).await, numbered(6000), "every line once, in order");
}

#[tokio::test]
async fn tty_output_and_text_that_json_escapes_arrive_as_printed() {
    let (_c, _b, _agent, ecs, logs) = setup("awslogs-text").await;
    let options = [("awslogs-group", "/ecs/text"), ("awslogs-create-group", "true"), ("awslogs-stream-prefix", "t")];
    let text = "<a href=\"x\">&amp;</a>\ttab \\ é 😀 \u{1} \u{2028} end";
    let mut env_container = container("env", &["env", "TEXT"], awslogs(&options), false);
    env_container.environment =
        Some(vec![aws_sdk_ecs::types::KeyValuePair::builder().name("TEXT").value(text).build()]);
    let mut tty = container("tty", &["print", "20"], awslogs(&options), true);
    tty.pseudo_terminal = Some(true);
    register(&ecs, "text", vec![env_container, tty]).await;
    let arn = run(&ecs, "awslogs-text", "text").await;
    let t = wait_status(&ecs, "awslogs-text", &arn, "STOPPED").await;
    let id = task_id(&t);
    assert_eq!(messages(&logs, "/ecs/text", &format!("t/env/{id}")).await, [format!("TEXT={text}")]);
    // A terminal ends lines with \r\n; Docker stores them so, and the line is its text.
    let lines: Vec<String> = messages(&logs, "/ecs/text", &format!("t/tty/{id}"))
        .await
        .into_iter()
        .map(|m| m.trim_end_matches('\r').to_string())
        .collect();
    assert_eq!(lines, numbered(20));
}

#[tokio::test]
async fn docker_s_logs_api_still_ships_when_the_agent_reads_through_it() {
    // The reader for an engine whose files the agent cannot open.
    let cluster = "awslogs-api";
    let b = crate::berth().await;
    let _c = cleanup(&b, cluster);
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name(cluster).send().await.unwrap();
    let _agent = b.spawn_agent(cluster, &[("BERTH_AWSLOGS_READER", "api")]);
    wait_instances(&ecs, cluster, 1).await;
    let logs = Logs::new(&b.sdk_config(&b.key, "us-east-1").await);
    let options = [("awslogs-group", "/ecs/api"), ("awslogs-create-group", "true"), ("awslogs-stream-prefix", "a")];
    register(&ecs, "api", vec![container("a", &["print", "500", "--every-ms", "1"], awslogs(&options), true)]).await;
    let arn = run(&ecs, cluster, "api").await;
    let t = wait_status(&ecs, cluster, &arn, "STOPPED").await;
    assert_eq!(messages(&logs, "/ecs/api", &format!("a/a/{}", task_id(&t))).await, numbered(500));
}
