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

use control_plane::ecr::check_registry_id;
use control_plane::ecr::registry::{LifecycleFailure, LifecycleRun};
use control_plane::Caller;
use control_plane::Page;
use model::ecr::shapes as w;
use model::ecr::stored::{Expiring, PreviewStatus};
use model::Timestamp;

use crate::ecs::{input, no_model_rules, validate_with_model, Validate};
use crate::{ok, Api, ApiError};

/// The Berth-specific ECR operation that enforces lifecycle policies now.
pub const RUN_OPERATION: &str = "BerthRunLifecyclePolicy";

/// The largest page of `GetLifecyclePolicyPreview`, as in ECR.
const PREVIEW_PAGE_LIMIT: i32 = 100;

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
    check_registry_id(caller, r.registry_id.as_deref())?;
    let name = r.repository_name.unwrap_or_default();
    let preview = api.control.ecr().start_lifecycle_preview(caller, &name, r.lifecycle_policy_text.as_deref()).await?;
    // The preview is computed after it is acknowledged, as in ECR, where it runs in the
    // background; callers poll GetLifecyclePolicyPreview until it is COMPLETE.
    let control = api.control.clone();
    let (scope, repo) = (preview.scope.clone(), preview.repository.clone());
    tokio::spawn(async move {
        if let Err(e) = control.ecr().complete_lifecycle_preview(scope.clone(), repo.clone()).await {
            tracing::error!(error = %e, repository = %repo, "a lifecycle policy preview failed");
            let reason = "Berth could not compute the preview; start it again. The server log has the detail.";
            if let Err(e) = control.ecr().fail_lifecycle_preview(scope, repo.clone(), reason.into()).await {
                tracing::error!(error = %e, repository = %repo, "recording a failed lifecycle policy preview failed");
            }
        }
    });
    Ok(ok(&w::StartLifecyclePolicyPreviewResponse {
        registry_id: Some(preview.scope.account.to_string()),
        repository_name: Some(preview.repository.to_string()),
        lifecycle_policy_text: Some(preview.policy.text().to_string()),
        status: Some(w::LifecyclePolicyPreviewStatus::InProgress),
    }))
}

fn get_preview(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::GetLifecyclePolicyPreviewRequest = input(body)?;
    check_registry_id(caller, r.registry_id.as_deref())?;
    let ids = r.image_ids.unwrap_or_default();
    if !ids.is_empty() && (r.max_results.is_some() || r.next_token.is_some()) {
        return Err(ApiError::invalid_parameter("imageIds cannot be combined with maxResults or nextToken."));
    }
    if ids.iter().any(|i| i.image_digest.is_none() && i.image_tag.is_none()) {
        return Err(ApiError::invalid_parameter("Each imageId needs an imageDigest or an imageTag."));
    }
    let page = Page::parse(r.max_results, r.next_token.as_deref(), PREVIEW_PAGE_LIMIT)?;
    let preview = api.control.ecr().lifecycle_preview(caller, r.repository_name.as_deref().unwrap_or_default())?;
    let status = preview.status_at(Timestamp::now());
    let tag_status = r.filter.and_then(|f| f.tag_status);
    // Results exist only for a complete preview; the summary counts all of them,
    // whatever the filter and the page.
    let results: &[Expiring] = if status == PreviewStatus::Complete { &preview.results } else { &[] };
    let selected = results.iter().enumerate().filter(|(_, e)| {
        let by_tags = match tag_status {
            Some(w::TagStatus::Tagged) => !e.tags.is_empty(),
            Some(w::TagStatus::Untagged) => e.tags.is_empty(),
            Some(w::TagStatus::Any) | None => true,
        };
        let by_id = ids.is_empty()
            || ids.iter().any(|id| match (&id.image_digest, &id.image_tag) {
                (Some(d), Some(t)) => *d == e.digest && e.tags.contains(t),
                (Some(d), None) => *d == e.digest,
                (None, Some(t)) => e.tags.contains(t),
                (None, None) => false,
            });
        by_tags && by_id
    });
    // Results keep the preview's order (oldest first); the key is the position in it.
    let (page_items, next_token) = page.take(selected.map(|(i, e)| (format!("{i:08}"), e)), false);
    Ok(ok(&w::GetLifecyclePolicyPreviewResponse {
        registry_id: Some(preview.scope.account.to_string()),
        repository_name: Some(preview.repository.to_string()),
        lifecycle_policy_text: Some(preview.policy.text().to_string()),
        status: Some(status_shape(status)),
        next_token,
        preview_results: Some(page_items.into_iter().map(result_shape).collect()),
        summary: (status == PreviewStatus::Complete).then(|| w::LifecyclePolicyPreviewSummary {
            expiring_image_total_count: Some(i32::try_from(preview.results.len()).unwrap_or(i32::MAX)),
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
    check_registry_id(caller, r.registry_id.as_deref())?;
    let targets = match &r.repository_name {
        // A named repository must exist and have a policy, as for GetLifecyclePolicy.
        Some(name) => {
            let stored = api.control.ecr().lifecycle_policy(caller, name)?;
            vec![(stored.scope, stored.repository)]
        }
        None => api.control.ecr().lifecycle_repositories(Some(&caller.scope)),
    };
    let mut repositories = Vec::with_capacity(targets.len());
    for (scope, repo) in targets {
        let run = api.control.ecr().enforce_lifecycle_policy(&api.registry.meta, &scope, &repo).await;
        repositories.push(repository_run(run));
    }
    Ok(ok(&RunResponse { repositories }))
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
