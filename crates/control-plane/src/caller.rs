//! Who is calling: the identity every operation of every service acts for.

use model::iam::entity::{assumed_role_arn, entity_arn, EntityKind, IamName, IamPath, SessionName};
use model::{AccountId, Scope};

/// Who is calling: the account's scope and the IAM principal requests are made as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub scope: Scope,
    pub principal: Principal,
}

/// The IAM principal behind a request's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Principal {
    /// The account's root: what `berth up` and `berth account` keys are. All-powerful.
    Root,
    /// An IAM user, by one of its access keys.
    User { name: IamName, id: String, path: IamPath },
    /// A session of a role, by temporary credentials from `AssumeRole`.
    Role { name: IamName, id: String, path: IamPath, session: SessionName },
}

impl Caller {
    /// The account's root in `scope`.
    pub fn root(scope: Scope) -> Self {
        Caller { scope, principal: Principal::Root }
    }

    pub fn is_root(&self) -> bool {
        self.principal == Principal::Root
    }

    /// The principal's ARN, as `GetCallerIdentity` and access-denied messages name it.
    pub fn principal_arn(&self) -> String {
        let account = &self.scope.account;
        match &self.principal {
            Principal::Root => root_arn(account),
            Principal::User { name, path, .. } => entity_arn(account, EntityKind::User, path, name),
            Principal::Role { name, session, .. } => assumed_role_arn(account, name, session),
        }
    }

    /// The principal's unique id as `GetCallerIdentity` gives it: the account id for the
    /// root, the user's id, or `<role id>:<session name>`.
    pub fn user_id(&self) -> String {
        match &self.principal {
            Principal::Root => self.scope.account.to_string(),
            Principal::User { id, .. } => id.clone(),
            Principal::Role { id, session, .. } => format!("{id}:{session}"),
        }
    }
}

pub fn root_arn(account: &AccountId) -> String {
    format!("arn:aws:iam::{account}:root")
}
