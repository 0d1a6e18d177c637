//! The blob store's filesystem backend, the default.
//!
//! Layout under the root directory:
//! - `blobs/<algorithm>/<first two hex digits>/<hex>`: a blob, named by its digest;
//! - `uploads/<uuid>/data`: the bytes an upload session has received so far;
//! - `uploads/<uuid>/owner`: the repository the session was started for.
//!
//! **A file exists under `blobs/` only if its content has the digest its path names and it
//! is durable.** An upload is written under `uploads/`, its digest is checked against the
//! one the client claims, it is fsynced, and only then renamed into `blobs/` (an atomic step
//! on one filesystem), after which the directory is fsynced. A crash or an interrupted
//! upload therefore leaves at most a session under `uploads/`, never a partial or
//! unverified blob. A blob's age, for garbage collection, is its file's modification time.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::{BlobStream, LoadedSession, Session, StorageError, StoredBlobs, UploadId};
use crate::digest::{Algorithm, Digest, Hasher};

/// Blobs and upload sessions in a local directory.
pub(super) struct FsBlobs {
    root: PathBuf,
}

impl FsBlobs {
    /// Opens (creating if needed) the directories under `root`.
    pub(super) fn open(root: PathBuf) -> io::Result<FsBlobs> {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            std::fs::create_dir_all(root.join("blobs").join(alg.name()))?;
        }
        std::fs::create_dir_all(root.join("uploads"))?;
        Ok(FsBlobs { root })
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    pub(super) async fn size(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn open_blob(&self, digest: &Digest) -> Result<Option<(tokio::fs::File, u64)>, StorageError> {
        match tokio::fs::File::open(self.blob_path(digest)).await {
            Ok(f) => {
                let len = f.metadata().await?.len();
                Ok(Some((f, len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn read(&self, digest: &Digest) -> Result<Option<Bytes>, StorageError> {
        match tokio::fs::read(self.blob_path(digest)).await {
            Ok(b) => Ok(Some(b.into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores content already verified to have digest `digest`: written aside, then
    /// published like an upload.
    pub(super) async fn put_verified(&self, digest: &Digest, bytes: Bytes) -> Result<(), StorageError> {
        let dir = self.upload_dir(UploadId::new());
        let target = self.blob_path(digest);
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

    pub(super) async fn create_session(&self, id: UploadId, owner: &str) -> Result<(), StorageError> {
        let dir = self.upload_dir(id);
        tokio::fs::create_dir(&dir).await?;
        tokio::fs::write(dir.join("owner"), owner).await?;
        tokio::fs::File::create(dir.join("data")).await?;
        Ok(())
    }

    /// The session as stored: its owner, and the length and hash of its data file.
    pub(super) async fn load_session(&self, id: UploadId) -> Result<Option<LoadedSession>, StorageError> {
        let dir = self.upload_dir(id);
        let owner = match tokio::fs::read_to_string(dir.join("owner")).await {
            Ok(owner) => owner,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let data = dir.join("data");
        let hashed = blocking(move || {
            let mut h = Hasher::new(Algorithm::Sha256);
            let n = hash_into(&data, &mut h)?;
            Ok((h, n))
        })
        .await;
        match hashed {
            Ok((hasher, offset)) => Ok(Some(LoadedSession { owner, offset, hasher })),
            Err(StorageError::Io(e)) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Appends the body to the session's data file, updating its offset and hash.
    ///
    /// The body's small frames are gathered into [`WRITE_BATCH`] buffers, and each buffer is
    /// written and hashed on a blocking thread while the next one is received: one thread
    /// hop per MiB instead of one per frame, and the network never waits for the disk
    /// unless the disk falls a whole buffer behind. Writeback of what was written is started
    /// as the upload goes ([`start_writeback`]), so the fsync that completes it finds little
    /// left to flush.
    pub(super) async fn append<S, E>(
        &self,
        id: UploadId,
        session: &mut Session,
        mut body: S,
    ) -> Result<(), StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let path = self.upload_dir(id).join("data");
        let file = blocking(move || Ok(std::fs::OpenOptions::new().append(true).open(path)?)).await?;
        let mut writer = Some(Writer {
            file,
            hasher: session.hasher.take(),
            offset: session.offset,
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
            session.offset = blocking(move || Ok(file.metadata()?.len())).await?;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Cuts the session's data back to its first `len` bytes (a discarded chunk).
    pub(super) async fn truncate(&self, id: UploadId, len: u64) -> Result<(), StorageError> {
        let path = self.upload_dir(id).join("data");
        blocking(move || Ok(std::fs::OpenOptions::new().write(true).open(path)?.set_len(len)?)).await
    }

    /// Streams `len` bytes of a blob from `start`. A blocking thread reads ahead in
    /// [`READ_BATCH`] pieces, a few pieces ahead of the network, so a pull costs one thread
    /// hop per piece rather than one per 64 KiB read.
    pub(super) async fn stream_blob(
        &self,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> Result<Option<BlobStream>, StorageError> {
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
        Ok(Some(tokio_stream_from(rx).boxed()))
    }

    /// The digest of the session's data in `alg`, read back from disk.
    pub(super) async fn hash(&self, id: UploadId, alg: Algorithm) -> Result<Digest, StorageError> {
        let path = self.upload_dir(id).join("data");
        blocking(move || hash_file(&path, alg)).await
    }

    /// Makes the session's verified data the blob `digest`.
    pub(super) async fn publish(&self, id: UploadId, digest: &Digest, _size: u64) -> Result<(), StorageError> {
        let (data, target) = (self.upload_dir(id).join("data"), self.blob_path(digest));
        blocking(move || publish(&data, &target)).await
    }

    /// Deletes what the session holds; whether there was anything.
    pub(super) async fn remove_session(&self, id: UploadId) -> Result<bool, StorageError> {
        match tokio::fs::remove_dir_all(self.upload_dir(id)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Renews the blob file's modification time; whether the blob is stored.
    pub(super) async fn touch(&self, digest: &Digest) -> Result<bool, StorageError> {
        let path = self.blob_path(digest);
        blocking(move || match std::fs::File::options().append(true).open(path) {
            Ok(f) => Ok(f.set_modified(SystemTime::now()).map(|()| true)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        })
        .await
    }

    pub(super) async fn blobs_older_than(&self, cutoff: SystemTime) -> Result<StoredBlobs, StorageError> {
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

    pub(super) async fn remove_blob_if_older(
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

    /// Sessions whose data file was last written before `cutoff`.
    pub(super) async fn sessions_idle_since(&self, cutoff: SystemTime) -> Result<Vec<UploadId>, StorageError> {
        let dir = self.root.join("uploads");
        blocking(move || {
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
        .await
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.algorithm().name()).join(&d.hex()[..2]).join(d.hex())
    }

    fn upload_dir(&self, id: UploadId) -> PathBuf {
        self.root.join("uploads").join(id.to_string())
    }
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
    use crate::storage::BlobStore;

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
        assert_eq!(visible_blobs(tmp.path()), vec![FsBlobs { root: tmp.path().into() }.blob_path(&d)]);
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
