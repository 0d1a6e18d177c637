//! ECR's image operations beyond listing: `BatchGetImage`, `BatchDeleteImage`, `PutImage`,
//! the layer-upload API, `GetDownloadUrlForLayer`, `BatchCheckLayerAvailability`,
//! `PutImageTagMutability` and `PutImageScanningConfiguration`.
//!
//! An image lives in two records: the registry's metadata (manifests, tags, blob links;
//! what `/v2/` serves) and the control plane's `Image` (what `DescribeImages` reads);
//! `control_plane::ecr::registry` keeps them together (deletions go through it). Pushes
//! reuse the registry's own checks (`Registry::put_manifest`, the blob store's upload
//! sessions), so the API and `docker push` accept exactly the same images.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::response::Response;
use base64::Engine;
use bytes::Bytes;

use control_plane::ecr::check_registry_id;
use control_plane::ecr::images::{find_image, ImageFailure, ImageSelector};
use control_plane::ecr::registry::{registry_repository, stored_digest};
use control_plane::Caller;
use model::ecr::shapes::{self as w, LayerAvailability, LayerFailureCode};
use model::ecr::{ImageFailureCode, RepositoryName};
use registry::{Digest, Meta, PullEvent, PutManifestError, StorageError, Tag, UploadId};

use super::registry::LAYER_URL_CREDENTIAL;
use crate::ecs::input;
use crate::{ok, Api, ApiError};

/// The part size `InitiateLayerUpload` suggests: between ECR's 5 MiB minimum (for every
/// part but the last) and its 20 MiB maximum.
const SUGGESTED_PART_BYTES: i64 = 10 << 20;
/// Every part of a layer upload but the last must be at least this large, as in ECR.
const MIN_PART_BYTES: u64 = 5 << 20;
/// No part may be larger than this (ECR's `layerPartBlob` limit).
const MAX_PART_BYTES: u64 = 20 << 20;

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
    let (repo, _) = target(api, caller, r.registry_id.as_deref(), r.repository_name.as_deref())?;
    let mut selectors = Vec::new();
    let mut failures = Vec::new();
    for id in r.image_ids.unwrap_or_default() {
        match selector(&id) {
            Ok(s) => selectors.push(s),
            Err(f) => failures.push(f),
        }
    }
    let (deleted, more) =
        api.control.ecr().delete_images(&api.registry.meta, &caller.scope, &repo.name, &selectors).await?;
    failures.extend(more.iter().map(failure_shape));
    let deleted = deleted.iter().map(|d| identifier(&d.digest, d.tag.as_deref())).collect();
    Ok(ok(&w::BatchDeleteImageResponse { image_ids: Some(deleted), failures: Some(failures) }))
}

async fn batch_get_image(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::BatchGetImageRequest = input(body)?;
    let (repo, target) = target(api, caller, r.registry_id.as_deref(), r.repository_name.as_deref())?;
    let state = api.control.view();
    let accepted = r.accepted_media_types.unwrap_or_default();
    let mut images = Vec::new();
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    for id in r.image_ids.unwrap_or_default() {
        let sel = match selector(&id) {
            Ok(s) => s,
            Err(f) => {
                failures.push(f);
                continue;
            }
        };
        if !seen.insert(sel.clone()) {
            continue;
        }
        let image = match find_image(&state, &caller.scope, &repo.name, &sel) {
            Ok(i) => i,
            Err(f) => {
                failures.push(failure_shape(&f));
                continue;
            }
        };
        // Berth stores manifests as pushed and does not convert between formats.
        if !accepted.is_empty() && !accepted.contains(&image.media_type) {
            failures.push(failure_shape(&ImageFailure::new(
                &sel,
                ImageFailureCode::ImageNotFound,
                format!(
                    "The image's manifest has media type {}, which is not among acceptedMediaTypes; Berth does not convert manifests.",
                    image.media_type
                ),
            )));
            continue;
        }
        let digest = stored_digest(&image.digest)?;
        let Some(bytes) = api.registry.store.read(&digest).await.map_err(internal)? else {
            failures.push(failure_shape(&ImageFailure::new(
                &sel,
                ImageFailureCode::ImageNotFound,
                "Requested image not found",
            )));
            continue;
        };
        use registry::OnPush;
        api.registry.hooks.on_pull(PullEvent { repository: target.clone(), digest }).await;
        images.push(w::Image {
            registry_id: Some(caller.scope.account.to_string()),
            repository_name: Some(repo.name.to_string()),
            image_id: Some(identifier(&image.digest, sel.tag.as_deref())),
            image_manifest: Some(String::from_utf8_lossy(&bytes).into_owned()),
            image_manifest_media_type: Some(image.media_type.clone()),
        });
    }
    Ok(ok(&w::BatchGetImageResponse { images: Some(images), failures: Some(failures) }))
}

