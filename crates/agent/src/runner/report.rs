//! What a task reports: the task-wide part (status, stop, times), which the task's run
//! keeps as it goes, completed by each container as ECS shows it. The pause container of
//! an awsvpc task is never reported.

use agent_protocol::{ContainerReport, ContainerStatus, HealthStatus, TaskReport, TaskStatus};
use model::Timestamp;

use super::rules::task_health;
use super::state::{Ctr, Phase};

/// The task-wide part of a task's first report: PENDING, nothing done yet. Its
/// `containers` and `health_status` stay empty: [`task_report`] derives them.
pub fn pending(task_arn: &str) -> TaskReport {
    TaskReport {
        task_arn: task_arn.to_string(),
        last_status: TaskStatus::Pending,
        containers: vec![],
        health_status: HealthStatus::Unknown,
        stop_code: None,
        stopped_reason: None,
        pull_started_at: None,
        pull_stopped_at: None,
        started_at: None,
        execution_stopped_at: None,
    }
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
