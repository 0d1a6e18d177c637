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
//! durable, and nothing is acknowledged to a client before that.
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
//! publication at most one part; pulls stream the object's body as S3 sends it.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::{BlobStream, LoadedSession, Session, StorageError, StoredBlobs, UploadId};
use crate::digest::{Algorithm, Digest, Hasher};

/// How long a segment is, except where a request body ended.
const SEGMENT_BYTES: usize = 8 << 20;
/// S3's least size of a multipart part other than the last.
const MIN_PART_BYTES: u64 = 5 << 20;
/// How long one attempt of one request to the store may take (retries come on top).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most keys one `DeleteObjects` takes.
const DELETE_BATCH: usize = 1000;

/// Where the blobs live: `s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION]`. Credentials
/// are not part of it; they come from the AWS SDK's default chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    bucket: String,
    /// Empty, or a key prefix ending in `/`.
    prefix: String,
    endpoint: Option<String>,
    region: Option<String>,
}

impl S3Location {
    /// Parses `s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION]`.
    pub fn parse(s: &str) -> Result<S3Location, String> {
        let rest = s.strip_prefix("s3://").ok_or("expected s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION]")?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        // Lenient on purpose: S3-compatible stores differ in what they allow, and the
        // store itself refuses a name it does not take; this only keeps the name usable in
        // a URL path and a copy source.
        if bucket.is_empty() || !bucket.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return Err(format!("{bucket:?} is not a bucket name (letters, digits, '.', '_' and '-')"));
        }
        let prefix = prefix.trim_matches('/');
        let mut location = S3Location {
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() { String::new() } else { format!("{prefix}/") },
            endpoint: None,
            region: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| format!("the value of {key} is not UTF-8"))?
                .into_owned();
            match key {
                "endpoint" if value.starts_with("http://") || value.starts_with("https://") => {
                    location.endpoint = Some(value.trim_end_matches('/').to_owned())
                }
                "endpoint" => return Err(format!("endpoint {value:?} is not an http:// or https:// URL")),
                "region" if !value.is_empty() => location.region = Some(value),
                _ => return Err(format!("unknown or empty parameter {key:?} (known: endpoint, region)")),
            }
        }
        Ok(location)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The endpoint, as error messages name it.
    fn endpoint_name(&self) -> &str {
        self.endpoint.as_deref().unwrap_or("Amazon S3")
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)?;
        let params: Vec<String> = [("endpoint", &self.endpoint), ("region", &self.region)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect();
        if !params.is_empty() {
            write!(f, "?{}", params.join("&"))?;
        }
        Ok(())
    }
}

/// Why the store could not be opened, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum S3OpenError {
    #[error(
        "the bucket {bucket} does not exist at {endpoint}: create it (for example `aws s3 mb s3://{bucket} --endpoint-url <endpoint>`) or name an existing bucket in --blobs"
    )]
    BucketMissing { bucket: String, endpoint: String },
    #[error(
        "{endpoint} refused access to the bucket {bucket} ({detail}): check the credentials Berth finds (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) and the bucket's policy"
    )]
    AccessDenied { bucket: String, endpoint: String, detail: String },
    #[error(
        "no credentials for the object store ({detail}): give Berth AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
    )]
    NoCredentials { detail: String },
    #[error("the object store at {endpoint} did not answer ({detail}): check the endpoint in --blobs and that the store runs")]
    Unreachable { endpoint: String, detail: String },
    #[error("checking the bucket {bucket} at {endpoint} failed: {detail}")]
    Other { bucket: String, endpoint: String, detail: String },
    #[error("the local spool directory {path}: {source}")]
    Spool { path: PathBuf, source: io::Error },
}

