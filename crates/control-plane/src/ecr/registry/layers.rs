//! ECR's layer operations over the registry: `BatchCheckLayerAvailability`, the
//! layer-upload API (`InitiateLayerUpload`, `UploadLayerPart`, `CompleteLayerUpload`) and
//! `GetDownloadUrlForLayer`, with ECR's rules on parts (only the last may be small, none
//! may be large) and on downloads (only layers of images are handed out). Uploads go to
//! the blob store's upload sessions, the same as `docker push`'s.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use model::ecr::RepositoryName;
use registry::{Digest, Meta, StorageError, UploadId};

use super::{internal, stored_digest, target, EcrRegistry};
use crate::ecr::{images_of, Ecr};
use crate::error::{ConflictKind, Error, NotFoundKind, RejectedKind, Result};
use crate::{Caller, Ops};

/// The part size `InitiateLayerUpload` suggests: between ECR's 5 MiB minimum (for every
/// part but the last) and its 20 MiB maximum.
pub const SUGGESTED_PART_BYTES: u64 = 10 << 20;
/// Every part of a layer upload but the last must be at least this large, as in ECR.
const MIN_PART_BYTES: u64 = 5 << 20;
/// No part may be larger than this (ECR's `layerPartBlob` limit).
const MAX_PART_BYTES: u64 = 20 << 20;

/// Why `BatchCheckLayerAvailability` reports a layer as a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerFailureCode {
    InvalidLayerDigest,
    MissingLayerDigest,
}

/// One layer `BatchCheckLayerAvailability` could not report as available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFailure {
    pub digest: String,
    pub code: LayerFailureCode,
    pub reason: &'static str,
}

/// One part of a layer, as `UploadLayerPart` sends it.
#[derive(Debug)]
pub struct LayerPart {
    pub upload_id: String,
    pub first_byte: i64,
    pub last_byte: i64,
    /// The part's bytes, or why the protocol edge could not decode them; that is reported
    /// after the repository and the upload id are checked, as the API orders its checks.
    pub blob: Result<Vec<u8>>,
}

/// Where an upload stands after a part or its completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadProgress {
    pub repository: RepositoryName,
    pub upload_id: UploadId,
    /// The offset of the last byte received (`UploadLayerPart`).
    pub last_byte_received: i64,
}

/// The layer `GetDownloadUrlForLayer` may hand out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadableLayer {
    pub repository: RepositoryName,
    pub digest: Digest,
}

