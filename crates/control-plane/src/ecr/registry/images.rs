//! ECR's image operations over the registry: `BatchGetImage`, `BatchDeleteImage` and
//! `PutImage`, with their rules (which identifiers are well formed, which media types a
//! reader accepts, that an image already stored is refused). Pushes reuse the registry's
//! own checks (`Registry::put_manifest`), so the API and `docker push` accept exactly the
//! same images.

use std::collections::BTreeSet;

use bytes::Bytes;
use model::ecr::{ImageFailureCode, RepositoryName};
use registry::{Digest, Meta, OnPush, PullEvent, PutManifestError, Tag};

use super::{internal, stored_digest, target, DeletedImage, EcrRegistry};
use crate::ecr::images::{find_image, ImageFailure, ImageSelector};
use crate::ecr::Ecr;
use crate::error::{ConflictKind, Error, NotFoundKind, RejectedKind, Result};
use crate::{Caller, Ops};

/// One image `BatchGetImage` returns: its manifest as pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedImage {
    pub digest: String,
    /// The tag the request named, if it named one.
    pub tag: Option<String>,
    pub manifest: Bytes,
    pub media_type: String,
}

/// What `PutImage` stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutImageResult {
    pub repository: RepositoryName,
    pub digest: String,
    pub tag: Option<String>,
    pub media_type: String,
}

/// What `PutImage` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewImage {
    pub manifest: String,
    pub media_type: Option<String>,
    pub tag: Option<String>,
    /// The digest the caller says the manifest has.
    pub digest: Option<String>,
}

/// Which image an identifier names, or the failure ECR reports for a malformed digest or
/// tag (checked in that order).
pub fn check_selector(selector: ImageSelector) -> Result<ImageSelector, ImageFailure> {
    if selector.digest.as_deref().is_some_and(|d| Digest::parse(d).is_err()) {
        return Err(ImageFailure::new(
            &selector,
            ImageFailureCode::InvalidImageDigest,
            "Invalid request parameters: image digest should satisfy the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'",
        ));
    }
    if selector.tag.as_deref().is_some_and(|t| Tag::parse(t).is_err()) {
        return Err(ImageFailure::new(
            &selector,
            ImageFailureCode::InvalidImageTag,
            "Invalid request parameters: the image tag is not valid",
        ));
    }
    Ok(selector)
}

