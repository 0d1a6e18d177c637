//! Custom attributes on container instances, used by placement constraints.

use model::ecs::Attribute;

use super::clusters::active_cluster;
use crate::ecs::Ecs;
use crate::error::{ConflictKind, Error, NotFoundKind, Result};
use crate::state::{State, StoredAttribute, Touched};
use crate::Caller;
use crate::Ops;
use crate::Page;

/// The most attributes one request may put or delete.
pub const MAX_PER_REQUEST: usize = 10;
/// The most custom attributes one resource may carry.
pub const MAX_PER_RESOURCE: usize = 10;
/// The only kind of target ECS attributes attach to.
pub const CONTAINER_INSTANCE: &str = "container-instance";

/// Whether `target` (ARN or id) names a live container instance of the cluster.
fn target_exists(state: &State, scope: &model::Scope, cluster: &model::ids::ClusterName, target: &str) -> bool {
    super::instances::find_instance(state, scope, cluster, target)
        .is_some_and(|i| i.status != model::ecs::task::InstanceStatus::Inactive)
}

fn check(attrs: &[Attribute]) -> Result<()> {
    if attrs.is_empty() || attrs.len() > MAX_PER_REQUEST {
        return Err(Error::parameter(format!("Pass between 1 and {MAX_PER_REQUEST} attributes.")));
    }
    for a in attrs {
        Attribute::check(&a.name, a.value.as_deref())?;
        if a.target_id.is_empty() {
            return Err(Error::parameter(format!("Attribute '{}' needs a targetId.", a.name)));
        }
        if a.target_type != CONTAINER_INSTANCE {
            return Err(Error::parameter(format!(
                "Attribute '{}' has targetType '{}'; the only target type is container-instance.",
                a.name, a.target_type
            )));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Put,
    Delete,
}

impl Ops<'_, Ecs> {
    pub async fn put_attributes(
        &self,
        caller: &Caller,
        cluster: Option<String>,
        attrs: Vec<Attribute>,
    ) -> Result<Vec<Attribute>> {
        self.change_attributes(caller, cluster, attrs, Change::Put).await
    }

    pub async fn delete_attributes(
        &self,
        caller: &Caller,
        cluster: Option<String>,
        attrs: Vec<Attribute>,
    ) -> Result<Vec<Attribute>> {
        self.change_attributes(caller, cluster, attrs, Change::Delete).await
    }

    async fn change_attributes(
        &self,
        caller: &Caller,
        cluster: Option<String>,
        attrs: Vec<Attribute>,
        change: Change,
    ) -> Result<Vec<Attribute>> {
        check(&attrs)?;
        let scope = caller.scope.clone();
        self.write(move |txn| {
            let name = active_cluster(txn.state, &scope, cluster.as_deref())?.name.clone();
            for a in &attrs {
                if !target_exists(txn.state, &scope, &name, &a.target_id) {
                    return Err(Error::NotFound {
                        kind: NotFoundKind::Target,
                        message: format!("Could not find {}.", a.target_id),
                    });
                }
                let key = (scope.clone(), name.clone(), a.target_id.clone(), a.name.clone());
                txn.touch(Touched::Attribute(key.clone()));
                if change == Change::Delete {
                    txn.state.attributes.remove(&key);
                    continue;
                }
                let stored = StoredAttribute { scope: scope.clone(), cluster: name.clone(), attribute: a.clone() };
                txn.state.attributes.insert(key, stored);
                let on_target = txn
                    .state
                    .attributes
                    .keys()
                    .filter(|(s, c, t, _)| *s == scope && *c == name && *t == a.target_id)
                    .count();
                if on_target > MAX_PER_RESOURCE {
                    return Err(Error::Conflict {
                        kind: ConflictKind::AttributeLimit,
                        message: format!("{} would carry more than {MAX_PER_RESOURCE} custom attributes.", a.target_id),
                    });
                }
            }
            Ok(attrs)
        })
        .await
    }

    pub fn list_attributes(
        &self,
        caller: &Caller,
        cluster: Option<&str>,
        target_type: &str,
        name: Option<&str>,
        value: Option<&str>,
        page: &Page,
    ) -> Result<(Vec<Attribute>, Option<String>)> {
        if target_type != CONTAINER_INSTANCE {
            return Err(Error::parameter("targetType must be container-instance."));
        }
        if value.is_some() && name.is_none() {
            return Err(Error::parameter("attributeValue can only be given together with attributeName."));
        }
        let state = self.view();
        let cluster = active_cluster(&state, &caller.scope, cluster)?.name.clone();
        let items = state
            .attributes
            .iter()
            .filter(|((s, c, _, _), a)| {
                *s == caller.scope
                    && *c == cluster
                    && name.is_none_or(|n| n == a.attribute.name)
                    && value.is_none_or(|v| Some(v) == a.attribute.value.as_deref())
            })
            .map(|((_, _, t, n), a)| (format!("{t}/{n}"), a.attribute.clone()));
        Ok(page.take(items, false))
    }
}
