//! The ECS API (`AmazonEC2ContainerServiceV20141113.*`): decode, validate, call the
//! control plane, and render its results as ECS's wire shapes.

mod services;
pub(crate) mod tasks;

use axum::response::Response;

use control_plane::ecs::clusters::{cluster_counts, ClusterCounts, ClusterUpdate, NewCluster};
use control_plane::ecs::settings::Setting;
use control_plane::ecs::Failure;
use control_plane::Caller;
use control_plane::Page;
use model::ecs::shapes::{self as w, ClusterField, TaskDefinitionField};
use model::ecs::{Cluster, TaskDefinition};
use model::tags::Tags;
use model::Violation;

use crate::{decode, ok, Api, ApiError};

pub const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";

/// Default and largest page for most ECS list operations.
const PAGE_LIMIT: i32 = 100;
/// `ListAccountSettings` pages hold at most ten settings.
const SETTINGS_PAGE_LIMIT: i32 = 10;

/// Implemented by every input shape: the model's own rules (required members, bounds).
pub(crate) trait Validate {
    fn violations(&self) -> Vec<Violation>;
}

macro_rules! validate_with_model {
    ($($t:ty),* $(,)?) => {$(
        impl Validate for $t {
            fn violations(&self) -> Vec<model::Violation> {
                let mut v = Vec::new();
                self.validate_at("", &mut v);
                v
            }
        }
    )*};
}
macro_rules! no_model_rules {
    ($($t:ty),* $(,)?) => {$(
        impl Validate for $t {
            fn violations(&self) -> Vec<model::Violation> { Vec::new() }
        }
    )*};
}
pub(crate) use {no_model_rules, validate_with_model};

validate_with_model!(
    w::CreateClusterRequest,
    w::UpdateClusterRequest,
    w::UpdateClusterSettingsRequest,
    w::PutClusterCapacityProvidersRequest,
    w::DeleteClusterRequest,
    w::RegisterTaskDefinitionRequest,
    w::DescribeTaskDefinitionRequest,
    w::DeregisterTaskDefinitionRequest,
    w::DeleteTaskDefinitionsRequest,
    w::TagResourceRequest,
    w::UntagResourceRequest,
    w::ListTagsForResourceRequest,
    w::PutAccountSettingRequest,
    w::PutAccountSettingDefaultRequest,
    w::DeleteAccountSettingRequest,
    w::PutAttributesRequest,
    w::DeleteAttributesRequest,
    w::ListAttributesRequest,
);
no_model_rules!(
    w::DescribeClustersRequest,
    w::ListClustersRequest,
    w::ListTaskDefinitionsRequest,
    w::ListTaskDefinitionFamiliesRequest,
    w::ListAccountSettingsRequest,
);

/// How a JSON service words the refusal of an input that breaks the model's rules (a
/// value outside a member's enum, a length, a range): its code and its sentence, naming
/// the member; a `SerializationException` is kept for what is not JSON of the input's
/// shape (wrong types, unknown members).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnumWording {
    /// ECS: `InvalidParameterException`, `include should be one of [ATTACHMENTS,SETTINGS,STATISTICS,TAGS]`.
    Ecs,
    /// `InvalidParameterException` with the AWS model validator's sentence, as ECR, CloudWatch
    /// Logs and Secrets Manager answer it.
    Model,
    /// `ValidationException` with the model validator's sentence, as SSM and EventBridge
    /// answer it.
    ModelValidation,
}

impl EnumWording {
    fn refusal(self, message: impl Into<String>) -> ApiError {
        match self {
            EnumWording::Ecs | EnumWording::Model => ApiError::invalid_parameter(message),
            EnumWording::ModelValidation => ApiError::bad_request("ValidationException", message),
        }
    }
}

/// Decodes an ECS input shape and applies the model's rules to it.
pub(crate) fn input<T: serde::de::DeserializeOwned + Validate>(body: &[u8]) -> Result<T, ApiError> {
    input_worded(body, EnumWording::Ecs)
}

/// Decodes an input shape, answering a wrong enum value as the service does, and applies
/// the model's rules to it.
pub(crate) fn input_worded<T: serde::de::DeserializeOwned + Validate>(
    body: &[u8],
    wording: EnumWording,
) -> Result<T, ApiError> {
    let value: T = decode(body).map_err(|e| match enum_violation::<T>(body) {
        Some(v) => wording.refusal(v.message(wording)),
        None => e,
    })?;
    let violations = value.violations();
    match violations.as_slice() {
        [] => Ok(value),
        [one] => Err(wording.refusal(one.to_string())),
        [first, rest @ ..] => Err(wording.refusal(format!("{first} (and {} more problems)", rest.len()))),
    }
}

