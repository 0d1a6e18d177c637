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
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

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
    /// Held shared while content is published or a blob is made reachable (a link, a
    /// manifest), and exclusively by garbage collection while it deletes ([`crate::gc`]).
    collection: tokio::sync::RwLock<()>,
    /// See [`Self::publication_order`].
    publication: tokio::sync::Mutex<()>,
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
        Ok(BlobStore {
            root,
            sessions: Mutex::new(HashMap::new()),
            collection: tokio::sync::RwLock::new(()),
            publication: tokio::sync::Mutex::new(()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The lock that keeps garbage collection from deleting a blob while it is being made
    /// reachable: hold it shared from checking that a blob exists until it is linked.
    pub fn collection_lock(&self) -> &tokio::sync::RwLock<()> {
        &self.collection
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
    ///
    /// The body's small frames are gathered into [`WRITE_BATCH`] buffers, and each buffer is
    /// written and hashed on a blocking thread while the next one is received: one thread
    /// hop per MiB instead of one per frame, and the network never waits for the disk
    /// unless the disk falls a whole buffer behind. Writeback of what was written is started
    /// as the upload goes ([`start_writeback`]), so the fsync that completes it finds little
    /// left to flush.
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
        let path = self.upload_dir(id).join("data");
        let file = blocking(move || Ok(std::fs::OpenOptions::new().append(true).open(path)?)).await?;
        let mut writer = Some(Writer {
            file,
            hasher: session.hasher.take(),
            offset: before,
            unsynced: 0,
            flushing: Default::default(),
        });
        let mut pending: Option<tokio::task::JoinHandle<(Writer, io::Result<()>)>> = None;
        let mut buf = bytes::BytesMut::new();
        let mut failure = None;
        loop {
            let next = body.next().await;
            let done = match next {
                Some(Ok(chunk)) => {
                    buf.extend_from_slice(&chunk);
                    false
                }
                Some(Err(e)) => {
                    failure = Some(StorageError::Body(e.to_string()));
                    true
                }
                None => true,
            };
            if buf.len() < WRITE_BATCH && !done {
                continue;
            }
            // Hand the gathered bytes to the disk once the previous buffer is written.
            let mut w = match pending.take() {
                Some(job) => match finish_write(job).await {
                    Ok(w) => w,
                    Err((w, e)) => {
                        writer = Some(w);
                        failure = Some(e);
                        break;
                    }
                },
                None => writer.take().expect("the writer is either idle or pending"),
            };
            if !buf.is_empty() {
                let data = buf.split().freeze();
                pending = Some(tokio::task::spawn_blocking(move || {
                    let r = w.write(&data);
                    (w, r)
                }));
            } else {
                writer = Some(w);
            }
            if done {
                break;
            }
        }
        if let Some(job) = pending.take() {
            match finish_write(job).await {
                Ok(w) => writer = Some(w),
                Err((w, e)) => {
                    writer = Some(w);
                    failure.get_or_insert(e);
                }
            }
        }
        let Writer { file, hasher, offset, .. } = writer.expect("every write job hands the writer back");
        session.hasher = hasher;
        session.offset = offset;
        if session.hasher.is_none() {
            // A write failed partway: how much reached the file is only known from the file.
            let f = file.try_clone()?;
            session.offset = blocking(move || Ok(f.metadata()?.len())).await?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if len.is_some_and(|l| l != session.offset - before) {
            blocking(move || Ok(file.set_len(before)?)).await?;
            session.offset = before;
            session.hasher = None;
            return Err(StorageError::LengthMismatch);
        }
        Ok(session.offset)
    }

    /// Streams `len` bytes of a blob from `start`, or `None` if it is not stored. A blocking
    /// thread reads ahead in [`READ_BATCH`] pieces, a few pieces ahead of the network, so a
    /// pull costs one thread hop per piece rather than one per 64 KiB read.
    pub async fn stream_blob(
        &self,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> Result<Option<impl Stream<Item = io::Result<Bytes>> + Send + 'static>, StorageError> {
        use std::io::Seek;
        let path = self.blob_path(digest);
        let file = blocking(move || match std::fs::File::open(path) {
            Ok(mut f) => {
                f.seek(io::SeekFrom::Start(start))?;
                Ok(Some(f))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await?;
        let Some(mut file) = file else { return Ok(None) };
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(READ_AHEAD);
        tokio::task::spawn_blocking(move || {
            let mut left = len;
            while left > 0 {
                let n = left.min(READ_BATCH as u64) as usize;
                // read_to_end fills the buffer without zeroing it first.
                let mut piece = Vec::with_capacity(n);
                let result = match (&mut file).take(n as u64).read_to_end(&mut piece) {
                    Ok(got) if got == n => Ok(Bytes::from(piece)),
                    Ok(_) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "blob shorter than its size")),
                    Err(e) => Err(e),
                };
                let failed = result.is_err();
                // A closed channel means the client went away: stop reading.
                if tx.blocking_send(result).is_err() || failed {
                    return;
                }
                left -= n as u64;
            }
        });
        Ok(Some(tokio_stream_from(rx)))
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
            let _publishing = self.collection.read().await;
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

    /// Serialises the recording of manifests with the reactions to them, so that whatever
    /// mirrors the metadata (the push hook) sees changes in the order they were made. Kept
    /// here, with the other locks of content publication, because every registry has
    /// exactly one store.
    pub fn publication_order(&self) -> &tokio::sync::Mutex<()> {
        &self.publication
    }

    /// Renews a stored blob's modification time, which garbage collection's grace period
    /// counts from; returns whether the blob is stored. Call it while holding
    /// [`Self::collection_lock`] shared, before making an existing blob reachable again.
    pub async fn touch(&self, digest: &Digest) -> Result<bool, StorageError> {
        let path = self.blob_path(digest);
        blocking(move || match std::fs::File::options().append(true).open(path) {
            Ok(f) => Ok(f.set_modified(SystemTime::now()).map(|()| true)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        })
        .await
    }

    /// Every stored blob, and those not modified since `cutoff`.
    pub(crate) async fn blobs_older_than(&self, cutoff: SystemTime) -> Result<StoredBlobs, StorageError> {
        let root = self.root.join("blobs");
        blocking(move || {
            let mut out = StoredBlobs::default();
            for alg in [Algorithm::Sha256, Algorithm::Sha512] {
                for prefix in read_dir_or_empty(&root.join(alg.name()))? {
                    for entry in read_dir_or_empty(&prefix.path())? {
                        let name = entry.file_name();
                        // Anything that is not a blob's name is not ours to judge.
                        let Ok(digest) = Digest::parse(&format!("{}:{}", alg.name(), name.to_string_lossy())) else {
                            continue;
                        };
                        out.seen += 1;
                        if entry.metadata()?.modified()? < cutoff {
                            out.old.push(digest);
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Deletes a blob unless it was modified since `cutoff`; returns its size if deleted.
    /// The caller holds [`Self::collection_lock`] exclusively.
    pub(crate) async fn remove_blob_if_older(
        &self,
        digest: &Digest,
        cutoff: SystemTime,
    ) -> Result<Option<u64>, StorageError> {
        let path = self.blob_path(digest);
        blocking(move || {
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            if meta.modified()? >= cutoff {
                return Ok(None);
            }
            std::fs::remove_file(&path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(Some(meta.len()))
        })
        .await
    }

    /// Deletes upload sessions that received nothing since `cutoff` and are not in use now.
    pub(crate) async fn remove_abandoned_uploads(&self, cutoff: SystemTime) -> Result<usize, StorageError> {
        let dir = self.root.join("uploads");
        let stale: Vec<UploadId> = blocking(move || {
            let mut out = Vec::new();
            for entry in read_dir_or_empty(&dir)? {
                let Some(id) = entry.file_name().to_str().and_then(UploadId::parse) else { continue };
                let data = entry.path().join("data");
                let modified = match std::fs::metadata(&data).and_then(|m| m.modified()) {
                    Ok(t) => t,
                    // A session whose start was cut off before its data file existed.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => entry.metadata()?.modified()?,
                    Err(e) => return Err(e.into()),
                };
                if modified < cutoff {
                    out.push(id);
                }
            }
            Ok(out)
        })
        .await?;
        let mut removed = 0;
        for id in stale {
            let slot = self.slot(id);
            // A session someone is writing to right now is not abandoned.
            let Ok(mut slot) = slot.try_lock() else { continue };
            let path = self.upload_dir(id);
            match tokio::fs::remove_dir_all(&path).await {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            *slot = Slot::Gone;
            self.lock_sessions().remove(&id);
            tracing::info!(upload = %id, "garbage collection removed an abandoned upload");
        }
        Ok(removed)
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

/// What [`BlobStore::blobs_older_than`] found.
#[derive(Debug, Default)]
pub(crate) struct StoredBlobs {
    pub seen: usize,
    pub old: Vec<Digest>,
}

fn read_dir_or_empty(dir: &Path) -> io::Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// How many bytes an upload gathers before writing them in one blocking call.
const WRITE_BATCH: usize = 1 << 20;
/// How many bytes an upload writes between the flushes it starts in the background.
const WRITEBACK_EVERY: u64 = 8 << 20;
/// How many bytes a download reads per blocking call, and how many such pieces it keeps
/// ready ahead of the network.
const READ_BATCH: usize = 1 << 20;
const READ_AHEAD: usize = 4;

/// An upload's data file, with the hash of and the count of everything written so far.
struct Writer {
    file: std::fs::File,
    /// `None` once a write failed partway (the content on disk is then unknown).
    hasher: Option<Hasher>,
    offset: u64,
    /// Bytes written since writeback was last started.
    unsynced: u64,
    /// Whether a background flush of this file is running.
    flushing: Arc<std::sync::atomic::AtomicBool>,
}

impl Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        use std::io::Write;
        if let Err(e) = self.file.write_all(data) {
            self.hasher = None;
            return Err(e);
        }
        if let Some(h) = &mut self.hasher {
            h.update(data);
        }
        self.offset += data.len() as u64;
        self.unsynced += data.len() as u64;
        if self.unsynced >= WRITEBACK_EVERY {
            start_writeback(&self.file, &self.flushing);
            self.unsynced = 0;
        }
        Ok(())
    }
}

async fn finish_write(
    job: tokio::task::JoinHandle<(Writer, io::Result<()>)>,
) -> Result<Writer, (Writer, StorageError)> {
    match job.await {
        Ok((w, Ok(()))) => Ok(w),
        Ok((w, Err(e))) => Err((w, e.into())),
        // A write job only panics on a bug; the runtime reports it, and the writer is lost
        // with it, so the session must be reloaded from disk.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Starts flushing what `file` holds to disk on another thread, without waiting, so that the
/// fsync which makes the blob durable has little left to do. Only a head start: at most one
/// such flush runs per upload, and its errors are ignored because that fsync reports them.
fn start_writeback(file: &std::fs::File, busy: &Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::Ordering;
    if busy.swap(true, Ordering::AcqRel) {
        return;
    }
    let (Ok(file), busy) = (file.try_clone(), busy.clone()) else {
        busy.store(false, Ordering::Release);
        return;
    };
    std::thread::spawn(move || {
        let _ = file.sync_data();
        busy.store(false, Ordering::Release);
    });
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
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
