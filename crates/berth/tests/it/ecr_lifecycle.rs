//! ECR lifecycle policies end to end: images pushed with the real `docker` CLI and the raw
//! OCI API, policies set and previewed with the official SDK, enforcement run on demand
//! (`berth ecr run-lifecycle`) and on the server's schedule, and what it leaves checked
//! with `DescribeImages`, `ListImages` and `docker pull`.

use std::process::Stdio;
use std::time::Duration;

use aws_sdk_ecr::client::Waiters;
use aws_sdk_ecr::types::{
    ImageActionType, ImageIdentifier, LifecyclePolicyPreviewFilter, LifecyclePolicyPreviewStatus, TagStatus,
};
use serde_json::json;
use testkit::images::simplehttp_image;
use testkit::{error_code, eventually, Berth};

use crate::berth;

use crate::support::{Docker, RepositoryUri};

/// The code and message of a service error.
fn failure<E: aws_sdk_ecr::error::ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    err: &aws_sdk_ecr::error::SdkError<E, R>,
) -> (String, String) {
    match err {
        aws_sdk_ecr::error::SdkError::ServiceError(s) => {
            (s.err().code().unwrap_or_default().to_string(), s.err().message().unwrap_or_default().to_string())
        }
        other => (format!("<not a service error: {other:?}>"), String::new()),
    }
}

/// A rule of a policy, from its priority and `selection` members; the action is `expire`.
fn rule(priority: u32, selection: serde_json::Value) -> serde_json::Value {
    json!({"rulePriority": priority, "description": format!("rule {priority}"), "selection": selection, "action": {"type": "expire"}})
}

fn policy(rules: &[serde_json::Value]) -> String {
    serde_json::to_string_pretty(&json!({ "rules": rules })).unwrap()
}

