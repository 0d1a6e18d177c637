//! Docker's `local` log format, read without I/O. The file is a run of frames, each
//! `[u32 BE length][LogEntry protobuf][u32 BE length]`, where `LogEntry` is Docker's
//! logdriver message: `source` (1, string), `time_nano` (2, int64), `line` (3, bytes),
//! `partial` (4, bool) and `partial_log_metadata` (5, skipped here). A line is stored
//! without its newline; `partial` says Docker cut it there (a 16 KiB piece of a longer
//! line, or what a container printed last without a newline).
//!
//! The agent asks Docker for this driver (see `options::local_driver`) rather than
//! `json-file`: dockerd spends about a quarter less CPU writing a frame than a JSON line,
//! and reading one back is a few varints instead of unescaping.
//!
//! A frame whose two lengths disagree, or that claims more than [`MAX_FRAME`], is not
//! Docker's (a file cut by a crash, or damaged): [`Frames`] steps over it a byte at a
//! time until frames line up again, so damage costs the entries it touches and no more.

use super::assemble::Source;
pub use super::jsonfile::BadEntry;

/// Docker keeps a message to 1 MB (`local`'s `maxMsgLen`); with the entry's other fields
/// a frame is a little more. Anything larger is damage.
pub const MAX_FRAME: usize = 1_000_000 + 64 * 1024;

/// One entry of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub source: Source,
    pub ts_ns: i64,
    /// What the container printed, without the newline.
    pub line: &'a [u8],
    /// Docker cut the line here: no newline follows it.
    pub partial: bool,
}

/// What [`Frames`] finds at a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A frame's message.
    Message(&'a [u8]),
    /// Bytes that are no frame, skipped.
    Damage(usize),
}

/// The whole frames at the start of a buffer. [`Frames::consumed`] is then where the
/// first incomplete frame (still being written) begins.
pub struct Frames<'a> {
    buf: &'a [u8],
    at: usize,
    damaged: usize,
}

impl<'a> Frames<'a> {
    pub fn new(buf: &'a [u8]) -> Frames<'a> {
        Frames { buf, at: 0, damaged: 0 }
    }

    /// The bytes handed out so far, as messages or damage.
    pub fn consumed(&self) -> usize {
        self.at
    }

    /// What lies at `at`: a whole frame's length, `None` if it is not all written yet,
    /// `Err` if it is no frame. Docker writes `source` first, so a message begins with
    /// its key and a length of six (`stdout`, `stderr`): a length read from damage is
    /// seldom taken for a frame still being written.
    fn frame_at(&self, at: usize) -> Result<Option<usize>, ()> {
        let rest = &self.buf[at..];
        let Some(head) = rest.get(..4) else { return Ok(None) };
        let len = u32::from_be_bytes(head.try_into().expect("four bytes")) as usize;
        if !(2..=MAX_FRAME).contains(&len) {
            return Err(());
        }
        match rest.get(4..6) {
            None => return Ok(None),
            Some(start) if start != [0x0a, 6] => return Err(()),
            Some(_) => {}
        }
        let Some(tail) = rest.get(4 + len..8 + len) else { return Ok(None) };
        match tail == head {
            true => Ok(Some(len)),
            false => Err(()),
        }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        loop {
            match self.frame_at(self.at + self.damaged) {
                Err(()) => self.damaged += 1,
                // Not all written: it, and any damage before it, wait for the rest.
                Ok(None) => return None,
                // The damage ends where a frame begins; that frame comes next.
                Ok(Some(_)) if self.damaged > 0 => {
                    let n = std::mem::take(&mut self.damaged);
                    self.at += n;
                    return Some(Frame::Damage(n));
                }
                Ok(Some(len)) => {
                    let message = &self.buf[self.at + 4..self.at + 4 + len];
                    self.at += len + 8;
                    return Some(Frame::Message(message));
                }
            }
        }
    }
}

/// Parses one frame's message.
pub fn parse(message: &[u8]) -> Result<Entry<'_>, BadEntry> {
    let mut p = Reader { s: message };
    let (mut source, mut ts_ns, mut line, mut partial) = (None, None, &b""[..], false);
    while !p.s.is_empty() {
        let key = p.varint()?;
        match (key >> 3, key & 7) {
            (1, 2) => source = Some(p.bytes()?),
            (2, 0) => ts_ns = Some(p.varint()? as i64),
            (3, 2) => line = p.bytes()?,
            (4, 0) => partial = p.varint()? != 0,
            (_, 0) => {
                p.varint()?;
            }
            (_, 2) => {
                p.bytes()?;
            }
            (_, 1) => p.skip(8)?,
            (_, 5) => p.skip(4)?,
            _ => return Err(BadEntry::Shape),
        }
    }
    let source = match source {
        Some(b"stdout") => Source::Stdout,
        Some(b"stderr") => Source::Stderr,
        _ => return Err(BadEntry::Stream),
    };
    Ok(Entry { source, ts_ns: ts_ns.ok_or(BadEntry::Time)?, line, partial })
}

