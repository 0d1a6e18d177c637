//! The wildcard patterns of the policy language, compiled once when a policy is parsed:
//! actions (`ecs:Describe*`, case-insensitive), resources and `ArnLike` values (ARNs matched
//! segment by segment), and string condition values, with policy variables (`${aws:username}`).
//!
//! Matching never allocates unless the pattern holds a policy variable, and never builds a
//! regex: most patterns people write are `*`, an exact string or a prefix, and those have
//! their own fast paths.

/// Where a pattern's variables get their values: the request context.
pub(crate) trait Variables {
    /// The value of `key` (lower-cased) for substitution, or `None` when the request has none.
    fn variable(&self, key: &str) -> Option<&str>;
}

/// How the text of a pattern is read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Syntax {
    /// `*` and `?` are wildcards (`StringLike`, actions, resources); otherwise literal.
    pub wildcards: bool,
    /// `${...}` is a policy variable (policy version 2012-10-17 only).
    pub variables: bool,
    /// Literals are lower-cased; the text is then compared ASCII case-insensitively.
    pub fold: bool,
}

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Lit(Box<str>),
    /// `*`: any run of characters, including none.
    Star,
    /// `?`: exactly one character.
    One,
    /// `${key}` or `${key, 'default'}`; the key is lower-cased.
    Var {
        key: Box<str>,
        default: Option<Box<str>>,
    },
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// `*`: everything.
    Any,
    Exact(Box<str>),
    /// `abc*`.
    Prefix(Box<str>),
    /// Wildcards somewhere other than at the end.
    Glob(Box<[Piece]>),
    /// Holds a policy variable: resolved against the request, then matched as a glob.
    Template(Box<[Piece]>),
}

impl Pattern {
    pub(crate) fn compile(text: &str, syntax: Syntax) -> Pattern {
        let pieces = pieces(text, syntax);
        if pieces.iter().any(|p| matches!(p, Piece::Var { .. })) {
            return Pattern::Template(pieces.into());
        }
        match pieces.as_slice() {
            [Piece::Star] => Pattern::Any,
            [] => Pattern::Exact("".into()),
            [Piece::Lit(s)] => Pattern::Exact(s.clone()),
            [Piece::Lit(s), Piece::Star] => Pattern::Prefix(s.clone()),
            _ => Pattern::Glob(pieces.into()),
        }
    }

    /// Whether `text` matches. `fold` must be the `Syntax::fold` the pattern was compiled with.
    pub(crate) fn matches(&self, text: &str, fold: bool, vars: &dyn Variables) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(p) => eq(text, p, fold),
            Pattern::Prefix(p) => text.len() >= p.len() && eq_bytes(&text.as_bytes()[..p.len()], p.as_bytes(), fold),
            Pattern::Glob(pieces) => glob(pieces.len(), |i| pieces[i].tok(), text, fold),
            Pattern::Template(pieces) => match resolve(pieces, vars) {
                Some(toks) => glob(toks.len(), |i| toks[i], text, fold),
                None => false,
            },
        }
    }
}

/// A resource or `ArnLike` pattern: an ARN is compared segment by segment (partition,
/// service, region, account, resource), so a wildcard in one segment never spans a colon
/// into the next, except in the resource segment, which runs to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArnPattern {
    Any,
    Segments(Box<[Pattern; 5]>),
    /// Fewer than six segments: matched as one string.
    Whole(Pattern),
}

impl ArnPattern {
    pub(crate) fn compile(text: &str, variables: bool) -> ArnPattern {
        let syntax = Syntax { wildcards: true, variables, fold: false };
        if text == "*" {
            return ArnPattern::Any;
        }
        let parts = split_arn(text, variables);
        match parts {
            Some([_, partition, service, region, account, resource]) => ArnPattern::Segments(Box::new([
                Pattern::compile(partition, syntax),
                Pattern::compile(service, syntax),
                Pattern::compile(region, syntax),
                Pattern::compile(account, syntax),
                Pattern::compile(resource, syntax),
            ])),
            None => ArnPattern::Whole(Pattern::compile(text, syntax)),
        }
    }

    pub(crate) fn matches(&self, arn: &str, vars: &dyn Variables) -> bool {
        match self {
            ArnPattern::Any => true,
            ArnPattern::Whole(p) => p.matches(arn, false, vars),
            ArnPattern::Segments(segments) => {
                let mut parts = arn.splitn(6, ':');
                if parts.next() != Some("arn") {
                    return false;
                }
                segments.iter().all(|p| parts.next().is_some_and(|s| p.matches(s, false, vars)))
            }
        }
    }
}