impl Docker {
    /// Builds an image of its own (the test image with a distinct label, so a distinct
    /// config and manifest) as `image` and pushes it.
    fn build_and_push(&mut self, image: &str, label: &str) {
        let dockerfile = format!("FROM {}\nLABEL berth.test.lifecycle=\"{label}\"\n", simplehttp_image());
        let mut child = self
            .cmd(&["build", "-q", "-t", image, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("run docker build");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(dockerfile.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "docker build of {image} failed");
        self.made.push(image.to_string());
        assert!(self.ok(&["push", "-q", image]), "docker push of {image} failed");
    }
}

/// The digest an image tag points at now.
async fn digest_of(ecr: &aws_sdk_ecr::Client, repo: &str, tag: &str) -> String {
    let r = ecr
        .describe_images()
        .repository_name(repo)
        .image_ids(ImageIdentifier::builder().image_tag(tag).build())
        .send()
        .await
        .unwrap();
    r.image_details()[0].image_digest().unwrap().to_string()
}

/// (digest, tags, applied rule priority) of each preview result, in order.
type Row = (String, Vec<String>, i32);

async fn preview_rows(ecr: &aws_sdk_ecr::Client, repo: &str) -> (Vec<Row>, Option<i32>) {
    let r = ecr.get_lifecycle_policy_preview().repository_name(repo).send().await.unwrap();
    assert_eq!(r.status(), Some(&LifecyclePolicyPreviewStatus::Complete));
    let rows = r
        .preview_results()
        .iter()
        .map(|p| {
            assert_eq!(p.action().and_then(|a| a.r#type()), Some(&ImageActionType::Expire));
            assert!(p.image_pushed_at().is_some());
            (p.image_digest().unwrap().to_string(), p.image_tags().to_vec(), p.applied_rule_priority().unwrap())
        })
        .collect();
    (rows, r.summary().and_then(|s| s.expiring_image_total_count()))
}

async fn wait_preview_complete(ecr: &aws_sdk_ecr::Client, repo: &str) {
    let done = eventually(Duration::from_secs(20), || async {
        let r = ecr.get_lifecycle_policy_preview().repository_name(repo).send().await.unwrap();
        r.status() == Some(&LifecyclePolicyPreviewStatus::Complete)
    })
    .await;
    assert!(done, "the preview did not complete");
}

fn run_lifecycle(b: &Berth, repo: Option<&str>) -> serde_json::Value {
    let mut args = vec!["ecr", "run-lifecycle", "--json"];
    if let Some(r) = repo {
        args.extend(["--repository", r]);
    }
    serde_json::from_str(&b.command(&args)).expect("run-lifecycle prints JSON")
}

#[tokio::test]
async fn lifecycle_preview_lists_exactly_what_enforcement_deletes() {
    let b = berth().await;
    let ecr = b.ecr().await;
    let repo = "lc/app";
    let uri = ecr.create_repository().repository_name(repo).send().await.unwrap().uri();
    let mut docker = Docker::login(&b).await;

    // Six images, oldest first. `latest` moves twice, leaving two untagged images.
    docker.build_and_push(&format!("{uri}:v1"), "1");
    let v1 = digest_of(&ecr, repo, "v1").await;
    docker.build_and_push(&format!("{uri}:v2"), "2");
    let v2 = digest_of(&ecr, repo, "v2").await;
    docker.build_and_push(&format!("{uri}:latest"), "3");
    let old_a = digest_of(&ecr, repo, "latest").await;
    docker.build_and_push(&format!("{uri}:latest"), "4");
    let old_b = digest_of(&ecr, repo, "latest").await;
    docker.build_and_push(&format!("{uri}:v3"), "5");
    let v3 = digest_of(&ecr, repo, "v3").await;
    docker.build_and_push(&format!("{uri}:latest"), "6");
    let latest = digest_of(&ecr, repo, "latest").await;
    let all = [&v1, &v2, &old_a, &old_b, &v3, &latest];
    for (i, d) in all.iter().enumerate() {
        assert_eq!(all.iter().filter(|x| x == &d).count(), 1, "image {i} has a digest of its own");
    }

    // Keep `latest`, one untagged image and the two youngest `v*` images.
    let text = policy(&[
        rule(
            1,
            json!({"tagStatus": "tagged", "tagPatternList": ["latest"], "countType": "imageCountMoreThan", "countNumber": 1}),
        ),
        rule(5, json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1})),
        rule(
            9,
            json!({"tagStatus": "tagged", "tagPrefixList": ["v"], "countType": "imageCountMoreThan", "countNumber": 2}),
        ),
    ]);
    let put = ecr.put_lifecycle_policy().repository_name(repo).lifecycle_policy_text(&text).send().await.unwrap();
    assert_eq!(put.lifecycle_policy_text(), Some(text.as_str()));
    assert_eq!(put.registry_id(), Some(b.key.account.as_str()));
    let got = ecr.get_lifecycle_policy().repository_name(repo).send().await.unwrap();
    assert_eq!(got.lifecycle_policy_text(), Some(text.as_str()));
    assert!(got.last_evaluated_at().is_none(), "the policy has not run yet");

    // The preview of the stored policy.
    let started = ecr.start_lifecycle_policy_preview().repository_name(repo).send().await.unwrap();
    assert_eq!(started.status(), Some(&LifecyclePolicyPreviewStatus::InProgress));
    assert_eq!(started.lifecycle_policy_text(), Some(text.as_str()));
    wait_preview_complete(&ecr, repo).await;
    // The SDK's own waiter agrees that it is complete.
    ecr.wait_until_lifecycle_policy_preview_complete()
        .repository_name(repo)
        .wait(Duration::from_secs(30))
        .await
        .unwrap();
    let (preview, total) = preview_rows(&ecr, repo).await;
    let expected: Vec<Row> = vec![(v1.clone(), vec!["v1".into()], 9), (old_a.clone(), vec![], 5)];
    assert_eq!(preview, expected);
    assert_eq!(total, Some(2));

    // Filters, image ids and pages select from the same results.
    let only = |status: TagStatus| LifecyclePolicyPreviewFilter::builder().tag_status(status).build();
    let untagged = ecr
        .get_lifecycle_policy_preview()
        .repository_name(repo)
        .filter(only(TagStatus::Untagged))
        .send()
        .await
        .unwrap();
    let digests =
        |r: &aws_sdk_ecr::operation::get_lifecycle_policy_preview::GetLifecyclePolicyPreviewOutput| -> Vec<String> {
            r.preview_results().iter().map(|p| p.image_digest().unwrap().to_string()).collect()
        };
    assert_eq!(digests(&untagged), vec![old_a.clone()]);
    assert_eq!(
        untagged.summary().and_then(|s| s.expiring_image_total_count()),
        Some(2),
        "the summary counts the whole preview"
    );
    let tagged =
        ecr.get_lifecycle_policy_preview().repository_name(repo).filter(only(TagStatus::Tagged)).send().await.unwrap();
    assert_eq!(digests(&tagged), vec![v1.clone()]);
    let by_id = ecr
        .get_lifecycle_policy_preview()
        .repository_name(repo)
        .image_ids(ImageIdentifier::builder().image_tag("v1").build())
        .image_ids(ImageIdentifier::builder().image_tag("v2").build())
        .send()
        .await
        .unwrap();
    assert_eq!(digests(&by_id), vec![v1.clone()], "v2 is kept, so it is not a result");
    let first = ecr.get_lifecycle_policy_preview().repository_name(repo).max_results(1).send().await.unwrap();
    assert_eq!(digests(&first), vec![v1.clone()]);
    let second = ecr
        .get_lifecycle_policy_preview()
        .repository_name(repo)
        .max_results(1)
        .next_token(first.next_token().expect("a second page"))
        .send()
        .await
        .unwrap();
    assert_eq!(digests(&second), vec![old_a.clone()]);
    assert_eq!(second.next_token(), None);
    let err = ecr
        .get_lifecycle_policy_preview()
        .repository_name(repo)
        .max_results(1)
        .image_ids(ImageIdentifier::builder().image_tag("v1").build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");

    // Enforcement on demand deletes exactly the previewed images.
    let run = run_lifecycle(&b, Some(repo));
    let runs = run["repositories"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["repositoryName"], repo);
    let deleted: Vec<Row> = runs[0]["expiredImages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let tags = e["imageTags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
            (e["imageDigest"].as_str().unwrap().to_string(), tags, e["appliedRulePriority"].as_i64().unwrap() as i32)
        })
        .collect();
    assert_eq!(deleted, preview, "enforcement deletes what the preview showed");

    let left = ecr.describe_images().repository_name(repo).send().await.unwrap();
    let mut left: Vec<String> = left.image_details().iter().map(|i| i.image_digest().unwrap().to_string()).collect();
    left.sort();
    let mut kept = vec![v2.clone(), old_b.clone(), v3.clone(), latest.clone()];
    kept.sort();
    assert_eq!(left, kept);
    let listed = ecr.list_images().repository_name(repo).send().await.unwrap();
    let mut tags: Vec<String> = listed.image_ids().iter().filter_map(|i| i.image_tag().map(str::to_string)).collect();
    tags.sort();
    assert_eq!(tags, ["latest", "v2", "v3"]);
    let evaluated = ecr.get_lifecycle_policy().repository_name(repo).send().await.unwrap();
    assert!(evaluated.last_evaluated_at().is_some(), "the run is recorded");

    // The registry serves the kept images and no longer the expired ones.
    docker.remove_local(&format!("{uri}:v1"));
    docker.remove_local(&format!("{uri}:v2"));
    assert!(!docker.ok(&["pull", "-q", &format!("{uri}:v1")]), "an expired tag can still be pulled");
    assert!(!docker.ok(&["pull", "-q", &format!("{uri}@{old_a}")]), "an expired untagged image can still be pulled");
    assert!(docker.ok(&["pull", "-q", &format!("{uri}:v2")]), "a kept tag cannot be pulled");

    // A second run finds nothing left to do.
    let again = run_lifecycle(&b, None);
    assert_eq!(again["repositories"][0]["expiredImages"], json!([]));

    // A preview of another text shows that text's results and leaves the policy alone.
    let keep_one = policy(&[rule(1, json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 3}))]);
    ecr.start_lifecycle_policy_preview().repository_name(repo).lifecycle_policy_text(&keep_one).send().await.unwrap();
    wait_preview_complete(&ecr, repo).await;
    let (rows, _) = preview_rows(&ecr, repo).await;
    assert_eq!(rows, vec![(v2.clone(), vec!["v2".into()], 1)]);
    let unchanged = ecr.get_lifecycle_policy().repository_name(repo).send().await.unwrap();
    assert_eq!(unchanged.lifecycle_policy_text(), Some(text.as_str()));

