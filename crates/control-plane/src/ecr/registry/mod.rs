//! ECR's service layer over the image registry (`registry` crate): the rules that span
//! the registry's metadata (manifests, tags, blob links; what `/v2/` serves) and the
//! control plane's records (what `DescribeImages` reads).
//!
//! An image lives in both. A push goes to the registry first, whose hook ([`EcrHooks`])
//! records it here; every other change (deletions, lifecycle expiry) goes to the registry
//! first and then here, and each step is idempotent, so a retry after a failure in between
//! converges. The registry's authentication is not decided here: the protocol edge
//! supplies it as the registry's `Authorize` (`A` in [`EcrRegistry`]).
//!
//! ECR's operations that reach the registry (`PutImage`, `BatchGetImage`,
//! `BatchDeleteImage`, the layer API) live here too, with their rules (`images`,
//! `layers`), so the protocol edge only decodes, calls one of them and encodes.
//!
//! Layering: this module calls the ECR operations of its parent (`images`, `scans`,
//! `lifecycle`, `policies`); they never call it.

mod deletion;
pub mod enforcement;
pub mod gc;
mod images;
mod layers;
mod scanner;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use registry::{
    BlobStore, Digest, LocalMeta, ManifestRecord, Meta, MetaError, Namespace, OnPush, PullEvent, PushEvent, Registry,
    Repository, Tag,
};

use model::ecr::RepositoryName;
use model::{Region, Scope};

use crate::auth::TokenGrant;
use crate::ecr::Ecr;
use crate::error::{Error, Result};
use crate::state::registry::{RegistryKey, RegistryState};
use crate::state::Touched;
use crate::{Caller, ControlPlane, Ops};

pub use deletion::{stored_digest, DeletedImage};
pub use enforcement::{LifecycleFailure, LifecycleRun};
pub use images::{check_selector, FetchedImage, NewImage, PutImageResult};
pub use layers::{DownloadableLayer, LayerFailure, LayerFailureCode, LayerPart, PartLog, UploadProgress};
pub use scanner::{Scanner, CONCURRENT_SCANS};

/// The registry as ECR runs it: ECR's tag immutability on pushes, pushes and pulls
/// recorded in the control plane, and the part log of layer uploads; `A` authenticates
/// its requests.
pub type EcrRegistry<A> = Registry<EcrMeta, A, EcrHooks>;

/// Opens the registry over the blob store `blobs` (on the filesystem or S3; the binary
/// chooses), authenticated by `auth`; its metadata is the control plane's (`state::registry`),
/// after the metadata an earlier Berth kept in `dir`'s `meta.log`, if any, is moved there.
/// Its scans read the vulnerability database in `vulndb` (see `scanner::db`). Scans that a
/// stop interrupted start again.
pub async fn open<A>(
    control: Arc<ControlPlane>,
    dir: &std::path::Path,
    blobs: BlobStore,
    realm: String,
    auth: A,
    vulndb: std::path::PathBuf,
) -> std::io::Result<Arc<EcrRegistry<A>>> {
    std::fs::create_dir_all(dir)?;
    import_local_meta(&control, dir).await?;
    let store = Arc::new(blobs);
    let meta = EcrMeta { control: control.clone(), tag_writes: tokio::sync::Mutex::new(()) };
    let scanner = Scanner::new(control.clone(), store.clone(), vulndb);
    scanner.resume_interrupted();
    let hooks = EcrHooks { control, pulls: Mutex::new(HashMap::new()), scanner, parts: PartLog::default() };
    Ok(Arc::new(Registry { store, meta, auth, hooks, realm }))
}

/// The log earlier Berths kept the registry's metadata in, beside the blobs.
const LOCAL_META: &str = "meta.log";

