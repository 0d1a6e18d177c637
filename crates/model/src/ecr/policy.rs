//! ECR's resource policies (repository and registry policies): the part of IAM's policy
//! grammar that ECR accepts, checked with ECR's rules and messages into a
//! [`PolicyDocument`] that can only exist valid, and evaluated by IAM's evaluator
//! ([`crate::iam`]) for a request made by an account.
//!
//! A cross-account caller acts as its account's root principal. So a principal matches a
//! caller when it names everyone (`*`), the caller's account id or the caller's root ARN;
//! user, role and service principals are accepted (policies written for AWS keep working)
//! but match no such caller.

use serde_json::{Map, Value};

use crate::iam::{self, Principal, RequestContext, ResourcePolicyDecision};
use crate::ids::AccountId;
use crate::Invalid;

/// The longest policy ECR accepts (`RepositoryPolicyText`, `RegistryPolicyText`).
pub const MAX_POLICY_BYTES: usize = 10240;

/// ECR actions that IAM knows but that are not API operations, so that a policy naming
/// them is accepted.
const IAM_ONLY_ACTIONS: &[&str] = &["ReplicateImage", "BatchImportUpstreamImage"];

/// Which resource a policy is attached to; the grammar differs in one point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// A repository policy: the resource is the repository itself, and ECR refuses a
    /// `Resource` element.
    Repository,
    /// A registry policy: statements name the repositories they cover with `Resource`.
    Registry,
}

/// A valid policy, together with the text it was given as (which ECR hands back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    text: String,
    /// The same text compiled for IAM's evaluator.
    compiled: iam::PolicyDocument,
}

/// What the policy says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An `Allow` statement applies and no `Deny` does.
    Allowed,
    /// A `Deny` statement applies; it wins over any `Allow`.
    Denied,
    /// No statement applies: access is not granted.
    NotMentioned,
}

impl PolicyDocument {
    /// Parses and checks `text` as ECR does, with a message that says what to fix.
    pub fn parse(text: &str, kind: PolicyKind) -> Result<Self, Invalid> {
        let what = match kind {
            PolicyKind::Repository => "repository",
            PolicyKind::Registry => "registry",
        };
        let invalid = |reason: String| {
            Invalid::Parameter(format!(
                "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid {what} policy provided': {reason}"
            ))
        };
        if text.len() > MAX_POLICY_BYTES {
            return Err(invalid(format!(
                "the policy is {} bytes; at most {MAX_POLICY_BYTES} are allowed.",
                text.len()
            )));
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| invalid(format!("the policy is not valid JSON ({e}).")))?;
        parse_document(&value, kind).map_err(invalid)?;
        // ECR's rules are checked; IAM's evaluator needs only the shape, which they imply.
        let compiled = iam::PolicyDocument::compile_checked_by_service(text, iam::PolicyKind::Resource)
            .map_err(|e| invalid(e.message().to_string()))?;
        Ok(PolicyDocument { text: text.to_string(), compiled })
    }

    /// The policy as it was given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The policy as IAM's evaluator reads it, for same-account authorization.
    pub fn compiled(&self) -> &iam::PolicyDocument {
        &self.compiled
    }

    /// What the policy decides for `caller` (acting as its root principal) doing the ECR
    /// `action` (an operation name such as `BatchGetImage`) on the repository it is
    /// attached to. (A registry policy's statements that name `Resource`s other than `*`
    /// do not cover this request.)
    pub fn decide(&self, caller: &AccountId, action: &str) -> Decision {
        let req = RequestContext::new(Principal::root(caller), format!("ecr:{action}"), "*");
        match iam::resource_policy_decision(&self.compiled, &req) {
            ResourcePolicyDecision::ExplicitDeny => Decision::Denied,
            ResourcePolicyDecision::AllowNamed | ResourcePolicyDecision::AllowAccount => Decision::Allowed,
            ResourcePolicyDecision::ImplicitDeny => Decision::NotMentioned,
        }
    }
}

impl TryFrom<String> for PolicyDocument {
    type Error = Invalid;
    /// Policies are stored as their text; both kinds accept what a registry policy
    /// accepts, so only parse with the kind at the API edge.
    fn try_from(s: String) -> Result<Self, Invalid> {
        PolicyDocument::parse(&s, PolicyKind::Registry)
    }
}

