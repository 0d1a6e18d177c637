//! The state's mirror (`state::mirror`, a base module) driven by the services' own
//! operations, which the base may not name: a follower applying every committed batch,
//! as the change log hands them, holds the state the leader would rebuild from the store:
//! resources created, changed and deleted in several rooms, tasks with their group and
//! instance-load indexes.

use std::sync::{Arc, Mutex};

use model::ecs::task::{ContainerStatus, TaskStatus};
use model::iam::entity::IamName;
use store::{Change, Mutation, Record, SqliteStore, Store, StoreError};

use crate::ecs::reaper::tests::{caller, report, tasks};
use crate::state::mirror::Mirror;
use crate::state::State;
use crate::ControlPlane;

/// A real SQLite store that also keeps each batch it committed, as the change log does.
#[derive(Debug)]
struct Logged {
    inner: SqliteStore,
    batches: Mutex<Vec<Vec<Mutation>>>,
}

impl Store for Logged {
    fn load(&self) -> Result<Vec<Record>, StoreError> {
        self.inner.load()
    }
    fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }
    fn commit(&self, batch: &[Mutation]) -> Result<(), StoreError> {
        self.inner.commit(batch)?;
        self.batches.lock().unwrap().push(batch.to_vec());
        Ok(())
    }
}

/// The batches committed since the last call, as a follower reads them.
fn changes(store: &Logged) -> Vec<Change> {
    let batches = std::mem::take(&mut *store.batches.lock().unwrap());
    batches
        .into_iter()
        .flatten()
        .map(|m| match m {
            Mutation::Put(r) => Change { table: r.table, key: r.key, value: Some(r.value) },
            Mutation::Delete { table, key } => Change { table, key, value: None },
        })
        .collect()
}

/// Applies what was committed since the last call and checks the follower against
/// the store.
fn follow(store: &Logged, state: &mut State, mirror: &mut Mirror) {
    mirror.apply(state, changes(store)).unwrap();
    state.check_indexes();
    let rebuilt = State::from_records(store.load().unwrap()).unwrap();
    assert_eq!(state.canonical_debug(), rebuilt.canonical_debug());
    let held = store.load().unwrap().iter().filter(|r| !r.table.starts_with("auth.")).count();
    assert_eq!(mirror.len(), held);
}

#[tokio::test]
async fn a_follower_applying_the_committed_batches_holds_the_stored_state() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(Logged { inner: SqliteStore::open(&dir.path().join("db")).unwrap(), batches: Mutex::new(Vec::new()) });
    let cp = ControlPlane::open(store.clone()).unwrap();
    let (mut state, mut mirror) = Mirror::load(store.load().unwrap()).unwrap();
    changes(&store);

    // ECS: an instance, a task definition, tasks placed on it; some stop, one is
    // forgotten (a deletion that must also leave the instance's load).
    let (all, _link) = tasks(&cp, 3).await;
    follow(&store, &mut state, &mut mirror);
    report(&cp, &all[0], TaskStatus::Running, Some(ContainerStatus::Running)).await;
    report(&cp, &all[1], TaskStatus::Stopped, Some(ContainerStatus::Stopped)).await;
    follow(&store, &mut state, &mut mirror);
    let later = model::Timestamp::from_epoch_seconds(model::Timestamp::now().epoch_seconds() + 7200.0);
    assert_eq!(cp.reap_stopped_tasks(later).await.unwrap(), 1);
    follow(&store, &mut state, &mut mirror);
    assert_eq!(state.tasks().len(), 2);

    // IAM: a user and its key come and go.
    let account = caller().scope.account;
    let iam = cp.iam();
    iam.create_user(&account, IamName::parse("alice").unwrap(), None, vec![]).await.unwrap();
    let (_, key, _) = iam.create_access_key(&account, "alice".into()).await.unwrap();
    follow(&store, &mut state, &mut mirror);
    assert_eq!(state.iam.keys.len(), 1);
    iam.delete_access_key(&account, "alice".into(), key.id.clone()).await.unwrap();
    iam.delete_user(&account, "alice".into()).await.unwrap();
    follow(&store, &mut state, &mut mirror);
    assert!(state.iam.users.is_empty() && state.iam.keys.is_empty());

    // SSM: versions pile up on one parameter, then it goes with all of them.
    let scope = caller().scope;
    for value in ["one", "two", "three"] {
        let put = crate::ssm::PutRequest {
            name: "/app/db".into(),
            value: value.into(),
            ty: Some(model::ssm::ParameterType::SecureString),
            overwrite: true,
            ..Default::default()
        };
        cp.ssm().put(&caller(), put).await.unwrap();
    }
    follow(&store, &mut state, &mut mirror);
    assert_eq!(state.ssm.of_scope(&scope).next().unwrap().versions.len(), 3);
    cp.ssm().delete(&scope, "/app/db").await.unwrap();
    follow(&store, &mut state, &mut mirror);
    assert_eq!(state.ssm.of_scope(&scope).count(), 0);
}
