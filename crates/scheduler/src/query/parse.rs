//! Text to [`Expr`]: a lexer that keeps every token's byte offset, and a recursive-descent
//! parser that checks each predicate against its subject so errors name where they are.
//!
//! Grammar (`not` binds tightest, then `and`, then `or`):
//!
//! ```text
//! expr      = and ( ("or" | "||") and )*
//! and       = unary ( ("and" | "&&") unary )*
//! unary     = ("not" | "!") unary | "(" expr ")" | predicate
//! predicate = subject operator [ literal | list ]
//! list      = "[" literal ("," literal)* "]"   -- or with "(" ")"
//! literal   = word | "..." | '...'
//! ```
//!
//! The guide writes argument lists in brackets (`in [us-east-1a, us-east-1b]`); the ECS
//! console and older examples use parentheses, so both are accepted. Quoted literals have
//! no escapes: a literal containing one kind of quote is written in the other. An
//! unquoted word ends at whitespace or at any of `( ) [ ] , ' " = ! < > & |`, so a regular
//! expression using those (`(t2|t3)\..*`) must be quoted.

use super::date::parse_date;
use super::{number, Argument, Expr, Literal, Operator, Pattern, Predicate, Subject};
use crate::PlacementError;

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;

/// Parses a cluster query language expression.
pub fn parse_expression(s: &str) -> Result<Expr, PlacementError> {
    let tokens = lex(s)?;
    let mut p = Parser { tokens, next: 0, end: s.len(), depth: 0 };
    if p.tokens.is_empty() {
        return Err(PlacementError::at(0, "the expression is empty"));
    }
    let expr = p.or()?;
    match p.peek() {
        None => Ok(expr),
        Some(t) => Err(PlacementError::at(t.at, format!("expected `and`, `or` or the end, found {}", t.kind))),
    }
}

/// Bytes that may appear in an unquoted word.
pub(super) fn is_word_byte(b: u8) -> bool {
    !b.is_ascii_whitespace() && !b"()[],'\"=!<>&|".contains(&b)
}

#[derive(Debug, Clone, PartialEq)]
enum Kind<'a> {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    /// A symbolic comparison operator (`==`, `!exists`, ...).
    Op(Operator),
    And,
    Or,
    Not,
    Word(&'a str),
    Quoted(&'a str),
}

#[derive(Debug, Clone)]
struct Token<'a> {
    kind: Kind<'a>,
    at: usize,
}

impl std::fmt::Display for Kind<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::LParen => f.write_str("`(`"),
            Kind::RParen => f.write_str("`)`"),
            Kind::LBracket => f.write_str("`[`"),
            Kind::RBracket => f.write_str("`]`"),
            Kind::Comma => f.write_str("`,`"),
            Kind::Op(op) => write!(f, "`{}`", op.symbol()),
            Kind::And => f.write_str("`&&`"),
            Kind::Or => f.write_str("`||`"),
            Kind::Not => f.write_str("`!`"),
            Kind::Word(w) => write!(f, "`{w}`"),
            Kind::Quoted(q) => write!(f, "the literal \"{q}\""),
        }
    }
}

fn lex(s: &str) -> Result<Vec<Token<'_>>, PlacementError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let at = i;
        let next = b.get(i + 1).copied();
        let (kind, len) = match c {
            b'(' => (Kind::LParen, 1),
            b')' => (Kind::RParen, 1),
            b'[' => (Kind::LBracket, 1),
            b']' => (Kind::RBracket, 1),
            b',' => (Kind::Comma, 1),
            b'"' | b'\'' => match b[i + 1..].iter().position(|&q| q == c) {
                // The quote bytes are ASCII, so the slice bounds are char boundaries.
                Some(n) => (Kind::Quoted(&s[i + 1..i + 1 + n]), n + 2),
                None => return Err(PlacementError::at(at, "unterminated quoted literal")),
            },
            b'=' => match next {
                Some(b'=') => (Kind::Op(Operator::Equals), 2),
                Some(b'~') => (Kind::Op(Operator::Matches), 2),
                _ => return Err(PlacementError::at(at, "unexpected `=` (write `==` or `equals`)")),
            },
            b'!' => match next {
                Some(b'=') => (Kind::Op(Operator::NotEquals), 2),
                Some(b'~') => (Kind::Op(Operator::NotMatches), 2),
                _ => {
                    let word = word_at(b, i + 1);
                    match &s[i + 1..i + 1 + word] {
                        "exists" => (Kind::Op(Operator::NotExists), 1 + word),
                        "in" => (Kind::Op(Operator::NotIn), 1 + word),
                        _ => (Kind::Not, 1),
                    }
                }
            },
            b'>' if next == Some(b'=') => (Kind::Op(Operator::GreaterThanEqual), 2),
            b'>' => (Kind::Op(Operator::GreaterThan), 1),
            b'<' if next == Some(b'=') => (Kind::Op(Operator::LessThanEqual), 2),
            b'<' => (Kind::Op(Operator::LessThan), 1),
            b'&' if next == Some(b'&') => (Kind::And, 2),
            b'|' if next == Some(b'|') => (Kind::Or, 2),
            b'&' | b'|' => {
                let doubled = if c == b'&' { "`&&`" } else { "`||`" };
                return Err(PlacementError::at(at, format!("unexpected `{}` (write {doubled})", c as char)));
            }
            _ => {
                let n = word_at(b, i);
                (Kind::Word(&s[i..i + n]), n)
            }
        };
        out.push(Token { kind, at });
        i += len;
    }
    Ok(out)
}