/// Moves the registry metadata of `dir/meta.log` (written by Berth before it kept it with
/// the control plane's records) into the control plane, in one durable change, and then
/// renames the log so that it is not read again.
async fn import_local_meta(control: &ControlPlane, dir: &std::path::Path) -> std::io::Result<()> {
    let path = dir.join(LOCAL_META);
    if !path.exists() {
        return Ok(());
    }
    let contents = LocalMeta::open(&path)?.contents();
    let repositories = contents.len();
    control
        .write(move |txn| {
            for c in contents {
                let r = c.repository;
                for d in c.blobs {
                    txn.state.registry.blobs.insert((r.clone(), d.clone()), ());
                    txn.touch(Touched::Registry(RegistryKey::Blob(r.clone(), d)));
                }
                for m in c.manifests {
                    let d = m.digest.clone();
                    txn.state.registry.manifests.insert((r.clone(), d.clone()), Arc::new(m));
                    txn.touch(Touched::Registry(RegistryKey::Manifest(r.clone(), d)));
                }
                for (t, d) in c.tags {
                    txn.state.registry.tags.insert((r.clone(), t.clone()), d);
                    txn.touch(Touched::Registry(RegistryKey::Tag(r.clone(), t)));
                }
            }
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)?;
    std::fs::rename(&path, dir.join(format!("{LOCAL_META}.imported")))?;
    tracing::info!(repositories, "moved the registry's metadata from meta.log into the control plane's store");
    Ok(())
}

/// The registry's metadata, held in the control plane's state (`state::registry`) and
/// changed through its writer, with ECR's rule on top: a push may not move an immutable
/// tag (`imageTagMutability` and its exclusion filters). The same manifest pushed again
/// under its tag changes nothing and is allowed. Reads are the published view's; each
/// change is durable before it returns, as `Meta` requires.
pub struct EcrMeta {
    control: Arc<ControlPlane>,
    /// Serialises tagged manifest writes, so that two pushes racing for one immutable tag
    /// cannot both find it free.
    tag_writes: tokio::sync::Mutex<()>,
}

impl EcrMeta {
    fn tag_is_immutable(&self, repo: &Repository, tag: &Tag) -> bool {
        let (Some(scope), Ok(name)) = (scope_of(&repo.namespace), RepositoryName::parse(repo.name.as_str())) else {
            return false;
        };
        self.control.view().repositories.get(&(scope, name)).is_some_and(|r| r.tag_is_immutable(tag.as_str()))
    }

    fn read<T>(&self, f: impl FnOnce(&RegistryState) -> T) -> T {
        f(&self.control.view().registry)
    }

    /// Applies `f` to the registry's state durably, recording what it touched.
    async fn change<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut RegistryState, &mut Vec<RegistryKey>) -> R + Send + 'static,
    ) -> Result<R, MetaError> {
        self.control
            .write(move |txn| {
                let mut touched = Vec::new();
                let r = f(&mut txn.state.registry, &mut touched);
                for k in touched {
                    txn.touch(Touched::Registry(k));
                }
                Ok(r)
            })
            .await
            .map_err(|e| MetaError::Internal(e.to_string()))
    }
}

