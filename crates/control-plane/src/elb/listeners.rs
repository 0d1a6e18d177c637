//! Listeners and their rules.

use std::sync::Arc;

use elb::actions::{parse_actions, Action, ActionInput};
use elb::conditions::{check_rule_conditions, Condition, ConditionInput};
use elb::error::enums;
use elb::names::{parse_arn, ElbArn};
use elb::resources::{check_priority, merge_tags, Listener, LoadBalancer, Rule};
use elb::{ElbError, Fault};
use model::tags::Tags;
use model::Scope;

use super::load_balancers::find_lb;
use super::target_groups::find_tg;
use super::{fail, new_id, ElbKey, Paging, MAX_LISTENERS, MAX_RULES};
use crate::elb::Elbv2;
use crate::error::Result;
use crate::state::{State, Touched};
use crate::writer::Txn;
use crate::Caller;
use crate::Ops;

/// What `CreateListener` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewListener {
    pub lb_arn: String,
    pub protocol: Option<String>,
    pub port: Option<i32>,
    pub default_actions: Vec<ActionInput>,
    pub certificates: usize,
    pub tags: Vec<(String, String)>,
}

/// What `CreateRule` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewRule {
    pub listener_arn: String,
    pub conditions: Vec<ConditionInput>,
    pub priority: i64,
    pub actions: Vec<ActionInput>,
    pub tags: Vec<(String, String)>,
}

/// What `ModifyRule` asks for: absent parts stay.
#[derive(Debug, Clone, Default)]
pub struct RuleChange {
    pub rule_arn: String,
    pub conditions: Option<Vec<ConditionInput>>,
    pub actions: Option<Vec<ActionInput>>,
}

/// A rule as DescribeRules shows it; the default rule has no priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleView {
    pub arn: String,
    pub priority: Option<u32>,
    pub conditions: Vec<Condition>,
    pub actions: Vec<Action>,
}

fn listener_not_found(what: &str) -> crate::Error {
    crate::Error::Elb(elb::ElbError::new(Fault::ListenerNotFound, format!("Listener '{what}' not found")))
}

fn rule_not_found(what: &str) -> crate::Error {
    crate::Error::Elb(elb::ElbError::new(Fault::RuleNotFound, format!("Rule '{what}' not found")))
}

pub(crate) fn find_listener(state: &State, scope: &Scope, arn: &str) -> Result<Arc<Listener>> {
    let ElbArn::Listener { listener, .. } = parse_arn(scope, arn, Fault::ListenerNotFound)? else {
        return fail(Fault::Validation, format!("'{arn}' is not a listener ARN"));
    };
    state
        .elb
        .listeners
        .get(&(scope.clone(), listener))
        .filter(|l| l.arn() == arn)
        .cloned()
        .ok_or_else(|| listener_not_found(arn))
}

/// A rule ARN resolved: a rule of its own, or a listener's default rule.
enum FoundRule {
    Rule(Arc<Rule>),
    Default(Arc<Listener>),
}

fn find_rule(state: &State, scope: &Scope, arn: &str) -> Result<FoundRule> {
    let ElbArn::Rule { listener, rule, .. } = parse_arn(scope, arn, Fault::RuleNotFound)? else {
        return fail(Fault::Validation, format!("'{arn}' is not a rule ARN"));
    };
    if let Some(r) = state.elb.rules.get(&(scope.clone(), rule.clone())).filter(|r| r.arn() == arn) {
        return Ok(FoundRule::Rule(r.clone()));
    }
    match state.elb.listeners.get(&(scope.clone(), listener)) {
        Some(l) if l.default_rule_arn() == arn => Ok(FoundRule::Default(l.clone())),
        _ => Err(rule_not_found(arn)),
    }
}

fn check_listener_protocol(protocol: Option<&str>, certificates: usize) -> Result<String> {
    match protocol.unwrap_or("HTTP") {
        "HTTP" if certificates > 0 => fail(Fault::Validation, "An HTTP listener takes no certificates."),
        "HTTP" => Ok("HTTP".into()),
        "HTTPS" => fail(Fault::UnsupportedProtocol, "HTTPS listeners are not supported by Berth yet; use HTTP."),
        other if !enums::PROTOCOL.contains(&other) => {
            Err(ElbError::not_in_enum("protocol", other, enums::PROTOCOL).into())
        }
        other => fail(
            Fault::UnsupportedProtocol,
            format!("Protocol '{other}' is not supported by an Application Load Balancer; use HTTP."),
        ),
    }
}

