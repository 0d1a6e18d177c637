//! The commands and their flags. Every flag has an environment variable of the same
//! meaning, named in `--help`.

#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::datadir::DataDir;
use crate::duration::parse_duration;
use crate::serve;

/// Berth: Amazon ECS, ECR and Application Load Balancer on your own machines.
///
/// Start everything with `berth up`, then `eval "$(berth env)"` and use the `aws` and
/// `docker` command lines as you would against AWS.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Log filter, in tracing's syntax (for example `info` or `berth=debug,info`).
    #[arg(long, env = "BERTH_LOG", default_value = "info", global = true)]
    pub log: String,
    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, env = "BERTH_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"], global = true)]
    pub log_format: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything on this machine: the AWS endpoint and control plane (the registry,
    /// load balancer and local agent join it as they are built).
    Up(ServerArgs),
    /// Run the control plane and its AWS endpoint alone.
    Server(ServerArgs),
    /// Run an agent: register this host's Docker engine as a container instance of
    /// `ECS_CLUSTER` and run the tasks placed on it. Reads the ECS agent's settings from
    /// the environment and from the config file (the environment wins).
    Agent(AgentArgs),
    /// Print `export` lines that point the aws CLI and SDKs at this Berth:
    /// use `eval "$(berth env)"`.
    Env(EnvArgs),
    /// Manage accounts (each owns its own resources, invisible to the others).
    #[command(subcommand)]
    Account(AccountCommand),
    /// Manage access keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// ECR extensions of Berth.
    #[command(subcommand)]
    Ecr(EcrCommand),
    /// Fargate extensions of Berth.
    #[command(subcommand)]
    Fargate(FargateCommand),
    /// The offline vulnerability database that ECR image scans match packages against.
    #[command(subcommand)]
    Vulndb(VulndbCommand),
    /// CloudWatch Logs commands of the aws CLI that are not API operations.
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Which server leads the replicas on a PostgreSQL store (--store), since when, which
    /// stand by, and the last change committed; on SQLite, the one server of the data dir.
    Status(DataDirArg),
    /// Serve the load balancers of a PostgreSQL store's state on this host, apart from
    /// the servers: it follows the store as a follower replica does, runs its own health
    /// checks, and keeps serving the targets it last knew while no replica answers.
    Lb(LbArgs),
}

#[derive(Debug, Args)]
pub struct LbArgs {
    /// The control plane's PostgreSQL store, as the servers' --store.
    #[arg(long, env = "BERTH_STORE", value_parser = store::PgUrl::parse, value_name = "URL")]
    pub store: store::PgUrl,
    /// Listen on this host's block instead of the servers' --lb-address-pool: each load
    /// balancer on the address at the same offset in this block (127.100.0.7 of
    /// 127.100.0.0/16 on 10.0.8.7 with 10.0.8.0/24). Without it, on the load balancers'
    /// own addresses.
    #[arg(long, env = "BERTH_LB_ADDRESS_POOL", value_parser = control_plane::ec2::Ipv4Block::parse)]
    pub lb_address_pool: Option<control_plane::ec2::Ipv4Block>,
}

#[derive(Debug, Args)]
pub struct DataDirArg {
    /// Where Berth keeps its state: the database (with access keys, owner-only) and the
    /// address it listens on.
    #[arg(long, env = "BERTH_DATA_DIR", default_value = "./berth-data")]
    pub data_dir: PathBuf,
    /// Keep the records (resources, accounts and keys) in PostgreSQL instead of the data
    /// dir's SQLite database: a URL postgres://user[:password]@host[:port]/database
    /// (libpq's query parameters apply; no TLS yet). The schema `berth` is created in that
    /// database. Servers on one database elect a leader: the first leads, the others follow
    /// (answering reads from their own view, passing the rest to the leader) and one takes
    /// over when the leader stops; `berth status` shows them. The data dir still holds logs, registry blobs and the
    /// master key (replicas sharing a database need the same BERTH_MASTER_KEY). Give
    /// every command of this server the same --store. Without it, SQLite in the data dir.
    #[arg(long, env = "BERTH_STORE", value_parser = store::PgUrl::parse, value_name = "URL")]
    pub store: Option<store::PgUrl>,
}

