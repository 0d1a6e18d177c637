//! A task's execution role as the SDK's credentials: what the agent's own calls for the
//! task (awslogs shipping; later ECR pulls and secrets) sign with, as ECS's agent does.
//!
//! The provider reads the store on every call, so credentials the control plane renews
//! are picked up; the SDK caches each until shortly before its expiry.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::provider::{error::CredentialsError, future, ProvideCredentials};
use aws_credential_types::Credentials;

use super::Endpoint;

/// The execution role credentials of one task.
#[derive(Debug, Clone)]
pub struct ExecutionRole {
    endpoint: Arc<Endpoint>,
    task_arn: String,
}

impl ExecutionRole {
    pub fn new(endpoint: Arc<Endpoint>, task_arn: String) -> Self {
        ExecutionRole { endpoint, task_arn }
    }

    fn current(&self) -> aws_credential_types::provider::Result {
        let c = self.endpoint.execution_role(&self.task_arn).ok_or_else(|| {
            CredentialsError::not_loaded("the control plane has sent no execution role credentials for this task")
        })?;
        let expiry = UNIX_EPOCH + Duration::from_secs(u64::try_from(c.expiration).unwrap_or_default());
        Ok(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            Some(expiry),
            "ecs-execution-role",
        ))
    }
}

impl ProvideCredentials for ExecutionRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(self.current())
    }
}
