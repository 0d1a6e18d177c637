//! Policies and metadata of repositories and the registry: repository and registry
//! policies, resource tags, `DescribeRegistry`. (Lifecycle policies live in `lifecycle`.)
//!
//! Repository policies are enforced where other accounts reach a repository: the
//! registry's `/v2/` (`registry::TokenAuth`) and ECR operations with another account's
//! `registryId` (`control_plane::ecr::policies::check_repository_access`).

use axum::response::Response;

use control_plane::ecr::policies::TagError;
use control_plane::Caller;
use model::ecr::shapes as w;

use super::input;
use crate::ecs::Validate;
use crate::{ok, ApiError};

crate::ecs::validate_with_model!(
    w::SetRepositoryPolicyRequest,
    w::GetRepositoryPolicyRequest,
    w::DeleteRepositoryPolicyRequest,
    w::TagResourceRequest,
    w::UntagResourceRequest,
    w::ListTagsForResourceRequest,
    w::PutRegistryPolicyRequest,
);
// Requests without members have nothing to check.
crate::ecs::no_model_rules!(w::DescribeRegistryRequest, w::GetRegistryPolicyRequest, w::DeleteRegistryPolicyRequest);

/// Answers the operations of this module; `None` for any other.
pub(super) async fn dispatch(
    api: &crate::Api,
    caller: &Caller,
    operation: &str,
    body: &[u8],
) -> Option<Result<Response, ApiError>> {
    let answer = match operation {
        "SetRepositoryPolicy" => set_repository_policy(api, caller, body).await,
        "GetRepositoryPolicy" => get_repository_policy(api, caller, body),
        "DeleteRepositoryPolicy" => delete_repository_policy(api, caller, body).await,
        "TagResource" => tag_resource(api, caller, body).await,
        "UntagResource" => untag_resource(api, caller, body).await,
        "ListTagsForResource" => list_tags_for_resource(api, caller, body),
        "DescribeRegistry" => describe_registry(caller, body),
        "PutRegistryPolicy" => put_registry_policy(api, caller, body).await,
        "GetRegistryPolicy" => get_registry_policy(api, caller, body),
        "DeleteRegistryPolicy" => delete_registry_policy(api, caller, body).await,
        _ => return None,
    };
    Some(answer)
}

async fn set_repository_policy(api: &crate::Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::SetRepositoryPolicyRequest = input(body)?;
    let p = api
        .control
        .ecr()
        .set_repository_policy(
            caller,
            r.registry_id.as_deref(),
            r.repository_name.as_deref().unwrap_or_default(),
            r.policy_text.as_deref().unwrap_or_default(),
            r.force.unwrap_or(false),
        )
        .await?;
    Ok(ok(&w::SetRepositoryPolicyResponse {
        registry_id: Some(p.scope.account.to_string()),
        repository_name: Some(p.repository.to_string()),
        policy_text: Some(p.policy.text().to_string()),
    }))
}

fn get_repository_policy(api: &crate::Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::GetRepositoryPolicyRequest = input(body)?;
    let p = api.control.ecr().get_repository_policy(
        caller,
        r.registry_id.as_deref(),
        r.repository_name.as_deref().unwrap_or_default(),
    )?;
    Ok(ok(&w::GetRepositoryPolicyResponse {
        registry_id: Some(p.scope.account.to_string()),
        repository_name: Some(p.repository.to_string()),
        policy_text: Some(p.policy.text().to_string()),
    }))
}

async fn delete_repository_policy(api: &crate::Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::DeleteRepositoryPolicyRequest = input(body)?;
    let p = api
        .control
        .ecr()
        .delete_repository_policy(caller, r.registry_id.as_deref(), r.repository_name.as_deref().unwrap_or_default())
        .await?;
    Ok(ok(&w::DeleteRepositoryPolicyResponse {
        registry_id: Some(p.scope.account.to_string()),
        repository_name: Some(p.repository.to_string()),
        policy_text: Some(p.policy.text().to_string()),
    }))
}

/// ECR's codes for tagging failures.
pub(super) fn tag_error(e: TagError) -> ApiError {
    match e {
        TagError::InvalidTag(m) => ApiError::bad_request("InvalidTagParameterException", m),
        TagError::TooMany(m) => ApiError::bad_request("TooManyTagsException", m),
        TagError::Other(e) => e.into(),
    }
}

async fn tag_resource(api: &crate::Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::TagResourceRequest = input(body)?;
    let tags = r.tags.unwrap_or_default().into_iter().map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()));
    api.control
        .ecr()
        .tag_repository(caller, r.resource_arn.as_deref().unwrap_or_default(), tags.collect())
        .await
        .map_err(tag_error)?;
    Ok(ok(&w::TagResourceResponse {}))
}

async fn untag_resource(api: &crate::Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::UntagResourceRequest = input(body)?;
    api.control
        .ecr()
        .untag_repository(caller, r.resource_arn.as_deref().unwrap_or_default(), r.tag_keys.unwrap_or_default())
        .await
        .map_err(tag_error)?;
    Ok(ok(&w::UntagResourceResponse {}))
}

fn list_tags_for_resource(api: &crate::Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::ListTagsForResourceRequest = input(body)?;
    let tags = api.control.ecr().list_repository_tags(caller, r.resource_arn.as_deref().unwrap_or_default())?;
    let tags =
        tags.iter().map(|(k, v)| w::Tag { key: Some(k.to_string()), value: Some(v.to_string()) }).collect::<Vec<_>>();
    Ok(ok(&w::ListTagsForResourceResponse { tags: Some(tags) }))
}

/// Berth replicates nothing, so the registry's replication configuration has no rules.
fn describe_registry(caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let _: w::DescribeRegistryRequest = input(body)?;
    Ok(ok(&w::DescribeRegistryResponse {
        registry_id: Some(caller.scope.account.to_string()),
        replication_configuration: Some(w::ReplicationConfiguration { rules: Some(Vec::new()) }),
    }))
}

/// Registry policies are kept and returned, but grant nothing: Berth has neither
/// replication nor pull-through caches, the features they govern.
async fn put_registry_policy(api: &crate::Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::PutRegistryPolicyRequest = input(body)?;
    let p = api.control.ecr().put_registry_policy(caller, r.policy_text.as_deref().unwrap_or_default()).await?;
    Ok(ok(&w::PutRegistryPolicyResponse {
        registry_id: Some(p.scope.account.to_string()),
        policy_text: Some(p.policy.text().to_string()),
    }))
}

fn get_registry_policy(api: &crate::Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let _: w::GetRegistryPolicyRequest = input(body)?;
    let p = api.control.ecr().get_registry_policy(caller)?;
    Ok(ok(&w::GetRegistryPolicyResponse {
        registry_id: Some(p.scope.account.to_string()),
        policy_text: Some(p.policy.text().to_string()),
    }))
}

async fn delete_registry_policy(api: &crate::Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let _: w::DeleteRegistryPolicyRequest = input(body)?;
    let p = api.control.ecr().delete_registry_policy(caller).await?;
    Ok(ok(&w::DeleteRegistryPolicyResponse {
        registry_id: Some(p.scope.account.to_string()),
        policy_text: Some(p.policy.text().to_string()),
    }))
}
