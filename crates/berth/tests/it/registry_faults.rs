//! The registry under faults, through its own HTTP API as Docker speaks it: `kill -9` in
//! the middle of a push, and many clients pushing the same blob and the same tag at once.

use reqwest::StatusCode;
use sha2::Digest as _;

use crate::berth;

/// `Authorization` for the registry: Basic `AWS:<token>` from GetAuthorizationToken.
async fn registry_auth(b: &testkit::Berth) -> String {
    let r = b.ecr().await.get_authorization_token().send().await.unwrap();
    format!("Basic {}", r.authorization_data()[0].authorization_token().unwrap())
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Deterministic, incompressible-looking bytes.
fn content(seed: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

struct Client {
    http: reqwest::Client,
    base: String,
    auth: String,
    repo: String,
}

impl Client {
    async fn new(b: &testkit::Berth, repo: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: b.endpoint.clone(),
            auth: registry_auth(b).await,
            repo: repo.into(),
        }
    }

    /// A monolithic upload: `POST ...?digest=` with the whole blob.
    async fn push_blob(&self, bytes: Vec<u8>) -> String {
        let d = digest(&bytes);
        let r = self
            .http
            .post(format!("{}/v2/{}/blobs/uploads/?digest={d}", self.base, self.repo))
            .header("authorization", &self.auth)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
        d
    }

    /// An image manifest over a config and layers already pushed; returns its digest.
    async fn push_manifest(&self, tag: &str, config: (&str, usize), layers: &[(&str, usize)]) -> (String, Vec<u8>) {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
            "layers": layers.iter().map(|(d, s)| serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s
            })).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let r = self
            .http
            .put(format!("{}/v2/{}/manifests/{tag}", self.base, self.repo))
            .header("authorization", &self.auth)
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
        (digest(&bytes), bytes)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/v2/{}/{path}", self.base, self.repo))
            .header("authorization", &self.auth)
            .send()
            .await
            .unwrap()
    }

    async fn head_status(&self, path: &str) -> StatusCode {
        let r = self.http.head(format!("{}/v2/{}/{path}", self.base, self.repo)).header("authorization", &self.auth);
        r.send().await.unwrap().status()
    }
}

fn config_blob(n: u32) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Labels": {"n": n.to_string()}},
        "rootfs": {"type": "layers", "diff_ids": []}
    }))
    .unwrap()
}

