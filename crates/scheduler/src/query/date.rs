//! The dates `registeredAt` compares against, in the four forms the ECS guide lists:
//! `2018-06-18T22:28:28+00:00`, `2018-06-18T22:28:28Z`, `2018-06-18T22:28:28` (UTC) and
//! `2018-06-18` (a whole UTC day).

use std::cmp::Ordering;

const DAY: i64 = 86_400;

/// A parsed date literal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DateArg {
    /// Seconds since the epoch; midnight UTC for a bare date.
    seconds: i64,
    /// A bare date compares by calendar day rather than by instant.
    whole_day: bool,
}

impl DateArg {
    /// How an instance registered at `t` (epoch seconds) orders against this date.
    pub(crate) fn order(&self, t: f64) -> Option<Ordering> {
        if self.whole_day {
            let day = (t / DAY as f64).floor();
            day.partial_cmp(&((self.seconds / DAY) as f64))
        } else {
            t.partial_cmp(&(self.seconds as f64))
        }
    }
}

/// Parses one of the four documented forms; `None` for anything else.
pub(crate) fn parse_date(s: &str) -> Option<DateArg> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let midnight = days_from_civil(year, month, day) * DAY;
    if b.len() == 10 {
        return Some(DateArg { seconds: midnight, whole_day: true });
    }
    if b.len() < 19 || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, m, sec) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let offset = match &b[19..] {
        b"" | b"Z" => 0,
        [sign @ (b'+' | b'-'), oh @ .., b':', om1, om2] if oh.len() == 2 => {
            let (oh, om) = (digits(oh)?, digits(&[*om1, *om2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    // A local time at +hh:mm is that much ahead of UTC.
    Some(DateArg { seconds: midnight + h * 3600 + m * 60 + sec - offset, whole_day: false })
}

fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_documented_forms_parse() {
        // 2018-06-18T22:28:28Z is 1529360908 seconds after the epoch.
        let at = |s| parse_date(s).unwrap();
        assert_eq!(at("2018-06-18T22:28:28+00:00"), DateArg { seconds: 1_529_360_908, whole_day: false });
        assert_eq!(at("2018-06-18T22:28:28Z"), DateArg { seconds: 1_529_360_908, whole_day: false });
        assert_eq!(at("2018-06-18T22:28:28"), DateArg { seconds: 1_529_360_908, whole_day: false });
        assert_eq!(at("2018-06-18"), DateArg { seconds: 1_529_280_000, whole_day: true });
        assert_eq!(at("2018-06-19T00:28:28+02:00").seconds, 1_529_360_908);
        assert_eq!(at("2018-06-18T20:28:28-02:00").seconds, 1_529_360_908);
        assert_eq!(at("1970-01-01").seconds, 0);
        assert_eq!(at("2000-02-29").seconds, 951_782_400);
    }

    #[test]
    fn malformed_dates_are_refused() {
        for s in [
            "",
            "2018",
            "2018-6-18",
            "2018-13-01",
            "2018-02-29",
            "2018-06-31",
            "2018-06-18T24:00:00",
            "2018-06-18 22:28:28",
            "2018-06-18T22:28",
            "2018-06-18T22:28:28+0000",
            "2018-06-18T22:28:28.5Z",
            "yesterday",
        ] {
            assert_eq!(parse_date(s), None, "{s}");
        }
    }

    #[test]
    fn a_bare_date_compares_by_day() {
        let day = parse_date("2018-02-13").unwrap();
        let midnight = 1_518_480_000.0;
        assert_eq!(day.order(midnight - 1.0), Some(Ordering::Less));
        assert_eq!(day.order(midnight), Some(Ordering::Equal));
        assert_eq!(day.order(midnight + 86_399.9), Some(Ordering::Equal));
        assert_eq!(day.order(midnight + 86_400.0), Some(Ordering::Greater));
        let instant = parse_date("2018-02-13T00:00:00Z").unwrap();
        assert_eq!(instant.order(midnight + 1.0), Some(Ordering::Greater));
    }
}
