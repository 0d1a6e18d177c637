//! Append-only, time-indexed storage of log events, one directory of segment files per
//! stream. It knows nothing of AWS: a stream is an opaque [`StreamId`], an event is a
//! timestamp, an ingestion time and a message.
//!
//! Layout: `<root>/<stream id, 32 hex digits>/<segment number, 16 hex digits>.seg`, and
//! beside every sealed segment a `.idx` file with its index (byte length, event count,
//! smallest and largest timestamp, latest ingestion time, and the time range of every
//! block; see `index.rs`). File names are derived from ids only, never from user text, so
//! no name a user chooses can reach the file system.
//!
//! Decisions:
//! - One append (one `PutLogEvents` batch) is one frame: `length (u32 LE) | crc32 (u32
//!   LE) | payload`, the payload holding every event of the batch. A batch is therefore
//!   visible whole or not at all. The frame is written and `fsync`ed before [`LogStore::append`]
//!   returns; a failed write is cut off again so the next append starts on a frame boundary.
//! - A torn tail (a crash in the middle of an append, which was never acknowledged) fails
//!   its length or checksum; opening the stream cuts the segment back to the last whole
//!   frame.
//! - Events need not arrive in time order (AWS no longer asks that of `PutLogEvents`), so
//!   the time index is of ranges, not a sorted list: a segment's range, and inside it the
//!   ranges of its blocks, runs of whole frames of about 64 KiB (a frame is never split,
//!   since its checksum covers it whole). A read skips every segment whose range misses
//!   the window; a filtered read ([`LogStore::scan`], `scan.rs`) skips every block whose
//!   range misses it, so a window of a large stream reads about its share of the bytes.
//!   Events are ordered by [`Position`]: timestamp, then where they were stored.
//! - An index is derived data, written when a segment is sealed (temporary file, sync,
//!   rename). Opening a stream trusts a sealed segment's index only if its checksum holds
//!   and its blocks tile the segment file exactly; otherwise it is rebuilt from the
//!   segment and written again. The open segment's index lives in memory, rebuilt by
//!   reading the segment when the stream is opened.
//! - Retention drops whole segments whose newest event is older than the cutoff; the
//!   events of a kept segment that are older than the cutoff are filtered by the caller's
//!   time window on read.
//! - Calls do blocking file I/O; async callers run them on a blocking thread.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A segment is sealed and a new one begun once it holds this many bytes.
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// Frames are grouped into blocks of about this many bytes (a frame is never split), the
/// unit of the time index inside a segment.
const BLOCK_BYTES: u64 = 64 * 1024;

const FRAME_HEADER: usize = 8;
/// Each event's fixed part in a payload: timestamp, ingestion time, message length.
const EVENT_HEADER: usize = 8 + 8 + 4;

/// A stream's identity on disk, chosen by the caller (the control plane) at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u128);

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl StreamId {
    pub fn parse(s: &str) -> Option<StreamId> {
        if s.len() != 32 {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(StreamId)
    }
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Milliseconds since the epoch, as the producer stamped it.
    pub timestamp: i64,
    /// Milliseconds since the epoch, when it was stored.
    pub ingestion_time: i64,
    pub message: String,
}

/// Where an event sits in its stream's order: by timestamp, then by where it was stored.
/// Reads resume from a position, so it is what paging tokens carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub timestamp: i64,
    pub segment: u64,
    pub offset: u64,
    pub index: u32,
}

impl Position {
    /// The greatest position at timestamp `ts`: the events after it are exactly those of
    /// later timestamps.
    pub fn last_at(ts: i64) -> Position {
        Position { timestamp: ts, segment: u64::MAX, offset: u64::MAX, index: u32::MAX }
    }
}

/// What a stream holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes of its segment files.
    pub stored_bytes: u64,
    pub events: u64,
    pub first_timestamp: Option<i64>,
    pub last_timestamp: Option<i64>,
    pub last_ingestion_time: Option<i64>,
}

/// Where a read starts and which way it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The earliest events of the window, going forward.
    Head,
    /// The latest events of the window (still returned oldest first).
    Tail,
    /// Events after this position, going forward.
    After(Position),
    /// Events before this position: the latest `limit` of them.
    Before(Position),
}

/// A read of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// Inclusive lower bound on timestamps.
    pub start: Option<i64>,
    /// Exclusive upper bound on timestamps.
    pub end: Option<i64>,
    pub bound: Bound,
    pub limit: usize,
}

/// The segment directories of every stream under one root.
#[derive(Debug)]
pub struct LogStore {
    root: PathBuf,
    segment_bytes: u64,
    streams: Mutex<HashMap<StreamId, Arc<Mutex<Stream>>>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    seq: u64,
    bytes: u64,
    events: u64,
    min_ts: i64,
    max_ts: i64,
    max_ingest: i64,
    /// Runs of whole frames with their time ranges, in file order, covering `0..bytes`.
    /// Shared with readers; an append copies it only while a reader still holds it.
    blocks: Arc<Vec<Block>>,
}

