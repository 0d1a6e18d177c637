//! The blob store's S3-compatible backend (`berth server --blobs s3://BUCKET?endpoint=...`).
//!
//! Keys in the bucket (under the location's optional prefix):
//! - `blobs/<algorithm>/<hex>`: a blob, named by its digest;
//! - `touched/<algorithm>/<hex>`: an empty marker whose age renews the blob's (see below);
//! - `uploads/<uuid>/owner`: the repository an upload session was started for;
//! - `uploads/<uuid>/data/<offset, 20 digits>`: a segment of the session's bytes, starting
//!   at that offset;
//! - `uploads/<uuid>/multipart/<upload id, percent-encoded>`: a multipart upload that the
//!   session's publication started, kept until the upload completes or is aborted; its body
//!   is the key the upload is for.
//!
//! **An object exists under `blobs/` only if its content has the digest its key names.**
//! An upload's bytes are hashed as they arrive and stored as segments under `uploads/`,
//! never under `blobs/`. Completion checks the digest first and only then publishes, with
//! one step that S3 makes atomic: a server-side `CopyObject` of a lone segment, or a
//! multipart upload of the blob's key from the segments (`UploadPartCopy`, no bytes through
//! Berth) that becomes visible, whole, when `CompleteMultipartUpload` returns. A crash or a
//! failed request in between leaves segments and perhaps an unfinished multipart upload,
//! never a partial or unverified blob. The unfinished upload is not forgotten: it is
//! recorded in the session before any part is sent, and removing the session (garbage
//! collection finds it idle, since its segments stay too) aborts every upload recorded there
//! before deleting the rest; only a crash in the one request between starting an upload and
//! recording it leaves an (empty) upload to a bucket lifecycle rule. This needs no
//! `ListMultipartUploads`, which not every S3-compatible store answers (s3s-fs does not).
//! A manifest, verified in memory, is one `PutObject`,
//! which is atomic too. Durability is the store's: S3 acknowledges a write once it is
//! durable, and nothing is acknowledged to a client before that. The segments published are
//! the bytes that were hashed: a session's writes are serialised by its lock, and a write
//! left in flight by a request that went away is awaited before the session is used again
//! ([`Session::pending`]), after which the hash is rebuilt from what the store holds; so no
//! late write replaces a segment once it has been hashed.
//!
//! Why segments rather than one multipart upload per session: S3 lets no one read the
//! parts of an unfinished multipart upload, so after a restart the session's hash could not
//! be rebuilt, and a resumed chunked upload (PATCH with `Content-Range`, as on the
//! filesystem) would be lost. Segments are ordinary objects: a restarted Berth lists them
//! for the offset and reads them back for the hash. Keys carry the offset, so a write that
//! is repeated lands on the same key. Segments are [`SEGMENT_BYTES`] long except where a
//! request body ended; S3 wants multipart parts of at least [`MIN_PART_BYTES`] but the last,
//! so a run of short segments (small chunks) is read back and sent as one part instead of
//! copied. Publication is limited by S3's 10,000 parts: blobs up to about 78 GiB.
//!
//! A blob's age, for garbage collection, is the later of its object's `LastModified` and
//! its marker's: S3 cannot renew an object's time without rewriting it (a copy onto itself,
//! which S3 refuses above 5 GiB), so renewing writes the empty marker instead. Times are the
//! store's clock; the grace periods (an hour, a day) dwarf any skew with Berth's.
//!
//! Memory: an append holds at most two segments (one being received, one being written),
//! publication at most one part of gathered short segments (under 13 MiB); pulls stream the
//! object's body as S3 sends it.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::{BlobStream, LoadedSession, Session, StorageError, StoredBlobs, UploadId};
use crate::digest::{Algorithm, Digest, Hasher};
pub use location::{S3Location, S3OpenError};
use objects::{unavailable_body, Listed, Objects};

mod location;
mod objects;

