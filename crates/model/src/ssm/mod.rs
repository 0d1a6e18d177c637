//! SSM Parameter Store's domain: parameter names that can only be built valid, the
//! `name:selector` references of `GetParameter`, labels, tiers and their size limits,
//! key ids, allowed patterns, data types, and the filters of `DescribeParameters` and
//! `GetParametersByPath`, all as pure functions. Every refusal is an [`SsmError`] carrying
//! SSM's error code.
//!
//! Decisions:
//! - A value's size is counted in characters, as SSM's message words its limits ("4096
//!   characters"), which is never stricter than counting bytes.
//! - `AllowedPattern` is a Rust `regex`, matched anywhere in the value (a pattern that
//!   wants the whole value says `^...$`, as SSM's examples do). A Java pattern that the
//!   `regex` crate cannot compile (look-around, back-references) is refused with
//!   `InvalidAllowedPatternException`.
//! - Changing a parameter's type on overwrite is allowed, as SSM does today; SSM's
//!   `HierarchyTypeMismatchException` is therefore never answered.

// The generated shapes use every import, but the model has members no operation of Berth reads.
#[allow(unused_imports)]
pub mod shapes;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::Scope;

/// Versions SSM keeps of one parameter.
pub const MAX_VERSIONS: u64 = 100;
/// Labels one version may carry.
pub const MAX_LABELS_PER_VERSION: usize = 10;
/// Levels a hierarchical name may have.
pub const MAX_DEPTH: usize = 15;
/// The longest name, counted in its full ARN form, as SSM counts it.
pub const MAX_ARN_LEN: usize = 1011;
/// The largest value of a Standard parameter, in characters.
pub const STANDARD_MAX_VALUE: usize = 4096;
/// The largest value of an Advanced parameter, in characters.
pub const ADVANCED_MAX_VALUE: usize = 8192;
/// Standard parameters one account may have in a region.
pub const MAX_STANDARD_PARAMETERS: usize = 10_000;
/// Advanced parameters one account may have in a region.
pub const MAX_ADVANCED_PARAMETERS: usize = 100_000;
/// Tags one parameter may carry.
pub const MAX_TAGS: usize = 50;
/// Policies one parameter may carry.
pub const MAX_POLICIES: usize = 10;
/// The key SecureString values are encrypted with when the caller names none.
pub const DEFAULT_KEY_ID: &str = "alias/aws/ssm";

/// A refusal with SSM's error code (`ValidationException`, `ParameterNotFound`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SsmError {
    pub code: &'static str,
    pub message: String,
}

impl SsmError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        SsmError { code, message: message.into() }
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }
    pub fn not_found(name: &str) -> Self {
        Self::new("ParameterNotFound", format!("Parameter {name} not found."))
    }
}

fn name_rules() -> SsmError {
    SsmError::validation(
        "Parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive). A hierarchical name starts \
         with a slash and divides its levels with slashes; each level is letters, digits and the symbols . - _",
    )
}

/// A parameter's name: letters, digits and `_.-`, with `/` dividing the levels of a
/// hierarchical name (which must then start with `/`), at most [`MAX_DEPTH`] levels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ParameterName(String);

impl ParameterName {
    /// A name as `PutParameter` accepts it for `scope` (reserved prefixes and the length
    /// of the ARN included).
    pub fn for_put(s: &str, scope: &Scope) -> Result<Self, SsmError> {
        let name = Self::parse(s)?;
        let bare = s.trim_start_matches('/').to_ascii_lowercase();
        if bare.starts_with("aws") || bare.starts_with("ssm") {
            return Err(name_rules());
        }
        let arn_len = name.arn(scope).chars().count();
        if arn_len > MAX_ARN_LEN {
            return Err(SsmError::validation(format!(
                "The parameter name is {arn_len} characters long in its ARN form; at most {MAX_ARN_LEN} are allowed."
            )));
        }
        Ok(name)
    }

