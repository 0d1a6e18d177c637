//! ECR resources as the control plane keeps them.

pub mod lifecycle;
pub mod policy;
pub mod shapes;
pub mod stored;

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
    /// The tags exempt from `tag_mutability` (only with the `*_WITH_EXCLUSION` settings,
    /// which [`TagMutability::parse`] guarantees).
    #[serde(default)]
    pub tag_mutability_exclusions: Vec<TagWildcard>,
    pub scan_on_push: bool,
    pub encryption: Encryption,
    pub tags: Tags,
}

impl Repository {
    pub fn arn(&self) -> Arn {
        self.scope.arn("ecr", &format!("repository/{}", self.name))
    }

    /// Whether a push may not move `tag` once it exists: immutable repositories protect
    /// every tag except their exclusions, mutable ones only their exclusions.
    pub fn tag_is_immutable(&self, tag: &str) -> bool {
        let excluded = self.tag_mutability_exclusions.iter().any(|w| w.matches(tag));
        match self.tag_mutability {
            shapes::ImageTagMutability::Mutable => false,
            shapes::ImageTagMutability::Immutable => true,
            shapes::ImageTagMutability::ImmutableWithExclusion => !excluded,
            shapes::ImageTagMutability::MutableWithExclusion => excluded,
        }
    }
}

/// How a repository's images are encrypted at rest, as `CreateRepository` set it. Stored
/// in the form of ECR's `EncryptionConfiguration`, which it was before it had a type of
/// its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    #[serde(rename = "encryptionType", default, skip_serializing_if = "Option::is_none")]
    pub encryption_type: Option<EncryptionType>,
    #[serde(rename = "kmsKey", default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
}

/// ECR's encryption types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncryptionType {
    #[serde(rename = "AES256")]
    Aes256,
    #[serde(rename = "KMS")]
    Kms,
    #[serde(rename = "KMS_DSSE")]
    KmsDsse,
}

/// At most this many exclusion filters per repository, as in ECR.
pub const MAX_TAG_MUTABILITY_EXCLUSIONS: usize = 5;

/// A repository's tag mutability setting together with its exclusions, checked together:
/// the `*_WITH_EXCLUSION` settings need 1 to 5 filters and the others take none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagMutability {
    pub setting: shapes::ImageTagMutability,
    pub exclusions: Vec<TagWildcard>,
}

impl TagMutability {
    /// The setting a request asks for: `MUTABLE` when it names none, as in ECR.
    pub fn requested(setting: Option<shapes::ImageTagMutability>, filters: Vec<String>) -> Result<Self, Invalid> {
        Self::parse(setting.unwrap_or(shapes::ImageTagMutability::Mutable), filters)
    }

    pub fn parse(setting: shapes::ImageTagMutability, filters: Vec<String>) -> Result<Self, Invalid> {
        use shapes::ImageTagMutability as M;
        let with_exclusion = matches!(setting, M::ImmutableWithExclusion | M::MutableWithExclusion);
        if with_exclusion && filters.is_empty() {
            return Err(Invalid::Parameter(format!(
                "imageTagMutability {} needs imageTagMutabilityExclusionFilters: give 1 to {MAX_TAG_MUTABILITY_EXCLUSIONS} WILDCARD filters naming the tags it exempts.",
                setting.as_str()
            )));
        }
        if !with_exclusion && !filters.is_empty() {
            return Err(Invalid::Parameter(format!(
                "imageTagMutabilityExclusionFilters can only be given with imageTagMutability IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION, not {}.",
                setting.as_str()
            )));
        }
        if filters.len() > MAX_TAG_MUTABILITY_EXCLUSIONS {
            return Err(Invalid::Parameter(format!(
                "At most {MAX_TAG_MUTABILITY_EXCLUSIONS} imageTagMutabilityExclusionFilters may be given; {} were.",
                filters.len()
            )));
        }
        let exclusions = filters.iter().map(|f| TagWildcard::parse(f)).collect::<Result<_, _>>()?;
        Ok(TagMutability { setting, exclusions })
    }
}

/// A tag pattern of ECR's `WILDCARD` exclusion filters: 1 to 128 letters, digits and
/// `._-`, where `*` stands for any run of characters (`dev-*`, `*-rc*`, `latest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TagWildcard(String);

