//! Runs one task on Docker: drives its containers towards the desired state, keeps them
//! there, and reports every change as ECS would show it.
//!
//! A task is a small state machine ([`TaskRun`]) driven by four inputs in one loop: the
//! desired state (a watch channel), Docker container events (only cues: every event is
//! followed by `docker inspect`, which is the truth), the completion of Engine calls it
//! started (pull, create, start, stop; each runs concurrently so that a slow call never
//! delays a stop), and timers (dependency timeouts, a slow resync that repairs a missed
//! event). After every input it takes the next steps (`advance`), derives the task's
//! status, and sends a report if anything changed. Everything it does is idempotent: a
//! restarted agent runs the same machine over existing containers and adopts them.
//!
//! An `awsvpc` task has one more container, internal and never reported: its pause
//! container, which holds the task's address. Every other container depends on it (START)
//! and joins its network namespace, so it starts first and stops last; it is removed before
//! the task reports STOPPED, which frees the address. When the control plane sends the
//! task's security group rules, they are installed in that namespace (`firewall`) once
//! the pause container runs and before any other container starts.
//!
//! Only `docker` talks to the Engine; this module never builds a Docker request itself.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use agent_protocol::{
    ContainerReport, ContainerStatus, DesiredStatus, HealthStatus, StopCode, TaskAssignment, TaskReport, TaskStatus,
};
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, FuturesUnordered};
use futures_util::{FutureExt, StreamExt};
use model::ecs::shapes::{
    ContainerCondition, ContainerDefinition, ContainerOverride, NetworkBinding, NetworkMode, Scope, TransportProtocol,
};
use model::Timestamp;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::awsvpc::{self, TaskNetwork, PAUSE_CONTAINER_NAME};
use crate::docker::{
    self, labels, CreateSpec, Docker, DockerError, Health, NetworkSetupError, Observed, PauseSpec, RunState,
    SubnetNetwork, VolumeSpec,
};
use crate::pause::PauseImage;

/// `ECS_IMAGE_PULL_BEHAVIOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullBehavior {
    /// Pull; if the pull fails, use the cached image if there is one.
    #[default]
    Default,
    /// Pull; if the pull fails, the task fails.
    Always,
    /// Pull only if this agent has not pulled the image before (or it was removed since).
    Once,
    /// Pull only if the image is not cached.
    PreferCached,
}

/// How the runner behaves, from the ECS agent's settings.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub instance_arn: String,
    pub pull_behavior: PullBehavior,
    /// `ECS_CONTAINER_STOP_TIMEOUT`: grace between SIGTERM and SIGKILL when a container
    /// has no `stopTimeout` of its own.
    pub stop_timeout: Duration,
    /// `ECS_CONTAINER_START_TIMEOUT`: how long a `docker start` may take, and how long a
    /// dependency without its own `startTimeout` may take to reach its condition.
    pub start_timeout: Duration,
    /// `ECS_DYNAMIC_HOST_PORT_RANGE`: where Docker picks host ports for port mappings
    /// without one; `None` leaves it to Docker's ephemeral range.
    pub dynamic_port_range: Option<(u16, u16)>,
    /// Credentials for images of Berth's own registry; `None` pulls without credentials.
    pub registry_login: Option<std::sync::Arc<crate::registry_login::RegistryLogin>>,
}

impl RunnerConfig {
    /// The ECS agent's defaults: pull behaviour `default`, 30 s stop timeout, 3 min start timeout.
    pub fn new(instance_arn: impl Into<String>) -> Self {
        RunnerConfig {
            instance_arn: instance_arn.into(),
            pull_behavior: PullBehavior::Default,
            stop_timeout: Duration::from_secs(30),
            start_timeout: Duration::from_secs(180),
            dynamic_port_range: None,
            registry_login: None,
        }
    }
}

/// Runs tasks on the local Docker engine. One `Runner` serves all the tasks of an instance.
pub struct Runner {
    docker: Docker,
    config: RunnerConfig,
    /// Images this runner has pulled, for `PullBehavior::Once`.
    pulled: Arc<Mutex<HashSet<String>>>,
    /// Held while an awsvpc task sets up its subnet's network and the pause image, so that
    /// tasks starting together do not race each other to create them.
    awsvpc_setup: Arc<tokio::sync::Mutex<()>>,
}

/// The reason ECS gives a container that the kernel killed for memory.
pub const OOM_REASON: &str = "OutOfMemoryError: Container killed due to memory usage";
/// The task's `stoppedReason` when an essential container exits.
pub const ESSENTIAL_EXITED_REASON: &str = "Essential container in task exited";
/// The task's `stoppedReason` when the pause container of an awsvpc task exits: the task's
/// network namespace is gone with it.
pub const PAUSE_EXITED_REASON: &str =
    "TaskNetworkError: the pause container holding the task's network namespace exited";

/// How often every container is inspected even without events, to repair a missed event.
const RESYNC_EVERY: Duration = Duration::from_secs(15);
/// How long the Engine may keep failing before a task is given up as STOPPED.
const DOCKER_GIVE_UP: Duration = Duration::from_secs(30);

impl Runner {
    /// Connects to the local Docker engine (negotiating the API version).
    pub async fn connect(config: RunnerConfig) -> anyhow::Result<Runner> {
        let docker = Docker::connect().await?;
        Ok(Runner { docker, config, pulled: Arc::default(), awsvpc_setup: Arc::default() })
    }

    /// Names the container instance this runner's containers belong to, once the control
    /// plane has assigned it (registration needs the engine's resources first).
    pub fn set_instance(&mut self, instance_arn: String) {
        self.config.instance_arn = instance_arn;
    }

    /// Drives one task to its desired state and keeps it there until it is STOPPED,
    /// sending a full report on every change. Returns after sending the STOPPED report.
    pub async fn run_task(
        &self,
        assignment: watch::Receiver<TaskAssignment>,
        reports: mpsc::UnboundedSender<TaskReport>,
    ) {
        let first = assignment.borrow().clone();
        let span = tracing::info_span!("task", arn = %first.task_arn);
        TaskRun::new(self, first, reports).run(assignment).instrument(span).await
    }

    /// Task ARNs of the tasks whose containers this instance created, running or not.
    pub async fn discover(&self) -> anyhow::Result<Vec<String>> {
        let found = self.docker.containers_with_labels(&[(labels::INSTANCE, &self.config.instance_arn)]).await?;
        let mut arns: Vec<String> = found.into_iter().filter_map(|c| c.labels.get(labels::TASK_ARN).cloned()).collect();
        arns.sort();
        arns.dedup();
        Ok(arns)
    }

    /// Total CPU units (cores × 1024) and memory in MiB of the engine.
    pub async fn engine_resources(&self) -> anyhow::Result<(i64, i64)> {
        let (cpus, bytes) = self.docker.resources().await?;
        Ok((cpus * 1024, bytes / (1024 * 1024)))
    }

