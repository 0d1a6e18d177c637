//! ECR image operations through the official SDK and the `docker` CLI: pushes through the
//! layer-upload API that Docker then pulls, tag immutability on both paths, BatchGetImage,
//! BatchDeleteImage, layer download URLs, pull times, and each operation's errors.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use aws_sdk_ecr::operation::put_image_tag_mutability::builders::PutImageTagMutabilityFluentBuilder;
use aws_sdk_ecr::primitives::Blob;
use aws_sdk_ecr::types::{
    ImageIdentifier, ImageTagMutability, ImageTagMutabilityExclusionFilter, ImageTagMutabilityExclusionFilterType, Tag,
};
use aws_sdk_ecr::Client;
use base64::Engine;
use testkit::error_code;
use testkit::images::simplehttp_image;

use crate::berth;
use crate::support::{create_repository, sha256};

use crate::support::RepositoryUri;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MIB: usize = 1 << 20;

/// Uploads `bytes` through InitiateLayerUpload / UploadLayerPart / CompleteLayerUpload in
/// parts of `part` bytes; returns the digest.
pub(crate) async fn upload(ecr: &Client, repo: &str, bytes: &[u8], part: usize) -> String {
    let digest = sha256(bytes);
    let init = ecr.initiate_layer_upload().repository_name(repo).send().await.unwrap();
    let id = init.upload_id().unwrap();
    for (i, chunk) in bytes.chunks(part).enumerate() {
        let first = (i * part) as i64;
        let r = ecr
            .upload_layer_part()
            .repository_name(repo)
            .upload_id(id)
            .part_first_byte(first)
            .part_last_byte(first + chunk.len() as i64 - 1)
            .layer_part_blob(Blob::new(chunk))
            .send()
            .await
            .unwrap();
        assert_eq!(r.last_byte_received(), Some(first + chunk.len() as i64 - 1));
    }
    let done =
        ecr.complete_layer_upload().repository_name(repo).upload_id(id).layer_digests(&digest).send().await.unwrap();
    assert_eq!(done.layer_digest(), Some(digest.as_str()));
    digest
}

/// An OCI image manifest over a config and layers already described as (digest, size).
fn manifest(config: (&str, usize), layers: &[(&str, usize)], layer_type: &str, config_type: &str) -> String {
    let layers: Vec<_> =
        layers.iter().map(|(d, s)| serde_json::json!({"mediaType": layer_type, "digest": d, "size": s})).collect();
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": if config_type.contains("docker") { "application/vnd.docker.distribution.manifest.v2+json" } else { OCI_MANIFEST },
        "config": {"mediaType": config_type, "digest": config.0, "size": config.1},
        "layers": layers,
    })
    .to_string()
}

/// Pushes a small made-up image through the API; returns its manifest digest.
async fn push_synthetic(ecr: &Client, repo: &str, seed: &str, tag: Option<&str>) -> String {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"{seed}\"}}");
    let layer = format!("layer of {seed}");
    let c = upload_or_existing(ecr, repo, config.as_bytes()).await;
    let l = upload_or_existing(ecr, repo, layer.as_bytes()).await;
    let m = manifest(
        (&c, config.len()),
        &[(&l, layer.len())],
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.config.v1+json",
    );
    let r = ecr
        .put_image()
        .repository_name(repo)
        .image_manifest(&m)
        .set_image_tag(tag.map(str::to_string))
        .send()
        .await
        .unwrap();
    let digest = r.image().unwrap().image_id().unwrap().image_digest().unwrap().to_string();
    assert_eq!(digest, sha256(m.as_bytes()));
    digest
}

async fn upload_or_existing(ecr: &Client, repo: &str, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let check = ecr.batch_check_layer_availability().repository_name(repo).layer_digests(&digest).send().await.unwrap();
    if check.layers().is_empty() {
        upload(ecr, repo, bytes, 5 * MIB).await
    } else {
        digest
    }
}

fn id(digest: Option<&str>, tag: Option<&str>) -> ImageIdentifier {
    ImageIdentifier::builder()
        .set_image_digest(digest.map(str::to_string))
        .set_image_tag(tag.map(str::to_string))
        .build()
}

