//! `berth server --blobs s3://...` against a real S3-compatible server (s3s-fs from
//! crates.io, see `testkit::s3`): `docker push` and `docker pull` through Berth's registry
//! with every blob in the bucket and none in the data dir, and a start that names what is
//! wrong with the store.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ecr::types::ImageIdentifier;
use testkit::s3::TestS3;
use testkit::Berth;

use crate::support::{create_repository, files_under, Docker};

async fn server_on(s3: &TestS3) -> Berth {
    Berth::start_server(env!("CARGO_BIN_EXE_berth"), &["--blobs", &s3.blobs_url()], &s3.credentials_env()).await
}

/// The digests of the manifest, config and layers of `repo:tag`.
async fn image_digests(ecr: &aws_sdk_ecr::Client, repo: &str, tag: &str) -> Vec<String> {
    let got = ecr
        .batch_get_image()
        .repository_name(repo)
        .image_ids(ImageIdentifier::builder().image_tag(tag).build())
        .send()
        .await
        .unwrap();
    let image = &got.images()[0];
    let manifest: serde_json::Value = serde_json::from_str(image.image_manifest().unwrap()).unwrap();
    let mut digests = vec![image.image_id().unwrap().image_digest().unwrap().to_string()];
    digests.push(manifest["config"]["digest"].as_str().unwrap().to_string());
    for layer in manifest["layers"].as_array().unwrap() {
        digests.push(layer["digest"].as_str().unwrap().to_string());
    }
    digests
}

#[tokio::test]
async fn docker_push_and_pull_keep_the_blobs_in_the_bucket() {
    let s3 = TestS3::start();
    let b = server_on(&s3).await;
    let ecr = b.ecr().await;
    let uri = create_repository(&ecr, "on-s3").await;
    let mut docker = Docker::login(&b).await;
    let image = format!("{uri}:v1");
    docker.run(&["tag", testkit::images::simplehttp_image(), &image]);
    docker.made.push(image.clone());
    docker.run(&["push", "-q", &image]);

    let digests = image_digests(&ecr, "on-s3", "v1").await;
    for digest in &digests {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let stored = std::fs::read(s3.object_path(&format!("blobs/sha256/{hex}"))).unwrap();
        assert_eq!(crate::support::sha256(&stored), *digest, "the bucket holds {digest} verified");
    }
    assert!(files_under(&b.data_dir().join("registry/blobs")).is_empty(), "no blob in the data dir");
    assert!(files_under(&s3.bucket_dir().join("uploads")).is_empty(), "no upload left behind");

    // Pulled back from the bucket through Berth, into an engine that no longer has it.
    docker.remove_local(&image);
    docker.run(&["pull", "-q", &image]);
    assert_eq!(docker.image_id(&image), docker.image_id(testkit::images::simplehttp_image()));
}

#[tokio::test]
async fn a_missing_bucket_stops_the_start_with_what_to_do() {
    let s3 = TestS3::start_without_bucket();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("BERTH_BLOBS", s3.blobs_url())
        .envs(s3.credentials_env())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("berth server kept running without its bucket");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("the bucket berth-blobs does not exist"), "{stderr}");
    assert!(stderr.contains("aws s3 mb s3://berth-blobs"), "{stderr}");
    assert!(!dir.path().join("endpoint").exists(), "a server that cannot serve publishes no endpoint");
}

#[tokio::test]
async fn ecr_layer_uploads_land_in_the_bucket_verified() {
    let s3 = TestS3::start();
    let b = server_on(&s3).await;
    let ecr = b.ecr().await;
    create_repository(&ecr, "parts").await;
    // Three parts (5, 5 and 2 MiB): segments of their own, published by copying each.
    let layer: Vec<u8> = (0..12u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let digest = crate::ecr_images::upload(&ecr, "parts", &layer, 5 << 20).await;
    let stored = std::fs::read(s3.object_path(&format!("blobs/sha256/{}", &digest["sha256:".len()..]))).unwrap();
    assert!(stored == layer, "the bucket holds the layer as uploaded");
    let check = ecr.batch_check_layer_availability().repository_name("parts").layer_digests(&digest).send().await;
    assert_eq!(check.unwrap().layers()[0].layer_size(), Some(12 << 20));
    assert!(files_under(&s3.bucket_dir().join("uploads")).is_empty(), "no upload left behind");
}
