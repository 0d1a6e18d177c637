//! The runner's decisions, pure: when a container may be created or started and when it
//! never will, when it restarts, what an observation of it means, why a task stops, and
//! the status and health a task derives from its containers. No Engine, no channel, no
//! clock: a rule that needs the time takes it as `now`.

use std::time::{Duration, Instant};

use agent_protocol::{HealthStatus, StopCode, TaskAssignment, TaskStatus};
use model::ecs::shapes::{ContainerDefinition, NetworkMode};

use super::spec::bindings;
use super::state::{Cond, Ctr, Dep, Firewall, Pending, Phase};
use crate::awsvpc;
use crate::docker::{Health, Observed, RunState};

/// The reason ECS gives a container that the kernel killed for memory.
pub const OOM_REASON: &str = "OutOfMemoryError: Container killed due to memory usage";
/// The task's `stoppedReason` when an essential container exits.
pub const ESSENTIAL_EXITED_REASON: &str = "Essential container in task exited";
/// The task's `stoppedReason` when the pause container of an awsvpc task exits: the task's
/// network namespace is gone with it.
pub const PAUSE_EXITED_REASON: &str =
    "TaskNetworkError: the pause container holding the task's network namespace exited";

/// Why a container cannot start yet.
#[derive(Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    Wait,
    Never(String),
}

/// The start conditions of a task's containers on each other, as they stand.
#[derive(Clone, Copy)]
pub struct Conditions<'a> {
    pub ctrs: &'a [Ctr],
    pub firewall: Firewall,
    /// The agent's `ECS_CONTAINER_START_TIMEOUT`, for dependencies without a
    /// `startTimeout` of their own.
    pub start_timeout: Duration,
}

impl Conditions<'_> {
    /// Whether container `i` may be created (when it is waiting) or started (when it is
    /// created) at `now`, must wait, or never will.
    pub fn readiness(&self, i: usize, now: Instant) -> Readiness {
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
                if now.saturating_duration_since(s) >= limit {
                    return never(format!("it did not within its start timeout of {}s", limit.as_secs()));
                }
            }
            return Readiness::Wait;
        }
        Readiness::Ready
    }

    /// Whether a dependency's condition holds.
    pub fn met(&self, dep: Dep) -> bool {
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
    pub fn next_deadline(&self) -> Option<Instant> {
        self.ctrs
            .iter()
            .filter(|c| c.pending.is_none() && matches!(c.phase, Phase::Waiting | Phase::Created))
            .flat_map(|c| c.deps.iter())
            .filter(|d| matches!(d.cond, Cond::Complete | Cond::Success | Cond::Healthy) && !self.met(**d))
            .filter_map(|d| self.ctrs[d.on].started.map(|s| s + self.start_timeout(d.on)))
            .min()
    }

    fn start_timeout(&self, i: usize) -> Duration {
        start_timeout(&self.ctrs[i].def, self.start_timeout)
    }
}

/// How long a container may take to reach the condition others wait for: its own
/// `startTimeout`, else the agent's.
pub fn start_timeout(def: &ContainerDefinition, agent_default: Duration) -> Duration {
    match def.start_timeout {
        Some(s) if s > 0 => Duration::from_secs(s as u64),
        _ => agent_default,
    }
}

/// ECS's container restart policy: restart unless the exit code is ignored, the task is
/// stopping, or the container ran for less than `restartAttemptPeriod` (300 s by default).
pub fn should_restart(c: &Ctr, stopping: bool, now: Instant) -> bool {
    let Some(policy) = c.def.restart_policy.as_ref().filter(|p| p.enabled == Some(true)) else {
        return false;
    };
    if stopping || c.stop_sent || c.id.is_none() {
        return false;
    }
    if c.exit_code.is_some_and(|code| policy.ignored_exit_codes.iter().flatten().any(|x| *x == code)) {
        return false;
    }
    let period = Duration::from_secs(policy.restart_attempt_period.unwrap_or(300).max(0) as u64);
    c.started.is_some_and(|s| now.saturating_duration_since(s) >= period)
}

/// Containers stop in the reverse order of their dependencies: one that others depend
/// on (dependsOn, links, volumesFrom) stops after them.
pub fn dependents_stopped(ctrs: &[Ctr], i: usize) -> bool {
    ctrs.iter().all(|c| c.phase == Phase::Stopped || !c.deps.iter().any(|d| d.on == i))
}