/// A value outside a member's enum, found while decoding.
#[derive(Debug, PartialEq, Eq)]
struct EnumViolation {
    /// Where the member is, as `include[0]` or `containerDefinitions[0].logConfiguration.logDriver`.
    path: String,
    value: String,
    allowed: Vec<String>,
}

impl EnumViolation {
    fn message(&self, wording: EnumWording) -> String {
        match wording {
            EnumWording::Ecs => format!("{} should be one of [{}]", self.path, self.allowed.join(",")),
            EnumWording::Model | EnumWording::ModelValidation => format!(
                "1 validation error detected: Value '{}' at '{}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                self.value,
                self.path,
                self.allowed.join(", ")
            ),
        }
    }
}

/// Decodes `body` again, only after decoding failed, to tell a wrong enum value from other
/// faults. The generated shapes refuse one with the sentence `invalid value '<value>' for
/// <Enum>; valid values: A, B` (`tools/gen_shapes.py`); serde hands it on as text, so the
/// text is read back here, and a unit test pins the two together.
fn enum_violation<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<EnumViolation> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    let de = &mut serde_json::Deserializer::from_slice(body);
    let err = serde_path_to_error::deserialize::<_, T>(de).err()?;
    let path = err.path().to_string();
    let inner = err.into_inner();
    let text = inner.to_string();
    let position = format!(" at line {} column {}", inner.line(), inner.column());
    let text = text.strip_suffix(&position).unwrap_or(&text);
    let (head, allowed) = text.strip_prefix("invalid value '")?.rsplit_once("; valid values: ")?;
    let (value, _enum) = head.rsplit_once("' for ")?;
    let allowed = allowed.split(", ").map(str::to_string).collect();
    Some(EnumViolation { path, value: value.to_string(), allowed })
}

