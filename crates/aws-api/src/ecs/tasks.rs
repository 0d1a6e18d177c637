//! The ECS operations on container instances and tasks: wire shapes in and out.

use axum::response::Response;

use control_plane::ecs::instances::{InstanceView, NewInstance};
use control_plane::ecs::run_task::TaskRequest;
use control_plane::ecs::tasks::{StateChange, TaskFilter};
use control_plane::Caller;
use control_plane::{ControlPlane, Page};
use model::ecs::shapes as w;
use model::ecs::task::{InstanceStatus, Resources, Task};
use model::tags::Tags;

use crate::ecs::{failure_shape, input, tag_pairs, tags_shape, Validate};
use crate::{ok, ApiError};

const PAGE_LIMIT: i32 = 100;

crate::ecs::validate_with_model!(
    w::RegisterContainerInstanceRequest,
    w::DeregisterContainerInstanceRequest,
    w::DescribeContainerInstancesRequest,
    w::UpdateContainerInstancesStateRequest,
    w::RunTaskRequest,
    w::StartTaskRequest,
    w::StopTaskRequest,
    w::DescribeTasksRequest,
);
crate::ecs::no_model_rules!(
    w::ListContainerInstancesRequest,
    w::ListTasksRequest,
    w::DiscoverPollEndpointRequest,
    w::SubmitTaskStateChangeRequest,
    w::SubmitContainerStateChangeRequest,
);

