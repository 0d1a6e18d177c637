//! Unstructured patterns: terms, quoted phrases and `%regex%`, each optionally prefixed
//! by `-` (must not occur) or `?` (one of the `?` terms must occur). A term matches as a
//! substring, case-sensitively; the needles are built once so that matching an event
//! allocates nothing.

use memchr::memmem::Finder;

use super::value::regex;
use super::PatternError;

#[derive(Debug, Clone, Default)]
pub(super) struct Terms {
    required: Vec<Term>,
    excluded: Vec<Term>,
    any_of: Vec<Term>,
}

// A pattern holds a handful of terms, so their size does not matter; the searcher stays
// inline rather than behind one more pointer on the per-event path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Term {
    Text { text: String, finder: Finder<'static> },
    Regex(regex::Regex),
}

impl Term {
    fn text(text: String) -> Term {
        let finder = Finder::new(text.as_bytes()).into_owned();
        Term::Text { text, finder }
    }

    fn occurs_in(&self, message: &str) -> bool {
        match self {
            Term::Text { finder, .. } => finder.find(message.as_bytes()).is_some(),
            Term::Regex(re) => re.is_match(message),
        }
    }
}

impl Terms {
    pub fn parse(source: &str) -> Result<Terms, PatternError> {
        let mut terms = Terms::default();
        let mut rest = source.trim_start();
        while !rest.is_empty() {
            let (kind, after) = match rest.as_bytes()[0] {
                // AWS's own example writes `"ERROR" - "Exiting"`: a lone `-` applies to
                // the next term.
                b @ (b'-' | b'?') => (b, rest[1..].trim_start()),
                _ => (b'+', rest),
            };
            if after.is_empty() {
                return Err(PatternError::Invalid(format!(
                    "Invalid filter pattern '{source}': '{}' is not followed by a term.",
                    kind as char
                )));
            }
            let (term, after) = match after.as_bytes()[0] {
                b'"' => {
                    let (text, after) = quoted(&after[1..], source)?;
                    (Term::text(text), after)
                }
                b'%' => {
                    let Some(end) = after[1..].find('%') else {
                        return Err(PatternError::Invalid(format!(
                            "Invalid filter pattern '{source}': a regular expression (%...%) is not closed."
                        )));
                    };
                    (Term::Regex(regex(&after[1..=end], source)?), &after[end + 2..])
                }
                _ => {
                    let end = after.find(char::is_whitespace).unwrap_or(after.len());
                    let word = &after[..end];
                    if !word.chars().all(|c| c.is_alphanumeric() || c == '_') {
                        return Err(PatternError::Invalid(format!(
                            "Invalid character(s) in term '{word}' of filter pattern '{source}': a term of other characters than letters, digits and _ goes in double quotes, such as \"{word}\"."
                        )));
                    }
                    (Term::text(word.to_string()), &after[end..])
                }
            };
            match kind {
                b'-' => terms.excluded.push(term),
                b'?' => terms.any_of.push(term),
                _ => terms.required.push(term),
            }
            rest = after.trim_start();
        }
        Ok(terms)
    }

    /// Every required term, no excluded one, and one of the `?` terms if there are any.
    pub fn matches(&self, message: &str) -> bool {
        self.required.iter().all(|t| t.occurs_in(message))
            && !self.excluded.iter().any(|t| t.occurs_in(message))
            && (self.any_of.is_empty() || self.any_of.iter().any(|t| t.occurs_in(message)))
    }

    /// The required terms and phrases that are plain text; `?` terms are alternatives and
    /// regexes are not literals, so neither is listed.
    pub fn required_literals(&self) -> Vec<&str> {
        self.required
            .iter()
            .filter_map(|t| match t {
                Term::Text { text, .. } if !text.is_empty() => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// The phrase up to the closing quote (a backslash keeps the next character as it is),
/// and the text after it.
fn quoted<'a>(text: &'a str, source: &str) -> Result<(String, &'a str), PatternError> {
    let mut phrase = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((phrase, &text[i + 1..])),
            '\\' => phrase.extend(chars.next().map(|(_, c)| c)),
            c => phrase.push(c),
        }
    }
    Err(PatternError::Invalid(format!("Invalid filter pattern '{source}': a quoted phrase is not closed.")))
}
