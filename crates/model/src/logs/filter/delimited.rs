//! Space-delimited patterns, `[ip, user, ..., status_code = 4* && status_code != 403, bytes > 1000]`:
//! one pattern field per event field, `...` for any number of event fields, and on a
//! field conditions joined by `&&` (binding tighter) and `||`.
//!
//! An event splits on blanks, except that text between `"` and `"`, or `[` and `]`, is one
//! field (without its quotes or brackets), as AWS's examples split Apache access logs.
//! A condition names a field: the field of that name, or the field it is written on if
//! no field has the name (AWS's own example writes `status_code = 4* && bytes > 1000` as
//! one field).
//!
//! Matching backtracks over what each `...` covers. With two `...` or more, failed states
//! are remembered when every condition is on its own field, which keeps it polynomial;
//! a pattern with several `...` whose conditions name other fields can still take long
//! on events of many fields.

use super::lex::{Cursor, RawValue};
use super::value::Comparison;
use super::PatternError;

#[derive(Debug, Clone)]
pub(super) struct Delimited {
    elems: Vec<Elem>,
    fields: Vec<Field>,
    /// For each element, how many fields the elements from it on need.
    need: Vec<usize>,
    /// For each element, whether a `...` comes at or after it.
    open: Vec<bool>,
    /// Whether [`Delimited::place`] remembers failed states (see [`Delimited::matches`]).
    memoize: bool,
}

#[derive(Debug, Clone, Copy)]
enum Elem {
    Ellipsis,
    Field(usize),
}

#[derive(Debug, Clone)]
struct Field {
    /// Alternatives (`||`) of conjunctions (`&&`); none means any value.
    any_of: Vec<Vec<Condition>>,
    /// Whether every condition is on this field itself, so it can be checked as soon as
    /// the field is placed.
    local: bool,
}

#[derive(Debug, Clone)]
struct Condition {
    name: String,
    /// The field the condition tests, resolved from `name` once all fields are known.
    target: usize,
    cmp: Comparison,
}

/// What ends a bare value or a field name.
const STOPS: &[char] = &[',', ']', '&', '|'];

impl Delimited {
    /// Parses `[ ... ]`, brackets included.
    pub fn parse(source: &str) -> Result<Delimited, PatternError> {
        let body = source.trim();
        let Some(inner) = body.strip_prefix('[').and_then(|b| b.strip_suffix(']')) else {
            return Err(PatternError::Invalid(format!(
                "Invalid filter pattern '{source}': a space-delimited pattern is enclosed in [ and ]."
            )));
        };
        if inner.trim().is_empty() {
            return Err(PatternError::Invalid(format!(
                "Invalid filter pattern '{source}': a space-delimited pattern names at least one field, such as [ip, user, ...]."
            )));
        }
        let mut cur = Cursor::new(source, inner);
        let mut elems = Vec::new();
        let mut fields: Vec<(Option<String>, Vec<Vec<Condition>>)> = Vec::new();
        loop {
            cur.skip_blanks();
            if cur.eat("...") || cur.eat("…") {
                elems.push(Elem::Ellipsis);
            } else {
                elems.push(Elem::Field(fields.len()));
                fields.push(field(&mut cur)?);
            }
            cur.skip_blanks();
            if cur.at_end() {
                break;
            }
            if !cur.eat(",") {
                return Err(cur.invalid("expected , between fields"));
            }
        }
        let names: Vec<Option<String>> = fields.iter().map(|(n, _)| n.clone()).collect();
        let fields: Vec<Field> = fields
            .into_iter()
            .enumerate()
            .map(|(own, (_, mut any_of))| {
                for c in any_of.iter_mut().flatten() {
                    c.target = names.iter().position(|n| n.as_deref() == Some(c.name.as_str())).unwrap_or(own);
                }
                let local = any_of.iter().flatten().all(|c| c.target == own);
                Field { any_of, local }
            })
            .collect();
        let mut need = vec![0; elems.len() + 1];
        let mut open = vec![false; elems.len() + 1];
        for i in (0..elems.len()).rev() {
            need[i] = need[i + 1] + usize::from(matches!(elems[i], Elem::Field(_)));
            open[i] = open[i + 1] || matches!(elems[i], Elem::Ellipsis);
        }
        let ellipses = elems.iter().filter(|e| matches!(e, Elem::Ellipsis)).count();
        let memoize = ellipses >= 2 && fields.iter().all(|f| f.local);
        Ok(Delimited { elems, fields, need, open, memoize })
    }

