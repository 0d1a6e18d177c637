//! A sealed segment's index file (`<seq>.idx`): its figures and its blocks' time ranges,
//! so that opening a stream need not read its segments and a read can skip the blocks
//! outside its window.
//!
//! Text, one record a line, and a checksum line last:
//!
//! ```text
//! v2 <bytes> <events> <min ts> <max ts> <max ingestion time>
//! <offset> <end> <events> <min ts> <max ts>        (one line per block, in file order)
//! crc <crc32 of everything above, 8 hex digits>
//! ```
//!
//! The index is derived data. [`read`] answers `None` for anything it cannot prove
//! consistent (another version, a bad checksum, blocks that do not tile the segment, a
//! byte length other than the segment file's), and the caller rebuilds it from the
//! segment. It is written to a temporary file, synced and renamed, so a crash leaves the
//! old index or the new one, never half of one.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{sync_dir, Block, Segment};

pub(crate) fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.idx"))
}

pub(crate) fn write(dir: &Path, seg: &Segment) -> io::Result<()> {
    let mut text = format!("v2 {} {} {} {} {}\n", seg.bytes, seg.events, seg.min_ts, seg.max_ts, seg.max_ingest);
    for b in seg.blocks.iter() {
        writeln!(text, "{} {} {} {} {}", b.offset, b.end, b.events, b.min_ts, b.max_ts).expect("writing to a String");
    }
    let crc = crc32fast::hash(text.as_bytes());
    writeln!(text, "crc {crc:08x}").expect("writing to a String");
    let tmp = dir.join(format!("{:016x}.idx.tmp", seg.seq));
    let mut f = File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path(dir, seg.seq))?;
    sync_dir(dir)
}

/// The index of segment `seq`, whose file is `len` bytes long, if it is present and
/// consistent.
pub(crate) fn read(dir: &Path, seq: u64, len: u64) -> Option<Segment> {
    let text = fs::read_to_string(path(dir, seq)).ok()?;
    let body_end = text.trim_end_matches('\n').rfind('\n')? + 1;
    let (body, trailer) = text.split_at(body_end);
    let crc = u32::from_str_radix(trailer.trim_end().strip_prefix("crc ")?, 16).ok()?;
    if crc32fast::hash(body.as_bytes()) != crc {
        return None;
    }
    let mut lines = body.lines();
    let mut head = lines.next()?.split(' ');
    if head.next()? != "v2" {
        return None;
    }
    let [bytes, events, min_ts, max_ts, max_ingest] = numbers(head)?;
    let mut blocks = Vec::new();
    for line in lines {
        let [offset, end, events, min_ts, max_ts] = numbers(line.split(' '))?;
        blocks.push(Block { offset: offset as u64, end: end as u64, events: events as u64, min_ts, max_ts });
    }
    let seg = Segment {
        seq,
        bytes: bytes as u64,
        events: events as u64,
        min_ts,
        max_ts,
        max_ingest,
        blocks: Arc::new(blocks),
    };
    consistent(&seg, len).then_some(seg)
}

fn numbers<'a>(mut parts: impl Iterator<Item = &'a str>) -> Option<[i64; 5]> {
    let mut out = [0; 5];
    for n in &mut out {
        *n = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Whether the blocks tile `0..len` in order and add up to the segment's figures.
fn consistent(seg: &Segment, len: u64) -> bool {
    let mut at = 0;
    let (mut events, mut min_ts, mut max_ts) = (0, i64::MAX, i64::MIN);
    for b in seg.blocks.iter() {
        if b.offset != at || b.end <= b.offset || (b.events > 0 && b.min_ts > b.max_ts) {
            return false;
        }
        at = b.end;
        events += b.events;
        if b.events > 0 {
            min_ts = min_ts.min(b.min_ts);
            max_ts = max_ts.max(b.max_ts);
        }
    }
    at == len
        && seg.bytes == len
        && events == seg.events
        && (events == 0 || (min_ts, max_ts) == (seg.min_ts, seg.max_ts))
}