impl Meta for EcrMeta {
    async fn link_blob(&self, repo: &Repository, digest: &Digest) -> Result<(), MetaError> {
        let key = (repo.clone(), digest.clone());
        if self.read(|r| r.blobs.contains_key(&key)) {
            return Ok(());
        }
        self.change(move |r, touched| {
            r.blobs.insert(key.clone(), ());
            touched.push(RegistryKey::Blob(key.0, key.1));
        })
        .await
    }
    async fn blob_linked(&self, repo: &Repository, digest: &Digest) -> Result<bool, MetaError> {
        Ok(self.read(|r| r.blobs.contains_key(&(repo.clone(), digest.clone()))))
    }
    async fn unlink_blob(&self, repo: &Repository, digest: &Digest) -> Result<bool, MetaError> {
        let key = (repo.clone(), digest.clone());
        self.change(move |r, touched| {
            let was = r.blobs.remove(&key).is_some();
            if was {
                touched.push(RegistryKey::Blob(key.0, key.1));
            }
            was
        })
        .await
    }
    async fn put_manifest(
        &self,
        repo: &Repository,
        manifest: ManifestRecord,
        tag: Option<&Tag>,
    ) -> Result<(), MetaError> {
        let _serial = match tag {
            Some(_) => Some(self.tag_writes.lock().await),
            None => None,
        };
        if let Some(tag) = tag {
            let current = self.resolve_tag(repo, tag).await?;
            if current.is_some_and(|d| d != manifest.digest) && self.tag_is_immutable(repo, tag) {
                return Err(MetaError::TagImmutable(format!(
                    "The image tag '{}' already exists in the '{}' repository and cannot be overwritten because the tag is immutable.",
                    tag.as_str(),
                    repo.name.as_str()
                )));
            }
        }
        let (repo, tag) = (repo.clone(), tag.cloned());
        self.change(move |r, touched| {
            let digest = manifest.digest.clone();
            r.manifests.insert((repo.clone(), digest.clone()), Arc::new(manifest));
            touched.push(RegistryKey::Manifest(repo.clone(), digest.clone()));
            if let Some(tag) = tag {
                r.tags.insert((repo.clone(), tag.clone()), digest);
                touched.push(RegistryKey::Tag(repo, tag));
            }
        })
        .await
    }
    async fn manifest(&self, repo: &Repository, digest: &Digest) -> Result<Option<ManifestRecord>, MetaError> {
        Ok(self.read(|r| r.manifests.get(&(repo.clone(), digest.clone())).map(|m| m.as_ref().clone())))
    }
    async fn resolve_tag(&self, repo: &Repository, tag: &Tag) -> Result<Option<Digest>, MetaError> {
        Ok(self.read(|r| r.tags.get(&(repo.clone(), tag.clone())).cloned()))
    }
    async fn delete_manifest(&self, repo: &Repository, digest: &Digest) -> Result<bool, MetaError> {
        let (repo, digest) = (repo.clone(), digest.clone());
        self.change(move |r, touched| {
            if r.manifests.remove(&(repo.clone(), digest.clone())).is_none() {
                return false;
            }
            touched.push(RegistryKey::Manifest(repo.clone(), digest.clone()));
            let tags: Vec<Tag> =
                r.repository_tags(&repo).filter(|(_, d)| **d == digest).map(|(t, _)| t.clone()).collect();
            for t in tags {
                r.tags.remove(&(repo.clone(), t.clone()));
                touched.push(RegistryKey::Tag(repo.clone(), t));
            }
            true
        })
        .await
    }
    async fn delete_tag(&self, repo: &Repository, tag: &Tag) -> Result<bool, MetaError> {
        let key = (repo.clone(), tag.clone());
        self.change(move |r, touched| {
            let was = r.tags.remove(&key).is_some();
            if was {
                touched.push(RegistryKey::Tag(key.0, key.1));
            }
            was
        })
        .await
    }
    async fn tags(&self, repo: &Repository) -> Result<Option<Vec<Tag>>, MetaError> {
        Ok(self.read(|r| r.knows(repo).then(|| r.repository_tags(repo).map(|(t, _)| t.clone()).collect())))
    }
    async fn referrers(&self, repo: &Repository, digest: &Digest) -> Result<Vec<ManifestRecord>, MetaError> {
        Ok(self.read(|r| {
            r.repository_manifests(repo)
                .filter(|m| m.subject.as_ref() == Some(digest))
                .map(|m| m.as_ref().clone())
                .collect()
        }))
    }
}

/// Garbage collection marks what the registry's manifests reference and unlinks the rest.
impl registry::gc::Collectable for EcrMeta {
    fn referenced_blobs(&self) -> std::collections::HashSet<Digest> {
        self.read(|r| {
            r.manifests.values().flat_map(|m| std::iter::once(&m.digest).chain(&m.references)).cloned().collect()
        })
    }
    async fn unlink_everywhere(&self, digest: &Digest) -> Result<usize, MetaError> {
        let digest = digest.clone();
        self.change(move |r, touched| {
            let holders: Vec<Repository> =
                r.blobs.keys().filter(|(_, d)| *d == digest).map(|(repo, _)| repo.clone()).collect();
            for repo in &holders {
                r.blobs.remove(&(repo.clone(), digest.clone()));
                touched.push(RegistryKey::Blob(repo.clone(), digest.clone()));
            }
            holders.len()
        })
        .await
    }
}

/// The account and region a registry namespace stands for.
pub fn scope_of(ns: &Namespace) -> Option<Scope> {
    Some(Scope { account: model::AccountId::parse(&ns.account).ok()?, region: Region::parse(&ns.region).ok()? })
}

/// The registry's key of repository `name` of `scope`.
pub fn registry_repository(scope: &Scope, name: &RepositoryName) -> Result<Repository> {
    Ok(Repository {
        namespace: Namespace { account: scope.account.to_string(), region: scope.region.as_str().to_string() },
        // ECR's names are a subset of the registry's, so this cannot fail.
        name: registry::RepoName::parse(name.as_str()).map_err(internal)?,
    })
}

/// The caller's repository `name` (which must exist, in its own registry) and the
/// repository's key in the registry.
fn target(
    ops: &Ops<'_, Ecr>,
    caller: &Caller,
    registry_id: Option<&str>,
    name: &str,
) -> Result<(Arc<model::ecr::Repository>, Repository)> {
    crate::ecr::check_registry_id(caller, registry_id)?;
    let repo = ops.repository(caller, name)?;
    let target = registry_repository(&caller.scope, &repo.name)?;
    Ok((repo, target))
}

