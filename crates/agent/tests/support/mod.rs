//! What the agent's Docker tests share: a container-instance ARN per test, tasks written
//! as ECS JSON, a task run in the background with every report it sent, and awsvpc
//! subnets of their own. Each test binary uses part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::docker::labels;
use agent::endpoint::Endpoint;
use agent::runner::{PullBehavior, Runner, RunnerConfig};
use agent_protocol::{AwsvpcNetwork, ContainerReport, DesiredStatus, TaskAssignment, TaskReport, TaskStatus};
use model::ecs::shapes::RegisterTaskDefinitionRequest;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// One test's slice of the engine: a container-instance ARN of its own, cleaned up on drop.
pub struct Instance {
    pub arn: String,
}

impl Instance {
    pub fn new() -> Instance {
        Instance { arn: format!("arn:aws:ecs:us-east-1:123456789012:container-instance/test/{}", hex()) }
    }

    pub fn config(&self, pull: PullBehavior) -> RunnerConfig {
        RunnerConfig { pull_behavior: pull, stop_timeout: Duration::from_secs(5), ..RunnerConfig::new(&self.arn) }
    }

    /// A runner whose containers are told about `endpoint`.
    pub async fn runner_with(&self, endpoint: Arc<Endpoint>) -> Arc<Runner> {
        let config = RunnerConfig { endpoint: Some(endpoint), ..self.config(PullBehavior::PreferCached) };
        Arc::new(Runner::connect(config).await.expect("connect to Docker"))
    }

    pub async fn runner(&self, pull: PullBehavior) -> Arc<Runner> {
        Arc::new(Runner::connect(self.config(pull)).await.expect("connect to Docker"))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        testkit::images::remove_containers_with_label(labels::INSTANCE, &self.arn);
    }
}

/// A task definition from ECS JSON: `family`, then container definitions.
pub fn assignment(family: &str, extra: Value, containers: Vec<Value>) -> TaskAssignment {
    let mut def = json!({ "family": family, "containerDefinitions": containers });
    if let (Some(d), Some(e)) = (def.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    let definition: RegisterTaskDefinitionRequest = serde_json::from_value(def).expect("definition JSON");
    TaskAssignment {
        task_arn: format!("arn:aws:ecs:us-east-1:123456789012:task/test/{}", hex()),
        cluster_arn: "arn:aws:ecs:us-east-1:123456789012:cluster/test".into(),
        family: family.into(),
        revision: 1,
        desired_status: DesiredStatus::Running,
        stop_reason: None,
        definition,
        overrides: None,
        network: None,
        container_arns: Default::default(),
        task_tags: Default::default(),
        instance_tags: Default::default(),
    }
}

/// A container of the test image running `simplehttp <args>`.
pub fn container(name: &str, args: &[&str]) -> Value {
    json!({ "name": name, "image": testkit::images::simplehttp_image(), "command": args, "essential": true })
}

pub fn with(mut c: Value, extra: Value) -> Value {
    if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    c
}

/// A task being run by `run_task` in the background, and every report it sent.
pub struct Running {
    pub desired: watch::Sender<TaskAssignment>,
    pub reports: mpsc::UnboundedReceiver<TaskReport>,
    pub handle: tokio::task::JoinHandle<()>,
    pub seen: Vec<TaskReport>,
}

impl Running {
    pub fn start(runner: &Arc<Runner>, a: TaskAssignment) -> Running {
        let (desired, rx) = watch::channel(a);
        let (tx, reports) = mpsc::unbounded_channel();
        let runner = runner.clone();
        let handle = tokio::spawn(async move { runner.run_task(rx, tx).await });
        Running { desired, reports, handle, seen: vec![] }
    }

    pub fn arn(&self) -> String {
        self.desired.borrow().task_arn.clone()
    }

    /// Waits for a report that satisfies `cond`, failing the test after [`DEADLINE`].
    pub async fn until(&mut self, what: &str, cond: impl Fn(&TaskReport) -> bool) -> TaskReport {
        if let Some(r) = self.seen.iter().find(|r| cond(r)) {
            return r.clone();
        }
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, self.reports.recv()).await {
                Ok(Some(r)) => {
                    let hit = cond(&r);
                    self.seen.push(r.clone());
                    if hit {
                        return r;
                    }
                }
                Ok(None) => panic!("the runner ended before: {what}; reports: {:#?}", self.seen),
                Err(_) => panic!("timed out waiting for: {what}; reports: {:#?}", self.seen),
            }
        }
    }

    pub async fn stopped(&mut self) -> TaskReport {
        let r = self.until("STOPPED", |r| r.last_status == TaskStatus::Stopped).await;
        tokio::time::timeout(DEADLINE, &mut self.handle).await.expect("run_task returns after STOPPED").unwrap();
        self.check_history();
        r
    }

    pub fn stop(&self, reason: &str) {
        self.desired.send_modify(|a| {
            a.desired_status = DesiredStatus::Stopped;
            a.stop_reason = Some(reason.into());
        });
    }

    /// Invariants of every report sequence: no report twice in a row, status never goes
    /// back, and a STOPPED report is the last one.
    pub fn check_history(&self) {
        for pair in self.seen.windows(2) {
            assert_ne!(pair[0], pair[1], "the same report twice in a row");
            assert!(pair[0].last_status <= pair[1].last_status, "status went back: {:?}", self.seen);
        }
    }
}

