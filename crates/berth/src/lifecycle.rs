//! `berth ecr run-lifecycle`: asks the running server to enforce ECR lifecycle policies
//! now, with the Berth extension operation `BerthRunLifecyclePolicy` of the ECR API,
//! SigV4-signed with an access key of the data dir like any `aws ecr` call.

#![allow(clippy::print_stdout)]

use anyhow::{bail, Context};

use aws_api::ecr::lifecycle::{RunRequest, RunResponse, RUN_OPERATION};

use crate::cli::RunLifecycleArgs;

pub async fn run_lifecycle(args: RunLifecycleArgs) -> anyhow::Result<()> {
    let body = serde_json::to_vec(&RunRequest { registry_id: None, repository_name: args.repository.clone() })?;
    let bytes = crate::extension::send(crate::extension::Call {
        data: &args.data,
        account: args.account.as_deref(),
        region: &args.region,
        service: "ecr",
        target: format!("{}.{RUN_OPERATION}", aws_api::ecr::TARGET_PREFIX),
        body,
    })
    .await?;
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