impl Ops<'_, Ecr> {
    /// `BatchCheckLayerAvailability`: the size of each layer the repository holds, in
    /// request order, and a failure for each malformed or missing one.
    pub async fn check_layer_availability<A>(
        &self,
        registry: &EcrRegistry<A>,
        caller: &Caller,
        registry_id: Option<&str>,
        repository: &str,
        digests: Vec<String>,
    ) -> Result<(Vec<(String, u64)>, Vec<LayerFailure>)> {
        let (_, target) = target(self, caller, registry_id, repository)?;
        let mut layers = Vec::new();
        let mut failures = Vec::new();
        for d in digests {
            let Ok(digest) = Digest::parse(&d) else {
                let (code, reason) = (LayerFailureCode::InvalidLayerDigest, "Invalid layer digest");
                failures.push(LayerFailure { digest: d, code, reason });
                continue;
            };
            let size = match registry.meta.blob_linked(&target, &digest).await.map_err(internal)? {
                true => registry.store.size(&digest).await.map_err(internal)?,
                false => None,
            };
            match size {
                Some(size) => layers.push((d, size)),
                None => failures.push(LayerFailure {
                    digest: d,
                    code: LayerFailureCode::MissingLayerDigest,
                    reason: "Could not find layer",
                }),
            }
        }
        Ok((layers, failures))
    }

    /// `InitiateLayerUpload`: starts an upload session for the repository and the part
    /// log of its parts; answers its id and the part size to use.
    pub async fn initiate_layer_upload<A>(
        &self,
        registry: &EcrRegistry<A>,
        caller: &Caller,
        registry_id: Option<&str>,
        repository: &str,
    ) -> Result<(UploadId, u64)> {
        let (_, target) = target(self, caller, registry_id, repository)?;
        let id = registry.store.start_upload(&registry::http::owner_key(&target)).await.map_err(internal)?;
        registry.hooks.parts.start(id);
        Ok((id, SUGGESTED_PART_BYTES))
    }

    /// `UploadLayerPart`: appends a part, which must start where the upload stands, hold
    /// exactly the bytes its bounds describe, and be at most [`MAX_PART_BYTES`] long.
    pub async fn upload_layer_part<A>(
        &self,
        registry: &EcrRegistry<A>,
        caller: &Caller,
        registry_id: Option<&str>,
        repository: &str,
        part: LayerPart,
    ) -> Result<UploadProgress> {
        let (repo, target) = target(self, caller, registry_id, repository)?;
        let id = upload_id(&part.upload_id)?;
        let blob = part.blob?;
        let (first, last) = (part.first_byte, part.last_byte);
        // Checked: both bounds come from the client.
        let declared =
            last.checked_sub(first).and_then(|n| n.checked_add(1)).and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
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
        let body = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(blob))]);
        let offset = registry
            .store
            .append(id, &owner, Some(first as u64), Some(declared), body)
            .await
            .map_err(|e| match e {
                StorageError::UploadUnknown => upload_not_found(&repo.name, id),
                StorageError::RangeInvalid { offset } => invalid_part(format!(
                    "The part starts at byte {first}, but the upload holds {offset} bytes (last valid byte {}); send the part that starts at byte {offset}.",
                    offset as i64 - 1
                )),
                StorageError::LengthMismatch => {
                    invalid_part("The part's length differs from partLastByte - partFirstByte + 1.".into())
                }
                e => internal(e),
            })?;
        registry.hooks.parts.record(id, declared);
        Ok(UploadProgress { repository: repo.name.clone(), upload_id: id, last_byte_received: offset as i64 - 1 })
    }

    /// `CompleteLayerUpload`: checks the upload against `layer_digests` (one layer, maybe
    /// repeated) and ECR's part rule, stores the layer and links it to the repository.
    /// A layer the repository already holds is refused, and its upload discarded.
    pub async fn complete_layer_upload<A>(
        &self,
        registry: &EcrRegistry<A>,
        caller: &Caller,
        registry_id: Option<&str>,
        repository: &str,
        upload: &str,
        layer_digests: Vec<String>,
    ) -> Result<(RepositoryName, UploadId, Digest)> {
        let (repo, target) = target(self, caller, registry_id, repository)?;
        let id = upload_id(upload)?;
        let mut digests = BTreeSet::new();
        for d in layer_digests {
            let digest = Digest::parse(&d).map_err(|e| {
                Error::parameter(format!("Invalid parameter at 'layerDigests': '{d}' is not a digest ({e})."))
            })?;
            digests.insert(digest);
        }
        let digest = match (digests.pop_first(), digests.is_empty()) {
            (Some(d), true) => d,
            _ => {
                return Err(Error::parameter(
                    "layerDigests must name the one layer this upload holds (the same digest if repeated).",
                ))
            }
        };
        let owner = registry::http::owner_key(&target);
        let store = &registry.store;
        let parts = &registry.hooks.parts;
        let where_ =
            format!("the repository with name '{}' in the registry with id '{}'", repo.name, caller.scope.account);
        // Checked first, so that a retry of a completion that succeeded says so.
        if registry.meta.blob_linked(&target, &digest).await.map_err(internal)?
            && store.size(&digest).await.map_err(internal)?.is_some()
        {
            let _ = store.cancel(id, &owner).await;
            parts.forget(id);
            return Err(Error::Conflict {
                kind: ConflictKind::LayerExists,
                message: format!("The layer {digest} already exists in {where_}; it need not be uploaded again."),
            });
        }
        let received = store.upload_offset(id, &owner).await.map_err(|e| match e {
            StorageError::UploadUnknown => upload_not_found(&repo.name, id),
            e => internal(e),
        })?;
        if received == 0 {
            return Err(Error::Conflict {
                kind: ConflictKind::EmptyUpload,
                message: format!("The upload {id} holds no data; send the layer with UploadLayerPart first."),
            });
        }
        if parts.has_small_inner_part(id) {
            let _ = store.cancel(id, &owner).await;
            parts.forget(id);
            return Err(Error::Rejected {
                kind: RejectedKind::LayerPartTooSmall,
                message: format!(
                    "Every part of a layer but the last must hold at least {MIN_PART_BYTES} bytes (5 MiB); the upload {id} was discarded. Start again with InitiateLayerUpload."
                ),
            });
        }
        let completed = store.complete(id, &owner, &digest).await;
        parts.forget(id);
        completed.map_err(|e| match e {
            StorageError::UploadUnknown => upload_not_found(&repo.name, id),
            StorageError::DigestMismatch => Error::Rejected {
                kind: RejectedKind::LayerDigestMismatch,
                message: format!("The uploaded content does not have the digest {digest}; the upload was discarded. Start again with InitiateLayerUpload."),
            },
            e => internal(e),
        })?;
        registry.meta.link_blob(&target, &digest).await.map_err(internal)?;
        Ok((repo.name.clone(), id, digest))
    }

    /// `GetDownloadUrlForLayer`: the layer, if the repository holds it and, as in ECR, an
    /// image of the repository uses it; a blob no image references (an upload never
    /// pushed as part of an image) is not handed out. The URL's credential is the
    /// protocol edge's.
    pub async fn downloadable_layer<A>(
        &self,
        registry: &EcrRegistry<A>,
        caller: &Caller,
        registry_id: Option<&str>,
        repository: &str,
        layer_digest: &str,
    ) -> Result<DownloadableLayer> {
        let (repo, target) = target(self, caller, registry_id, repository)?;
        let digest = Digest::parse(layer_digest).map_err(|e| {
            Error::parameter(format!("Invalid parameter at 'layerDigest': '{layer_digest}' is not a digest ({e})."))
        })?;
        let where_ =
            format!("the repository with name '{}' in the registry with id '{}'", repo.name, caller.scope.account);
        let stored = registry.meta.blob_linked(&target, &digest).await.map_err(internal)?
            && registry.store.size(&digest).await.map_err(internal)?.is_some();
        if !stored {
            return Err(Error::NotFound {
                kind: NotFoundKind::Layers,
                message: format!("The layer {digest} does not exist in {where_}."),
            });
        }
        let state = self.view();
        let mut referenced = false;
        for image in images_of(&state, &caller.scope, &repo.name) {
            let record = registry.meta.manifest(&target, &stored_digest(&image.digest)?).await.map_err(internal)?;
            if record.is_some_and(|m| m.references.contains(&digest)) {
                referenced = true;
                break;
            }
        }
        if !referenced {
            return Err(Error::Conflict {
                kind: ConflictKind::LayerNotInImage,
                message: format!(
                    "The layer {digest} in {where_} is not part of any image; push an image that uses it first."
                ),
            });
        }
        Ok(DownloadableLayer { repository: repo.name.clone(), digest })
    }
}