/// Validates actions and checks that the target groups they forward to exist, speak
/// HTTP and are in the load balancer's VPC.
fn checked_actions(state: &State, scope: &Scope, lb: &LoadBalancer, inputs: Vec<ActionInput>) -> Result<Vec<Action>> {
    let actions = parse_actions(inputs)?;
    for a in &actions {
        for arn in a.target_groups() {
            let tg = find_tg(state, scope, arn)?;
            if tg.vpc_id != lb.vpc_id {
                return fail(
                    Fault::InvalidConfigurationRequest,
                    format!(
                        "Target group '{arn}' is in VPC '{}', not in the load balancer's VPC '{}'",
                        tg.vpc_id, lb.vpc_id
                    ),
                );
            }
            if tg.protocol != "HTTP" {
                return fail(Fault::IncompatibleProtocols, format!("Target group '{arn}' does not speak HTTP."));
            }
        }
    }
    Ok(actions)
}

fn checked_conditions(inputs: Vec<ConditionInput>) -> Result<Vec<Condition>> {
    if inputs.is_empty() {
        return fail(Fault::Validation, "A rule needs at least one condition.");
    }
    let conditions = inputs.into_iter().map(Condition::parse).collect::<std::result::Result<Vec<_>, _>>()?;
    check_rule_conditions(&conditions)?;
    Ok(conditions)
}

/// Removes a listener and its rules.
pub(crate) fn remove_listener(txn: &mut Txn<'_>, scope: &Scope, listener_id: &str) {
    for r in txn.state.elb.listener_rules(scope, listener_id) {
        txn.state.elb.rules.remove(&(scope.clone(), r.id.clone()));
        txn.touch(Touched::Elb(ElbKey::Rule(scope.clone(), r.id.clone())));
    }
    txn.state.elb.listeners.remove(&(scope.clone(), listener_id.to_string()));
    txn.touch(Touched::Elb(ElbKey::Listener(scope.clone(), listener_id.to_string())));
}

fn lb_of(state: &State, l: &Listener) -> Result<Arc<LoadBalancer>> {
    find_lb(state, &l.scope, &l.lb_arn())
}

