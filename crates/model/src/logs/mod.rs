//! CloudWatch Logs' domain: log group and stream names that can only be built valid,
//! their ARNs, the retention periods AWS allows, and `PutLogEvents`' batch rules as pure
//! functions of the batch and the time.
//!
//! Decision: a batch whose events are not in chronological order is refused whole, as
//! the current `PutLogEvents` reference still states ("A batch of log events in a single
//! request must be in a chronological order. Otherwise, the operation fails."); the
//! `rejectedLogEventsInfo` indexes (a too-old prefix, a too-new suffix) only have a
//! meaning for a sorted batch.

// The model has no timestamp member, so the generated import of `Timestamp` is unused.
#[allow(unused_imports)]
pub mod shapes;

pub mod filter;

use serde::{Deserialize, Serialize};

use crate::{Invalid, Scope};

/// The most bytes one batch may hold, counting [`EVENT_OVERHEAD`] per event.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// What AWS counts for each event on top of its message's UTF-8 bytes.
pub const EVENT_OVERHEAD: usize = 26;
/// The most events one batch may hold.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// The largest time span between the oldest and the newest accepted event of one batch.
pub const MAX_BATCH_SPAN_MS: i64 = 24 * 3600 * 1000;
/// Events older than this are `tooOld`.
pub const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
/// Events further in the future than this are `tooNew`.
pub const MAX_FUTURE_MS: i64 = 2 * 3600 * 1000;
/// The retention periods `PutRetentionPolicy` accepts, in days.
pub const RETENTION_DAYS: &[i32] =
    &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

const DAY_MS: i64 = 24 * 3600 * 1000;

fn validation(value: &str, member: &str, constraint: &str) -> Invalid {
    Invalid::Parameter(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
    ))
}

/// A log group name: 1 to 512 of `[.-_/#A-Za-z0-9]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LogGroupName(String);

