//! One task's run: the loop that takes in its inputs, takes the next steps the rules
//! allow, and reports every change.
//!
//! A task is a small state machine ([`TaskRun`]) driven by four inputs in one loop: the
//! desired state (a watch channel), Docker container events (only cues: every event is
//! followed by `docker inspect`, which is the truth), the completion of Engine calls it
//! started (pull, create, start, stop; each runs concurrently so that a slow call never
//! delays a stop), and timers (dependency timeouts, a slow resync that repairs a missed
//! event). After every input it takes the next steps (`advance`), derives the task's
//! status, and sends a report if anything changed. The decisions are `rules`', the Docker
//! specs `spec`'s, the report `report`'s; this module only applies them and makes the
//! Engine calls they ask for.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use agent_protocol::{DesiredStatus, StopCode, TaskAssignment, TaskReport, TaskStatus};
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, FuturesUnordered};
use futures_util::{FutureExt, StreamExt};
use model::ecs::shapes::NetworkMode;
use model::Timestamp;
use tokio::sync::{mpsc, watch};

use super::engine::{self, Done, Machine, NetworkSetup};
use super::report;
use super::rules::{self, Conditions, Readiness, Seen};
use super::settings::RunnerConfig;
use super::snapshot;
use super::spec::{self, Awsvpc, TaskSpec, VolumeSource};
use super::state::{Ctr, Firewall, Pending, Phase};
use crate::awslogs;
use crate::docker::{self, labels, DockerError, Observed, RunState};
use crate::endpoint::metadata::TaskSnapshot;
use crate::endpoint::{self, EndpointId};
use crate::secrets;

/// How often every container is inspected even without events, to repair a missed event.
const RESYNC_EVERY: Duration = Duration::from_secs(15);
/// How long the Engine may keep failing before a task is given up as STOPPED.
const DOCKER_GIVE_UP: Duration = Duration::from_secs(30);

pub struct TaskRun<'r> {
    machine: Machine,
    config: &'r RunnerConfig,
    assignment: TaskAssignment,
    network_mode: NetworkMode,
    /// An awsvpc task's network; its pause container is then the last of `ctrs`.
    awsvpc: Option<Awsvpc>,
    /// The pause container is gone (or never existed): the task's address is free.
    pause_removed: bool,
    firewall: Firewall,
    volumes: HashMap<String, VolumeSource>,
    ctrs: Vec<Ctr>,
    /// Images pulled and volumes in place; containers may be created.
    prepared: bool,
    stopping: bool,
    /// The task-wide part of its report, as it stands: status, stop code and reason, times.
    progress: TaskReport,
    ops: FuturesUnordered<BoxFuture<'static, Done>>,
    events: Option<BoxStream<'static, Result<docker::Event, DockerError>>>,
    /// Since when Engine calls have been failing, and how many times in a row.
    docker_trouble: Option<(Instant, u32)>,
    /// When to resubscribe to events and resync after an Engine failure.
    retry_at: Option<Instant>,
    reports: mpsc::UnboundedSender<TaskReport>,
    last_report: Option<TaskReport>,
    /// The log shippers of awslogs containers, by container index.
    shippers: HashMap<usize, awslogs::ShipperHandle>,
    /// Stopped containers whose output is still being shipped; the task is not STOPPED
    /// before they are done.
    flushing: usize,
    /// The task's credentials id at the task endpoint (a task with a task role).
    credentials_id: Option<EndpointId>,
    /// What the task endpoint last showed of the task.
    published: Option<TaskSnapshot>,
}

impl<'r> TaskRun<'r> {
    pub fn new(
        machine: &Machine,
        config: &'r RunnerConfig,
        assignment: TaskAssignment,
        reports: mpsc::UnboundedSender<TaskReport>,
    ) -> Self {
        let network_mode = assignment.definition.network_mode.unwrap_or(NetworkMode::Bridge);
        // An awsvpc task whose network and pause image are in order gets its pause
        // container; otherwise `unsupported` fails the task before anything runs.
        let awsvpc = Awsvpc::of(network_mode, &assignment);
        let mut ctrs = spec::containers(&assignment, network_mode, awsvpc.as_ref().map(|a| a.image.reference.as_str()));
        // Fresh endpoint ids; an adoption replaces them with those the containers hold.
        let endpoint = config.endpoint.as_deref();
        for c in ctrs.iter_mut().filter(|c| !c.internal) {
            c.endpoint_id = endpoint.map(|e| e.new_id());
        }
        let credentials_id = endpoint.filter(|_| has_task_role(&assignment)).map(|e| e.new_id());
        TaskRun {
            machine: machine.clone(),
            config,
            volumes: spec::task_volumes(&assignment, &config.instance_arn),
            progress: report::pending(&assignment.task_arn),
            // Without a pause container there is nothing to remove before STOPPED.
            pause_removed: !ctrs.iter().any(|c| c.internal),
            firewall: match &awsvpc {
                Some(a) if a.network.attachment.ingress.is_some() => Firewall::Wanted,
                _ => Firewall::None,
            },
            awsvpc,
            network_mode,
            assignment,
            ctrs,
            prepared: false,
            stopping: false,
            ops: FuturesUnordered::new(),
            events: None,
            docker_trouble: None,
            retry_at: None,
            reports,
            last_report: None,
            shippers: HashMap::new(),
            flushing: 0,
            credentials_id,
            published: None,
        }
    }