/// Handles the operation if it is one of this module's; `None` otherwise.
pub async fn dispatch(
    cp: &ControlPlane,
    caller: &Caller,
    operation: &str,
    body: &[u8],
    endpoint: &str,
) -> Option<Result<Response, ApiError>> {
    let r = match operation {
        "RegisterContainerInstance" => register(cp, caller, body).await,
        "DeregisterContainerInstance" => {
            async {
                let r: w::DeregisterContainerInstanceRequest = input(body)?;
                let i = cp
                    .ecs()
                    .deregister_container_instance(
                        caller,
                        r.cluster,
                        r.container_instance.unwrap_or_default(),
                        r.force.unwrap_or(false),
                    )
                    .await?;
                let view = cp
                    .ecs()
                    .describe_container_instances(caller, Some(i.cluster.as_str()), std::slice::from_ref(&i.id))?
                    .0;
                Ok(ok(&w::DeregisterContainerInstanceResponse { container_instance: view.first().map(instance_shape) }))
            }
            .await
        }
        "DescribeContainerInstances" => (|| {
            let r: w::DescribeContainerInstancesRequest = input(body)?;
            let with_tags = r.include.unwrap_or_default().contains(&w::ContainerInstanceField::Tags);
            let (found, failures) = cp.ecs().describe_container_instances(
                caller,
                r.cluster.as_deref(),
                &r.container_instances.unwrap_or_default(),
            )?;
            Ok(ok(&w::DescribeContainerInstancesResponse {
                container_instances: Some(
                    found
                        .iter()
                        .map(|v| {
                            let mut s = instance_shape(v);
                            if !with_tags {
                                s.tags = None;
                            }
                            s
                        })
                        .collect(),
                ),
                failures: Some(failures.into_iter().map(failure_shape).collect()),
            }))
        })(),
        "ListContainerInstances" => (|| {
            let r: w::ListContainerInstancesRequest = input(body)?;
            let page = Page::parse(r.max_results, r.next_token.as_deref(), PAGE_LIMIT)?;
            let status = match r.status {
                None => None,
                Some(w::ContainerInstanceStatus::Active) => Some(InstanceStatus::Active),
                Some(w::ContainerInstanceStatus::Draining) => Some(InstanceStatus::Draining),
                // Berth registers instances at once; no instance is ever in these states.
                Some(_) => {
                    return Ok(ok(&w::ListContainerInstancesResponse {
                        container_instance_arns: Some(vec![]),
                        next_token: None,
                    }))
                }
            };
            let (arns, next_token) =
                cp.ecs().list_container_instances(caller, r.cluster.as_deref(), status, r.filter.as_deref(), &page)?;
            Ok(ok(&w::ListContainerInstancesResponse { container_instance_arns: Some(arns), next_token }))
        })(),
        "UpdateContainerInstancesState" => {
            async {
                let r: w::UpdateContainerInstancesStateRequest = input(body)?;
                let status = match r.status {
                    Some(w::ContainerInstanceStatus::Active) => InstanceStatus::Active,
                    Some(w::ContainerInstanceStatus::Draining) => InstanceStatus::Draining,
                    _ => return Err(ApiError::invalid_parameter("status must be ACTIVE or DRAINING.")),
                };
                let (done, failures) = cp
                    .ecs()
                    .update_container_instances_state(
                        caller,
                        r.cluster,
                        r.container_instances.unwrap_or_default(),
                        status,
                    )
                    .await?;
                let ids: Vec<String> = done.iter().map(|i| i.id.clone()).collect();
                let cluster = done.first().map(|i| i.cluster.to_string());
                let views = if ids.is_empty() {
                    Vec::new()
                } else {
                    cp.ecs().describe_container_instances(caller, cluster.as_deref(), &ids)?.0
                };
                Ok(ok(&w::UpdateContainerInstancesStateResponse {
                    container_instances: Some(views.iter().map(instance_shape).collect()),
                    failures: Some(failures.into_iter().map(failure_shape).collect()),
                }))
            }
            .await
        }
        "DiscoverPollEndpoint" => (|| {
            let _: w::DiscoverPollEndpointRequest = input(body)?;
            // Agents of Berth connect back to the endpoint they called.
            Ok(ok(&w::DiscoverPollEndpointResponse {
                endpoint: Some(endpoint.to_string()),
                telemetry_endpoint: Some(endpoint.to_string()),
                service_connect_endpoint: Some(endpoint.to_string()),
            }))
        })(),
        "RunTask" => {
            async {
                let r: w::RunTaskRequest = input(body)?;
                let req = TaskRequest {
                    cluster: r.cluster,
                    task_definition: r.task_definition.unwrap_or_default(),
                    count: r.count.unwrap_or(1),
                    group: r.group,
                    started_by: r.started_by,
                    overrides: r.overrides,
                    constraints: r
                        .placement_constraints
                        .unwrap_or_default()
                        .into_iter()
                        .map(|c| (c.type_.map(|t| t.as_str().to_string()).unwrap_or_default(), c.expression))
                        .collect(),
                    strategies: r
                        .placement_strategy
                        .unwrap_or_default()
                        .into_iter()
                        .map(|s| (s.type_.map(|t| t.as_str().to_string()).unwrap_or_default(), s.field))
                        .collect(),
                    tags: tag_pairs(r.tags),
                    launch_type: r.launch_type.map(|l| l.as_str().to_string()),
                    instances: None,
                    managed_tags: r.enable_ecs_managed_tags.unwrap_or(false),
                    propagate_task_definition_tags: r.propagate_tags == Some(w::PropagateTags::TaskDefinition),
                    network: r.network_configuration,
                    platform_version: r.platform_version,
                    capacity_provider_strategy: r.capacity_provider_strategy.unwrap_or_default(),
                };
                let (tasks, failures) = cp.ecs().run_task(caller, req).await?;
                Ok(ok(&w::RunTaskResponse {
                    tasks: Some({
                        let view = cp.view();
                        tasks.iter().map(|t| task_shape(&view, t, true)).collect()
                    }),
                    failures: Some(failures.into_iter().map(failure_shape).collect()),
                }))
            }
            .await
        }
        "StartTask" => {
            async {
                let r: w::StartTaskRequest = input(body)?;
                let req = TaskRequest {
                    cluster: r.cluster,
                    task_definition: r.task_definition.unwrap_or_default(),
                    count: 1,
                    group: r.group,
                    started_by: r.started_by,
                    overrides: r.overrides,
                    tags: tag_pairs(r.tags),
                    instances: Some(r.container_instances.unwrap_or_default()),
                    managed_tags: r.enable_ecs_managed_tags.unwrap_or(false),
                    propagate_task_definition_tags: r.propagate_tags == Some(w::PropagateTags::TaskDefinition),
                    network: r.network_configuration,
                    ..Default::default()
                };
                let (tasks, failures) = cp.ecs().run_task(caller, req).await?;
                Ok(ok(&w::StartTaskResponse {
                    tasks: Some({
                        let view = cp.view();
                        tasks.iter().map(|t| task_shape(&view, t, true)).collect()
                    }),
                    failures: Some(failures.into_iter().map(failure_shape).collect()),
                }))
            }
            .await
        }
        "StopTask" => {
            async {
                let r: w::StopTaskRequest = input(body)?;
                let t = cp.ecs().stop_task(caller, r.cluster, r.task.unwrap_or_default(), r.reason).await?;
                Ok(ok(&w::StopTaskResponse { task: Some(task_shape(&cp.view(), &t, true)) }))
            }
            .await
        }
        // Berth's extension (`berth fargate interrupt`): a Spot interruption on demand.
        INTERRUPT_OPERATION => {
            async {
                let r: w::StopTaskRequest = input(body)?;
                let t = cp.ecs().interrupt_spot_task(caller, r.cluster, r.task.unwrap_or_default()).await?;
                Ok(ok(&w::StopTaskResponse { task: Some(task_shape(&cp.view(), &t, true)) }))
            }
            .await
        }
        "DescribeTasks" => (|| {
            let r: w::DescribeTasksRequest = input(body)?;
            let with_tags = r.include.unwrap_or_default().contains(&w::TaskField::Tags);
            let (found, failures) =
                cp.ecs().describe_tasks(caller, r.cluster.as_deref(), &r.tasks.unwrap_or_default())?;
            Ok(ok(&w::DescribeTasksResponse {
                tasks: Some({
                    let view = cp.view();
                    found.iter().map(|t| task_shape(&view, t, with_tags)).collect()
                }),
                failures: Some(failures.into_iter().map(failure_shape).collect()),
            }))
        })(),
        "ListTasks" => (|| {
            let r: w::ListTasksRequest = input(body)?;
            let page = Page::parse(r.max_results, r.next_token.as_deref(), PAGE_LIMIT)?;
            let filter = TaskFilter {
                container_instance: r.container_instance,
                family: r.family,
                started_by: r.started_by,
                service_name: r.service_name,
                desired_status: r.desired_status.map(|d| match d {
                    w::DesiredStatus::Running | w::DesiredStatus::Pending => model::ecs::task::DesiredStatus::Running,
                    w::DesiredStatus::Stopped => model::ecs::task::DesiredStatus::Stopped,
                }),
                launch_type: r.launch_type.map(|l| l.as_str().to_string()),
            };
            let (arns, next_token) = cp.ecs().list_tasks(caller, r.cluster.as_deref(), &filter, &page)?;
            Ok(ok(&w::ListTasksResponse { task_arns: Some(arns), next_token }))
        })(),
        "SubmitTaskStateChange" => {
            async {
                let r: w::SubmitTaskStateChangeRequest = input(body)?;
                let change = StateChange {
                    status: r.status.as_deref().map(parse_task_status).transpose()?,
                    reason: r.reason,
                    containers: r
                        .containers
                        .unwrap_or_default()
                        .into_iter()
                        .map(|c| {
                            container_change(
                                c.container_name,
                                c.status,
                                c.runtime_id,
                                c.exit_code,
                                c.reason,
                                c.network_bindings,
                                c.image_digest,
                            )
                        })
                        .collect::<Result<_, _>>()?,
                    pull_started_at: r.pull_started_at,
                    pull_stopped_at: r.pull_stopped_at,
                    execution_stopped_at: r.execution_stopped_at,
                };
                cp.ecs().submit_state_change(caller, r.cluster, r.task.unwrap_or_default(), change).await?;
                Ok(ok(&w::SubmitTaskStateChangeResponse { acknowledgment: Some("ACK".into()) }))
            }
            .await
        }
        "SubmitContainerStateChange" => {
            async {
                let r: w::SubmitContainerStateChangeRequest = input(body)?;
                let c = container_change(
                    r.container_name,
                    r.status,
                    r.runtime_id,
                    r.exit_code,
                    r.reason,
                    r.network_bindings,
                    None,
                )?;
                let change = StateChange { containers: vec![c], ..Default::default() };
                cp.ecs().submit_state_change(caller, r.cluster, r.task.unwrap_or_default(), change).await?;
                Ok(ok(&w::SubmitContainerStateChangeResponse { acknowledgment: Some("ACK".into()) }))
            }
            .await
        }
        _ => return None,
    };
    Some(r)
}