/// A run of whole frames of one segment: `offset..end`, with its events' time range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    offset: u64,
    end: u64,
    events: u64,
    min_ts: i64,
    max_ts: i64,
}

impl Segment {
    fn empty(seq: u64) -> Segment {
        Segment {
            seq,
            bytes: 0,
            events: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            max_ingest: i64::MIN,
            blocks: Arc::new(Vec::new()),
        }
    }

    /// Accounts for a frame of `len` bytes written at `offset` (the segment's end) holding
    /// events of these `(timestamp, ingestion time)`s.
    fn add_frame(&mut self, offset: u64, len: u64, times: impl Iterator<Item = (i64, i64)>) {
        let blocks = Arc::make_mut(&mut self.blocks);
        if blocks.last().is_none_or(|b| b.end - b.offset >= BLOCK_BYTES) {
            blocks.push(Block { offset, end: offset, events: 0, min_ts: i64::MAX, max_ts: i64::MIN });
        }
        let block = blocks.last_mut().expect("a block was ensured above");
        block.end = offset + len;
        for (ts, ingest) in times {
            block.events += 1;
            block.min_ts = block.min_ts.min(ts);
            block.max_ts = block.max_ts.max(ts);
            self.events += 1;
            self.min_ts = self.min_ts.min(ts);
            self.max_ts = self.max_ts.max(ts);
            self.max_ingest = self.max_ingest.max(ingest);
        }
        self.bytes = offset + len;
    }
}

#[derive(Debug)]
struct Stream {
    dir: PathBuf,
    /// In segment order; the last one is the one appended to.
    segments: Vec<Segment>,
    next_seq: u64,
}

impl LogStore {
    /// Opens (creating) the store under `root`. Streams are read lazily, on first use.
    pub fn open(root: &Path) -> io::Result<LogStore> {
        Self::open_with(root, DEFAULT_SEGMENT_BYTES)
    }

    pub fn open_with(root: &Path, segment_bytes: u64) -> io::Result<LogStore> {
        fs::create_dir_all(root)?;
        Ok(LogStore { root: root.to_path_buf(), segment_bytes, streams: Mutex::new(HashMap::new()) })
    }

