//! The ECS cluster query language: the typed expression tree, its evaluation against an
//! instance, and its canonical text form. Parsing lives in `query/parse.rs`.
//!
//! An expression is `subject operator [argument]`, combined with `and`/`&&`, `or`/`||`,
//! `not`/`!` and parentheses. Decisions where the ECS guide is silent, so that a reader of
//! a test knows they are deliberate:
//!
//! - A comparison needs its subject. An instance without the attribute (or whose attribute
//!   has no value, like a capability) fails every comparison, negated ones included: the
//!   guide's `attribute:stack != prod` "lists the instances with the custom attribute
//!   stack unless the value is prod", and `!in`, `!~` follow the same rule. Only
//!   `exists`/`!exists` look at presence alone.
//! - `task:group` is a set: a positive operator holds when some task on the instance
//!   satisfies it, a negated operator when none does, so `task:group != database` means
//!   "hosts no database task" (the same as the guide's `not(task:group == database)`).
//!   `exists` holds when the instance runs any task.
//! - `=~`/`matches` take a Java regular expression per the guide, matched against the
//!   whole value (Java's `String.matches`), so `t2.*` selects `t2.small` but not `xt2`.
//!   Rust's `regex` dialect stands in for Java's; lookaround and backreferences, which it
//!   lacks, are refused when the expression is parsed.
//! - Ordering compares numbers numerically when both sides are numbers, `agentVersion`
//!   compares dotted versions component by component (`1.9.0 < 1.14.5`), and anything
//!   else compares as text, byte by byte.
//! - `registeredAt` takes the four date forms the guide lists, all UTC unless they carry
//!   an offset. A bare date (`2018-02-13`) compares by calendar day, so `== 2018-02-13`
//!   selects every instance registered that day and `< 2018-02-13` those registered
//!   before it; a date with a time compares to the second.
//! - Named operators and boolean words are accepted in any letter case; subjects are
//!   case-sensitive, as the guide spells them.

mod date;
mod parse;

use std::cmp::Ordering;
use std::fmt;

use crate::Instance;

pub(crate) use date::DateArg;
pub use parse::parse_expression;

/// A parsed cluster query. Built only by [`parse_expression`], so every predicate in it
/// has an operator its subject accepts and an argument of the right form.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Test(Predicate),
}

/// One `subject operator [argument]` comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    subject: Subject,
    operator: Operator,
    argument: Argument,
}

/// What a predicate looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    AgentConnected,
    AgentVersion,
    /// `attribute:<name>`, built-in (`ecs.*`) or custom.
    Attribute(String),
    Ec2InstanceId,
    RegisteredAt,
    RunningTasksCount,
    /// `task:group`: the groups of the tasks on the instance.
    TaskGroup,
}

/// A comparison operator; each has a symbol and a word form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NotEquals,
    GreaterThan,
    GreaterThanEqual,
    LessThan,
    LessThanEqual,
    Exists,
    NotExists,
    In,
    NotIn,
    Matches,
    NotMatches,
}

#[derive(Debug, Clone, PartialEq)]
enum Argument {
    None,
    One(Literal),
    List(Vec<Literal>),
    Pattern(Pattern),
}

/// A literal argument, with the forms it was parsed into once so that evaluation against
/// thousands of instances does not parse it again.
#[derive(Debug, Clone, PartialEq)]
struct Literal {
    text: String,
    number: Option<f64>,
    /// Set only for `registeredAt`, which refuses a literal that is not a date.
    date: Option<DateArg>,
}

/// A compiled `matches` pattern; equal when written the same.
#[derive(Debug, Clone)]
struct Pattern {
    source: String,
    regex: regex::Regex,
    /// Set when the pattern is plain text, optionally followed by `.*` (the shape of
    /// every example in the guide, `t2.*`): then a comparison answers the same as the
    /// regex without running it.
    plain: Option<(String, bool)>,
}