/// Protobuf's wire encoding, as much as `LogEntry` needs.
struct Reader<'a> {
    s: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, BadEntry> {
        let mut v = 0u64;
        for (i, &b) in self.s.iter().enumerate().take(10) {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.s = &self.s[i + 1..];
                return Ok(v);
            }
        }
        Err(BadEntry::Shape)
    }

    fn bytes(&mut self) -> Result<&'a [u8], BadEntry> {
        let len = usize::try_from(self.varint()?).map_err(|_| BadEntry::Shape)?;
        let (b, rest) = self.s.split_at_checked(len).ok_or(BadEntry::Shape)?;
        self.s = rest;
        Ok(b)
    }

    fn skip(&mut self, n: usize) -> Result<(), BadEntry> {
        self.s = self.s.get(n..).ok_or(BadEntry::Shape)?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A frame as Docker writes it (the metadata of a partial line included).
    pub(crate) fn frame(source: &str, ts_ns: i64, line: &[u8], partial: bool) -> Vec<u8> {
        fn varint(mut v: u64, out: &mut Vec<u8>) {
            while v >= 0x80 {
                out.push((v as u8) | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
        }
        let mut m = Vec::new();
        for (field, bytes) in [(1u64, source.as_bytes()), (3, line)] {
            varint(field << 3 | 2, &mut m);
            varint(bytes.len() as u64, &mut m);
            m.extend_from_slice(bytes);
            if field == 1 {
                m.push(2 << 3);
                varint(ts_ns as u64, &mut m);
            }
        }
        if partial {
            m.extend_from_slice(&[4 << 3, 1, 5 << 3 | 2, 5, 2 << 3 | 2, 1, b'x', 3 << 3, 1]);
        }
        let len = (m.len() as u32).to_be_bytes();
        [&len[..], &m, &len].concat()
    }

    #[test]
    fn frames_as_docker_writes_them() {
        // Written by Docker 27's `local` driver for `echo hello; echo err >&2`.
        let docker = [
            &b"\0\0\0\x17\x0a\x06stderr\x10\xfc\xc8\xf9\xe2\xbf\xd9\xbc\xf7\x18\x1a\x03err\0\0\0\x17"[..],
            b"\0\0\0\x19\x0a\x06stdout\x10\xdc\xb0\xfa\xe2\xbf\xd9\xbc\xf7\x18\x1a\x05hello\0\0\0\x19",
        ]
        .concat();
        let entries: Vec<Entry> = Frames::new(&docker)
            .map(|f| match f {
                Frame::Message(m) => parse(m).unwrap(),
                Frame::Damage(n) => panic!("damage of {n} bytes"),
            })
            .collect();
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].source, entries[0].line, entries[0].partial), (Source::Stderr, &b"err"[..], false));
        assert_eq!((entries[1].source, entries[1].line), (Source::Stdout, &b"hello"[..]));
        assert_eq!(entries[1].ts_ns, 1_796_640_259_293_747_292);
    }

    #[test]
    fn an_incomplete_frame_waits_and_a_partial_line_says_so() {
        let whole = [frame("stdout", 5, b"a", false), frame("stdout", 6, b"b", true)].concat();
        for cut in 0..whole.len() {
            let mut frames = Frames::new(&whole[..cut]);
            let n = frames.by_ref().count();
            let first = frame("stdout", 5, b"a", false).len();
            assert_eq!((n, frames.consumed()), if cut < first { (0, 0) } else { (1, first) }, "cut at {cut}");
        }
        let Some(Frame::Message(m)) = Frames::new(&whole).nth(1) else { panic!() };
        assert_eq!(parse(m).unwrap(), Entry { source: Source::Stdout, ts_ns: 6, line: b"b", partial: true });
    }

    #[test]
    fn damage_is_stepped_over_and_bad_messages_refused() {
        let good = frame("stderr", 7, b"after", false);
        let buf = [&b"\0\0\0\x05junk!\0\0\0\x06"[..], &[0xff; 6], &good].concat();
        let found: Vec<Frame> = Frames::new(&buf).collect();
        assert_eq!(found, vec![Frame::Damage(buf.len() - good.len()), Frame::Message(&good[4..good.len() - 4])]);
        for bad in
            [&b"\x0a\x06stdin!\x10\x01"[..], b"\x0a\x06stdout", b"\x0a\x09stdout", b"\x0a\x06stdout\x10", b"\x0f"]
        {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
