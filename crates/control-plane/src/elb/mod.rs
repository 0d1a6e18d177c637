//! The ELBv2 resources of every account: load balancers, target groups and their targets,
//! listeners and rules, kept durably like every other resource; and the seam to the data
//! plane, which reads a [`elb::snapshot::Snapshot`] of them and publishes target health on
//! the [`crate::ElbRuntime`]'s board.
//!
//! For the ECS service controller: `cp.elbv2().register_targets`, `deregister_targets`
//! and `describe_target_health` are the same operations the API serves, callable with the
//! service's scope. Every write goes through `Ops::change`, which wakes the data plane.
//!
//! Decisions: each load balancer gets its own address from `--lb-address-pool`
//! (127.100.0.0/16), kept with it in the store, so two load balancers can both listen on
//! port 80. HTTPS listeners and target groups, authenticate actions, rule transforms and
//! regex conditions are refused with ELBv2's codes until they are built.

mod dataplane;
mod listeners;
mod load_balancers;
mod tags;
mod target_groups;

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use imbl::OrdMap;
use rand::Rng;

use elb::attributes::Attributes;
use elb::resources::{LoadBalancer, TargetGroup};
use elb::{ElbError, Fault};
use model::Scope;

use crate::error::{Error, Result};
use crate::state::{State, Touched};
use crate::Caller;
use crate::{Ops, Txn};

pub use crate::state::elb::{ElbKey, ElbState};
pub use listeners::{NewListener, NewRule, RuleChange, RuleView};
pub use load_balancers::NewLoadBalancer;
pub use target_groups::{NewTargetGroup, TargetHealthDescription, TargetSpec, UsedTargetGroup};

/// The marker of ELBv2's operations: `cp.elbv2()`.
#[derive(Debug)]
pub enum Elbv2 {}

impl crate::ControlPlane {
    /// The ELBv2 operations.
    pub fn elbv2(&self) -> crate::Ops<'_, Elbv2> {
        crate::Ops::new(self)
    }
}

/// Load balancers one account may have in a region (ALB's default quota).
pub const MAX_LOAD_BALANCERS: usize = 50;
pub const MAX_TARGET_GROUPS: usize = 3000;
pub const MAX_LISTENERS: usize = 50;
/// Security groups of one load balancer (ALB's quota).
pub const MAX_SECURITY_GROUPS: usize = 5;
/// Rules per listener, the default rule not counted.
pub const MAX_RULES: usize = 100;
pub const MAX_TARGETS: usize = 1000;
/// The largest `PageSize` of ELBv2's Describe operations.
pub const MAX_PAGE_SIZE: i32 = 400;

/// A resource kept whole in one map of [`ElbState`], which an operation may change in
/// place: load balancers and target groups (their attributes).
pub trait Rewritable: Clone + Send + Sync + 'static {
    /// The resource `arn` names in `scope`, or ELBv2's error for a missing one.
    fn find(state: &State, scope: &Scope, arn: &str) -> Result<Arc<Self>>;
    fn id(&self) -> &str;
    fn map(elb: &mut ElbState) -> &mut OrdMap<(Scope, String), Arc<Self>>;
    fn key(scope: Scope, id: String) -> ElbKey;
    fn name(&self) -> &str;
    /// Every stored resource of this kind.
    fn stored(elb: &ElbState) -> &OrdMap<(Scope, String), Arc<Self>>;
    /// ELBv2's error for a name (or ARN) that names none.
    fn not_found(what: &str) -> Error;
}

