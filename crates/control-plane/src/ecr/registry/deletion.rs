//! Deleting images and tags from both records: the registry's metadata first, then the
//! control plane's. `BatchDeleteImage` and lifecycle expiry both delete through here, so
//! their deletions follow the same rules.

use std::collections::BTreeSet;

use model::ecr::{ImageFailureCode, RepositoryName};
use model::Scope;
use registry::{Digest, Meta, Tag};

use super::{internal, registry_repository};
use crate::ecr::images::{plan_image_deletion, Deletion, ImageFailure, ImageSelector};
use crate::ecr::{images_of, Ecr};
use crate::error::Result;
use crate::Ops;

/// One image or tag that a deletion removed: an untagged image by its digest alone, a
/// tagged one once per tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedImage {
    pub digest: String,
    pub tag: Option<String>,
}

impl Ops<'_, Ecr> {
    /// Deletes images and tags, named as `BatchDeleteImage` names them, from the
    /// registry's metadata `meta` and then from the control plane. Returns what was
    /// deleted and a failure for each selector that named nothing deletable:
    ///
    /// - removing an image's last tag deletes the image, as in ECR;
    /// - an image that an image index in the repository still lists cannot be deleted by
    ///   digest (`ImageReferencedByManifestList`); removing its last tags only untags it.
    ///
    /// Blobs stay linked to the repository; only manifests and tags go.
    pub async fn delete_images(
        &self,
        meta: &impl Meta,
        scope: &Scope,
        repo: &RepositoryName,
        ids: &[ImageSelector],
    ) -> Result<(Vec<DeletedImage>, Vec<ImageFailure>)> {
        let state = self.view();
        let (plan, mut failures) = plan_image_deletion(&state, scope, repo, ids);
        let target = registry_repository(scope, repo)?;

        // What index manifests that stay behind still list.
        let going: BTreeSet<&str> = plan
            .iter()
            .filter_map(|d| match d {
                Deletion::Image { digest, .. } => Some(digest.as_str()),
                Deletion::Tag { .. } => None,
            })
            .collect();
        let mut listed = BTreeSet::new();
        for image in images_of(&state, scope, repo) {
            let is_index = [registry::manifest::OCI_INDEX, registry::manifest::DOCKER_MANIFEST_LIST]
                .contains(&image.media_type.as_str());
            if !is_index || going.contains(image.digest.as_str()) {
                continue;
            }
            if let Some(record) = meta.manifest(&target, &stored_digest(&image.digest)?).await.map_err(internal)? {
                listed.extend(record.references.iter().map(|d| d.to_string()));
            }
        }
        let mut checked = Vec::new();
        for d in plan {
            match d {
                Deletion::Image { digest, by_digest: true, .. } if listed.contains(&digest) => {
                    failures.push(ImageFailure::new(
                        &ImageSelector { digest: Some(digest), tag: None },
                        ImageFailureCode::ImageReferencedByManifestList,
                        "An image index in this repository still lists this image; delete the index first.",
                    ));
                }
                Deletion::Image { digest, tags, by_digest: false } if listed.contains(&digest) => {
                    checked.extend(tags.into_iter().map(|tag| Deletion::Tag { digest: digest.clone(), tag }));
                }
                d => checked.push(d),
            }
        }

        for d in &checked {
            match d {
                Deletion::Image { digest, .. } => {
                    meta.delete_manifest(&target, &stored_digest(digest)?).await.map_err(internal)?;
                }
                Deletion::Tag { digest, tag } => {
                    let tag = Tag::parse(tag).map_err(internal)?;
                    // Only while it still points here: a push may have moved it meanwhile.
                    let current = meta.resolve_tag(&target, &tag).await.map_err(internal)?;
                    if current.is_some_and(|c| c.to_string() == *digest) {
                        meta.delete_tag(&target, &tag).await.map_err(internal)?;
                    }
                }
            }
        }
        let mut deleted = Vec::new();
        for d in &checked {
            let one = |tag: Option<&String>| DeletedImage { digest: d.digest().to_string(), tag: tag.cloned() };
            match d {
                Deletion::Image { tags, .. } if tags.is_empty() => deleted.push(one(None)),
                Deletion::Image { tags, .. } => deleted.extend(tags.iter().map(|t| one(Some(t)))),
                Deletion::Tag { tag, .. } => deleted.push(one(Some(tag))),
            }
        }
        self.apply_image_deletions(scope.clone(), repo.clone(), checked).await?;
        Ok((deleted, failures))
    }
}

/// A digest the control plane recorded, which came from the registry and so parses.
pub fn stored_digest(d: &str) -> Result<Digest> {
    Digest::parse(d).map_err(internal)
}