/// `arn:partition:service:region:account:resource`, splitting on the colons that are not
/// inside a policy variable (`${aws:username}` has one).
fn split_arn(text: &str, variables: bool) -> Option<[&str; 6]> {
    let mut out = [""; 6];
    let (mut n, mut start, mut depth) = (0, 0, 0usize);
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() && n < 5 {
        match bytes[i] {
            b'$' if variables && bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth > 0 => depth -= 1,
            b':' if depth == 0 => {
                out[n] = &text[start..i];
                n += 1;
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if n < 5 || out[0] != "arn" {
        return None;
    }
    out[5] = &text[start..];
    Some(out)
}

/// A piece as the matcher sees it: literal text borrowed from the pattern or the request.
#[derive(Debug, Clone, Copy)]
enum Tok<'a> {
    Lit(&'a str),
    Star,
    One,
}

impl Piece {
    fn tok(&self) -> Tok<'_> {
        match self {
            Piece::Lit(s) => Tok::Lit(s),
            Piece::Star => Tok::Star,
            Piece::One => Tok::One,
            // Only templates hold variables, and they are resolved before matching.
            Piece::Var { .. } => Tok::Lit(""),
        }
    }
}

/// Substitutes the variables. A value from the request is literal text even if it holds
/// `*` or `?`. A variable the request has no value for (and no default) matches nothing.
fn resolve<'a>(pieces: &'a [Piece], vars: &'a dyn Variables) -> Option<Vec<Tok<'a>>> {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Var { key, default } => vars.variable(key).or(default.as_deref()).map(Tok::Lit),
            other => Some(other.tok()),
        })
        .collect()
}

fn pieces(text: &str, syntax: Syntax) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let flush = |lit: &mut String, out: &mut Vec<Piece>| {
        if !lit.is_empty() {
            out.push(Piece::Lit(std::mem::take(lit).into()));
        }
    };
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if syntax.variables && rest.starts_with("${") {
            if let Some(end) = rest.find('}') {
                let inner = &rest[2..end];
                rest = &rest[end + 1..];
                match inner {
                    "*" | "?" | "$" => lit.push_str(inner),
                    _ => {
                        flush(&mut lit, &mut out);
                        out.push(variable(inner));
                    }
                }
                continue;
            }
        }
        rest = &rest[c.len_utf8()..];
        match c {
            '*' if syntax.wildcards => {
                flush(&mut lit, &mut out);
                if out.last() != Some(&Piece::Star) {
                    out.push(Piece::Star);
                }
            }
            '?' if syntax.wildcards => {
                flush(&mut lit, &mut out);
                out.push(Piece::One);
            }
            c if syntax.fold => lit.push(c.to_ascii_lowercase()),
            c => lit.push(c),
        }
    }
    flush(&mut lit, &mut out);
    out
}

/// `key` or `key, 'default value'`.
fn variable(inner: &str) -> Piece {
    let (key, default) = match inner.split_once(',') {
        Some((key, default)) => {
            let d = default.trim();
            let d = d.strip_prefix('\'').and_then(|d| d.strip_suffix('\'')).unwrap_or(d);
            (key, Some(d.into()))
        }
        None => (inner, None),
    };
    Piece::Var { key: key.trim().to_ascii_lowercase().into(), default }
}

fn eq(text: &str, pattern: &str, fold: bool) -> bool {
    eq_bytes(text.as_bytes(), pattern.as_bytes(), fold)
}

fn eq_bytes(text: &[u8], pattern: &[u8], fold: bool) -> bool {
    if fold {
        text.eq_ignore_ascii_case(pattern)
    } else {
        text == pattern
    }
}

/// Glob matching over `n` tokens: the classic single-backtrack algorithm (on a mismatch,
/// the last `*` absorbs one more character), linear in practice, never recursive.
fn glob<'p>(n: usize, tok: impl Fn(usize) -> Tok<'p>, text: &str, fold: bool) -> bool {
    let bytes = text.as_bytes();
    let (mut p, mut t) = (0usize, 0usize);
    // Token after the last star, and the text position that star has absorbed up to.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < n {
            match tok(p) {
                Tok::Star => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                Tok::One if t < bytes.len() => {
                    t += char_len(text, t);
                    p += 1;
                    continue;
                }
                Tok::Lit(s) if bytes.len() - t >= s.len() && eq_bytes(&bytes[t..t + s.len()], s.as_bytes(), fold) => {
                    t += s.len();
                    p += 1;
                    continue;
                }
                _ => {}
            }
        } else if t == bytes.len() {
            return true;
        }
        match star {
            Some((sp, st)) if st < bytes.len() => {
                let next = st + char_len(text, st);
                star = Some((sp, next));
                p = sp;
                t = next;
            }
            _ => return false,
        }
    }
}

