//! The control plane: the one place where Berth's state changes.
//!
//! Layering: protocol edges (`aws-api`) call the operations here; the operations read the
//! published [`State`] or submit a change to the single writer; the writer commits to the
//! `store` before anything is acknowledged or visible. Nothing here knows a wire format,
//! and nothing here contains SQL.

pub mod agents;
pub mod auth;
mod caller;
pub mod ec2;
pub mod ecr;
pub mod ecs;
pub mod elb;
pub mod error;
pub mod events;
pub mod iam;
pub mod logs;
mod ops;
mod paging;
mod runtime;
pub mod sealing;
pub mod secrets;
pub mod ssm;
pub mod state;
pub mod sts;
mod writer;

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use store::Store;

pub use caller::{root_arn, Caller, Principal};
pub use error::{Error, Result};
pub use ops::Ops;
pub use paging::Page;
pub use runtime::ElbRuntime;
pub use state::State;
pub use writer::Txn;

/// How many changes may wait for the writer before callers are made to wait.
const QUEUE_DEPTH: usize = 4096;
/// The writer's stack: headroom for persistent-map updates, which recurse through tree
/// nodes and, in debug builds, keep whole nodes on the stack (they once overflowed 2 MiB
/// when nodes held task definitions inline; values are now behind `Arc`).
const WRITER_STACK_BYTES: usize = 16 * 1024 * 1024;

/// Settings of the control plane.
#[derive(Debug, Clone)]
pub struct Config {
    /// An agent not heard from for this long is shown `agentConnected: false`.
    pub agent_timeout: std::time::Duration,
    /// The service tasks of an instance whose agent has been disconnected for this long
    /// are replaced elsewhere (ECS waits forever).
    pub lost_instance_grace: std::time::Duration,
    /// Where CloudWatch Logs keeps its events (the data dir's `logs/`); without one the
    /// Logs operations that touch events are refused.
    pub logs_dir: Option<std::path::PathBuf>,
    /// Seals secrets at rest with the deployment's master key.
    pub sealer: sealing::Sealer,
}

impl Default for Config {
    fn default() -> Self {
        // Three missed heartbeats.
        Config {
            agent_timeout: std::time::Duration::from_secs(3 * agent_protocol::HEARTBEAT_SECONDS),
            lost_instance_grace: std::time::Duration::from_secs(300),
            logs_dir: None,
            sealer: sealing::Sealer::ephemeral(),
        }
    }
}

/// The control plane of one Berth deployment.
pub struct ControlPlane {
    view: Arc<ArcSwap<State>>,
    /// The writer's queue; `None` on a follower, which never writes.
    jobs: Option<mpsc::Sender<writer::Job>>,
    /// On a follower: which resource each stored record holds, to apply the change log.
    mirror: Option<std::sync::Mutex<state::mirror::Mirror>>,
    pub credentials: auth::Credentials,
    pub agents: Arc<agents::Agents>,
    /// The ELBv2 operations' run-time companions: network settings, the target health
    /// board, the data plane's wake-up.
    pub elb: ElbRuntime,
    /// Wakes the service controller when something it reacts to changed (a task's
    /// state, an instance, a service); it also runs on a timer.
    services_wake: Arc<tokio::sync::Notify>,
    /// The service controller's steady services, skipped until something of theirs changes.
    services_settled: std::sync::Mutex<ecs::services::settled::Settled>,
    services_seen: Arc<ecs::services::controller::SeenRunning>,
    /// The scheduler's placement index of each cluster, kept across launches.
    placements: Arc<ecs::placement::Placements>,
    lost_instance_grace: std::time::Duration,
    /// The events of CloudWatch Logs' streams.
    log_store: Option<Arc<logstore::LogStore>>,
    /// Seals secrets at rest (SSM SecureStrings, Secrets Manager values).
    pub sealer: sealing::Sealer,
    /// IAM users' key secrets once opened, by key id: a key's secret never changes, and
    /// opening it on every request cost as much as the rest of authorization.
    unsealed_keys: std::sync::RwLock<std::collections::HashMap<String, std::sync::Arc<str>>>,
    /// What authorizing a principal's requests starts from, prepared once per IAM state.
    prepared_principals: state::iam::PreparedPrincipals,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane").finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Rebuilds the state from `store` and starts the writer thread, which runs until the
    /// control plane is dropped and its queued changes are committed.
    pub fn open(store: Arc<dyn Store>) -> Result<Self> {
        Self::open_with(store, Config::default())
    }