impl LogGroupName {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        Self::parse_member(s, "logGroupName")
    }
    /// As [`LogGroupName::parse`], naming `member` in the message.
    pub fn parse_member(s: &str, member: &str) -> Result<Self, Invalid> {
        if !(1..=512).contains(&s.len()) {
            return Err(validation(s, member, "Member must have length between 1 and 512"));
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric() || "._-/#".contains(c)) {
            return Err(validation(s, member, "Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+"));
        }
        Ok(LogGroupName(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The group's ARN as `DescribeLogGroups` answers it in `arn` (with `:*`).
    pub fn arn_star(&self, scope: &Scope) -> String {
        format!("{}:*", self.arn(scope))
    }
    /// The group's ARN without `:*` (`logGroupArn`, and what tagging takes).
    pub fn arn(&self, scope: &Scope) -> String {
        format!("arn:aws:logs:{}:{}:log-group:{}", scope.region, scope.account, self.0)
    }
    /// The group named by a log group ARN of `scope` (`...:log-group:NAME`, with or
    /// without `:*`); `None` if the ARN is of another account or region, or not a group's.
    pub fn from_arn(arn: &str, scope: &Scope) -> Result<Option<Self>, Invalid> {
        let prefix = format!("arn:aws:logs:{}:{}:log-group:", scope.region, scope.account);
        let Some(rest) = arn.strip_prefix(&prefix) else {
            return if arn.starts_with("arn:") && arn.contains(":log-group:") {
                Ok(None)
            } else {
                Err(Invalid::Parameter(format!(
                    "'{arn}' is not a log group ARN (arn:aws:logs:REGION:ACCOUNT:log-group:NAME)."
                )))
            };
        };
        let name = rest.strip_suffix(":*").unwrap_or(rest);
        Self::parse_member(name, "resourceArn").map(Some)
    }
}

/// A log stream name: 1 to 512 characters, none of them `:` or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LogStreamName(String);

impl LogStreamName {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if !(1..=512).contains(&s.chars().count()) {
            return Err(validation(s, "logStreamName", "Member must have length between 1 and 512"));
        }
        if s.contains([':', '*']) {
            return Err(validation(s, "logStreamName", "Member must satisfy regular expression pattern: [^:*]*"));
        }
        Ok(LogStreamName(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn arn(&self, scope: &Scope, group: &LogGroupName) -> String {
        format!("{}:log-stream:{}", group.arn(scope), self.0)
    }
}

crate::string_conversions!(LogGroupName, Invalid);
crate::string_conversions!(LogStreamName, Invalid);

/// A retention period AWS allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i32", into = "i32")]
pub struct RetentionDays(i32);

impl RetentionDays {
    pub fn parse(days: i32) -> Result<Self, Invalid> {
        if RETENTION_DAYS.contains(&days) {
            Ok(RetentionDays(days))
        } else {
            let allowed = RETENTION_DAYS.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
            Err(validation(
                &days.to_string(),
                "retentionInDays",
                &format!("Member must satisfy enum value set: [{allowed}]"),
            ))
        }
    }
    pub fn days(self) -> i32 {
        self.0
    }
    /// The oldest timestamp (milliseconds) still kept at time `now_ms`.
    pub fn cutoff(self, now_ms: i64) -> i64 {
        now_ms - i64::from(self.0) * DAY_MS
    }
}

impl TryFrom<i32> for RetentionDays {
    type Error = Invalid;
    fn try_from(d: i32) -> Result<Self, Invalid> {
        RetentionDays::parse(d)
    }
}

impl From<RetentionDays> for i32 {
    fn from(r: RetentionDays) -> i32 {
        r.0
    }
}

/// What `PutLogEvents` does with a batch: the range of events it stores and what it
/// reports of the others (`rejectedLogEventsInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchVerdict {
    /// The events stored: `accepted.start..accepted.end` of the batch.
    pub accepted: std::ops::Range<usize>,
    /// The first event that is too new (inclusive).
    pub too_new_start: Option<usize>,
    /// The end of the prefix of events older than 14 days (exclusive).
    pub too_old_end: Option<usize>,
    /// The end of the prefix of events older than the group's retention (exclusive).
    pub expired_end: Option<usize>,
}

/// Checks a batch of `(timestamp, message)` events at time `now_ms` for a group keeping
/// events `retention` long. A batch that breaks a rule on the whole is refused; events
/// outside the accepted time window are reported and skipped.
pub fn check_batch(
    events: &[(i64, &str)],
    now_ms: i64,
    retention: Option<RetentionDays>,
) -> Result<BatchVerdict, Invalid> {
    if events.is_empty() {
        return Err(Invalid::Parameter("A batch must contain at least one log event.".into()));
    }
    if events.len() > MAX_BATCH_EVENTS {
        return Err(Invalid::Parameter(format!(
            "The batch holds {} log events; at most {MAX_BATCH_EVENTS} are allowed.",
            events.len()
        )));
    }
    let size: usize = events.iter().map(|(_, m)| m.len() + EVENT_OVERHEAD).sum();
    if size > MAX_BATCH_BYTES {
        return Err(Invalid::Parameter(format!(
            "The batch is {size} bytes (message bytes plus {EVENT_OVERHEAD} per event); at most {MAX_BATCH_BYTES} are allowed."
        )));
    }
    if events.windows(2).any(|w| w[1].0 < w[0].0) {
        return Err(Invalid::Parameter(
            "Log events in a single PutLogEvents request must be in chronological order.".into(),
        ));
    }
    let too_old = now_ms - MAX_AGE_MS;
    let expired = retention.map(|r| r.cutoff(now_ms));
    let too_new = now_ms + MAX_FUTURE_MS;
    let old_end = events.partition_point(|(t, _)| *t < too_old);
    let expired_end = expired.map_or(0, |c| events.partition_point(|(t, _)| *t < c));
    let new_start = events.partition_point(|(t, _)| *t <= too_new);
    let start = old_end.max(expired_end);
    let accepted = start..new_start.max(start);
    if let (Some(first), Some(last)) = (events.get(accepted.start), events[..accepted.end].last()) {
        if !accepted.is_empty() && last.0 - first.0 > MAX_BATCH_SPAN_MS {
            return Err(Invalid::Parameter(
                "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.".into(),
            ));
        }
    }
    Ok(BatchVerdict {
        accepted,
        too_new_start: (new_start < events.len()).then_some(new_start),
        too_old_end: (old_end > 0).then_some(old_end),
        expired_end: (expired_end > old_end).then_some(expired_end),
    })
}

#[cfg(test)]
mod tests;