impl DataDirArg {
    /// Opens the data dir (and its store) that a server has already created, for the
    /// commands beside the server.
    pub fn open(&self) -> anyhow::Result<DataDir> {
        DataDir::open_existing(&self.data_dir, self.store.as_ref())
    }
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// Address to listen on. Loopback by default: listening elsewhere exposes the API to
    /// the network, so say so explicitly. Port 0 picks a free port.
    #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:7447")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// With `up`: do not run the local agent (this host's Docker engine is then not a
    /// container instance). Ignored by `server`, which never runs one.
    #[arg(long, env = "BERTH_NO_AGENT")]
    pub no_agent: bool,
    /// How long an agent may go without a heartbeat before it is shown
    /// `agentConnected: false`. A duration: 90s, 5m, 1h, 1d, or seconds.
    #[arg(long, env = "BERTH_AGENT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub agent_timeout: Duration,
    /// How long an instance's agent may stay disconnected before the service scheduler
    /// replaces the instance's service tasks elsewhere (ECS itself waits forever). A
    /// duration: 90s, 5m, 1h, 1d, or seconds.
    #[arg(long, env = "BERTH_LOST_INSTANCE_GRACE", default_value = "5m", value_parser = parse_duration)]
    pub lost_instance_grace: Duration,
    /// How often the lifecycle policies of ECR repositories are enforced (also once at
    /// start). ECR expires images within 24 hours; `berth ecr run-lifecycle` enforces the
    /// policies at once. A duration: 90s, 5m, 1h, 1d, or seconds.
    #[arg(long, env = "BERTH_LIFECYCLE_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub lifecycle_interval: Duration,
    /// How often the registry collects garbage: it deletes blobs no image references any
    /// more (deleted images' layers, pushes abandoned before their manifest) once they are
    /// an hour old, and upload sessions idle for a day. A duration: 90s, 5m, 1h, 1d, or
    /// seconds.
    #[arg(long, env = "BERTH_REGISTRY_GC_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub registry_gc_interval: Duration,
    /// Keep the registry's blobs (image layers, configs, manifests) and its upload sessions
    /// in an S3-compatible bucket instead of the data dir: s3://BUCKET[/PREFIX] with
    /// optional query parameters endpoint=URL (an S3-compatible store such as MinIO or
    /// Ceph's radosgw, addressed path-style; without it, Amazon S3) and region=REGION.
    /// Credentials and the region come from the AWS SDK's usual places:
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE and ~/.aws), AWS_REGION;
    /// the endpoint only from this URL (AWS_ENDPOINT_URL is ignored, since `berth env`
    /// points it at Berth). The bucket must exist: the server checks it at start and stops
    /// with what to fix. The registry's metadata (which repository holds what) stays in the
    /// data dir. Example: s3://berth-blobs?endpoint=http://127.0.0.1:9000. Without it, the
    /// data dir's registry/ directory.
    #[arg(long, env = "BERTH_BLOBS", value_parser = registry::storage::S3Location::parse, value_name = "URL")]
    pub blobs: Option<registry::storage::S3Location>,
    /// How long a STOPPED task stays visible to DescribeTasks and ListTasks before Berth
    /// forgets it, as ECS does after about an hour. A task one of whose containers may
    /// still run, or whose end its service has not yet accounted for, is kept. A duration:
    /// 90s, 5m, 1h, 1d, or seconds.
    #[arg(long, env = "BERTH_STOPPED_TASK_RETENTION", default_value = "1h", value_parser = parse_duration)]
    pub stopped_task_retention: Duration,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The `host[:port]` other hosts reach Berth at. Repository URIs, the registry's proxy
    /// endpoint and token realm, and the local agent's registry login name it instead of
    /// the address a request arrived on. Docker pulls from a non-loopback host over plain
    /// HTTP only if the daemon lists it in `insecure-registries`; serve TLS instead.
    #[arg(long, env = "BERTH_ADVERTISE_HOST", value_parser = parse_advertise_host)]
    pub advertise_host: Option<String>,
    /// The availability zones of every region, as the letters after the region name
    /// (a,b,c makes us-east-1a, us-east-1b, us-east-1c): the default VPC has a subnet in
    /// each, and a load balancer needs two. Agents name their zone with
    /// BERTH_AVAILABILITY_ZONE (default: the region and `a`).
    #[arg(long, env = "BERTH_AVAILABILITY_ZONES", value_delimiter = ',', default_value = "a,b,c", value_parser = parse_zone_suffix)]
    pub availability_zones: Vec<String>,
    /// The addresses given to load balancers, one each, which is also the load balancer's
    /// DNSName: a block of 127.0.0.0/8 needs no set-up on Linux (all of it reaches this
    /// host's loopback interface) and lets several load balancers listen on the same port.
    /// Listening on ports below 1024 needs root or CAP_NET_BIND_SERVICE.
    #[arg(long, env = "BERTH_LB_ADDRESS_POOL", default_value = "127.100.0.0/16", value_parser = control_plane::ec2::Ipv4Block::parse)]
    pub lb_address_pool: control_plane::ec2::Ipv4Block,

    /// The default VPC's IPv4 block; its subnets (one per availability zone, 1/16 of the
    /// block each) become Docker bridge networks for awsvpc and Fargate tasks. Berths that
    /// share a Docker engine need blocks that do not overlap (Docker refuses overlapping
    /// networks), and none may overlap another Docker network of the engine.
    #[arg(long, env = "BERTH_VPC_CIDR", default_value = "172.31.0.0/16", value_parser = control_plane::ec2::Ipv4Block::parse)]
    pub vpc_cidr: control_plane::ec2::Ipv4Block,
}

