//! ECR's image operations beyond listing: `BatchGetImage`, `BatchDeleteImage`, `PutImage`,
//! the layer-upload API, `GetDownloadUrlForLayer`, `BatchCheckLayerAvailability`,
//! `PutImageTagMutability` and `PutImageScanningConfiguration`.
//!
//! Each is decoded here, answered by one operation of ECR's registry service
//! (`control_plane::ecr::registry`, which owns their rules and the registry's records)
//! and encoded; what stays here is the wire: base64 of layer parts, the download URL's
//! address and credential.

use axum::response::Response;
use base64::Engine;

use control_plane::ecr::check_registry_id;
use control_plane::ecr::images::ImageFailure;
use control_plane::ecr::registry::{LayerFailureCode, LayerPart, NewImage};
use control_plane::Caller;
use model::ecr::shapes::{self as w, LayerAvailability};
use model::ecr::ImageFailureCode;

use super::input;
use super::registry::LAYER_URL_CREDENTIAL;
use crate::{ok, Api, ApiError};

/// Answers the operations of this module; `None` for any other.
pub(super) async fn dispatch(
    api: &Api,
    caller: &Caller,
    operation: &str,
    body: &[u8],
    host: &str,
) -> Option<Result<Response, ApiError>> {
    Some(match operation {
        "BatchGetImage" => batch_get_image(api, caller, body).await,
        "BatchDeleteImage" => batch_delete_image(api, caller, body).await,
        "PutImage" => put_image(api, caller, body).await,
        "BatchCheckLayerAvailability" => batch_check_layer_availability(api, caller, body).await,
        "InitiateLayerUpload" => initiate_layer_upload(api, caller, body).await,
        "UploadLayerPart" => upload_layer_part(api, caller, body).await,
        "CompleteLayerUpload" => complete_layer_upload(api, caller, body).await,
        "GetDownloadUrlForLayer" => get_download_url_for_layer(api, caller, body, host).await,
        "PutImageTagMutability" => put_image_tag_mutability(api, caller, body).await,
        "PutImageScanningConfiguration" => put_image_scanning_configuration(api, caller, body).await,
        _ => return None,
    })
}

async fn batch_delete_image(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::BatchDeleteImageRequest = input(body)?;
    let ids = super::selectors(r.image_ids);
    let (deleted, failures) = api
        .control
        .ecr()
        .batch_delete_image(api.registry()?, caller, r.registry_id.as_deref(), repository(&r.repository_name), ids)
        .await?;
    let deleted = deleted.iter().map(|d| identifier(&d.digest, d.tag.as_deref())).collect();
    let failures = failures.iter().map(failure_shape).collect();
    Ok(ok(&w::BatchDeleteImageResponse { image_ids: Some(deleted), failures: Some(failures) }))
}

async fn batch_get_image(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::BatchGetImageRequest = input(body)?;
    let ids = super::selectors(r.image_ids);
    let accepted = r.accepted_media_types.unwrap_or_default();
    let (repository, images, failures) = api
        .control
        .ecr()
        .batch_get_image(
            api.registry()?,
            caller,
            r.registry_id.as_deref(),
            repository(&r.repository_name),
            ids,
            &accepted,
        )
        .await?;
    let images = images
        .into_iter()
        .map(|i| w::Image {
            registry_id: Some(caller.scope.account.to_string()),
            repository_name: Some(repository.to_string()),
            image_id: Some(identifier(&i.digest, i.tag.as_deref())),
            image_manifest: Some(String::from_utf8_lossy(&i.manifest).into_owned()),
            image_manifest_media_type: Some(i.media_type),
        })
        .collect();
    let failures = failures.iter().map(failure_shape).collect();
    Ok(ok(&w::BatchGetImageResponse { images: Some(images), failures: Some(failures) }))
}

