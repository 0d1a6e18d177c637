//! A cursor over a pattern's text, shared by the JSON and space-delimited parsers: the
//! few lexical rules they have in common (blanks, quoted strings, `%regex%`, bare values).

use super::PatternError;

pub(super) struct Cursor<'a> {
    /// The whole pattern, for error messages.
    pub source: &'a str,
    rest: &'a str,
    /// How many parentheses are open, bounded so that parsing cannot exhaust the stack.
    depth: usize,
}

/// The most parentheses a JSON pattern may nest (AWS bounds a pattern to 1024 bytes).
const MAX_DEPTH: usize = 64;

impl<'a> Cursor<'a> {
    pub fn new(source: &'a str, body: &'a str) -> Cursor<'a> {
        Cursor { source, rest: body, depth: 0 }
    }

    /// Enters a parenthesis; refused past [`MAX_DEPTH`].
    pub fn open(&mut self) -> Result<(), PatternError> {
        if self.depth == MAX_DEPTH {
            return Err(self.invalid("parentheses nest too deep"));
        }
        self.depth += 1;
        Ok(())
    }

    pub fn close(&mut self) {
        self.depth -= 1;
    }

    pub fn skip_blanks(&mut self) {
        self.rest = self.rest.trim_start();
    }

    pub fn at_end(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    /// Consumes `token` if the text continues with it.
    pub fn eat(&mut self, token: &str) -> bool {
        match self.rest.strip_prefix(token) {
            Some(r) => {
                self.rest = r;
                true
            }
            None => false,
        }
    }

    /// Consumes a word of ASCII letters if it equals `word`, ignoring case.
    pub fn eat_keyword(&mut self, word: &str) -> bool {
        let len = self.rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        if self.rest[..len].eq_ignore_ascii_case(word) {
            self.rest = &self.rest[len..];
            true
        } else {
            false
        }
    }

    /// The longest prefix of characters for which `keep` holds (possibly empty).
    pub fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let end = self.rest.find(|c: char| !keep(c)).unwrap_or(self.rest.len());
        let (taken, rest) = self.rest.split_at(end);
        self.rest = rest;
        taken
    }

    /// A value as written after an operator: `"quoted"` (a backslash keeps the next
    /// character as it is), `%regex%`, or a bare run of characters up to a blank or one
    /// of `stops`.
    pub fn value(&mut self, stops: &[char]) -> Result<RawValue, PatternError> {
        if self.eat("\"") {
            let rest = self.rest;
            let mut text = String::new();
            let mut chars = rest.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        self.rest = &rest[i + 1..];
                        return Ok(RawValue::Quoted(text));
                    }
                    '\\' => text.extend(chars.next().map(|(_, c)| c)),
                    c => text.push(c),
                }
            }
            return Err(self.invalid("a quoted value is not closed"));
        }
        if self.eat("%") {
            let Some(end) = self.rest.find('%') else {
                return Err(self.invalid("a regular expression (%...%) is not closed"));
            };
            let text = self.rest[..end].to_string();
            self.rest = &self.rest[end + 1..];
            return Ok(RawValue::Regex(text));
        }
        let bare = self.take_while(|c| !c.is_whitespace() && !stops.contains(&c));
        if bare.is_empty() {
            return Err(self.invalid("a value is missing after the operator"));
        }
        Ok(RawValue::Bare(bare.to_string()))
    }

    /// A comparison operator, longest first so that `<=` is not read as `<`.
    pub fn operator(&mut self) -> Option<Op> {
        const OPS: [(&str, Op); 6] =
            [("!=", Op::Ne), ("<=", Op::Le), (">=", Op::Ge), ("=", Op::Eq), ("<", Op::Lt), (">", Op::Gt)];
        OPS.into_iter().find(|(token, _)| self.eat(token)).map(|(_, op)| op)
    }

    /// What follows the cursor, shortened, to say where a problem is.
    pub fn near(&self) -> String {
        let shown: String = self.rest.chars().take(20).collect();
        if shown.is_empty() {
            "at the end".into()
        } else {
            format!("at '{shown}'")
        }
    }

    pub fn invalid(&self, problem: &str) -> PatternError {
        PatternError::Invalid(format!("Invalid filter pattern '{}': {problem} ({}).", self.source, self.near()))
    }
}

/// A value as written in the pattern, before it is read as a number, text or regex.
pub(super) enum RawValue {
    Quoted(String),
    Regex(String),
    Bare(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}
