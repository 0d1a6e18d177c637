//! ELBv2's room in the state: load balancers, target groups, listeners and rules of every
//! account, and how they map to store records (tables `elb.*`).

use std::sync::Arc;

use imbl::OrdMap;

use elb::resources::{Listener, LoadBalancer, Rule, TargetGroup};
use model::Scope;
use store::{Mutation, Record, StoreError};

use super::{decode, encode, put_or_delete};

/// Every ELBv2 resource, keyed by scope and id.
#[derive(Debug, Clone, Default)]
pub struct ElbState {
    pub load_balancers: OrdMap<(Scope, String), Arc<LoadBalancer>>,
    pub target_groups: OrdMap<(Scope, String), Arc<TargetGroup>>,
    pub listeners: OrdMap<(Scope, String), Arc<Listener>>,
    pub rules: OrdMap<(Scope, String), Arc<Rule>>,
}

/// One stored ELBv2 resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ElbKey {
    LoadBalancer(Scope, String),
    TargetGroup(Scope, String),
    Listener(Scope, String),
    Rule(Scope, String),
}

const LOAD_BALANCERS: &str = "elb.load_balancers";
const TARGET_GROUPS: &str = "elb.target_groups";
const LISTENERS: &str = "elb.listeners";
const RULES: &str = "elb.rules";

impl ElbState {
    /// The store mutation that makes `key` durable as it now is.
    pub(crate) fn mutation(&self, key: &ElbKey) -> Mutation {
        let (table, scope, id, value) = match key {
            ElbKey::LoadBalancer(s, id) => {
                (LOAD_BALANCERS, s, id, self.load_balancers.get(&(s.clone(), id.clone())).map(|v| encode(v.as_ref())))
            }
            ElbKey::TargetGroup(s, id) => {
                (TARGET_GROUPS, s, id, self.target_groups.get(&(s.clone(), id.clone())).map(|v| encode(v.as_ref())))
            }
            ElbKey::Listener(s, id) => {
                (LISTENERS, s, id, self.listeners.get(&(s.clone(), id.clone())).map(|v| encode(v.as_ref())))
            }
            ElbKey::Rule(s, id) => (RULES, s, id, self.rules.get(&(s.clone(), id.clone())).map(|v| encode(v.as_ref()))),
        };
        let key = format!("{}/{}/{id}", scope.account, scope.region);
        put_or_delete(table, key, value)
    }

    /// Loads one record of an `elb.` table: the resource's key, or `None` for a table this
    /// module does not own.
    pub(crate) fn load(&mut self, r: &Record) -> std::result::Result<Option<ElbKey>, StoreError> {
        Ok(Some(match r.table.as_str() {
            LOAD_BALANCERS => {
                let v: LoadBalancer = decode(r)?;
                let key = ElbKey::LoadBalancer(v.scope.clone(), v.id.clone());
                self.load_balancers.insert((v.scope.clone(), v.id.clone()), Arc::new(v));
                key
            }
            TARGET_GROUPS => {
                let v: TargetGroup = decode(r)?;
                let key = ElbKey::TargetGroup(v.scope.clone(), v.id.clone());
                self.target_groups.insert((v.scope.clone(), v.id.clone()), Arc::new(v));
                key
            }
            LISTENERS => {
                let v: Listener = decode(r)?;
                let key = ElbKey::Listener(v.scope.clone(), v.id.clone());
                self.listeners.insert((v.scope.clone(), v.id.clone()), Arc::new(v));
                key
            }
            RULES => {
                let v: Rule = decode(r)?;
                let key = ElbKey::Rule(v.scope.clone(), v.id.clone());
                self.rules.insert((v.scope.clone(), v.id.clone()), Arc::new(v));
                key
            }
            _ => return Ok(None),
        }))
    }

    /// Forgets the resource `key` names (its record was deleted).
    pub(crate) fn forget(&mut self, key: &ElbKey) {
        match key {
            ElbKey::LoadBalancer(s, id) => drop(self.load_balancers.remove(&(s.clone(), id.clone()))),
            ElbKey::TargetGroup(s, id) => drop(self.target_groups.remove(&(s.clone(), id.clone()))),
            ElbKey::Listener(s, id) => drop(self.listeners.remove(&(s.clone(), id.clone()))),
            ElbKey::Rule(s, id) => drop(self.rules.remove(&(s.clone(), id.clone()))),
        };
    }

    pub fn scoped_load_balancers<'a>(&'a self, scope: &'a Scope) -> impl Iterator<Item = &'a Arc<LoadBalancer>> + 'a {
        self.load_balancers.iter().filter(move |((s, _), _)| s == scope).map(|(_, v)| v)
    }
    pub fn scoped_target_groups<'a>(&'a self, scope: &'a Scope) -> impl Iterator<Item = &'a Arc<TargetGroup>> + 'a {
        self.target_groups.iter().filter(move |((s, _), _)| s == scope).map(|(_, v)| v)
    }
    /// The listeners of one load balancer, by port.
    pub fn lb_listeners(&self, scope: &Scope, lb_id: &str) -> Vec<Arc<Listener>> {
        let mut out: Vec<_> = self
            .listeners
            .iter()
            .filter(|((s, _), l)| s == scope && l.lb_id == lb_id)
            .map(|(_, l)| l.clone())
            .collect();
        out.sort_by_key(|l| l.port);
        out
    }
    /// The rules of one listener (the default rule excluded), by priority.
    pub fn listener_rules(&self, scope: &Scope, listener_id: &str) -> Vec<Arc<Rule>> {
        let mut out: Vec<_> = self
            .rules
            .iter()
            .filter(|((s, _), r)| s == scope && r.listener_id == listener_id)
            .map(|(_, r)| r.clone())
            .collect();
        out.sort_by_key(|r| r.priority);
        out
    }
    /// The load balancers whose listeners or rules forward to target group `tg_arn`.
    pub fn lbs_using(&self, scope: &Scope, tg_arn: &str) -> Vec<String> {
        let mut lbs: Vec<String> = Vec::new();
        let mut add = |arn: String| {
            if !lbs.contains(&arn) {
                lbs.push(arn);
            }
        };
        for ((s, _), l) in &self.listeners {
            if s == scope && l.default_actions.iter().any(|a| a.target_groups().contains(&tg_arn)) {
                add(l.lb_arn());
            }
        }
        for ((s, _), r) in &self.rules {
            if s == scope && r.actions.iter().any(|a| a.target_groups().contains(&tg_arn)) {
                add(elb::names::load_balancer_arn(s, &r.lb_name, &r.lb_id));
            }
        }
        lbs
    }
}
