//! ECR lifecycle policies: the policy document parsed into rules that can only be valid,
//! and the pure evaluation that decides which images a policy expires.
//!
//! The evaluation follows the rules of ECR's user guide ("Lifecycle policy evaluation
//! rules"), which this module states in terms of one image:
//!
//! - Every rule first picks its *candidates*: the images its tag selection (`tagStatus`,
//!   `tagPrefixList`, `tagPatternList`) matches, whatever the other rules do with them.
//!   It then marks some of them: with `imageCountMoreThan` all but the `countNumber`
//!   youngest, with `sinceImagePushed` those pushed more than `countNumber` days ago.
//! - An image that matches the tag selection of a rule cannot be expired by a rule of
//!   lower priority (a higher `rulePriority` number), even when that first rule keeps it.
//!   So the only rule that can expire an image is the first rule, in priority order, whose
//!   tag selection matches it; the image expires if that rule marks it. Hence an image is
//!   expired by at most one rule.
//! - Lower-priority rules still count the images that higher-priority rules matched or
//!   expired ("identify them as if they haven't been expired"): a rule keeping the 2
//!   youngest `v*` images counts a young `v2` image that an earlier `prod` rule expires,
//!   and so may expire an older `v1` image, leaving no `v*` image at all. This is what ECR
//!   documents, and the unit tests below pin it.
//!
//! Decisions where ECR is silent: images pushed at the same instant are ordered by digest
//! (the greater digest counts as the younger), so every evaluation of the same images is
//! the same; an image is "older than n days" when strictly more than `n` × 24 hours passed
//! since its push.

use std::collections::BTreeSet;
use std::fmt::Display;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Timestamp;

/// The bounds ECR puts on `lifecyclePolicyText`, in characters.
pub const MIN_TEXT_CHARS: usize = 100;
pub const MAX_TEXT_CHARS: usize = 30720;
/// The most `*` wildcards one entry of a `tagPatternList` may hold, as in ECR.
pub const MAX_WILDCARDS: usize = 4;
/// The largest `rulePriority` and `countNumber`: ECR's model declares them as 32-bit
/// integers.
pub const MAX_NUMBER: u64 = i32::MAX as u64;

const SECONDS_PER_DAY: f64 = 24.0 * 60.0 * 60.0;

/// Why a policy text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text breaks ECR's rules; the message names the member at fault.
    #[error("{0}")]
    Invalid(String),
    /// The text is valid for ECR but asks for what Berth does not do (archiving images).
    #[error("{0}")]
    Unsupported(String),
}

/// A validated lifecycle policy. It keeps the text it was parsed from, because ECR hands
/// the user's own text back; it serializes as that text and deserializes by parsing it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LifecyclePolicy {
    text: String,
    /// In priority order, lowest `rulePriority` first.
    rules: Vec<Rule>,
}

/// One rule of a policy. Its action is always `expire`, the only action Berth runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    priority: RulePriority,
    description: Option<String>,
    tags: TagSelection,
    count: CountRule,
}

/// A `rulePriority`: a positive whole number, unique within its policy. Rules apply in
/// ascending order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RulePriority(u32);

/// Which images a rule considers, by their tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagSelection {
    /// Images with at least one tag, selected by a filter on those tags.
    Tagged(TagFilter),
    /// Images without any tag.
    Untagged,
    /// Every image.
    Any,
}

/// How a `tagged` rule matches tags. Every entry must match at least one of the image's
/// tags: several entries narrow the selection, they do not widen it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    /// `tagPrefixList`: each entry must begin one of the tags.
    Prefixes(Vec<String>),
    /// `tagPatternList`: each entry must match one of the tags, `*` standing for any run
    /// of characters (also none).
    Patterns(Vec<TagPattern>),
}

/// One entry of a `tagPatternList`, with at most [`MAX_WILDCARDS`] wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPattern(String);

/// When a rule marks its candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountRule {
    /// `imageCountMoreThan`: keep this many of the youngest candidates, mark the rest.
    ImageCountMoreThan(u32),
    /// `sinceImagePushed` in `days`: mark the candidates pushed longer ago than this.
    SinceImagePushedDays(u32),
}

/// What the evaluation needs to know about one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate<'a> {
    pub digest: &'a str,
    pub tags: &'a [String],
    pub pushed_at: Timestamp,
}

/// An image the policy expires, and the rule that expires it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expiry<'a> {
    pub image: Candidate<'a>,
    pub rule: RulePriority,
}

impl LifecyclePolicy {
    /// Parses and validates a `lifecyclePolicyText` as ECR does before it stores or
    /// previews a policy.
    pub fn parse(text: &str) -> Result<LifecyclePolicy, PolicyError> {
        let chars = text.chars().count();
        if !(MIN_TEXT_CHARS..=MAX_TEXT_CHARS).contains(&chars) {
            return Err(PolicyError::Invalid(format!(
                "Invalid parameter at 'lifecyclePolicyText' failed to satisfy constraint: 'Member must have length between {MIN_TEXT_CHARS} and {MAX_TEXT_CHARS}'; this text has {chars} characters."
            )));
        }
        let value: Value = serde_json::from_str(text).map_err(|e| {
            invalid("", format!("the text is not valid JSON ({e}); write a JSON object with a \"rules\" array"))
        })?;
        let top = object(&value, "")?;
        only_members(top, "", &["rules"], &[])?;
        let rules = match top.get("rules") {
            Some(Value::Array(rules)) if !rules.is_empty() => rules,
            Some(Value::Array(_)) => return Err(invalid("rules", "must hold at least one rule")),
            Some(_) => return Err(invalid("rules", "must be an array of rules")),
            None => return Err(invalid("", "the policy has no \"rules\" member; give an array of rules")),
        };
        let mut parsed = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            parsed.push(parse_rule(rule, &format!("rules[{i}]"))?);
        }
        check_rule_set(&parsed)?;
        let mut rules = parsed;
        rules.sort_by_key(|r| r.priority);
        Ok(LifecyclePolicy { text: text.to_string(), rules })
    }

    /// The text as the user wrote it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The rules, lowest `rulePriority` first.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