impl Ops<'_, Ecr> {
    /// `BatchDeleteImage`: deletes the images `ids` name from repository `repository` of
    /// the caller (see [`Ops::delete_images`]). Malformed identifiers fail first, in
    /// request order, then those that named nothing deletable.
    pub async fn batch_delete_image<A>(
        &self,
        registry: &EcrRegistry<A>,
        caller: &Caller,
        registry_id: Option<&str>,
        repository: &str,
        ids: Vec<ImageSelector>,
    ) -> Result<(Vec<DeletedImage>, Vec<ImageFailure>)> {
        let (repo, _) = target(self, caller, registry_id, repository)?;
        let mut selectors = Vec::new();
        let mut failures = Vec::new();
        for id in ids {
            match check_selector(id) {
                Ok(s) => selectors.push(s),
                Err(f) => failures.push(f),
            }
        }
        let (deleted, more) = self.delete_images(&registry.meta, &caller.scope, &repo.name, &selectors).await?;
        failures.extend(more);
        Ok((deleted, failures))
    }

    /// `BatchGetImage`: the manifests of the images `ids` name, each once, in request
    /// order, and a failure for each that names none. With `accepted_media_types`, an
    /// image whose manifest has another media type fails: Berth stores manifests as
    /// pushed and does not convert between formats. Each image returned counts as pulled.
    pub async fn batch_get_image<A>(
        &self,
        registry: &EcrRegistry<A>,
        caller: &Caller,
        registry_id: Option<&str>,
        repository: &str,
        ids: Vec<ImageSelector>,
        accepted_media_types: &[String],
    ) -> Result<(RepositoryName, Vec<FetchedImage>, Vec<ImageFailure>)> {
        let (repo, target) = target(self, caller, registry_id, repository)?;
        let state = self.view();
        let mut images = Vec::new();
        let mut failures = Vec::new();
        let mut seen = BTreeSet::new();
        for id in ids {
            let sel = match check_selector(id) {
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
                    failures.push(f);
                    continue;
                }
            };
            if !accepted_media_types.is_empty() && !accepted_media_types.contains(&image.media_type) {
                failures.push(ImageFailure::new(
                    &sel,
                    ImageFailureCode::ImageNotFound,
                    format!(
                        "The image's manifest has media type {}, which is not among acceptedMediaTypes; Berth does not convert manifests.",
                        image.media_type
                    ),
                ));
                continue;
            }
            let digest = stored_digest(&image.digest)?;
            let Some(manifest) = registry.store.read(&digest).await.map_err(internal)? else {
                failures.push(ImageFailure::new(&sel, ImageFailureCode::ImageNotFound, "Requested image not found"));
                continue;
            };
            registry.hooks.on_pull(PullEvent { repository: target.clone(), digest }).await;
            images.push(FetchedImage {
                digest: image.digest.clone(),
                tag: sel.tag,
                manifest,
                media_type: image.media_type.clone(),
            });
        }
        Ok((repo.name.clone(), images, failures))
    }

    /// `PutImage`: stores a manifest (with a tag, if given) in repository `repository`
    /// of the caller, through the registry's own push (`Registry::put_manifest`), which
    /// records it in the control plane. An image already stored (under the tag, if
    /// given) is refused, as are manifests whose blobs or listed images the repository
    /// does not hold yet.
    pub async fn put_image<A>(
        &self,
        registry: &EcrRegistry<A>,
        caller: &Caller,
        registry_id: Option<&str>,
        repository: &str,
        image: NewImage,
    ) -> Result<PutImageResult> {
        let (repo, target) = target(self, caller, registry_id, repository)?;
        let tag = image
            .tag
            .as_deref()
            .map(|t| {
                Tag::parse(t).map_err(|_| {
                    Error::parameter(format!(
                        "Invalid parameter at 'imageTag' failed to satisfy constraint: '{t}' must be 1 to 128 letters, digits, _ . and -, not starting with . or -."
                    ))
                })
            })
            .transpose()?;
        let expected = image
            .digest
            .as_deref()
            .map(|d| {
                Digest::parse(d).map_err(|e| {
                    Error::parameter(format!("Invalid parameter at 'imageDigest': '{d}' is not a digest ({e})."))
                })
            })
            .transpose()?;
        let bytes = Bytes::from(image.manifest.into_bytes());
        let digest = Digest::of(expected.as_ref().map_or(registry::Algorithm::Sha256, |d| d.algorithm()), &bytes);
        let rejected = |kind, message| Error::Rejected { kind, message };
        if let Some(e) = expected.as_ref().filter(|e| **e != digest) {
            return Err(rejected(
                RejectedKind::ImageDigestMismatch,
                format!("The digest {e} given as imageDigest does not match the manifest's digest {digest}."),
            ));
        }
        let meta = &registry.meta;
        if meta.manifest(&target, &digest).await.map_err(internal)?.is_some() {
            let same = match &tag {
                None => true,
                Some(t) => meta.resolve_tag(&target, t).await.map_err(internal)?.as_ref() == Some(&digest),
            };
            if same {
                let with_tag = tag.as_ref().map(|t| format!(" and tag '{}'", t.as_str())).unwrap_or_default();
                return Err(Error::Conflict {
                    kind: ConflictKind::ImageExists,
                    message: format!(
                        "Image with digest '{digest}'{with_tag} already exists in the repository with name '{}' in registry with id '{}'",
                        repo.name, caller.scope.account
                    ),
                });
            }
        }
        let where_ =
            format!("the repository with name '{}' in the registry with id '{}'", repo.name, caller.scope.account);
        let not_found = |kind, message| Error::NotFound { kind, message };
        let record = registry
            .put_manifest(target, tag.clone(), Some(&digest), image.media_type.as_deref(), bytes)
            .await
            .map_err(|e| match e {
                PutManifestError::DigestMismatch(e) => rejected(
                    RejectedKind::ImageDigestMismatch,
                    format!("The digest {e} given as imageDigest does not match the manifest."),
                ),
                PutManifestError::Invalid(m) => Error::parameter(format!("Invalid parameter at 'imageManifest': {m}.")),
                PutManifestError::BlobsUnknown(d) => not_found(
                    NotFoundKind::Layers,
                    format!(
                        "Layers with digests {} required for pushing this image do not exist in {where_}; upload them first (InitiateLayerUpload, UploadLayerPart, CompleteLayerUpload).",
                        digest_list(&d)
                    ),
                ),
                PutManifestError::ManifestsUnknown(d) => not_found(
                    NotFoundKind::ReferencedImages,
                    format!("The images {} that this index lists do not exist in {where_}; push them first.", digest_list(&d)),
                ),
                PutManifestError::Meta(registry::MetaError::TagImmutable(m)) => {
                    Error::Conflict { kind: ConflictKind::ImageTagImmutable, message: m }
                }
                e => internal(e),
            })?;
        // The push hook recorded the image in the control plane; a failure there was logged
        // and must not go unnoticed by the caller.
        let recorded = self.view().images.get(&(caller.scope.clone(), repo.name.clone(), digest.to_string())).cloned();
        if !recorded.is_some_and(|i| tag.as_ref().is_none_or(|t| i.tags.iter().any(|x| x == t.as_str()))) {
            return Err(internal("the pushed image was stored but not recorded in the control plane"));
        }
        Ok(PutImageResult {
            repository: repo.name.clone(),
            digest: digest.to_string(),
            tag: tag.map(|t| t.as_str().to_string()),
            media_type: record.media_type,
        })
    }
}

fn digest_list(ds: &[Digest]) -> String {
    let names: Vec<String> = ds.iter().map(|d| format!("'{d}'")).collect();
    format!("[{}]", names.join(", "))
}