fn invalid_part(message: String) -> Error {
    Error::Rejected { kind: RejectedKind::LayerPart, message }
}

fn upload_id(s: &str) -> Result<UploadId> {
    UploadId::parse(s).ok_or_else(|| {
        Error::parameter(format!(
            "Invalid parameter at 'uploadId': '{s}' is not an upload id; use the uploadId InitiateLayerUpload returned."
        ))
    })
}

fn upload_not_found(repo: &RepositoryName, id: UploadId) -> Error {
    Error::NotFound {
        kind: NotFoundKind::Upload,
        message: format!("The upload {id} does not exist for the repository '{repo}': it was completed, discarded, or started for another repository. Start one with InitiateLayerUpload."),
    }
}

/// The part sizes of layer uploads in progress, which the blob store does not keep but
/// ECR's rule on small parts needs. Kept in memory only: parts received before a restart
/// are not checked against the rule.
#[derive(Default)]
pub struct PartLog(Mutex<HashMap<UploadId, Parts>>);

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

impl PartLog {
    fn uploads(&self) -> std::sync::MutexGuard<'_, HashMap<UploadId, Parts>> {
        // The log holds no invariant a panic could break.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start(&self, id: UploadId) {
        let mut uploads = self.uploads();
        if uploads.len() >= PART_LOG_SIZE {
            uploads.retain(|_, p| p.started.elapsed() < PART_LOG_AGE);
        }
        uploads.insert(id, Parts { started: Instant::now(), last: None, small_inner_part: false });
    }

    fn record(&self, id: UploadId, size: u64) {
        if let Some(p) = self.uploads().get_mut(&id) {
            p.small_inner_part |= p.last.is_some_and(|l| l < MIN_PART_BYTES);
            p.last = Some(size);
        }
    }

    fn has_small_inner_part(&self, id: UploadId) -> bool {
        self.uploads().get(&id).is_some_and(|p| p.small_inner_part)
    }

    fn forget(&self, id: UploadId) {
        self.uploads().remove(&id);
    }
}