impl Pattern {
    pub(crate) fn new(source: String) -> Result<Self, regex::Error> {
        // Java's String.matches must match the whole value; anchor the pattern.
        let regex = regex::Regex::new(&format!("^(?:{source})$"))?;
        let (text, any_tail) = match source.strip_suffix(".*") {
            Some(text) => (text, true),
            None => (source.as_str(), false),
        };
        let literal =
            text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'/' | b'@' | b' '));
        let plain = literal.then(|| (text.to_owned(), any_tail));
        Ok(Pattern { source, regex, plain })
    }

    fn is_match(&self, value: &str) -> bool {
        match &self.plain {
            // `.` matches any character but a newline, as in the regex.
            Some((text, true)) => value.strip_prefix(text.as_str()).is_some_and(|rest| !rest.contains('\n')),
            Some((text, false)) => value == text,
            None => self.regex.is_match(value),
        }
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Does `instance` satisfy `expr`?
pub fn eval(expr: &Expr, instance: &Instance) -> bool {
    expr.holds(instance)
}

impl Expr {
    pub(crate) fn holds(&self, facts: &impl Facts) -> bool {
        match self {
            Expr::And(a, b) => a.holds(facts) && b.holds(facts),
            Expr::Or(a, b) => a.holds(facts) || b.holds(facts),
            Expr::Not(e) => !e.holds(facts),
            Expr::Test(p) => p.holds(facts),
        }
    }

    /// Whether the value can change when tasks are placed on an instance: true when the
    /// expression looks at `task:group` or `runningTasksCount`.
    pub(crate) fn depends_on_tasks(&self) -> bool {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => a.depends_on_tasks() || b.depends_on_tasks(),
            Expr::Not(e) => e.depends_on_tasks(),
            Expr::Test(p) => matches!(p.subject, Subject::TaskGroup | Subject::RunningTasksCount),
        }
    }
}

impl Predicate {
    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    fn holds(&self, facts: &impl Facts) -> bool {
        let op = self.operator;
        if let Subject::TaskGroup = self.subject {
            return match op {
                Operator::Exists => facts.any_group(&mut |_| true),
                Operator::NotExists => !facts.any_group(&mut |_| true),
                _ if op.is_negated() => !facts.any_group(&mut |g| self.test(op.positive(), &Fact::Text(g))),
                _ => facts.any_group(&mut |g| self.test(op, &Fact::Text(g))),
            };
        }
        let fact = match &self.subject {
            Subject::Attribute(name) => facts.attribute(name).map(|value| value.map(Fact::Text)),
            Subject::AgentConnected => Some(Some(Fact::Text(if facts.agent_connected() { "true" } else { "false" }))),
            Subject::AgentVersion => Some(Some(Fact::Version(facts.agent_version()))),
            Subject::Ec2InstanceId => Some(Some(Fact::Text(facts.ec2_instance_id()))),
            Subject::RegisteredAt => Some(Some(Fact::Time(facts.registered_at()))),
            Subject::RunningTasksCount => Some(Some(Fact::Number(f64::from(facts.running_tasks_count())))),
            Subject::TaskGroup => unreachable!("handled above"),
        };
        match (op, fact) {
            (Operator::Exists, fact) => fact.is_some(),
            (Operator::NotExists, fact) => fact.is_none(),
            // A comparison without a value to compare fails, negated or not.
            (_, None | Some(None)) => false,
            (op, Some(Some(fact))) if op.is_negated() => !self.test(op.positive(), &fact),
            (op, Some(Some(fact))) => self.test(op, &fact),
        }
    }

    /// Applies a positive operator (never `exists` or a negation) to one value.
    fn test(&self, op: Operator, fact: &Fact) -> bool {
        match (&self.argument, op) {
            (Argument::One(lit), Operator::Equals) => fact.order(lit) == Some(Ordering::Equal),
            (Argument::One(lit), Operator::GreaterThan) => fact.order(lit) == Some(Ordering::Greater),
            (Argument::One(lit), Operator::GreaterThanEqual) => {
                matches!(fact.order(lit), Some(Ordering::Greater | Ordering::Equal))
            }
            (Argument::One(lit), Operator::LessThan) => fact.order(lit) == Some(Ordering::Less),
            (Argument::One(lit), Operator::LessThanEqual) => {
                matches!(fact.order(lit), Some(Ordering::Less | Ordering::Equal))
            }
            (Argument::List(lits), Operator::In) => lits.iter().any(|l| fact.order(l) == Some(Ordering::Equal)),
            (Argument::Pattern(p), Operator::Matches) => fact.with_text(|t| p.is_match(t)),
            _ => unreachable!("the parser pairs every operator with its argument form"),
        }
    }
}

