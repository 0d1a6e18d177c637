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
/// How long a container killed by SIGKILL, not by the agent, waits for Docker to say it was
/// the kernel's OOM killer. The kernel's kill reaches Docker twice, as an exit and as an
/// OOM event, from two watchers of containerd's shim; under load the exit can come first,
/// and Docker sets `OOMKilled` only when the OOM event lands.
pub const OOM_VERDICT_GRACE: Duration = Duration::from_secs(2);
/// The exit code of a process killed by SIGKILL (128 + 9).
const SIGKILL_EXIT: i32 = 137;

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
                // Docker clears OOMKilled when a container starts; so does the agent.
                c.oom_event = false;
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
            let oom = o.oom_killed || c.oom_event;
            if !oom && o.exit_code == Some(SIGKILL_EXIT) && !stopping && !c.stop_sent {
                let until = *c.exit_hold_until.get_or_insert(now + OOM_VERDICT_GRACE);
                if now < until {
                    return Seen::Nothing;
                }
            }
            c.exit_hold_until = None;
            c.ever_started |= o.started_at.is_some();
            c.started_at = o.started_at.or(c.started_at);
            c.finished_at = o.finished_at;
            c.exit_code = o.exit_code;
            if oom {
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

/// The status a task's containers add up to. `torn_down`: what must follow the containers' stop is done (an awsvpc task's address
/// is free again, its containers' output is shipped).
pub fn task_status(ctrs: &[Ctr], stopping: bool, torn_down: bool) -> TaskStatus {
    if ctrs.iter().all(|c| c.phase == Phase::Stopped) && torn_down {
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
        if c.environment_files.as_ref().is_some_and(|s| !s.is_empty()) {
            return fail("environmentFiles");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    use crate::runner::fixtures::{assignment, ctr, network};
    use model::ecs::shapes::{
        ContainerRestartPolicy, EFSVolumeConfiguration, HealthCheck, RegisterTaskDefinitionRequest, TransportProtocol,
        Volume,
    };

    const AGENT_START: Duration = Duration::from_secs(180);

    fn on(on: usize, cond: Cond) -> Vec<Dep> {
        vec![Dep { on, cond }]
    }

    fn conditions(ctrs: &[Ctr]) -> Conditions<'_> {
        Conditions { ctrs, firewall: Firewall::None, start_timeout: AGENT_START }
    }

    fn running(c: &mut Ctr, since: Instant) {
        c.id = Some(format!("id-{}", c.name));
        c.phase = Phase::Running;
        c.started = Some(since);
        c.ever_started = true;
    }

    fn stopped(c: &mut Ctr, since: Instant, exit_code: i32) {
        running(c, since);
        c.phase = Phase::Stopped;
        c.exit_code = Some(exit_code);
    }

    fn never(r: Readiness) -> String {
        match r {
            Readiness::Never(why) => why,
            other => panic!("expected Never, got {other:?}"),
        }
    }

    fn observed(state: RunState) -> Observed {
        Observed {
            id: "id".into(),
            name: "/ecs-x".into(),
            state,
            exit_code: None,
            oom_killed: false,
            error: None,
            started_at: None,
            finished_at: None,
            health: None,
            ports: vec![],
            image_id: "sha256:1".into(),
            created_at: None,
            env: vec![],
            addresses: vec![],
        }
    }

    #[test]
    fn start_waits_until_the_dependency_has_started() {
        let now = Instant::now();
        let mut ctrs = vec![ctr("db", vec![]), ctr("app", on(0, Cond::Start))];
        assert_eq!(conditions(&ctrs).readiness(1, now), Readiness::Wait);
        running(&mut ctrs[0], now);
        assert_eq!(conditions(&ctrs).readiness(1, now), Readiness::Ready);
        // Once started, START stays met even after the dependency stopped.
        ctrs[0].phase = Phase::Stopped;
        assert_eq!(conditions(&ctrs).readiness(1, now), Readiness::Ready);
    }

    #[test]
    fn a_start_dependency_that_stops_without_having_run_never_is_met() {
        let mut ctrs = vec![ctr("db", vec![]), ctr("app", on(0, Cond::Start))];
        ctrs[0].phase = Phase::Stopped;
        let why = never(conditions(&ctrs).readiness(1, Instant::now()));
        assert_eq!(
            why,
            "DependencyError: container app depends on container db reaching START, but it stopped without having run"
        );
    }

    #[test]
    fn complete_needs_the_dependency_to_have_run_and_stopped_whatever_its_exit_code() {
        let now = Instant::now();
        let mut ctrs = vec![ctr("init", vec![]), ctr("app", on(0, Cond::Complete))];
        running(&mut ctrs[0], now);
        assert_eq!(conditions(&ctrs).readiness(1, now), Readiness::Wait);
        stopped(&mut ctrs[0], now, 3);
        assert_eq!(conditions(&ctrs).readiness(1, now), Readiness::Ready);
    }

    #[test]
    fn success_needs_exit_code_zero() {
        let now = Instant::now();
        let mut ctrs = vec![ctr("init", vec![]), ctr("app", on(0, Cond::Success))];
        stopped(&mut ctrs[0], now, 0);
        assert_eq!(conditions(&ctrs).readiness(1, now), Readiness::Ready);
        stopped(&mut ctrs[0], now, 2);
        assert!(never(conditions(&ctrs).readiness(1, now)).ends_with("reaching SUCCESS, but it exited with code 2"));
    }

    #[test]
    fn healthy_waits_for_health_and_fails_when_it_cannot_come() {
        let now = Instant::now();
        let mut ctrs = vec![ctr("db", vec![]), ctr("app", on(0, Cond::Healthy))];
        running(&mut ctrs[0], now);
        assert_eq!(conditions(&ctrs).readiness(1, now), Readiness::Wait);
        ctrs[0].ever_healthy = true;
        assert_eq!(conditions(&ctrs).readiness(1, now), Readiness::Ready);

        ctrs[0].ever_healthy = false;
        ctrs[0].phase = Phase::Stopped;
        assert!(never(conditions(&ctrs).readiness(1, now)).ends_with("but it has no health check"));
        ctrs[0].def.health_check = Some(HealthCheck::default());
        assert!(never(conditions(&ctrs).readiness(1, now)).ends_with("but it stopped before it became healthy"));
    }

    #[test]
    fn created_needs_an_id_and_no_create_in_flight() {
        let mut ctrs = vec![ctr("data", vec![]), ctr("app", on(0, Cond::Created))];
        let now = Instant::now();
        assert_eq!(conditions(&ctrs).readiness(1, now), Readiness::Wait);
        ctrs[0].pending = Some(Pending::Create);
        ctrs[0].id = Some("id".into());
        assert_eq!(conditions(&ctrs).readiness(1, now), Readiness::Wait);
        ctrs[0].pending = None;
        assert_eq!(conditions(&ctrs).readiness(1, now), Readiness::Ready);
    }

    #[test]
    fn a_dependency_times_out_after_its_own_start_timeout_else_the_agents() {
        let t0 = Instant::now();
        for (own, limit) in [(Some(5), Duration::from_secs(5)), (Some(0), AGENT_START), (None, AGENT_START)] {
            let mut ctrs = vec![ctr("db", vec![]), ctr("app", on(0, Cond::Healthy))];
            ctrs[0].def.start_timeout = own;
            running(&mut ctrs[0], t0);
            let c = conditions(&ctrs);
            assert_eq!(c.readiness(1, t0 + limit - Duration::from_millis(1)), Readiness::Wait, "{own:?}");
            let why = never(c.readiness(1, t0 + limit));
            let expected = format!("reaching HEALTHY, but it did not within its start timeout of {}s", limit.as_secs());
            assert!(why.ends_with(&expected), "{why}");
            assert_eq!(c.next_deadline(), Some(t0 + limit));
        }
    }

    #[test]
    fn only_unmet_complete_success_and_healthy_waits_have_deadlines() {
        let t0 = Instant::now();
        let mut ctrs = vec![
            ctr("a", vec![]),
            ctr("b", vec![]),
            ctr("c", vec![]),
            ctr("app", vec![Dep { on: 0, cond: Cond::Start }, Dep { on: 1, cond: Cond::Complete }]),
            ctr("web", on(2, Cond::Healthy)),
        ];
        running(&mut ctrs[0], t0);
        running(&mut ctrs[1], t0 + Duration::from_secs(1));
        ctrs[1].def.start_timeout = Some(60);
        running(&mut ctrs[2], t0);
        ctrs[2].def.start_timeout = Some(30);
        assert_eq!(conditions(&ctrs).next_deadline(), Some(t0 + Duration::from_secs(30)));
        ctrs[2].ever_healthy = true;
        assert_eq!(conditions(&ctrs).next_deadline(), Some(t0 + Duration::from_secs(61)));
        // A container with a call in flight waits for nothing.
        ctrs[3].pending = Some(Pending::Create);
        assert_eq!(conditions(&ctrs).next_deadline(), None);
    }

    #[test]
    fn containers_are_created_while_the_pause_container_starts_and_start_after_its_firewall() {
        let now = Instant::now();
        let mut pause = ctr("~internal~ecs~pause", vec![]);
        pause.internal = true;
        let mut ctrs = vec![ctr("app", on(1, Cond::Start)), pause];
        assert_eq!(conditions(&ctrs).readiness(0, now), Readiness::Wait, "the pause container does not exist yet");
        ctrs[1].id = Some("pause".into());
        assert_eq!(conditions(&ctrs).readiness(0, now), Readiness::Ready, "created: the others may be created");
        ctrs[0].phase = Phase::Created;
        assert_eq!(conditions(&ctrs).readiness(0, now), Readiness::Wait, "but start only once it runs");
        running(&mut ctrs[1], now);
        for (firewall, ready) in [
            (Firewall::Wanted, false),
            (Firewall::Installing, false),
            (Firewall::Installed, true),
            (Firewall::None, true),
        ] {
            let c = Conditions { ctrs: &ctrs, firewall, start_timeout: AGENT_START };
            assert_eq!(c.readiness(0, now) == Readiness::Ready, ready, "{firewall:?}");
        }
    }

    fn restartable(period: Option<i32>, ignored: Option<Vec<i32>>) -> Ctr {
        let mut c = ctr("app", vec![]);
        c.def.restart_policy = Some(ContainerRestartPolicy {
            enabled: Some(true),
            ignored_exit_codes: ignored,
            restart_attempt_period: period,
        });
        c
    }

    #[test]
    fn the_restart_policy_restarts_a_container_that_ran_its_attempt_period() {
        let t0 = Instant::now();
        let mut c = restartable(Some(10), Some(vec![0]));
        stopped(&mut c, t0, 1);
        assert!(!should_restart(&c, false, t0 + Duration::from_secs(9)), "ran less than its period");
        assert!(should_restart(&c, false, t0 + Duration::from_secs(10)));
        assert!(!should_restart(&c, true, t0 + Duration::from_secs(10)), "the task is stopping");
        c.exit_code = Some(0);
        assert!(!should_restart(&c, false, t0 + Duration::from_secs(10)), "an ignored exit code");
    }

    #[test]
    fn the_restart_policy_leaves_stopped_disabled_and_default_period_containers_alone() {
        let t0 = Instant::now();
        let mut c = restartable(None, None);
        stopped(&mut c, t0, 1);
        assert!(!should_restart(&c, false, t0 + Duration::from_secs(299)), "300 s by default");
        assert!(should_restart(&c, false, t0 + Duration::from_secs(300)));
        c.stop_sent = true;
        assert!(!should_restart(&c, false, t0 + Duration::from_secs(300)), "the agent stopped it");
        c.stop_sent = false;
        c.def.restart_policy.as_mut().unwrap().enabled = Some(false);
        assert!(!should_restart(&c, false, t0 + Duration::from_secs(300)));
    }

    #[test]
    fn a_container_stops_only_after_those_that_depend_on_it() {
        let mut ctrs = vec![ctr("db", vec![]), ctr("app", on(0, Cond::Start)), ctr("side", vec![])];
        assert!(!dependents_stopped(&ctrs, 0));
        assert!(dependents_stopped(&ctrs, 1) && dependents_stopped(&ctrs, 2));
        ctrs[1].phase = Phase::Stopped;
        assert!(dependents_stopped(&ctrs, 0));
    }

    #[test]
    fn essential_exits_end_the_task_and_non_essential_ones_do_not() {
        let mut c = ctr("app", vec![]);
        assert_eq!(
            exit_stops_task(&c, TaskStatus::Pending),
            Some((StopCode::EssentialContainerExited, ESSENTIAL_EXITED_REASON))
        );
        c.essential = false;
        assert_eq!(exit_stops_task(&c, TaskStatus::Running), None);
        c.internal = true;
        assert_eq!(exit_stops_task(&c, TaskStatus::Pending), Some((StopCode::TaskFailedToStart, PAUSE_EXITED_REASON)));
        assert_eq!(
            exit_stops_task(&c, TaskStatus::Running),
            Some((StopCode::EssentialContainerExited, PAUSE_EXITED_REASON))
        );
    }

    #[test]
    fn a_failure_before_running_is_a_failure_to_start() {
        assert_eq!(failure_stop_code(TaskStatus::Pending), StopCode::TaskFailedToStart);
        assert_eq!(failure_stop_code(TaskStatus::Running), StopCode::EssentialContainerExited);
        assert_eq!(failure_stop_code(TaskStatus::Stopping), StopCode::EssentialContainerExited);
    }

    #[test]
    fn a_running_container_records_its_start_bindings_and_health() {
        let t0 = Instant::now();
        let mut c = ctr("web", vec![]);
        c.phase = Phase::Created;
        let mut o = observed(RunState::Running);
        o.started_at = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(100));
        o.ports = vec![(53, TransportProtocol::Udp, 32768)];
        o.health = Some(Health::Healthy);
        assert_eq!(observe(&mut c, &o, NetworkMode::Bridge, false, t0), Seen::Nothing);
        assert_eq!((c.phase, c.started, c.ever_started), (Phase::Running, Some(t0), true));
        assert_eq!((c.health, c.ever_healthy), (HealthStatus::Healthy, true));
        assert_eq!(c.bindings[0].host_port, Some(32768));
        assert_eq!(c.bindings[0].protocol, Some(TransportProtocol::Udp));

        // Seen again unchanged: no new start. A new start time: restarted by its policy.
        let later = t0 + Duration::from_secs(5);
        observe(&mut c, &o, NetworkMode::Bridge, false, later);
        assert_eq!(c.started, Some(t0));
        o.started_at = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(200));
        o.health = Some(Health::Starting);
        observe(&mut c, &o, NetworkMode::Bridge, false, later);
        assert_eq!(c.started, Some(later));
        assert_eq!((c.health, c.ever_healthy), (HealthStatus::Unknown, true), "ever healthy stays");
    }

    #[test]
    fn an_exited_container_keeps_the_health_it_had_while_it_ran() {
        let t0 = Instant::now();
        let mut c = ctr("web", vec![]);
        let mut o = observed(RunState::Running);
        o.health = Some(Health::Healthy);
        observe(&mut c, &o, NetworkMode::Bridge, false, t0);
        let mut o = observed(RunState::Exited);
        o.health = Some(Health::Unhealthy);
        o.exit_code = Some(143);
        assert_eq!(observe(&mut c, &o, NetworkMode::Bridge, false, t0), Seen::Exited);
        assert_eq!((c.phase, c.exit_code, c.health), (Phase::Stopped, Some(143), HealthStatus::Healthy));
        // A stopped container takes nothing in any more.
        assert_eq!(observe(&mut c, &observed(RunState::Running), NetworkMode::Bridge, false, t0), Seen::Nothing);
        assert_eq!(c.phase, Phase::Stopped);
    }

    #[test]
    fn exits_give_the_oom_reason_or_dockers_error_for_a_container_that_never_ran() {
        let t0 = Instant::now();
        let mut c = ctr("app", vec![]);
        let mut o = observed(RunState::Exited);
        o.error = Some("exec: \"nope\": not found".into());
        o.exit_code = Some(127);
        assert_eq!(observe(&mut c, &o, NetworkMode::Bridge, false, t0), Seen::Exited);
        assert_eq!(c.reason.as_deref(), Some("CannotStartContainerError: exec: \"nope\": not found"));

        let mut c = ctr("app", vec![]);
        let mut o = observed(RunState::Exited);
        o.oom_killed = true;
        o.started_at = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1));
        o.finished_at = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(2));
        observe(&mut c, &o, NetworkMode::Bridge, false, t0);
        assert_eq!(c.reason.as_deref(), Some(OOM_REASON));
        assert!(c.ever_started && c.finished_at == o.finished_at);
    }

    #[test]
    fn a_sigkill_not_sent_by_the_agent_waits_a_moment_for_dockers_oom_verdict() {
        let t0 = Instant::now();
        let mut killed = observed(RunState::Exited);
        killed.exit_code = Some(137);

        // Docker's OOM event lands within the grace: the exit is an OOM kill.
        let mut c = ctr("app", vec![]);
        running(&mut c, t0);
        assert_eq!(observe(&mut c, &killed, NetworkMode::Bridge, false, t0), Seen::Nothing);
        assert_eq!(c.phase, Phase::Running);
        c.oom_event = true;
        let later = t0 + Duration::from_millis(300);
        assert_eq!(observe(&mut c, &killed, NetworkMode::Bridge, false, later), Seen::Exited);
        assert_eq!(c.reason.as_deref(), Some(OOM_REASON));

        // No verdict within the grace: a plain SIGKILL.
        let mut c = ctr("app", vec![]);
        running(&mut c, t0);
        assert_eq!(observe(&mut c, &killed, NetworkMode::Bridge, false, t0), Seen::Nothing);
        assert_eq!(c.exit_hold_until, Some(t0 + OOM_VERDICT_GRACE));
        assert_eq!(observe(&mut c, &killed, NetworkMode::Bridge, false, t0 + OOM_VERDICT_GRACE), Seen::Exited);
        assert_eq!((c.reason.as_deref(), c.exit_hold_until), (None, None));

        // The agent's own kill (the task stops, or it sent the stop) is taken at once.
        let mut c = ctr("app", vec![]);
        running(&mut c, t0);
        assert_eq!(observe(&mut c, &killed, NetworkMode::Bridge, true, t0), Seen::Exited);
        let mut c = ctr("app", vec![]);
        running(&mut c, t0);
        c.stop_sent = true;
        assert_eq!(observe(&mut c, &killed, NetworkMode::Bridge, false, t0), Seen::Exited);
    }

    #[test]
    fn an_exit_under_the_restart_policy_restarts_and_waits_for_the_restart() {
        let t0 = Instant::now();
        let mut c = restartable(Some(0), None);
        running(&mut c, t0);
        let mut o = observed(RunState::Exited);
        o.exit_code = Some(1);
        assert_eq!(observe(&mut c, &o, NetworkMode::Bridge, false, t0), Seen::Restart);
        assert_eq!((c.phase, c.pending), (Phase::Running, Some(Pending::Start)));
        assert_eq!(observe(&mut c, &o, NetworkMode::Bridge, false, t0), Seen::Nothing, "a restart is under way");
        c.pending = None;
        assert_eq!(observe(&mut c, &o, NetworkMode::Bridge, true, t0), Seen::Exited, "not while stopping");
    }

    #[test]
    fn docker_health_maps_to_ecs_health() {
        assert_eq!(health(Some(Health::Healthy)), HealthStatus::Healthy);
        assert_eq!(health(Some(Health::Unhealthy)), HealthStatus::Unhealthy);
        assert_eq!(health(Some(Health::Starting)), HealthStatus::Unknown);
        assert_eq!(health(None), HealthStatus::Unknown);
    }

    #[test]
    fn task_status_goes_pending_running_stopping_stopped() {
        let t0 = Instant::now();
        let mut ctrs = vec![ctr("a", vec![]), ctr("b", vec![])];
        assert_eq!(task_status(&ctrs, false, true), TaskStatus::Pending);
        running(&mut ctrs[0], t0);
        assert_eq!(task_status(&ctrs, false, true), TaskStatus::Pending, "not all have started");
        running(&mut ctrs[1], t0);
        assert_eq!(task_status(&ctrs, false, true), TaskStatus::Running);
        ctrs[0].phase = Phase::Stopped;
        assert_eq!(task_status(&ctrs, false, true), TaskStatus::Running, "a non-essential exit");
        assert_eq!(task_status(&ctrs, true, true), TaskStatus::Stopping);
        ctrs[1].phase = Phase::Stopped;
        assert_eq!(task_status(&ctrs, true, false), TaskStatus::Stopping, "the address is not free yet");
        assert_eq!(task_status(&ctrs, true, true), TaskStatus::Stopped);
    }

    #[test]
    fn task_health_follows_the_essential_containers_with_health_checks() {
        let checked = |name: &str, health: HealthStatus, essential: bool| {
            let mut c = ctr(name, vec![]);
            c.def.health_check = Some(HealthCheck::default());
            c.health = health;
            c.essential = essential;
            c
        };
        let unchecked = ctr("plain", vec![]);
        assert_eq!(task_health(&[ctr("plain", vec![])]), HealthStatus::Unknown, "no health check at all");
        let ctrs = [checked("a", HealthStatus::Healthy, true), checked("b", HealthStatus::Unhealthy, false), unchecked];
        assert_eq!(task_health(&ctrs), HealthStatus::Healthy, "only essential containers count");
        let ctrs = [checked("a", HealthStatus::Healthy, true), checked("b", HealthStatus::Unknown, true)];
        assert_eq!(task_health(&ctrs), HealthStatus::Unknown);
        let ctrs = [checked("a", HealthStatus::Unknown, true), checked("b", HealthStatus::Unhealthy, true)];
        assert_eq!(task_health(&ctrs), HealthStatus::Unhealthy);
    }

    #[test]
    fn features_the_agent_cannot_honour_fail_the_task() {
        let with_container = |c: ContainerDefinition| RegisterTaskDefinitionRequest {
            container_definitions: Some(vec![c]),
            ..Default::default()
        };
        assert_eq!(unsupported(&assignment(with_container(ContainerDefinition::default()))), None);
        let files = ContainerDefinition { environment_files: Some(vec![Default::default()]), ..Default::default() };
        assert_eq!(
            unsupported(&assignment(with_container(files))).as_deref(),
            Some("CannotCreateContainerError: environmentFiles is not supported by this agent")
        );
        let efs = RegisterTaskDefinitionRequest {
            volumes: Some(vec![Volume {
                efs_volume_configuration: Some(EFSVolumeConfiguration::default()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(unsupported(&assignment(efs)).unwrap().contains("an EFS volume"));
        let awsvpc = RegisterTaskDefinitionRequest { network_mode: Some(NetworkMode::Awsvpc), ..Default::default() };
        let mut a = assignment(awsvpc);
        assert!(unsupported(&a).unwrap().contains("without a network attachment"));
        a.network = Some(network([10, 0, 2, 7]));
        assert!(unsupported(&a).unwrap().starts_with("ResourceInitializationError: the task's network attachment"));
    }
}
