//! One container's shipping: follow what Docker stored of its output, assemble events,
//! send them with `PutLogEvents` one batch at a time, and save the cursor before each.
//!
//! The batch being sent and the events read meanwhile are the only memory held; when
//! more than [`BACKLOG_EVENTS`] or [`BACKLOG_BYTES`] wait, reading pauses and the
//! container's output waits on disk in Docker's log file, so a container that prints
//! without pause never grows the agent. The output is read from that file when the agent
//! can open it ([`Follower`]), else through Docker's logs API. A batch goes out as soon
//! as the previous one is acknowledged: under a trickle each line is readable within a
//! round trip, under a flood batches fill up to `PutLogEvents`' limits.

use std::collections::VecDeque;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_sdk_cloudwatchlogs::Client;
use futures_util::StreamExt;
use model::logs::{EVENT_OVERHEAD, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_BATCH_SPAN_MS};
use regex::Regex;

use super::assemble::{Assembler, Event, Mark, Source};
use super::cursor::{Cursor, CursorFile, Intent};
use super::follow::{Follower, Format};
use super::{jsonfile, localfile};
use crate::docker::{Docker, LogChunk, RunState};

/// Events (and their bytes) read ahead of the batch in flight before reading pauses.
const BACKLOG_EVENTS: usize = 2 * MAX_BATCH_EVENTS;
const BACKLOG_BYTES: usize = 2 * MAX_BATCH_BYTES;
/// How often a quiet container's held lines are looked at (multi-line, no newline).
const IDLE_TICK: Duration = Duration::from_millis(250);
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

/// Where one container's events go.
pub struct Destination {
    pub client: Client,
    pub group: String,
    pub stream: String,
    pub create_group: bool,
}

impl Destination {
    /// Creates the group (when asked to) and the stream, as Docker's driver does when the
    /// container starts. The error is Docker's wording, for `CannotStartContainerError`.
    pub async fn prepare(&self) -> Result<(), String> {
        if self.create_group {
            match self.client.create_log_group().log_group_name(&self.group).send().await {
                Ok(_) => {}
                Err(e) if e.code() == Some("ResourceAlreadyExistsException") => {}
                Err(e) => return Err(format!("failed to create Cloudwatch log group: {}", describe(&e))),
            }
        }
        match self.client.create_log_stream().log_group_name(&self.group).log_stream_name(&self.stream).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceAlreadyExistsException") => Ok(()),
            Err(e) => Err(format!("failed to create Cloudwatch log stream: {}", describe(&e))),
        }
    }

    /// How many events the stream holds at `ts_ms` (for settling a crash's intent).
    async fn count_at(&self, ts_ms: i64) -> Result<u64, String> {
        let mut count = 0u64;
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .get_log_events()
                .log_group_name(&self.group)
                .log_stream_name(&self.stream)
                .start_time(ts_ms)
                .end_time(ts_ms + 1)
                .start_from_head(true)
                .set_next_token(token.clone())
                .send()
                .await;
            let page = match page {
                Ok(p) => p,
                // The stream is gone: nothing of the batch is there; it is sent again (and
                // the stream made anew).
                Err(e) if e.code() == Some("ResourceNotFoundException") => return Ok(0),
                Err(e) => return Err(describe(&e)),
            };
            let n = page.events().len() as u64;
            count += n;
            let next = page.next_forward_token().map(str::to_string);
            if n == 0 || next.is_none() || next == token {
                return Ok(count);
            }
            token = next;
        }
    }

    async fn put(&self, batch: &[Event]) -> Result<(), PutError> {
        let events: Vec<InputLogEvent> = batch
            .iter()
            .map(|e| InputLogEvent::builder().timestamp(e.timestamp_ms).message(e.message.clone()).build())
            .collect::<Result<_, _>>()
            .map_err(|e| PutError::Refused(e.to_string()))?;
        let sent = self
            .client
            .put_log_events()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .set_log_events(Some(events))
            .send()
            .await;
        match sent {
            Ok(out) => {
                if let Some(r) = out.rejected_log_events_info() {
                    tracing::warn!(group = %self.group, stream = %self.stream, rejected = ?r, "CloudWatch Logs rejected some events of a batch (too old or too new)");
                }
                Ok(())
            }
            Err(e) if e.code() == Some("ResourceNotFoundException") => Err(PutError::Gone(describe(&e))),
            Err(e) if e.code() == Some("InvalidParameterException") => Err(PutError::Refused(describe(&e))),
            Err(e) => Err(PutError::Retry(describe(&e))),
        }
    }
}