#[tokio::test]
async fn kill_9_during_a_push_keeps_completed_pushes_and_shows_nothing_partial() {
    let mut b = berth().await;
    b.ecr().await.create_repository().repository_name("faults").send().await.unwrap();
    let c = Client::new(&b, "faults").await;

    // A completed push.
    let layer = content(1, 3 << 20);
    let config = config_blob(1);
    let layer_d = c.push_blob(layer.clone()).await;
    let config_d = c.push_blob(config.clone()).await;
    let (manifest_d, manifest) = c.push_manifest("done", (&config_d, config.len()), &[(&layer_d, layer.len())]).await;

    // A second push, cut off by SIGKILL while its 32 MiB layer is streaming.
    let big = content(2, 32 << 20);
    let big_d = digest(&big);
    let r = c
        .http
        .post(format!("{}/v2/faults/blobs/uploads/", c.base))
        .header("authorization", &c.auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    // The path of the session, whatever host the server named (it comes back on another port).
    let upload_path = match location.strip_prefix("http://") {
        Some(rest) => rest[rest.find('/').unwrap()..].to_string(),
        None => location.clone(),
    };
    let upload_url = format!("{}{upload_path}", c.base);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let patch = tokio::spawn(
        c.http
            .patch(&upload_url)
            .header("authorization", &c.auth)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send(),
    );
    for piece in big[..8 << 20].chunks(1 << 20) {
        tx.send(Ok(piece.to_vec())).await.unwrap();
    }
    // Let the server receive what was sent, then kill it mid-request.
    let uploads = b.data_dir().join("registry/uploads");
    let received = || {
        std::fs::read_dir(&uploads)
            .map(|d| d.flatten().map(|e| e.path().join("data").metadata().map(|m| m.len()).unwrap_or(0)).sum::<u64>())
            .unwrap_or(0)
    };
    assert!(testkit::eventually(std::time::Duration::from_secs(20), || async { received() >= 4 << 20 }).await);
    b.kill9();
    drop(tx);
    assert!(patch.await.unwrap().is_err() || received() < big.len() as u64);

    b.restart().await;
    let c = Client::new(&b, "faults").await;
    let upload_url = format!("{}{upload_path}", c.base);
    // The completed push is whole.
    let r = c.get("manifests/done").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["docker-content-digest"], manifest_d.as_str());
    assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());
    assert_eq!(c.get(&format!("blobs/{layer_d}")).await.bytes().await.unwrap().as_ref(), layer.as_slice());
    let images = b.ecr().await.describe_images().repository_name("faults").send().await.unwrap();
    assert_eq!(images.image_details().len(), 1);
    assert_eq!(images.image_details()[0].image_tags(), ["done"]);
    // Nothing of the cut-off blob is visible, and the store holds no partial blob.
    assert_eq!(c.head_status(&format!("blobs/{big_d}")).await, StatusCode::NOT_FOUND);
    let blob_file = b.data_dir().join("registry/blobs/sha256").join(&big_d[7..9]).join(&big_d[7..]);
    assert!(!blob_file.exists());
    // The session survived: the client can ask where it stands and resume from there.
    let status = c.http.get(&upload_url).header("authorization", &c.auth).send().await.unwrap();
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    let range = status.headers()["range"].to_str().unwrap().to_string();
    let end: usize = range.trim_start_matches("0-").parse().unwrap();
    assert!(end < 8 << 20, "at most what was sent was kept: {range}");
    let rest = c
        .http
        .put(format!("{upload_url}{}digest={big_d}", if upload_url.contains('?') { "&" } else { "?" }))
        .header("authorization", &c.auth)
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{}-{}", end + 1, big.len() - 1))
        .body(big[end + 1..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), StatusCode::CREATED, "{}", rest.text().await.unwrap());
    let back = c.get(&format!("blobs/{big_d}")).await.bytes().await.unwrap();
    assert!(back.as_ref() == big.as_slice(), "the resumed blob is exactly the original");
}

#[tokio::test]
async fn concurrent_pushes_of_one_blob_and_one_tag_stay_consistent() {
    let b = berth().await;
    b.ecr().await.create_repository().repository_name("race").send().await.unwrap();
    let c = std::sync::Arc::new(Client::new(&b, "race").await);
    let layer = content(7, 2 << 20);
    const N: u32 = 8;
    let mut pushes = Vec::new();
    for n in 0..N {
        let (c, layer) = (c.clone(), layer.clone());
        pushes.push(tokio::spawn(async move {
            let layer_d = c.push_blob(layer.clone()).await;
            let config = config_blob(n);
            let config_d = c.push_blob(config.clone()).await;
            c.push_manifest("latest", (&config_d, config.len()), &[(&layer_d, layer.len())]).await.0
        }));
    }
    let mut digests = Vec::new();
    for p in pushes {
        digests.push(p.await.unwrap());
    }
    // The tag names exactly one of the pushed manifests, and both APIs agree on which.
    let r = c.get("manifests/latest").await;
    let winner = r.headers()["docker-content-digest"].to_str().unwrap().to_string();
    assert!(digests.contains(&winner));
    let images = b.ecr().await.describe_images().repository_name("race").send().await.unwrap();
    assert_eq!(images.image_details().len(), N as usize);
    let tagged: Vec<_> = images.image_details().iter().filter(|i| !i.image_tags().is_empty()).collect();
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0].image_digest(), Some(winner.as_str()));
    let back = c.get(&format!("blobs/{}", digest(&layer))).await.bytes().await.unwrap();
    assert!(back.as_ref() == layer.as_slice());
}