/// A wildcard tag filter of the `*_WITH_EXCLUSION` settings.
fn wildcard(f: &str) -> ImageTagMutabilityExclusionFilter {
    ImageTagMutabilityExclusionFilter::builder()
        .filter_type(ImageTagMutabilityExclusionFilterType::Wildcard)
        .filter(f)
        .build()
        .unwrap()
}

/// PutImageTagMutability of `repo` to `setting`, with a wildcard exclusion filter if given.
fn mutability(
    ecr: &Client,
    repo: &str,
    setting: ImageTagMutability,
    filter: Option<&str>,
) -> PutImageTagMutabilityFluentBuilder {
    ecr.put_image_tag_mutability()
        .repository_name(repo)
        .image_tag_mutability(setting)
        .set_image_tag_mutability_exclusion_filters(filter.map(|f| vec![wildcard(f)]))
}

/// The `docker` CLI with its own config dir, so that this test's login neither sees nor
/// disturbs any other's.
struct Docker {
    config: tempfile::TempDir,
    images: Vec<String>,
}

impl Docker {
    fn new() -> Docker {
        Docker { config: tempfile::tempdir().unwrap(), images: Vec::new() }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("docker").env("DOCKER_CONFIG", self.config.path()).args(args).output().expect("run docker")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    async fn login(&self, ecr: &Client, host: &str) {
        let token = ecr.get_authorization_token().send().await.unwrap().authorization_data()[0]
            .authorization_token()
            .unwrap()
            .to_string();
        let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(token).unwrap()).unwrap();
        let password = decoded.strip_prefix("AWS:").unwrap();
        let mut child = Command::new("docker")
            .env("DOCKER_CONFIG", self.config.path())
            .args(["login", "--username", "AWS", "--password-stdin", host])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "docker login");
    }

    /// Tags `image` as `target`, remembering to remove the tag afterwards.
    fn tag(&mut self, image: &str, target: &str) {
        self.ok(&["tag", image, target]);
        self.images.push(target.to_string());
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        for i in &self.images {
            let _ = Command::new("docker").args(["rmi", i]).output();
        }
    }
}

/// An image that exists nowhere yet, so that `docker pull` must fetch all of it: the test
/// image's files (from `docker save`) plus a file unique to this run, as one
/// gzip-compressed layer, and the test image's config pointing at that layer.
fn fresh_image(dir: &Path) -> (Vec<u8>, Vec<Vec<u8>>) {
    let sh = |cmd: &mut Command| assert!(cmd.status().unwrap().success(), "{cmd:?}");
    let tar = dir.join("image.tar");
    sh(Command::new("docker").args(["save", "-o"]).arg(&tar).arg(simplehttp_image()));
    sh(Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(dir));
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let rootfs = dir.join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    for layer in saved[0]["Layers"].as_array().unwrap() {
        sh(Command::new("tar").arg("-xf").arg(dir.join(layer.as_str().unwrap())).arg("-C").arg(&rootfs));
    }
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    std::fs::write(rootfs.join("berth-test-run"), format!("{nonce}-{}", std::process::id())).unwrap();
    let layer = dir.join("layer.tar");
    sh(Command::new("tar")
        .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "-cf"])
        .arg(&layer)
        .arg("-C")
        .arg(&rootfs)
        .arg("."));
    let diff_id = sha256(&std::fs::read(&layer).unwrap());
    let gz = Command::new("gzip").args(["-n", "-c"]).arg(&layer).output().unwrap();
    assert!(gz.status.success(), "gzip");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(saved[0]["Config"].as_str().unwrap())).unwrap()).unwrap();
    config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": [diff_id]});
    config.as_object_mut().unwrap().remove("history");
    (serde_json::to_vec(&config).unwrap(), vec![gz.stdout])
}

