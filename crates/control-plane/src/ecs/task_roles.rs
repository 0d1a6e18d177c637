//! Tasks' IAM roles: a task's role (`taskRoleArn`) is assumed by ECS's service principal
//! `ecs-tasks.amazonaws.com` for the task, and its credentials are handed to the agent
//! that runs it, which serves them to the task's containers; the execution role
//! (`executionRoleArn`) likewise, for the agent's own work for the task.
//!
//! Decisions:
//! - RunTask and StartTask refuse a role that does not exist or does not trust
//!   `ecs-tasks.amazonaws.com`, with ECS's message; the service scheduler reports it as
//!   an event and launches nothing.
//! - Credentials last six hours (or the role's maximum session, if shorter) and are sent
//!   before the assignment that needs them, then again once less than half an hour is
//!   left (`run_role_refresh`). A role deleted while its task runs gets no new
//!   credentials; the old ones stop working at once, since every request re-reads the
//!   role.

use std::time::Duration;

use agent_protocol::{RoleType, TaskAssignment, TaskCredentials};
use model::ecs::shapes::TaskOverride;
use model::ecs::task::TaskStatus;
use model::ecs::TaskDefinition;
use model::iam::entity::SessionName;
use model::Scope;

use super::Ecs;
use crate::error::{Error, Result};
use crate::state::State;
use crate::{ControlPlane, Ops};

/// The service principal ECS assumes task roles as.
pub const ECS_TASKS: &str = "ecs-tasks.amazonaws.com";
/// How long credentials for a task's role are asked for.
const SESSION_SECONDS: i32 = 6 * 3600;
/// Credentials are renewed once they have less than this left.
const RENEW_BEFORE_SECONDS: i64 = 30 * 60;

fn now_seconds() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A role given as a name or an ARN: its ARN in the task's account.
fn role_arn(scope: &Scope, role: &str) -> String {
    if role.starts_with("arn:") {
        role.to_string()
    } else {
        format!("arn:aws:iam::{}:role/{role}", scope.account)
    }
}

/// The roles a task runs with: its definition's, or its overrides'.
pub(crate) fn roles(
    scope: &Scope,
    task_role: Option<&str>,
    execution_role: Option<&str>,
    overrides: Option<&TaskOverride>,
) -> Vec<(RoleType, String)> {
    let task_role = overrides.and_then(|o| o.task_role_arn.as_deref()).or(task_role);
    let execution_role = overrides.and_then(|o| o.execution_role_arn.as_deref()).or(execution_role);
    let mut out = Vec::new();
    if let Some(r) = task_role.filter(|r| !r.is_empty()) {
        out.push((RoleType::TaskRole, role_arn(scope, r)));
    }
    if let Some(r) = execution_role.filter(|r| !r.is_empty()) {
        out.push((RoleType::ExecutionRole, role_arn(scope, r)));
    }
    out
}

/// The roles of a task definition (with overrides) as ECS checks them at launch.
pub(crate) fn definition_roles(
    scope: &Scope,
    td: &TaskDefinition,
    overrides: Option<&TaskOverride>,
) -> Vec<(RoleType, String)> {
    roles(scope, td.spec.doc.task_role_arn.as_deref(), td.spec.doc.execution_role_arn.as_deref(), overrides)
}

/// ECS's refusal of a role it cannot assume.
pub(crate) fn unassumable(role: &str) -> String {
    format!(
        "ECS was unable to assume the role '{role}' that was provided for this task. Please verify that the role being passed has the proper trust relationship and permissions and that your IAM user has permissions to pass this role."
    )
}

/// Checks that ECS can assume every role of the task: each exists in the task's account
/// and trusts `ecs-tasks.amazonaws.com`.
pub(crate) fn check(state: &State, scope: &Scope, td: &TaskDefinition, overrides: Option<&TaskOverride>) -> Result<()> {
    for (_, arn) in definition_roles(scope, td, overrides) {
        if !crate::iam::authz::service_can_assume(state, &scope.account, &arn, ECS_TASKS) {
            return Err(Error::client(unassumable(&arn)));
        }
    }
    Ok(())
}

