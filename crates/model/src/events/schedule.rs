//! EventBridge's schedule expressions: `rate(value unit)` and the six-field
//! `cron(minutes hours day-of-month month day-of-week year)`, parsed once into a
//! [`Schedule`] that can only exist valid, and the pure question "when is the next
//! firing after this instant" (UTC, whole minutes for cron). No clock is read here: the
//! caller passes every instant, so the rules are tested exactly.
//!
//! Decisions where EventBridge's documentation is silent:
//! - Ranges may wrap (`FRI-MON`, `22-2`), as in the Quartz grammar EventBridge's cron
//!   derives from; being stricter than AWS would refuse expressions that work there.
//! - A rate schedule fires every period counted from its anchor (when the rule got this
//!   schedule or was last enabled), not on clock boundaries: EventBridge documents only
//!   that the first firing comes within one period of creation.

use std::fmt;

/// Why a schedule expression was refused; EventBridge answers every such refusal with
/// one message, so the detail is for Berth's own tests and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSchedule(pub String);

fn bad<T>(why: impl Into<String>) -> Result<T, BadSchedule> {
    Err(BadSchedule(why.into()))
}

/// A valid schedule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every `seconds`, counted from the rule's anchor.
    Rate {
        seconds: i64,
    },
    Cron(Box<Cron>),
}

/// A cron expression's fields, each a set of the values it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    /// Bit `m` for month `m` (1..=12).
    months: u16,
    days: Days,
    /// Years 1970..=2199; `None` for `*`.
    years: Option<Vec<bool>>,
}