pub async fn dispatch(
    api: &Api,
    caller: &Caller,
    operation: &str,
    body: &[u8],
    endpoint: &str,
) -> Result<Response, ApiError> {
    let cp = &api.control;
    if let Some(r) = tasks::dispatch(cp, caller, operation, body, endpoint).await {
        return r;
    }
    if let Some(r) = services::dispatch(cp, caller, operation, body).await {
        return r;
    }
    match operation {
        "CreateCluster" => {
            let r: w::CreateClusterRequest = input(body)?;
            let cluster = cp
                .ecs()
                .create_cluster(
                    caller,
                    NewCluster {
                        name: r.cluster_name,
                        tags: tag_pairs(r.tags),
                        settings: r.settings.unwrap_or_default(),
                        configuration: r.configuration,
                        capacity_providers: r.capacity_providers.unwrap_or_default(),
                        default_capacity_provider_strategy: r.default_capacity_provider_strategy.unwrap_or_default(),
                        service_connect_namespace: r.service_connect_defaults.and_then(|d| d.namespace),
                    },
                )
                .await?;
            Ok(ok(&w::CreateClusterResponse { cluster: Some(cluster_shape(cp, &cluster, ALL_CLUSTER_FIELDS)) }))
        }
        "DescribeClusters" => {
            let r: w::DescribeClustersRequest = input(body)?;
            let include = r.include.unwrap_or_default();
            let (clusters, failures) = cp.ecs().describe_clusters(caller, &r.clusters.unwrap_or_default())?;
            Ok(ok(&w::DescribeClustersResponse {
                clusters: Some(clusters.iter().map(|c| cluster_shape(cp, c, &include)).collect()),
                failures: Some(failures.into_iter().map(failure_shape).collect()),
            }))
        }
        "ListClusters" => {
            let r: w::ListClustersRequest = input(body)?;
            let page = Page::parse(r.max_results, r.next_token.as_deref(), PAGE_LIMIT)?;
            let (arns, next_token) = cp.ecs().list_clusters(caller, &page);
            Ok(ok(&w::ListClustersResponse { cluster_arns: Some(arns), next_token }))
        }
        "UpdateCluster" => {
            let r: w::UpdateClusterRequest = input(body)?;
            let update = ClusterUpdate {
                settings: r.settings,
                configuration: r.configuration,
                service_connect_namespace: r.service_connect_defaults.and_then(|d| d.namespace),
            };
            let cluster = cp.ecs().update_cluster(caller, r.cluster.unwrap_or_default(), update).await?;
            Ok(ok(&w::UpdateClusterResponse { cluster: Some(cluster_shape(cp, &cluster, ALL_CLUSTER_FIELDS)) }))
        }
        "UpdateClusterSettings" => {
            let r: w::UpdateClusterSettingsRequest = input(body)?;
            let cluster = cp
                .ecs()
                .update_cluster_settings(caller, r.cluster.unwrap_or_default(), r.settings.unwrap_or_default())
                .await?;
            Ok(ok(&w::UpdateClusterSettingsResponse { cluster: Some(cluster_shape(cp, &cluster, ALL_CLUSTER_FIELDS)) }))
        }
        "PutClusterCapacityProviders" => {
            let r: w::PutClusterCapacityProvidersRequest = input(body)?;
            let cluster = cp
                .ecs()
                .put_cluster_capacity_providers(
                    caller,
                    r.cluster.unwrap_or_default(),
                    r.capacity_providers.unwrap_or_default(),
                    r.default_capacity_provider_strategy.unwrap_or_default(),
                )
                .await?;
            Ok(ok(&w::PutClusterCapacityProvidersResponse {
                cluster: Some(cluster_shape(cp, &cluster, ALL_CLUSTER_FIELDS)),
            }))
        }
        "DeleteCluster" => {
            let r: w::DeleteClusterRequest = input(body)?;
            let cluster = cp.ecs().delete_cluster(caller, r.cluster.unwrap_or_default()).await?;
            Ok(ok(&w::DeleteClusterResponse { cluster: Some(cluster_shape(cp, &cluster, ALL_CLUSTER_FIELDS)) }))
        }
        "RegisterTaskDefinition" => {
            let r: w::RegisterTaskDefinitionRequest = input(body)?;
            let td = cp.ecs().register_task_definition(caller, model::ecs::NewTaskDefinition::parse(r)?).await?;
            Ok(ok(&w::RegisterTaskDefinitionResponse {
                task_definition: Some(task_definition_shape(&td)),
                tags: Some(tags_shape(&td.tags)),
            }))
        }
        "DescribeTaskDefinition" => {
            let r: w::DescribeTaskDefinitionRequest = input(body)?;
            let td = cp.ecs().describe_task_definition(caller, r.task_definition.as_deref().unwrap_or_default())?;
            let with_tags = r.include.unwrap_or_default().contains(&TaskDefinitionField::Tags);
            Ok(ok(&w::DescribeTaskDefinitionResponse {
                task_definition: Some(task_definition_shape(&td)),
                tags: with_tags.then(|| tags_shape(&td.tags)),
            }))
        }
        "ListTaskDefinitions" => {
            let r: w::ListTaskDefinitionsRequest = input(body)?;
            let page = Page::parse(r.max_results, r.next_token.as_deref(), PAGE_LIMIT)?;
            let status = r.status.unwrap_or(w::TaskDefinitionStatus::Active);
            let desc = r.sort == Some(w::SortOrder::Desc);
            let (arns, next_token) =
                cp.ecs().list_task_definitions(caller, r.family_prefix.as_deref(), status, desc, &page)?;
            Ok(ok(&w::ListTaskDefinitionsResponse { task_definition_arns: Some(arns), next_token }))
        }
        "ListTaskDefinitionFamilies" => {
            let r: w::ListTaskDefinitionFamiliesRequest = input(body)?;
            let page = Page::parse(r.max_results, r.next_token.as_deref(), PAGE_LIMIT)?;
            let status = r.status.unwrap_or(w::TaskDefinitionFamilyStatus::Active);
            let (families, next_token) =
                cp.ecs().list_task_definition_families(caller, r.family_prefix.as_deref(), status, &page);
            Ok(ok(&w::ListTaskDefinitionFamiliesResponse { families: Some(families), next_token }))
        }
        "DeregisterTaskDefinition" => {
            let r: w::DeregisterTaskDefinitionRequest = input(body)?;
            let td = cp.ecs().deregister_task_definition(caller, r.task_definition.unwrap_or_default()).await?;
            Ok(ok(&w::DeregisterTaskDefinitionResponse { task_definition: Some(task_definition_shape(&td)) }))
        }
        "DeleteTaskDefinitions" => {
            let r: w::DeleteTaskDefinitionsRequest = input(body)?;
            let (done, failures) =
                cp.ecs().delete_task_definitions(caller, r.task_definitions.unwrap_or_default()).await?;
            Ok(ok(&w::DeleteTaskDefinitionsResponse {
                task_definitions: Some(done.iter().map(task_definition_shape).collect()),
                failures: Some(failures.into_iter().map(failure_shape).collect()),
            }))
        }
        "TagResource" => {
            let r: w::TagResourceRequest = input(body)?;
            cp.ecs().tag_resource(caller, r.resource_arn.unwrap_or_default(), tag_pairs(r.tags)).await?;
            Ok(ok(&w::TagResourceResponse {}))
        }
        "UntagResource" => {
            let r: w::UntagResourceRequest = input(body)?;
            cp.ecs().untag_resource(caller, r.resource_arn.unwrap_or_default(), r.tag_keys.unwrap_or_default()).await?;
            Ok(ok(&w::UntagResourceResponse {}))
        }
        "ListTagsForResource" => {
            let r: w::ListTagsForResourceRequest = input(body)?;
            let tags = cp.ecs().list_tags_for_resource(caller, r.resource_arn.as_deref().unwrap_or_default())?;
            Ok(ok(&w::ListTagsForResourceResponse { tags: Some(tags_shape(&tags)) }))
        }
        "PutAccountSetting" => {
            let r: w::PutAccountSettingRequest = input(body)?;
            let name = r.name.ok_or_else(|| ApiError::invalid_parameter("name is required"))?;
            let s = cp.ecs().put_account_setting(caller, name, r.value.unwrap_or_default(), r.principal_arn).await?;
            Ok(ok(&w::PutAccountSettingResponse { setting: Some(setting_shape(s)) }))
        }
        "PutAccountSettingDefault" => {
            let r: w::PutAccountSettingDefaultRequest = input(body)?;
            let name = r.name.ok_or_else(|| ApiError::invalid_parameter("name is required"))?;
            let s = cp.ecs().put_account_setting_default(caller, name, r.value.unwrap_or_default()).await?;
            Ok(ok(&w::PutAccountSettingDefaultResponse { setting: Some(setting_shape(s)) }))
        }
        "DeleteAccountSetting" => {
            let r: w::DeleteAccountSettingRequest = input(body)?;
            let name = r.name.ok_or_else(|| ApiError::invalid_parameter("name is required"))?;
            let s = cp.ecs().delete_account_setting(caller, name, r.principal_arn).await?;
            Ok(ok(&w::DeleteAccountSettingResponse { setting: Some(setting_shape(s)) }))
        }
        "ListAccountSettings" => {
            let r: w::ListAccountSettingsRequest = input(body)?;
            let page = Page::parse(r.max_results, r.next_token.as_deref(), SETTINGS_PAGE_LIMIT)?;
            let (settings, next_token) = cp.ecs().list_account_settings(
                caller,
                r.name,
                r.value.as_deref(),
                r.principal_arn.as_deref(),
                r.effective_settings.unwrap_or(false),
                &page,
            )?;
            Ok(ok(&w::ListAccountSettingsResponse {
                settings: Some(settings.into_iter().map(setting_shape).collect()),
                next_token,
            }))
        }
        "PutAttributes" => {
            let r: w::PutAttributesRequest = input(body)?;
            let attrs = cp.ecs().put_attributes(caller, r.cluster, attributes_in(r.attributes)).await?;
            Ok(ok(&w::PutAttributesResponse { attributes: Some(attrs.into_iter().map(attribute_shape).collect()) }))
        }
        "DeleteAttributes" => {
            let r: w::DeleteAttributesRequest = input(body)?;
            let attrs = cp.ecs().delete_attributes(caller, r.cluster, attributes_in(r.attributes)).await?;
            Ok(ok(&w::DeleteAttributesResponse { attributes: Some(attrs.into_iter().map(attribute_shape).collect()) }))
        }
        "ListAttributes" => {
            let r: w::ListAttributesRequest = input(body)?;
            let page = Page::parse(r.max_results, r.next_token.as_deref(), PAGE_LIMIT)?;
            let target_type = r.target_type.map(|t| t.as_str()).unwrap_or_default();
            let (attrs, next_token) = cp.ecs().list_attributes(
                caller,
                r.cluster.as_deref(),
                target_type,
                r.attribute_name.as_deref(),
                r.attribute_value.as_deref(),
                &page,
            )?;
            Ok(ok(&w::ListAttributesResponse {
                attributes: Some(attrs.into_iter().map(attribute_shape).collect()),
                next_token,
            }))
        }
        op if w::OPERATIONS.contains(&op) => Err(ApiError::bad_request(
            "UnsupportedFeatureException",
            format!("Berth does not implement the ECS operation {op} yet."),
        )),
        op => Err(ApiError::bad_request("UnknownOperationException", format!("ECS has no operation named '{op}'."))),
    }
}

