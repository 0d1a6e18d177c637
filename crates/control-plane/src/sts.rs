//! STS's operations: who a caller is (`GetCallerIdentity`), and temporary credentials
//! for a role (`AssumeRole`) or for the caller itself (`GetSessionToken`). Credentials
//! are sealed session tokens (`iam::sessions`); every request made with them is checked
//! against the state again.

use model::iam::entity::{IamName, SessionName};
use model::AccountId;

use crate::caller::{Caller, Principal};
use crate::error::{Error, IamError, Result};
use crate::iam::sessions::{session_of, SessionCredentials, SessionOf};
use crate::state::iam::Role;

/// The marker of STS's operations: `cp.sts()`.
#[derive(Debug)]
pub enum Sts {}

impl crate::ControlPlane {
    /// The STS operations.
    pub fn sts(&self) -> crate::Ops<'_, Sts> {
        crate::Ops::new(self)
    }
}

/// Who a caller is, as `GetCallerIdentity` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account: String,
    pub arn: String,
    /// The unique id of the principal; for an account's root, the account id.
    pub user_id: String,
}

/// What `AssumeRole` asks for.
#[derive(Debug, Clone)]
pub struct AssumeRole {
    pub role_arn: String,
    pub session_name: SessionName,
    pub duration_seconds: Option<i32>,
    pub external_id: Option<String>,
}

/// What `AssumeRole` answers.
#[derive(Debug, Clone)]
pub struct AssumedRole {
    pub credentials: SessionCredentials,
    /// `<role id>:<session name>`.
    pub assumed_role_id: String,
    pub arn: String,
}

/// A role session lasts an hour unless asked otherwise, at least 15 minutes.
pub const DEFAULT_ROLE_SESSION: i32 = 3600;
pub const MIN_SESSION: i32 = 900;
/// `GetSessionToken`: 12 hours by default, at most 36 (one hour for the root).
pub const DEFAULT_USER_SESSION: i32 = 43_200;
pub const MAX_USER_SESSION: i32 = 129_600;

fn validation(message: impl Into<String>) -> Error {
    Error::Iam(IamError::new("ValidationError", message))
}

fn access_denied(message: impl Into<String>) -> Error {
    Error::Iam(IamError::new("AccessDenied", message))
}

/// A role ARN taken apart: `arn:aws:iam::<account>:role/<path><name>`.
fn parse_role_arn(arn: &str) -> Option<(AccountId, IamName)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let path_and_name = resource.strip_prefix("role/")?;
    let name = path_and_name.rsplit('/').next()?;
    Some((AccountId::parse(account).ok()?, IamName::parse(name).ok()?))
}

impl crate::Ops<'_, Sts> {
    pub fn caller_identity(&self, caller: &Caller) -> Identity {
        Identity { arn: caller.principal_arn(), user_id: caller.user_id(), account: caller.scope.account.to_string() }
    }

    /// Temporary credentials for a role whose trust policy lets the caller assume it.
    pub fn assume_role(&self, caller: &Caller, req: AssumeRole) -> Result<AssumedRole> {
        if req.role_arn.len() < 20 || req.role_arn.len() > 2048 {
            return Err(validation(format!(
                "1 validation error detected: Value '{}' at 'roleArn' failed to satisfy constraint: Member must have length between 20 and 2048",
                req.role_arn
            )));
        }
        let denied = || {
            access_denied(format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {}",
                caller.principal_arn(),
                req.role_arn
            ))
        };
        let (account, name) = parse_role_arn(&req.role_arn).ok_or_else(denied)?;
        let state = self.view();
        let role = state.iam.roles.get(&(account.clone(), name.key())).cloned().ok_or_else(denied)?;
        // A role chained from another role's session lasts at most an hour.
        let chained = matches!(caller.principal, Principal::Role { .. });
        let max = if chained { DEFAULT_ROLE_SESSION } else { role.max_session_duration };
        let duration = req.duration_seconds.unwrap_or(DEFAULT_ROLE_SESSION);
        if duration < MIN_SESSION {
            return Err(validation(format!(
                "1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to {MIN_SESSION}"
            )));
        }
        if duration > max {
            return Err(validation(if chained {
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."
            } else {
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
            }));
        }
        if !crate::iam::authz::may_assume(&state, caller, &role, req.external_id.as_deref()) {
            return Err(denied());
        }
        self.issue_role_session(&account, &role, &req.session_name, duration)
    }

    /// Temporary credentials for a role, assumed by an AWS service principal (ECS's
    /// `ecs-tasks.amazonaws.com` for a task's roles); the role's trust policy must let
    /// that service assume it.
    pub fn assume_role_for_service(
        &self,
        account: &AccountId,
        role_arn: &str,
        service: &str,
        session: &SessionName,
        seconds: i32,
    ) -> Result<AssumedRole> {
        let denied = || {
            access_denied(format!(
                "{service} is not authorized to perform: sts:AssumeRole on resource: {role_arn}; the role's trust policy must allow the service principal {service}"
            ))
        };
        let (role_account, name) = parse_role_arn(role_arn).ok_or_else(denied)?;
        if &role_account != account {
            return Err(denied());
        }
        let state = self.view();
        let role = state.iam.roles.get(&(account.clone(), name.key())).cloned().ok_or_else(denied)?;
        if !crate::iam::authz::service_may_assume(&role, service) {
            return Err(denied());
        }
        self.issue_role_session(account, &role, session, seconds.min(role.max_session_duration))
    }

    fn issue_role_session(
        &self,
        account: &AccountId,
        role: &Role,
        session: &SessionName,
        seconds: i32,
    ) -> Result<AssumedRole> {
        let who = SessionOf::Role { n: role.name.key(), i: role.id.clone(), s: session.to_string() };
        let credentials = self.control().iam().seal_session(account, who, i64::from(seconds))?;
        Ok(AssumedRole {
            credentials,
            assumed_role_id: format!("{}:{session}", role.id),
            arn: model::iam::entity::assumed_role_arn(account, &role.name, session),
        })
    }

    /// Temporary credentials for the caller itself (a user or the root; not a session).
    pub fn session_token(&self, caller: &Caller, duration_seconds: Option<i32>) -> Result<SessionCredentials> {
        if matches!(caller.principal, Principal::Role { .. }) {
            return Err(access_denied("Cannot call GetSessionToken with session credentials"));
        }
        let max = if caller.is_root() { 3600 } else { MAX_USER_SESSION };
        let duration = duration_seconds.unwrap_or(DEFAULT_USER_SESSION).min(max);
        if let Some(d) = duration_seconds.filter(|d| !(MIN_SESSION..=MAX_USER_SESSION).contains(d)) {
            return Err(validation(format!(
                "1 validation error detected: Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value between {MIN_SESSION} and {MAX_USER_SESSION}"
            )));
        }
        self.control().iam().seal_session(&caller.scope.account, session_of(&caller.principal), i64::from(duration))
    }
}
