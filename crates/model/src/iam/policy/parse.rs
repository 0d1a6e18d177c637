//! Policy JSON → compiled statements, refusing what IAM refuses with IAM's messages.
//!
//! IAM checks a document in stages and reports the first stage that fails, so a document
//! with several mistakes gets the message of the earliest: the JSON shape ("Syntax errors in
//! policy." for an identity policy; trust policies name the field), what the policy kind
//! forbids or requires (principals, trust-policy resources), the legacy parser's checks
//! (`Effect` spelling, dates), statement ids, missing actions and resources, resource ARNs,
//! and last the vendor prefix of actions and condition keys.

use serde_json::{Map, Value};

use super::condition::Condition;
use super::pattern::{ArnPattern, Pattern, Syntax};
use super::{MalformedPolicy, Negatable, PolicyKind, PolicyVersion, PrincipalPattern, PrincipalSet, Statement};

const SYNTAX: &str = "Syntax errors in policy.";
const LEGACY: &str = "The policy failed legacy parsing";
const NO_VENDOR: &str = "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.";

const STATEMENT_FIELDS: &[&str] =
    &["Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource", "Condition"];

/// The resource-path prefixes IAM accepts in an `arn:aws:iam::` resource.
const IAM_RESOURCE_PREFIXES: &[&str] = &[
    "user/",
    "federated-user/",
    "role/",
    "group/",
    "instance-profile/",
    "mfa/",
    "server-certificate/",
    "policy/",
    "sms-mfa/",
    "saml-provider/",
    "oidc-provider/",
    "report/",
    "access-report/",
];

/// The partitions an ARN may name.
const PARTITIONS: &[&str] =
    &["aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f", "aws-eusc"];

/// How much of IAM's checking a document gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Checks {
    /// All of IAM's, with its messages.
    Iam,
    /// The JSON shape only, for a document a service has already checked with its own rules
    /// (ECR's repository policies): what IAM would refuse compiles to something that matches
    /// nothing (an unknown principal, a date that is not one).
    ShapeOnly,
}

pub(super) fn parse(
    text: &str,
    kind: PolicyKind,
    checks: Checks,
) -> Result<(PolicyVersion, Vec<Statement>), MalformedPolicy> {
    let err = |m: &str| MalformedPolicy::new(m);
    let value: Value = serde_json::from_str(text).map_err(|_| err(SYNTAX))?;
    let doc = value.as_object().ok_or_else(|| err(SYNTAX))?;
    let version = document_syntax(doc, kind)?;
    let raws: Vec<Raw<'_>> =
        statements(doc, kind)?.into_iter().map(|s| Raw::read(s, kind, version)).collect::<Result<_, _>>()?;
    let strict = checks == Checks::Iam;
    if strict {
        kind_rules(&raws, kind)?;
    }
    let principals: Vec<Option<PrincipalSet>> = raws
        .iter()
        .map(|r| r.principal.map(|(negated, v)| principals(negated, v, strict)).transpose())
        .collect::<Result<_, _>>()?;
    if strict {
        content_rules(&raws, kind)?;
    }

    let variables = version == PolicyVersion::V2012_10_17;
    let action_syntax = Syntax { wildcards: true, variables: false, fold: true };
    let statements = raws
        .into_iter()
        .zip(principals)
        .map(|(raw, principal)| {
            let (negated, actions) = raw.actions.unwrap_or_default();
            Statement {
                allow: raw.effect.eq_ignore_ascii_case("Allow"),
                principal,
                actions: Negatable {
                    negated,
                    items: actions.iter().map(|a| Pattern::compile(a, action_syntax)).collect(),
                },
                resources: raw.resources.map(|(negated, list)| Negatable {
                    negated,
                    items: list.iter().map(|r| ArnPattern::compile(r, variables)).collect(),
                }),
                conditions: raw.conditions,
            }
        })
        .collect();
    Ok((version, statements))
}