#[tokio::test]
async fn ecr_images_pushed_through_the_layer_api_are_pulled_by_docker() {
    let b = berth().await;
    let ecr = b.ecr().await;
    let host = b.endpoint.trim_start_matches("http://").to_string();
    let uri = create_repository(&ecr, "api-pushed").await;
    let dir = tempfile::tempdir().unwrap();
    let (config, layers) = fresh_image(dir.path());

    let config_digest = sha256(&config);
    let layer_digests: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let before = ecr
        .batch_check_layer_availability()
        .repository_name("api-pushed")
        .set_layer_digests(Some(layer_digests.iter().chain([&config_digest]).cloned().collect()))
        .send()
        .await
        .unwrap();
    assert!(before.layers().is_empty());
    assert!(before.failures().iter().all(|f| f.failure_code().unwrap().as_str() == "MissingLayerDigest"));

    upload(&ecr, "api-pushed", &config, 5 * MIB).await;
    for l in &layers {
        upload(&ecr, "api-pushed", l, 5 * MIB).await;
    }
    let after = ecr
        .batch_check_layer_availability()
        .repository_name("api-pushed")
        .set_layer_digests(Some(layer_digests.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(after.layers().len(), layers.len());
    assert_eq!(after.layers()[0].layer_size(), Some(layers[0].len() as i64));
    assert_eq!(after.layers()[0].layer_availability().unwrap().as_str(), "AVAILABLE");

    let described: Vec<(&str, usize)> =
        layer_digests.iter().map(String::as_str).zip(layers.iter().map(Vec::len)).collect();
    let m = manifest(
        (&config_digest, config.len()),
        &described,
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.container.image.v1+json",
    );
    let put = ecr.put_image().repository_name("api-pushed").image_manifest(&m).image_tag("api").send().await.unwrap();
    let image = put.image().unwrap();
    assert_eq!(image.image_manifest_media_type(), Some("application/vnd.docker.distribution.manifest.v2+json"));
    assert_eq!(image.image_id().unwrap().image_tag(), Some("api"));
    let d = ecr.describe_images().repository_name("api-pushed").send().await.unwrap();
    let detail = &d.image_details()[0];
    assert_eq!(detail.image_tags(), ["api"]);
    assert_eq!(detail.last_recorded_pull_time(), None, "not pulled yet");

    let mut docker = Docker::new();
    docker.login(&ecr, &host).await;
    let pulled = format!("{uri}:api");
    docker.images.push(pulled.clone());
    assert!(!docker.run(&["image", "inspect", &config_digest]).status.success(), "the image is new to docker");
    docker.ok(&["pull", "-q", &pulled]);
    assert_eq!(docker.ok(&["image", "inspect", "-f", "{{.Id}}", &pulled]), config_digest, "the config we uploaded");
    let run = docker.run(&["run", "--rm", &pulled, "exit", "7"]);
    assert_eq!(run.status.code(), Some(7), "the pulled image runs: {}", String::from_utf8_lossy(&run.stderr));

    let d = ecr.describe_images().repository_name("api-pushed").send().await.unwrap();
    assert!(d.image_details()[0].last_recorded_pull_time().is_some(), "docker pull recorded a pull");
}

#[tokio::test]
async fn ecr_images_layer_upload_rules_and_errors() {
    let b = berth().await;
    let ecr = b.ecr().await;
    create_repository(&ecr, "parts").await;

    // A layer in two parts, the first of exactly 5 MiB, is fine.
    let big: Vec<u8> = (0..6 * MIB + 123).map(|i| (i * 7 % 251) as u8).collect();
    let digest = upload(&ecr, "parts", &big, 5 * MIB).await;
    let again = ecr.initiate_layer_upload().repository_name("parts").send().await.unwrap();
    let err = ecr
        .complete_layer_upload()
        .repository_name("parts")
        .upload_id(again.upload_id().unwrap())
        .layer_digests(&digest)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "LayerAlreadyExistsException");

    let start = || async {
        ecr.initiate_layer_upload().repository_name("parts").send().await.unwrap().upload_id().unwrap().to_string()
    };
    let part = |id: String, first: i64, last: i64, bytes: Vec<u8>| {
        ecr.upload_layer_part()
            .repository_name("parts")
            .upload_id(id)
            .part_first_byte(first)
            .part_last_byte(last)
            .layer_part_blob(Blob::new(bytes))
            .send()
    };
    let complete = |id: String, digest: String| {
        ecr.complete_layer_upload().repository_name("parts").upload_id(id).layer_digests(digest).send()
    };

    // Parts must follow each other and say how long they are.
    let id = start().await;
    part(id.clone(), 0, 2, b"abc".to_vec()).await.unwrap();
    let err = part(id.clone(), 5, 7, b"def".to_vec()).await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidLayerPartException");
    let err = part(id.clone(), 3, 9, b"def".to_vec()).await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidLayerPartException");
    let err = part(id.clone(), 0, i64::MAX, b"def".to_vec()).await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidLayerPartException");
    // Every part but the last must hold 5 MiB.
    part(id.clone(), 3, 5, b"def".to_vec()).await.unwrap();
    let err = complete(id.clone(), sha256(b"abcdef")).await.unwrap_err();
    assert_eq!(error_code(&err), "LayerPartTooSmallException");
    // ... and the upload is gone with it.
    let err = part(id.clone(), 6, 6, b"g".to_vec()).await.unwrap_err();
    assert_eq!(error_code(&err), "UploadNotFoundException");

    // One small part alone is a whole layer; the digest must match.
    let id = start().await;
    let err = complete(id.clone(), sha256(b"xyz")).await.unwrap_err();
    assert_eq!(error_code(&err), "EmptyUploadException");
    part(id.clone(), 0, 2, b"xyz".to_vec()).await.unwrap();
    let err = complete(id.clone(), sha256(b"other")).await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidLayerException");
    let err = complete(id.clone(), sha256(b"xyz")).await.unwrap_err();
    assert_eq!(error_code(&err), "UploadNotFoundException", "a failed completion discards the upload");

    let err = complete("not-an-upload-id".into(), sha256(b"xyz")).await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    let err = complete(id.clone(), "sha256:nothex".into()).await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    // An upload belongs to its repository.
    create_repository(&ecr, "elsewhere").await;
    let id = start().await;
    let err = ecr
        .upload_layer_part()
        .repository_name("elsewhere")
        .upload_id(&id)
        .part_first_byte(0)
        .part_last_byte(0)
        .layer_part_blob(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "UploadNotFoundException");
    let err = ecr.initiate_layer_upload().repository_name("missing").send().await.unwrap_err();
    assert_eq!(error_code(&err), "RepositoryNotFoundException");
    let err = part(uuid_like(), 0, 0, b"x".to_vec()).await.unwrap_err();
    assert_eq!(error_code(&err), "UploadNotFoundException");

    let check = ecr
        .batch_check_layer_availability()
        .repository_name("parts")
        .layer_digests(&digest)
        .layer_digests("bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(check.layers()[0].layer_size(), Some(big.len() as i64));
    assert_eq!(check.failures()[0].failure_code().unwrap().as_str(), "InvalidLayerDigest");
    let err = ecr
        .batch_check_layer_availability()
        .repository_name("missing")
        .layer_digests(&digest)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "RepositoryNotFoundException");
}

fn uuid_like() -> String {
    "0f0e0d0c-0b0a-4908-8706-050403020100".into()
}

#[tokio::test]
async fn ecr_images_download_urls_open_one_layer_for_a_while() {
    let b = berth().await;
    let ecr = b.ecr().await;
    create_repository(&ecr, "dl").await;
    let blob: Vec<u8> = (0..300_000).map(|i| (i % 13) as u8).collect();
    let digest = upload(&ecr, "dl", &blob, 5 * MIB).await;
    let err = ecr.get_download_url_for_layer().repository_name("dl").layer_digest(&digest).send().await.unwrap_err();
    assert_eq!(error_code(&err), "LayerInaccessibleException", "no image uses it yet");
    let config = upload(&ecr, "dl", b"{}", 5 * MIB).await;
    let m = manifest(
        (&config, 2),
        &[(&digest, blob.len())],
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.config.v1+json",
    );
    ecr.put_image().repository_name("dl").image_manifest(m).image_tag("v1").send().await.unwrap();

    let r = ecr.get_download_url_for_layer().repository_name("dl").layer_digest(&digest).send().await.unwrap();
    assert_eq!(r.layer_digest(), Some(digest.as_str()));
    let url = r.download_url().unwrap();
    assert!(url.starts_with(&format!("{}/v2/dl/blobs/{digest}?", b.endpoint)), "{url}");
    let http = reqwest::Client::new();
    let got = http.get(url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), blob.as_slice(), "the layer, with no other credentials");

    // The credential opens that blob only.
    let other = url.replace(&digest, &config);
    assert_eq!(http.get(&other).send().await.unwrap().status(), 403);
    let manifest_url = url.replace(&format!("/blobs/{digest}"), "/manifests/v1");
    assert_eq!(http.get(&manifest_url).send().await.unwrap().status(), 403);
    let tampered = format!("{}0", url);
    assert_eq!(http.get(&tampered).send().await.unwrap().status(), 403);
    let bare = url.split('?').next().unwrap();
    assert_eq!(http.get(bare).send().await.unwrap().status(), 401);

    let err =
        ecr.get_download_url_for_layer().repository_name("dl").layer_digest(sha256(b"nope")).send().await.unwrap_err();
    assert_eq!(error_code(&err), "LayersNotFoundException");
    let err =
        ecr.get_download_url_for_layer().repository_name("dl").layer_digest("sha256:zz").send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    let err =
        ecr.get_download_url_for_layer().repository_name("missing").layer_digest(&digest).send().await.unwrap_err();
    assert_eq!(error_code(&err), "RepositoryNotFoundException");
}

