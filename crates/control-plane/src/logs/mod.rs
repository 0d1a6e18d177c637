//! CloudWatch Logs' operations: log groups and streams (metadata, in the state and the
//! store like every other resource, `state::logs`) and their events (in `logstore`'s
//! segment files under the data dir's `logs/`).
//!
//! Decisions:
//! - A stream's figures (`storedBytes`, first and last event timestamps, last ingestion
//!   time) are read from the log store, not kept in the stream's record, so that a
//!   `PutLogEvents` is one `fsync` of its segment and no commit of the state.
//! - Deleting a group or stream commits the metadata first, then removes the files. A
//!   crash in between leaves a directory no stream names; it is never read again, since a
//!   stream created later gets a new store id.
//! - Retention is applied twice: reads never return an event older than the group's
//!   retention, and [`Ops::expire`] (run on a schedule by the server) drops whole segments
//!   older than it.
//! - Paging tokens of `GetLogEvents` carry a [`Position`] (timestamp, then where it is
//!   stored): `f/` pages forward after it, `b/` backward before it, and a token that finds
//!   no events is answered again unchanged, as AWS does.
//! - `FilterLogEvents` asks each stream for one more than a page of matches after the
//!   token's key (timestamp, stream name, position), with the pattern's required literals
//!   so the store can skip events without them ([`LogStore::scan`]), and merges. Its
//!   token is that key of the page's last event; a page holds at most `limit` events and
//!   1 MB, as AWS's does.

use std::collections::BTreeMap;
use std::sync::Arc;

use logstore::{Bound, Event, LogStore, Position, Query, Scan, Stats, StreamId};
use model::logs::filter::{FilterPattern, PatternError};
use model::logs::{check_batch, BatchVerdict, LogGroupName, LogStreamName, RetentionDays};
use model::Scope;

use crate::error::{ConflictKind, Error, NotFoundKind, Result};
use crate::state::logs::{LogGroup, LogStream, LogsKey};
use crate::state::{State, Touched};
use crate::{Ops, Page};

/// The marker of CloudWatch Logs' operations: `cp.logs()`.
#[derive(Debug)]
pub enum Logs {}

impl crate::ControlPlane {
    /// The CloudWatch Logs operations.
    pub fn logs(&self) -> Ops<'_, Logs> {
        Ops::new(self)
    }
}

/// Tags one log group may carry (AWS's limit).
pub const MAX_TAGS: usize = 50;
/// Events one `GetLogEvents` answers at most (AWS's limit).
pub const MAX_GET_EVENTS: usize = 10_000;

/// A group with what its streams hold.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub group: Arc<LogGroup>,
    pub stored_bytes: u64,
}

/// A stream with what it holds.
#[derive(Debug, Clone)]
pub struct StreamView {
    pub stream: Arc<LogStream>,
    pub stats: Stats,
}

/// How `DescribeLogStreams` orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOrder {
    Name,
    LastEventTime,
}

/// A `GetLogEvents` request in domain terms.
#[derive(Debug, Clone)]
pub struct EventsRequest {
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub token: Option<String>,
    pub start_from_head: bool,
    pub limit: Option<i32>,
}

/// A `FilterLogEvents` request in domain terms.
#[derive(Debug, Clone, Default)]
pub struct FilterRequest {
    pub streams: Option<Vec<LogStreamName>>,
    pub prefix: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub pattern: Option<String>,
    pub token: Option<String>,
    pub limit: Option<i32>,
}

/// An event that matched, with its stream.
#[derive(Debug, Clone)]
pub struct FilteredEvent {
    pub stream: LogStreamName,
    pub event_id: String,
    pub event: Event,
}

/// A page of matching events.
#[derive(Debug, Clone)]
pub struct FilterPage {
    pub events: Vec<FilteredEvent>,
    pub next_token: Option<String>,
}

