//! The few S3 calls the backend makes, on one bucket, with the store's failures turned into
//! [`StorageError::Unavailable`] (retryable, nothing acknowledged) and absence into `None`.
//! Also the client's configuration and the checks made before a server starts serving.

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use bytes::Bytes;

use super::location::{S3Location, S3OpenError};
use crate::storage::StorageError;

/// How long one attempt of one request to the store may take (retries come on top).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most keys one `DeleteObjects` takes.
const DELETE_BATCH: usize = 1000;

/// A bucket and a client for it. Cheap to clone (the client is shared).
#[derive(Clone)]
pub(super) struct Objects {
    client: aws_sdk_s3::Client,
    bucket: String,
}

/// One object of a listing.
pub(super) struct Listed {
    pub key: String,
    pub len: u64,
    pub modified: SystemTime,
}

impl Objects {
    /// Builds the client (credentials and region from the SDK's default chain; the
    /// location's endpoint and region win) and checks that credentials are found and the
    /// bucket answers.
    pub(super) async fn connect(location: &S3Location) -> Result<Objects, S3OpenError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = region(location).await {
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
        let objects =
            Objects { client: aws_sdk_s3::Client::from_conf(config.build()), bucket: location.bucket.clone() };
        objects.check_bucket(location).await?;
        Ok(objects)
    }

