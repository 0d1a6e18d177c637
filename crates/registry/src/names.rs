//! Names in the distribution API: repository names, tags, manifest references, and the
//! `Namespace` (account and region) that scopes every repository.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use crate::digest::{Digest, DigestError};

/// The account and region a repository belongs to. Authorization decides it; the registry
/// only keys repositories by it, so one namespace never sees another's repositories.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Namespace {
    pub account: String,
    pub region: String,
}

/// A repository name matching the OCI distribution spec's grammar, at most 256 characters.
///
/// The grammar admits no empty segment, no leading or trailing separator and no `..`, so a
/// name can never climb out of a directory; the store nonetheless never builds paths from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoName(String);

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

/// What a manifest URL names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

/// A repository within its namespace: the key of all repository metadata.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Repository {
    pub namespace: Namespace,
    pub name: RepoName,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid repository name")]
    Repository,
    #[error("invalid tag")]
    Tag,
    #[error("invalid digest: {0}")]
    Digest(#[from] DigestError),
}

pub const MAX_REPO_NAME_LEN: usize = 256;

static TAG_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").expect("valid regex"));

impl RepoName {
    pub fn parse(s: &str) -> Result<RepoName, NameError> {
        // The grammar lives in `model`, shared with ECR's stricter repository names.
        if s.len() > MAX_REPO_NAME_LEN || !model::ecr::is_oci_repository_name(s) {
            return Err(NameError::Repository);
        }
        Ok(RepoName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Tag {
    pub fn parse(s: &str) -> Result<Tag, NameError> {
        if !TAG_RE.is_match(s) {
            return Err(NameError::Tag);
        }
        Ok(Tag(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Reference {
    /// A reference containing `:` is a digest (tags cannot contain one); anything else a tag.
    pub fn parse(s: &str) -> Result<Reference, NameError> {
        if s.contains(':') {
            Ok(Reference::Digest(Digest::parse(s)?))
        } else {
            Ok(Reference::Tag(Tag::parse(s)?))
        }
    }
}

macro_rules! string_newtype {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $t {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                $t::parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
    };
}
string_newtype!(RepoName);
string_newtype!(Tag);

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn repository_names() {
        for ok in ["a", "library/ubuntu", "a.b_c__d---e/f0", "x/y/z"] {
            assert!(RepoName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "/a", "a/", "a//b", "..", "a/../b", "a/./b", "a..b", "a___b", "-a", "a-", "a b", "a\\b",
            "a/%2e%2e",
        ] {
            assert!(RepoName::parse(bad).is_err(), "{bad}");
        }
        assert!(RepoName::parse(&"a".repeat(256)).is_ok());
        assert!(RepoName::parse(&"a".repeat(257)).is_err());
    }

    #[test]
    fn tags() {
        assert!(Tag::parse("latest").is_ok());
        assert!(Tag::parse("_1.0-rc.1").is_ok());
        assert!(Tag::parse(&"a".repeat(128)).is_ok());
        for bad in ["", ".a", "-a", "a/b", "a:b", &"a".repeat(129)] {
            assert!(Tag::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn repo_name_round_trip(s in "[a-z0-9]{1,8}((\\.|_|__|-+)[a-z0-9]{1,8}){0,3}(/[a-z0-9]{1,8}((\\.|_|__|-+)[a-z0-9]{1,8}){0,3}){0,3}") {
            let n = RepoName::parse(&s).unwrap();
            prop_assert_eq!(RepoName::parse(&n.to_string()).unwrap(), n);
        }

        #[test]
        fn tag_round_trip(s in "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}") {
            let t = Tag::parse(&s).unwrap();
            prop_assert_eq!(Reference::parse(&t.to_string()).unwrap(), Reference::Tag(t));
        }

        #[test]
        fn parsed_names_never_traverse(s in "[a-z0-9./_-]{1,40}") {
            if let Ok(n) = RepoName::parse(&s) {
                prop_assert!(n.as_str().split('/').all(|seg| !seg.is_empty() && seg != "." && seg != ".."));
            }
        }
    }
}