    pub fn open_with(store: Arc<dyn Store>, config: Config) -> Result<Self> {
        let records = store.load().map_err(|e| Error::Internal(e.to_string()))?;
        let check = records.iter().find(|r| r.table == sealing::CHECK_TABLE && r.key == sealing::CHECK_KEY);
        match check {
            Some(r) => config.sealer.verify_check(&r.value)?,
            None => store
                .commit(&[store::Mutation::Put(store::Record {
                    table: sealing::CHECK_TABLE.into(),
                    key: sealing::CHECK_KEY.into(),
                    value: config.sealer.check_value(),
                })])
                .map_err(|e| Error::Internal(format!("recording the master key's check value: {e}")))?,
        }
        let count = records.len();
        let state = State::from_records(records).map_err(|e| Error::Internal(e.to_string()))?;
        tracing::info!(records = count, "state rebuilt from the store");
        let view = Arc::new(ArcSwap::from_pointee(state));
        let (jobs, rx) = mpsc::channel(QUEUE_DEPTH);
        let writer_view = view.clone();
        let writer_store = store.clone();
        std::thread::Builder::new()
            .name("berth-writer".into())
            .stack_size(WRITER_STACK_BYTES)
            .spawn(move || writer::run(rx, writer_store, writer_view))
            .map_err(|e| Error::Internal(format!("starting the writer thread: {e}")))?;
        Self::assemble(store, config, view, Some(jobs), None)
    }

    /// A follower's control plane: the state of `records` (every record of the store, as
    /// of one position of its change log), brought forward by [`ControlPlane::follow`],
    /// with no writer. Its reads are the leader's as of that position; every write is
    /// refused with [`Error::NotLeader`], for the caller to send it to the leader. A
    /// follower that will open sealed values checks its master key first
    /// ([`sealing::Sealer::verify_records`]).
    pub fn open_follower(store: Arc<dyn Store>, config: Config, records: Vec<store::Record>) -> Result<Self> {
        let (state, mirror) = state::mirror::Mirror::load(records).map_err(|e| Error::Internal(e.to_string()))?;
        tracing::info!(records = mirror.len(), "following the leader: state read from the store");
        let view = Arc::new(ArcSwap::from_pointee(state));
        Self::assemble(store, config, view, None, Some(std::sync::Mutex::new(mirror)))
    }

    fn assemble(
        store: Arc<dyn Store>,
        config: Config,
        view: Arc<ArcSwap<State>>,
        jobs: Option<mpsc::Sender<writer::Job>>,
        mirror: Option<std::sync::Mutex<state::mirror::Mirror>>,
    ) -> Result<Self> {
        let log_store = match &config.logs_dir {
            Some(dir) => Some(Arc::new(
                logstore::LogStore::open(dir)
                    .map_err(|e| Error::Internal(format!("opening the log store at {}: {e}", dir.display())))?,
            )),
            None => None,
        };
        Ok(ControlPlane {
            view,
            jobs,
            mirror,
            credentials: auth::Credentials::new(store),
            agents: Arc::new(agents::Agents::new(config.agent_timeout)),
            services_wake: Arc::new(tokio::sync::Notify::new()),
            services_settled: Default::default(),
            services_seen: Default::default(),
            placements: Default::default(),
            lost_instance_grace: config.lost_instance_grace,
            elb: ElbRuntime::default(),
            log_store,
            sealer: config.sealer,
            unsealed_keys: Default::default(),
            prepared_principals: Default::default(),
        })
    }

    /// On a follower, brings the view to what the leader committed: the records `catchup`
    /// names, or all of them. Readers see the new state at once, whole. On an error the
    /// view is unchanged but the mirror of records may not be: the caller must then
    /// follow with every record (`Catchup::Everything`).
    pub fn follow(&self, catchup: store::Catchup) -> Result<()> {
        let Some(mirror) = &self.mirror else {
            return Err(Error::Internal("only a follower applies the change log".into()));
        };
        let mut mirror = mirror.lock().unwrap_or_else(|e| e.into_inner());
        let next = match catchup {
            store::Catchup::Changes { changes, .. } if changes.is_empty() => return Ok(()),
            store::Catchup::Changes { changes, .. } => {
                let mut next = (*self.view()).clone();
                mirror.apply(&mut next, changes).map_err(|e| Error::Internal(e.to_string()))?;
                next
            }
            store::Catchup::Everything { records, .. } => {
                let (next, fresh) = state::mirror::Mirror::load(records).map_err(|e| Error::Internal(e.to_string()))?;
                *mirror = fresh;
                next
            }
        };
        self.view.store(Arc::new(next));
        // Whoever serves the load balancers from this view looks again.
        self.elb.changed.notify_one();
        Ok(())
    }

    /// The state as of the last durable commit.
    pub fn view(&self) -> Arc<State> {
        self.view.load_full()
    }

    /// Applies `f` atomically and durably; returns its result once committed.
    pub async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Txn<'_>) -> Result<R> + Send + 'static,
    {
        match &self.jobs {
            Some(jobs) => writer::submit(jobs, f).await,
            None => Err(Error::NotLeader),
        }
    }
}
