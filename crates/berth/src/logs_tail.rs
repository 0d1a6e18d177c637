//! `berth logs tail GROUP`: a log group's events across its streams, as `aws logs tail` of
//! the AWS CLI v2 prints them, read from the running server with `FilterLogEvents`
//! (interleaved, every `nextToken` page).
//!
//! What it copies from the AWS CLI, since scripts read its output: `--since` defaults to
//! ten minutes ago and takes a number with one unit (s, m, h, d, w) or a point in time; the
//! three formats below; a line ends at the message's last non-blank character; and
//! `--follow` polls from the newest timestamp seen, remembering the ids of the events at
//! that timestamp, so an event printed is never printed again while one that arrives later
//! with the same timestamp still is. It polls every second (the CLI waits five) and stops
//! quietly on Ctrl-C. Each page is flushed as it is printed, so a pipe sees events as they
//! come; a closed pipe (`| head`) ends the command without an error.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, Context};
use model::logs::shapes::{FilterLogEventsRequest, FilterLogEventsResponse, FilteredLogEvent};
use time::OffsetDateTime;

use crate::cli::TailArgs;
use crate::extension::{AwsError, Client};

/// How often `--follow` asks for new events.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

const TARGET: &str = "Logs_20140328.FilterLogEvents";

/// Where `--since` begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This long before the command starts.
    Ago(Duration),
    /// Milliseconds since 1970, UTC.
    At(i64),
}

/// How an event is printed (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The time (UTC, to the microsecond, with its offset), the stream's name, the message.
    Detailed,
    /// The time to the second and the message.
    Short,
    /// As detailed, but a message that is entirely JSON is pretty-printed on the lines below.
    Json,
}

pub async fn tail(args: TailArgs) -> anyhow::Result<()> {
    let client = Client::open(&args.data, args.account.as_deref(), &args.region)?;
    // CloudWatch Logs takes no time before 1970.
    let start = match args.since {
        Since::Ago(ago) => now_ms().saturating_sub(i64::try_from(ago.as_millis()).unwrap_or(i64::MAX)),
        Since::At(ms) => ms,
    }
    .max(0);
    let request = FilterLogEventsRequest {
        log_group_name: Some(args.group.clone()),
        log_stream_names: args.log_stream_names.clone(),
        log_stream_name_prefix: args.log_stream_name_prefix.clone(),
        start_time: Some(start),
        filter_pattern: args.filter_pattern.clone(),
        interleaved: Some(true),
        ..Default::default()
    };
    let printer = Printer { format: args.format, colour: colour_wanted() };
    let run = Tail { client: &client, args: &args, printer };
    if !args.follow {
        return run.pages(request).await;
    }
    // Ctrl-C is how a follow ends, so it ends it quietly (the CLI does the same).
    tokio::select! {
        done = run.follow(request) => done,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Parses `--since`: `10m` (a whole number and one unit of s, m, h, d, w), an ISO 8601
/// time (`2026-12-06T10:00:00Z`, `2026-12-06T10:00:00.5+01:00`, `2026-12-06 10:00`,
/// `2026-12-06`; UTC when it names no offset), or seconds since 1970.
pub fn parse_since(s: &str) -> Result<Since, String> {
    let s = s.trim();
    if let Some(ago) = relative(s) {
        return ago.map(Since::Ago);
    }
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs.abs() < 1e14 {
            return Ok(Since::At((secs * 1000.0) as i64));
        }
    }
    absolute(s).map(Since::At).ok_or_else(|| {
        format!(
            "'{s}' is neither a time ago (a number and one unit of s, m, h, d or w, e.g. 10m or 2h) nor a time \
             (e.g. 2026-12-06T10:00:00Z)"
        )
    })
}

/// `None` if `s` is not a number followed by a letter; else the duration or why not.
fn relative(s: &str) -> Option<Result<Duration, String>> {
    let unit = s.chars().last().filter(|c| c.is_ascii_alphabetic())?;
    let digits = &s[..s.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let factor: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        other => return Some(Err(format!("unknown unit '{other}' in '{s}'; use s, m, h, d or w"))),
    };
    let secs = digits.parse::<u64>().ok().and_then(|n| n.checked_mul(factor)).filter(|&n| n < 1 << 40);
    Some(secs.map(Duration::from_secs).ok_or_else(|| format!("'{s}' is too long ago")))
}

/// An ISO 8601 time as milliseconds since 1970.
fn absolute(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    // A space between date and time is as good as a `T`, and `z` as `Z`.
    let s = match s.as_bytes().get(10) {
        Some(b' ' | b't') => format!("{}T{}", &s[..10], &s[11..]),
        _ => s.to_string(),
    }
    .replace('z', "Z");
    let at = if let Ok(t) = OffsetDateTime::parse(&s, &Rfc3339) {
        t
    } else if let Ok(d) = time::Date::parse(&s, format_description!("[year]-[month]-[day]")) {
        d.midnight().assume_utc()
    } else {
        let seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]");
        let minutes = format_description!("[year]-[month]-[day]T[hour]:[minute]");
        let local = s.strip_suffix('Z').unwrap_or(&s);
        time::PrimitiveDateTime::parse(local, seconds)
            .or_else(|_| time::PrimitiveDateTime::parse(local, minutes))
            .ok()?
            .assume_utc()
    };
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// One run of the command: where it reads and how it prints.
struct Tail<'a> {
    client: &'a Client,
    args: &'a TailArgs,
    printer: Printer,
}