    /// Any well-formed name (reading needs no more: a reserved name simply is not there).
    pub fn parse(s: &str) -> Result<Self, SsmError> {
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c)) {
            return Err(name_rules());
        }
        if s.contains('/') {
            if !s.starts_with('/') {
                return Err(SsmError::validation("Parameter name must be a fully qualified name."));
            }
            if s[1..].split('/').any(str::is_empty) {
                return Err(name_rules());
            }
            let depth = s[1..].split('/').count();
            if depth > MAX_DEPTH {
                return Err(SsmError::new(
                    "HierarchyLevelLimitExceededException",
                    format!("A parameter name can have at most {MAX_DEPTH} levels; '{s}' has {depth}."),
                ));
            }
        }
        Ok(ParameterName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key that sorts below every name, to start a range of a map keyed by names; never
    /// a parameter's name.
    pub fn lowest() -> Self {
        ParameterName(String::new())
    }

    /// `arn:aws:ssm:<region>:<account>:parameter/<name without its leading slash>`.
    pub fn arn(&self, scope: &Scope) -> String {
        format!("arn:aws:ssm:{}:{}:parameter/{}", scope.region, scope.account, self.0.trim_start_matches('/'))
    }

    /// Whether the parameter is directly under `path` (`/a` holds `/a/b`, not `/a/b/c`),
    /// or anywhere below it when `recursive`. `path` is `/` or a hierarchy without a
    /// trailing slash.
    pub fn is_under(&self, path: &str, recursive: bool) -> bool {
        let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
        match self.0.strip_prefix(&prefix) {
            Some(rest) => !rest.is_empty() && (recursive || !rest.contains('/')),
            None => false,
        }
    }
}

crate::string_conversions!(ParameterName, SsmError);

/// Which version of a parameter a reference asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Latest,
    Version(u64),
    Label(String),
}

impl Selector {
    /// `:<version>` or `:<label>`, as answers carry it; empty for the latest.
    pub fn suffix(&self) -> Option<String> {
        match self {
            Selector::Latest => None,
            Selector::Version(v) => Some(format!(":{v}")),
            Selector::Label(l) => Some(format!(":{l}")),
        }
    }
}

/// A parameter as a request names it: a name or its ARN in the caller's scope, with an
/// optional `:version` or `:label`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub name: ParameterName,
    pub selector: Selector,
}

impl Reference {
    /// Parses `name[:selector]` or `arn:aws:ssm:<region>:<account>:parameter/<name>[:selector]`.
    /// `Ok(None)` for an ARN of another account or region (no such parameter here).
    pub fn parse(s: &str, scope: &Scope) -> Result<Option<Reference>, SsmError> {
        let plain = if let Some(rest) = s.strip_prefix("arn:") {
            let Some((head, name)) = rest.split_once(":parameter/") else {
                return Err(name_rules());
            };
            if head != format!("aws:ssm:{}:{}", scope.region, scope.account) {
                return Ok(None);
            }
            if name.contains('/') {
                format!("/{name}")
            } else {
                name.to_string()
            }
        } else {
            s.to_string()
        };
        let (name, selector) = match plain.split_once(':') {
            None => (plain.as_str(), Selector::Latest),
            Some((n, sel)) if !sel.is_empty() && !sel.contains(':') => {
                if sel.bytes().all(|b| b.is_ascii_digit()) {
                    let v = sel.parse().map_err(|_| SsmError::validation(format!("Version {sel} is not valid.")))?;
                    (n, Selector::Version(v))
                } else {
                    (n, Selector::Label(sel.to_string()))
                }
            }
            Some(_) => {
                return Err(SsmError::validation(format!(
                    "'{s}' is not a parameter reference: a name (or ARN) with at most one :version or :label."
                )))
            }
        };
        Ok(Some(Reference { name: ParameterName::parse(name)?, selector }))
    }
}

/// Why a label cannot be attached, if it cannot: 1 to 100 letters, digits and `._-`, not
/// starting with a digit, `aws` or `ssm`.
pub fn label_is_valid(label: &str) -> bool {
    let lower = label.to_ascii_lowercase();
    (1..=100).contains(&label.len())
        && label.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !label.starts_with(|c: char| c.is_ascii_digit())
        && !lower.starts_with("aws")
        && !lower.starts_with("ssm")
}

/// A parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ParameterType {
    String,
    StringList,
    SecureString,
}

impl ParameterType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterType::String => "String",
            ParameterType::StringList => "StringList",
            ParameterType::SecureString => "SecureString",
        }
    }
}

/// A parameter's tier as stored (Intelligent-Tiering is a request's choice, resolved to one
/// of these by [`resolve_tier`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Tier {
    Standard,
    Advanced,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "Standard",
            Tier::Advanced => "Advanced",
        }
    }
}

/// The tier a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierChoice {
    Standard,
    Advanced,
    IntelligentTiering,
}