/// A page of events and the tokens to go on from it.
#[derive(Debug, Clone)]
pub struct EventsPage {
    pub events: Vec<Event>,
    pub next_forward: String,
    pub next_backward: String,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn group_not_found() -> Error {
    Error::NotFound { kind: NotFoundKind::Resource, message: "The specified log group does not exist.".into() }
}

fn stream_not_found() -> Error {
    Error::NotFound { kind: NotFoundKind::Resource, message: "The specified log stream does not exist.".into() }
}

fn io(e: std::io::Error) -> Error {
    Error::Internal(format!("log store: {e}"))
}

fn find_group(state: &State, scope: &Scope, name: &LogGroupName) -> Result<Arc<LogGroup>> {
    state.logs.groups.get(&(scope.clone(), name.clone())).cloned().ok_or_else(group_not_found)
}

fn find_stream(state: &State, scope: &Scope, group: &LogGroupName, name: &LogStreamName) -> Result<Arc<LogStream>> {
    find_group(state, scope, group)?;
    state.logs.streams.get(&(scope.clone(), group.clone(), name.clone())).cloned().ok_or_else(stream_not_found)
}

/// Checks tags as AWS does: at most 50, keys 1-128 and values up to 256 of
/// `[a-zA-Z0-9_.:/=+-@]` (values may also hold spaces), no `aws:` keys.
pub fn check_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    let ok = |c: char| c.is_alphanumeric() || "_.:/=+-@ ".contains(c);
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || !k.chars().all(ok) {
            return Err(Error::parameter(format!(
                "Tag key '{k}' must be 1 to 128 characters of letters, digits, spaces and _.:/=+-@."
            )));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(Error::parameter(format!("Tag key '{k}' starts with the reserved prefix aws:.")));
        }
        if v.chars().count() > 256 || !v.chars().all(ok) {
            return Err(Error::parameter(format!(
                "The value of tag '{k}' must be up to 256 characters of letters, digits, spaces and _.:/=+-@."
            )));
        }
    }
    Ok(())
}

const TOKEN_DIGITS: usize = 20 + 20 + 20 + 10;

fn encode_token(dir: char, p: Position) -> String {
    // Flipping the sign bit keeps the order of negative timestamps in unsigned digits.
    format!("{dir}/{:020}{:020}{:020}{:010}", (p.timestamp as u64) ^ (1 << 63), p.segment, p.offset, p.index)
}

fn decode_token(t: &str) -> Result<(char, Position)> {
    let bad = || {
        Error::parameter("The specified nextToken is invalid; pass a nextForwardToken or nextBackwardToken of a previous GetLogEvents unchanged.")
    };
    let (dir, digits) = t.split_once('/').ok_or_else(bad)?;
    let dir = match dir {
        "f" => 'f',
        "b" => 'b',
        _ => return Err(bad()),
    };
    if digits.len() != TOKEN_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n = |r: std::ops::Range<usize>| digits[r].parse::<u64>().map_err(|_| bad());
    let ts = n(0..20)? ^ (1 << 63);
    Ok((dir, Position { timestamp: ts as i64, segment: n(20..40)?, offset: n(40..60)?, index: n(60..70)? as u32 }))
}