/// What a Describe call of load balancers or target groups asks for: those `arns` name,
/// or else those `names` name (each must exist), or else every one of the scope; by name,
/// without repeats.
pub(crate) fn select<R: Rewritable>(
    state: &State,
    scope: &Scope,
    arns: &[String],
    names: &[String],
) -> Result<Vec<Arc<R>>> {
    let scoped = || R::stored(&state.elb).iter().filter(move |((s, _), _)| s == scope).map(|(_, r)| r);
    let mut found: Vec<Arc<R>> = if !arns.is_empty() {
        arns.iter().map(|a| R::find(state, scope, a)).collect::<Result<_>>()?
    } else if !names.is_empty() {
        names
            .iter()
            .map(|n| scoped().find(|r| r.name() == n).cloned().ok_or_else(|| R::not_found(n)))
            .collect::<Result<_>>()?
    } else {
        scoped().cloned().collect()
    };
    found.sort_by(|a, b| a.name().cmp(b.name()));
    found.dedup_by(|a, b| a.id() == b.id());
    Ok(found)
}

impl Rewritable for LoadBalancer {
    fn find(state: &State, scope: &Scope, arn: &str) -> Result<Arc<Self>> {
        load_balancers::find_lb(state, scope, arn)
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn map(elb: &mut ElbState) -> &mut OrdMap<(Scope, String), Arc<Self>> {
        &mut elb.load_balancers
    }
    fn key(scope: Scope, id: String) -> ElbKey {
        ElbKey::LoadBalancer(scope, id)
    }
    fn name(&self) -> &str {
        self.name.as_str()
    }
    fn stored(elb: &ElbState) -> &OrdMap<(Scope, String), Arc<Self>> {
        &elb.load_balancers
    }
    fn not_found(what: &str) -> Error {
        load_balancers::lb_not_found(what)
    }
}

impl Rewritable for TargetGroup {
    fn find(state: &State, scope: &Scope, arn: &str) -> Result<Arc<Self>> {
        target_groups::find_tg(state, scope, arn)
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn map(elb: &mut ElbState) -> &mut OrdMap<(Scope, String), Arc<Self>> {
        &mut elb.target_groups
    }
    fn key(scope: Scope, id: String) -> ElbKey {
        ElbKey::TargetGroup(scope, id)
    }
    fn name(&self) -> &str {
        self.name.as_str()
    }
    fn stored(elb: &ElbState) -> &OrdMap<(Scope, String), Arc<Self>> {
        &elb.target_groups
    }
    fn not_found(what: &str) -> Error {
        target_groups::tg_not_found(what)
    }
}

impl Ops<'_, Elbv2> {
    /// Applies an ELBv2 change atomically and durably, then wakes the data plane so
    /// that it serves the change.
    pub(crate) async fn change<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Txn<'_>) -> Result<R> + Send + 'static,
    {
        let out = self.write(f).await?;
        self.elb.changed.notify_one();
        Ok(out)
    }

    /// Applies `change` (given the state as it is) to a copy of the resource `arn` names in
    /// the caller's scope and
    /// stores the copy, in one writer change (nothing is stored if `change` fails); then
    /// wakes the data plane. Answers what `change` answers.
    pub(crate) async fn rewrite<R, T, F>(&self, caller: &Caller, arn: String, change: F) -> Result<T>
    where
        R: Rewritable,
        T: Send + 'static,
        F: FnOnce(&State, &mut R) -> Result<T> + Send + 'static,
    {
        let scope = caller.scope.clone();
        self.change(move |txn| {
            let current = R::find(txn.state, &scope, &arn)?;
            let mut next = current.as_ref().clone();
            let out = change(txn.state, &mut next)?;
            let id = current.id().to_string();
            R::map(&mut txn.state.elb).insert((scope.clone(), id.clone()), Arc::new(next));
            txn.touch(Touched::Elb(R::key(scope, id)));
            Ok(out)
        })
        .await
    }
}

/// A resource with a set of attributes (ELBv2's `Describe*Attributes` and
/// `Modify*Attributes`): load balancers and target groups, each with its own keys.
pub trait HasAttributes: Rewritable {
    fn attributes(&self) -> &Attributes;
    /// Applies `changes` after checking every key and value, or changes nothing.
    fn modify_attributes(&mut self, changes: &[(String, String)]) -> std::result::Result<(), ElbError>;
}

impl HasAttributes for LoadBalancer {
    fn attributes(&self) -> &Attributes {
        &self.attributes.0
    }
    fn modify_attributes(&mut self, changes: &[(String, String)]) -> std::result::Result<(), ElbError> {
        self.attributes.modify(changes)
    }
}

impl HasAttributes for TargetGroup {
    fn attributes(&self) -> &Attributes {
        &self.attributes.0
    }
    fn modify_attributes(&mut self, changes: &[(String, String)]) -> std::result::Result<(), ElbError> {
        self.attributes.modify(changes)
    }
}

impl Ops<'_, Elbv2> {
    /// The attributes of the load balancer or target group `arn` names.
    pub fn describe_attributes<R: HasAttributes>(&self, caller: &Caller, arn: &str) -> Result<Attributes> {
        Ok(R::find(&self.view(), &caller.scope, arn)?.attributes().clone())
    }

