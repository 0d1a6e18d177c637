//! Secrets Manager's domain: secret names that can only be built valid, ARNs with their
//! random six-character suffix, the staging labels and how they move between versions,
//! tags, and `ListSecrets`' filters, all as pure functions (randomness and time are the
//! caller's parameters).
//!
//! Decisions:
//! - A secret keeps at most [`MAX_VERSIONS`] versions. When a new one would pass that,
//!   the oldest versions without a staging label go, as AWS removes deprecated versions.
//! - Moving `AWSCURRENT` off a version gives that version `AWSPREVIOUS` (taken from
//!   whichever version held it), as `PutSecretValue`, `UpdateSecret` and
//!   `UpdateSecretVersionStage` do on AWS; no other label moves by itself.

// The generated shapes keep the model's every member; not all are used by Berth.
#[allow(unused_imports)]
pub mod shapes;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{Invalid, Scope};

/// The label of a secret's current version, the one reads return by default.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The label of the version that was current before the current one.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";
/// The label rotation gives a version it is preparing.
pub const AWSPENDING: &str = "AWSPENDING";
/// The largest secret value, in bytes (string or binary).
pub const MAX_VALUE_BYTES: usize = 65_536;
/// The most versions a secret keeps.
pub const MAX_VERSIONS: usize = 100;
/// The most staging labels one version may carry.
pub const MAX_STAGES_PER_VERSION: usize = 20;
/// The most tags one secret may carry.
pub const MAX_TAGS: usize = 50;
/// The recovery window `DeleteSecret` allows, in days, and its default.
pub const RECOVERY_WINDOW_DAYS: std::ops::RangeInclusive<i64> = 7..=30;
pub const DEFAULT_RECOVERY_WINDOW_DAYS: i64 = 30;
/// The longest resource policy Secrets Manager accepts, in characters.
pub const MAX_POLICY_CHARS: usize = 20_480;

/// A secret's name: 1 to 512 of ASCII letters, digits and `/_+=.@-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretName(String);

impl SecretName {
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let ok = |c: char| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c);
        if value.is_empty() || value.len() > 512 || !value.chars().all(ok) {
            return Err(Invalid::Parameter(
                "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!"
                    .into(),
            ));
        }
        Ok(SecretName(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::string_conversions!(SecretName, Invalid);

/// The characters of an ARN's random suffix.
const SUFFIX_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The six-character suffix AWS appends to a secret's name in its ARN, from six random
/// bytes.
pub fn arn_suffix(random: [u8; 6]) -> String {
    random.iter().map(|b| SUFFIX_ALPHABET[*b as usize % SUFFIX_ALPHABET.len()] as char).collect()
}

/// A secret's ARN: `arn:aws:secretsmanager:<region>:<account>:secret:<name>-<suffix>`.
pub fn secret_arn(scope: &Scope, name: &SecretName, suffix: &str) -> String {
    format!("{}{name}-{suffix}", arn_prefix(scope))
}

/// What every secret ARN of `scope` starts with.
pub fn arn_prefix(scope: &Scope) -> String {
    format!("arn:aws:secretsmanager:{}:{}:secret:", scope.region, scope.account)
}

/// How a `SecretId` names a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef<'a> {
    /// By name.
    Name(&'a str),
    /// By ARN in the caller's account and region: what follows `secret:`, which is the
    /// name and suffix of a full ARN or the name alone of a partial one.
    Arn(&'a str),
    /// An ARN of another account, region or service: names no secret of the caller.
    Foreign,
}

impl<'a> SecretRef<'a> {
    pub fn parse(id: &'a str, scope: &Scope) -> SecretRef<'a> {
        if !id.starts_with("arn:") {
            return SecretRef::Name(id);
        }
        match id.strip_prefix(arn_prefix(scope).as_str()) {
            Some(tail) if !tail.is_empty() => SecretRef::Arn(tail),
            _ => SecretRef::Foreign,
        }
    }
}

/// One version's place in its secret: when it was made and its staging labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// Milliseconds since the epoch.
    pub created: i64,
    pub stages: BTreeSet<String>,
}

/// A secret's versions by id.
pub type Versions = BTreeMap<String, VersionInfo>;

/// The version that carries `stage`, if any.
pub fn stage_holder<'a>(versions: &'a Versions, stage: &str) -> Option<&'a str> {
    versions.iter().find(|(_, v)| v.stages.contains(stage)).map(|(id, _)| id.as_str())
}

/// Attaches `stage` to `version` (which must be in `versions`), taking it from the version
/// that had it; a version that loses `AWSCURRENT` this way gets `AWSPREVIOUS`.
pub fn move_stage(versions: &mut Versions, stage: &str, version: &str) {
    let from = stage_holder(versions, stage).map(str::to_string);
    if from.as_deref() == Some(version) {
        return;
    }
    if let Some(from) = &from {
        if let Some(v) = versions.get_mut(from) {
            v.stages.remove(stage);
        }
    }
    if let Some(v) = versions.get_mut(version) {
        v.stages.insert(stage.to_string());
    }
    if stage == AWSCURRENT {
        if let Some(from) = from {
            move_stage(versions, AWSPREVIOUS, &from);
        }
    }
}

/// Removes `stage` from `version`.
pub fn remove_stage(versions: &mut Versions, stage: &str, version: &str) {
    if let Some(v) = versions.get_mut(version) {
        v.stages.remove(stage);
    }
}

/// The ids of the oldest versions without staging labels that must go so that at most
/// [`MAX_VERSIONS`] remain.
pub fn versions_to_drop(versions: &Versions) -> Vec<String> {
    let excess = versions.len().saturating_sub(MAX_VERSIONS);
    let mut unlabelled: Vec<(&i64, &String)> =
        versions.iter().filter(|(_, v)| v.stages.is_empty()).map(|(id, v)| (&v.created, id)).collect();
    unlabelled.sort();
    unlabelled.into_iter().take(excess).map(|(_, id)| id.clone()).collect()
}

/// Checks staging labels as the API does: 1 to 256 characters each, at most 20.
pub fn check_stages(stages: &[String]) -> Result<(), Invalid> {
    if stages.is_empty() || stages.len() > MAX_STAGES_PER_VERSION {
        return Err(Invalid::Parameter(format!(
            "A version must have between 1 and {MAX_STAGES_PER_VERSION} staging labels."
        )));
    }
    if let Some(s) = stages.iter().find(|s| s.is_empty() || s.chars().count() > 256) {
        return Err(Invalid::Parameter(format!("The staging label '{s}' must have between 1 and 256 characters.")));
    }
    Ok(())
}

/// Checks a client request token used as a version id: 32 to 64 characters.
pub fn check_version_id(id: &str) -> Result<(), Invalid> {
    if !(32..=64).contains(&id.chars().count()) {
        return Err(Invalid::Parameter(
            "ClientRequestToken must be between 32 and 64 characters (a version id).".into(),
        ));
    }
    Ok(())
}

/// Checks a secret's tags as Secrets Manager does: keys of 1 to 128 and values of up to
/// 256 characters, no `aws:` keys, at most [`MAX_TAGS`].
pub fn check_tags(tags: &[(String, String)]) -> Result<(), Invalid> {
    if tags.len() > MAX_TAGS {
        return Err(Invalid::Parameter(format!("A secret can have at most {MAX_TAGS} tags.")));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(Invalid::Parameter(format!("The tag key '{k}' must have between 1 and 128 characters.")));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(Invalid::Parameter(format!("The tag key '{k}' uses the reserved prefix aws:.")));
        }
        if v.chars().count() > 256 {
            return Err(Invalid::Parameter(format!("The value of tag '{k}' has more than 256 characters.")));
        }
    }
    Ok(())
}