async fn put_image(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::PutImageRequest = input(body)?;
    let (repo, target) = target(api, caller, r.registry_id.as_deref(), r.repository_name.as_deref())?;
    let manifest = r.image_manifest.unwrap_or_default();
    let tag = r
        .image_tag
        .as_deref()
        .map(|t| {
            Tag::parse(t).map_err(|_| {
                ApiError::invalid_parameter(format!(
                    "Invalid parameter at 'imageTag' failed to satisfy constraint: '{t}' must be 1 to 128 letters, digits, _ . and -, not starting with . or -."
                ))
            })
        })
        .transpose()?;
    let expected = r
        .image_digest
        .as_deref()
        .map(|d| {
            Digest::parse(d).map_err(|e| {
                ApiError::invalid_parameter(format!("Invalid parameter at 'imageDigest': '{d}' is not a digest ({e})."))
            })
        })
        .transpose()?;
    let bytes = Bytes::from(manifest.clone().into_bytes());
    let digest = Digest::of(expected.as_ref().map_or(registry::Algorithm::Sha256, |d| d.algorithm()), &bytes);
    if let Some(e) = expected.as_ref().filter(|e| **e != digest) {
        return Err(ApiError::bad_request(
            "ImageDigestDoesNotMatchException",
            format!("The digest {e} given as imageDigest does not match the manifest's digest {digest}."),
        ));
    }
    let meta = &api.registry.meta;
    if meta.manifest(&target, &digest).await.map_err(internal)?.is_some() {
        let same = match &tag {
            None => true,
            Some(t) => meta.resolve_tag(&target, t).await.map_err(internal)?.as_ref() == Some(&digest),
        };
        if same {
            let with_tag = tag.as_ref().map(|t| format!(" and tag '{}'", t.as_str())).unwrap_or_default();
            return Err(ApiError::bad_request(
                "ImageAlreadyExistsException",
                format!(
                    "Image with digest '{digest}'{with_tag} already exists in the repository with name '{}' in registry with id '{}'",
                    repo.name, caller.scope.account
                ),
            ));
        }
    }
    let where_ = format!("the repository with name '{}' in the registry with id '{}'", repo.name, caller.scope.account);
    let record = api
        .registry
        .put_manifest(target, tag.clone(), Some(&digest), r.image_manifest_media_type.as_deref(), bytes)
        .await
        .map_err(|e| match e {
            PutManifestError::DigestMismatch(e) => ApiError::bad_request(
                "ImageDigestDoesNotMatchException",
                format!("The digest {e} given as imageDigest does not match the manifest."),
            ),
            PutManifestError::Invalid(m) => {
                ApiError::invalid_parameter(format!("Invalid parameter at 'imageManifest': {m}."))
            }
            PutManifestError::BlobsUnknown(d) => ApiError::bad_request(
                "LayersNotFoundException",
                format!(
                    "Layers with digests {} required for pushing this image do not exist in {where_}; upload them first (InitiateLayerUpload, UploadLayerPart, CompleteLayerUpload).",
                    digest_list(&d)
                ),
            ),
            PutManifestError::ManifestsUnknown(d) => ApiError::bad_request(
                "ReferencedImagesNotFoundException",
                format!("The images {} that this index lists do not exist in {where_}; push them first.", digest_list(&d)),
            ),
            PutManifestError::Meta(registry::MetaError::TagImmutable(m)) => {
                ApiError::bad_request("ImageTagAlreadyExistsException", m)
            }
            e => internal(e),
        })?;
    // The push hook recorded the image in the control plane; a failure there was logged
    // and must not go unnoticed by the caller.
    let recorded =
        api.control.view().images.get(&(caller.scope.clone(), repo.name.clone(), digest.to_string())).cloned();
    if !recorded.is_some_and(|i| tag.as_ref().is_none_or(|t| i.tags.iter().any(|x| x == t.as_str()))) {
        return Err(internal("the pushed image was stored but not recorded in the control plane"));
    }
    Ok(ok(&w::PutImageResponse {
        image: Some(w::Image {
            registry_id: Some(caller.scope.account.to_string()),
            repository_name: Some(repo.name.to_string()),
            image_id: Some(identifier(&digest.to_string(), tag.as_ref().map(|t| t.as_str()))),
            image_manifest: Some(manifest),
            image_manifest_media_type: Some(record.media_type),
        }),
    }))
}

