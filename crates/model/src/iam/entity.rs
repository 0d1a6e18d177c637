//! IAM's entities as values: the names, paths and ids users, roles and policies carry,
//! each checked as IAM checks it, and the ARNs they are known by.
//!
//! IAM is global: its ARNs carry the account and no region
//! (`arn:aws:iam::123456789012:user/ci`). Names are unique in an account regardless of
//! case (`CI` and `ci` are the same user), but keep the case they were created with;
//! [`IamName::key`] is the form maps are keyed by.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::ids::AccountId;
use crate::Invalid;

/// How IAM words a member that breaks its model's constraints (code `ValidationError`).
pub fn validation_error(member: &str, value: &str, constraint: &str) -> Invalid {
    Invalid::Parameter(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
    ))
}

fn check_length(member: &str, value: &str, min: usize, max: usize) -> Result<(), Invalid> {
    let n = value.chars().count();
    if n < min {
        return Err(validation_error(
            member,
            value,
            &format!("Member must have length greater than or equal to {min}"),
        ));
    }
    if n > max {
        return Err(validation_error(member, value, &format!("Member must have length less than or equal to {max}")));
    }
    Ok(())
}

/// The characters of IAM user, role, group and policy names: `[\w+=,.@-]`.
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// The name of a user, role, group or policy: 1 to `max` of `[\w+=,.@-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IamName(String);

/// The longest user and role names.
pub const MAX_USER_OR_ROLE_NAME: usize = 64;
/// The longest policy names.
pub const MAX_POLICY_NAME: usize = 128;
/// The longest group names.
pub const MAX_GROUP_NAME: usize = 128;

impl IamName {
    /// Checks `value`, the request member `member`, as a name of at most `max` characters.
    pub fn parse_member(member: &str, value: &str, max: usize) -> Result<Self, Invalid> {
        check_length(member, value, 1, max)?;
        if !value.chars().all(name_char) {
            return Err(validation_error(
                member,
                value,
                "Member must satisfy regular expression pattern: [\\w+=,.@-]+",
            ));
        }
        Ok(IamName(value.to_string()))
    }

    /// A stored name (the longest any entity has).
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        Self::parse_member("name", value, MAX_POLICY_NAME)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as maps are keyed: IAM names are unique regardless of case.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}
crate::string_conversions!(IamName, Invalid);

/// An entity's path: `/` or `/a/b/`, of printable ASCII, at most 512 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IamPath(String);

impl IamPath {
    pub fn root() -> Self {
        IamPath("/".into())
    }

    pub fn parse_member(member: &str, value: &str) -> Result<Self, Invalid> {
        check_length(member, value, 1, 512)?;
        let printable = value.chars().all(|c| ('\u{21}'..='\u{7e}').contains(&c));
        if !(value.starts_with('/') && value.ends_with('/') && printable) {
            return Err(validation_error(
                member,
                value,
                "Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)",
            ));
        }
        Ok(IamPath(value.to_string()))
    }

    pub fn parse(value: &str) -> Result<Self, Invalid> {
        Self::parse_member("path", value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
crate::string_conversions!(IamPath, Invalid);

/// Checks a `PathPrefix` of a List call: `/` then printable ASCII.
pub fn check_path_prefix(value: &str) -> Result<(), Invalid> {
    check_length("pathPrefix", value, 1, 512)?;
    if !value.starts_with('/') || !value.chars().all(|c| ('\u{21}'..='\u{7f}').contains(&c)) {
        return Err(validation_error(
            "pathPrefix",
            value,
            "Member must satisfy regular expression pattern: \\u002F[\\u0021-\\u007F]*",
        ));
    }
    Ok(())
}

/// The kinds of entity that have an ARN and a unique id, with the prefix AWS gives ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EntityKind {
    User,
    Role,
    Group,
    Policy,
}

impl EntityKind {
    /// The ARN's resource type.
    pub fn arn_type(self) -> &'static str {
        match self {
            EntityKind::User => "user",
            EntityKind::Role => "role",
            EntityKind::Group => "group",
            EntityKind::Policy => "policy",
        }
    }

    /// The first four characters of the unique ids of this kind, as AWS's.
    pub fn id_prefix(self) -> &'static str {
        match self {
            EntityKind::User => "AIDA",
            EntityKind::Role => "AROA",
            EntityKind::Group => "AGPA",
            EntityKind::Policy => "ANPA",
        }
    }
}

/// The characters of AWS's unique ids and access key ids after their prefix (upper-case
/// base 32). Ids are random; the control plane draws them.
pub const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// How many characters follow an entity id's prefix (ids are 21 characters, as AWS's).
pub const ID_SUFFIX_LEN: usize = 17;

/// The ARN of an entity of an account: `arn:aws:iam::<account>:<type><path><name>`.
pub fn entity_arn(account: &AccountId, kind: EntityKind, path: &IamPath, name: &IamName) -> String {
    format!("arn:aws:iam::{account}:{}{}{}", kind.arn_type(), path.as_str(), name.as_str())
}

/// The ARN a role's session acts as: `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
pub fn assumed_role_arn(account: &AccountId, role: &IamName, session: &SessionName) -> String {
    format!("arn:aws:sts::{account}:assumed-role/{role}/{session}")
}

/// A policy's ARN taken apart: whose it is (an account, or AWS's own managed policies),
/// its path and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyArn {
    /// `None` for AWS-managed policies (`arn:aws:iam::aws:policy/...`).
    pub account: Option<AccountId>,
    pub path: IamPath,
    pub name: IamName,
}

