//! EventBridge's operations (`cp.events()`): rules on the default bus, their targets and
//! tags (state in `state::events`), and the loop that fires schedule rules
//! ([`firing::run_schedule`]).
//!
//! Decisions:
//! - `PutRule` on an existing name replaces its definition (members left out are
//!   cleared; `State` defaults to ENABLED) and adds the given tags to the rule's own.
//!   A rule that gets a new schedule, or is enabled again, counts its schedule from that
//!   moment: firings missed while it was disabled never run.
//! - Targets of any kind are accepted and stored, since a template that also targets a
//!   queue or a function must still apply; only ECS cluster targets are started. ECS
//!   parameters Berth could never launch (more than 10 tasks, a launch type together
//!   with a capacity provider strategy, an `Input` that is not RunTask's overrides, a
//!   cluster of another account or region) are refused per entry in `FailedEntries`.
//! - `DeleteRule` of a rule that does not exist succeeds, as EventBridge's does.
//! - The target's `RoleArn` is required for ECS targets, as EventBridge requires it, and
//!   recorded; tasks are started as the rule's account, without assuming it.

pub mod firing;

use std::sync::Arc;

use model::events::shapes::{LaunchType, Target};
use model::events::{
    check_bus, check_event_pattern, check_target_arn, check_target_id, ecs_cluster_of, is_ecs_cluster_arn,
    parse_schedule, EventsError, RuleName, MAX_RULES, MAX_TARGETS_PER_RULE, MAX_TASK_COUNT,
};
use model::tags::Tags;
use model::Scope;

use crate::error::{Error, Result};
use crate::state::events::{EventsKey, Rule, RuleState};
use crate::state::{State, Touched};
use crate::writer::Txn;
use crate::{Ops, Page};

pub use firing::{run_schedule, FIRING_INTERVAL};

/// The marker of EventBridge's operations: `cp.events()`.
#[derive(Debug)]
pub enum Events {}

impl crate::ControlPlane {
    /// The EventBridge operations.
    pub fn events(&self) -> Ops<'_, Events> {
        Ops::new(self)
    }
}

/// A `PutRule` request in domain terms.
#[derive(Debug, Clone)]
pub struct PutRule {
    pub name: RuleName,
    pub schedule_expression: Option<String>,
    pub event_pattern: Option<String>,
    pub state: Option<RuleState>,
    pub description: Option<String>,
    pub role_arn: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// A target that was not put or removed, with EventBridge's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    pub target_id: String,
    pub code: &'static str,
    pub message: String,
}

/// The largest (and default) page of the list operations.
pub const PAGE_LIMIT: i32 = 100;

fn invalid(message: impl Into<String>) -> Error {
    Error::Events(EventsError::validation(message))
}

fn too_many() -> Error {
    Error::Events(EventsError::new(
        "LimitExceededException",
        "The requested resource exceeds the maximum number allowed.",
    ))
}

/// A page of `limit` after a token, refused with EventBridge's code.
pub fn page(limit: Option<i32>, token: Option<&str>) -> Result<Page> {
    Page::parse(limit, token, PAGE_LIMIT).map_err(|e| invalid(e.to_string()))
}

/// Tags checked with EventBridge's code.
fn tags(pairs: Vec<(String, String)>) -> Result<Tags> {
    Tags::parse(pairs).map_err(|e| invalid(e.to_string()))
}

fn now_secs(txn: &Txn<'_>) -> i64 {
    txn.now.epoch_seconds() as i64
}

fn find<'a>(state: &'a State, scope: &Scope, name: &RuleName) -> Result<&'a Arc<Rule>> {
    state.events.rules.get(&(scope.clone(), name.clone())).ok_or_else(|| EventsError::rule_not_found(name).into())
}

fn store(txn: &mut Txn<'_>, rule: Rule) {
    let key = (rule.scope.clone(), rule.name.clone());
    txn.touch(Touched::Events(EventsKey::Rule(key.0.clone(), key.1.clone())));
    txn.state.events.rules.insert(key, Arc::new(rule));
}

