//! Drives the `/v2/` router over real HTTP (a random loopback port) through every endpoint
//! of the distribution spec, including the failure codes.

use std::sync::{Arc, Mutex};

use registry::{Algorithm, AllowAll, Digest, LocalMeta, Namespace, OnPush, PushEvent, Registry};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

struct App {
    base: String,
    http: reqwest::Client,
    pushes: Arc<Mutex<Vec<PushEvent>>>,
    _dir: tempfile::TempDir,
}

#[derive(Clone)]
struct Record(Arc<Mutex<Vec<PushEvent>>>);

impl OnPush for Record {
    async fn on_push(&self, event: PushEvent) {
        self.0.lock().unwrap().push(event);
    }
}

async fn spawn() -> App {
    let dir = tempfile::tempdir().unwrap();
    let pushes = Arc::new(Mutex::new(vec![]));
    let registry = Registry {
        store: Arc::new(registry::BlobStore::open(dir.path().join("store")).unwrap()),
        meta: LocalMeta::open(&dir.path().join("meta.log")).unwrap(),
        auth: AllowAll(Namespace { account: "123456789012".into(), region: "us-east-1".into() }),
        hooks: Record(pushes.clone()),
        realm: "berth".into(),
    };
    let app = registry::http::router(Arc::new(registry));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    App { base: format!("http://{addr}"), http: reqwest::Client::new(), pushes, _dir: dir }
}

fn sha(bytes: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, bytes)
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

async fn error_code(r: reqwest::Response) -> String {
    let body: Value = r.json().await.unwrap();
    body["errors"][0]["code"].as_str().unwrap().to_owned()
}

impl App {
    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{}", self.base, path))
    }

    async fn push_blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let d = sha(bytes);
        let r = self
            .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/?digest={d}"))
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        d
    }

    async fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, manifest: &Value) -> reqwest::Response {
        self.req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(serde_json::to_vec(manifest).unwrap())
            .send()
            .await
            .unwrap()
    }

    /// Pushes a config and one layer and returns an OCI image manifest referencing them.
    async fn image(&self, repo: &str, layer: &[u8]) -> Value {
        let config = self.push_blob(repo, b"{}").await;
        let layer_d = self.push_blob(repo, layer).await;
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_d, "size": layer.len()}]
        })
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

#[tokio::test]
async fn base_endpoint() {
    let app = spawn().await;
    let r = app.req(Method::GET, "/v2/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-distribution-api-version"), "registry/2.0");
}

