//! The content-addressed blob store on the local filesystem, and resumable upload sessions.
//!
//! Layout under the root directory:
//! - `blobs/<algorithm>/<first two hex digits>/<hex>`: a blob, named by its digest;
//! - `uploads/<uuid>/data`: the bytes an upload session has received so far;
//! - `uploads/<uuid>/owner`: the repository the session was started for.
//!
//! **Invariant: a file exists under `blobs/` only if its content has the digest its path
//! names and it is durable.** An upload is written under `uploads/`, its digest is checked
//! against the one the client claims, it is fsynced, and only then renamed into `blobs/`
//! (an atomic step on one filesystem), after which the directory is fsynced. A crash or an
//! interrupted upload therefore leaves at most a session under `uploads/`, never a partial
//! or unverified blob. Paths are built only from a [`Digest`] (checked hex) or an
//! [`UploadId`] (a parsed UUID), so no client input can name a path outside the root.
//!
//! The store knows nothing of repositories: which repository may see which blob is the
//! business of [`crate::meta`]. Blobs are streamed to and from disk, never held whole in
//! memory (manifests excepted, which are bounded).

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::digest::{Algorithm, Digest, Hasher};

/// The identifier of an upload session: a UUID, so it is always a safe file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UploadId(uuid::Uuid);

impl UploadId {
    pub fn parse(s: &str) -> Option<UploadId> {
        uuid::Uuid::try_parse(s).ok().map(UploadId)
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
    #[error("storage i/o: {0}")]
    Io(#[from] io::Error),
}

/// The blob store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct BlobStore {
    root: PathBuf,
    /// Sessions touched since start. A session's mutex serialises its writes; a session
    /// found on disk after a restart is loaded (and its hash state rebuilt) lazily.
    sessions: Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStore").field("root", &self.root).finish()
    }
}

// One slot per session, so the size of the live variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Slot {
    Unloaded,
    Live(Session),
    Gone,
}

struct Session {
    owner: String,
    /// Bytes received, which is the length of `data`.
    offset: u64,
    /// SHA-256 state over exactly `offset` bytes; `None` when it must be rebuilt from disk.
    hasher: Option<Hasher>,
}

