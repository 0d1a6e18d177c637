//! Docker's `json-file` log format, read without I/O: one JSON object per line,
//! `{"log":"line 1\n","stream":"stdout","time":"2026-12-06T17:05:42.1234567Z"}`.
//!
//! The agent reads the container's log file itself when it can (see `follow`), which
//! costs a fraction of what dockerd spends serving the same entries through its API.
//! Everything here is the shape Docker's `jsonlog` writer produces: `log` (absent when
//! empty), `stream`, an optional `attrs` object, and `time` in Go's RFC 3339 with
//! trailing zeros of the fraction removed. `log` is escaped as Go escapes it (`\n`,
//! `\u003c` for `<`, `\ufffd` for bytes that are not UTF-8, ...); [`unescape_into`] undoes
//! that. A line is parsed in two steps so that entries a resumed agent skips (already
//! shipped) cost a scan, not a copy.

use memchr::memchr2;

use super::assemble::{docker_time, Source};

/// One entry of the file, its text still escaped as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEntry<'a> {
    pub source: Source,
    pub ts_ns: i64,
    /// The `log` string's contents between its quotes, JSON-escaped.
    pub escaped: &'a [u8],
}

/// Why a line is not an entry (a line cut short by a crash, or not Docker's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadEntry {
    #[error("not a JSON object of Docker's json-file log")]
    Shape,
    #[error("an unknown stream")]
    Stream,
    #[error("a time Docker does not write")]
    Time,
}

/// Parses one line of the file (without its newline).
pub fn parse(line: &[u8]) -> Result<RawEntry<'_>, BadEntry> {
    let mut p = Cursor { s: line, i: 0 };
    p.expect(b'{')?;
    let (mut log, mut stream, mut time) = (None, None, None);
    loop {
        let key = p.string()?;
        p.expect(b':')?;
        match key {
            b"log" => log = Some(p.string()?),
            b"stream" => stream = Some(p.string()?),
            b"time" => time = Some(p.string()?),
            _ => p.skip_value()?,
        }
        match p.next()? {
            b',' => continue,
            b'}' => break,
            _ => return Err(BadEntry::Shape),
        }
    }
    let source = match stream {
        Some(b"stdout") => Source::Stdout,
        Some(b"stderr") => Source::Stderr,
        _ => return Err(BadEntry::Stream),
    };
    let ts_ns = time.and_then(docker_time).ok_or(BadEntry::Time)?;
    Ok(RawEntry { source, ts_ns, escaped: log.unwrap_or_default() })
}

/// Appends the bytes a JSON string's escaped contents stand for to `out`. A `\u` escape
/// that is not a valid character (a lone surrogate) becomes U+FFFD, as Go decodes it.
pub fn unescape_into(escaped: &[u8], out: &mut Vec<u8>) {
    let mut rest = escaped;
    while let Some(at) = memchr::memchr(b'\\', rest) {
        out.extend_from_slice(&rest[..at]);
        rest = &rest[at + 1..];
        let Some((&c, after)) = rest.split_first() else { break };
        rest = after;
        let simple = match c {
            b'n' => Some(b'\n'),
            b't' => Some(b'\t'),
            b'r' => Some(b'\r'),
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        if c != b'u' {
            // Not JSON; kept as written rather than lost.
            out.extend_from_slice(&[b'\\', c]);
            continue;
        }
        let Some(hi) = hex4(rest) else {
            out.extend_from_slice(b"\\u");
            continue;
        };
        rest = &rest[4..];
        let ch = if (0xD800..0xDC00).contains(&hi) {
            // A high surrogate takes the low one that must follow it.
            match rest.strip_prefix(b"\\u").and_then(hex4) {
                Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                    rest = &rest[6..];
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                }
                _ => None,
            }
        } else {
            char::from_u32(hi)
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.unwrap_or(char::REPLACEMENT_CHARACTER).encode_utf8(&mut buf).as_bytes());
    }
    out.extend_from_slice(rest);
}

fn hex4(s: &[u8]) -> Option<u32> {
    let digits = s.get(..4)?;
    digits.iter().try_fold(0u32, |n, &d| Some(n * 16 + (d as char).to_digit(16)?))
}