#[tokio::test]
async fn ecr_images_put_image_errors() {
    let b = berth().await;
    let ecr = b.ecr().await;
    create_repository(&ecr, "put").await;
    let a = push_synthetic(&ecr, "put", "a", Some("1")).await;

    let same = ecr.batch_get_image().repository_name("put").image_ids(id(Some(&a), None)).send().await.unwrap();
    let m = same.images()[0].image_manifest().unwrap().to_string();
    let put = |tag: Option<&str>, digest: Option<&str>, manifest: &str| {
        ecr.put_image()
            .repository_name("put")
            .image_manifest(manifest)
            .set_image_tag(tag.map(str::to_string))
            .set_image_digest(digest.map(str::to_string))
            .send()
    };
    assert_eq!(error_code(&put(Some("1"), None, &m).await.unwrap_err()), "ImageAlreadyExistsException");
    assert_eq!(error_code(&put(None, None, &m).await.unwrap_err()), "ImageAlreadyExistsException");
    put(Some("2"), Some(&a), &m).await.unwrap();
    assert_eq!(
        error_code(&put(Some("3"), Some(&sha256(b"x")), &m).await.unwrap_err()),
        "ImageDigestDoesNotMatchException"
    );
    assert_eq!(error_code(&put(Some("3"), None, "not json").await.unwrap_err()), "InvalidParameterException");
    assert_eq!(error_code(&put(Some("-bad"), None, &m).await.unwrap_err()), "InvalidParameterException");

    let missing = manifest(
        (&sha256(b"no config"), 9),
        &[(&sha256(b"no layer"), 8)],
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.config.v1+json",
    );
    let err = put(Some("3"), None, &missing).await.unwrap_err();
    assert_eq!(error_code(&err), "LayersNotFoundException");
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b"no image"), "size": 8}],
    })
    .to_string();
    assert_eq!(error_code(&put(Some("3"), None, &index).await.unwrap_err()), "ReferencedImagesNotFoundException");
    let err = ecr.put_image().repository_name("missing").image_manifest(&m).send().await.unwrap_err();
    assert_eq!(error_code(&err), "RepositoryNotFoundException");

    // The image is one image with two tags, in both records.
    let d = ecr.describe_images().repository_name("put").send().await.unwrap();
    assert_eq!(d.image_details().len(), 1);
    let mut tags = d.image_details()[0].image_tags().to_vec();
    tags.sort();
    assert_eq!(tags, ["1", "2"]);
}

