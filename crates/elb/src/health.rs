//! Target health as ALB reports it: states, reason codes, the health-check state machine,
//! and the board on which the data plane publishes what it observed.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// A registered target as the data plane and DescribeTargetHealth name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TargetKey {
    pub id: String,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Initial,
    Healthy,
    Unhealthy,
    Unused,
    Draining,
    Unavailable,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initial => "initial",
            State::Healthy => "healthy",
            State::Unhealthy => "unhealthy",
            State::Unused => "unused",
            State::Draining => "draining",
            State::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    RegistrationInProgress,
    InitialHealthChecking,
    ResponseCodeMismatch,
    Timeout,
    FailedHealthChecks,
    NotRegistered,
    NotInUse,
    DeregistrationInProgress,
    InvalidState,
    HealthCheckDisabled,
    InternalError,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RegistrationInProgress => "Elb.RegistrationInProgress",
            Reason::InitialHealthChecking => "Elb.InitialHealthChecking",
            Reason::ResponseCodeMismatch => "Target.ResponseCodeMismatch",
            Reason::Timeout => "Target.Timeout",
            Reason::FailedHealthChecks => "Target.FailedHealthChecks",
            Reason::NotRegistered => "Target.NotRegistered",
            Reason::NotInUse => "Target.NotInUse",
            Reason::DeregistrationInProgress => "Target.DeregistrationInProgress",
            Reason::InvalidState => "Target.InvalidState",
            Reason::HealthCheckDisabled => "Target.HealthCheckDisabled",
            Reason::InternalError => "Elb.InternalError",
        }
    }
}

/// One target's health: a state, and for every state but `healthy` a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    pub state: State,
    pub reason: Option<Reason>,
    pub description: Option<String>,
}

impl TargetHealth {
    pub fn new(state: State, reason: Reason, description: impl Into<String>) -> Self {
        TargetHealth { state, reason: Some(reason), description: Some(description.into()) }
    }
    pub fn healthy() -> Self {
        TargetHealth { state: State::Healthy, reason: None, description: None }
    }
    pub fn registering() -> Self {
        Self::new(State::Initial, Reason::RegistrationInProgress, "Target registration is in progress")
    }
    pub fn not_in_use() -> Self {
        Self::new(
            State::Unused,
            Reason::NotInUse,
            "Target group is not configured to receive traffic from the load balancer",
        )
    }
    pub fn not_registered() -> Self {
        Self::new(State::Unused, Reason::NotRegistered, "Target is not registered to the target group")
    }
    pub fn draining() -> Self {
        Self::new(State::Draining, Reason::DeregistrationInProgress, "Target deregistration is in progress")
    }
    pub fn disabled() -> Self {
        Self::new(State::Unavailable, Reason::HealthCheckDisabled, "Health checks are disabled")
    }
    pub fn unresolvable(id: &str) -> Self {
        Self::new(State::Unused, Reason::InvalidState, format!("Target {id} is not a running container instance"))
    }
}

/// The result of one health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// The target answered with a status the matcher does not accept.
    CodeMismatch(u16),
    /// No complete answer within the check's timeout.
    Timeout,
    /// The connection failed or the answer was not HTTP.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Registered, no check finished yet.
    Registering,
    /// At least one check finished; not yet decided.
    Initial,
    Healthy,
    Unhealthy,
}

/// The health-check state machine of one target. A new target becomes healthy after
/// one passing check and unhealthy after `unhealthy` failing ones in a row; afterwards a
/// healthy target becomes unhealthy after `unhealthy` consecutive failures, an unhealthy
/// one healthy after `healthy` consecutive passes (ALB's documented behaviour).
#[derive(Debug, Clone)]
pub struct Tracker {
    phase: Phase,
    passes: u32,
    failures: u32,
    last_failure: Option<Outcome>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    pub fn new() -> Self {
        Tracker { phase: Phase::Registering, passes: 0, failures: 0, last_failure: None }
    }