/// What the policy kind forbids or requires.
fn kind_rules(raws: &[Raw<'_>], kind: PolicyKind) -> Result<(), MalformedPolicy> {
    let err = |m: &str| MalformedPolicy::new(m);
    for raw in raws {
        match kind {
            PolicyKind::Identity if raw.principal.is_some() => {
                return Err(err("Policy document should not specify a principal."))
            }
            PolicyKind::Trust | PolicyKind::Resource if raw.principal.is_none() => {
                return Err(err("Missing required field Principal"))
            }
            PolicyKind::Trust => {
                for field in ["Resource", "NotResource"] {
                    if raw.obj.contains_key(field) {
                        return Err(MalformedPolicy::new(format!("Has prohibited field {field}")));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The legacy parser's checks, statement ids, actions, resources and vendors, in IAM's order.
fn content_rules(raws: &[Raw<'_>], kind: PolicyKind) -> Result<(), MalformedPolicy> {
    let err = |m: &str| MalformedPolicy::new(m);
    // The legacy parser: Effect is case-sensitive, dates must be dates, and ARNs need
    // their colons.
    let mut resource_error: Option<String> = None;
    for raw in raws {
        if raw.effect != "Allow" && raw.effect != "Deny" || raw.bad_date {
            return Err(err(LEGACY));
        }
        if let Some((_, list)) = &raw.resources {
            let before = resource_error.is_some();
            for r in list {
                if resource_error.is_none() {
                    resource_error = resource_format_error(r);
                }
            }
            if !before && resource_error.is_none() && list.iter().any(|r| !legacy_resource_ok(r)) {
                return Err(err(LEGACY));
            }
        }
    }

    let mut sids = std::collections::HashSet::new();
    for raw in raws {
        if let Some(sid) = raw.sid.filter(|s| !s.is_empty()) {
            if !sids.insert(sid) {
                return Err(err("Statement IDs (SID) in a single policy must be unique."));
            }
        }
    }
    if kind == PolicyKind::Identity
        && raws.iter().any(|r| r.sid.is_some_and(|s| !s.bytes().all(|b| b.is_ascii_alphanumeric())))
    {
        return Err(err(
            "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular expression [0-9A-Za-z]*",
        ));
    }
    if raws.iter().any(|r| r.actions.as_ref().is_none_or(|(_, list)| list.is_empty())) {
        return Err(err("Policy statement must contain actions."));
    }
    if kind == PolicyKind::Identity && raws.iter().any(|r| r.resources.as_ref().is_none_or(|(_, l)| l.is_empty())) {
        return Err(err("Policy statement must contain resources."));
    }
    if let Some(e) = resource_error {
        return Err(MalformedPolicy::new(e));
    }
    for raw in raws {
        for a in raw.actions.iter().flat_map(|(_, l)| l) {
            check_vendor(a)?;
        }
        // Condition keys may hold more colons (ec2:ResourceTag/aws:cloudformation:stack-name).
        if raw.condition_keys.iter().any(|k| !k.contains(':')) {
            return Err(err(NO_VENDOR));
        }
    }

    Ok(())
}

/// Top-level fields, `Version` and `Id`.
fn document_syntax(doc: &Map<String, Value>, kind: PolicyKind) -> Result<PolicyVersion, MalformedPolicy> {
    for key in doc.keys() {
        if !["Version", "Id", "Statement"].contains(&key.as_str()) {
            return Err(unknown_field(kind, key));
        }
    }
    let version = match doc.get("Version") {
        None => PolicyVersion::V2008_10_17,
        Some(Value::String(v)) if v == "2012-10-17" => PolicyVersion::V2012_10_17,
        Some(Value::String(v)) if v == "2008-10-17" => PolicyVersion::V2008_10_17,
        Some(_) => return Err(MalformedPolicy::new(SYNTAX)),
    };
    if doc.get("Id").is_some_and(|id| !id.is_string()) {
        return Err(MalformedPolicy::new(SYNTAX));
    }
    Ok(version)
}

/// A field IAM does not know: identity policies answer with the generic syntax message,
/// the trust-policy parser names the field.
fn unknown_field(kind: PolicyKind, field: &str) -> MalformedPolicy {
    match kind {
        PolicyKind::Identity => MalformedPolicy::new(SYNTAX),
        PolicyKind::Trust | PolicyKind::Resource => MalformedPolicy::new(format!("Unknown field {field}")),
    }
}

fn statements(doc: &Map<String, Value>, kind: PolicyKind) -> Result<Vec<&Map<String, Value>>, MalformedPolicy> {
    let list: Vec<&Value> = match doc.get("Statement") {
        None if kind != PolicyKind::Identity => return Err(MalformedPolicy::new("Missing required field Statement")),
        Some(Value::Array(list)) if !list.is_empty() => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => return Err(MalformedPolicy::new(SYNTAX)),
    };
    list.into_iter().map(|s| s.as_object().ok_or_else(|| MalformedPolicy::new(SYNTAX))).collect()
}

/// A statement whose JSON shape is right, before the later stages check its content.
struct Raw<'a> {
    obj: &'a Map<String, Value>,
    sid: Option<&'a str>,
    effect: &'a str,
    principal: Option<(bool, &'a Value)>,
    actions: Option<(bool, Vec<&'a str>)>,
    resources: Option<(bool, Vec<&'a str>)>,
    conditions: Vec<Condition>,
    condition_keys: Vec<&'a str>,
    /// A `Date...` condition value that is not a date (a legacy-parser failure).
    bad_date: bool,
}

impl<'a> Raw<'a> {
    fn read(obj: &'a Map<String, Value>, kind: PolicyKind, version: PolicyVersion) -> Result<Raw<'a>, MalformedPolicy> {
        let syntax = || MalformedPolicy::new(SYNTAX);
        if let Some(key) = obj.keys().find(|k| !STATEMENT_FIELDS.contains(&k.as_str())) {
            return Err(unknown_field(kind, key));
        }
        let sid = match obj.get("Sid") {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(syntax()),
        };
        let effect = match obj.get("Effect") {
            Some(Value::String(e)) if e.eq_ignore_ascii_case("allow") || e.eq_ignore_ascii_case("deny") => e.as_str(),
            None if kind != PolicyKind::Identity => return Err(MalformedPolicy::new("Missing required field Effect")),
            _ => return Err(syntax()),
        };
        let principal = one_of(obj, "Principal", "NotPrincipal")?;
        if let Some((_, p)) = principal {
            principal_syntax(p)?;
        }
        let actions = one_of(obj, "Action", "NotAction")?.map(|(n, v)| strings(v).map(|l| (n, l))).transpose()?;
        let resources = one_of(obj, "Resource", "NotResource")?.map(|(n, v)| strings(v).map(|l| (n, l))).transpose()?;
        let mut raw = Raw {
            obj,
            sid,
            effect,
            principal,
            actions,
            resources,
            conditions: Vec::new(),
            condition_keys: Vec::new(),
            bad_date: false,
        };
        if let Some(c) = obj.get("Condition") {
            raw.read_conditions(c, version)?;
        }
        Ok(raw)
    }

    fn read_conditions(&mut self, c: &'a Value, version: PolicyVersion) -> Result<(), MalformedPolicy> {
        let syntax = || MalformedPolicy::new(SYNTAX);
        for (operator, block) in c.as_object().ok_or_else(syntax)? {
            let block = block.as_object().ok_or_else(syntax)?;
            for (key, values) in block {
                let values = condition_values(values).ok_or_else(syntax)?;
                let c = Condition::compile(operator, key, &values, version == PolicyVersion::V2012_10_17)
                    .map_err(|_| syntax())?;
                self.bad_date |= c.has_unreadable_date();
                self.conditions.push(c);
                self.condition_keys.push(key);
            }
        }
        Ok(())
    }
}

/// The value of `a` or `b` and whether it was `b` (the negated form); both is an error.
fn one_of<'a>(obj: &'a Map<String, Value>, a: &str, b: &str) -> Result<Option<(bool, &'a Value)>, MalformedPolicy> {
    match (obj.get(a), obj.get(b)) {
        (Some(_), Some(_)) => Err(MalformedPolicy::new(SYNTAX)),
        (Some(v), None) => Ok(Some((false, v))),
        (None, Some(v)) => Ok(Some((true, v))),
        (None, None) => Ok(None),
    }
}

/// A string or a list of strings.
fn strings(v: &Value) -> Result<Vec<&str>, MalformedPolicy> {
    match v {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(list) => list.iter().map(|x| x.as_str().ok_or_else(|| MalformedPolicy::new(SYNTAX))).collect(),
        _ => Err(MalformedPolicy::new(SYNTAX)),
    }
}

/// A condition value: a string, number or boolean, or a list of them.
fn condition_values(v: &Value) -> Option<Vec<String>> {
    let scalar = |x: &Value| match x {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match v {
        Value::Array(list) => list.iter().map(scalar).collect(),
        other => scalar(other).map(|s| vec![s]),
    }
}

/// `"*"` or `{"AWS"|"Service"|"Federated"|"CanonicalUser": string | [string]}`.
fn principal_syntax(v: &Value) -> Result<(), MalformedPolicy> {
    let ok = match v {
        Value::String(s) => s == "*",
        Value::Object(map) => {
            !map.is_empty()
                && map.iter().all(|(k, v)| {
                    ["AWS", "Service", "Federated", "CanonicalUser"].contains(&k.as_str()) && strings(v).is_ok()
                })
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(MalformedPolicy::new(SYNTAX))
    }
}

/// The principals of a statement; `strict` refuses what IAM cannot resolve, otherwise it
/// matches no one.
fn principals(negated: bool, v: &Value, strict: bool) -> Result<PrincipalSet, MalformedPolicy> {
    let mut set = PrincipalSet { negated, items: Vec::new(), written: Vec::new() };
    let Value::Object(map) = v else {
        set.items.push(PrincipalPattern::Everyone);
        return Ok(set);
    };
    for (kind, names) in map {
        for name in strings(names)? {
            let item = match kind.as_str() {
                "AWS" => {
                    set.written.push(name.into());
                    match aws_principal(name) {
                        Some(p) => p,
                        None if strict => return Err(MalformedPolicy::invalid_principal("AWS", name)),
                        None => PrincipalPattern::Never,
                    }
                }
                // No service is "*": name it, or use "Principal": "*".
                "Service" if name == "*" => PrincipalPattern::Never,
                "Service" if is_service_name(name) => PrincipalPattern::Service(name.to_ascii_lowercase().into()),
                _ if strict && (name.trim().is_empty() || kind == "Service") => {
                    return Err(MalformedPolicy::invalid_principal(kind, name))
                }
                _ => PrincipalPattern::Never,
            };
            set.items.push(item);
        }
    }
    Ok(set)
}

/// A service principal looks like a host name: `ecs-tasks.amazonaws.com`.
fn is_service_name(name: &str) -> bool {
    name.contains('.')
        && !name.starts_with('.')
        && !name.ends_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `*`, an account id, or the ARN of an account root, user, role or role session. IAM
/// takes no wildcard inside a principal.
fn aws_principal(n: &str) -> Option<PrincipalPattern> {
    if n == "*" {
        return Some(PrincipalPattern::AnyAws);
    }
    let is_account = |s: &str| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit());
    if is_account(n) {
        return Some(PrincipalPattern::Account(n.into()));
    }
    if n.contains(['*', '?']) {
        return None;
    }
    let parts: Vec<&str> = n.splitn(6, ':').collect();
    let ["arn", partition, service, "", account, resource] = parts[..] else {
        return None;
    };
    if !PARTITIONS.contains(&partition) || !is_account(account) {
        return None;
    }
    let named = |prefix: &str| resource.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty());
    match service {
        "iam" if resource == "root" => Some(PrincipalPattern::Account(account.into())),
        "iam" if named("user/") => Some(PrincipalPattern::User(n.into())),
        "iam" if named("role/") => Some(PrincipalPattern::Role(n.into())),
        "iam" if named("federated-user/") => Some(PrincipalPattern::Never),
        "sts" if named("assumed-role/") && resource.matches('/').count() >= 2 => {
            Some(PrincipalPattern::Session(n.into()))
        }
        "sts" if named("federated-user/") => Some(PrincipalPattern::Never),
        _ => None,
    }
}

/// IAM's message for a `Resource` value that is not `*` or a well-formed ARN.
fn resource_format_error(r: &str) -> Option<String> {
    if r == "*" {
        return None;
    }
    let Some((_, rest)) = r.split_once(':') else {
        return Some(format!("Resource {r} must be in ARN format or \"*\"."));
    };
    let (partition, after) = match rest.split_once(':') {
        Some((p, a)) => (p, Some(a)),
        None => (rest, None),
    };
    if !PARTITIONS.contains(&partition) && !partition.contains(['*', '?']) {
        let parts: Vec<&str> = after.unwrap_or("").split(':').collect();
        let at = |i: usize| parts.get(i).copied().filter(|s| !s.is_empty() || (i == 0 && parts.len() > 1));
        let tail = if parts.len() > 3 { parts[3..].join(":") } else { "*".to_string() };
        return Some(format!(
            "Partition \"{partition}\" is not valid for resource \"arn:{partition}:{}:{}:{}:{}\".",
            at(0).unwrap_or("*"),
            parts.get(1).copied().unwrap_or("*"),
            parts.get(2).copied().unwrap_or("*"),
            tail,
        ));
    }
    let Some(after) = after else {
        return Some("Resource vendor must be fully qualified and cannot contain regexes.".into());
    };
    let (service, after) = after.split_once(':').unwrap_or((after, ""));
    let (region, after) = after.split_once(':').unwrap_or((after, ""));
    match service {
        "iam" if !region.is_empty() => return Some(format!("IAM resource {r} cannot contain region information.")),
        "s3" if !region.is_empty() => return Some(format!("Resource {r} can not contain region information.")),
        _ => {}
    }
    if service == "iam" {
        let resource = after.split_once(':').map_or("", |(_, res)| res);
        if resource != "*" && !IAM_RESOURCE_PREFIXES.iter().any(|p| resource.starts_with(p)) {
            return Some(format!(
                "IAM resource path must either be \"*\" or start with {}.",
                IAM_RESOURCE_PREFIXES.join(", ")
            ));
        }
    }
    None
}

/// The legacy parser wants an ARN with all its colons once it uses `::`, and a vendor.
fn legacy_resource_ok(r: &str) -> bool {
    r == "*"
        || ((r.matches(':').count() >= 5 || !r.contains("::")) && r.split(':').nth(2).is_some_and(|v| !v.is_empty()))
}

/// Actions are `vendor:name`.
fn check_vendor(name: &str) -> Result<(), MalformedPolicy> {
    if name == "*" {
        return Ok(());
    }
    let mut parts = name.split(':');
    let vendor = parts.next().unwrap_or("");
    match (parts.next(), parts.next()) {
        (None, _) => Err(MalformedPolicy::new(NO_VENDOR)),
        (Some(_), Some(_)) => Err(MalformedPolicy::new("Actions/Condition can contain only one colon.")),
        _ if vendor != "*" && !vendor.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') => {
            Err(MalformedPolicy::new(format!("Vendor {vendor} is not valid")))
        }
        _ => Ok(()),
    }
}