/// The rule a tagging ARN names in `scope`.
fn rule_of_arn(state: &State, scope: &Scope, arn: &str) -> Result<Arc<Rule>> {
    let name = RuleName::from_arn(arn, scope).ok_or_else(|| {
        Error::Events(EventsError::new("ResourceNotFoundException", format!("Resource {arn} does not exist.")))
    })?;
    find(state, scope, &name).cloned()
}

impl Ops<'_, Events> {
    /// Creates or replaces a rule; answers its ARN.
    pub async fn put_rule(&self, scope: &Scope, bus: Option<&str>, req: PutRule) -> Result<String> {
        check_bus(bus, scope)?;
        if req.schedule_expression.is_none() && req.event_pattern.is_none() {
            return Err(invalid("Parameter(s) EventPattern or ScheduleExpression must be specified."));
        }
        if let Some(s) = &req.schedule_expression {
            parse_schedule(s)?;
        }
        if let Some(p) = &req.event_pattern {
            check_event_pattern(p)?;
        }
        let new_tags = tags(req.tags.clone())?;
        let scope = scope.clone();
        self.write(move |txn| {
            let now = now_secs(txn);
            let old = txn.state.events.rules.get(&(scope.clone(), req.name.clone())).cloned();
            let state = req.state.unwrap_or(RuleState::Enabled);
            let (tags, anchor, last_fired) = match &old {
                None => {
                    if txn.state.events.of_scope(&scope).count() >= MAX_RULES {
                        return Err(too_many());
                    }
                    (new_tags, now, None)
                }
                Some(old) => {
                    let mut merged = tags(old.tags.clone())?;
                    merged
                        .merge(new_tags.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                        .map_err(|e| invalid(e.to_string()))?;
                    let same_schedule = old.schedule_expression == req.schedule_expression;
                    let still_enabled = old.state.is_enabled() && state.is_enabled();
                    if same_schedule && still_enabled {
                        (merged, old.anchor, old.last_fired)
                    } else {
                        (merged, now, None)
                    }
                }
            };
            let rule = Rule {
                scope: scope.clone(),
                name: req.name,
                schedule_expression: req.schedule_expression,
                event_pattern: req.event_pattern,
                state,
                description: req.description,
                role_arn: req.role_arn,
                tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                targets: old.map(|o| o.targets.clone()).unwrap_or_default(),
                anchor,
                last_fired,
            };
            let arn = rule.arn();
            store(txn, rule);
            Ok(arn)
        })
        .await
    }

    pub fn describe_rule(&self, scope: &Scope, bus: Option<&str>, name: &RuleName) -> Result<Arc<Rule>> {
        check_bus(bus, scope)?;
        find(&self.view(), scope, name).cloned()
    }

    /// The rules whose names start with `prefix`, in name order.
    pub fn list_rules(
        &self,
        scope: &Scope,
        bus: Option<&str>,
        prefix: Option<&str>,
        page: &Page,
    ) -> Result<(Vec<Arc<Rule>>, Option<String>)> {
        check_bus(bus, scope)?;
        let state = self.view();
        let matching = state
            .events
            .of_scope(scope)
            .filter(|r| prefix.is_none_or(|p| r.name.as_str().starts_with(p)))
            .map(|r| (r.name.to_string(), r.clone()));
        Ok(page.take(matching, false))
    }

    /// EnableRule and DisableRule. Enabling counts the schedule from now.
    pub async fn set_state(&self, scope: &Scope, bus: Option<&str>, name: RuleName, enabled: bool) -> Result<()> {
        check_bus(bus, scope)?;
        let scope = scope.clone();
        self.write(move |txn| {
            let mut rule = (**find(txn.state, &scope, &name)?).clone();
            if rule.state.is_enabled() == enabled {
                return Ok(());
            }
            rule.state = if enabled { RuleState::Enabled } else { RuleState::Disabled };
            if enabled {
                rule.anchor = now_secs(txn);
                rule.last_fired = None;
            }
            store(txn, rule);
            Ok(())
        })
        .await
    }

    /// Deletes a rule; refused while it has targets unless `force`.
    pub async fn delete_rule(&self, scope: &Scope, bus: Option<&str>, name: RuleName, force: bool) -> Result<()> {
        check_bus(bus, scope)?;
        let scope = scope.clone();
        self.write(move |txn| {
            let key = (scope.clone(), name.clone());
            let Some(rule) = txn.state.events.rules.get(&key) else { return Ok(()) };
            if !rule.targets.is_empty() && !force {
                return Err(invalid("Rule can't be deleted since it has targets."));
            }
            txn.state.events.rules.remove(&key);
            txn.touch(Touched::Events(EventsKey::Rule(scope, name)));
            Ok(())
        })
        .await
    }

    /// Adds or replaces targets by id; answers the entries that were refused.
    pub async fn put_targets(
        &self,
        scope: &Scope,
        bus: Option<&str>,
        name: RuleName,
        targets: Vec<Target>,
    ) -> Result<Vec<FailedEntry>> {
        check_bus(bus, scope)?;
        let mut accepted = Vec::new();
        let mut failed = Vec::new();
        for t in targets {
            check_target(&t)?;
            match ecs_refusal(&t, scope) {
                Some(message) => failed.push(FailedEntry {
                    target_id: t.id.clone().unwrap_or_default(),
                    code: "ValidationException",
                    message,
                }),
                None => accepted.push(t),
            }
        }
        let scope = scope.clone();
        self.write(move |txn| {
            let mut rule = (**find(txn.state, &scope, &name)?).clone();
            for t in accepted {
                match rule.targets.iter_mut().find(|o| o.id == t.id) {
                    Some(slot) => *slot = t,
                    None => rule.targets.push(t),
                }
            }
            if rule.targets.len() > MAX_TARGETS_PER_RULE {
                return Err(too_many());
            }
            rule.targets.sort_by(|a, b| a.id.cmp(&b.id));
            store(txn, rule);
            Ok(failed)
        })
        .await
    }

    pub fn list_targets(
        &self,
        scope: &Scope,
        bus: Option<&str>,
        name: &RuleName,
        page: &Page,
    ) -> Result<(Vec<Target>, Option<String>)> {
        check_bus(bus, scope)?;
        let state = self.view();
        let rule = find(&state, scope, name)?;
        Ok(page.take(rule.targets.iter().map(|t| (t.id.clone().unwrap_or_default(), t.clone())), false))
    }

    /// Removes targets by id; ids the rule does not have are ignored, as EventBridge does.
    pub async fn remove_targets(
        &self,
        scope: &Scope,
        bus: Option<&str>,
        name: RuleName,
        ids: Vec<String>,
    ) -> Result<Vec<FailedEntry>> {
        check_bus(bus, scope)?;
        for id in &ids {
            check_target_id(id)?;
        }
        let scope = scope.clone();
        self.write(move |txn| {
            let mut rule = (**find(txn.state, &scope, &name)?).clone();
            let before = rule.targets.len();
            rule.targets.retain(|t| !ids.iter().any(|id| t.id.as_deref() == Some(id)));
            if rule.targets.len() != before {
                store(txn, rule);
            }
            Ok(Vec::new())
        })
        .await
    }

    /// The names of the rules with a target whose ARN is `arn`.
    pub fn rule_names_by_target(
        &self,
        scope: &Scope,
        bus: Option<&str>,
        arn: &str,
        page: &Page,
    ) -> Result<(Vec<String>, Option<String>)> {
        check_bus(bus, scope)?;
        let state = self.view();
        let names = state
            .events
            .of_scope(scope)
            .filter(|r| r.targets.iter().any(|t| t.arn.as_deref() == Some(arn)))
            .map(|r| (r.name.to_string(), r.name.to_string()));
        Ok(page.take(names, false))
    }

    pub fn tags_of(&self, scope: &Scope, arn: &str) -> Result<Vec<(String, String)>> {
        Ok(rule_of_arn(&self.view(), scope, arn)?.tags.clone())
    }

    pub async fn tag(&self, scope: &Scope, arn: String, add: Vec<(String, String)>) -> Result<()> {
        tags(add.clone())?;
        let scope = scope.clone();
        self.write(move |txn| {
            let mut rule = (*rule_of_arn(txn.state, &scope, &arn)?).clone();
            let mut merged = tags(rule.tags.clone())?;
            merged.merge(add).map_err(|e| invalid(e.to_string()))?;
            rule.tags = merged.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            store(txn, rule);
            Ok(())
        })
        .await
    }

    pub async fn untag(&self, scope: &Scope, arn: String, keys: Vec<String>) -> Result<()> {
        let scope = scope.clone();
        self.write(move |txn| {
            let mut rule = (*rule_of_arn(txn.state, &scope, &arn)?).clone();
            rule.tags.retain(|(k, _)| !keys.contains(k));
            store(txn, rule);
            Ok(())
        })
        .await
    }
}