impl Operator {
    /// All operators, for error messages and tests.
    pub const ALL: [Operator; 12] = [
        Operator::Equals,
        Operator::NotEquals,
        Operator::GreaterThan,
        Operator::GreaterThanEqual,
        Operator::LessThan,
        Operator::LessThanEqual,
        Operator::Exists,
        Operator::NotExists,
        Operator::In,
        Operator::NotIn,
        Operator::Matches,
        Operator::NotMatches,
    ];

    /// The symbol form, such as `>=`.
    pub fn symbol(self) -> &'static str {
        match self {
            Operator::Equals => "==",
            Operator::NotEquals => "!=",
            Operator::GreaterThan => ">",
            Operator::GreaterThanEqual => ">=",
            Operator::LessThan => "<",
            Operator::LessThanEqual => "<=",
            Operator::Exists => "exists",
            Operator::NotExists => "!exists",
            Operator::In => "in",
            Operator::NotIn => "!in",
            Operator::Matches => "=~",
            Operator::NotMatches => "!~",
        }
    }

    /// The word form, such as `greater_than_equal`.
    pub fn word(self) -> &'static str {
        match self {
            Operator::Equals => "equals",
            Operator::NotEquals => "not_equals",
            Operator::GreaterThan => "greater_than",
            Operator::GreaterThanEqual => "greater_than_equal",
            Operator::LessThan => "less_than",
            Operator::LessThanEqual => "less_than_equal",
            Operator::Exists => "exists",
            Operator::NotExists => "not_exists",
            Operator::In => "in",
            Operator::NotIn => "not_in",
            Operator::Matches => "matches",
            Operator::NotMatches => "not_matches",
        }
    }

    fn is_negated(self) -> bool {
        matches!(self, Operator::NotEquals | Operator::NotIn | Operator::NotMatches)
    }

    fn positive(self) -> Operator {
        match self {
            Operator::NotEquals => Operator::Equals,
            Operator::NotIn => Operator::In,
            Operator::NotMatches => Operator::Matches,
            other => other,
        }
    }
}

impl Subject {
    /// The operators the ECS guide lists as valid for this subject. The guide lists none
    /// for `attribute:` and `task:group`; they take every operator.
    pub fn accepts(&self, op: Operator) -> bool {
        use Operator::*;
        match self {
            Subject::AgentConnected | Subject::Ec2InstanceId => {
                matches!(op, Equals | NotEquals | In | NotIn | Matches | NotMatches)
            }
            Subject::AgentVersion | Subject::RegisteredAt | Subject::RunningTasksCount => {
                matches!(op, Equals | NotEquals | GreaterThan | GreaterThanEqual | LessThan | LessThanEqual)
            }
            Subject::Attribute(_) | Subject::TaskGroup => true,
        }
    }
}

/// One value of an instance, typed so that it compares the way its subject should.
enum Fact<'a> {
    Text(&'a str),
    Version(&'a str),
    Number(f64),
    /// Seconds since the epoch.
    Time(f64),
}

impl Fact<'_> {
    /// How this value orders against a literal; `None` when they do not compare.
    fn order(&self, lit: &Literal) -> Option<Ordering> {
        match self {
            Fact::Text(t) => match (lit.number, number(t)) {
                (Some(n), Some(m)) => m.partial_cmp(&n),
                _ => Some((*t).cmp(lit.text.as_str())),
            },
            Fact::Version(v) => Some(version_cmp(v, &lit.text).unwrap_or_else(|| (*v).cmp(lit.text.as_str()))),
            Fact::Number(x) => lit.number.and_then(|n| x.partial_cmp(&n)),
            Fact::Time(t) => lit.date.and_then(|d| d.order(*t)),
        }
    }

    fn with_text<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match self {
            Fact::Text(t) | Fact::Version(t) => f(t),
            Fact::Number(x) | Fact::Time(x) => f(&x.to_string()),
        }
    }
}