async fn batch_check_layer_availability(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::BatchCheckLayerAvailabilityRequest = input(body)?;
    let (_, target) = target(api, caller, r.registry_id.as_deref(), r.repository_name.as_deref())?;
    let mut layers = Vec::new();
    let mut failures = Vec::new();
    for d in r.layer_digests.unwrap_or_default() {
        let failure = |code, reason: &str| w::LayerFailure {
            layer_digest: Some(d.clone()),
            failure_code: Some(code),
            failure_reason: Some(reason.to_string()),
        };
        let Ok(digest) = Digest::parse(&d) else {
            failures.push(failure(LayerFailureCode::InvalidLayerDigest, "Invalid layer digest"));
            continue;
        };
        let size = match api.registry.meta.blob_linked(&target, &digest).await.map_err(internal)? {
            true => api.registry.store.size(&digest).await.map_err(internal)?,
            false => None,
        };
        match size {
            Some(size) => layers.push(w::Layer {
                layer_digest: Some(d.clone()),
                layer_availability: Some(LayerAvailability::Available),
                layer_size: Some(i64::try_from(size).unwrap_or(i64::MAX)),
                media_type: None,
            }),
            None => failures.push(failure(LayerFailureCode::MissingLayerDigest, "Could not find layer")),
        }
    }
    Ok(ok(&w::BatchCheckLayerAvailabilityResponse { layers: Some(layers), failures: Some(failures) }))
}

async fn initiate_layer_upload(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::InitiateLayerUploadRequest = input(body)?;
    let (_, target) = target(api, caller, r.registry_id.as_deref(), r.repository_name.as_deref())?;
    let id = api.registry.store.start_upload(&registry::http::owner_key(&target)).await.map_err(internal)?;
    parts().start(id);
    Ok(ok(&w::InitiateLayerUploadResponse { upload_id: Some(id.to_string()), part_size: Some(SUGGESTED_PART_BYTES) }))
}

async fn upload_layer_part(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::UploadLayerPartRequest = input(body)?;
    let (repo, target) = target(api, caller, r.registry_id.as_deref(), r.repository_name.as_deref())?;
    let id = upload_id(r.upload_id.as_deref().unwrap_or_default())?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(r.layer_part_blob.unwrap_or_default())
        .map_err(|_| ApiError::invalid_parameter("Invalid parameter at 'layerPartBlob': it must be base64."))?;
    let (first, last) = (r.part_first_byte.unwrap_or_default(), r.part_last_byte.unwrap_or_default());
    // Checked: both bounds come from the client.
    let declared =
        last.checked_sub(first).and_then(|n| n.checked_add(1)).and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    let invalid_part = |message: String| ApiError::bad_request("InvalidLayerPartException", message);
    if blob.is_empty() || declared != blob.len() as u64 {
        return Err(invalid_part(format!(
            "partFirstByte {first} and partLastByte {last} describe {declared} bytes, but layerPartBlob holds {}; a part holds bytes partFirstByte..=partLastByte of the layer.",
            blob.len()
        )));
    }
    if declared > MAX_PART_BYTES {
        return Err(invalid_part(format!(
            "A layer part may hold at most {MAX_PART_BYTES} bytes; this one holds {declared}."
        )));
    }
    let owner = registry::http::owner_key(&target);
    let body = axum::body::Body::from(blob).into_data_stream();
    let offset = api
        .registry
        .store
        .append(id, &owner, Some(first as u64), Some(declared), body)
        .await
        .map_err(|e| match e {
            StorageError::UploadUnknown => upload_not_found(&repo.name, id),
            StorageError::RangeInvalid { offset } => invalid_part(format!(
                "The part starts at byte {first}, but the upload holds {offset} bytes (last valid byte {}); send the part that starts at byte {offset}.",
                offset as i64 - 1
            )),
            StorageError::LengthMismatch => invalid_part("The part's length differs from partLastByte - partFirstByte + 1.".into()),
            e => internal(e),
        })?;
    parts().record(id, declared);
    Ok(ok(&w::UploadLayerPartResponse {
        registry_id: Some(caller.scope.account.to_string()),
        repository_name: Some(repo.name.to_string()),
        upload_id: Some(id.to_string()),
        last_byte_received: Some(offset as i64 - 1),
    }))
}

