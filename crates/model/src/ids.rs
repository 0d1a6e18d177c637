//! Identifiers: accounts, regions, ARNs and the names ECS resources carry.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::Invalid;

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(AccountId(s.to_string()))
        } else {
            Err(Invalid::Parameter(format!("'{s}' is not a 12-digit account id")))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An AWS region name such as `us-east-1`, taken from a request's credential scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);

impl Region {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        // Lower-case words joined by hyphens, ending in a number: us-east-1, eu-central-2,
        // us-gov-west-1. Kept strict because the region is part of every ARN we mint.
        let parts: Vec<&str> = s.split('-').collect();
        let ok = s.len() <= 32
            && parts.len() >= 3
            && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
            && parts.last().is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if ok {
            Ok(Region(s.to_string()))
        } else {
            Err(Invalid::Parameter(format!("'{s}' is not a valid region name")))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Makes a string newtype that has a `parse` serialize as its string: `TryFrom<String>`
/// (which `#[serde(try_from = "String")]` calls, so a stored or received value is checked
/// again on the way in), `From<T> for String` (`#[serde(into = "String")]`) and `Display`.
/// The second argument is the error `parse` returns. Used by every crate with such
/// names, so that they all convert the same way.
#[macro_export]
macro_rules! string_conversions {
    ($t:ident, $error:ty) => {
        impl ::std::convert::TryFrom<::std::string::String> for $t {
            type Error = $error;
            fn try_from(s: ::std::string::String) -> ::std::result::Result<Self, $error> {
                $t::parse(&s)
            }
        }
        impl ::std::convert::From<$t> for ::std::string::String {
            fn from(v: $t) -> ::std::string::String {
                v.0
            }
        }
        impl ::std::fmt::Display for $t {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
crate::string_conversions!(AccountId, Invalid);
crate::string_conversions!(Region, Invalid);
crate::string_conversions!(ClusterName, Invalid);
crate::string_conversions!(Family, Invalid);

/// The account and region every resource belongs to; nothing is visible across scopes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope {
    pub account: AccountId,
    pub region: Region,
}

impl Scope {
    pub fn arn(&self, service: &str, resource: &str) -> Arn {
        Arn {
            partition: "aws".into(),
            service: service.into(),
            region: self.region.as_str().into(),
            account: self.account.as_str().into(),
            resource: resource.into(),
        }
    }
}

/// `true` for names of 1..=255 letters, digits, hyphens and underscores, the rule ECS
/// applies to cluster names, task definition families and container names.
pub fn is_ecs_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A cluster name: up to 255 letters, numbers, hyphens and underscores.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterName(String);

impl ClusterName {
    pub const DEFAULT: &'static str = "default";
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if is_ecs_name(s) {
            Ok(ClusterName(s.to_string()))
        } else {
            Err(Invalid::Parameter(
                "Cluster name must be 1 to 255 characters: letters, numbers, hyphens and underscores.".into(),
            ))
        }
    }
    pub fn default_cluster() -> Self {
        ClusterName(Self::DEFAULT.into())
    }
    /// The name under which agents that are Fargate capacity register: a pool that is no
    /// cluster of the account (it has no cluster record, so no ECS call lists it), whose
    /// instances run the account's Fargate tasks. Decision: a user cluster of this name
    /// cannot be created (CreateCluster refuses it), so the two never mix.
    pub const FARGATE_POOL: &'static str = "berth-fargate-capacity";
    pub fn fargate_pool() -> Self {
        ClusterName(Self::FARGATE_POOL.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A task definition family: up to 255 letters, numbers, hyphens and underscores.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Family(String);

impl Family {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if is_ecs_name(s) {
            Ok(Family(s.to_string()))
        } else {
            Err(Invalid::Client(
                "Family must be 1 to 255 characters: letters, numbers, hyphens and underscores.".into(),
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An Amazon Resource Name: `arn:partition:service:region:account:resource`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Arn {
    pub partition: String,
    pub service: String,
    pub region: String,
    pub account: String,
    pub resource: String,
}

impl Arn {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let bad = || Invalid::Parameter(format!("'{s}' is not a valid ARN"));
        let mut it = s.splitn(6, ':');
        let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(resource)) =
            (it.next(), it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            return Err(bad());
        };
        if partition.is_empty() || service.is_empty() || resource.is_empty() || s.len() > 2048 {
            return Err(bad());
        }
        Ok(Arn {
            partition: partition.into(),
            service: service.into(),
            region: region.into(),
            account: account.into(),
            resource: resource.into(),
        })
    }

    /// The resource's type and id when the resource part is `type/id`.
    pub fn typed_resource(&self) -> Option<(&str, &str)> {
        self.resource.split_once('/')
    }

    /// Whether this ARN names something in `scope` (same account and region).
    pub fn is_in(&self, scope: &Scope) -> bool {
        self.account == scope.account.as_str() && self.region == scope.region.as_str()
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "arn:{}:{}:{}:{}:{}", self.partition, self.service, self.region, self.account, self.resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn account_ids_are_twelve_digits() {
        assert!(AccountId::parse("123456789012").is_ok());
        assert!(AccountId::parse("12345678901").is_err());
        assert!(AccountId::parse("12345678901a").is_err());
    }

    #[test]
    fn regions() {
        for ok in ["us-east-1", "eu-central-1", "us-gov-west-1", "ap-southeast-2"] {
            assert!(Region::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "us", "us-east", "US-EAST-1", "us-east-1/../x", "us--1"] {
            assert!(Region::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ecs_names() {
        assert!(is_ecs_name("demo_cluster-1"));
        assert!(!is_ecs_name(""));
        assert!(!is_ecs_name("a b"));
        assert!(!is_ecs_name(&"a".repeat(256)));
        assert!(is_ecs_name(&"a".repeat(255)));
    }

    #[test]
    fn ids_are_stored_as_strings_and_checked_on_load() {
        let cluster = ClusterName::parse("demo").unwrap();
        assert_eq!(serde_json::to_string(&cluster).unwrap(), r#""demo""#);
        assert_eq!(serde_json::from_str::<ClusterName>(r#""demo""#).unwrap(), cluster);
        assert!(serde_json::from_str::<AccountId>(r#""12345""#).is_err());
        assert_eq!(Region::parse("us-east-1").unwrap().to_string(), "us-east-1");
    }

    proptest! {
        #[test]
        fn arns_round_trip(service in "[a-z]{1,10}", region in "[a-z]{2}-[a-z]{1,8}-[0-9]", account in "[0-9]{12}", resource in "[a-z/:_-]{1,40}") {
            let text = format!("arn:aws:{service}:{region}:{account}:{resource}");
            let arn = Arn::parse(&text).unwrap();
            prop_assert_eq!(arn.to_string(), text);
        }

        #[test]
        fn names_parse_iff_valid(s in "\\PC{0,300}") {
            prop_assert_eq!(ClusterName::parse(&s).is_ok(), is_ecs_name(&s));
        }
    }
}