impl BlobStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<BlobStore> {
        let root = root.into();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            std::fs::create_dir_all(root.join("blobs").join(alg.name()))?;
        }
        std::fs::create_dir_all(root.join("uploads"))?;
        Ok(BlobStore { root, sessions: Mutex::new(HashMap::new()) })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The size of a stored blob, or `None` if it is not stored.
    pub async fn size(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a stored blob for streaming, with its size.
    pub async fn open_blob(&self, digest: &Digest) -> Result<Option<(tokio::fs::File, u64)>, StorageError> {
        match tokio::fs::File::open(self.blob_path(digest)).await {
            Ok(f) => {
                let len = f.metadata().await?.len();
                Ok(Some((f, len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a whole blob into memory; for manifests, which are bounded in size.
    pub async fn read(&self, digest: &Digest) -> Result<Option<Bytes>, StorageError> {
        match tokio::fs::read(self.blob_path(digest)).await {
            Ok(b) => Ok(Some(b.into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores `bytes` as a blob if they have digest `expected` (used for manifests).
    pub async fn put_bytes(&self, expected: &Digest, bytes: Bytes) -> Result<(), StorageError> {
        if Digest::of(expected.algorithm(), &bytes) != *expected {
            return Err(StorageError::DigestMismatch);
        }
        if self.size(expected).await?.is_some() {
            return Ok(());
        }
        let dir = self.root.join("uploads").join(UploadId(uuid::Uuid::new_v4()).to_string());
        let target = self.blob_path(expected);
        blocking(move || {
            std::fs::create_dir(&dir)?;
            let data = dir.join("data");
            std::fs::write(&data, &bytes)?;
            let moved = publish(&data, &target);
            std::fs::remove_dir_all(&dir)?;
            moved
        })
        .await
    }

    /// Starts an upload session for `owner` (an opaque key naming the repository).
    pub async fn start_upload(&self, owner: &str) -> Result<UploadId, StorageError> {
        let id = UploadId(uuid::Uuid::new_v4());
        let dir = self.upload_dir(id);
        tokio::fs::create_dir(&dir).await?;
        tokio::fs::write(dir.join("owner"), owner).await?;
        tokio::fs::File::create(dir.join("data")).await?;
        let session = Session { owner: owner.to_owned(), offset: 0, hasher: Some(Hasher::new(Algorithm::Sha256)) };
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
        mut body: S,
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
        let mut file = tokio::fs::OpenOptions::new().append(true).open(self.upload_dir(id).join("data")).await?;
        let mut failure = None;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    failure = Some(StorageError::Body(e.to_string()));
                    break;
                }
            };
            if let Err(e) = file.write_all(&chunk).await {
                // How much of the chunk reached the file is unknown: re-read the length.
                session.hasher = None;
                failure = Some(e.into());
                break;
            }
            if let Some(h) = &mut session.hasher {
                h.update(&chunk);
            }
            session.offset += chunk.len() as u64;
        }
        file.flush().await?;
        if session.hasher.is_none() {
            session.offset = file.metadata().await?.len();
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if len.is_some_and(|l| l != session.offset - before) {
            file.set_len(before).await?;
            session.offset = before;
            session.hasher = None;
            return Err(StorageError::LengthMismatch);
        }
        Ok(session.offset)
    }

    /// Completes a session: verifies the digest, makes the blob durable and visible, and
    /// ends the session. On a mismatch the session is discarded and nothing is stored.
    /// Returns the blob's size.
    pub async fn complete(&self, id: UploadId, owner: &str, digest: &Digest) -> Result<u64, StorageError> {
        let slot = self.slot(id);
        let mut slot = slot.lock().await;
        let session = self.live(id, owner, &mut slot).await?;
        let size = session.offset;
        let data = self.upload_dir(id).join("data");
        let actual = match session.hasher.clone() {
            Some(h) if h.algorithm() == digest.algorithm() => h.finish(),
            _ => {
                let (path, alg) = (data.clone(), digest.algorithm());
                blocking(move || hash_file(&path, alg)).await?
            }
        };
        let dir = self.upload_dir(id);
        let result = if actual == *digest {
            let target = self.blob_path(digest);
            blocking(move || publish(&data, &target)).await.map(|()| size)
        } else {
            Err(StorageError::DigestMismatch)
        };
        *slot = Slot::Gone;
        self.lock_sessions().remove(&id);
        tokio::fs::remove_dir_all(dir).await?;
        result
    }

    /// Cancels a session and deletes what it received.
    pub async fn cancel(&self, id: UploadId, owner: &str) -> Result<(), StorageError> {
        let slot = self.slot(id);
        let mut slot = slot.lock().await;
        self.live(id, owner, &mut slot).await?;
        *slot = Slot::Gone;
        self.lock_sessions().remove(&id);
        tokio::fs::remove_dir_all(self.upload_dir(id)).await?;
        Ok(())
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.algorithm().name()).join(&d.hex()[..2]).join(d.hex())
    }

    fn upload_dir(&self, id: UploadId) -> PathBuf {
        self.root.join("uploads").join(id.to_string())
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<UploadId, Arc<tokio::sync::Mutex<Slot>>>> {
        // The map holds no invariant a panic could break, so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn slot(&self, id: UploadId) -> Arc<tokio::sync::Mutex<Slot>> {
        self.lock_sessions().entry(id).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Slot::Unloaded))).clone()
    }

    /// The live session in `slot`, loading it from disk if needed, checked against `owner`.
    async fn live<'a>(&self, id: UploadId, owner: &str, slot: &'a mut Slot) -> Result<&'a mut Session, StorageError> {
        if let Slot::Unloaded = slot {
            let dir = self.upload_dir(id);
            *slot = match tokio::fs::read_to_string(dir.join("owner")).await {
                Ok(owner) => {
                    let data = dir.join("data");
                    let hasher = blocking(move || {
                        let mut h = Hasher::new(Algorithm::Sha256);
                        let n = hash_into(&data, &mut h)?;
                        Ok((h, n))
                    })
                    .await;
                    match hasher {
                        Ok((h, offset)) => Slot::Live(Session { owner, offset, hasher: Some(h) }),
                        Err(StorageError::Io(e)) if e.kind() == io::ErrorKind::NotFound => Slot::Gone,
                        Err(e) => {
                            *slot = Slot::Unloaded;
                            return Err(e);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Slot::Gone,
                Err(e) => return Err(e.into()),
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

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StorageError::Io(io::Error::other(e)))?
}

fn hash_into(path: &Path, h: &mut Hasher) -> Result<u64, StorageError> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0; 1 << 16];
    let mut total = 0;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
}

fn hash_file(path: &Path, alg: Algorithm) -> Result<Digest, StorageError> {
    let mut h = Hasher::new(alg);
    hash_into(path, &mut h)?;
    Ok(h.finish())
}

/// Makes verified content at `data` durable and visible at `target`: fsync the file, rename
/// it into place (atomic; replacing an identical blob if two uploads race), fsync the
/// directories that changed.
fn publish(data: &Path, target: &Path) -> Result<(), StorageError> {
    std::fs::File::open(data)?.sync_all()?;
    let dir = target.parent().expect("blob paths have a parent");
    let created = !dir.exists();
    std::fs::create_dir_all(dir)?;
    std::fs::rename(data, target)?;
    std::fs::File::open(dir)?.sync_all()?;
    if created {
        let parent = dir.parent().expect("blob dirs have a parent");
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, io::Error>> + Unpin {
        futures_util::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>())
    }

    fn visible_blobs(root: &Path) -> Vec<PathBuf> {
        let mut out = vec![];
        let mut stack = vec![root.join("blobs")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p)
                } else {
                    out.push(p)
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn chunked_upload_resumes_after_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::open(tmp.path()).unwrap();
        let id = store.start_upload("r").await.unwrap();
        assert_eq!(store.append(id, "r", Some(0), Some(5), chunks(&[b"hel", b"lo"])).await.unwrap(), 5);
        drop(store);

        // A new process finds the session and continues where it stopped.
        let store = BlobStore::open(tmp.path()).unwrap();
        assert_eq!(store.upload_offset(id, "r").await.unwrap(), 5);
        assert!(matches!(store.upload_offset(id, "other").await, Err(StorageError::UploadUnknown)));
        assert!(matches!(
            store.append(id, "r", Some(3), None, chunks(&[b"x"])).await,
            Err(StorageError::RangeInvalid { offset: 5 })
        ));
        assert!(visible_blobs(tmp.path()).is_empty());
        store.append(id, "r", None, None, chunks(&[b" world"])).await.unwrap();
        let d = Digest::of(Algorithm::Sha256, b"hello world");
        assert_eq!(store.complete(id, "r", &d).await.unwrap(), 11);
        assert_eq!(store.read(&d).await.unwrap().unwrap(), Bytes::from_static(b"hello world"));
        assert!(matches!(store.upload_offset(id, "r").await, Err(StorageError::UploadUnknown)));
    }

    #[tokio::test]
    async fn wrong_digest_stores_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::open(tmp.path()).unwrap();
        let id = store.start_upload("r").await.unwrap();
        store.append(id, "r", None, None, chunks(&[b"data"])).await.unwrap();
        let wrong = Digest::of(Algorithm::Sha256, b"other");
        assert!(matches!(store.complete(id, "r", &wrong).await, Err(StorageError::DigestMismatch)));
        assert!(visible_blobs(tmp.path()).is_empty());
        assert_eq!(std::fs::read_dir(tmp.path().join("uploads")).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn interrupted_body_keeps_received_bytes_and_nothing_visible() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::open(tmp.path()).unwrap();
        let id = store.start_upload("r").await.unwrap();
        let body = futures_util::stream::iter(vec![Ok(Bytes::from_static(b"abc")), Err(io::Error::other("cut"))]);
        assert!(matches!(store.append(id, "r", None, None, body).await, Err(StorageError::Body(_))));
        assert_eq!(store.upload_offset(id, "r").await.unwrap(), 3);
        assert!(visible_blobs(tmp.path()).is_empty());
        // A chunk shorter than declared is discarded whole.
        assert!(matches!(
            store.append(id, "r", Some(3), Some(10), chunks(&[b"de"])).await,
            Err(StorageError::LengthMismatch)
        ));
        assert_eq!(store.upload_offset(id, "r").await.unwrap(), 3);
        store.append(id, "r", Some(3), Some(3), chunks(&[b"def"])).await.unwrap();
        let d = Digest::of(Algorithm::Sha512, b"abcdef");
        assert_eq!(store.complete(id, "r", &d).await.unwrap(), 6);
        assert_eq!(visible_blobs(tmp.path()), vec![store.blob_path(&d)]);
    }

    #[tokio::test]
    async fn cancel_removes_session() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::open(tmp.path()).unwrap();
        let id = store.start_upload("r").await.unwrap();
        store.append(id, "r", None, None, chunks(&[b"abc"])).await.unwrap();
        store.cancel(id, "r").await.unwrap();
        assert!(matches!(store.cancel(id, "r").await, Err(StorageError::UploadUnknown)));
        assert_eq!(std::fs::read_dir(tmp.path().join("uploads")).unwrap().count(), 0);
    }
}
