//! Container instances: registration by agents, description with remaining resources,
//! draining, deregistration.

use std::collections::HashMap;
use std::sync::Arc;

use model::ecs::task::{ContainerInstance, InstanceStatus, Resources};
use model::ecs::ClusterStatus;
use model::ids::ClusterName;
use model::tags::Tags;
use model::{Arn, Scope};
use rand::Rng;

use super::clusters::active_cluster;
use super::Failure;
use crate::agents::Agents;
use crate::ecs::Ecs;
use crate::error::{Error, NotFoundKind, Result};
use crate::state::{InstanceLoad, State, Touched};
use crate::Caller;
use crate::Ops;
use crate::{Page, Txn};

/// What `RegisterContainerInstance` says about a host.
#[derive(Debug, Clone, Default)]
pub struct NewInstance {
    pub cluster: Option<String>,
    pub ec2_instance_id: Option<String>,
    pub resources: Resources,
    pub attributes: Vec<(String, Option<String>)>,
    pub agent_version: String,
    pub agent_hash: String,
    pub docker_version: String,
    /// Set when an agent re-registers the instance it registered before.
    pub existing_arn: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// An instance with what is left of its resources after its tasks.
#[derive(Debug, Clone)]
pub struct InstanceView {
    pub instance: Arc<ContainerInstance>,
    pub remaining: Resources,
    pub running_tasks: u32,
    pub pending_tasks: u32,
    pub agent_connected: bool,
    /// Custom attributes set with PutAttributes, after the instance's own.
    pub custom_attributes: Vec<(String, Option<String>)>,
    /// The `group` of every task holding resources on the instance.
    pub task_groups: Vec<String>,
}

fn random_hex(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n).map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0')).collect()
}

/// Resolves an instance reference (ARN or id) within a cluster.
pub fn find_instance<'a>(
    state: &'a State,
    scope: &Scope,
    cluster: &ClusterName,
    r: &str,
) -> Option<&'a Arc<ContainerInstance>> {
    let id = if r.starts_with("arn:") {
        let arn = Arn::parse(r).ok()?;
        if !arn.is_in(scope) {
            return None;
        }
        let rest = arn.resource.strip_prefix("container-instance/")?;
        // Both `container-instance/<cluster>/<id>` and the old `container-instance/<id>`.
        rest.rsplit('/').next()?.to_string()
    } else {
        r.to_string()
    };
    state.instances.get(&(scope.clone(), cluster.clone(), id))
}

/// The views of every instance of a cluster, from the load the state keeps for each
/// instance and the cluster's attributes: placement costs O(instances), whatever the
/// number of tasks.
pub(crate) fn cluster_views(
    agents: &Agents,
    state: &State,
    scope: &Scope,
    cluster: &ClusterName,
) -> HashMap<String, InstanceView> {
    let mut custom = custom_attributes(state, scope, cluster);
    state
        .cluster_instances(scope, cluster)
        .map(|i| {
            let load = state.instance_load(scope, cluster, &i.id);
            let connected = agents.connected(&i.arn().to_string());
            let view = instance_view(i, load, connected, custom.remove(i.id.as_str()).unwrap_or_default());
            (i.id.clone(), view)
        })
        .collect()
}

/// One instance's view: its registered resources less its load.
pub(crate) fn instance_view(
    instance: &Arc<ContainerInstance>,
    load: Option<&InstanceLoad>,
    agent_connected: bool,
    custom_attributes: Vec<(String, Option<String>)>,
) -> InstanceView {
    let mut view = InstanceView {
        instance: instance.clone(),
        remaining: instance.registered.clone(),
        running_tasks: 0,
        pending_tasks: 0,
        agent_connected,
        custom_attributes,
        task_groups: Vec::new(),
    };
    if let Some(load) = load {
        view.remaining.cpu -= load.cpu;
        view.remaining.memory -= load.memory;
        view.remaining.ports_tcp.extend(&load.ports_tcp);
        view.remaining.ports_udp.extend(&load.ports_udp);
        view.task_groups.clone_from(&load.task_groups);
        view.running_tasks = load.running;
        view.pending_tasks = load.pending;
    }
    view
}

/// The custom attributes (PutAttributes) of a cluster's instances, by instance id.
pub(crate) fn custom_attributes<'a>(
    state: &'a State,
    scope: &Scope,
    cluster: &ClusterName,
) -> HashMap<&'a str, Vec<(String, Option<String>)>> {
    let mut custom: HashMap<&str, Vec<_>> = HashMap::new();
    let lo = (scope.clone(), cluster.clone(), String::new(), String::new());
    for ((s, c, target, _), a) in state.attributes.range(lo..) {
        if s != scope || c != cluster {
            break;
        }
        // Attributes name their target by ARN or by id.
        let id = target.rsplit('/').next().unwrap_or(target);
        custom.entry(id).or_default().push((a.attribute.name.clone(), a.attribute.value.clone()));
    }
    custom
}

