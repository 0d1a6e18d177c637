//! The ELBv2 resources the control plane keeps: load balancers, target groups (with their
//! registered targets and health-check settings), listeners and rules.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use model::tags::Tags;
use model::{Scope, Timestamp};

use crate::actions::Action;
use crate::attributes::{LbAttributes, TgAttributes};
use crate::conditions::Condition;
use crate::error::{enums, ElbError, Fault};
use crate::names::{self, LbName, TgName};

/// Tags one ELBv2 resource may carry.
pub const MAX_TAGS: usize = 50;

/// Whether the load balancer faces the internet or only its VPC. Berth serves both the
/// same way; the value is kept and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    InternetFacing,
    Internal,
}

impl Scheme {
    pub fn parse(s: &str) -> Result<Self, ElbError> {
        match s {
            "internet-facing" => Ok(Scheme::InternetFacing),
            "internal" => Ok(Scheme::Internal),
            other => Err(ElbError::not_in_enum("scheme", other, enums::SCHEME)),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::InternetFacing => "internet-facing",
            Scheme::Internal => "internal",
        }
    }
}

/// One of a load balancer's availability zones and the subnet it uses there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneSubnet {
    pub zone: String,
    pub subnet_id: String,
}

/// An Application Load Balancer. Its `address` is where its listeners accept
/// connections; it is also its `DNSName`, so a client reaches it with no DNS set-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadBalancer {
    pub scope: Scope,
    pub name: LbName,
    pub id: String,
    pub scheme: Scheme,
    pub vpc_id: String,
    pub zones: Vec<ZoneSubnet>,
    pub security_groups: Vec<String>,
    pub ip_address_type: String,
    pub address: Ipv4Addr,
    pub created: Timestamp,
    pub attributes: LbAttributes,
    pub tags: Tags,
}

impl LoadBalancer {
    pub fn arn(&self) -> String {
        names::load_balancer_arn(&self.scope, &self.name, &self.id)
    }
    pub fn dns_name(&self) -> String {
        self.address.to_string()
    }
}

/// What a target group's targets are named by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    /// Container instances (`i-...`), reached at their host address.
    Instance,
    /// IP addresses.
    Ip,
}

impl TargetType {
    pub fn parse(s: &str) -> Result<Self, ElbError> {
        match s {
            "instance" => Ok(TargetType::Instance),
            "ip" => Ok(TargetType::Ip),
            "lambda" | "alb" => {
                Err(ElbError::config(format!("Target type '{s}' is not supported by Berth; use instance or ip.")))
            }
            other => Err(ElbError::not_in_enum("targetType", other, enums::TARGET_TYPE)),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TargetType::Instance => "instance",
            TargetType::Ip => "ip",
        }
    }
}

/// A health check's success codes: single codes, lists and ranges of 200..=499, as in
/// `200`, `200,202` or `200-299`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Matcher(String);

impl Matcher {
    pub fn parse(s: &str) -> Result<Self, ElbError> {
        let bad = || {
            ElbError::validation(format!(
                "'{s}' is not a valid success code matcher: use codes from 200 to 499 as in 200, 200,202 or 200-299."
            ))
        };
        let code = |t: &str| t.trim().parse::<u16>().ok().filter(|c| (200..=499).contains(c));
        if s.is_empty() || s.len() > 128 {
            return Err(bad());
        }
        for part in s.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (code(a).ok_or_else(bad)?, code(b).ok_or_else(bad)?);
                    if a > b {
                        return Err(bad());
                    }
                }
                None => {
                    code(part).ok_or_else(bad)?;
                }
            }
        }
        Ok(Matcher(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn matches(&self, status: u16) -> bool {
        self.0.split(',').any(|part| match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.trim().parse().unwrap_or(0), b.trim().parse().unwrap_or(0));
                (a..=b).contains(&status)
            }
            None => part.trim().parse() == Ok(status),
        })
    }
}

impl TryFrom<String> for Matcher {
    type Error = ElbError;
    fn try_from(s: String) -> Result<Self, ElbError> {
        Matcher::parse(&s)
    }
}
impl From<Matcher> for String {
    fn from(m: Matcher) -> String {
        m.0
    }
}

/// How a target group checks its targets. `port` `None` is `traffic-port`: each target's
/// own port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub enabled: bool,
    pub protocol: String,
    pub port: Option<u16>,
    pub path: String,
    pub interval_seconds: u32,
    pub timeout_seconds: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub matcher: Matcher,
}