pub fn ctr<'a>(r: &'a TaskReport, name: &str) -> &'a ContainerReport {
    r.containers.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no container {name} in {r:#?}"))
}

/// GET `url`, retrying while the server in a just-started container is not listening yet
/// (Docker's port proxy accepts the connection and then drops it).
pub async fn get(url: &str) -> (u16, String) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match reqwest::get(url).await {
            Ok(res) => return (res.status().as_u16(), res.text().await.unwrap_or_default()),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("GET {url}: {e}"),
        }
    }
}

pub fn docker_inspect(id: &str, format: &str) -> String {
    let out = std::process::Command::new("docker").args(["inspect", "-f", format, id]).output().expect("docker");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until the container has printed `line` on its standard output.
pub async fn wait_for_output(id: &str, line: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let out = std::process::Command::new("docker").args(["logs", id]).output().expect("docker");
        if String::from_utf8_lossy(&out.stdout).lines().any(|l| l == line) {
            return;
        }
        assert!(Instant::now() < deadline, "container {id} never printed {line:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn task_container_count(arn: &str) -> usize {
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={}={arn}", labels::TASK_ARN)])
        .output()
        .expect("docker");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// A subnet of one test: a random /24 of 10.213.0.0/16 and its Docker network, which the
/// test creates first as the agent would (retrying while another test holds that block), so
/// that tests running at once never pick overlapping blocks. Removed on drop; declare it
/// before the `Instance`, whose containers must go first.
pub struct Subnet {
    pub id: String,
    pub third_octet: u8,
    pub network: String,
}

impl Subnet {
    pub fn new() -> Subnet {
        for _ in 0..64 {
            let id = format!("subnet-{}", hex());
            let subnet = Subnet { network: agent_protocol::docker_network_name(&id), id, third_octet: rand::random() };
            let out = std::process::Command::new("docker")
                .args(["network", "create", "--driver", "bridge"])
                .args(["--subnet", &subnet.cidr(), "--gateway", &subnet.ip(1).to_string()])
                .args(["--label", &format!("{}=true", labels::MANAGED)])
                .args(["--label", &format!("{}={}", labels::SUBNET_ID, subnet.id)])
                .arg(&subnet.network)
                .output()
                .expect("docker");
            if out.status.success() {
                return subnet;
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("overlaps"), "docker network create: {err}");
        }
        panic!("no free /24 in 10.213.0.0/16");
    }

    pub fn cidr(&self) -> String {
        format!("10.213.{}.0/24", self.third_octet)
    }

    pub fn ip(&self, host: u8) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::new(10, 213, self.third_octet, host)
    }

    pub fn mac(&self, host: u8) -> String {
        format!("0a:58:0a:d5:{:02x}:{host:02x}", self.third_octet)
    }

    /// The attachment the control plane would send for address `.host`.
    pub fn attachment(&self, host: u8) -> AwsvpcNetwork {
        AwsvpcNetwork {
            attachment_id: format!("attachment-{}", hex()),
            subnet_id: self.id.clone(),
            subnet_cidr: self.cidr(),
            gateway: self.ip(1),
            private_ipv4_address: self.ip(host),
            mac_address: self.mac(host),
            docker_network: self.network.clone(),
            ingress: None,
        }
    }

    /// Removes the Docker network, so that the agent has to create it.
    pub fn remove_network(&self) {
        let out = std::process::Command::new("docker").args(["network", "rm", &self.network]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Ids of the Docker networks carrying this subnet's id.
    pub fn networks(&self) -> Vec<String> {
        let filter = format!("label={}={}", labels::SUBNET_ID, self.id);
        let out = std::process::Command::new("docker").args(["network", "ls", "-q", "--filter", &filter]).output();
        String::from_utf8_lossy(&out.unwrap().stdout).lines().map(str::to_string).collect()
    }
}

impl Drop for Subnet {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["network", "rm", &self.network]).output();
    }
}
