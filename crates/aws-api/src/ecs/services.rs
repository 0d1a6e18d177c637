//! The ECS operations on services, their deployments and revisions: wire shapes in and out.

use axum::response::Response;

use control_plane::ecs::services::{Counts, DeploymentView, ServiceSpec, ServiceUpdate, ServiceView};
use control_plane::Caller;
use control_plane::{ControlPlane, Page};
use model::ecs::service::{
    service_deployment_arn, service_revision_arn, Deployment, DeploymentConfig, Revision, RolloutState, Service,
};
use model::ecs::shapes as w;
use model::ecs::task_definition_arn;

use crate::ecs::{failure_shape, input, tag_pairs, tags_shape, Validate};
use crate::{ok, ApiError};

/// ListServices and ListServicesByNamespace: 10 by default, at most 100.
const SERVICES_PAGE: i32 = 100;
const SERVICES_PAGE_DEFAULT: i32 = 10;
/// ListServiceDeployments: 20 by default, at most 100.
const DEPLOYMENTS_PAGE: i32 = 100;
const DEPLOYMENTS_PAGE_DEFAULT: i32 = 20;

crate::ecs::validate_with_model!(
    w::CreateServiceRequest,
    w::UpdateServiceRequest,
    w::DeleteServiceRequest,
    w::DescribeServicesRequest,
    w::ListServicesByNamespaceRequest,
    w::ListServiceDeploymentsRequest,
    w::DescribeServiceDeploymentsRequest,
    w::DescribeServiceRevisionsRequest,
);
crate::ecs::no_model_rules!(w::ListServicesRequest);

/// A page whose default size is smaller than its limit.
fn page(max: Option<i32>, token: Option<&str>, default: i32, limit: i32) -> Result<Page, ApiError> {
    if max.is_some_and(|m| !(1..=limit).contains(&m)) {
        return Err(ApiError::invalid_parameter(format!("maxResults must be between 1 and {limit}.")));
    }
    Ok(Page::parse(Some(max.unwrap_or(default)), token, limit)?)
}

/// CreateService's request as the control plane takes it.
fn service_spec(r: w::CreateServiceRequest) -> ServiceSpec {
    ServiceSpec {
        cluster: r.cluster,
        name: r.service_name.unwrap_or_default(),
        task_definition: r.task_definition,
        desired_count: r.desired_count,
        scheduling_strategy: r.scheduling_strategy,
        deployment_controller: r.deployment_controller.and_then(|c| c.type_),
        deployment_configuration: r.deployment_configuration,
        placement_constraints: r.placement_constraints.unwrap_or_default(),
        placement_strategy: r.placement_strategy.unwrap_or_default(),
        health_check_grace_period_seconds: r.health_check_grace_period_seconds,
        client_token: r.client_token,
        launch_type: r.launch_type,
        capacity_provider_strategy: r.capacity_provider_strategy.unwrap_or_default(),
        platform_version: r.platform_version,
        network_configuration: r.network_configuration,
        load_balancers: r.load_balancers.unwrap_or_default(),
        role: r.role,
        service_registries: r.service_registries.unwrap_or_default(),
        service_connect_configuration: r.service_connect_configuration,
        volume_configurations: r.volume_configurations.unwrap_or_default(),
        vpc_lattice_configurations: r.vpc_lattice_configurations.unwrap_or_default(),
        tags: tag_pairs(r.tags),
        propagate_tags: r.propagate_tags,
        enable_ecs_managed_tags: r.enable_ecs_managed_tags.unwrap_or(false),
        enable_execute_command: r.enable_execute_command.unwrap_or(false),
        availability_zone_rebalancing: r.availability_zone_rebalancing,
    }
}

