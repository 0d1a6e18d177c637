//! Clusters: create, describe, list, update, capacity providers, delete.

use std::sync::Arc;

use model::ecs::service::ServiceStatus;
use model::ecs::shapes::{
    CapacityProviderStrategyItem, ClusterConfiguration, ClusterSetting, ClusterSettingName, ExecuteCommandLogging,
};
use model::ecs::task::{InstanceStatus, TaskStatus};
use model::ecs::{cluster_arn, Cluster, ClusterRef, ClusterStatus};
use model::ids::ClusterName;
use model::tags::Tags;
use model::Scope;

use super::Failure;
use crate::ecs::Ecs;
use crate::error::{ConflictKind, Error, Result};
use crate::state::{State, Touched};
use crate::Caller;
use crate::Ops;
use crate::{Page, Txn};

/// The capacity providers every cluster may use without creating them.
pub const BUILTIN_CAPACITY_PROVIDERS: [&str; 2] = ["FARGATE", "FARGATE_SPOT"];
/// The most capacity providers in one strategy.
pub const MAX_STRATEGY_ITEMS: usize = 20;

/// What `CreateCluster` asks for, already in domain types.
#[derive(Debug, Clone, Default)]
pub struct NewCluster {
    pub name: Option<String>,
    pub tags: Vec<(String, String)>,
    pub settings: Vec<ClusterSetting>,
    pub configuration: Option<ClusterConfiguration>,
    pub capacity_providers: Vec<String>,
    pub default_capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    pub service_connect_namespace: Option<String>,
}

/// The parts of a cluster `UpdateCluster` may change; `None` leaves a part as it is.
#[derive(Debug, Clone, Default)]
pub struct ClusterUpdate {
    pub settings: Option<Vec<ClusterSetting>>,
    pub configuration: Option<ClusterConfiguration>,
    pub service_connect_namespace: Option<String>,
}

/// What a cluster holds, as ECS counts it in DescribeClusters: its totals, and its
/// statistics split by where tasks run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterCounts {
    pub registered_instances: u32,
    pub running_tasks: ByLaunchType,
    pub pending_tasks: ByLaunchType,
    pub active_services: ByLaunchType,
    pub draining_services: ByLaunchType,
}

/// A count split into what runs on container instances (EC2) and on Fargate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByLaunchType {
    pub ec2: u32,
    pub fargate: u32,
}

impl ByLaunchType {
    pub fn total(self) -> u32 {
        self.ec2 + self.fargate
    }
    fn add(&mut self, fargate: bool) {
        if fargate {
            self.fargate += 1;
        } else {
            self.ec2 += 1;
        }
    }
}

/// Counts the instances, tasks and services of a cluster. A service counts where its
/// PRIMARY deployment runs its tasks (launch type or capacity provider strategy).
pub fn cluster_counts(state: &State, c: &Cluster) -> ClusterCounts {
    let registered_instances =
        state.cluster_instances(&c.scope, &c.name).filter(|i| i.status != InstanceStatus::Inactive).count() as u32;
    let mut n = ClusterCounts { registered_instances, ..Default::default() };
    for t in state.cluster_tasks(&c.scope, &c.name) {
        match t.last_status {
            TaskStatus::Running => n.running_tasks.add(t.is_fargate()),
            s if s < TaskStatus::Running => n.pending_tasks.add(t.is_fargate()),
            _ => {}
        }
    }
    for s in state.cluster_services(&c.scope, &c.name) {
        let fargate = s.primary().is_some_and(|d| {
            super::fargate::on_fargate(d.revision.launch_type.as_deref(), &d.revision.capacity_provider_strategy)
        });
        match s.status {
            ServiceStatus::Active => n.active_services.add(fargate),
            ServiceStatus::Draining => n.draining_services.add(fargate),
            ServiceStatus::Inactive => {}
        }
    }
    n
}

/// Resolves a cluster reference to an ACTIVE cluster of the caller.
pub fn active_cluster<'a>(state: &'a State, scope: &Scope, cluster: Option<&str>) -> Result<&'a Cluster> {
    let Ok(ClusterRef(name)) = ClusterRef::parse(cluster, scope)? else {
        return Err(Error::cluster_not_found());
    };
    match state.cluster(scope, &name) {
        Some(c) if c.status == ClusterStatus::Active => Ok(c),
        _ => Err(Error::cluster_not_found()),
    }
}

fn check_settings(settings: &[ClusterSetting]) -> Result<()> {
    for s in settings {
        let value = s.value.as_deref().unwrap_or_default();
        match s.name {
            Some(ClusterSettingName::ContainerInsights) => {
                if !["enabled", "disabled", "enhanced"].contains(&value) {
                    return Err(Error::parameter(format!(
                        "Invalid value '{value}' for cluster setting containerInsights; valid values are enabled, disabled and enhanced."
                    )));
                }
            }
            None => return Err(Error::parameter("Each cluster setting needs a name.")),
        }
    }
    Ok(())
}

/// Settings in a request replace those of the same name and keep the others.
fn merge_settings(current: &mut Vec<ClusterSetting>, given: &[ClusterSetting]) {
    for s in given {
        match current.iter_mut().find(|c| c.name == s.name) {
            Some(slot) => slot.value = s.value.clone(),
            None => current.push(s.clone()),
        }
    }
}

