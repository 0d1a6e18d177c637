//! The content-addressed blob store and its resumable upload sessions, on one of two
//! backends: the local filesystem ([`fs`], the default) or an S3-compatible object store
//! ([`s3`], `berth server --blobs s3://...`).
//!
//! **Invariant, on both backends: a blob is visible under its digest only once its content
//! has been verified to have that digest and is durable.** An upload is written to a
//! session first, hashed as it arrives; on completion the digest is checked and only then
//! is the content published under `blobs/`, in one atomic step of the backend (a rename on
//! the filesystem, a server-side copy or a completed multipart upload on S3). Each backend's
//! module says how it keeps this. Keys and paths are built only from a [`Digest`] (checked
//! hex) or an [`UploadId`] (a parsed UUID), so no client input names anything else.
//!
//! Layering: this module owns what both backends share (the session table and the locks of
//! garbage collection and publication, the owner check, the order of verify, publish and
//! end); a backend only moves bytes and answers what it holds. The choice is a closed enum
//! rather than a trait object: two backends, each a plain struct, dispatched in one place.
//!
//! The store knows nothing of repositories: which repository may see which blob is the
//! business of [`crate::meta`]. Blobs are streamed, never held whole in memory (manifests
//! excepted, which are bounded; the S3 backend holds at most two segments of an upload).

pub mod fs;
pub mod s3;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::Stream;

use crate::digest::{Algorithm, Digest, Hasher};

pub use s3::{S3Location, S3OpenError};

/// The identifier of an upload session: a UUID, so it is always a safe file name or key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UploadId(uuid::Uuid);

impl UploadId {
    pub fn parse(s: &str) -> Option<UploadId> {
        uuid::Uuid::try_parse(s).ok().map(UploadId)
    }

    fn new() -> UploadId {
        UploadId(uuid::Uuid::new_v4())
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No such session, or it belongs to another repository.
    #[error("upload session unknown")]
    UploadUnknown,
    /// A chunk did not start where the session's data ends.
    #[error("chunk does not start at offset {offset}")]
    RangeInvalid { offset: u64 },
    /// A chunk's length differed from its declared range; the chunk was discarded.
    #[error("chunk length differs from its declared range")]
    LengthMismatch,
    /// The content does not have the claimed digest; nothing was stored.
    #[error("content does not match digest")]
    DigestMismatch,
    /// The request body failed midway; the bytes received so far are kept.
    #[error("request body failed: {0}")]
    Body(String),
    /// The object store did not answer, or failed the request: nothing was acknowledged,
    /// and the same request may succeed when retried.
    #[error("blob storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage i/o: {0}")]
    Io(#[from] io::Error),
}

/// A blob's bytes as they stream out of the store.
pub type BlobStream = BoxStream<'static, io::Result<Bytes>>;

/// The blob store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct BlobStore {
    backend: Backend,
    /// Sessions touched since start. A session's mutex serialises its writes; a session
    /// found in the backend after a restart is loaded (and its hash state rebuilt) lazily.
    sessions: Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<Slot>>>>,
    /// Held shared while content is published or a blob is made reachable (a link, a
    /// manifest), and exclusively by garbage collection while it deletes ([`crate::gc`]).
    collection: tokio::sync::RwLock<()>,
    /// See [`Self::publication_order`].
    publication: tokio::sync::Mutex<()>,
}

enum Backend {
    Fs(fs::FsBlobs),
    S3(s3::S3Blobs),
}

/// Calls the same method on whichever backend the store has.
macro_rules! on_backend {
    ($store:expr, $b:ident => $call:expr) => {
        match &$store.backend {
            Backend::Fs($b) => $call,
            Backend::S3($b) => $call,
        }
    };
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            Backend::Fs(b) => f.debug_struct("BlobStore").field("root", &b.root()).finish(),
            Backend::S3(b) => f.debug_struct("BlobStore").field("s3", b.location()).finish(),
        }
    }
}

