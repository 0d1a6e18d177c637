//! The integration-test harness: each test starts its own `berth` process on a free
//! loopback port with a fresh data dir, and talks to it with the official AWS SDK for
//! Rust or the `aws` CLI, exactly as a user would.

pub mod images;
pub mod netns;
mod owned;
pub mod postgres;
pub mod s3;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;

/// How long a server may take to come up before a test fails.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a replica of a test bed may wait to lead: it follows meanwhile, for as long as
/// its test has another replica lead.
const LEAD_DEADLINE: Duration = Duration::from_secs(600);

/// Credentials of one account on a running Berth.
#[derive(Debug, Clone)]
pub struct Key {
    pub account: String,
    pub id: String,
    pub secret: String,
}

/// A running `berth up` (or `berth server`) process with its own data dir.
#[derive(Debug)]
pub struct Berth {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// `up` or `server`.
    command: &'static str,
    /// Extra arguments of `berth up` and environment of the process.
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// The `--listen` address (port 0: the server picks one).
    listen: String,
    /// A program it runs under (`ip netns exec NAME` in a test bed's host); empty: none.
    under: Vec<String>,
    /// How long it may take to serve: a replica that waits to lead may take long.
    start_deadline: Duration,
    pub endpoint: String,
    pub key: Key,
}

impl Berth {
    /// Starts `berth up --no-agent` from the binary at `bin` (tests pass
    /// `env!("CARGO_BIN_EXE_berth")`): the API alone, with no container instance.
    pub async fn start(bin: &str) -> Berth {
        Self::launch(bin, vec!["--no-agent".into()], Vec::new()).await
    }

    /// Starts `berth up --no-agent` with further flags of `berth up`, e.g. `--tls-cert`.
    /// An HTTPS server counts as started once it accepts connections (the harness does
    /// not know its certificate).
    pub async fn start_with_args(bin: &str, args: &[&str]) -> Berth {
        let args = std::iter::once("--no-agent").chain(args.iter().copied()).map(String::from).collect();
        Self::launch(bin, args, Vec::new()).await
    }

    /// Starts `berth up` with its local agent, which registers this machine's Docker
    /// engine into cluster `default` (or `ECS_CLUSTER` from `env`).
    pub async fn start_with_agent(bin: &str, env: &[(&str, &str)]) -> Berth {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::launch(bin, Vec::new(), env).await
    }

    /// Starts `berth up` with its local agent, listening on every interface rather than
    /// loopback only, so that containers reach the API through their network's gateway.
    pub async fn start_with_agent_on_all_interfaces(bin: &str, env: &[(&str, &str)]) -> Berth {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::launch_on(bin, Vec::new(), env, "0.0.0.0:0").await
    }

    /// Starts `berth server --store <url>` (the API alone, its records in the PostgreSQL
    /// database at `url`) with a fresh data dir and extra environment `env` (for example
    /// `BERTH_MASTER_KEY`, which servers sharing a database need in common). Its commands
    /// (`berth env`, `berth account ...`) get the same store.
    pub async fn start_on_store(bin: &str, url: &str, env: &[(&str, &str)]) -> Berth {
        let env: Vec<(&str, &str)> = std::iter::once(("BERTH_STORE", url)).chain(env.iter().copied()).collect();
        Self::start_server(bin, &[], &env).await
    }

    /// [`Berth::start_on_store`] on a given `--listen` address (a standby's, which an agent
    /// must be told before the standby listens).
    pub async fn start_on_store_listening(bin: &str, url: &str, env: &[(&str, &str)], listen: &str) -> Berth {
        let env = std::iter::once(("BERTH_STORE", url)).chain(env.iter().copied());
        let env = env.map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::launch_full(bin, "server", Vec::new(), env, listen).await
    }

    /// [`Berth::start_on_store`] in `host` of a test bed, listening on the host's address
    /// at port 7447 (each host has its ports to itself). It resolves once this replica
    /// leads, which may be long after it started following.
    pub async fn start_on_store_in(bin: &str, host: &netns::Host, url: &str, env: &[(&str, &str)]) -> Berth {
        let listen = format!("{}:7447", host.address);
        Self::start_replica_under(bin, url, env, &listen, &host.prefix()).await
    }

