//! The ECR API (`AmazonEC2ContainerRegistry_V20150921.*`) and the wiring of the image
//! registry (`registry`). Operations are grouped by resource: repositories, tokens and
//! image listings here; the others in the submodules, each of which answers `None` for an
//! operation that is not its own.

mod images;
pub mod lifecycle;
mod policies;
pub mod registry;
mod scans;

use axum::response::Response;

use control_plane::ecr::images::ImageSelector;
use control_plane::ecr::{check_registry_id, ImageQuery, NewRepository};
use control_plane::Caller;
use control_plane::ControlPlane;
use model::ecr::shapes as w;
use model::ecr::{Encryption, EncryptionType, Image, Repository, TagMutability, TagStatus};

use crate::ecs::{input_worded, EnumWording, Validate};
use crate::{ok, ApiError};

pub const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921";

crate::ecs::validate_with_model!(
    w::CreateRepositoryRequest,
    w::DescribeRepositoriesRequest,
    w::DeleteRepositoryRequest,
    w::GetAuthorizationTokenRequest,
    w::DescribeImagesRequest,
    w::ListImagesRequest,
    w::BatchGetImageRequest,
    w::BatchDeleteImageRequest,
    w::PutImageRequest,
    w::BatchCheckLayerAvailabilityRequest,
    w::InitiateLayerUploadRequest,
    w::UploadLayerPartRequest,
    w::CompleteLayerUploadRequest,
    w::GetDownloadUrlForLayerRequest,
    w::PutImageTagMutabilityRequest,
    w::PutImageScanningConfigurationRequest,
);

/// `host` is the `Host` the client called; the registry answers on the same address, so
/// repository URIs and the proxy endpoint name it.
/// Decodes an ECR input shape; a wrong enum value is an `InvalidParameterException`.
pub(crate) fn input<T: serde::de::DeserializeOwned + Validate>(body: &[u8]) -> Result<T, ApiError> {
    input_worded(body, EnumWording::Model)
}

pub async fn dispatch(
    api: &crate::Api,
    caller: &Caller,
    operation: &str,
    body: &[u8],
    host: &str,
) -> Result<Response, ApiError> {
    let cp: &ControlPlane = &api.control;
    match operation {
        "CreateRepository" => {
            let r: w::CreateRepositoryRequest = input(body)?;
            check_registry_id(caller, r.registry_id.as_deref())?;
            let req = NewRepository {
                name: r.repository_name.unwrap_or_default(),
                tags: ecr_tags(r.tags.unwrap_or_default())?,
                tag_mutability: tag_mutability(r.image_tag_mutability, r.image_tag_mutability_exclusion_filters)?,
                scan_on_push: r.image_scanning_configuration.and_then(|c| c.scan_on_push).unwrap_or(false),
                encryption: r.encryption_configuration.map(encryption),
            };
            let repo = cp.ecr().create_repository(caller, req).await?;
            Ok(ok(&w::CreateRepositoryResponse { repository: Some(repository_shape(&repo, host)) }))
        }
        "DescribeRepositories" => {
            let r: w::DescribeRepositoriesRequest = input(body)?;
            let (repos, next_token) = cp.ecr().describe_repositories(
                caller,
                r.registry_id.as_deref(),
                &r.repository_names.unwrap_or_default(),
                r.max_results,
                r.next_token.as_deref(),
            )?;
            Ok(ok(&w::DescribeRepositoriesResponse {
                repositories: Some(repos.iter().map(|r| repository_shape(r, host)).collect()),
                next_token,
            }))
        }
        "DeleteRepository" => {
            let r: w::DeleteRepositoryRequest = input(body)?;
            check_registry_id(caller, r.registry_id.as_deref())?;
            let repo = cp
                .ecr()
                .delete_repository(caller, r.repository_name.unwrap_or_default(), r.force.unwrap_or(false))
                .await?;
            Ok(ok(&w::DeleteRepositoryResponse { repository: Some(repository_shape(&repo, host)) }))
        }
        "GetAuthorizationToken" => {
            let r: w::GetAuthorizationTokenRequest = input(body)?;
            let entries = control_plane::ecr::authorization_entries(caller, &r.registry_ids.unwrap_or_default())?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let (token, expires_at) = cp.credentials.registry_token(
                &caller.scope.account,
                caller.scope.region.as_str(),
                &caller.principal,
                now,
            )?;
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{token}"));
            let data = w::AuthorizationData {
                authorization_token: Some(encoded),
                expires_at: Some(model::Timestamp::from_epoch_seconds(expires_at as f64)),
                proxy_endpoint: Some(format!("{}://{host}", api.public.scheme())),
            };
            Ok(ok(&w::GetAuthorizationTokenResponse { authorization_data: Some(vec![data; entries]) }))
        }
        "DescribeImages" => {
            let r: w::DescribeImagesRequest = input(body)?;
            let query = ImageQuery {
                registry_id: r.registry_id,
                repository: r.repository_name.unwrap_or_default(),
                ids: selectors(r.image_ids),
                tag_status: r.filter.and_then(|f| f.tag_status).map(tag_status),
                max_results: r.max_results,
                next_token: r.next_token,
            };
            let (images, next_token) = cp.ecr().describe_images(caller, query)?;
            let details = images.iter().map(|i| image_detail(cp, i)).collect();
            Ok(ok(&w::DescribeImagesResponse { image_details: Some(details), next_token }))
        }
        "ListImages" => {
            let r: w::ListImagesRequest = input(body)?;
            let query = ImageQuery {
                registry_id: r.registry_id,
                repository: r.repository_name.unwrap_or_default(),
                tag_status: r.filter.and_then(|f| f.tag_status).map(tag_status),
                max_results: r.max_results,
                next_token: r.next_token,
                ..Default::default()
            };
            let (ids, next_token) = cp.ecr().list_images(caller, query)?;
            let ids =
                ids.into_iter().map(|i| w::ImageIdentifier { image_digest: i.digest, image_tag: i.tag }).collect();
            Ok(ok(&w::ListImagesResponse { image_ids: Some(ids), next_token }))
        }
        op => {
            if let Some(r) = images::dispatch(api, caller, op, body, host).await {
                return r;
            }
            if let Some(r) = scans::dispatch(api, caller, op, body).await {
                return r;
            }
            if let Some(r) = lifecycle::dispatch(api, caller, op, body).await {
                return r;
            }
            if let Some(r) = policies::dispatch(api, caller, op, body).await {
                return r;
            }
            unknown(op)
        }
    }
}