// One slot per session, so the size of the live variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Slot {
    Unloaded,
    Live(Session),
    Gone,
}

/// What the store knows of a live upload session.
struct Session {
    owner: String,
    /// Bytes received and stored.
    offset: u64,
    /// SHA-256 state over exactly `offset` bytes. `None` while an append runs and after one
    /// failed partway: what the backend holds is then known only from the backend, so the
    /// session is loaded again (offset and hash) before its next use.
    hasher: Option<Hasher>,
    /// A write the backend started and that may still land (an append cut off by its
    /// request going away leaves it behind): awaited before the session is used again, so
    /// no late write can change what a later append stored.
    pending: Option<tokio::task::JoinHandle<Result<(), StorageError>>>,
}

/// A session as a backend finds it: its owner, and its content's length and hash.
struct LoadedSession {
    owner: String,
    offset: u64,
    hasher: Hasher,
}

impl BlobStore {
    /// Opens (creating if needed) a store on the local filesystem rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<BlobStore> {
        Ok(Self::with_backend(Backend::Fs(fs::FsBlobs::open(root.into())?)))
    }

    /// Opens a store in the S3-compatible bucket `location`, and checks that the bucket
    /// answers (the error says what to fix). `spool` is a local directory for the copies of
    /// blobs that a caller needs as a file ([`Self::open_blob`]).
    pub async fn open_s3(location: S3Location, spool: impl Into<PathBuf>) -> Result<BlobStore, S3OpenError> {
        Ok(Self::with_backend(Backend::S3(s3::S3Blobs::open(location, spool.into()).await?)))
    }

    fn with_backend(backend: Backend) -> BlobStore {
        BlobStore {
            backend,
            sessions: Mutex::new(HashMap::new()),
            collection: tokio::sync::RwLock::new(()),
            publication: tokio::sync::Mutex::new(()),
        }
    }

    /// The local directory of the store: the blobs themselves on the filesystem backend,
    /// the spool of local copies on S3.
    pub fn root(&self) -> &Path {
        on_backend!(self, b => b.root())
    }

    /// The lock that keeps garbage collection from deleting a blob while it is being made
    /// reachable: hold it shared from checking that a blob exists until it is linked.
    pub fn collection_lock(&self) -> &tokio::sync::RwLock<()> {
        &self.collection
    }

    /// The size of a stored blob, or `None` if it is not stored.
    pub async fn size(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        on_backend!(self, b => b.size(digest).await)
    }

    /// Opens a stored blob as a local file (for readers that need `std::io::Read`, like the
    /// image scanner), with its size. On S3 the file is a private, already unlinked copy.
    pub async fn open_blob(&self, digest: &Digest) -> Result<Option<(tokio::fs::File, u64)>, StorageError> {
        on_backend!(self, b => b.open_blob(digest).await)
    }

    /// Reads a whole blob into memory; for manifests, which are bounded in size.
    pub async fn read(&self, digest: &Digest) -> Result<Option<Bytes>, StorageError> {
        on_backend!(self, b => b.read(digest).await)
    }

    /// Stores `bytes` as a blob if they have digest `expected` (used for manifests). The
    /// caller holds [`Self::collection_lock`] shared until it has recorded the blob (a
    /// tokio `RwLock` must not be taken shared twice by one task: a waiting writer would
    /// deadlock it), so it is not taken here.
    pub async fn put_bytes(&self, expected: &Digest, bytes: Bytes) -> Result<(), StorageError> {
        if Digest::of(expected.algorithm(), &bytes) != *expected {
            return Err(StorageError::DigestMismatch);
        }
        // Already stored: renewed, so that a collection does not take it for garbage before
        // the caller has recorded it.
        if self.touch(expected).await? {
            return Ok(());
        }
        on_backend!(self, b => b.put_verified(expected, bytes).await)
    }

    /// Starts an upload session for `owner` (an opaque key naming the repository).
    pub async fn start_upload(&self, owner: &str) -> Result<UploadId, StorageError> {
        let id = UploadId::new();
        on_backend!(self, b => b.create_session(id, owner).await)?;
        let session =
            Session { owner: owner.to_owned(), offset: 0, hasher: Some(Hasher::new(Algorithm::Sha256)), pending: None };
        self.lock_sessions().insert(id, Arc::new(tokio::sync::Mutex::new(Slot::Live(session))));
        Ok(id)
    }

    /// The number of bytes the session has received.
    pub async fn upload_offset(&self, id: UploadId, owner: &str) -> Result<u64, StorageError> {
        let slot = self.slot(id);
        let mut slot = slot.lock().await;
        Ok(self.live(id, owner, &mut slot).await?.offset)
    }

    /// Appends a chunk to a session and returns the new offset.
    ///
    /// `start`, when given, must equal the current offset (`RangeInvalid` otherwise), and
    /// `len`, when given, is the chunk's declared length: a chunk of another length is
    /// discarded. Without them the body is streamed as it comes; if it fails midway, the
    /// bytes received so far stay in the session, which the client can query and resume.
    pub async fn append<S, E>(
        &self,
        id: UploadId,
        owner: &str,
        start: Option<u64>,
        len: Option<u64>,
        body: S,
    ) -> Result<u64, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: fmt::Display,
    {
        let slot = self.slot(id);
        let mut slot = slot.lock().await;
        let session = self.live(id, owner, &mut slot).await?;
        let before = session.offset;
        if start.is_some_and(|s| s != before) {
            return Err(StorageError::RangeInvalid { offset: before });
        }
        on_backend!(self, b => b.append(id, session, body).await)?;
        if len.is_some_and(|l| l != session.offset - before) {
            // Until the chunk is cut off, what the session holds is known only from the
            // backend.
            session.hasher = None;
            on_backend!(self, b => b.truncate(id, before).await)?;
            session.offset = before;
            return Err(StorageError::LengthMismatch);
        }
        Ok(session.offset)
    }

    /// Streams `len` bytes of a blob from `start`, or `None` if it is not stored.
    pub async fn stream_blob(&self, digest: &Digest, start: u64, len: u64) -> Result<Option<BlobStream>, StorageError> {
        on_backend!(self, b => b.stream_blob(digest, start, len).await)
    }

    /// Completes a session: verifies the digest, makes the blob durable and visible, and
    /// ends the session. On a mismatch the session is discarded and nothing is stored.
    /// Returns the blob's size.
    pub async fn complete(&self, id: UploadId, owner: &str, digest: &Digest) -> Result<u64, StorageError> {
        let slot = self.slot(id);
        let mut slot = slot.lock().await;
        let session = self.live(id, owner, &mut slot).await?;
        let size = session.offset;
        let actual = match session.hasher.clone() {
            Some(h) if h.algorithm() == digest.algorithm() => h.finish(),
            _ => on_backend!(self, b => b.hash(id, digest.algorithm()).await)?,
        };
        let result = if actual == *digest {
            let _publishing = self.collection.read().await;
            on_backend!(self, b => b.publish(id, digest, size).await).map(|()| size)
        } else {
            Err(StorageError::DigestMismatch)
        };
        // A publication the object store failed leaves the session as it was, for the client
        // to retry its completion; a mismatch or a success ends it.
        if matches!(result, Err(StorageError::Unavailable(_))) {
            return result;
        }
        *slot = Slot::Gone;
        self.lock_sessions().remove(&id);
        on_backend!(self, b => b.remove_session(id).await)?;
        result
    }

    /// Cancels a session and deletes what it received.
    pub async fn cancel(&self, id: UploadId, owner: &str) -> Result<(), StorageError> {
        let slot = self.slot(id);
        let mut slot = slot.lock().await;
        self.live(id, owner, &mut slot).await?;
        *slot = Slot::Gone;
        self.lock_sessions().remove(&id);
        on_backend!(self, b => b.remove_session(id).await).map(drop)
    }

    /// Serialises the recording of manifests with the reactions to them, so that whatever
    /// mirrors the metadata (the push hook) sees changes in the order they were made. Kept
    /// here, with the other locks of content publication, because every registry has
    /// exactly one store.
    pub fn publication_order(&self) -> &tokio::sync::Mutex<()> {
        &self.publication
    }

    /// Renews a stored blob's age, which garbage collection's grace period counts from;
    /// returns whether the blob is stored. Call it while holding [`Self::collection_lock`]
    /// shared, before making an existing blob reachable again.
    pub async fn touch(&self, digest: &Digest) -> Result<bool, StorageError> {
        on_backend!(self, b => b.touch(digest).await)
    }

    /// Every stored blob, and those not written or touched since `cutoff`.
    pub(crate) async fn blobs_older_than(&self, cutoff: SystemTime) -> Result<StoredBlobs, StorageError> {
        on_backend!(self, b => b.blobs_older_than(cutoff).await)
    }

    /// Deletes a blob unless it was written or touched since `cutoff`; returns its size if
    /// deleted. The caller holds [`Self::collection_lock`] exclusively.
    pub(crate) async fn remove_blob_if_older(
        &self,
        digest: &Digest,
        cutoff: SystemTime,
    ) -> Result<Option<u64>, StorageError> {
        on_backend!(self, b => b.remove_blob_if_older(digest, cutoff).await)
    }

    /// Deletes upload sessions that received nothing since `cutoff` and are not in use now.
    pub(crate) async fn remove_abandoned_uploads(&self, cutoff: SystemTime) -> Result<usize, StorageError> {
        let stale = on_backend!(self, b => b.sessions_idle_since(cutoff).await)?;
        let mut removed = 0;
        for id in stale {
            let slot = self.slot(id);
            // A session someone is writing to right now is not abandoned.
            let Ok(mut slot) = slot.try_lock() else { continue };
            if on_backend!(self, b => b.remove_session(id).await)? {
                removed += 1;
            }
            *slot = Slot::Gone;
            self.lock_sessions().remove(&id);
            tracing::info!(upload = %id, "garbage collection removed an abandoned upload");
        }
        Ok(removed)
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<UploadId, Arc<tokio::sync::Mutex<Slot>>>> {
        // The map holds no invariant a panic could break, so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn slot(&self, id: UploadId) -> Arc<tokio::sync::Mutex<Slot>> {
        self.lock_sessions().entry(id).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Slot::Unloaded))).clone()
    }

    /// The live session in `slot`, loading it from the backend if it is not loaded or its
    /// state is unknown, checked against `owner`.
    async fn live<'a>(&self, id: UploadId, owner: &str, slot: &'a mut Slot) -> Result<&'a mut Session, StorageError> {
        if let Slot::Live(Session { pending, hasher, .. }) = slot {
            if let Some(write) = pending.take() {
                // Its outcome is unknown (the append that started it is gone): once it has
                // ended, what the backend holds is read back below.
                let _ = write.await;
                *hasher = None;
            }
        }
        let stale = match slot {
            Slot::Unloaded => true,
            Slot::Live(s) => s.hasher.is_none(),
            Slot::Gone => false,
        };
        if stale {
            *slot = match on_backend!(self, b => b.load_session(id).await)? {
                Some(LoadedSession { owner, offset, hasher }) => {
                    Slot::Live(Session { owner, offset, hasher: Some(hasher), pending: None })
                }
                None => Slot::Gone,
            };
            if let Slot::Gone = slot {
                self.lock_sessions().remove(&id);
            }
        }
        match slot {
            Slot::Live(s) if s.owner == owner => Ok(s),
            _ => Err(StorageError::UploadUnknown),
        }
    }
}

/// What [`BlobStore::blobs_older_than`] found.
#[derive(Debug, Default)]
pub(crate) struct StoredBlobs {
    pub seen: usize,
    pub old: Vec<Digest>,
}