/// The tier a new version gets: what was asked for (Standard when nothing was, or the
/// current tier of an Advanced parameter), Intelligent-Tiering choosing Advanced only
/// when the value or policies need it. An Advanced parameter never goes back to Standard,
/// and a value must fit its tier.
pub fn resolve_tier(
    asked: Option<TierChoice>,
    current: Option<Tier>,
    value: &str,
    has_policies: bool,
) -> Result<Tier, SsmError> {
    let len = value.chars().count();
    let needs_advanced = len > STANDARD_MAX_VALUE || has_policies;
    let tier = match asked {
        Some(TierChoice::Advanced) => Tier::Advanced,
        Some(TierChoice::IntelligentTiering) if needs_advanced => Tier::Advanced,
        Some(TierChoice::IntelligentTiering) => current.unwrap_or(Tier::Standard),
        Some(TierChoice::Standard) => Tier::Standard,
        None => current.unwrap_or(Tier::Standard),
    };
    if tier == Tier::Standard && current == Some(Tier::Advanced) {
        return Err(SsmError::validation(
            "This parameter uses the advanced tier, and a parameter cannot go back from the advanced tier to the \
             standard tier. Delete the parameter and create it again as a standard parameter if that is needed.",
        ));
    }
    match tier {
        Tier::Standard if len > STANDARD_MAX_VALUE => Err(SsmError::validation(format!(
            "Standard tier parameters support a value of at most {STANDARD_MAX_VALUE} characters (this one has {len}); \
             use the Advanced tier (or Intelligent-Tiering) for values up to {ADVANCED_MAX_VALUE}."
        ))),
        Tier::Standard if has_policies => {
            Err(SsmError::validation("Parameter policies need the Advanced tier (or Intelligent-Tiering)."))
        }
        Tier::Advanced if len > ADVANCED_MAX_VALUE => Err(SsmError::validation(format!(
            "Advanced tier parameters support a value of at most {ADVANCED_MAX_VALUE} characters (this one has {len})."
        ))),
        _ => Ok(tier),
    }
}

/// Checks a KMS key id as SSM would find it: a key id, `alias/<name>`, or a KMS key or
/// alias ARN. Berth has no KMS: the id is recorded, and SecureString values are sealed
/// with the deployment's master key whatever it names.
pub fn check_key_id(id: &str) -> Result<(), SsmError> {
    let bare = match id.strip_prefix("arn:") {
        Some(rest) => {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            match parts.as_slice() {
                [_, "kms", region, account, resource] if !region.is_empty() && account.len() == 12 => *resource,
                _ => return Err(invalid_key(id)),
            }
        }
        None => id,
    };
    let ok = match bare.split_once('/') {
        Some(("alias", name)) => !name.is_empty(),
        Some(("key", key)) => !key.is_empty() && !key.contains('/'),
        Some(_) => false,
        None => !bare.is_empty() && bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
    };
    if ok {
        Ok(())
    } else {
        Err(invalid_key(id))
    }
}

fn invalid_key(id: &str) -> SsmError {
    SsmError::new("InvalidKeyId", format!("The key id '{id}' is not a KMS key id, alias, or ARN."))
}

/// A compiled `AllowedPattern`.
#[derive(Debug, Clone)]
pub struct AllowedPattern(regex::Regex);

impl AllowedPattern {
    pub fn parse(pattern: &str) -> Result<Self, SsmError> {
        regex::RegexBuilder::new(pattern).size_limit(1 << 20).build().map(AllowedPattern).map_err(|_| {
            SsmError::new(
                "InvalidAllowedPatternException",
                format!("The allowed pattern '{pattern}' is not a regular expression Berth can use."),
            )
        })
    }

    pub fn check(&self, value: &str) -> Result<(), SsmError> {
        if self.0.is_match(value) {
            Ok(())
        } else {
            Err(SsmError::new(
                "ParameterPatternMismatchException",
                format!("Parameter value, cannot be validated against allowedPattern: {}", self.0.as_str()),
            ))
        }
    }
}

/// The data types SSM knows; `text` is the default.
pub fn check_data_type(data_type: &str, ty: ParameterType) -> Result<(), SsmError> {
    match data_type {
        "text" => Ok(()),
        "aws:ec2:image" | "aws:ssm:integration" if ty == ParameterType::String => Ok(()),
        "aws:ec2:image" | "aws:ssm:integration" => {
            Err(SsmError::validation(format!("The data type {data_type} is only for parameters of type String.")))
        }
        other => Err(SsmError::validation(format!(
            "The following data type is not supported: {other} (data type names are all lowercase)."
        ))),
    }
}

/// A parameter policy as recorded: its JSON text and type. Berth records policies and
/// answers them with status `Pending`; it does not act on them (no expiry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub text: String,
    pub kind: String,
}