    /// [`Berth::start_on_store`] on `listen`, run under the program `under` (e.g. `ip netns
    /// exec NAME`: one that execs it, so that the process the test holds is the server's).
    /// It resolves once this replica leads, which may be long after it started following.
    pub async fn start_replica_under(
        bin: &str,
        url: &str,
        env: &[(&str, &str)],
        listen: &str,
        under: &[&str],
    ) -> Berth {
        let env = std::iter::once(("BERTH_STORE", url)).chain(env.iter().copied());
        let env = env.map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let under = under.iter().map(|s| s.to_string()).collect();
        let mut b = Self::prepare(bin, "server", Vec::new(), env, listen);
        (b.under, b.start_deadline) = (under, LEAD_DEADLINE);
        Self::started(b).await
    }

    /// Starts `berth server` (the API alone) with a fresh data dir, further flags `args`
    /// (for example `--blobs s3://...`) and environment `env`.
    pub async fn start_server(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Berth {
        let args = args.iter().map(|a| a.to_string()).collect();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::launch_full(bin, "server", args, env, "127.0.0.1:0").await
    }

    async fn launch(bin: &str, args: Vec<String>, env: Vec<(String, String)>) -> Berth {
        Self::launch_on(bin, args, env, "127.0.0.1:0").await
    }

    async fn launch_on(bin: &str, args: Vec<String>, env: Vec<(String, String)>, listen: &str) -> Berth {
        Self::launch_full(bin, "up", args, env, listen).await
    }

    async fn launch_full(
        bin: &str,
        command: &'static str,
        args: Vec<String>,
        env: Vec<(String, String)>,
        listen: &str,
    ) -> Berth {
        Self::started(Self::prepare(bin, command, args, env, listen)).await
    }

    /// Starts `b` and reads its key.
    async fn started(mut b: Berth) -> Berth {
        b.spawn().await;
        b.key = b.env_key(None);
        b
    }

    /// A server not started yet, with a fresh data dir.
    fn prepare(
        bin: &str,
        command: &'static str,
        mut args: Vec<String>,
        env: Vec<(String, String)>,
        listen: &str,
    ) -> Berth {
        if !args.iter().any(|a| a == "--vpc-cidr") && !env.iter().any(|(k, _)| k == "BERTH_VPC_CIDR") {
            args.extend(["--vpc-cidr".to_string(), own_vpc_block()]);
        }
        let dir = tempfile::Builder::new().prefix("berth-test").tempdir().expect("temp dir");
        Berth {
            bin: bin.into(),
            dir,
            command,
            args,
            env,
            child: None,
            listen: listen.to_string(),
            under: Vec::new(),
            start_deadline: START_DEADLINE,
            endpoint: String::new(),
            key: Key { account: String::new(), id: String::new(), secret: String::new() },
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    async fn spawn(&mut self) {
        let endpoint_file = self.dir.path().join("endpoint");
        let _ = std::fs::remove_file(&endpoint_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let mut cmd = under_program(&self.under, &self.bin);
        let child = cmd
            .args([self.command, "--listen", &self.listen, "--data-dir"])
            .arg(self.dir.path())
            .args(&self.args)
            .env("BERTH_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn berth");
        self.child = Some(child);
        let limit = self.start_deadline;
        let deadline = Instant::now() + limit;
        let http = reqwest::Client::new();
        loop {
            if let Ok(url) = std::fs::read_to_string(&endpoint_file) {
                let url = url.trim();
                let healthy = match url.strip_prefix("https://") {
                    Some(addr) => tokio::net::TcpStream::connect(addr).await.is_ok(),
                    None => {
                        http.get(format!("{url}/_berth/health")).send().await.is_ok_and(|r| r.status().is_success())
                    }
                };
                if healthy {
                    self.endpoint = url.to_string();
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("berth exited during start with {status}; log in {}", self.dir.path().display());
            }
            assert!(Instant::now() < deadline, "berth did not become healthy within {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs a `berth` subcommand against this data dir and returns its stdout.
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args).unwrap_or_else(|e| panic!("berth {args:?} failed: {e}"))
    }

    /// Runs a `berth` command against this server's data dir: its standard output, or
    /// its standard error if it failed.
    pub fn try_command(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--data-dir")
            .arg(self.dir.path())
            .envs(self.env.iter().filter(|(k, _)| k == "BERTH_STORE").map(|(k, v)| (k, v)))
            .output()
            .expect("run berth");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8(out.stdout).expect("utf-8"))
    }

    /// The credentials `berth env` prints (for `account`, or the first account).
    pub fn env_key(&self, account: Option<&str>) -> Key {
        let mut args = vec!["env"];
        if let Some(a) = account {
            args.extend(["--account", a]);
        }
        let text = self.command(&args);
        let get = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("berth env printed no {name}"))
                .to_string()
        };
        let listed = self.command(&["account", "list"]);
        let id = get("AWS_ACCESS_KEY_ID");
        let account = listed
            .lines()
            .find(|l| l.contains(&id))
            .and_then(|l| l.split('\t').next())
            .expect("key's account listed")
            .to_string();
        Key { account, id, secret: get("AWS_SECRET_ACCESS_KEY") }
    }

    /// Creates another account with `berth account create` while the server runs.
    pub fn create_account(&self) -> Key {
        let text = self.command(&["account", "create", "--name", "other"]);
        let get = |p: &str| text.lines().find_map(|l| l.strip_prefix(p)).expect("account create output").to_string();
        Key { account: get("account "), id: get("access key id "), secret: get("secret access key ") }
    }

    /// Starts a `berth agent` process that registers into `cluster` with extra settings
    /// `env` (for example `BERTH_AVAILABILITY_ZONE`). Several agents can share the machine's
    /// Docker engine; each is its own container instance.
    pub fn spawn_agent(&self, cluster: &str, env: &[(&str, &str)]) -> Agent {
        self.spawn_agent_under(cluster, env, &[])
    }

    /// [`Berth::spawn_agent`] in `host` of a test bed.
    pub fn spawn_agent_in(&self, host: &netns::Host, cluster: &str, env: &[(&str, &str)]) -> Agent {
        self.spawn_agent_under(cluster, env, &host.prefix())
    }

    fn spawn_agent_under(&self, cluster: &str, env: &[(&str, &str)], under: &[&str]) -> Agent {
        let dir = tempfile::Builder::new().prefix("berth-agent").tempdir().expect("temp dir");
        let under: Vec<String> = under.iter().map(|s| s.to_string()).collect();
        let child = agent_process(self, dir.path(), cluster, env, &under);
        Agent { child: Some(child), dir, under }
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's exit status, once it has exited on its own.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Kills the server with SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        c.wait().map(|s| s.success()).unwrap_or(false)
    }

    /// Starts the server again on the same data dir (at a new port).
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// An ECS client for the first account in `us-east-1`.
    pub async fn ecs(&self) -> aws_sdk_ecs::Client {
        self.ecs_as(&self.key, "us-east-1").await
    }

    /// An ECS client for any key and region.
    pub async fn ecs_as(&self, key: &Key, region: &str) -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::new(&self.sdk_config(key, region).await)
    }

    /// An ECR client for the first account in `us-east-1`.
    pub async fn ecr(&self) -> aws_sdk_ecr::Client {
        self.ecr_as(&self.key, "us-east-1").await
    }

    /// An ECR client for any key and region.
    pub async fn ecr_as(&self, key: &Key, region: &str) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.sdk_config(key, region).await)
    }