/// The length in bytes of the character starting at byte `i` of `text`.
fn char_len(text: &str, i: usize) -> usize {
    text[i..].chars().next().map_or(1, char::len_utf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vars(&'static [(&'static str, &'static str)]);
    impl Variables for Vars {
        fn variable(&self, key: &str) -> Option<&str> {
            self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
        }
    }
    const NONE: Vars = Vars(&[]);
    const LIKE: Syntax = Syntax { wildcards: true, variables: true, fold: false };
    const ACTION: Syntax = Syntax { wildcards: true, variables: false, fold: true };

    fn like(p: &str, t: &str) -> bool {
        Pattern::compile(p, LIKE).matches(t, false, &NONE)
    }

    #[test]
    fn compiles_common_shapes_to_fast_paths() {
        assert_eq!(Pattern::compile("*", LIKE), Pattern::Any);
        assert_eq!(Pattern::compile("**", LIKE), Pattern::Any);
        assert_eq!(Pattern::compile("ecs:Describe*", ACTION), Pattern::Prefix("ecs:describe".into()));
        assert_eq!(Pattern::compile("ecs:ListClusters", ACTION), Pattern::Exact("ecs:listclusters".into()));
        assert!(matches!(Pattern::compile("a*b", LIKE), Pattern::Glob(_)));
        assert!(matches!(Pattern::compile("a${aws:username}", LIKE), Pattern::Template(_)));
    }

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("batch*", "batchgetimage", true),
            ("*image", "batchgetimage", true),
            ("b?tch*", "batchgetimage", true),
            ("*", "", true),
            ("batch", "batchgetimage", false),
            ("put*", "batchgetimage", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a*b", "abab", true),
            ("?", "é", true),
            ("??", "é", false),
            ("*é*", "caféx", true),
            ("", "", true),
            ("", "a", false),
        ] {
            assert_eq!(like(p, t), want, "{p} vs {t}");
        }
    }

    #[test]
    fn actions_fold_case_and_literal_syntax_keeps_wildcards_literal() {
        let p = Pattern::compile("ECS:describe*", ACTION);
        assert!(p.matches("ecs:DescribeClusters", true, &NONE));
        assert!(!p.matches("ecs:ListClusters", true, &NONE));
        let exact = Pattern::compile("a*", Syntax { wildcards: false, variables: false, fold: false });
        assert!(exact.matches("a*", false, &NONE));
        assert!(!exact.matches("ab", false, &NONE));
    }

    #[test]
    fn variables_substitute_literally_with_defaults_and_escapes() {
        let vars = Vars(&[("aws:username", "alice"), ("aws:principaltag/team", "a*")]);
        let p = Pattern::compile("home/${aws:username}/*", LIKE);
        assert!(p.matches("home/alice/x", false, &vars));
        assert!(!p.matches("home/bob/x", false, &vars));
        assert!(!p.matches("home/alice/x", false, &NONE), "an absent variable matches nothing");
        let d = Pattern::compile("home/${aws:username, 'guest'}", LIKE);
        assert!(d.matches("home/guest", false, &NONE));
        // A value holding a wildcard is literal text.
        let t = Pattern::compile("${aws:PrincipalTag/team}", LIKE);
        assert!(t.matches("a*", false, &vars));
        assert!(!t.matches("ab", false, &vars));
        let esc = Pattern::compile("a${*}b${?}${$}", LIKE);
        assert!(esc.matches("a*b?$", false, &NONE));
        assert!(!esc.matches("axb?$", false, &NONE));
        // Without variable syntax (policy version 2008-10-17) the text is literal.
        let old = Pattern::compile("${aws:username}", Syntax { variables: false, ..LIKE });
        assert!(old.matches("${aws:username}", false, &vars));
    }

    #[test]
    fn arns_match_segment_by_segment() {
        let vars = Vars(&[("aws:username", "alice")]);
        let m = |p: &str, t: &str| ArnPattern::compile(p, true).matches(t, &vars);
        assert!(m("arn:aws:ecs:*:123456789012:service/*", "arn:aws:ecs:us-east-1:123456789012:service/c/s"));
        assert!(!m("arn:aws:ecs:*:123456789012:service/*", "arn:aws:ecs:us-east-1:999999999999:service/c/s"));
        // A wildcard in the region does not swallow the account.
        assert!(!m("arn:aws:ecs:*:*:123456789012", "arn:aws:ecs:us-east-1:123456789012:service/c/s"));
        assert!(m("arn:aws:ecs:*:*:*", "arn:aws:ecs:us-east-1:123456789012:service/c/s"));
        assert!(m("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a:b/c"));
        assert!(m("arn:aws:iam::123456789012:user/${aws:username}", "arn:aws:iam::123456789012:user/alice"));
        assert!(!m("arn:aws:iam::123456789012:user/${aws:username}", "arn:aws:iam::123456789012:user/bob"));
        assert!(m("*", "anything"));
        assert!(!m("arn:aws:ecs:*:*:*", "*"));
        assert!(m("arn:aws:ecs:*", "arn:aws:ecs:us-east-1:1:cluster/x"), "short patterns match as one string");
        assert!(!m("arn:aws:ecs:us-east-?:*:*", "arn:aws:ecs:us-east-10:1:cluster/x"));
    }
}