/// How long a segment is, except where a request body ended.
const SEGMENT_BYTES: usize = 8 << 20;
/// S3's least size of a multipart part other than the last.
const MIN_PART_BYTES: u64 = 5 << 20;
/// What a multipart upload's id keeps unencoded in the key of its record.
const UPLOAD_ID_KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// Blobs and upload sessions in an S3 bucket.
pub(super) struct S3Blobs {
    objects: Objects,
    location: S3Location,
    /// Where [`Self::open_blob`] puts its (unlinked) local copies.
    spool: PathBuf,
}

/// One segment of an upload session, as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    offset: u64,
    len: u64,
}

impl S3Blobs {
    /// Connects to the bucket (see [`Objects::connect`]) and prepares the local spool.
    pub(super) async fn open(location: S3Location, spool: PathBuf) -> Result<S3Blobs, S3OpenError> {
        prepare_spool(&spool).map_err(|source| S3OpenError::Spool { path: spool.clone(), source })?;
        let objects = Objects::connect(&location).await?;
        tracing::info!(%location, "registry blobs are in S3-compatible storage");
        Ok(S3Blobs { objects, location, spool })
    }

    pub(super) fn location(&self) -> &S3Location {
        &self.location
    }

    pub(super) fn root(&self) -> &Path {
        &self.spool
    }

    pub(super) async fn size(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        Ok(self.objects.head(&self.blob_key(digest)).await?.map(|(len, _)| len))
    }

