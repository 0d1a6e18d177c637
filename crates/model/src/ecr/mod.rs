//! ECR resources as the control plane keeps them.

pub mod lifecycle;
pub mod policy;
pub mod shapes;

use serde::{Deserialize, Serialize};

use crate::ids::Scope;
use crate::tags::Tags;
use crate::{Arn, Invalid, Timestamp};

/// A repository name: 2 to 256 characters of lower-case path components separated by
/// `/`, each made of letters and digits joined by `.`, `_`, `__` or runs of `-`, as ECR
/// and the OCI distribution spec require.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepositoryName(String);

/// Whether `s` follows the OCI distribution spec's repository-name grammar (at most 256
/// characters). ECR's rule is this grammar with at least 2 characters.
pub fn is_oci_repository_name(s: &str) -> bool {
    s.len() <= 256 && s.split('/').all(valid_component)
}

impl RepositoryName {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.len() >= 2 && is_oci_repository_name(s) {
            Ok(RepositoryName(s.to_string()))
        } else {
            Err(Invalid::Parameter(format!(
                "Invalid parameter at 'repositoryName' failed to satisfy constraint: '{s}' must be 2 to 256 lower-case letters, digits and . _ - separators, with / between components."
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One path component: alphanumeric runs joined by `.`, `_`, `__` or one or more `-`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl TryFrom<String> for RepositoryName {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        RepositoryName::parse(&s)
    }
}

impl From<RepositoryName> for String {
    fn from(v: RepositoryName) -> String {
        v.0
    }
}

impl std::fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ECR repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repository {
    pub scope: Scope,
    pub name: RepositoryName,
    pub created_at: Timestamp,
    pub tag_mutability: shapes::ImageTagMutability,
    pub scan_on_push: bool,
    pub encryption: shapes::EncryptionConfiguration,
    pub tags: Tags,
}

impl Repository {
    pub fn arn(&self) -> Arn {
        self.scope.arn("ecr", &format!("repository/{}", self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        for ok in ["ab", "ecr-simplehttp", "team/app", "a.b_c__d---e/f9", "project-a/nginx-web-app"] {
            assert!(RepositoryName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["a", "Upper", "-lead", "trail-", "a//b", "a/", "/a", "a..b", "a___b", "a b", &"a".repeat(257)] {
            assert!(RepositoryName::parse(bad).is_err(), "{bad}");
        }
    }
}

/// An image in a repository: one manifest, with the tags that currently point at it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub scope: Scope,
    pub repository: RepositoryName,
    /// The manifest's digest, `sha256:...`.
    pub digest: String,
    pub tags: Vec<String>,
    /// The compressed size of its layers and config, as ECR reports `imageSizeInBytes`.
    pub size: i64,
    pub media_type: String,
    pub pushed_at: Timestamp,
}