    pub fn matches(&self, message: &str) -> bool {
        let tokens = split(message);
        let mut placed = vec![0; self.fields.len()];
        // With two `...` or more, the same (element, token) state is reached along many
        // paths; when every field checks itself, a state's outcome depends on nothing
        // else, so failures are remembered and the search stays polynomial.
        let mut failed =
            if self.memoize { vec![false; (self.elems.len() + 1) * (tokens.len() + 1)] } else { Vec::new() };
        self.place(0, 0, &tokens, &mut placed, &mut failed)
    }

    /// Values every matching event contains: those of plain `=` text conditions on
    /// fields without alternatives (an event field is a verbatim slice of the event).
    pub fn required_literals(&self) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|f| f.any_of.len() == 1)
            .flat_map(|f| f.any_of[0].iter().filter_map(|c| c.cmp.exact_text()))
            .collect()
    }

    /// Places elements from `e` on tokens from `t` on, backtracking over what each `...`
    /// covers; fields whose conditions name other fields are checked once all are placed.
    fn place(&self, e: usize, t: usize, tokens: &[&str], placed: &mut [usize], failed: &mut [bool]) -> bool {
        let left = tokens.len() - t;
        if left < self.need[e] || (!self.open[e] && left != self.need[e]) {
            return false;
        }
        let state = e * (tokens.len() + 1) + t;
        if failed.get(state) == Some(&true) {
            return false;
        }
        let found = match self.elems.get(e) {
            None => self.fields.iter().filter(|f| !f.local).all(|f| f.holds(tokens, placed)),
            Some(Elem::Ellipsis) => (t..=tokens.len()).any(|k| self.place(e + 1, k, tokens, placed, failed)),
            Some(&Elem::Field(f)) => {
                placed[f] = t;
                let field = &self.fields[f];
                (!field.local || field.holds(tokens, placed)) && self.place(e + 1, t + 1, tokens, placed, failed)
            }
        };
        if !found {
            if let Some(slot) = failed.get_mut(state) {
                *slot = true;
            }
        }
        found
    }
}

impl Field {
    fn holds(&self, tokens: &[&str], placed: &[usize]) -> bool {
        self.any_of.is_empty()
            || self.any_of.iter().any(|all| all.iter().all(|c| c.cmp.test_text(tokens[placed[c.target]])))
    }
}

/// One pattern field: empty (a trailing comma), a bare name, or conditions. Returns the
/// field's name (that of its first condition) and its conditions.
fn field(cur: &mut Cursor) -> Result<(Option<String>, Vec<Vec<Condition>>), PatternError> {
    if matches!(cur.peek(), None | Some(',')) {
        return Ok((None, Vec::new()));
    }
    let first = name(cur)?;
    cur.skip_blanks();
    let Some(op) = cur.operator() else {
        return Ok((Some(first), Vec::new()));
    };
    let mut any_of = vec![vec![condition(cur, first.clone(), op)?]];
    loop {
        cur.skip_blanks();
        let or = if cur.eat("&&") {
            false
        } else if cur.eat("||") {
            true
        } else {
            break;
        };
        cur.skip_blanks();
        let n = name(cur)?;
        cur.skip_blanks();
        let Some(op) = cur.operator() else {
            return Err(cur.invalid(&format!("expected an operator such as = or > after '{n}'")));
        };
        let c = condition(cur, n, op)?;
        if or {
            any_of.push(vec![c]);
        } else if let Some(last) = any_of.last_mut() {
            last.push(c);
        }
    }
    Ok((Some(first), any_of))
}

fn name(cur: &mut Cursor) -> Result<String, PatternError> {
    let n = cur.take_while(|c| !c.is_whitespace() && !STOPS.contains(&c) && !"=!<>\"%".contains(c));
    if n.is_empty() {
        return Err(cur.invalid("expected a field name"));
    }
    Ok(n.to_string())
}

fn condition(cur: &mut Cursor, name: String, op: super::lex::Op) -> Result<Condition, PatternError> {
    cur.skip_blanks();
    let raw: RawValue = cur.value(STOPS)?;
    Ok(Condition { name, target: 0, cmp: Comparison::new(op, raw, cur.source)? })
}

/// The event's fields: runs of non-blank characters, or the text between `"` and `"` or
/// `[` and `]` (to the end of the event if the closing one is missing).
fn split(message: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = message;
    loop {
        rest = rest.trim_start();
        let Some(first) = rest.bytes().next() else { break };
        let close = match first {
            b'"' => Some('"'),
            b'[' => Some(']'),
            _ => None,
        };
        match close {
            Some(c) => {
                let inner = &rest[1..];
                let end = inner.find(c).unwrap_or(inner.len());
                out.push(&inner[..end]);
                rest = inner.get(end + 1..).unwrap_or("");
            }
            None => {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                out.push(&rest[..end]);
                rest = &rest[end..];
            }
        }
    }
    out
}

#[cfg(test)]
pub(super) fn split_for_tests(message: &str) -> Vec<&str> {
    split(message)
}