/// Exactly one of day-of-month and day-of-week is `?`; the other chooses the days.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Days {
    OfMonth(MonthDays),
    OfWeek(WeekDays),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum MonthDays {
    /// Bit `d` for day `d` (1..=31).
    Set(u32),
    /// `L`: the month's last day.
    Last,
    /// `LW`: the month's last weekday (Monday to Friday).
    LastWeekday,
    /// `nW`: the weekday nearest to day `n`, within the same month.
    NearestWeekday(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum WeekDays {
    /// Bit `d` for day `d` (1 = Sunday ..= 7 = Saturday).
    Set(u8),
    /// `dL`: the month's last day `d` of the week (`L` alone is Saturday).
    LastOf(u32),
    /// `d#n`: the `n`th day `d` of the week in the month.
    Nth(u32, u32),
}

const FIRST_YEAR: i64 = 1970;
const LAST_YEAR: i64 = 2199;
const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Schedule {
    /// Parses `rate(...)` or `cron(...)` with EventBridge's rules.
    pub fn parse(s: &str) -> Result<Schedule, BadSchedule> {
        if let Some(body) = s.strip_prefix("rate(").and_then(|b| b.strip_suffix(')')) {
            return parse_rate(body);
        }
        if let Some(body) = s.strip_prefix("cron(").and_then(|b| b.strip_suffix(')')) {
            return Ok(Schedule::Cron(Box::new(parse_cron(body)?)));
        }
        bad("a schedule expression is rate(value unit) or cron(fields)")
    }

    /// The first firing strictly after `after` (seconds since the epoch, UTC), for a
    /// schedule anchored at `anchor`; `None` if it never fires again.
    pub fn next_after(&self, anchor: i64, after: i64) -> Option<i64> {
        match self {
            Schedule::Rate { seconds } => {
                if after < anchor {
                    return Some(anchor + seconds);
                }
                Some(anchor + ((after - anchor) / seconds + 1) * seconds)
            }
            Schedule::Cron(c) => c.next_after(after),
        }
    }

    /// The latest firing in `(after, now]`, if any: after downtime the missed firings
    /// are one firing, not many.
    pub fn latest_due(&self, anchor: i64, after: i64, now: i64) -> Option<i64> {
        match self {
            Schedule::Rate { seconds } => {
                let first = self.next_after(anchor, after)?;
                (first <= now).then(|| first + (now - first) / seconds * seconds)
            }
            Schedule::Cron(c) => {
                let mut due = None;
                let mut t = after;
                // Each step is one firing; a bound keeps a long downtime of a
                // minute-by-minute schedule from holding the loop (the rest is caught
                // up on the next pass, as one firing).
                for _ in 0..100_000 {
                    match c.next_after(t) {
                        Some(next) if next <= now => {
                            due = Some(next);
                            t = next;
                        }
                        _ => break,
                    }
                }
                due
            }
        }
    }
}

fn parse_rate(body: &str) -> Result<Schedule, BadSchedule> {
    let mut parts = body.split(' ');
    let (Some(value), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return bad("rate takes a value and a unit separated by one space");
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return bad("a rate's value is a positive whole number");
    }
    let value: i64 = value.parse().map_err(|_| BadSchedule("the rate's value is too large".into()))?;
    if value == 0 {
        return bad("a rate's value is a positive whole number");
    }
    // One takes the singular unit; more than one the plural.
    let (unit_seconds, singular) = match unit {
        "minute" => (60, true),
        "minutes" => (60, false),
        "hour" => (3600, true),
        "hours" => (3600, false),
        "day" => (86_400, true),
        "days" => (86_400, false),
        _ => return bad("a rate's unit is minute(s), hour(s) or day(s)"),
    };
    if singular != (value == 1) {
        return bad("the unit is singular for 1 and plural otherwise");
    }
    let seconds = value.checked_mul(unit_seconds).ok_or_else(|| BadSchedule("the rate is too long".into()))?;
    Ok(Schedule::Rate { seconds })
}

fn parse_cron(body: &str) -> Result<Cron, BadSchedule> {
    let fields: Vec<&str> = body.split(' ').collect();
    let [min, hour, dom, month, dow, year] = fields[..] else {
        return bad("cron takes six fields separated by single spaces");
    };
    let days = match (dom, dow) {
        ("?", "?") => return bad("only one of day-of-month and day-of-week may be ?"),
        (_, "?") => Days::OfMonth(parse_month_days(dom)?),
        ("?", _) => Days::OfWeek(parse_week_days(dow)?),
        _ => return bad("one of day-of-month and day-of-week must be ?"),
    };
    let years = if year == "*" {
        None
    } else {
        let set = parse_set(year, FIRST_YEAR as u32, LAST_YEAR as u32, &[])?;
        Some(set)
    };
    Ok(Cron {
        minutes: bits(&parse_set(min, 0, 59, &[])?),
        hours: bits(&parse_set(hour, 0, 23, &[])?) as u32,
        months: bits(&parse_set(month, 1, 12, &MONTHS)?) as u16,
        days,
        years,
    })
}

fn parse_month_days(field: &str) -> Result<MonthDays, BadSchedule> {
    match field {
        "L" => return Ok(MonthDays::Last),
        "LW" => return Ok(MonthDays::LastWeekday),
        _ => {}
    }
    if let Some(day) = field.strip_suffix('W') {
        let d = number(day, 1, 31, &[])?;
        return Ok(MonthDays::NearestWeekday(d));
    }
    Ok(MonthDays::Set(bits(&parse_set(field, 1, 31, &[])?) as u32))
}

fn parse_week_days(field: &str) -> Result<WeekDays, BadSchedule> {
    if field == "L" {
        return Ok(WeekDays::LastOf(7));
    }
    if let Some(day) = field.strip_suffix('L') {
        return Ok(WeekDays::LastOf(number(day, 1, 7, &WEEKDAYS)?));
    }
    if let Some((day, nth)) = field.split_once('#') {
        return Ok(WeekDays::Nth(number(day, 1, 7, &WEEKDAYS)?, number(nth, 1, 5, &[])?));
    }
    Ok(WeekDays::Set(bits(&parse_set(field, 1, 7, &WEEKDAYS)?) as u8))
}

/// A value, or a name from `names` (the first name is `lo`), case-insensitive.
fn number(s: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u32, BadSchedule> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(lo + i as u32);
    }
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return bad(format!("'{s}' is not a value of this field"));
    }
    let v: u32 = s.parse().map_err(|_| BadSchedule(format!("'{s}' is not a number")))?;
    if !(lo..=hi).contains(&v) {
        return bad(format!("{v} is outside {lo}-{hi}"));
    }
    Ok(v)
}

