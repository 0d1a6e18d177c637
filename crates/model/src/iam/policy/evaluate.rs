//! Deciding a request as IAM does within one account: an explicit `Deny` in any policy
//! wins; otherwise an `Allow` in an identity policy, or in the resource's policy for a
//! principal it names, allows; otherwise the request is implicitly denied.
//!
//! A resource policy that names an *account* (`"AWS": "123456789012"` or its root ARN)
//! delegates to that account's IAM: it lets the account's users and roles in only if their
//! own identity policies allow the request too. Naming the user, the role (for its
//! sessions), a service or everyone is enough on its own. A role's trust policy is checked
//! the same way: `evaluate(identity, Some(trust), req)` with the `sts:AssumeRole` action.

use std::borrow::Cow;
use std::sync::Arc;

use crate::ids::AccountId;

use super::condition::Keys;
use super::pattern::Variables;
use super::{PolicyDocument, PrincipalPattern, PrincipalSet, Statement};

/// IAM's answer for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Allow,
    /// A `Deny` statement applies; no `Allow` can override it.
    ExplicitDeny,
    /// Nothing allows the request.
    ImplicitDeny,
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

/// What a resource policy alone says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourcePolicyDecision {
    /// An `Allow` names the principal itself (its ARN, its role, its service, or `*`):
    /// enough on its own within the account.
    AllowNamed,
    /// An `Allow` names only the principal's account: the principal's identity policies
    /// must allow the request as well.
    AllowAccount,
    ExplicitDeny,
    ImplicitDeny,
}

/// Who makes a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// The account itself (its root user or its root access keys).
    Root,
    User,
    /// A session of a role; the principal's ARN is the session's
    /// (`arn:aws:sts::<account>:assumed-role/<role>/<session>`).
    AssumedRole {
        role_arn: String,
    },
    /// An AWS service acting as itself (`ecs-tasks.amazonaws.com` assuming a task role).
    Service,
}

/// The principal of a request: its kind, ARN and account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    kind: PrincipalKind,
    arn: String,
    account: String,
}

impl Principal {
    pub fn root(account: &AccountId) -> Principal {
        Principal {
            kind: PrincipalKind::Root,
            arn: format!("arn:aws:iam::{account}:root"),
            account: account.to_string(),
        }
    }

    /// An IAM user, by its ARN (`arn:aws:iam::<account>:user/<path><name>`).
    pub fn user(account: &AccountId, arn: impl Into<String>) -> Principal {
        Principal { kind: PrincipalKind::User, arn: arn.into(), account: account.to_string() }
    }

    /// A session of the role `role_arn` named `session_name`.
    pub fn assumed_role(account: &AccountId, role_arn: impl Into<String>, session_name: &str) -> Principal {
        let role_arn = role_arn.into();
        // A session ARN carries the role's name without its path.
        let role_name = role_arn.rsplit('/').next().unwrap_or_default();
        let arn = format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session_name}");
        Principal { kind: PrincipalKind::AssumedRole { role_arn }, arn, account: account.to_string() }
    }

    /// A service principal such as `ecs-tasks.amazonaws.com`; it belongs to no account.
    pub fn service(name: impl Into<String>) -> Principal {
        Principal { kind: PrincipalKind::Service, arn: name.into(), account: String::new() }
    }

    pub fn kind(&self) -> &PrincipalKind {
        &self.kind
    }

    /// The principal's ARN (a service's name for a service).
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// The principal's account id; empty for a service.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// What `aws:PrincipalArn` holds: a role session's is its role's ARN.
    fn principal_arn(&self) -> &str {
        match &self.kind {
            PrincipalKind::AssumedRole { role_arn } => role_arn,
            _ => &self.arn,
        }
    }
}

/// The condition keys that follow from a request's principal alone (`aws:PrincipalArn`,
/// `aws:username`, `aws:PrincipalTag/*` ...), with the principal: built once and shared
/// by every request that principal makes, since authorization is on every request's path
/// and these do not change from one request to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalContext {
    principal: Principal,
    keys: KeySet,
}

impl PrincipalContext {
    /// The principal with `aws:PrincipalArn`, `aws:PrincipalAccount`, `aws:PrincipalType`
    /// and, for a user, `aws:username` filled in. The caller adds the rest that depends
    /// only on the principal (`aws:userid`, `aws:PrincipalTag/*`).
    pub fn new(principal: Principal) -> PrincipalContext {
        let mut keys = KeySet::default();
        let principal_type = match principal.kind {
            PrincipalKind::Root => Some("Account"),
            PrincipalKind::User => Some("User"),
            PrincipalKind::AssumedRole { .. } => Some("AssumedRole"),
            PrincipalKind::Service => None,
        };
        if let Some(principal_type) = principal_type {
            keys.set("aws:PrincipalArn".into(), vec![principal.principal_arn().to_string()]);
            keys.set("aws:PrincipalAccount".into(), vec![principal.account.clone()]);
            keys.set("aws:PrincipalType".into(), vec![principal_type.to_string()]);
            if principal.kind == PrincipalKind::User {
                keys.set("aws:username".into(), vec![principal.arn.rsplit('/').next().unwrap_or("").to_string()]);
            }
        }
        PrincipalContext { principal, keys }
    }

