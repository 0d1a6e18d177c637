//! Berth's load balancer data plane. Each load balancer has an address of its own (by
//! default in 127.100.0.0/16, all of which Linux delivers to the loopback interface), so
//! two load balancers can both listen on port 80. Each listener accepts HTTP/1.1
//! connections, evaluates its rules in priority order and forwards to a target chosen
//! from the healthy targets of a target group (through pooled keep-alive connections),
//! redirects, or answers itself.
//!
//! Layering: the data plane knows only [`elb::snapshot::Snapshot`]s, which it applies
//! whole ([`DataPlane::apply`]), and the [`elb::health::Board`] on which it publishes what
//! its health checks find. It never reads or writes the control plane's state.
//!
//! Decisions (where ALB and one machine differ):
//! - A load balancer's `DNSName` is its address literal, which `curl` reaches on this machine
//!   with no DNS or routing set-up. The address is chosen from `--lb-address-pool` and
//!   stored with the load balancer.
//! - The data plane runs inside the Berth process, so "the control plane restarts" means this
//!   restarts too: on start every listener is rebuilt from the stored state before the API
//!   serves. Target health is run-time state and starts again at `initial`; meanwhile
//!   requests go to every target (ALB's fail-open).
//! - `instance` targets are container instances' EC2 ids, reached at their
//!   `berth.host-address` attribute (`ECS_INSTANCE_ATTRIBUTES`), else 127.0.0.1; `ip`
//!   targets may be private (RFC 1918, RFC 6598) or loopback addresses.
//! - A target that refuses a connection makes a request without a body go to another target
//!   once, and takes no new requests for one health-check interval while others can. ALB
//!   does not retry; this keeps a dying target from failing more than the requests it had.
//! - Connections: a listener accepts on the process's runtime and hands each connection in
//!   turn to one of `workers`, a thread per core with its own single-threaded runtime and
//!   its own pool of keep-alive target connections (`connect`), so a request never crosses
//!   threads (on the work-stealing runtime the wake-ups between tasks cost more than the
//!   proxying). `proxy` serves HTTP/1.1 keep-alive with the idle timeout and ALB's 16 KiB/
//!   64 KiB header limits, adds X-Forwarded-For/-Proto/-Port and X-Amzn-Trace-Id, and
//!   answers 502, 503 and 504 as ALB does. `group` chooses among healthy targets (else all):
//!   round robin, least outstanding requests or weighted random; slow start; stickiness.

pub mod accept;
mod check;
mod connect;
mod group;
mod proxy;
mod workers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use elb::health::Board;
use elb::snapshot::Snapshot;

use crate::group::Group;
use crate::proxy::{ListenerConfig, ListenerCtx};
use crate::workers::Workers;

/// The data plane of one Berth process.
pub struct DataPlane {
    board: Arc<Board>,
    /// The threads that serve client connections.
    workers: Arc<Workers>,
    listeners: Mutex<HashMap<SocketAddr, Arc<ListenerCtx>>>,
    /// Listeners that could not bind, with why (logged once per reason).
    failed: Mutex<HashMap<SocketAddr, String>>,
    groups: Mutex<HashMap<String, Arc<Group>>>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane").finish_non_exhaustive()
    }
}

/// A listener that is configured but not serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindFailure {
    pub addr: SocketAddr,
    pub reason: String,
}