    fn stream(&self, id: StreamId) -> io::Result<Arc<Mutex<Stream>>> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = streams.get(&id) {
            return Ok(s.clone());
        }
        let s = Arc::new(Mutex::new(Stream::load(self.root.join(id.to_string()))?));
        streams.insert(id, s.clone());
        Ok(s)
    }

    /// Appends `events` as one frame and makes it durable before returning.
    pub fn append(&self, id: StreamId, events: &[Event]) -> io::Result<Stats> {
        let stream = self.stream(id)?;
        let mut s = stream.lock().unwrap_or_else(|e| e.into_inner());
        if events.is_empty() {
            return Ok(s.stats());
        }
        let frame = encode_frame(events)?;
        if !s.dir.exists() {
            fs::create_dir_all(&s.dir)?;
            sync_dir(&self.root)?;
        }
        let full = s.segments.last().is_none_or(|l| l.bytes > 0 && l.bytes + frame.len() as u64 > self.segment_bytes);
        if full {
            if let Some(last) = s.segments.last() {
                index::write(&s.dir, last)?;
            }
            let seq = s.next_seq;
            s.next_seq += 1;
            File::create(segment_path(&s.dir, seq))?.sync_all()?;
            sync_dir(&s.dir)?;
            s.segments.push(Segment::empty(seq));
        }
        let Stream { dir, segments, .. } = &mut *s;
        let last = segments.last_mut().expect("a segment was ensured above");
        let path = segment_path(dir, last.seq);
        let mut f = OpenOptions::new().write(true).open(&path)?;
        f.seek(SeekFrom::Start(last.bytes))?;
        if let Err(e) = f.write_all(&frame).and_then(|()| f.sync_data()) {
            // Cut the partial frame off so that the next append starts on a boundary.
            let _ = f.set_len(last.bytes).and_then(|()| f.sync_data());
            return Err(e);
        }
        last.add_frame(last.bytes, frame.len() as u64, events.iter().map(|e| (e.timestamp, e.ingestion_time)));
        Ok(s.stats())
    }

    /// What stream `id` holds.
    pub fn stats(&self, id: StreamId) -> io::Result<Stats> {
        let stream = self.stream(id)?;
        let s = stream.lock().unwrap_or_else(|e| e.into_inner());
        Ok(s.stats())
    }

    /// Reads the events of `query`, oldest first.
    pub fn read(&self, id: StreamId, query: &Query) -> io::Result<Vec<(Position, Event)>> {
        let stream = self.stream(id)?;
        let (dir, segments) = {
            let s = stream.lock().unwrap_or_else(|e| e.into_inner());
            (s.dir.clone(), s.segments.clone())
        };
        let start = query.start.unwrap_or(i64::MIN);
        let end = query.end.unwrap_or(i64::MAX);
        let (after, before) = match query.bound {
            Bound::After(p) => (Some(p), None),
            Bound::Before(p) => (None, Some(p)),
            Bound::Head | Bound::Tail => (None, None),
        };
        // A page from the head takes the oldest positions, from the tail the newest.
        // Segments are visited in that direction; once a page is full, a segment whose
        // times all fall beyond its last event cannot change it (a tie in time sorts by
        // segment, and the later-visited segment loses it), so it is not read.
        let forward = matches!(query.bound, Bound::Head | Bound::After(_));
        let candidates = segments.iter().filter(|g| g.events > 0 && g.max_ts >= start && g.min_ts < end);
        let ordered: Vec<&Segment> = if forward { candidates.collect() } else { candidates.rev().collect() };
        let mut found: Vec<(Position, Event)> = Vec::new();
        for seg in ordered {
            if after.is_some_and(|p| seg.max_ts < p.timestamp) || before.is_some_and(|p| seg.min_ts > p.timestamp) {
                continue;
            }
            if found.len() >= query.limit {
                let edge = if forward { found.last() } else { found.first() }.map(|(p, _)| p.timestamp);
                let beyond = edge.is_some_and(|t| if forward { seg.min_ts >= t } else { seg.max_ts <= t });
                if beyond {
                    continue;
                }
            }
            // Only the bytes known when the stream was looked at: an append in progress
            // past them is not yet acknowledged.
            let data = read_prefix(&segment_path(&dir, seg.seq), seg.bytes)?;
            for_each_frame(&data, |offset, payload| {
                for (index, e) in decode_payload(payload).into_iter().enumerate() {
                    if e.timestamp < start || e.timestamp >= end {
                        continue;
                    }
                    let pos = Position { timestamp: e.timestamp, segment: seg.seq, offset, index: index as u32 };
                    if after.is_some_and(|p| pos <= p) || before.is_some_and(|p| pos >= p) {
                        continue;
                    }
                    found.push((pos, e));
                }
            });
            found.sort_by_key(|(p, _)| *p);
            if forward {
                found.truncate(query.limit);
            } else {
                let skip = found.len().saturating_sub(query.limit);
                found.drain(..skip);
            }
        }
        Ok(found)
    }

    /// Removes a stream's files.
    pub fn delete_stream(&self, id: StreamId) -> io::Result<()> {
        let stream = self.stream(id)?;
        let mut s = stream.lock().unwrap_or_else(|e| e.into_inner());
        match fs::remove_dir_all(&s.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        s.segments.clear();
        drop(s);
        self.streams.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        Ok(())
    }

    /// Drops every segment of stream `id` whose newest event is older than `cutoff`
    /// (milliseconds since the epoch); answers the bytes freed.
    pub fn drop_before(&self, id: StreamId, cutoff: i64) -> io::Result<u64> {
        let stream = self.stream(id)?;
        let mut s = stream.lock().unwrap_or_else(|e| e.into_inner());
        let mut freed = 0;
        let mut kept = Vec::with_capacity(s.segments.len());
        for seg in std::mem::take(&mut s.segments) {
            if seg.events > 0 && seg.max_ts < cutoff {
                remove_if_present(&segment_path(&s.dir, seg.seq))?;
                remove_if_present(&index::path(&s.dir, seg.seq))?;
                freed += seg.bytes;
            } else {
                kept.push(seg);
            }
        }
        s.segments = kept;
        Ok(freed)
    }
}