/// A literal that is a plain decimal number; `inf`, `NaN` and exponents stay text.
fn number(s: &str) -> Option<f64> {
    let plain = s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+'));
    if plain && s.bytes().any(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Compares dotted numeric versions, a missing component counting as 0 (`1.14` equals
/// `1.14.0`). `None` when either side is not such a version.
fn version_cmp(a: &str, b: &str) -> Option<Ordering> {
    let (mut xs, mut ys) = (a.split('.'), b.split('.'));
    loop {
        let (x, y) = match (xs.next(), ys.next()) {
            (None, None) => return Some(Ordering::Equal),
            (x, y) => (x.unwrap_or("0"), y.unwrap_or("0")),
        };
        let x: u64 = x.parse().ok()?;
        let y: u64 = y.parse().ok()?;
        match x.cmp(&y) {
            Ordering::Equal => continue,
            other => return Some(other),
        }
    }
}

/// What an expression can ask about an instance. The snapshot's [`Instance`] answers
/// directly; placement answers for an instance with the tasks it has placed so far.
pub(crate) trait Facts {
    /// `None` when the attribute is absent, `Some(None)` when it has no value.
    fn attribute(&self, name: &str) -> Option<Option<&str>>;
    /// Whether some task on the instance has a group for which `f` holds.
    fn any_group(&self, f: &mut dyn FnMut(&str) -> bool) -> bool;
    fn agent_connected(&self) -> bool;
    fn agent_version(&self) -> &str;
    fn ec2_instance_id(&self) -> &str;
    fn registered_at(&self) -> f64;
    fn running_tasks_count(&self) -> u32;
}

impl Facts for Instance {
    fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.attributes.get(name).map(|v| v.as_deref())
    }
    fn any_group(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.task_groups.iter().any(|g| f(g))
    }
    fn agent_connected(&self) -> bool {
        self.agent_connected
    }
    fn agent_version(&self) -> &str {
        &self.agent_version
    }
    fn ec2_instance_id(&self) -> &str {
        &self.ec2_instance_id
    }
    fn registered_at(&self) -> f64 {
        self.registered_at
    }
    fn running_tasks_count(&self) -> u32 {
        self.running_tasks_count
    }
}

/// Canonical text that parses back to an equal expression: symbol operators, literals
/// quoted only when they must be, and parentheses only where the grammar needs them (an
/// operand that binds looser than its operator, or a right operand of the same operator).
/// So the text nests no deeper than any text the expression was parsed from, and is
/// accepted under the same depth limit.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Or(a, b) => {
                write!(f, "{a} or ")?;
                Operand(b, !matches!(**b, Expr::Or(..))).fmt(f)
            }
            Expr::And(a, b) => {
                Operand(a, !matches!(**a, Expr::Or(..))).fmt(f)?;
                f.write_str(" and ")?;
                Operand(b, matches!(**b, Expr::Not(_) | Expr::Test(_))).fmt(f)
            }
            Expr::Not(e) => {
                f.write_str("not ")?;
                Operand(e, matches!(**e, Expr::Not(_) | Expr::Test(_))).fmt(f)
            }
            Expr::Test(p) => write!(f, "{p}"),
        }
    }
}

/// An operand, in parentheses unless it may go bare.
struct Operand<'a>(&'a Expr, bool);

impl fmt::Display for Operand<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1 {
            write!(f, "{}", self.0)
        } else {
            write!(f, "({})", self.0)
        }
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.subject, self.operator.symbol())?;
        match &self.argument {
            Argument::None => Ok(()),
            Argument::One(lit) => write!(f, " {}", Quoted(&lit.text)),
            Argument::Pattern(p) => write!(f, " {}", Quoted(&p.source)),
            Argument::List(lits) => {
                f.write_str(" [")?;
                for (i, lit) in lits.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", Quoted(&lit.text))?;
                }
                f.write_str("]")
            }
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::AgentConnected => f.write_str("agentConnected"),
            Subject::AgentVersion => f.write_str("agentVersion"),
            Subject::Attribute(name) => write!(f, "attribute:{name}"),
            Subject::Ec2InstanceId => f.write_str("ec2InstanceId"),
            Subject::RegisteredAt => f.write_str("registeredAt"),
            Subject::RunningTasksCount => f.write_str("runningTasksCount"),
            Subject::TaskGroup => f.write_str("task:group"),
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// A literal as it must be written to read back the same.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bare = !self.0.is_empty() && self.0.bytes().all(parse::is_word_byte);
        if bare {
            f.write_str(self.0)
        } else if self.0.contains('"') {
            write!(f, "'{}'", self.0)
        } else {
            write!(f, "\"{}\"", self.0)
        }
    }
}

#[cfg(test)]
mod tests;
