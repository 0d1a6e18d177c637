//! Authorization: every request of a principal other than an account's root is decided
//! by IAM's policy logic (`model::iam::evaluate`) over the principal's identity policies:
//! an explicit `Deny` wins, then any `Allow`, else the request is denied.
//!
//! The edge says what a request is in IAM's terms ([`Access`]: the action, the resources
//! and the request's condition keys); this module adds what follows from the caller
//! (`aws:PrincipalArn`, `aws:username`, `aws:userid`, `aws:PrincipalTag/*`, the time) and
//! decides. Policies are held parsed in the state, so a decision parses nothing.
//!
//! Role trust policies are decided here too: `AssumeRole` by a principal, and a service
//! (`ecs-tasks.amazonaws.com`) assuming a task's role.

use model::iam::entity::{entity_arn, EntityKind};
use model::iam::Principal as EvalPrincipal;
use model::iam::{
    evaluate, resource_policy_decision, Decision, PolicyDocument, PrincipalContext, RequestContext,
    ResourcePolicyDecision,
};
use std::borrow::Cow;
use std::sync::Arc;

use super::groups::find_group;
use super::policies::identity_policies;
use super::roles::find_role;
use super::users::find_user;
use super::Iam;
use crate::caller::{Caller, Principal};
use crate::error::{Error, Result};
use crate::state::iam::{PolicyRef, PreparedPrincipal, Role};
use crate::state::State;
use crate::Ops;

/// A request in IAM's terms: the action (`ecs:UpdateService`), the resource ARNs it acts
/// on (`*` for actions without resource-level permissions), its condition keys, and the
/// resource policy of the resource it acts on (a secret's), evaluated with the caller's
/// identity policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub action: String,
    pub resources: Vec<String>,
    /// Condition keys by name (`"ecs:cluster"`): a name the code spells out costs nothing.
    pub context: Vec<(Cow<'static, str>, Vec<String>)>,
}

impl Access {
    pub fn new(action: impl Into<String>) -> Self {
        Access { action: action.into(), resources: vec!["*".into()], context: vec![] }
    }
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The principal as the evaluator sees it.
fn eval_principal(caller: &Caller) -> EvalPrincipal {
    let account = &caller.scope.account;
    match &caller.principal {
        Principal::Root => EvalPrincipal::root(account),
        Principal::User { name, path, .. } => {
            EvalPrincipal::user(account, entity_arn(account, EntityKind::User, path, name))
        }
        Principal::Role { name, path, session, .. } => {
            EvalPrincipal::assumed_role(account, entity_arn(account, EntityKind::Role, path, name), session.as_str())
        }
    }
}

/// The identity policies and tags of the caller's principal (none for the root): a
/// user's own and those of its groups.
fn principal_policies<'a>(state: &'a State, caller: &Caller) -> (Vec<PolicyRef>, &'a [(String, String)]) {
    let account = &caller.scope.account;
    match &caller.principal {
        Principal::Root => (vec![], &[]),
        Principal::User { name, .. } => match state.iam.users.get(&(account.clone(), name.key())) {
            Some(u) => {
                let mut policies = identity_policies(state, account, &u.inline, &u.attached);
                for g in state.iam.user_groups(account, &name.key()) {
                    policies.extend(identity_policies(state, account, &g.inline, &g.attached));
                }
                (policies, &u.tags)
            }
            None => (vec![], &[]),
        },
        Principal::Role { name, .. } => match state.iam.roles.get(&(account.clone(), name.key())) {
            Some(r) => (identity_policies(state, account, &r.inline, &r.attached), &r.tags),
            None => (vec![], &[]),
        },
    }
}

/// The keys of every request of the caller's principal: those of the principal itself,
/// `aws:userid`, its tags as `aws:PrincipalTag/*`, and `aws:SecureTransport` as Berth
/// serves it (plain HTTP unless it terminates TLS; the edge says so per request).
fn principal_context(caller: &Caller, tags: &[(String, String)]) -> PrincipalContext {
    let mut base = PrincipalContext::new(eval_principal(caller));
    base.set("aws:userid", vec![caller.user_id()]);
    base.set("aws:SecureTransport", vec!["false".into()]);
    for (k, v) in tags {
        base.set(format!("aws:PrincipalTag/{k}"), vec![v.clone()]);
    }
    base
}