/// The checks EventBridge makes of every target before storing any: the request is
/// refused as a whole.
fn check_target(t: &Target) -> Result<()> {
    let id = t.id.as_deref().unwrap_or_default();
    check_target_id(id)?;
    let arn = t.arn.as_deref().unwrap_or_default();
    check_target_arn(arn)?;
    let inputs = [t.input.is_some(), t.input_path.is_some(), t.input_transformer.is_some()];
    if inputs.iter().filter(|b| **b).count() > 1 {
        return Err(invalid(format!(
            "Only one of Input, InputPath, or InputTransformer must be provided for target {id}."
        )));
    }
    if let Some(input) = &t.input {
        if serde_json::from_str::<serde_json::Value>(input).is_err() {
            return Err(invalid(format!(
                "Parameter Input is not valid for target {id}. Reason: it is not valid JSON."
            )));
        }
    }
    if is_ecs_cluster_arn(arn) {
        if t.role_arn.is_none() {
            return Err(invalid(format!("Parameter(s) RoleArn must be specified for target: {id}.")));
        }
        if t.ecs_parameters.is_none() {
            return Err(invalid(format!("Parameter(s) EcsParameters must be specified for target: {id}.")));
        }
    }
    Ok(())
}

/// Why Berth could never start an ECS target's tasks, if it could not.
fn ecs_refusal(t: &Target, scope: &Scope) -> Option<String> {
    let arn = t.arn.as_deref().unwrap_or_default();
    let p = t.ecs_parameters.as_ref()?;
    if !is_ecs_cluster_arn(arn) {
        return None;
    }
    if ecs_cluster_of(arn, scope).is_none() {
        return Some(format!("The cluster {arn} is not in this account and region; Berth starts tasks only there."));
    }
    if !(1..=MAX_TASK_COUNT).contains(&p.task_count.unwrap_or(1)) {
        return Some(format!("TaskCount must be between 1 and {MAX_TASK_COUNT}."));
    }
    let strategy = p.capacity_provider_strategy.as_ref().is_some_and(|s| !s.is_empty());
    if p.launch_type.is_some() && strategy {
        return Some("Specifying both a LaunchType and CapacityProviderStrategy is not supported.".into());
    }
    if p.launch_type == Some(LaunchType::External) {
        return Some("Berth has no EXTERNAL launch type; use EC2 or FARGATE.".into());
    }
    if let Some(input) = &t.input {
        if let Err(e) = serde_json::from_str::<model::ecs::shapes::TaskOverride>(input) {
            return Some(format!("Input is not a RunTask overrides object: {e}"));
        }
    }
    None
}