/// Berth's extension of the ECS API: interrupt a FARGATE_SPOT task now (body as
/// StopTask's: `cluster`, `task`), as `berth fargate interrupt` sends it.
pub const INTERRUPT_OPERATION: &str = "BerthInterruptSpotTask";

fn parse_task_status(s: &str) -> Result<model::ecs::task::TaskStatus, ApiError> {
    use model::ecs::task::TaskStatus::*;
    Ok(match s {
        "PROVISIONING" => Provisioning,
        "PENDING" => Pending,
        "ACTIVATING" => Activating,
        "RUNNING" => Running,
        "DEACTIVATING" => Deactivating,
        "STOPPING" => Stopping,
        "DEPROVISIONING" => Deprovisioning,
        "STOPPED" => Stopped,
        other => return Err(ApiError::invalid_parameter(format!("'{other}' is not a task status."))),
    })
}

fn container_change(
    name: Option<String>,
    status: Option<String>,
    runtime_id: Option<String>,
    exit_code: Option<i32>,
    reason: Option<String>,
    bindings: Option<Vec<w::NetworkBinding>>,
    image_digest: Option<String>,
) -> Result<agent_protocol::ContainerReport, ApiError> {
    use model::ecs::task::ContainerStatus;
    let last_status = match status.as_deref() {
        Some("PENDING") | None => ContainerStatus::Pending,
        Some("RUNNING") => ContainerStatus::Running,
        Some("STOPPED") => ContainerStatus::Stopped,
        Some(other) => return Err(ApiError::invalid_parameter(format!("'{other}' is not a container status."))),
    };
    Ok(agent_protocol::ContainerReport {
        name: name.ok_or_else(|| ApiError::invalid_parameter("containerName is required."))?,
        last_status,
        runtime_id,
        exit_code,
        reason,
        network_bindings: bindings.unwrap_or_default(),
        health_status: model::ecs::task::HealthStatus::Unknown,
        image_digest,
    })
}

