//! Who is calling: the identity every operation of every service acts for.

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