/// UpdateService's request as the control plane takes it.
fn service_update(r: w::UpdateServiceRequest) -> Result<ServiceUpdate, ApiError> {
    Ok(ServiceUpdate {
        service: r.service.ok_or_else(|| ApiError::invalid_parameter("service is required."))?,
        cluster: r.cluster,
        desired_count: r.desired_count,
        task_definition: r.task_definition,
        deployment_controller: r.deployment_controller.and_then(|c| c.type_),
        deployment_configuration: r.deployment_configuration,
        placement_constraints: r.placement_constraints,
        placement_strategy: r.placement_strategy,
        health_check_grace_period_seconds: r.health_check_grace_period_seconds,
        capacity_provider_strategy: r.capacity_provider_strategy,
        platform_version: r.platform_version,
        network_configuration: r.network_configuration,
        load_balancers: r.load_balancers,
        service_registries: r.service_registries,
        service_connect_configuration: r.service_connect_configuration,
        volume_configurations: r.volume_configurations,
        vpc_lattice_configurations: r.vpc_lattice_configurations,
        propagate_tags: r.propagate_tags,
        enable_ecs_managed_tags: r.enable_ecs_managed_tags,
        enable_execute_command: r.enable_execute_command,
        availability_zone_rebalancing: r.availability_zone_rebalancing,
        force_new_deployment: r.force_new_deployment.unwrap_or(false),
    })
}

/// Handles the operation if it is one of this module's; `None` otherwise.
pub async fn dispatch(
    cp: &ControlPlane,
    caller: &Caller,
    operation: &str,
    body: &[u8],
) -> Option<Result<Response, ApiError>> {
    let r = match operation {
        "CreateService" => {
            async {
                let r: w::CreateServiceRequest = input(body)?;
                let v = cp.ecs().create_service(caller, service_spec(r)).await?;
                Ok(ok(&w::CreateServiceResponse { service: Some(service_shape(&v, true)) }))
            }
            .await
        }
        "UpdateService" => {
            async {
                let r: w::UpdateServiceRequest = input(body)?;
                let v = cp.ecs().update_service(caller, service_update(r)?).await?;
                Ok(ok(&w::UpdateServiceResponse { service: Some(service_shape(&v, true)) }))
            }
            .await
        }
        "DeleteService" => {
            async {
                let r: w::DeleteServiceRequest = input(body)?;
                let v = cp
                    .ecs()
                    .delete_service(caller, r.cluster, r.service.unwrap_or_default(), r.force.unwrap_or(false))
                    .await?;
                Ok(ok(&w::DeleteServiceResponse { service: Some(service_shape(&v, true)) }))
            }
            .await
        }
        "DescribeServices" => (|| {
            let r: w::DescribeServicesRequest = input(body)?;
            let with_tags = r.include.unwrap_or_default().contains(&w::ServiceField::Tags);
            let (found, failures) =
                cp.ecs().describe_services(caller, r.cluster.as_deref(), &r.services.unwrap_or_default())?;
            Ok(ok(&w::DescribeServicesResponse {
                services: Some(found.iter().map(|v| service_shape(v, with_tags)).collect()),
                failures: Some(failures.into_iter().map(failure_shape).collect()),
            }))
        })(),
        "ListServices" => (|| {
            let r: w::ListServicesRequest = input(body)?;
            let page = page(r.max_results, r.next_token.as_deref(), SERVICES_PAGE_DEFAULT, SERVICES_PAGE)?;
            if r.resource_management_type == Some(w::ResourceManagementType::Ecs) {
                // Berth has no services that ECS itself manages.
                return Ok(ok(&w::ListServicesResponse { service_arns: Some(Vec::new()), next_token: None }));
            }
            let (arns, next_token) =
                cp.ecs().list_services(caller, r.cluster.as_deref(), r.launch_type, r.scheduling_strategy, &page)?;
            Ok(ok(&w::ListServicesResponse { service_arns: Some(arns), next_token }))
        })(),
        "ListServicesByNamespace" => (|| {
            let r: w::ListServicesByNamespaceRequest = input(body)?;
            let page = page(r.max_results, r.next_token.as_deref(), SERVICES_PAGE_DEFAULT, SERVICES_PAGE)?;
            let (arns, next_token) =
                cp.ecs().list_services_by_namespace(caller, r.namespace.as_deref().unwrap_or_default(), &page)?;
            Ok(ok(&w::ListServicesByNamespaceResponse { service_arns: Some(arns), next_token }))
        })(),
        "ListServiceDeployments" => (|| {
            let r: w::ListServiceDeploymentsRequest = input(body)?;
            let page = page(r.max_results, r.next_token.as_deref(), DEPLOYMENTS_PAGE_DEFAULT, DEPLOYMENTS_PAGE)?;
            let created = r.created_at.map(|c| (c.before, c.after)).unwrap_or_default();
            let (found, next_token) = cp.ecs().list_service_deployments(
                caller,
                r.cluster.as_deref(),
                r.service.as_deref().unwrap_or_default(),
                &r.status.unwrap_or_default(),
                created,
                &page,
            )?;
            Ok(ok(&w::ListServiceDeploymentsResponse {
                service_deployments: Some(found.iter().map(deployment_brief).collect()),
                next_token,
            }))
        })(),
        "DescribeServiceDeployments" => (|| {
            let r: w::DescribeServiceDeploymentsRequest = input(body)?;
            let (found, failures) =
                cp.ecs().describe_service_deployments(caller, &r.service_deployment_arns.unwrap_or_default())?;
            Ok(ok(&w::DescribeServiceDeploymentsResponse {
                service_deployments: Some(found.iter().map(service_deployment_shape).collect()),
                failures: Some(failures.into_iter().map(failure_shape).collect()),
            }))
        })(),
        "DescribeServiceRevisions" => (|| {
            let r: w::DescribeServiceRevisionsRequest = input(body)?;
            let (found, failures) =
                cp.ecs().describe_service_revisions(caller, &r.service_revision_arns.unwrap_or_default())?;
            let view = cp.view();
            Ok(ok(&w::DescribeServiceRevisionsResponse {
                service_revisions: Some(found.iter().map(|(s, rev)| revision_shape(&view, s, rev)).collect()),
                failures: Some(failures.into_iter().map(failure_shape).collect()),
            }))
        })(),
        _ => return None,
    };
    Some(r)
}

