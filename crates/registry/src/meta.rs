//! Repository metadata: which blobs and manifests belong to which repository, and tags.
//!
//! The blob store is shared and deduplicated; this is what scopes it. A blob pushed to one
//! repository is pullable from another only once linked there (by a push or a mount).
//! Manifest bytes live in the blob store under their digest; a [`ManifestRecord`] here says
//! that the repository holds that manifest and what it is.
//!
//! [`Meta`] is the seam: [`LocalMeta`] keeps everything in memory and appends each change,
//! fsynced, to a log file that is replayed on open. Berth's binary may back it by the control
//! plane's store instead. Every method returns only after the change is durable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io::{self, BufRead, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::digest::Digest;
use crate::names::{Repository, Tag};

/// What the registry knows about a manifest held by a repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// The manifest this one refers to (OCI 1.1 `subject`), for the referrers API.
    pub subject: Option<Digest>,
    /// `artifactType`, or for an image manifest without one, its config's media type.
    pub artifact_type: Option<String>,
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
    /// Blobs (config, layers) and manifests (of an index) this manifest references.
    pub references: Vec<Digest>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The repository does not exist (an implementation that requires repositories to be
    /// created first says so here).
    #[error("repository unknown")]
    NameUnknown,
    /// The change is not allowed.
    #[error("{0}")]
    Denied(String),
    /// The tag exists, points at another manifest, and may not be moved; the message says
    /// so in the registry's words. Push under a new tag instead.
    #[error("{0}")]
    TagImmutable(String),
    #[error("metadata: {0}")]
    Internal(String),
}

/// Repository metadata. Implementations must make each change durable before returning.
pub trait Meta: Send + Sync + 'static {
    fn link_blob(&self, repo: &Repository, digest: &Digest) -> impl Future<Output = Result<(), MetaError>> + Send;
    fn blob_linked(&self, repo: &Repository, digest: &Digest) -> impl Future<Output = Result<bool, MetaError>> + Send;
    /// Returns whether the blob was linked.
    fn unlink_blob(&self, repo: &Repository, digest: &Digest) -> impl Future<Output = Result<bool, MetaError>> + Send;
    /// Records the manifest in the repository and, if given, points `tag` at it.
    fn put_manifest(
        &self,
        repo: &Repository,
        manifest: ManifestRecord,
        tag: Option<&Tag>,
    ) -> impl Future<Output = Result<(), MetaError>> + Send;
    fn manifest(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> impl Future<Output = Result<Option<ManifestRecord>, MetaError>> + Send;
    fn resolve_tag(
        &self,
        repo: &Repository,
        tag: &Tag,
    ) -> impl Future<Output = Result<Option<Digest>, MetaError>> + Send;
    /// Removes the manifest and every tag pointing at it; returns whether it existed.
    fn delete_manifest(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> impl Future<Output = Result<bool, MetaError>> + Send;
    /// Removes one tag (the manifest stays); returns whether it existed.
    fn delete_tag(&self, repo: &Repository, tag: &Tag) -> impl Future<Output = Result<bool, MetaError>> + Send;
    /// The repository's tags in lexical order, or `None` if the repository is unknown.
    fn tags(&self, repo: &Repository) -> impl Future<Output = Result<Option<Vec<Tag>>, MetaError>> + Send;
    /// Manifests in the repository whose `subject` is `digest`.
    fn referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> impl Future<Output = Result<Vec<ManifestRecord>, MetaError>> + Send;
}

/// In-memory metadata with an optional durable append-only log.
#[derive(Clone)]
pub struct LocalMeta {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for LocalMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalMeta").finish_non_exhaustive()
    }
}

struct Inner {
    repos: HashMap<Repository, Repo>,
    log: Option<std::fs::File>,
}

#[derive(Default)]
struct Repo {
    blobs: BTreeSet<Digest>,
    manifests: BTreeMap<Digest, ManifestRecord>,
    tags: BTreeMap<Tag, Digest>,
}

/// One change, as applied and as logged (one JSON line each).
#[derive(serde::Serialize, serde::Deserialize)]
enum Op {
    LinkBlob(Repository, Digest),
    UnlinkBlob(Repository, Digest),
    PutManifest(Repository, ManifestRecord, Option<Tag>),
    DeleteManifest(Repository, Digest),
    DeleteTag(Repository, Tag),
}

impl LocalMeta {
    /// Metadata that lives only as long as the process; for tests.
    pub fn in_memory() -> LocalMeta {
        LocalMeta { inner: Arc::new(Mutex::new(Inner { repos: HashMap::new(), log: None })) }
    }