/// Blobs and upload sessions in an S3 bucket.
pub(super) struct S3Blobs {
    client: aws_sdk_s3::Client,
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
    /// Builds the client (credentials and region from the SDK's default chain; the
    /// location's endpoint and region win) and checks that the bucket answers.
    pub(super) async fn open(location: S3Location, spool: PathBuf) -> Result<S3Blobs, S3OpenError> {
        prepare_spool(&spool).map_err(|source| S3OpenError::Spool { path: spool.clone(), source })?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = region(&location).await {
            loader = loader.region(region);
        }
        let shared = loader.load().await;
        check_credentials(&shared).await?;
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            // Checksums only where S3 requires them: several S3-compatible stores refuse
            // the newer trailing checksums that the SDK would otherwise send everywhere.
            .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired);
        // The endpoint comes from the location alone: AWS_ENDPOINT_URL in Berth's
        // environment (which `berth env` sets) names Berth itself, not the object store.
        config.set_endpoint_url(location.endpoint.clone());
        if location.endpoint.is_some() {
            // A custom endpoint seldom has a DNS name per bucket.
            config = config.force_path_style(true);
        }
        let blobs = S3Blobs { client: aws_sdk_s3::Client::from_conf(config.build()), location, spool };
        blobs.check_bucket().await?;
        tracing::info!(location = %blobs.location, "registry blobs are in S3-compatible storage");
        Ok(blobs)
    }

    async fn check_bucket(&self) -> Result<(), S3OpenError> {
        let bucket = self.location.bucket.clone();
        let endpoint = self.location.endpoint_name().to_owned();
        let Err(e) = self.client.head_bucket().bucket(&bucket).send().await else { return Ok(()) };
        let status = e.raw_response().map(|r| r.status().as_u16());
        Err(match (&e, status) {
            (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _) => {
                S3OpenError::Unreachable { endpoint, detail: causes(&e) }
            }
            (_, Some(404)) => S3OpenError::BucketMissing { bucket, endpoint },
            // A HEAD answer has no body to say more; S3 answers a bad signature with 403,
            // some compatible stores with 400.
            (_, Some(status @ (400 | 401 | 403))) => {
                S3OpenError::AccessDenied { bucket, endpoint, detail: format!("HTTP {status}") }
            }
            _ => S3OpenError::Other { bucket, endpoint, detail: causes(&e) },
        })
    }

    pub(super) fn location(&self) -> &S3Location {
        &self.location
    }

    pub(super) fn root(&self) -> &Path {
        &self.spool
    }

    pub(super) async fn size(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        Ok(self.head(&self.blob_key(digest)).await?.map(|(len, _)| len))
    }

    /// Copies the blob into an unlinked file of the spool, for a reader that needs a file.
    pub(super) async fn open_blob(&self, digest: &Digest) -> Result<Option<(tokio::fs::File, u64)>, StorageError> {
        let Some(mut body) = self.get(&self.blob_key(digest), None).await? else { return Ok(None) };
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
        let Some(body) = self.get(&self.blob_key(digest), None).await? else { return Ok(None) };
        let bytes = body.collect().await.map_err(|e| unavailable_body("GetObject", e))?;
        Ok(Some(bytes.into_bytes()))
    }

    /// Stores content already verified to have digest `digest`: one `PutObject`, which
    /// S3 makes visible whole or not at all.
    pub(super) async fn put_verified(&self, digest: &Digest, bytes: Bytes) -> Result<(), StorageError> {
        self.put(self.blob_key(digest), bytes).await
    }

    pub(super) async fn create_session(&self, id: UploadId, owner: &str) -> Result<(), StorageError> {
        self.put(self.owner_key(id), Bytes::copy_from_slice(owner.as_bytes())).await
    }

    /// The session as stored: its owner, and the length and hash of its segments, read
    /// back in order.
    pub(super) async fn load_session(&self, id: UploadId) -> Result<Option<LoadedSession>, StorageError> {
        let Some(owner) = self.get(&self.owner_key(id), None).await? else { return Ok(None) };
        let owner = owner.collect().await.map_err(|e| unavailable_body("GetObject", e))?.into_bytes();
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
        E: fmt::Display,
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
                let (client, bucket) = (self.client.clone(), self.location.bucket.clone());
                session.pending = Some(tokio::spawn(async move { put(&client, &bucket, key, data).await }));
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
        let listed = self.list(&self.segment_prefix(id)).await?;
        let keys = listed.into_iter().filter(|o| segment_offset(&o.key).is_some_and(|at| at >= len)).map(|o| o.key);
        self.delete_keys(keys.collect()).await
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
            return Ok(self.head(&key).await?.map(|_| futures_util::stream::empty().boxed()));
        }
        let Some(body) = self.get(&key, Some((start, len))).await? else { return Ok(None) };
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
            [] => self.put(target, Bytes::new()).await,
            [only] => {
                let source = self.copy_source(&self.segment_key(id, only.offset));
                let copy = self.client.copy_object().bucket(&self.location.bucket).key(&target).copy_source(source);
                copy.send().await.map(drop).map_err(|e| unavailable("CopyObject", &target, e))
            }
            many => self.compose(id, &target, many).await,
        }
    }

    /// Publishes several segments as one multipart upload of `target`.
    async fn compose(&self, id: UploadId, target: &str, segments: &[Segment]) -> Result<(), StorageError> {
        let bucket = &self.location.bucket;
        let started = self.client.create_multipart_upload().bucket(bucket).key(target).send().await;
        let started = started.map_err(|e| unavailable("CreateMultipartUpload", target, e))?;
        let upload = started.upload_id().unwrap_or_default().to_owned();
        let parts = self.upload_parts(id, target, &upload, segments).await;
        let done = match parts {
            Ok(parts) => {
                let parts = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
                let complete = self.client.complete_multipart_upload().bucket(bucket).key(target).upload_id(&upload);
                complete
                    .multipart_upload(parts)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| unavailable("CompleteMultipartUpload", target, e))
            }
            Err(e) => Err(e),
        };
        if done.is_err() {
            // Best effort: an unfinished multipart upload is invisible, but takes space.
            let _ = self.client.abort_multipart_upload().bucket(bucket).key(target).upload_id(&upload).send().await;
        }
        done
    }

    /// The parts of a composed blob: each long segment copied server-side, each run of short
    /// ones read back and sent as one part of at least [`MIN_PART_BYTES`].
    async fn upload_parts(
        &self,
        id: UploadId,
        target: &str,
        upload: &str,
        segments: &[Segment],
    ) -> Result<Vec<CompletedPart>, StorageError> {
        let bucket = &self.location.bucket;
        let mut parts = Vec::new();
        let mut gathered = BytesMut::new();
        for (i, segment) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let number = parts.len() as i32 + 1;
            let source = self.segment_key(id, segment.offset);
            if gathered.is_empty() && (segment.len >= MIN_PART_BYTES || last) {
                let copy = self.client.upload_part_copy().bucket(bucket).key(target).upload_id(upload);
                let copied = copy.part_number(number).copy_source(self.copy_source(&source)).send().await;
                let copied = copied.map_err(|e| unavailable("UploadPartCopy", target, e))?;
                let etag = copied.copy_part_result().and_then(|r| r.e_tag()).map(str::to_owned);
                parts.push(CompletedPart::builder().part_number(number).set_e_tag(etag).build());
                continue;
            }
            let Some(body) = self.get(&source, None).await? else {
                return Err(StorageError::Io(io::Error::other(format!("segment {source} vanished"))));
            };
            gathered
                .extend_from_slice(&body.collect().await.map_err(|e| unavailable_body("GetObject", e))?.into_bytes());
            if (gathered.len() as u64) < MIN_PART_BYTES && !last {
                continue;
            }
            let data = ByteStream::from(gathered.split().freeze());
            let sent = self.client.upload_part().bucket(bucket).key(target).upload_id(upload);
            let sent = sent.part_number(number).body(data).send().await;
            let sent = sent.map_err(|e| unavailable("UploadPart", target, e))?;
            parts.push(CompletedPart::builder().part_number(number).set_e_tag(sent.e_tag().map(str::to_owned)).build());
        }
        Ok(parts)
    }

    /// Deletes what the session holds; whether there was anything.
    pub(super) async fn remove_session(&self, id: UploadId) -> Result<bool, StorageError> {
        let keys: Vec<String> = self.list(&self.session_prefix(id)).await?.into_iter().map(|o| o.key).collect();
        let any = !keys.is_empty();
        self.delete_keys(keys).await?;
        Ok(any)
    }

    /// Renews the blob's age with its marker; whether the blob is stored.
    pub(super) async fn touch(&self, digest: &Digest) -> Result<bool, StorageError> {
        if self.head(&self.blob_key(digest)).await?.is_none() {
            return Ok(false);
        }
        self.put(self.marker_key(digest), Bytes::new()).await?;
        Ok(true)
    }

    pub(super) async fn blobs_older_than(&self, cutoff: SystemTime) -> Result<StoredBlobs, StorageError> {
        let markers: HashMap<Digest, SystemTime> = self
            .list(&self.key("touched/"))
            .await?
            .into_iter()
            .filter_map(|o| Some((self.digest_of(&o.key, "touched/")?, o.modified)))
            .collect();
        let mut out = StoredBlobs::default();
        for object in self.list(&self.key("blobs/")).await? {
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
        let Some((len, modified)) = self.head(&key).await? else { return Ok(None) };
        let touched = self.head(&marker).await?.map(|(_, t)| t);
        if touched.map_or(modified, |t| t.max(modified)) >= cutoff {
            return Ok(None);
        }
        self.delete_keys(vec![key, marker]).await?;
        Ok(Some(len))
    }

    /// Sessions none of whose objects was written since `cutoff`.
    pub(super) async fn sessions_idle_since(&self, cutoff: SystemTime) -> Result<Vec<UploadId>, StorageError> {
        let uploads = self.key("uploads/");
        let mut latest: HashMap<UploadId, SystemTime> = HashMap::new();
        for object in self.list(&uploads).await? {
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
            self.delete_keys(extra).await?;
        }
        let mut total = 0;
        for segment in segments {
            let key = self.segment_key(id, segment.offset);
            let Some(mut body) = self.get(&key, None).await? else {
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

    async fn head(&self, key: &str) -> Result<Option<(u64, SystemTime)>, StorageError> {
        match self.client.head_object().bucket(&self.location.bucket).key(key).send().await {
            Ok(o) => Ok(Some((o.content_length().unwrap_or(0).max(0) as u64, modified(o.last_modified())))),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(unavailable("HeadObject", key, e)),
        }
    }

    /// The object's body (`len` bytes from `start`, or all of it), or `None` if it is not
    /// stored.
    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<Option<ByteStream>, StorageError> {
        let mut get = self.client.get_object().bucket(&self.location.bucket).key(key);
        if let Some((start, len)) = range {
            get = get.range(format!("bytes={start}-{}", start + len - 1));
        }
        match get.send().await {
            Ok(o) => Ok(Some(o.body)),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(unavailable("GetObject", key, e)),
        }
    }

    async fn put(&self, key: String, data: Bytes) -> Result<(), StorageError> {
        put(&self.client, &self.location.bucket, key, data).await
    }

    /// Every object under `prefix`, page by page.
    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, StorageError> {
        let mut out = Vec::new();
        let mut pages =
            self.client.list_objects_v2().bucket(&self.location.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| unavailable("ListObjectsV2", prefix, e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let len = object.size().unwrap_or(0).max(0) as u64;
                out.push(Listed { key: key.to_owned(), len, modified: modified(object.last_modified()) });
            }
        }
        Ok(out)
    }

    async fn delete_keys(&self, keys: Vec<String>) -> Result<(), StorageError> {
        for batch in keys.chunks(DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(io::Error::other)?;
            let delete = Delete::builder().set_objects(Some(objects)).quiet(true).build().map_err(io::Error::other)?;
            let done = self.client.delete_objects().bucket(&self.location.bucket).delete(delete).send().await;
            let done = done.map_err(|e| unavailable("DeleteObjects", &batch[0], e))?;
            if let Some(failed) = done.errors().first() {
                return Err(StorageError::Unavailable(format!(
                    "DeleteObjects of {}: {}",
                    failed.key().unwrap_or_default(),
                    failed.message().unwrap_or_default()
                )));
            }
        }
        Ok(())
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

    /// `bucket/key` as `CopyObject` and `UploadPartCopy` take it, URL-encoded.
    fn copy_source(&self, key: &str) -> String {
        const KEEP: &percent_encoding::AsciiSet =
            &percent_encoding::NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.');
        format!("{}/{}", self.location.bucket, percent_encoding::utf8_percent_encode(key, KEEP))
    }
}

/// One object of a listing.
struct Listed {
    key: String,
    len: u64,
    modified: SystemTime,
}

/// The offset a segment's key names.
fn segment_offset(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.parse().ok()
}

/// An object's time, or now if the store gave none: garbage collection then counts it as
/// new rather than collecting it.
fn modified(t: Option<&aws_sdk_s3::primitives::DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok()).unwrap_or_else(SystemTime::now)
}

async fn put(client: &aws_sdk_s3::Client, bucket: &str, key: String, data: Bytes) -> Result<(), StorageError> {
    let put = client.put_object().bucket(bucket).key(&key).body(ByteStream::from(data));
    put.send().await.map(drop).map_err(|e| unavailable("PutObject", &key, e))
}

async fn join(write: tokio::task::JoinHandle<Result<(), StorageError>>) -> Result<(), StorageError> {
    match write.await {
        Ok(r) => r,
        // A write only panics on a bug; the runtime reports it.
        Err(e) => Err(StorageError::Io(io::Error::other(e))),
    }
}

fn unavailable<E>(operation: &str, key: &str, e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> StorageError
where
    E: std::error::Error + 'static,
{
    let status = e.raw_response().map(|r| format!(" (HTTP {})", r.status().as_u16())).unwrap_or_default();
    StorageError::Unavailable(format!("{operation} {key}{status}: {}", causes(&e)))
}

fn unavailable_body(operation: &str, e: impl std::error::Error) -> StorageError {
    StorageError::Unavailable(format!("{operation}: the body failed: {e}"))
}

/// The region the client signs for: the location's; else, for a custom endpoint, the
/// environment's or the profile's or `us-east-1` (most S3-compatible stores ignore it, and
/// asking EC2's instance metadata would only wait and warn); for Amazon S3, the SDK's own
/// search (`None`).
async fn region(location: &S3Location) -> Option<aws_sdk_s3::config::Region> {
    use aws_config::meta::region::RegionProviderChain;
    if let Some(region) = &location.region {
        return Some(aws_sdk_s3::config::Region::new(region.clone()));
    }
    location.endpoint.as_ref()?;
    RegionProviderChain::first_try(aws_config::environment::EnvironmentVariableRegionProvider::new())
        .or_else(aws_config::profile::ProfileFileRegionProvider::new())
        .or_else(aws_sdk_s3::config::Region::from_static("us-east-1"))
        .region()
        .await
}

/// Fails early, and says so, when the SDK's chain finds no credentials: the request that
/// would otherwise fail reads like a network error.
async fn check_credentials(shared: &aws_config::SdkConfig) -> Result<(), S3OpenError> {
    use aws_credential_types::provider::ProvideCredentials;
    let Some(provider) = shared.credentials_provider() else {
        return Err(S3OpenError::NoCredentials { detail: "no credentials provider".into() });
    };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(e) => Err(S3OpenError::NoCredentials { detail: causes(&e) }),
    }
}

/// An error and its sources, each as it displays itself, without the debug dumps of the
/// SDK's own context.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out = format!("{out}: {text}");
        }
        source = s.source();
    }
    out
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
    fn locations_parse() {
        let l = S3Location::parse("s3://berth-blobs?endpoint=http://127.0.0.1:9000").unwrap();
        assert_eq!(l.bucket(), "berth-blobs");
        assert_eq!(
            (l.prefix.as_str(), l.endpoint.as_deref(), l.region.as_deref()),
            ("", Some("http://127.0.0.1:9000"), None)
        );
        let l =
            S3Location::parse("s3://b/team/registry/?region=eu-west-1&endpoint=https%3A%2F%2Fs3.example%2F").unwrap();
        assert_eq!(l.prefix, "team/registry/");
        assert_eq!(l.endpoint.as_deref(), Some("https://s3.example"));
        assert_eq!(l.to_string(), "s3://b/team/registry/?endpoint=https://s3.example&region=eu-west-1");
        assert_eq!(S3Location::parse("s3://plain").unwrap().to_string(), "s3://plain/");
        for bad in ["http://b", "s3://", "s3://a b", "s3://b?endpoint=ftp://x", "s3://b?secret=1", "s3://b?region="] {
            assert!(S3Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn segment_keys_sort_by_offset_and_parse_back() {
        let mut offsets = vec![10u64 << 30, 0, 9, 8 << 20];
        let mut keys: Vec<String> = offsets.iter().map(|o| format!("p/uploads/x/data/{o:020}")).collect();
        keys.sort();
        offsets.sort();
        assert_eq!(keys.iter().map(|k| segment_offset(k).unwrap()).collect::<Vec<_>>(), offsets);
    }
}