fn config_shape(c: &DeploymentConfig) -> w::DeploymentConfiguration {
    w::DeploymentConfiguration {
        deployment_circuit_breaker: Some(w::DeploymentCircuitBreaker {
            enable: Some(c.circuit_breaker.enable),
            rollback: Some(c.circuit_breaker.rollback),
        }),
        maximum_percent: Some(c.maximum_percent),
        minimum_healthy_percent: Some(c.minimum_healthy_percent),
        alarms: c.alarms.clone(),
        strategy: Some(w::DeploymentStrategy::Rolling),
        ..Default::default()
    }
}

fn td_arn(s: &Service, r: &Revision) -> String {
    task_definition_arn(&s.scope, &r.family, r.revision).to_string()
}

fn revision_arn(s: &Service, id: &str) -> String {
    service_revision_arn(&s.scope, &s.cluster, &s.name, id).to_string()
}

fn deployment_arn(s: &Service, d: &Deployment) -> String {
    service_deployment_arn(&s.scope, &s.cluster, &s.name, &d.deployment_id).to_string()
}

fn providers(r: &Revision) -> Option<Vec<w::CapacityProviderStrategyItem>> {
    (!r.capacity_provider_strategy.is_empty()).then(|| r.capacity_provider_strategy.clone())
}

fn deployment_shape(s: &Service, d: &Deployment, counts: Counts) -> w::Deployment {
    let r = &d.revision;
    w::Deployment {
        id: Some(d.id.clone()),
        status: Some(d.status.as_str().into()),
        task_definition: Some(td_arn(s, r)),
        desired_count: Some(d.desired_count as i32),
        pending_count: Some(counts.pending as i32),
        running_count: Some(counts.running as i32),
        failed_tasks: Some(d.failed_tasks as i32),
        created_at: Some(d.created_at),
        updated_at: Some(d.updated_at),
        capacity_provider_strategy: providers(r),
        launch_type: r.launch_type.as_deref().and_then(|l| l.parse().ok()),
        platform_version: r.platform_version.clone(),
        network_configuration: r.network_configuration.clone(),
        rollout_state: Some(match d.rollout_state {
            RolloutState::InProgress => w::DeploymentRolloutState::InProgress,
            RolloutState::Completed => w::DeploymentRolloutState::Completed,
            RolloutState::Failed => w::DeploymentRolloutState::Failed,
        }),
        rollout_state_reason: Some(d.rollout_state_reason.clone()),
        service_connect_configuration: r.service_connect_configuration.clone(),
        volume_configurations: (!r.volume_configurations.is_empty()).then(|| r.volume_configurations.clone()),
        vpc_lattice_configurations: (!r.vpc_lattice_configurations.is_empty())
            .then(|| r.vpc_lattice_configurations.clone()),
        ..Default::default()
    }
}

