//! Repository policies opening repositories to other accounts (with the real `docker` CLI
//! and the SDK), resource tags, `DescribeRegistry`, the registry's Bearer token flow as
//! Docker follows it, TLS with a certificate of the test's own, and the advertised host.

use std::process::{Command, Output};

use aws_sdk_ecr::error::ProvideErrorMetadata;
use aws_sdk_ecr::types::Tag;
use base64::Engine;
use serde_json::Value;
use testkit::{Berth, Key};

use crate::berth;

fn code<E: ProvideErrorMetadata + std::error::Error + 'static>(e: &aws_sdk_ecr::error::SdkError<E>) -> String {
    match e {
        aws_sdk_ecr::error::SdkError::ServiceError(s) => s.err().code().unwrap_or_default().to_string(),
        other => format!("<not a service error: {}>", aws_sdk_ecr::error::DisplayErrorContext(other)),
    }
}

fn message<E: ProvideErrorMetadata>(e: &aws_sdk_ecr::error::SdkError<E>) -> String {
    match e {
        aws_sdk_ecr::error::SdkError::ServiceError(s) => s.err().message().unwrap_or_default().to_string(),
        _ => String::new(),
    }
}

/// A policy with one statement for `principal` (an account id).
fn policy(effect: &str, principal: &str, actions: &[&str]) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "s1", "Effect": effect, "Principal": {"AWS": principal}, "Action": actions}]
    })
    .to_string()
}

/// The `AWS:<token>` password of an account's `GetAuthorizationToken`.
async fn password(ecr: &aws_sdk_ecr::Client) -> String {
    let r = ecr.get_authorization_token().send().await.unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(r.authorization_data()[0].authorization_token().unwrap())
        .unwrap();
    String::from_utf8(decoded).unwrap().strip_prefix("AWS:").unwrap().to_string()
}

/// A `docker` CLI with its own config dir, so each account's login stays apart and the
/// machine's own Docker logins are untouched.
struct Docker {
    config: tempfile::TempDir,
}

