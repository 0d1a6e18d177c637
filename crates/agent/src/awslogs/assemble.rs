//! From Docker's log entries to CloudWatch Logs events, without I/O or a clock.
//!
//! Docker stores what a container prints as entries: one per line, a long line cut into
//! 16 KiB pieces (every piece but the last without its newline), each with the time
//! Docker read it. The agent reads them back with those timestamps (from the log file,
//! [`Assembler::push_piece`], or `docker logs --timestamps`, [`Assembler::push`]). Here the
//! pieces of a line are joined again, a line longer than
//! [`MAX_EVENT_BYTES`] is cut into events of at most that size (memory stays bounded
//! whatever the container prints), multi-line events are joined when the container's
//! options give a start pattern, and each event takes the time of its first line.
//!
//! stdout and stderr are assembled apart (a stack trace on stderr never swallows a line
//! of stdout), and each event carries the [`Mark`] of the last entry it completes: what
//! the shipper saves once the event is acknowledged, so that a restarted agent resumes
//! after it. Within one source Docker's timestamps do not go back, so a mark (timestamp,
//! then rank among entries of the same timestamp) orders the entries of that source.

use regex::Regex;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;

/// The largest event the agent sends: Docker's awslogs driver's limit (256 KiB less the
/// 26 bytes CloudWatch counts per event), well inside `PutLogEvents`' batch limit.
pub const MAX_EVENT_BYTES: usize = 256 * 1024 - model::logs::EVENT_OVERHEAD;
/// A multi-line event (or a line still without its newline) that nothing has joined for
/// this long is sent as it is.
pub const IDLE_FLUSH_NS: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Stdout = 0,
    Stderr = 1,
}

/// Where an entry stands in its source: its timestamp, and its rank (from 1) among the
/// entries of that source with the same timestamp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Mark {
    pub ts_ns: i64,
    pub rank: u32,
}

/// One event for `PutLogEvents`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub source: Source,
    pub timestamp_ms: i64,
    pub message: String,
    /// Once this event is stored, every entry of its source up to this mark is shipped.
    pub end: Mark,
}

/// Joins a container's entries into events.
pub struct Assembler {
    event_start: Option<Regex>,
    max_bytes: usize,
    sources: [SourceState; 2],
}

#[derive(Default)]
struct SourceState {
    /// The last entry seen; marks of entries up to `resume` are skipped.
    last: Mark,
    resume: Mark,
    /// A line whose pieces are still arriving: its first piece's time and its bytes.
    line: Option<(i64, Vec<u8>)>,
    /// A multi-line event being built.
    pending: Option<Pending>,
}

struct Pending {
    ts_ns: i64,
    text: Vec<u8>,
    end: Mark,
    /// When its last line arrived.
    touched_ns: i64,
}

impl Assembler {
    /// `resume`: per source, the mark of the last entry already shipped (entries up to it
    /// are skipped).
    pub fn new(event_start: Option<Regex>, resume: [Mark; 2]) -> Assembler {
        Assembler::with_limit(event_start, resume, MAX_EVENT_BYTES)
    }

    pub fn with_limit(event_start: Option<Regex>, resume: [Mark; 2], max_bytes: usize) -> Assembler {
        let state = |resume| SourceState { resume, ..Default::default() };
        Assembler { event_start, max_bytes, sources: [state(resume[0]), state(resume[1])] }
    }

    /// Takes in one entry as Docker sent it (`<RFC 3339 time> <text>`), appending the
    /// events it completes to `out`. An entry without a readable time is joined to its
    /// source's line as text.
    pub fn push(&mut self, source: Source, entry: &[u8], out: &mut Vec<Event>) {
        let (ts_ns, text) = match split_time(entry) {
            Some(x) => x,
            None => (self.sources[source as usize].last.ts_ns, entry),
        };
        self.push_at(source, ts_ns, text, out);
    }

    /// Whether an entry of `source` at `ts_ns` is one already shipped, so that a reader
    /// may drop it without decoding its text: it is older than the last entry shipped
    /// (entries at that very time still count, for their ranks).
    pub fn skips(&self, source: Source, ts_ns: i64) -> bool {
        ts_ns < self.sources[source as usize].resume.ts_ns
    }