    /// Replaces the values of `key`.
    pub fn set(&mut self, key: impl Into<Cow<'static, str>>, values: Vec<String>) {
        self.keys.set(key.into(), values);
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }
}

/// Condition keys and their values. Names keep the case they were given and are compared
/// without it (a compiled policy's are lower-cased), so setting a key allocates nothing
/// for a name the code spells out. A handful of keys: a scan beats hashing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct KeySet(Vec<(Cow<'static, str>, Vec<String>)>);

impl KeySet {
    fn position(&self, key: &str) -> Option<usize> {
        self.0.iter().position(|(k, _)| k.eq_ignore_ascii_case(key))
    }

    fn get(&self, key: &str) -> Option<&[String]> {
        self.position(key).map(|i| self.0[i].1.as_slice())
    }

    fn set(&mut self, key: Cow<'static, str>, values: Vec<String>) {
        match self.position(&key) {
            Some(i) => self.0[i].1 = values,
            None => self.0.push((key, values)),
        }
    }
}

/// One request as policies see it: who, which action (`ecs:UpdateService`), on which
/// resource (an ARN, or `*` for actions without resource-level permissions), and its
/// condition keys (case-insensitive names, one or more string values each): the
/// principal's shared ones and the request's own, which take precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    base: Arc<PrincipalContext>,
    action: String,
    resource: String,
    keys: KeySet,
    /// The principal's keys this request removed.
    hidden: Vec<String>,
}

impl RequestContext {
    /// A request with the keys that follow from its principal already filled in (see
    /// [`PrincipalContext::new`]). The caller adds the rest (`aws:SourceIp`,
    /// `aws:CurrentTime`, `aws:ResourceTag/...`, `aws:userid`, service keys ...) and may
    /// replace these.
    pub fn new(principal: Principal, action: impl Into<String>, resource: impl Into<String>) -> RequestContext {
        RequestContext::of(Arc::new(PrincipalContext::new(principal)), action, resource)
    }

    /// A request of a principal whose keys are prepared already.
    pub fn of(base: Arc<PrincipalContext>, action: impl Into<String>, resource: impl Into<String>) -> RequestContext {
        RequestContext {
            base,
            action: action.into(),
            resource: resource.into(),
            keys: KeySet::default(),
            hidden: Vec::new(),
        }
    }

    /// Adds a value to `key` (a key can hold several, like `aws:TagKeys`).
    pub fn with(mut self, key: &str, value: impl Into<String>) -> RequestContext {
        self.insert(key, value);
        self
    }

    /// Adds a value to `key`.
    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        let mut values = self.values(key).map(<[String]>::to_vec).unwrap_or_default();
        values.push(value.into());
        self.set(Cow::Owned(key.to_string()), values);
    }

    /// Replaces the values of `key`. An empty list leaves the key present with no value,
    /// which conditions treat as absent.
    pub fn set(&mut self, key: impl Into<Cow<'static, str>>, values: Vec<String>) {
        let key = key.into();
        if !self.hidden.is_empty() {
            self.hidden.retain(|k| !k.eq_ignore_ascii_case(&key));
        }
        self.keys.set(key, values);
    }

    /// Takes `key` away (from this request only, when it is one of the principal's).
    pub fn remove(&mut self, key: &str) {
        self.keys.0.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        if self.base.keys.get(key).is_some() {
            self.hidden.push(key.to_string());
        }
    }

    /// The same request on another resource (a batch operation checks each).
    pub fn set_resource(&mut self, resource: impl Into<String>) {
        self.resource = resource.into();
    }

    pub fn set_action(&mut self, action: impl Into<String>) {
        self.action = action.into();
    }

    /// The values of a condition key, named in any case.
    pub fn values(&self, key: &str) -> Option<&[String]> {
        match self.keys.get(key) {
            Some(v) => Some(v),
            None if self.hidden.iter().any(|k| k.eq_ignore_ascii_case(key)) => None,
            None => self.base.keys.get(key),
        }
    }

    pub fn principal(&self) -> &Principal {
        &self.base.principal
    }

    pub fn action(&self) -> &str {
        &self.action
    }

    pub fn resource(&self) -> &str {
        &self.resource
    }
}

impl Variables for RequestContext {
    fn variable(&self, key: &str) -> Option<&str> {
        self.values(key).and_then(|v| v.first()).map(String::as_str)
    }
}