impl Docker {
    fn new() -> Self {
        Docker { config: tempfile::tempdir().unwrap() }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new("docker")
            .arg("--config")
            .arg(self.config.path())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run docker");
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) {
        let out = self.run(args, None);
        assert!(out.status.success(), "docker {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Runs a docker command that must fail, and returns its error output.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert!(!out.status.success(), "docker {args:?} succeeded but must be refused");
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    fn login(&self, host: &str, password: &str) {
        let out = self.run(&["login", "--username", "AWS", "--password-stdin", host], Some(password));
        assert!(out.status.success(), "docker login failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Removes the images a test tagged, whatever its outcome.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for i in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", i]).output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_policies_open_a_repository_to_another_account_for_docker() {
    let image = tokio::task::spawn_blocking(testkit::images::simplehttp_image).await.unwrap();
    let b = berth().await;
    let host = b.endpoint.trim_start_matches("http://").to_string();
    let owner = b.ecr().await;
    let other_key: Key = b.create_account();
    let other = b.ecr_as(&other_key, "us-east-1").await;
    let a = &b.key.account;
    owner.create_repository().repository_name("shared/app").send().await.unwrap();

    let own_ref = format!("{host}/shared/app:1");
    let cross_ref = format!("{host}/{a}/shared/app:1");
    let cross_push = format!("{host}/{a}/shared/app:2");
    let _cleanup = Images(vec![own_ref.clone(), cross_ref.clone(), cross_push.clone()]);

    // The owner pushes, with Docker following the Bearer challenge it is offered.
    let owner_docker = Docker::new();
    owner_docker.login(&host, &password(&owner).await);
    owner_docker.ok(&["tag", image, &own_ref]);
    owner_docker.ok(&["push", "-q", &own_ref]);

    // The other account logs in to the same host with its own token, but the repository is
    // closed to it: no pull, no push, and no API access under the owner's registry id.
    let docker = Docker::new();
    // Docker takes the Bearer challenge: a wrong password is refused by the token endpoint.
    let out = docker.run(&["login", "--username", "AWS", "--password-stdin", &host], Some("wrong"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the token endpoint takes Basic credentials"), "{err}");
    docker.login(&host, &password(&other).await);
    let err = docker.fails(&["pull", "-q", &cross_ref]);
    assert!(err.contains("denied") || err.contains("not authorized"), "{err}");
    let err = other.get_repository_policy().registry_id(a).repository_name("shared/app").send().await.unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
    assert!(message(&err).contains("ecr:GetRepositoryPolicy"), "{}", message(&err));
    let err = other.describe_images().registry_id(a).repository_name("shared/app").send().await.unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");

    // Pull granted: pulls work, pushes still do not.
    let pull = policy(
        "Allow",
        &other_key.account,
        &["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:GetRepositoryPolicy"],
    );
    owner.set_repository_policy().repository_name("shared/app").policy_text(&pull).send().await.unwrap();
    docker.ok(&["pull", "-q", &cross_ref]);
    let got = other.get_repository_policy().registry_id(a).repository_name("shared/app").send().await.unwrap();
    assert_eq!(got.registry_id(), Some(a.as_str()));
    assert_eq!(got.policy_text(), Some(pull.as_str()));
    docker.ok(&["tag", image, &cross_push]);
    docker.fails(&["push", "-q", &cross_push]);

    // Push granted too: the image lands in the owner's repository.
    let push_pull = policy("Allow", &format!("arn:aws:iam::{}:root", other_key.account), &["ecr:*"]);
    owner.set_repository_policy().repository_name("shared/app").policy_text(&push_pull).send().await.unwrap();
    docker.ok(&["push", "-q", &cross_push]);
    let tags: Vec<String> = owner
        .list_images()
        .repository_name("shared/app")
        .send()
        .await
        .unwrap()
        .image_ids()
        .iter()
        .filter_map(|i| i.image_tag().map(str::to_string))
        .collect();
    assert!(tags.contains(&"2".to_string()), "{tags:?}");
    let theirs = other.list_images().registry_id(a).repository_name("shared/app").send().await.unwrap();
    assert_eq!(theirs.image_ids().len(), tags.len());
    let described = other.describe_images().registry_id(a).repository_name("shared/app").send().await.unwrap();
    assert!(described.image_details().iter().all(|d| d.registry_id() == Some(a.as_str())));
    // Naming its own account id in the path gives no way around creating a repository.
    let own_missing = format!("{host}/{}/not-created:1", other_key.account);
    docker.ok(&["tag", image, &own_missing]);
    let err = docker.fails(&["push", "-q", &own_missing]);
    assert!(err.contains("does not exist"), "{err}");
    docker.ok(&["rmi", &own_missing]);
    // The other account has no repository of that name itself.
    assert!(other.describe_repositories().send().await.unwrap().repositories().is_empty());

    // A Deny beats the Allow beside it.
    let deny = serde_json::json!({"Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "ecr:*"},
        {"Effect": "Deny", "Principal": {"AWS": other_key.account}, "Action": "ecr:BatchGetImage"},
    ]})
    .to_string();
    owner.set_repository_policy().repository_name("shared/app").policy_text(&deny).send().await.unwrap();
    docker.ok(&["rmi", &cross_ref]);
    docker.fails(&["pull", "-q", &cross_ref]);
    // ... and never binds the owner, who keeps every access to its repository.
    owner_docker.ok(&["rmi", &own_ref]);
    owner_docker.ok(&["pull", "-q", &own_ref]);

    // Without a policy the repository is closed again.
    owner.delete_repository_policy().repository_name("shared/app").send().await.unwrap();
    let err = docker.fails(&["pull", "-q", &format!("{host}/{a}/shared/app:2")]);
    assert!(err.contains("denied") || err.contains("not authorized"), "{err}");
}

#[tokio::test]
async fn ecr_policies_repository_policy_api_validates_like_ecr() {
    let b = berth().await;
    let ecr = b.ecr().await;
    ecr.create_repository().repository_name("app").send().await.unwrap();

    let err = ecr.get_repository_policy().repository_name("app").send().await.unwrap_err();
    assert_eq!(code(&err), "RepositoryPolicyNotFoundException");
    let err = ecr.delete_repository_policy().repository_name("app").send().await.unwrap_err();
    assert_eq!(code(&err), "RepositoryPolicyNotFoundException");
    let err = ecr.get_repository_policy().repository_name("missing").send().await.unwrap_err();
    assert_eq!(code(&err), "RepositoryNotFoundException");
    let text = policy("Allow", "222222222222", &["ecr:BatchGetImage"]);
    let err = ecr.set_repository_policy().repository_name("missing").policy_text(&text).send().await.unwrap_err();
    assert_eq!(code(&err), "RepositoryNotFoundException");

    // What ECR refuses, each with a reason that says what to fix.
    let bad = [
        ("{not json", "not valid JSON"),
        (r#"{"Statement":[]}"#, "empty list"),
        (r#"{"Statement":{"Effect":"Permit","Principal":"*","Action":"ecr:*"}}"#, "Effect"),
        (r#"{"Statement":{"Effect":"Allow","Action":"ecr:*"}}"#, "Principal is missing"),
        (r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject"}}"#, "not an ECR action"),
        (r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:Pul*"}}"#, "names no ECR action"),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"someone"},"Action":"ecr:*"}}"#,
            "not a valid AWS principal",
        ),
        (r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:*","Resource":"*"}}"#, "remove the Resource"),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:*","Condition":{"Sometimes":{"a":"b"}}}}"#,
            "condition operator",
        ),
    ];
    for (text, why) in bad {
        let err = ecr.set_repository_policy().repository_name("app").policy_text(text).send().await.unwrap_err();
        assert_eq!(code(&err), "InvalidParameterException", "{text}");
        let m = message(&err);
        assert!(m.contains("Invalid repository policy provided") && m.contains(why), "{text}: {m}");
    }

    // Conditions are accepted; wildcards and several principals too.
    let ok = r#"{"Version":"2008-10-17","Statement":[{"Sid":"ci","Effect":"Allow","Principal":{"AWS":["222222222222","arn:aws:iam::333333333333:role/ci"]},"Action":["ecr:Batch*","ecr:GetDownloadUrlForLayer"],"Condition":{"StringEquals":{"aws:PrincipalAccount":"222222222222"}}}]}"#;
    let r = ecr.set_repository_policy().repository_name("app").policy_text(ok).send().await.unwrap();
    assert_eq!(
        (r.registry_id(), r.repository_name(), r.policy_text()),
        (Some(b.key.account.as_str()), Some("app"), Some(ok))
    );
    assert_eq!(ecr.get_repository_policy().repository_name("app").send().await.unwrap().policy_text(), Some(ok));

    // A policy that denies the owner further policy changes needs force, as in ECR.
    let lockout = policy("Deny", &b.key.account, &["ecr:SetRepositoryPolicy"]);
    let err = ecr.set_repository_policy().repository_name("app").policy_text(&lockout).send().await.unwrap_err();
    assert_eq!(code(&err), "InvalidParameterException");
    assert!(message(&err).contains("force"), "{}", message(&err));
    ecr.set_repository_policy().repository_name("app").policy_text(&lockout).force(true).send().await.unwrap();

    let d = ecr.delete_repository_policy().repository_name("app").send().await.unwrap();
    assert_eq!(d.policy_text(), Some(lockout.as_str()));
    let err = ecr.get_repository_policy().repository_name("app").send().await.unwrap_err();
    assert_eq!(code(&err), "RepositoryPolicyNotFoundException");

    // A repository created again under the same name starts without the old policy, which
    // survives restarts while the repository lives.
    ecr.set_repository_policy().repository_name("app").policy_text(&text).send().await.unwrap();
    let mut b = b;
    b.restart().await;
    let ecr = b.ecr().await;
    assert_eq!(
        ecr.get_repository_policy().repository_name("app").send().await.unwrap().policy_text(),
        Some(text.as_str())
    );
    ecr.delete_repository().repository_name("app").send().await.unwrap();
    ecr.create_repository().repository_name("app").send().await.unwrap();
    let err = ecr.get_repository_policy().repository_name("app").send().await.unwrap_err();
    assert_eq!(code(&err), "RepositoryPolicyNotFoundException");

    // Another account's registry: refused without a policy, whether or not it exists.
    let other_key = b.create_account();
    let other = b.ecr_as(&other_key, "us-east-1").await;
    for name in ["app", "missing"] {
        let err = other
            .set_repository_policy()
            .registry_id(&b.key.account)
            .repository_name(name)
            .policy_text(&text)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "AccessDeniedException", "{name}");
    }
    // Its token request may name other registries; the token is its own either way.
    #[allow(deprecated)]
    let r = other.get_authorization_token().registry_ids(&b.key.account).send().await.unwrap();
    assert_eq!(r.authorization_data().len(), 1);
    #[allow(deprecated)]
    let err = other.get_authorization_token().registry_ids("12").send().await.unwrap_err();
    assert_eq!(code(&err), "InvalidParameterException");
}

#[tokio::test]
async fn ecr_policies_tags_on_repositories() {
    let b = berth().await;
    let ecr = b.ecr().await;
    let arn = ecr
        .create_repository()
        .repository_name("tagged")
        .tags(Tag::builder().key("team").value("a").build().unwrap())
        .send()
        .await
        .unwrap()
        .repository()
        .unwrap()
        .repository_arn()
        .unwrap()
        .to_string();
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build().unwrap();
    let list = |ecr: aws_sdk_ecr::Client, arn: String| async move {
        let mut t: Vec<(String, String)> = ecr
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap()
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        t.sort();
        t
    };
    ecr.tag_resource().resource_arn(&arn).tags(tag("team", "b")).tags(tag("env", "prod")).send().await.unwrap();
    assert_eq!(list(ecr.clone(), arn.clone()).await, [("env".into(), "prod".into()), ("team".into(), "b".into())]);
    ecr.untag_resource().resource_arn(&arn).tag_keys("team").tag_keys("absent").send().await.unwrap();
    assert_eq!(list(ecr.clone(), arn.clone()).await, [("env".to_string(), "prod".to_string())]);
    // DescribeRepositories has no tags, but a repository's tags survive in its record.
    assert_eq!(ecr.describe_repositories().send().await.unwrap().repositories().len(), 1);

    let err = ecr.tag_resource().resource_arn(&arn).tags(tag("aws:reserved", "x")).send().await.unwrap_err();
    assert_eq!(code(&err), "InvalidTagParameterException");
    let err = ecr.tag_resource().resource_arn(&arn).tags(tag(&"k".repeat(129), "x")).send().await.unwrap_err();
    assert_eq!(code(&err), "InvalidTagParameterException");
    let many = (0..50).map(|i| tag(&format!("k{i}"), "v")).collect::<Vec<_>>();
    let err = ecr.tag_resource().resource_arn(&arn).set_tags(Some(many)).send().await.unwrap_err();
    assert_eq!(code(&err), "TooManyTagsException");
    assert_eq!(list(ecr.clone(), arn.clone()).await.len(), 1, "a refused request changes nothing");

    let missing = arn.replace("repository/tagged", "repository/missing");
    let err = ecr.list_tags_for_resource().resource_arn(&missing).send().await.unwrap_err();
    assert_eq!(code(&err), "RepositoryNotFoundException");
    for bad in
        ["not-an-arn", "arn:aws:ecs:us-east-1:123456789012:cluster/x", "arn:aws:ecr:us-east-1:123456789012:registry"]
    {
        let err = ecr.tag_resource().resource_arn(bad).tags(tag("a", "b")).send().await.unwrap_err();
        assert_eq!(code(&err), "InvalidParameterException", "{bad}");
    }
    // Another account cannot read or change them.
    let other = b.ecr_as(&b.create_account(), "us-east-1").await;
    let err = other.list_tags_for_resource().resource_arn(&arn).send().await.unwrap_err();
    assert_eq!(code(&err), "RepositoryNotFoundException");
    let err = other.tag_resource().resource_arn(&arn).tags(tag("x", "y")).send().await.unwrap_err();
    assert_eq!(code(&err), "RepositoryNotFoundException");
}

#[tokio::test]
async fn ecr_policies_describe_registry_and_registry_policy() {
    let b = berth().await;
    let ecr = b.ecr().await;
    let r = ecr.describe_registry().send().await.unwrap();
    assert_eq!(r.registry_id(), Some(b.key.account.as_str()));
    assert!(r.replication_configuration().unwrap().rules().is_empty());

    let err = ecr.get_registry_policy().send().await.unwrap_err();
    assert_eq!(code(&err), "RegistryPolicyNotFoundException");
    let text = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"replicate","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::222222222222:root"}},"Action":["ecr:CreateRepository","ecr:ReplicateImage"],"Resource":"arn:aws:ecr:us-east-1:{}:repository/*"}}]}}"#,
        b.key.account
    );
    let r = ecr.put_registry_policy().policy_text(&text).send().await.unwrap();
    assert_eq!(r.policy_text(), Some(text.as_str()));
    assert_eq!(ecr.get_registry_policy().send().await.unwrap().policy_text(), Some(text.as_str()));
    let err = ecr.put_registry_policy().policy_text("{}").send().await.unwrap_err();
    assert_eq!(code(&err), "InvalidParameterException");
    assert_eq!(ecr.delete_registry_policy().send().await.unwrap().policy_text(), Some(text.as_str()));
    let err = ecr.delete_registry_policy().send().await.unwrap_err();
    assert_eq!(code(&err), "RegistryPolicyNotFoundException");
}