    /// Takes in one entry read with its time (`text` as the container printed it, with
    /// its newline unless Docker cut the line there).
    pub fn push_at(&mut self, source: Source, ts_ns: i64, text: &[u8], out: &mut Vec<Event>) {
        match text.strip_suffix(b"\n") {
            Some(body) => self.push_piece(source, ts_ns, body, true, out),
            None => self.push_piece(source, ts_ns, text, false, out),
        }
    }

    /// Takes in one entry read with its time: `body` as the container printed it without
    /// the newline, and whether the newline followed (`complete`) or Docker cut the line.
    pub fn push_piece(&mut self, source: Source, ts_ns: i64, body: &[u8], complete: bool, out: &mut Vec<Event>) {
        let st = &mut self.sources[source as usize];
        let prev = st.last;
        let mark = if ts_ns == prev.ts_ns { Mark { ts_ns, rank: prev.rank + 1 } } else { Mark { ts_ns, rank: 1 } };
        st.last = mark;
        if mark <= st.resume {
            return;
        }
        let (first_ts, mut line) = st.line.take().unwrap_or((ts_ns, Vec::new()));
        line.extend_from_slice(body);
        let mut first_ts = first_ts;
        // Cut a line that outgrows an event. The piece ends inside this entry (the line
        // held less than an event before it), so it completes the entries up to `prev`.
        while line.len() > self.max_bytes {
            let cut = char_boundary(&line, self.max_bytes);
            let rest = line.split_off(cut);
            self.line(source, first_ts, line, prev, ts_ns, out);
            line = rest;
            first_ts = ts_ns;
        }
        if complete {
            self.line(source, first_ts, line, mark, ts_ns, out);
        } else {
            self.sources[source as usize].line = Some((first_ts, line));
        }
    }

    /// Sends what nothing has joined for [`IDLE_FLUSH_NS`] before `now_ns`: a multi-line
    /// event, or a line still waiting for its newline.
    pub fn flush_idle(&mut self, now_ns: i64, out: &mut Vec<Event>) {
        for source in [Source::Stdout, Source::Stderr] {
            let st = &mut self.sources[source as usize];
            if st.line.as_ref().is_some_and(|(ts, _)| now_ns - ts >= IDLE_FLUSH_NS) {
                let (ts, line) = st.line.take().unwrap_or_default();
                let end = st.last;
                self.line(source, ts, line, end, ts, out);
            }
            let st = &mut self.sources[source as usize];
            if st.pending.as_ref().is_some_and(|p| now_ns - p.touched_ns >= IDLE_FLUSH_NS) {
                emit(source, st.pending.take(), out);
            }
        }
    }

    /// Sends everything held: the container's output has ended.
    pub fn flush_all(&mut self, out: &mut Vec<Event>) {
        self.flush_idle(i64::MAX, out);
    }

    /// Per source, the last entry taken in (or skipped as shipped).
    pub fn seen(&self) -> [Mark; 2] {
        [self.sources[0].last.max(self.sources[0].resume), self.sources[1].last.max(self.sources[1].resume)]
    }

    /// The second to read Docker's log from so that nothing after the resume marks is
    /// missed (0: from the start).
    pub fn resume_secs(&self) -> i64 {
        let earliest = self.sources.iter().map(|s| s.resume.ts_ns).min().unwrap_or(0);
        earliest.div_euclid(1_000_000_000)
    }

    /// Whether anything waits for more lines (the shipper then wakes to flush it).
    pub fn holding(&self) -> bool {
        self.sources.iter().any(|s| s.line.is_some() || s.pending.is_some())
    }

    /// A whole line (without its newline) at `ts_ns`, completing entries up to `end`.
    fn line(&mut self, source: Source, ts_ns: i64, line: Vec<u8>, end: Mark, now_ns: i64, out: &mut Vec<Event>) {
        let st = &mut self.sources[source as usize];
        let Some(start) = &self.event_start else {
            if !line.is_empty() {
                out.push(event(source, ts_ns, line, end));
            }
            return;
        };
        let starts = start.is_match(&String::from_utf8_lossy(&line));
        match &mut st.pending {
            Some(p) if !starts && p.text.len() + 1 + line.len() <= self.max_bytes => {
                p.text.push(b'\n');
                p.text.extend_from_slice(&line);
                p.end = end;
                p.touched_ns = now_ns;
            }
            _ => {
                emit(source, st.pending.take(), out);
                if !line.is_empty() {
                    st.pending = Some(Pending { ts_ns, text: line, end, touched_ns: now_ns });
                }
            }
        }
    }
}

