//! Garbage collection: removes blobs that no manifest references any more, and upload
//! sessions abandoned by their clients.
//!
//! Marking: a blob is live if it is a manifest some repository holds, or something such a
//! manifest references. Links alone do not keep a blob (a deleted image leaves its layers
//! linked); instead a grace period does: a blob written or touched within
//! [`GcPolicy::blob_grace`] is kept, which covers pushes whose layers are uploaded but
//! whose manifest has not arrived yet.
//!
//! Sweeping is safe while the registry serves: it holds the store's collection lock
//! exclusively, which publishing a blob, mounting one and storing a manifest hold shared, so
//! the live set cannot change while candidates are unlinked and deleted. Publishing and
//! mounting renew a blob's modification time, so content a push is about to reference is
//! young and kept. What remains is the race every registry has (distribution's collector
//! needs the registry read-only for it): a client that checked a blob with `HEAD` long ago
//! and pushes a manifest after the blob was collected gets `MANIFEST_BLOB_UNKNOWN` and
//! uploads the blob again; no manifest is ever stored with a blob missing.

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::meta::{LocalMeta, MetaError};
use crate::storage::StorageError;
use crate::Registry;

/// How old unreferenced content must be before it is collected.
#[derive(Debug, Clone, Copy)]
pub struct GcPolicy {
    /// Unreferenced blobs younger than this are kept.
    pub blob_grace: Duration,
    /// Upload sessions that received nothing for this long are abandoned.
    pub upload_grace: Duration,
}

impl Default for GcPolicy {
    fn default() -> Self {
        // A push uploads its layers before its manifest; an hour covers the slowest push.
        // Docker abandons an upload within minutes; a day leaves room for manual resumes.
        GcPolicy { blob_grace: Duration::from_secs(3600), upload_grace: Duration::from_secs(24 * 3600) }
    }
}

/// What one collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    pub uploads_removed: usize,
    /// Blobs examined (every stored blob).
    pub blobs_seen: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Metadata that garbage collection can mark and sweep.
pub trait Collectable {
    /// Every digest some repository's manifests make live: the manifests themselves and
    /// what they reference.
    fn referenced_blobs(&self) -> HashSet<Digest>;
    /// Removes the blob's link from every repository; returns how many links there were.
    fn unlink_everywhere(&self, digest: &Digest) -> impl Future<Output = Result<usize, MetaError>> + Send;
}

impl Collectable for LocalMeta {
    fn referenced_blobs(&self) -> HashSet<Digest> {
        LocalMeta::referenced_blobs(self)
    }
    async fn unlink_everywhere(&self, digest: &Digest) -> Result<usize, MetaError> {
        LocalMeta::unlink_everywhere(self, digest).await
    }
}