async fn put_image(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::PutImageRequest = input(body)?;
    let manifest = r.image_manifest.unwrap_or_default();
    let image = NewImage {
        manifest: manifest.clone(),
        media_type: r.image_manifest_media_type,
        tag: r.image_tag,
        digest: r.image_digest,
    };
    let put = api
        .control
        .ecr()
        .put_image(api.registry()?, caller, r.registry_id.as_deref(), repository(&r.repository_name), image)
        .await?;
    Ok(ok(&w::PutImageResponse {
        image: Some(w::Image {
            registry_id: Some(caller.scope.account.to_string()),
            repository_name: Some(put.repository.to_string()),
            image_id: Some(identifier(&put.digest, put.tag.as_deref())),
            image_manifest: Some(manifest),
            image_manifest_media_type: Some(put.media_type),
        }),
    }))
}

async fn batch_check_layer_availability(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::BatchCheckLayerAvailabilityRequest = input(body)?;
    let digests = r.layer_digests.unwrap_or_default();
    let (layers, failures) = api
        .control
        .ecr()
        .check_layer_availability(
            api.registry()?,
            caller,
            r.registry_id.as_deref(),
            repository(&r.repository_name),
            digests,
        )
        .await?;
    let layers = layers
        .into_iter()
        .map(|(digest, size)| w::Layer {
            layer_digest: Some(digest),
            layer_availability: Some(LayerAvailability::Available),
            layer_size: Some(i64::try_from(size).unwrap_or(i64::MAX)),
            media_type: None,
        })
        .collect();
    let failures = failures
        .into_iter()
        .map(|f| w::LayerFailure {
            layer_digest: Some(f.digest),
            failure_code: Some(match f.code {
                LayerFailureCode::InvalidLayerDigest => w::LayerFailureCode::InvalidLayerDigest,
                LayerFailureCode::MissingLayerDigest => w::LayerFailureCode::MissingLayerDigest,
            }),
            failure_reason: Some(f.reason.to_string()),
        })
        .collect();
    Ok(ok(&w::BatchCheckLayerAvailabilityResponse { layers: Some(layers), failures: Some(failures) }))
}

async fn initiate_layer_upload(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::InitiateLayerUploadRequest = input(body)?;
    let (id, part_size) = api
        .control
        .ecr()
        .initiate_layer_upload(api.registry()?, caller, r.registry_id.as_deref(), repository(&r.repository_name))
        .await?;
    Ok(ok(&w::InitiateLayerUploadResponse {
        upload_id: Some(id.to_string()),
        part_size: Some(i64::try_from(part_size).unwrap_or(i64::MAX)),
    }))
}

async fn upload_layer_part(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::UploadLayerPartRequest = input(body)?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(r.layer_part_blob.unwrap_or_default())
        .map_err(|_| control_plane::Error::parameter("Invalid parameter at 'layerPartBlob': it must be base64."));
    let part = LayerPart {
        upload_id: r.upload_id.unwrap_or_default(),
        first_byte: r.part_first_byte.unwrap_or_default(),
        last_byte: r.part_last_byte.unwrap_or_default(),
        blob,
    };
    let progress = api
        .control
        .ecr()
        .upload_layer_part(api.registry()?, caller, r.registry_id.as_deref(), repository(&r.repository_name), part)
        .await?;
    Ok(ok(&w::UploadLayerPartResponse {
        registry_id: Some(caller.scope.account.to_string()),
        repository_name: Some(progress.repository.to_string()),
        upload_id: Some(progress.upload_id.to_string()),
        last_byte_received: Some(progress.last_byte_received),
    }))
}

async fn complete_layer_upload(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::CompleteLayerUploadRequest = input(body)?;
    let (repository, id, digest) = api
        .control
        .ecr()
        .complete_layer_upload(
            api.registry()?,
            caller,
            r.registry_id.as_deref(),
            repository(&r.repository_name),
            r.upload_id.as_deref().unwrap_or_default(),
            r.layer_digests.unwrap_or_default(),
        )
        .await?;
    Ok(ok(&w::CompleteLayerUploadResponse {
        registry_id: Some(caller.scope.account.to_string()),
        repository_name: Some(repository.to_string()),
        upload_id: Some(id.to_string()),
        layer_digest: Some(digest.to_string()),
    }))
}

