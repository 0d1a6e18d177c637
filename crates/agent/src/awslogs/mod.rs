//! The `awslogs` log driver, done by the agent as the ECS agent has Docker do it: what a
//! container prints reaches a CloudWatch Logs stream, `<prefix>/<container>/<task id>`.
//!
//! Docker's own awslogs driver cannot be used: it would need the engine to hold the
//! account's credentials and to reach Berth's endpoint. Instead the container is created
//! with Docker's `local` driver (`options::local_driver`: a bounded uncompressed cache,
//! and the delivery mode the task asked for), so `docker logs` keeps working, and the agent
//! reads that log back with Docker's timestamps and ships it with `PutLogEvents`, signed
//! with the agent's credentials, to the group in the option's region.
//!
//! The agent reads the file itself (`follow`; `localfile`, and `jsonfile` for containers
//! an older agent created) when it can open it: a fraction of what dockerd spends
//! serving the same entries through its logs API, which stays the fallback (for an engine on another host, and with
//! `BERTH_AWSLOGS_READER=api`). Both readers give the same entries with the same times,
//! so the cursor's marks mean the same whichever wrote them.
//!
//! - Before the container starts, the group (with `awslogs-create-group`) and the stream
//!   are created; a failure fails the start with Docker's wording
//!   (`CannotStartContainerError: ... failed to initialize logging driver: ...`).
//! - `follow` follows the file across Docker's rotations until the container has exited;
//!   `jsonfile` parses its lines.
//! - `assemble` turns entries into events (long lines cut, multi-line events joined,
//!   each event at the time its first line was printed); `ship` sends them in batches;
//!   `cursor` remembers in the agent's data dir what is stored, so a restarted agent
//!   resumes without loss or repeats.
//! - The task reports STOPPED only after its containers' output is shipped, however long
//!   that takes while batches are being stored; shipping that stores nothing for
//!   [`FLUSH_LIMIT`] (an unreachable endpoint) no longer holds the task, and goes on in
//!   the background.

mod assemble;
mod cursor;
mod follow;
mod jsonfile;
mod localfile;
mod options;
mod ship;

use aws_credential_types::provider::SharedCredentialsProvider;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use model::ecs::shapes::ContainerDefinition;

use crate::docker::Docker;
pub use follow::Format as LogFormat;
pub use options::{local_driver, AwsLogs, CacheFileSize, StreamNaming};
use ship::{Destination, Shipper};

/// How long a stopping task waits for shipping that stores nothing.
pub const FLUSH_LIMIT: Duration = Duration::from_secs(30);

/// A running shipper.
pub struct ShipperHandle {
    join: tokio::task::JoinHandle<()>,
    /// Batches stored so far.
    progress: Arc<AtomicU64>,
}

impl ShipperHandle {
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Waits until everything is shipped; false if it gave up after [`FLUSH_LIMIT`]
    /// without a batch stored.
    pub async fn finished(mut self) -> bool {
        let mut seen = self.progress.load(Ordering::Relaxed);
        loop {
            if tokio::time::timeout(FLUSH_LIMIT, &mut self.join).await.is_ok() {
                return true;
            }
            let now = self.progress.load(Ordering::Relaxed);
            if now == seen {
                return false;
            }
            seen = now;
        }
    }
}

/// What the agent needs to ship logs: its SDK settings (endpoint, credentials, region)
/// and where cursors are kept.
pub struct Shipping {
    sdk: aws_config::SdkConfig,
    cursors: PathBuf,
    clients: Mutex<HashMap<String, aws_sdk_cloudwatchlogs::Client>>,
    cache: CacheFileSize,
    reader: Reader,
}

/// How the agent reads a container's output: `BERTH_AWSLOGS_READER`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reader {
    /// The log file on disk when the agent can open it, else Docker's logs API.
    #[default]
    File,
    /// Always Docker's logs API (an engine on another host, or to compare the two).
    Api,
}

impl Reader {
    pub fn parse(s: &str) -> Option<Reader> {
        match s {
            "file" => Some(Reader::File),
            "api" => Some(Reader::Api),
            _ => None,
        }
    }
}

impl std::fmt::Debug for Shipping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipping").field("cursors", &self.cursors).finish_non_exhaustive()
    }
}

