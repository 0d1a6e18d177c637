//! The task endpoint against the real engine: containers in bridge and awsvpc mode fetch
//! their task role credentials and their task's metadata at 169.254.170.2 (through the
//! NAT rules and the host's shared port, held by whichever agent on this host got it
//! first), ids open only their own task, and the shared port's holder forwards to the
//! agent that owns an id. The official SDK's container credentials provider reads the
//! answers.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use agent::endpoint::metadata::{HostFacts, TaskSnapshot};
use agent::endpoint::{nat, Endpoint, EndpointConfig, EndpointId, SHARED_PORT};
use agent_protocol::{ContainerStatus, RoleType, TaskCredentials, TaskReport, TaskStatus};
use serde_json::{json, Value};
use tokio_util::sync::{CancellationToken, DropGuard};

mod support;
use support::*;

const TASK_ROLE: &str = "arn:aws:iam::123456789012:role/app";
const EXECUTION_ROLE: &str = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole";

fn host() -> HostFacts {
    HostFacts { availability_zone: "us-east-1a".into(), launch_type: "EC2".into() }
}

/// An agent's endpoint on the host's real shared port, stopped when the guard drops.
/// The NAT rules are checked first: without them a container's packets to
/// 169.254.170.2 would leave the host.
async fn endpoint() -> (Arc<Endpoint>, DropGuard) {
    nat::install(SHARED_PORT).await.expect("the NAT rules (the tests run as root, with iptables)");
    let shutdown = CancellationToken::new();
    let e = Endpoint::start(EndpointConfig::new(host()), shutdown.clone()).await.expect("endpoint");
    (e, shutdown.drop_guard())
}

fn now() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn credentials(task_arn: &str, role: RoleType, key: &str) -> TaskCredentials {
    TaskCredentials {
        task_arn: task_arn.into(),
        role,
        role_arn: if role == RoleType::TaskRole { TASK_ROLE } else { EXECUTION_ROLE }.into(),
        access_key_id: key.into(),
        secret_access_key: format!("{key}-secret"),
        session_token: format!("{key}-token"),
        expiration: now() + 3600,
    }
}

