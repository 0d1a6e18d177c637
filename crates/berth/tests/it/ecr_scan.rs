//! ECR image scanning end to end: images built here (a Debian and an Alpine root
//! filesystem, in two layers where the second removes a package with a whiteout) are loaded
//! into the real Docker engine and pushed with `docker push`; the real server scans them
//! against the OSV fixture in `tests/fixtures/osv`, imported with `berth vulndb import`;
//! the official SDK reads the findings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aws_sdk_ecr::client::Waiters;
use aws_sdk_ecr::types::{ImageIdentifier, ImageScanningConfiguration, ScanStatus};
use sha2::Digest as _;

use crate::berth;

use crate::support::{Docker, RepositoryUri};

const SCAN_DEADLINE: Duration = Duration::from_secs(60);

const DEBIAN_OS_RELEASE: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";

/// dpkg's database of the Debian image: openssl (binary libssl3 and openssl, one source),
/// glibc, zlib (already fixed), bash (no Source field), and a removed package.
const DPKG_STATUS: &str = "\
Package: libssl3
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: openssl
Version: 3.0.11-1~deb12u2
Description: Secure Sockets Layer toolkit - shared libraries

Package: openssl
Status: install ok installed
Architecture: amd64
Version: 3.0.11-1~deb12u2
Description: Secure Sockets Layer toolkit - cryptographic utility

Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u4
Description: GNU C Library: Shared libraries

Package: zlib1g
Status: install ok installed
Architecture: amd64
Source: zlib
Version: 1:1.2.13.dfsg-1
Description: compression library - runtime

Package: bash
Essential: yes
Status: install ok installed
Architecture: amd64
Version: 5.2.15-2+b2
Description: GNU Bourne Again SHell

Package: libcurl4
Status: deinstall ok config-files
Architecture: amd64
Source: curl
Version: 7.88.1-10+deb12u5
";

const APK_INSTALLED: &str = "\
C:Q1Xw2pVJYg1b8s0=
P:busybox
V:1.36.1-r15
A:x86_64
o:busybox
T:Size optimized toolbox of many common UNIX utilities

P:busybox-binsh
V:1.36.1-r15
A:x86_64
o:busybox

P:libcrypto3
V:3.1.4-r5
A:x86_64
o:openssl

P:libssl3
V:3.1.4-r5
A:x86_64
o:openssl

P:musl
V:1.2.4_git20230717-r4
A:x86_64
o:musl
";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/osv")
}

fn code<E: aws_sdk_ecr::error::ProvideErrorMetadata + std::fmt::Debug>(e: &aws_sdk_ecr::error::SdkError<E>) -> String {
    match e {
        aws_sdk_ecr::error::SdkError::ServiceError(s) => s.err().code().unwrap_or_default().to_string(),
        other => format!("<not a service error: {other:?}>"),
    }
}

/// An entry of a layer tar.
enum Entry<'a> {
    File(&'a str, &'a str),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