#[tokio::test]
async fn ecr_images_immutable_tags_refuse_overwrite_through_the_api_and_docker_push() {
    let b = berth().await;
    let ecr = b.ecr().await;
    let host = b.endpoint.trim_start_matches("http://").to_string();
    let uri = ecr
        .create_repository()
        .repository_name("frozen")
        .image_tag_mutability(ImageTagMutability::Immutable)
        .send()
        .await
        .unwrap()
        .uri();
    let first = push_synthetic(&ecr, "frozen", "first", Some("1.0")).await;
    let config = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"second\"}";
    let c = upload_or_existing(&ecr, "frozen", config.as_bytes()).await;
    let l = upload_or_existing(&ecr, "frozen", b"layer of second").await;
    let second = manifest(
        (&c, config.len()),
        &[(&l, 15)],
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.config.v1+json",
    );
    let err =
        ecr.put_image().repository_name("frozen").image_manifest(&second).image_tag("1.0").send().await.unwrap_err();
    assert_eq!(error_code(&err), "ImageTagAlreadyExistsException");
    let err_text = format!("{:?}", err.into_service_error());
    assert!(err_text.contains("cannot be overwritten because the tag is immutable"), "{err_text}");

    // docker push of another image under the tag is refused with ECR's words; pushing one
    // image twice under a new tag is fine.
    let mut docker = Docker::new();
    docker.login(&ecr, &host).await;
    docker.tag(simplehttp_image(), &format!("{uri}:1.0"));
    let out = docker.run(&["push", &format!("{uri}:1.0")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an immutable tag was overwritten by docker push");
    assert!(
        stderr.contains("tag invalid: The image tag '1.0' already exists in the 'frozen' repository and cannot be overwritten because the tag is immutable."),
        "{stderr}"
    );
    docker.tag(simplehttp_image(), &format!("{uri}:2.0"));
    docker.ok(&["push", &format!("{uri}:2.0")]);
    docker.ok(&["push", &format!("{uri}:2.0")]);
    let held = ecr.batch_get_image().repository_name("frozen").image_ids(id(None, Some("1.0"))).send().await.unwrap();
    assert_eq!(held.images()[0].image_id().unwrap().image_digest(), Some(first.as_str()), "1.0 did not move");

    // Exclusions: IMMUTABLE_WITH_EXCLUSION lets matching tags move, and nothing else.
    let r = mutability(&ecr, "frozen", ImageTagMutability::ImmutableWithExclusion, Some("dev-*")).send().await.unwrap();
    assert_eq!(r.image_tag_mutability(), Some(&ImageTagMutability::ImmutableWithExclusion));
    assert_eq!(r.image_tag_mutability_exclusion_filters()[0].filter(), "dev-*");
    push_synthetic(&ecr, "frozen", "first", Some("dev-1")).await;
    ecr.put_image().repository_name("frozen").image_manifest(&second).image_tag("dev-1").send().await.unwrap();
    let err =
        ecr.put_image().repository_name("frozen").image_manifest(&second).image_tag("1.0").send().await.unwrap_err();
    assert_eq!(error_code(&err), "ImageTagAlreadyExistsException");

    // MUTABLE_WITH_EXCLUSION protects only what matches, and CreateRepository takes it too.
    ecr.create_repository()
        .repository_name("thawed")
        .image_tag_mutability(ImageTagMutability::MutableWithExclusion)
        .image_tag_mutability_exclusion_filters(wildcard("release-*"))
        .send()
        .await
        .unwrap();
    let repos = ecr.describe_repositories().repository_names("thawed").send().await.unwrap();
    let repo = &repos.repositories()[0];
    assert_eq!(repo.image_tag_mutability(), Some(&ImageTagMutability::MutableWithExclusion));
    assert_eq!(repo.image_tag_mutability_exclusion_filters()[0].filter(), "release-*");
    push_synthetic(&ecr, "thawed", "one", Some("latest")).await;
    push_synthetic(&ecr, "thawed", "two", Some("latest")).await;
    push_synthetic(&ecr, "thawed", "one", Some("release-1")).await;
    upload_or_existing(&ecr, "thawed", config.as_bytes()).await;
    upload_or_existing(&ecr, "thawed", b"layer of second").await;
    let err = ecr
        .put_image()
        .repository_name("thawed")
        .image_manifest(&second)
        .image_tag("release-1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "ImageTagAlreadyExistsException");

    // Filters go only with the *_WITH_EXCLUSION settings, and those need one.
    let err = mutability(&ecr, "thawed", ImageTagMutability::Mutable, Some("x")).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    let err = ecr
        .create_repository()
        .repository_name("broken")
        .image_tag_mutability(ImageTagMutability::ImmutableWithExclusion)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    let err = mutability(&ecr, "thawed", ImageTagMutability::MutableWithExclusion, Some("no/slash"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    let err = mutability(&ecr, "missing", ImageTagMutability::Immutable, None).send().await.unwrap_err();
    assert_eq!(error_code(&err), "RepositoryNotFoundException");
    // The setting is durable.
    let mut b = b;
    b.restart().await;
    let ecr = b.ecr().await;
    let repos = ecr.describe_repositories().repository_names("frozen").send().await.unwrap();
    assert_eq!(repos.repositories()[0].image_tag_mutability_exclusion_filters()[0].filter(), "dev-*");
    let err =
        ecr.put_image().repository_name("frozen").image_manifest(&second).image_tag("1.0").send().await.unwrap_err();
    assert_eq!(error_code(&err), "ImageTagAlreadyExistsException");
}

#[tokio::test]
async fn ecr_images_batch_get_and_delete() {
    let b = berth().await;
    let ecr = b.ecr().await;
    create_repository(&ecr, "many").await;
    let a = push_synthetic(&ecr, "many", "a", Some("a1")).await;
    let a_manifest =
        ecr.batch_get_image().repository_name("many").image_ids(id(Some(&a), None)).send().await.unwrap().images()[0]
            .image_manifest()
            .unwrap()
            .to_string();
    ecr.put_image().repository_name("many").image_manifest(&a_manifest).image_tag("a2").send().await.unwrap();
    let bd = push_synthetic(&ecr, "many", "b", Some("b1")).await;
    let c = push_synthetic(&ecr, "many", "c", None).await;

    let get = ecr
        .batch_get_image()
        .repository_name("many")
        .image_ids(id(None, Some("a2")))
        .image_ids(id(Some(&c), None))
        .image_ids(id(Some(&bd), Some("a1")))
        .image_ids(id(None, Some("zz")))
        .image_ids(id(Some("sha256:nothex"), None))
        .image_ids(id(None, None))
        .send()
        .await
        .unwrap();
    let got: Vec<_> = get.images().iter().map(|i| i.image_id().unwrap().image_digest().unwrap()).collect();
    assert_eq!(got, [a.as_str(), c.as_str()]);
    assert_eq!(get.images()[0].image_id().unwrap().image_tag(), Some("a2"));
    assert_eq!(get.images()[0].image_manifest(), Some(a_manifest.as_str()));
    assert_eq!(get.images()[0].image_manifest_media_type(), Some(OCI_MANIFEST));
    let codes: Vec<_> = get.failures().iter().map(|f| f.failure_code().unwrap().as_str()).collect();
    assert_eq!(codes, ["ImageTagDoesNotMatchDigest", "ImageNotFound", "InvalidImageDigest", "MissingDigestAndTag"]);
    let docker_only = ecr
        .batch_get_image()
        .repository_name("many")
        .image_ids(id(None, Some("a1")))
        .accepted_media_types("application/vnd.docker.distribution.manifest.v2+json")
        .send()
        .await
        .unwrap();
    assert!(docker_only.images().is_empty());
    assert_eq!(docker_only.failures()[0].failure_code().unwrap().as_str(), "ImageNotFound");
    let err = ecr.batch_get_image().repository_name("missing").image_ids(id(Some(&a), None)).send().await.unwrap_err();
    assert_eq!(error_code(&err), "RepositoryNotFoundException");
    // BatchGetImage is a pull.
    let details = ecr.describe_images().repository_name("many").image_ids(id(Some(&c), None)).send().await.unwrap();
    assert!(details.image_details()[0].last_recorded_pull_time().is_some());

    // An index that lists b keeps b from being deleted by digest.
    let b_size =
        ecr.batch_get_image().repository_name("many").image_ids(id(Some(&bd), None)).send().await.unwrap().images()[0]
            .image_manifest()
            .unwrap()
            .len();
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": bd, "size": b_size}],
    })
    .to_string();
    let idx = ecr.put_image().repository_name("many").image_manifest(&index).image_tag("multi").send().await.unwrap();
    let idx = idx.image().unwrap().image_id().unwrap().image_digest().unwrap().to_string();

    let del = ecr
        .batch_delete_image()
        .repository_name("many")
        .image_ids(id(None, Some("a1")))
        .image_ids(id(Some(&c), None))
        .image_ids(id(Some(&bd), None))
        .image_ids(id(None, Some("zz")))
        .send()
        .await
        .unwrap();
    let deleted: Vec<_> = del
        .image_ids()
        .iter()
        .map(|i| (i.image_digest().unwrap().to_string(), i.image_tag().map(str::to_string)))
        .collect();
    assert_eq!(deleted, [(a.clone(), Some("a1".to_string())), (c.clone(), None)]);
    let codes: Vec<_> = del.failures().iter().map(|f| f.failure_code().unwrap().as_str()).collect();
    assert_eq!(codes, ["ImageNotFound", "ImageReferencedByManifestList"]);

    // Removing a's last tag deletes it; deleting the index frees b.
    let del = ecr
        .batch_delete_image()
        .repository_name("many")
        .image_ids(id(None, Some("a2")))
        .image_ids(id(Some(&idx), None))
        .send()
        .await
        .unwrap();
    assert!(del.failures().is_empty(), "{:?}", del.failures());
    ecr.batch_delete_image().repository_name("many").image_ids(id(Some(&bd), None)).send().await.unwrap();
    let left = ecr.describe_images().repository_name("many").send().await.unwrap();
    assert!(left.image_details().is_empty(), "{:?}", left.image_details());

    // The registry agrees: nothing left to pull under the old tags.
    let token = ecr.get_authorization_token().send().await.unwrap().authorization_data()[0]
        .authorization_token()
        .unwrap()
        .to_string();
    let http = reqwest::Client::new();
    for reference in ["a1", "a2", "b1", "multi", c.as_str()] {
        let r = http
            .get(format!("{}/v2/many/manifests/{reference}", b.endpoint))
            .header("Authorization", format!("Basic {token}"))
            .header("Accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{reference}");
    }
    let tags: serde_json::Value = http
        .get(format!("{}/v2/many/tags/list", b.endpoint))
        .header("Authorization", format!("Basic {token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!([]));
    let err =
        ecr.batch_delete_image().repository_name("missing").image_ids(id(Some(&a), None)).send().await.unwrap_err();
    assert_eq!(error_code(&err), "RepositoryNotFoundException");
}

#[tokio::test]
async fn ecr_images_pulls_through_v2_record_the_pull_time() {
    let b = berth().await;
    let ecr = b.ecr().await;
    create_repository(&ecr, "pulled").await;
    let d = push_synthetic(&ecr, "pulled", "p", Some("v1")).await;
    let token = ecr.get_authorization_token().send().await.unwrap().authorization_data()[0]
        .authorization_token()
        .unwrap()
        .to_string();
    let http = reqwest::Client::new();
    let manifest = |method: reqwest::Method| {
        http.request(method, format!("{}/v2/pulled/manifests/v1", b.endpoint))
            .header("Authorization", format!("Basic {token}"))
            .header("Accept", OCI_MANIFEST)
            .send()
    };
    assert_eq!(manifest(reqwest::Method::HEAD).await.unwrap().status(), 200);
    let time = || async {
        ecr.describe_images()
            .repository_name("pulled")
            .image_ids(id(Some(&d), None))
            .send()
            .await
            .unwrap()
            .image_details()[0]
            .last_recorded_pull_time()
            .cloned()
    };
    assert_eq!(time().await, None, "a HEAD is no pull");
    assert_eq!(manifest(reqwest::Method::GET).await.unwrap().status(), 200);
    let first = time().await.expect("a GET is a pull");
    // Within a minute, further pulls are not written again.
    assert_eq!(manifest(reqwest::Method::GET).await.unwrap().status(), 200);
    assert_eq!(time().await, Some(first));
}

#[tokio::test]
async fn ecr_images_repository_settings_and_tag_errors() {
    let b = berth().await;
    let ecr = b.ecr().await;
    create_repository(&ecr, "settings").await;
    let r = ecr
        .put_image_scanning_configuration()
        .repository_name("settings")
        .image_scanning_configuration(
            aws_sdk_ecr::types::ImageScanningConfiguration::builder().scan_on_push(true).build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.repository_name(), Some("settings"));
    assert!(r.image_scanning_configuration().unwrap().scan_on_push());
    let repos = ecr.describe_repositories().repository_names("settings").send().await.unwrap();
    assert!(repos.repositories()[0].image_scanning_configuration().unwrap().scan_on_push());
    let err = ecr
        .put_image_scanning_configuration()
        .repository_name("missing")
        .image_scanning_configuration(
            aws_sdk_ecr::types::ImageScanningConfiguration::builder().scan_on_push(true).build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "RepositoryNotFoundException");

    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build().unwrap();
    let err = ecr.create_repository().repository_name("tagged").tags(tag("bad*key", "v")).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidTagParameterException");
    let err =
        ecr.create_repository().repository_name("tagged").tags(tag("aws:reserved", "v")).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidTagParameterException");
    let many: Vec<Tag> = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
    let err = ecr.create_repository().repository_name("tagged").set_tags(Some(many)).send().await.unwrap_err();
    assert_eq!(error_code(&err), "TooManyTagsException");
    let fifty: Vec<Tag> = (0..50).map(|i| tag(&format!("k{i}"), "v")).collect();
    ecr.create_repository().repository_name("tagged").set_tags(Some(fifty)).send().await.unwrap();
}