fn service_shape(v: &ServiceView, with_tags: bool) -> w::Service {
    let s = &v.service;
    let primary = s.primary();
    let rev = primary.map(|d| &d.revision).or_else(|| s.history.first().map(|d| &d.revision));
    let set = &s.settings;
    w::Service {
        service_arn: Some(s.arn().to_string()),
        service_name: Some(s.name.to_string()),
        cluster_arn: Some(model::ecs::cluster_arn(&s.scope, &s.cluster).to_string()),
        load_balancers: Some(rev.map(|r| r.load_balancers.clone()).unwrap_or_default()),
        service_registries: Some(rev.map(|r| r.service_registries.clone()).unwrap_or_default()),
        status: Some(s.status.as_str().into()),
        desired_count: Some(s.desired_count as i32),
        running_count: Some(v.counts.running as i32),
        pending_count: Some(v.counts.pending as i32),
        launch_type: rev.and_then(|r| r.launch_type.as_deref()).and_then(|l| l.parse().ok()),
        capacity_provider_strategy: rev.and_then(providers),
        platform_version: rev.and_then(|r| r.platform_version.clone()),
        task_definition: rev.map(|r| td_arn(s, r)),
        deployment_configuration: Some(config_shape(&set.deployment_config)),
        deployments: Some(
            s.deployments.iter().zip(v.deployments.iter()).map(|(d, c)| deployment_shape(s, d, *c)).collect(),
        ),
        role_arn: set.role_arn.clone(),
        events: Some(
            s.events
                .iter()
                .map(|e| w::ServiceEvent {
                    id: Some(e.id.clone()),
                    created_at: Some(e.created_at),
                    message: Some(e.message.clone()),
                })
                .collect(),
        ),
        created_at: Some(s.created_at),
        current_service_deployment: primary.map(|d| deployment_arn(s, d)),
        current_service_revisions: Some(
            s.deployments
                .iter()
                .zip(v.deployments.iter())
                .map(|(d, c)| w::ServiceCurrentRevisionSummary {
                    arn: Some(revision_arn(s, &d.revision.id)),
                    requested_task_count: Some(d.desired_count as i32),
                    running_task_count: Some(c.running as i32),
                    pending_task_count: Some(c.pending as i32),
                })
                .collect(),
        ),
        placement_constraints: Some(set.placement_constraints.clone()),
        placement_strategy: Some(set.placement_strategy.clone()),
        network_configuration: rev.and_then(|r| r.network_configuration.clone()),
        health_check_grace_period_seconds: set.health_check_grace_period_seconds,
        scheduling_strategy: Some(set.scheduling_strategy),
        deployment_controller: Some(w::DeploymentController { type_: Some(set.deployment_controller) }),
        tags: with_tags.then(|| tags_shape(&s.tags)),
        created_by: Some(s.created_by.clone()),
        enable_ecs_managed_tags: Some(set.enable_ecs_managed_tags),
        propagate_tags: Some(set.propagate_tags.unwrap_or(w::PropagateTags::None)),
        enable_execute_command: Some(set.enable_execute_command),
        availability_zone_rebalancing: set.availability_zone_rebalancing,
        ..Default::default()
    }
}

fn counts_of(v: &DeploymentView, revision: &str) -> Counts {
    v.revisions.iter().find(|(r, _)| r == revision).map(|(_, c)| *c).unwrap_or_default()
}

fn deployment_brief(v: &DeploymentView) -> w::ServiceDeploymentBrief {
    let (s, d) = (&v.service, &v.deployment);
    w::ServiceDeploymentBrief {
        service_deployment_arn: Some(deployment_arn(s, d)),
        service_arn: Some(s.arn().to_string()),
        cluster_arn: Some(model::ecs::cluster_arn(&s.scope, &s.cluster).to_string()),
        started_at: Some(d.created_at),
        created_at: Some(d.created_at),
        finished_at: d.finished_at,
        target_service_revision_arn: Some(revision_arn(s, &d.revision.id)),
        status: Some(d.deployment_status),
        status_reason: d.status_reason.clone(),
    }
}

