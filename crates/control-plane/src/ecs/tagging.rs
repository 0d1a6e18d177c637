//! Tags on any taggable ECS resource, addressed by ARN: clusters, task definitions,
//! services, tasks and container instances. Capacity providers and task sets cannot be
//! created in Berth, so no ARN of theirs names anything.

use std::sync::Arc;

use model::tags::Tags;
use model::Scope;

use crate::ecs::Ecs;
use crate::error::{Error, NotFoundKind, Result};
use crate::state::resources::{locate, tags_of, Target};
use crate::state::Touched;
use crate::Caller;
use crate::Ops;
use crate::Txn;

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
        Target::Service(c, n) => {
            if let Some(svc) = txn.state.services.get_mut(&(scope.clone(), c.clone(), n.clone())) {
                Arc::make_mut(svc).tags = tags;
                txn.touch(Touched::Service(scope.clone(), c, n));
            }
        }
        Target::Task(c, id) => {
            if let Some(t) = txn.state.tasks().get(&(scope.clone(), c.clone(), id.clone())) {
                let mut t = t.as_ref().clone();
                t.tags = tags;
                txn.state.put_task(Arc::new(t));
                txn.touch(Touched::Task(scope.clone(), c, id));
            }
        }
        Target::Instance(c, id) => {
            if let Some(i) = txn.state.instances.get_mut(&(scope.clone(), c.clone(), id.clone())) {
                Arc::make_mut(i).tags = tags;
                txn.touch(Touched::Instance(scope.clone(), c, id));
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