impl From<PolicyDocument> for String {
    fn from(p: PolicyDocument) -> String {
        p.text
    }
}

impl serde::Serialize for PolicyDocument {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for PolicyDocument {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        PolicyDocument::try_from(text).map_err(serde::de::Error::custom)
    }
}

fn parse_document(value: &Value, kind: PolicyKind) -> Result<(), String> {
    let doc = value.as_object().ok_or("the policy must be a JSON object.")?;
    for key in doc.keys() {
        if !["Version", "Id", "Statement"].contains(&key.as_str()) {
            return Err(format!("unknown top-level element '{key}'; a policy has Version, Id and Statement."));
        }
    }
    match doc.get("Version") {
        None => {}
        Some(Value::String(v)) if v == "2012-10-17" || v == "2008-10-17" => {}
        Some(v) => return Err(format!("Version {v} is not a policy language version; use \"2012-10-17\".")),
    }
    if doc.get("Id").is_some_and(|id| !id.is_string()) {
        return Err("Id must be a string.".into());
    }
    let statements: Vec<&Value> = match doc.get("Statement") {
        None => return Err("the policy has no Statement.".into()),
        Some(Value::Array(list)) if list.is_empty() => return Err("Statement is an empty list.".into()),
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        Some(_) => return Err("Statement must be an object or a list of objects.".into()),
    };
    for (i, s) in statements.into_iter().enumerate() {
        let s = s.as_object().ok_or_else(|| format!("statement {} is not a JSON object.", i + 1))?;
        let name = match s.get("Sid") {
            Some(Value::String(sid)) => format!("statement '{sid}'"),
            Some(_) => return Err(format!("statement {}: Sid must be a string.", i + 1)),
            None => format!("statement {}", i + 1),
        };
        check_statement(s, kind).map_err(|reason| format!("{name}: {reason}"))?;
    }
    Ok(())
}

fn check_statement(s: &Map<String, Value>, kind: PolicyKind) -> Result<(), String> {
    const KNOWN: &[&str] =
        &["Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource", "Condition"];
    if let Some(key) = s.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!("unknown element '{key}'."));
    }
    match s.get("Effect") {
        Some(Value::String(e)) if e == "Allow" || e == "Deny" => {}
        Some(e) => return Err(format!("Effect {e} must be \"Allow\" or \"Deny\".")),
        None => return Err("Effect is missing; use \"Allow\" or \"Deny\".".into()),
    }
    check_principals(exactly_one(s, "Principal", "NotPrincipal")?.1)?;
    for action in strings(exactly_one(s, "Action", "NotAction")?.1, "Action")? {
        check_action(action)?;
    }
    match kind {
        PolicyKind::Repository => {
            if s.contains_key("Resource") || s.contains_key("NotResource") {
                return Err("a repository policy applies to its repository; remove the Resource element.".into());
            }
        }
        PolicyKind::Registry => {
            if let Ok((_, resource)) = exactly_one(s, "Resource", "NotResource") {
                strings(resource, "Resource")?;
            }
        }
    }
    match s.get("Condition") {
        None => Ok(()),
        Some(c) => check_conditions(c),
    }
}

/// The value of `a` or of `b` (and whether it was `b`); exactly one must be present.
fn exactly_one<'a>(s: &'a Map<String, Value>, a: &str, b: &str) -> Result<(bool, &'a Value), String> {
    match (s.get(a), s.get(b)) {
        (Some(v), None) => Ok((false, v)),
        (None, Some(v)) => Ok((true, v)),
        (Some(_), Some(_)) => Err(format!("give either {a} or {b}, not both.")),
        (None, None) => Err(format!("{a} is missing.")),
    }
}

/// A string or a non-empty list of strings.
fn strings<'a>(v: &'a Value, element: &str) -> Result<Vec<&'a str>, String> {
    let bad = || format!("{element} must be a string or a non-empty list of strings.");
    match v {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(list) if !list.is_empty() => list.iter().map(|x| x.as_str().ok_or_else(bad)).collect(),
        _ => Err(bad()),
    }
}

