//! JSON patterns, `{ $.a.b[0] = "x" && ($.n > 5 || $.f IS TRUE) }`: conditions on the
//! values selectors point at, combined with `&&` (binding tighter) and `||`, grouped by
//! parentheses. An event that is not JSON matches no JSON pattern, and a selector that
//! leads to nothing, an object or an array fails every comparison (`=` and `!=` alike).

use super::lex::Cursor;
use super::selected::{Found, Step, Tree};
use super::value::Comparison;
use super::PatternError;

/// A parsed JSON pattern: the expression, and its selectors as one tree so that an event
/// is read once for all of them.
#[derive(Debug, Clone)]
pub(super) struct Json {
    expr: Expr,
    tree: Tree,
    selectors: usize,
}

#[derive(Debug, Clone)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    /// A test on the value of the selector with this number.
    Test(usize, Test),
}

#[derive(Debug, Clone)]
enum Test {
    Compare(Comparison),
    IsTrue,
    IsFalse,
    IsNull,
    NotExists,
}

/// What ends a bare value: the blanks, and the characters that close or combine.
const VALUE_STOPS: &[char] = &[')', '}', '&', '|'];

impl Json {
    /// Parses `{ ... }`, braces included.
    pub fn parse(source: &str) -> Result<Json, PatternError> {
        let body = source.trim();
        let Some(inner) = body.strip_prefix('{').and_then(|b| b.strip_suffix('}')) else {
            return Err(PatternError::Invalid(format!(
                "Invalid filter pattern '{source}': a JSON pattern is enclosed in {{ and }}."
            )));
        };
        let mut cur = Cursor::new(source, inner);
        let mut selectors = Vec::new();
        let expr = or(&mut cur, &mut selectors)?;
        cur.skip_blanks();
        if !cur.at_end() {
            return Err(cur.invalid("expected && or || between conditions"));
        }
        let mut tree = Tree::default();
        for (id, steps) in selectors.iter().enumerate() {
            tree.insert(steps, id);
        }
        Ok(Json { expr, tree, selectors: selectors.len() })
    }

    pub fn matches(&self, message: &str) -> bool {
        // Only an object or an array can hold what a selector names; anything else is
        // refused before the parser runs.
        if !matches!(message.trim_start().as_bytes().first(), Some(b'{' | b'[')) {
            return false;
        }
        match self.tree.read(self.selectors, message) {
            Some(found) => self.expr.eval(&found),
            None => false,
        }
    }
}

impl Expr {
    fn eval(&self, found: &[Found]) -> bool {
        match self {
            Expr::Or(v) => v.iter().any(|e| e.eval(found)),
            Expr::And(v) => v.iter().all(|e| e.eval(found)),
            Expr::Test(id, test) => test.eval(&found[*id]),
        }
    }
}

impl Test {
    fn eval(&self, found: &Found) -> bool {
        match (self, found) {
            (Test::NotExists, found) => *found == Found::Missing,
            (Test::IsTrue, Found::Bool(b)) => *b,
            (Test::IsFalse, Found::Bool(b)) => !*b,
            (Test::IsNull, Found::Null) => true,
            (Test::Compare(c), Found::Text(s)) => c.test_text(s),
            (Test::Compare(c), Found::Number(n)) => n.as_f64().is_some_and(|f| c.test_number(f, &n.to_string())),
            (Test::Compare(c), Found::Bool(b)) => c.test_text(if *b { "true" } else { "false" }),
            _ => false,
        }
    }
}

/// The selectors met so far; a test refers to its selector by its place here.
type Selectors = Vec<Vec<Step>>;

fn or(cur: &mut Cursor, sels: &mut Selectors) -> Result<Expr, PatternError> {
    let mut v = vec![and(cur, sels)?];
    loop {
        cur.skip_blanks();
        if !cur.eat("||") {
            break;
        }
        v.push(and(cur, sels)?);
    }
    Ok(if v.len() == 1 { v.remove(0) } else { Expr::Or(v) })
}

fn and(cur: &mut Cursor, sels: &mut Selectors) -> Result<Expr, PatternError> {
    let mut v = vec![unary(cur, sels)?];
    loop {
        cur.skip_blanks();
        if !cur.eat("&&") {
            break;
        }
        v.push(unary(cur, sels)?);
    }
    Ok(if v.len() == 1 { v.remove(0) } else { Expr::And(v) })
}

fn unary(cur: &mut Cursor, sels: &mut Selectors) -> Result<Expr, PatternError> {
    cur.skip_blanks();
    if cur.eat("(") {
        cur.open()?;
        let e = or(cur, sels)?;
        cur.skip_blanks();
        if !cur.eat(")") {
            return Err(cur.invalid("a parenthesis is not closed"));
        }
        cur.close();
        return Ok(e);
    }
    let sel = selector(cur)?;
    cur.skip_blanks();
    let test = if let Some(op) = cur.operator() {
        cur.skip_blanks();
        let raw = cur.value(VALUE_STOPS)?;
        Test::Compare(Comparison::new(op, raw, cur.source)?)
    } else if cur.eat_keyword("IS") {
        cur.skip_blanks();
        if cur.eat_keyword("TRUE") {
            Test::IsTrue
        } else if cur.eat_keyword("FALSE") {
            Test::IsFalse
        } else if cur.eat_keyword("NULL") {
            Test::IsNull
        } else {
            return Err(cur.invalid("IS is followed by TRUE, FALSE or NULL"));
        }
    } else if cur.eat_keyword("NOT") {
        cur.skip_blanks();
        if !cur.eat_keyword("EXISTS") {
            return Err(cur.invalid("NOT is followed by EXISTS"));
        }
        Test::NotExists
    } else {
        return Err(
            cur.invalid("expected =, !=, <, >, <=, >=, IS TRUE, IS FALSE, IS NULL or NOT EXISTS after the selector")
        );
    };
    sels.push(sel);
    Ok(Expr::Test(sels.len() - 1, test))
}

/// `$`, then `.name` (a property name runs up to a blank, `.`, `[`, an operator or a
/// closing character) and `[N]` steps.
fn selector(cur: &mut Cursor) -> Result<Vec<Step>, PatternError> {
    if !cur.eat("$") {
        return Err(cur.invalid("a JSON condition starts with a selector such as $.eventType"));
    }
    let mut steps = Vec::new();
    loop {
        if cur.eat(".") {
            let name = cur.take_while(|c| !c.is_whitespace() && !".[]()=!<>&|{}\"".contains(c));
            if name.is_empty() {
                return Err(cur.invalid("a property name is missing after '.' in the selector"));
            }
            steps.push(Step::Key(name.to_string()));
        } else if cur.eat("[") {
            if cur.eat("*]") {
                return Err(PatternError::Unsupported(format!(
                    "Berth does not evaluate [*] in JSON selectors ('{}'); name an array element by its index, such as [0].",
                    cur.source
                )));
            }
            let digits = cur.take_while(|c| c.is_ascii_digit());
            let index = digits.parse().map_err(|_| cur.invalid("an array index [N] needs a number"))?;
            if !cur.eat("]") {
                return Err(cur.invalid("an array index [N] is not closed"));
            }
            steps.push(Step::Index(index));
        } else {
            break;
        }
    }
    if steps.is_empty() {
        return Err(cur.invalid("a selector names a property, such as $.eventType"));
    }
    Ok(steps)
}
