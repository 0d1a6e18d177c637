//! EventBridge's room in the state: the rules of every account with their targets and
//! the schedule's bookkeeping (table `events.rules`, one record a rule).
//!
//! A rule's targets live in its record, so `PutTargets` and `RemoveTargets` change one
//! record, and the firing loop's "this firing happened" (`last_fired`) is one small write
//! of the same record: after a crash, a firing is either recorded or it never started.

use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use model::events::shapes::Target;
use model::events::RuleName;
use model::Scope;
use store::{Mutation, Record, StoreError};

use super::{decode, encode, put_or_delete};

/// A rule's state, as EventBridge names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RuleState {
    Enabled,
    Disabled,
    /// Accepted and answered; for Berth (which emits no CloudTrail events) it is Enabled.
    EnabledWithAllCloudtrailManagementEvents,
}

impl RuleState {
    pub fn is_enabled(self) -> bool {
        self != RuleState::Disabled
    }
}

/// A rule as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub scope: Scope,
    pub name: RuleName,
    pub schedule_expression: Option<String>,
    pub event_pattern: Option<String>,
    pub state: RuleState,
    pub description: Option<String>,
    pub role_arn: Option<String>,
    /// In the order they were first given.
    pub tags: Vec<(String, String)>,
    /// In id order.
    pub targets: Vec<Target>,
    /// Seconds since the epoch from which the schedule counts: when the rule got its
    /// schedule or was last enabled. Firings before it never run.
    pub anchor: i64,
    /// The scheduled time of the last firing that was started (recorded before its
    /// tasks are launched, so no firing runs twice).
    pub last_fired: Option<i64>,
}

impl Rule {
    pub fn arn(&self) -> String {
        self.name.arn(&self.scope)
    }
}

/// Which record changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventsKey {
    Rule(Scope, RuleName),
}

/// The rules of every account.
#[derive(Debug, Clone, Default)]
pub struct EventsState {
    pub rules: OrdMap<(Scope, RuleName), Arc<Rule>>,
}

const RULES: &str = "events.rules";

impl EventsState {
    /// The rules of one scope, in name order.
    pub fn of_scope<'a>(&'a self, scope: &'a Scope) -> impl Iterator<Item = &'a Arc<Rule>> + 'a {
        // "-" is the smallest valid name: names are made of [-.0-9A-Z_a-z] only.
        let lowest = RuleName::parse("-").expect("a valid name");
        self.rules.range((scope.clone(), lowest)..).take_while(move |((s, _), _)| s == scope).map(|(_, r)| r)
    }

    /// The store mutation that makes `key` durable as it now is.
    pub(crate) fn mutation(&self, key: &EventsKey) -> Mutation {
        let EventsKey::Rule(s, n) = key;
        put_or_delete(
            RULES,
            format!("{}/{}/{n}", s.account, s.region),
            self.rules.get(&(s.clone(), n.clone())).map(|r| encode(r.as_ref())),
        )
    }

    /// Loads one record of an `events.` table: the rule's key, or `None` for a table this
    /// module does not own.
    pub(crate) fn load(&mut self, r: &Record) -> Result<Option<EventsKey>, StoreError> {
        if r.table != RULES {
            return Ok(None);
        }
        let rule: Rule = decode(r)?;
        let key = EventsKey::Rule(rule.scope.clone(), rule.name.clone());
        self.rules.insert((rule.scope.clone(), rule.name.clone()), Arc::new(rule));
        Ok(Some(key))
    }

    /// Forgets the rule `key` names (its record was deleted).
    pub(crate) fn forget(&mut self, key: &EventsKey) {
        let EventsKey::Rule(s, n) = key;
        self.rules.remove(&(s.clone(), n.clone()));
    }
}