const ALL_CLUSTER_FIELDS: &[ClusterField] = ClusterField::ALL;

pub(crate) fn tag_pairs(tags: Option<Vec<w::Tag>>) -> Vec<(String, String)> {
    tags.unwrap_or_default().into_iter().map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default())).collect()
}

pub(crate) fn tags_shape(tags: &Tags) -> Vec<w::Tag> {
    tags.iter().map(|(k, v)| w::Tag { key: Some(k.into()), value: Some(v.into()) }).collect()
}

pub(crate) fn failure_shape(f: Failure) -> w::Failure {
    w::Failure { arn: Some(f.arn), reason: Some(f.reason), detail: f.detail }
}

fn setting_shape(s: Setting) -> w::Setting {
    w::Setting {
        name: Some(s.name),
        value: Some(s.value),
        principal_arn: Some(s.principal_arn),
        type_: Some(if s.user_set { w::SettingType::User } else { w::SettingType::AwsManaged }),
    }
}

fn attributes_in(attrs: Option<Vec<w::Attribute>>) -> Vec<model::ecs::Attribute> {
    attrs
        .unwrap_or_default()
        .into_iter()
        .map(|a| model::ecs::Attribute {
            name: a.name.unwrap_or_default(),
            value: a.value,
            target_type: a.target_type.map_or("container-instance", |t| t.as_str()).to_string(),
            target_id: a.target_id.unwrap_or_default(),
        })
        .collect()
}