impl Tail<'_> {
    /// Prints every page once, up to now.
    async fn pages(&self, mut request: FilterLogEventsRequest) -> anyhow::Result<()> {
        loop {
            let page = self.fetch(&request).await?;
            let events = page.events.unwrap_or_default();
            if !self.printer.print(events.iter())? {
                return Ok(());
            }
            match page.next_token {
                Some(token) => request.next_token = Some(token),
                None => return Ok(()),
            }
        }
    }

    /// Prints pages as they come, then polls for newer events until stopped.
    async fn follow(&self, mut request: FilterLogEventsRequest) -> anyhow::Result<()> {
        let mut seen = Seen::default();
        loop {
            let page = self.fetch(&request).await?;
            let events = page.events.unwrap_or_default();
            let fresh: Vec<&FilteredLogEvent> = events.iter().filter(|e| seen.first_time(e)).collect();
            seen.forget_older();
            if !self.printer.print(fresh.into_iter())? {
                return Ok(());
            }
            if let Some(token) = page.next_token {
                request.next_token = Some(token);
                continue;
            }
            // The last page: ask again from the newest timestamp seen (whose events `seen`
            // still knows), after a pause.
            request.next_token = None;
            if let Some(newest) = seen.newest {
                request.start_time = Some(newest);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn fetch(&self, request: &FilterLogEventsRequest) -> anyhow::Result<FilterLogEventsResponse> {
        let body = serde_json::to_vec(request)?;
        let answer = self.client.call("logs", TARGET, body).await.map_err(|e| self.explain(e))?;
        serde_json::from_slice(&answer).context("the server's FilterLogEvents answer is not what was expected")
    }

    /// Adds what to do next to the errors a user can act on.
    fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        let Some(aws) = e.downcast_ref::<AwsError>() else { return e };
        let args = self.args;
        let account = args.account.as_deref().map_or("the first account".to_string(), |a| format!("account {a}"));
        match aws.code.as_str() {
            "ResourceNotFoundException" => anyhow!(
                "{aws}\nThere is no log group {:?} in {account}, region {}. `aws logs describe-log-groups` lists \
                 the groups; a group in another account or region needs --account or --region.",
                args.group,
                args.region
            ),
            "InvalidParameterException" | "UnsupportedFeatureException" if args.filter_pattern.is_some() => {
                anyhow!("{aws}\nCheck --filter-pattern: Berth matches terms, \"quoted phrases\", -term and ?term.")
            }
            _ => e,
        }
    }
}

/// The events `--follow` has printed at the newest timestamp it has seen: the next poll
/// starts at that timestamp, so they come again and are skipped.
#[derive(Debug, Default)]
struct Seen {
    newest: Option<i64>,
    /// Ids of printed events by timestamp; after each page only the newest is kept.
    ids: std::collections::BTreeMap<i64, HashSet<String>>,
}

impl Seen {
    /// Whether `event` is new, remembering it.
    fn first_time(&mut self, event: &FilteredLogEvent) -> bool {
        let timestamp = event.timestamp.unwrap_or_default();
        self.newest = self.newest.max(Some(timestamp));
        let Some(id) = &event.event_id else { return true };
        self.ids.entry(timestamp).or_default().insert(id.clone())
    }

    fn forget_older(&mut self) {
        if let Some(newest) = self.newest {
            self.ids.retain(|&t, _| t == newest);
        }
    }
}

/// Writes events to standard output in a `Format`.
#[derive(Debug, Clone, Copy)]
struct Printer {
    format: Format,
    /// Timestamps green and stream names cyan, as the CLI does on a terminal.
    colour: bool,
}

impl Printer {
    /// Prints and flushes one page; `false` once standard output is closed.
    fn print<'e>(&self, events: impl Iterator<Item = &'e FilteredLogEvent>) -> anyhow::Result<bool> {
        let mut text = String::new();
        for event in events {
            self.line(event, &mut text);
        }
        if text.is_empty() {
            return Ok(true);
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e).context("writing to standard output"),
        }
    }

    /// Appends one event's line (or lines, for pretty JSON).
    fn line(&self, event: &FilteredLogEvent, out: &mut String) {
        let time = time_of(event.timestamp.unwrap_or_default());
        let stream = event.log_stream_name.as_deref().unwrap_or_default();
        let message = event.message.as_deref().unwrap_or_default();
        let paint = |text: &str, colour: &str| {
            if self.colour {
                format!("\x1b[{colour}m{text}\x1b[0m")
            } else {
                text.to_string()
            }
        };
        let line = match self.format {
            Format::Detailed => format!("{} {} {message}", paint(&detailed_time(time), "32"), paint(stream, "36")),
            Format::Short => format!("{} {message}", paint(&short_time(time), "32")),
            Format::Json => {
                let message = match serde_json::from_str::<serde_json::Value>(message) {
                    Ok(_) => format!("\n{}", pretty_json(message)),
                    Err(_) => message.to_string(),
                };
                format!("{} {} {message}", paint(&json_time(time), "32"), paint(stream, "36"))
            }
        };
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn colour_wanted() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

fn time_of(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `2026-12-06T10:00:00`
fn short_time(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `2026-12-06T10:00:00.250000+00:00`, always with microseconds.
fn detailed_time(t: OffsetDateTime) -> String {
    format!("{}.{:06}+00:00", short_time(t), t.microsecond())
}

/// As `detailed_time`, but without the fraction when it is zero (as Python's `isoformat`).
fn json_time(t: OffsetDateTime) -> String {
    match t.microsecond() {
        0 => format!("{}+00:00", short_time(t)),
        _ => detailed_time(t),
    }
}

/// Valid JSON laid out with four spaces per level, `": "` after keys and one member per
/// line, as the CLI prints it; keys keep their order, strings and numbers their text.
fn pretty_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"    ".repeat(depth));
    };
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
                let close = if c == '{' { '}' } else { ']' };
                out.push(c);
                if chars.next_if_eq(&close).is_some() {
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts: i64, stream: &str, id: &str, message: &str) -> FilteredLogEvent {
        FilteredLogEvent {
            log_stream_name: Some(stream.into()),
            timestamp: Some(ts),
            message: Some(message.into()),
            ingestion_time: Some(ts),
            event_id: Some(id.into()),
        }
    }

    #[test]
    fn since_takes_the_clis_relative_and_absolute_forms() {
        let ago = |s| Since::Ago(Duration::from_secs(s));
        for (text, want) in
            [("10m", ago(600)), ("0s", ago(0)), ("90s", ago(90)), ("2h", ago(7200)), ("1d", ago(86_400))]
        {
            assert_eq!(parse_since(text), Ok(want), "{text}");
        }
        assert_eq!(parse_since("2w"), Ok(ago(14 * 86_400)));
        let at = 1_796_551_200_000; // 2026-12-06T10:00:00Z
        for text in [
            "2026-12-06T10:00:00Z",
            "2026-12-06T10:00:00",
            "2026-12-06 10:00:00",
            "2026-12-06T10:00",
            "2026-12-06T11:00:00+01:00",
            "2026-12-06t10:00:00z",
            "1796551200",
        ] {
            assert_eq!(parse_since(text), Ok(Since::At(at)), "{text}");
        }
        assert_eq!(parse_since("2026-12-06T10:00:00.250Z"), Ok(Since::At(at + 250)));
        assert_eq!(parse_since("2026-12-06"), Ok(Since::At(at - 10 * 3_600_000)));
        for bad in ["", "m", "5h30m", "10x", "-5m", "yesterday", "2026-13-01", "99999999999999999999w"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_print_as_the_cli_prints_them() {
        let t = time_of(1_796_551_200_250);
        assert_eq!(short_time(t), "2026-12-06T10:00:00");
        assert_eq!(detailed_time(t), "2026-12-06T10:00:00.250000+00:00");
        assert_eq!(json_time(t), "2026-12-06T10:00:00.250000+00:00");
        let whole = time_of(1_796_551_200_000);
        assert_eq!(detailed_time(whole), "2026-12-06T10:00:00.000000+00:00");
        assert_eq!(json_time(whole), "2026-12-06T10:00:00+00:00");
    }

    #[test]
    fn lines_in_each_format() {
        let line = |format, e: &FilteredLogEvent| {
            let mut out = String::new();
            Printer { format, colour: false }.line(e, &mut out);
            out
        };
        let e = event(1_796_551_200_250, "web/1", "1", "GET / 200  \r\n");
        assert_eq!(line(Format::Detailed, &e), "2026-12-06T10:00:00.250000+00:00 web/1 GET / 200\n");
        assert_eq!(line(Format::Short, &e), "2026-12-06T10:00:00 GET / 200\n");
        assert_eq!(line(Format::Json, &e), "2026-12-06T10:00:00.250000+00:00 web/1 GET / 200\n");
        let j = event(1_796_551_200_000, "web/1", "2", r#"{"b": 1, "a": [true, {}], "s": "x,{:}\"y"}"#);
        assert_eq!(
            line(Format::Json, &j),
            "2026-12-06T10:00:00+00:00 web/1 \n{\n    \"b\": 1,\n    \"a\": [\n        true,\n        {}\n    ],\n    \
             \"s\": \"x,{:}\\\"y\"\n}\n"
        );
        let coloured = {
            let mut out = String::new();
            Printer { format: Format::Detailed, colour: true }.line(&e, &mut out);
            out
        };
        assert_eq!(coloured, "\x1b[32m2026-12-06T10:00:00.250000+00:00\x1b[0m \x1b[36mweb/1\x1b[0m GET / 200\n");
    }

    #[test]
    fn pretty_json_lays_out_nested_and_empty_values() {
        assert_eq!(pretty_json("[]"), "[]");
        assert_eq!(pretty_json(" { } "), "{}");
        assert_eq!(pretty_json("42"), "42");
        assert_eq!(
            pretty_json(r#"{"k":[1,2],"e":[ ]}"#),
            "{\n    \"k\": [\n        1,\n        2\n    ],\n    \"e\": []\n}"
        );
        assert_eq!(pretty_json(r#"["a\\",{"x":null}]"#), "[\n    \"a\\\\\",\n    {\n        \"x\": null\n    }\n]");
    }

    #[test]
    fn follow_skips_only_events_seen_at_the_newest_timestamp() {
        let mut seen = Seen::default();
        let page = [event(1, "a", "1", ""), event(2, "a", "2", ""), event(2, "b", "3", "")];
        assert!(page.iter().all(|e| seen.first_time(e)));
        seen.forget_older();
        assert_eq!(seen.newest, Some(2));
        // The next poll starts at 2: its events come again, with one that arrived since.
        let again = [event(2, "a", "2", ""), event(2, "b", "3", ""), event(2, "c", "4", ""), event(3, "a", "5", "")];
        let fresh: Vec<_> = again.iter().filter(|e| seen.first_time(e)).map(|e| e.event_id.clone().unwrap()).collect();
        assert_eq!(fresh, ["4", "5"]);
        seen.forget_older();
        assert_eq!(seen.ids.keys().copied().collect::<Vec<_>>(), [3]);
    }
}
