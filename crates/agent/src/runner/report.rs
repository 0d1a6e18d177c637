//! What a task reports: the task-wide part (status, stop, times), which the task's run
//! keeps as it goes, completed by each container as ECS shows it. The pause container of
//! an awsvpc task is never reported.

use agent_protocol::{ContainerReport, ContainerStatus, TaskReport, TaskStatus};
use model::Timestamp;

use super::rules::task_health;
use super::state::{Ctr, Phase};

/// The task-wide part of a task's first report: PENDING, nothing done yet. Its
/// `containers` and `health_status` stay empty: [`task_report`] derives them.
pub fn pending(task_arn: &str) -> TaskReport {
    TaskReport::new(task_arn, TaskStatus::Pending)
}

/// Moves the task's status to `computed` if that is forward (a status never moves back),
/// stamping the task's start when it first runs and its end when it stops. Docker's own
/// times win, so an adopted task keeps its real ones; `now` stands in when Docker has none.
pub fn advance_status(task: &mut TaskReport, computed: TaskStatus, ctrs: &[Ctr], now: Timestamp) {
    if computed <= task.last_status {
        return;
    }
    if computed >= TaskStatus::Running && task.started_at.is_none() && ctrs.iter().all(|c| c.ever_started) {
        let latest = ctrs.iter().filter(|c| !c.internal).filter_map(|c| c.started_at).max();
        task.started_at = Some(latest.map(Timestamp::from_system).unwrap_or(now));
    }
    if computed == TaskStatus::Stopped {
        let latest = ctrs.iter().filter(|c| !c.internal).filter_map(|c| c.finished_at).max();
        task.execution_stopped_at = Some(latest.map(Timestamp::from_system).unwrap_or(now));
    }
    task.last_status = computed;
}

/// The full report: the task-wide part `task` with its containers and the health they
/// add up to.
pub fn task_report(task: &TaskReport, ctrs: &[Ctr]) -> TaskReport {
    TaskReport {
        containers: ctrs.iter().filter(|c| !c.internal).map(container_report).collect(),
        health_status: task_health(ctrs),
        ..task.clone()
    }
}

fn container_report(c: &Ctr) -> ContainerReport {
    ContainerReport {
        name: c.name.clone(),
        last_status: match c.phase {
            Phase::Waiting | Phase::Created => ContainerStatus::Pending,
            Phase::Running => ContainerStatus::Running,
            Phase::Stopped => ContainerStatus::Stopped,
        },
        runtime_id: c.id.clone(),
        exit_code: c.exit_code,
        reason: c.reason.clone(),
        network_bindings: c.bindings.clone(),
        health_status: c.health,
        image_digest: c.image_digest.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::fixtures::ctr;
    use agent_protocol::HealthStatus;
    use std::time::{Duration, SystemTime};

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn the_status_only_moves_forward() {
        let mut task = pending("arn");
        let ctrs = [ctr("a", vec![])];
        advance_status(&mut task, TaskStatus::Stopping, &ctrs, Timestamp::from_epoch_seconds(1.0));
        assert_eq!(task.last_status, TaskStatus::Stopping);
        advance_status(&mut task, TaskStatus::Running, &ctrs, Timestamp::from_epoch_seconds(2.0));
        assert_eq!(task.last_status, TaskStatus::Stopping);
        assert_eq!(task.started_at, None, "a task stopped before it ran has no start");
    }

    #[test]
    fn start_and_stop_times_are_dockers_latest_without_the_pause_container() {
        let now = Timestamp::from_epoch_seconds(1000.0);
        let mut ctrs = [ctr("a", vec![]), ctr("b", vec![]), ctr("pause", vec![])];
        ctrs[2].internal = true;
        for (c, (start, end)) in ctrs.iter_mut().zip([(10, 20), (12, 18), (50, 60)]) {
            c.ever_started = true;
            c.started_at = Some(at(start));
            c.finished_at = Some(at(end));
        }
        let mut task = pending("arn");
        advance_status(&mut task, TaskStatus::Running, &ctrs, now);
        assert_eq!(task.started_at, Some(Timestamp::from_system(at(12))));
        assert_eq!(task.execution_stopped_at, None);
        advance_status(&mut task, TaskStatus::Stopped, &ctrs, now);
        assert_eq!(task.execution_stopped_at, Some(Timestamp::from_system(at(20))));
        assert_eq!(task.started_at, Some(Timestamp::from_system(at(12))), "the start stays");

        // Without Docker's times, the moment of the change stands in.
        for c in &mut ctrs {
            (c.started_at, c.finished_at) = (None, None);
        }
        let mut task = pending("arn");
        advance_status(&mut task, TaskStatus::Stopped, &ctrs, now);
        assert_eq!((task.started_at, task.execution_stopped_at), (Some(now), Some(now)));
    }

    #[test]
    fn reports_show_the_containers_but_not_the_pause_container() {
        let mut ctrs = [ctr("a", vec![]), ctr("b", vec![]), ctr("c", vec![]), ctr("pause", vec![])];
        ctrs[1].phase = Phase::Running;
        ctrs[1].id = Some("idb".into());
        ctrs[2].phase = Phase::Stopped;
        ctrs[2].exit_code = Some(1);
        ctrs[3].internal = true;
        let mut task = pending("arn");
        task.stopped_reason = Some("why".into());
        let r = task_report(&task, &ctrs);
        let rows: Vec<(&str, ContainerStatus)> =
            r.containers.iter().map(|c| (c.name.as_str(), c.last_status)).collect();
        assert_eq!(
            rows,
            vec![("a", ContainerStatus::Pending), ("b", ContainerStatus::Running), ("c", ContainerStatus::Stopped)]
        );
        assert_eq!((r.containers[1].runtime_id.as_deref(), r.containers[2].exit_code), (Some("idb"), Some(1)));
        assert_eq!((r.task_arn.as_str(), r.stopped_reason.as_deref()), ("arn", Some("why")));
        assert_eq!(r.health_status, HealthStatus::Unknown);
    }
}