    /// Copies the blob into an unlinked file of the spool, for a reader that needs a file.
    pub(super) async fn open_blob(&self, digest: &Digest) -> Result<Option<(tokio::fs::File, u64)>, StorageError> {
        let Some(mut body) = self.objects.get(&self.blob_key(digest), None).await? else { return Ok(None) };
        let path = self.spool.join(UploadId::new().to_string());
        let mut file = tokio::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).await?;
        // Unlinked at once: the copy goes away with the last handle, whatever happens.
        tokio::fs::remove_file(&path).await?;
        let mut len = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| unavailable_body("GetObject", e))?;
            file.write_all(&chunk).await?;
            len += chunk.len() as u64;
        }
        file.flush().await?;
        file.seek(io::SeekFrom::Start(0)).await?;
        Ok(Some((file, len)))
    }

    pub(super) async fn read(&self, digest: &Digest) -> Result<Option<Bytes>, StorageError> {
        self.objects.get_bytes(&self.blob_key(digest)).await
    }

    /// Stores content already verified to have digest `digest`: one `PutObject`, which
    /// S3 makes visible whole or not at all.
    pub(super) async fn put_verified(&self, digest: &Digest, bytes: Bytes) -> Result<(), StorageError> {
        self.objects.put(self.blob_key(digest), bytes).await
    }

    pub(super) async fn create_session(&self, id: UploadId, owner: &str) -> Result<(), StorageError> {
        self.objects.put(self.owner_key(id), Bytes::copy_from_slice(owner.as_bytes())).await
    }

    /// The session as stored: its owner, and the length and hash of its segments, read
    /// back in order.
    pub(super) async fn load_session(&self, id: UploadId) -> Result<Option<LoadedSession>, StorageError> {
        let Some(owner) = self.objects.get_bytes(&self.owner_key(id)).await? else { return Ok(None) };
        let owner = String::from_utf8_lossy(&owner).into_owned();
        let mut hasher = Hasher::new(Algorithm::Sha256);
        let offset = self.hash_segments(id, &mut hasher).await?;
        Ok(Some(LoadedSession { owner, offset, hasher }))
    }

    /// Appends the body to the session as segments, hashing it as it arrives.
    ///
    /// A segment is written while the next one is received, so the network waits for the
    /// store only when the store falls a whole segment behind. The write in flight is kept
    /// in the session ([`Session::pending`]), so that if this request goes away midway the
    /// next use of the session waits for it before reading back what is stored.
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
        let mut hasher = session.hasher.take().expect("a live session's hash is known");
        let mut offset = session.offset;
        let mut buf = BytesMut::new();
        let mut failure = None;
        loop {
            let done = match body.next().await {
                Some(Ok(chunk)) => {
                    hasher.update(&chunk);
                    buf.extend_from_slice(&chunk);
                    false
                }
                Some(Err(e)) => {
                    // What was received is kept, as on the filesystem.
                    failure = Some(StorageError::Body(e.to_string()));
                    true
                }
                None => true,
            };
            while buf.len() >= SEGMENT_BYTES || (done && !buf.is_empty()) {
                let data = buf.split_to(buf.len().min(SEGMENT_BYTES)).freeze();
                if let Some(write) = session.pending.take() {
                    // A failed write leaves the hash unknown; the session is read back.
                    join(write).await?;
                }
                let key = self.segment_key(id, offset);
                offset += data.len() as u64;
                let objects = self.objects.clone();
                session.pending = Some(tokio::spawn(async move { objects.put(key, data).await }));
            }
            if done {
                break;
            }
        }
        if let Some(write) = session.pending.take() {
            join(write).await?;
        }
        session.offset = offset;
        session.hasher = Some(hasher);
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Deletes the segments from offset `len` on (a discarded chunk: it began a segment of
    /// its own at `len`).
    pub(super) async fn truncate(&self, id: UploadId, len: u64) -> Result<(), StorageError> {
        let listed = self.objects.list(&self.segment_prefix(id)).await?;
        let keys = listed.into_iter().filter(|o| segment_offset(&o.key).is_some_and(|at| at >= len)).map(|o| o.key);
        self.objects.delete(keys.collect()).await
    }

    /// Streams `len` bytes of a blob from `start` with a ranged `GetObject`.
    pub(super) async fn stream_blob(
        &self,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> Result<Option<BlobStream>, StorageError> {
        let key = self.blob_key(digest);
        if len == 0 {
            // An empty range is no range S3 takes; the blob need only exist.
            return Ok(self.objects.head(&key).await?.map(|_| futures_util::stream::empty().boxed()));
        }
        let Some(body) = self.objects.get(&key, Some((start, len))).await? else { return Ok(None) };
        let stream = futures_util::stream::unfold(body, |mut body| async move {
            let chunk = body.next().await?;
            Some((chunk.map_err(io::Error::other), body))
        });
        Ok(Some(stream.boxed()))
    }

    /// The digest of the session's data in `alg`, read back from the store.
    pub(super) async fn hash(&self, id: UploadId, alg: Algorithm) -> Result<Digest, StorageError> {
        let mut hasher = Hasher::new(alg);
        self.hash_segments(id, &mut hasher).await?;
        Ok(hasher.finish())
    }

    /// Makes the session's verified segments the blob `digest`, in one atomic step of the
    /// store (see the module's doc).
    pub(super) async fn publish(&self, id: UploadId, digest: &Digest, size: u64) -> Result<(), StorageError> {
        let (segments, _) = self.segments(id).await?;
        let stored: u64 = segments.iter().map(|s| s.len).sum();
        if stored != size {
            // Only a change behind Berth's back can do this; publishing would break the
            // invariant, so nothing is.
            return Err(StorageError::Io(io::Error::other(format!(
                "upload {id} holds {stored} bytes in the store, {size} were verified"
            ))));
        }
        let target = self.blob_key(digest);
        match segments.as_slice() {
            [] => self.objects.put(target, Bytes::new()).await,
            [only] => self.objects.copy(&self.segment_key(id, only.offset), &target).await,
            many => {
                let upload = self.start_recorded_multipart(id, &target).await?;
                let done = match self.upload_parts(id, &target, &upload, many).await {
                    Ok(parts) => self.objects.complete_multipart(&target, &upload, parts).await,
                    Err(e) => Err(e),
                };
                if done.is_err() {
                    if let Err(e) = self.objects.abort_multipart(&target, &upload).await {
                        // The record stays, and removing the session tries again.
                        tracing::warn!(upload = %id, error = %e, "an unfinished multipart upload stays until its session is removed");
                        return done;
                    }
                }
                self.forget_multipart(id, &upload).await;
                done
            }
        }
    }

    /// Starts a multipart upload of `target` and records it in the session, before any part
    /// is sent: from then on a crash leaves the record, and removing the session aborts the
    /// upload. Returns the upload's id.
    async fn start_recorded_multipart(&self, id: UploadId, target: &str) -> Result<String, StorageError> {
        let upload = self.objects.start_multipart(target).await?;
        // A crash before this one request leaves an upload that no record names, for a bucket
        // lifecycle rule (`AbortIncompleteMultipartUpload`) to remove. That is acceptable:
        // it holds no part yet, so next to no space, and the record cannot come first, since
        // the store names the upload only as it starts it.
        let record = Bytes::copy_from_slice(target.as_bytes());
        if let Err(e) = self.objects.put(self.multipart_key(id, &upload), record).await {
            if let Err(abort) = self.objects.abort_multipart(target, &upload).await {
                tracing::warn!(upload = %id, error = %abort, "an empty multipart upload stays behind");
            }
            return Err(e);
        }
        Ok(upload)
    }

    /// Deletes the record of a multipart upload that completed or was aborted. Best effort:
    /// a record left behind only costs an abort that the store answers `NoSuchUpload`.
    async fn forget_multipart(&self, id: UploadId, upload: &str) {
        if let Err(e) = self.objects.delete(vec![self.multipart_key(id, upload)]).await {
            tracing::debug!(upload = %id, error = %e, "the record of a finished multipart upload stays");
        }
    }

    /// Aborts the multipart upload that `record` names (see [`Self::remove_session`]).
    async fn abort_recorded(&self, record: &str, upload: &str) -> Result<(), StorageError> {
        // Gone already: whoever deleted it removes the session too.
        let Some(target) = self.objects.get_bytes(record).await? else { return Ok(()) };
        self.objects.abort_multipart(&String::from_utf8_lossy(&target), upload).await
    }

    /// The parts of a composed blob: each long segment copied server-side, each run of short
    /// ones read back and sent as one part of at least [`MIN_PART_BYTES`].
    async fn upload_parts(
        &self,
        id: UploadId,
        target: &str,
        upload: &str,
        segments: &[Segment],
    ) -> Result<Vec<aws_sdk_s3::types::CompletedPart>, StorageError> {
        let mut parts = Vec::new();
        let mut gathered = BytesMut::new();
        for (i, segment) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let number = parts.len() as i32 + 1;
            let source = self.segment_key(id, segment.offset);
            if gathered.is_empty() && (segment.len >= MIN_PART_BYTES || last) {
                parts.push(self.objects.copy_part(target, upload, number, &source).await?);
                continue;
            }
            let Some(bytes) = self.objects.get_bytes(&source).await? else {
                return Err(StorageError::Io(io::Error::other(format!("segment {source} vanished"))));
            };
            gathered.extend_from_slice(&bytes);
            if (gathered.len() as u64) >= MIN_PART_BYTES || last {
                parts.push(self.objects.upload_part(target, upload, number, gathered.split().freeze()).await?);
            }
        }
        Ok(parts)
    }

    /// Deletes what the session holds; whether there was anything. The multipart uploads
    /// recorded in it are aborted first: their records are deleted only with them gone.
    pub(super) async fn remove_session(&self, id: UploadId) -> Result<bool, StorageError> {
        let keys: Vec<String> = self.objects.list(&self.session_prefix(id)).await?.into_iter().map(|o| o.key).collect();
        for key in &keys {
            if let Some(upload) = self.recorded_upload(id, key) {
                self.abort_recorded(key, &upload).await?;
            }
        }
        let any = !keys.is_empty();
        self.objects.delete(keys).await?;
        Ok(any)
    }

    /// Renews the blob's age with its marker; whether the blob is stored.
    pub(super) async fn touch(&self, digest: &Digest) -> Result<bool, StorageError> {
        if self.objects.head(&self.blob_key(digest)).await?.is_none() {
            return Ok(false);
        }
        self.objects.put(self.marker_key(digest), Bytes::new()).await?;
        Ok(true)
    }

    pub(super) async fn blobs_older_than(&self, cutoff: SystemTime) -> Result<StoredBlobs, StorageError> {
        let markers: HashMap<Digest, SystemTime> = self
            .objects
            .list(&self.key("touched/"))
            .await?
            .into_iter()
            .filter_map(|o| Some((self.digest_of(&o.key, "touched/")?, o.modified)))
            .collect();
        let mut out = StoredBlobs::default();
        for object in self.objects.list(&self.key("blobs/")).await? {
            // Anything that is not a blob's name is not ours to judge.
            let Some(digest) = self.digest_of(&object.key, "blobs/") else { continue };
            out.seen += 1;
            let age = markers.get(&digest).map_or(object.modified, |m| object.modified.max(*m));
            if age < cutoff {
                out.old.push(digest);
            }
        }
        Ok(out)
    }

    pub(super) async fn remove_blob_if_older(
        &self,
        digest: &Digest,
        cutoff: SystemTime,
    ) -> Result<Option<u64>, StorageError> {
        let (key, marker) = (self.blob_key(digest), self.marker_key(digest));
        let Some((len, modified)) = self.objects.head(&key).await? else { return Ok(None) };
        let touched = self.objects.head(&marker).await?.map(|(_, t)| t);
        if touched.map_or(modified, |t| t.max(modified)) >= cutoff {
            return Ok(None);
        }
        self.objects.delete(vec![key, marker]).await?;
        Ok(Some(len))
    }

    /// Sessions none of whose objects was written since `cutoff`.
    pub(super) async fn sessions_idle_since(&self, cutoff: SystemTime) -> Result<Vec<UploadId>, StorageError> {
        let uploads = self.key("uploads/");
        let mut latest: HashMap<UploadId, SystemTime> = HashMap::new();
        for object in self.objects.list(&uploads).await? {
            let id = object.key[uploads.len()..].split('/').next().and_then(UploadId::parse);
            let Some(id) = id else { continue };
            let entry = latest.entry(id).or_insert(object.modified);
            *entry = (*entry).max(object.modified);
        }
        Ok(latest.into_iter().filter(|(_, t)| *t < cutoff).map(|(id, _)| id).collect())
    }

    /// Hashes the session's segments in order into `hasher`; returns how many bytes.
    async fn hash_segments(&self, id: UploadId, hasher: &mut Hasher) -> Result<u64, StorageError> {
        let (segments, extra) = self.segments(id).await?;
        if !extra.is_empty() {
            tracing::warn!(upload = %id, segments = extra.len(), "an upload holds segments past a gap; they are removed");
            self.objects.delete(extra).await?;
        }
        let mut total = 0;
        for segment in segments {
            let key = self.segment_key(id, segment.offset);
            let Some(mut body) = self.objects.get(&key, None).await? else {
                return Err(StorageError::Io(io::Error::other(format!("segment {key} vanished"))));
            };
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| unavailable_body("GetObject", e))?;
                hasher.update(&chunk);
                total += chunk.len() as u64;
            }
        }
        Ok(total)
    }

    /// The session's segments that follow one another from offset 0, and the keys of any
    /// beyond a gap (which no append can have meant).
    async fn segments(&self, id: UploadId) -> Result<(Vec<Segment>, Vec<String>), StorageError> {
        let mut listed: Vec<(u64, Listed)> = self
            .objects
            .list(&self.segment_prefix(id))
            .await?
            .into_iter()
            .filter_map(|o| Some((segment_offset(&o.key)?, o)))
            .collect();
        listed.sort_by_key(|(offset, _)| *offset);
        let mut segments = Vec::new();
        let mut extra = Vec::new();
        let mut end = 0;
        for (offset, object) in listed {
            if offset == end && extra.is_empty() {
                segments.push(Segment { offset, len: object.len });
                end += object.len;
            } else {
                extra.push(object.key);
            }
        }
        Ok((segments, extra))
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.location.prefix)
    }

    fn blob_key(&self, d: &Digest) -> String {
        self.key(&format!("blobs/{}/{}", d.algorithm().name(), d.hex()))
    }

    fn marker_key(&self, d: &Digest) -> String {
        self.key(&format!("touched/{}/{}", d.algorithm().name(), d.hex()))
    }

    /// The digest a `blobs/` or `touched/` key names.
    fn digest_of(&self, key: &str, kind: &str) -> Option<Digest> {
        let (alg, hex) = key.strip_prefix(&self.location.prefix)?.strip_prefix(kind)?.split_once('/')?;
        Digest::parse(&format!("{alg}:{hex}")).ok()
    }

    fn session_prefix(&self, id: UploadId) -> String {
        self.key(&format!("uploads/{id}/"))
    }

    fn owner_key(&self, id: UploadId) -> String {
        format!("{}owner", self.session_prefix(id))
    }

    fn segment_prefix(&self, id: UploadId) -> String {
        format!("{}data/", self.session_prefix(id))
    }

    fn segment_key(&self, id: UploadId, offset: u64) -> String {
        // Zero-padded, so that listing order is offset order.
        format!("{}{offset:020}", self.segment_prefix(id))
    }

    fn multipart_prefix(&self, id: UploadId) -> String {
        format!("{}multipart/", self.session_prefix(id))
    }

    fn multipart_key(&self, id: UploadId, upload: &str) -> String {
        format!("{}{}", self.multipart_prefix(id), record_name(upload))
    }

    /// The multipart upload a key of the session records, if it is such a record.
    fn recorded_upload(&self, id: UploadId, key: &str) -> Option<String> {
        recorded_upload_id(key.strip_prefix(&self.multipart_prefix(id))?)
    }
}