impl Ops<'_, Logs> {
    fn store(&self) -> Result<Arc<LogStore>> {
        self.log_store.clone().ok_or_else(|| Error::Unsupported("This Berth has no log directory configured.".into()))
    }

    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&LogStore) -> std::io::Result<R> + Send + 'static,
    ) -> Result<R> {
        let store = self.store()?;
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Error::Internal(format!("log store task: {e}")))?
            .map_err(io)
    }

    pub async fn create_group(&self, scope: &Scope, name: LogGroupName, tags: BTreeMap<String, String>) -> Result<()> {
        check_tags(&tags)?;
        if tags.len() > MAX_TAGS {
            return Err(Error::parameter(format!("A log group can have at most {MAX_TAGS} tags.")));
        }
        let scope = scope.clone();
        self.write(move |txn| {
            let key = (scope.clone(), name.clone());
            if txn.state.logs.groups.contains_key(&key) {
                return Err(Error::Conflict {
                    kind: ConflictKind::ResourceExists,
                    message: "The specified log group already exists".into(),
                });
            }
            let g =
                LogGroup { scope: scope.clone(), name: name.clone(), creation_time: now_ms(), retention: None, tags };
            txn.state.logs.groups.insert(key, Arc::new(g));
            txn.touch(Touched::Logs(LogsKey::Group(scope, name)));
            Ok(())
        })
        .await
    }

    pub async fn delete_group(&self, scope: &Scope, name: LogGroupName) -> Result<()> {
        let scope = scope.clone();
        let ids = self
            .write(move |txn| {
                find_group(txn.state, &scope, &name)?;
                let streams: Vec<Arc<LogStream>> = txn.state.logs.group_streams(&scope, &name).cloned().collect();
                for s in &streams {
                    txn.state.logs.streams.remove(&(scope.clone(), name.clone(), s.name.clone()));
                    txn.touch(Touched::Logs(LogsKey::Stream(scope.clone(), name.clone(), s.name.clone())));
                }
                txn.state.logs.groups.remove(&(scope.clone(), name.clone()));
                txn.touch(Touched::Logs(LogsKey::Group(scope, name)));
                Ok(streams.iter().map(|s| StreamId(s.store_id)).collect::<Vec<_>>())
            })
            .await?;
        self.remove_files(ids).await;
        Ok(())
    }

    async fn remove_files(&self, ids: Vec<StreamId>) {
        let r = self
            .blocking(move |store| {
                for id in ids {
                    store.delete_stream(id)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = r {
            // The metadata is gone, so the files are unreachable; they only take space.
            tracing::warn!(error = %e, "removing a deleted log stream's files failed");
        }
    }

    /// The groups of `scope` by name, filtered by a name prefix or a case-insensitive
    /// substring (`logGroupNamePattern`), one page of them.
    pub async fn groups(
        &self,
        scope: &Scope,
        prefix: Option<&str>,
        pattern: Option<&str>,
        page: &Page,
    ) -> Result<(Vec<GroupView>, Option<String>)> {
        if prefix.is_some() && pattern.is_some() {
            return Err(Error::parameter(
                "LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters.",
            ));
        }
        let state = self.view();
        let pattern = pattern.map(str::to_lowercase);
        let items = state
            .logs
            .groups
            .iter()
            .filter(|((s, _), _)| s == scope)
            .filter(|((_, n), _)| prefix.is_none_or(|p| n.as_str().starts_with(p)))
            .filter(|((_, n), _)| pattern.as_deref().is_none_or(|p| n.as_str().to_lowercase().contains(p)))
            .map(|((_, n), g)| (n.to_string(), g.clone()));
        let (groups, token) = page.take(items, false);
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let ids: Vec<StreamId> = state.logs.group_streams(scope, &g.name).map(|s| StreamId(s.store_id)).collect();
            let stored_bytes = self
                .blocking(move |store| {
                    let mut total = 0;
                    for id in ids {
                        total += store.stats(id)?.stored_bytes;
                    }
                    Ok(total)
                })
                .await?;
            out.push(GroupView { group: g, stored_bytes });
        }
        Ok((out, token))
    }

    pub async fn put_retention(&self, scope: &Scope, name: LogGroupName, days: Option<RetentionDays>) -> Result<()> {
        self.update_group(scope, name, move |g| {
            g.retention = days;
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Adds or replaces tags of a group.
    pub async fn tag_group(&self, scope: &Scope, name: LogGroupName, tags: BTreeMap<String, String>) -> Result<()> {
        check_tags(&tags)?;
        self.update_group(scope, name, move |g| {
            g.tags.extend(tags);
            if g.tags.len() > MAX_TAGS {
                return Err(Error::parameter(format!("A log group can have at most {MAX_TAGS} tags.")));
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    pub async fn untag_group(&self, scope: &Scope, name: LogGroupName, keys: Vec<String>) -> Result<()> {
        self.update_group(scope, name, move |g| {
            for k in &keys {
                g.tags.remove(k);
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    pub fn group(&self, scope: &Scope, name: &LogGroupName) -> Result<Arc<LogGroup>> {
        find_group(&self.view(), scope, name)
    }

    async fn update_group(
        &self,
        scope: &Scope,
        name: LogGroupName,
        f: impl FnOnce(&mut LogGroup) -> Result<()> + Send + 'static,
    ) -> Result<Arc<LogGroup>> {
        let scope = scope.clone();
        self.write(move |txn| {
            let mut g = (*find_group(txn.state, &scope, &name)?).clone();
            f(&mut g)?;
            let g = Arc::new(g);
            txn.state.logs.groups.insert((scope.clone(), name.clone()), g.clone());
            txn.touch(Touched::Logs(LogsKey::Group(scope, name)));
            Ok(g)
        })
        .await
    }

    pub async fn create_stream(&self, scope: &Scope, group: LogGroupName, name: LogStreamName) -> Result<()> {
        let scope = scope.clone();
        self.write(move |txn| {
            find_group(txn.state, &scope, &group)?;
            let key = (scope.clone(), group.clone(), name.clone());
            if txn.state.logs.streams.contains_key(&key) {
                return Err(Error::Conflict {
                    kind: ConflictKind::ResourceExists,
                    message: "The specified log stream already exists".into(),
                });
            }
            let s = LogStream {
                scope: scope.clone(),
                group: group.clone(),
                name: name.clone(),
                creation_time: now_ms(),
                store_id: rand::random(),
            };
            txn.state.logs.streams.insert(key, Arc::new(s));
            txn.touch(Touched::Logs(LogsKey::Stream(scope, group, name)));
            Ok(())
        })
        .await
    }

    pub async fn delete_stream(&self, scope: &Scope, group: LogGroupName, name: LogStreamName) -> Result<()> {
        let scope = scope.clone();
        let id = self
            .write(move |txn| {
                let s = find_stream(txn.state, &scope, &group, &name)?;
                txn.state.logs.streams.remove(&(scope.clone(), group.clone(), name.clone()));
                txn.touch(Touched::Logs(LogsKey::Stream(scope, group, name)));
                Ok(StreamId(s.store_id))
            })
            .await?;
        self.remove_files(vec![id]).await;
        Ok(())
    }

    /// One page of a group's streams.
    pub async fn streams(
        &self,
        scope: &Scope,
        group: &LogGroupName,
        prefix: Option<&str>,
        order: StreamOrder,
        descending: bool,
        page: &Page,
    ) -> Result<(Vec<StreamView>, Option<String>)> {
        if prefix.is_some() && order == StreamOrder::LastEventTime {
            return Err(Error::parameter("Cannot order by LastEventTime with a logStreamNamePrefix."));
        }
        let state = self.view();
        find_group(&state, scope, group)?;
        let streams: Vec<Arc<LogStream>> = state
            .logs
            .group_streams(scope, group)
            .filter(|s| prefix.is_none_or(|p| s.name.as_str().starts_with(p)))
            .cloned()
            .collect();
        let ids: Vec<StreamId> = streams.iter().map(|s| StreamId(s.store_id)).collect();
        let stats: Vec<Stats> = self.blocking(move |store| ids.into_iter().map(|id| store.stats(id)).collect()).await?;
        let mut items: Vec<(String, StreamView)> = streams
            .into_iter()
            .zip(stats)
            .map(|(stream, stats)| {
                let key = match order {
                    StreamOrder::Name => stream.name.to_string(),
                    // Streams without events sort first, then by time, then by name.
                    StreamOrder::LastEventTime => {
                        format!("{:020}/{}", stats.last_timestamp.map_or(0, |t| t.max(0) + 1), stream.name)
                    }
                };
                (key, StreamView { stream, stats })
            })
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        if descending {
            items.reverse();
        }
        Ok(page.take(items.into_iter(), descending))
    }

    /// Stores a batch (events as `(timestamp, message)`) after AWS's batch rules; answers
    /// what was stored and what was rejected.
    pub async fn put_events(
        &self,
        scope: &Scope,
        group: &LogGroupName,
        name: &LogStreamName,
        events: Vec<(i64, String)>,
    ) -> Result<BatchVerdict> {
        let state = self.view();
        let g = find_group(&state, scope, group)?;
        let s = find_stream(&state, scope, group, name)?;
        let now = now_ms();
        let pairs: Vec<(i64, &str)> = events.iter().map(|(t, m)| (*t, m.as_str())).collect();
        let verdict = check_batch(&pairs, now, g.retention)?;
        drop(pairs);
        // The messages move into the store's events: a batch is up to 10,000 of them.
        let mut events = events;
        let accepted: Vec<Event> = events
            .drain(verdict.accepted.clone())
            .map(|(t, m)| Event { timestamp: t, ingestion_time: now, message: m })
            .collect();
        let id = StreamId(s.store_id);
        self.blocking(move |store| store.append(id, &accepted)).await?;
        Ok(verdict)
    }

    /// A page of a stream's events, as `GetLogEvents` pages them.
    pub async fn get_events(
        &self,
        scope: &Scope,
        group: &LogGroupName,
        name: &LogStreamName,
        req: EventsRequest,
    ) -> Result<EventsPage> {
        let state = self.view();
        let g = find_group(&state, scope, group)?;
        let s = find_stream(&state, scope, group, name)?;
        let limit = match req.limit {
            None => MAX_GET_EVENTS,
            Some(l) if (1..=MAX_GET_EVENTS as i32).contains(&l) => l as usize,
            Some(l) => return Err(Error::parameter(format!("limit must be between 1 and {MAX_GET_EVENTS}; got {l}."))),
        };
        let token = req.token.as_deref().map(decode_token).transpose()?;
        let bound = match token {
            Some(('f', p)) => Bound::After(p),
            Some((_, p)) => Bound::Before(p),
            None if req.start_from_head => Bound::Head,
            None => Bound::Tail,
        };
        let cutoff = g.retention.map(|r| r.cutoff(now_ms()));
        let start = match (req.start, cutoff) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let query = Query { start, end: req.end, bound, limit };
        let id = StreamId(s.store_id);
        let mut found = self.blocking(move |store| store.read(id, &query)).await?;
        // A response holds at most 1 MB of events, as AWS's does: the page is cut on the
        // side away from where it started, so that its tokens continue exactly there.
        let mut size = 0;
        let fits = |e: &Event, size: &mut usize| {
            *size += e.message.len() + model::logs::EVENT_OVERHEAD;
            *size <= model::logs::MAX_BATCH_BYTES
        };
        match bound {
            Bound::Head | Bound::After(_) => {
                let n = found.iter().take_while(|(_, e)| fits(e, &mut size)).count().max(1);
                found.truncate(n);
            }
            Bound::Tail | Bound::Before(_) => {
                let n = found.iter().rev().take_while(|(_, e)| fits(e, &mut size)).count().max(1);
                let skip = found.len().saturating_sub(n);
                found.drain(..skip);
            }
        }
        // Where paging stands when nothing was found: the token given, or the start of
        // the window.
        let here = token.map_or(
            Position {
                timestamp: start.unwrap_or(0).saturating_sub(1),
                segment: u64::MAX,
                offset: u64::MAX,
                index: u32::MAX,
            },
            |(_, p)| p,
        );
        let (first, last) = match (found.first(), found.last()) {
            (Some(f), Some(l)) => (f.0, l.0),
            _ => (here, here),
        };
        Ok(EventsPage {
            next_forward: encode_token('f', last),
            next_backward: encode_token('b', first),
            events: found.into_iter().map(|(_, e)| e).collect(),
        })
    }

    /// One page of a group's events that match a filter pattern, across its streams,
    /// interleaved by time (`FilterLogEvents`).
    pub async fn filter_events(&self, scope: &Scope, group: &LogGroupName, req: FilterRequest) -> Result<FilterPage> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        if req.streams.is_some() && req.prefix.is_some() {
            return Err(Error::parameter("logStreamNames and logStreamNamePrefix are mutually exclusive parameters."));
        }
        let limit = match req.limit {
            None => MAX_GET_EVENTS,
            Some(l) if (1..=MAX_GET_EVENTS as i32).contains(&l) => l as usize,
            Some(l) => return Err(Error::parameter(format!("limit must be between 1 and {MAX_GET_EVENTS}; got {l}."))),
        };
        let pattern = FilterPattern::parse(req.pattern.as_deref().unwrap_or("")).map_err(|e| match e {
            PatternError::Invalid(m) => Error::parameter(m),
            PatternError::Unsupported(m) => Error::Unsupported(m),
        })?;
        let bad = || {
            Error::parameter(
                "The specified nextToken is invalid; pass the nextToken of a previous FilterLogEvents unchanged.",
            )
        };
        let after: Option<(i64, String, Position)> = match &req.token {
            None => None,
            Some(t) => {
                let text = String::from_utf8(b64.decode(t).map_err(|_| bad())?).map_err(|_| bad())?;
                let (stream, pos) = text.split_once('\n').ok_or_else(bad)?;
                let (_, p) = decode_token(pos)?;
                Some((p.timestamp, stream.to_string(), p))
            }
        };
        let state = self.view();
        let g = find_group(&state, scope, group)?;
        let streams: Vec<Arc<LogStream>> = state
            .logs
            .group_streams(scope, group)
            .filter(|s| req.prefix.as_deref().is_none_or(|p| s.name.as_str().starts_with(p)))
            .filter(|s| req.streams.as_ref().is_none_or(|names| names.contains(&s.name)))
            .cloned()
            .collect();
        let cutoff = g.retention.map(|r| r.cutoff(now_ms()));
        let start = [req.start, cutoff].into_iter().flatten().max();
        let end = req.end;
        let mut found = self
            .blocking(move |store| {
                let literals = pattern.required_literals();
                let mut out = Vec::new();
                for s in streams {
                    // Each stream's events after the token's key (timestamp, stream name,
                    // position), and one more than a page, to know whether another follows.
                    let after = after.as_ref().map(|(ts, name, pos)| match s.name.as_str().cmp(name) {
                        std::cmp::Ordering::Equal => *pos,
                        std::cmp::Ordering::Greater => Position::last_at(ts.saturating_sub(1)),
                        std::cmp::Ordering::Less => Position::last_at(*ts),
                    });
                    let scan = Scan { start, end, after, limit: limit + 1, required: &literals };
                    let (events, _) = store.scan(StreamId(s.store_id), &scan, &mut |m| pattern.matches(m))?;
                    out.extend(
                        events.into_iter().map(|(pos, e)| ((pos.timestamp, s.name.to_string(), pos), s.store_id, e)),
                    );
                }
                Ok(out)
            })
            .await?;
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut more = found.len() > limit;
        found.truncate(limit);
        // A response holds at most 1 MB of events, as AWS's does.
        let mut size = 0;
        let fits = found
            .iter()
            .take_while(|(_, _, e)| {
                size += e.message.len() + model::logs::EVENT_OVERHEAD;
                size <= model::logs::MAX_BATCH_BYTES
            })
            .count()
            .max(1);
        if fits < found.len() {
            found.truncate(fits);
            more = true;
        }
        let next_token = if more {
            found.last().map(|((_, stream, pos), _, _)| b64.encode(format!("{stream}\n{}", encode_token('f', *pos))))
        } else {
            None
        };
        let events = found
            .into_iter()
            .map(|((_, stream, pos), store_id, event)| FilteredEvent {
                stream: LogStreamName::parse(&stream).expect("a stored stream name"),
                event_id: format!("{:016x}{:016x}{:016x}{:08x}", store_id as u64, pos.segment, pos.offset, pos.index),
                event,
            })
            .collect();
        Ok(FilterPage { events, next_token })
    }

    /// Drops the stored segments that every group's retention has expired; answers the
    /// bytes freed.
    pub async fn expire(&self) -> Result<u64> {
        let state = self.view();
        let now = now_ms();
        let work: Vec<(StreamId, i64)> = state
            .logs
            .streams
            .values()
            .filter_map(|s| {
                let g = state.logs.groups.get(&(s.scope.clone(), s.group.clone()))?;
                Some((StreamId(s.store_id), g.retention?.cutoff(now)))
            })
            .collect();
        self.blocking(move |store| {
            let mut freed = 0;
            for (id, cutoff) in work {
                freed += store.drop_before(id, cutoff)?;
            }
            Ok(freed)
        })
        .await
    }
}

/// How often expired log segments are dropped.
pub const EXPIRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// Drops expired log segments at start and then every `every`, until `stop`.
pub async fn run_expiry(
    cp: Arc<crate::ControlPlane>,
    every: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let cp = &cp;
    crate::runtime::repeat(every, stop, || async move {
        match cp.logs().expire().await {
            Ok(0) => {}
            Ok(freed) => tracing::info!(bytes_freed = freed, "expired log segments dropped"),
            Err(e) => tracing::error!(error = %e, "dropping expired log segments failed; it runs again next interval"),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{AccountId, Region};

    fn open(dir: &std::path::Path) -> crate::ControlPlane {
        let store = Arc::new(store::SqliteStore::open(&dir.join("state.db")).unwrap());
        let config = crate::Config { logs_dir: Some(dir.join("logs")), ..Default::default() };
        crate::ControlPlane::open_with(store, config).unwrap()
    }

    fn scope() -> Scope {
        Scope { account: AccountId::parse("123456789012").unwrap(), region: Region::parse("us-east-1").unwrap() }
    }

    /// Every page of a filter, `limit` at a time: (stream, message) in order, and pages.
    async fn pages(
        cp: &crate::ControlPlane,
        g: &LogGroupName,
        pattern: &str,
        limit: i32,
    ) -> (Vec<(String, String)>, usize) {
        let (mut all, mut pages, mut token) = (Vec::new(), 0, None);
        loop {
            let req = FilterRequest { pattern: Some(pattern.into()), token, limit: Some(limit), ..Default::default() };
            let page = cp.logs().filter_events(&scope(), g, req).await.unwrap();
            all.extend(page.events.into_iter().map(|e| (e.stream.to_string(), e.event.message)));
            pages += 1;
            token = page.next_token;
            if token.is_none() {
                return (all, pages);
            }
        }
    }

    #[tokio::test]
    async fn filter_pages_walk_every_match_in_time_then_stream_order_and_hold_at_most_a_megabyte() {
        let dir = tempfile::tempdir().unwrap();
        let cp = open(dir.path());
        let g = LogGroupName::parse("g").unwrap();
        cp.logs().create_group(&scope(), g.clone(), BTreeMap::new()).await.unwrap();
        let t = now_ms() - 60_000;
        let mut want = Vec::new();
        for name in ["b", "a", "c"] {
            let s = LogStreamName::parse(name).unwrap();
            cp.logs().create_stream(&scope(), g.clone(), s.clone()).await.unwrap();
            // Two events a millisecond, the same milliseconds in every stream.
            let events: Vec<(i64, String)> = (0..40)
                .map(|i| (t + i / 2, format!("{name} {i} {}", if i % 3 == 0 { "hit" } else { "miss" })))
                .collect();
            want.extend(
                events.iter().filter(|(_, m)| m.contains("hit")).map(|(ts, m)| (*ts, name.to_string(), m.clone())),
            );
            cp.logs().put_events(&scope(), &g, &s, events).await.unwrap();
        }
        want.sort();
        let want: Vec<(String, String)> = want.into_iter().map(|(_, s, m)| (s, m)).collect();
        for limit in [1, 2, 5, 10_000] {
            let (got, n) = pages(&cp, &g, "hit", limit).await;
            assert_eq!(got, want, "limit {limit}");
            assert_eq!(n, want.len().div_ceil(limit as usize).max(1), "limit {limit}");
        }
        // Three events of 400 kB: a page holds two of them (1 MB), the next the third.
        let big = LogStreamName::parse("big").unwrap();
        cp.logs().create_stream(&scope(), g.clone(), big.clone()).await.unwrap();
        for i in 0..3 {
            let m = format!("large {i} {}", "x".repeat(400_000));
            cp.logs().put_events(&scope(), &g, &big, vec![(t + 100 + i, m)]).await.unwrap();
        }
        let (got, n) = pages(&cp, &g, "large", 10_000).await;
        assert_eq!(got.len(), 3);
        assert_eq!(n, 2);
    }

    #[test]
    fn tokens_round_trip_and_keep_their_order() {
        let p = Position { timestamp: -5, segment: 3, offset: 99, index: 7 };
        assert_eq!(decode_token(&encode_token('f', p)).unwrap(), ('f', p));
        let q = Position { timestamp: 10, ..p };
        assert!(encode_token('f', p) < encode_token('f', q));
        assert!(decode_token("f/123").is_err());
        assert!(decode_token("x/").is_err());
    }
}