impl PolicyArn {
    /// Reads `value` (request member `member`) as a policy ARN. IAM answers a malformed
    /// one with `InvalidInput`, which the caller words; `None` here.
    pub fn parse(value: &str) -> Option<PolicyArn> {
        let rest = value.strip_prefix("arn:aws:iam::")?;
        let (owner, resource) = rest.split_once(':')?;
        let account = match owner {
            "aws" => None,
            a => Some(AccountId::parse(a).ok()?),
        };
        let rest = resource.strip_prefix("policy/")?;
        let (path, name) = match rest.rfind('/') {
            Some(i) => (format!("/{}", &rest[..=i]), &rest[i + 1..]),
            None => ("/".to_string(), rest),
        };
        Some(PolicyArn { account, path: IamPath::parse(&path).ok()?, name: IamName::parse(name).ok()? })
    }

    pub fn arn(&self) -> String {
        let owner = self.account.as_ref().map_or("aws", |a| a.as_str());
        format!("arn:aws:iam::{owner}:policy{}{}", self.path.as_str(), self.name.as_str())
    }

    /// The form maps are keyed by: policy ARNs are unique regardless of the name's case.
    pub fn key(&self) -> String {
        self.arn().to_ascii_lowercase()
    }
}

impl fmt::Display for PolicyArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn())
    }
}

/// A role session's name (`RoleSessionName`): 2 to 64 of `[\w+=,.@-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionName(String);

impl SessionName {
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        check_length("roleSessionName", value, 2, 64)?;
        if !value.chars().all(name_char) {
            return Err(validation_error(
                "roleSessionName",
                value,
                "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
            ));
        }
        Ok(SessionName(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
crate::string_conversions!(SessionName, Invalid);

/// Whether an access key may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum KeyStatus {
    #[default]
    Active,
    Inactive,
}

impl KeyStatus {
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        match value {
            "Active" => Ok(KeyStatus::Active),
            "Inactive" => Ok(KeyStatus::Inactive),
            other => Err(validation_error(
                "status",
                other,
                "Member must satisfy enum value set: [Active, Inactive, Expired]",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "Active",
            KeyStatus::Inactive => "Inactive",
        }
    }
}

/// Checks IAM tags: at most 50, keys 1-128 and values up to 256 of letters, digits,
/// spaces and `_.:/=+-@`, keys unique regardless of case.
pub fn check_tags(tags: &[(String, String)]) -> Result<(), Invalid> {
    if tags.len() > 50 {
        return Err(validation_error("tags", "[...]", "Member must have length less than or equal to 50"));
    }
    let ok = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in tags {
        check_length("tags.member.key", k, 1, 128)?;
        check_length("tags.member.value", v, 0, 256)?;
        if !k.chars().all(ok) || !v.chars().all(ok) {
            return Err(validation_error(
                "tags",
                k,
                "Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+",
            ));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(Invalid::Client(format!("The tag key '{k}' uses the reserved prefix aws:.")));
        }
        if !seen.insert(k.to_lowercase()) {
            return Err(Invalid::Client(
                "Duplicate tag keys found. Please note that Tag keys are case insensitive.".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_are_checked_as_iam_checks_them() {
        assert!(IamName::parse_member("userName", "ci-deploy+bot@x.y,z=1", 64).is_ok());
        assert!(IamName::parse_member("userName", "", 64).is_err());
        assert!(IamName::parse_member("userName", "a b", 64).is_err());
        assert!(IamName::parse_member("userName", &"a".repeat(65), 64).is_err());
        assert!(IamName::parse_member("policyName", &"a".repeat(128), 128).is_ok());
        assert_eq!(IamName::parse("Web").unwrap().key(), "web");
        for ok in ["/", "/a/", "/team-1/ci/"] {
            assert!(IamPath::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/", "/a", "/a b/"] {
            assert!(IamPath::parse(bad).is_err(), "{bad}");
        }
        assert!(check_path_prefix("/").is_ok() && check_path_prefix("x").is_err());
    }

    #[test]
    fn policy_arns_read_both_owners_and_paths() {
        let a = PolicyArn::parse("arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy").unwrap();
        assert_eq!(
            (a.account, a.path.as_str(), a.name.as_str()),
            (None, "/service-role/", "AmazonECSTaskExecutionRolePolicy")
        );
        let b = PolicyArn::parse("arn:aws:iam::123456789012:policy/deploy-web-only").unwrap();
        assert_eq!(b.arn(), "arn:aws:iam::123456789012:policy/deploy-web-only");
        assert_eq!(b.path.as_str(), "/");
        for bad in ["", "arn:aws:iam::123:policy/x", "arn:aws:iam::123456789012:role/x", "arn:aws:iam::aws:policy/"] {
            assert!(PolicyArn::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ids_and_arns_have_aws_shapes() {
        assert_eq!(EntityKind::User.id_prefix().len() + ID_SUFFIX_LEN, 21);
        let acct = AccountId::parse("123456789012").unwrap();
        let name = IamName::parse("ci").unwrap();
        assert_eq!(entity_arn(&acct, EntityKind::User, &IamPath::root(), &name), "arn:aws:iam::123456789012:user/ci");
        let path = IamPath::parse("/team/").unwrap();
        assert_eq!(entity_arn(&acct, EntityKind::Role, &path, &name), "arn:aws:iam::123456789012:role/team/ci");
        let s = SessionName::parse("build-42").unwrap();
        assert_eq!(assumed_role_arn(&acct, &name, &s), "arn:aws:sts::123456789012:assumed-role/ci/build-42");
        assert!(SessionName::parse("a").is_err());
    }
}
