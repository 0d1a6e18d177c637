//! Runs tasks on Docker: drives each task's containers towards the desired state, keeps
//! them there, and reports every change as ECS would show it.
//!
//! An `awsvpc` task has one more container, internal and never reported: its pause
//! container, which holds the task's address. Every other container depends on it (START)
//! and joins its network namespace, so it starts first and stops last; it is removed before
//! the task reports STOPPED, which frees the address. When the control plane sends the
//! task's security group rules, they are installed in that namespace (`firewall`) once
//! the pause container runs and before any other container starts.
//!
//! Layering: deciding and acting are apart. `state` (what is known of each container),
//! `rules` (start conditions, restarts, stops, status and health), `spec` (what each
//! container is on Docker) and `report` are pure: no Engine, no channel, no clock.
//! `task` runs one task's loop and applies their decisions; `engine` holds the Engine work
//! of more than one call. Only `docker` talks to the Engine; this module never builds a
//! Docker request itself.

mod engine;
#[cfg(test)]
mod fixtures;
mod report;
mod rules;
mod settings;
mod snapshot;
mod spec;
mod state;
mod task;

use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use agent_protocol::{TaskAssignment, TaskReport};

use crate::docker::{labels, Docker, DockerError};
use engine::Machine;
pub use rules::{ESSENTIAL_EXITED_REASON, OOM_REASON, PAUSE_EXITED_REASON};
pub use settings::{PullBehavior, RunnerConfig};
use task::TaskRun;

/// Runs tasks on the local Docker engine. One `Runner` serves all the tasks of an instance.
pub struct Runner {
    machine: Machine,
    config: RunnerConfig,
}

impl Runner {
    /// Connects to the local Docker engine (negotiating the API version).
    pub async fn connect(config: RunnerConfig) -> anyhow::Result<Runner> {
        let docker = Docker::connect().await?;
        let machine = Machine { docker, pulled: Default::default(), awsvpc_setup: Default::default() };
        Ok(Runner { machine, config })
    }

    /// Names the container instance this runner's containers belong to, once the control
    /// plane has assigned it (registration needs the engine's resources first).
    pub fn set_instance(&mut self, instance_arn: String) {
        self.config.instance_arn = instance_arn;
    }

    /// Drives one task to its desired state and keeps it there until it is STOPPED,
    /// sending a full report on every change. Returns after sending the STOPPED report.
    pub async fn run_task(
        &self,
        assignment: watch::Receiver<TaskAssignment>,
        reports: mpsc::UnboundedSender<TaskReport>,
    ) {
        let first = assignment.borrow().clone();
        let span = tracing::info_span!("task", arn = %first.task_arn);
        TaskRun::new(&self.machine, &self.config, first, reports).run(assignment).instrument(span).await
    }

    /// Task ARNs of the tasks whose containers this instance created, running or not.
    pub async fn discover(&self) -> anyhow::Result<Vec<String>> {
        let docker = &self.machine.docker;
        let found = docker.containers_with_labels(&[(labels::INSTANCE, &self.config.instance_arn)]).await?;
        let mut arns: Vec<String> = found.into_iter().filter_map(|c| c.labels.get(labels::TASK_ARN).cloned()).collect();
        arns.sort();
        arns.dedup();
        Ok(arns)
    }

    /// The engine's host: its CPUs, memory, Docker version and architecture.
    pub async fn engine_host(&self) -> anyhow::Result<crate::docker::EngineHost> {
        Ok(self.machine.docker.host().await?)
    }

    /// Removes a task's containers (stopping them if they still run) and its task-scoped
    /// volumes. ECS keeps a stopped task's containers for a while; this is the cleanup.
    pub async fn remove_task_containers(&self, task_arn: &str) -> anyhow::Result<()> {
        let docker = &self.machine.docker;
        let wanted = [(labels::INSTANCE, self.config.instance_arn.as_str()), (labels::TASK_ARN, task_arn)];
        for c in docker.containers_with_labels(&wanted).await? {
            match docker.remove(&c.id).await {
                Ok(()) | Err(DockerError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(shipping) = &self.config.awslogs {
                shipping.forget(&c.id);
            }
        }
        for v in docker.volumes_with_labels(&wanted).await? {
            match docker.remove_volume(&v).await {
                Ok(()) | Err(DockerError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