async fn register(cp: &ControlPlane, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::RegisterContainerInstanceRequest = input(body)?;
    let mut resources = Resources::default();
    for res in r.total_resources.unwrap_or_default() {
        let number =
            || res.integer_value.map(i64::from).or(res.long_value).or(res.double_value.map(|d| d as i64)).unwrap_or(0);
        let ports = || -> Result<Vec<u16>, ApiError> {
            res.string_set_value
                .iter()
                .flatten()
                .map(|p| {
                    p.parse::<u16>().map_err(|_| ApiError::invalid_parameter(format!("'{p}' is not a port number.")))
                })
                .collect()
        };
        match res.name.as_deref() {
            Some("CPU") => resources.cpu = number(),
            Some("MEMORY") => resources.memory = number(),
            Some("PORTS") => resources.ports_tcp = ports()?,
            Some("PORTS_UDP") => resources.ports_udp = ports()?,
            _ => {}
        }
    }
    // The instance identity document is EC2's; Berth's agent sends the same JSON with the
    // instance id it chose, and the caller is already authenticated.
    let ec2_instance_id = r
        .instance_identity_document
        .as_deref()
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .and_then(|v| v["instanceId"].as_str().map(str::to_string));
    let version = r.version_info.unwrap_or_default();
    let req = NewInstance {
        cluster: r.cluster,
        ec2_instance_id,
        resources,
        attributes: r
            .attributes
            .unwrap_or_default()
            .into_iter()
            .map(|a| (a.name.unwrap_or_default(), a.value))
            .collect(),
        agent_version: version.agent_version.unwrap_or_default(),
        agent_hash: version.agent_hash.unwrap_or_default(),
        docker_version: version.docker_version.unwrap_or_default(),
        existing_arn: r.container_instance_arn,
        tags: tag_pairs(r.tags),
    };
    let i = cp.ecs().register_container_instance(caller, req).await?;
    let view = cp.ecs().describe_container_instances(caller, Some(i.cluster.as_str()), std::slice::from_ref(&i.id))?.0;
    Ok(ok(&w::RegisterContainerInstanceResponse { container_instance: view.first().map(instance_shape) }))
}

