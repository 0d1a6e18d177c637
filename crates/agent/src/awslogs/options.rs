//! The `awslogs` options of a container definition, checked as Docker's awslogs driver
//! checks them, and what the container is created with instead: Docker's `local` driver,
//! uncompressed, which keeps `docker logs` working and which the agent reads and ships.
//! (`local` rather than `json-file`: dockerd writes its frames with about a quarter less
//! CPU than JSON lines, measured with the test image's `print`, and a container that
//! prints without pause gets that much further.)

use std::collections::HashMap;

use regex::Regex;

/// The options Docker's awslogs driver knows, plus ECS's `awslogs-stream-prefix`.
/// Anything else is refused, as Docker refuses it.
const KNOWN: &[&str] = &[
    "awslogs-region",
    "awslogs-endpoint",
    "awslogs-group",
    "awslogs-create-group",
    "awslogs-stream",
    "awslogs-stream-prefix",
    "awslogs-datetime-format",
    "awslogs-multiline-pattern",
    "awslogs-credentials-endpoint",
    "awslogs-force-flush-interval-seconds",
    "awslogs-max-buffered-events",
    "awslogs-format",
    "tag",
    "mode",
    "max-buffer-size",
];

/// Options Docker applies to every driver, so they carry over to the local one:
/// `mode: non-blocking` with `max-buffer-size` makes Docker buffer (and drop) rather
/// than block the container when the log file cannot keep up.
const CARRIED: &[&str] = &["mode", "max-buffer-size"];

/// The local cache the container writes, and the agent follows: two files of
/// [`CacheFileSize`] (1 GB unless the agent is told otherwise).
/// - Large, because Docker's awslogs driver in blocking mode makes a container that
///   prints faster than it ships wait, and a local file cannot: a container that gets
///   that far ahead of its shipping (or prints that much while its agent is down) loses
///   its oldest lines.
/// - Bounded at all, because the engine's default options may rotate small files (this
///   machine's `daemon.json` says 10 MB) and Docker's own default never bounds.
///
/// The agent reads the file itself and follows its rotations (`follow`); Docker's
/// `logs --follow`, the fallback, loses or repeats a few hundred KB at a rotation (seen
/// with 28.2), another reason for large files.
const MAX_FILES: &str = "2";

/// The size of each file of an awslogs container's local cache, in Docker's `max-size`
/// form (`1g`, `200m`, `512k`, or bytes): `BERTH_AWSLOGS_CACHE_FILE_SIZE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheFileSize(String);

impl CacheFileSize {
    pub fn parse(s: &str) -> Result<CacheFileSize, String> {
        let digits = s.strip_suffix(['k', 'm', 'g']).unwrap_or(s);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.bytes().all(|b| b == b'0') {
            return Err(format!("a size such as 1g, 200m or 512k; got '{s}'"));
        }
        Ok(CacheFileSize(s.to_string()))
    }
}

impl Default for CacheFileSize {
    fn default() -> Self {
        CacheFileSize("1g".to_string())
    }
}

/// How the stream of a container is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamNaming {
    /// `awslogs-stream-prefix`: `<prefix>/<container name>/<task id>`, as ECS names it.
    Prefixed(String),
    /// `awslogs-stream`: exactly this name.
    Fixed(String),
    /// Neither: the container's Docker id, as Docker's driver names it.
    ContainerId,
}

/// A container's awslogs configuration.
#[derive(Debug, Clone)]
pub struct AwsLogs {
    pub group: String,
    /// `awslogs-region`; the agent's own region when absent.
    pub region: Option<String>,
    pub stream: StreamNaming,
    pub create_group: bool,
    /// A line that matches starts a new event; the lines that follow and do not match
    /// join it (`awslogs-multiline-pattern`, or `awslogs-datetime-format` turned into a
    /// regex anchored at the line's start).
    pub event_start: Option<Regex>,
}