fn check_configuration(c: &ClusterConfiguration) -> Result<()> {
    if let Some(exec) = &c.execute_command_configuration {
        let has_log_config = exec.log_configuration.is_some();
        match exec.logging.unwrap_or(ExecuteCommandLogging::Default) {
            ExecuteCommandLogging::Override if !has_log_config => {
                return Err(Error::parameter(
                    "executeCommandConfiguration.logging is OVERRIDE, which needs a logConfiguration.",
                ))
            }
            ExecuteCommandLogging::None | ExecuteCommandLogging::Default if has_log_config => {
                return Err(Error::parameter(
                    "executeCommandConfiguration.logConfiguration may only be given when logging is OVERRIDE.",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a capacity provider list and a default strategy that must draw from it.
fn check_capacity_providers(providers: &[String], strategy: &[CapacityProviderStrategyItem]) -> Result<()> {
    for (i, p) in providers.iter().enumerate() {
        if !BUILTIN_CAPACITY_PROVIDERS.contains(&p.as_str()) {
            return Err(Error::parameter(format!(
                "The capacity provider '{p}' does not exist. Use FARGATE or FARGATE_SPOT, or create the capacity provider first."
            )));
        }
        if providers[..i].contains(p) {
            return Err(Error::parameter(format!("The capacity provider '{p}' is listed more than once.")));
        }
    }
    if strategy.len() > MAX_STRATEGY_ITEMS {
        return Err(Error::parameter(format!(
            "A capacity provider strategy may have at most {MAX_STRATEGY_ITEMS} items."
        )));
    }
    let mut with_base = 0;
    for (i, item) in strategy.iter().enumerate() {
        let name = item.capacity_provider.as_deref().unwrap_or_default();
        if !providers.iter().any(|p| p == name) {
            return Err(Error::parameter(format!(
                "The capacity provider strategy names '{name}', which is not associated with the cluster. Add it to the cluster's capacity providers first."
            )));
        }
        if strategy[..i].iter().any(|o| o.capacity_provider.as_deref() == Some(name)) {
            return Err(Error::parameter(format!("The capacity provider strategy names '{name}' more than once.")));
        }
        if item.base.unwrap_or(0) > 0 {
            with_base += 1;
        }
    }
    if with_base > 1 {
        return Err(Error::parameter("Only one capacity provider in a strategy may have a base defined."));
    }
    if !strategy.is_empty() && strategy.iter().all(|i| i.weight.unwrap_or(0) == 0) {
        return Err(Error::parameter(
            "At least one capacity provider in a strategy must have a weight greater than zero.",
        ));
    }
    Ok(())
}

/// A new ACTIVE cluster with ECS's default settings.
pub(crate) fn fresh_cluster(scope: &Scope, name: ClusterName, tags: Tags) -> Cluster {
    Cluster {
        scope: scope.clone(),
        name,
        status: ClusterStatus::Active,
        tags,
        settings: vec![ClusterSetting {
            name: Some(ClusterSettingName::ContainerInsights),
            value: Some("disabled".into()),
        }],
        configuration: None,
        capacity_providers: Vec::new(),
        default_capacity_provider_strategy: Vec::new(),
        service_connect_namespace: None,
    }
}

fn modify_cluster(
    txn: &mut Txn<'_>,
    scope: &Scope,
    cluster: Option<&str>,
    f: impl FnOnce(&mut Cluster) -> Result<()>,
) -> Result<Cluster> {
    let mut c = active_cluster(txn.state, scope, cluster)?.clone();
    f(&mut c)?;
    txn.state.clusters.insert((scope.clone(), c.name.clone()), Arc::new(c.clone()));
    txn.touch(Touched::Cluster(scope.clone(), c.name.clone()));
    Ok(c)
}

impl Ops<'_, Ecs> {
    /// Creates a cluster, or returns the ACTIVE cluster that already has the name.
    pub async fn create_cluster(&self, caller: &Caller, req: NewCluster) -> Result<Cluster> {
        let name = match req.name.as_deref() {
            None => ClusterName::default_cluster(),
            Some(n) => ClusterName::parse(n)?,
        };
        if name.as_str() == ClusterName::FARGATE_POOL {
            return Err(Error::parameter(format!(
                "The cluster name {} is reserved by Berth for its Fargate capacity; choose another name.",
                ClusterName::FARGATE_POOL
            )));
        }
        let tags = Tags::parse(req.tags)?;
        check_settings(&req.settings)?;
        if let Some(c) = &req.configuration {
            check_configuration(c)?;
        }
        check_capacity_providers(&req.capacity_providers, &req.default_capacity_provider_strategy)?;
        let scope = caller.scope.clone();
        self.write(move |txn| {
            if let Some(existing) = txn.state.cluster(&scope, &name) {
                if existing.status == ClusterStatus::Active {
                    return Ok(existing.clone());
                }
            }
            let mut cluster = fresh_cluster(&scope, name.clone(), tags);
            merge_settings(&mut cluster.settings, &req.settings);
            cluster.configuration = req.configuration;
            cluster.capacity_providers = req.capacity_providers;
            cluster.default_capacity_provider_strategy = req.default_capacity_provider_strategy;
            cluster.service_connect_namespace = req.service_connect_namespace;
            txn.state.clusters.insert((scope.clone(), name.clone()), Arc::new(cluster.clone()));
            txn.touch(Touched::Cluster(scope, name));
            Ok(cluster)
        })
        .await
    }

    /// Describes clusters by name or ARN; none given means `default`. Missing ones are
    /// reported as failures with reason `MISSING`, as ECS does.
    pub fn describe_clusters(&self, caller: &Caller, refs: &[String]) -> Result<(Vec<Cluster>, Vec<Failure>)> {
        if refs.len() > 100 {
            return Err(Error::parameter("At most 100 clusters can be described in one request."));
        }
        let state = self.view();
        let default = [ClusterName::DEFAULT.to_string()];
        let refs = if refs.is_empty() { &default[..] } else { refs };
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for r in refs {
            let missing = |arn: String| Failure { arn, reason: "MISSING".into(), detail: None };
            match ClusterRef::parse(Some(r), &caller.scope)? {
                Ok(ClusterRef(name)) => match state.cluster(&caller.scope, &name) {
                    Some(c) => found.push(c.clone()),
                    None => failures.push(missing(cluster_arn(&caller.scope, &name).to_string())),
                },
                Err(foreign) => failures.push(missing(foreign)),
            }
        }
        Ok((found, failures))
    }

    /// ARNs of the caller's ACTIVE clusters, in ARN order.
    pub fn list_clusters(&self, caller: &Caller, page: &Page) -> (Vec<String>, Option<String>) {
        let state = self.view();
        let items = state
            .clusters
            .iter()
            .filter(|((s, _), c)| *s == caller.scope && c.status == ClusterStatus::Active)
            .map(|((_, n), c)| (n.to_string(), c.arn().to_string()));
        page.take(items, false)
    }

    pub async fn update_cluster(&self, caller: &Caller, cluster: String, update: ClusterUpdate) -> Result<Cluster> {
        if let Some(s) = &update.settings {
            check_settings(s)?;
        }
        if let Some(c) = &update.configuration {
            check_configuration(c)?;
        }
        let scope = caller.scope.clone();
        self.write(move |txn| {
            modify_cluster(txn, &scope, Some(&cluster), |c| {
                if let Some(s) = &update.settings {
                    merge_settings(&mut c.settings, s);
                }
                if let Some(conf) = update.configuration {
                    c.configuration = Some(conf);
                }
                if let Some(ns) = update.service_connect_namespace {
                    c.service_connect_namespace = Some(ns);
                }
                Ok(())
            })
        })
        .await
    }

    pub async fn update_cluster_settings(
        &self,
        caller: &Caller,
        cluster: String,
        settings: Vec<ClusterSetting>,
    ) -> Result<Cluster> {
        self.update_cluster(caller, cluster, ClusterUpdate { settings: Some(settings), ..Default::default() }).await
    }

    /// Replaces a cluster's capacity providers and its default strategy.
    pub async fn put_cluster_capacity_providers(
        &self,
        caller: &Caller,
        cluster: String,
        providers: Vec<String>,
        strategy: Vec<CapacityProviderStrategyItem>,
    ) -> Result<Cluster> {
        check_capacity_providers(&providers, &strategy)?;
        let scope = caller.scope.clone();
        self.write(move |txn| {
            modify_cluster(txn, &scope, Some(&cluster), |c| {
                c.capacity_providers = providers;
                c.default_capacity_provider_strategy = strategy;
                Ok(())
            })
        })
        .await
    }

    /// Marks a cluster INACTIVE, refusing while instances or tasks still use it.
    pub async fn delete_cluster(&self, caller: &Caller, cluster: String) -> Result<Cluster> {
        let scope = caller.scope.clone();
        self.write(move |txn| {
            let name = active_cluster(txn.state, &scope, Some(&cluster))?.name.clone();
            let state = &*txn.state;
            if state.cluster_services(&scope, &name).any(|s| s.status != ServiceStatus::Inactive) {
                return Err(Error::Conflict {
                    kind: ConflictKind::ClusterHasServices,
                    message: "The Cluster cannot be deleted while Services are active.".into(),
                });
            }
            if state.cluster_instances(&scope, &name).any(|i| i.status != InstanceStatus::Inactive) {
                return Err(Error::Conflict {
                    kind: ConflictKind::ClusterHasInstances,
                    message: "The cluster cannot be deleted while container instances are active or draining. Deregister them first.".into(),
                });
            }
            if state.cluster_tasks(&scope, &name).any(|t| t.holds_resources()) {
                return Err(Error::Conflict {
                    kind: ConflictKind::ClusterHasTasks,
                    message: "The cluster cannot be deleted while it has active tasks. Stop them first.".into(),
                });
            }
            modify_cluster(txn, &scope, Some(&cluster), |c| {
                c.status = ClusterStatus::Inactive;
                Ok(())
            })
        })
        .await
    }
}
