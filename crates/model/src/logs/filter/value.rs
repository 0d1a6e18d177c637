//! The right-hand side of a JSON or space-delimited condition and how it compares with a
//! value taken from an event: numbers numerically, text with `*` wildcards at either end,
//! `%regex%` with a regular expression.

use super::lex::{Op, RawValue};
use super::PatternError;

/// What a condition compares with.
#[derive(Debug, Clone)]
pub(super) enum Operand {
    /// A number as AWS's grammar writes it (sign, decimals, exponent).
    Number(f64),
    Text(Glob),
    Regex(regex::Regex),
}

/// Text with AWS's wildcard rule: a `*` at the start or the end matches any text there;
/// a `*` anywhere else is itself ("Ev*ent will only match the actual string Ev*ent").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Glob {
    Any,
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
}

/// A comparison: an operator and what it compares with.
#[derive(Debug, Clone)]
pub(super) struct Comparison {
    pub op: Op,
    pub operand: Operand,
}

impl Comparison {
    /// Builds the comparison; `<`, `>`, `<=` and `>=` need a number.
    pub fn new(op: Op, raw: RawValue, source: &str) -> Result<Comparison, PatternError> {
        let operand = match raw {
            RawValue::Quoted(text) => Operand::Text(Glob::new(&text)),
            RawValue::Regex(text) => Operand::Regex(regex(&text, source)?),
            RawValue::Bare(text) => match parse_number(&text) {
                Some(value) => Operand::Number(value),
                None => Operand::Text(Glob::new(&text)),
            },
        };
        let ordered = matches!(op, Op::Lt | Op::Gt | Op::Le | Op::Ge);
        if ordered && !matches!(operand, Operand::Number(_)) {
            return Err(PatternError::Invalid(format!(
                "Invalid filter pattern '{source}': <, >, <= and >= compare with a number, such as 500, -1.5 or 10e3."
            )));
        }
        Ok(Comparison { op, operand })
    }

    /// Compares with a value that is text in the event (a delimited field, a JSON string).
    /// Text that reads as a number compares numerically with a number.
    pub fn test_text(&self, text: &str) -> bool {
        match &self.operand {
            // Text that is no number differs from every number.
            Operand::Number(value) => match parse_number(text) {
                Some(n) => compare(self.op, n, *value),
                None => self.op == Op::Ne,
            },
            Operand::Text(glob) => (self.op == Op::Eq) == glob.matches(text),
            Operand::Regex(re) => (self.op == Op::Eq) == re.is_match(text),
        }
    }

    /// Compares with a JSON number; text and regex operands see it as written.
    pub fn test_number(&self, number: f64, written: &str) -> bool {
        match &self.operand {
            Operand::Number(value) => compare(self.op, number, *value),
            _ => self.test_text(written),
        }
    }

    /// The text every matching value equals, if the comparison is a plain `=` with text
    /// (no wildcard, no number that could be written another way, no regex).
    pub fn exact_text(&self) -> Option<&str> {
        match (&self.op, &self.operand) {
            (Op::Eq, Operand::Text(Glob::Exact(t))) if !t.is_empty() && parse_number(t).is_none() => Some(t),
            _ => None,
        }
    }
}

impl Glob {
    pub fn new(text: &str) -> Glob {
        if text == "*" || text == "**" {
            return Glob::Any;
        }
        match (text.strip_prefix('*'), text.strip_suffix('*')) {
            (Some(_), Some(_)) => Glob::Contains(text[1..text.len() - 1].to_string()),
            (Some(rest), None) => Glob::Suffix(rest.to_string()),
            (None, Some(rest)) => Glob::Prefix(rest.to_string()),
            (None, None) => Glob::Exact(text.to_string()),
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        match self {
            Glob::Any => true,
            Glob::Exact(t) => text == t,
            Glob::Prefix(t) => text.starts_with(t.as_str()),
            Glob::Suffix(t) => text.ends_with(t.as_str()),
            Glob::Contains(t) => text.contains(t.as_str()),
        }
    }
}

fn compare(op: Op, left: f64, right: f64) -> bool {
    match op {
        Op::Eq => left == right,
        Op::Ne => left != right,
        Op::Lt => left < right,
        Op::Gt => left > right,
        Op::Le => left <= right,
        Op::Ge => left >= right,
    }
}

/// A number in the documented grammar: an optional sign, digits with an optional decimal
/// part (or a decimal part alone), and an optional exponent `e`/`E` with its own sign.
/// Rust's `f64` parser alone would also take `inf` and `NaN`, which are text here.
pub(super) fn parse_number(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let mut mantissa = digits(&mut i);
    if b.get(i) == Some(&b'.') {
        i += 1;
        mantissa += digits(&mut i);
    }
    if mantissa == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    text.parse().ok()
}

/// A `%...%` regular expression. Matching is unanchored, as AWS's is (`%AUTHORIZED%`
/// matches "UNAUTHORIZED"); `^` and `$` anchor.
pub(super) fn regex(text: &str, source: &str) -> Result<regex::Regex, PatternError> {
    if text.is_empty() {
        return Err(PatternError::Invalid(format!(
            "Invalid filter pattern '{source}': the regular expression %% is empty."
        )));
    }
    regex::RegexBuilder::new(text).size_limit(1 << 20).build().map_err(|e| {
        PatternError::Invalid(format!("Invalid filter pattern '{source}': invalid regular expression %{text}%: {e}"))
    })
}
