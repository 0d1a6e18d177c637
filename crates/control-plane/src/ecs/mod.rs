//! The ECS operations. Reads use the published state; changes go through the writer.

pub mod attributes;
pub(crate) mod awsvpc;
pub mod clusters;
pub(crate) mod fargate;
pub mod instances;
pub mod reaper;
pub mod services;
pub mod settings;
pub mod tagging;
pub mod task_definitions;
pub mod tasks;

use model::{AccountId, Scope};

/// Who is calling: the account's scope and the IAM principal ARN requests are made as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub scope: Scope,
}

impl Caller {
    /// Berth's access keys belong to an account's root principal.
    pub fn principal_arn(&self) -> String {
        root_arn(&self.scope.account)
    }
}

pub fn root_arn(account: &AccountId) -> String {
    format!("arn:aws:iam::{account}:root")
}

/// One entry of a `failures` list: what was asked for and why it could not be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub arn: String,
    pub reason: String,
    pub detail: Option<String>,
}