/// A task with a task role whose `creds` and `meta` containers fetch their credentials
/// and task metadata and exit, while `app` (which `meta` waits for) keeps running.
fn fetching_task(extra: Value) -> agent_protocol::TaskAssignment {
    let fetcher = |name: &str, what: &str| {
        with(
            container(name, &["fetch", what]),
            json!({ "essential": false, "dependsOn": [{ "containerName": "app", "condition": "START" }] }),
        )
    };
    let app = with(
        container("app", &["sleep"]),
        json!({ "cpu": 128, "memory": 64, "portMappings": [{ "containerPort": 8080 }], "dockerLabels": { "team": "a" } }),
    );
    let mut def = json!({ "taskRoleArn": TASK_ROLE, "executionRoleArn": EXECUTION_ROLE });
    if let (Some(d), Some(e)) = (def.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    let mut a = assignment(
        "endpoint",
        def,
        vec![
            fetcher("creds", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
            fetcher("meta", "ECS_CONTAINER_METADATA_URI_V4/task"),
            app,
        ],
    );
    a.container_arns.insert("app".into(), APP_ARN.into());
    a.task_tags.insert("team".into(), "a".into());
    a
}

/// The ARN the control plane gives the `app` container of [`fetching_task`].
const APP_ARN: &str = "arn:aws:ecs:us-east-1:123456789012:container/default/t1/0f1e2d3c";

/// Waits until both fetchers have exited, and returns the report.
async fn fetched(task: &mut Running) -> TaskReport {
    let done = |r: &TaskReport| {
        ["creds", "meta"]
            .iter()
            .all(|n| r.containers.iter().any(|c| c.name == *n && c.last_status == ContainerStatus::Stopped))
    };
    let r = task.until("both fetchers exited", done).await;
    for name in ["creds", "meta"] {
        let c = ctr(&r, name);
        let id = c.runtime_id.clone().unwrap_or_default();
        assert_eq!(c.exit_code, Some(0), "{name} failed to fetch: {}", logs(&id, true));
    }
    r
}

/// A container's standard output (or error).
fn logs(id: &str, stderr: bool) -> String {
    let out = std::process::Command::new("docker").args(["logs", id]).output().expect("docker");
    String::from_utf8_lossy(if stderr { &out.stderr } else { &out.stdout }).into_owned()
}

fn output_json(r: &TaskReport, name: &str) -> Value {
    let id = ctr(r, name).runtime_id.clone().unwrap_or_default();
    let text = logs(&id, false);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} printed no JSON ({e}): {text}"))
}

/// A running container's environment variable.
fn env_of(container: &str, name: &str) -> Option<String> {
    let env = docker_inspect(container, "{{range .Config.Env}}{{println .}}{{end}}");
    env.lines().find_map(|l| l.strip_prefix(&format!("{name}=")).map(str::to_string))
}

/// GET from this agent's own endpoint port (the host side; no NAT involved).
async fn local_get(e: &Endpoint, path: &str) -> (u16, Value) {
    let res = reqwest::get(format!("http://127.0.0.1:{}{path}", e.port())).await.expect("GET");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The path of a metadata URI from a container's environment.
fn path_of(uri: &str) -> String {
    uri.strip_prefix("http://169.254.170.2").expect("the endpoint's address").to_string()
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str().is_some_and(|s| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok())
}

/// The credentials a container printed are its task role's, as the ECS agent shapes them.
fn check_credentials(printed: &Value) {
    assert_eq!(printed["RoleArn"], TASK_ROLE);
    assert_eq!(printed["AccessKeyId"], "ASIATASK", "the task role's, never the execution role's");
    assert_eq!(printed["SecretAccessKey"], "ASIATASK-secret");
    assert_eq!(printed["Token"], "ASIATASK-token");
    assert!(is_rfc3339(&printed["Expiration"]), "{printed}");
    assert_eq!(printed.as_object().map(|o| o.len()), Some(5), "{printed}");
}

/// The task metadata `meta` printed, checked member by member against ECS's documented
/// response; returns `app`'s entry.
fn check_task_metadata(meta: &Value, r: &TaskReport, arn: &str) -> Value {
    assert_eq!(meta["Cluster"], "test");
    assert_eq!(meta["TaskARN"], arn);
    assert_eq!(meta["Family"], "endpoint");
    assert_eq!(meta["Revision"], "1");
    assert_eq!(meta["DesiredStatus"], "RUNNING");
    assert!(matches!(meta["KnownStatus"].as_str(), Some("PENDING" | "RUNNING")), "{meta}");
    assert!(is_rfc3339(&meta["PullStartedAt"]) && is_rfc3339(&meta["PullStoppedAt"]), "{meta}");
    assert_eq!(meta["AvailabilityZone"], "us-east-1a");
    assert_eq!(meta["LaunchType"], "EC2");
    let containers = meta["Containers"].as_array().expect("Containers");
    let app = containers.iter().find(|c| c["Name"] == "app").cloned().expect("app in Containers");
    assert_eq!(app["DockerId"], ctr(r, "app").runtime_id.clone().unwrap_or_default());
    assert!(app["DockerName"].as_str().unwrap_or_default().starts_with("ecs-endpoint-1-app-"), "{app}");
    assert_eq!(app["Image"], testkit::images::simplehttp_image());
    assert!(app["ImageID"].as_str().unwrap_or_default().starts_with("sha256:"), "{app}");
    assert_eq!(app["Labels"]["com.amazonaws.ecs.task-arn"], arn);
    assert_eq!(app["Labels"]["com.amazonaws.ecs.container-name"], "app");
    assert_eq!(app["Labels"]["com.amazonaws.ecs.task-definition-family"], "endpoint");
    assert_eq!(app["Labels"]["com.amazonaws.ecs.task-definition-version"], "1");
    assert_eq!(app["Labels"]["team"], "a");
    assert_eq!(app["DesiredStatus"], "RUNNING");
    assert_eq!(app["KnownStatus"], "RUNNING", "meta started after app did");
    assert_eq!(app["Limits"], json!({ "CPU": 128.0, "Memory": 64 }));
    assert!(is_rfc3339(&app["CreatedAt"]) && is_rfc3339(&app["StartedAt"]), "{app}");
    assert!(app.get("FinishedAt").is_none() && app.get("ExitCode").is_none(), "{app}");
    assert_eq!(app["Type"], "NORMAL");
    let me = containers.iter().find(|c| c["Name"] == "meta").expect("meta");
    // It may ask before the agent has seen its start complete.
    assert!(matches!(me["KnownStatus"].as_str(), Some("CREATED" | "RUNNING")), "{me}");
    app
}

#[tokio::test]
async fn bridge_containers_fetch_their_credentials_and_metadata_at_169_254_170_2() {
    let instance = Instance::new();
    let (e, _stop) = endpoint().await;
    let runner = instance.runner_with(e.clone()).await;
    let a = fetching_task(json!({}));
    let arn = a.task_arn.clone();
    e.credentials().put(
        vec![credentials(&arn, RoleType::TaskRole, "ASIATASK"), credentials(&arn, RoleType::ExecutionRole, "ASIAEXEC")],
        now(),
    );
    let mut task = Running::start(&runner, a);
    let r = fetched(&mut task).await;
    check_credentials(&output_json(&r, "creds"));
    let app = check_task_metadata(&output_json(&r, "meta"), &r, &arn);

    let app_id = ctr(&r, "app").runtime_id.clone().unwrap_or_default();
    let ip = docker_inspect(&app_id, "{{.NetworkSettings.Networks.bridge.IPAddress}}");
    assert_eq!(app["Networks"], json!([{ "NetworkMode": "bridge", "IPv4Addresses": [ip] }]));
    let binding = &ctr(&r, "app").network_bindings[0];
    assert_eq!(app["Ports"][0]["ContainerPort"], 8080);
    assert_eq!(app["Ports"][0]["Protocol"], "tcp");
    assert_eq!(app["Ports"][0]["HostPort"], binding.host_port.unwrap_or_default());

    // Every container of the task has its own metadata id and the task's credentials id.
    let v4 = env_of(&app_id, "ECS_CONTAINER_METADATA_URI_V4").expect("ECS_CONTAINER_METADATA_URI_V4");
    let v3 = env_of(&app_id, "ECS_CONTAINER_METADATA_URI").expect("ECS_CONTAINER_METADATA_URI");
    let creds_uri = env_of(&app_id, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").expect("credentials URI");
    let meta_id = ctr(&r, "meta").runtime_id.clone().unwrap_or_default();
    assert_eq!(env_of(&meta_id, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").as_deref(), Some(creds_uri.as_str()));
    assert_ne!(env_of(&meta_id, "ECS_CONTAINER_METADATA_URI_V4").as_deref(), Some(v4.as_str()));
    assert_eq!(v3.replace("/v3/", "/v4/"), v4, "v3 and v4 share the id");
    let id = v4.rsplit('/').next().unwrap_or_default();
    assert_eq!(EndpointId::parse(id).map(|i| i.port()), Ok(e.port()), "the id names this agent's port");

    // The container's own paths, v4 and v3.
    let (status, mine) = local_get(&e, &path_of(&v4)).await;
    assert_eq!((status, &mine["DockerId"]), (200, &json!(app_id)));
    assert_eq!(mine["Name"], "app");
    assert_eq!(mine["ContainerARN"], APP_ARN);
    let (status, tagged) = local_get(&e, &format!("{}/taskWithTags", path_of(&v4))).await;
    assert_eq!((status, &tagged["TaskTags"]), (200, &json!({ "team": "a" })));
    assert!(tagged["ContainerInstanceTags"].is_object());
    let (status, v3_task) = local_get(&e, &format!("{}/task", path_of(&v3))).await;
    assert_eq!((status, &v3_task["TaskARN"]), (200, &json!(arn)));
    assert!(v3_task.get("LaunchType").is_none(), "v3 has no LaunchType");
    let (status, stats) = local_get(&e, &format!("{}/stats", path_of(&v4))).await;
    assert_eq!(status, 200, "{stats}");
    assert!(stats["memory_stats"].is_object() && stats["cpu_stats"].is_object(), "{stats}");
    assert!(stats["networks"]["eth0"]["rx_bytes"].is_u64(), "{stats}");
    assert!(stats["network_rate_stats"]["rx_bytes_per_sec"].is_number(), "{stats}");
    let (status, all) = local_get(&e, &format!("{}/task/stats", path_of(&v4))).await;
    assert_eq!(status, 200);
    assert!(all[&app_id]["memory_stats"].is_object(), "{all}");

    // A task without a task role is told no credentials URI; its id opens its own task
    // only, and a metadata id opens no credentials.
    let mut other = Running::start(&runner, assignment("other", json!({}), vec![container("solo", &["sleep"])]));
    let solo = other.until("RUNNING", |r| r.last_status == TaskStatus::Running).await;
    let solo_id = ctr(&solo, "solo").runtime_id.clone().unwrap_or_default();
    assert_eq!(env_of(&solo_id, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"), None);
    let solo_uri = env_of(&solo_id, "ECS_CONTAINER_METADATA_URI_V4").expect("metadata URI");
    let (_, solo_task) = local_get(&e, &format!("{}/task", path_of(&solo_uri))).await;
    assert_eq!(solo_task["TaskARN"], other.arn());
    assert!(!solo_task.to_string().contains(&arn), "nothing of the first task");
    let (status, refused) =
        local_get(&e, &format!("/v2/credentials/{}", solo_uri.rsplit('/').next().unwrap_or_default())).await;
    assert_eq!((status, &refused["code"]), (400, &json!("InvalidIdInRequest")));

    // Once the task has stopped, its ids open nothing and its credentials are gone.
    task.stop("test");
    task.stopped().await;
    let (status, body) = local_get(&e, &creds_uri).await;
    assert_eq!((status, &body["code"]), (400, &json!("InvalidIdInRequest")), "{body}");
    let (status, _) = local_get(&e, &format!("{}/task", path_of(&v4))).await;
    assert_eq!(status, 404);
    let (status, _) = local_get(&e, &format!("{}/task", path_of(&v3))).await;
    assert_eq!(status, 400, "v3 answers an unknown id with 400");
    assert!(e.execution_role(&arn).is_none());
    other.stop("test");
    other.stopped().await;
}

#[tokio::test]
async fn awsvpc_containers_reach_the_endpoint_through_their_gateway_despite_closed_security_groups() {
    let subnet = Subnet::new();
    let instance = Instance::new();
    let (e, _stop) = endpoint().await;
    let runner = instance.runner_with(e.clone()).await;
    let mut a = fetching_task(json!({ "networkMode": "awsvpc" }));
    let mut attachment = subnet.attachment(30);
    // Nothing may connect in: the task's own connections out, and their replies, still work.
    attachment.ingress = Some(vec![]);
    a.network = Some(attachment);
    let arn = a.task_arn.clone();
    e.credentials().put(vec![credentials(&arn, RoleType::TaskRole, "ASIATASK")], now());
    let mut task = Running::start(&runner, a);
    let r = fetched(&mut task).await;
    check_credentials(&output_json(&r, "creds"));
    let meta = output_json(&r, "meta");
    let app = check_task_metadata(&meta, &r, &arn);
    let third = subnet.ip(30).octets()[2];
    assert_eq!(
        app["Networks"],
        json!([{
            "NetworkMode": "awsvpc",
            "IPv4Addresses": [subnet.ip(30).to_string()],
            "AttachmentIndex": 0,
            "MACAddress": subnet.mac(30),
            "IPv4SubnetCIDRBlock": subnet.cidr(),
            "PrivateDNSName": format!("ip-10-213-{third}-30.ec2.internal"),
            "SubnetGatewayIpv4Address": format!("{}/24", subnet.ip(1)),
        }])
    );
    assert_eq!(app["Ports"], json!([{ "ContainerPort": 8080, "Protocol": "tcp", "HostPort": 8080 }]));
    let containers = meta["Containers"].as_array().expect("Containers");
    let pause = containers.iter().find(|c| c["Type"] == "CNI_PAUSE").expect("the pause container, as on ECS");
    assert_eq!(pause["Name"], agent::awsvpc::PAUSE_CONTAINER_NAME);
    assert_eq!(pause["KnownStatus"], "RESOURCES_PROVISIONED");

    // The containers share the pause container's namespace: its counters are theirs.
    let app_id = ctr(&r, "app").runtime_id.clone().unwrap_or_default();
    let v4 = env_of(&app_id, "ECS_CONTAINER_METADATA_URI_V4").expect("metadata URI");
    let (status, stats) = local_get(&e, &format!("{}/stats", path_of(&v4))).await;
    assert_eq!(status, 200, "{stats}");
    assert!(stats["networks"]["eth0"]["tx_bytes"].as_u64().is_some_and(|b| b > 0), "{stats}");
    task.stop("test");
    task.stopped().await;
}

/// GET on `port` of loopback, retrying while nothing listens there yet.
async fn get_when_listening(port: u16, path: &str) -> (u16, Value) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match reqwest::get(format!("http://127.0.0.1:{port}{path}")).await {
            Ok(res) => {
                let status = res.status().as_u16();
                return (status, res.json().await.unwrap_or(Value::Null));
            }
            Err(e) if e.is_connect() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("GET {path} on {port}: {e}"),
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn snapshot(arn: &str) -> TaskSnapshot {
    TaskSnapshot {
        task_arn: arn.into(),
        cluster_arn: "arn:aws:ecs:us-east-1:123456789012:cluster/test".into(),
        family: "f".into(),
        revision: 3,
        desired_status: "RUNNING".into(),
        known_status: "RUNNING".into(),
        cpu: None,
        memory: None,
        pull_started_at: None,
        pull_stopped_at: None,
        execution_stopped_at: None,
        containers: vec![],
        task_tags: Default::default(),
        instance_tags: Default::default(),
    }
}

#[tokio::test]
async fn the_shared_port_holder_forwards_to_the_agent_that_owns_an_id() {
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let alone = |shared_port| EndpointConfig { shared_port, nat: false, ..EndpointConfig::new(host()) };
    let owner = Endpoint::start(alone(None), shutdown.clone()).await.unwrap();
    let shared = free_port();
    let holder = Endpoint::start(alone(Some(shared)), shutdown.clone()).await.unwrap();

    let arn = "arn:aws:ecs:us-east-1:123456789012:task/test/forwarded";
    let (creds_id, meta_id) = (owner.new_id(), owner.new_id());
    owner.tasks().register(arn, Some(creds_id), &[(meta_id, "web".into())]);
    owner.tasks().publish(snapshot(arn));
    owner.credentials().put(vec![credentials(arn, RoleType::TaskRole, "ASIATASK")], now());

    // Through the holder's shared port, the owner answers.
    let (status, body) = get_when_listening(shared, &format!("/v2/credentials/{creds_id}")).await;
    assert_eq!(status, 200, "{body}");
    check_credentials(&body);
    let (status, body) = get_when_listening(shared, &format!("/v4/{meta_id}/task")).await;
    assert_eq!((status, &body["TaskARN"], &body["Revision"]), (200, &json!(arn), &json!("3")));

    // The official SDK's container provider accepts the answer.
    std::env::set_var(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        format!("http://127.0.0.1:{shared}/v2/credentials/{creds_id}"),
    );
    let provider = aws_config::ecs::EcsCredentialsProvider::builder().build();
    let c =
        aws_credential_types::provider::ProvideCredentials::provide_credentials(&provider).await.expect("credentials");
    assert_eq!(
        (c.access_key_id(), c.secret_access_key(), c.session_token()),
        ("ASIATASK", "ASIATASK-secret", Some("ASIATASK-token"))
    );
    assert!(c.expiry().is_some_and(|t| t > SystemTime::now()));

    // Unknown ids: the owner's own answers, relayed; the holder's, for its own port.
    let (status, body) =
        get_when_listening(shared, &format!("/v2/credentials/{}", EndpointId::random(owner.port()))).await;
    assert_eq!((status, &body["code"]), (400, &json!("InvalidIdInRequest")));
    let (status, _) = get_when_listening(shared, &format!("/v4/{}", EndpointId::random(owner.port()))).await;
    assert_eq!(status, 404);
    let (status, body) = get_when_listening(shared, &format!("/v2/credentials/{}", holder.new_id())).await;
    assert_eq!((status, &body["code"]), (400, &json!("InvalidIdInRequest")));
    let (status, body) = get_when_listening(shared, "/v2/credentials/not-an-id").await;
    assert_eq!((status, &body["code"]), (400, &json!("InvalidIdInRequest")));
    let (status, body) = get_when_listening(shared, "/v2/credentials").await;
    assert_eq!((status, &body["code"]), (400, &json!("NoIdInRequest")));

    // A port where something else answers: its answer is never handed on.
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_port = other.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = other.accept().await {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecret").await;
        }
    });
    let (status, body) =
        get_when_listening(shared, &format!("/v2/credentials/{}", EndpointId::random(other_port))).await;
    assert_eq!((status, &body["code"]), (400, &json!("InvalidIdInRequest")));

    // Execution role credentials are never served, even for a known id.
    let exec_task = "arn:aws:ecs:us-east-1:123456789012:task/test/exec-only";
    let exec_id = owner.new_id();
    owner.tasks().register(exec_task, Some(exec_id), &[]);
    owner.credentials().put(vec![credentials(exec_task, RoleType::ExecutionRole, "ASIAEXEC")], now());
    let (status, body) = get_when_listening(shared, &format!("/v2/credentials/{exec_id}")).await;
    assert_eq!((status, &body["code"]), (503, &json!("CredentialsUninitialized")));
    assert_eq!(owner.execution_role(exec_task).map(|c| c.access_key_id), Some("ASIAEXEC".to_string()));
}

#[tokio::test]
async fn a_restarted_agent_serves_the_ids_its_adopted_containers_hold() {
    let instance = Instance::new();
    nat::install(SHARED_PORT).await.expect("the NAT rules");
    let first_run = CancellationToken::new();
    let first = Endpoint::start(EndpointConfig::new(host()), first_run.clone()).await.unwrap();
    let a = assignment("adopted", json!({ "taskRoleArn": TASK_ROLE }), vec![container("app", &["sleep"])]);
    let arn = a.task_arn.clone();
    let runner = instance.runner_with(first.clone()).await;
    let mut task = Running::start(&runner, a.clone());
    let r = task.until("RUNNING", |r| r.last_status == TaskStatus::Running).await;
    let app_id = ctr(&r, "app").runtime_id.clone().unwrap_or_default();
    let v4 = env_of(&app_id, "ECS_CONTAINER_METADATA_URI_V4").expect("metadata URI");
    let creds_uri = env_of(&app_id, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").expect("credentials URI");

    // The agent goes away, its endpoint with it; the container keeps running.
    task.handle.abort();
    drop(runner);
    first_run.cancel();
    let port = first.port();
    let deadline = Instant::now() + DEADLINE;
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the first endpoint never let go of its port");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The next run takes the same port again (the session keeps it in ECS_DATADIR) and
    // adopts the container: the ids it holds open its task.
    let (second_run, _stop) = {
        let t = CancellationToken::new();
        (t.clone(), t.drop_guard())
    };
    let second =
        Endpoint::start(EndpointConfig { port: Some(port), ..EndpointConfig::new(host()) }, second_run).await.unwrap();
    assert_eq!(second.port(), port);
    second.credentials().put(vec![credentials(&arn, RoleType::TaskRole, "ASIATASK")], now());
    let runner = instance.runner_with(second.clone()).await;
    let mut task = Running::start(&runner, a);
    task.until("RUNNING", |r| r.last_status == TaskStatus::Running).await;
    let deadline = Instant::now() + DEADLINE;
    let metadata = loop {
        let (status, body) = local_get(&second, &format!("{}/task", path_of(&v4))).await;
        if status == 200 {
            break body;
        }
        assert!(Instant::now() < deadline, "the adopted container's id never opened its task: {status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(metadata["TaskARN"], arn);
    assert_eq!(metadata["Containers"][0]["DockerId"], app_id, "the same container, adopted");
    let (status, body) = local_get(&second, &creds_uri).await;
    assert_eq!(status, 200, "{body}");
    check_credentials(&body);
    task.stop("test");
    task.stopped().await;
}