    /// Opens (creating if needed) the log at `path` and replays it. A torn last line, left
    /// by a crash during an append that was therefore never acknowledged, is dropped.
    pub fn open(path: &Path) -> io::Result<LocalMeta> {
        let mut inner = Inner { repos: HashMap::new(), log: None };
        let mut good_len = 0u64;
        if let Ok(f) = std::fs::File::open(path) {
            for line in io::BufReader::new(f).split(b'\n') {
                let line = line?;
                match serde_json::from_slice::<Op>(&line) {
                    Ok(op) => inner.apply(op),
                    Err(_) => break,
                }
                good_len += line.len() as u64 + 1;
            }
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        if log.metadata()?.len() > good_len {
            log.set_len(good_len)?;
        }
        inner.log = Some(log);
        Ok(LocalMeta { inner: Arc::new(Mutex::new(inner)) })
    }

    fn read<T>(&self, f: impl FnOnce(&HashMap<Repository, Repo>) -> T) -> T {
        f(&self.lock().repos)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs (durably) and applies a change, off the async executor.
    async fn write(&self, op: Op) -> Result<(), MetaError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(log) = &mut inner.log {
                let mut line = serde_json::to_vec(&op).map_err(|e| MetaError::Internal(e.to_string()))?;
                line.push(b'\n');
                log.write_all(&line).and_then(|()| log.sync_data()).map_err(|e| MetaError::Internal(e.to_string()))?;
            }
            inner.apply(op);
            Ok(())
        })
        .await
        .map_err(|e| MetaError::Internal(e.to_string()))?
    }
}

/// One repository's metadata, as [`LocalMeta::contents`] lists it.
#[derive(Debug, Clone)]
pub struct RepositoryContents {
    pub repository: Repository,
    pub blobs: Vec<Digest>,
    pub manifests: Vec<ManifestRecord>,
    pub tags: Vec<(Tag, Digest)>,
}

impl LocalMeta {
    /// Everything held, repository by repository (to move it to another store).
    pub fn contents(&self) -> Vec<RepositoryContents> {
        self.read(|repos| {
            repos
                .iter()
                .map(|(repository, r)| RepositoryContents {
                    repository: repository.clone(),
                    blobs: r.blobs.iter().cloned().collect(),
                    manifests: r.manifests.values().cloned().collect(),
                    tags: r.tags.iter().map(|(t, d)| (t.clone(), d.clone())).collect(),
                })
                .collect()
        })
    }

    /// Every digest some repository's manifests make live: the manifests themselves and
    /// what they reference. Garbage collection keeps these.
    pub fn referenced_blobs(&self) -> std::collections::HashSet<Digest> {
        self.read(|repos| {
            repos
                .values()
                .flat_map(|r| r.manifests.values())
                .flat_map(|m| std::iter::once(&m.digest).chain(&m.references))
                .cloned()
                .collect()
        })
    }

    /// Removes the blob's link from every repository; returns how many links there were.
    pub async fn unlink_everywhere(&self, digest: &Digest) -> Result<usize, MetaError> {
        let holders: Vec<Repository> =
            self.read(|repos| repos.iter().filter(|(_, r)| r.blobs.contains(digest)).map(|(k, _)| k.clone()).collect());
        for repo in &holders {
            self.write(Op::UnlinkBlob(repo.clone(), digest.clone())).await?;
        }
        Ok(holders.len())
    }
}

impl Inner {
    fn apply(&mut self, op: Op) {
        match op {
            Op::LinkBlob(r, d) => {
                self.repos.entry(r).or_default().blobs.insert(d);
            }
            Op::UnlinkBlob(r, d) => {
                if let Some(repo) = self.repos.get_mut(&r) {
                    repo.blobs.remove(&d);
                }
            }
            Op::PutManifest(r, m, tag) => {
                let repo = self.repos.entry(r).or_default();
                if let Some(t) = tag {
                    repo.tags.insert(t, m.digest.clone());
                }
                repo.manifests.insert(m.digest.clone(), m);
            }
            Op::DeleteManifest(r, d) => {
                if let Some(repo) = self.repos.get_mut(&r) {
                    repo.manifests.remove(&d);
                    repo.tags.retain(|_, v| *v != d);
                }
            }
            Op::DeleteTag(r, t) => {
                if let Some(repo) = self.repos.get_mut(&r) {
                    repo.tags.remove(&t);
                }
            }
        }
    }
}

impl Meta for LocalMeta {
    async fn link_blob(&self, repo: &Repository, digest: &Digest) -> Result<(), MetaError> {
        if self.read(|r| r.get(repo).is_some_and(|r| r.blobs.contains(digest))) {
            return Ok(());
        }
        self.write(Op::LinkBlob(repo.clone(), digest.clone())).await
    }