impl Stream {
    fn load(dir: PathBuf) -> io::Result<Stream> {
        let mut seqs = Vec::new();
        match fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let name = entry?.file_name();
                    let Some(name) = name.to_str() else { continue };
                    if let Some(seq) = name.strip_suffix(".seg").and_then(|h| u64::from_str_radix(h, 16).ok()) {
                        seqs.push(seq);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        seqs.sort_unstable();
        let mut segments = Vec::with_capacity(seqs.len());
        for (i, &seq) in seqs.iter().enumerate() {
            let path = segment_path(&dir, seq);
            let len = fs::metadata(&path)?.len();
            let is_last = i + 1 == seqs.len();
            if is_last {
                segments.push(scan_segment(&path, seq)?);
                continue;
            }
            if let Some(seg) = index::read(&dir, seq, len) {
                segments.push(seg);
                continue;
            }
            // The index is derived data: one that is missing, damaged or of an older
            // version is rebuilt from the segment, never trusted.
            tracing::info!(segment = %path.display(), "rebuilding a sealed segment's index");
            let seg = scan_segment(&path, seq)?;
            if let Err(e) = index::write(&dir, &seg) {
                tracing::warn!(segment = %path.display(), error = %e, "writing a rebuilt index failed; it is rebuilt again on the next open");
            }
            segments.push(seg);
        }
        let next_seq = seqs.last().map_or(0, |s| s + 1);
        Ok(Stream { dir, segments, next_seq })
    }

    fn stats(&self) -> Stats {
        let mut st = Stats::default();
        for g in self.segments.iter().filter(|g| g.events > 0) {
            st.stored_bytes += g.bytes;
            st.events += g.events;
            st.first_timestamp = Some(st.first_timestamp.map_or(g.min_ts, |t| t.min(g.min_ts)));
            st.last_timestamp = Some(st.last_timestamp.map_or(g.max_ts, |t| t.max(g.max_ts)));
            st.last_ingestion_time = Some(st.last_ingestion_time.map_or(g.max_ingest, |t| t.max(g.max_ingest)));
        }
        st
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.seg"))
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn read_prefix(path: &Path, len: u64) -> io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(len as usize);
    File::open(path)?.take(len).read_to_end(&mut data)?;
    Ok(data)
}

fn encode_frame(events: &[Event]) -> io::Result<Vec<u8>> {
    let size: usize = events.iter().map(|e| EVENT_HEADER + e.message.len()).sum();
    if size > u32::MAX as usize {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a batch is limited to 4 GiB"));
    }
    let mut frame = Vec::with_capacity(FRAME_HEADER + size);
    frame.extend_from_slice(&(size as u32).to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    for e in events {
        frame.extend_from_slice(&e.timestamp.to_le_bytes());
        frame.extend_from_slice(&e.ingestion_time.to_le_bytes());
        frame.extend_from_slice(&(e.message.len() as u32).to_le_bytes());
        frame.extend_from_slice(e.message.as_bytes());
    }
    let crc = crc32fast::hash(&frame[FRAME_HEADER..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(frame)
}

/// Calls `f(offset, payload)` for every whole, checksummed frame; answers the length of
/// the valid prefix.
fn for_each_frame(data: &[u8], mut f: impl FnMut(u64, &[u8])) -> u64 {
    let mut at = 0usize;
    while data.len() - at >= FRAME_HEADER {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().expect("4 bytes"));
        let Some(payload) = data.get(at + FRAME_HEADER..at + FRAME_HEADER + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        f(at as u64, payload);
        at += FRAME_HEADER + len;
    }
    at as u64
}

/// The events of a checksummed payload. A payload that passed its checksum was written
/// by [`encode_frame`], so a malformed one can only come from a bug; it decodes as far as
/// it is well formed.
fn decode_payload(p: &[u8]) -> Vec<Event> {
    raw_events(p)
        .map(|r| Event {
            timestamp: r.timestamp,
            ingestion_time: r.ingestion_time,
            message: String::from_utf8_lossy(&p[r.message.clone()]).into_owned(),
        })
        .collect()
}

/// An event of a payload, not yet copied out of it.
struct RawEvent {
    timestamp: i64,
    ingestion_time: i64,
    /// Where its message lies in the payload.
    message: std::ops::Range<usize>,
}

/// The events of a payload in stored order, as far as it is well formed.
fn raw_events(p: &[u8]) -> impl Iterator<Item = RawEvent> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let h = p.get(at..at + EVENT_HEADER)?;
        let timestamp = i64::from_le_bytes(h[0..8].try_into().expect("8 bytes"));
        let ingestion_time = i64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(h[16..20].try_into().expect("4 bytes")) as usize;
        let message = at + EVENT_HEADER..at + EVENT_HEADER + len;
        if message.end > p.len() {
            return None;
        }
        at = message.end;
        Some(RawEvent { timestamp, ingestion_time, message })
    })
}

/// Reads a segment whole, rebuilding its index; cuts a torn tail off.
fn scan_segment(path: &Path, seq: u64) -> io::Result<Segment> {
    let data = fs::read(path)?;
    let mut seg = Segment::empty(seq);
    let valid = for_each_frame(&data, |offset, payload| {
        let times = raw_events(payload).map(|r| (r.timestamp, r.ingestion_time));
        seg.add_frame(offset, (FRAME_HEADER + payload.len()) as u64, times);
    });
    if valid < data.len() as u64 {
        tracing::warn!(
            segment = %path.display(),
            valid,
            length = data.len(),
            "cutting off a torn tail (an append that never completed)"
        );
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(valid)?;
        f.sync_all()?;
    }
    seg.bytes = valid;
    Ok(seg)
}

mod index;
mod scan;

pub use scan::{Scan, ScanStats};

#[cfg(test)]
mod tests;
