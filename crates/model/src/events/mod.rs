//! EventBridge's domain for scheduled ECS tasks: rule names and target ids that can only
//! be built valid, rule ARNs, schedule expressions ([`schedule`]), event patterns (kept
//! as the caller's JSON), and the checks of an ECS target. Every refusal is an
//! [`EventsError`] carrying EventBridge's error code.
//!
//! Decisions:
//! - Only the default event bus exists; a rule names it by `default`, by its ARN, or not
//!   at all. Another bus is "not found", as EventBridge answers for a bus never created.
//! - Targets are held as EventBridge's own `Target` shape (generated, in [`shapes`]): a
//!   target *is* that schema, as a task definition is ECS's, and `ListTargetsByRule`
//!   answers what was put.

// The generated shapes use every import, but the model has members no operation of Berth reads.
#[allow(unused_imports)]
pub mod shapes;

pub mod schedule;

use serde::{Deserialize, Serialize};

use crate::Scope;

pub use schedule::Schedule;

/// Targets one rule may have.
pub const MAX_TARGETS_PER_RULE: usize = 5;
/// Rules one account may have on a bus.
pub const MAX_RULES: usize = 300;
/// Tags one rule may carry.
pub const MAX_TAGS: usize = 50;
/// The only event bus Berth has.
pub const DEFAULT_BUS: &str = "default";
/// The most tasks one target starts per firing (RunTask's limit).
pub const MAX_TASK_COUNT: i32 = 10;

/// A refusal with EventBridge's error code (`ValidationException`,
/// `ResourceNotFoundException`, `LimitExceededException`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EventsError {
    pub code: &'static str,
    pub message: String,
}

impl EventsError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        EventsError { code, message: message.into() }
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }
    pub fn rule_not_found(name: &RuleName) -> Self {
        Self::new("ResourceNotFoundException", format!("Rule {name} does not exist on EventBus default."))
    }
}