fn emit(source: Source, pending: Option<Pending>, out: &mut Vec<Event>) {
    if let Some(p) = pending {
        out.push(event(source, p.ts_ns, p.text, p.end));
    }
}

fn event(source: Source, ts_ns: i64, text: Vec<u8>, end: Mark) -> Event {
    // Valid UTF-8 (nearly always) is taken as it is, without a copy.
    let message = String::from_utf8(text).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Event { source, timestamp_ms: ts_ns.div_euclid(1_000_000), message, end }
}

/// The largest cut at or below `max` that does not split a UTF-8 character.
fn char_boundary(bytes: &[u8], max: usize) -> usize {
    let mut cut = max;
    // A continuation byte is 0b10xx_xxxx; a character has at most three of them.
    while cut > max.saturating_sub(3) && cut > 0 && bytes.get(cut).is_some_and(|b| b & 0xC0 == 0x80) {
        cut -= 1;
    }
    if cut == 0 {
        max
    } else {
        cut
    }
}

/// `2026-12-06T17:05:42.123456789Z text` → (nanoseconds since the epoch, `text`).
fn split_time(entry: &[u8]) -> Option<(i64, &[u8])> {
    let space = entry.iter().position(|&b| b == b' ')?;
    let stamp = &entry[..space];
    let ns = match docker_time(stamp) {
        Some(ns) => ns,
        None => {
            let t = time::OffsetDateTime::parse(std::str::from_utf8(stamp).ok()?, &Rfc3339).ok()?;
            i64::try_from(t.unix_timestamp_nanos()).ok()?
        }
    };
    Some((ns, &entry[space + 1..]))
}