    let deleted = ecr.delete_lifecycle_policy().repository_name(repo).send().await.unwrap();
    assert_eq!(deleted.lifecycle_policy_text(), Some(text.as_str()));
    assert!(deleted.last_evaluated_at().is_some());
    for err in [
        error_code(&ecr.get_lifecycle_policy().repository_name(repo).send().await.unwrap_err()),
        error_code(&ecr.delete_lifecycle_policy().repository_name(repo).send().await.unwrap_err()),
        error_code(&ecr.start_lifecycle_policy_preview().repository_name(repo).send().await.unwrap_err()),
    ] {
        assert_eq!(err, "LifecyclePolicyNotFoundException");
    }
}

#[tokio::test]
async fn lifecycle_policies_are_enforced_on_a_schedule() {
    let b = Berth::start_with_agent(
        env!("CARGO_BIN_EXE_berth"),
        &[("BERTH_NO_AGENT", "true"), ("BERTH_LIFECYCLE_INTERVAL", "1s")],
    )
    .await;
    let ecr = b.ecr().await;
    ecr.create_repository().repository_name("scheduled").send().await.unwrap();
    // Three images under one tag: the first two end up untagged.
    let oci = Oci::new(&b).await;
    let mut digests = Vec::new();
    for i in 0..3 {
        digests.push(oci.push("scheduled", "current", i).await);
    }
    let text =
        policy(&[rule(1, json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1}))]);
    ecr.put_lifecycle_policy().repository_name("scheduled").lifecycle_policy_text(&text).send().await.unwrap();
    let expired = eventually(Duration::from_secs(20), || async {
        let r = ecr.describe_images().repository_name("scheduled").send().await.unwrap();
        r.image_details().len() == 2
    })
    .await;
    assert!(expired, "the schedule did not expire the older untagged image");
    let r = ecr.describe_images().repository_name("scheduled").send().await.unwrap();
    let mut left: Vec<&str> = r.image_details().iter().map(|i| i.image_digest().unwrap()).collect();
    left.sort();
    let mut kept = vec![digests[1].as_str(), digests[2].as_str()];
    kept.sort();
    assert_eq!(left, kept);
    let got = ecr.get_lifecycle_policy().repository_name("scheduled").send().await.unwrap();
    assert!(got.last_evaluated_at().is_some());
}

