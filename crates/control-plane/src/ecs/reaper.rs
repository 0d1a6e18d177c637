//! Forgets stopped tasks, as ECS does: a task stays visible to DescribeTasks and ListTasks
//! for a while after it stops (about an hour), then it is gone. Without this the state, and
//! the time to rebuild it at start, would grow with every task ever run.
//!
//! Decisions: a task is forgotten once it has been STOPPED for the retention, counted from
//! `stoppedAt` (else `stoppingAt`, else `createdAt`); never while one of its containers may
//! still run (its agent must still be told to stop it), and never while a service has yet
//! to account for its end (its circuit breaker and throttle count failed tasks). Deleting
//! goes through the writer like every change, so a forgotten task is gone from the store
//! too, and the decision is checked again there against the latest state.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use model::ecs::task::{Task, TaskStatus};
use model::ids::ClusterName;
use model::{Scope, Timestamp};

use crate::ecs::tasks::may_run;
use crate::state::{State, Touched};
use crate::{ControlPlane, Result};

/// How long ECS keeps a stopped task visible, and Berth's default retention.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);
/// The longest time between two passes (a short retention makes them more frequent).
const PASS_EVERY: Duration = Duration::from_secs(60);
/// The most tasks one writer change deletes, so that a large backlog (the first start
/// after an upgrade) does not hold the writer for long.
const BATCH: usize = 256;

type TaskKey = (Scope, ClusterName, String);

/// Whether `t` may be forgotten: STOPPED before `cutoff`, with no container that may still
/// run.
fn expired(t: &Task, cutoff: Timestamp) -> bool {
    let stopped = t.stopped_at.or(t.stopping_at).unwrap_or(t.created_at);
    t.last_status == TaskStatus::Stopped && stopped.epoch_seconds() < cutoff.epoch_seconds() && !may_run(t)
}

/// The tasks some service still tracks (whose end it has not accounted for yet).
fn tracked_tasks(state: &State) -> BTreeSet<TaskKey> {
    state
        .services
        .iter()
        .flat_map(|((scope, cluster, _), s)| s.tracked.iter().map(|id| (scope.clone(), cluster.clone(), id.clone())))
        .collect()
}