/// A position in a line being parsed.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn next(&mut self) -> Result<u8, BadEntry> {
        self.skip_ws();
        let b = *self.s.get(self.i).ok_or(BadEntry::Shape)?;
        self.i += 1;
        Ok(b)
    }

    fn expect(&mut self, want: u8) -> Result<(), BadEntry> {
        if self.next()? == want {
            Ok(())
        } else {
            Err(BadEntry::Shape)
        }
    }

    /// A string's contents between its quotes, escapes left in.
    fn string(&mut self) -> Result<&'a [u8], BadEntry> {
        self.expect(b'"')?;
        let start = self.i;
        loop {
            let at = memchr2(b'"', b'\\', &self.s[self.i..]).ok_or(BadEntry::Shape)?;
            self.i += at;
            if self.s[self.i] == b'"' {
                self.i += 1;
                return Ok(&self.s[start..self.i - 1]);
            }
            // An escape: the character after the backslash is never the closing quote.
            self.i += 2;
            if self.i > self.s.len() {
                return Err(BadEntry::Shape);
            }
        }
    }

    /// Skips any JSON value (Docker's `attrs` is an object of strings).
    fn skip_value(&mut self) -> Result<(), BadEntry> {
        self.skip_ws();
        match self.s.get(self.i) {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{') | Some(b'[') => {
                let mut depth = 0usize;
                loop {
                    self.skip_ws();
                    match self.s.get(self.i).ok_or(BadEntry::Shape)? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth -= 1,
                        _ => {}
                    }
                    self.i += 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
            }
            Some(_) => {
                while self.s.get(self.i).is_some_and(|b| !matches!(b, b',' | b'}' | b']')) {
                    self.i += 1;
                }
                Ok(())
            }
            None => Err(BadEntry::Shape),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(escaped: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        unescape_into(escaped, &mut out);
        out
    }

    #[test]
    fn an_entry_as_docker_writes_it() {
        let line = br#"{"log":"line 1\n","stream":"stdout","time":"2026-12-06T17:00:00.5Z"}"#;
        let e = parse(line).unwrap();
        assert_eq!((e.source, e.ts_ns), (Source::Stdout, 1_796_576_400_500_000_000));
        assert_eq!(text(e.escaped), b"line 1\n");
    }

    #[test]
    fn attrs_an_empty_log_and_whole_seconds_are_read() {
        let line = br#"{"stream":"stderr","attrs":{"tag":"a\"}b","n":"1"},"time":"2026-12-06T17:00:00Z"}"#;
        let e = parse(line).unwrap();
        assert_eq!((e.source, e.ts_ns, e.escaped), (Source::Stderr, 1_796_576_400_000_000_000, &b""[..]));
    }

    #[test]
    fn lines_that_are_not_entries_are_refused_without_panicking() {
        for bad in [
            &br#"{"log":"x\n","stream":"stdout","time":"2026-12-06T17:0"#[..],
            br#"{"log":"x\n","stream":"stdin","time":"2026-12-06T17:00:00Z"}"#,
            br#"{"log":"x\n","stream":"stdout","time":"yesterday"}"#,
            br#"{"log":"x\"#,
            b"",
            b"{",
            br#"{"attrs":{"a":["#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn gos_escapes_are_undone() {
        assert_eq!(text(br#"a\u003cb\u003e \u0026 \"q\" \\ \/ \t\r\n"#), b"a<b> & \"q\" \\ / \t\r\n");
        assert_eq!(String::from_utf8(text(br#"\ufffd \u2028 \ud83d\ude00 \u00e9"#)).unwrap(), "\u{fffd} \u{2028} 😀 é");
        // A lone surrogate, a cut escape and an unknown one do not panic.
        assert_eq!(String::from_utf8(text(br#"\ud83dx"#)).unwrap(), "\u{fffd}x");
        assert_eq!(text(br#"\u12"#), b"\\u12");
        assert_eq!(text(br#"\q"#), b"\\q");
    }

    #[test]
    fn every_string_serde_writes_reads_back() {
        let samples = ["plain", "tab\tnew\nline", "<html> & \"quotes\" \\", "é 😀 \u{1} \u{7f} \u{2029}", ""];
        for s in samples {
            let line = format!(
                r#"{{"log":{},"stream":"stdout","time":"2026-12-06T17:00:00.000000001Z"}}"#,
                serde_json::to_string(s).unwrap()
            );
            let e = parse(line.as_bytes()).unwrap();
            assert_eq!(text(e.escaped), s.as_bytes(), "{line}");
            // Escaped as Go escapes `<`, `>` and `&`.
            let go = line.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026");
            assert_eq!(text(parse(go.as_bytes()).unwrap().escaped), s.as_bytes());
        }
    }
}
