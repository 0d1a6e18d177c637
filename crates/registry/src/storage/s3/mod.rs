//! The blob store's S3-compatible backend (`berth server --blobs s3://BUCKET?endpoint=...`).
//!
//! Keys in the bucket (under the location's optional prefix):
//! - `blobs/<algorithm>/<hex>`: a blob, named by its digest;
//! - `touched/<algorithm>/<hex>`: an empty marker whose age renews the blob's (see below);
//! - `uploads/<uuid>/owner`: the repository an upload session was started for;
//! - `uploads/<uuid>/data/<offset, 20 digits>`: a segment of the session's bytes, starting
//!   at that offset.
//!
//! **An object exists under `blobs/` only if its content has the digest its key names.**
//! An upload's bytes are hashed as they arrive and stored as segments under `uploads/`,
//! never under `blobs/`. Completion checks the digest first and only then publishes, with
//! one step that S3 makes atomic: a server-side `CopyObject` of a lone segment, or a
//! multipart upload of the blob's key from the segments (`UploadPartCopy`, no bytes through
//! Berth) that becomes visible, whole, when `CompleteMultipartUpload` returns. A crash or a
//! failed request in between leaves segments and perhaps an unfinished multipart upload,
//! never a partial or unverified blob. A manifest, verified in memory, is one `PutObject`,
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
                let upload = self.objects.start_multipart(&target).await?;
                let done = match self.upload_parts(id, &target, &upload, many).await {
                    Ok(parts) => self.objects.complete_multipart(&target, &upload, parts).await,
                    Err(e) => Err(e),
                };
                if done.is_err() {
                    self.objects.abort_multipart(&target, &upload).await;
                }
                done
            }
        }
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

    /// Deletes what the session holds; whether there was anything.
    pub(super) async fn remove_session(&self, id: UploadId) -> Result<bool, StorageError> {
        let keys: Vec<String> = self.objects.list(&self.session_prefix(id)).await?.into_iter().map(|o| o.key).collect();
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
    use super::*;

    #[test]
    fn segment_keys_sort_by_offset_and_parse_back() {
        let mut offsets = vec![10u64 << 30, 0, 9, 8 << 20];
        let mut keys: Vec<String> = offsets.iter().map(|o| format!("p/uploads/x/data/{o:020}")).collect();
        keys.sort();
        offsets.sort();
        assert_eq!(keys.iter().map(|k| segment_offset(k).unwrap()).collect::<Vec<_>>(), offsets);
    }
}