impl Default for HealthCheck {
    /// ALB's defaults for an HTTP target group of instances or IP addresses.
    fn default() -> Self {
        HealthCheck {
            enabled: true,
            protocol: "HTTP".into(),
            port: None,
            path: "/".into(),
            interval_seconds: 30,
            timeout_seconds: 5,
            healthy_threshold: 5,
            unhealthy_threshold: 2,
            matcher: Matcher("200".into()),
        }
    }
}

/// Health-check settings a request gives; absent members keep their current value.
#[derive(Debug, Clone, Default)]
pub struct HealthCheckInput {
    pub enabled: Option<bool>,
    pub protocol: Option<String>,
    pub port: Option<String>,
    pub path: Option<String>,
    pub interval_seconds: Option<i32>,
    pub timeout_seconds: Option<i32>,
    pub healthy_threshold: Option<i32>,
    pub unhealthy_threshold: Option<i32>,
    pub matcher: Option<String>,
}

impl HealthCheck {
    /// This check with `input` applied, checked against ALB's limits.
    pub fn with(&self, input: HealthCheckInput) -> Result<HealthCheck, ElbError> {
        let mut hc = self.clone();
        if let Some(e) = input.enabled {
            hc.enabled = e;
        }
        if let Some(p) = input.protocol {
            match p.as_str() {
                "HTTP" => hc.protocol = p,
                "HTTPS" => {
                    return Err(ElbError::new(
                        Fault::UnsupportedProtocol,
                        "HTTPS health checks are not supported by Berth yet; use HTTP.",
                    ))
                }
                other if !enums::PROTOCOL.contains(&other) => {
                    return Err(ElbError::not_in_enum("healthCheckProtocol", other, enums::PROTOCOL))
                }
                other => {
                    return Err(ElbError::validation(format!(
                        "Health check protocol '{other}' is not valid for an Application Load Balancer; use HTTP."
                    )))
                }
            }
        }
        if let Some(p) = input.port {
            hc.port = match p.as_str() {
                "traffic-port" => None,
                n => Some(n.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    ElbError::validation(format!("Health check port '{n}' is not traffic-port or 1 to 65535."))
                })?),
            };
        }
        if let Some(p) = input.path {
            if p.is_empty()
                || p.len() > 1024
                || !p.starts_with('/')
                || p.bytes().any(|b| b.is_ascii_control() || b == b' ')
            {
                return Err(ElbError::validation(format!(
                    "Health check path '{p}' must start with / and be 1 to 1024 printable characters."
                )));
            }
            hc.path = p;
        }
        let bounded = |v: Option<i32>, lo: i32, hi: i32, what: &str, current: u32| -> Result<u32, ElbError> {
            match v {
                None => Ok(current),
                Some(n) if (lo..=hi).contains(&n) => Ok(n as u32),
                Some(n) => Err(ElbError::validation(format!("{what} {n} is not between {lo} and {hi}."))),
            }
        };
        hc.interval_seconds =
            bounded(input.interval_seconds, 5, 300, "HealthCheckIntervalSeconds", hc.interval_seconds)?;
        hc.timeout_seconds = bounded(input.timeout_seconds, 2, 120, "HealthCheckTimeoutSeconds", hc.timeout_seconds)?;
        hc.healthy_threshold = bounded(input.healthy_threshold, 2, 10, "HealthyThresholdCount", hc.healthy_threshold)?;
        hc.unhealthy_threshold =
            bounded(input.unhealthy_threshold, 2, 10, "UnhealthyThresholdCount", hc.unhealthy_threshold)?;
        if let Some(m) = input.matcher {
            hc.matcher = Matcher::parse(&m)?;
        }
        if hc.timeout_seconds >= hc.interval_seconds {
            return Err(ElbError::config(format!(
                "Health check timeout {}s must be smaller than the interval {}s.",
                hc.timeout_seconds, hc.interval_seconds
            )));
        }
        Ok(hc)
    }

    /// `traffic-port` or the port number, as ELB reports it.
    pub fn port_text(&self) -> String {
        self.port.map_or_else(|| "traffic-port".into(), |p| p.to_string())
    }
}

/// A registered target: an instance id or IP address and the port traffic goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub id: String,
    pub port: u16,
    pub availability_zone: Option<String>,
}

/// A target group with its registered targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetGroup {
    pub scope: Scope,
    pub name: TgName,
    pub id: String,
    pub protocol: String,
    pub protocol_version: String,
    pub port: u16,
    pub vpc_id: String,
    pub target_type: TargetType,
    pub ip_address_type: String,
    pub health_check: HealthCheck,
    pub attributes: TgAttributes,
    pub targets: Vec<Target>,
    pub created: Timestamp,
    pub tags: Tags,
}