#[tokio::test]
async fn bad_lifecycle_policies_are_refused_with_the_member_at_fault() {
    let mut b = berth().await;
    let ecr = b.ecr().await;
    ecr.create_repository().repository_name("strict").send().await.unwrap();
    let untagged = json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1});
    let cases: Vec<(String, &str)> = vec![
        ("{\"rules\": []}".to_string(), "lifecyclePolicyText"),
        (format!("{{\"rules\": [ {}", " ".repeat(100)), "not valid JSON"),
        (policy(&[rule(0, untagged.clone())]), "rules[0].rulePriority"),
        (
            policy(&[rule(1, json!({"tagStatus": "tagged", "countType": "imageCountMoreThan", "countNumber": 1}))]),
            "rules[0].selection",
        ),
        (
            policy(&[rule(
                1,
                json!({"tagStatus": "tagged", "tagPrefixList": ["a"], "tagPatternList": ["a*"], "countType": "imageCountMoreThan", "countNumber": 1}),
            )]),
            "not both",
        ),
        (
            policy(&[rule(
                1,
                json!({"tagStatus": "untagged", "tagPrefixList": ["a"], "countType": "imageCountMoreThan", "countNumber": 1}),
            )]),
            "rules[0].selection.tagPrefixList",
        ),
        (
            policy(&[rule(
                1,
                json!({"tagStatus": "tagged", "tagPatternList": ["a*b*c*d*e*"], "countType": "imageCountMoreThan", "countNumber": 1}),
            )]),
            "rules[0].selection.tagPatternList[0]",
        ),
        (
            policy(&[rule(
                1,
                json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countUnit": "days", "countNumber": 1}),
            )]),
            "rules[0].selection.countUnit",
        ),
        (
            policy(&[rule(1, json!({"tagStatus": "any", "countType": "sinceImagePushed", "countNumber": 1}))]),
            "rules[0].selection.countUnit",
        ),
        (
            policy(&[rule(1, json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 0}))]),
            "rules[0].selection.countNumber",
        ),
        (
            policy(&[
                rule(1, json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1})),
                rule(2, untagged.clone()),
            ]),
            "highest rulePriority",
        ),
        (
            policy(&[
                rule(1, untagged.clone()),
                rule(1, json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 2})),
            ]),
            "rules[1].rulePriority",
        ),
        (policy(&[rule(1, untagged.clone())]).replace("expire", "archive"), "rules[0].action.type"),
    ];
    for (text, member) in &cases {
        let err =
            ecr.put_lifecycle_policy().repository_name("strict").lifecycle_policy_text(text).send().await.unwrap_err();
        let (code, message) = failure(&err);
        assert_eq!(code, "InvalidParameterException", "{text}");
        assert!(message.contains(member), "'{member}' not named in: {message}");
        let err = ecr
            .start_lifecycle_policy_preview()
            .repository_name("strict")
            .lifecycle_policy_text(text)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "InvalidParameterException", "preview of {text}");
    }
    let archive =
        policy(&[rule(1, untagged.clone())]).replace(r#""expire""#, r#""transition", "targetStorageClass": "archive""#);
    let err =
        ecr.put_lifecycle_policy().repository_name("strict").lifecycle_policy_text(archive).send().await.unwrap_err();
    assert_eq!(error_code(&err), "UnsupportedFeatureException");

    // Nothing was stored by the refusals.
    let text = policy(&[rule(1, untagged.clone())]);
    for err in [
        error_code(&ecr.get_lifecycle_policy().repository_name("strict").send().await.unwrap_err()),
        error_code(&ecr.start_lifecycle_policy_preview().repository_name("strict").send().await.unwrap_err()),
    ] {
        assert_eq!(err, "LifecyclePolicyNotFoundException");
    }
    let err = ecr.get_lifecycle_policy_preview().repository_name("strict").send().await.unwrap_err();
    assert_eq!(error_code(&err), "LifecyclePolicyPreviewNotFoundException");
    let err =
        ecr.put_lifecycle_policy().repository_name("missing").lifecycle_policy_text(&text).send().await.unwrap_err();
    assert_eq!(error_code(&err), "RepositoryNotFoundException");
    let err = ecr
        .put_lifecycle_policy()
        .repository_name("strict")
        .registry_id("999999999999")
        .lifecycle_policy_text(&text)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");

    // A stored policy and its preview survive a restart.
    ecr.put_lifecycle_policy().repository_name("strict").lifecycle_policy_text(&text).send().await.unwrap();
    ecr.start_lifecycle_policy_preview().repository_name("strict").send().await.unwrap();
    wait_preview_complete(&ecr, "strict").await;
    b.restart().await;
    let ecr = b.ecr().await;
    let got = ecr.get_lifecycle_policy().repository_name("strict").send().await.unwrap();
    assert_eq!(got.lifecycle_policy_text(), Some(text.as_str()));
    let preview = ecr.get_lifecycle_policy_preview().repository_name("strict").send().await.unwrap();
    assert_eq!(preview.status(), Some(&LifecyclePolicyPreviewStatus::Complete));

    // Another account does not see it.
    let other = b.create_account();
    let theirs = b.ecr_as(&other, "us-east-1").await;
    let err = theirs.get_lifecycle_policy().repository_name("strict").send().await.unwrap_err();
    assert_eq!(error_code(&err), "RepositoryNotFoundException");

    // Deleting the repository drops its policy: a new repository of the name has none.
    ecr.delete_repository().repository_name("strict").force(true).send().await.unwrap();
    ecr.create_repository().repository_name("strict").send().await.unwrap();
    let err = ecr.get_lifecycle_policy().repository_name("strict").send().await.unwrap_err();
    assert_eq!(error_code(&err), "LifecyclePolicyNotFoundException");
    let err = ecr.get_lifecycle_policy_preview().repository_name("strict").send().await.unwrap_err();
    assert_eq!(error_code(&err), "LifecyclePolicyPreviewNotFoundException");
}

