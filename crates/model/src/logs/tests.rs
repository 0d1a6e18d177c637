use super::*;
use crate::{AccountId, Region};

const NOW: i64 = 1_700_000_000_000;
const H: i64 = 3600 * 1000;

#[test]
fn names_follow_aws_rules() {
    assert!(LogGroupName::parse("/ecs/web_app-1.2#x").is_ok());
    assert!(LogGroupName::parse("").is_err());
    assert!(LogGroupName::parse("a b").is_err());
    assert!(LogGroupName::parse("a:b").is_err());
    assert!(LogGroupName::parse(&"a".repeat(512)).is_ok());
    assert!(LogGroupName::parse(&"a".repeat(513)).is_err());
    assert!(LogStreamName::parse("ecs/web/0123 abc?").is_ok());
    assert!(LogStreamName::parse("a:b").is_err());
    assert!(LogStreamName::parse("a*").is_err());
    assert!(LogStreamName::parse("").is_err());
    let e = LogGroupName::parse("bad name").unwrap_err().to_string();
    assert!(e.contains("logGroupName") && e.contains("regular expression"), "{e}");
}

#[test]
fn arns_round_trip_with_and_without_star() {
    let scope =
        Scope { account: AccountId::parse("123456789012").unwrap(), region: Region::parse("us-east-1").unwrap() };
    let g = LogGroupName::parse("/ecs/web").unwrap();
    assert_eq!(g.arn(&scope), "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/web");
    assert_eq!(g.arn_star(&scope), "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/web:*");
    assert_eq!(LogGroupName::from_arn(&g.arn(&scope), &scope).unwrap(), Some(g.clone()));
    assert_eq!(LogGroupName::from_arn(&g.arn_star(&scope), &scope).unwrap(), Some(g));
    assert_eq!(LogGroupName::from_arn("arn:aws:logs:eu-west-1:123456789012:log-group:x", &scope).unwrap(), None);
    assert!(LogGroupName::from_arn("nonsense", &scope).is_err());
}

#[test]
fn retention_takes_only_aws_values() {
    assert_eq!(RetentionDays::parse(14).unwrap().days(), 14);
    assert!(RetentionDays::parse(2).is_err());
    assert_eq!(RetentionDays::parse(1).unwrap().cutoff(NOW), NOW - 24 * H);
}

#[test]
fn batch_rules() {
    let ok = check_batch(&[(NOW - H, "a"), (NOW, "b")], NOW, None).unwrap();
    assert_eq!(ok, BatchVerdict { accepted: 0..2, ..Default::default() });
    // Too old, expired by retention, accepted, too new.
    let r = RetentionDays::parse(7).unwrap();
    let events = [(NOW - 15 * 24 * H, "old"), (NOW - 8 * 24 * H, "expired"), (NOW, "ok"), (NOW + 3 * H, "new")];
    let v = check_batch(&events, NOW, Some(r)).unwrap();
    assert_eq!(v, BatchVerdict { accepted: 2..3, too_new_start: Some(3), too_old_end: Some(1), expired_end: Some(2) });
    // All rejected: nothing accepted, no span error.
    let v = check_batch(&[(NOW + 3 * H, "x")], NOW, None).unwrap();
    assert!(v.accepted.is_empty());
    assert!(check_batch(&[], NOW, None).is_err());
    assert!(check_batch(&[(NOW, "b"), (NOW - 1, "a")], NOW, None).unwrap_err().to_string().contains("chronological"));
    assert!(check_batch(&[(NOW - 25 * H, "a"), (NOW, "b")], NOW, None).unwrap_err().to_string().contains("24 hours"));
    let many: Vec<(i64, &str)> = (0..10_001).map(|_| (NOW, "")).collect();
    assert!(check_batch(&many, NOW, None).is_err());
    assert!(check_batch(&many[..10_000], NOW, None).is_ok());
    // The size counts 26 bytes per event.
    let big = "x".repeat(MAX_BATCH_BYTES - EVENT_OVERHEAD);
    assert!(check_batch(&[(NOW, &big)], NOW, None).is_ok());
    let bigger = "x".repeat(MAX_BATCH_BYTES - EVENT_OVERHEAD + 1);
    assert!(check_batch(&[(NOW, &bigger)], NOW, None).is_err());
}
