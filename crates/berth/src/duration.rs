//! The one syntax of every duration flag (`--agent-timeout`, `--lost-instance-grace`,
//! `--lifecycle-interval`, `--registry-gc-interval`, `--stopped-task-retention`): a whole
//! number with a unit `s`, `m`, `h` or `d` (`90s`, `5m`, `1h`, `1d`), or a bare whole
//! number of seconds (`3600`), which is what the flags that took seconds accepted before.

use std::time::Duration;

/// Parses a duration; at least one second.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 =
        digits.parse().map_err(|_| format!("'{s}' is not a duration; write e.g. 90s, 5m, 1h, 1d or 3600 (seconds)"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown unit '{other}' in '{s}'; use s, m, h or d")),
    };
    match n.checked_mul(factor) {
        Some(0) => Err("the duration must be at least one second".into()),
        Some(secs) => Ok(Duration::from_secs(secs)),
        None => Err(format!("'{s}' is too long a duration")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (text, secs) in [("3600", 3600), ("90s", 90), ("5m", 300), ("30m", 1800), ("1h", 3600), ("2d", 172_800)] {
            assert_eq!(parse_duration(text), Ok(Duration::from_secs(secs)), "{text}");
        }
        for bad in ["", "0", "0s", "h", "1w", "1.5h", "-1", "1h30m", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