    /// Records a check; returns whether the target's routing health (healthy or not)
    /// changed.
    pub fn record(&mut self, outcome: Outcome, healthy_threshold: u32, unhealthy_threshold: u32) -> bool {
        let was = self.is_healthy();
        if outcome == Outcome::Passed {
            self.passes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.passes = 0;
            self.last_failure = Some(outcome);
        }
        self.phase = match self.phase {
            Phase::Registering | Phase::Initial if self.passes >= 1 => Phase::Healthy,
            Phase::Registering | Phase::Initial if self.failures >= unhealthy_threshold => Phase::Unhealthy,
            Phase::Registering | Phase::Initial => Phase::Initial,
            Phase::Healthy if self.failures >= unhealthy_threshold => Phase::Unhealthy,
            Phase::Unhealthy if self.passes >= healthy_threshold => Phase::Healthy,
            p => p,
        };
        was != self.is_healthy()
    }

    pub fn is_healthy(&self) -> bool {
        self.phase == Phase::Healthy
    }

    /// Whether a decision was reached (healthy or unhealthy).
    pub fn is_decided(&self) -> bool {
        matches!(self.phase, Phase::Healthy | Phase::Unhealthy)
    }

    pub fn report(&self) -> TargetHealth {
        match self.phase {
            Phase::Registering => TargetHealth::registering(),
            Phase::Initial => {
                TargetHealth::new(State::Initial, Reason::InitialHealthChecking, "Initial health checking in progress")
            }
            Phase::Healthy => TargetHealth::healthy(),
            Phase::Unhealthy => match &self.last_failure {
                Some(Outcome::CodeMismatch(code)) => TargetHealth::new(
                    State::Unhealthy,
                    Reason::ResponseCodeMismatch,
                    format!("Health checks failed with these codes: [{code}]"),
                ),
                Some(Outcome::Timeout) => TargetHealth::new(State::Unhealthy, Reason::Timeout, "Request timed out"),
                _ => TargetHealth::new(State::Unhealthy, Reason::FailedHealthChecks, "Health checks failed"),
            },
        }
    }
}

/// Where the data plane publishes the health of every target of the target groups it
/// serves (and of the targets it is draining), for DescribeTargetHealth to read.
/// Runtime state: after a restart every target starts over from `initial`, as ALB's do
/// after a registration.
#[derive(Debug, Default)]
pub struct Board {
    groups: Mutex<HashMap<String, HashMap<TargetKey, TargetHealth>>>,
}

impl Board {
    /// Replaces what is known about the targets of target group `arn`.
    pub fn publish(&self, arn: &str, targets: HashMap<TargetKey, TargetHealth>) {
        self.lock().insert(arn.to_string(), targets);
    }

    pub fn forget(&self, arn: &str) {
        self.lock().remove(arn);
    }

    /// Every group's arn the board knows.
    pub fn groups(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    pub fn group(&self, arn: &str) -> HashMap<TargetKey, TargetHealth> {
        self.lock().get(arn).cloned().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<TargetKey, TargetHealth>>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_makes_a_new_target_healthy() {
        let mut t = Tracker::new();
        assert_eq!(t.report().reason, Some(Reason::RegistrationInProgress));
        assert!(t.record(Outcome::Passed, 5, 2));
        assert_eq!(t.report().state, State::Healthy);
    }

    #[test]
    fn thresholds() {
        let mut t = Tracker::new();
        assert!(!t.record(Outcome::Failed, 5, 2));
        assert_eq!(t.report().reason, Some(Reason::InitialHealthChecking));
        t.record(Outcome::CodeMismatch(404), 5, 2);
        let r = t.report();
        assert_eq!((r.state, r.reason), (State::Unhealthy, Some(Reason::ResponseCodeMismatch)));
        assert_eq!(r.description.as_deref(), Some("Health checks failed with these codes: [404]"));
        for _ in 0..4 {
            assert!(!t.record(Outcome::Passed, 5, 2));
        }
        assert!(t.record(Outcome::Passed, 5, 2));
        assert!(!t.record(Outcome::Timeout, 5, 2));
        assert!(t.is_healthy());
        assert!(t.record(Outcome::Timeout, 5, 2));
        assert_eq!(t.report().reason, Some(Reason::Timeout));
    }
}