/// A failure inside Berth: the detail goes to the log, the caller gets a server error.
fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// A pull of an image is recorded at most once per this interval. ECR itself refreshes
/// `lastRecordedPullTime` only about daily; a minute keeps the time close to the truth
/// while a busy image (every task start pulls it) costs one durable write a minute, not
/// one per pull.
const PULL_RECORD_INTERVAL: Duration = Duration::from_secs(60);
/// Past this many remembered pulls, those older than the interval are forgotten.
const PULL_MEMORY: usize = 10_000;

/// What ECR adds to the registry's pushes and pulls: records every pushed image in the
/// control plane, where `DescribeImages` and `ListImages` read them, durably and per
/// account; the time of pulls (`lastRecordedPullTime`); scans; and the part sizes of
/// uploads through ECR's layer-upload API.
pub struct EcrHooks {
    control: Arc<ControlPlane>,
    /// When a pull of each image was last recorded.
    pulls: Mutex<HashMap<(Namespace, String, Digest), Instant>>,
    /// Scans pushed images of repositories with scan on push; `StartImageScan` uses it too.
    pub scanner: Scanner,
    /// The part sizes of layer uploads in progress (ECR's rule on small parts).
    parts: PartLog,
}

impl EcrHooks {
    /// Whether a pull of this image should be recorded now; if so, it counts as recorded.
    fn due(&self, key: (Namespace, String, Digest)) -> bool {
        let now = Instant::now();
        let mut pulls = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
        if pulls.get(&key).is_some_and(|t| now.duration_since(*t) < PULL_RECORD_INTERVAL) {
            return false;
        }
        if pulls.len() >= PULL_MEMORY {
            pulls.retain(|_, t| now.duration_since(*t) < PULL_RECORD_INTERVAL);
        }
        pulls.insert(key, now);
        true
    }
}

impl OnPush for EcrHooks {
    async fn on_pull(&self, event: PullEvent) {
        let repository = event.repository.name.as_str().to_string();
        let key = (event.repository.namespace.clone(), repository.clone(), event.digest.clone());
        let Some(scope) = scope_of(&event.repository.namespace) else { return };
        if !self.due(key) {
            return;
        }
        if let Err(e) = self.control.ecr().record_pull(scope, &repository, event.digest.to_string()).await {
            tracing::warn!(error = %e, %repository, "recording a pull failed");
        }
    }

    async fn on_push(&self, event: PushEvent) {
        let ns = &event.repository.namespace;
        let (Ok(account), Ok(region)) = (model::AccountId::parse(&ns.account), Region::parse(&ns.region)) else {
            tracing::error!(account = %ns.account, "a push in a namespace that is not an account; not recorded");
            return;
        };
        let pushed = crate::ecr::Pushed {
            scope: Scope { account, region },
            repository: event.repository.name.as_str().to_string(),
            digest: event.digest.to_string(),
            tag: event.tag.as_ref().map(|t| t.as_str().to_string()),
            size: i64::try_from(event.image_size).unwrap_or(i64::MAX),
            media_type: event.media_type.clone(),
        };
        match self.control.ecr().record_push(pushed).await {
            Ok(image) => self.scanner.scan_on_push(&image),
            Err(e) => {
                tracing::error!(error = %e, repository = %event.repository.name.as_str(), "recording a pushed image failed")
            }
        }
    }
}

impl Ops<'_, Ecr> {
    /// Which repository a registry path names for the account holding `grant`, and
    /// whether that account may do `actions` there. The caller's own repository of that
    /// name comes first; otherwise `<account-id>/<name>` names repository `<name>` of that
    /// account (same region), which its repository policy must open to the caller. As in
    /// ECR, images go only into repositories created beforehand. Every refusal is an
    /// [`Error::Denied`] or [`Error::Invalid`] whose message the registry answers.
    pub fn registry_target(&self, grant: &TokenGrant, path: &str, actions: &[&str]) -> Result<(Scope, RepositoryName)> {
        let region = Region::parse(&grant.region)?;
        let own = Scope { account: grant.account.clone(), region: region.clone() };
        let state = self.view();
        if let Ok(name) = RepositoryName::parse(path) {
            if state.repositories.contains_key(&(own.clone(), name.clone())) {
                return Ok((own, name));
            }
        }
        let other = path.split_once('/').and_then(|(account, rest)| {
            Some((model::AccountId::parse(account).ok()?, RepositoryName::parse(rest).ok()?))
        });
        let Some((account, name)) = other else {
            return Err(Error::Denied(format!(
                "The repository with name '{path}' does not exist in the registry with id '{}'. Create it with `aws ecr create-repository --repository-name {path}`.",
                grant.account
            )));
        };
        let owner = Scope { account, region };
        crate::ecr::policies::check_repository_access(&state, &grant.account, &owner, &name, actions)?;
        // The owner passes the policy check even for a repository it never created, which
        // must not take images either.
        if !state.repositories.contains_key(&(owner.clone(), name.clone())) {
            return Err(Error::Denied(format!(
                "The repository with name '{name}' does not exist in the registry with id '{}'. Create it with `aws ecr create-repository --repository-name {name}`.",
                owner.account
            )));
        }
        Ok((owner, name))
    }
}