impl Keys for RequestContext {
    fn values(&self, key: &str) -> Option<&[String]> {
        RequestContext::values(self, key)
    }
}

/// IAM's decision for `req`, given every identity policy of the principal (its inline and
/// attached managed policies, and its groups' for a user) and the resource's policy, if the
/// resource has one. Same-account evaluation.
pub fn evaluate<P: std::ops::Deref<Target = PolicyDocument>>(
    identity_policies: &[P],
    resource_policy: Option<&PolicyDocument>,
    req: &RequestContext,
) -> Decision {
    let mut allowed = false;
    for policy in identity_policies {
        match outcome(policy, req) {
            Outcome::Deny => return Decision::ExplicitDeny,
            Outcome::Allow(_) => allowed = true,
            Outcome::None => {}
        }
    }
    if let Some(policy) = resource_policy {
        match resource_policy_decision(policy, req) {
            ResourcePolicyDecision::ExplicitDeny => return Decision::ExplicitDeny,
            ResourcePolicyDecision::AllowNamed => allowed = true,
            ResourcePolicyDecision::AllowAccount | ResourcePolicyDecision::ImplicitDeny => {}
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// What a resource policy (or a trust policy) alone says about `req`, principal matched.
pub fn resource_policy_decision(policy: &PolicyDocument, req: &RequestContext) -> ResourcePolicyDecision {
    match outcome(policy, req) {
        Outcome::Deny => ResourcePolicyDecision::ExplicitDeny,
        Outcome::Allow(Grant::Named) => ResourcePolicyDecision::AllowNamed,
        Outcome::Allow(Grant::Account) => ResourcePolicyDecision::AllowAccount,
        Outcome::None => ResourcePolicyDecision::ImplicitDeny,
    }
}

/// How a statement's principal covers the caller; `Named` is the stronger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Grant {
    Account,
    Named,
}

enum Outcome {
    Deny,
    Allow(Grant),
    None,
}

fn outcome(policy: &PolicyDocument, req: &RequestContext) -> Outcome {
    let mut best: Option<Grant> = None;
    for s in &policy.statements {
        let grant = match &s.principal {
            None => Grant::Named,
            Some(set) => match set.grant(req.principal()) {
                Some(g) => g,
                None => continue,
            },
        };
        if !s.covers(req) {
            continue;
        }
        if !s.allow {
            return Outcome::Deny;
        }
        best = best.max(Some(grant));
    }
    best.map_or(Outcome::None, Outcome::Allow)
}

/// Action patterns hold no policy variables: nothing to substitute.
struct NoVariables;

impl Variables for NoVariables {
    fn variable(&self, _: &str) -> Option<&str> {
        None
    }
}

impl Statement {
    /// Whether the statement's `Action` (or `NotAction`) covers `action`.
    pub(super) fn covers_action(&self, action: &str) -> bool {
        let actions = &self.actions;
        actions.items.iter().any(|p| p.matches(action, true, &NoVariables)) != actions.negated
    }

    /// Whether the statement's action, resource and conditions all cover the request.
    fn covers(&self, req: &RequestContext) -> bool {
        if !self.covers_action(&req.action) {
            return false;
        }
        if let Some(resources) = &self.resources {
            if resources.items.iter().any(|p| p.matches(&req.resource, req)) == resources.negated {
                return false;
            }
        }
        self.conditions.iter().all(|c| c.holds(req))
    }
}

impl PrincipalSet {
    fn grant(&self, p: &Principal) -> Option<Grant> {
        let best = self.items.iter().filter_map(|item| item.grant(p)).max();
        if self.negated {
            // NotPrincipal: everyone the list does not name.
            best.is_none().then_some(Grant::Named)
        } else {
            best
        }
    }
}

impl PrincipalPattern {
    fn grant(&self, p: &Principal) -> Option<Grant> {
        let is_service = p.kind == PrincipalKind::Service;
        let named = match self {
            PrincipalPattern::Everyone => true,
            PrincipalPattern::AnyAws => !is_service,
            PrincipalPattern::Account(account) => {
                if is_service || **account != p.account {
                    return None;
                }
                return Some(if p.kind == PrincipalKind::Root { Grant::Named } else { Grant::Account });
            }
            PrincipalPattern::User(arn) => p.kind == PrincipalKind::User && **arn == p.arn,
            PrincipalPattern::Role(arn) => {
                matches!(&p.kind, PrincipalKind::AssumedRole { role_arn } if **arn == *role_arn)
            }
            PrincipalPattern::Session(arn) => matches!(p.kind, PrincipalKind::AssumedRole { .. }) && **arn == p.arn,
            PrincipalPattern::Service(name) => is_service && name.eq_ignore_ascii_case(&p.arn),
            PrincipalPattern::Never => false,
        };
        named.then_some(Grant::Named)
    }
}