    /// The SDK configuration of clients for any service of this server, with `key` in
    /// `region`; retries off, so that a test sees each answer.
    pub async fn sdk_config(&self, key: &Key, region: &str) -> aws_config::SdkConfig {
        sdk_config_at(&self.endpoint, key, region).await
    }

    /// Environment variables that point the `aws` CLI at this server.
    pub fn cli_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), self.key.id.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.key.secret.clone()),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
            ("AWS_MAX_ATTEMPTS".into(), "1".into()),
        ]
    }
}

/// A `berth agent` process started by a test.
#[derive(Debug)]
pub struct Agent {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// What it runs under (`ip netns exec NAME` in a test bed's host); empty: none.
    under: Vec<String>,
}

impl Agent {
    /// The agent's process id, while it runs.
    /// What the agent has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the agent with SIGKILL; its containers keep running.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the agent again with the same data dir and settings as before.
    pub fn restart(&mut self, berth: &Berth, cluster: &str, env: &[(&str, &str)]) {
        self.kill9();
        self.child = Some(agent_process(berth, self.dir.path(), cluster, env, &self.under));
    }
}

/// A command that runs `bin` under the program `under` (with its arguments), or alone.
fn under_program(under: &[String], bin: &Path) -> Command {
    match under.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(bin);
            cmd
        }
        None => Command::new(bin),
    }
}