    async fn blob_linked(&self, repo: &Repository, digest: &Digest) -> Result<bool, MetaError> {
        Ok(self.read(|r| r.get(repo).is_some_and(|r| r.blobs.contains(digest))))
    }

    async fn unlink_blob(&self, repo: &Repository, digest: &Digest) -> Result<bool, MetaError> {
        if !self.blob_linked(repo, digest).await? {
            return Ok(false);
        }
        self.write(Op::UnlinkBlob(repo.clone(), digest.clone())).await?;
        Ok(true)
    }

    async fn put_manifest(
        &self,
        repo: &Repository,
        manifest: ManifestRecord,
        tag: Option<&Tag>,
    ) -> Result<(), MetaError> {
        self.write(Op::PutManifest(repo.clone(), manifest, tag.cloned())).await
    }

    async fn manifest(&self, repo: &Repository, digest: &Digest) -> Result<Option<ManifestRecord>, MetaError> {
        Ok(self.read(|r| r.get(repo).and_then(|r| r.manifests.get(digest).cloned())))
    }

    async fn resolve_tag(&self, repo: &Repository, tag: &Tag) -> Result<Option<Digest>, MetaError> {
        Ok(self.read(|r| r.get(repo).and_then(|r| r.tags.get(tag).cloned())))
    }

    async fn delete_manifest(&self, repo: &Repository, digest: &Digest) -> Result<bool, MetaError> {
        if self.manifest(repo, digest).await?.is_none() {
            return Ok(false);
        }
        self.write(Op::DeleteManifest(repo.clone(), digest.clone())).await?;
        Ok(true)
    }

    async fn delete_tag(&self, repo: &Repository, tag: &Tag) -> Result<bool, MetaError> {
        if self.resolve_tag(repo, tag).await?.is_none() {
            return Ok(false);
        }
        self.write(Op::DeleteTag(repo.clone(), tag.clone())).await?;
        Ok(true)
    }

    async fn tags(&self, repo: &Repository) -> Result<Option<Vec<Tag>>, MetaError> {
        Ok(self.read(|r| r.get(repo).map(|r| r.tags.keys().cloned().collect())))
    }

    async fn referrers(&self, repo: &Repository, digest: &Digest) -> Result<Vec<ManifestRecord>, MetaError> {
        Ok(self.read(|r| {
            r.get(repo)
                .map(|r| r.manifests.values().filter(|m| m.subject.as_ref() == Some(digest)).cloned().collect())
                .unwrap_or_default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;
    use crate::names::{Namespace, RepoName};

    fn repo(name: &str) -> Repository {
        Repository {
            namespace: Namespace { account: "000000000000".into(), region: "us-east-1".into() },
            name: RepoName::parse(name).unwrap(),
        }
    }

    fn record(bytes: &[u8], subject: Option<Digest>) -> ManifestRecord {
        ManifestRecord {
            digest: Digest::of(Algorithm::Sha256, bytes),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: bytes.len() as u64,
            subject,
            artifact_type: None,
            annotations: None,
            references: vec![],
        }
    }

    #[tokio::test]
    async fn log_replays_and_drops_torn_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("meta.log");
        let (a, b) = (repo("a"), repo("b"));
        let blob = Digest::of(Algorithm::Sha256, b"blob");
        let m = record(b"m", None);
        let r = record(b"r", Some(m.digest.clone()));
        let latest = Tag::parse("latest").unwrap();
        {
            let meta = LocalMeta::open(&path).unwrap();
            meta.link_blob(&a, &blob).await.unwrap();
            meta.put_manifest(&a, m.clone(), Some(&latest)).await.unwrap();
            meta.put_manifest(&a, r.clone(), None).await.unwrap();
        }
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"LinkBl").unwrap();
        let meta = LocalMeta::open(&path).unwrap();
        assert!(meta.blob_linked(&a, &blob).await.unwrap());
        assert!(!meta.blob_linked(&b, &blob).await.unwrap());
        assert_eq!(meta.resolve_tag(&a, &latest).await.unwrap(), Some(m.digest.clone()));
        assert_eq!(meta.referrers(&a, &m.digest).await.unwrap(), vec![r]);
        assert_eq!(meta.tags(&b).await.unwrap(), None);
        // Writing after the torn tail was cut leaves a readable log.
        assert!(meta.delete_manifest(&a, &m.digest).await.unwrap());
        drop(meta);
        let meta = LocalMeta::open(&path).unwrap();
        assert_eq!(meta.tags(&a).await.unwrap(), Some(vec![]));
        assert_eq!(meta.manifest(&a, &m.digest).await.unwrap(), None);
    }
}
