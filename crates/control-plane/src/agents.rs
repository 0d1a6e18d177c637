//! Connected agents: one channel per container instance, on which desired state is pushed.
//!
//! Connections are runtime state, not stored: after a control-plane restart every agent
//! reconnects and receives its full task set again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use agent_protocol::{RoleType, TaskAssignment, TaskCredentials, ToAgent};

/// One agent's live connection.
#[derive(Debug)]
struct Link {
    connection: u64,
    tx: mpsc::UnboundedSender<ToAgent>,
    seq: u64,
    last_seen: Instant,
    /// The role credentials this connection was sent: (task ARN, role) → expiry.
    credentials: HashMap<(String, RoleType), i64>,
}

/// The registry of connected agents, keyed by container instance ARN.
#[derive(Debug)]
pub struct Agents {
    /// By instance ARN. Hashed with foldhash: the ARNs are ours (an agent attaches only
    /// as an instance this control plane registered), and placement checks every
    /// instance's link before each launch.
    links: Mutex<HashMap<String, Link, foldhash::fast::RandomState>>,
    next_connection: Mutex<u64>,
    /// An agent not heard from for this long is shown `agentConnected: false`.
    pub timeout: Duration,
}

impl Agents {
    pub fn new(timeout: Duration) -> Self {
        Agents { links: Mutex::new(HashMap::default()), next_connection: Mutex::new(0), timeout }
    }

    fn links(&self) -> std::sync::MutexGuard<'_, HashMap<String, Link, foldhash::fast::RandomState>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection for `instance`, replacing any older one. The caller then
    /// sends the full task set with [`Agents::send_full`]; pushes made in between arrive
    /// first and are included in the full set, so nothing is lost.
    pub fn attach(&self, instance: &str) -> (u64, mpsc::UnboundedReceiver<ToAgent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let connection = {
            let mut n = self.next_connection.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        self.links().insert(
            instance.to_string(),
            Link { connection, tx, seq: 0, last_seen: Instant::now(), credentials: HashMap::new() },
        );
        (connection, rx)
    }

    /// Sends the complete desired task set on a connection.
    pub fn send_full(&self, instance: &str, connection: u64, tasks: Vec<TaskAssignment>) {
        if let Some(l) = self.links().get_mut(instance).filter(|l| l.connection == connection) {
            l.seq += 1;
            let _ = l.tx.send(ToAgent::Tasks { seq: l.seq, full: true, tasks });
        }
    }

    /// Forgets a connection, unless a newer one has replaced it.
    pub fn detach(&self, instance: &str, connection: u64) {
        let mut links = self.links();
        if links.get(instance).is_some_and(|l| l.connection == connection) {
            links.remove(instance);
        }
    }

    /// Notes that the agent was heard from.
    pub fn seen(&self, instance: &str, connection: u64) {
        if let Some(l) = self.links().get_mut(instance).filter(|l| l.connection == connection) {
            l.last_seen = Instant::now();
        }
    }

    /// Whether the instance's agent is connected and was heard from within the timeout.
    pub fn connected(&self, instance: &str) -> bool {
        self.links().get(instance).is_some_and(|l| self.live(l, Instant::now()))
    }

    /// [`Agents::connected`] for each of `instances`, in order, under one lock.
    pub fn connected_each<'a>(&self, instances: impl IntoIterator<Item = &'a str>) -> Vec<bool> {
        let links = self.links();
        let now = Instant::now();
        instances.into_iter().map(|i| links.get(i).is_some_and(|l| self.live(l, now))).collect()
    }

    fn live(&self, l: &Link, now: Instant) -> bool {
        now.saturating_duration_since(l.last_seen) <= self.timeout && !l.tx.is_closed()
    }

    /// Pushes changed assignments to the instance's agent, if it is connected. An agent
    /// that is not connected receives them in the full set when it reconnects.
    /// Sends role credentials to the instance's agent (before the tasks that need them).
    pub fn send_credentials(&self, instance: &str, credentials: Vec<TaskCredentials>) {
        if credentials.is_empty() {
            return;
        }
        if let Some(l) = self.links().get_mut(instance) {
            for c in &credentials {
                l.credentials.insert((c.task_arn.clone(), c.role), c.expiration);
            }
            let _ = l.tx.send(ToAgent::Credentials { credentials });
        }
    }

    /// Whether the instance's agent needs (new) credentials for a task's role: it was
    /// sent none on its current connection, or they expire before `fresh_until`.
    pub fn credentials_due(&self, instance: &str, task_arn: &str, role: RoleType, fresh_until: i64) -> bool {
        self.links().get(instance).is_some_and(|l| {
            l.credentials.get(&(task_arn.to_string(), role)).is_none_or(|expires| *expires < fresh_until)
        })
    }

    /// Forgets the credentials sent for tasks that are gone.
    pub fn forget_credentials(&self, instance: &str, task_arn: &str) {
        if let Some(l) = self.links().get_mut(instance) {
            l.credentials.retain(|(t, _), _| t != task_arn);
        }
    }

    pub fn push(&self, instance: &str, tasks: Vec<TaskAssignment>) {
        if let Some(l) = self.links().get_mut(instance) {
            l.seq += 1;
            let _ = l.tx.send(ToAgent::Tasks { seq: l.seq, full: false, tasks });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(task: &str, expiration: i64) -> TaskCredentials {
        TaskCredentials {
            task_arn: task.into(),
            role: RoleType::TaskRole,
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
            access_key_id: "ASIA".into(),
            secret_access_key: "s".into(),
            session_token: "t".into(),
            expiration,
        }
    }

    #[test]
    fn credentials_are_due_until_sent_fresh_and_again_once_forgotten_or_on_a_new_connection() {
        let agents = Agents::new(Duration::from_secs(30));
        let (_, mut rx) = agents.attach("i-1");
        assert!(agents.credentials_due("i-1", "t1", RoleType::TaskRole, 100));
        agents.send_credentials("i-1", vec![credentials("t1", 1_000)]);
        assert!(matches!(rx.try_recv(), Ok(ToAgent::Credentials { .. })));
        assert!(!agents.credentials_due("i-1", "t1", RoleType::TaskRole, 100));
        assert!(agents.credentials_due("i-1", "t1", RoleType::TaskRole, 2_000), "expiring before then");
        assert!(agents.credentials_due("i-1", "t1", RoleType::ExecutionRole, 100), "another role");
        agents.forget_credentials("i-1", "t1");
        assert!(agents.credentials_due("i-1", "t1", RoleType::TaskRole, 100));
        agents.send_credentials("i-1", vec![credentials("t1", 1_000)]);
        let _reconnected = agents.attach("i-1");
        assert!(agents.credentials_due("i-1", "t1", RoleType::TaskRole, 100), "a new connection has none");
        assert!(!agents.credentials_due("i-2", "t1", RoleType::TaskRole, 100), "no agent connected");
    }
}