fn attribute_shape(a: model::ecs::Attribute) -> w::Attribute {
    w::Attribute {
        name: Some(a.name),
        value: a.value,
        target_type: a.target_type.parse().ok(),
        target_id: Some(a.target_id),
    }
}

/// The statistics ECS reports for a cluster, by where tasks run.
fn statistics(n: &ClusterCounts) -> Vec<w::KeyValuePair> {
    [
        ("runningEC2TasksCount", n.running_tasks.ec2),
        ("runningFargateTasksCount", n.running_tasks.fargate),
        ("pendingEC2TasksCount", n.pending_tasks.ec2),
        ("pendingFargateTasksCount", n.pending_tasks.fargate),
        ("activeEC2ServiceCount", n.active_services.ec2),
        ("activeFargateServiceCount", n.active_services.fargate),
        ("drainingEC2ServiceCount", n.draining_services.ec2),
        ("drainingFargateServiceCount", n.draining_services.fargate),
    ]
    .into_iter()
    .map(|(k, v)| w::KeyValuePair { name: Some(k.into()), value: Some(v.to_string()) })
    .collect()
}

fn cluster_shape(cp: &control_plane::ControlPlane, c: &Cluster, include: &[ClusterField]) -> w::Cluster {
    let has = |f: ClusterField| include.contains(&f);
    let n = cluster_counts(&cp.view(), c);
    w::Cluster {
        cluster_arn: Some(c.arn().to_string()),
        cluster_name: Some(c.name.to_string()),
        status: Some(c.status.as_str().into()),
        registered_container_instances_count: Some(n.registered_instances as i32),
        running_tasks_count: Some(n.running_tasks.total() as i32),
        pending_tasks_count: Some(n.pending_tasks.total() as i32),
        active_services_count: Some(n.active_services.total() as i32),
        statistics: Some(if has(ClusterField::Statistics) { statistics(&n) } else { Vec::new() }),
        tags: Some(if has(ClusterField::Tags) { tags_shape(&c.tags) } else { Vec::new() }),
        settings: has(ClusterField::Settings).then(|| c.settings.clone()),
        configuration: if has(ClusterField::Configurations) { c.configuration.clone() } else { None },
        capacity_providers: Some(c.capacity_providers.clone()),
        default_capacity_provider_strategy: Some(c.default_capacity_provider_strategy.clone()),
        attachments: has(ClusterField::Attachments).then(Vec::new),
        attachments_status: None,
        service_connect_defaults: c
            .service_connect_namespace
            .clone()
            .map(|ns| w::ClusterServiceConnectDefaults { namespace: Some(ns) }),
    }
}

