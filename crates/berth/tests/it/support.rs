//! Helpers that several test modules share.

use std::process::{Command, Stdio};

use sha2::{Digest as _, Sha256};

/// The digest of `bytes` as registries write it: `sha256:<hex>`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Creates an ECR repository with ECR's defaults; returns its URI.
pub async fn create_repository(ecr: &aws_sdk_ecr::Client, name: &str) -> String {
    ecr.create_repository().repository_name(name).send().await.unwrap().uri()
}

/// The URI of a repository CreateRepository made.
pub trait RepositoryUri {
    fn uri(&self) -> String;
}

impl RepositoryUri for aws_sdk_ecr::operation::create_repository::CreateRepositoryOutput {
    fn uri(&self) -> String {
        self.repository().expect("a created repository").repository_uri().expect("its URI").to_string()
    }
}

/// A detail of the task's (first) attachment, e.g. `privateIPv4Address` of its ENI; empty
/// when it has none.
pub fn attachment_detail(t: &aws_sdk_ecs::types::Task, name: &str) -> String {
    let Some(a) = t.attachments().first() else { return String::new() };
    a.details().iter().find(|d| d.name() == Some(name)).and_then(|d| d.value()).unwrap_or_default().to_string()
}

/// A `docker` CLI with a config dir of its own, logged in to Berth's registry with an ECR
/// token, so a test's login leaves the machine's Docker credentials alone. The local
/// images listed in `made` are removed when it is dropped.
pub struct Docker {
    config: tempfile::TempDir,
    pub made: Vec<String>,
}

impl Docker {
    pub async fn login(b: &testkit::Berth) -> Docker {
        Self::login_with(b, &b.ecr().await).await
    }

    /// Logs in with the ECR token of `ecr`'s credentials.
    pub async fn login_with(b: &testkit::Berth, ecr: &aws_sdk_ecr::Client) -> Docker {
        Self::login_at(&b.endpoint, ecr).await
    }

    /// Logs in to the registry at `endpoint` (`http://host:port`) with the ECR token of
    /// `ecr`'s credentials.
    pub async fn login_at(endpoint: &str, ecr: &aws_sdk_ecr::Client) -> Docker {
        use base64::Engine as _;
        use std::io::Write as _;
        let config = tempfile::Builder::new().prefix("berth-docker").tempdir().unwrap();
        let token = ecr.get_authorization_token().send().await.unwrap().authorization_data()[0]
            .authorization_token()
            .unwrap()
            .to_string();
        let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(token).unwrap()).unwrap();
        let password = decoded.strip_prefix("AWS:").unwrap().to_string();
        let host = endpoint.trim_start_matches("http://");
        let d = Docker { config, made: Vec::new() };
        let mut child = d
            .cmd(&["login", "--username", "AWS", "--password-stdin", host])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("run docker");
        child.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "docker login refused the ECR token");
        d
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.arg("--config").arg(self.config.path()).args(args);
        c
    }

    /// Runs `docker args`; whether it succeeded.
    pub fn ok(&self, args: &[&str]) -> bool {
        self.cmd(args).stdout(Stdio::null()).stderr(Stdio::null()).status().expect("run docker").success()
    }

    /// Runs `docker args` and fails the test, with docker's stderr, if it fails.
    pub fn run(&self, args: &[&str]) {
        let out = self.cmd(args).output().expect("run docker");
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The engine's id of image `name`.
    pub fn image_id(&self, name: &str) -> String {
        let out = self.cmd(&["image", "inspect", "--format", "{{.Id}}", name]).output().expect("run docker");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn remove_local(&self, image: &str) {
        let _ = self.cmd(&["rmi", "-f", image]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        for image in &self.made {
            self.remove_local(image);
        }
    }
}

/// The files under `dir` that hold `needle` (for checks that a secret is stored sealed).
pub fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut hits = vec![];
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes())) {
            hits.push(path);
        }
    }
    hits
}

/// Every file under `dir`, recursively (none if it does not exist).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The test image's container `app` (16 MiB) running `command`.
pub fn app_container(command: &[&str]) -> aws_sdk_ecs::types::builders::ContainerDefinitionBuilder {
    aws_sdk_ecs::types::ContainerDefinition::builder()
        .name("app")
        .image(testkit::images::simplehttp_image())
        .memory(16)
        .set_command(Some(command.iter().map(|c| c.to_string()).collect()))
}

/// The test image's container `web` serving HTTP on port 8080, with `REVISION` in its
/// environment if given (two revisions that differ only there).
pub fn web_container(revision: Option<&str>) -> aws_sdk_ecs::types::ContainerDefinition {
    use aws_sdk_ecs::types::{ContainerDefinition, KeyValuePair, PortMapping};
    ContainerDefinition::builder()
        .name("web")
        .image(testkit::images::simplehttp_image())
        .memory(16)
        .command("serve")
        .port_mappings(PortMapping::builder().container_port(8080).build())
        .set_environment(revision.map(|r| vec![KeyValuePair::builder().name("REVISION").value(r).build()]))
        .build()
}

/// A task of a cluster that its agent reports RUNNING, with its first container's Docker id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RunningTask {
    pub arn: String,
    pub task_definition: String,
    pub container: String,
}

/// The RUNNING tasks of `cluster`, sorted (empty while the API does not answer): what a
/// failover must leave as it was.
pub async fn running_tasks(ecs: &aws_sdk_ecs::Client, cluster: &str) -> Vec<RunningTask> {
    let Ok(arns) = ecs.list_tasks().cluster(cluster).desired_status("RUNNING".into()).send().await else {
        return Vec::new();
    };
    let arns = arns.task_arns().to_vec();
    if arns.is_empty() {
        return Vec::new();
    }
    let Ok(d) = ecs.describe_tasks().cluster(cluster).set_tasks(Some(arns)).send().await else { return Vec::new() };
    let mut running: Vec<RunningTask> = d
        .tasks()
        .iter()
        .filter(|t| t.last_status() == Some("RUNNING"))
        .map(|t| RunningTask {
            arn: t.task_arn().unwrap_or_default().to_string(),
            task_definition: t.task_definition_arn().unwrap_or_default().to_string(),
            container: t.containers().first().and_then(|c| c.runtime_id()).unwrap_or_default().to_string(),
        })
        .collect();
    running.sort();
    running
}

/// Creates the service `web` of one task of `task_definition` in `cluster` and waits until
/// that task runs; returns the cluster's RUNNING tasks then.
pub async fn web_service_running(ecs: &aws_sdk_ecs::Client, cluster: &str, task_definition: &str) -> Vec<RunningTask> {
    let create = ecs.create_service().cluster(cluster).service_name("web").task_definition(task_definition);
    create.desired_count(1).send().await.unwrap();
    crate::services::eventually("the service's task runs", async || running_tasks(ecs, cluster).await.len() == 1).await;
    running_tasks(ecs, cluster).await
}