/// What one client may hold of the API server, so that neither silence, slowness nor
/// numbers lock others out. Why these defaults (and how nginx, Apache and HAProxy compare)
/// is in `serve/admission.rs`.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// The most connections served at once. Beyond them, a small reserve of connections
    /// still answers GET /_berth/health (and 503 to anything else); further connections
    /// are closed as they arrive.
    #[arg(long, env = "BERTH_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// The most connections one client address may hold at once; its further connections
    /// are closed as they arrive. 0 lifts the limit.
    #[arg(long, env = "BERTH_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256)]
    pub max_connections_per_client: usize,
    /// How long a client may take to send a request's headers. The clock runs from the
    /// moment the server waits for a request, so a kept-alive connection that sends no
    /// next request within it is closed too (on HTTP/1.1 and HTTP/2). A duration: 30s, 2m.
    #[arg(long, env = "BERTH_HEADER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// The longest pause in a request body; a body that stalls longer is abandoned and
    /// its connection closed. It is also the grace before --min-body-rate applies.
    #[arg(long, env = "BERTH_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// The slowest a request body may arrive, in bytes per second averaged from its start
    /// (after the first --body-timeout): a client dripping a body cannot hold a
    /// connection for hours. 0 lifts the limit.
    #[arg(long, env = "BERTH_MIN_BODY_RATE", default_value_t = 1024)]
    pub min_body_rate: u64,
}

/// Serving HTTPS. Clients must trust the certificate: the aws CLI through
/// `AWS_CA_BUNDLE` (which `berth env` prints), Docker through
/// `/etc/docker/certs.d/<host:port>/ca.crt`.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Serve HTTPS with this certificate chain (PEM, leaf first). Needs --tls-key.
    #[arg(long, env = "BERTH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "BERTH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The CA certificate(s) clients need to trust --tls-cert, which `berth env` prints as
    /// AWS_CA_BUNDLE. Defaults to --tls-cert itself, which is right for a self-signed one.
    #[arg(long, env = "BERTH_TLS_CA", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
}

/// A zone letter: `a`, `b`, ... (one to three lower-case letters).
fn parse_zone_suffix(s: &str) -> Result<String, String> {
    if (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(s.to_string())
    } else {
        Err(format!("'{s}' is not a zone letter such as a or b (the region name is put in front of it)"))
    }
}