fn layer(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        match e {
            Entry::File(path, content) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(content.len() as u64);
                b.append_data(&mut h, path, content.as_bytes()).unwrap();
            }
            Entry::Dir(path) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            Entry::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn debian_layers() -> Vec<Vec<u8>> {
    let base = layer(&[
        Entry::Dir("etc/"),
        Entry::Dir("usr/"),
        Entry::Dir("usr/lib/"),
        Entry::File("usr/lib/os-release", DEBIAN_OS_RELEASE),
        Entry::Symlink("etc/os-release", "../usr/lib/os-release"),
        Entry::Dir("var/"),
        Entry::Dir("var/lib/"),
        Entry::Dir("var/lib/dpkg/"),
        Entry::File("var/lib/dpkg/status", DPKG_STATUS),
        Entry::Dir("var/lib/dpkg/status.d/"),
        Entry::File("var/lib/dpkg/status.d/curl", "Package: curl\nArchitecture: amd64\nVersion: 7.88.1-10+deb12u5\n"),
    ]);
    // As `apt-get purge curl` in a later build step would: curl's record is whited out.
    let purge = layer(&[
        Entry::Dir("var/"),
        Entry::Dir("var/lib/"),
        Entry::Dir("var/lib/dpkg/"),
        Entry::Dir("var/lib/dpkg/status.d/"),
        Entry::File("var/lib/dpkg/status.d/.wh.curl", ""),
        Entry::File("etc/motd", "scanned by berth\n"),
    ]);
    vec![base, purge]
}

fn alpine_layers() -> Vec<Vec<u8>> {
    vec![layer(&[
        Entry::Dir("etc/"),
        Entry::File(
            "etc/os-release",
            "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\n",
        ),
        Entry::Dir("lib/"),
        Entry::Dir("lib/apk/"),
        Entry::Dir("lib/apk/db/"),
        Entry::File("lib/apk/db/installed", APK_INSTALLED),
    ])]
}

impl Docker {
    /// Loads an image made of `layers` (lowest first) into the engine as `name` with
    /// `docker load`, pushes it, and removes it from the engine again.
    fn load_and_push(&self, name: &str, layers: &[Vec<u8>]) {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("image.tar");
        std::fs::write(&archive, docker_archive(name, layers)).unwrap();
        self.run(&["load", "-q", "-i", archive.to_str().unwrap()]);
        self.push(name);
    }

    fn push(&self, name: &str) {
        self.run(&["push", "-q", name]);
        let _ = self.cmd(&["rmi", name]).output();
    }
}

/// A `docker save` archive: the layers, an image config naming their digests, and the
/// manifest that tags it.
fn docker_archive(name: &str, layers: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> =
        layers.iter().map(|l| format!("sha256:{}", hex::encode(sha2::Sha256::digest(l)))).collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| serde_json::json!({"created_by": "berth scan test"})).collect::<Vec<_>>(),
    });
    let layer_names: Vec<String> = (0..layers.len()).map(|i| format!("layer{i}.tar")).collect();
    let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": [name], "Layers": layer_names}]);
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("config.json".into(), serde_json::to_vec(&config).unwrap()),
        ("manifest.json".into(), serde_json::to_vec(&manifest).unwrap()),
    ];
    files.extend(layer_names.into_iter().zip(layers.iter().cloned()));
    let mut b = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(bytes.len() as u64);
        b.append_data(&mut h, path, &bytes[..]).unwrap();
    }
    b.into_inner().unwrap()
}

async fn create_repository(ecr: &aws_sdk_ecr::Client, name: &str, scan_on_push: bool) -> String {
    ecr.create_repository()
        .repository_name(name)
        .image_scanning_configuration(ImageScanningConfiguration::builder().scan_on_push(scan_on_push).build())
        .send()
        .await
        .unwrap()
        .uri()
}

fn tag(t: &str) -> ImageIdentifier {
    ImageIdentifier::builder().image_tag(t).build()
}

/// Waits until the image has a scan that is no longer in progress, and returns its status.
async fn finished_scan(ecr: &aws_sdk_ecr::Client, repository: &str, id: &ImageIdentifier) -> ScanStatus {
    let status = std::cell::RefCell::new(None);
    let done = testkit::eventually(SCAN_DEADLINE, || {
        let req = ecr.describe_image_scan_findings().repository_name(repository).image_id(id.clone()).send();
        let status = &status;
        async move {
            let Ok(r) = req.await else { return false };
            let now = r.image_scan_status().and_then(|s| s.status()).cloned();
            let finished = now.as_ref().is_some_and(|s| *s != ScanStatus::InProgress);
            *status.borrow_mut() = now;
            finished
        }
    })
    .await;
    let status = status.into_inner();
    assert!(done, "the scan of {repository} {id:?} did not finish; last status {status:?}");
    status.unwrap()
}

/// (name, severity, package_name, package_version) of every finding, across all pages.
async fn findings(ecr: &aws_sdk_ecr::Client, repository: &str, id: &ImageIdentifier) -> Vec<[String; 4]> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let r = ecr
            .describe_image_scan_findings()
            .repository_name(repository)
            .image_id(id.clone())
            .max_results(1)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        let page = r.image_scan_findings().unwrap().findings();
        assert!(page.len() <= 1, "maxResults is respected");
        for f in page {
            let attr = |k: &str| {
                f.attributes().iter().find(|a| a.key() == k).and_then(|a| a.value()).unwrap_or_default().to_string()
            };
            out.push([
                f.name().unwrap_or_default().to_string(),
                f.severity().map(|s| s.as_str().to_string()).unwrap_or_default(),
                attr("package_name"),
                attr("package_version"),
            ]);
        }
        token = r.next_token().map(str::to_string);
        if token.is_none() {
            return out;
        }
    }
}

