//! `berth ecr run-lifecycle`: asks the running server to enforce ECR lifecycle policies
//! now, with the Berth extension operation `BerthRunLifecyclePolicy` of the ECR API,
//! SigV4-signed with an access key of the data dir like any `aws ecr` call.

#![allow(clippy::print_stdout)]

use std::time::SystemTime;

use anyhow::{bail, Context};

use aws_api::ecr::lifecycle::{RunRequest, RunResponse, RUN_OPERATION};

use crate::cli::RunLifecycleArgs;
use crate::datadir::DataDir;

pub async fn run_lifecycle(args: RunLifecycleArgs) -> anyhow::Result<()> {
    model::Region::parse(&args.region)?;
    let dir = DataDir::open_existing(&args.data.data_dir)?;
    let endpoint = dir.endpoint().context("Berth has not been started with this data dir yet: run `berth up` first")?;
    let key = crate::cli::account_key(&dir, args.account.as_deref())?;
    let body = serde_json::to_vec(&RunRequest { registry_id: None, repository_name: args.repository.clone() })?;
    let url = format!("{}/", endpoint.trim_end_matches('/'));
    let target = format!("{}.{RUN_OPERATION}", aws_api::ecr::TARGET_PREFIX);
    let headers = sign(&url, &body, &target, &key, &args.region)?;
    let mut request = reqwest::Client::new().post(&url).body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response =
        request.send().await.with_context(|| format!("sending the request to {endpoint}; is berth running?"))?;
    let status = response.status();
    let bytes = response.bytes().await.context("reading the answer")?;
    if !status.is_success() {
        let error: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        match (error["__type"].as_str(), error["message"].as_str()) {
            (Some(code), Some(message)) => bail!("{code}: {message}"),
            _ => bail!("the server answered {status}: {}", String::from_utf8_lossy(&bytes)),
        }
    }
    let answer: RunResponse = serde_json::from_slice(&bytes).context("the server's answer is not what was expected")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    if answer.repositories.is_empty() {
        println!("No repository has a lifecycle policy.");
    }
    for repo in &answer.repositories {
        if repo.expired_images.is_empty() && repo.failure.is_none() {
            println!("{}: nothing to expire", repo.repository_name);
        }
        for image in &repo.expired_images {
            let tags = if image.image_tags.is_empty() { "untagged".to_string() } else { image.image_tags.join(",") };
            println!(
                "{}: expired {} ({tags}) by rule {}",
                repo.repository_name, image.image_digest, image.applied_rule_priority
            );
        }
        if let Some(failure) = &repo.failure {
            println!("{}: {failure}", repo.repository_name);
        }
    }
    if answer.repositories.iter().any(|r| r.failure.is_some()) {
        bail!("lifecycle policies did not run completely");
    }
    Ok(())
}

/// The headers of a SigV4-signed `POST` of an ECR JSON request.
fn sign(
    url: &str,
    body: &[u8],
    target: &str,
    key: &control_plane::auth::AccessKey,
    region: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(&key.id, &key.secret, None, None, "berth-cli").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("ecr")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()?
        .into();
    let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target)];
    let request = SignableRequest::new("POST", url, headers.iter().copied(), SignableBody::Bytes(body))?;
    let (instructions, _) = sign(request, &params)?.into_parts();
    let (signed, _) = instructions.into_parts();
    let mut all: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    all.extend(signed.into_iter().map(|h| (h.name().to_string(), h.value().to_string())));
    Ok(all)
}
