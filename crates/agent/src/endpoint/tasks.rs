//! Which task an endpoint id belongs to, and the newest snapshot of each task: the only
//! state the runner shares with the endpoint's server.
//!
//! Each task's run registers its ids when it starts (after adopting any containers, so
//! that ids read back from their environment are the ones registered), publishes a
//! snapshot whenever what it knows changes, and forgets the task once it is STOPPED. The
//! server only reads. Locks are held for a map lookup at most.

#[cfg(test)]
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::ids::EndpointId;
use super::metadata::{ContainerSnapshot, TaskSnapshot};

#[derive(Default)]
pub struct Tasks {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    snapshots: HashMap<String, Arc<TaskSnapshot>>,
    /// A container's metadata id: its task and its name.
    containers: HashMap<EndpointId, (String, String)>,
    /// A task's credentials id: its task.
    credentials: HashMap<EndpointId, String>,
}

/// What a metadata id opens: the task as last published and the container it names.
#[derive(Debug, Clone)]
pub struct Found {
    pub task: Arc<TaskSnapshot>,
    pub container: String,
}

impl Found {
    pub fn container(&self) -> Option<&ContainerSnapshot> {
        self.task.containers.iter().find(|c| c.name == self.container)
    }
}

impl Tasks {
    /// Registers a task's ids: its credentials id (tasks with a task role) and each
    /// container's metadata id by container name.
    pub fn register(&self, task_arn: &str, credentials: Option<EndpointId>, containers: &[(EndpointId, String)]) {
        let Ok(mut inner) = self.inner.write() else { return };
        if let Some(id) = credentials {
            inner.credentials.insert(id, task_arn.to_string());
        }
        for (id, name) in containers {
            inner.containers.insert(*id, (task_arn.to_string(), name.clone()));
        }
    }

    /// Replaces the task's snapshot.
    pub fn publish(&self, snapshot: TaskSnapshot) {
        if let Ok(mut inner) = self.inner.write() {
            inner.snapshots.insert(snapshot.task_arn.clone(), Arc::new(snapshot));
        }
    }

    /// Forgets a task and all its ids.
    pub fn forget(&self, task_arn: &str) {
        if let Ok(mut inner) = self.inner.write() {
            inner.snapshots.remove(task_arn);
            inner.containers.retain(|_, (arn, _)| arn != task_arn);
            inner.credentials.retain(|_, arn| arn != task_arn);
        }
    }

    /// The task and container a metadata id belongs to, once the task has a snapshot.
    pub fn by_metadata_id(&self, id: &EndpointId) -> Option<Found> {
        let inner = self.inner.read().ok()?;
        let (arn, container) = inner.containers.get(id)?;
        let task = inner.snapshots.get(arn)?.clone();
        Some(Found { task, container: container.clone() })
    }

    /// The task a credentials id belongs to.
    pub fn by_credentials_id(&self, id: &EndpointId) -> Option<String> {
        self.inner.read().ok()?.credentials.get(id).cloned()
    }

    /// Whether this agent knows the id, as either kind.
    pub fn knows(&self, id: &EndpointId) -> bool {
        self.inner.read().is_ok_and(|i| i.containers.contains_key(id) || i.credentials.contains_key(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(arn: &str) -> TaskSnapshot {
        TaskSnapshot {
            task_arn: arn.into(),
            cluster_arn: "c".into(),
            family: "f".into(),
            revision: 1,
            desired_status: "RUNNING".into(),
            known_status: "PENDING".into(),
            cpu: None,
            memory: None,
            pull_started_at: None,
            pull_stopped_at: None,
            execution_stopped_at: None,
            containers: vec![],
            task_tags: BTreeMap::new(),
            instance_tags: BTreeMap::new(),
        }
    }

    #[test]
    fn ids_open_their_own_task_until_it_is_forgotten() {
        let tasks = Tasks::default();
        let (web, cred, other) = (EndpointId::random(1), EndpointId::random(1), EndpointId::random(1));
        tasks.register("t1", Some(cred), &[(web, "web".into())]);
        assert!(tasks.knows(&web) && tasks.knows(&cred) && !tasks.knows(&other));
        assert!(tasks.by_metadata_id(&web).is_none(), "nothing to show before the first snapshot");
        tasks.publish(snapshot("t1"));
        tasks.publish(snapshot("t2"));
        let found = tasks.by_metadata_id(&web).unwrap();
        assert_eq!((found.task.task_arn.as_str(), found.container.as_str()), ("t1", "web"));
        assert_eq!(tasks.by_credentials_id(&cred).as_deref(), Some("t1"));
        assert!(tasks.by_metadata_id(&cred).is_none(), "a credentials id opens no metadata");
        assert!(tasks.by_credentials_id(&web).is_none(), "a metadata id opens no credentials");
        tasks.forget("t1");
        assert!(!tasks.knows(&web) && !tasks.knows(&cred));
        assert!(tasks.by_metadata_id(&web).is_none());
    }
}