impl TargetGroup {
    pub fn arn(&self) -> String {
        names::target_group_arn(&self.scope, &self.name, &self.id)
    }
}

/// A listener: a port on its load balancer's address and what to do when no rule matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listener {
    pub scope: Scope,
    pub lb_name: LbName,
    pub lb_id: String,
    pub id: String,
    pub port: u16,
    pub protocol: String,
    pub default_actions: Vec<Action>,
    /// The id of the listener's default rule, which DescribeRules lists last.
    pub default_rule_id: String,
    pub tags: Tags,
    /// Tags of the default rule, which is a resource of its own for tagging.
    pub default_rule_tags: Tags,
}

impl Listener {
    pub fn arn(&self) -> String {
        names::listener_arn(&self.scope, &self.lb_name, &self.lb_id, &self.id)
    }
    pub fn lb_arn(&self) -> String {
        names::load_balancer_arn(&self.scope, &self.lb_name, &self.lb_id)
    }
    pub fn default_rule_arn(&self) -> String {
        names::rule_arn(&self.scope, &self.lb_name, &self.lb_id, &self.id, &self.default_rule_id)
    }
}

/// A rule of a listener, evaluated in priority order (lowest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub scope: Scope,
    pub lb_name: LbName,
    pub lb_id: String,
    pub listener_id: String,
    pub id: String,
    pub priority: u32,
    pub conditions: Vec<Condition>,
    pub actions: Vec<Action>,
    pub tags: Tags,
}

impl Rule {
    pub fn arn(&self) -> String {
        names::rule_arn(&self.scope, &self.lb_name, &self.lb_id, &self.listener_id, &self.id)
    }
    pub fn listener_arn(&self) -> String {
        names::listener_arn(&self.scope, &self.lb_name, &self.lb_id, &self.listener_id)
    }
}

/// Checks a rule priority: 1..=50000.
pub fn check_priority(p: i64) -> Result<u32, ElbError> {
    if (1..=50_000).contains(&p) {
        Ok(p as u32)
    } else {
        Err(ElbError::validation(format!("Priority {p} is not between 1 and 50000.")))
    }
}

/// Checks tag pairs from one request (no key twice) and merges them into `tags`.
pub fn merge_tags(tags: &mut Tags, pairs: Vec<(String, String)>) -> Result<(), ElbError> {
    let mut seen = std::collections::BTreeSet::new();
    for (k, _) in &pairs {
        if !seen.insert(k.as_str()) {
            return Err(ElbError::new(Fault::DuplicateTagKeys, format!("Tag key '{k}' is given more than once.")));
        }
    }
    let mut next = tags.clone();
    next.merge(pairs).map_err(|e| {
        let text = e.to_string();
        if text.contains("at most") {
            ElbError::new(Fault::TooManyTags, format!("A resource can have at most {MAX_TAGS} tags."))
        } else {
            ElbError::validation(text)
        }
    })?;
    *tags = next;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers() {
        let m = Matcher::parse("200,202-204").unwrap();
        assert!(m.matches(200) && m.matches(203) && !m.matches(201) && !m.matches(500));
        for bad in ["", "199", "500", "300-200", "abc", "200,"] {
            assert!(Matcher::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn health_check_limits() {
        let hc = HealthCheck::default();
        assert_eq!(
            (hc.interval_seconds, hc.timeout_seconds, hc.healthy_threshold, hc.unhealthy_threshold),
            (30, 5, 5, 2)
        );
        let e = hc.with(HealthCheckInput { timeout_seconds: Some(30), ..Default::default() }).unwrap_err();
        assert_eq!(e.fault, Fault::InvalidConfigurationRequest);
        assert!(hc.with(HealthCheckInput { interval_seconds: Some(4), ..Default::default() }).is_err());
        assert!(hc.with(HealthCheckInput { path: Some("health".into()), ..Default::default() }).is_err());
        let ok = hc
            .with(HealthCheckInput {
                port: Some("8081".into()),
                interval_seconds: Some(5),
                timeout_seconds: Some(2),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(ok.port_text(), "8081");
    }

    #[test]
    fn tags_in_one_request_are_unique() {
        let mut t = Tags::default();
        let e = merge_tags(&mut t, vec![("a".into(), "1".into()), ("a".into(), "2".into())]).unwrap_err();
        assert_eq!(e.fault, Fault::DuplicateTagKeys);
        let many = (0..51).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(merge_tags(&mut t, many).unwrap_err().fault, Fault::TooManyTags);
    }
}