impl<M: Collectable, A, H> Registry<M, A, H> {
    /// Runs one collection now.
    pub async fn collect_garbage(&self, policy: GcPolicy) -> Result<GcReport, GcError> {
        let meta = &self.meta;
        let now = SystemTime::now();
        let blob_cutoff = now.checked_sub(policy.blob_grace).unwrap_or(SystemTime::UNIX_EPOCH);
        let upload_cutoff = now.checked_sub(policy.upload_grace).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut report = GcReport::default();

        let stored = self.store.blobs_older_than(blob_cutoff).await?;
        report.blobs_seen = stored.seen;
        {
            // Exclusive: no blob is published, mounted or referenced by a new manifest while
            // the candidates are judged and removed.
            let _exclusive = self.store.collection_lock().write().await;
            let live = meta.referenced_blobs();
            for digest in stored.old.into_iter().filter(|d| !live.contains(d)) {
                meta.unlink_everywhere(&digest).await?;
                if let Some(size) = self.store.remove_blob_if_older(&digest, blob_cutoff).await? {
                    tracing::info!(%digest, size, "garbage collection removed an unreferenced blob");
                    report.blobs_removed += 1;
                    report.bytes_freed += size;
                }
            }
        }
        report.uploads_removed = self.store.remove_abandoned_uploads(upload_cutoff).await?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::digest::{Algorithm, Digest};
    use crate::meta::{ManifestRecord, Meta};
    use crate::names::{Namespace, RepoName, Repository};
    use crate::{AllowAll, BlobStore, NoHooks};

    const HOUR: Duration = Duration::from_secs(3600);

    fn repo(name: &str) -> Repository {
        Repository {
            namespace: Namespace { account: "000000000000".into(), region: "us-east-1".into() },
            name: RepoName::parse(name).unwrap(),
        }
    }

    async fn blob(reg: &Registry<LocalMeta, AllowAll, NoHooks>, content: &[u8], age: Duration) -> Digest {
        let d = Digest::of(Algorithm::Sha256, content);
        reg.store.put_bytes(&d, Bytes::copy_from_slice(content)).await.unwrap();
        age_blob(reg, &d, age);
        d
    }

    fn age_blob(reg: &Registry<LocalMeta, AllowAll, NoHooks>, d: &Digest, age: Duration) {
        let path = reg.store.root().join("blobs/sha256").join(&d.hex()[..2]).join(d.hex());
        let f = std::fs::File::options().append(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
    }

    #[tokio::test]
    async fn collects_only_old_unreferenced_blobs_and_abandoned_uploads() {
        let tmp = tempfile::tempdir().unwrap();
        let ns = Namespace { account: "000000000000".into(), region: "us-east-1".into() };
        let reg = Registry {
            store: std::sync::Arc::new(BlobStore::open(tmp.path()).unwrap()),
            meta: LocalMeta::in_memory(),
            auth: AllowAll(ns),
            hooks: NoHooks,
            realm: "test".into(),
        };
        let (a, b) = (repo("a"), repo("b"));
        let layer = blob(&reg, b"layer", 2 * HOUR).await;
        let manifest = blob(&reg, b"manifest", 2 * HOUR).await;
        let orphan = blob(&reg, b"orphan, still linked", 2 * HOUR).await;
        let fresh = blob(&reg, b"fresh, pushed a minute ago", Duration::from_secs(60)).await;
        for d in [&layer, &orphan, &fresh] {
            reg.meta.link_blob(&a, d).await.unwrap();
        }
        reg.meta.link_blob(&b, &orphan).await.unwrap();
        let record = ManifestRecord {
            digest: manifest.clone(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 8,
            subject: None,
            artifact_type: None,
            annotations: None,
            references: vec![layer.clone()],
        };
        reg.meta.put_manifest(&a, record, None).await.unwrap();

        let abandoned = reg.store.start_upload("a").await.unwrap();
        let active = reg.store.start_upload("a").await.unwrap();
        let data = tmp.path().join("uploads").join(abandoned.to_string()).join("data");
        std::fs::File::options().append(true).open(data).unwrap().set_modified(SystemTime::now() - 48 * HOUR).unwrap();

        let report = reg.collect_garbage(GcPolicy::default()).await.unwrap();
        assert_eq!(
            report,
            GcReport { blobs_removed: 1, bytes_freed: 20, uploads_removed: 1, blobs_seen: 4 },
            "only the old orphan goes"
        );
        assert_eq!(reg.store.size(&orphan).await.unwrap(), None);
        assert!(!reg.meta.blob_linked(&a, &orphan).await.unwrap() && !reg.meta.blob_linked(&b, &orphan).await.unwrap());
        for kept in [&layer, &manifest, &fresh] {
            assert!(reg.store.size(kept).await.unwrap().is_some(), "{kept} must stay");
        }
        assert!(reg.meta.blob_linked(&a, &layer).await.unwrap());
        assert!(matches!(reg.store.upload_offset(abandoned, "a").await, Err(StorageError::UploadUnknown)));
        assert_eq!(reg.store.upload_offset(active, "a").await.unwrap(), 0);

        // Deleting the image makes its layer and manifest garbage, unless re-pushed meanwhile.
        reg.meta.delete_manifest(&a, &manifest).await.unwrap();
        assert!(reg.store.touch(&layer).await.unwrap());
        let report = reg.collect_garbage(GcPolicy::default()).await.unwrap();
        assert_eq!((report.blobs_removed, report.bytes_freed), (1, 8));
        assert!(reg.store.size(&layer).await.unwrap().is_some());
    }
}