#[cfg(test)]
mod tests {
    use registry::{Algorithm, RepoName};

    use super::*;

    fn repository(name: &str) -> Repository {
        Repository {
            namespace: Namespace { account: "123456789012".into(), region: "us-east-1".into() },
            name: RepoName::parse(name).unwrap(),
        }
    }

    fn manifest(bytes: &[u8], references: Vec<Digest>) -> ManifestRecord {
        ManifestRecord {
            digest: Digest::of(Algorithm::Sha256, bytes),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: bytes.len() as u64,
            subject: None,
            artifact_type: None,
            annotations: None,
            references,
        }
    }

    #[tokio::test]
    async fn the_metadata_of_an_earlier_berths_meta_log_moves_into_the_store_once() {
        let dir = tempfile::tempdir().unwrap();
        let (web, api) = (repository("web"), repository("api"));
        let layer = Digest::of(Algorithm::Sha256, b"layer");
        let (kept, gone) = (manifest(b"kept", vec![layer.clone()]), manifest(b"gone", vec![]));
        {
            let old = LocalMeta::open(&dir.path().join(LOCAL_META)).unwrap();
            old.link_blob(&web, &layer).await.unwrap();
            old.put_manifest(&web, kept.clone(), Some(&Tag::parse("v1").unwrap())).await.unwrap();
            old.put_manifest(&web, gone.clone(), Some(&Tag::parse("v0").unwrap())).await.unwrap();
            old.delete_manifest(&web, &gone.digest).await.unwrap();
            old.put_manifest(&api, gone.clone(), None).await.unwrap();
        }
        let open = || {
            let sealer = crate::sealing::Sealer::for_data_dir(dir.path()).unwrap();
            let store = Arc::new(store::SqliteStore::open(&dir.path().join("berth.db")).unwrap());
            Arc::new(ControlPlane::open_with(store, crate::Config { sealer, ..Default::default() }).unwrap())
        };
        let control = open();
        import_local_meta(&control, dir.path()).await.unwrap();
        assert!(!dir.path().join(LOCAL_META).exists(), "the log is not read again");
        drop(control);

        // What the log held is in the store, as durably as every record.
        let control = open();
        import_local_meta(&control, dir.path()).await.unwrap();
        let meta = EcrMeta { control, tag_writes: tokio::sync::Mutex::new(()) };
        assert!(meta.blob_linked(&web, &layer).await.unwrap());
        assert_eq!(meta.resolve_tag(&web, &Tag::parse("v1").unwrap()).await.unwrap(), Some(kept.digest.clone()));
        assert_eq!(meta.resolve_tag(&web, &Tag::parse("v0").unwrap()).await.unwrap(), None);
        assert_eq!(meta.manifest(&web, &gone.digest).await.unwrap(), None);
        assert_eq!(meta.manifest(&api, &gone.digest).await.unwrap(), Some(gone.clone()));
        assert_eq!(meta.tags(&web).await.unwrap().unwrap(), vec![Tag::parse("v1").unwrap()]);
        assert_eq!(meta.tags(&api).await.unwrap().unwrap(), Vec::<Tag>::new());
        assert_eq!(meta.tags(&repository("never")).await.unwrap(), None);
        let live = registry::gc::Collectable::referenced_blobs(&meta);
        assert!(live.contains(&layer) && live.contains(&kept.digest) && live.contains(&gone.digest));
        // Deleting a manifest takes its tags with it; unlinking reaches every repository.
        assert!(meta.delete_manifest(&web, &kept.digest).await.unwrap());
        assert_eq!(meta.tags(&web).await.unwrap().unwrap(), Vec::<Tag>::new());
        assert_eq!(registry::gc::Collectable::unlink_everywhere(&meta, &layer).await.unwrap(), 1);
        assert!(!meta.blob_linked(&web, &layer).await.unwrap());
    }
}
