//! Tasks' role credentials: the store the control plane's `Credentials` messages fill,
//! and the answers of `GET /v2/credentials/<id>` as the ECS agent gives them.
//!
//! A task's execution role credentials are kept for the agent's own work for the task
//! (image pulls, awslogs, secrets) and are never served: only `RoleType::TaskRole` ever
//! reaches a response body. Secrets never reach a log line (`TaskCredentials`' `Debug`
//! hides them; nothing here logs a body).

use std::collections::HashMap;
use std::sync::Mutex;

use agent_protocol::{RoleType, TaskCredentials};
use serde::Serialize;

/// The credentials of the tasks this agent runs, by task and role.
#[derive(Default)]
pub struct CredentialsStore {
    by_task: Mutex<HashMap<(String, RoleType), TaskCredentials>>,
}

impl CredentialsStore {
    /// Takes in what the control plane sent. For a task and role, the credentials that
    /// expire last win (a late copy of older ones never replaces fresher ones), and
    /// whatever expired before `now` (seconds since the epoch) is dropped.
    pub fn put(&self, credentials: Vec<TaskCredentials>, now: i64) {
        let Ok(mut held) = self.by_task.lock() else { return };
        for c in credentials {
            let key = (c.task_arn.clone(), c.role);
            if held.get(&key).is_none_or(|old| old.expiration <= c.expiration) {
                held.insert(key, c);
            }
        }
        held.retain(|_, c| c.expiration > now);
    }

    /// The newest credentials of `task_arn`'s `role`, if any.
    pub fn get(&self, task_arn: &str, role: RoleType) -> Option<TaskCredentials> {
        self.by_task.lock().ok()?.get(&(task_arn.to_string(), role)).cloned()
    }

    /// Drops a task's credentials (it has stopped).
    pub fn forget_task(&self, task_arn: &str) {
        if let Ok(mut held) = self.by_task.lock() {
            held.retain(|(arn, _), _| arn != task_arn);
        }
    }
}

/// The success body: the role's credentials as the SDKs' container provider reads them.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Body<'a> {
    role_arn: &'a str,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    /// ISO 8601 in UTC, to the second.
    expiration: String,
}

/// The JSON body for task role credentials `c`.
pub fn body(c: &TaskCredentials) -> String {
    let body = Body {
        role_arn: &c.role_arn,
        access_key_id: &c.access_key_id,
        secret_access_key: &c.secret_access_key,
        token: &c.session_token,
        expiration: iso8601(c.expiration),
    };
    serde_json::to_string(&body).unwrap_or_default()
}

fn iso8601(epoch_seconds: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(epoch_seconds)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// Why a credentials request gets no credentials, with the ECS agent's status and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The path has no id.
    NoId,
    /// No task has this id (or it is not an id at all).
    UnknownId,
    /// The task is known but its credentials have not arrived yet (just assigned, or the
    /// agent has just restarted): worth retrying.
    NotYet,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::NoId | Refusal::UnknownId => 400,
            Refusal::NotYet => 503,
        }
    }

    /// The body: `{"code","message"}`.
    pub fn body(self) -> String {
        let (code, message) = match self {
            Refusal::NoId => ("NoIdInRequest", "CredentialsV2Request: the request names no credentials ID"),
            Refusal::UnknownId => ("InvalidIdInRequest", "CredentialsV2Request: no task has this credentials ID"),
            Refusal::NotYet => {
                ("CredentialsUninitialized", "CredentialsV2Request: the task's credentials have not arrived yet")
            }
        };
        serde_json::json!({ "code": code, "message": message }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(task: &str, role: RoleType, key: &str, expiration: i64) -> TaskCredentials {
        TaskCredentials {
            task_arn: task.into(),
            role,
            role_arn: "arn:aws:iam::123456789012:role/app".into(),
            access_key_id: key.into(),
            secret_access_key: format!("secret-{key}"),
            session_token: format!("token-{key}"),
            expiration,
        }
    }

    #[test]
    fn the_freshest_credentials_win_per_task_and_role() {
        let store = CredentialsStore::default();
        store.put(
            vec![creds("t1", RoleType::TaskRole, "A", 2000), creds("t1", RoleType::ExecutionRole, "E", 2000)],
            1000,
        );
        store.put(vec![creds("t1", RoleType::TaskRole, "B", 3000)], 1000);
        store.put(vec![creds("t1", RoleType::TaskRole, "old", 2500)], 1000);
        assert_eq!(store.get("t1", RoleType::TaskRole).unwrap().access_key_id, "B");
        assert_eq!(store.get("t1", RoleType::ExecutionRole).unwrap().access_key_id, "E");
        assert!(store.get("t2", RoleType::TaskRole).is_none());

        // Expired ones go at the next put; a stopped task's go at once.
        store.put(vec![creds("t2", RoleType::TaskRole, "C", 9000)], 2600);
        assert!(store.get("t1", RoleType::ExecutionRole).is_none());
        assert_eq!(store.get("t1", RoleType::TaskRole).unwrap().access_key_id, "B");
        store.forget_task("t1");
        assert!(store.get("t1", RoleType::TaskRole).is_none());
        assert!(store.get("t2", RoleType::TaskRole).is_some());
    }

    #[test]
    fn bodies_have_the_ecs_agents_shapes() {
        let c = creds("t", RoleType::TaskRole, "AKIA", 1_700_000_000);
        let v: serde_json::Value = serde_json::from_str(&body(&c)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "RoleArn": "arn:aws:iam::123456789012:role/app",
                "AccessKeyId": "AKIA",
                "SecretAccessKey": "secret-AKIA",
                "Token": "token-AKIA",
                "Expiration": "2023-11-14T22:13:20Z",
            })
        );
        let e: serde_json::Value = serde_json::from_str(&Refusal::UnknownId.body()).unwrap();
        assert_eq!(e["code"], "InvalidIdInRequest");
        assert_eq!((Refusal::UnknownId.status(), Refusal::NoId.status(), Refusal::NotYet.status()), (400, 400, 503));
    }
}
