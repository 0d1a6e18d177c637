//! Berth's OCI registry core: the `/v2/` distribution API over a content-addressed blob
//! store and per-repository metadata.
//!
//! Layering: [`http`] parses requests and renders responses and errors; it calls
//! [`storage`] (bytes on disk) and [`meta`] (what each repository holds), never the other
//! way round. [`digest`], [`names`] and [`manifest`] are pure. Authentication and the
//! reactions to a push (scanning, image records) are not decided here: the embedding binary
//! supplies them as an [`Authorize`] and an [`OnPush`].
//!
//! Invariants:
//! - A blob is visible only after its digest is verified and it is durably written
//!   ([`storage`]); an interrupted upload leaves nothing visible.
//! - A repository sees only blobs and manifests linked to it; repositories are keyed by
//!   [`Namespace`], so one account's repositories are invisible to another's requests.
//! - No path is built from client input other than a checked digest or a parsed UUID.

pub mod digest;
mod error;
pub mod gc;
pub mod http;
pub mod manifest;
pub mod meta;
pub mod names;
pub mod storage;

use std::future::Future;

use bytes::Bytes;

pub use digest::{Algorithm, Digest};
pub use error::ApiError;
pub use meta::{LocalMeta, ManifestRecord, Meta, MetaError, RepositoryContents};
pub use names::{Namespace, Reference, RepoName, Repository, Tag};
pub use storage::{BlobStore, S3Location, StorageError, UploadId};

/// Everything the registry's routes need.
pub struct Registry<M, A, H> {
    /// Shared, so that readers outside the routes (an embedder's image scanner) can hold
    /// the blobs without holding the registry, whose hooks may own them.
    pub store: std::sync::Arc<BlobStore>,
    pub meta: M,
    pub auth: A,
    pub hooks: H,
    /// The realm in `WWW-Authenticate` challenges, e.g. the registry's host.
    pub realm: String,
}

/// What a request wants to do, for authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

/// The access a request asks for: an action on a repository (none for `GET /v2/`).
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub repository: Option<&'a RepoName>,
    pub action: Action,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// No or bad credentials: 401 with challenges. Each of `challenges` is one whole
    /// `WWW-Authenticate` value (sent as separate headers, since clients parse one
    /// challenge per header); none means `Basic realm="<Registry::realm>"`.
    #[error("authentication required")]
    Unauthorized { challenges: Vec<String> },
    /// Valid credentials without the right to this access: 403.
    #[error("{0}")]
    Denied(String),
}

/// Where an authorized request acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub namespace: Namespace,
    /// The repository within `namespace` that the request acts on, when it named one. It
    /// may differ from the name in the URL: an authorizer can map a path onto another
    /// namespace's repository (Berth maps `<account>/<name>` to `<name>` of that account).
    pub repository: Option<RepoName>,
}

/// Maps a request (its head; the body is never read) to the namespace and repository it
/// acts on.
pub trait Authorize: Send + Sync + 'static {
    fn authorize(
        &self,
        request: &::http::request::Parts,
        access: Access<'_>,
    ) -> impl Future<Output = Result<Grant, AuthError>> + Send;
}

/// Lets every request in, acting in one fixed namespace. For tests and local use only.
#[derive(Debug, Clone)]
pub struct AllowAll(pub Namespace);

impl Authorize for AllowAll {
    async fn authorize(&self, _: &::http::request::Parts, access: Access<'_>) -> Result<Grant, AuthError> {
        Ok(Grant { namespace: self.0.clone(), repository: access.repository.cloned() })
    }
}

/// A manifest was stored (and `tag`, if any, now points at it).
#[derive(Debug, Clone)]
pub struct PushEvent {
    pub repository: Repository,
    pub tag: Option<Tag>,
    pub digest: Digest,
    pub media_type: String,
    /// The manifest's own size.
    pub size: u64,
    /// The config and layers the manifest declares (ECR's `imageSizeInBytes`).
    pub image_size: u64,
}

