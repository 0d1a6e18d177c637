//! ALB's wildcard patterns: `*` matches any run of characters (also none), `?` exactly one.

use serde::{Deserialize, Serialize};

/// A pattern with `*` and `?` wildcards, matched whole against a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Glob {
    pattern: String,
    case_insensitive: bool,
}

impl Glob {
    /// A pattern checked by the caller's rules (allowed characters, length).
    pub fn new(pattern: &str, case_insensitive: bool) -> Self {
        let pattern = if case_insensitive { pattern.to_ascii_lowercase() } else { pattern.to_string() };
        Glob { pattern, case_insensitive }
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `value` matches the whole pattern. Linear in practice: one backtracking
    /// point (the last `*`), so a hostile pattern cannot make matching exponential.
    pub fn matches(&self, value: &str) -> bool {
        let p = self.pattern.as_bytes();
        let v = value.as_bytes();
        let fold = |b: u8| if self.case_insensitive { b.to_ascii_lowercase() } else { b };
        let (mut pi, mut vi) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while vi < v.len() {
            if pi < p.len() && (p[pi] == b'?' || p[pi] == fold(v[vi])) && p[pi] != b'*' {
                if p[pi] == b'?' {
                    // `?` is one character, which may be several bytes in UTF-8.
                    vi += utf8_len(v[vi]);
                } else {
                    vi += 1;
                }
                pi += 1;
            } else if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, vi));
                pi += 1;
            } else if let Some((sp, sv)) = star {
                let next = sv + utf8_len(v[sv]);
                star = Some((sp, next));
                pi = sp + 1;
                vi = next;
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&b| b == b'*')
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(p: &str, v: &str) -> bool {
        Glob::new(p, false).matches(v)
    }

    #[test]
    fn wildcards() {
        assert!(m("/img/*", "/img/a/b.png"));
        assert!(m("/img/*", "/img/"));
        assert!(!m("/img/*", "/im"));
        assert!(m("/a?c", "/abc"));
        assert!(!m("/a?c", "/ac"));
        assert!(m("*.example.com", "www.example.com"));
        assert!(!m("*.example.com", "example.com"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("/é?", "/éü"));
        assert!(!m("/API", "/api"));
        assert!(Glob::new("WWW.Example.com", true).matches("www.EXAMPLE.com"));
    }

    proptest! {
        #[test]
        fn a_literal_pattern_matches_only_itself(a in "[a-z/.]{0,12}", b in "[a-z/.]{0,12}") {
            prop_assert_eq!(m(&a, &b), a == b);
        }

        #[test]
        fn star_matches_any_infix(pre in "[a-z]{0,5}", mid in "[a-z/]{0,10}", post in "[a-z]{0,5}") {
            let pattern = format!("{pre}*{post}");
            let value = format!("{pre}{mid}{post}");
            prop_assert!(m(&pattern, &value));
        }
    }
}