impl Shipping {
    pub fn new(sdk: aws_config::SdkConfig, data_dir: &Path, cache: CacheFileSize, reader: Reader) -> Shipping {
        Shipping { sdk, cursors: data_dir.join("awslogs"), clients: Mutex::default(), cache, reader }
    }

    /// The size of each file of an awslogs container's local cache.
    pub fn cache(&self) -> &CacheFileSize {
        &self.cache
    }

    /// A client for `region` (the agent's own when `None`), one per region.
    fn client(&self, region: Option<&str>) -> aws_sdk_cloudwatchlogs::Client {
        let key = region.unwrap_or_default().to_string();
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(key)
            .or_insert_with(|| {
                let mut config = aws_sdk_cloudwatchlogs::config::Builder::from(&self.sdk);
                if let Some(r) = region {
                    config = config.region(aws_config::Region::new(r.to_string()));
                }
                aws_sdk_cloudwatchlogs::Client::from_conf(config.build())
            })
            .clone()
    }

    /// Where a container's events go, signed with the task's execution role when it has
    /// one (as ECS's agent ships), else with the agent's own credentials.
    fn destination(&self, logs: &AwsLogs, stream: String, role: Option<&SharedCredentialsProvider>) -> Destination {
        let client = match role {
            None => self.client(logs.region.as_deref()),
            Some(provider) => {
                let mut config =
                    aws_sdk_cloudwatchlogs::config::Builder::from(&self.sdk).credentials_provider(provider.clone());
                if let Some(r) = &logs.region {
                    config = config.region(aws_config::Region::new(r.to_string()));
                }
                aws_sdk_cloudwatchlogs::Client::from_conf(config.build())
            }
        };
        Destination { client, group: logs.group.clone(), stream, create_group: logs.create_group }
    }

    /// For an awslogs container: the step before its start that creates its group (if
    /// asked) and stream; the error is the reason the start fails.
    pub fn prepare(
        &self,
        c: &Container<'_>,
    ) -> Option<impl std::future::Future<Output = Result<(), String>> + Send + 'static> {
        let logs = c.awslogs()?;
        let destination = self.destination(&logs, logs.stream_name(c.name, c.task_id, c.id), c.role.as_ref());
        Some(async move {
            destination
                .prepare()
                .await
                .map_err(|e| format!("Error response from daemon: failed to initialize logging driver: {e}"))
        })
    }

    /// Starts shipping a container's output; the handle ends once it is all shipped.
    pub fn spawn(&self, docker: &Docker, c: &Container<'_>) -> Option<ShipperHandle> {
        let logs = c.awslogs()?;
        let stream = logs.stream_name(c.name, c.task_id, c.id);
        let shipper = Shipper {
            docker: docker.clone(),
            container_id: c.id.to_string(),
            read_file: self.reader == Reader::File,
            destination: self.destination(&logs, stream, c.role.as_ref()),
            event_start: logs.event_start.clone(),
            cursor_file: cursor::CursorFile::new(&self.cursors, c.id),
            progress: Arc::new(AtomicU64::new(0)),
        };
        let progress = shipper.progress.clone();
        Some(ShipperHandle { join: tokio::spawn(shipper.run()), progress })
    }

    /// Forgets a removed container's cursor.
    pub fn forget(&self, container_id: &str) {
        cursor::CursorFile::new(&self.cursors, container_id).remove();
    }
}

/// A container of a task, as shipping names it.
pub struct Container<'a> {
    pub def: &'a ContainerDefinition,
    pub name: &'a str,
    pub task_id: &'a str,
    /// Docker's id.
    pub id: &'a str,
    /// The task's execution role, when it has one: shipping signs with it.
    pub role: Option<SharedCredentialsProvider>,
}

impl Container<'_> {
    /// Its awslogs configuration, if it logs with awslogs (options that do not parse
    /// never get this far: the create fails on them).
    pub fn awslogs(&self) -> Option<AwsLogs> {
        uses_awslogs(self.def).then_some(self.def.log_configuration.as_ref()).flatten().and_then(|l| {
            let options: HashMap<String, String> = l.options.clone().unwrap_or_default().into_iter().collect();
            AwsLogs::parse(&options).ok()
        })
    }
}

pub fn uses_awslogs(def: &ContainerDefinition) -> bool {
    def.log_configuration.as_ref().and_then(|l| l.log_driver).is_some_and(|d| d.as_str() == "awslogs")
}