/// Whether `caller` may pass `roles` to ECS's tasks (`iam:PassRole` on each, with
/// `iam:PassedToService` = `ecs-tasks.amazonaws.com`), as ECS asks when a task definition
/// with roles is registered or run.
pub(crate) fn check_pass_role(ops: &Ops<'_, Ecs>, caller: &crate::Caller, roles: &[(RoleType, String)]) -> Result<()> {
    if caller.is_root() || roles.is_empty() {
        return Ok(());
    }
    let mut access = crate::iam::authz::Access::new("iam:PassRole");
    access.resources = roles.iter().map(|(_, arn)| arn.clone()).collect();
    access.context.push(("iam:PassedToService".into(), vec![ECS_TASKS.into()]));
    ops.control().iam().authorize(caller, access)
}

impl Ops<'_, Ecs> {
    /// Credentials the agent on `instance` needs for `assignments` (those it was not
    /// sent yet, or that expire soon), minted now.
    pub(crate) fn credentials_for(
        &self,
        scope: &Scope,
        instance: &str,
        assignments: &[TaskAssignment],
    ) -> Vec<TaskCredentials> {
        let fresh_until = now_seconds() + RENEW_BEFORE_SECONDS;
        let mut out = Vec::new();
        for a in assignments {
            if a.desired_status != agent_protocol::DesiredStatus::Running {
                // A task told to stop needs no more credentials: forget what was sent.
                self.agents.forget_credentials(instance, &a.task_arn);
                continue;
            }
            let task_roles = roles(
                scope,
                a.definition.task_role_arn.as_deref(),
                a.definition.execution_role_arn.as_deref(),
                a.overrides.as_ref(),
            );
            for (role, arn) in task_roles {
                if !self.agents.credentials_due(instance, &a.task_arn, role, fresh_until) {
                    continue;
                }
                let task_id = a.task_arn.rsplit('/').next().unwrap_or_default();
                let Ok(session) = SessionName::parse(&task_id.chars().take(64).collect::<String>()) else { continue };
                match self.control().sts().assume_role_for_service(
                    &scope.account,
                    &arn,
                    ECS_TASKS,
                    &session,
                    SESSION_SECONDS,
                ) {
                    Ok(assumed) => out.push(TaskCredentials {
                        task_arn: a.task_arn.clone(),
                        role,
                        role_arn: arn,
                        access_key_id: assumed.credentials.access_key_id,
                        secret_access_key: assumed.credentials.secret,
                        session_token: assumed.credentials.token,
                        expiration: assumed.credentials.expires_at,
                    }),
                    Err(e) => {
                        tracing::warn!(task = %a.task_arn, role = %arn, error = %e, "cannot assume the task's role; its credentials are not renewed")
                    }
                }
            }
        }
        out
    }

    /// Sends the credentials `assignments` need to the agent on `instance`.
    pub(crate) fn send_credentials(&self, scope: &Scope, instance: &str, assignments: &[TaskAssignment]) {
        let credentials = self.credentials_for(scope, instance, assignments);
        self.agents.send_credentials(instance, credentials);
    }
}

impl ControlPlane {
    /// Renews tasks' role credentials before they expire, every `every`, until `shutdown`.
    pub async fn run_role_refresh(
        self: std::sync::Arc<Self>,
        every: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            let state = self.view();
            let mut by_instance: std::collections::BTreeMap<(String, Scope), Vec<TaskAssignment>> = Default::default();
            for t in state.tasks().values() {
                if t.last_status == TaskStatus::Stopped {
                    continue;
                }
                let Some(host) = t.host_arn() else { continue };
                let Some(td) = state.task_definitions.get(&(t.scope.clone(), t.family.clone(), t.revision)) else {
                    continue;
                };
                if td.spec.doc.task_role_arn.is_none() && td.spec.doc.execution_role_arn.is_none() {
                    let overridden = t
                        .overrides
                        .as_ref()
                        .is_some_and(|o| o.task_role_arn.is_some() || o.execution_role_arn.is_some());
                    if !overridden {
                        continue;
                    }
                }
                if let Some(a) = super::tasks::assignment(&state, t) {
                    by_instance.entry((host.to_string(), t.scope.clone())).or_default().push(a);
                }
            }
            let ecs = self.ecs();
            for ((instance, scope), assignments) in by_instance {
                ecs.send_credentials(&scope, &instance, &assignments);
            }
        }
    }
}