/// The views of the account's Fargate capacity: the instances of the Fargate pool, less
/// what the Fargate tasks of every cluster hold on them.
pub(crate) fn fargate_views(agents: &Agents, state: &State, scope: &Scope) -> HashMap<String, InstanceView> {
    let mut views = cluster_views(agents, state, scope, &ClusterName::fargate_pool());
    for t in state.tasks().values().filter(|t| &t.scope == scope && t.is_fargate() && t.holds_resources()) {
        let Some(v) = t.container_instance.as_ref().and_then(|id| views.get_mut(id)) else { continue };
        v.remaining.cpu -= t.reserved.cpu;
        v.remaining.memory -= t.reserved.memory;
        match t.last_status {
            model::ecs::task::TaskStatus::Running => v.running_tasks += 1,
            _ => v.pending_tasks += 1,
        }
    }
    views
}

impl Ops<'_, Ecs> {
    /// Registers a host into a cluster (creating `default` on first use, as ECS does),
    /// or updates the instance an agent registered before.
    pub async fn register_container_instance(&self, caller: &Caller, req: NewInstance) -> Result<ContainerInstance> {
        let tags = Tags::parse(req.tags.clone())?;
        for (name, value) in &req.attributes {
            model::ecs::Attribute::check(name, value.as_deref())?;
        }
        if req.resources.cpu <= 0 || req.resources.memory <= 0 {
            return Err(Error::parameter("totalResources must include positive CPU and MEMORY values."));
        }
        let scope = caller.scope.clone();
        self.write(move |txn| {
            let cluster = match req.cluster.as_deref() {
                None | Some(ClusterName::DEFAULT) => ensure_default_cluster(txn, &scope),
                // Fargate capacity: an agent started with BERTH_CAPACITY=FARGATE.
                Some(ClusterName::FARGATE_POOL) => ClusterName::fargate_pool(),
                Some(c) => active_cluster(txn.state, &scope, Some(c))?.name.clone(),
            };
            let existing = req
                .existing_arn
                .as_deref()
                .and_then(|arn| find_instance(txn.state, &scope, &cluster, arn))
                .map(|i| i.as_ref().clone());
            let id = existing.as_ref().map(|i| i.id.clone()).unwrap_or_else(|| random_hex(32));
            let ec2_instance_id = req
                .ec2_instance_id
                .clone()
                .or_else(|| existing.as_ref().map(|i| i.ec2_instance_id.clone()))
                .unwrap_or_else(|| format!("i-{}", random_hex(17)));
            let instance = ContainerInstance {
                scope: scope.clone(),
                cluster: cluster.clone(),
                id: id.clone(),
                ec2_instance_id,
                status: match existing.as_ref().map(|i| i.status) {
                    Some(InstanceStatus::Draining) => InstanceStatus::Draining,
                    _ => InstanceStatus::Active,
                },
                registered: req.resources,
                attributes: req.attributes,
                agent_version: req.agent_version,
                agent_hash: req.agent_hash,
                docker_version: req.docker_version,
                registered_at: existing.as_ref().map_or(txn.now, |i| i.registered_at),
                // Re-registration keeps the counter; the writer counts the change.
                version: existing.as_ref().map_or(1, |i| i.version),
                tags: if tags.is_empty() { existing.map(|i| i.tags).unwrap_or_default() } else { tags },
            };
            txn.state.instances.insert((scope.clone(), cluster.clone(), id.clone()), Arc::new(instance.clone()));
            txn.touch(Touched::Instance(scope, cluster, id));
            Ok(instance)
        })
        .await
        .inspect(|_| self.wake_services())
    }

    pub fn describe_container_instances(
        &self,
        caller: &Caller,
        cluster: Option<&str>,
        refs: &[String],
    ) -> Result<(Vec<InstanceView>, Vec<Failure>)> {
        if refs.is_empty() || refs.len() > 100 {
            return Err(Error::parameter("Pass between 1 and 100 container instances."));
        }
        let state = self.view();
        // The Fargate pool has no cluster record; its agents describe their own
        // registration by naming it.
        let (cluster, views) = if cluster == Some(ClusterName::FARGATE_POOL) {
            (ClusterName::fargate_pool(), fargate_views(&self.agents, &state, &caller.scope))
        } else {
            let cluster = active_cluster(&state, &caller.scope, cluster)?.name.clone();
            let views = cluster_views(&self.agents, &state, &caller.scope, &cluster);
            (cluster, views)
        };
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for r in refs {
            match find_instance(&state, &caller.scope, &cluster, r).and_then(|i| views.get(&i.id)) {
                Some(v) => found.push(v.clone()),
                None => failures.push(Failure { arn: r.clone(), reason: "MISSING".into(), detail: None }),
            }
        }
        Ok((found, failures))
    }

    /// Instance ARNs of a cluster, filtered by status and by a cluster query expression.
    pub fn list_container_instances(
        &self,
        caller: &Caller,
        cluster: Option<&str>,
        status: Option<InstanceStatus>,
        filter: Option<&str>,
        page: &Page,
    ) -> Result<(Vec<String>, Option<String>)> {
        let expr = filter
            .map(scheduler::parse_expression)
            .transpose()
            .map_err(|e| Error::parameter(format!("The filter is not a valid cluster query: {e}")))?;
        let state = self.view();
        let cluster = active_cluster(&state, &caller.scope, cluster)?.name.clone();
        let views = cluster_views(&self.agents, &state, &caller.scope, &cluster);
        let mut items = Vec::new();
        for i in state.cluster_instances(&caller.scope, &cluster) {
            let visible = match status {
                Some(s) => i.status == s,
                None => i.status != InstanceStatus::Inactive,
            };
            if !visible {
                continue;
            }
            if let (Some(expr), Some(view)) = (&expr, views.get(&i.id)) {
                if !scheduler::eval(expr, &crate::ecs::launch::placement_instance(view)) {
                    continue;
                }
            }
            items.push((i.id.clone(), i.arn().to_string()));
        }
        Ok(page.take(items.into_iter(), false))
    }

    /// Sets instances ACTIVE or DRAINING; a DRAINING instance receives no new tasks.
    pub async fn update_container_instances_state(
        &self,
        caller: &Caller,
        cluster: Option<String>,
        refs: Vec<String>,
        status: InstanceStatus,
    ) -> Result<(Vec<ContainerInstance>, Vec<Failure>)> {
        if refs.is_empty() || refs.len() > 10 {
            return Err(Error::parameter("Pass between 1 and 10 container instances."));
        }
        if status == InstanceStatus::Inactive {
            return Err(Error::parameter("status must be ACTIVE or DRAINING."));
        }
        let scope = caller.scope.clone();
        self.write(move |txn| {
            let cluster = active_cluster(txn.state, &scope, cluster.as_deref())?.name.clone();
            let mut done = Vec::new();
            let mut failures = Vec::new();
            for r in refs {
                let Some(i) =
                    find_instance(txn.state, &scope, &cluster, &r).filter(|i| i.status != InstanceStatus::Inactive)
                else {
                    failures.push(Failure { arn: r, reason: "MISSING".into(), detail: None });
                    continue;
                };
                let mut i = i.as_ref().clone();
                i.status = status;
                txn.state.instances.insert((scope.clone(), cluster.clone(), i.id.clone()), Arc::new(i.clone()));
                txn.touch(Touched::Instance(scope.clone(), cluster.clone(), i.id.clone()));
                done.push(i);
            }
            Ok((done, failures))
        })
        .await
        // Service tasks leave a DRAINING instance; DAEMON services follow instance states.
        .inspect(|_| self.wake_services())
    }

    /// Deregisters an instance. With tasks still on it, only with `force`; the tasks are
    /// left as they are (ECS leaves them running, orphaned).
    pub async fn deregister_container_instance(
        &self,
        caller: &Caller,
        cluster: Option<String>,
        r: String,
        force: bool,
    ) -> Result<ContainerInstance> {
        let scope = caller.scope.clone();
        self.write(move |txn| {
            let cluster = active_cluster(txn.state, &scope, cluster.as_deref())?.name.clone();
            let Some(i) = find_instance(txn.state, &scope, &cluster, &r).filter(|i| i.status != InstanceStatus::Inactive) else {
                return Err(Error::NotFound {
                    kind: NotFoundKind::Resource,
                    message: format!("The container instance {r} does not exist in cluster {cluster}."),
                });
            };
            let busy = txn
                .state
                .cluster_tasks(&scope, &cluster)
                .any(|t| t.container_instance.as_deref() == Some(i.id.as_str()) && t.holds_resources());
            if busy && !force {
                return Err(Error::parameter(
                    "Found running tasks on the instance. Stop them first, or deregister with --force to leave them running unmanaged.",
                ));
            }
            let mut i = i.as_ref().clone();
            i.status = InstanceStatus::Inactive;
            txn.state.instances.insert((scope.clone(), cluster.clone(), i.id.clone()), Arc::new(i.clone()));
            txn.touch(Touched::Instance(scope.clone(), cluster, i.id.clone()));
            Ok(i)
        })
        .await
        .inspect(|_| self.wake_services())
    }
}

/// The `default` cluster, created if it does not exist or was deleted.
pub(crate) fn ensure_default_cluster(txn: &mut Txn<'_>, scope: &Scope) -> ClusterName {
    let name = ClusterName::default_cluster();
    let active = txn.state.cluster(scope, &name).is_some_and(|c| c.status == ClusterStatus::Active);
    if !active {
        let cluster = super::clusters::fresh_cluster(scope, name.clone(), Tags::default());
        txn.state.clusters.insert((scope.clone(), name.clone()), Arc::new(cluster));
        txn.touch(Touched::Cluster(scope.clone(), name.clone()));
    }
    name
}