impl AwsLogs {
    /// Checks the options of an `awslogs` log configuration. The error is Docker's
    /// wording, for a `CannotCreateContainerError`.
    pub fn parse(options: &HashMap<String, String>) -> Result<AwsLogs, String> {
        let mut names: Vec<&String> = options.keys().collect();
        names.sort();
        if let Some(unknown) = names.iter().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(format!("unknown log opt '{unknown}' for awslogs log driver"));
        }
        let get = |k: &str| options.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let group = get("awslogs-group").ok_or("must specify valid value for log opt 'awslogs-group'")?.to_string();
        let create_group = match get("awslogs-create-group") {
            None => false,
            Some(v) => parse_bool(v)
                .ok_or_else(|| format!("invalid value for log opt 'awslogs-create-group': '{v}' is not a boolean"))?,
        };
        let stream = match (get("awslogs-stream-prefix"), get("awslogs-stream")) {
            (Some(prefix), _) => StreamNaming::Prefixed(prefix.to_string()),
            (None, Some(name)) => StreamNaming::Fixed(name.to_string()),
            (None, None) => StreamNaming::ContainerId,
        };
        let event_start = match (get("awslogs-datetime-format"), get("awslogs-multiline-pattern")) {
            (Some(_), Some(_)) => {
                return Err("you cannot configure log opt 'awslogs-datetime-format' and 'awslogs-multiline-pattern' at the same time".into())
            }
            (Some(format), None) => Some(datetime_regex(format)?),
            (None, Some(pattern)) => Some(
                Regex::new(pattern)
                    .map_err(|e| format!("awslogs could not parse multiline pattern key 'awslogs-multiline-pattern': {e}"))?,
            ),
            (None, None) => None,
        };
        if let Some(v) = get("awslogs-format") {
            if v != "json/emf" {
                return Err(format!("unsupported log format '{v}'"));
            }
        }
        Ok(AwsLogs { group, region: get("awslogs-region").map(str::to_string), stream, create_group, event_start })
    }

    /// The stream's name for a container of a task.
    pub fn stream_name(&self, container_name: &str, task_id: &str, container_id: &str) -> String {
        match &self.stream {
            StreamNaming::Prefixed(p) => format!("{p}/{container_name}/{task_id}"),
            StreamNaming::Fixed(name) => name.clone(),
            StreamNaming::ContainerId => container_id.to_string(),
        }
    }
}

