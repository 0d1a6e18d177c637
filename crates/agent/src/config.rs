//! The agent's settings, read as the ECS agent reads them: from the environment and from
//! an env file (`/etc/ecs/ecs.config` by default), the environment winning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::runner::PullBehavior;

/// The ECS agent settings Berth understands; others are reported at start.
const KNOWN: &[&str] = &[
    "ECS_CLUSTER",
    "ECS_BACKEND_HOST",
    "ECS_RESERVED_MEMORY",
    "ECS_RESERVED_PORTS",
    "ECS_RESERVED_PORTS_UDP",
    "ECS_DYNAMIC_HOST_PORT_RANGE",
    "ECS_IMAGE_PULL_BEHAVIOR",
    "ECS_CONTAINER_STOP_TIMEOUT",
    "ECS_CONTAINER_START_TIMEOUT",
    "ECS_INSTANCE_ATTRIBUTES",
    "ECS_DATADIR",
    "ECS_LOGLEVEL",
    "ECS_INSTANCE_IAM_ROLE",
];

/// Everything the agent needs to know to run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub cluster: String,
    /// Berth's endpoint, e.g. `http://127.0.0.1:7447`.
    pub backend: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// `ECS_INSTANCE_IAM_ROLE`: the ARN of a role the agent assumes with its keys and then
    /// acts as, as an ECS agent on EC2 acts as its instance profile's role. Berth's own
    /// setting: an EC2 host gets it from the instance metadata, which Berth has no part of.
    pub instance_role: Option<String>,
    pub region: String,
    pub reserved_memory_mib: i64,
    pub reserved_ports_tcp: Vec<u16>,
    pub reserved_ports_udp: Vec<u16>,
    pub dynamic_port_range: Option<(u16, u16)>,
    pub pull_behavior: PullBehavior,
    pub stop_timeout: Duration,
    pub start_timeout: Duration,
    pub instance_attributes: BTreeMap<String, String>,
    /// Where the agent keeps its state (the ARN of its container instance).
    pub data_dir: PathBuf,
    pub availability_zone: String,
    pub instance_type: String,
    /// The EC2-style instance id this host reports; generated once and kept in `data_dir`.
    pub instance_id: Option<String>,
    /// `BERTH_AWSLOGS_CACHE_FILE_SIZE`: each of the two files of Docker's `local` log an
    /// awslogs container writes, which the agent ships from (1g).
    pub awslogs_cache: crate::awslogs::CacheFileSize,
    /// `BERTH_AWSLOGS_READER`: `file` (the log file on disk when it can be opened, the
    /// default) or `api` (always Docker's logs API).
    pub awslogs_reader: crate::awslogs::Reader,
    /// Settings that were given but are not understood, for a warning at start.
    pub unknown: Vec<String>,
}

/// A secret access key: its `Debug` form hides it, so that logging a configuration never
/// logs the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::ops::Deref for Secret {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Parses `KEY=VALUE` lines; blank lines and `#` comments are skipped.
pub fn parse_env_file(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            bail!("line {}: expected KEY=VALUE, found '{line}'", n + 1);
        };
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
        out.insert(k.trim().to_string(), v.to_string());
    }
    Ok(out)
}

/// Parses the ECS agent's duration format: `30s`, `2m`, `1h30m`, `500ms`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        bail!("empty duration");
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let (num, tail) = rest.split_at(digits);
        let value: f64 = num.parse().with_context(|| format!("'{s}' is not a duration such as 30s or 2m"))?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let secs = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => bail!("'{s}' has unit '{unit}'; use ms, s, m or h"),
        };
        total += Duration::from_secs_f64(secs);
        rest = next;
    }
    Ok(total)
}

fn parse_ports(key: &str, v: &str) -> anyhow::Result<Vec<u16>> {
    serde_json::from_str::<Vec<u16>>(v)
        .with_context(|| format!("{key} must be a JSON list of ports such as [22, 2375]; got '{v}'"))
}

