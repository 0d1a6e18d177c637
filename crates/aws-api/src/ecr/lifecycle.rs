//! Lifecycle policies: `PutLifecyclePolicy`, `GetLifecyclePolicy`,
//! `DeleteLifecyclePolicy`, `StartLifecyclePolicyPreview`, `GetLifecyclePolicyPreview`,
//! and their enforcement on demand. Enforcement itself, on demand and on a schedule, is
//! `control_plane::ecr::registry::enforcement`.
//!
//! On demand is a Berth extension of the ECR API: the operation
//! [`RUN_OPERATION`] (`X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.BerthRunLifecyclePolicy`,
//! SigV4-signed for service `ecr` like any ECR call, body `{"repositoryName": "..."}` or
//! `{}` for every repository of the caller's account and region) enforces the policies
//! now and answers what it expired. `berth ecr run-lifecycle` sends it.
//!
//! Enforcement and `GetLifecyclePolicyPreview` share the control plane's one computation
//! of what a policy expires (`control_plane::ecr::lifecycle::expiring`), so a preview shows
//! exactly what enforcement deletes from the same images.

use axum::response::Response;
use serde::{Deserialize, Serialize};

use control_plane::ecr::registry::{LifecycleFailure, LifecycleRun};
use control_plane::ecr::{check_registry_id, ImageQuery};
use control_plane::Caller;
use model::ecr::shapes as w;
use model::ecr::stored::{Expiring, PreviewStatus};
use model::Timestamp;

use super::input;
use crate::ecs::{no_model_rules, validate_with_model, Validate};
use crate::{ok, Api, ApiError};

/// The Berth-specific ECR operation that enforces lifecycle policies now.
pub const RUN_OPERATION: &str = "BerthRunLifecyclePolicy";

validate_with_model!(
    w::PutLifecyclePolicyRequest,
    w::GetLifecyclePolicyRequest,
    w::DeleteLifecyclePolicyRequest,
    w::StartLifecyclePolicyPreviewRequest,
    w::GetLifecyclePolicyPreviewRequest,
);
no_model_rules!(RunRequest);

/// The body of [`RUN_OPERATION`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RunRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_id: Option<String>,
    /// One repository, or every repository with a policy when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_name: Option<String>,
}

/// The answer of [`RUN_OPERATION`]: per repository with a policy, what was expired.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunResponse {
    pub repositories: Vec<RepositoryRun>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryRun {
    pub repository_name: String,
    /// The images deleted, oldest first.
    pub expired_images: Vec<ExpiredImage>,
    /// Why the run of this repository stopped early, if it did; the log has the detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpiredImage {
    pub image_digest: String,
    pub image_tags: Vec<String>,
    pub image_pushed_at: Timestamp,
    pub applied_rule_priority: u32,
}

/// Answers the operations of this module; `None` for any other.
pub(super) async fn dispatch(
    api: &Api,
    caller: &Caller,
    operation: &str,
    body: &[u8],
) -> Option<Result<Response, ApiError>> {
    let result = match operation {
        "PutLifecyclePolicy" => put(api, caller, body).await,
        "GetLifecyclePolicy" => get(api, caller, body),
        "DeleteLifecyclePolicy" => delete(api, caller, body).await,
        "StartLifecyclePolicyPreview" => start_preview(api, caller, body).await,
        "GetLifecyclePolicyPreview" => get_preview(api, caller, body),
        RUN_OPERATION => run_now(api, caller, body).await,
        _ => return None,
    };
    Some(result)
}

async fn put(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::PutLifecyclePolicyRequest = input(body)?;
    check_registry_id(caller, r.registry_id.as_deref())?;
    let name = r.repository_name.unwrap_or_default();
    let stored =
        api.control.ecr().put_lifecycle_policy(caller, &name, r.lifecycle_policy_text.as_deref().unwrap_or("")).await?;
    Ok(ok(&w::PutLifecyclePolicyResponse {
        registry_id: Some(stored.scope.account.to_string()),
        repository_name: Some(stored.repository.to_string()),
        lifecycle_policy_text: Some(stored.policy.text().to_string()),
    }))
}

fn get(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::GetLifecyclePolicyRequest = input(body)?;
    check_registry_id(caller, r.registry_id.as_deref())?;
    let stored = api.control.ecr().lifecycle_policy(caller, r.repository_name.as_deref().unwrap_or_default())?;
    Ok(ok(&w::GetLifecyclePolicyResponse {
        registry_id: Some(stored.scope.account.to_string()),
        repository_name: Some(stored.repository.to_string()),
        lifecycle_policy_text: Some(stored.policy.text().to_string()),
        last_evaluated_at: stored.last_evaluated_at,
    }))
}