fn service_deployment_shape(v: &DeploymentView) -> w::ServiceDeployment {
    let (s, d) = (&v.service, &v.deployment);
    let summary = |id: &str, requested: u32| {
        let c = counts_of(v, id);
        w::ServiceRevisionSummary {
            arn: Some(revision_arn(s, id)),
            requested_task_count: Some(requested as i32),
            running_task_count: Some(c.running as i32),
            pending_task_count: Some(c.pending as i32),
            ..Default::default()
        }
    };
    let cb = d.config.circuit_breaker;
    let breaker_status = match (cb.enable, d.rollout_state) {
        (false, _) => w::ServiceDeploymentRollbackMonitorsStatus::Disabled,
        (true, RolloutState::Failed) => w::ServiceDeploymentRollbackMonitorsStatus::Triggered,
        (true, RolloutState::InProgress) => w::ServiceDeploymentRollbackMonitorsStatus::Monitoring,
        (true, RolloutState::Completed) => w::ServiceDeploymentRollbackMonitorsStatus::MonitoringComplete,
    };
    let stopped = matches!(
        d.deployment_status,
        w::ServiceDeploymentStatus::Stopped | w::ServiceDeploymentStatus::RollbackSuccessful
    );
    w::ServiceDeployment {
        service_deployment_arn: Some(deployment_arn(s, d)),
        service_arn: Some(s.arn().to_string()),
        cluster_arn: Some(model::ecs::cluster_arn(&s.scope, &s.cluster).to_string()),
        created_at: Some(d.created_at),
        started_at: Some(d.created_at),
        finished_at: d.finished_at.filter(|_| !stopped),
        stopped_at: d.finished_at.filter(|_| stopped),
        updated_at: Some(d.updated_at),
        source_service_revisions: Some(d.sources.iter().map(|(id, n)| summary(id, *n)).collect()),
        target_service_revision: Some(summary(&d.revision.id, d.desired_count)),
        status: Some(d.deployment_status),
        status_reason: d.status_reason.clone(),
        deployment_configuration: Some(config_shape(&d.config)),
        rollback: d.rollback.as_ref().map(|r| w::Rollback {
            reason: Some(r.reason.clone()),
            started_at: Some(r.started_at),
            service_revision_arn: Some(revision_arn(s, &r.revision_id)),
        }),
        deployment_circuit_breaker: Some(w::ServiceDeploymentCircuitBreaker {
            status: Some(breaker_status),
            failure_count: Some(d.failed_tasks as i32),
            threshold: Some(d.circuit_breaker_threshold() as i32),
        }),
        alarms: Some(w::ServiceDeploymentAlarms {
            status: Some(w::ServiceDeploymentRollbackMonitorsStatus::Disabled),
            alarm_names: d.config.alarms.as_ref().and_then(|a| a.alarm_names.clone()),
            triggered_alarm_names: Some(Vec::new()),
        }),
        ..Default::default()
    }
}

fn revision_shape(view: &control_plane::State, s: &Service, r: &Revision) -> w::ServiceRevision {
    let images = view
        .task_definitions
        .get(&(s.scope.clone(), r.family.clone(), r.revision))
        .map(|td| {
            td.spec
                .containers()
                .iter()
                .map(|c| w::ContainerImage {
                    container_name: c.name.clone(),
                    image: c.image.clone(),
                    image_digest: None,
                })
                .collect()
        })
        .unwrap_or_default();
    w::ServiceRevision {
        service_revision_arn: Some(revision_arn(s, &r.id)),
        service_arn: Some(s.arn().to_string()),
        cluster_arn: Some(model::ecs::cluster_arn(&s.scope, &s.cluster).to_string()),
        task_definition: Some(td_arn(s, r)),
        capacity_provider_strategy: providers(r),
        launch_type: r.launch_type.as_deref().and_then(|l| l.parse().ok()),
        platform_version: r.platform_version.clone(),
        load_balancers: Some(r.load_balancers.clone()),
        service_registries: Some(r.service_registries.clone()),
        network_configuration: r.network_configuration.clone(),
        container_images: Some(images),
        guard_duty_enabled: Some(false),
        service_connect_configuration: r.service_connect_configuration.clone(),
        volume_configurations: Some(r.volume_configurations.clone()),
        created_at: Some(r.created_at),
        vpc_lattice_configurations: Some(r.vpc_lattice_configurations.clone()),
        ..Default::default()
    }
}