/// The length of the unquoted word starting at `i` (0 if none starts there).
fn word_at(b: &[u8], i: usize) -> usize {
    b[i..].iter().take_while(|&&c| is_word_byte(c)).count()
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    next: usize,
    /// The byte offset reported for "unexpected end".
    end: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.next)
    }

    fn bump(&mut self) -> Option<Token<'a>> {
        let t = self.tokens.get(self.next).cloned();
        self.next += 1;
        t
    }

    /// The offset of the next token, or of the end of the text.
    fn here(&self) -> usize {
        self.peek().map_or(self.end, |t| t.at)
    }

    fn found(&self) -> String {
        self.peek().map_or_else(|| "the end".to_owned(), |t| t.kind.to_string())
    }

    /// Consumes a boolean operator written as a word (any case) or as its symbol.
    fn eat(&mut self, keyword: &str, symbol: &Kind<'_>) -> bool {
        let hit = match self.peek().map(|t| &t.kind) {
            Some(Kind::Word(w)) => w.eq_ignore_ascii_case(keyword),
            Some(k) => k == symbol,
            None => false,
        };
        if hit {
            self.next += 1;
        }
        hit
    }

    fn eat_kind(&mut self, kind: &Kind<'_>) -> bool {
        let hit = self.peek().is_some_and(|t| t.kind == *kind);
        if hit {
            self.next += 1;
        }
        hit
    }

    fn or(&mut self) -> Result<Expr, PlacementError> {
        let mut left = self.and()?;
        while self.eat("or", &Kind::Or) {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, PlacementError> {
        let mut left = self.unary()?;
        while self.eat("and", &Kind::And) {
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, PlacementError> {
        if self.depth >= MAX_DEPTH {
            return Err(PlacementError::at(self.here(), format!("the expression nests deeper than {MAX_DEPTH}")));
        }
        self.depth += 1;
        let result = self.unary_inner();
        self.depth -= 1;
        result
    }

    fn unary_inner(&mut self) -> Result<Expr, PlacementError> {
        if self.eat("not", &Kind::Not) {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat_kind(&Kind::LParen) {
            let inner = self.or()?;
            if !self.eat_kind(&Kind::RParen) {
                return Err(PlacementError::at(self.here(), format!("expected `)`, found {}", self.found())));
            }
            return Ok(inner);
        }
        self.predicate().map(Expr::Test)
    }

    fn predicate(&mut self) -> Result<Predicate, PlacementError> {
        let at = self.here();
        let subject = match self.peek().map(|t| &t.kind) {
            Some(Kind::Word(w)) => subject(w, at)?,
            _ => {
                let found = self.found();
                return Err(PlacementError::at(
                    at,
                    format!("expected a subject such as `attribute:name`, found {found}"),
                ));
            }
        };
        self.next += 1;
        let op_at = self.here();
        let operator = match self.peek().map(|t| &t.kind) {
            Some(Kind::Op(op)) => *op,
            Some(Kind::Word(w)) => match Operator::ALL.into_iter().find(|op| w.eq_ignore_ascii_case(op.word())) {
                Some(op) => op,
                None => {
                    return Err(PlacementError::at(
                        op_at,
                        format!("expected an operator after `{subject}`, found `{w}`"),
                    ))
                }
            },
            _ => {
                let found = self.found();
                return Err(PlacementError::at(
                    op_at,
                    format!("expected an operator after `{subject}`, found {found}"),
                ));
            }
        };
        self.next += 1;
        if !subject.accepts(operator) {
            return Err(PlacementError::at(
                op_at,
                format!("the operator `{}` is not valid for `{subject}`", operator.symbol()),
            ));
        }
        let argument = match operator {
            Operator::Exists | Operator::NotExists => Argument::None,
            Operator::In | Operator::NotIn => Argument::List(self.list(&subject)?),
            Operator::Matches | Operator::NotMatches => {
                let (text, at) = self.literal_text()?;
                match Pattern::new(text) {
                    Ok(pattern) => Argument::Pattern(pattern),
                    Err(e) => {
                        let why = e.to_string().lines().last().unwrap_or_default().trim().to_owned();
                        return Err(PlacementError::at(at, format!("invalid regular expression ({why})")));
                    }
                }
            }
            _ => Argument::One(self.literal(&subject)?),
        };
        Ok(Predicate { subject, operator, argument })
    }

    fn list(&mut self, subject: &Subject) -> Result<Vec<Literal>, PlacementError> {
        let close = match self.peek().map(|t| &t.kind) {
            Some(Kind::LBracket) => Kind::RBracket,
            Some(Kind::LParen) => Kind::RParen,
            _ => {
                let found = self.found();
                return Err(PlacementError::at(
                    self.here(),
                    format!("expected an argument list `[a, b]`, found {found}"),
                ));
            }
        };
        self.next += 1;
        let mut items = vec![self.literal(subject)?];
        loop {
            match self.bump() {
                Some(Token { kind: Kind::Comma, .. }) => items.push(self.literal(subject)?),
                Some(Token { kind, .. }) if kind == close => return Ok(items),
                other => {
                    let (at, found) = other.map_or((self.end, "the end".to_owned()), |t| (t.at, t.kind.to_string()));
                    return Err(PlacementError::at(at, format!("expected `,` or {close}, found {found}")));
                }
            }
        }
    }

    fn literal_text(&mut self) -> Result<(String, usize), PlacementError> {
        match self.peek().cloned() {
            Some(Token { kind: Kind::Word(w) | Kind::Quoted(w), at }) => {
                self.next += 1;
                Ok((w.to_owned(), at))
            }
            _ => Err(PlacementError::at(self.here(), format!("expected a value, found {}", self.found()))),
        }
    }

    /// A literal, with the typed form its subject compares by.
    fn literal(&mut self, subject: &Subject) -> Result<Literal, PlacementError> {
        let (text, at) = self.literal_text()?;
        let number = number(&text);
        let date = match subject {
            Subject::RegisteredAt => match parse_date(&text) {
                Some(d) => Some(d),
                None => {
                    return Err(PlacementError::at(
                        at,
                        format!("`{text}` is not a date such as 2018-06-18 or 2018-06-18T22:28:28Z"),
                    ))
                }
            },
            _ => None,
        };
        if *subject == Subject::RunningTasksCount && number.is_none() {
            return Err(PlacementError::at(at, format!("`{text}` is not a number")));
        }
        Ok(Literal { text, number, date })
    }
}

fn subject(word: &str, at: usize) -> Result<Subject, PlacementError> {
    Ok(match word {
        "agentConnected" => Subject::AgentConnected,
        "agentVersion" => Subject::AgentVersion,
        "ec2InstanceId" => Subject::Ec2InstanceId,
        "registeredAt" => Subject::RegisteredAt,
        "runningTasksCount" => Subject::RunningTasksCount,
        "task:group" => Subject::TaskGroup,
        _ => match word.strip_prefix("attribute:") {
            Some(name) if valid_attribute_name(name) => Subject::Attribute(name.to_owned()),
            Some(name) => {
                return Err(PlacementError::at(
                    at,
                    format!("`{name}` is not an attribute name (1 to 128 letters, digits, `-`, `_`, `/`, `\\` or `.`)"),
                ))
            }
            None => {
                return Err(PlacementError::at(
                    at,
                    format!(
                        "unknown subject `{word}` (expected attribute:<name>, task:group, agentConnected, \
                         agentVersion, ec2InstanceId, registeredAt or runningTasksCount)"
                    ),
                ))
            }
        },
    })
}

/// ECS's rule for attribute names: 1 to 128 letters, digits, hyphens, underscores,
/// forward or back slashes, or periods.
fn valid_attribute_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'\\' | b'.'))
}
