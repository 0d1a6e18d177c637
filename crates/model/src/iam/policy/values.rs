//! The typed values condition operators compare: dates (ISO 8601 or epoch seconds), IP
//! ranges (CIDR, IPv4 and IPv6) and booleans. Parsed once from the policy, and from the
//! request's string values when a condition reads them.

use std::net::IpAddr;

/// A date as milliseconds since the Unix epoch (UTC).
pub(crate) fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        // Epoch seconds, as aws:EpochTime and many policies give them.
        return s.parse::<i64>().ok()?.checked_mul(1000);
    }
    parse_iso8601(s)
}

/// `YYYY[-MM[-DD]][Thh[:mm[:ss[.fff]]]][Z|±hh[:mm]]`, the forms IAM accepts.
fn parse_iso8601(s: &str) -> Option<i64> {
    let (date, time) = match s.find(['T', 't']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let year: i64 = digits(parts.next()?, 4)?;
    let month: u32 = parts.next().map_or(Some(1), |m| digits(m, 2))?;
    let day: u32 = parts.next().map_or(Some(1), |d| digits(d, 2))?;
    if parts.next().is_some() || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut millis = days_from_civil(year, month, day) * 86_400_000;
    if let Some(time) = time {
        millis += parse_time(time)?;
    }
    Some(millis)
}

/// `hh[:mm[:ss[.fff]]][Z|±hh[:mm]]` → milliseconds after midnight UTC (may be negative or
/// past a day once the offset is applied).
fn parse_time(t: &str) -> Option<i64> {
    let (clock, offset) = match t.find(['Z', 'z', '+', '-']) {
        Some(i) => (&t[..i], Some(&t[i..])),
        None => (t, None),
    };
    let mut parts = clock.split(':');
    let h: i64 = digits(parts.next()?, 2)?;
    let m: i64 = parts.next().map_or(Some(0), |m| digits(m, 2))?;
    let (s, frac) = match parts.next() {
        None => (0, 0),
        Some(sec) => {
            let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
            let frac_ms = if frac.is_empty() {
                0
            } else {
                if !frac.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                // Keep milliseconds; finer digits do not change a comparison IAM makes.
                let ms: String = frac.chars().chain("000".chars()).take(3).collect();
                ms.parse::<i64>().ok()?
            };
            (digits(whole, 2)?, frac_ms)
        }
    };
    if parts.next().is_some() || h > 23 || m > 59 || s > 59 {
        return None;
    }
    let offset_ms = match offset {
        None | Some("Z") | Some("z") => 0,
        Some(o) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let o = &o[1..];
            let (oh, om) = match o.split_once(':') {
                Some((oh, om)) => (digits::<i64>(oh, 2)?, digits::<i64>(om, 2)?),
                None if o.len() == 4 => (digits::<i64>(&o[..2], 2)?, digits::<i64>(&o[2..], 2)?),
                None => (digits::<i64>(o, 2)?, 0),
            };
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3_600_000 + om * 60_000)
        }
    };
    Some(h * 3_600_000 + m * 60_000 + s * 1000 + frac - offset_ms)
}

/// A number of exactly `len` ASCII digits.
fn digits<T: std::str::FromStr>(s: &str, len: usize) -> Option<T> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An IP range: an address and the number of leading bits that must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    /// `203.0.113.0/24`, `2001:db8::/32`, or a bare address (all bits).
    pub(crate) fn parse(s: &str) -> Option<Cidr> {
        let (addr, bits) = match s.trim().split_once('/') {
            Some((a, b)) => (a.parse::<IpAddr>().ok()?, Some(b.parse::<u8>().ok()?)),
            None => (s.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Cidr { addr, bits })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is its IPv4 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(u128::from(u32::from(net)), u128::from(u32::from(ip)), self.bits, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(u128::from(net), u128::from(ip), self.bits, 128),
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, bits: u8, width: u32) -> bool {
    let bits = u32::from(bits);
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (a >> shift) == (b >> shift)
}

/// `true`/`false`, case-insensitive, as the `Bool` operator reads them.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_every_form_iam_reads() {
        let ms = |s: &str| parse_date(s);
        assert_eq!(ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(ms("0"), Some(0));
        assert_eq!(ms("1700000000"), Some(1_700_000_000_000));
        assert_eq!(ms("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(ms("2023-11-14T22:13:20.5Z"), Some(1_700_000_000_500));
        assert_eq!(ms("2023-11-14T23:13:20+01:00"), Some(1_700_000_000_000));
        assert_eq!(ms("2023-11-14T21:13:20-0100"), Some(1_700_000_000_000));
        assert_eq!(ms("2023-11-14"), Some(1_699_920_000_000));
        assert_eq!(ms("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(ms("1969-12-31T23:59:59Z"), Some(-1000));
        for bad in
            ["", "2023-13-01", "2023-02-29", "2023-1-01", "2023-11-14T25:00", "yesterday", "2023-11-14T10:00:00X"]
        {
            assert_eq!(ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn cidr_ranges_v4_and_v6() {
        let c = Cidr::parse("203.0.113.0/24").unwrap();
        assert!(c.contains("203.0.113.9".parse().unwrap()));
        assert!(!c.contains("203.0.114.9".parse().unwrap()));
        assert!(c.contains("::ffff:203.0.113.1".parse().unwrap()));
        assert!(!c.contains("2001:db8::1".parse().unwrap()));
        let one = Cidr::parse("10.1.2.3").unwrap();
        assert!(one.contains("10.1.2.3".parse().unwrap()) && !one.contains("10.1.2.4".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::5".parse().unwrap()));
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("nope"), None);
    }
}