fn task_definition_shape(td: &TaskDefinition) -> w::TaskDefinition {
    let d = td.spec.doc.clone();
    w::TaskDefinition {
        task_definition_arn: Some(td.arn().to_string()),
        container_definitions: d.container_definitions,
        family: Some(td.family.to_string()),
        task_role_arn: d.task_role_arn,
        execution_role_arn: d.execution_role_arn,
        network_mode: d.network_mode,
        revision: Some(td.revision as i32),
        volumes: Some(d.volumes.unwrap_or_default()),
        status: Some(td.status),
        requires_attributes: Some(
            td.spec
                .requires_attributes
                .iter()
                .map(|n| w::Attribute { name: Some(n.clone()), ..Default::default() })
                .collect(),
        ),
        placement_constraints: Some(d.placement_constraints.unwrap_or_default()),
        compatibilities: Some(td.spec.compatibilities.clone()),
        runtime_platform: d.runtime_platform,
        requires_compatibilities: d.requires_compatibilities,
        cpu: d.cpu,
        memory: d.memory,
        inference_accelerators: d.inference_accelerators,
        pid_mode: d.pid_mode,
        ipc_mode: d.ipc_mode,
        proxy_configuration: d.proxy_configuration,
        registered_at: Some(td.registered_at),
        deregistered_at: td.deregistered_at,
        delete_requested_at: td.delete_requested_at,
        registered_by: Some(td.registered_by.clone()),
        ephemeral_storage: d.ephemeral_storage,
        enable_fault_injection: d.enable_fault_injection,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused<T: serde::de::DeserializeOwned + Validate + std::fmt::Debug>(
        body: &str,
        wording: EnumWording,
    ) -> ApiError {
        input_worded::<T>(body.as_bytes(), wording).unwrap_err()
    }

    #[test]
    fn a_wrong_enum_value_is_an_invalid_parameter_naming_the_member() {
        let e = refused::<w::ListTasksRequest>(r#"{"desiredStatus": "DONE"}"#, EnumWording::Ecs);
        assert_eq!(e.code, "InvalidParameterException");
        assert_eq!(e.message, "desiredStatus should be one of [RUNNING,PENDING,STOPPED]");

        let e = refused::<w::DescribeClustersRequest>(r#"{"include": ["TAGS", "NOPE"]}"#, EnumWording::Ecs);
        assert_eq!(e.code, "InvalidParameterException");
        assert!(e.message.starts_with("include[1] should be one of [ATTACHMENTS,"), "{}", e.message);

        let td = r#"{"family": "f", "containerDefinitions": [{"name": "a", "image": "i",
            "logConfiguration": {"logDriver": "carrier-pigeon"}}]}"#;
        let e = refused::<w::RegisterTaskDefinitionRequest>(td, EnumWording::Ecs);
        assert_eq!(e.code, "InvalidParameterException");
        assert!(e.message.starts_with("containerDefinitions[0].logConfiguration.logDriver should be one of ["));

        let e = refused::<model::ecr::shapes::PutImageTagMutabilityRequest>(
            r#"{"repositoryName": "r", "imageTagMutability": "SOMETIMES"}"#,
            EnumWording::Model,
        );
        assert_eq!(e.code, "InvalidParameterException");
        assert!(
            e.message.starts_with(
                "1 validation error detected: Value 'SOMETIMES' at 'imageTagMutability' failed to satisfy constraint: Member must satisfy enum value set: [MUTABLE, IMMUTABLE"
            ),
            "{}",
            e.message
        );
    }

    #[test]
    fn other_decoding_faults_stay_serialization_exceptions() {
        for body in [r#"{"desiredStatus": 5}"#, r#"{"desiredStatus": "RUNNING", "bogus": 1}"#, "{", "[1, 2]"] {
            let e = refused::<w::ListTasksRequest>(body, EnumWording::Ecs);
            assert_eq!(e.code, "SerializationException", "{body}: {}", e.message);
        }
        // A value that only looks like the generated sentence is still just a wrong value.
        let e = refused::<w::ListTasksRequest>(r#"{"desiredStatus": "x' for Y; valid values: A"}"#, EnumWording::Ecs);
        assert_eq!(e.message, "desiredStatus should be one of [RUNNING,PENDING,STOPPED]");
    }
}