async fn delete(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::DeleteLifecyclePolicyRequest = input(body)?;
    check_registry_id(caller, r.registry_id.as_deref())?;
    let stored =
        api.control.ecr().delete_lifecycle_policy(caller, r.repository_name.as_deref().unwrap_or_default()).await?;
    Ok(ok(&w::DeleteLifecyclePolicyResponse {
        registry_id: Some(stored.scope.account.to_string()),
        repository_name: Some(stored.repository.to_string()),
        lifecycle_policy_text: Some(stored.policy.text().to_string()),
        last_evaluated_at: stored.last_evaluated_at,
    }))
}

async fn start_preview(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::StartLifecyclePolicyPreviewRequest = input(body)?;
    let name = r.repository_name.unwrap_or_default();
    let preview = control_plane::ecr::lifecycle::start_preview(
        &api.control,
        caller,
        r.registry_id.as_deref(),
        &name,
        r.lifecycle_policy_text.as_deref(),
    )
    .await?;
    Ok(ok(&w::StartLifecyclePolicyPreviewResponse {
        registry_id: Some(preview.scope.account.to_string()),
        repository_name: Some(preview.repository.to_string()),
        lifecycle_policy_text: Some(preview.policy.text().to_string()),
        status: Some(w::LifecyclePolicyPreviewStatus::InProgress),
    }))
}

fn get_preview(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::GetLifecyclePolicyPreviewRequest = input(body)?;
    let query = ImageQuery {
        registry_id: r.registry_id,
        repository: r.repository_name.unwrap_or_default(),
        ids: super::selectors(r.image_ids),
        tag_status: r.filter.and_then(|f| f.tag_status).map(super::tag_status),
        max_results: r.max_results,
        next_token: r.next_token,
    };
    let page = api.control.ecr().lifecycle_preview_page(caller, query)?;
    let preview = &page.preview;
    Ok(ok(&w::GetLifecyclePolicyPreviewResponse {
        registry_id: Some(preview.scope.account.to_string()),
        repository_name: Some(preview.repository.to_string()),
        lifecycle_policy_text: Some(preview.policy.text().to_string()),
        status: Some(status_shape(page.status)),
        next_token: page.next_token,
        preview_results: Some(page.results.iter().map(result_shape).collect()),
        summary: page.total.map(|total| w::LifecyclePolicyPreviewSummary {
            expiring_image_total_count: Some(i32::try_from(total).unwrap_or(i32::MAX)),
            transitioning_image_total_counts: None,
        }),
    }))
}

fn status_shape(s: PreviewStatus) -> w::LifecyclePolicyPreviewStatus {
    match s {
        PreviewStatus::InProgress => w::LifecyclePolicyPreviewStatus::InProgress,
        PreviewStatus::Complete => w::LifecyclePolicyPreviewStatus::Complete,
        PreviewStatus::Expired => w::LifecyclePolicyPreviewStatus::Expired,
        PreviewStatus::Failed => w::LifecyclePolicyPreviewStatus::Failed,
    }
}

fn result_shape(e: &Expiring) -> w::LifecyclePolicyPreviewResult {
    w::LifecyclePolicyPreviewResult {
        image_tags: (!e.tags.is_empty()).then(|| e.tags.clone()),
        image_digest: Some(e.digest.clone()),
        image_pushed_at: Some(e.pushed_at),
        action: Some(w::LifecyclePolicyRuleAction {
            type_: Some(w::ImageActionType::Expire),
            target_storage_class: None,
        }),
        applied_rule_priority: Some(i32::try_from(e.rule_priority).unwrap_or(i32::MAX)),
        // Berth keeps every image in the standard storage class.
        storage_class: Some(w::LifecyclePolicyStorageClass::Standard),
    }
}

async fn run_now(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: RunRequest = input(body)?;
    let runs = api
        .control
        .ecr()
        .run_lifecycle_policies(&api.registry()?.meta, caller, r.registry_id.as_deref(), r.repository_name.as_deref())
        .await?;
    Ok(ok(&RunResponse { repositories: runs.into_iter().map(repository_run).collect() }))
}

/// The answer for one repository of [`RUN_OPERATION`].
fn repository_run(run: LifecycleRun) -> RepositoryRun {
    let failure = run.failure.map(|f| match f {
        LifecycleFailure::Evaluation => {
            "The lifecycle policy could not be evaluated; the server log has the detail.".to_string()
        }
        LifecycleFailure::Deletion(e) => {
            format!("Deleting the expired images failed: {}", ApiError::from(e).message)
        }
    });
    RepositoryRun {
        repository_name: run.repository.to_string(),
        expired_images: run.expired.into_iter().map(expired_image).collect(),
        failure,
    }
}

fn expired_image(e: Expiring) -> ExpiredImage {
    ExpiredImage {
        image_digest: e.digest,
        image_tags: e.tags,
        image_pushed_at: e.pushed_at,
        applied_rule_priority: e.rule_priority,
    }
}