impl TagWildcard {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let ok = (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._*-".contains(&b));
        if ok {
            Ok(TagWildcard(s.to_string()))
        } else {
            Err(Invalid::Parameter(format!(
                "Invalid parameter at 'imageTagMutabilityExclusionFilters.filter' failed to satisfy constraint: '{s}' must be 1 to 128 letters, digits and . _ - characters, with * as the wildcard."
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `tag` matches, `*` standing for any (possibly empty) run of characters.
    pub fn matches(&self, tag: &str) -> bool {
        let (p, t) = (self.0.as_bytes(), tag.as_bytes());
        // Greedy matching that backtracks only to the last `*`: linear in practice, and
        // the pattern's length is bounded anyway.
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ti));
                pi += 1;
            } else if pi < p.len() && p[pi] == t[ti] {
                pi += 1;
                ti += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
}

impl TryFrom<String> for TagWildcard {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        TagWildcard::parse(&s)
    }
}

impl From<TagWildcard> for String {
    fn from(v: TagWildcard) -> String {
        v.0
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

    #[test]
    fn tag_wildcards() {
        let w = |p: &str| TagWildcard::parse(p).unwrap();
        assert!(w("latest").matches("latest"));
        assert!(!w("latest").matches("latest2"));
        assert!(w("dev-*").matches("dev-"));
        assert!(w("dev-*").matches("dev-feature.1"));
        assert!(!w("dev-*").matches("prod-dev-1"));
        assert!(w("*-rc*").matches("1.0-rc2"));
        assert!(w("a*b*c").matches("aXbYbZc"));
        assert!(!w("a*b*c").matches("aXbYbZ"));
        assert!(w("*").matches("anything"));
        for bad in ["", "a b", "tag/x", "ä", &"a".repeat(129)] {
            assert!(TagWildcard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tag_mutability_needs_filters_exactly_with_exclusions() {
        use shapes::ImageTagMutability as M;
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(TagMutability::parse(M::Immutable, f(&[])).is_ok());
        assert!(TagMutability::parse(M::Immutable, f(&["dev-*"])).is_err());
        assert!(TagMutability::parse(M::ImmutableWithExclusion, f(&[])).is_err());
        assert!(TagMutability::parse(M::MutableWithExclusion, f(&["a", "b", "c", "d", "e", "f"])).is_err());
        let t = TagMutability::parse(M::ImmutableWithExclusion, f(&["dev-*", "latest"])).unwrap();
        let repo = |t: &TagMutability| Repository {
            scope: Scope {
                account: crate::AccountId::parse("123456789012").unwrap(),
                region: crate::Region::parse("us-east-1").unwrap(),
            },
            name: RepositoryName::parse("app").unwrap(),
            created_at: Timestamp::now(),
            tag_mutability: t.setting,
            tag_mutability_exclusions: t.exclusions.clone(),
            scan_on_push: false,
            encryption: Default::default(),
            tags: Default::default(),
        };
        let r = repo(&t);
        assert!(r.tag_is_immutable("1.0"));
        assert!(!r.tag_is_immutable("latest"));
        assert!(!r.tag_is_immutable("dev-x"));
        let r = repo(&TagMutability::parse(M::MutableWithExclusion, f(&["release-*"])).unwrap());
        assert!(r.tag_is_immutable("release-1"));
        assert!(!r.tag_is_immutable("latest"));
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
    /// When a pull of this image was last recorded (a manifest GET or `BatchGetImage`);
    /// recorded at most about once a minute per image, so it may trail the last pull by
    /// that much.
    #[serde(default)]
    pub last_recorded_pull_time: Option<Timestamp>,
}

/// Which images a listing keeps by their tags (ECR's `tagStatus` filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagStatus {
    Tagged,
    Untagged,
    Any,
}

impl TagStatus {
    /// Whether an image with `tags` passes the filter.
    pub fn keeps(self, tags: &[String]) -> bool {
        match self {
            TagStatus::Tagged => !tags.is_empty(),
            TagStatus::Untagged => tags.is_empty(),
            TagStatus::Any => true,
        }
    }
}

/// Why one image that a request named was not acted on: ECR's `ImageFailureCode`s that
/// Berth reports, each beside the results for the other images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFailureCode {
    InvalidImageDigest,
    InvalidImageTag,
    ImageTagDoesNotMatchDigest,
    ImageNotFound,
    MissingDigestAndTag,
    ImageReferencedByManifestList,
}
