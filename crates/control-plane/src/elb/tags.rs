//! AddTags, RemoveTags and DescribeTags across load balancers, target groups, listeners
//! and rules.

use std::sync::Arc;

use elb::names::{parse_arn, ElbArn};
use elb::resources::merge_tags;
use elb::Fault;
use model::tags::Tags;
use model::Scope;

use super::listeners::find_listener;
use super::load_balancers::find_lb;
use super::target_groups::find_tg;
use super::{fail, ElbKey};
use crate::elb::Elbv2;
use crate::error::Result;
use crate::state::{State, Touched};
use crate::Caller;
use crate::Ops;

/// The most resources one tagging request may name.
const MAX_RESOURCES: usize = 20;

fn fault_for(arn: &str) -> Fault {
    if arn.contains(":targetgroup/") {
        Fault::TargetGroupNotFound
    } else if arn.contains(":listener-rule/") {
        Fault::RuleNotFound
    } else if arn.contains(":listener/") {
        Fault::ListenerNotFound
    } else {
        Fault::LoadBalancerNotFound
    }
}

/// Reads the tags of the resource `arn` names: the lookup authorization's
/// `aws:ResourceTag` uses too, with ELBv2's error for an ARN that names nothing.
fn tags_of(state: &State, scope: &Scope, arn: &str) -> Result<Tags> {
    let kind = match parse_arn(scope, arn, fault_for(arn))? {
        ElbArn::LoadBalancer { .. } => "Load balancer",
        ElbArn::TargetGroup { .. } => "Target group",
        ElbArn::Listener { .. } => "Listener",
        ElbArn::Rule { .. } => "Rule",
    };
    match crate::state::resources::elb_tags(state, scope, arn) {
        Some(tags) => Ok(tags),
        None => fail(fault_for(arn), format!("{kind} '{arn}' not found")),
    }
}

/// Replaces the tags of the resource `arn` names.
fn set_tags(txn: &mut crate::Txn<'_>, scope: &Scope, arn: &str, tags: Tags) -> Result<()> {
    let s = scope.clone();
    match parse_arn(scope, arn, fault_for(arn))? {
        ElbArn::LoadBalancer { .. } => {
            let mut v = find_lb(txn.state, scope, arn)?.as_ref().clone();
            v.tags = tags;
            txn.touch(Touched::Elb(ElbKey::LoadBalancer(s.clone(), v.id.clone())));
            txn.state.elb.load_balancers.insert((s, v.id.clone()), Arc::new(v));
        }
        ElbArn::TargetGroup { .. } => {
            let mut v = find_tg(txn.state, scope, arn)?.as_ref().clone();
            v.tags = tags;
            txn.touch(Touched::Elb(ElbKey::TargetGroup(s.clone(), v.id.clone())));
            txn.state.elb.target_groups.insert((s, v.id.clone()), Arc::new(v));
        }
        ElbArn::Listener { .. } => {
            let mut v = find_listener(txn.state, scope, arn)?.as_ref().clone();
            v.tags = tags;
            txn.touch(Touched::Elb(ElbKey::Listener(s.clone(), v.id.clone())));
            txn.state.elb.listeners.insert((s, v.id.clone()), Arc::new(v));
        }
        ElbArn::Rule { listener, rule, .. } => {
            if let Some(r) = txn.state.elb.rules.get(&(s.clone(), rule)).filter(|r| r.arn() == arn).cloned() {
                let mut v = r.as_ref().clone();
                v.tags = tags;
                txn.touch(Touched::Elb(ElbKey::Rule(s.clone(), v.id.clone())));
                txn.state.elb.rules.insert((s, v.id.clone()), Arc::new(v));
            } else {
                match txn.state.elb.listeners.get(&(s.clone(), listener)).cloned() {
                    Some(l) if l.default_rule_arn() == arn => {
                        let mut v = l.as_ref().clone();
                        v.default_rule_tags = tags;
                        txn.touch(Touched::Elb(ElbKey::Listener(s.clone(), v.id.clone())));
                        txn.state.elb.listeners.insert((s, v.id.clone()), Arc::new(v));
                    }
                    _ => return fail(Fault::RuleNotFound, format!("Rule '{arn}' not found")),
                }
            }
        }
    }
    Ok(())
}

fn check_count(arns: &[String]) -> Result<()> {
    if arns.is_empty() || arns.len() > MAX_RESOURCES {
        return fail(Fault::Validation, format!("Give 1 to {MAX_RESOURCES} resource ARNs."));
    }
    Ok(())
}

impl Ops<'_, Elbv2> {
    pub async fn elb_add_tags(&self, caller: &Caller, arns: Vec<String>, tags: Vec<(String, String)>) -> Result<()> {
        check_count(&arns)?;
        let scope = caller.scope.clone();
        self.write(move |txn| {
            for arn in &arns {
                let mut t = tags_of(txn.state, &scope, arn)?;
                merge_tags(&mut t, tags.clone())?;
                set_tags(txn, &scope, arn, t)?;
            }
            Ok(())
        })
        .await
    }

    pub async fn elb_remove_tags(&self, caller: &Caller, arns: Vec<String>, keys: Vec<String>) -> Result<()> {
        check_count(&arns)?;
        let scope = caller.scope.clone();
        self.write(move |txn| {
            for arn in &arns {
                let mut t = tags_of(txn.state, &scope, arn)?;
                t.remove(&keys);
                set_tags(txn, &scope, arn, t)?;
            }
            Ok(())
        })
        .await
    }

    pub fn elb_describe_tags(&self, caller: &Caller, arns: &[String]) -> Result<Vec<(String, Tags)>> {
        check_count(arns)?;
        let state = self.view();
        arns.iter().map(|a| Ok((a.clone(), tags_of(&state, &caller.scope, a)?))).collect()
    }
}