    async fn check_bucket(&self, location: &S3Location) -> Result<(), S3OpenError> {
        let Err(e) = self.client.head_bucket().bucket(&self.bucket).send().await else { return Ok(()) };
        let (bucket, endpoint) = (self.bucket.clone(), location.endpoint_name().to_owned());
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

    /// The object's length and time, or `None` if it is not stored.
    pub(super) async fn head(&self, key: &str) -> Result<Option<(u64, SystemTime)>, StorageError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(o) => Ok(Some((o.content_length().unwrap_or(0).max(0) as u64, modified(o.last_modified())))),
            Err(e) if is_404(&e) => Ok(None),
            Err(e) => Err(unavailable("HeadObject", key, e)),
        }
    }

    /// The object's body (`len` bytes from `start`, or all of it), or `None` if it is not
    /// stored.
    pub(super) async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<Option<ByteStream>, StorageError> {
        let mut get = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some((start, len)) = range {
            get = get.range(format!("bytes={start}-{}", start + len - 1));
        }
        match get.send().await {
            Ok(o) => Ok(Some(o.body)),
            Err(e) if is_404(&e) => Ok(None),
            Err(e) => Err(unavailable("GetObject", key, e)),
        }
    }

    /// The whole object in memory, or `None` if it is not stored.
    pub(super) async fn get_bytes(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        let Some(body) = self.get(key, None).await? else { return Ok(None) };
        Ok(Some(body.collect().await.map_err(|e| unavailable_body("GetObject", e))?.into_bytes()))
    }

    /// Writes a whole object; S3 makes it visible whole or not at all.
    pub(super) async fn put(&self, key: String, data: Bytes) -> Result<(), StorageError> {
        let put = self.client.put_object().bucket(&self.bucket).key(&key).body(ByteStream::from(data));
        put.send().await.map(drop).map_err(|e| unavailable("PutObject", &key, e))
    }

    /// Copies `source` to `target` within the bucket, server-side.
    pub(super) async fn copy(&self, source: &str, target: &str) -> Result<(), StorageError> {
        let copy = self.client.copy_object().bucket(&self.bucket).key(target).copy_source(self.copy_source(source));
        copy.send().await.map(drop).map_err(|e| unavailable("CopyObject", target, e))
    }

    /// Every object under `prefix`, page by page.
    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<Listed>, StorageError> {
        let mut out = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
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

    pub(super) async fn delete(&self, keys: Vec<String>) -> Result<(), StorageError> {
        for batch in keys.chunks(DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(std::io::Error::other)?;
            let delete =
                Delete::builder().set_objects(Some(objects)).quiet(true).build().map_err(std::io::Error::other)?;
            let done = self.client.delete_objects().bucket(&self.bucket).delete(delete).send().await;
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

    /// Starts a multipart upload of `target`; returns its id.
    pub(super) async fn start_multipart(&self, target: &str) -> Result<String, StorageError> {
        let started = self.client.create_multipart_upload().bucket(&self.bucket).key(target).send().await;
        let started = started.map_err(|e| unavailable("CreateMultipartUpload", target, e))?;
        Ok(started.upload_id().unwrap_or_default().to_owned())
    }

    /// Part `number` of the multipart upload `upload`, copied server-side from `source`.
    pub(super) async fn copy_part(
        &self,
        target: &str,
        upload: &str,
        number: i32,
        source: &str,
    ) -> Result<CompletedPart, StorageError> {
        let copy = self.client.upload_part_copy().bucket(&self.bucket).key(target).upload_id(upload);
        let copied = copy.part_number(number).copy_source(self.copy_source(source)).send().await;
        let copied = copied.map_err(|e| unavailable("UploadPartCopy", target, e))?;
        let etag = copied.copy_part_result().and_then(|r| r.e_tag()).map(str::to_owned);
        Ok(CompletedPart::builder().part_number(number).set_e_tag(etag).build())
    }

    /// Part `number` of the multipart upload `upload`, sent.
    pub(super) async fn upload_part(
        &self,
        target: &str,
        upload: &str,
        number: i32,
        data: Bytes,
    ) -> Result<CompletedPart, StorageError> {
        let sent = self.client.upload_part().bucket(&self.bucket).key(target).upload_id(upload);
        let sent = sent.part_number(number).body(ByteStream::from(data)).send().await;
        let sent = sent.map_err(|e| unavailable("UploadPart", target, e))?;
        Ok(CompletedPart::builder().part_number(number).set_e_tag(sent.e_tag().map(str::to_owned)).build())
    }

    /// Completes the multipart upload: `target` becomes visible, whole.
    pub(super) async fn complete_multipart(
        &self,
        target: &str,
        upload: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), StorageError> {
        let parts = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
        let complete = self.client.complete_multipart_upload().bucket(&self.bucket).key(target).upload_id(upload);
        let done = complete.multipart_upload(parts).send().await;
        done.map(drop).map_err(|e| unavailable("CompleteMultipartUpload", target, e))
    }

    /// Abandons the multipart upload (an unfinished upload is invisible, but takes space
    /// until this or a bucket lifecycle rule removes it). An upload the store does not know
    /// (`NoSuchUpload`: it completed, or was aborted already) is as good as aborted.
    pub(super) async fn abort_multipart(&self, target: &str, upload: &str) -> Result<(), StorageError> {
        let abort = self.client.abort_multipart_upload().bucket(&self.bucket).key(target).upload_id(upload);
        match abort.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_404(&e) => Ok(()),
            Err(e) => Err(unavailable("AbortMultipartUpload", target, e)),
        }
    }

    /// `bucket/key` as `CopyObject` and `UploadPartCopy` take it, URL-encoded.
    fn copy_source(&self, key: &str) -> String {
        const KEEP: &percent_encoding::AsciiSet =
            &percent_encoding::NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.');
        format!("{}/{}", self.bucket, percent_encoding::utf8_percent_encode(key, KEEP))
    }
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

fn is_404<E>(e: &SdkError<E, HttpResponse>) -> bool {
    e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
}

/// An object's time, or now if the store gave none: garbage collection then counts it as
/// new rather than collecting it.
fn modified(t: Option<&aws_sdk_s3::primitives::DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok()).unwrap_or_else(SystemTime::now)
}

fn unavailable<E>(operation: &str, key: &str, e: SdkError<E, HttpResponse>) -> StorageError
where
    E: std::error::Error + 'static,
{
    let status = e.raw_response().map(|r| format!(" (HTTP {})", r.status().as_u16())).unwrap_or_default();
    StorageError::Unavailable(format!("{operation} {key}{status}: {}", causes(&e)))
}

/// A response body that failed midway.
pub(super) fn unavailable_body(operation: &str, e: impl fmt::Display) -> StorageError {
    StorageError::Unavailable(format!("{operation}: the body failed: {e}"))
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