/// Starts `berth agent` for `berth`'s first account, keeping its state in `dir`.
fn agent_process(berth: &Berth, dir: &Path, cluster: &str, env: &[(&str, &str)], under: &[String]) -> Child {
    let log = std::fs::OpenOptions::new().append(true).create(true).open(dir.join("agent.log")).expect("log file");
    under_program(under, &berth.bin)
        .args(["agent", "--config"])
        .arg(dir.join("ecs.config"))
        .env("ECS_CLUSTER", cluster)
        .env("ECS_BACKEND_HOST", &berth.endpoint)
        .env("AWS_ACCESS_KEY_ID", &berth.key.id)
        .env("AWS_SECRET_ACCESS_KEY", &berth.key.secret)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("ECS_DATADIR", dir)
        .env("BERTH_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn berth agent")
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default();
            eprintln!(
                "--- agent log:\n{}",
                log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        self.kill9();
        self.remove_subnet_networks();
        // A failing test shows what the server said; a passing one stays quiet.
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of the berth server log:");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

impl Berth {
    /// Removes the Docker networks that stand for this server's subnets (inside its own
    /// VPC block) once nothing is attached to them; a network still in use stays (the
    /// test removes its containers after the server, and the next server's block differs).
    fn remove_subnet_networks(&self) {
        if let Some(vpc) = self.vpc_block() {
            images::remove_unused_subnet_networks(vpc);
        }
    }

    /// The VPC block this server was started with (`--vpc-cidr` or `BERTH_VPC_CIDR`), if
    /// the test gave one or the harness chose it.
    pub fn vpc_block(&self) -> Option<&str> {
        let flag = self.args.iter().skip_while(|a| *a != "--vpc-cidr").nth(1);
        let env = self.env.iter().find(|(k, _)| k == "BERTH_VPC_CIDR").map(|(_, v)| v);
        flag.or(env).map(String::as_str)
    }
}

/// Waits for `cond` to hold, polling, up to `timeout`. Tests wait for conditions, never
/// for fixed times.
/// A VPC block of this server's own: the subnets of its awsvpc tasks become Docker
/// networks, and Docker refuses networks that overlap those of other tests (or of earlier
/// runs, which stay on the engine). A random /22 of 10.100.0.0-10.199.255.255 (10.213/16
/// is the agent tests') makes a clash unlikely.
fn own_vpc_block() -> String {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let r = h.finish();
    format!("10.{}.{}.0/22", 100 + r % 100, ((r >> 8) % 64) * 4)
}

pub async fn eventually<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The body of `GET url`, retried for up to 30 s while the connection is
/// refused or reset: a task is RUNNING once its container has started, which
/// is before the server inside it listens (Docker's port proxy then accepts
/// and resets the connection).
pub async fn http_get_text(url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match reqwest::get(url).await {
            Ok(r) => match r.text().await {
                Ok(body) => return body,
                Err(e) if Instant::now() > deadline => panic!("GET {url}: {e}"),
                Err(_) => {}
            },
            Err(e) if Instant::now() > deadline => panic!("GET {url}: {e}"),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The AWS error code of an SDK error, e.g. `ClusterNotFoundException`.
pub fn error_code<E, R>(err: &aws_sdk_ecs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ecs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err {
        aws_sdk_ecs::error::SdkError::ServiceError(e) => e.err().code().unwrap_or("<no code>").to_string(),
        other => format!("<not a service error: {}>", aws_sdk_ecs::error::DisplayErrorContext(other)),
    }
}

/// A loopback port nothing listens on (the kernel's choice, released at once).
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// An SDK config for `key` at any endpoint (a replica's, say), without retries.
pub async fn sdk_config_at(endpoint: &str, key: &Key, region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region.to_string()))
        .credentials_provider(Credentials::new(&key.id, &key.secret, None, None, "testkit"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}