#[tokio::test]
async fn monolithic_push_then_pull_head_and_range() {
    let app = spawn().await;
    let d = app.push_blob("team/app", b"hello world").await;

    let r = app.req(Method::GET, &format!("/v2/team/app/blobs/{d}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), d.to_string());
    assert_eq!(header(&r, "content-length"), "11");
    assert_eq!(r.bytes().await.unwrap(), "hello world");

    let r = app.req(Method::HEAD, &format!("/v2/team/app/blobs/{d}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), "11");
    assert_eq!(header(&r, "docker-content-digest"), d.to_string());

    let r = app.req(Method::GET, &format!("/v2/team/app/blobs/{d}")).header("range", "bytes=6-").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-range"), "bytes 6-10/11");
    assert_eq!(r.bytes().await.unwrap(), "world");
}

#[tokio::test]
async fn blob_failures() {
    let app = spawn().await;
    let d = app.push_blob("a", b"data").await;
    // Pushed to `a`, so unknown in `b`.
    let r = app.req(Method::GET, &format!("/v2/b/blobs/{d}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
    let r = app.req(Method::HEAD, &format!("/v2/b/blobs/{d}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let r = app.req(Method::GET, "/v2/a/blobs/sha256:nothex").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");

    for bad in ["/v2/UPPER/blobs/", "/v2/a%2F%2E%2E/tags/list", "/v2/a%2F..%2Fb/tags/list", "/v2/-a/manifests/x"] {
        let path = if bad.ends_with("/blobs/") { format!("{bad}{d}") } else { bad.to_owned() };
        let r = app.req(Method::GET, &path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error_code(r).await, "NAME_INVALID", "{bad}");
    }

    // Wrong digest on a monolithic upload: DIGEST_INVALID and nothing stored.
    let wrong = sha(b"other");
    let r = app.req(Method::POST, &format!("/v2/a/blobs/uploads/?digest={wrong}")).body("data2").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = app.req(Method::HEAD, &format!("/v2/a/blobs/{}", sha(b"data2"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let r = app.req(Method::POST, &format!("/v2/a/blobs/{d}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(r).await, "UNSUPPORTED");

    // Blob delete unlinks from the repository.
    let r = app.req(Method::DELETE, &format!("/v2/a/blobs/{d}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = app.req(Method::GET, &format!("/v2/a/blobs/{d}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app.req(Method::DELETE, &format!("/v2/a/blobs/{d}")).send().await.unwrap();
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn chunked_upload_with_status_out_of_order_and_wrong_digest() {
    let app = spawn().await;
    let r = app.req(Method::POST, "/v2/r/blobs/uploads/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location");
    let uuid = header(&r, "docker-upload-uuid");
    assert_eq!(location, format!("/v2/r/blobs/uploads/{uuid}"));

    let r = app.req(Method::PATCH, &location).header("content-range", "0-4").body("hello").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-4");

    // Out of order: 416, and the upload is unchanged.
    let r = app.req(Method::PATCH, &location).header("content-range", "10-12").body("xyz").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "range"), "0-4");

    // Streamed chunk without Content-Range.
    let r = app.req(Method::PATCH, &location).body(" wor").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-8");

    let r = app.req(Method::GET, &location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), "0-8");
    assert_eq!(header(&r, "docker-upload-uuid"), uuid);

    // The upload belongs to `r`; another repository does not see it.
    let r = app.req(Method::GET, &format!("/v2/other/blobs/uploads/{uuid}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");

    let r = app.req(Method::PUT, &location).send().await.unwrap();
    assert_eq!(error_code(r).await, "DIGEST_INVALID");

    // The final chunk travels with the PUT.
    let d = sha(b"hello world");
    let r = app.req(Method::PUT, &format!("{location}?digest={d}")).body("ld").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/r/blobs/{d}"));
    assert_eq!(header(&r, "docker-content-digest"), d.to_string());
    let r = app.req(Method::GET, &format!("/v2/r/blobs/{d}")).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap(), "hello world");
    let r = app.req(Method::GET, &location).send().await.unwrap();
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");

    // A wrong digest at completion: DIGEST_INVALID, nothing visible.
    let r = app.req(Method::POST, "/v2/r/blobs/uploads/").send().await.unwrap();
    let location = header(&r, "location");
    app.req(Method::PATCH, &location).body("abc").send().await.unwrap();
    let r = app.req(Method::PUT, &format!("{location}?digest={}", sha(b"abd"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    for d in [sha(b"abc"), sha(b"abd")] {
        let r = app.req(Method::HEAD, &format!("/v2/r/blobs/{d}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn upload_cancel_and_unknown() {
    let app = spawn().await;
    let r = app.req(Method::POST, "/v2/r/blobs/uploads/").send().await.unwrap();
    let location = header(&r, "location");
    app.req(Method::PATCH, &location).body("partial").send().await.unwrap();
    let r = app.req(Method::DELETE, &location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.req(Method::DELETE, &location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    let r = app.req(Method::PATCH, "/v2/r/blobs/uploads/../../etc").body("x").send().await.unwrap();
    assert_eq!(r.status().as_u16() / 100, 4);
    let r = app.req(Method::PATCH, "/v2/r/blobs/uploads/not-a-uuid").body("x").send().await.unwrap();
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn cross_repository_mount() {
    let app = spawn().await;
    let d = app.push_blob("src", b"layer").await;
    let r = app.req(Method::POST, &format!("/v2/dst/blobs/uploads/?mount={d}&from=src")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/dst/blobs/{d}"));
    let r = app.req(Method::GET, &format!("/v2/dst/blobs/{d}")).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap(), "layer");

    // Mounting what the source does not hold starts an ordinary upload instead.
    let r =
        app.req(Method::POST, &format!("/v2/dst/blobs/uploads/?mount={}&from=src", sha(b"nope"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(!header(&r, "docker-upload-uuid").is_empty());
}

#[tokio::test]
async fn manifests_by_tag_and_digest() {
    let app = spawn().await;
    let manifest = app.image("ns/img", b"layer-1").await;
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let d = sha(&bytes);

    let r = app.put_manifest("ns/img", "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), d.to_string());
    assert_eq!(header(&r, "location"), format!("/v2/ns/img/manifests/{d}"));
    {
        let pushes = app.pushes.lock().unwrap();
        assert_eq!(pushes.len(), 1);
        assert_eq!(pushes[0].tag.as_ref().map(|t| t.as_str()), Some("v1"));
        assert_eq!(pushes[0].digest, d);
        assert_eq!(pushes[0].repository.name.as_str(), "ns/img");
    }

    for reference in ["v1".to_owned(), d.to_string()] {
        let r = app.req(Method::GET, &format!("/v2/ns/img/manifests/{reference}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&r, "docker-content-digest"), d.to_string());
        assert_eq!(r.bytes().await.unwrap(), bytes);
        let r = app.req(Method::HEAD, &format!("/v2/ns/img/manifests/{reference}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-length"), bytes.len().to_string());
    }

    // Push by digest; a body that does not match the URL's digest is refused.
    let r = app.put_manifest("ns/img", &d.to_string(), OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.put_manifest("ns/img", &sha(b"x").to_string(), OCI_MANIFEST, &manifest).await;
    assert_eq!(error_code(r).await, "DIGEST_INVALID");

    // Another repository does not see it.
    let r = app.req(Method::GET, "/v2/other/manifests/v1").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");

    // Delete a tag: the manifest stays; delete by digest: it goes with its tags.
    app.put_manifest("ns/img", "v2", OCI_MANIFEST, &manifest).await;
    let r = app.req(Method::DELETE, "/v2/ns/img/manifests/v2").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = app.req(Method::GET, "/v2/ns/img/manifests/v2").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app.req(Method::DELETE, &format!("/v2/ns/img/manifests/{d}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    for reference in ["v1".to_owned(), d.to_string()] {
        let r = app.req(Method::GET, &format!("/v2/ns/img/manifests/{reference}")).send().await.unwrap();
        assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    }
    let r = app.req(Method::DELETE, &format!("/v2/ns/img/manifests/{d}")).send().await.unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn manifest_failures() {
    let app = spawn().await;
    let manifest = app.image("img", b"layer").await;

    // Blobs not in this repository.
    let r = app.put_manifest("elsewhere", "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    assert!(body["errors"][0]["detail"]["digest"].is_string());

    let r = app.put_manifest("img", "v1", OCI_MANIFEST, &json!({"not": "a manifest"})).await;
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    let r = app
        .req(Method::PUT, "/v2/img/manifests/v1")
        .header("content-type", OCI_MANIFEST)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    let r = app.put_manifest("img", ".bad-tag", OCI_MANIFEST, &manifest).await;
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");

    // An index whose entries are not in the repository.
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha(b"missing"), "size": 1}]});
    let r = app.put_manifest("img", "idx", OCI_INDEX, &index).await;
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    assert!(app.pushes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn docker_manifest_list_and_large_manifest() {
    let app = spawn().await;
    let config = app.push_blob("d", b"{}").await;
    let layer = app.push_blob("d", b"tar").await;
    let image = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer, "size": 3}],
        // Padding: the manifest is over 4 MB.
        "annotations": {"pad": "x".repeat(4_500_000)}
    });
    let r = app.put_manifest("d", "big", "application/vnd.docker.distribution.manifest.v2+json", &image).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let image_d = header(&r, "docker-content-digest");

    let list_type = "application/vnd.docker.distribution.manifest.list.v2+json";
    let list = json!({"schemaVersion": 2, "mediaType": list_type, "manifests": [
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": image_d, "size": 4_500_000,
         "platform": {"architecture": "amd64", "os": "linux"}}]});
    let r = app.put_manifest("d", "multi", list_type, &list).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.req(Method::GET, "/v2/d/manifests/multi").send().await.unwrap();
    assert_eq!(header(&r, "content-type"), list_type);
    let r = app.req(Method::GET, "/v2/d/manifests/big").send().await.unwrap();
    assert!(r.bytes().await.unwrap().len() > 4_000_000);
}

#[tokio::test]
async fn tags_list_paginates() {
    let app = spawn().await;
    let r = app.req(Method::GET, "/v2/t/tags/list").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");

    let manifest = app.image("t", b"l").await;
    for tag in ["c", "a", "d", "b"] {
        assert_eq!(app.put_manifest("t", tag, OCI_MANIFEST, &manifest).await.status(), StatusCode::CREATED);
    }
    let r = app.req(Method::GET, "/v2/t/tags/list").send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"name": "t", "tags": ["a", "b", "c", "d"]}));

    let r = app.req(Method::GET, "/v2/t/tags/list?n=2").send().await.unwrap();
    assert_eq!(header(&r, "link"), "</v2/t/tags/list?n=2&last=b>; rel=\"next\"");
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["a", "b"]));
    let r = app.req(Method::GET, "/v2/t/tags/list?n=2&last=b").send().await.unwrap();
    assert_eq!(header(&r, "link"), "");
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["c", "d"]));
    let r = app.req(Method::GET, "/v2/t/tags/list?last=c").send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["d"]));
    let r = app.req(Method::GET, "/v2/t/tags/list?n=0").send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!([]));
}

#[tokio::test]
async fn referrers() {
    let app = spawn().await;
    let subject = app.image("r", b"base").await;
    let r = app.put_manifest("r", "base", OCI_MANIFEST, &subject).await;
    let subject_d = header(&r, "docker-content-digest");

    // Nothing refers to it yet: an empty index, not 404.
    let r = app.req(Method::GET, &format!("/v2/r/referrers/{subject_d}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    assert_eq!(r.json::<Value>().await.unwrap()["manifests"], json!([]));

    let empty = app.push_blob("r", b"{}").await;
    let mut sbom = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject_d, "size": 1},
        "annotations": {"org.example": "yes"}
    });
    let r = app.put_manifest("r", &sha(&serde_json::to_vec(&sbom).unwrap()).to_string(), OCI_MANIFEST, &sbom).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "oci-subject"), subject_d);
    sbom["artifactType"] = "application/vnd.example.sig".into();
    app.put_manifest("r", "sig", OCI_MANIFEST, &sbom).await;

    let r = app.req(Method::GET, &format!("/v2/r/referrers/{subject_d}")).send().await.unwrap();
    let index: Value = r.json().await.unwrap();
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);

    let r = app
        .req(Method::GET, &format!("/v2/r/referrers/{subject_d}?artifactType=application/spdx%2Bjson"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let index: Value = r.json().await.unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0]["artifactType"], "application/spdx+json");
    assert_eq!(manifests[0]["annotations"]["org.example"], "yes");
    assert_eq!(manifests[0]["mediaType"], OCI_MANIFEST);

    let r = app.req(Method::GET, "/v2/r/referrers/sha256:bad").send().await.unwrap();
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
}

#[tokio::test]
async fn unauthorized_gets_challenge_and_spec_body() {
    struct Deny;
    impl registry::Authorize for Deny {
        async fn authorize(
            &self,
            _: &http::request::Parts,
            _: registry::Access<'_>,
        ) -> Result<registry::Grant, registry::AuthError> {
            Err(registry::AuthError::Unauthorized { challenges: Vec::new() })
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry {
        store: Arc::new(registry::BlobStore::open(dir.path()).unwrap()),
        meta: LocalMeta::in_memory(),
        auth: Deny,
        hooks: registry::NoHooks,
        realm: "127.0.0.1:1234".into(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, registry::http::router(Arc::new(registry))).await.unwrap() });
    for path in ["/v2/", "/v2/a/tags/list"] {
        let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header(&r, "www-authenticate"), "Basic realm=\"127.0.0.1:1234\"");
        assert_eq!(error_code(r).await, "UNAUTHORIZED");
    }
}

/// A real client: skopeo pushes an image from the Docker engine and pulls it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copy_both_ways() {
    let app = spawn().await;
    let image = tokio::task::spawn_blocking(testkit::images::simplehttp_image).await.unwrap();
    let host = app.base.trim_start_matches("http://").to_owned();
    let remote = format!("docker://{host}/berth/simplehttp:1.0");
    let port = host.rsplit(':').next().unwrap().to_owned();
    let local = format!("berth-test/skopeo-roundtrip:{port}");
    let skopeo = |args: Vec<String>| async move {
        let out = tokio::process::Command::new("skopeo").args(&args).output().await.expect("skopeo is installed");
        assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    skopeo(s(&["copy", "--dest-tls-verify=false", &format!("docker-daemon:{image}"), &remote])).await;
    let r = app.req(Method::GET, "/v2/berth/simplehttp/tags/list").send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["1.0"]));
    assert_eq!(app.pushes.lock().unwrap().len(), 1);

    let inspect: Value = serde_json::from_slice(&skopeo(s(&["inspect", "--tls-verify=false", &remote])).await).unwrap();
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 1);

    // Pushing again mounts nothing new and changes nothing.
    skopeo(s(&["copy", "--dest-tls-verify=false", &format!("docker-daemon:{image}"), &remote])).await;

    skopeo(s(&["copy", "--src-tls-verify=false", &remote, &format!("docker-daemon:{local}")])).await;
    let out = std::process::Command::new("docker").args(["image", "inspect", &local]).output().unwrap();
    let _ = std::process::Command::new("docker").args(["rmi", &local]).output();
    assert!(out.status.success(), "pulled image missing from the engine");
}