/// Adds or replaces `new` tags in `tags`, keeping the order keys were first given in.
pub fn merge_tags(tags: &mut Vec<(String, String)>, new: Vec<(String, String)>) {
    for (k, v) in new {
        match tags.iter_mut().find(|(key, _)| *key == k) {
            Some(t) => t.1 = v,
            None => tags.push((k, v)),
        }
    }
}

/// The attribute a `ListSecrets` filter looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKey {
    Description,
    Name,
    TagKey,
    TagValue,
    PrimaryRegion,
    OwningService,
    All,
}

/// One `ListSecrets` filter: a key and the values any of which matches (a value that
/// starts with `!` excludes what it matches instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub key: FilterKey,
    pub values: Vec<String>,
}

/// What a filter looks at in one secret.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub tags: &'a [(String, String)],
}

impl Filter {
    /// Checks a value against the API's pattern `^!?[a-zA-Z0-9 :_@/+=.\-!]*$`.
    pub fn parse(key: FilterKey, values: Vec<String>) -> Result<Filter, Invalid> {
        let ok = |c: char| c.is_ascii_alphanumeric() || " :_@/+=.-!".contains(c);
        if let Some(v) = values.iter().find(|v| !v.chars().all(ok)) {
            return Err(Invalid::Parameter(format!(
                "The filter value '{v}' may contain only letters, digits, spaces and :_@/+=.-!"
            )));
        }
        Ok(Filter { key, values })
    }

    /// Whether the secret passes this filter: one of the plain values matches (or there
    /// is none) and none of the `!` values does.
    pub fn matches(&self, facts: &Facts<'_>) -> bool {
        let (negated, plain): (Vec<&String>, Vec<&String>) = self.values.iter().partition(|v| v.starts_with('!'));
        let any_plain = plain.is_empty() || plain.iter().any(|v| self.hit(v, facts));
        let no_negated = negated.iter().all(|v| !self.hit(&v[1..], facts));
        any_plain && no_negated
    }

    fn hit(&self, value: &str, f: &Facts<'_>) -> bool {
        match self.key {
            FilterKey::Name => f.name.starts_with(value),
            FilterKey::Description => {
                f.description.is_some_and(|d| d.to_lowercase().starts_with(&value.to_lowercase()))
            }
            FilterKey::TagKey => f.tags.iter().any(|(k, _)| k.starts_with(value)),
            FilterKey::TagValue => f.tags.iter().any(|(_, v)| v.starts_with(value)),
            // Berth's secrets are never replicated nor owned by another service.
            FilterKey::PrimaryRegion | FilterKey::OwningService => false,
            FilterKey::All => {
                let mut attributes = vec![f.name];
                attributes.extend(f.description);
                for (k, v) in f.tags {
                    attributes.push(k);
                    attributes.push(v);
                }
                value.split_whitespace().all(|word| {
                    let word = word.to_lowercase();
                    attributes.iter().any(|a| word_prefix(&a.to_lowercase(), &word))
                })
            }
        }
    }
}

/// Whether `word` begins `text` or one of its words (split at anything not a letter or
/// digit).
fn word_prefix(text: &str, word: &str) -> bool {
    text.starts_with(word)
        || text.match_indices(|c: char| !c.is_alphanumeric()).any(|(i, sep)| text[i + sep.len()..].starts_with(word))
}

/// The purpose a version's value is sealed for: the account, region, secret ARN and
/// version id, so a sealed value moved onto another record does not open.
pub fn sealing_purpose(scope: &Scope, arn: &str, version: &str) -> String {
    format!("secretsmanager value|{}|{}|{arn}|{version}", scope.account, scope.region)
}