async fn complete_layer_upload(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::CompleteLayerUploadRequest = input(body)?;
    let (repo, target) = target(api, caller, r.registry_id.as_deref(), r.repository_name.as_deref())?;
    let id = upload_id(r.upload_id.as_deref().unwrap_or_default())?;
    let mut digests = BTreeSet::new();
    for d in r.layer_digests.unwrap_or_default() {
        let digest = Digest::parse(&d).map_err(|e| {
            ApiError::invalid_parameter(format!("Invalid parameter at 'layerDigests': '{d}' is not a digest ({e})."))
        })?;
        digests.insert(digest);
    }
    let digest = match (digests.pop_first(), digests.is_empty()) {
        (Some(d), true) => d,
        _ => {
            return Err(ApiError::invalid_parameter(
                "layerDigests must name the one layer this upload holds (the same digest if repeated).",
            ))
        }
    };
    let owner = registry::http::owner_key(&target);
    let store = &api.registry.store;
    let where_ = format!("the repository with name '{}' in the registry with id '{}'", repo.name, caller.scope.account);
    // Checked first, so that a retry of a completion that succeeded says so.
    if api.registry.meta.blob_linked(&target, &digest).await.map_err(internal)?
        && store.size(&digest).await.map_err(internal)?.is_some()
    {
        let _ = store.cancel(id, &owner).await;
        parts().forget(id);
        return Err(ApiError::bad_request(
            "LayerAlreadyExistsException",
            format!("The layer {digest} already exists in {where_}; it need not be uploaded again."),
        ));
    }
    let received = store.upload_offset(id, &owner).await.map_err(|e| match e {
        StorageError::UploadUnknown => upload_not_found(&repo.name, id),
        e => internal(e),
    })?;
    if received == 0 {
        return Err(ApiError::bad_request(
            "EmptyUploadException",
            format!("The upload {id} holds no data; send the layer with UploadLayerPart first."),
        ));
    }
    if parts().has_small_inner_part(id) {
        let _ = store.cancel(id, &owner).await;
        parts().forget(id);
        return Err(ApiError::bad_request(
            "LayerPartTooSmallException",
            format!(
                "Every part of a layer but the last must hold at least {MIN_PART_BYTES} bytes (5 MiB); the upload {id} was discarded. Start again with InitiateLayerUpload."
            ),
        ));
    }
    let completed = store.complete(id, &owner, &digest).await;
    parts().forget(id);
    completed.map_err(|e| match e {
        StorageError::UploadUnknown => upload_not_found(&repo.name, id),
        StorageError::DigestMismatch => ApiError::bad_request(
            "InvalidLayerException",
            format!("The uploaded content does not have the digest {digest}; the upload was discarded. Start again with InitiateLayerUpload."),
        ),
        e => internal(e),
    })?;
    api.registry.meta.link_blob(&target, &digest).await.map_err(internal)?;
    Ok(ok(&w::CompleteLayerUploadResponse {
        registry_id: Some(caller.scope.account.to_string()),
        repository_name: Some(repo.name.to_string()),
        upload_id: Some(id.to_string()),
        layer_digest: Some(digest.to_string()),
    }))
}