/// The URL carries a credential for this one blob (checked by `TokenAuth`), on the
/// address the client called.
async fn get_download_url_for_layer(api: &Api, caller: &Caller, body: &[u8], host: &str) -> Result<Response, ApiError> {
    let r: w::GetDownloadUrlForLayerRequest = input(body)?;
    let layer = api
        .control
        .ecr()
        .downloadable_layer(
            api.registry()?,
            caller,
            r.registry_id.as_deref(),
            repository(&r.repository_name),
            r.layer_digest.as_deref().unwrap_or_default(),
        )
        .await?;
    let (repo, digest) = (layer.repository, layer.digest);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (token, _) = api.control.credentials.layer_url_token(
        &caller.scope.account,
        caller.scope.region.as_str(),
        repo.as_str(),
        &digest.to_string(),
        now,
    )?;
    Ok(ok(&w::GetDownloadUrlForLayerResponse {
        download_url: Some(format!("http://{host}/v2/{repo}/blobs/{digest}?{LAYER_URL_CREDENTIAL}={token}")),
        layer_digest: Some(digest.to_string()),
    }))
}

async fn put_image_tag_mutability(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::PutImageTagMutabilityRequest = input(body)?;
    check_registry_id(caller, r.registry_id.as_deref())?;
    let m = super::tag_mutability(r.image_tag_mutability, r.image_tag_mutability_exclusion_filters)?;
    let repo =
        api.control.ecr().put_tag_mutability(caller, r.repository_name.as_deref().unwrap_or_default(), m).await?;
    Ok(ok(&w::PutImageTagMutabilityResponse {
        registry_id: Some(repo.scope.account.to_string()),
        repository_name: Some(repo.name.to_string()),
        image_tag_mutability: Some(repo.tag_mutability),
        image_tag_mutability_exclusion_filters: super::exclusion_filters(&repo),
    }))
}

async fn put_image_scanning_configuration(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::PutImageScanningConfigurationRequest = input(body)?;
    check_registry_id(caller, r.registry_id.as_deref())?;
    let scan_on_push = r.image_scanning_configuration.and_then(|c| c.scan_on_push).unwrap_or(false);
    let repo = api
        .control
        .ecr()
        .put_scan_on_push(caller, r.repository_name.as_deref().unwrap_or_default(), scan_on_push)
        .await?;
    Ok(ok(&w::PutImageScanningConfigurationResponse {
        registry_id: Some(repo.scope.account.to_string()),
        repository_name: Some(repo.name.to_string()),
        image_scanning_configuration: Some(w::ImageScanningConfiguration { scan_on_push: Some(repo.scan_on_push) }),
    }))
}

/// The repository a request names (the empty name, which no repository has, when absent).
fn repository(name: &Option<String>) -> &str {
    name.as_deref().unwrap_or_default()
}

fn failure_shape(f: &ImageFailure) -> w::ImageFailure {
    w::ImageFailure {
        image_id: Some(w::ImageIdentifier {
            image_digest: f.selector.digest.clone(),
            image_tag: f.selector.tag.clone(),
        }),
        failure_code: Some(failure_code(f.code)),
        failure_reason: Some(f.reason.clone()),
    }
}

/// ECR's wire code of a domain failure.
fn failure_code(code: ImageFailureCode) -> w::ImageFailureCode {
    match code {
        ImageFailureCode::InvalidImageDigest => w::ImageFailureCode::InvalidImageDigest,
        ImageFailureCode::InvalidImageTag => w::ImageFailureCode::InvalidImageTag,
        ImageFailureCode::ImageTagDoesNotMatchDigest => w::ImageFailureCode::ImageTagDoesNotMatchDigest,
        ImageFailureCode::ImageNotFound => w::ImageFailureCode::ImageNotFound,
        ImageFailureCode::MissingDigestAndTag => w::ImageFailureCode::MissingDigestAndTag,
        ImageFailureCode::ImageReferencedByManifestList => w::ImageFailureCode::ImageReferencedByManifestList,
    }
}

fn identifier(digest: &str, tag: Option<&str>) -> w::ImageIdentifier {
    w::ImageIdentifier { image_digest: Some(digest.to_string()), image_tag: tag.map(str::to_string) }
}