fn expected(rows: &[[&str; 4]]) -> Vec<[String; 4]> {
    rows.iter().map(|r| r.map(str::to_string)).collect()
}

fn counts(pairs: &[(&str, i32)]) -> BTreeMap<String, i32> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[tokio::test]
async fn ecr_scan_on_push_finds_vulnerable_dpkg_and_apk_packages() {
    let mut b = berth().await;
    let out = b.command(&["vulndb", "import", fixtures().to_str().unwrap()]);
    assert!(out.contains("imported 8 of 9 records"), "{out}");
    assert!(out.contains("skipped 1 records"), "the npm advisory is skipped: {out}");
    let ecr = b.ecr().await;
    let debian = create_repository(&ecr, "scan/debian", true).await;
    let alpine = create_repository(&ecr, "scan/alpine", true).await;
    let docker = Docker::login(&b).await;
    docker.load_and_push(&format!("{debian}:12"), &debian_layers());
    docker.load_and_push(&format!("{alpine}:3.19"), &alpine_layers());

    assert_eq!(finished_scan(&ecr, "scan/debian", &tag("12")).await, ScanStatus::Complete);
    // The SDK's own waiter agrees that the scan is complete.
    ecr.wait_until_image_scan_complete()
        .repository_name("scan/debian")
        .image_id(tag("12"))
        .wait(SCAN_DEADLINE)
        .await
        .expect("image-scan-complete waiter");
    let want_debian = expected(&[
        ["CVE-2024-99101", "CRITICAL", "openssl", "3.0.11-1~deb12u2"],
        ["CVE-2024-99103", "MEDIUM", "glibc", "2.36-9+deb12u4"],
        ["CVE-2024-99104", "UNDEFINED", "bash", "5.2.15-2+b2"],
    ]);
    assert_eq!(
        findings(&ecr, "scan/debian", &tag("12")).await,
        want_debian,
        "zlib is fixed, bash's Debian 11 range does not apply, curl was removed by the second layer"
    );

    let r = ecr.describe_image_scan_findings().repository_name("scan/debian").image_id(tag("12")).send().await.unwrap();
    let f = r.image_scan_findings().unwrap();
    assert_eq!(
        f.finding_severity_counts()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.as_str().to_string(), v))
            .collect::<BTreeMap<_, _>>(),
        counts(&[("CRITICAL", 1), ("MEDIUM", 1), ("UNDEFINED", 1)])
    );
    assert!(f.image_scan_completed_at().is_some() && f.vulnerability_source_updated_at().is_some());
    let openssl = &f.findings()[0];
    assert_eq!(openssl.uri(), Some("https://security-tracker.example.invalid/tracker/DSA-9901-1"));
    assert!(openssl.description().unwrap().contains("TLS record layer"));
    assert!(openssl.attributes().iter().any(|a| a.key() == "CVSS3_SCORE" && a.value() == Some("9.8")));
    assert_eq!(r.image_id().unwrap().image_tag(), Some("12"));
    assert!(r.image_id().unwrap().image_digest().unwrap().starts_with("sha256:"));

    assert_eq!(finished_scan(&ecr, "scan/alpine", &tag("3.19")).await, ScanStatus::Complete);
    let want_alpine = expected(&[
        ["CVE-2024-99201", "HIGH", "busybox", "1.36.1-r15"],
        ["CVE-2024-99203", "LOW", "musl", "1.2.4_git20230717-r4"],
    ]);
    assert_eq!(
        findings(&ecr, "scan/alpine", &tag("3.19")).await,
        want_alpine,
        "openssl 3.1.4-r5 is past the fix in -r1"
    );

    // DescribeImages carries the status and the summary.
    let d = ecr.describe_images().repository_name("scan/alpine").send().await.unwrap();
    let detail = &d.image_details()[0];
    assert_eq!(detail.image_scan_status().unwrap().status(), Some(&ScanStatus::Complete));
    let summary = detail.image_scan_findings_summary().unwrap();
    let got: BTreeMap<String, i32> = summary
        .finding_severity_counts()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.as_str().to_string(), v))
        .collect();
    assert_eq!(got, counts(&[("HIGH", 1), ("LOW", 1)]));

    // Scans are durable.
    b.restart().await;
    let ecr = b.ecr().await;
    assert_eq!(findings(&ecr, "scan/debian", &tag("12")).await, want_debian);
    drop(docker);
}

