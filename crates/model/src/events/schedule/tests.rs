//! The schedule grammar's table of accepted and refused expressions, and firing times
//! checked against calendar dates worked out by hand.

use super::*;

/// Seconds since the epoch of a UTC date and time.
fn at(y: i64, m: u32, d: u32, h: i64, min: i64) -> i64 {
    // Inverse of `civil`, by search from a nearby day: tests only.
    let mut day = (y - 1970) * 365 + (y - 1969) / 4 - 40;
    while civil(day) != (y, m, d) {
        day += 1;
    }
    day * 86_400 + h * 3600 + min * 60
}

#[test]
fn accepts_what_eventbridge_accepts() {
    for s in [
        "rate(1 minute)",
        "rate(5 minutes)",
        "rate(1 hour)",
        "rate(12 hours)",
        "rate(1 day)",
        "rate(7 days)",
        "cron(0 10 * * ? *)",
        "cron(15 12 * * ? *)",
        "cron(0 18 ? * MON-FRI *)",
        "cron(0 8 1 * ? *)",
        "cron(0/15 * * * ? *)",
        "cron(0/10 * ? * MON-FRI *)",
        "cron(0/5 8-17 ? * MON-FRI *)",
        "cron(0 9 ? * 2#1 *)",
        "cron(0 0 L * ? *)",
        "cron(0 0 LW * ? *)",
        "cron(0 0 15W * ? *)",
        "cron(0 0 ? * 6L *)",
        "cron(0 0 ? * L *)",
        "cron(0 0 ? * FRI-MON *)",
        "cron(0,30 1,2,3 ? JAN,jul * 2030-2040)",
        "cron(* * * * ? *)",
        "cron(*/5 * * * ? 2025/2)",
        "cron(0 12 ? * SUN#5 *)",
    ] {
        assert!(Schedule::parse(s).is_ok(), "{s} should be accepted: {:?}", Schedule::parse(s));
    }
}

#[test]
fn refuses_what_eventbridge_refuses() {
    for s in [
        "",
        "rate()",
        "rate(1 minutes)",
        "rate(5 minute)",
        "rate(0 minutes)",
        "rate(-1 minutes)",
        "rate(1.5 hours)",
        "rate(1 second)",
        "rate(2 weeks)",
        "rate(1  minute)",
        "rate(1 minute",
        "every(1 minute)",
        "cron(0 10 * * * *)",
        "cron(0 10 ? * ? *)",
        "cron(0 10 * * ?)",
        "cron(0 10 * * ? * *)",
        "cron(60 10 * * ? *)",
        "cron(0 24 * * ? *)",
        "cron(0 0 0 * ? *)",
        "cron(0 0 32 * ? *)",
        "cron(0 0 * 13 ? *)",
        "cron(0 0 ? * 8 *)",
        "cron(0 0 ? * 2#6 *)",
        "cron(0 0 32W * ? *)",
        "cron(0 0 * * ? 1969)",
        "cron(0 0 * * ? 2200)",
        "cron(0 0 * FOO ? *)",
        "cron(0/0 * * * ? *)",
        "cron(a * * * ? *)",
        "cron(0 0 L ? * *)",
    ] {
        assert!(Schedule::parse(s).is_err(), "{s} should be refused");
    }
}

fn next(s: &str, after: i64) -> Option<i64> {
    Schedule::parse(s).unwrap().next_after(0, after)
}

#[test]
fn cron_firings_fall_on_the_right_days() {
    // 2026-12-07 is a Monday.
    let mon = at(2026, 12, 7, 10, 30);
    assert_eq!(next("cron(0 10 * * ? *)", mon), Some(at(2026, 12, 8, 10, 0)));
    assert_eq!(next("cron(45 10 * * ? *)", mon), Some(at(2026, 12, 7, 10, 45)));
    assert_eq!(next("cron(0/15 * * * ? *)", mon), Some(at(2026, 12, 7, 10, 45)));
    assert_eq!(next("cron(* * * * ? *)", mon + 5), Some(mon + 60));
    assert_eq!(next("cron(0 9 ? * SAT *)", mon), Some(at(2026, 12, 12, 9, 0)));
    assert_eq!(next("cron(0 9 ? * 7 *)", mon), Some(at(2026, 12, 12, 9, 0)));
    assert_eq!(next("cron(0 0 L * ? *)", mon), Some(at(2026, 12, 31, 0, 0)));
    assert_eq!(next("cron(0 0 L 2 ? *)", mon), Some(at(2027, 2, 28, 0, 0)));
    assert_eq!(next("cron(0 0 L 2 ? 2028)", mon), Some(at(2028, 2, 29, 0, 0)));
    // The second Tuesday of December 2026 is the 8th; of January 2027 the 12th.
    assert_eq!(next("cron(0 9 ? * 3#2 *)", mon), Some(at(2026, 12, 8, 9, 0)));
    assert_eq!(next("cron(0 9 ? * TUE#2 *)", at(2026, 12, 9, 0, 0)), Some(at(2027, 1, 12, 9, 0)));
    // The last Friday of December 2026 is the 25th.
    assert_eq!(next("cron(0 9 ? * 6L *)", mon), Some(at(2026, 12, 25, 9, 0)));
    // 2027-01-31 is a Sunday: its last weekday is Friday the 29th.
    assert_eq!(next("cron(0 0 LW 1 ? *)", mon), Some(at(2027, 1, 29, 0, 0)));
    // 2027-05-01 is a Saturday: the nearest weekday in the month is Monday the 3rd;
    // 2027-05-15 is a Saturday: Friday the 14th.
    assert_eq!(next("cron(0 0 1W 5 ? *)", mon), Some(at(2027, 5, 3, 0, 0)));
    assert_eq!(next("cron(0 0 15W 5 ? *)", mon), Some(at(2027, 5, 14, 0, 0)));
    // A wrapping range of weekdays: Friday to Monday.
    assert_eq!(next("cron(0 9 ? * FRI-MON *)", mon), Some(at(2026, 12, 11, 9, 0)));
    assert_eq!(next("cron(0 22-2 * * ? *)", at(2026, 12, 7, 2, 30)), Some(at(2026, 12, 7, 22, 0)));
    // A year in the past never fires again.
    assert_eq!(next("cron(0 0 * * ? 2020)", mon), None);
    assert_eq!(next("cron(0 0 1 1 ? 2199)", mon), Some(at(2199, 1, 1, 0, 0)));
}

#[test]
fn rates_count_from_their_anchor() {
    let s = Schedule::parse("rate(5 minutes)").unwrap();
    assert_eq!(s.next_after(1000, 1000), Some(1300));
    assert_eq!(s.next_after(1000, 1299), Some(1300));
    assert_eq!(s.next_after(1000, 1300), Some(1600));
    assert_eq!(s.next_after(1000, 0), Some(1300));
}

#[test]
fn missed_firings_collapse_into_the_latest() {
    let rate = Schedule::parse("rate(1 minute)").unwrap();
    assert_eq!(rate.latest_due(0, 0, 59), None);
    assert_eq!(rate.latest_due(0, 0, 60), Some(60));
    assert_eq!(rate.latest_due(0, 60, 1000), Some(960));
    assert_eq!(rate.latest_due(0, 960, 1000), None);
    let cron = Schedule::parse("cron(0/10 * * * ? *)").unwrap();
    let t = at(2026, 12, 7, 10, 0);
    assert_eq!(cron.latest_due(0, t, t + 3599), Some(t + 3000));
    assert_eq!(cron.latest_due(0, t + 3000, t + 3599), None);
}
