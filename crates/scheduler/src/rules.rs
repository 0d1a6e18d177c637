//! Placement constraints and strategies as ECS's `placementConstraints` and
//! `placementStrategy` entries describe them, parsed into types that can only hold valid
//! rules.

use crate::query::{parse_expression, Expr};
use crate::PlacementError;

/// ECS's limit on a constraint expression.
const MAX_EXPRESSION_LEN: usize = 2000;
/// ECS's limit on a strategy field.
const MAX_FIELD_LEN: usize = 255;

/// A binding rule: an instance that breaks it never gets the task.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// At most one task of the group on each instance.
    DistinctInstance,
    /// Only instances for which the expression holds.
    MemberOf(Expr),
}

/// A preference among the instances that satisfy every constraint. Strategies are applied
/// in order; each later one only breaks ties of the ones before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Prefer the instance with the least of the resource left.
    Binpack(BinpackField),
    /// Prefer the instance (or attribute value) with the fewest tasks of the group.
    Spread(SpreadField),
    /// Choose uniformly among the instances still tied.
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinpackField {
    Cpu,
    Memory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpreadField {
    /// `instanceId`, or its synonym `host`.
    InstanceId,
    /// `attribute:<name>`, such as `attribute:ecs.availability-zone`.
    Attribute(String),
}

impl Strategy {
    /// What a service places with when it names no strategy: the ECS guide's "for tasks
    /// running as part of an Amazon ECS service, the task placement strategy is spread
    /// using the attribute:ecs.availability-zone". RunTask's default is the empty list,
    /// which [`crate::place`] treats as `random`.
    pub fn service_default() -> Vec<Strategy> {
        vec![Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".to_owned()))]
    }
}

/// Parses one `placementConstraints` entry: `type` is `distinctInstance` (no expression)
/// or `memberOf` (an expression of at most 2000 characters is required).
pub fn parse_constraint(type_: &str, expression: Option<&str>) -> Result<Constraint, PlacementError> {
    match (type_, expression) {
        ("distinctInstance", None) => Ok(Constraint::DistinctInstance),
        ("distinctInstance", Some(_)) => {
            Err(PlacementError::rule("a distinctInstance constraint cannot have an expression"))
        }
        ("memberOf", None) => Err(PlacementError::rule("a memberOf constraint requires an expression")),
        ("memberOf", Some(e)) if e.chars().count() > MAX_EXPRESSION_LEN => {
            Err(PlacementError::rule(format!("a constraint expression can be at most {MAX_EXPRESSION_LEN} characters")))
        }
        ("memberOf", Some(e)) => parse_expression(e).map(Constraint::MemberOf),
        (other, _) => Err(PlacementError::rule(format!(
            "`{other}` is not a placement constraint type (expected distinctInstance or memberOf)"
        ))),
    }
}

/// Parses one `placementStrategy` entry. `binpack` needs the field `cpu` or `memory`;
/// `spread` needs `instanceId`, `host` or `attribute:<name>`; `random` ignores its field,
/// as ECS documents ("this field is not used").
pub fn parse_strategy(type_: &str, field: Option<&str>) -> Result<Strategy, PlacementError> {
    if field.is_some_and(|f| f.chars().count() > MAX_FIELD_LEN) {
        return Err(PlacementError::rule(format!("a strategy field can be at most {MAX_FIELD_LEN} characters")));
    }
    match (type_, field) {
        ("random", _) => Ok(Strategy::Random),
        ("binpack", Some(f)) if f.eq_ignore_ascii_case("cpu") => Ok(Strategy::Binpack(BinpackField::Cpu)),
        ("binpack", Some(f)) if f.eq_ignore_ascii_case("memory") => Ok(Strategy::Binpack(BinpackField::Memory)),
        ("binpack", Some(f)) => {
            Err(PlacementError::rule(format!("`{f}` is not a binpack field (expected cpu or memory)")))
        }
        ("binpack", None) => Err(PlacementError::rule("a binpack strategy requires the field cpu or memory")),
        ("spread", Some("instanceId" | "host")) => Ok(Strategy::Spread(SpreadField::InstanceId)),
        ("spread", Some(f)) => match f.strip_prefix("attribute:") {
            Some(name) if !name.is_empty() => Ok(Strategy::Spread(SpreadField::Attribute(name.to_owned()))),
            _ => Err(PlacementError::rule(format!(
                "`{f}` is not a spread field (expected instanceId, host or attribute:<name>)"
            ))),
        },
        ("spread", None) => {
            Err(PlacementError::rule("a spread strategy requires the field instanceId, host or attribute:<name>"))
        }
        (other, _) => Err(PlacementError::rule(format!(
            "`{other}` is not a placement strategy type (expected random, spread or binpack)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_parse_as_ecs_documents_them() {
        assert_eq!(parse_constraint("distinctInstance", None), Ok(Constraint::DistinctInstance));
        let member = parse_constraint("memberOf", Some("attribute:ecs.instance-type =~ t2.*")).unwrap();
        assert_eq!(member, Constraint::MemberOf(parse_expression("attribute:ecs.instance-type =~ t2.*").unwrap()));
    }

    #[test]
    fn malformed_constraints_are_refused() {
        let err = |t, e| parse_constraint(t, e).unwrap_err().message;
        assert!(err("distinctInstance", Some("task:group == x")).contains("cannot have an expression"));
        assert!(err("memberOf", None).contains("requires an expression"));
        assert!(err("member_of", None).contains("not a placement constraint type"));
        let long = format!("attribute:a == {}", "b".repeat(2000));
        assert!(err("memberOf", Some(&long)).contains("at most 2000"));
        let bad = parse_constraint("memberOf", Some("attribute:a ==")).unwrap_err();
        assert_eq!(bad.position, Some(14));
    }

    #[test]
    fn strategies_parse_as_ecs_documents_them() {
        use BinpackField::*;
        assert_eq!(parse_strategy("binpack", Some("cpu")), Ok(Strategy::Binpack(Cpu)));
        assert_eq!(parse_strategy("binpack", Some("memory")), Ok(Strategy::Binpack(Memory)));
        assert_eq!(parse_strategy("spread", Some("instanceId")), Ok(Strategy::Spread(SpreadField::InstanceId)));
        assert_eq!(parse_strategy("spread", Some("host")), Ok(Strategy::Spread(SpreadField::InstanceId)));
        assert_eq!(
            parse_strategy("spread", Some("attribute:ecs.availability-zone")),
            Ok(Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into())))
        );
        assert_eq!(parse_strategy("random", None), Ok(Strategy::Random));
        assert_eq!(parse_strategy("random", Some("ignored")), Ok(Strategy::Random));
    }

    #[test]
    fn malformed_strategies_are_refused() {
        for (t, f) in [
            ("binpack", None),
            ("binpack", Some("disk")),
            ("spread", None),
            ("spread", Some("attribute:")),
            ("spread", Some("zone")),
            ("pack", Some("cpu")),
            ("spread", Some(&*format!("attribute:{}", "a".repeat(250)))),
        ] {
            assert!(parse_strategy(t, f).is_err(), "{t} {f:?}");
        }
    }

    #[test]
    fn a_service_spreads_across_zones_by_default() {
        assert_eq!(
            Strategy::service_default(),
            vec![Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into()))]
        );
    }
}
