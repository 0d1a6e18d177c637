//! CloudWatch Logs' filter pattern language ("Filter pattern syntax for metric filters,
//! subscription filters, filter log events, and Live Tail"), in its three forms:
//!
//! - unstructured (`terms.rs`): terms of letters, digits and `_`, quoted phrases and
//!   `%regex%`, each required, or excluded with `-`, or one of several with `?`; matched
//!   as case-sensitive substrings of the message;
//! - JSON (`json.rs`), `{ ... }`: conditions on selected values of a JSON event;
//! - space-delimited (`delimited.rs`), `[ ... ]`: conditions on the fields of an event
//!   split on blanks.
//!
//! `value.rs` holds what the last two share: numbers, `*` wildcards and regexes on the
//! right of an operator. A pattern is parsed once; [`FilterPattern::matches`] runs per
//! event, reads the event as JSON only for a JSON pattern, and then builds only the
//! values its selectors name (`selected.rs`).
//!
//! Decisions where the documentation is silent, each on the side of matching rather than
//! refusing: a `%regex%` is any regular expression the `regex` crate reads (AWS refuses
//! `(`, `)` and multi-byte characters, and more than two regexes in a JSON or delimited
//! pattern); a JSON string or delimited field that reads as a number compares
//! numerically with a number; `=` and `!=` on a JSON boolean compare with `true` or
//! `false`; a JSON property name may hold any character but blanks and the pattern's
//! punctuation.
//!
//! Left out, refused as [`PatternError::Unsupported`]: `[*]` in JSON selectors, which
//! the syntax documentation does not define.

mod delimited;
mod json;
mod lex;
mod selected;
mod terms;
mod value;

#[cfg(test)]
mod tests;

/// Why a pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern is malformed; the caller must fix it.
    #[error("{0}")]
    Invalid(String),
    /// The pattern is of a kind Berth does not evaluate yet.
    #[error("{0}")]
    Unsupported(String),
}

/// A parsed pattern.
#[derive(Debug, Clone)]
pub struct FilterPattern {
    /// The pattern as given, trimmed: two patterns are equal when they were written alike.
    text: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Terms(terms::Terms),
    Json(json::Json),
    Delimited(delimited::Delimited),
}

impl Default for FilterPattern {
    /// The empty pattern, which matches every event.
    fn default() -> FilterPattern {
        FilterPattern { text: String::new(), kind: Kind::Terms(terms::Terms::default()) }
    }
}

impl PartialEq for FilterPattern {
    fn eq(&self, other: &FilterPattern) -> bool {
        self.text == other.text
    }
}

impl Eq for FilterPattern {}

impl FilterPattern {
    /// Reads a pattern: `{` starts a JSON pattern, `[` a space-delimited one, anything
    /// else is terms.
    pub fn parse(text: &str) -> Result<FilterPattern, PatternError> {
        let t = text.trim();
        let kind = match t.as_bytes().first() {
            Some(b'{') => Kind::Json(json::Json::parse(t)?),
            Some(b'[') => Kind::Delimited(delimited::Delimited::parse(t)?),
            _ => Kind::Terms(terms::Terms::parse(t)?),
        };
        Ok(FilterPattern { text: t.to_string(), kind })
    }

    /// Whether `message` matches the pattern.
    pub fn matches(&self, message: &str) -> bool {
        match &self.kind {
            Kind::Terms(t) => t.matches(message),
            Kind::Json(j) => j.matches(message),
            Kind::Delimited(d) => d.matches(message),
        }
    }

    /// Substrings every message that matches must contain, for prefiltering with an
    /// index; empty when there is no such substring or it cannot be known for certain.
    ///
    /// JSON patterns give none: a JSON string may write any character as a `\u` escape
    /// and a number has many spellings, so no text of the pattern is certain to appear
    /// verbatim in a matching event.
    pub fn required_literals(&self) -> Vec<&str> {
        match &self.kind {
            Kind::Terms(t) => t.required_literals(),
            Kind::Json(_) => Vec::new(),
            Kind::Delimited(d) => d.required_literals(),
        }
    }
}