/// The log driver and options a container is created with: `awslogs` becomes the
/// uncompressed `local` cache the agent ships from (a rotated file compressed would have
/// to be read through Docker); any other driver is Docker's own.
pub fn local_driver(
    driver: &str,
    options: &HashMap<String, String>,
    cache: &CacheFileSize,
) -> (String, HashMap<String, String>) {
    if driver != "awslogs" {
        return (driver.to_string(), options.clone());
    }
    let mut local: HashMap<String, String> =
        options.iter().filter(|(k, _)| CARRIED.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
    local.insert("max-size".to_string(), cache.0.clone());
    local.insert("max-file".to_string(), MAX_FILES.to_string());
    local.insert("compress".to_string(), "false".to_string());
    ("local".to_string(), local)
}

/// Go's `strconv.ParseBool`, which Docker uses for boolean options.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// An `awslogs-datetime-format` (strftime directives) as the regex that recognises a line
/// starting with such a time. Directives as Docker's driver documents them; other text
/// matches itself.
fn datetime_regex(format: &str) -> Result<Regex, String> {
    let mut out = String::from("^");
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push_str(&regex::escape(&c.to_string()));
            continue;
        }
        let Some(d) = chars.next() else {
            return Err(format!("awslogs-datetime-format '{format}' ends with a lone '%'"));
        };
        out.push_str(match d {
            'a' => "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)",
            'A' => "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)",
            'b' => "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)",
            'B' => "(?:January|February|March|April|May|June|July|August|September|October|November|December)",
            'd' | 'H' | 'I' | 'm' | 'M' | 'S' | 'y' => r"\d{2}",
            'e' => r"[ \d]\d",
            'f' => r"\d{6}",
            'j' => r"\d{3}",
            'L' => r"\.\d{3}",
            'p' => "[AP]M",
            'Y' => r"\d{4}",
            'z' => r"[+-]\d{4}",
            'Z' => "[A-Z]{1,4}T",
            'T' => r"\d{2}:\d{2}:\d{2}",
            'F' => r"\d{4}-\d{2}-\d{2}",
            '%' => "%",
            other => return Err(format!("awslogs-datetime-format: unknown directive '%{other}'")),
        });
    }
    Regex::new(&out).map_err(|e| format!("awslogs-datetime-format '{format}': {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_consoles_options_parse_and_name_the_stream_as_ecs_does() {
        let o = opts(&[
            ("awslogs-group", "/ecs/web"),
            ("awslogs-region", "us-east-1"),
            ("awslogs-stream-prefix", "ecs"),
            ("awslogs-create-group", "true"),
        ]);
        let a = AwsLogs::parse(&o).unwrap();
        assert!(a.create_group);
        assert_eq!(a.region.as_deref(), Some("us-east-1"));
        assert_eq!(a.stream_name("web", "0123abcd", "f00d"), "ecs/web/0123abcd");
        let bare = AwsLogs::parse(&opts(&[("awslogs-group", "g")])).unwrap();
        assert_eq!(bare.stream_name("web", "0123abcd", "f00d"), "f00d");
        let fixed = AwsLogs::parse(&opts(&[("awslogs-group", "g"), ("awslogs-stream", "s")])).unwrap();
        assert_eq!(fixed.stream_name("web", "t", "c"), "s");
    }

    #[test]
    fn docker_refusals_are_kept() {
        let unknown = AwsLogs::parse(&opts(&[("awslogs-group", "g"), ("awslogs-color", "red")])).unwrap_err();
        assert_eq!(unknown, "unknown log opt 'awslogs-color' for awslogs log driver");
        assert!(AwsLogs::parse(&opts(&[])).unwrap_err().contains("'awslogs-group'"));
        let both =
            opts(&[("awslogs-group", "g"), ("awslogs-datetime-format", "%Y"), ("awslogs-multiline-pattern", "x")]);
        assert!(AwsLogs::parse(&both).unwrap_err().contains("at the same time"));
        assert!(AwsLogs::parse(&opts(&[("awslogs-group", "g"), ("awslogs-create-group", "yes")])).is_err());
        assert!(AwsLogs::parse(&opts(&[("awslogs-group", "g"), ("awslogs-multiline-pattern", "(")])).is_err());
    }

    #[test]
    fn datetime_formats_match_the_start_of_a_line_only() {
        let a =
            AwsLogs::parse(&opts(&[("awslogs-group", "g"), ("awslogs-datetime-format", "%Y-%m-%d %H:%M:%S")])).unwrap();
        let re = a.event_start.unwrap();
        assert!(re.is_match("2026-12-06 17:05:42 ERROR boom"));
        assert!(!re.is_match("    at Foo.bar(Foo.java:12)"));
        assert!(!re.is_match("x 2026-12-06 17:05:42"));
        let b = AwsLogs::parse(&opts(&[("awslogs-group", "g"), ("awslogs-datetime-format", "[%b %d, %Y %H:%M:%S]")]))
            .unwrap();
        assert!(b.event_start.unwrap().is_match("[May 01, 2017 19:00:01] A message"));
    }

    #[test]
    fn awslogs_becomes_a_bounded_uncompressed_local_cache_keeping_the_delivery_mode() {
        let o = opts(&[("awslogs-group", "g"), ("mode", "non-blocking"), ("max-buffer-size", "4m")]);
        let (driver, local) = local_driver("awslogs", &o, &CacheFileSize::default());
        assert_eq!(driver, "local");
        assert_eq!(local.get("mode").map(String::as_str), Some("non-blocking"));
        assert_eq!(local.get("max-buffer-size").map(String::as_str), Some("4m"));
        assert_eq!(local.get("max-size").map(String::as_str), Some("1g"));
        assert_eq!(local.get("compress").map(String::as_str), Some("false"));
        assert!(!local.contains_key("awslogs-group"));
        let (other, same) = local_driver("syslog", &o, &CacheFileSize::default());
        assert_eq!((other.as_str(), same), ("syslog", o));
    }
}