fn unknown(operation: &str) -> Result<Response, ApiError> {
    match operation {
        op if w::OPERATIONS.contains(&op) => Err(ApiError::bad_request(
            "UnsupportedFeatureException",
            format!("Berth does not implement the ECR operation {op} yet."),
        )),
        op => Err(ApiError::bad_request("UnknownOperationException", format!("ECR has no operation named '{op}'."))),
    }
}

/// The images that `imageIds` name.
fn selectors(ids: Option<Vec<w::ImageIdentifier>>) -> Vec<ImageSelector> {
    ids.unwrap_or_default().into_iter().map(selector).collect()
}

/// The image an `ImageIdentifier` names; the control plane checks it.
fn selector(id: w::ImageIdentifier) -> ImageSelector {
    ImageSelector { digest: id.image_digest, tag: id.image_tag }
}

/// The domain's `tagStatus` filter.
pub(crate) fn tag_status(t: w::TagStatus) -> TagStatus {
    match t {
        w::TagStatus::Tagged => TagStatus::Tagged,
        w::TagStatus::Untagged => TagStatus::Untagged,
        w::TagStatus::Any => TagStatus::Any,
    }
}

fn image_detail(cp: &ControlPlane, i: &Image) -> w::ImageDetail {
    let (scan_status, scan_summary) = cp.ecr().scan_of(i).map(|s| scans::image_summary(&s)).unzip();
    w::ImageDetail {
        registry_id: Some(i.scope.account.to_string()),
        repository_name: Some(i.repository.to_string()),
        image_digest: Some(i.digest.clone()),
        image_tags: (!i.tags.is_empty()).then(|| i.tags.clone()),
        image_size_in_bytes: Some(i.size),
        image_pushed_at: Some(i.pushed_at),
        image_manifest_media_type: Some(i.media_type.clone()),
        last_recorded_pull_time: i.last_recorded_pull_time,
        image_scan_status: scan_status,
        image_scan_findings_summary: scan_summary.flatten(),
        ..Default::default()
    }
}

/// A repository's tags as `CreateRepository` sends them, checked by the control plane.
fn ecr_tags(tags: Vec<w::Tag>) -> Result<model::tags::Tags, ApiError> {
    let pairs = tags.into_iter().map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default())).collect();
    control_plane::ecr::policies::new_repository_tags(pairs).map_err(policies::tag_error)
}

/// A tag mutability setting with its exclusion filters.
pub(crate) fn tag_mutability(
    setting: Option<w::ImageTagMutability>,
    filters: Option<Vec<w::ImageTagMutabilityExclusionFilter>>,
) -> Result<TagMutability, ApiError> {
    let filters = filters.unwrap_or_default().into_iter().map(|f| f.filter.unwrap_or_default()).collect();
    Ok(TagMutability::requested(setting, filters)?)
}

fn exclusion_filters(r: &Repository) -> Option<Vec<w::ImageTagMutabilityExclusionFilter>> {
    (!r.tag_mutability_exclusions.is_empty()).then(|| {
        r.tag_mutability_exclusions
            .iter()
            .map(|f| w::ImageTagMutabilityExclusionFilter {
                filter_type: Some(w::ImageTagMutabilityExclusionFilterType::Wildcard),
                filter: Some(f.as_str().to_string()),
            })
            .collect()
    })
}

fn repository_shape(r: &Repository, host: &str) -> w::Repository {
    w::Repository {
        repository_arn: Some(r.arn().to_string()),
        registry_id: Some(r.scope.account.to_string()),
        repository_name: Some(r.name.to_string()),
        repository_uri: Some(format!("{host}/{}", r.name)),
        created_at: Some(r.created_at),
        image_tag_mutability: Some(r.tag_mutability),
        image_tag_mutability_exclusion_filters: exclusion_filters(r),
        image_scanning_configuration: Some(w::ImageScanningConfiguration { scan_on_push: Some(r.scan_on_push) }),
        encryption_configuration: Some(encryption_shape(&r.encryption)),
    }
}

fn encryption(c: w::EncryptionConfiguration) -> Encryption {
    let encryption_type = c.encryption_type.map(|t| match t {
        w::EncryptionType::Aes256 => EncryptionType::Aes256,
        w::EncryptionType::Kms => EncryptionType::Kms,
        w::EncryptionType::KmsDsse => EncryptionType::KmsDsse,
    });
    Encryption { encryption_type, kms_key: c.kms_key }
}

fn encryption_shape(e: &Encryption) -> w::EncryptionConfiguration {
    let encryption_type = e.encryption_type.map(|t| match t {
        EncryptionType::Aes256 => w::EncryptionType::Aes256,
        EncryptionType::Kms => w::EncryptionType::Kms,
        EncryptionType::KmsDsse => w::EncryptionType::KmsDsse,
    });
    w::EncryptionConfiguration { encryption_type, kms_key: e.kms_key.clone() }
}
