//! Names and ARNs of load balancers and target groups.

use serde::{Deserialize, Serialize};

use model::{Arn, Scope};

use crate::error::{ElbError, Fault};

/// The service name in every ELBv2 ARN.
pub const SERVICE: &str = "elasticloadbalancing";

/// ELBv2's rule for load balancer and target group names, with AWS's messages: 1 to 32
/// letters, digits and hyphens, no hyphen at either end. `kind` starts the message
/// ("Target group name", "The load balancer name"); AWS words the alphabet a little
/// differently for each, hence `alphabet`.
///
/// Decision: consecutive hyphens (`a--b`) are accepted. Some emulators refuse them after
/// a pattern AWS once answered, but AWS's API creates such target groups today (only its
/// console refuses them), and Berth is never stricter than AWS.
fn check_name(kind: &str, alphabet: &str, s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{kind} cannot be empty"));
    }
    if s.len() > 32 {
        return Err(format!("{kind} '{s}' cannot be longer than '32' characters"));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(format!("{kind} '{s}' can only contain characters that are {alphabet}"));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(format!("{kind} '{s}' cannot begin or end with '-'"));
    }
    Ok(())
}

/// A load balancer's name: 1..=32 letters, digits and hyphens, no hyphen at either end,
/// not starting with `internal-` (AWS reserves it for internal load balancers' DNS names).
/// Consecutive hyphens are allowed, as in target group names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LbName(String);

