//! The text log's fields: whatever a caller put into a value stays on its own line.
//!
//! Log lines carry strings that callers chose (names, error messages quoting their input,
//! header values). tracing-subscriber's text format writes `%` values and messages as
//! they are, so a newline in a request's member would start a line of the caller's own
//! making, and an escape sequence would be obeyed by the terminal showing the log.
//! [`EscapedFields`] formats fields as the default format does and escapes, in every
//! value and message, the control characters (C0, DEL, C1) and the Unicode characters
//! that break or reorder lines. The format's own colours are written around the fields,
//! not through them, so they stay. The JSON format needs none of this: JSON strings are
//! escaped.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::FormatFields;

/// The text format's fields, with control characters in values escaped.
#[derive(Debug, Default)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = Escaping(DefaultVisitor::new(writer, true));
        fields.record(&mut visitor);
        visitor.0.finish()
    }
}

/// Hands every value to the default visitor as already-escaped text.
struct Escaping<'a>(DefaultVisitor<'a>);

impl Visit for Escaping<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.record_debug(field, &Escaped(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.record_debug(field, &Escaped(&format_args!("{value}")));
        } else {
            // The default visitor quotes a string field with `Debug`, which escapes it.
            self.0.record_str(field, value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.record_debug(field, &Escaped(&format_args!("{}", Chain(value))));
    }
}

/// An error and its sources, `outer: inner: ...`, as anyhow's `{:#}` writes them.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// Writes its value's `Debug` form with control characters escaped.
struct Escaped<'a>(&'a dyn fmt::Debug);

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        write!(EscapingWriter(f), "{:?}", self.0)
    }
}

struct EscapingWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Runs of ordinary characters are written in one piece.
        let mut rest = s;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| must_escape(c)) {
            self.0.write_str(&rest[..at])?;
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{{{:x}}}", u32::from(c))?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// Control characters (C0 with newline and ESC, DEL, C1 with NEL and CSI), the Unicode
/// line and paragraph separators, and the bidirectional overrides and isolates, which
/// make a line read differently from what it holds.
fn must_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::{Arc, Mutex};

    /// The text log of `f`'s events, formatted as `berth` formats it (without time).
    fn log_of(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .without_time()
            .fmt_fields(EscapedFields)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn values_messages_and_span_fields_cannot_start_a_line() {
        let evil = "x\n2026-01-01T00:00:00Z  INFO forged\r\u{1b}[31m\u{7}\u{85}\u{2028}\u{202e}";
        let escaped = r"x\n2026-01-01T00:00:00Z  INFO forged\r\u{1b}[31m\u{7}\u{85}\u{2028}\u{202e}";
        let error = std::io::Error::other(evil);
        let log = log_of(|| {
            let span = tracing::info_span!("request", target = %evil);
            let _entered = span.enter();
            tracing::info!(display = %evil, debug = ?evil, string = evil, error = &error as &dyn std::error::Error, "{evil}");
        });
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(log.ends_with('\n'));
        assert!(!log.chars().any(|c| c != '\n' && must_escape(c)), "{log:?}");
        assert!(log.contains(&format!("request{{target={escaped}}}")), "{log}");
        assert!(log.contains(&format!(": {escaped} display={escaped} debug=\"{escaped}\"")), "{log}");
        assert!(log.contains(&format!("string=\"{escaped}\" error={escaped}")), "{log}");
    }

    #[test]
    fn ordinary_text_is_written_as_the_default_format_writes_it() {
        let log = log_of(|| tracing::info!(code = "X", n = 3, path = %"/a b\\c", "request refused: é ü 日本"));
        assert!(log.trim_end().ends_with(r#"request refused: é ü 日本 code="X" n=3 path=/a b\c"#), "{log}");
    }
}