/// The last level of the key that records the multipart upload `upload`. An upload id is
/// the store's opaque string: encoded, it stays one level whatever it holds ('/', '.',
/// '%'), and a name any store takes.
fn record_name(upload: &str) -> String {
    percent_encoding::utf8_percent_encode(upload, UPLOAD_ID_KEEP).to_string()
}

/// The multipart upload that [`record_name`] made `name` of.
fn recorded_upload_id(name: &str) -> Option<String> {
    Some(percent_encoding::percent_decode_str(name).decode_utf8().ok()?.into_owned())
}

/// The offset a segment's key names.
fn segment_offset(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.parse().ok()
}

async fn join(write: tokio::task::JoinHandle<Result<(), StorageError>>) -> Result<(), StorageError> {
    match write.await {
        Ok(r) => r,
        // A write only panics on a bug; the runtime reports it.
        Err(e) => Err(StorageError::Io(io::Error::other(e))),
    }
}

/// Creates the spool directory and empties it of copies a crash left behind.
fn prepare_spool(spool: &Path) -> io::Result<()> {
    std::fs::create_dir_all(spool)?;
    for entry in std::fs::read_dir(spool)? {
        let entry = entry?;
        if entry.file_name().to_str().and_then(UploadId::parse).is_some() {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use testkit::s3::TestS3;

    use super::*;
    use crate::storage::{Backend, BlobStore};

    const DAY: Duration = Duration::from_secs(24 * 3600);

    /// A store in the test server's bucket, as `tests/s3.rs` opens one.
    async fn open(s3: &TestS3, spool: &Path) -> BlobStore {
        for (k, v) in s3.credentials_env() {
            std::env::set_var(k, v);
        }
        let location = S3Location::parse(&format!("{}&region=us-east-1", s3.blobs_url())).unwrap();
        BlobStore::open_s3(location, spool).await.unwrap()
    }

    fn s3_blobs(store: &BlobStore) -> &S3Blobs {
        let Backend::S3(blobs) = &store.backend else { unreachable!("opened on S3") };
        blobs
    }

    /// Appends each piece to the session as a request of its own (a segment each).
    async fn append(store: &BlobStore, id: UploadId, pieces: &[&[u8]]) {
        for piece in pieces {
            let body = futures_util::stream::iter([Ok::<_, io::Error>(Bytes::copy_from_slice(piece))]);
            store.append(id, "r", None, None, body).await.unwrap();
        }
    }

    /// The files in which s3s-fs keeps the multipart upload `upload` (its id, its parts and
    /// their metadata, beside the buckets in its data directory): those whose name holds it.
    fn upload_files(s3: &TestS3, upload: &str) -> Vec<String> {
        let root = s3.bucket_dir().parent().unwrap().to_owned();
        let names = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
        let mut names: Vec<String> = names.filter(|n| n.contains(upload)).collect();
        names.sort();
        names
    }

    /// The files of the session's objects in the bucket's directory.
    fn session_files(s3: &TestS3, id: UploadId) -> Vec<PathBuf> {
        let mut out = vec![];
        let mut dirs = vec![s3.bucket_dir().join("uploads").join(id.to_string())];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            for path in entries.map(|e| e.unwrap().path()) {
                if path.is_dir() {
                    dirs.push(path)
                } else {
                    out.push(path)
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn removing_a_session_aborts_the_multipart_upload_a_crash_left() {
        let s3 = TestS3::start();
        let spool = tempfile::tempdir().unwrap();
        let store = open(&s3, spool.path()).await;
        let id = store.start_upload("r").await.unwrap();
        append(&store, id, &[b"first ", b"second"]).await;
        // Publication starts, records its upload, sends a part, and Berth dies.
        let blobs = s3_blobs(&store);
        let target = blobs.blob_key(&Digest::of(Algorithm::Sha256, b"first second"));
        let upload = blobs.start_recorded_multipart(id, &target).await.unwrap();
        blobs.objects.upload_part(&target, &upload, 1, Bytes::from_static(b"first ")).await.unwrap();
        drop(store);

        let record = s3.object_path(&format!("uploads/{id}/multipart/{}", record_name(&upload)));
        assert_eq!(std::fs::read(&record).unwrap(), target.as_bytes(), "the record names the upload's key");
        let held = upload_files(&s3, &upload);
        assert!(held.contains(&format!(".upload-{upload}.json")), "s3s-fs knows the upload: {held:?}");
        assert!(held.contains(&format!(".upload_id-{upload}.part-1")), "and holds its part: {held:?}");

        // A restarted Berth: the session, still holding its segments, goes idle; garbage
        // collection removes it, and the upload with it.
        let store = open(&s3, spool.path()).await;
        assert_eq!(store.upload_offset(id, "r").await.unwrap(), 12, "the record is no segment");
        for file in session_files(&s3, id) {
            std::fs::File::options()
                .append(true)
                .open(file)
                .unwrap()
                .set_modified(SystemTime::now() - 2 * DAY)
                .unwrap();
        }
        assert_eq!(store.remove_abandoned_uploads(SystemTime::now() - DAY).await.unwrap(), 1);
        assert_eq!(upload_files(&s3, &upload), Vec::<String>::new(), "the unfinished upload is aborted");
        assert_eq!(session_files(&s3, id), Vec::<PathBuf>::new());
        assert!(!s3.object_path(&target).exists());
    }

    #[tokio::test]
    async fn a_composed_publication_leaves_no_record() {
        let s3 = TestS3::start();
        let spool = tempfile::tempdir().unwrap();
        let store = open(&s3, spool.path()).await;
        let id = store.start_upload("r").await.unwrap();
        append(&store, id, &[b"first ", b"second"]).await;
        let d = Digest::of(Algorithm::Sha256, b"first second");
        let blobs = s3_blobs(&store);
        // Two segments: a multipart upload, completed, and its record deleted with it.
        blobs.publish(id, &d, 12).await.unwrap();
        assert_eq!(std::fs::read(s3.object_path(&blobs.blob_key(&d))).unwrap(), b"first second");
        assert_eq!(upload_files(&s3, ".upload"), Vec::<String>::new(), "no upload is left unfinished");
        let files = session_files(&s3, id);
        assert_eq!(files.len(), 3, "the owner and two segments, no record: {files:?}");
        assert!(blobs.remove_session(id).await.unwrap());
        assert_eq!(session_files(&s3, id), Vec::<PathBuf>::new());
    }

    #[test]
    fn segment_keys_sort_by_offset_and_parse_back() {
        let mut offsets = vec![10u64 << 30, 0, 9, 8 << 20];
        let mut keys: Vec<String> = offsets.iter().map(|o| format!("p/uploads/x/data/{o:020}")).collect();
        keys.sort();
        offsets.sort();
        assert_eq!(keys.iter().map(|k| segment_offset(k).unwrap()).collect::<Vec<_>>(), offsets);
    }

    #[test]
    fn an_upload_id_is_one_level_of_its_record_key_and_parses_back() {
        for upload in ["2~aB-c_d.e", "x/../y%2F", "VXBsb2Fk+SUQ="] {
            let name = record_name(upload);
            assert!(!name.contains(['/', '.']), "{name}");
            assert_eq!(recorded_upload_id(&name).as_deref(), Some(upload));
        }
    }
}