impl LbName {
    pub fn parse(s: &str) -> Result<Self, ElbError> {
        check_name("The load balancer name", "alphanumeric characters and hyphens(-)", s)
            .map_err(ElbError::validation)?;
        if s.to_ascii_lowercase().starts_with("internal-") {
            return Err(ElbError::validation(format!("The load balancer name '{s}' cannot begin with 'internal-'.")));
        }
        Ok(LbName(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A target group's name: 1..=32 letters, digits and hyphens, no hyphen at either end;
/// consecutive hyphens are allowed (see [`check_name`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TgName(String);

impl TgName {
    pub fn parse(s: &str) -> Result<Self, ElbError> {
        check_name("Target group name", "alphanumeric characters or hyphens(-)", s).map_err(ElbError::validation)?;
        Ok(TgName(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

model::string_conversions!(LbName, ElbError);
model::string_conversions!(TgName, ElbError);

/// What an ELBv2 ARN names, with the ids it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElbArn {
    LoadBalancer { lb: String },
    TargetGroup { tg: String },
    Listener { lb: String, listener: String },
    Rule { lb: String, listener: String, rule: String },
}

/// Parses an ELBv2 ARN of `scope`. A malformed one is a `ValidationError`; one of another
/// account or region is reported by `not_found` as AWS does, since it cannot be ours.
pub fn parse_arn(scope: &Scope, text: &str, not_found: Fault) -> Result<ElbArn, ElbError> {
    let arn = Arn::parse(text).map_err(|_| ElbError::validation(format!("'{text}' is not a valid ARN")))?;
    if arn.service != SERVICE {
        return Err(ElbError::validation(format!("'{text}' is not an Elastic Load Balancing ARN")));
    }
    let parts: Vec<&str> = arn.resource.split('/').collect();
    let parsed = match parts.as_slice() {
        ["loadbalancer", "app", _name, id] => Some(ElbArn::LoadBalancer { lb: id.to_string() }),
        ["targetgroup", _name, id] => Some(ElbArn::TargetGroup { tg: id.to_string() }),
        ["listener", "app", _name, lb, l] => Some(ElbArn::Listener { lb: lb.to_string(), listener: l.to_string() }),
        ["listener-rule", "app", _name, lb, l, r] => {
            Some(ElbArn::Rule { lb: lb.to_string(), listener: l.to_string(), rule: r.to_string() })
        }
        _ => None,
    };
    let Some(parsed) = parsed else {
        return Err(ElbError::validation(format!(
            "'{text}' is not a valid load balancer, target group, listener or rule ARN"
        )));
    };
    if !arn.is_in(scope) {
        return Err(ElbError::new(not_found, format!("'{text}' belongs to another account or region")));
    }
    Ok(parsed)
}

pub fn load_balancer_arn(scope: &Scope, name: &LbName, id: &str) -> String {
    scope.arn(SERVICE, &format!("loadbalancer/app/{name}/{id}")).to_string()
}

pub fn target_group_arn(scope: &Scope, name: &TgName, id: &str) -> String {
    scope.arn(SERVICE, &format!("targetgroup/{name}/{id}")).to_string()
}

pub fn listener_arn(scope: &Scope, lb_name: &LbName, lb_id: &str, id: &str) -> String {
    scope.arn(SERVICE, &format!("listener/app/{lb_name}/{lb_id}/{id}")).to_string()
}

pub fn rule_arn(scope: &Scope, lb_name: &LbName, lb_id: &str, listener_id: &str, id: &str) -> String {
    scope.arn(SERVICE, &format!("listener-rule/app/{lb_name}/{lb_id}/{listener_id}/{id}")).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            account: model::AccountId::parse("123456789012").unwrap(),
            region: model::Region::parse("us-east-1").unwrap(),
        }
    }

    #[test]
    fn names() {
        assert!(LbName::parse("demo-alb").is_ok());
        assert!(LbName::parse(&"a".repeat(32)).is_ok());
        for bad in ["", "-a", "a-", "a_b", "a.b", "internal-x", "Internal-x", &"a".repeat(33)] {
            assert!(LbName::parse(bad).is_err(), "{bad}");
        }
        assert!(TgName::parse("internal-x").is_ok());
        for good in ["Na--me", "a", "A-1", &"z".repeat(32)] {
            assert!(TgName::parse(good).is_ok(), "{good}");
            assert!(LbName::parse(good).is_ok(), "{good}");
        }
        let message = |r: Result<TgName, ElbError>| r.unwrap_err().message;
        assert_eq!(message(TgName::parse("web-")), "Target group name 'web-' cannot begin or end with '-'");
        assert_eq!(
            message(TgName::parse("update_config-dev")),
            "Target group name 'update_config-dev' can only contain characters that are alphanumeric characters or hyphens(-)"
        );
        assert_eq!(
            message(TgName::parse(&"a".repeat(33))),
            format!("Target group name '{}' cannot be longer than '32' characters", "a".repeat(33))
        );
    }

    #[test]
    fn names_are_stored_as_strings_and_checked_on_load() {
        let lb = LbName::parse("demo-alb").unwrap();
        assert_eq!(serde_json::to_string(&lb).unwrap(), r#""demo-alb""#);
        assert_eq!(serde_json::from_str::<LbName>(r#""demo-alb""#).unwrap(), lb);
        assert!(serde_json::from_str::<TgName>(r#""-web""#).is_err());
        assert_eq!(TgName::parse("web").unwrap().to_string(), "web");
    }

    #[test]
    fn arns_round_trip() {
        let s = scope();
        let lb = LbName::parse("demo").unwrap();
        let a = rule_arn(&s, &lb, "aa", "bb", "cc");
        assert_eq!(
            parse_arn(&s, &a, Fault::RuleNotFound).unwrap(),
            ElbArn::Rule { lb: "aa".into(), listener: "bb".into(), rule: "cc".into() }
        );
        let tg = target_group_arn(&s, &TgName::parse("web").unwrap(), "dd");
        assert_eq!(parse_arn(&s, &tg, Fault::TargetGroupNotFound).unwrap(), ElbArn::TargetGroup { tg: "dd".into() });
        let other = tg.replace("123456789012", "999999999999");
        assert_eq!(parse_arn(&s, &other, Fault::TargetGroupNotFound).unwrap_err().fault, Fault::TargetGroupNotFound);
        assert_eq!(parse_arn(&s, "nope", Fault::TargetGroupNotFound).unwrap_err().fault, Fault::Validation);
    }
}
