//! Tags on any taggable ECS resource, addressed by ARN.

use std::sync::Arc;

use model::ecs::{ClusterStatus, TaskDefinitionRef};
use model::ids::ClusterName;
use model::tags::Tags;
use model::{Arn, Scope};

use crate::ecs::Ecs;
use crate::error::{Error, NotFoundKind, Result};
use crate::state::{State, Touched};
use crate::Caller;
use crate::Ops;
use crate::Txn;

/// A taggable resource that exists in the caller's scope.
enum Target {
    Cluster(ClusterName),
    TaskDefinition(model::ids::Family, u32),
}

fn resource_not_found(arn: &str) -> Error {
    Error::NotFound {
        kind: NotFoundKind::Resource,
        message: format!("The specified resource {arn} could not be found."),
    }
}

fn locate(state: &State, scope: &Scope, arn_text: &str) -> Result<Target> {
    let arn = Arn::parse(arn_text).map_err(|_| Error::parameter(format!("The ARN '{arn_text}' is not valid.")))?;
    if arn.service != "ecs" {
        return Err(Error::parameter(format!("The ARN '{arn_text}' is not an ECS resource ARN.")));
    }
    if !arn.is_in(scope) {
        return Err(resource_not_found(arn_text));
    }
    match arn.typed_resource() {
        Some(("cluster", name)) => {
            let name = ClusterName::parse(name)?;
            match state.cluster(scope, &name) {
                Some(c) if c.status == ClusterStatus::Active => Ok(Target::Cluster(name)),
                _ => Err(Error::cluster_not_found()),
            }
        }
        Some(("task-definition", _)) => {
            let r = TaskDefinitionRef::parse(arn_text, scope)?.map_err(|_| resource_not_found(arn_text))?;
            let rev = r.revision.ok_or_else(|| resource_not_found(arn_text))?;
            if state.task_definitions.contains_key(&(scope.clone(), r.family.clone(), rev)) {
                Ok(Target::TaskDefinition(r.family, rev))
            } else {
                Err(resource_not_found(arn_text))
            }
        }
        Some((kind, _))
            if ["service", "task", "container-instance", "capacity-provider", "task-set"].contains(&kind) =>
        {
            Err(resource_not_found(arn_text))
        }
        _ => Err(Error::parameter(format!("The ARN '{arn_text}' does not name a taggable ECS resource."))),
    }
}

fn tags_of(state: &State, scope: &Scope, t: &Target) -> Tags {
    match t {
        Target::Cluster(n) => state.cluster(scope, n).map(|c| c.tags.clone()).unwrap_or_default(),
        Target::TaskDefinition(f, r) => {
            state.task_definitions.get(&(scope.clone(), f.clone(), *r)).map(|t| t.tags.clone()).unwrap_or_default()
        }
    }
}

fn set_tags(txn: &mut Txn<'_>, scope: &Scope, t: Target, tags: Tags) {
    match t {
        Target::Cluster(n) => {
            if let Some(c) = txn.state.clusters.get_mut(&(scope.clone(), n.clone())) {
                Arc::make_mut(c).tags = tags;
                txn.touch(Touched::Cluster(scope.clone(), n));
            }
        }
        Target::TaskDefinition(f, r) => {
            if let Some(td) = txn.state.task_definitions.get_mut(&(scope.clone(), f.clone(), r)) {
                Arc::make_mut(td).tags = tags;
                txn.touch(Touched::TaskDefinition(scope.clone(), f, r));
            }
        }
    }
}

impl Ops<'_, Ecs> {
    pub async fn tag_resource(&self, caller: &Caller, arn: String, tags: Vec<(String, String)>) -> Result<()> {
        // Checked before queueing so that a bad tag never costs a write.
        Tags::parse(tags.clone())?;
        let scope = caller.scope.clone();
        self.write(move |txn| {
            let target = locate(txn.state, &scope, &arn)?;
            let mut current = tags_of(txn.state, &scope, &target);
            current.merge(tags)?;
            set_tags(txn, &scope, target, current);
            Ok(())
        })
        .await
    }

    pub async fn untag_resource(&self, caller: &Caller, arn: String, keys: Vec<String>) -> Result<()> {
        let scope = caller.scope.clone();
        self.write(move |txn| {
            let target = locate(txn.state, &scope, &arn)?;
            let mut current = tags_of(txn.state, &scope, &target);
            current.remove(&keys);
            set_tags(txn, &scope, target, current);
            Ok(())
        })
        .await
    }

    pub fn list_tags_for_resource(&self, caller: &Caller, arn: &str) -> Result<Tags> {
        let state = self.view();
        // ListTagsForResource has no ResourceNotFoundException in ECS's model; a missing
        // resource other than a cluster is reported as an invalid parameter.
        let target = locate(&state, &caller.scope, arn).map_err(|e| match e {
            Error::NotFound { kind: NotFoundKind::Resource, message } => Error::parameter(message),
            other => other,
        })?;
        Ok(tags_of(&state, &caller.scope, &target))
    }
}
