//! The `Condition` element: operators compiled from the policy, and their evaluation
//! against the request's condition keys with IAM's rules for multi-valued and absent keys.
//!
//! A statement's conditions are ANDed; a condition's values are ORed. For a key the request
//! does not have, a positive operator fails, a negated one (`StringNotEquals`, `NotIpAddress`
//! ...) holds, `...IfExists` holds, `ForAllValues:` holds (the empty set) and `ForAnyValue:`
//! fails. `Null` tests presence itself.

use std::net::IpAddr;

use super::pattern::{ArnPattern, Pattern, Syntax, Variables};
use super::values::{parse_bool, parse_date, Cidr};

/// The condition keys of a request, as a condition reads them.
pub(crate) trait Keys: Variables {
    /// The values of `key` (lower-cased); `None` when the request does not have it.
    fn values(&self, key: &str) -> Option<&[String]>;
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    test: Test,
    /// `StringNotEquals`, `ArnNotLike`, `NotIpAddress` ...: the test's result is inverted.
    negated: bool,
    set: SetOp,
    if_exists: bool,
    /// Lower-cased: condition key names are case-insensitive.
    key: Box<str>,
}

/// How a multi-valued key is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetOp {
    /// No qualifier: some value of the key matches some value of the policy.
    Single,
    /// `ForAnyValue:`: at least one value of the key passes.
    Any,
    /// `ForAllValues:`: every value of the key passes (vacuously true for none).
    All,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    /// `StringEquals`/`StringLike` and their IgnoreCase forms; patterns keep `*` literal
    /// unless the operator is a Like.
    String {
        patterns: Vec<Pattern>,
        fold: bool,
    },
    Arn(Vec<ArnPattern>),
    Numeric(Cmp, Vec<Option<f64>>),
    Date(Cmp, Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
    Ip(Vec<Option<Cidr>>),
    /// `Null`: `true` requires the key to be absent, `false` present.
    Null(Vec<Option<bool>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn holds<T: PartialOrd>(self, actual: T, policy: T) -> bool {
        match self {
            Cmp::Eq => actual == policy,
            Cmp::Lt => actual < policy,
            Cmp::Le => actual <= policy,
            Cmp::Gt => actual > policy,
            Cmp::Ge => actual >= policy,
        }
    }
}

/// An operator IAM does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnknownOperator;

impl Condition {
    /// Compiles `operator: {key: values}` for one key. `variables` says whether `${...}` is
    /// a policy variable (policy version 2012-10-17).
    pub(crate) fn compile(
        operator: &str,
        key: &str,
        values: &[String],
        variables: bool,
    ) -> Result<Condition, UnknownOperator> {
        let (set, rest) = match operator.split_once(':') {
            Some(("ForAnyValue", rest)) => (SetOp::Any, rest),
            Some(("ForAllValues", rest)) => (SetOp::All, rest),
            Some(_) => return Err(UnknownOperator),
            None => (SetOp::Single, operator),
        };
        let (base, if_exists) = match rest.strip_suffix("IfExists") {
            Some(base) if base != "Null" => (base, true),
            _ => (rest, false),
        };
        let strings = |wildcards: bool, fold: bool| Test::String {
            patterns: values.iter().map(|v| Pattern::compile(v, Syntax { wildcards, variables, fold })).collect(),
            fold,
        };
        let arns = || Test::Arn(values.iter().map(|v| ArnPattern::compile(v, variables)).collect());
        let numbers = |cmp| Test::Numeric(cmp, values.iter().map(|v| v.trim().parse::<f64>().ok()).collect());
        // A value that is not a date never matches; IAM's own parser refuses it (see
        // `has_unreadable_date`).
        let dates = |cmp| Test::Date(cmp, values.iter().map(|v| parse_date(v)).collect());
        let (test, negated) = match base {
            "StringEquals" => (strings(false, false), false),
            "StringNotEquals" => (strings(false, false), true),
            "StringEqualsIgnoreCase" => (strings(false, true), false),
            "StringNotEqualsIgnoreCase" => (strings(false, true), true),
            "StringLike" => (strings(true, false), false),
            "StringNotLike" => (strings(true, false), true),
            // IAM documents ArnEquals and ArnLike as the same test, wildcards included.
            "ArnEquals" | "ArnLike" => (arns(), false),
            "ArnNotEquals" | "ArnNotLike" => (arns(), true),
            "NumericEquals" => (numbers(Cmp::Eq), false),
            "NumericNotEquals" => (numbers(Cmp::Eq), true),
            "NumericLessThan" => (numbers(Cmp::Lt), false),
            "NumericLessThanEquals" => (numbers(Cmp::Le), false),
            "NumericGreaterThan" => (numbers(Cmp::Gt), false),
            "NumericGreaterThanEquals" => (numbers(Cmp::Ge), false),
            "DateEquals" => (dates(Cmp::Eq), false),
            "DateNotEquals" => (dates(Cmp::Eq), true),
            "DateLessThan" => (dates(Cmp::Lt), false),
            "DateLessThanEquals" => (dates(Cmp::Le), false),
            "DateGreaterThan" => (dates(Cmp::Gt), false),
            "DateGreaterThanEquals" => (dates(Cmp::Ge), false),
            "Bool" => (Test::Bool(values.iter().map(|v| parse_bool(v)).collect()), false),
            // Base64 values compared as given.
            "BinaryEquals" => (strings(false, false), false),
            "IpAddress" => (Test::Ip(values.iter().map(|v| Cidr::parse(v)).collect()), false),
            "NotIpAddress" => (Test::Ip(values.iter().map(|v| Cidr::parse(v)).collect()), true),
            "Null" => (Test::Null(values.iter().map(|v| parse_bool(v)).collect()), false),
            _ => return Err(UnknownOperator),
        };
        Ok(Condition { test, negated, set, if_exists, key: key.to_ascii_lowercase().into() })
    }

    /// A `Date...` operator with a value that is not a date: IAM's legacy parser refuses it.
    pub(crate) fn has_unreadable_date(&self) -> bool {
        matches!(&self.test, Test::Date(_, values) if values.iter().any(Option::is_none))
    }

    /// Whether the condition holds for the request.
    /// The key it reads, lower-cased.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    pub(crate) fn holds(&self, keys: &dyn Keys) -> bool {
        let values = keys.values(&self.key).filter(|v| !v.is_empty());
        if let Test::Null(want) = &self.test {
            let absent = values.is_none();
            return want.contains(&Some(absent));
        }
        let Some(values) = values else {
            return match self.set {
                SetOp::All => true,
                SetOp::Any => self.if_exists,
                SetOp::Single => self.if_exists || self.negated,
            };
        };
        let passes = |v: &String| self.test.matches(v, keys) != self.negated;
        match self.set {
            SetOp::Single if self.negated => !values.iter().any(|v| self.test.matches(v, keys)),
            SetOp::Single | SetOp::Any => values.iter().any(passes),
            SetOp::All => values.iter().all(passes),
        }
    }
}

impl Test {
    /// Whether one request value matches any of the policy's values.
    fn matches(&self, actual: &str, vars: &dyn Keys) -> bool {
        match self {
            Test::String { patterns, fold } => patterns.iter().any(|p| p.matches(actual, *fold, vars)),
            Test::Arn(patterns) => patterns.iter().any(|p| p.matches(actual, vars)),
            Test::Numeric(cmp, policy) => match actual.trim().parse::<f64>() {
                Ok(a) => policy.iter().flatten().any(|p| cmp.holds(a, *p)),
                Err(_) => false,
            },
            Test::Date(cmp, policy) => match parse_date(actual) {
                Some(a) => policy.iter().flatten().any(|p| cmp.holds(a, *p)),
                None => false,
            },
            Test::Bool(policy) => match parse_bool(actual) {
                Some(a) => policy.contains(&Some(a)),
                None => false,
            },
            Test::Ip(policy) => match actual.trim().parse::<IpAddr>() {
                Ok(ip) => policy.iter().flatten().any(|c| c.contains(ip)),
                Err(_) => false,
            },
            Test::Null(_) => false,
        }
    }
}