fn resources_shape(r: &Resources) -> Vec<w::Resource> {
    let int = |name: &str, v: i64| w::Resource {
        name: Some(name.into()),
        type_: Some("INTEGER".into()),
        integer_value: Some(v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32),
        double_value: Some(0.0),
        long_value: Some(0),
        ..Default::default()
    };
    let ports = |name: &str, p: &[u16]| w::Resource {
        name: Some(name.into()),
        type_: Some("STRINGSET".into()),
        string_set_value: Some(p.iter().map(u16::to_string).collect()),
        integer_value: Some(0),
        double_value: Some(0.0),
        long_value: Some(0),
    };
    vec![int("CPU", r.cpu), int("MEMORY", r.memory), ports("PORTS", &r.ports_tcp), ports("PORTS_UDP", &r.ports_udp)]
}

fn instance_shape(v: &InstanceView) -> w::ContainerInstance {
    let i = &v.instance;
    let arn = i.arn().to_string();
    let attributes = i
        .attributes
        .iter()
        .chain(v.custom_attributes.iter())
        .map(|(n, val)| w::Attribute { name: Some(n.clone()), value: val.clone(), ..Default::default() })
        .collect();
    w::ContainerInstance {
        container_instance_arn: Some(arn),
        ec2_instance_id: Some(i.ec2_instance_id.clone()),
        version: Some(i.version),
        version_info: Some(w::VersionInfo {
            agent_version: Some(i.agent_version.clone()),
            agent_hash: Some(i.agent_hash.clone()),
            docker_version: Some(i.docker_version.clone()),
        }),
        remaining_resources: Some(resources_shape(&v.remaining)),
        registered_resources: Some(resources_shape(&i.registered)),
        status: Some(i.status.as_str().into()),
        agent_connected: Some(v.agent_connected),
        running_tasks_count: Some(v.running_tasks as i32),
        pending_tasks_count: Some(v.pending_tasks as i32),
        attributes: Some(attributes),
        registered_at: Some(i.registered_at),
        attachments: Some(vec![]),
        tags: Some(tags_shape(&i.tags)),
        ..Default::default()
    }
}

/// An awsvpc task's interface as ECS describes it: an `ElasticNetworkInterface`
/// attachment, ATTACHED while the task may hold it and DELETED once it has stopped.
fn eni_attachment(t: &Task, e: &model::ecs::task::Eni) -> w::Attachment {
    let ip = e.private_ipv4.to_string();
    let detail = |name: &str, value: String| w::KeyValuePair { name: Some(name.into()), value: Some(value) };
    w::Attachment {
        id: Some(e.attachment_id.clone()),
        type_: Some("ElasticNetworkInterface".into()),
        status: Some(if t.holds_resources() { "ATTACHED" } else { "DELETED" }.into()),
        details: Some(vec![
            detail("subnetId", e.subnet_id.clone()),
            detail("networkInterfaceId", e.eni_id.clone()),
            detail("macAddress", e.mac.clone()),
            detail("privateDnsName", model::ec2::private_dns_name(e.private_ipv4, t.scope.region.as_str())),
            detail("privateIPv4Address", ip),
        ]),
    }
}