/// `host[:port]`: a DNS name or IP address as it appears in an image name, with no
/// scheme or path.
fn parse_advertise_host(s: &str) -> Result<String, String> {
    let bad = || {
        format!("'{s}' is not host[:port]: give a DNS name or IP address and optionally a port, e.g. berth.internal:7447, without http:// or a path")
    };
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => (h, Some(p)),
        _ => (s, None),
    };
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return Err(bad());
    }
    let valid_host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ipv6) => ipv6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        }
    };
    if valid_host {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(bad())
    }
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The ECS agent config file (KEY=VALUE lines: ECS_CLUSTER, ECS_BACKEND_HOST, ...).
    /// ECS_BACKEND_HOST may list several replicas (http://a:7447,http://b:7447): the agent
    /// reaches whichever one answers.
    #[arg(long, env = "ECS_CONFIG_FILE", default_value = "/etc/ecs/ecs.config")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// The region the printed environment selects.
    #[arg(long, env = "BERTH_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Print the credentials of this account instead of the first one.
    #[arg(long, env = "BERTH_ACCOUNT")]
    pub account: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account with one access key and print them.
    Create {
        #[command(flatten)]
        data: DataDirArg,
        /// A name to recognise the account by.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List accounts and their access key ids.
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create another access key for an account and print it.
    Create {
        #[command(flatten)]
        data: DataDirArg,
        /// The 12-digit account id.
        #[arg(long)]
        account: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum VulndbCommand {
    /// Import OSV advisories (https://ossf.github.io/osv-schema/) for Debian, Ubuntu and
    /// Alpine packages: a JSON file holding one record or an array of records, a directory
    /// of such files, or a zip of them (as OSV publishes each ecosystem's `all.zip`).
    /// Records merge by id into what was imported before. Safe while the server runs: the
    /// next scan uses the new database.
    Import(VulndbImportArgs),
}

#[derive(Debug, Args)]
pub struct VulndbImportArgs {
    /// The file, directory or zip to import.
    pub path: PathBuf,
    #[command(flatten)]
    pub data: DataDirArg,
    /// Replace the whole database with these records instead of merging them in.
    #[arg(long)]
    pub replace: bool,
}

#[derive(Debug, Subcommand)]
pub enum FargateCommand {
    /// Interrupt a FARGATE_SPOT task now, as Fargate does when it reclaims Spot capacity,
    /// to test how the application and its service cope: the task's containers get SIGTERM
    /// (then SIGKILL after their stop timeout) and it stops with stop code
    /// SpotInterruption; a service replaces it.
    ///
    /// Sends Berth's extension of the ECS API, the operation
    /// `AmazonEC2ContainerServiceV20141113.BerthInterruptSpotTask` (body as StopTask's),
    /// SigV4-signed for service `ecs` with the account's access key.
    Interrupt(InterruptArgs),
}

#[derive(Debug, Args)]
pub struct InterruptArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// The task's ARN or id.
    #[arg(long)]
    pub task: String,
    /// The task's cluster (default: `default`).
    #[arg(long)]
    pub cluster: Option<String>,
    /// The account of the task (default: the first account).
    #[arg(long, env = "BERTH_ACCOUNT")]
    pub account: Option<String>,
    #[arg(long, env = "BERTH_REGION", default_value = "us-east-1")]
    pub region: String,
}

#[derive(Debug, Subcommand)]
pub enum EcrCommand {
    /// Enforce the ECR lifecycle policies now instead of at the next scheduled run, and
    /// print the images expired.
    ///
    /// Sends Berth's extension of the ECR API, the operation
    /// `AmazonEC2ContainerRegistry_V20150921.BerthRunLifecyclePolicy` (body
    /// `{"repositoryName": "..."}`, or `{}` for all repositories), to the running server,
    /// SigV4-signed for service `ecr` with the account's access key. It deletes exactly
    /// what a lifecycle policy preview of the same images lists.
    RunLifecycle(RunLifecycleArgs),
}

#[derive(Debug, Args)]
pub struct RunLifecycleArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// Only this repository, which must have a lifecycle policy; without it, every
    /// repository of the account and region that has one.
    #[arg(long)]
    pub repository: Option<String>,
    /// The account whose repositories to run (default: the first account).
    #[arg(long, env = "BERTH_ACCOUNT")]
    pub account: Option<String>,
    /// The region whose repositories to run.
    #[arg(long, env = "BERTH_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Print the server's answer as JSON instead of one line per expired image.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Print a log group's events of all its streams, in time order, as `aws logs tail`
    /// of the AWS CLI v2 does: by default those of the last ten minutes, then (with
    /// --follow) new ones as they arrive.
    ///
    /// Calls `Logs_20140328.FilterLogEvents` on the running server, SigV4-signed for
    /// service `logs` with the account's access key, and follows its nextToken pages.
    Tail(TailArgs),
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// The log group's name.
    pub group: String,
    /// Keep polling for new events (every second) until Ctrl-C; each event is printed
    /// once. Without it, the command ends once the events up to now are printed.
    #[arg(long)]
    pub follow: bool,
    /// Where to begin: a time ago, as a whole number and one unit of s, m, h, d or w
    /// (`10m`, `2h`; not `1h30m`), or a point in time in ISO 8601 (`2026-12-06T10:00:00Z`;
    /// UTC when it has no offset) or in seconds since 1970.
    #[arg(long, default_value = "10m", value_parser = crate::logs_tail::parse_since)]
    pub since: crate::logs_tail::Since,
    /// Only events that match this CloudWatch Logs filter pattern (terms, "quoted
    /// phrases", -term, ?term); without it, every event.
    #[arg(long)]
    pub filter_pattern: Option<String>,
    /// Only events of the streams whose names begin with this.
    #[arg(long, conflicts_with = "log_stream_names")]
    pub log_stream_name_prefix: Option<String>,
    /// Only events of these streams (one or more names).
    #[arg(long, num_args = 1..)]
    pub log_stream_names: Option<Vec<String>>,
    /// How to print each event.
    #[arg(long, value_enum, default_value_t = crate::logs_tail::Format::Detailed)]
    pub format: crate::logs_tail::Format,
    /// The account whose group to read (default: the first account).
    #[arg(long, env = "BERTH_ACCOUNT")]
    pub account: Option<String>,
    /// The region of the group.
    #[arg(long, env = "BERTH_REGION", default_value = "us-east-1")]
    pub region: String,
    #[command(flatten)]
    pub data: DataDirArg,
}