impl DataPlane {
    /// A data plane publishing target health on `board`, serving connections on a
    /// thread per core; its listeners, threads and checks stop when `shutdown` is
    /// cancelled.
    pub fn new(board: Arc<Board>, shutdown: CancellationToken) -> Arc<Self> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let dp = Arc::new(DataPlane {
            board,
            workers: Arc::new(Workers::start(threads, &shutdown)),
            listeners: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            shutdown,
        });
        tokio::spawn(sweep(Arc::downgrade(&dp), dp.shutdown.clone()));
        dp
    }

    /// Serves `snapshot` from now on: new listeners bind, removed ones stop accepting (their
    /// open connections finish), target groups take their new targets and drain the
    /// removed ones. Returns the listeners that could not bind; a later call retries them.
    pub async fn apply(&self, snapshot: &Snapshot) -> Vec<BindFailure> {
        let groups = self.apply_groups(snapshot);
        let mut wanted: HashMap<SocketAddr, ListenerConfig> = HashMap::new();
        for lb in &snapshot.load_balancers {
            for l in &lb.listeners {
                let used = l
                    .rules
                    .iter()
                    .flat_map(|r| match &r.action {
                        elb::actions::ActionKind::Forward(f) => f.target_groups().collect::<Vec<_>>(),
                        _ => Vec::new(),
                    })
                    .filter_map(|arn| groups.get(arn).map(|g| (arn.to_string(), g.clone())))
                    .collect();
                let config = ListenerConfig::new(l.port, &lb.attributes, l.rules.clone(), used);
                wanted.insert(SocketAddr::from((lb.address, l.port)), config);
            }
        }
        let mut failures = Vec::new();
        let current: Vec<SocketAddr> = self.lock_listeners().keys().copied().collect();
        for addr in current.iter().filter(|a| !wanted.contains_key(a)) {
            if let Some(ctx) = self.lock_listeners().remove(addr) {
                tracing::info!(%addr, "listener removed");
                ctx.cancel.cancel();
            }
        }
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).retain(|a, _| wanted.contains_key(a));
        for (addr, config) in wanted {
            if let Some(ctx) = self.lock_listeners().get(&addr) {
                ctx.config.store(Arc::new(config));
                continue;
            }
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    tracing::info!(%addr, "listener serving");
                    self.failed.lock().unwrap_or_else(|p| p.into_inner()).remove(&addr);
                    let ctx = Arc::new(ListenerCtx {
                        config: ArcSwap::from_pointee(config),
                        cancel: self.shutdown.child_token(),
                    });
                    self.lock_listeners().insert(addr, ctx.clone());
                    tokio::spawn(proxy::serve(listener, ctx, self.workers.clone()));
                }
                Err(e) => {
                    let reason = match e.kind() {
                        std::io::ErrorKind::PermissionDenied if addr.port() < 1024 => format!(
                            "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE (e.g. `sudo setcap cap_net_bind_service=+ep $(command -v berth)`); {e}"
                        ),
                        std::io::ErrorKind::AddrInUse => format!("another process already listens on {addr}; {e}"),
                        std::io::ErrorKind::AddrNotAvailable => {
                            format!("{} is not an address of this host (see --lb-address-pool); {e}", addr.ip())
                        }
                        _ => e.to_string(),
                    };
                    let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                    if failed.get(&addr) != Some(&reason) {
                        tracing::error!(%addr, %reason, "a load balancer listener cannot listen");
                        failed.insert(addr, reason.clone());
                    }
                    failures.push(BindFailure { addr, reason });
                }
            }
        }
        failures
    }

    fn apply_groups(&self, snapshot: &Snapshot) -> HashMap<String, Arc<Group>> {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.retain(|arn, g| {
            let keep = snapshot.target_groups.contains_key(arn);
            if !keep {
                g.stop();
            }
            keep
        });
        for (arn, plan) in &snapshot.target_groups {
            let group = groups
                .entry(arn.clone())
                .or_insert_with(|| Arc::new(Group::new(plan.clone(), self.board.clone())))
                .clone();
            if **group.plan.load() == *plan && !group.active().is_empty() {
                continue;
            }
            for target in group.update(plan.clone()) {
                tokio::spawn(check::run(group.clone(), target));
            }
        }
        groups.clone()
    }

    fn lock_listeners(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Arc<ListenerCtx>>> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The addresses listeners serve on now.
    pub fn serving(&self) -> Vec<SocketAddr> {
        self.lock_listeners().keys().copied().collect()
    }
}

/// Ends draining as soon as a target's last request is done (or its delay is over).
async fn sweep(dp: std::sync::Weak<DataPlane>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(dp) = dp.upgrade() else { return };
        let groups: Vec<Arc<Group>> = dp.groups.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        for g in groups {
            g.sweep();
        }
    }
}