#[tokio::test]
async fn ecr_scan_limits_errors_and_unsupported_images() {
    let b = berth().await;
    b.command(&["vulndb", "import", fixtures().to_str().unwrap()]);
    let ecr = b.ecr().await;
    let scanned = create_repository(&ecr, "scan/simplehttp", true).await;
    let manual = create_repository(&ecr, "scan/manual", false).await;
    let docker = Docker::login(&b).await;
    let image = testkit::images::simplehttp_image();
    for uri in [&scanned, &manual] {
        docker.run(&["tag", image, &format!("{uri}:1.0")]);
        docker.push(&format!("{uri}:1.0"));
    }

    // A FROM scratch image has no package database.
    assert_eq!(finished_scan(&ecr, "scan/simplehttp", &tag("1.0")).await, ScanStatus::UnsupportedImage);
    let r = ecr
        .describe_image_scan_findings()
        .repository_name("scan/simplehttp")
        .image_id(tag("1.0"))
        .send()
        .await
        .unwrap();
    let description = r.image_scan_status().unwrap().description().unwrap();
    assert!(description.starts_with("UnsupportedImageError:"), "{description}");
    assert!(r.image_scan_findings().unwrap().findings().is_empty());
    assert!(r.image_scan_findings().unwrap().finding_severity_counts().is_none());
    let d = ecr.describe_images().repository_name("scan/simplehttp").send().await.unwrap();
    assert_eq!(d.image_details()[0].image_scan_status().unwrap().status(), Some(&ScanStatus::UnsupportedImage));
    assert!(d.image_details()[0].image_scan_findings_summary().is_none());

    // Once per image per 24 hours, the scan on push included.
    let err = ecr.start_image_scan().repository_name("scan/simplehttp").image_id(tag("1.0")).send().await.unwrap_err();
    assert_eq!(code(&err), "LimitExceededException");

    // Without scan on push nothing was scanned; a manual scan starts one, and only one.
    let err = ecr
        .describe_image_scan_findings()
        .repository_name("scan/manual")
        .image_id(tag("1.0"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ScanNotFoundException");
    let d = ecr.describe_images().repository_name("scan/manual").send().await.unwrap();
    assert!(d.image_details()[0].image_scan_status().is_none());
    let s = ecr.start_image_scan().repository_name("scan/manual").image_id(tag("1.0")).send().await.unwrap();
    assert_eq!(s.image_scan_status().unwrap().status(), Some(&ScanStatus::InProgress));
    assert_eq!(s.image_id().unwrap().image_tag(), Some("1.0"));
    let digest = s.image_id().unwrap().image_digest().unwrap().to_string();
    let by_digest = ImageIdentifier::builder().image_digest(&digest).build();
    assert_eq!(finished_scan(&ecr, "scan/manual", &by_digest).await, ScanStatus::UnsupportedImage);
    let err = ecr.start_image_scan().repository_name("scan/manual").image_id(by_digest).send().await.unwrap_err();
    assert_eq!(code(&err), "LimitExceededException");

    for (repo, id, want) in [
        ("scan/manual", tag("nope"), "ImageNotFoundException"),
        ("scan/missing", tag("1.0"), "RepositoryNotFoundException"),
    ] {
        let err = ecr.start_image_scan().repository_name(repo).image_id(id.clone()).send().await.unwrap_err();
        assert_eq!(code(&err), want, "StartImageScan {repo}");
        let err = ecr.describe_image_scan_findings().repository_name(repo).image_id(id).send().await.unwrap_err();
        assert_eq!(code(&err), want, "DescribeImageScanFindings {repo}");
    }
    let err = ecr
        .start_image_scan()
        .repository_name("scan/manual")
        .image_id(ImageIdentifier::builder().build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidParameterException");

    // Deleting the repository drops its scans: the same image pushed again is scanned anew.
    ecr.delete_repository().repository_name("scan/simplehttp").force(true).send().await.unwrap();
    create_repository(&ecr, "scan/simplehttp", true).await;
    docker.run(&["tag", image, &format!("{scanned}:1.0")]);
    docker.push(&format!("{scanned}:1.0"));
    assert_eq!(finished_scan(&ecr, "scan/simplehttp", &tag("1.0")).await, ScanStatus::UnsupportedImage);
}

#[tokio::test]
async fn ecr_scan_uses_a_vulndb_imported_while_the_server_runs() {
    let b = berth().await;
    let ecr = b.ecr().await;
    let uri = create_repository(&ecr, "scan/later", false).await;
    let docker = Docker::login(&b).await;
    docker.load_and_push(&format!("{uri}:12"), &debian_layers());

    // No database yet: the scan fails, says what to do, and does not use up the day's scan.
    ecr.start_image_scan().repository_name("scan/later").image_id(tag("12")).send().await.unwrap();
    assert_eq!(finished_scan(&ecr, "scan/later", &tag("12")).await, ScanStatus::Failed);
    let r = ecr.describe_image_scan_findings().repository_name("scan/later").image_id(tag("12")).send().await.unwrap();
    let description = r.image_scan_status().unwrap().description().unwrap().to_string();
    assert!(description.contains("berth vulndb import"), "{description}");

    // Bad input is refused and changes nothing.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "{\"id\": \"CVE-1\", \"affected\": 7}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["vulndb", "import"])
        .arg(bad.path())
        .arg("--data-dir")
        .arg(b.data_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not OSV JSON") && stderr.contains("nothing was changed"), "{stderr}");
    assert!(!b.data_dir().join("vulndb/advisories.json").exists());

    // One advisory imported while the server runs: the next scan uses it.
    b.command(&["vulndb", "import", fixtures().join("debian/DSA-9901-1.json").to_str().unwrap()]);
    ecr.start_image_scan().repository_name("scan/later").image_id(tag("12")).send().await.unwrap();
    assert_eq!(finished_scan(&ecr, "scan/later", &tag("12")).await, ScanStatus::Complete);
    assert_eq!(
        findings(&ecr, "scan/later", &tag("12")).await,
        expected(&[["CVE-2024-99101", "CRITICAL", "openssl", "3.0.11-1~deb12u2"]])
    );
    let first =
        ecr.describe_image_scan_findings().repository_name("scan/later").image_id(tag("12")).send().await.unwrap();
    let first_source = first.image_scan_findings().unwrap().vulnerability_source_updated_at().unwrap().secs();

    // The rest of the fixture merges in; the image itself cannot be scanned again today,
    // but a repository that scans on push gets the new result for the same image.
    let out = b.command(&["vulndb", "import", fixtures().join("debian").to_str().unwrap()]);
    assert!(out.contains("1 replaced an older copy"), "{out}");
    let err = ecr.start_image_scan().repository_name("scan/later").image_id(tag("12")).send().await.unwrap_err();
    assert_eq!(code(&err), "LimitExceededException");
    let on_push = create_repository(&ecr, "scan/on-push", true).await;
    docker.load_and_push(&format!("{on_push}:12"), &debian_layers());
    assert_eq!(finished_scan(&ecr, "scan/on-push", &tag("12")).await, ScanStatus::Complete);
    assert_eq!(findings(&ecr, "scan/on-push", &tag("12")).await.len(), 3);
    let second =
        ecr.describe_image_scan_findings().repository_name("scan/on-push").image_id(tag("12")).send().await.unwrap();
    assert!(second.image_scan_findings().unwrap().vulnerability_source_updated_at().unwrap().secs() >= first_source);
}