impl AgentConfig {
    /// Reads settings from `vars` (the environment, which wins) and the env file.
    pub fn load(vars: &BTreeMap<String, String>, file: Option<&Path>) -> anyhow::Result<AgentConfig> {
        let mut all = BTreeMap::new();
        if let Some(path) = file {
            if path.exists() {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                all = parse_env_file(&text).with_context(|| format!("in {}", path.display()))?;
            }
        }
        all.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        let get = |k: &str| all.get(k).map(String::as_str).filter(|v| !v.is_empty());
        // After `eval "$(berth env)"` the endpoint is in AWS_ENDPOINT_URL, so that
        // `ECS_CLUSTER=demo berth agent` needs nothing else; ECS_BACKEND_HOST wins.
        let backend = get("ECS_BACKEND_HOST")
            .or(get("AWS_ENDPOINT_URL"))
            .context("ECS_BACKEND_HOST is not set: set it to Berth's endpoint, e.g. http://127.0.0.1:7447 (`berth env` prints it as AWS_ENDPOINT_URL, which is used when ECS_BACKEND_HOST is not set)")?
            .trim_end_matches('/')
            .to_string();
        let access_key_id =
            get("AWS_ACCESS_KEY_ID").context("AWS_ACCESS_KEY_ID is not set (`berth env` prints it)")?.to_string();
        let secret_access_key = Secret(
            get("AWS_SECRET_ACCESS_KEY")
                .context("AWS_SECRET_ACCESS_KEY is not set (`berth env` prints it)")?
                .to_string(),
        );
        let region = get("AWS_REGION").or(get("AWS_DEFAULT_REGION")).unwrap_or("us-east-1").to_string();
        let instance_role = match get("ECS_INSTANCE_IAM_ROLE") {
            None => None,
            Some(arn) if arn.starts_with("arn:") && arn.contains(":role/") => Some(arn.to_string()),
            Some(other) => {
                bail!("ECS_INSTANCE_IAM_ROLE must be a role's ARN, e.g. arn:aws:iam::123456789012:role/ecsInstanceRole; got '{other}'")
            }
        };
        let reserved_memory_mib = match get("ECS_RESERVED_MEMORY") {
            None => 0,
            Some(v) => v.parse().with_context(|| format!("ECS_RESERVED_MEMORY must be a number of MiB; got '{v}'"))?,
        };
        let reserved_ports_tcp = match get("ECS_RESERVED_PORTS") {
            None => vec![22, 2375, 2376, 51678, 51679],
            Some(v) => parse_ports("ECS_RESERVED_PORTS", v)?,
        };
        let reserved_ports_udp = get("ECS_RESERVED_PORTS_UDP")
            .map(|v| parse_ports("ECS_RESERVED_PORTS_UDP", v))
            .transpose()?
            .unwrap_or_default();
        let dynamic_port_range = match get("ECS_DYNAMIC_HOST_PORT_RANGE") {
            None => None,
            Some(v) => {
                let (a, b) = v
                    .split_once('-')
                    .with_context(|| format!("ECS_DYNAMIC_HOST_PORT_RANGE must look like 32768-60999; got '{v}'"))?;
                let (a, b): (u16, u16) = (a.trim().parse()?, b.trim().parse()?);
                if a >= b {
                    bail!("ECS_DYNAMIC_HOST_PORT_RANGE: the first port must be below the last; got '{v}'");
                }
                Some((a, b))
            }
        };
        let pull_behavior = match get("ECS_IMAGE_PULL_BEHAVIOR").unwrap_or("default") {
            "default" => PullBehavior::Default,
            "always" => PullBehavior::Always,
            "once" => PullBehavior::Once,
            "prefer-cached" => PullBehavior::PreferCached,
            other => bail!("ECS_IMAGE_PULL_BEHAVIOR must be default, always, once or prefer-cached; got '{other}'"),
        };
        let stop_timeout = get("ECS_CONTAINER_STOP_TIMEOUT")
            .map(parse_duration)
            .transpose()
            .context("ECS_CONTAINER_STOP_TIMEOUT")?
            .unwrap_or(Duration::from_secs(30));
        let start_timeout = get("ECS_CONTAINER_START_TIMEOUT")
            .map(parse_duration)
            .transpose()
            .context("ECS_CONTAINER_START_TIMEOUT")?
            .unwrap_or(Duration::from_secs(180));
        let instance_attributes = match get("ECS_INSTANCE_ATTRIBUTES") {
            None => BTreeMap::new(),
            Some(v) => serde_json::from_str(v)
                .with_context(|| format!("ECS_INSTANCE_ATTRIBUTES must be a JSON object of strings such as {{\"stack\": \"prod\"}}; got '{v}'"))?,
        };
        let unknown = all.keys().filter(|k| k.starts_with("ECS_") && !KNOWN.contains(&k.as_str())).cloned().collect();
        // BERTH_CAPACITY=FARGATE: this host is Fargate capacity of the account rather than
        // a container instance of a cluster (see control-plane's `ecs::fargate`).
        let cluster = match get("BERTH_CAPACITY") {
            None | Some("EC2") => get("ECS_CLUSTER").unwrap_or("default").to_string(),
            Some("FARGATE") => model::ids::ClusterName::FARGATE_POOL.to_string(),
            Some(other) => {
                bail!("BERTH_CAPACITY must be EC2 (a container instance of ECS_CLUSTER) or FARGATE; got '{other}'")
            }
        };
        let awslogs_cache = match get("BERTH_AWSLOGS_CACHE_FILE_SIZE") {
            None => crate::awslogs::CacheFileSize::default(),
            Some(v) => crate::awslogs::CacheFileSize::parse(v)
                .map_err(|e| anyhow::anyhow!("BERTH_AWSLOGS_CACHE_FILE_SIZE must be {e}"))?,
        };
        let awslogs_reader = match get("BERTH_AWSLOGS_READER") {
            None => crate::awslogs::Reader::default(),
            Some(v) => crate::awslogs::Reader::parse(v)
                .with_context(|| format!("BERTH_AWSLOGS_READER must be file or api; got '{v}'"))?,
        };
        Ok(AgentConfig {
            cluster,
            awslogs_cache,
            awslogs_reader,
            backend,
            access_key_id,
            secret_access_key,
            instance_role,
            availability_zone: get("BERTH_AVAILABILITY_ZONE")
                .map(str::to_string)
                .unwrap_or_else(|| format!("{region}a")),
            region,
            reserved_memory_mib,
            reserved_ports_tcp,
            reserved_ports_udp,
            dynamic_port_range,
            pull_behavior,
            stop_timeout,
            start_timeout,
            instance_attributes,
            data_dir: get("ECS_DATADIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/lib/ecs/data")),
            instance_type: get("BERTH_INSTANCE_TYPE").unwrap_or("berth.host").to_string(),
            instance_id: get("BERTH_INSTANCE_ID").map(str::to_string),
            unknown,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const BASE: &[(&str, &str)] =
        &[("ECS_BACKEND_HOST", "http://127.0.0.1:1"), ("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "S")];

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ecs.config");
        std::fs::write(&path, "# comment\nECS_CLUSTER=demo\nECS_RESERVED_MEMORY=256\nECS_FOO=1\n").unwrap();
        let mut v = vars(BASE);
        v.insert("ECS_RESERVED_MEMORY".into(), "512".into());
        let c = AgentConfig::load(&v, Some(&path)).unwrap();
        assert_eq!(c.cluster, "demo");
        assert_eq!(c.reserved_memory_mib, 512, "the environment wins over the file");
        assert_eq!(c.unknown, vec!["ECS_FOO".to_string()]);
        assert_eq!(c.reserved_ports_tcp, vec![22, 2375, 2376, 51678, 51679]);
        assert_eq!(c.awslogs_cache, crate::awslogs::CacheFileSize::default());
        assert_eq!(c.awslogs_reader, crate::awslogs::Reader::File);
        v.insert("BERTH_AWSLOGS_CACHE_FILE_SIZE".into(), "64k".into());
        v.insert("BERTH_AWSLOGS_READER".into(), "api".into());
        let c = AgentConfig::load(&v, Some(&path)).unwrap();
        assert_eq!(c.awslogs_cache, crate::awslogs::CacheFileSize::parse("64k").unwrap());
        assert_eq!(c.awslogs_reader, crate::awslogs::Reader::Api);
    }

    #[test]
    fn malformed_settings_are_named() {
        for (k, v) in [
            ("ECS_RESERVED_PORTS", "22,80"),
            ("ECS_IMAGE_PULL_BEHAVIOR", "sometimes"),
            ("ECS_CONTAINER_STOP_TIMEOUT", "soon"),
            ("ECS_DYNAMIC_HOST_PORT_RANGE", "9000-8000"),
            ("ECS_INSTANCE_ATTRIBUTES", "[1]"),
            ("BERTH_AWSLOGS_CACHE_FILE_SIZE", "0"),
            ("BERTH_AWSLOGS_CACHE_FILE_SIZE", "1t"),
            ("BERTH_AWSLOGS_READER", "pipe"),
        ] {
            let mut all = vars(BASE);
            all.insert(k.into(), v.into());
            let err = format!("{:#}", AgentConfig::load(&all, None).unwrap_err());
            assert!(err.contains(k), "{k}: {err}");
        }
        let err = format!("{:#}", AgentConfig::load(&vars(&[]), None).unwrap_err());
        assert!(err.contains("ECS_BACKEND_HOST"), "{err}");
    }
}