/// `aws:EpochTime` and `aws:CurrentTime` (RFC 3339) now, formatted once a second rather
/// than on every request: authorization is on every request's path.
fn clock() -> (String, String) {
    static LAST: std::sync::Mutex<Option<(i64, String, String)>> = std::sync::Mutex::new(None);
    let now = now_seconds();
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((at, epoch, current)) = last.as_ref() {
        if *at == now {
            return (epoch.clone(), current.clone());
        }
    }
    let current = time::OffsetDateTime::from_unix_timestamp(now)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default();
    *last = Some((now, now.to_string(), current.clone()));
    (now.to_string(), current)
}

/// A request context of `base`'s principal with the time of the request.
fn context(base: Arc<PrincipalContext>, action: &str, resource: &str) -> RequestContext {
    let mut req = RequestContext::of(base, action, resource);
    set_time(&mut req);
    req
}

/// Adds `aws:EpochTime` and `aws:CurrentTime`.
fn set_time(req: &mut RequestContext) {
    let (epoch, current) = clock();
    req.set("aws:EpochTime", vec![epoch]);
    req.set("aws:CurrentTime", vec![current]);
}

/// What a denial says: AWS names the kind of policy whose explicit deny decided.
fn denied(caller: &Caller, action: &str, resource: &str, decision: Decision, by_resource_policy: bool) -> Error {
    let why = match decision {
        Decision::ExplicitDeny if by_resource_policy => "with an explicit deny in a resource-based policy".to_string(),
        Decision::ExplicitDeny => "with an explicit deny in an identity-based policy".to_string(),
        _ => format!("because no identity-based policy allows the {action} action"),
    };
    Error::Denied(format!(
        "User: {} is not authorized to perform: {action} on resource: {resource} {why}",
        caller.principal_arn()
    ))
}

impl Ops<'_, Iam> {
    /// The caller's identity policies and principal keys, prepared once for all its
    /// requests while IAM's state stays as it is.
    fn prepared(&self, state: &State, caller: &Caller) -> Arc<PreparedPrincipal> {
        let (account, principal) = (&caller.scope.account, &caller.principal);
        if let Some(p) = self.prepared_principals.get(&state.iam, account, principal) {
            return p;
        }
        let (policies, tags) = principal_policies(state, caller);
        let base = principal_context(caller, tags);
        self.prepared_principals.put(&state.iam, account, principal, base, policies)
    }

    /// The ARN, path included, of `account`'s user or role named `name`, if it exists: a
    /// request naming an entity is checked against the ARN the entity has.
    pub fn entity_arn(&self, account: &model::AccountId, kind: EntityKind, name: &str) -> Option<String> {
        let state = self.view();
        match kind {
            EntityKind::User => {
                find_user(&state, account, name).ok().map(|u| entity_arn(account, kind, &u.path, &u.name))
            }
            EntityKind::Role => {
                find_role(&state, account, name).ok().map(|r| entity_arn(account, kind, &r.path, &r.name))
            }
            EntityKind::Group => {
                find_group(&state, account, name).ok().map(|g| entity_arn(account, kind, &g.path, &g.name))
            }
            EntityKind::Policy => None,
        }
    }

    /// Whether `caller` may make the request `access` describes; `Denied` with AWS's
    /// message if not. The account's root may do everything.
    pub fn authorize(&self, caller: &Caller, access: Access) -> Result<()> {
        if caller.is_root() {
            return Ok(());
        }
        let state = self.view();
        let prepared = self.prepared(&state, caller);
        let policies = &*prepared.policies_for(&access.action);
        // The access's strings move into the request: nothing is copied per request.
        let Access { action, resources, context } = access;
        let mut req = RequestContext::of(prepared.context.clone(), action, String::new());
        for (k, v) in context {
            req.set(k, v);
        }
        // The time only for policies that may read it: formatting it is not free.
        let identity_reads_time = policies.iter().any(|p| p.reads_time());
        let mut timed = false;
        for resource in resources {
            let resource_policy = crate::state::resources::resource_policy(&state, &resource);
            if !timed && (identity_reads_time || resource_policy.is_some_and(PolicyDocument::reads_time)) {
                set_time(&mut req);
                timed = true;
            }
            // The resource's tags are looked up only for policies that read them.
            let reads_tags = policies.iter().any(|p| p.reads_resource_tags())
                || resource_policy.is_some_and(PolicyDocument::reads_resource_tags);
            let tag_keys = match reads_tags {
                true => add_resource_tags(&state, &resource, &mut req),
                false => vec![],
            };
            req.set_resource(resource);
            match evaluate(policies, resource_policy, &req) {
                Decision::Allow => {}
                d => {
                    // Only a denial pays for finding which policy decided it.
                    let by_resource_policy =
                        d == Decision::ExplicitDeny && evaluate(policies, None, &req) != Decision::ExplicitDeny;
                    return Err(denied(caller, req.action(), req.resource(), d, by_resource_policy));
                }
            }
            for k in tag_keys {
                req.remove(&k);
            }
        }
        Ok(())
    }
}