impl ControlPlane {
    /// Runs the reaper until `shutdown` completes: a pass at start, then at least every
    /// minute (every `retention` if that is shorter).
    pub async fn run_task_reaper(
        self: Arc<Self>,
        retention: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let every = retention.clamp(Duration::from_secs(1), PASS_EVERY);
        loop {
            let cutoff = Timestamp::from_epoch_seconds(Timestamp::now().epoch_seconds() - retention.as_secs_f64());
            match self.reap_stopped_tasks(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(tasks = n, retention_secs = retention.as_secs(), "forgot stopped tasks"),
                Err(e) => tracing::warn!(error = %e, "forgetting stopped tasks failed; retrying"),
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Deletes every task that stopped before `cutoff` and may be forgotten; returns how
    /// many. Idle when there are none: no writer change is submitted.
    pub async fn reap_stopped_tasks(&self, cutoff: Timestamp) -> Result<usize> {
        let view = self.view();
        let tracked = tracked_tasks(&view);
        let candidates: Vec<TaskKey> = view
            .tasks()
            .iter()
            .filter(|(k, t)| expired(t, cutoff) && !tracked.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        let mut reaped = 0;
        for batch in candidates.chunks(BATCH) {
            let batch = batch.to_vec();
            reaped += self
                .write(move |txn| {
                    // Decided again on the latest state: a service may have started
                    // tracking the task since the view was taken.
                    let tracked = tracked_tasks(txn.state);
                    let mut n = 0;
                    for key in batch {
                        let Some(t) = txn.state.tasks().get(&key) else { continue };
                        if !expired(t, cutoff) || tracked.contains(&key) {
                            continue;
                        }
                        txn.state.remove_task(&key);
                        let (scope, cluster, id) = key;
                        txn.touch(Touched::Task(scope, cluster, id));
                        n += 1;
                    }
                    Ok(n)
                })
                .await?;
        }
        Ok(reaped)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! The reaper against the real writer and store: what it forgets is gone from the store
    //! too, and what it must keep stays.

    use std::path::Path;

    use agent_protocol::{ContainerReport, TaskReport};
    use model::ecs::task::{container_instance_arn, ContainerStatus, HealthStatus, Resources};
    use model::{AccountId, Region};

    use super::*;
    use crate::ecs::instances::NewInstance;
    use crate::ecs::run_task::TaskRequest;
    use crate::Caller;

    /// Opens (or reopens) the control plane of `db`, with the master key beside it.
    fn open(db: &Path) -> Arc<ControlPlane> {
        let sealer = crate::sealing::Sealer::for_data_dir(db.parent().unwrap()).unwrap();
        let config = crate::Config { sealer, ..Default::default() };
        Arc::new(ControlPlane::open_with(Arc::new(store::SqliteStore::open(db).unwrap()), config).unwrap())
    }

    pub(crate) fn caller() -> Caller {
        Caller::root(Scope {
            account: AccountId::parse("123456789012").unwrap(),
            region: Region::parse("us-east-1").unwrap(),
        })
    }

    pub(crate) type Link = tokio::sync::mpsc::UnboundedReceiver<agent_protocol::ToAgent>;

    /// One instance of cluster `default` (and its agent's link) and `count` tasks on it.
    pub(crate) async fn tasks(cp: &ControlPlane, count: i32) -> (Vec<Task>, Link) {
        let caller = caller();
        let instance = NewInstance {
            resources: Resources { cpu: 4096, memory: 8192, ..Default::default() },
            ..Default::default()
        };
        let inst = cp.ecs().register_container_instance(&caller, instance).await.unwrap();
        let link = cp.agents.attach(&inst.arn().to_string()).1;
        let td = serde_json::json!({
            "family": "web",
            "containerDefinitions": [{"name": "web", "image": "simplehttp", "memory": 32}],
        });
        let td = model::ecs::NewTaskDefinition::parse(serde_json::from_value(td).unwrap()).unwrap();
        cp.ecs().register_task_definition(&caller, td).await.unwrap();
        let req = TaskRequest { task_definition: "web".into(), count, ..Default::default() };
        let (tasks, failures) = cp.ecs().run_task(&caller, req).await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
        (tasks, link)
    }

    /// Reports `t` in `status`; with `container`, its container as created and in that
    /// state.
    pub(crate) async fn report(cp: &ControlPlane, t: &Task, status: TaskStatus, container: Option<ContainerStatus>) {
        let containers = container
            .map(|c| ContainerReport {
                name: "web".into(),
                last_status: c,
                runtime_id: Some(format!("docker-{}", t.id)),
                exit_code: None,
                reason: None,
                network_bindings: vec![],
                health_status: HealthStatus::Unknown,
                image_digest: None,
            })
            .into_iter()
            .collect();
        let r = TaskReport { containers, ..TaskReport::new(t.arn().to_string(), status) };
        let instance = container_instance_arn(&t.scope, &t.cluster, t.container_instance.as_deref().unwrap());
        cp.ecs().report_task_state(&t.scope, &instance.to_string(), r).await.unwrap();
    }

    fn present(cp: &ControlPlane) -> BTreeSet<String> {
        cp.view().tasks().values().map(|t| t.id.clone()).collect()
    }

    fn stopped_at(cp: &ControlPlane, t: &Task) -> Timestamp {
        cp.view().tasks().values().find(|x| x.id == t.id).unwrap().stopped_at.unwrap()
    }

    #[tokio::test]
    async fn stopped_tasks_older_than_the_retention_are_forgotten_durably() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let cp = open(&db);
        let (all, _link) = tasks(&cp, 4).await;
        let [old, young, still_running_container, running] = &all[..] else { unreachable!() };
        report(&cp, old, TaskStatus::Stopped, Some(ContainerStatus::Stopped)).await;
        // A task whose container was created and never reported stopped.
        report(&cp, still_running_container, TaskStatus::Stopped, Some(ContainerStatus::Running)).await;
        report(&cp, running, TaskStatus::Running, Some(ContainerStatus::Running)).await;
        // The writer's clock has millisecond precision.
        tokio::time::sleep(Duration::from_millis(20)).await;
        report(&cp, young, TaskStatus::Stopped, None).await;
        assert!(stopped_at(&cp, old).epoch_seconds() < stopped_at(&cp, young).epoch_seconds());

        // Nothing has stopped long enough: nothing is written.
        assert_eq!(cp.reap_stopped_tasks(stopped_at(&cp, old)).await.unwrap(), 0);
        assert_eq!(present(&cp).len(), 4);

        // The cutoff between the two stops: only the older one goes.
        let cutoff = stopped_at(&cp, young);
        assert_eq!(cp.reap_stopped_tasks(cutoff).await.unwrap(), 1);
        let ids = |ts: &[&Task]| ts.iter().map(|t| t.id.clone()).collect::<BTreeSet<_>>();
        assert_eq!(present(&cp), ids(&[young, still_running_container, running]));
        let (found, missing) = cp.ecs().describe_tasks(&caller(), None, &[old.arn().to_string()]).unwrap();
        assert!(found.is_empty());
        assert_eq!(missing[0].reason, "MISSING");
        // Again: idempotent.
        assert_eq!(cp.reap_stopped_tasks(cutoff).await.unwrap(), 0);

        // Gone from the store too.
        drop(cp);
        let cp = open(&db);
        assert_eq!(present(&cp), ids(&[young, still_running_container, running]));

        // Much later: the younger one goes too; a task that may still run, or runs, stays.
        let later = Timestamp::from_epoch_seconds(Timestamp::now().epoch_seconds() + 7200.0);
        assert_eq!(cp.reap_stopped_tasks(later).await.unwrap(), 1);
        assert_eq!(present(&cp), ids(&[still_running_container, running]));
        // Once its container is reported stopped, it may go.
        report(&cp, still_running_container, TaskStatus::Stopped, Some(ContainerStatus::Stopped)).await;
        assert_eq!(cp.reap_stopped_tasks(later).await.unwrap(), 1);
        cp.view().check_indexes();
        drop(cp);
        let cp = open(&db);
        assert_eq!(present(&cp), ids(&[running]));
        cp.view().check_indexes();
    }

    #[tokio::test]
    async fn a_task_stays_until_its_service_has_accounted_for_its_end() {
        use crate::ecs::services::controller::LostInstances;
        use crate::ecs::services::ServiceSpec;

        let dir = tempfile::tempdir().unwrap();
        let cp = open(&dir.path().join("db"));
        let (_, _link) = tasks(&cp, 1).await;
        let req = ServiceSpec {
            name: "svc".into(),
            task_definition: Some("web:1".into()),
            desired_count: Some(1),
            ..Default::default()
        };
        cp.ecs().create_service(&caller(), req).await.unwrap();
        let mut lost = LostInstances::default();
        cp.services_pass(&mut lost).await.unwrap();
        let of_service = |cp: &ControlPlane| -> Vec<Task> {
            cp.view().tasks().values().filter(|t| t.group == "service:svc").map(|t| t.as_ref().clone()).collect()
        };
        let first = of_service(&cp).pop().expect("the service started a task");
        let service = || cp.view().services.values().next().unwrap().clone();
        assert!(service().tracked.contains(&first.id));

        // It fails; the service has not seen that yet.
        report(&cp, &first, TaskStatus::Stopped, Some(ContainerStatus::Stopped)).await;
        let later = Timestamp::from_epoch_seconds(Timestamp::now().epoch_seconds() + 7200.0);
        assert_eq!(cp.reap_stopped_tasks(later).await.unwrap(), 0);
        // Once it has (and started a replacement), the task may go, and the service
        // controller goes on without it.
        cp.services_pass(&mut lost).await.unwrap();
        assert!(!service().tracked.contains(&first.id));
        assert_eq!(cp.reap_stopped_tasks(later).await.unwrap(), 1);
        cp.services_pass(&mut lost).await.unwrap();
        let left = of_service(&cp);
        assert_eq!(left.len(), 1);
        assert_ne!(left[0].id, first.id);
        assert!(service().tracked.contains(&left[0].id));
    }

    #[tokio::test]
    async fn the_reaper_ends_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let cp = open(&dir.path().join("db"));
        let (all, _link) = tasks(&cp, 1).await;
        report(&cp, &all[0], TaskStatus::Stopped, None).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let reaper = tokio::spawn(cp.clone().run_task_reaper(Duration::from_secs(1), async move {
            let _ = stopped.await;
        }));
        let gone = async {
            while !present(&cp).is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), gone).await.expect("the task is forgotten after a second");
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), reaper).await.expect("the reaper ends").unwrap();
    }
}
