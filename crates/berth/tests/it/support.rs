//! Helpers that several test modules share.

use sha2::{Digest as _, Sha256};

/// The digest of `bytes` as registries write it: `sha256:<hex>`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Creates an ECR repository with ECR's defaults; returns its URI.
pub async fn create_repository(ecr: &aws_sdk_ecr::Client, name: &str) -> String {
    let created = ecr.create_repository().repository_name(name).send().await.unwrap();
    created.repository().unwrap().repository_uri().unwrap().to_string()
}

/// A detail of the task's (first) attachment, e.g. `privateIPv4Address` of its ENI; empty
/// when it has none.
pub fn attachment_detail(t: &aws_sdk_ecs::types::Task, name: &str) -> String {
    let Some(a) = t.attachments().first() else { return String::new() };
    a.details().iter().find(|d| d.name() == Some(name)).and_then(|d| d.value()).unwrap_or_default().to_string()
}
