//! CloudWatch Logs' filter pattern language, as far as Berth understands it: terms
//! (letters, digits, `_`), quoted phrases, `-term` to exclude and `?term` for any of.
//! Matching is on substrings and case-sensitive, as AWS's is. JSON patterns (`{ ... }`)
//! and space-delimited ones (`[ ... ]`) are recognised and refused as not yet supported.

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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilterPattern {
    required: Vec<String>,
    excluded: Vec<String>,
    any_of: Vec<String>,
}

impl FilterPattern {
    pub fn parse(text: &str) -> Result<FilterPattern, PatternError> {
        let t = text.trim();
        if t.starts_with('{') {
            return Err(PatternError::Unsupported(
                "Berth does not evaluate JSON filter patterns ({ ... }) yet; use terms or quoted phrases.".into(),
            ));
        }
        if t.starts_with('[') {
            return Err(PatternError::Unsupported(
                "Berth does not evaluate space-delimited filter patterns ([ ... ]) yet; use terms or quoted phrases."
                    .into(),
            ));
        }
        let mut p = FilterPattern::default();
        let mut chars = t.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let Some(&first) = chars.peek() else { break };
            let kind = match first {
                '-' | '?' => {
                    chars.next();
                    first
                }
                _ => '+',
            };
            let term = if chars.next_if_eq(&'"').is_some() {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(PatternError::Invalid(format!(
                                "Invalid filter pattern '{text}': a quoted phrase is not closed."
                            )))
                        }
                        Some('"') => break,
                        Some('\\') => s.extend(chars.next()),
                        Some(c) => s.push(c),
                    }
                }
                s
            } else {
                let mut s = String::new();
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    s.push(c);
                }
                if s.is_empty() || !s.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    return Err(PatternError::Invalid(format!(
                        "Invalid character(s) in term '{s}' of filter pattern '{text}': put terms with characters other than letters, digits and _ in double quotes."
                    )));
                }
                s
            };
            match kind {
                '-' => p.excluded.push(term),
                '?' => p.any_of.push(term),
                _ => p.required.push(term),
            }
        }
        Ok(p)
    }

    /// Whether `message` matches: every required term, no excluded one, and one of the
    /// `?` terms if there are any.
    pub fn matches(&self, message: &str) -> bool {
        self.required.iter().all(|t| message.contains(t.as_str()))
            && !self.excluded.iter().any(|t| message.contains(t.as_str()))
            && (self.any_of.is_empty() || self.any_of.iter().any(|t| message.contains(t.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_from_the_filter_syntax_documentation() {
        let events = [
            "[ERROR] Caught IllegalArgumentException",
            "[ERROR] Unhandled Exception",
            "INFO ok",
            "WARN Exception thrown",
        ];
        let cases: &[(&str, &[usize])] = &[
            ("", &[0, 1, 2, 3]),
            ("ERROR", &[0, 1]),
            ("ERROR Exception", &[0, 1]),
            ("\"Unhandled Exception\"", &[1]),
            ("ERROR -Unhandled", &[0]),
            ("?ERROR ?WARN", &[0, 1, 3]),
            ("error", &[]),
            ("Exception -ERROR", &[3]),
        ];
        for (pattern, want) in cases {
            let p = FilterPattern::parse(pattern).unwrap();
            let got: Vec<usize> = events.iter().enumerate().filter(|(_, e)| p.matches(e)).map(|(i, _)| i).collect();
            assert_eq!(&got, want, "pattern {pattern:?}");
        }
        assert!(matches!(FilterPattern::parse("\"open"), Err(PatternError::Invalid(_))));
        assert!(matches!(FilterPattern::parse("a.b"), Err(PatternError::Invalid(_))));
        assert!(matches!(FilterPattern::parse("{ $.level = \"error\" }"), Err(PatternError::Unsupported(_))));
        assert!(matches!(FilterPattern::parse("[ip, user]"), Err(PatternError::Unsupported(_))));
    }
}