fn check_principals(v: &Value) -> Result<(), String> {
    if v.as_str() == Some("*") {
        return Ok(());
    }
    let map = v.as_object().filter(|m| !m.is_empty()).ok_or(
        "Principal must be \"*\" or an object such as {\"AWS\": \"123456789012\"} or {\"AWS\": [\"arn:aws:iam::123456789012:root\"]}.",
    )?;
    for (kind, names) in map {
        let names = strings(names, &format!("Principal {kind}"))?;
        match kind.as_str() {
            "AWS" => {
                for n in names {
                    check_aws_principal(n)?;
                }
            }
            "Service" | "Federated" | "CanonicalUser" => {
                if names.iter().any(|n| n.trim().is_empty()) {
                    return Err(format!("Principal {kind} has an empty name."));
                }
            }
            other => {
                return Err(format!("unknown principal type '{other}'; use AWS, Service, Federated or CanonicalUser."))
            }
        }
    }
    Ok(())
}

fn check_aws_principal(n: &str) -> Result<(), String> {
    let is_account = |s: &str| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit());
    if n == "*" || is_account(n) {
        return Ok(());
    }
    // arn:<partition>:iam::<account>:<root | user/.. | role/.. | ...>
    let parts: Vec<&str> = n.splitn(6, ':').collect();
    if let ["arn", partition, "iam", "", account, resource] = parts[..] {
        if !partition.is_empty() && is_account(account) && !resource.is_empty() {
            return Ok(());
        }
    }
    if let ["arn", _, "sts", "", account, resource] = parts[..] {
        if is_account(account) && resource.starts_with("assumed-role/") {
            return Ok(());
        }
    }
    Err(format!(
        "'{n}' is not a valid AWS principal; use \"*\", a 12-digit account id or an IAM ARN such as arn:aws:iam::123456789012:root."
    ))
}

fn check_action(a: &str) -> Result<(), String> {
    if a == "*" {
        return Ok(());
    }
    let Some((service, name)) = a.split_once(':') else {
        return Err(format!("action '{a}' must be \"*\" or \"ecr:<Action>\", e.g. ecr:BatchGetImage or ecr:*."));
    };
    if !service.eq_ignore_ascii_case("ecr") {
        return Err(format!("action '{a}' is not an ECR action; a repository policy only grants ecr:* actions."));
    }
    let pattern = name.to_ascii_lowercase();
    if pattern.is_empty() || !pattern.bytes().all(|b| b.is_ascii_alphabetic() || b == b'*' || b == b'?') {
        return Err(format!("action '{a}' has characters other than letters, * and ?."));
    }
    let known = super::shapes::OPERATIONS.iter().chain(IAM_ONLY_ACTIONS);
    if !known.clone().any(|op| glob(&pattern, &op.to_ascii_lowercase())) {
        return Err(format!("action '{a}' names no ECR action (for example ecr:BatchGetImage, ecr:PutImage, ecr:*)."));
    }
    Ok(())
}