/// The parameters of a `WWW-Authenticate` challenge, e.g. `realm`, `service`, `scope`.
fn challenge_params(challenge: &str) -> std::collections::HashMap<String, String> {
    let (_, params) = challenge.split_once(' ').unwrap();
    let mut out = std::collections::HashMap::new();
    let mut rest = params;
    while let Some((k, v)) = rest.split_once("=\"") {
        let (value, tail) = v.split_once('"').unwrap();
        out.insert(k.trim_start_matches(',').trim().to_string(), value.to_string());
        rest = tail;
    }
    out
}

fn challenges(r: &reqwest::Response) -> Vec<String> {
    r.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_string()).collect()
}

async fn assert_unauthorized(r: reqwest::Response) -> Vec<String> {
    assert_eq!(r.status(), 401);
    let c = challenges(&r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED", "{body}");
    c
}

#[tokio::test]
async fn ecr_policies_bearer_token_flow_as_docker_follows_it() {
    let b = berth().await;
    let ecr = b.ecr().await;
    ecr.create_repository().repository_name("flow").send().await.unwrap();
    let http = reqwest::Client::new();
    let host = b.endpoint.trim_start_matches("http://");

    // 1. The ping: a 401 offering the token flow and Basic, each in its own header.
    let c = assert_unauthorized(http.get(format!("{}/v2/", b.endpoint)).send().await.unwrap()).await;
    let bearer = c.iter().find(|c| c.starts_with("Bearer ")).unwrap_or_else(|| panic!("no Bearer challenge in {c:?}"));
    assert!(c.iter().any(|c| c.starts_with("Basic ")), "{c:?}");
    let params = challenge_params(bearer);
    assert_eq!(params["realm"], format!("{}/_berth/registry/token", b.endpoint));
    assert_eq!(params["service"], host);
    // A repository request's challenge names the scope it needs.
    let c = assert_unauthorized(http.get(format!("{}/v2/flow/tags/list", b.endpoint)).send().await.unwrap()).await;
    let scope = challenge_params(c.iter().find(|c| c.starts_with("Bearer ")).unwrap())["scope"].clone();
    assert_eq!(scope, "repository:flow:pull");

    // 2. The token request, with the ECR token as Basic credentials.
    let pw = password(&ecr).await;
    let r = http
        .get(&params["realm"])
        .query(&[("service", params["service"].as_str()), ("scope", scope.as_str())])
        .basic_auth("AWS", Some(&pw))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let token = t["token"].as_str().unwrap().to_string();
    assert_eq!(t["access_token"], t["token"]);
    let expires_in = t["expires_in"].as_i64().unwrap();
    assert!(expires_in > 11 * 3600 && expires_in <= 12 * 3600, "{t}");
    assert!(time_parses(t["issued_at"].as_str().unwrap()), "{t}");
    assert!(t.get("refresh_token").is_none(), "no refresh token, so docker login keeps the ECR token");

    // 3. The requests, with the Bearer token.
    let r = http.get(format!("{}/v2/", b.endpoint)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Authorized: the empty repository is simply not known to the registry yet.
    let r = http.get(format!("{}/v2/flow/tags/list", b.endpoint)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["errors"][0]["code"], "NAME_UNKNOWN");

    // Forged and missing credentials: 401 with the spec's body, at both ends.
    let (payload, sig) = token.split_once('.').unwrap();
    let forged = format!(
        "{payload}.{}",
        if sig.starts_with('A') { sig.replacen('A', "B", 1) } else { format!("A{}", &sig[1..]) }
    );
    let r = http.get(format!("{}/v2/", b.endpoint)).bearer_auth(&forged).send().await.unwrap();
    let c = assert_unauthorized(r).await;
    assert!(c.iter().any(|c| c.starts_with("Bearer ") && c.contains("error=\"invalid_token\"")), "{c:?}");
    for auth in [None, Some("wrong")] {
        let mut req = http.get(&params["realm"]);
        if let Some(pw) = auth {
            req = req.basic_auth("AWS", Some(pw));
        }
        let c = assert_unauthorized(req.send().await.unwrap()).await;
        assert!(c.iter().any(|c| c.starts_with("Basic ")), "{c:?}");
    }
}

fn time_parses(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes()[4] == b'-' && s.ends_with('Z') || s.contains('+')
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let rcgen::CertifiedKey { cert, key_pair } = rcgen::generate_simple_self_signed(names).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key_pair.serialize_pem()).unwrap();
    (cert_path, key_path, cert.pem())
}

/// An ECR client for `berth` that trusts only `ca_pem`.
async fn ecr_trusting(berth: &Berth, ca_pem: Option<&str>) -> aws_sdk_ecr::Client {
    use aws_smithy_http_client::tls;
    let store = match ca_pem {
        Some(pem) => tls::TrustStore::empty().with_pem_certificate(pem.as_bytes().to_vec()),
        None => tls::TrustStore::empty(),
    };
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
        .tls_context(tls::TlsContext::builder().with_trust_store(store).build().unwrap())
        .build_https();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&berth.endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(&berth.key.id, &berth.key.secret, None, None, "t"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .http_client(http)
        .load()
        .await;
    aws_sdk_ecr::Client::new(&config)
}

#[tokio::test]
async fn ecr_policies_tls_serves_the_sdk_with_a_custom_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, pem) = self_signed(dir.path());
    let b = Berth::start_with_args(
        env!("CARGO_BIN_EXE_berth"),
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    )
    .await;
    assert!(b.endpoint.starts_with("https://127.0.0.1:"), "{}", b.endpoint);
    let env = b.command(&["env"]);
    assert!(env.contains(&format!("export AWS_CA_BUNDLE={}", cert.display())), "{env}");

    let ecr = ecr_trusting(&b, Some(&pem)).await;
    let repo = ecr.create_repository().repository_name("secure").send().await.unwrap();
    let host = b.endpoint.trim_start_matches("https://");
    assert_eq!(repo.repository().unwrap().repository_uri(), Some(format!("{host}/secure").as_str()));
    let auth = ecr.get_authorization_token().send().await.unwrap();
    assert_eq!(auth.authorization_data()[0].proxy_endpoint(), Some(b.endpoint.as_str()));

    // A client that does not trust the certificate gets no answer at all.
    let untrusting = ecr_trusting(&b, None).await;
    let err = untrusting.describe_repositories().send().await.unwrap_err();
    assert!(matches!(err, aws_sdk_ecr::error::SdkError::DispatchFailure(_)), "{err:?}");
    // Nor does plain HTTP reach the TLS listener.
    let plain = reqwest::Client::new().get(format!("http://{host}/_berth/health")).send().await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
}

#[tokio::test]
async fn ecr_policies_advertised_host_names_uris_and_the_token_realm() {
    let b = Berth::start_with_args(env!("CARGO_BIN_EXE_berth"), &["--advertise-host", "Registry.Example:5000"]).await;
    let ecr = b.ecr().await;
    let repo = ecr.create_repository().repository_name("web").send().await.unwrap();
    assert_eq!(repo.repository().unwrap().repository_uri(), Some("registry.example:5000/web"));
    let auth = ecr.get_authorization_token().send().await.unwrap();
    assert_eq!(auth.authorization_data()[0].proxy_endpoint(), Some("http://registry.example:5000"));
    let r = reqwest::get(format!("{}/v2/", b.endpoint)).await.unwrap();
    let c = assert_unauthorized(r).await;
    let bearer = challenge_params(c.iter().find(|c| c.starts_with("Bearer ")).unwrap());
    assert_eq!(bearer["realm"], "http://registry.example:5000/_berth/registry/token");

    // A malformed host is refused at start, with the flag named.
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["up", "--no-agent", "--listen", "127.0.0.1:0", "--advertise-host", "http://x/y", "--data-dir"])
        .arg(b.data_dir().join("unused"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--advertise-host"));
}