/// Pushes images with the OCI distribution API directly, authenticated with an ECR token.
struct Oci {
    endpoint: String,
    auth: String,
    http: reqwest::Client,
}

impl Oci {
    async fn new(b: &Berth) -> Oci {
        let token = b.ecr().await.get_authorization_token().send().await.unwrap().authorization_data()[0]
            .authorization_token()
            .unwrap()
            .to_string();
        Oci { endpoint: b.endpoint.clone(), auth: format!("Basic {token}"), http: reqwest::Client::new() }
    }

    async fn put_blob(&self, repo: &str, bytes: Vec<u8>) -> (String, usize) {
        let digest = sha256(&bytes);
        let size = bytes.len();
        let r = self
            .http
            .post(format!("{}/v2/{repo}/blobs/uploads/?digest={digest}", self.endpoint))
            .header("authorization", &self.auth)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "blob upload: {}", r.text().await.unwrap_or_default());
        (digest, size)
    }

    /// Pushes an image whose config differs by `n` under `tag`; answers its digest.
    async fn push(&self, repo: &str, tag: &str, n: u32) -> String {
        let config = json!({"architecture": "amd64", "os": "linux", "config": {"Labels": {"n": n.to_string()}}, "rootfs": {"type": "layers", "diff_ids": []}});
        let (config_digest, config_size) = self.put_blob(repo, serde_json::to_vec(&config).unwrap()).await;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": [],
        }))
        .unwrap();
        let digest = sha256(&manifest);
        let r = self
            .http
            .put(format!("{}/v2/{repo}/manifests/{tag}", self.endpoint))
            .header("authorization", &self.auth)
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "manifest push: {}", r.text().await.unwrap_or_default());
        digest
    }
}

fn sha256(bytes: &[u8]) -> String {
    registry::Digest::of(registry::Algorithm::Sha256, bytes).to_string()
}