/// Parses `Policies`: a JSON array of `{"Type", "Version", "Attributes"}` objects of SSM's
/// three types.
pub fn parse_policies(text: &str) -> Result<Vec<Policy>, SsmError> {
    let bad = |why: &str| {
        SsmError::new("InvalidPolicyTypeException", format!("The parameter policies are not valid: {why}."))
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| bad("not JSON"))?;
    let items = value.as_array().ok_or_else(|| bad("not a JSON array"))?;
    if items.len() > MAX_POLICIES {
        return Err(SsmError::new(
            "PoliciesLimitExceededException",
            format!("A parameter can have at most {MAX_POLICIES} policies."),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let kind = item.get("Type").and_then(serde_json::Value::as_str).unwrap_or_default();
        if !matches!(kind, "Expiration" | "ExpirationNotification" | "NoChangeNotification") {
            return Err(bad("each policy's Type is Expiration, ExpirationNotification or NoChangeNotification"));
        }
        if item.get("Attributes").is_some_and(|a| !a.is_object()) {
            return Err(SsmError::new("InvalidPolicyAttributeException", "A policy's Attributes must be an object."));
        }
        out.push(Policy { text: item.to_string(), kind: kind.to_string() });
    }
    Ok(out)
}

/// What a filter compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterKey {
    Name,
    Type,
    KeyId,
    Path,
    Label,
    Tier,
    DataType,
    Tag(String),
}

/// How a filter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOption {
    Equals,
    BeginsWith,
    Contains,
    Recursive,
    OneLevel,
}

/// Which operation a filter is for: each allows other keys and options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterUse {
    Describe,
    ByPath,
}

/// One `ParameterStringFilter` (or legacy `ParametersFilter`), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub key: FilterKey,
    pub option: FilterOption,
    pub values: Vec<String>,
}

/// What a filter sees of a parameter's latest version (or the version `Label` looks at).
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub name: &'a str,
    pub ty: ParameterType,
    pub key_id: Option<&'a str>,
    pub tier: Tier,
    pub data_type: &'a str,
    pub tags: &'a [(String, String)],
    /// The labels of every version.
    pub labels: &'a [&'a str],
}