    fn labels(&self) -> [(&'static str, String); 2] {
        [(labels::INSTANCE, self.config.instance_arn.clone()), (labels::TASK_ARN, self.assignment.task_arn.clone())]
    }

    fn spec(&self) -> TaskSpec<'_> {
        TaskSpec {
            assignment: &self.assignment,
            config: self.config,
            network_mode: self.network_mode,
            volumes: &self.volumes,
            credentials_id: self.credentials_id,
        }
    }

    fn conditions(&self) -> Conditions<'_> {
        Conditions { ctrs: &self.ctrs, firewall: self.firewall, start_timeout: self.config.start_timeout }
    }

    fn subscribe(&mut self) {
        let owned = self.labels();
        let wanted: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // A second of replay covers the moments between this call and the request going out
        // on the first poll; a repeated event only causes one more inspect.
        let since = SystemTime::now() - Duration::from_secs(1);
        self.events = Some(self.machine.docker.events(&wanted, since).boxed());
    }

    pub async fn run(mut self, mut assignment: watch::Receiver<TaskAssignment>) {
        // Subscribe before looking at containers, so that no change falls between the two.
        self.subscribe();
        if let Some(reason) = rules::unsupported(&self.assignment) {
            self.begin_stop(StopCode::TaskFailedToStart, Some(reason.clone()));
            for c in &mut self.ctrs {
                c.reason = Some(reason.clone());
            }
        } else if let Err(e) = self.adopt().await {
            self.docker_failed(&e.to_string());
        }
        self.register_endpoint_ids();
        self.on_assignment(assignment.borrow_and_update().clone());
        self.prepare();
        self.step();
        let mut assignment_open = true;
        let mut next_resync = Instant::now() + RESYNC_EVERY;
        while self.progress.last_status != TaskStatus::Stopped {
            let wake = [Some(next_resync), self.retry_at, self.next_dependency_deadline(), self.next_exit_verdict()]
                .into_iter()
                .flatten()
                .min();
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
                    for i in 0..self.ctrs.len() {
                        if self.ctrs[i].exit_hold_until.is_some_and(|t| t <= now) {
                            self.refresh(i).await;
                        }
                    }
                }
            }
            self.step();
        }
        if let Some(e) = &self.config.endpoint {
            e.forget_task(&self.assignment.task_arn);
        }
    }

    /// Tells the task endpoint the ids of the task's containers and credentials.
    fn register_endpoint_ids(&self) {
        let Some(e) = &self.config.endpoint else { return };
        let containers: Vec<(EndpointId, String)> =
            self.ctrs.iter().filter_map(|c| Some((c.endpoint_id?, c.name.clone()))).collect();
        e.tasks().register(&self.assignment.task_arn, self.credentials_id, &containers);
    }

    /// Finds containers this instance already created for the task (an agent restart)
    /// and takes them over as they are.
    async fn adopt(&mut self) -> Result<(), DockerError> {
        let owned = self.labels();
        let wanted: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let found = self.machine.docker.containers_with_labels(&wanted).await?;
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
            let observed = self.machine.docker.inspect(&id).await?;
            // The endpoint ids the container was told at create stay its ids.
            let ids = endpoint::env::ids_in_env(&observed.env);
            if self.config.endpoint.is_some() && !self.ctrs[i].internal {
                self.ctrs[i].endpoint_id = ids.metadata.or(self.ctrs[i].endpoint_id);
                if self.credentials_id.is_some() {
                    self.credentials_id = ids.credentials.or(self.credentials_id);
                }
            }
            self.ctrs[i].docker_name = observed.name.clone();
            self.ctrs[i].phase = Phase::Created;
            match self.machine.docker.image_digest(&observed.image_id).await {
                Ok(d) => self.ctrs[i].image_digest = Some(d),
                Err(DockerError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            tracing::info!(container = %self.ctrs[i].name, id = %id, "adopted an existing container");
            self.observe(i, observed);
            self.ship(i);
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
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // The network and the pause image are needed while the pause container is to be made.
        let network = match &self.awsvpc {
            Some(a) if self.ctrs.iter().any(|c| c.internal && c.phase == Phase::Waiting) => {
                Some(NetworkSetup::new(&self.machine, a))
            }
            _ => None,
        };
        let wanted = secrets::Wanted::of(
            self.ctrs.iter().filter(|c| c.phase == Phase::Waiting && !c.internal).map(|c| (c.name.as_str(), &c.def)),
        );
        if self.stopping || (images.is_empty() && network.is_none() && wanted.is_empty()) {
            self.prepared = true;
            return;
        }
        self.progress.pull_started_at = Some(Timestamp::now());
        let docker = self.machine.docker.clone();
        let behavior = self.config.pull_behavior;
        let pulled = self.machine.pulled.clone();
        // Images come from ECR with the task's execution role when it has one.
        let login = match (self.config.registry_login.as_ref(), self.execution_role()) {
            (Some(l), Some(role)) => Some(std::sync::Arc::new(l.with_credentials(role))),
            (login, _) => login.cloned(),
        };
        let volumes: Vec<VolumeSource> = self.volumes.values().cloned().collect();
        let fetcher = self.config.secrets.clone();
        let role = self.execution_role();
        let region = self.assignment.task_arn.split(':').nth(3).unwrap_or_default().to_string();
        self.ops.push(
            async move {
                // Secrets and the network at once; both before the pulls, which may need a
                // repository's credentials.
                let secrets = async {
                    match fetcher {
                        _ if wanted.is_empty() => Ok(secrets::Resolved::default()),
                        Some(f) => f.resolve(&wanted, &region, role).await,
                        None => Err("CannotCreateContainerError: secrets is not supported by this agent".to_string()),
                    }
                };
                let network = async {
                    match network {
                        Some(setup) => engine::set_up_network(&docker, &setup).await,
                        None => Ok(()),
                    }
                };
                let prepared = async {
                    let (secrets, ()) = futures_util::future::try_join(secrets, network).await?;
                    let digests = engine::prepare(
                        &docker,
                        behavior,
                        &pulled,
                        login.as_deref(),
                        &secrets.registry,
                        &images,
                        &volumes,
                    )
                    .await?;
                    Ok(engine::Prepared { digests, secrets })
                };
                Done::Prepared(prepared.await)
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
        if e.action == "oom" {
            self.ctrs[i].oom_event = true;
        }
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
                self.progress.pull_stopped_at = Some(Timestamp::now());
                match result {
                    Ok(mut prepared) => {
                        self.prepared = true;
                        for c in &mut self.ctrs {
                            if c.image_digest.is_none() {
                                c.image_digest = c.def.image.as_ref().and_then(|i| prepared.digests.get(i).cloned());
                            }
                            if let Some(s) = prepared.secrets.containers.remove(&c.name) {
                                c.secrets = s;
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
                    Ok(()) => {
                        self.ship(i);
                        self.refresh(i).await
                    }
                    Err(e) => {
                        // A start that timed out may have happened all the same.
                        let id = self.ctrs[i].id.clone().unwrap_or_default();
                        match self.machine.docker.inspect(&id).await {
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
            Done::Flushed(i) => {
                tracing::debug!(container = %self.ctrs[i].name, "the container's output is shipped");
                self.flushing -= 1;
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
                    self.firewall = Firewall::Wanted;
                    self.begin_stop(rules::failure_stop_code(self.progress.last_status), Some(reason));
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
            self.begin_stop(rules::failure_stop_code(self.progress.last_status), Some(reason));
        }
    }

    /// Inspects container `i` and takes in what Docker says.
    async fn refresh(&mut self, i: usize) {
        let Some(id) = self.ctrs[i].id.clone() else { return };
        match self.machine.docker.inspect(&id).await {
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
        let c = &mut self.ctrs[i];
        c.created_at = o.created_at.or(c.created_at);
        c.image_id = Some(o.image_id.clone()).filter(|id| !id.is_empty());
        c.addresses.clone_from(&o.addresses);
        match rules::observe(&mut self.ctrs[i], &o, self.network_mode, self.stopping, Instant::now()) {
            Seen::Nothing => {}
            Seen::Restart => {
                let c = &self.ctrs[i];
                tracing::info!(container = %c.name, exit_code = ?c.exit_code, "restarting per the restart policy");
                let (docker, id, limit) = (self.machine.docker.clone(), o.id, self.config.start_timeout);
                self.ops.push(async move { Done::Started(i, docker.start(&id, limit).await) }.boxed());
            }
            Seen::Exited => {
                tracing::info!(container = %self.ctrs[i].name, exit_code = ?o.exit_code, oom = o.oom_killed, "exited");
                self.after_exit(i);
            }
        }
    }

    /// An essential container (or the pause container) that stops ends the task.
    fn after_exit(&mut self, i: usize) {
        if let Some((code, reason)) = rules::exit_stops_task(&self.ctrs[i], self.progress.last_status) {
            self.begin_stop(code, Some(reason.into()));
        }
    }

    /// The first cause of a stop wins: its code and reason stay.
    fn begin_stop(&mut self, code: StopCode, reason: Option<String>) {
        if self.stopping {
            return;
        }
        tracing::info!(code = code.as_str(), reason = ?reason, "stopping the task");
        self.stopping = true;
        self.progress.stop_code = Some(code);
        self.progress.stopped_reason = reason;
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
        self.begin_stop(rules::failure_stop_code(self.progress.last_status), Some(reason.clone()));
        self.progress.stopped_reason.get_or_insert(reason.clone());
        for c in self.ctrs.iter_mut().filter(|c| c.phase != Phase::Stopped) {
            c.phase = Phase::Stopped;
            c.reason.get_or_insert(reason.clone());
        }
    }

    /// Takes every step the state allows now, then reports.
    fn step(&mut self) {
        self.advance();
        self.await_shipping();
        let torn_down = self.pause_removed && self.flushing == 0;
        let computed = rules::task_status(&self.ctrs, self.stopping, torn_down);
        report::advance_status(&mut self.progress, computed, &self.ctrs, Timestamp::now());
        self.publish();
        let report = report::task_report(&self.progress, &self.ctrs);
        if self.last_report.as_ref() != Some(&report) {
            tracing::debug!(status = report.last_status.as_str(), "report");
            // A closed channel means nobody listens any more; the task still runs its course.
            let _ = self.reports.send(report.clone());
            self.last_report = Some(report);
        }
    }

    /// Shows the task endpoint what changed.
    fn publish(&mut self) {
        let Some(e) = &self.config.endpoint else { return };
        let now = snapshot::task(&self.assignment, &self.progress, &self.ctrs, self.network_mode, self.awsvpc.as_ref());
        if self.published.as_ref() != Some(&now) {
            e.tasks().publish(now.clone());
            self.published = Some(now);
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
                    Phase::Running if !c.stop_sent && rules::dependents_stopped(&self.ctrs, i) => self.stop(i),
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
            match self.conditions().readiness(i, Instant::now()) {
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
        if self.ctrs[i].internal {
            return self.create_pause(i);
        }
        let body = match self.spec().create(&self.ctrs, i) {
            Ok(spec) => docker::create_body(&spec),
            Err(reason) => return self.container_failed(i, reason),
        };
        let (docker, name) = (self.machine.docker.clone(), self.ctrs[i].docker_name.clone());
        self.ctrs[i].pending = Some(Pending::Create);
        self.ops.push(async move { Done::Created(i, docker.create(&name, body).await) }.boxed());
    }

    fn create_pause(&mut self, i: usize) {
        let Some(awsvpc) = &self.awsvpc else { return };
        let spec = self.spec().pause(&self.ctrs[i], awsvpc);
        let (docker, name) = (self.machine.docker.clone(), self.ctrs[i].docker_name.clone());
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
        let docker = self.machine.docker.clone();
        self.firewall = Firewall::Installing;
        self.ops.push(async move { Done::Firewall(engine::install_firewall(&docker, &id, &rules).await) }.boxed());
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
        let docker = self.machine.docker.clone();
        self.ctrs[i].pending = Some(Pending::Remove);
        self.ops.push(async move { Done::Removed(i, docker.remove(&id).await) }.boxed());
    }

    fn start(&mut self, i: usize) {
        let Some(id) = self.ctrs[i].id.clone() else { return };
        let (docker, limit) = (self.machine.docker.clone(), self.config.start_timeout);
        // An awslogs container's group and stream are made first, as Docker's driver
        // makes them when the container starts.
        let logs = match (&self.config.awslogs, awslogs::uses_awslogs(&self.ctrs[i].def)) {
            (_, false) => None,
            (Some(shipping), true) => shipping.prepare(&self.log_container(i, &id)).map(|f| f.boxed()),
            (None, true) => Some(
                async {
                    Err("the awslogs log driver needs the agent's CloudWatch Logs endpoint, and this runner has none"
                        .to_string())
                }
                .boxed(),
            ),
        };
        self.ctrs[i].pending = Some(Pending::Start);
        self.ops.push(
            async move {
                if let Some(prepare) = logs {
                    if let Err(e) = prepare.await {
                        return Done::Started(i, Err(DockerError::Failed(e)));
                    }
                }
                Done::Started(i, docker.start(&id, limit).await)
            }
            .boxed(),
        );
    }

    /// The task's execution role as SDK credentials, when it has one and the agent has
    /// a task endpoint (whose store holds the credentials the control plane sends).
    fn execution_role(&self) -> Option<aws_credential_types::provider::SharedCredentialsProvider> {
        let has_role = self.assignment.overrides.as_ref().and_then(|o| o.execution_role_arn.as_ref()).is_some()
            || self.assignment.definition.execution_role_arn.is_some();
        let endpoint = self.config.endpoint.as_ref().filter(|_| has_role)?;
        Some(aws_credential_types::provider::SharedCredentialsProvider::new(
            crate::endpoint::execution::ExecutionRole::new(endpoint.clone(), self.assignment.task_arn.clone()),
        ))
    }

    /// A container of this task as log shipping names it.
    fn log_container<'a>(&'a self, i: usize, id: &'a str) -> awslogs::Container<'a> {
        let arn = &self.assignment.task_arn;
        let role = self.execution_role();
        awslogs::Container {
            def: &self.ctrs[i].def,
            name: &self.ctrs[i].name,
            task_id: arn.rsplit('/').next().unwrap_or(arn),
            id,
            role,
        }
    }

    /// Ships an awslogs container's output, unless a shipper for it still runs.
    fn ship(&mut self, i: usize) {
        let Some(shipping) = self.config.awslogs.clone() else { return };
        if self.shippers.get(&i).is_some_and(|h| !h.is_finished()) {
            return;
        }
        let Some(id) = self.ctrs[i].id.clone() else { return };
        if let Some(handle) = shipping.spawn(&self.machine.docker, &self.log_container(i, &id)) {
            self.shippers.insert(i, handle);
        }
    }

    /// Once a container has stopped, waits (within a limit) for its output to be shipped.
    fn await_shipping(&mut self) {
        let stopped: Vec<usize> =
            self.shippers.keys().copied().filter(|&i| self.ctrs[i].phase == Phase::Stopped).collect();
        for i in stopped {
            let Some(handle) = self.shippers.remove(&i) else { continue };
            self.flushing += 1;
            self.ops.push(
                async move {
                    if !handle.finished().await {
                        tracing::warn!("log shipping stores nothing; the task stops without waiting for it");
                    }
                    Done::Flushed(i)
                }
                .boxed(),
            );
        }
    }

    fn stop(&mut self, i: usize) {
        let Some(id) = self.ctrs[i].id.clone() else { return };
        let (docker, grace) =
            (self.machine.docker.clone(), spec::stop_timeout(&self.ctrs[i].def, self.config.stop_timeout));
        tracing::info!(container = %self.ctrs[i].name, ?grace, "stopping");
        self.ctrs[i].stop_sent = true;
        self.ctrs[i].pending = Some(Pending::Stop);
        self.ops.push(async move { Done::Stopped(i, docker.stop(&id, grace).await) }.boxed());
    }

    /// The earliest moment at which a dependency wait times out.
    /// When the first exit held for Docker's OOM verdict is taken as it stands.
    fn next_exit_verdict(&self) -> Option<Instant> {
        self.ctrs.iter().filter(|c| c.phase != Phase::Stopped).filter_map(|c| c.exit_hold_until).min()
    }

    fn next_dependency_deadline(&self) -> Option<Instant> {
        if self.stopping {
            return None;
        }
        self.conditions().next_deadline()
    }
}

/// Whether the task runs with a task role (the override's, else the definition's).
fn has_task_role(a: &TaskAssignment) -> bool {
    let overridden = a.overrides.as_ref().and_then(|o| o.task_role_arn.as_deref());
    overridden.or(a.definition.task_role_arn.as_deref()).is_some_and(|r| !r.is_empty())
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