/// `[.\-_A-Za-z0-9]+` of 1 to 64 characters: rule names and target ids share the rule.
fn is_identifier(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// A rule's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RuleName(String);

impl RuleName {
    pub fn parse(s: &str) -> Result<Self, EventsError> {
        if !is_identifier(s) {
            return Err(EventsError::validation(format!(
                "1 validation error detected: Value '{s}' at 'name' failed to satisfy constraint: Member must \
                 satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+ and have a length between 1 and 64"
            )));
        }
        Ok(RuleName(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The rule's ARN on the default bus.
    pub fn arn(&self, scope: &Scope) -> String {
        format!("arn:aws:events:{}:{}:rule/{}", scope.region, scope.account, self.0)
    }
    /// The name a rule's ARN in `scope` names, if it names one there.
    pub fn from_arn(arn: &str, scope: &Scope) -> Option<RuleName> {
        let prefix = format!("arn:aws:events:{}:{}:rule/", scope.region, scope.account);
        let rest = arn.strip_prefix(&prefix)?;
        // A rule on the default bus has no bus segment; `default/<name>` is accepted too.
        let name = rest.strip_prefix("default/").unwrap_or(rest);
        RuleName::parse(name).ok()
    }
}

impl TryFrom<String> for RuleName {
    type Error = EventsError;
    fn try_from(s: String) -> Result<Self, EventsError> {
        RuleName::parse(&s)
    }
}
impl From<RuleName> for String {
    fn from(v: RuleName) -> String {
        v.0
    }
}
impl std::fmt::Display for RuleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a target id (same rule as a rule name).
pub fn check_target_id(id: &str) -> Result<(), EventsError> {
    if is_identifier(id) {
        return Ok(());
    }
    Err(EventsError::validation(format!(
        "1 validation error detected: Value '{id}' at 'targets.id' failed to satisfy constraint: Member must satisfy \
         regular expression pattern: [\\.\\-_A-Za-z0-9]+"
    )))
}

/// Checks that `EventBusName` (a name or an ARN) names the default bus of `scope`.
pub fn check_bus(bus: Option<&str>, scope: &Scope) -> Result<(), EventsError> {
    let Some(bus) = bus else { return Ok(()) };
    let default_arn = format!("arn:aws:events:{}:{}:event-bus/default", scope.region, scope.account);
    if bus == DEFAULT_BUS || bus == default_arn {
        return Ok(());
    }
    let name = bus.rsplit_once("event-bus/").map_or(bus, |(_, n)| n);
    Err(EventsError::new("ResourceNotFoundException", format!("Event bus {name} does not exist.")))
}

/// Parses a schedule expression with EventBridge's one message for any refusal.
pub fn parse_schedule(s: &str) -> Result<Schedule, EventsError> {
    Schedule::parse(s).map_err(|_| EventsError::validation("Parameter ScheduleExpression is not valid."))
}

/// Checks an event pattern: a JSON object (Berth stores it; it never matches, since
/// Berth emits no events).
pub fn check_event_pattern(p: &str) -> Result<(), EventsError> {
    match serde_json::from_str::<serde_json::Value>(p) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        _ => Err(EventsError::new(
            "InvalidEventPatternException",
            "Event pattern is not valid. Reason: Filter is not an object",
        )),
    }
}

/// The cluster an ECS target's ARN names, if it is an ECS cluster ARN of `scope`.
pub fn ecs_cluster_of(arn: &str, scope: &Scope) -> Option<String> {
    let prefix = format!("arn:aws:ecs:{}:{}:cluster/", scope.region, scope.account);
    arn.strip_prefix(&prefix).filter(|n| !n.is_empty()).map(str::to_string)
}

/// Whether a target's ARN names an ECS cluster at all (of any account or region).
pub fn is_ecs_cluster_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6 && parts[0] == "arn" && parts[2] == "ecs" && parts[5].starts_with("cluster/")
}

/// What RunTask is given for an ECS target's `TaskDefinitionArn`: an ARN without a
/// revision (Terraform's `arn_without_revision`) means the family's latest ACTIVE
/// revision, as EventBridge runs it, so it becomes the family's name; anything else is
/// passed on as given.
pub fn task_definition_reference(arn: &str) -> &str {
    match arn.strip_prefix("arn:").and_then(|_| arn.rsplit_once(":task-definition/")) {
        Some((_, family)) if !family.contains(':') => family,
        _ => arn,
    }
}

/// Checks a target's ARN: EventBridge refuses anything that is not an ARN.
pub fn check_target_arn(arn: &str) -> Result<(), EventsError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() == 6 && parts[0] == "arn" && !parts[2].is_empty() && !parts[5].is_empty() {
        return Ok(());
    }
    Err(EventsError::validation(format!(
        "Parameter {arn} is not valid. Reason: Provided Arn is not in correct format."
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccountId, Region};

    fn scope() -> Scope {
        Scope { account: AccountId::parse("123456789012").unwrap(), region: Region::parse("us-east-1").unwrap() }
    }

    #[test]
    fn names_and_arns() {
        let long = "r".repeat(64);
        for ok in ["a", "my-rule_1.x", long.as_str()] {
            assert!(RuleName::parse(ok).is_ok(), "{ok}");
        }
        let longer = "r".repeat(65);
        for bad in ["", "a b", "a/b", longer.as_str(), "é"] {
            assert!(RuleName::parse(bad).is_err(), "{bad}");
        }
        let n = RuleName::parse("nightly").unwrap();
        assert_eq!(n.arn(&scope()), "arn:aws:events:us-east-1:123456789012:rule/nightly");
        assert_eq!(RuleName::from_arn(&n.arn(&scope()), &scope()), Some(n));
        assert_eq!(RuleName::from_arn("arn:aws:events:us-west-2:123456789012:rule/nightly", &scope()), None);
    }

    #[test]
    fn buses_patterns_and_targets() {
        assert!(check_bus(None, &scope()).is_ok());
        assert!(check_bus(Some("default"), &scope()).is_ok());
        assert!(check_bus(Some("arn:aws:events:us-east-1:123456789012:event-bus/default"), &scope()).is_ok());
        assert_eq!(check_bus(Some("custom"), &scope()).unwrap_err().code, "ResourceNotFoundException");
        assert!(check_event_pattern(r#"{"source":["aws.ecs"]}"#).is_ok());
        assert!(check_event_pattern("[1]").is_err());
        assert_eq!(
            ecs_cluster_of("arn:aws:ecs:us-east-1:123456789012:cluster/default", &scope()).as_deref(),
            Some("default")
        );
        assert!(is_ecs_cluster_arn("arn:aws:ecs:eu-west-1:999999999999:cluster/x"));
        assert!(!is_ecs_cluster_arn("arn:aws:sqs:us-east-1:123456789012:q"));
        assert!(check_target_arn("arn:aws:sqs:us-east-1:123456789012:q").is_ok());
        assert!(check_target_arn("not-an-arn").is_err());
        let family = "arn:aws:ecs:us-east-1:123456789012:task-definition/nightly";
        assert_eq!(task_definition_reference(family), "nightly");
        assert_eq!(task_definition_reference(&format!("{family}:3")), format!("{family}:3"));
        assert_eq!(task_definition_reference("nightly:2"), "nightly:2");
    }
}