/// A failed `PutLogEvents`, by what the shipper does next.
enum PutError {
    /// The stream or group was deleted: create it again, then resend.
    Gone(String),
    /// The batch itself is refused; resending cannot help, so it is dropped (and logged).
    Refused(String),
    /// Anything else (the endpoint is down, throttling): resend after a wait.
    Retry(String),
}

fn describe<E: ProvideErrorMetadata + std::error::Error>(e: &E) -> String {
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => aws_sdk_cloudwatchlogs::error::DisplayErrorContext(e).to_string(),
    }
}

/// Events assembled and not yet in a batch.
#[derive(Default)]
struct Backlog {
    events: VecDeque<Event>,
    bytes: usize,
}

impl Backlog {
    fn extend(&mut self, events: impl Iterator<Item = Event>) {
        for e in events {
            self.bytes += e.message.len();
            self.events.push_back(e);
        }
    }

    fn full(&self) -> bool {
        self.events.len() >= BACKLOG_EVENTS || self.bytes >= BACKLOG_BYTES
    }

    fn take(&mut self, n: usize) -> Vec<Event> {
        let taken: Vec<Event> = self.events.drain(..n).collect();
        self.bytes -= taken.iter().map(|e| e.message.len()).sum::<usize>();
        taken
    }
}

/// Where a container's entries are read from.
enum Input<'a> {
    /// Docker's logs API; a TTY container's output comes in pieces that `console` joins.
    Api {
        stream: futures_util::stream::BoxStream<'static, Result<LogChunk, crate::docker::DockerError>>,
        console: Vec<u8>,
    },
    /// The log file on disk.
    File(&'a mut Follower),
}

/// What an [`Input`] gives at once.
enum Piece {
    Chunk(LogChunk),
    /// Whole entries of the log file.
    Entries(Vec<u8>),
}

impl Input<'_> {
    /// The next piece; `None` once the container's output has ended. Cancel-safe: what is
    /// read is handed out without waiting again.
    async fn next(&mut self) -> Option<Result<Piece, String>> {
        match self {
            Input::Api { stream, .. } => stream.next().await.map(|r| r.map(Piece::Chunk).map_err(|e| e.to_string())),
            Input::File(f) => f.next_block().await.map(|r| r.map(Piece::Entries).map_err(|e| e.to_string())),
        }
    }

    /// Takes in a TTY container's output: entries, each `<time> <text>`, in pieces.
    fn console(&mut self, bytes: &[u8], assembler: &mut Assembler, out: &mut Vec<Event>) {
        if let Input::Api { console, .. } = self {
            console.extend_from_slice(bytes);
            while let Some(n) = console.iter().position(|&c| c == b'\n') {
                let entry: Vec<u8> = console.drain(..=n).collect();
                assembler.push(Source::Stdout, &entry, out);
            }
        }
    }

    /// Takes in what is left once the output has ended.
    fn end(&mut self, assembler: &mut Assembler, out: &mut Vec<Event>) {
        if let Input::Api { console, .. } = self {
            if !console.is_empty() {
                assembler.push(Source::Stdout, console, out);
                console.clear();
            }
        }
    }
}