/// Adds `aws:ResourceTag/<key>` (and the service's own `<service>:ResourceTag/<key>`) for
/// each tag of the resource `arn` names; returns the keys added.
fn add_resource_tags(state: &State, arn: &str, req: &mut RequestContext) -> Vec<String> {
    let tags = crate::state::resources::resource_tags(state, arn);
    let service = arn.split(':').nth(2).unwrap_or_default();
    let mut keys = Vec::with_capacity(tags.len() * 2);
    for (k, v) in tags {
        for key in [format!("aws:ResourceTag/{k}"), format!("{service}:ResourceTag/{k}")] {
            req.set(key.clone(), vec![v.clone()]);
            keys.push(key);
        }
    }
    keys
}

/// Whether `caller` may assume `role` (in `role`'s account): its trust policy must allow
/// the caller, and where it names only the caller's account (or the caller is of another
/// account), the caller's own policies must allow `sts:AssumeRole` on it as well.
pub(crate) fn may_assume(state: &State, caller: &Caller, role: &Role, external_id: Option<&str>) -> bool {
    let role_arn = entity_arn(&role.account, EntityKind::Role, &role.path, &role.name);
    let (policies, tags) = principal_policies(state, caller);
    let mut req = context(Arc::new(principal_context(caller, tags)), "sts:AssumeRole", &role_arn);
    if let Some(id) = external_id {
        req.set("sts:ExternalId", vec![id.to_string()]);
    }
    let identity_allows = || caller.is_root() || evaluate(&policies, None, &req).is_allowed();
    let same_account = caller.scope.account == role.account;
    match resource_policy_decision(&role.trust.parsed, &req) {
        ResourcePolicyDecision::AllowNamed if same_account => true,
        ResourcePolicyDecision::AllowNamed | ResourcePolicyDecision::AllowAccount => identity_allows(),
        ResourcePolicyDecision::ExplicitDeny | ResourcePolicyDecision::ImplicitDeny => false,
    }
}

/// Whether the AWS service `service` (`ecs-tasks.amazonaws.com`) may assume `role`: its
/// trust policy must name the service.
pub(crate) fn service_may_assume(role: &Role, service: &str) -> bool {
    let role_arn = entity_arn(&role.account, EntityKind::Role, &role.path, &role.name);
    let req = RequestContext::new(EvalPrincipal::service(service), "sts:AssumeRole", role_arn);
    resource_policy_decision(&role.trust.parsed, &req) == ResourcePolicyDecision::AllowNamed
}

/// Whether the service `service` can assume the role `role_arn` of `account`: the role
/// exists there and its trust policy names the service.
pub(crate) fn service_can_assume(state: &State, account: &model::AccountId, role_arn: &str, service: &str) -> bool {
    let Some(rest) = role_arn.strip_prefix(&format!("arn:aws:iam::{account}:role/")) else { return false };
    let name = rest.rsplit('/').next().unwrap_or_default();
    state.iam.roles.get(&(account.clone(), name.to_ascii_lowercase())).is_some_and(|r| service_may_assume(r, service))
}