    /// Changes attributes of the load balancer or target group `arn` names; answers the
    /// whole set as it now is.
    pub async fn modify_attributes<R: HasAttributes>(
        &self,
        caller: &Caller,
        arn: String,
        changes: Vec<(String, String)>,
    ) -> Result<Attributes> {
        self.rewrite(caller, arn, move |_, r: &mut R| {
            r.modify_attributes(&changes)?;
            Ok(r.attributes().clone())
        })
        .await
    }
}

/// 16 lower-case hex digits, the shape of ELBv2's resource ids.
pub(crate) fn new_id() -> String {
    let b: [u8; 8] = rand::thread_rng().gen();
    hex::encode(b)
}

pub(crate) fn fail<T>(fault: Fault, message: impl Into<String>) -> Result<T> {
    Err(Error::Elb(ElbError::new(fault, message)))
}

/// Checks `PageSize` (1..=400, absent means 400) and decodes `Marker`: the key after
/// which the page starts.
pub(crate) struct Paging {
    size: usize,
    after: Option<String>,
}

impl Paging {
    pub fn parse(page_size: Option<i32>, marker: Option<&str>) -> Result<Paging> {
        let size = match page_size {
            None => MAX_PAGE_SIZE,
            Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            Some(n) => return fail(Fault::Validation, format!("PageSize {n} is not between 1 and {MAX_PAGE_SIZE}.")),
        } as usize;
        let after = match marker {
            None => None,
            Some(m) => {
                let bad = || {
                    Error::Elb(ElbError::validation(
                        "The Marker is not valid; pass the NextMarker of a previous response unchanged.",
                    ))
                };
                let bytes = URL_SAFE_NO_PAD.decode(m).map_err(|_| bad())?;
                Some(String::from_utf8(bytes).map_err(|_| bad())?)
            }
        };
        Ok(Paging { size, after })
    }

    /// One page of `items`, which come sorted by key, and the marker of the next page.
    pub fn take<T>(&self, items: impl Iterator<Item = (String, T)>) -> (Vec<T>, Option<String>) {
        let mut out = Vec::new();
        let mut last = None;
        for (key, item) in items {
            if self.after.as_ref().is_some_and(|a| key.as_str() <= a.as_str()) {
                continue;
            }
            if out.len() == self.size {
                return (out, last.map(|k: String| URL_SAFE_NO_PAD.encode(k)));
            }
            last = Some(key);
            out.push(item);
        }
        (out, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_page_through_in_key_order() {
        let items = || (1..=5).map(|i| (format!("k{i}"), i));
        let first = Paging::parse(Some(2), None).unwrap();
        let (page, next) = first.take(items());
        assert_eq!(page, vec![1, 2]);
        let second = Paging::parse(Some(2), next.as_deref()).unwrap();
        let (page, next) = second.take(items());
        assert_eq!(page, vec![3, 4]);
        let (page, next) = Paging::parse(Some(2), next.as_deref()).unwrap().take(items());
        assert_eq!((page, next), (vec![5], None));
        assert!(Paging::parse(Some(0), None).is_err());
        assert!(Paging::parse(Some(401), None).is_err());
        assert!(Paging::parse(None, Some("!!")).is_err());
    }
}