    /// Removes a task's containers (stopping them if they still run) and its task-scoped
    /// volumes. ECS keeps a stopped task's containers for a while; this is the cleanup.
    pub async fn remove_task_containers(&self, task_arn: &str) -> anyhow::Result<()> {
        let wanted = [(labels::INSTANCE, self.config.instance_arn.as_str()), (labels::TASK_ARN, task_arn)];
        for c in self.docker.containers_with_labels(&wanted).await? {
            match self.docker.remove(&c.id).await {
                Ok(()) | Err(DockerError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for v in self.docker.volumes_with_labels(&wanted).await? {
            match self.docker.remove_volume(&v).await {
                Ok(()) | Err(DockerError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Where a task's volume comes from.
#[derive(Debug, Clone)]
enum VolumeSource {
    HostPath(String),
    /// A Docker volume: created for this task, or shared (`autoprovision` creates it when
    /// it is missing; otherwise it must exist).
    Docker {
        spec: VolumeSpec,
        shared: bool,
        autoprovision: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not created yet.
    Waiting,
    /// Created, never started.
    Created,
    /// Running (or being restarted by its restart policy).
    Running,
    Stopped,
}

/// A start condition on another container: ECS's `dependsOn` conditions, plus `Created`,
/// which `volumesFrom` implies (links imply `Start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cond {
    Created,
    Start,
    Complete,
    Success,
    Healthy,
}

impl Cond {
    fn name(self) -> &'static str {
        match self {
            Cond::Created => "CREATED",
            Cond::Start => "START",
            Cond::Complete => "COMPLETE",
            Cond::Success => "SUCCESS",
            Cond::Healthy => "HEALTHY",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Dep {
    on: usize,
    cond: Cond,
}

/// An Engine call in flight for a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Create,
    Start,
    Stop,
    /// Removing an awsvpc task's pause container, the last step of its teardown.
    Remove,
}

#[derive(Debug)]
struct Ctr {
    name: String,
    /// The pause container of an awsvpc task: run like the others, never reported.
    internal: bool,
    /// The definition with the task's overrides applied.
    def: ContainerDefinition,
    essential: bool,
    deps: Vec<Dep>,
    docker_name: String,
    id: Option<String>,
    phase: Phase,
    pending: Option<Pending>,
    /// When it last started running, for dependency timeouts and the restart policy.
    started: Option<Instant>,
    started_at: Option<SystemTime>,
    finished_at: Option<SystemTime>,
    ever_started: bool,
    ever_healthy: bool,
    stop_sent: bool,
    exit_code: Option<i32>,
    reason: Option<String>,
    bindings: Vec<NetworkBinding>,
    health: HealthStatus,
    image_digest: Option<String>,
}

impl Ctr {
    fn new(docker_name: String, def: ContainerDefinition, deps: Vec<Dep>) -> Ctr {
        Ctr {
            name: def.name.clone().unwrap_or_default(),
            internal: false,
            essential: def.essential != Some(false),
            deps,
            docker_name,
            def,
            id: None,
            phase: Phase::Waiting,
            pending: None,
            started: None,
            started_at: None,
            finished_at: None,
            ever_started: false,
            ever_healthy: false,
            stop_sent: false,
            exit_code: None,
            reason: None,
            bindings: vec![],
            health: HealthStatus::Unknown,
            image_digest: None,
        }
    }
}

enum Done {
    Prepared(Result<HashMap<String, String>, String>),
    Created(usize, Result<String, DockerError>),
    Started(usize, Result<(), DockerError>),
    Stopped(usize, Result<(), DockerError>),
    Removed(usize, Result<(), DockerError>),
    /// The security group rules are installed in the task's namespace, or why not.
    Firewall(Result<(), String>),
}

/// Where an awsvpc task's security group rules stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Firewall {
    /// Nothing to enforce (not awsvpc, or the control plane sent no rules).
    None,
    /// To be installed once the pause container runs.
    Wanted,
    Installing,
    Installed,
}

/// Why a container cannot start yet.
enum Readiness {
    Ready,
    Wait,
    Never(String),
}

struct TaskRun<'r> {
    docker: Docker,
    config: &'r RunnerConfig,
    pulled: Arc<Mutex<HashSet<String>>>,
    assignment: TaskAssignment,
    network_mode: NetworkMode,
    /// An awsvpc task's network; its pause container is then the last of `ctrs`.
    awsvpc: Option<Awsvpc>,
    awsvpc_setup: Arc<tokio::sync::Mutex<()>>,
    /// The pause container is gone (or never existed): the task's address is free.
    pause_removed: bool,
    firewall: Firewall,
    volumes: HashMap<String, VolumeSource>,
    ctrs: Vec<Ctr>,
    /// Images pulled and volumes in place; containers may be created.
    prepared: bool,
    stopping: bool,
    status: TaskStatus,
    stop_code: Option<StopCode>,
    stopped_reason: Option<String>,
    pull_started_at: Option<Timestamp>,
    pull_stopped_at: Option<Timestamp>,
    started_at: Option<Timestamp>,
    execution_stopped_at: Option<Timestamp>,
    ops: FuturesUnordered<BoxFuture<'static, Done>>,
    events: Option<BoxStream<'static, Result<docker::Event, DockerError>>>,
    /// Since when Engine calls have been failing, and how many times in a row.
    docker_trouble: Option<(Instant, u32)>,
    /// When to resubscribe to events and resync after an Engine failure.
    retry_at: Option<Instant>,
    reports: mpsc::UnboundedSender<TaskReport>,
    last_report: Option<TaskReport>,
}

impl<'r> TaskRun<'r> {
    fn new(runner: &'r Runner, assignment: TaskAssignment, reports: mpsc::UnboundedSender<TaskReport>) -> Self {
        let def = &assignment.definition;
        let network_mode = def.network_mode.unwrap_or(NetworkMode::Bridge);
        let defs = def.container_definitions.clone().unwrap_or_default();
        let overrides: Vec<ContainerOverride> =
            assignment.overrides.as_ref().and_then(|o| o.container_overrides.clone()).unwrap_or_default();
        let index: HashMap<String, usize> =
            defs.iter().enumerate().map(|(i, d)| (d.name.clone().unwrap_or_default(), i)).collect();
        let mut ctrs: Vec<Ctr> = defs
            .iter()
            .map(|d| {
                let name = d.name.clone().unwrap_or_default();
                let o = overrides.iter().find(|o| o.name.as_deref() == Some(name.as_str()));
                let def = apply_override(d, o);
                let deps = dependencies(&def, &index, network_mode);
                Ctr::new(docker_name(&assignment, &name), def, deps)
            })
            .collect();
        // An awsvpc task whose network and pause image are in order gets its pause
        // container; otherwise `unsupported` fails the task before anything runs.
        let awsvpc = match (network_mode, &assignment.network) {
            (NetworkMode::Awsvpc, Some(n)) => awsvpc::check(n)
                .ok()
                .zip(crate::pause::pause_image().ok())
                .map(|(network, image)| Awsvpc { network, image }),
            _ => None,
        };
        if let Some(Awsvpc { image, .. }) = &awsvpc {
            let pause = ctrs.len();
            for c in &mut ctrs {
                c.deps.push(Dep { on: pause, cond: Cond::Start });
            }
            let def = ContainerDefinition {
                name: Some(PAUSE_CONTAINER_NAME.into()),
                image: Some(image.reference.clone()),
                essential: Some(true),
                // PID 1 without handlers ignores SIGTERM: SIGKILL it at once.
                stop_timeout: Some(0),
                ..Default::default()
            };
            let mut c = Ctr::new(docker_name(&assignment, "internalecspause"), def, vec![]);
            c.internal = true;
            ctrs.push(c);
        }
        TaskRun {
            docker: runner.docker.clone(),
            config: &runner.config,
            pulled: runner.pulled.clone(),
            volumes: task_volumes(&assignment, &runner.config),
            // Without a pause container there is nothing to remove before STOPPED.
            pause_removed: !ctrs.iter().any(|c| c.internal),
            firewall: match &awsvpc {
                Some(a) if a.network.attachment.ingress.is_some() => Firewall::Wanted,
                _ => Firewall::None,
            },
            awsvpc,
            awsvpc_setup: runner.awsvpc_setup.clone(),
            network_mode,
            assignment,
            ctrs,
            prepared: false,
            stopping: false,
            status: TaskStatus::Pending,
            stop_code: None,
            stopped_reason: None,
            pull_started_at: None,
            pull_stopped_at: None,
            started_at: None,
            execution_stopped_at: None,
            ops: FuturesUnordered::new(),
            events: None,
            docker_trouble: None,
            retry_at: None,
            reports,
            last_report: None,
        }
    }

    fn labels(&self) -> [(&'static str, String); 2] {
        [(labels::INSTANCE, self.config.instance_arn.clone()), (labels::TASK_ARN, self.assignment.task_arn.clone())]
    }

    fn subscribe(&mut self) {
        let owned = self.labels();
        let wanted: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // A second of replay covers the moments between this call and the request going out
        // on the first poll; a repeated event only causes one more inspect.
        let since = SystemTime::now() - Duration::from_secs(1);
        self.events = Some(self.docker.events(&wanted, since).boxed());
    }

    async fn run(mut self, mut assignment: watch::Receiver<TaskAssignment>) {
        // Subscribe before looking at containers, so that no change falls between the two.
        self.subscribe();
        if let Some(reason) = unsupported(&self.assignment) {
            self.begin_stop(StopCode::TaskFailedToStart, Some(reason.clone()));
            for c in &mut self.ctrs {
                c.reason = Some(reason.clone());
            }
        } else if let Err(e) = self.adopt().await {
            self.docker_failed(&e.to_string());
        }
        self.on_assignment(assignment.borrow_and_update().clone());
        self.prepare();
        self.step();
        let mut assignment_open = true;
        let mut next_resync = Instant::now() + RESYNC_EVERY;
        while self.status != TaskStatus::Stopped {
            let wake = [Some(next_resync), self.retry_at, self.next_dependency_deadline()].into_iter().flatten().min();
            let wake = wake.unwrap_or(next_resync);
            tokio::select! {
                changed = assignment.changed(), if assignment_open => match changed {
                    Ok(()) => {
                        let a = assignment.borrow_and_update().clone();
                        self.on_assignment(a);
                    }
                    // The owner dropped the sender: the last desired state stands.
                    Err(_) => assignment_open = false,
                },
                event = next_event(&mut self.events) => match event {
                    Some(Ok(e)) => self.on_event(e).await,
                    Some(Err(e)) => self.events_lost(&e.to_string()),
                    None => self.events_lost("the Docker event stream ended"),
                },
                Some(done) = self.ops.next(), if !self.ops.is_empty() => self.on_done(done).await,
                _ = tokio::time::sleep_until(wake.into()) => {
                    let now = Instant::now();
                    if self.retry_at.is_some_and(|t| t <= now) {
                        self.retry_at = None;
                        if self.events.is_none() {
                            self.subscribe();
                        }
                        self.resync().await;
                    }
                    if next_resync <= now {
                        next_resync = now + RESYNC_EVERY;
                        self.resync().await;
                    }
                }
            }
            self.step();
        }
    }

    /// Finds containers this instance already created for the task (an agent restart)
    /// and takes them over as they are.
    async fn adopt(&mut self) -> Result<(), DockerError> {
        let owned = self.labels();
        let wanted: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let found = self.docker.containers_with_labels(&wanted).await?;
        let mut adopted = vec![];
        for f in found {
            let name = f.labels.get(labels::CONTAINER_NAME).cloned().unwrap_or_default();
            let Some(i) = self.ctrs.iter().position(|c| c.name == name) else {
                tracing::warn!(container = %name, id = %f.id, "a container of this task that its definition does not name");
                continue;
            };
            if self.ctrs[i].id.is_some() {
                tracing::warn!(container = %name, id = %f.id, "a second container for the same name; keeping the first");
                continue;
            }
            self.ctrs[i].id = Some(f.id);
            adopted.push(i);
        }
        for i in adopted {
            let id = self.ctrs[i].id.clone().unwrap_or_default();
            let observed = self.docker.inspect(&id).await?;
            self.ctrs[i].docker_name = observed.name.clone();
            self.ctrs[i].phase = Phase::Created;
            match self.docker.image_digest(&observed.image_id).await {
                Ok(d) => self.ctrs[i].image_digest = Some(d),
                Err(DockerError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            tracing::info!(container = %self.ctrs[i].name, id = %id, "adopted an existing container");
            self.observe(i, observed);
        }
        Ok(())
    }

    /// Starts pulling the images of the containers still to be created, and creating the
    /// task's volumes, unless nothing is left to create.
    fn prepare(&mut self) {
        let images: Vec<String> = self
            .ctrs
            .iter()
            .filter(|c| c.phase == Phase::Waiting && !c.internal)
            .filter_map(|c| c.def.image.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // The network and the pause image are needed while the pause container is to be made.
        let network = match &self.awsvpc {
            Some(Awsvpc { network: n, image }) if self.ctrs.iter().any(|c| c.internal && c.phase == Phase::Waiting) => {
                Some(NetworkSetup {
                    lock: self.awsvpc_setup.clone(),
                    image: image.clone(),
                    network: SubnetNetwork {
                        name: n.attachment.docker_network.clone(),
                        subnet_id: n.attachment.subnet_id.clone(),
                        cidr: n.cidr,
                        gateway: n.attachment.gateway,
                    },
                })
            }
            _ => None,
        };
        if self.stopping || (images.is_empty() && network.is_none()) {
            self.prepared = true;
            return;
        }
        self.pull_started_at = Some(Timestamp::now());
        let docker = self.docker.clone();
        let behavior = self.config.pull_behavior;
        let pulled = self.pulled.clone();
        let login = self.config.registry_login.clone();
        let volumes: Vec<VolumeSource> = self.volumes.values().cloned().collect();
        self.ops.push(
            async move {
                if let Some(setup) = network {
                    if let Err(reason) = set_up_network(&docker, &setup).await {
                        return Done::Prepared(Err(reason));
                    }
                }
                Done::Prepared(prepare(&docker, behavior, &pulled, login.as_deref(), &images, &volumes).await)
            }
            .boxed(),
        );
    }

    fn on_assignment(&mut self, a: TaskAssignment) {
        if a.desired_status == DesiredStatus::Stopped {
            self.begin_stop(StopCode::UserInitiated, a.stop_reason.clone());
        }
        self.assignment = a;
    }

    async fn on_event(&mut self, e: docker::Event) {
        self.docker_trouble = None;
        let Some(i) = self.ctrs.iter().position(|c| c.id.as_deref() == Some(e.id.as_str())) else {
            return;
        };
        tracing::debug!(container = %self.ctrs[i].name, action = %e.action, "docker event");
        self.refresh(i).await;
    }

    fn events_lost(&mut self, why: &str) {
        tracing::warn!(%why, "lost the Docker event stream");
        self.events = None;
        self.docker_trouble(why);
    }

    async fn on_done(&mut self, done: Done) {
        match done {
            Done::Prepared(result) => {
                self.pull_stopped_at = Some(Timestamp::now());
                match result {
                    Ok(digests) => {
                        self.prepared = true;
                        for c in &mut self.ctrs {
                            if c.image_digest.is_none() {
                                c.image_digest = c.def.image.as_ref().and_then(|i| digests.get(i).cloned());
                            }
                        }
                    }
                    Err(reason) => {
                        for c in self.ctrs.iter_mut().filter(|c| c.phase == Phase::Waiting) {
                            c.reason = Some(reason.clone());
                        }
                        self.begin_stop(StopCode::TaskFailedToStart, Some(reason));
                    }
                }
            }
            Done::Created(i, result) => {
                self.ctrs[i].pending = None;
                match result {
                    Ok(id) => {
                        tracing::info!(container = %self.ctrs[i].name, %id, "created");
                        self.ctrs[i].id = Some(id);
                        self.ctrs[i].phase = Phase::Created;
                    }
                    Err(e) => self.container_failed(i, format!("CannotCreateContainerError: {e}")),
                }
            }
            Done::Started(i, result) => {
                self.ctrs[i].pending = None;
                match result {
                    Ok(()) => self.refresh(i).await,
                    Err(e) => {
                        // A start that timed out may have happened all the same.
                        let id = self.ctrs[i].id.clone().unwrap_or_default();
                        match self.docker.inspect(&id).await {
                            Ok(o) if o.state == RunState::Running => self.observe(i, o),
                            Ok(o) => {
                                self.ctrs[i].exit_code = o.exit_code;
                                self.container_failed(i, format!("CannotStartContainerError: {e}"));
                            }
                            Err(_) => self.container_failed(i, format!("CannotStartContainerError: {e}")),
                        }
                    }
                }
            }
            Done::Removed(i, result) => {
                self.ctrs[i].pending = None;
                match result {
                    Ok(()) | Err(DockerError::NotFound(_)) => tracing::info!("removed the pause container"),
                    // Never leave the task hanging on it; the cleanup of stopped tasks retries.
                    Err(e) => tracing::warn!(error = %e, "could not remove the pause container"),
                }
                self.pause_removed = true;
            }
            Done::Firewall(result) => match result {
                Ok(()) => {
                    tracing::info!("security group rules installed in the task's network namespace");
                    self.firewall = Firewall::Installed;
                }
                Err(e) => {
                    let reason = format!("TaskNetworkError: cannot enforce the task's security groups: {e}");
                    tracing::warn!(%reason, "firewall failed");
                    let code = if self.status < TaskStatus::Running {
                        StopCode::TaskFailedToStart
                    } else {
                        StopCode::EssentialContainerExited
                    };
                    self.firewall = Firewall::Wanted;
                    self.begin_stop(code, Some(reason));
                }
            },
            Done::Stopped(i, result) => {
                self.ctrs[i].pending = None;
                if let Err(e) = &result {
                    tracing::warn!(container = %self.ctrs[i].name, error = %e, "docker stop failed");
                }
                self.refresh(i).await;
                if result.is_err() && self.ctrs[i].phase != Phase::Stopped {
                    // Never leave a task hanging on a container the engine cannot stop.
                    let e = result.err().map(|e| e.to_string()).unwrap_or_default();
                    let c = &mut self.ctrs[i];
                    c.phase = Phase::Stopped;
                    c.reason.get_or_insert(format!("DockerStateError: could not stop the container: {e}"));
                }
            }
        }
    }

    /// A container that could not be created or started: it is STOPPED with `reason`, and
    /// if it is essential, the task fails to start.
    fn container_failed(&mut self, i: usize, reason: String) {
        tracing::warn!(container = %self.ctrs[i].name, %reason, "container failed");
        let c = &mut self.ctrs[i];
        c.phase = Phase::Stopped;
        c.reason = Some(reason.clone());
        if c.essential {
            let code = if self.status < TaskStatus::Running {
                StopCode::TaskFailedToStart
            } else {
                StopCode::EssentialContainerExited
            };
            self.begin_stop(code, Some(reason));
        }
    }

    /// Inspects container `i` and takes in what Docker says.
    async fn refresh(&mut self, i: usize) {
        let Some(id) = self.ctrs[i].id.clone() else { return };
        match self.docker.inspect(&id).await {
            Ok(o) => {
                self.docker_trouble = None;
                self.observe(i, o);
            }
            Err(DockerError::NotFound(_)) => {
                if self.ctrs[i].phase != Phase::Stopped {
                    self.ctrs[i].phase = Phase::Stopped;
                    self.ctrs[i].reason.get_or_insert("DockerStateError: the container was removed".into());
                    self.after_exit(i);
                }
            }
            Err(e) => self.docker_trouble(&e.to_string()),
        }
    }

    async fn resync(&mut self) {
        for i in 0..self.ctrs.len() {
            if self.ctrs[i].phase != Phase::Stopped {
                self.refresh(i).await;
                // One failure is enough to know; the retry comes with backoff.
                if self.retry_at.is_some() {
                    return;
                }
            }
        }
    }

    fn observe(&mut self, i: usize, o: Observed) {
        let network_mode = self.network_mode;
        let c = &mut self.ctrs[i];
        if c.phase == Phase::Stopped {
            return;
        }
        match o.state {
            RunState::Created => {}
            RunState::Running => {
                if c.phase != Phase::Running || c.started_at != o.started_at {
                    // Started, or restarted by its restart policy.
                    c.phase = Phase::Running;
                    c.started = Some(Instant::now());
                    c.ever_started = true;
                }
                c.exit_code = None;
                c.bindings = bindings(network_mode, &c.def, &o.ports);
                // A stopped container's health reads `unhealthy` in Docker; ECS keeps the
                // last health seen while it ran, so only a running container updates it.
                c.health = match o.health {
                    Some(Health::Healthy) => HealthStatus::Healthy,
                    Some(Health::Unhealthy) => HealthStatus::Unhealthy,
                    Some(Health::Starting) | None => HealthStatus::Unknown,
                };
                c.ever_healthy |= c.health == HealthStatus::Healthy;
                c.started_at = o.started_at.or(c.started_at);
            }
            RunState::Exited => {
                // A restart is under way; its completion inspects again.
                if c.pending == Some(Pending::Start) {
                    return;
                }
                c.ever_started |= o.started_at.is_some();
                c.started_at = o.started_at.or(c.started_at);
                c.finished_at = o.finished_at;
                c.exit_code = o.exit_code;
                if o.oom_killed {
                    c.reason = Some(OOM_REASON.into());
                } else if let (false, Some(e)) = (c.ever_started, &o.error) {
                    c.reason.get_or_insert(format!("CannotStartContainerError: {e}"));
                }
                if self.should_restart(i) {
                    let c = &mut self.ctrs[i];
                    tracing::info!(container = %c.name, exit_code = ?c.exit_code, "restarting per the restart policy");
                    c.pending = Some(Pending::Start);
                    let (docker, id, limit) = (self.docker.clone(), o.id, self.config.start_timeout);
                    self.ops.push(async move { Done::Started(i, docker.start(&id, limit).await) }.boxed());
                    return;
                }
                self.ctrs[i].phase = Phase::Stopped;
                tracing::info!(container = %self.ctrs[i].name, exit_code = ?o.exit_code, oom = o.oom_killed, "exited");
                self.after_exit(i);
            }
        }
    }

    /// An essential container that stops ends the task.
    fn after_exit(&mut self, i: usize) {
        if self.ctrs[i].internal {
            let code = if self.status < TaskStatus::Running {
                StopCode::TaskFailedToStart
            } else {
                StopCode::EssentialContainerExited
            };
            self.begin_stop(code, Some(PAUSE_EXITED_REASON.into()));
        } else if self.ctrs[i].essential {
            self.begin_stop(StopCode::EssentialContainerExited, Some(ESSENTIAL_EXITED_REASON.into()));
        }
    }

    /// ECS's container restart policy: restart unless the exit code is ignored, the task is
    /// stopping, or the container ran for less than `restartAttemptPeriod` (300 s by default).
    fn should_restart(&self, i: usize) -> bool {
        let c = &self.ctrs[i];
        let Some(policy) = c.def.restart_policy.as_ref().filter(|p| p.enabled == Some(true)) else {
            return false;
        };
        if self.stopping || c.stop_sent || c.id.is_none() {
            return false;
        }
        if c.exit_code.is_some_and(|code| policy.ignored_exit_codes.iter().flatten().any(|x| *x == code)) {
            return false;
        }
        let period = Duration::from_secs(policy.restart_attempt_period.unwrap_or(300).max(0) as u64);
        c.started.is_some_and(|s| s.elapsed() >= period)
    }

    /// The first cause of a stop wins: its code and reason stay.
    fn begin_stop(&mut self, code: StopCode, reason: Option<String>) {
        if self.stopping {
            return;
        }
        tracing::info!(code = code.as_str(), reason = ?reason, "stopping the task");
        self.stopping = true;
        self.stop_code = Some(code);
        self.stopped_reason = reason;
    }

    /// An Engine call failed: resubscribe and resync with backoff, and when the Engine has
    /// failed for [`DOCKER_GIVE_UP`], give the task up as STOPPED rather than leave it hanging.
    fn docker_trouble(&mut self, why: &str) {
        let now = Instant::now();
        let (since, count) = self.docker_trouble.unwrap_or((now, 0));
        self.docker_trouble = Some((since, count + 1));
        if now.duration_since(since) >= DOCKER_GIVE_UP {
            self.docker_failed(why);
            return;
        }
        let backoff = Duration::from_millis(250 << count.min(4));
        self.retry_at.get_or_insert(now + backoff);
    }

    fn docker_failed(&mut self, why: &str) {
        tracing::error!(%why, "giving the task up: the Docker engine fails");
        let reason = format!("DockerError: {why}");
        let code = if self.status < TaskStatus::Running {
            StopCode::TaskFailedToStart
        } else {
            StopCode::EssentialContainerExited
        };
        self.begin_stop(code, Some(reason.clone()));
        self.stopped_reason.get_or_insert(reason.clone());
        for c in self.ctrs.iter_mut().filter(|c| c.phase != Phase::Stopped) {
            c.phase = Phase::Stopped;
            c.reason.get_or_insert(reason.clone());
        }
    }

    /// Takes every step the state allows now, then reports.
    fn step(&mut self) {
        self.advance();
        self.update_status();
        let report = self.report();
        if self.last_report.as_ref() != Some(&report) {
            tracing::debug!(status = report.last_status.as_str(), "report");
            // A closed channel means nobody listens any more; the task still runs its course.
            let _ = self.reports.send(report.clone());
            self.last_report = Some(report);
        }
    }

    fn advance(&mut self) {
        if self.stopping {
            for i in 0..self.ctrs.len() {
                let c = &self.ctrs[i];
                if c.pending.is_some() {
                    continue;
                }
                match c.phase {
                    Phase::Waiting | Phase::Created => self.ctrs[i].phase = Phase::Stopped,
                    Phase::Running if !c.stop_sent && self.dependents_stopped(i) => self.stop(i),
                    _ => {}
                }
            }
            self.remove_pause();
            return;
        }
        if !self.prepared {
            return;
        }
        self.install_firewall();
        for i in 0..self.ctrs.len() {
            let c = &self.ctrs[i];
            if c.pending.is_some() || !matches!(c.phase, Phase::Waiting | Phase::Created) {
                continue;
            }
            match self.readiness(i) {
                Readiness::Wait => {}
                Readiness::Never(reason) => {
                    self.ctrs[i].reason = Some(reason.clone());
                    self.begin_stop(StopCode::TaskFailedToStart, Some(reason));
                    return self.advance();
                }
                Readiness::Ready if self.ctrs[i].phase == Phase::Waiting => self.create(i),
                Readiness::Ready => self.start(i),
            }
        }
    }

    fn create(&mut self, i: usize) {
        let c = &self.ctrs[i];
        if c.internal {
            return self.create_pause(i);
        }
        let mut binds = vec![];
        for mp in c.def.mount_points.iter().flatten() {
            let volume = mp.source_volume.as_deref().unwrap_or_default();
            let source = match self.volumes.get(volume) {
                Some(VolumeSource::HostPath(p)) => p.clone(),
                Some(VolumeSource::Docker { spec, .. }) => spec.name.clone(),
                None => {
                    let reason = format!("CannotCreateContainerError: mount point refers to unknown volume '{volume}'");
                    return self.container_failed(i, reason);
                }
            };
            let ro = if mp.read_only == Some(true) { ":ro" } else { "" };
            binds.push(format!("{source}:{}{ro}", mp.container_path.as_deref().unwrap_or_default()));
        }
        let by_name = |n: &str| self.ctrs.iter().find(|o| o.name == n).map(|o| o.docker_name.clone());
        let links = if self.network_mode == NetworkMode::Bridge {
            c.def
                .links
                .iter()
                .flatten()
                .filter_map(|l| {
                    let (target, alias) = l.split_once(':').unwrap_or((l, l));
                    by_name(target).map(|d| format!("{d}:{alias}"))
                })
                .collect()
        } else {
            vec![]
        };
        let volumes_from = c
            .def
            .volumes_from
            .iter()
            .flatten()
            .filter_map(|vf| {
                let source = by_name(vf.source_container.as_deref().unwrap_or_default())?;
                Some(if vf.read_only == Some(true) { format!("{source}:ro") } else { source })
            })
            .collect();
        let mut labels: HashMap<String, String> =
            c.def.docker_labels.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.extend(self.container_labels(i));
        let body = docker::create_body(&CreateSpec {
            def: &c.def,
            network_mode: self.network_mode,
            network_container: self.ctrs.iter().find(|c| c.internal).and_then(|c| c.id.clone()),
            labels,
            binds,
            links,
            volumes_from,
            stop_timeout: self.stop_timeout(i),
            dynamic_port_range: self.config.dynamic_port_range,
        });
        let (docker, name) = (self.docker.clone(), c.docker_name.clone());
        self.ctrs[i].pending = Some(Pending::Create);
        self.ops.push(async move { Done::Created(i, docker.create(&name, body).await) }.boxed());
    }

    /// The labels that tie container `i` to this task and instance (adoption finds
    /// containers by them).
    fn container_labels(&self, i: usize) -> [(String, String); 6] {
        [
            // The task's cluster, as the ECS agent labels it (for Fargate capacity, not the
            // pool the agent registered in).
            (labels::CLUSTER.to_string(), self.assignment.cluster_arn.clone()),
            (labels::TASK_ARN.to_string(), self.assignment.task_arn.clone()),
            (labels::CONTAINER_NAME.to_string(), self.ctrs[i].name.clone()),
            (labels::FAMILY.to_string(), self.assignment.family.clone()),
            (labels::REVISION.to_string(), self.assignment.revision.to_string()),
            (labels::INSTANCE.to_string(), self.config.instance_arn.clone()),
        ]
    }

    fn create_pause(&mut self, i: usize) {
        let Some(Awsvpc { network: n, image }) = &self.awsvpc else { return };
        let spec = PauseSpec {
            image: image.reference.clone(),
            network: n.attachment.docker_network.clone(),
            ipv4: n.attachment.private_ipv4_address,
            mac: n.attachment.mac_address.clone(),
            labels: self.container_labels(i).into_iter().collect(),
        };
        let (docker, name) = (self.docker.clone(), self.ctrs[i].docker_name.clone());
        self.ctrs[i].pending = Some(Pending::Create);
        self.ops.push(async move { Done::Created(i, docker.create_pause(&name, &spec).await) }.boxed());
    }

    /// Installs the security group rules in the task's namespace once the pause container
    /// runs (again after an adoption: installing is idempotent).
    fn install_firewall(&mut self) {
        if self.firewall != Firewall::Wanted {
            return;
        }
        let Some(pause) = self.ctrs.iter().find(|c| c.internal && c.phase == Phase::Running && c.pending.is_none())
        else {
            return;
        };
        let (Some(id), Some(Awsvpc { network, .. })) = (pause.id.clone(), &self.awsvpc) else { return };
        let rules =
            crate::firewall::ruleset(&self.assignment.task_arn, network.attachment.ingress.as_deref().unwrap_or(&[]));
        let docker = self.docker.clone();
        self.firewall = Firewall::Installing;
        self.ops.push(
            async move {
                let result = match docker.pid(&id).await {
                    Ok(Some(pid)) => crate::firewall::apply(pid, &rules).await,
                    Ok(None) => Err("the pause container does not run".into()),
                    Err(e) => Err(format!("cannot inspect the pause container: {e}")),
                };
                Done::Firewall(result)
            }
            .boxed(),
        );
    }

    /// Removes the pause container once it has stopped, which frees the task's address.
    /// The subnet's network stays: other tasks use it.
    fn remove_pause(&mut self) {
        if self.pause_removed {
            return;
        }
        let Some(i) = self.ctrs.iter().position(|c| c.internal) else { return };
        let c = &self.ctrs[i];
        if c.phase != Phase::Stopped || c.pending.is_some() {
            return;
        }
        let Some(id) = c.id.clone() else {
            self.pause_removed = true;
            return;
        };
        let docker = self.docker.clone();
        self.ctrs[i].pending = Some(Pending::Remove);
        self.ops.push(async move { Done::Removed(i, docker.remove(&id).await) }.boxed());
    }

    fn start(&mut self, i: usize) {
        let Some(id) = self.ctrs[i].id.clone() else { return };
        let (docker, limit) = (self.docker.clone(), self.config.start_timeout);
        self.ctrs[i].pending = Some(Pending::Start);
        self.ops.push(async move { Done::Started(i, docker.start(&id, limit).await) }.boxed());
    }

    fn stop(&mut self, i: usize) {
        let Some(id) = self.ctrs[i].id.clone() else { return };
        let (docker, grace) = (self.docker.clone(), self.stop_timeout(i));
        tracing::info!(container = %self.ctrs[i].name, ?grace, "stopping");
        self.ctrs[i].stop_sent = true;
        self.ctrs[i].pending = Some(Pending::Stop);
        self.ops.push(async move { Done::Stopped(i, docker.stop(&id, grace).await) }.boxed());
    }

    fn stop_timeout(&self, i: usize) -> Duration {
        match self.ctrs[i].def.stop_timeout {
            Some(s) if s >= 0 => Duration::from_secs(s as u64),
            _ => self.config.stop_timeout,
        }
    }

    fn start_timeout(&self, i: usize) -> Duration {
        match self.ctrs[i].def.start_timeout {
            Some(s) if s > 0 => Duration::from_secs(s as u64),
            _ => self.config.start_timeout,
        }
    }

    /// Containers stop in the reverse order of their dependencies: one that others depend
    /// on (dependsOn, links, volumesFrom) stops after them.
    fn dependents_stopped(&self, i: usize) -> bool {
        self.ctrs.iter().all(|c| c.phase == Phase::Stopped || !c.deps.iter().any(|d| d.on == i))
    }

    fn readiness(&self, i: usize) -> Readiness {
        let me = &self.ctrs[i].name;
        let creating = self.ctrs[i].phase == Phase::Waiting;
        for dep in &self.ctrs[i].deps {
            // Joining the pause container's namespace needs it to exist at create and to
            // run at start, so containers are created while it starts.
            let dep = match dep.on {
                on if creating && self.ctrs[on].internal => &Dep { on, cond: Cond::Created },
                _ => dep,
            };
            if self.met(*dep) {
                continue;
            }
            let d = &self.ctrs[dep.on];
            let stopped = d.phase == Phase::Stopped;
            let cond = dep.cond.name();
            let never = |why: String| {
                Readiness::Never(format!(
                    "DependencyError: container {me} depends on container {} reaching {cond}, but {why}",
                    d.name
                ))
            };
            if stopped {
                return match (dep.cond, d.exit_code) {
                    (Cond::Success, Some(code)) => never(format!("it exited with code {code}")),
                    (Cond::Healthy, _) if d.def.health_check.is_none() => never("it has no health check".into()),
                    (Cond::Healthy, _) => never("it stopped before it became healthy".into()),
                    _ => never("it stopped without having run".into()),
                };
            }
            if let (Cond::Complete | Cond::Success | Cond::Healthy, Some(s)) = (dep.cond, d.started) {
                let limit = self.start_timeout(dep.on);
                if s.elapsed() >= limit {
                    return never(format!("it did not within its start timeout of {}s", limit.as_secs()));
                }
            }
            return Readiness::Wait;
        }
        Readiness::Ready
    }

    fn met(&self, dep: Dep) -> bool {
        let d = &self.ctrs[dep.on];
        let stopped = d.phase == Phase::Stopped;
        match dep.cond {
            Cond::Created => d.id.is_some() && d.pending != Some(Pending::Create),
            // The task's address is open to others only once its rules are in place.
            Cond::Start if d.internal => {
                d.ever_started && matches!(self.firewall, Firewall::None | Firewall::Installed)
            }
            Cond::Start => d.ever_started,
            Cond::Complete => stopped && d.ever_started,
            Cond::Success => stopped && d.exit_code == Some(0),
            Cond::Healthy => d.ever_healthy,
        }
    }

    /// The earliest moment at which a dependency wait times out.
    fn next_dependency_deadline(&self) -> Option<Instant> {
        if self.stopping {
            return None;
        }
        self.ctrs
            .iter()
            .filter(|c| c.pending.is_none() && matches!(c.phase, Phase::Waiting | Phase::Created))
            .flat_map(|c| c.deps.iter())
            .filter(|d| matches!(d.cond, Cond::Complete | Cond::Success | Cond::Healthy) && !self.met(**d))
            .filter_map(|d| self.ctrs[d.on].started.map(|s| s + self.start_timeout(d.on)))
            .min()
    }

    fn update_status(&mut self) {
        // An awsvpc task is STOPPED once its address is free again.
        let all_stopped = self.ctrs.iter().all(|c| c.phase == Phase::Stopped) && self.pause_removed;
        let computed = if all_stopped {
            TaskStatus::Stopped
        } else if self.stopping {
            TaskStatus::Stopping
        } else if self.ctrs.iter().all(|c| c.ever_started) {
            TaskStatus::Running
        } else {
            TaskStatus::Pending
        };
        // Status only moves forward.
        if computed <= self.status {
            return;
        }
        if computed >= TaskStatus::Running && self.started_at.is_none() && self.ctrs.iter().all(|c| c.ever_started) {
            // Docker's own start times, so an adopted task keeps its real start.
            let latest = self.ctrs.iter().filter(|c| !c.internal).filter_map(|c| c.started_at).max();
            self.started_at = Some(latest.map(Timestamp::from_system).unwrap_or_else(Timestamp::now));
        }
        if computed == TaskStatus::Stopped {
            let latest = self.ctrs.iter().filter(|c| !c.internal).filter_map(|c| c.finished_at).max();
            self.execution_stopped_at = Some(latest.map(Timestamp::from_system).unwrap_or_else(Timestamp::now));
        }
        self.status = computed;
    }

    fn report(&self) -> TaskReport {
        TaskReport {
            task_arn: self.assignment.task_arn.clone(),
            last_status: self.status,
            containers: self
                .ctrs
                .iter()
                .filter(|c| !c.internal)
                .map(|c| ContainerReport {
                    name: c.name.clone(),
                    last_status: match c.phase {
                        Phase::Waiting | Phase::Created => ContainerStatus::Pending,
                        Phase::Running => ContainerStatus::Running,
                        Phase::Stopped => ContainerStatus::Stopped,
                    },
                    runtime_id: c.id.clone(),
                    exit_code: c.exit_code,
                    reason: c.reason.clone(),
                    network_bindings: c.bindings.clone(),
                    health_status: c.health,
                    image_digest: c.image_digest.clone(),
                })
                .collect(),
            health_status: self.task_health(),
            stop_code: self.stop_code,
            stopped_reason: self.stopped_reason.clone(),
            pull_started_at: self.pull_started_at,
            pull_stopped_at: self.pull_stopped_at,
            started_at: self.started_at,
            execution_stopped_at: self.execution_stopped_at,
        }
    }

    /// ECS: unhealthy if any essential container with a health check is; healthy if all of
    /// them are; unknown otherwise (also when no essential container has a health check).
    fn task_health(&self) -> HealthStatus {
        let checked: Vec<&Ctr> = self.ctrs.iter().filter(|c| c.essential && c.def.health_check.is_some()).collect();
        if checked.iter().any(|c| c.health == HealthStatus::Unhealthy) {
            HealthStatus::Unhealthy
        } else if !checked.is_empty() && checked.iter().all(|c| c.health == HealthStatus::Healthy) {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unknown
        }
    }
}

/// The next event, or never when there is no subscription (so `select!` waits on the rest).
async fn next_event(
    events: &mut Option<BoxStream<'static, Result<docker::Event, DockerError>>>,
) -> Option<Result<docker::Event, DockerError>> {
    match events {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Pulls images as the pull behaviour says and puts the task's volumes in place. Returns
/// each image's digest, or the reason the task cannot start.
async fn prepare(
    docker: &Docker,
    behavior: PullBehavior,
    pulled: &Mutex<HashSet<String>>,
    login: Option<&crate::registry_login::RegistryLogin>,
    images: &[String],
    volumes: &[VolumeSource],
) -> Result<HashMap<String, String>, String> {
    let pull_error = |e: &dyn std::fmt::Display| format!("CannotPullContainerError: {e}");
    let mut digests = HashMap::new();
    for image in images {
        let cached = match docker.image_digest(image).await {
            Ok(_) => true,
            Err(DockerError::NotFound(_)) => false,
            Err(e) => return Err(pull_error(&e)),
        };
        let pulled_before = pulled.lock().map(|p| p.contains(image)).unwrap_or(false);
        let must_pull = match behavior {
            PullBehavior::Default | PullBehavior::Always => true,
            PullBehavior::Once => !(cached && pulled_before),
            PullBehavior::PreferCached => !cached,
        };
        if must_pull {
            let credentials = match login {
                Some(l) => l.credentials_for(image).await.map_err(|e| pull_error(&e))?,
                None => None,
            };
            match docker.pull(image, credentials).await {
                Ok(()) => {
                    if let Ok(mut p) = pulled.lock() {
                        p.insert(image.clone());
                    }
                }
                Err(e) if behavior == PullBehavior::Default && cached => {
                    tracing::warn!(%image, error = %e, "pull failed; using the cached image");
                }
                Err(e) => return Err(pull_error(&e)),
            }
        }
        match docker.image_digest(image).await {
            Ok(d) => digests.insert(image.clone(), d),
            Err(e) => return Err(pull_error(&e)),
        };
    }
    for v in volumes {
        let VolumeSource::Docker { spec, shared, autoprovision } = v else { continue };
        let volume_error = |e: &dyn std::fmt::Display| format!("CannotCreateVolumeError: volume {}: {e}", spec.name);
        if *shared && !*autoprovision {
            match docker.volume_exists(&spec.name).await {
                Ok(true) => continue,
                Ok(false) => return Err(volume_error(&"the shared volume does not exist and autoprovision is off")),
                Err(e) => return Err(volume_error(&e)),
            }
        }
        if let Err(e) = docker.ensure_volume(spec).await {
            return Err(volume_error(&e));
        }
    }
    Ok(digests)
}

/// An awsvpc task's checked network attachment and the pause image for this machine.
#[derive(Debug, Clone)]
struct Awsvpc {
    network: TaskNetwork,
    image: PauseImage,
}

/// What an awsvpc task needs before its pause container can be created.
struct NetworkSetup {
    lock: Arc<tokio::sync::Mutex<()>>,
    image: PauseImage,
    network: SubnetNetwork,
}

/// Puts the subnet's Docker network and the pause image in place, or says why not.
async fn set_up_network(docker: &Docker, setup: &NetworkSetup) -> Result<(), String> {
    let _one_at_a_time = setup.lock.lock().await;
    let name = &setup.network.name;
    docker.ensure_subnet_network(&setup.network).await.map_err(|e| match e {
        NetworkSetupError::Docker(e) => {
            format!("ResourceInitializationError: cannot create the Docker network {name}: {e}")
        }
        e => format!("ResourceInitializationError: {e}"),
    })?;
    docker.ensure_pause_image(&setup.image).await.map_err(|e| {
        format!("ResourceInitializationError: cannot import the pause image {}: {e}", setup.image.reference)
    })
}

/// Features this agent cannot honour; running without them would run something else
/// than the user asked for, so the task fails to start instead.
fn unsupported(a: &TaskAssignment) -> Option<String> {
    let def = &a.definition;
    let fail = |what: &str| Some(format!("CannotCreateContainerError: {what} is not supported by this agent"));
    if def.network_mode == Some(NetworkMode::Awsvpc) {
        let Some(network) = &a.network else {
            return fail("network mode awsvpc without a network attachment from the control plane");
        };
        if let Err(e) = awsvpc::check(network) {
            return Some(format!("ResourceInitializationError: the task's network attachment is invalid: {e}"));
        }
        if let Err(e) = crate::pause::pause_image() {
            return Some(format!("ResourceInitializationError: {e}"));
        }
        if let Err(e) = crate::firewall::check(network.ingress.as_deref().unwrap_or(&[])) {
            return Some(format!("ResourceInitializationError: {e}"));
        }
    }
    for v in def.volumes.iter().flatten() {
        if v.efs_volume_configuration.is_some() {
            return fail("an EFS volume");
        }
        if v.fsx_windows_file_server_volume_configuration.is_some() || v.s3files_volume_configuration.is_some() {
            return fail("this volume type");
        }
    }
    for c in def.container_definitions.iter().flatten() {
        if c.secrets.as_ref().is_some_and(|s| !s.is_empty()) {
            return fail("secrets");
        }
        if c.environment_files.as_ref().is_some_and(|s| !s.is_empty()) {
            return fail("environmentFiles");
        }
    }
    None
}

/// The definition with a container override applied: command, cpu and memory replace;
/// environment variables merge over the definition's by name.
fn apply_override(def: &ContainerDefinition, o: Option<&ContainerOverride>) -> ContainerDefinition {
    let mut d = def.clone();
    let Some(o) = o else { return d };
    if o.command.is_some() {
        d.command = o.command.clone();
    }
    if let Some(env) = &o.environment {
        let merged = d.environment.get_or_insert_with(Vec::new);
        for kv in env {
            match merged.iter_mut().find(|m| m.name == kv.name) {
                Some(m) => m.value = kv.value.clone(),
                None => merged.push(kv.clone()),
            }
        }
    }
    d.cpu = o.cpu.or(d.cpu);
    d.memory = o.memory.or(d.memory);
    d.memory_reservation = o.memory_reservation.or(d.memory_reservation);
    d
}

/// dependsOn, plus what links (the target must run) and volumesFrom (the source must
/// exist) imply.
fn dependencies(def: &ContainerDefinition, index: &HashMap<String, usize>, mode: NetworkMode) -> Vec<Dep> {
    let mut deps = vec![];
    for d in def.depends_on.iter().flatten() {
        let Some(&on) = d.container_name.as_ref().and_then(|n| index.get(n)) else { continue };
        let cond = match d.condition {
            Some(ContainerCondition::Complete) => Cond::Complete,
            Some(ContainerCondition::Success) => Cond::Success,
            Some(ContainerCondition::Healthy) => Cond::Healthy,
            Some(ContainerCondition::Start) | None => Cond::Start,
        };
        deps.push(Dep { on, cond });
    }
    if mode == NetworkMode::Bridge {
        for l in def.links.iter().flatten() {
            if let Some(&on) = index.get(l.split(':').next().unwrap_or_default()) {
                deps.push(Dep { on, cond: Cond::Start });
            }
        }
    }
    for vf in def.volumes_from.iter().flatten() {
        if let Some(&on) = vf.source_container.as_ref().and_then(|n| index.get(n)) {
            deps.push(Dep { on, cond: Cond::Created });
        }
    }
    deps
}

/// `ecs-<family>-<revision>-<container>-<random hex>`, as the ECS agent names containers.
fn docker_name(a: &TaskAssignment, container: &str) -> String {
    format!("ecs-{}-{}-{container}-{:016x}{:04x}", a.family, a.revision, rand::random::<u64>(), rand::random::<u16>())
}

/// The task's volumes by name. Docker volumes scoped to the task (and volumes with neither
/// a host path nor a Docker configuration, which ECS makes Docker-managed) get a name
/// derived from the task id, so that a restarted agent finds the same ones.
fn task_volumes(a: &TaskAssignment, config: &RunnerConfig) -> HashMap<String, VolumeSource> {
    let task_id = a.task_arn.rsplit('/').next().unwrap_or_default();
    let task_labels = HashMap::from([
        (labels::CLUSTER.to_string(), a.cluster_arn.clone()),
        (labels::TASK_ARN.to_string(), a.task_arn.clone()),
        (labels::INSTANCE.to_string(), config.instance_arn.clone()),
    ]);
    let mut out = HashMap::new();
    for v in a.definition.volumes.iter().flatten() {
        let name = v.name.clone().unwrap_or_default();
        let task_scoped = |driver, driver_opts, mut extra: HashMap<String, String>| {
            extra.extend(task_labels.clone());
            VolumeSource::Docker {
                spec: VolumeSpec {
                    name: format!("ecs-{}-{}-{name}-{task_id}", a.family, a.revision),
                    driver,
                    driver_opts,
                    labels: extra,
                },
                shared: false,
                autoprovision: true,
            }
        };
        let source = match (&v.host, &v.docker_volume_configuration) {
            (Some(h), _) if h.source_path.is_some() => {
                VolumeSource::HostPath(h.source_path.clone().unwrap_or_default())
            }
            (_, Some(dv)) => {
                let driver = dv.driver.clone();
                let opts: HashMap<String, String> =
                    dv.driver_opts.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
                let extra: HashMap<String, String> =
                    dv.labels.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
                if dv.scope == Some(Scope::Shared) {
                    VolumeSource::Docker {
                        spec: VolumeSpec { name: name.clone(), driver, driver_opts: opts, labels: extra },
                        shared: true,
                        autoprovision: dv.autoprovision == Some(true),
                    }
                } else {
                    task_scoped(driver, opts, extra)
                }
            }
            _ => task_scoped(None, HashMap::new(), HashMap::new()),
        };
        out.insert(name, source);
    }
    out
}

/// What ECS reports as network bindings: bridge ports as Docker published them; in host
/// mode the container ports themselves; none in `none` mode.
fn bindings(
    mode: NetworkMode,
    def: &ContainerDefinition,
    published: &[(i32, TransportProtocol, i32)],
) -> Vec<NetworkBinding> {
    let binding = |container: i32, protocol: TransportProtocol, host: i32| NetworkBinding {
        bind_ip: Some("0.0.0.0".into()),
        container_port: Some(container),
        host_port: Some(host),
        protocol: Some(protocol),
        ..Default::default()
    };
    match mode {
        NetworkMode::Bridge => published.iter().map(|(c, p, h)| binding(*c, *p, *h)).collect(),
        NetworkMode::Host => def
            .port_mappings
            .iter()
            .flatten()
            .flat_map(|pm| {
                let protocol = pm.protocol.unwrap_or(TransportProtocol::Tcp);
                let ports = match (pm.container_port, pm.container_port_range.as_deref()) {
                    (Some(p), _) => vec![p],
                    (None, Some(r)) => docker::port_range(r),
                    (None, None) => vec![],
                };
                ports.into_iter().map(move |p| binding(p, protocol, p))
            })
            .collect(),
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ecs::shapes::{ContainerDependency, KeyValuePair, VolumeFrom};

    fn kv(k: &str, v: &str) -> KeyValuePair {
        KeyValuePair { name: Some(k.into()), value: Some(v.into()) }
    }

    #[test]
    fn overrides_replace_command_and_merge_environment() {
        let def = ContainerDefinition {
            command: Some(vec!["a".into()]),
            environment: Some(vec![kv("A", "1"), kv("B", "2")]),
            memory: Some(64),
            ..Default::default()
        };
        let o = ContainerOverride {
            command: Some(vec!["b".into()]),
            environment: Some(vec![kv("B", "3"), kv("C", "4")]),
            memory: Some(128),
            ..Default::default()
        };
        let d = apply_override(&def, Some(&o));
        assert_eq!(d.command, Some(vec!["b".to_string()]));
        assert_eq!(d.environment, Some(vec![kv("A", "1"), kv("B", "3"), kv("C", "4")]));
        assert_eq!(d.memory, Some(128));
    }

    #[test]
    fn links_and_volumes_from_are_dependencies() {
        let index = HashMap::from([("db".to_string(), 0), ("data".to_string(), 1)]);
        let def = ContainerDefinition {
            links: Some(vec!["db:database".into()]),
            volumes_from: Some(vec![VolumeFrom { source_container: Some("data".into()), read_only: None }]),
            depends_on: Some(vec![ContainerDependency {
                container_name: Some("data".into()),
                condition: Some(ContainerCondition::Success),
            }]),
            ..Default::default()
        };
        let deps = dependencies(&def, &index, NetworkMode::Bridge);
        let pairs: Vec<(usize, Cond)> = deps.iter().map(|d| (d.on, d.cond)).collect();
        assert_eq!(pairs, vec![(1, Cond::Success), (0, Cond::Start), (1, Cond::Created)]);
        assert_eq!(dependencies(&def, &index, NetworkMode::Host).len(), 2, "links exist only in bridge mode");
    }
}