fn check_conditions(v: &Value) -> Result<(), String> {
    let ops = v.as_object().ok_or("Condition must be an object of operators, e.g. {\"StringEquals\": {...}}.")?;
    for (name, keys) in ops {
        let is_null = check_operator(name)?;
        let keys = keys
            .as_object()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| format!("Condition {name} must map condition keys to values."))?;
        for (key, values) in keys {
            let bad =
                || format!("Condition {name} {key}: values must be strings, numbers, booleans or a list of them.");
            let scalar = |x: &Value| match x {
                Value::String(s) => Some(s.clone()),
                Value::Bool(b) => Some(b.to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            let values: Vec<String> = match values {
                Value::Array(list) if !list.is_empty() => {
                    list.iter().map(|x| scalar(x).ok_or_else(bad)).collect::<Result<_, _>>()?
                }
                other => vec![scalar(other).ok_or_else(bad)?],
            };
            if is_null && values.iter().any(|v| v != "true" && v != "false") {
                return Err(format!("Condition Null {key} takes \"true\" or \"false\"."));
            }
        }
    }
    Ok(())
}

/// Checks `[ForAnyValue:|ForAllValues:]<Operator>[IfExists]`; says whether it is `Null`.
fn check_operator(name: &str) -> Result<bool, String> {
    let rest = match name.split_once(':') {
        Some(("ForAllValues" | "ForAnyValue", rest)) => rest,
        Some(_) => return Err(format!("unknown condition qualifier in '{name}'; use ForAllValues: or ForAnyValue:.")),
        None => name,
    };
    let base = match rest.strip_suffix("IfExists") {
        Some(base) if base != "Null" => base,
        _ => rest,
    };
    const OPERATORS: &[&str] = &[
        "StringEquals",
        "StringNotEquals",
        "StringEqualsIgnoreCase",
        "StringNotEqualsIgnoreCase",
        "StringLike",
        "StringNotLike",
        "ArnEquals",
        "ArnLike",
        "ArnNotEquals",
        "ArnNotLike",
        "Null",
        "NumericEquals",
        "NumericNotEquals",
        "NumericLessThan",
        "NumericLessThanEquals",
        "NumericGreaterThan",
        "NumericGreaterThanEquals",
        "DateEquals",
        "DateNotEquals",
        "DateLessThan",
        "DateLessThanEquals",
        "DateGreaterThan",
        "DateGreaterThanEquals",
        "Bool",
        "BinaryEquals",
        "IpAddress",
        "NotIpAddress",
    ];
    if !OPERATORS.contains(&base) {
        return Err(format!("'{name}' is not an IAM condition operator (e.g. StringEquals, ArnLike, Null)."));
    }
    Ok(base == "Null")
}

/// Whether `text` matches `pattern`, where `*` matches any run and `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it has absorbed up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(s: &str) -> AccountId {
        AccountId::parse(s).unwrap()
    }

    fn repo(text: &str) -> Result<PolicyDocument, Invalid> {
        PolicyDocument::parse(text, PolicyKind::Repository)
    }

    const OTHER: &str = "222222222222";

    #[test]
    fn globs() {
        assert!(glob("batch*", "batchgetimage"));
        assert!(glob("*image", "batchgetimage"));
        assert!(glob("b?tch*", "batchgetimage"));
        assert!(glob("*", ""));
        assert!(!glob("batch", "batchgetimage"));
        assert!(!glob("put*", "batchgetimage"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
    }

    #[test]
    fn accepts_the_shapes_users_write() {
        let ok = [
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"pull","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:root"},"Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#,
            r#"{"Version":"2008-10-17","Statement":{"Effect":"Deny","Principal":"*","Action":"ecr:*"}}"#,
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":["222222222222","arn:aws:iam::333333333333:user/ci"]},"Action":"ecr:Batch*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"codebuild.amazonaws.com"},"Action":"*","Condition":{"StringEquals":{"aws:SourceAccount":"222222222222"}}}]}"#,
            r#"{"Statement":[{"Effect":"Allow","NotPrincipal":{"AWS":"222222222222"},"NotAction":"ecr:PutImage"}]}"#,
        ];
        for text in ok {
            let p = repo(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(p.text(), text);
        }
    }

    #[test]
    fn refuses_what_ecr_refuses_with_a_reason() {
        let bad = [
            ("not json", "not valid JSON"),
            ("[]", "JSON object"),
            (r#"{"Statement":[]}"#, "empty list"),
            (r#"{"Version":"2020-01-01","Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:*"}}"#, "Version"),
            (r#"{"Statement":{"Effect":"allow","Principal":"*","Action":"ecr:*"}}"#, "Effect"),
            (r#"{"Statement":{"Effect":"Allow","Action":"ecr:*"}}"#, "Principal is missing"),
            (r#"{"Statement":{"Effect":"Allow","Principal":"*"}}"#, "Action is missing"),
            (r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject"}}"#, "not an ECR action"),
            (r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:Nope"}}"#, "names no ECR action"),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"bob"},"Action":"ecr:*"}}"#,
                "not a valid AWS principal",
            ),
            (r#"{"Statement":{"Effect":"Allow","Principal":{},"Action":"ecr:*"}}"#, "Principal must be"),
            (r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:*","Resource":"*"}}"#, "Resource"),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:*","Condition":{"StringSort":{"a":"b"}}}}"#,
                "condition operator",
            ),
            (r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:*","Extra":1}}"#, "unknown element"),
            (r#"{"Statement":{"Sid":"x","Effect":"Allow","Principal":"*","Action":[]}}"#, "statement 'x'"),
        ];
        for (text, why) in bad {
            let e = repo(text).expect_err(text).to_string();
            assert!(e.contains("Invalid repository policy provided") && e.contains(why), "{text}: {e}");
        }
        assert!(repo(&format!("{{\"Id\":\"{}\"}}", "x".repeat(MAX_POLICY_BYTES))).is_err());
        // A registry policy names its repositories.
        let registry = r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"222222222222"},"Action":"ecr:ReplicateImage","Resource":"arn:aws:ecr:us-east-1:111111111111:repository/*"}}"#;
        assert!(PolicyDocument::parse(registry, PolicyKind::Registry).is_ok());
    }

    #[test]
    fn allow_grants_only_what_it_names_and_deny_wins() {
        let p = repo(r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:root"},"Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#).unwrap();
        assert_eq!(p.decide(&acct(OTHER), "BatchGetImage"), Decision::Allowed);
        assert_eq!(p.decide(&acct(OTHER), "batchgetimage"), Decision::Allowed);
        assert_eq!(p.decide(&acct(OTHER), "PutImage"), Decision::NotMentioned);
        assert_eq!(p.decide(&acct("333333333333"), "BatchGetImage"), Decision::NotMentioned);

        let p = repo(r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:*"},{"Effect":"Deny","Principal":{"AWS":"222222222222"},"Action":"ecr:Put*"}]}"#).unwrap();
        assert_eq!(p.decide(&acct(OTHER), "PutImage"), Decision::Denied);
        assert_eq!(p.decide(&acct(OTHER), "BatchGetImage"), Decision::Allowed);
        assert_eq!(p.decide(&acct("333333333333"), "PutImage"), Decision::Allowed);
    }

    #[test]
    fn user_and_service_principals_match_no_berth_caller() {
        let p = repo(r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:role/ci","Service":"ecs.amazonaws.com"},"Action":"ecr:*"}}"#).unwrap();
        assert_eq!(p.decide(&acct(OTHER), "BatchGetImage"), Decision::NotMentioned);
    }

    #[test]
    fn conditions_follow_iam_rules_for_present_and_absent_keys() {
        let with = |cond: &str| {
            repo(&format!(
                r#"{{"Statement":{{"Effect":"Allow","Principal":"*","Action":"ecr:*","Condition":{cond}}}}}"#
            ))
            .unwrap()
            .decide(&acct(OTHER), "BatchGetImage")
        };
        assert_eq!(with(r#"{"StringEquals":{"aws:PrincipalAccount":"222222222222"}}"#), Decision::Allowed);
        assert_eq!(with(r#"{"StringEquals":{"aws:PrincipalAccount":["1","222222222222"]}}"#), Decision::Allowed);
        assert_eq!(with(r#"{"StringEquals":{"aws:PrincipalAccount":"333333333333"}}"#), Decision::NotMentioned);
        assert_eq!(with(r#"{"StringNotEquals":{"aws:PrincipalAccount":"333333333333"}}"#), Decision::Allowed);
        assert_eq!(with(r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::2222*:root"}}"#), Decision::Allowed);
        // Absent keys: positive tests fail, negated ones and IfExists pass.
        assert_eq!(with(r#"{"StringEquals":{"aws:SourceVpce":"vpce-1"}}"#), Decision::NotMentioned);
        assert_eq!(with(r#"{"StringNotEquals":{"aws:SourceVpce":"vpce-1"}}"#), Decision::Allowed);
        assert_eq!(with(r#"{"StringEqualsIfExists":{"aws:SourceVpce":"vpce-1"}}"#), Decision::Allowed);
        assert_eq!(with(r#"{"Null":{"aws:SourceVpce":"true"}}"#), Decision::Allowed);
        assert_eq!(with(r#"{"Null":{"aws:PrincipalAccount":"true"}}"#), Decision::NotMentioned);
        assert_eq!(with(r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#), Decision::NotMentioned);
    }

    #[test]
    fn stored_text_round_trips() {
        let text = r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:*"}}"#;
        let p = repo(text).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        let back: PolicyDocument = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }
}