/// A comma-separated list of `*`, values, ranges and increments (`a/n`, `a-b/n`, `*/n`),
/// as a membership table indexed from 0.
fn parse_set(field: &str, lo: u32, hi: u32, names: &[&str]) -> Result<Vec<bool>, BadSchedule> {
    let mut set = vec![false; hi as usize + 1];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, number(s, 1, hi.max(1), &[])?),
            None => (item, 1),
        };
        let (start, end) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (number(a, lo, hi, names)?, number(b, lo, hi, names)?),
                // `a/n` runs from a to the field's end.
                None if item.contains('/') => (number(r, lo, hi, names)?, hi),
                None => {
                    let v = number(r, lo, hi, names)?;
                    (v, v)
                }
            },
        };
        // A range whose end is before its start wraps around the field's end.
        let span = if end >= start { end - start } else { hi - start + 1 + end - lo };
        let mut offset = 0;
        while offset <= span {
            let v = start + offset;
            let v = if v > hi { v - hi - 1 + lo } else { v };
            set[v as usize] = true;
            offset += step;
        }
    }
    Ok(set)
}

fn bits(set: &[bool]) -> u64 {
    set.iter().enumerate().filter(|(_, b)| **b).fold(0, |acc, (i, _)| acc | (1u64 << i))
}

impl Cron {
    fn next_after(&self, after: i64) -> Option<i64> {
        // Whole minutes: the first candidate is the minute after `after`'s.
        let start = after.div_euclid(60) * 60 + 60;
        let mut day = start.div_euclid(86_400);
        let mut minute_of_day = (start.rem_euclid(86_400) / 60) as u32;
        // Past the last year the expression allows, it never fires again.
        let last_year = match &self.years {
            None => LAST_YEAR,
            Some(set) => set.iter().rposition(|b| *b).map_or(FIRST_YEAR - 1, |y| y as i64),
        };
        loop {
            let (y, m, d) = civil(day);
            if y > last_year {
                return None;
            }
            if self.year_matches(y) && self.months & (1 << m) != 0 && self.day_matches(y, m, d, day) {
                if let Some(at) = self.first_minute_from(minute_of_day) {
                    return Some(day * 86_400 + i64::from(at) * 60);
                }
            }
            day += 1;
            minute_of_day = 0;
        }
    }

    fn year_matches(&self, y: i64) -> bool {
        match &self.years {
            None => true,
            Some(set) => (FIRST_YEAR..=LAST_YEAR).contains(&y) && set[y as usize],
        }
    }

    fn first_minute_from(&self, from: u32) -> Option<u32> {
        (from..24 * 60).find(|t| self.hours & (1 << (t / 60)) != 0 && self.minutes & (1 << (t % 60)) != 0)
    }

    fn day_matches(&self, y: i64, m: u32, d: u32, day: i64) -> bool {
        let last = days_in_month(y, m);
        let wd = weekday(day);
        match &self.days {
            Days::OfMonth(MonthDays::Set(set)) => set & (1 << d) != 0,
            Days::OfMonth(MonthDays::Last) => d == last,
            Days::OfMonth(MonthDays::LastWeekday) => {
                let from_end = match weekday(day - i64::from(d) + i64::from(last)) {
                    1 => 2, // the last day is a Sunday: Friday before it
                    7 => 1, // a Saturday: the Friday
                    _ => 0,
                };
                d == last - from_end
            }
            Days::OfMonth(MonthDays::NearestWeekday(n)) => {
                if *n > last {
                    return false;
                }
                let target_day = day - i64::from(d) + i64::from(*n);
                let chosen = match weekday(target_day) {
                    7 if *n == 1 => n + 2,
                    7 => n - 1,
                    1 if *n == last => n - 2,
                    1 => n + 1,
                    _ => *n,
                };
                d == chosen
            }
            Days::OfWeek(WeekDays::Set(set)) => set & (1 << wd) != 0,
            Days::OfWeek(WeekDays::LastOf(w)) => wd == *w && d + 7 > last,
            Days::OfWeek(WeekDays::Nth(w, n)) => wd == *w && (d - 1) / 7 + 1 == *n,
        }
    }
}

/// 1 = Sunday ..= 7 = Saturday, for a day counted from 1970-01-01 (a Thursday).
fn weekday(day: i64) -> u32 {
    ((day + 4).rem_euclid(7) + 1) as u32
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The (year, month, day) of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil(day: i64) -> (i64, u32, u32) {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl fmt::Display for BadSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests;