pub fn init_logging(g: &Global) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(&g.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a terminal: logs redirected to files or collectors stay plain text.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    if g.log_format == "json" {
        builder.json().init();
    } else {
        // Values that callers chose cannot start a line of their own (see `logging`).
        builder.fmt_fields(crate::logging::EscapedFields).init();
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => serve::run(args, true).await,
        Command::Server(args) => serve::run(args, false).await,
        Command::Agent(args) => agent(args).await,
        Command::Env(args) => env(args),
        Command::Ecr(EcrCommand::RunLifecycle(args)) => crate::lifecycle::run_lifecycle(args).await,
        Command::Fargate(FargateCommand::Interrupt(args)) => interrupt(args).await,
        Command::Account(AccountCommand::Create { data, name }) => {
            let dir = data.open()?;
            let (account, key) = dir.credentials()?.create_account(&name)?;
            println!("account {}\naccess key id {}\nsecret access key {}", account.id, key.id, key.secret);
            Ok(())
        }
        Command::Account(AccountCommand::List { data }) => {
            let dir = data.open()?;
            for (account, keys) in dir.credentials()?.list()? {
                let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
                println!("{}\t{}\t{}", account.id, account.name, ids.join(","));
            }
            Ok(())
        }
        Command::Key(KeyCommand::Create { data, account }) => {
            let dir = data.open()?;
            let account = model::AccountId::parse(&account)?;
            let key = dir.credentials()?.create_key(&account)?;
            println!("access key id {}\nsecret access key {}", key.id, key.secret);
            Ok(())
        }
        Command::Vulndb(VulndbCommand::Import(args)) => crate::vulndb::import(args),
        Command::Logs(LogsCommand::Tail(args)) => crate::logs_tail::tail(args).await,
        Command::Status(data) => status(data).await,
        Command::Lb(args) => crate::lb_host::run(args).await,
    }
}

async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let vars: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let config = agent::config::AgentConfig::load(&vars, Some(&args.config))?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let tasks = crate::tracker::Tracker::default();
    tasks.spawn("signal handler", serve::signal_shutdown(shutdown.clone()));
    let stopped = agent::session::run(config, shutdown.clone()).await;
    // The signal handler ends with the token, also when the agent has stopped by itself.
    shutdown.cancel();
    tasks.wait(serve::TASKS_TIMEOUT).await;
    stopped
}

fn env(args: EnvArgs) -> anyhow::Result<()> {
    model::Region::parse(&args.region)?;
    let dir = args.data.open()?;
    let endpoint = dir.endpoint().context("Berth has not been started with this data dir yet: run `berth up` first")?;
    let key = dir.account_key(args.account.as_deref())?;
    println!("export AWS_ENDPOINT_URL={endpoint}");
    // A certificate of its own (self-signed or a private CA) must be trusted explicitly.
    if let Some(ca) = dir.ca_bundle()? {
        println!("export AWS_CA_BUNDLE={}", ca.display());
    }
    println!("export AWS_ACCESS_KEY_ID={}", key.id);
    println!("export AWS_SECRET_ACCESS_KEY={}", key.secret);
    println!("export AWS_DEFAULT_REGION={}", args.region);
    println!("export AWS_REGION={}", args.region);
    Ok(())
}