fn port_of(port: Option<i32>) -> Result<u16> {
    match port {
        Some(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Some(p) => fail(Fault::Validation, format!("Port {p} is not between 1 and 65535.")),
        None => fail(Fault::Validation, "A listener of an Application Load Balancer needs a Port."),
    }
}

impl Ops<'_, Elbv2> {
    pub async fn create_listener(&self, caller: &Caller, req: NewListener) -> Result<Listener> {
        let protocol = check_listener_protocol(req.protocol.as_deref(), req.certificates)?;
        let port = port_of(req.port)?;
        let mut tags = Tags::default();
        merge_tags(&mut tags, req.tags)?;
        let scope = caller.scope.clone();
        let listener = self
            .change(move |txn| {
                let lb = find_lb(txn.state, &scope, &req.lb_arn)?;
                let actions = checked_actions(txn.state, &scope, &lb, req.default_actions)?;
                let existing = txn.state.elb.lb_listeners(&scope, &lb.id);
                if let Some(l) = existing.iter().find(|l| l.port == port) {
                    if l.protocol == protocol && l.default_actions == actions {
                        return Ok(l.as_ref().clone());
                    }
                    return fail(
                        Fault::DuplicateListener,
                        format!("A listener already exists on port {port} of load balancer '{}'", req.lb_arn),
                    );
                }
                if existing.len() >= MAX_LISTENERS {
                    return fail(
                        Fault::TooManyListeners,
                        format!("A load balancer can have at most {MAX_LISTENERS} listeners."),
                    );
                }
                let l = Listener {
                    scope: scope.clone(),
                    lb_name: lb.name.clone(),
                    lb_id: lb.id.clone(),
                    id: new_id(),
                    port,
                    protocol,
                    default_actions: actions,
                    default_rule_id: new_id(),
                    tags,
                    default_rule_tags: Tags::default(),
                };
                txn.state.elb.listeners.insert((scope.clone(), l.id.clone()), Arc::new(l.clone()));
                txn.touch(Touched::Elb(ElbKey::Listener(scope, l.id.clone())));
                Ok(l)
            })
            .await?;
        Ok(listener)
    }

    /// The listeners of a load balancer, or the ones named; by port.
    pub fn describe_listeners(
        &self,
        caller: &Caller,
        lb_arn: Option<&str>,
        arns: &[String],
        page_size: Option<i32>,
        marker: Option<&str>,
    ) -> Result<(Vec<Listener>, Option<String>)> {
        let state = self.view();
        let paging = Paging::parse(page_size, marker)?;
        let scope = &caller.scope;
        let listeners: Vec<Arc<Listener>> = match (lb_arn, arns.is_empty()) {
            (Some(_), false) => return fail(Fault::Validation, "Give LoadBalancerArn or ListenerArns, not both."),
            (None, true) => return fail(Fault::Validation, "Give a LoadBalancerArn or ListenerArns."),
            (Some(lb), true) => {
                let lb = find_lb(&state, scope, lb)?;
                state.elb.lb_listeners(scope, &lb.id)
            }
            (None, false) => arns.iter().map(|a| find_listener(&state, scope, a)).collect::<Result<_>>()?,
        };
        Ok(paging.take(listeners.into_iter().map(|l| (format!("{:05}/{}", l.port, l.id), l.as_ref().clone()))))
    }

    pub async fn modify_listener(
        &self,
        caller: &Caller,
        arn: String,
        port: Option<i32>,
        protocol: Option<String>,
        certificates: usize,
        default_actions: Option<Vec<ActionInput>>,
    ) -> Result<Listener> {
        if protocol.is_some() || certificates > 0 {
            check_listener_protocol(protocol.as_deref(), certificates)?;
        }
        let port = port.map(|p| port_of(Some(p))).transpose()?;
        let scope = caller.scope.clone();
        let listener = self
            .change(move |txn| {
                let l = find_listener(txn.state, &scope, &arn)?;
                let lb = lb_of(txn.state, &l)?;
                let mut next = l.as_ref().clone();
                if let Some(port) = port {
                    if port != l.port && txn.state.elb.lb_listeners(&scope, &lb.id).iter().any(|o| o.port == port) {
                        return fail(
                            Fault::DuplicateListener,
                            format!("A listener already exists on port {port} of this load balancer"),
                        );
                    }
                    next.port = port;
                }
                if let Some(actions) = default_actions {
                    next.default_actions = checked_actions(txn.state, &scope, &lb, actions)?;
                }
                txn.state.elb.listeners.insert((scope.clone(), next.id.clone()), Arc::new(next.clone()));
                txn.touch(Touched::Elb(ElbKey::Listener(scope, next.id.clone())));
                Ok(next)
            })
            .await?;
        Ok(listener)
    }

    pub async fn delete_listener(&self, caller: &Caller, arn: String) -> Result<()> {
        let scope = caller.scope.clone();
        self.change(move |txn| {
            let l = find_listener(txn.state, &scope, &arn)?;
            remove_listener(txn, &scope, &l.id);
            Ok(())
        })
        .await?;
        Ok(())
    }

    pub async fn create_rule(&self, caller: &Caller, req: NewRule) -> Result<RuleView> {
        let priority = check_priority(req.priority)?;
        let conditions = checked_conditions(req.conditions)?;
        let mut tags = Tags::default();
        merge_tags(&mut tags, req.tags)?;
        let scope = caller.scope.clone();
        let rule = self
            .change(move |txn| {
                let l = find_listener(txn.state, &scope, &req.listener_arn)?;
                let lb = lb_of(txn.state, &l)?;
                let actions = checked_actions(txn.state, &scope, &lb, req.actions)?;
                let rules = txn.state.elb.listener_rules(&scope, &l.id);
                if rules.iter().any(|r| r.priority == priority) {
                    return fail(Fault::PriorityInUse, format!("Priority '{priority}' is currently in use"));
                }
                if rules.len() >= MAX_RULES {
                    return fail(
                        Fault::TooManyRules,
                        format!("A listener can have at most {MAX_RULES} rules besides its default rule."),
                    );
                }
                let rule = Rule {
                    scope: scope.clone(),
                    lb_name: l.lb_name.clone(),
                    lb_id: l.lb_id.clone(),
                    listener_id: l.id.clone(),
                    id: new_id(),
                    priority,
                    conditions,
                    actions,
                    tags,
                };
                txn.state.elb.rules.insert((scope.clone(), rule.id.clone()), Arc::new(rule.clone()));
                txn.touch(Touched::Elb(ElbKey::Rule(scope, rule.id.clone())));
                Ok(view_of(&rule))
            })
            .await?;
        Ok(rule)
    }

    /// The rules of a listener by priority, its default rule last; or the rules named.
    pub fn describe_rules(
        &self,
        caller: &Caller,
        listener_arn: Option<&str>,
        arns: &[String],
        page_size: Option<i32>,
        marker: Option<&str>,
    ) -> Result<(Vec<RuleView>, Option<String>)> {
        let state = self.view();
        let paging = Paging::parse(page_size, marker)?;
        let scope = &caller.scope;
        let views: Vec<RuleView> = match (listener_arn, arns.is_empty()) {
            (Some(_), false) => return fail(Fault::Validation, "Give ListenerArn or RuleArns, not both."),
            (None, true) => return fail(Fault::Validation, "Give a ListenerArn or RuleArns."),
            (Some(arn), true) => {
                let l = find_listener(&state, scope, arn)?;
                let mut v: Vec<RuleView> = state.elb.listener_rules(scope, &l.id).iter().map(|r| view_of(r)).collect();
                v.push(default_view(&l));
                v
            }
            (None, false) => arns
                .iter()
                .map(|a| {
                    Ok(match find_rule(&state, scope, a)? {
                        FoundRule::Rule(r) => view_of(&r),
                        FoundRule::Default(l) => default_view(&l),
                    })
                })
                .collect::<Result<_>>()?,
        };
        let keyed = views.into_iter().enumerate().map(|(i, v)| (format!("{i:06}"), v));
        Ok(paging.take(keyed))
    }

    pub async fn modify_rule(&self, caller: &Caller, change: RuleChange) -> Result<RuleView> {
        let conditions = change.conditions.map(checked_conditions).transpose()?;
        let scope = caller.scope.clone();
        let view = self
            .change(move |txn| match find_rule(txn.state, &scope, &change.rule_arn)? {
                FoundRule::Default(l) => {
                    if conditions.is_some() {
                        return fail(
                            Fault::OperationNotPermitted,
                            "The conditions of a default rule cannot be changed.",
                        );
                    }
                    let lb = lb_of(txn.state, &l)?;
                    let mut next = l.as_ref().clone();
                    if let Some(actions) = change.actions {
                        next.default_actions = checked_actions(txn.state, &scope, &lb, actions)?;
                    }
                    txn.state.elb.listeners.insert((scope.clone(), next.id.clone()), Arc::new(next.clone()));
                    txn.touch(Touched::Elb(ElbKey::Listener(scope.clone(), next.id.clone())));
                    Ok(default_view(&next))
                }
                FoundRule::Rule(r) => {
                    let l = find_listener(txn.state, &scope, &r.listener_arn())?;
                    let lb = lb_of(txn.state, &l)?;
                    let mut next = r.as_ref().clone();
                    if let Some(c) = conditions {
                        next.conditions = c;
                    }
                    if let Some(actions) = change.actions {
                        next.actions = checked_actions(txn.state, &scope, &lb, actions)?;
                    }
                    txn.state.elb.rules.insert((scope.clone(), next.id.clone()), Arc::new(next.clone()));
                    txn.touch(Touched::Elb(ElbKey::Rule(scope.clone(), next.id.clone())));
                    Ok(view_of(&next))
                }
            })
            .await?;
        Ok(view)
    }

    pub async fn delete_rule(&self, caller: &Caller, arn: String) -> Result<()> {
        let scope = caller.scope.clone();
        self.change(move |txn| match find_rule(txn.state, &scope, &arn)? {
            FoundRule::Default(_) => fail(Fault::OperationNotPermitted, "A listener's default rule cannot be deleted."),
            FoundRule::Rule(r) => {
                txn.state.elb.rules.remove(&(scope.clone(), r.id.clone()));
                txn.touch(Touched::Elb(ElbKey::Rule(scope, r.id.clone())));
                Ok(())
            }
        })
        .await?;
        Ok(())
    }

    /// Sets several rules' priorities at once; afterwards no two rules of a listener may
    /// share one.
    pub async fn set_rule_priorities(&self, caller: &Caller, pairs: Vec<(String, i64)>) -> Result<Vec<RuleView>> {
        if pairs.is_empty() {
            return fail(Fault::Validation, "Give at least one rule and its priority.");
        }
        let pairs = pairs.into_iter().map(|(a, p)| Ok((a, check_priority(p)?))).collect::<Result<Vec<_>>>()?;
        let scope = caller.scope.clone();
        let views = self
            .change(move |txn| {
                let mut changed = Vec::new();
                for (arn, priority) in &pairs {
                    let FoundRule::Rule(r) = find_rule(txn.state, &scope, arn)? else {
                        return fail(Fault::OperationNotPermitted, "The priority of a default rule cannot be changed.");
                    };
                    let mut next = r.as_ref().clone();
                    next.priority = *priority;
                    txn.state.elb.rules.insert((scope.clone(), next.id.clone()), Arc::new(next.clone()));
                    txn.touch(Touched::Elb(ElbKey::Rule(scope.clone(), next.id.clone())));
                    changed.push(next);
                }
                for r in &changed {
                    let same = txn
                        .state
                        .elb
                        .listener_rules(&scope, &r.listener_id)
                        .iter()
                        .filter(|o| o.priority == r.priority)
                        .count();
                    if same > 1 {
                        return fail(Fault::PriorityInUse, format!("Priority '{}' is currently in use", r.priority));
                    }
                }
                Ok(changed.iter().map(view_of).collect())
            })
            .await?;
        Ok(views)
    }
}

fn view_of(r: &Rule) -> RuleView {
    RuleView { arn: r.arn(), priority: Some(r.priority), conditions: r.conditions.clone(), actions: r.actions.clone() }
}

fn default_view(l: &Listener) -> RuleView {
    RuleView { arn: l.default_rule_arn(), priority: None, conditions: Vec::new(), actions: l.default_actions.clone() }
}