async fn get_download_url_for_layer(api: &Api, caller: &Caller, body: &[u8], host: &str) -> Result<Response, ApiError> {
    let r: w::GetDownloadUrlForLayerRequest = input(body)?;
    let (repo, target) = target(api, caller, r.registry_id.as_deref(), r.repository_name.as_deref())?;
    let d = r.layer_digest.unwrap_or_default();
    let digest = Digest::parse(&d).map_err(|e| {
        ApiError::invalid_parameter(format!("Invalid parameter at 'layerDigest': '{d}' is not a digest ({e})."))
    })?;
    let where_ = format!("the repository with name '{}' in the registry with id '{}'", repo.name, caller.scope.account);
    let stored = api.registry.meta.blob_linked(&target, &digest).await.map_err(internal)?
        && api.registry.store.size(&digest).await.map_err(internal)?.is_some();
    if !stored {
        return Err(ApiError::bad_request(
            "LayersNotFoundException",
            format!("The layer {digest} does not exist in {where_}."),
        ));
    }
    // As in ECR, only layers of images are handed out; a blob no image references (an
    // upload never pushed as part of an image) is not.
    let state = api.control.view();
    let mut referenced = false;
    for image in control_plane::ecr::images_of(&state, &caller.scope, &repo.name) {
        let record = api.registry.meta.manifest(&target, &stored_digest(&image.digest)?).await.map_err(internal)?;
        if record.is_some_and(|m| m.references.contains(&digest)) {
            referenced = true;
            break;
        }
    }
    if !referenced {
        return Err(ApiError::bad_request(
            "LayerInaccessibleException",
            format!("The layer {digest} in {where_} is not part of any image; push an image that uses it first."),
        ));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (token, _) = api.control.credentials.layer_url_token(
        &caller.scope.account,
        caller.scope.region.as_str(),
        repo.name.as_str(),
        &digest.to_string(),
        now,
    )?;
    Ok(ok(&w::GetDownloadUrlForLayerResponse {
        download_url: Some(format!("http://{host}/v2/{}/blobs/{digest}?{LAYER_URL_CREDENTIAL}={token}", repo.name)),
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

/// The caller's repository (which must exist) and its key in the registry.
fn target(
    api: &Api,
    caller: &Caller,
    registry_id: Option<&str>,
    name: Option<&str>,
) -> Result<(Arc<model::ecr::Repository>, registry::Repository), ApiError> {
    check_registry_id(caller, registry_id)?;
    let repo = api.control.ecr().repository(caller, name.unwrap_or_default())?;
    let target = registry_repository(&caller.scope, &repo.name)?;
    Ok((repo, target))
}

/// Which image an `ImageIdentifier` names, or the failure ECR reports for a malformed one.
fn selector(id: &w::ImageIdentifier) -> Result<ImageSelector, w::ImageFailure> {
    let sel = ImageSelector { digest: id.image_digest.clone(), tag: id.image_tag.clone() };
    if let Some(d) = &id.image_digest {
        if Digest::parse(d).is_err() {
            return Err(failure_shape(&ImageFailure::new(
                &sel,
                ImageFailureCode::InvalidImageDigest,
                "Invalid request parameters: image digest should satisfy the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'",
            )));
        }
    }
    if let Some(t) = &id.image_tag {
        if Tag::parse(t).is_err() {
            return Err(failure_shape(&ImageFailure::new(
                &sel,
                ImageFailureCode::InvalidImageTag,
                "Invalid request parameters: the image tag is not valid",
            )));
        }
    }
    Ok(sel)
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

fn digest_list(ds: &[Digest]) -> String {
    let names: Vec<String> = ds.iter().map(|d| format!("'{d}'")).collect();
    format!("[{}]", names.join(", "))
}

fn upload_id(s: &str) -> Result<UploadId, ApiError> {
    UploadId::parse(s).ok_or_else(|| {
        ApiError::invalid_parameter(format!(
            "Invalid parameter at 'uploadId': '{s}' is not an upload id; use the uploadId InitiateLayerUpload returned."
        ))
    })
}

fn upload_not_found(repo: &RepositoryName, id: UploadId) -> ApiError {
    ApiError::bad_request(
        "UploadNotFoundException",
        format!("The upload {id} does not exist for the repository '{repo}': it was completed, discarded, or started for another repository. Start one with InitiateLayerUpload."),
    )
}

/// A server-side failure: the detail goes to the log, the caller gets `ServerException`.
fn internal(e: impl std::fmt::Display) -> ApiError {
    control_plane::Error::Internal(e.to_string()).into()
}

/// The part sizes of layer uploads in progress, which the blob store does not keep but
/// ECR's rule on small parts needs. Keyed by upload id (a random UUID), so all registries
/// of a process can share it. Kept in memory only: parts received before a restart are
/// not checked against the rule.
struct PartLog(HashMap<UploadId, Parts>);

struct Parts {
    started: Instant,
    /// The size of the latest part.
    last: Option<u64>,
    /// A part smaller than [`MIN_PART_BYTES`] was followed by another.
    small_inner_part: bool,
}

/// Uploads older than this are forgotten when the log grows large (the blob store's
/// cleanup of abandoned uploads is not visible here).
const PART_LOG_AGE: Duration = Duration::from_secs(24 * 3600);
const PART_LOG_SIZE: usize = 10_000;

fn parts() -> std::sync::MutexGuard<'static, PartLog> {
    static LOG: LazyLock<Mutex<PartLog>> = LazyLock::new(|| Mutex::new(PartLog(HashMap::new())));
    // The log holds no invariant a panic could break.
    LOG.lock().unwrap_or_else(|e| e.into_inner())
}

impl PartLog {
    fn start(&mut self, id: UploadId) {
        if self.0.len() >= PART_LOG_SIZE {
            self.0.retain(|_, p| p.started.elapsed() < PART_LOG_AGE);
        }
        self.0.insert(id, Parts { started: Instant::now(), last: None, small_inner_part: false });
    }

    fn record(&mut self, id: UploadId, size: u64) {
        if let Some(p) = self.0.get_mut(&id) {
            p.small_inner_part |= p.last.is_some_and(|l| l < MIN_PART_BYTES);
            p.last = Some(size);
        }
    }

    fn has_small_inner_part(&self, id: UploadId) -> bool {
        self.0.get(&id).is_some_and(|p| p.small_inner_part)
    }

    fn forget(&mut self, id: UploadId) {
        self.0.remove(&id);
    }
}