impl TryFrom<String> for LifecyclePolicy {
    type Error = PolicyError;
    fn try_from(s: String) -> Result<Self, PolicyError> {
        LifecyclePolicy::parse(&s)
    }
}

impl From<LifecyclePolicy> for String {
    fn from(p: LifecyclePolicy) -> String {
        p.text
    }
}

impl Rule {
    pub fn priority(&self) -> RulePriority {
        self.priority
    }
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    pub fn tags(&self) -> &TagSelection {
        &self.tags
    }
    pub fn count(&self) -> CountRule {
        self.count
    }
}

impl RulePriority {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Display for RulePriority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl TagSelection {
    /// Whether an image with these tags is among this selection's candidates.
    pub fn selects(&self, tags: &[String]) -> bool {
        match self {
            TagSelection::Any => true,
            TagSelection::Untagged => tags.is_empty(),
            TagSelection::Tagged(TagFilter::Prefixes(prefixes)) => {
                prefixes.iter().all(|p| tags.iter().any(|t| t.starts_with(p.as_str())))
            }
            TagSelection::Tagged(TagFilter::Patterns(patterns)) => {
                patterns.iter().all(|p| tags.iter().any(|t| p.matches(t)))
            }
        }
    }
}

impl TagPattern {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `tag` matches: the literal pieces between wildcards appear in order, the
    /// first at the start and the last at the end unless a wildcard stands there.
    pub fn matches(&self, tag: &str) -> bool {
        let pieces: Vec<&str> = self.0.split('*').collect();
        let [first, middle @ .., last] = pieces.as_slice() else {
            // No wildcard: the pattern is the tag itself.
            return tag == self.0;
        };
        let Some(mut rest) = tag.strip_prefix(first) else {
            return false;
        };
        for piece in middle {
            match rest.find(piece) {
                Some(at) => rest = &rest[at + piece.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

/// Which of `images` the policy expires at `now`, oldest first, each with the one rule
/// that expires it. Pure: the same images and instant always give the same answer, so a
/// preview and an enforcement run over the same images agree.
pub fn evaluate<'a>(policy: &LifecyclePolicy, images: &[Candidate<'a>], now: Timestamp) -> Vec<Expiry<'a>> {
    // Youngest first: the order in which `imageCountMoreThan` keeps images.
    let mut youngest_first: Vec<usize> = (0..images.len()).collect();
    youngest_first.sort_by(|&a, &b| {
        let (a, b) = (&images[a], &images[b]);
        b.pushed_at.epoch_seconds().total_cmp(&a.pushed_at.epoch_seconds()).then_with(|| b.digest.cmp(a.digest))
    });
    // What each rule would mark if it were the only rule.
    let marked: Vec<Vec<bool>> = policy
        .rules
        .iter()
        .map(|rule| {
            let mut marks = vec![false; images.len()];
            let candidates = youngest_first.iter().copied().filter(|&i| rule.tags.selects(images[i].tags));
            match rule.count {
                CountRule::ImageCountMoreThan(keep) => {
                    candidates.skip(keep as usize).for_each(|i| marks[i] = true);
                }
                CountRule::SinceImagePushedDays(days) => {
                    let limit = f64::from(days) * SECONDS_PER_DAY;
                    candidates
                        .filter(|&i| now.epoch_seconds() - images[i].pushed_at.epoch_seconds() > limit)
                        .for_each(|i| marks[i] = true);
                }
            }
            marks
        })
        .collect();
    let mut out = Vec::new();
    for &i in youngest_first.iter().rev() {
        let owner = policy.rules.iter().position(|rule| rule.tags.selects(images[i].tags));
        if let Some(k) = owner {
            if marked[k][i] {
                out.push(Expiry { image: images[i], rule: policy.rules[k].priority });
            }
        }
    }
    out
}

fn invalid(path: &str, problem: impl Display) -> PolicyError {
    let at = if path.is_empty() { String::new() } else { format!("{path}: ") };
    PolicyError::Invalid(format!(
        "Invalid parameter at 'lifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: {at}{problem}'"
    ))
}

fn unsupported(path: &str, problem: impl Display) -> PolicyError {
    PolicyError::Unsupported(format!("Lifecycle policy {path}: {problem}"))
}

fn join(path: &str, member: &str) -> String {
    if path.is_empty() {
        member.to_string()
    } else {
        format!("{path}.{member}")
    }
}

fn object<'v>(v: &'v Value, path: &str) -> Result<&'v Map<String, Value>, PolicyError> {
    v.as_object().ok_or_else(|| invalid(path, "must be a JSON object"))
}

/// Refuses members outside `allowed`. Those in `archive` are ECR's archive-storage
/// members, valid there but not here.
fn only_members(map: &Map<String, Value>, path: &str, allowed: &[&str], archive: &[&str]) -> Result<(), PolicyError> {
    for key in map.keys() {
        if archive.contains(&key.as_str()) {
            return Err(unsupported(
                &join(path, key),
                "Berth has no archive storage class; remove this member (rules can only expire images here)",
            ));
        }
        if !allowed.contains(&key.as_str()) {
            return Err(invalid(
                &join(path, key),
                format!("is not a lifecycle policy member; the members allowed here are {}", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

fn required<'v>(map: &'v Map<String, Value>, path: &str, member: &str) -> Result<&'v Value, PolicyError> {
    map.get(member).ok_or_else(|| invalid(&join(path, member), "is required"))
}

fn string<'v>(v: &'v Value, path: &str) -> Result<&'v str, PolicyError> {
    v.as_str().ok_or_else(|| invalid(path, "must be a string"))
}

/// A whole number from 1 to [`MAX_NUMBER`].
fn positive(v: &Value, path: &str) -> Result<u32, PolicyError> {
    match v.as_u64() {
        Some(n) if (1..=MAX_NUMBER).contains(&n) => u32::try_from(n).map_err(|_| invalid(path, "is too large")),
        _ => Err(invalid(path, format!("must be a whole number from 1 to {MAX_NUMBER}; got {v}"))),
    }
}

/// A non-empty array of non-empty strings.
fn string_list(v: &Value, path: &str) -> Result<Vec<String>, PolicyError> {
    let Value::Array(items) = v else {
        return Err(invalid(path, "must be an array of strings"));
    };
    if items.is_empty() {
        return Err(invalid(path, "must hold at least one entry"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item.as_str() {
            Some(s) if !s.is_empty() => Ok(s.to_string()),
            Some(_) => Err(invalid(&format!("{path}[{i}]"), "must not be empty")),
            None => Err(invalid(&format!("{path}[{i}]"), "must be a string")),
        })
        .collect()
}

fn parse_rule(v: &Value, path: &str) -> Result<Rule, PolicyError> {
    let map = object(v, path)?;
    only_members(map, path, &["rulePriority", "description", "selection", "action"], &[])?;
    let priority = RulePriority(positive(required(map, path, "rulePriority")?, &join(path, "rulePriority"))?);
    let description = match map.get("description") {
        None | Some(Value::Null) => None,
        Some(d) => Some(string(d, &join(path, "description"))?.to_string()),
    };
    let action_path = join(path, "action");
    let action = object(required(map, path, "action")?, &action_path)?;
    only_members(action, &action_path, &["type"], &["targetStorageClass"])?;
    let type_path = join(&action_path, "type");
    match string(required(action, &action_path, "type")?, &type_path)? {
        "expire" => {}
        "transition" => {
            return Err(unsupported(
                &type_path,
                "Berth has no archive storage class to transition images to; use \"expire\"",
            ))
        }
        other => return Err(invalid(&type_path, format!("must be \"expire\"; got \"{other}\""))),
    }
    let (tags, count) = parse_selection(required(map, path, "selection")?, &join(path, "selection"))?;
    Ok(Rule { priority, description, tags, count })
}

fn parse_selection(v: &Value, path: &str) -> Result<(TagSelection, CountRule), PolicyError> {
    let map = object(v, path)?;
    only_members(
        map,
        path,
        &["tagStatus", "tagPrefixList", "tagPatternList", "countType", "countUnit", "countNumber"],
        &["storageClass"],
    )?;
    let status_path = join(path, "tagStatus");
    let status = string(required(map, path, "tagStatus")?, &status_path)?;
    let prefixes = map.get("tagPrefixList").map(|v| string_list(v, &join(path, "tagPrefixList"))).transpose()?;
    let patterns = map.get("tagPatternList").map(|v| string_list(v, &join(path, "tagPatternList"))).transpose()?;
    let tags = match (status, prefixes, patterns) {
        ("tagged", Some(_), Some(_)) => {
            return Err(invalid(path, "give either tagPrefixList or tagPatternList, not both"));
        }
        ("tagged", Some(prefixes), None) => TagSelection::Tagged(TagFilter::Prefixes(prefixes)),
        ("tagged", None, Some(patterns)) => {
            let list_path = join(path, "tagPatternList");
            let mut out = Vec::with_capacity(patterns.len());
            for (i, p) in patterns.into_iter().enumerate() {
                let wildcards = p.matches('*').count();
                if wildcards > MAX_WILDCARDS {
                    return Err(invalid(
                        &format!("{list_path}[{i}]"),
                        format!("'{p}' has {wildcards} wildcards (*); a pattern may hold at most {MAX_WILDCARDS}"),
                    ));
                }
                out.push(TagPattern(p));
            }
            TagSelection::Tagged(TagFilter::Patterns(out))
        }
        ("tagged", None, None) => {
            return Err(invalid(
                path,
                "tagStatus \"tagged\" needs a tagPrefixList or a tagPatternList naming the tags to select",
            ));
        }
        ("untagged" | "any", prefixes, patterns) => {
            if prefixes.is_some() || patterns.is_some() {
                let member = if prefixes.is_some() { "tagPrefixList" } else { "tagPatternList" };
                return Err(invalid(
                    &join(path, member),
                    format!("is only allowed with tagStatus \"tagged\", not \"{status}\""),
                ));
            }
            if status == "untagged" {
                TagSelection::Untagged
            } else {
                TagSelection::Any
            }
        }
        (other, _, _) => {
            return Err(invalid(&status_path, format!("must be \"tagged\", \"untagged\" or \"any\"; got \"{other}\"")));
        }
    };
    let type_path = join(path, "countType");
    let number = positive(required(map, path, "countNumber")?, &join(path, "countNumber"))?;
    let unit = map.get("countUnit").map(|u| string(u, &join(path, "countUnit"))).transpose()?;
    let count = match string(required(map, path, "countType")?, &type_path)? {
        "imageCountMoreThan" => {
            if unit.is_some() {
                return Err(invalid(
                    &join(path, "countUnit"),
                    "is only allowed with countType \"sinceImagePushed\"; remove it",
                ));
            }
            CountRule::ImageCountMoreThan(number)
        }
        "sinceImagePushed" => match unit {
            Some("days") => CountRule::SinceImagePushedDays(number),
            Some(other) => {
                return Err(invalid(&join(path, "countUnit"), format!("must be \"days\"; got \"{other}\"")));
            }
            None => {
                return Err(invalid(
                    &join(path, "countUnit"),
                    "is required with countType \"sinceImagePushed\"; give \"days\"",
                ));
            }
        },
        "sinceImagePulled" | "sinceImageTransitioned" => {
            return Err(unsupported(
                &type_path,
                "Berth records neither pulls nor storage transitions; use \"imageCountMoreThan\" or \"sinceImagePushed\"",
            ));
        }
        other => {
            return Err(invalid(
                &type_path,
                format!("must be \"imageCountMoreThan\" or \"sinceImagePushed\"; got \"{other}\""),
            ));
        }
    };
    Ok((tags, count))
}

/// The rules ECR puts on a policy's rules taken together. `rules` are in document order,
/// which the messages use to name them.
fn check_rule_set(rules: &[Rule]) -> Result<(), PolicyError> {
    let highest = rules.iter().map(|r| r.priority).max();
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        let earlier = rules[..i].iter().enumerate();
        if let Some((j, _)) = earlier.clone().find(|(_, r)| r.priority == rule.priority) {
            return Err(invalid(
                &join(&path, "rulePriority"),
                format!("{} is also the rulePriority of rules[{j}]; each rule needs its own", rule.priority),
            ));
        }
        if rule.tags == TagSelection::Any && Some(rule.priority) != highest {
            return Err(invalid(
                &join(&path, "rulePriority"),
                "a rule with tagStatus \"any\" must have the highest rulePriority of the policy, so that it is applied last",
            ));
        }
        if rule.tags == TagSelection::Untagged {
            if let Some((j, _)) = earlier.clone().find(|(_, r)| r.tags == TagSelection::Untagged) {
                return Err(invalid(
                    &join(&path, "selection.tagStatus"),
                    format!("rules[{j}] selects untagged images already; only one rule may"),
                ));
            }
        }
        // Two rules with the same tag filter: the later one could never expire anything,
        // since every image it selects matches the earlier one. ECR requires the set of
        // rules to hold unique tag prefixes.
        if let TagSelection::Tagged(filter) = &rule.tags {
            let same = earlier.clone().find(|(_, r)| match &r.tags {
                TagSelection::Tagged(other) => filter_set(other) == filter_set(filter),
                _ => false,
            });
            if let Some((j, _)) = same {
                return Err(invalid(
                    &join(&path, "selection"),
                    format!(
                        "rules[{j}] selects the same tags; each rule needs its own set of tag prefixes or patterns"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A tag filter as an unordered set, tagged with its kind so prefixes and patterns never
/// compare equal.
fn filter_set(f: &TagFilter) -> (bool, BTreeSet<&str>) {
    match f {
        TagFilter::Prefixes(p) => (false, p.iter().map(String::as_str).collect()),
        TagFilter::Patterns(p) => (true, p.iter().map(TagPattern::as_str).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_700_000_000.0;
    const DAY: f64 = SECONDS_PER_DAY;

    /// A policy from its rules, each `(priority, selection members, count members)`,
    /// all with action `expire`.
    fn policy(rules: &[&str]) -> String {
        let rules: Vec<String> = rules
            .iter()
            .map(|r| format!(r#"{{"rulePriority": {r}, "description": "a rule of a table-driven test case", "action": {{"type": "expire"}}}}"#))
            .collect();
        format!(r#"{{"rules": [{}]}}"#, rules.join(", "))
    }

    /// An image: a name (stands in for the digest), its tags, and its age in days.
    struct Img(&'static str, &'static [&'static str], f64);

    struct Case {
        name: &'static str,
        rules: &'static [&'static str],
        images: &'static [Img],
        /// The expired images, oldest first, with the priority of the rule expiring each.
        expect: &'static [(&'static str, u32)],
    }

    fn run(case: &Case) {
        let text = policy(case.rules);
        let p = LifecyclePolicy::parse(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", case.name));
        let tags: Vec<Vec<String>> = case.images.iter().map(|i| i.1.iter().map(|t| t.to_string()).collect()).collect();
        let images: Vec<Candidate<'_>> = case
            .images
            .iter()
            .zip(&tags)
            .map(|(i, tags)| Candidate { digest: i.0, tags, pushed_at: Timestamp::from_epoch_seconds(NOW - i.2 * DAY) })
            .collect();
        let got: Vec<(&str, u32)> = evaluate(&p, &images, Timestamp::from_epoch_seconds(NOW))
            .iter()
            .map(|e| (e.image.digest, e.rule.get()))
            .collect();
        assert_eq!(got, case.expect, "case '{}'", case.name);
    }

    // Selections and counts used below, as JSON members of a rule.
    const KEEP_1_UNTAGGED: &str =
        r#"1, "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1}"#;

    #[test]
    fn evaluation_table() {
        let cases = [
            Case {
                name: "untagged, count: keeps the youngest untagged image; tagged images are not candidates",
                rules: &[KEEP_1_UNTAGGED],
                images: &[Img("u1", &[], 5.0), Img("u2", &[], 4.0), Img("t", &["v1"], 9.0), Img("u3", &[], 1.0)],
                expect: &[("u1", 1), ("u2", 1)],
            },
            Case {
                name: "untagged, age: only images pushed more than 14 days ago",
                rules: &[
                    r#"1, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14}"#,
                ],
                images: &[
                    Img("old", &[], 20.0),
                    Img("edge", &[], 14.0),
                    Img("new", &[], 2.0),
                    Img("tagged", &["x"], 30.0),
                ],
                expect: &[("old", 1)],
            },
            Case {
                name: "tagged prefix, count: only tags with the prefix count",
                rules: &[
                    r#"1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["prod"], "countType": "imageCountMoreThan", "countNumber": 2}"#,
                ],
                images: &[
                    Img("p1", &["prod-1"], 4.0),
                    Img("p2", &["prod-2"], 3.0),
                    Img("d", &["dev-1"], 5.0),
                    Img("p3", &["prod-3"], 2.0),
                    Img("p4", &["production"], 1.0),
                    Img("u", &[], 6.0),
                ],
                expect: &[("p1", 1), ("p2", 1)],
            },
            Case {
                name: "exactly countNumber candidates: nothing expires",
                rules: &[
                    r#"1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["v"], "countType": "imageCountMoreThan", "countNumber": 2}"#,
                ],
                images: &[Img("a", &["v1"], 3.0), Img("b", &["v2"], 2.0)],
                expect: &[],
            },
            Case {
                name: "tagged pattern with a trailing wildcard",
                rules: &[
                    r#"1, "selection": {"tagStatus": "tagged", "tagPatternList": ["prod*"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 7}"#,
                ],
                images: &[
                    Img("a", &["prod"], 8.0),
                    Img("b", &["prod-2"], 9.0),
                    Img("c", &["preprod"], 10.0),
                    Img("d", &["prod-3"], 1.0),
                ],
                expect: &[("b", 1), ("a", 1)],
            },
            Case {
                name: "pattern without wildcard is the whole tag; inner wildcards keep their order",
                rules: &[
                    r#"1, "selection": {"tagStatus": "tagged", "tagPatternList": ["latest"], "countType": "imageCountMoreThan", "countNumber": 1}"#,
                    r#"2, "selection": {"tagStatus": "tagged", "tagPatternList": ["v*-rc*"], "countType": "imageCountMoreThan", "countNumber": 1}"#,
                ],
                images: &[
                    Img("l1", &["latest"], 5.0),
                    Img("l2", &["latest-old"], 6.0),
                    Img("r1", &["v1.0-rc1"], 4.0),
                    Img("r2", &["v1.1-rc2"], 3.0),
                    Img("x", &["rc1-v2"], 7.0),
                    Img("l3", &["latest"], 1.0),
                ],
                expect: &[("l1", 1), ("r1", 2)],
            },
            Case {
                name: "several prefixes in one rule: each must match one of the image's tags",
                rules: &[
                    r#"1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["alpha", "beta"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 5}"#,
                ],
                images: &[
                    Img("A", &["alpha-1"], 12.0),
                    Img("B", &["beta-1"], 11.0),
                    Img("C", &["alpha-2", "beta-2"], 10.0),
                    Img("D", &["alpha-3"], 4.0),
                    Img("E", &["beta-3"], 3.0),
                    Img("F", &["alpha-4", "beta-4"], 2.0),
                ],
                expect: &[("C", 1)],
            },
            Case {
                name: "several patterns in one rule: extra tags of an image do not matter",
                rules: &[
                    r#"1, "selection": {"tagStatus": "tagged", "tagPatternList": ["alpha*", "beta*"], "countType": "imageCountMoreThan", "countNumber": 1}"#,
                ],
                images: &[
                    Img("A", &["alpha-1", "beta-1", "gamma-1"], 10.0),
                    Img("B", &["alpha-2", "beta-2"], 9.0),
                    Img("C", &["alpha-3", "beta-3", "gamma-2"], 8.0),
                ],
                expect: &[("A", 1), ("B", 1)],
            },
            Case {
                name: "any, count: every image is a candidate",
                rules: &[
                    r#"1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 2}"#,
                ],
                images: &[Img("a", &[], 4.0), Img("b", &["x"], 3.0), Img("c", &[], 2.0), Img("d", &["y"], 1.0)],
                expect: &[("a", 1), ("b", 1)],
            },
            Case {
                name: "any, age",
                rules: &[
                    r#"1, "selection": {"tagStatus": "any", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 3}"#,
                ],
                images: &[Img("a", &[], 4.0), Img("b", &["x"], 3.5), Img("c", &["y"], 1.0)],
                expect: &[("a", 1), ("b", 1)],
            },
            Case {
                name: "ECR's example A: an image kept by a higher rule is not expired by a lower one",
                rules: &[
                    r#"1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["prod"], "countType": "imageCountMoreThan", "countNumber": 1}"#,
                    r#"2, "selection": {"tagStatus": "tagged", "tagPrefixList": ["beta"], "countType": "imageCountMoreThan", "countNumber": 1}"#,
                ],
                images: &[
                    Img("A", &["beta-1", "prod-1"], 10.0),
                    Img("B", &["beta-2", "prod-2"], 9.0),
                    Img("C", &["beta-3"], 8.0),
                ],
                expect: &[("A", 1)],
            },
            Case {
                name: "ECR's example B: the same images with the priorities swapped",
                rules: &[
                    r#"1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["beta"], "countType": "imageCountMoreThan", "countNumber": 1}"#,
                    r#"2, "selection": {"tagStatus": "tagged", "tagPrefixList": ["prod"], "countType": "imageCountMoreThan", "countNumber": 1}"#,
                ],
                images: &[
                    Img("A", &["beta-1", "prod-1"], 10.0),
                    Img("B", &["beta-2", "prod-2"], 9.0),
                    Img("C", &["beta-3"], 8.0),
                ],
                expect: &[("A", 1), ("B", 1)],
            },
            Case {
                name: "a keep-forever rule protects its images from a later catch-all",
                rules: &[
                    r#"1, "selection": {"tagStatus": "tagged", "tagPatternList": ["release-*"], "countType": "imageCountMoreThan", "countNumber": 9999}"#,
                    r#"2, "selection": {"tagStatus": "any", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 30}"#,
                ],
                images: &[
                    Img("rel", &["release-1", "sha-1"], 90.0),
                    Img("old", &["sha-2"], 60.0),
                    Img("untagged", &[], 45.0),
                    Img("new", &["sha-3"], 1.0),
                ],
                expect: &[("old", 2), ("untagged", 2)],
            },
            Case {
                name: "an untagged rule first protects young untagged images from the any rule",
                rules: &[
                    r#"1, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 10}"#,
                    r#"2, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}"#,
                ],
                images: &[
                    Img("u-old", &[], 20.0),
                    Img("u-young", &[], 5.0),
                    Img("t-old", &["a"], 4.0),
                    Img("t-new", &["b"], 1.0),
                ],
                expect: &[("u-old", 1), ("t-old", 2)],
            },
            Case {
                name: "a lower rule still counts images a higher rule expires",
                rules: &[
                    r#"1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["prod"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1}"#,
                    r#"2, "selection": {"tagStatus": "tagged", "tagPrefixList": ["v"], "countType": "imageCountMoreThan", "countNumber": 1}"#,
                ],
                images: &[Img("A", &["v1"], 10.0), Img("B", &["v2", "prod"], 5.0)],
                // Rule 2 keeps B in its count (the youngest `v` image), so it marks A;
                // B itself goes by rule 1.
                expect: &[("A", 2), ("B", 1)],
            },
            Case {
                name: "rules apply by rulePriority, not by their order in the document",
                rules: &[
                    r#"20, "selection": {"tagStatus": "tagged", "tagPrefixList": ["v"], "countType": "imageCountMoreThan", "countNumber": 1}"#,
                    r#"10, "selection": {"tagStatus": "tagged", "tagPrefixList": ["v1"], "countType": "imageCountMoreThan", "countNumber": 5}"#,
                ],
                images: &[Img("a", &["v1.0"], 3.0), Img("b", &["v2.0"], 2.0), Img("c", &["v3.0"], 1.0)],
                // `a` matches the priority-10 rule, which keeps it.
                expect: &[("b", 20)],
            },
            Case {
                name: "images pushed at the same instant: the greater digest counts as younger",
                rules: &[KEEP_1_UNTAGGED],
                images: &[Img("sha256:bb", &[], 1.0), Img("sha256:aa", &[], 1.0), Img("sha256:cc", &[], 1.0)],
                expect: &[("sha256:aa", 1), ("sha256:bb", 1)],
            },
            Case { name: "an empty repository", rules: &[KEEP_1_UNTAGGED], images: &[], expect: &[] },
        ];
        for case in &cases {
            run(case);
        }
    }

    #[test]
    fn parse_keeps_text_and_orders_rules() {
        let text = policy(&[
            r#"5, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 3}"#,
            r#"2, "selection": {"tagStatus": "tagged", "tagPatternList": ["*a*b*c*d"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1}"#,
        ]);
        let p = LifecyclePolicy::parse(&text).unwrap();
        assert_eq!(p.text(), text);
        let priorities: Vec<u32> = p.rules().iter().map(|r| r.priority().get()).collect();
        assert_eq!(priorities, [2, 5]);
        assert_eq!(p.rules()[0].count(), CountRule::SinceImagePushedDays(1));
        assert_eq!(p.rules()[1].tags(), &TagSelection::Any);
        assert_eq!(p.rules()[1].description(), Some("a rule of a table-driven test case"));
        // It is stored as its text and parsed again when read back.
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<LifecyclePolicy>(&json).unwrap(), p);
        assert!(serde_json::from_str::<LifecyclePolicy>("\"{}\"").is_err());
    }

    #[test]
    fn invalid_policies_name_the_member_at_fault() {
        let sel = |s: &str| policy(&[&format!(r#"1, "selection": {{{s}}}"#)]);
        let count = r#""countType": "imageCountMoreThan", "countNumber": 1"#;
        let pad = "x".repeat(100);
        let cases: Vec<(String, &str)> = vec![
            (r#"{"rules": []}"#.to_string(), "length between 100 and 30720"),
            ("x".repeat(30721), "length between 100 and 30720"),
            (format!("{{\"rules\": [ {pad}"), "not valid JSON"),
            (format!("[\"{pad}\"]"), "must be a JSON object"),
            (format!(r#"{{"rules": [], "note": "{pad}"}}"#), "note: is not a lifecycle policy member"),
            (format!(r#"{{"rules": [], "_": "{pad}"}}"#), "_: is not a lifecycle policy member"),
            (format!(r#"{{"rules": {{}}, "{pad}": 1}}"#), "is not a lifecycle policy member"),
            (format!(r#"{{"description": "{pad}"}}"#), "description: is not a lifecycle policy member"),
            (format!(r#"{{"rules": [] {}}}"#, " ".repeat(100)), "rules: must hold at least one rule"),
            (format!(r#"{{"rules": "{pad}"}}"#), "rules: must be an array"),
            (format!(r#"{{"rules": ["{pad}"]}}"#), "rules[0]: must be a JSON object"),
            (
                format!(
                    r#"{{"rules": [{{"selection": {{"tagStatus": "any", {count}}}, "action": {{"type": "expire"}}, "description": "{pad}"}}]}}"#
                ),
                "rules[0].rulePriority: is required",
            ),
            (
                policy(&[
                    r#"1, "action2": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}"#,
                ]),
                "rules[0].action2: is not a lifecycle policy member",
            ),
            (policy(&[r#"1"#]), "rules[0].selection: is required"),
            (
                policy(&[&format!(r#"0, "selection": {{"tagStatus": "any", {count}}}"#)]),
                "rules[0].rulePriority: must be a whole number from 1",
            ),
            (
                policy(&[&format!(r#"-3, "selection": {{"tagStatus": "any", {count}}}"#)]),
                "rules[0].rulePriority: must be a whole number",
            ),
            (
                policy(&[&format!(r#"1.5, "selection": {{"tagStatus": "any", {count}}}"#)]),
                "rules[0].rulePriority: must be a whole number",
            ),
            (
                policy(&[&format!(r#""1", "selection": {{"tagStatus": "any", {count}}}"#)]),
                "rules[0].rulePriority: must be a whole number",
            ),
            (
                policy(&[&format!(r#"3000000000, "selection": {{"tagStatus": "any", {count}}}"#)]),
                "rules[0].rulePriority: must be a whole number",
            ),
            (
                sel(&format!(r#""tagStatus": "tagged", "tagPrefixList": ["a"], {count}"#))
                    .replace(r#""expire""#, r#""delete""#),
                "rules[0].action.type: must be \"expire\"",
            ),
            (
                sel(&format!(r#""tagStatus": "any", {count}"#)).replace(r#""type": "expire""#, r#""kind": "expire""#),
                "rules[0].action.kind: is not a lifecycle policy member",
            ),
            (
                sel(&format!(r#""tagStatus": "any", {count}"#)).replace(r#"{"type": "expire"}"#, r#"{}"#),
                "rules[0].action.type: is required",
            ),
            (
                sel(&format!(r#""tagStatus": "taged", {count}"#)),
                "rules[0].selection.tagStatus: must be \"tagged\", \"untagged\" or \"any\"; got \"taged\"",
            ),
            (sel(count), "rules[0].selection.tagStatus: is required"),
            (
                sel(&format!(r#""tagStatus": "tagged", {count}"#)),
                "rules[0].selection: tagStatus \"tagged\" needs a tagPrefixList or a tagPatternList",
            ),
            (
                sel(&format!(r#""tagStatus": "tagged", "tagPrefixList": ["a"], "tagPatternList": ["b*"], {count}"#)),
                "rules[0].selection: give either tagPrefixList or tagPatternList, not both",
            ),
            (
                sel(&format!(r#""tagStatus": "untagged", "tagPrefixList": ["a"], {count}"#)),
                "rules[0].selection.tagPrefixList: is only allowed with tagStatus \"tagged\", not \"untagged\"",
            ),
            (
                sel(&format!(r#""tagStatus": "any", "tagPatternList": ["a*"], {count}"#)),
                "rules[0].selection.tagPatternList: is only allowed with tagStatus \"tagged\", not \"any\"",
            ),
            (
                sel(&format!(r#""tagStatus": "tagged", "tagPrefixList": [], {count}"#)),
                "rules[0].selection.tagPrefixList: must hold at least one entry",
            ),
            (
                sel(&format!(r#""tagStatus": "tagged", "tagPrefixList": ["a", ""], {count}"#)),
                "rules[0].selection.tagPrefixList[1]: must not be empty",
            ),
            (
                sel(&format!(r#""tagStatus": "tagged", "tagPrefixList": "prod", {count}"#)),
                "rules[0].selection.tagPrefixList: must be an array of strings",
            ),
            (
                sel(&format!(r#""tagStatus": "tagged", "tagPatternList": ["ok*", "a*b*c*d*e*"], {count}"#)),
                "rules[0].selection.tagPatternList[1]: 'a*b*c*d*e*' has 5 wildcards (*); a pattern may hold at most 4",
            ),
            (
                sel(r#""tagStatus": "any", "countType": "imageCountMoreThan""#),
                "rules[0].selection.countNumber: is required",
            ),
            (
                sel(r#""tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 0"#),
                "rules[0].selection.countNumber: must be a whole number from 1",
            ),
            (sel(r#""tagStatus": "any", "countNumber": 1"#), "rules[0].selection.countType: is required"),
            (
                sel(r#""tagStatus": "any", "countType": "imageCountLessThan", "countNumber": 1"#),
                "rules[0].selection.countType: must be \"imageCountMoreThan\" or \"sinceImagePushed\"",
            ),
            (
                sel(r#""tagStatus": "any", "countType": "imageCountMoreThan", "countUnit": "days", "countNumber": 1"#),
                "rules[0].selection.countUnit: is only allowed with countType \"sinceImagePushed\"",
            ),
            (
                sel(r#""tagStatus": "any", "countType": "sinceImagePushed", "countNumber": 1"#),
                "rules[0].selection.countUnit: is required with countType \"sinceImagePushed\"",
            ),
            (
                sel(r#""tagStatus": "any", "countType": "sinceImagePushed", "countUnit": "hours", "countNumber": 1"#),
                "rules[0].selection.countUnit: must be \"days\"; got \"hours\"",
            ),
            (
                sel(r#""tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1, "tagPrefix": ["a"]"#),
                "rules[0].selection.tagPrefix: is not a lifecycle policy member",
            ),
            (
                policy(&[
                    r#"1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["a"], "countType": "imageCountMoreThan", "countNumber": 1}"#,
                    r#"1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["b"], "countType": "imageCountMoreThan", "countNumber": 1}"#,
                ]),
                "rules[1].rulePriority: 1 is also the rulePriority of rules[0]",
            ),
            (
                policy(&[
                    r#"1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}"#,
                    r#"2, "selection": {"tagStatus": "tagged", "tagPrefixList": ["b"], "countType": "imageCountMoreThan", "countNumber": 1}"#,
                ]),
                "rules[0].rulePriority: a rule with tagStatus \"any\" must have the highest rulePriority",
            ),
            (
                policy(&[
                    r#"1, "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1}"#,
                    r#"2, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1}"#,
                ]),
                "rules[1].selection.tagStatus: rules[0] selects untagged images already",
            ),
            (
                policy(&[
                    r#"1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["a", "b"], "countType": "imageCountMoreThan", "countNumber": 1}"#,
                    r#"2, "selection": {"tagStatus": "tagged", "tagPrefixList": ["b", "a"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1}"#,
                ]),
                "rules[1].selection: rules[0] selects the same tags",
            ),
            (
                sel(&format!(r#""tagStatus": "any", {count}"#))
                    .replace(r#""description": "a rule of a table-driven test case""#, r#""description": 7"#),
                "rules[0].description: must be a string",
            ),
        ];
        for (text, expected) in cases {
            match LifecyclePolicy::parse(&text) {
                Err(PolicyError::Invalid(message)) => {
                    assert!(message.contains(expected), "expected '{expected}' in: {message}\npolicy: {text}");
                    assert!(message.starts_with("Invalid parameter at 'lifecyclePolicyText'"), "{message}");
                }
                other => panic!("expected an invalid policy ('{expected}'), got {other:?}\npolicy: {text}"),
            }
        }
    }

    #[test]
    fn archive_features_are_refused_as_unsupported() {
        let any = r#""tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1"#;
        let cases = [
            (
                policy(&[&format!(r#"1, "selection": {{{any}}}"#)])
                    .replace(r#""expire""#, r#""transition", "targetStorageClass": "archive""#),
                "targetStorageClass",
            ),
            (
                policy(&[&format!(r#"1, "selection": {{{any}}}"#)]).replace(r#""expire""#, r#""transition""#),
                "action.type",
            ),
            (policy(&[&format!(r#"1, "selection": {{{any}, "storageClass": "standard"}}"#)]), "selection.storageClass"),
            (
                policy(&[
                    r#"1, "selection": {"tagStatus": "any", "countType": "sinceImagePulled", "countUnit": "days", "countNumber": 1}"#,
                ]),
                "selection.countType",
            ),
        ];
        for (text, member) in cases {
            match LifecyclePolicy::parse(&text) {
                Err(PolicyError::Unsupported(m)) => assert!(m.contains(member), "{m}"),
                other => panic!("expected unsupported ({member}), got {other:?}\n{text}"),
            }
        }
    }

    #[test]
    fn patterns() {
        let cases = [
            ("prod*", "prod", true),
            ("prod*", "prod-1", true),
            ("prod*", "preprod", false),
            ("*prod", "preprod", true),
            ("*prod", "prod-1", false),
            ("*", "anything", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "a-b-c", true),
            ("a*b*c", "a-c-b", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("*test*1*2*3", "my-test-1-2-3", true),
            ("v*-beta", "v1.2-beta", true),
            ("v*-beta", "v1.2-beta2", false),
            ("latest", "latest", true),
            ("latest", "latest-1", false),
        ];
        for (pattern, tag, expected) in cases {
            assert_eq!(TagPattern(pattern.into()).matches(tag), expected, "{pattern} vs {tag}");
        }
    }
}
