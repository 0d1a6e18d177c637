//! The blob store on a real S3-compatible server (`s3s-fs`, one per test, see
//! `testkit::s3`): uploads, digest checks, resumption after a reopen, composition of many
//! segments, ranged reads, garbage collection, and what a client sees when the store fails.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use registry::gc::{GcPolicy, GcReport};
use registry::meta::ManifestRecord;
use registry::storage::S3OpenError;
use registry::{
    Algorithm, AllowAll, BlobStore, Digest, LocalMeta, Meta, Namespace, NoHooks, RepoName, Repository, S3Location,
    StorageError,
};
use testkit::s3::TestS3;

const MIB: usize = 1 << 20;
const HOUR: Duration = Duration::from_secs(3600);

/// Opens a store in the test server's bucket, with a spool under `spool`.
async fn open(s3: &TestS3, spool: &Path) -> BlobStore {
    try_open(&s3.blobs_url(), spool).await.unwrap()
}

async fn try_open(url: &str, spool: &Path) -> Result<BlobStore, S3OpenError> {
    // Every test sets the same values (nextest runs each in a process of its own anyway).
    for (k, v) in [("AWS_ACCESS_KEY_ID", testkit::s3::ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", testkit::s3::SECRET_KEY)] {
        std::env::set_var(k, v);
    }
    let url = format!("{url}&region=us-east-1");
    BlobStore::open_s3(S3Location::parse(&url).unwrap(), spool).await
}

fn chunks(parts: Vec<Vec<u8>>) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
    futures_util::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from(p))).collect::<Vec<_>>())
}

/// Deterministic bytes that differ from position to position.
fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(u32::from(seed)).to_le_bytes()[1]).collect()
}