/// The first access key of `account`, or of the first account.
async fn interrupt(args: InterruptArgs) -> anyhow::Result<()> {
    use aws_api::ecs_extensions::{INTERRUPT_OPERATION, TARGET_PREFIX};
    let body = serde_json::to_vec(&serde_json::json!({ "cluster": args.cluster, "task": args.task }))?;
    let answer = crate::extension::send(crate::extension::Call {
        data: &args.data,
        account: args.account.as_deref(),
        region: &args.region,
        service: "ecs",
        target: format!("{TARGET_PREFIX}.{INTERRUPT_OPERATION}"),
        body,
    })
    .await?;
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    println!("interrupted {}", answer["task"]["taskArn"].as_str().unwrap_or(&args.task));
    Ok(())
}

/// `berth status`: the replicas as the store sees them.
async fn status(data: DataDirArg) -> anyhow::Result<()> {
    let Some(url) = &data.store else {
        let holder = crate::datadir::describe_server(&data.data_dir);
        match holder {
            Some(who) => println!("one server on SQLite in {}: {who}", data.data_dir.display()),
            None => println!("no server runs on {} (SQLite)", data.data_dir.display()),
        }
        return Ok(());
    };
    let r = store::Replicas::read(url).await.with_context(|| format!("reading the replicas of {url}"))?;
    match (r.leading, r.leader.is_empty()) {
        (_, true) => println!("leader:   none yet (no server has taken the store's lease)"),
        (true, false) => {
            let at = if r.endpoint.is_empty() { String::new() } else { format!(", serving at {}", r.endpoint) };
            println!("leader:   {}{at} (lease epoch {}, since {})", r.leader, r.epoch, r.since)
        }
        (false, false) => {
            println!("leader:   none now; the last was {} (lease epoch {}, since {})", r.leader, r.epoch, r.since)
        }
    }
    if r.standbys.is_empty() {
        println!("standbys: none");
    }
    for s in &r.standbys {
        println!("standby:  {s}");
    }
    println!("last change committed: {}", r.last_change);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(args: &[&str]) -> Result<ServerArgs, clap::Error> {
        let cli = Cli::try_parse_from(["berth", "server"].iter().chain(args))?;
        match cli.command {
            Command::Server(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn every_duration_flag_reads_the_same_syntax() {
        let a = server(&[]).unwrap();
        let s = Duration::from_secs;
        assert_eq!(
            (a.agent_timeout, a.lost_instance_grace, a.lifecycle_interval, a.registry_gc_interval),
            (s(30), s(300), s(3600), s(3600))
        );
        assert_eq!(a.stopped_task_retention, s(3600));
        let a = server(&[
            "--agent-timeout",
            "45",
            "--lost-instance-grace",
            "2m",
            "--lifecycle-interval",
            "1d",
            "--registry-gc-interval",
            "90s",
            "--stopped-task-retention",
            "2h",
        ])
        .unwrap();
        assert_eq!(
            (a.agent_timeout, a.lost_instance_grace, a.lifecycle_interval, a.registry_gc_interval),
            (s(45), s(120), s(86_400), s(90))
        );
        assert_eq!(a.stopped_task_retention, s(7200));
        assert!(a.blobs.is_none());
        for flag in ["--agent-timeout", "--registry-gc-interval", "--stopped-task-retention"] {
            assert!(server(&[flag, "0"]).is_err(), "{flag} 0");
            assert!(server(&[flag, "1w"]).is_err(), "{flag} 1w");
        }
    }

    #[test]
    fn blobs_take_an_s3_url() {
        let a = server(&["--blobs", "s3://berth-blobs?endpoint=http://127.0.0.1:9000"]).unwrap();
        assert_eq!(a.blobs.unwrap().bucket(), "berth-blobs");
        for bad in ["/var/lib/blobs", "s3://b?endpoint=127.0.0.1:9000", "s3://b?acl=private"] {
            assert!(server(&["--blobs", bad]).is_err(), "{bad}");
        }
    }
}