/// The stop code of a task that fails: before it ran, it failed to start; once it ran, it
/// ends as if an essential container exited.
pub fn failure_stop_code(status: TaskStatus) -> StopCode {
    if status < TaskStatus::Running {
        StopCode::TaskFailedToStart
    } else {
        StopCode::EssentialContainerExited
    }
}

/// Whether a container that stopped ends its task, and with which code and reason: an
/// essential one does, and so does the pause container, whose exit takes the task's
/// network with it.
pub fn exit_stops_task(c: &Ctr, status: TaskStatus) -> Option<(StopCode, &'static str)> {
    if c.internal {
        Some((failure_stop_code(status), PAUSE_EXITED_REASON))
    } else if c.essential {
        Some((StopCode::EssentialContainerExited, ESSENTIAL_EXITED_REASON))
    } else {
        None
    }
}

/// What an observation of a container calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Nothing beyond taking it in.
    Nothing,
    /// It exited and its restart policy restarts it: `pending` is now `Start`.
    Restart,
    /// It exited for good: it is now `Stopped`.
    Exited,
}

/// Takes in what Docker says about container `c` (seen at `now`, in a task of network
/// mode `mode` that is `stopping` or not).
pub fn observe(c: &mut Ctr, o: &Observed, mode: NetworkMode, stopping: bool, now: Instant) -> Seen {
    if c.phase == Phase::Stopped {
        return Seen::Nothing;
    }
    match o.state {
        RunState::Created => Seen::Nothing,
        RunState::Running => {
            if c.phase != Phase::Running || c.started_at != o.started_at {
                // Started, or restarted by its restart policy.
                c.phase = Phase::Running;
                c.started = Some(now);
                c.ever_started = true;
            }
            c.exit_code = None;
            c.bindings = bindings(mode, &c.def, &o.ports);
            // A stopped container's health reads `unhealthy` in Docker; ECS keeps the
            // last health seen while it ran, so only a running container updates it.
            c.health = health(o.health);
            c.ever_healthy |= c.health == HealthStatus::Healthy;
            c.started_at = o.started_at.or(c.started_at);
            Seen::Nothing
        }
        RunState::Exited => {
            // A restart is under way; its completion inspects again.
            if c.pending == Some(Pending::Start) {
                return Seen::Nothing;
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
            if should_restart(c, stopping, now) {
                c.pending = Some(Pending::Start);
                return Seen::Restart;
            }
            c.phase = Phase::Stopped;
            Seen::Exited
        }
    }
}

/// A running container's health as ECS reports it: Docker's `starting` (and no health
/// check at all) is `UNKNOWN`.
pub fn health(h: Option<Health>) -> HealthStatus {
    match h {
        Some(Health::Healthy) => HealthStatus::Healthy,
        Some(Health::Unhealthy) => HealthStatus::Unhealthy,
        Some(Health::Starting) | None => HealthStatus::Unknown,
    }
}

/// The status a task's containers add up to; `pause_removed` says that the task's
/// address is free (or that it never had a pause container).
pub fn task_status(ctrs: &[Ctr], stopping: bool, pause_removed: bool) -> TaskStatus {
    // An awsvpc task is STOPPED once its address is free again.
    if ctrs.iter().all(|c| c.phase == Phase::Stopped) && pause_removed {
        TaskStatus::Stopped
    } else if stopping {
        TaskStatus::Stopping
    } else if ctrs.iter().all(|c| c.ever_started) {
        TaskStatus::Running
    } else {
        TaskStatus::Pending
    }
}

/// ECS: unhealthy if any essential container with a health check is; healthy if all of
/// them are; unknown otherwise (also when no essential container has a health check).
pub fn task_health(ctrs: &[Ctr]) -> HealthStatus {
    let checked: Vec<&Ctr> = ctrs.iter().filter(|c| c.essential && c.def.health_check.is_some()).collect();
    if checked.iter().any(|c| c.health == HealthStatus::Unhealthy) {
        HealthStatus::Unhealthy
    } else if !checked.is_empty() && checked.iter().all(|c| c.health == HealthStatus::Healthy) {
        HealthStatus::Healthy
    } else {
        HealthStatus::Unknown
    }
}

/// Features this agent cannot honour; running without them would run something else
/// than the user asked for, so the task fails to start instead.
pub fn unsupported(a: &TaskAssignment) -> Option<String> {
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