fn task_shape(view: &control_plane::State, t: &Task, with_tags: bool) -> w::Task {
    let arn = t.arn().to_string();
    let fargate = t.is_fargate();
    // The instance the task runs on, Fargate's capacity included: its agent reported the
    // machine's real architecture when it registered.
    let host = t
        .container_instance
        .as_ref()
        .and_then(|id| view.instances.get(&(t.scope.clone(), t.host_cluster(), id.clone())));
    // Fargate tasks run on capacity the account does not see: no instance to name.
    let instance = host.filter(|_| !fargate);
    let cpu_architecture =
        host.and_then(|i| i.attribute("ecs.cpu-architecture").cloned().flatten()).unwrap_or_else(|| "x86_64".into());
    let definition = view.task_definitions.get(&(t.scope.clone(), t.family.clone(), t.revision));
    let containers = t
        .containers
        .iter()
        .map(|c| w::Container {
            container_arn: Some(t.container_arn(c).to_string()),
            task_arn: Some(arn.clone()),
            name: Some(c.name.clone()),
            image: Some(c.image.clone()),
            image_digest: c.image_digest.clone(),
            runtime_id: c.runtime_id.clone(),
            last_status: Some(c.last_status.as_str().into()),
            exit_code: c.exit_code,
            reason: c.reason.clone(),
            network_bindings: Some(c.network_bindings.clone()),
            network_interfaces: Some(
                t.eni
                    .iter()
                    .map(|e| w::NetworkInterface {
                        attachment_id: Some(e.attachment_id.clone()),
                        private_ipv4_address: Some(e.private_ipv4.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            health_status: c.health_status.as_str().parse().ok(),
            cpu: Some(c.cpu.to_string()),
            memory: c.memory.map(|m| m.to_string()),
            memory_reservation: c.memory_reservation.map(|m| m.to_string()),
            ..Default::default()
        })
        .collect();
    w::Task {
        attachments: Some(t.eni.iter().map(|e| eni_attachment(t, e)).collect()),
        attributes: Some(vec![w::Attribute {
            name: Some("ecs.cpu-architecture".into()),
            value: Some(cpu_architecture),
            ..Default::default()
        }]),
        availability_zone: t
            .eni
            .as_ref()
            .map(|e| e.availability_zone.clone())
            .or_else(|| instance.and_then(|i| i.attribute("ecs.availability-zone").cloned().flatten())),
        cluster_arn: Some(model::ecs::cluster_arn(&t.scope, &t.cluster).to_string()),
        container_instance_arn: instance.map(|i| i.arn().to_string()),
        containers: Some(containers),
        cpu: Some(t.cpu.clone()),
        created_at: Some(t.created_at),
        desired_status: Some(t.desired_status.as_str().into()),
        enable_execute_command: Some(false),
        execution_stopped_at: t.execution_stopped_at,
        group: Some(t.group.clone()),
        health_status: t.health_status.as_str().parse().ok(),
        last_status: Some(t.last_status.as_str().into()),
        launch_type: t.launch_type.parse().ok(),
        memory: Some(t.memory.clone()),
        overrides: Some(t.overrides.clone().unwrap_or_else(|| {
            w::TaskOverride {
                container_overrides: Some(
                    t.containers
                        .iter()
                        .map(|c| w::ContainerOverride { name: Some(c.name.clone()), ..Default::default() })
                        .collect(),
                ),
                inference_accelerator_overrides: Some(vec![]),
                ..Default::default()
            }
        })),
        pull_started_at: t.pull_started_at,
        pull_stopped_at: t.pull_stopped_at,
        started_at: t.started_at,
        started_by: t.started_by.clone(),
        stop_code: t.stop_code.and_then(|c| c.as_str().parse().ok()),
        stopped_at: t.stopped_at,
        stopped_reason: t.stopped_reason.clone(),
        stopping_at: t.stopping_at,
        tags: Some(if with_tags { tags_shape(&t.tags) } else { tags_shape(&Tags::default()) }),
        capacity_provider_name: t.capacity_provider.clone(),
        platform_version: fargate.then(|| model::ecs::task::FARGATE_PLATFORM_VERSION.to_string()),
        platform_family: fargate.then(|| "Linux".to_string()),
        connectivity: fargate.then_some(w::Connectivity::Connected),
        connectivity_at: fargate.then_some(t.created_at),
        // Fargate's task storage: what the task definition asks for, else Fargate's 20 GiB.
        ephemeral_storage: fargate.then(|| {
            definition
                .and_then(|d| d.spec.doc.ephemeral_storage.clone())
                .unwrap_or(w::EphemeralStorage { size_in_gi_b: Some(20) })
        }),
        task_arn: Some(arn),
        task_definition_arn: Some(model::ecs::task_definition_arn(&t.scope, &t.family, t.revision).to_string()),
        version: Some(t.version),
        ..Default::default()
    }
}