/// Ships one container's output until it stops and everything it printed is stored.
pub struct Shipper {
    pub docker: Docker,
    pub container_id: String,
    /// Whether to read the log file on disk when it can be opened.
    pub read_file: bool,
    pub destination: Destination,
    pub event_start: Option<Regex>,
    pub cursor_file: CursorFile,
    /// Counts the batches stored, for whoever waits on this shipper.
    pub progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Shipper {
    fn stored(&self, cursor: &mut Cursor, intent: Intent) {
        cursor.commit(intent);
        self.progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub async fn run(self) {
        let mut cursor = self.cursor_file.load();
        self.settle(&mut cursor).await;
        let mut ready = Backlog::default();
        match self.open_file().await {
            Some(file) => self.run_file(file, &mut ready, &mut cursor).await,
            None => self.run_api(&mut ready, &mut cursor).await,
        }
        if let Err(e) = self.cursor_file.save(&cursor) {
            tracing::warn!(error = %e, "cannot save the awslogs cursor");
        }
        tracing::debug!(container = %self.container_id, stream = %self.destination.stream, "log shipping finished");
    }

    /// The container's log file, opened, when the agent can read it (the engine is local
    /// and the driver is `local` or `json-file`); else its output is read through
    /// Docker's API.
    async fn open_file(&self) -> Option<Follower> {
        if !self.read_file {
            return None;
        }
        let (path, format) = match self.docker.log_file(&self.container_id).await {
            Ok(Some(found)) => found,
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!(container = %self.container_id, error = %e, "cannot find the container's log file; reading it through Docker");
                return None;
            }
        };
        match Follower::open(&path, format) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::debug!(container = %self.container_id, path = %path.display(), error = %e, "cannot read the container's log file; reading it through Docker");
                None
            }
        }
    }

    /// Ships from the log file: one reading from the start of the files Docker keeps
    /// (entries already shipped skipped), which waits at their end until the container
    /// has exited and, if a restart policy runs it again, goes on.
    async fn run_file(&self, mut file: Follower, ready: &mut Backlog, cursor: &mut Cursor) {
        let mut assembler = Assembler::new(self.event_start.clone(), cursor.shipped);
        loop {
            file.until_exit(Box::pin(self.docker.exited(&self.container_id)));
            self.follow(&mut assembler, &mut Input::File(&mut file), ready, cursor).await;
            self.drain(ready, cursor).await;
            match self.docker.inspect(&self.container_id).await {
                // Restarted (or the engine's wait failed): follow on, after a pause that
                // keeps a failing wait from spinning.
                Ok(o) if o.state == RunState::Running => tokio::time::sleep(IDLE_TICK).await,
                _ => break,
            }
        }
    }

    /// Ships from Docker's logs API.
    async fn run_api(&self, ready: &mut Backlog, cursor: &mut Cursor) {
        let mut seen = cursor.shipped;
        // A container restarted by its restart policy keeps writing to the same log: follow
        // it again from where the last reading ended. Once it has stopped, its log is read
        // once more to its end: Docker's follow can end at the container's exit before it
        // has sent the whole file (seen under load), and a stopped container's log no
        // longer grows. Events already seen are skipped, so a second reading repeats none.
        let mut read_after_stop = false;
        loop {
            let mut assembler = Assembler::new(self.event_start.clone(), seen);
            // The reading after the stop starts at the last entry read of either source:
            // everything before it in the file has been read already.
            let since = match read_after_stop {
                false => assembler.resume_secs(),
                true => seen.iter().map(|m| m.ts_ns).max().unwrap_or(0).div_euclid(1_000_000_000),
            };
            let stream = self.docker.logs(&self.container_id, since).boxed();
            self.follow(&mut assembler, &mut Input::Api { stream, console: Vec::new() }, ready, cursor).await;
            seen = assembler.seen();
            self.drain(ready, cursor).await;
            match self.docker.inspect(&self.container_id).await {
                Ok(o) if o.state == RunState::Running => continue,
                Ok(_) if !read_after_stop => read_after_stop = true,
                _ => break,
            }
        }
    }

    /// After a crash, decides whether the batch being sent then was stored.
    async fn settle(&self, cursor: &mut Cursor) {
        let Some(intent) = cursor.intent else { return };
        let mut wait = Duration::from_millis(200);
        loop {
            match self.destination.count_at(intent.newest.ts_ms).await {
                Ok(n) => {
                    cursor.settle(n);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the log stream to resume shipping; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_RETRY_WAIT);
                }
            }
        }
    }

    /// Reads the container's output until it ends, sending batches as they fill.
    async fn follow(&self, assembler: &mut Assembler, input: &mut Input<'_>, ready: &mut Backlog, cursor: &mut Cursor) {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        let format = match input {
            Input::File(f) => f.format(),
            Input::Api { .. } => Format::JsonFile,
        };
        let mut in_flight: Option<futures_util::future::BoxFuture<'_, (Vec<Event>, Intent)>> = None;
        let mut tick = tokio::time::interval(IDLE_TICK);
        loop {
            if in_flight.is_none() {
                if let Some((batch, intent)) = self.next_batch(ready, cursor) {
                    in_flight = Some(Box::pin(async move {
                        self.deliver(&batch).await;
                        (batch, intent)
                    }));
                }
            }
            tokio::select! {
                piece = input.next(), if !ready.full() => match piece {
                    Some(Ok(Piece::Chunk(LogChunk::Stdout(b)))) => assembler.push(Source::Stdout, &b, &mut out),
                    Some(Ok(Piece::Chunk(LogChunk::Stderr(b)))) => assembler.push(Source::Stderr, &b, &mut out),
                    Some(Ok(Piece::Chunk(LogChunk::Console(b)))) => input.console(&b, assembler, &mut out),
                    Some(Ok(Piece::Entries(block))) => self.push_block(format, &block, assembler, &mut scratch, &mut out),
                    Some(Err(e)) => {
                        tracing::warn!(container = %self.container_id, error = %e, "reading the container's log failed");
                        break;
                    }
                    None => break,
                },
                Some((_, intent)) = async { match in_flight.as_mut() { Some(f) => Some(f.await), None => None } }, if in_flight.is_some() => {
                    in_flight = None;
                    self.stored(cursor, intent);
                }
                _ = tick.tick(), if assembler.holding() => assembler.flush_idle(now_ns(), &mut out),
            }
            ready.extend(out.drain(..));
        }
        input.end(assembler, &mut out);
        assembler.flush_all(&mut out);
        ready.extend(out.drain(..));
        if let Some(f) = in_flight {
            let (_, intent) = f.await;
            self.stored(cursor, intent);
        }
    }

    /// Takes in a block of the log file's entries. Entries already shipped are dropped
    /// before their text is decoded; what is not an entry is logged and skipped.
    fn push_block(
        &self,
        format: Format,
        block: &[u8],
        assembler: &mut Assembler,
        scratch: &mut Vec<u8>,
        out: &mut Vec<Event>,
    ) {
        let mut bad = 0usize;
        match format {
            Format::JsonFile => {
                for line in block.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    let Ok(entry) = jsonfile::parse(line) else {
                        bad += 1;
                        continue;
                    };
                    if assembler.skips(entry.source, entry.ts_ns) {
                        continue;
                    }
                    scratch.clear();
                    jsonfile::unescape_into(entry.escaped, scratch);
                    assembler.push_at(entry.source, entry.ts_ns, scratch, out);
                }
            }
            Format::Local => {
                for frame in localfile::Frames::new(block) {
                    let entry = match frame {
                        localfile::Frame::Message(m) => localfile::parse(m),
                        localfile::Frame::Damage(_) => Err(localfile::BadEntry::Shape),
                    };
                    let Ok(entry) = entry else {
                        bad += 1;
                        continue;
                    };
                    if !assembler.skips(entry.source, entry.ts_ns) {
                        assembler.push_piece(entry.source, entry.ts_ns, entry.line, !entry.partial, out);
                    }
                }
            }
        }
        if bad > 0 {
            tracing::warn!(container = %self.container_id, entries = bad, "parts of the container's log file are not Docker's entries; skipped");
        }
    }

    /// Sends every event still waiting.
    async fn drain(&self, ready: &mut Backlog, cursor: &mut Cursor) {
        while let Some((batch, intent)) = self.next_batch(ready, cursor) {
            self.deliver(&batch).await;
            self.stored(cursor, intent);
        }
    }

    /// Takes the next batch within `PutLogEvents`' limits, in time order, and saves the
    /// cursor naming it before it is sent.
    fn next_batch(&self, ready: &mut Backlog, cursor: &mut Cursor) -> Option<(Vec<Event>, Intent)> {
        let first = ready.events.front()?.timestamp_ms;
        let (mut lo, mut hi, mut bytes, mut n) = (first, first, 0usize, 0usize);
        for e in ready.events.iter() {
            let size = e.message.len() + EVENT_OVERHEAD;
            let (l, h) = (lo.min(e.timestamp_ms), hi.max(e.timestamp_ms));
            if n == MAX_BATCH_EVENTS || bytes + size > MAX_BATCH_BYTES || h - l > MAX_BATCH_SPAN_MS {
                break;
            }
            (lo, hi, bytes, n) = (l, h, bytes + size, n + 1);
        }
        let mut batch = ready.take(n.max(1));
        // Events of stdout and stderr interleave out of order when a multi-line event
        // waited; a batch must be in time order.
        batch.sort_by_key(|e| e.timestamp_ms);
        let mut ends = [Mark::default(); 2];
        for e in &batch {
            let end = &mut ends[e.source as usize];
            *end = (*end).max(e.end);
        }
        let intent = cursor.after(ends, batch.iter().map(|e| e.timestamp_ms));
        cursor.intent = Some(intent);
        if let Err(e) = self.cursor_file.save(cursor) {
            // Shipping goes on; a crash before the next save may then send this batch twice.
            tracing::warn!(error = %e, "cannot save the awslogs cursor");
        }
        Some((batch, intent))
    }

    /// Sends one batch until it is stored (or refused for good).
    async fn deliver(&self, batch: &[Event]) {
        let mut wait = Duration::from_millis(100);
        loop {
            match self.destination.put(batch).await {
                Ok(()) => return,
                Err(PutError::Refused(why)) => {
                    tracing::error!(stream = %self.destination.stream, %why, events = batch.len(), "CloudWatch Logs refused a batch; it is dropped");
                    return;
                }
                Err(PutError::Gone(why)) => {
                    tracing::warn!(stream = %self.destination.stream, %why, "the log stream is gone; creating it again");
                    if let Err(e) = self.destination.prepare().await {
                        tracing::warn!(error = %e, "cannot create the log stream again");
                        tokio::time::sleep(wait).await;
                    }
                }
                Err(PutError::Retry(why)) => {
                    tracing::warn!(stream = %self.destination.stream, %why, "PutLogEvents failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
            wait = (wait * 2).min(MAX_RETRY_WAIT);
        }
    }
}

fn now_ns() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}