impl Filter {
    /// Checks a `ParameterStringFilter` for `usage`, as SSM does: the keys and options it
    /// allows there, values required except for `tag:` keys.
    pub fn parse(key: &str, option: Option<&str>, values: Vec<String>, usage: FilterUse) -> Result<Filter, SsmError> {
        let key = match key {
            "Name" => FilterKey::Name,
            "Type" => FilterKey::Type,
            "KeyId" => FilterKey::KeyId,
            "Path" => FilterKey::Path,
            "Label" => FilterKey::Label,
            "Tier" => FilterKey::Tier,
            "DataType" => FilterKey::DataType,
            k if k.starts_with("tag:") && k.len() > 4 => FilterKey::Tag(k[4..].to_string()),
            k => return Err(SsmError::new("InvalidFilterKey", format!("The filter key {k} is not valid."))),
        };
        let allowed_key = match usage {
            FilterUse::Describe => key != FilterKey::Label,
            FilterUse::ByPath => matches!(key, FilterKey::Type | FilterKey::KeyId | FilterKey::Label),
        };
        if !allowed_key {
            let valid = match usage {
                FilterUse::Describe => "Name, Type, KeyId, Path, Tier, DataType, tag:<key>",
                FilterUse::ByPath => "Type, KeyId, Label",
            };
            return Err(SsmError::new(
                "InvalidFilterKey",
                format!("The filter key {} is not valid here; valid keys: {valid}.", key_name(&key)),
            ));
        }
        let default = if key == FilterKey::Path { FilterOption::OneLevel } else { FilterOption::Equals };
        let option = match option {
            None => default,
            Some("Equals") => FilterOption::Equals,
            Some("BeginsWith") => FilterOption::BeginsWith,
            Some("Contains") => FilterOption::Contains,
            Some("Recursive") => FilterOption::Recursive,
            Some("OneLevel") => FilterOption::OneLevel,
            Some(o) => return Err(invalid_option(o, &key)),
        };
        let option_ok = match (&key, option) {
            (FilterKey::Path, o) => matches!(o, FilterOption::Recursive | FilterOption::OneLevel),
            (FilterKey::Label | FilterKey::Tier, o) => o == FilterOption::Equals,
            (FilterKey::Name, FilterOption::Contains) => usage == FilterUse::Describe,
            (_, o) => matches!(o, FilterOption::Equals | FilterOption::BeginsWith),
        };
        if !option_ok {
            return Err(invalid_option(option_name(option), &key));
        }
        if values.is_empty() && !matches!(key, FilterKey::Tag(_)) {
            return Err(SsmError::new(
                "InvalidFilterValue",
                format!("The filter {} needs at least one value.", key_name(&key)),
            ));
        }
        match &key {
            FilterKey::Path => {
                for v in &values {
                    if !v.starts_with('/') || (v.len() > 1 && v.ends_with('/')) {
                        return Err(SsmError::new(
                            "InvalidFilterValue",
                            format!("The Path filter value '{v}' must start with a slash and must not end with one."),
                        ));
                    }
                }
            }
            FilterKey::Type => {
                for v in &values {
                    if !matches!(v.as_str(), "String" | "StringList" | "SecureString") {
                        return Err(SsmError::new(
                            "InvalidFilterValue",
                            format!("The Type filter value '{v}' is not one of String, StringList, SecureString."),
                        ));
                    }
                }
            }
            FilterKey::Tier => {
                for v in &values {
                    if !matches!(v.as_str(), "Standard" | "Advanced" | "Intelligent-Tiering") {
                        return Err(SsmError::new(
                            "InvalidFilterValue",
                            format!(
                                "The Tier filter value '{v}' is not one of Standard, Advanced, Intelligent-Tiering."
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(Filter { key, option, values })
    }

    /// Whether a parameter passes the filter (any of its values matching).
    pub fn matches(&self, p: &Facts<'_>) -> bool {
        let cmp = |have: &str| {
            self.values.iter().any(|v| match self.option {
                FilterOption::BeginsWith => have.starts_with(v.as_str()),
                FilterOption::Contains => have.contains(v.as_str()),
                _ => have == v,
            })
        };
        match &self.key {
            // Names given with or without their leading slash match alike.
            FilterKey::Name => {
                let bare = p.name.trim_start_matches('/');
                self.values.iter().any(|v| {
                    let v = v.trim_start_matches('/');
                    match self.option {
                        FilterOption::BeginsWith => bare.starts_with(v),
                        FilterOption::Contains => p.name.contains(v),
                        _ => bare == v,
                    }
                })
            }
            FilterKey::Type => cmp(p.ty.as_str()),
            FilterKey::KeyId => p.key_id.is_some_and(cmp),
            FilterKey::Tier => cmp(p.tier.as_str()),
            FilterKey::DataType => cmp(p.data_type),
            FilterKey::Label => p.labels.iter().any(|l| cmp(l)),
            FilterKey::Path => {
                let recursive = self.option == FilterOption::Recursive;
                self.values.iter().any(|v| {
                    let name = ParameterName(p.name.to_string());
                    name.is_under(v, recursive)
                })
            }
            FilterKey::Tag(k) => p.tags.iter().any(|(tk, tv)| tk == k && (self.values.is_empty() || cmp(tv))),
        }
    }
}

fn key_name(k: &FilterKey) -> String {
    match k {
        FilterKey::Name => "Name".into(),
        FilterKey::Type => "Type".into(),
        FilterKey::KeyId => "KeyId".into(),
        FilterKey::Path => "Path".into(),
        FilterKey::Label => "Label".into(),
        FilterKey::Tier => "Tier".into(),
        FilterKey::DataType => "DataType".into(),
        FilterKey::Tag(t) => format!("tag:{t}"),
    }
}

fn option_name(o: FilterOption) -> &'static str {
    match o {
        FilterOption::Equals => "Equals",
        FilterOption::BeginsWith => "BeginsWith",
        FilterOption::Contains => "Contains",
        FilterOption::Recursive => "Recursive",
        FilterOption::OneLevel => "OneLevel",
    }
}

fn invalid_option(option: &str, key: &FilterKey) -> SsmError {
    SsmError::new(
        "InvalidFilterOption",
        format!("The filter option {option} is not valid for the key {}.", key_name(key)),
    )
}

/// Checks the `Path` of `GetParametersByPath`: `/`, or a hierarchy that starts with `/`.
/// A trailing slash is dropped.
pub fn parse_path(path: &str) -> Result<String, SsmError> {
    let trimmed = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    let bad = || {
        SsmError::validation(
            "The parameter doesn't meet the parameter name requirements. The path must begin with a forward slash \
             \"/\" and use only letters, digits and the symbols . - _ in levels divided by \"/\".",
        )
    };
    if !trimmed.starts_with('/') {
        return Err(bad());
    }
    if trimmed == "/" {
        return Ok(trimmed.to_string());
    }
    ParameterName::parse(trimmed).map_err(|e| if e.code == "ValidationException" { bad() } else { e })?;
    Ok(trimmed.to_string())
}
