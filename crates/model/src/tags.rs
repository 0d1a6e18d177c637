//! Resource tags and AWS's rules for them.

use serde::{Deserialize, Serialize};

use crate::Invalid;

/// At most this many user tags on one resource.
pub const MAX_TAGS: usize = 50;

/// A resource's tags, in the order they were first set; keys are unique.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tags(Vec<(String, String)>);

impl Tags {
    /// Validates a tag set given by a user: keys 1..=128 and values 0..=256 characters of
    /// letters, digits, spaces and `_.:/=+-@`; the `aws:` prefix is reserved.
    pub fn parse(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Self, Invalid> {
        let mut tags = Tags::default();
        tags.merge(pairs)?;
        Ok(tags)
    }

    /// Adds or overwrites tags, enforcing the limits on the result.
    pub fn merge(&mut self, pairs: impl IntoIterator<Item = (String, String)>) -> Result<(), Invalid> {
        let mut next = self.0.clone();
        for (k, v) in pairs {
            check_key(&k)?;
            check_value(&k, &v)?;
            match next.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => next.push((k, v)),
            }
        }
        // Tags AWS sets (`aws:`) do not count against the user's limit.
        let user = next.iter().filter(|(k, _)| !is_reserved(k)).count();
        if user > MAX_TAGS {
            return Err(Invalid::Parameter(format!(
                "A resource can have at most {MAX_TAGS} tags; this request would give it {user}."
            )));
        }
        self.0 = next;
        Ok(())
    }

    /// Adds a tag that AWS itself sets (`aws:` prefix, e.g. `aws:ecs:clusterName`), which
    /// users may not set; it does not count against the user's limit.
    pub fn insert_managed(&mut self, key: &str, value: &str) {
        debug_assert!(key.starts_with("aws:"));
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.0.push((key.to_string(), value.to_string())),
        }
    }

    /// Removes the tags a user names; keys the resource does not have are ignored, and so
    /// are the tags AWS sets (`aws:`), which a user cannot delete.
    pub fn remove(&mut self, keys: &[String]) {
        self.0.retain(|(k, _)| is_reserved(k) || !keys.contains(k));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn allowed(c: char) -> bool {
    c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c)
}

fn check_key(k: &str) -> Result<(), Invalid> {
    let n = k.chars().count();
    if !(1..=128).contains(&n) {
        return Err(Invalid::Parameter("Tag keys must be 1 to 128 characters long.".into()));
    }
    if !k.chars().all(allowed) {
        return Err(Invalid::Parameter(format!(
            "Tag key '{k}' has characters that are not allowed: use letters, numbers, spaces and _ . : / = + - @"
        )));
    }
    if is_reserved(k) {
        return Err(Invalid::Parameter(format!("Tag key '{k}' uses the reserved prefix 'aws:'.")));
    }
    Ok(())
}

/// Whether a key is in the `aws:` prefix AWS reserves, in any letter case.
fn is_reserved(k: &str) -> bool {
    k.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:"))
}

fn check_value(k: &str, v: &str) -> Result<(), Invalid> {
    if v.chars().count() > 256 {
        return Err(Invalid::Parameter(format!("The value of tag '{k}' is longer than 256 characters.")));
    }
    if !v.chars().all(allowed) {
        return Err(Invalid::Parameter(format!(
            "The value of tag '{k}' has characters that are not allowed: use letters, numbers, spaces and _ . : / = + - @"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn reserved_prefix_and_limits() {
        assert!(Tags::parse([t("aws:x", "1")]).is_err());
        assert!(Tags::parse([t("AWS:x", "1")]).is_err());
        assert!(Tags::parse([t("", "1")]).is_err());
        assert!(Tags::parse([t(&"k".repeat(129), "1")]).is_err());
        assert!(Tags::parse([t("k", &"v".repeat(257))]).is_err());
        assert!(Tags::parse((0..51).map(|i| t(&format!("k{i}"), "v"))).is_err());
        assert!(Tags::parse((0..50).map(|i| t(&format!("k{i}"), "v"))).is_ok());
    }

    #[test]
    fn tags_aws_sets_neither_count_nor_come_off() {
        let mut tags = Tags::parse((0..50).map(|i| t(&format!("k{i}"), "v"))).unwrap();
        tags.insert_managed("aws:ecs:clusterName", "demo");
        tags.merge([t("k0", "w")]).unwrap();
        assert!(tags.merge([t("k50", "v")]).is_err(), "51 user tags");
        tags.remove(&["aws:ecs:clusterName".into(), "k1".into()]);
        assert!(tags.iter().any(|(k, _)| k == "aws:ecs:clusterName"));
        assert!(!tags.iter().any(|(k, _)| k == "k1"));
    }

    #[test]
    fn merge_overwrites_and_failed_merge_changes_nothing() {
        let mut tags = Tags::parse([t("a", "1")]).unwrap();
        tags.merge([t("a", "2"), t("b", "3")]).unwrap();
        assert_eq!(tags.iter().collect::<Vec<_>>(), vec![("a", "2"), ("b", "3")]);
        assert!(tags.merge([t("c", "4"), t("aws:d", "5")]).is_err());
        assert_eq!(tags.iter().count(), 2);
    }
}