/// A manifest was read with GET: an image (or an index) was pulled.
#[derive(Debug, Clone)]
pub struct PullEvent {
    pub repository: Repository,
    pub digest: Digest,
}

/// The registry's reactions: called after each successful manifest PUT (`on_push`) and
/// manifest GET (`on_pull`; a HEAD only checks and is no pull), before the response is
/// sent. A slow reaction (a scan) should be spawned rather than awaited, and one on every
/// pull must stay cheap.
pub trait OnPush: Send + Sync + 'static {
    fn on_push(&self, event: PushEvent) -> impl Future<Output = ()> + Send;

    fn on_pull(&self, _event: PullEvent) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// No reaction to pushes.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl OnPush for NoHooks {
    async fn on_push(&self, _: PushEvent) {}
}

/// Why [`Registry::put_manifest`] stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum PutManifestError {
    /// The manifest's content does not have the digest the caller named.
    #[error("manifest does not match the digest {0}")]
    DigestMismatch(Digest),
    /// Not a manifest this registry accepts (syntax, schema, media type).
    #[error("{0}")]
    Invalid(String),
    /// Config or layer blobs that the repository does not hold; push them first.
    #[error("the manifest references blobs the repository does not hold")]
    BlobsUnknown(Vec<Digest>),
    /// Manifests an index lists that the repository does not hold; push them first.
    #[error("the index references manifests the repository does not hold")]
    ManifestsUnknown(Vec<Digest>),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl<M: Meta, A, H: OnPush> Registry<M, A, H> {
    /// Stores a manifest in `repo` and points `tag` at it, as one push: the manifest must
    /// parse and everything it references must already be in the repository; then the
    /// push hook runs. Shared by the `/v2/` API and embedders' own push APIs (ECR's
    /// `PutImage`), so both accept exactly the same manifests.
    ///
    /// The manifest is stored under its digest in `expected`'s algorithm (SHA-256 if none
    /// is given), which must then equal `expected`. `content_type` may be absent, in which
    /// case the manifest's own `mediaType` decides.
    pub async fn put_manifest(
        &self,
        repo: Repository,
        tag: Option<Tag>,
        expected: Option<&Digest>,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<ManifestRecord, PutManifestError> {
        let digest = Digest::of(expected.map_or(Algorithm::Sha256, |d| d.algorithm()), &bytes);
        if let Some(e) = expected.filter(|e| **e != digest) {
            return Err(PutManifestError::DigestMismatch(e.clone()));
        }
        let parsed =
            manifest::parse(content_type, &bytes, digest.clone()).map_err(|e| PutManifestError::Invalid(e.0))?;
        // Held shared until the manifest is recorded: garbage collection cannot take a blob
        // this manifest references between the check below and the record.
        let _reachable = self.store.collection_lock().read().await;
        let mut blobs = Vec::new();
        for blob in &parsed.blobs {
            if !self.meta.blob_linked(&repo, blob).await? {
                blobs.push(blob.clone());
            }
        }
        if !blobs.is_empty() {
            return Err(PutManifestError::BlobsUnknown(blobs));
        }
        let mut manifests = Vec::new();
        for m in &parsed.manifests {
            if self.meta.manifest(&repo, m).await?.is_none() {
                manifests.push(m.clone());
            }
        }
        if !manifests.is_empty() {
            return Err(PutManifestError::ManifestsUnknown(manifests));
        }
        self.store.put_bytes(&digest, bytes).await?;
        let record = parsed.record;
        // Pushes record manifests and run their hooks one at a time, so that the hooks see
        // tags move in the order the metadata moved them: two pushes racing for one tag
        // leave it on the same image in both.
        let _order = self.store.publication_order().lock().await;
        self.meta.put_manifest(&repo, record.clone(), tag.as_ref()).await?;
        let event = PushEvent {
            repository: repo,
            tag,
            digest,
            media_type: record.media_type.clone(),
            size: record.size,
            image_size: parsed.image_size,
        };
        self.hooks.on_push(event).await;
        Ok(record)
    }
}