/// A UTC time as Docker writes it, read without the general parser (it is done for every
/// line): `2026-12-06T17:05:42.123456789Z` (the API's nine digits) or with fewer digits
/// of the fraction, or none (the json-file's Go `RFC3339Nano`, trailing zeros removed).
pub(super) fn docker_time(s: &[u8]) -> Option<i64> {
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || s[10] != b'T' || s[13] != b':' || s[16] != b':' {
        return None;
    }
    if s.last() != Some(&b'Z') {
        return None;
    }
    let num = |r: &[u8]| -> Option<i64> {
        r.iter().try_fold(0i64, |n, &d| d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0')))
    };
    let nanos = match &s[19..s.len() - 1] {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => num(digits)? * 10i64.pow(9 - digits.len() as u32),
        _ => return None,
    };
    let (y, m, d) = (num(&s[0..4])?, num(&s[5..7])?, num(&s[8..10])?);
    let (hh, mm, ss) = (num(&s[11..13])?, num(&s[14..16])?, num(&s[17..19])?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days since the epoch of a proleptic Gregorian date (the civil-from-days inverse).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000_000) + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-12-06T17:00:00.000000001Z";

    fn entry(ts: &str, text: &str) -> Vec<u8> {
        format!("{ts} {text}").into_bytes()
    }

    fn messages(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.message.as_str()).collect()
    }

    #[test]
    fn lines_become_events_with_their_docker_time_and_empty_lines_are_skipped() {
        let mut a = Assembler::new(None, [Mark::default(); 2]);
        let mut out = vec![];
        a.push(Source::Stdout, &entry(T0, "hello\n"), &mut out);
        a.push(Source::Stdout, &entry("2026-12-06T17:00:00.500Z", "\n"), &mut out);
        a.push(Source::Stderr, &entry("2026-12-06T17:00:01.25Z", "oops\n"), &mut out);
        assert_eq!(messages(&out), ["hello", "oops"]);
        assert_eq!(out[0].timestamp_ms, 1_796_576_400_000);
        assert_eq!(out[1].timestamp_ms, 1_796_576_401_250);
        assert_eq!(out[1].source, Source::Stderr);
        assert!(!a.holding());
    }

    #[test]
    fn pieces_of_a_long_line_are_joined_and_cut_at_the_event_limit() {
        let mut a = Assembler::with_limit(None, [Mark::default(); 2], 10);
        let mut out = vec![];
        a.push(Source::Stdout, &entry(T0, "0123456"), &mut out);
        assert!(out.is_empty() && a.holding());
        a.push(Source::Stdout, &entry(T0, "789abcdef"), &mut out);
        a.push(Source::Stdout, &entry(T0, "XYZ\n"), &mut out);
        assert_eq!(messages(&out), ["0123456789", "abcdefXYZ"]);
        // The cut piece completes only the first entry; the whole line, all three.
        assert_eq!(out[0].end.rank, 1);
        assert_eq!(out[1].end.rank, 3);
    }

    #[test]
    fn dockers_timestamps_read_as_the_general_parser_reads_them() {
        for stamp in [
            "2026-12-06T17:00:00.000000001Z",
            "1970-01-01T00:00:00.000000000Z",
            "2024-02-29T23:59:59.999999999Z",
            "2026-12-06T17:00:00.5Z",
            "2026-12-06T17:00:00.12345678Z",
            "2026-12-06T17:00:00Z",
        ] {
            let t = time::OffsetDateTime::parse(stamp, &Rfc3339).unwrap();
            assert_eq!(docker_time(stamp.as_bytes()), Some(t.unix_timestamp_nanos() as i64), "{stamp}");
        }
        for other in ["2026-12-06T17:00:00.Z", "2026-12-06T17:00:00.1234567891Z", "2026-12-06T17:00:00+01:00"] {
            assert_eq!(docker_time(other.as_bytes()), None, "{other} goes to the general parser");
        }
        let mut out = vec![];
        Assembler::new(None, [Mark::default(); 2]).push(Source::Stdout, b"2026-12-06T17:00:00.25+01:00 x\n", &mut out);
        assert_eq!(out[0].timestamp_ms, 1_796_572_800_250);
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let mut a = Assembler::with_limit(None, [Mark::default(); 2], 4);
        let mut out = vec![];
        a.push(Source::Stdout, &entry(T0, "aaé€\n"), &mut out);
        assert_eq!(messages(&out), ["aaé", "€"]);
    }

    #[test]
    fn multiline_events_join_until_the_next_start_and_flush_when_idle() {
        let start = Regex::new(r"^\d{4}-").unwrap();
        let mut a = Assembler::new(Some(start), [Mark::default(); 2]);
        let mut out = vec![];
        for l in ["2026-12-06 ERROR boom\n", "  at a()\n", "  at b()\n", "2026-12-06 INFO ok\n"] {
            a.push(Source::Stderr, &entry(T0, l), &mut out);
        }
        assert_eq!(messages(&out), ["2026-12-06 ERROR boom\n  at a()\n  at b()"]);
        assert_eq!(out[0].end.rank, 3);
        a.flush_idle(1_796_576_400_000_000_001 + IDLE_FLUSH_NS / 2, &mut out);
        assert_eq!(out.len(), 1);
        a.flush_idle(1_796_576_400_000_000_001 + IDLE_FLUSH_NS, &mut out);
        assert_eq!(messages(&out)[1], "2026-12-06 INFO ok");
    }

    #[test]
    fn resuming_skips_the_entries_already_shipped_and_nothing_else() {
        let lines = ["a\n", "b\n", "c\n"];
        let stamps = [T0, T0, "2026-12-06T17:00:00.000000002Z"];
        let mut first = Assembler::new(None, [Mark::default(); 2]);
        let mut out = vec![];
        for (t, l) in stamps.iter().zip(lines) {
            first.push(Source::Stdout, &entry(t, l), &mut out);
        }
        let shipped = out[1].end;
        let mut again = Assembler::new(None, [shipped, Mark::default()]);
        let mut rest = vec![];
        for (t, l) in stamps.iter().zip(lines) {
            again.push(Source::Stdout, &entry(t, l), &mut rest);
        }
        again.push(Source::Stderr, &entry(T0, "e\n"), &mut rest);
        assert_eq!(messages(&rest), ["c", "e"]);
    }
}