/// The keys under `prefix` in the bucket (files in s3s-fs's directory).
fn keys(s3: &TestS3, prefix: &str) -> Vec<String> {
    let root = s3.bucket_dir();
    let mut out = vec![];
    let mut stack = vec![root.join(prefix)];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(&root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

async fn collect(store: &BlobStore, d: &Digest, start: u64, len: u64) -> Vec<u8> {
    let mut stream = store.stream_blob(d, start, len).await.unwrap().expect("blob stored");
    let mut out = vec![];
    while let Some(piece) = stream.next().await {
        out.extend_from_slice(&piece.unwrap());
    }
    out
}

#[tokio::test]
async fn a_chunked_upload_resumes_after_a_reopen_and_publishes_only_when_verified() {
    let s3 = TestS3::start();
    let spool = tempfile::tempdir().unwrap();
    let store = open(&s3, spool.path()).await;
    let id = store.start_upload("r").await.unwrap();
    assert_eq!(
        store.append(id, "r", Some(0), Some(5), chunks(vec![b"hel".to_vec(), b"lo".to_vec()])).await.unwrap(),
        5
    );
    drop(store);

    // Another process finds the session, its offset and its hash in the bucket.
    let store = open(&s3, spool.path()).await;
    assert_eq!(store.upload_offset(id, "r").await.unwrap(), 5);
    assert!(matches!(store.upload_offset(id, "other").await, Err(StorageError::UploadUnknown)));
    assert!(matches!(
        store.append(id, "r", Some(3), None, chunks(vec![b"x".to_vec()])).await,
        Err(StorageError::RangeInvalid { offset: 5 })
    ));
    assert!(keys(&s3, "blobs").is_empty(), "nothing is visible before completion");
    store.append(id, "r", None, None, chunks(vec![b" world".to_vec()])).await.unwrap();
    let wrong = Digest::of(Algorithm::Sha256, b"hello");
    let d = Digest::of(Algorithm::Sha256, b"hello world");
    // The hash rebuilt from the bucket is the whole content's: a wrong digest is refused,
    // and the session ends with nothing stored.
    let other = store.start_upload("r").await.unwrap();
    store.append(other, "r", None, None, chunks(vec![b"hello world".to_vec()])).await.unwrap();
    assert!(matches!(store.complete(other, "r", &wrong).await, Err(StorageError::DigestMismatch)));
    assert!(keys(&s3, "blobs").is_empty());
    assert_eq!(store.complete(id, "r", &d).await.unwrap(), 11);
    assert_eq!(store.read(&d).await.unwrap().unwrap(), Bytes::from_static(b"hello world"));
    assert_eq!(keys(&s3, "blobs"), vec![format!("blobs/sha256/{}", d.hex())]);
    assert!(keys(&s3, "uploads").is_empty(), "completed and refused sessions leave nothing");
    assert!(matches!(store.upload_offset(id, "r").await, Err(StorageError::UploadUnknown)));
}

#[tokio::test]
async fn many_segments_compose_into_one_blob_and_ranges_stream_across_them() {
    let s3 = TestS3::start();
    let spool = tempfile::tempdir().unwrap();
    let store = open(&s3, spool.path()).await;

    // One request of 20 MiB and 3 bytes: long segments, copied server-side.
    let big = content(1, 20 * MIB + 3);
    let id = store.start_upload("r").await.unwrap();
    let parts = big.chunks(MIB).map(<[u8]>::to_vec).collect();
    store.append(id, "r", Some(0), Some(big.len() as u64), chunks(parts)).await.unwrap();
    let d = Digest::of(Algorithm::Sha256, &big);
    assert_eq!(store.complete(id, "r", &d).await.unwrap(), big.len() as u64);
    assert_eq!(std::fs::read(s3.object_path(&format!("blobs/sha256/{}", d.hex()))).unwrap(), big);
    assert_eq!(collect(&store, &d, 0, big.len() as u64).await, big);
    let (start, len) = (8 * MIB as u64 - 10, MIB as u64 + 20);
    assert_eq!(collect(&store, &d, start, len).await, big[start as usize..(start + len) as usize]);
    assert_eq!(store.size(&d).await.unwrap(), Some(big.len() as u64));
    let (mut file, size) = store.open_blob(&d).await.unwrap().unwrap();
    let mut copy = vec![];
    tokio::io::AsyncReadExt::read_to_end(&mut file, &mut copy).await.unwrap();
    assert_eq!((copy.len() as u64, size), (big.len() as u64, big.len() as u64));
    assert!(copy == big);

    // Seven requests of 1 MiB: short segments, gathered into parts S3 accepts.
    let small = content(2, 7 * MIB);
    let id = store.start_upload("r").await.unwrap();
    for piece in small.chunks(MIB) {
        store.append(id, "r", None, None, chunks(vec![piece.to_vec()])).await.unwrap();
    }
    let ds = Digest::of(Algorithm::Sha256, &small);
    assert_eq!(store.complete(id, "r", &ds).await.unwrap(), small.len() as u64);
    assert_eq!(collect(&store, &ds, 0, small.len() as u64).await, small);
    assert_eq!(collect(&store, &ds, 5 * MIB as u64 - 1, 2).await, small[5 * MIB - 1..5 * MIB + 1]);

    // Completed under SHA-512, whose hash is read back from the bucket. One segment: s3s-fs
    // names a multipart upload's metadata file after the key, and a SHA-512 key makes that
    // name longer than a file name may be (S3 itself takes keys of 1,024 bytes).
    let id = store.start_upload("r").await.unwrap();
    store.append(id, "r", None, None, chunks(vec![small[..MIB].to_vec()])).await.unwrap();
    let d512 = Digest::of(Algorithm::Sha512, &small[..MIB]);
    assert_eq!(store.complete(id, "r", &d512).await.unwrap(), MIB as u64);
    assert_eq!(collect(&store, &d512, 10, 5).await, small[10..15]);
    assert!(store.stream_blob(&Digest::of(Algorithm::Sha256, b"absent"), 0, 1).await.unwrap().is_none());

    // Manifests are put whole, and checked first.
    let manifest = Bytes::from_static(br#"{"schemaVersion":2}"#);
    let md = Digest::of(Algorithm::Sha256, &manifest);
    assert!(matches!(store.put_bytes(&d, manifest.clone()).await, Err(StorageError::DigestMismatch)));
    store.put_bytes(&md, manifest.clone()).await.unwrap();
    assert_eq!(store.read(&md).await.unwrap(), Some(manifest));
    assert!(keys(&s3, "uploads").is_empty());
}

#[tokio::test]
async fn an_interrupted_body_keeps_what_arrived_and_a_short_chunk_is_discarded() {
    let s3 = TestS3::start();
    let spool = tempfile::tempdir().unwrap();
    let store = open(&s3, spool.path()).await;
    let id = store.start_upload("r").await.unwrap();
    let body = futures_util::stream::iter(vec![Ok(Bytes::from_static(b"abc")), Err(std::io::Error::other("cut"))]);
    assert!(matches!(store.append(id, "r", None, None, body).await, Err(StorageError::Body(_))));
    assert_eq!(store.upload_offset(id, "r").await.unwrap(), 3);
    assert!(matches!(
        store.append(id, "r", Some(3), Some(10), chunks(vec![b"de".to_vec()])).await,
        Err(StorageError::LengthMismatch)
    ));
    assert_eq!(store.upload_offset(id, "r").await.unwrap(), 3);
    store.append(id, "r", Some(3), Some(3), chunks(vec![b"def".to_vec()])).await.unwrap();
    let d = Digest::of(Algorithm::Sha256, b"abcdef");
    assert_eq!(store.complete(id, "r", &d).await.unwrap(), 6);
    assert_eq!(store.read(&d).await.unwrap().unwrap(), Bytes::from_static(b"abcdef"));

    // Cancelling removes the session's objects.
    let id = store.start_upload("r").await.unwrap();
    store.append(id, "r", None, None, chunks(vec![b"xyz".to_vec()])).await.unwrap();
    store.cancel(id, "r").await.unwrap();
    assert!(matches!(store.cancel(id, "r").await, Err(StorageError::UploadUnknown)));
    assert!(keys(&s3, "uploads").is_empty());
}

fn repo(name: &str) -> Repository {
    Repository {
        namespace: Namespace { account: "000000000000".into(), region: "us-east-1".into() },
        name: RepoName::parse(name).unwrap(),
    }
}

/// Sets the time s3s-fs reports for an object (its file's modification time).
fn age(s3: &TestS3, key: &str, by: Duration) {
    let f = std::fs::File::options().append(true).open(s3.object_path(key)).unwrap();
    f.set_modified(SystemTime::now() - by).unwrap();
}

#[tokio::test]
async fn garbage_collection_removes_old_unreferenced_blobs_and_abandoned_uploads() {
    let s3 = TestS3::start();
    let spool = tempfile::tempdir().unwrap();
    let ns = Namespace { account: "000000000000".into(), region: "us-east-1".into() };
    let reg = registry::Registry {
        store: Arc::new(open(&s3, spool.path()).await),
        meta: LocalMeta::in_memory(),
        auth: AllowAll(ns),
        hooks: NoHooks,
        realm: "test".into(),
    };
    let mut blobs = vec![];
    for content in [&b"layer"[..], b"manifest", b"orphan", b"renewed orphan", b"fresh orphan"] {
        let d = Digest::of(Algorithm::Sha256, content);
        reg.store.put_bytes(&d, Bytes::copy_from_slice(content)).await.unwrap();
        reg.meta.link_blob(&repo("a"), &d).await.unwrap();
        blobs.push(d);
    }
    let [layer, manifest, orphan, renewed, fresh] = <[Digest; 5]>::try_from(blobs).unwrap();
    for d in [&layer, &manifest, &orphan, &renewed] {
        age(&s3, &format!("blobs/sha256/{}", d.hex()), 2 * HOUR);
    }
    // Touching an old blob (a mount, a re-push) renews it with its marker.
    assert!(reg.store.touch(&renewed).await.unwrap());
    assert!(!reg.store.touch(&Digest::of(Algorithm::Sha256, b"absent")).await.unwrap());
    let record = ManifestRecord {
        digest: manifest.clone(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 8,
        subject: None,
        artifact_type: None,
        annotations: None,
        references: vec![layer.clone()],
    };
    reg.meta.put_manifest(&repo("a"), record, None).await.unwrap();
    let abandoned = reg.store.start_upload("a").await.unwrap();
    let active = reg.store.start_upload("a").await.unwrap();
    reg.store.append(abandoned, "a", None, None, chunks(vec![b"half".to_vec()])).await.unwrap();
    for key in keys(&s3, &format!("uploads/{abandoned}")) {
        age(&s3, &key, 48 * HOUR);
    }

    let report = reg.collect_garbage(GcPolicy::default()).await.unwrap();
    assert_eq!(report, GcReport { blobs_removed: 1, bytes_freed: 6, uploads_removed: 1, blobs_seen: 5 });
    assert_eq!(reg.store.size(&orphan).await.unwrap(), None);
    assert!(!reg.meta.blob_linked(&repo("a"), &orphan).await.unwrap());
    for kept in [&layer, &manifest, &renewed, &fresh] {
        assert!(reg.store.size(kept).await.unwrap().is_some(), "{kept} must stay");
    }
    assert!(matches!(reg.store.upload_offset(abandoned, "a").await, Err(StorageError::UploadUnknown)));
    assert_eq!(reg.store.upload_offset(active, "a").await.unwrap(), 0);
    assert!(keys(&s3, &format!("uploads/{abandoned}")).is_empty());

    // Once its marker is old too, the renewed orphan goes, marker and all.
    age(&s3, &format!("touched/sha256/{}", renewed.hex()), 2 * HOUR);
    let report = reg.collect_garbage(GcPolicy::default()).await.unwrap();
    assert_eq!((report.blobs_removed, report.bytes_freed), (1, 14));
    assert!(keys(&s3, "touched").is_empty());
}

#[tokio::test]
async fn opening_names_what_is_wrong_with_the_store() {
    let spool = tempfile::tempdir().unwrap();
    let s3 = TestS3::start_without_bucket();
    let err = try_open(&s3.blobs_url(), spool.path()).await.unwrap_err();
    assert!(matches!(err, S3OpenError::BucketMissing { .. }), "{err}");
    assert!(err.to_string().contains("does not exist") && err.to_string().contains("aws s3 mb"), "{err}");

    let nothing = format!("http://127.0.0.1:{}", free_port());
    let err = try_open(&format!("s3://b?endpoint={nothing}"), spool.path()).await.unwrap_err();
    assert!(matches!(err, S3OpenError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&nothing), "{err}");
}

#[tokio::test]
async fn a_store_that_goes_away_fails_requests_as_retryable_and_loses_nothing() {
    let mut s3 = TestS3::start();
    let spool = tempfile::tempdir().unwrap();
    let store = open(&s3, spool.path()).await;
    let kept = Digest::of(Algorithm::Sha256, b"acknowledged");
    store.put_bytes(&kept, Bytes::from_static(b"acknowledged")).await.unwrap();
    let id = store.start_upload("r").await.unwrap();
    store.append(id, "r", None, None, chunks(vec![b"first ".to_vec()])).await.unwrap();

    s3.stop_server();
    assert!(matches!(store.size(&kept).await, Err(StorageError::Unavailable(_))));
    let failed = store.append(id, "r", None, None, chunks(vec![b"lost".to_vec()])).await;
    assert!(matches!(failed, Err(StorageError::Unavailable(_))), "{failed:?}");
    let d = Digest::of(Algorithm::Sha256, b"first second");
    assert!(matches!(store.complete(id, "r", &d).await, Err(StorageError::Unavailable(_))));

    // Back again: the acknowledged blob is there, and the session resumes where the store
    // says it stands.
    s3.start_server();
    assert_eq!(store.read(&kept).await.unwrap().unwrap(), Bytes::from_static(b"acknowledged"));
    assert_eq!(store.upload_offset(id, "r").await.unwrap(), 6);
    store.append(id, "r", Some(6), None, chunks(vec![b"second".to_vec()])).await.unwrap();
    assert_eq!(store.complete(id, "r", &d).await.unwrap(), 12);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `/v2/` routes over a store in `s3`'s bucket, on a loopback port; their base URL.
async fn serve(s3: &TestS3, spool: &Path) -> String {
    let registry = registry::Registry {
        store: Arc::new(open(s3, spool).await),
        meta: LocalMeta::in_memory(),
        auth: AllowAll(Namespace { account: "123456789012".into(), region: "us-east-1".into() }),
        hooks: NoHooks,
        realm: "berth".into(),
    };
    let app = registry::http::router(Arc::new(registry));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v2/web")
}

#[tokio::test]
async fn the_distribution_api_uploads_in_chunks_serves_ranges_and_answers_503_when_the_store_is_down() {
    let mut s3 = TestS3::start();
    let spool = tempfile::tempdir().unwrap();
    let base = serve(&s3, spool.path()).await;
    let http = reqwest::Client::new();
    let started = http.post(format!("{base}/blobs/uploads/")).send().await.unwrap();
    assert_eq!(started.status(), 202);
    let location = started.headers()["location"].to_str().unwrap().to_owned();
    let upload = format!("{}{}", base.trim_end_matches("/v2/web"), location);
    for (range, chunk) in [("0-4", &b"hello"[..]), ("5-10", b" world")] {
        let r = http.patch(&upload).header("content-range", range).body(chunk).send().await.unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    }
    let d = Digest::of(Algorithm::Sha256, b"hello world");
    let done = http.put(format!("{upload}?digest={d}")).send().await.unwrap();
    assert_eq!(done.status(), 201);

    let r = http.get(format!("{base}/blobs/{d}")).header("range", "bytes=2-5").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 2-5/11");
    assert_eq!(r.bytes().await.unwrap(), &b"llo "[..]);

    s3.stop_server();
    let r = http.get(format!("{base}/blobs/{d}")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
}
