//! Load balancer and target group attributes: the keys an Application Load Balancer
//! knows, their defaults, and the values each accepts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ElbError;

#[derive(Debug, Clone, Copy)]
enum Check {
    Bool,
    Range(u64, u64),
    OneOf(&'static [&'static str]),
    Text,
    /// 0 (off) or 30..=900 seconds.
    SlowStart,
    /// `off` or 1..=100.
    Percentage,
}

type Spec = &'static [(&'static str, &'static str, Check)];

const LB_SPEC: Spec = &[
    ("access_logs.s3.enabled", "false", Check::Bool),
    ("access_logs.s3.bucket", "", Check::Text),
    ("access_logs.s3.prefix", "", Check::Text),
    ("client_keep_alive.seconds", "3600", Check::Range(60, 604_800)),
    ("connection_logs.s3.enabled", "false", Check::Bool),
    ("connection_logs.s3.bucket", "", Check::Text),
    ("connection_logs.s3.prefix", "", Check::Text),
    ("deletion_protection.enabled", "false", Check::Bool),
    ("idle_timeout.timeout_seconds", "60", Check::Range(1, 4000)),
    ("load_balancing.cross_zone.enabled", "true", Check::Bool),
    ("routing.http.desync_mitigation_mode", "defensive", Check::OneOf(&["monitor", "defensive", "strictest"])),
    ("routing.http.drop_invalid_header_fields.enabled", "false", Check::Bool),
    ("routing.http.preserve_host_header.enabled", "false", Check::Bool),
    ("routing.http.x_amzn_tls_version_and_cipher_suite.enabled", "false", Check::Bool),
    ("routing.http.xff_client_port.enabled", "false", Check::Bool),
    ("routing.http.xff_header_processing.mode", "append", Check::OneOf(&["append", "preserve", "remove"])),
    ("routing.http2.enabled", "true", Check::Bool),
    ("waf.fail_open.enabled", "false", Check::Bool),
    ("zonal_shift.config.enabled", "false", Check::Bool),
];

const TG_SPEC: Spec = &[
    ("deregistration_delay.timeout_seconds", "300", Check::Range(0, 3600)),
    ("stickiness.enabled", "false", Check::Bool),
    ("stickiness.type", "lb_cookie", Check::OneOf(&["lb_cookie", "app_cookie"])),
    ("stickiness.lb_cookie.duration_seconds", "86400", Check::Range(1, 604_800)),
    ("stickiness.app_cookie.cookie_name", "", Check::Text),
    ("stickiness.app_cookie.duration_seconds", "86400", Check::Range(1, 604_800)),
    ("slow_start.duration_seconds", "0", Check::SlowStart),
    (
        "load_balancing.algorithm.type",
        "round_robin",
        Check::OneOf(&["round_robin", "least_outstanding_requests", "weighted_random"]),
    ),
    ("load_balancing.algorithm.anomaly_mitigation", "off", Check::OneOf(&["on", "off"])),
    (
        "load_balancing.cross_zone.enabled",
        "use_load_balancer_configuration",
        Check::OneOf(&["true", "false", "use_load_balancer_configuration"]),
    ),
    ("target_group_health.dns_failover.minimum_healthy_targets.count", "1", Check::Range(1, 10_000)),
    ("target_group_health.dns_failover.minimum_healthy_targets.percentage", "off", Check::Percentage),
    ("target_group_health.unhealthy_state_routing.minimum_healthy_targets.count", "1", Check::Range(1, 10_000)),
    ("target_group_health.unhealthy_state_routing.minimum_healthy_targets.percentage", "off", Check::Percentage),
];

fn check(kind: &str, key: &str, value: &str, c: Check) -> Result<(), ElbError> {
    let bad =
        |what: &str| ElbError::config(format!("The value '{value}' of {kind} attribute '{key}' is not valid: {what}."));
    match c {
        Check::Bool => match value {
            "true" | "false" => Ok(()),
            _ => Err(bad("use true or false")),
        },
        Check::Range(lo, hi) => match value.parse::<u64>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(()),
            _ => Err(bad(&format!("use a whole number from {lo} to {hi}"))),
        },
        Check::OneOf(values) if values.contains(&value) => Ok(()),
        Check::OneOf(values) => Err(bad(&format!("use one of {}", values.join(", ")))),
        Check::Text if value.len() <= 1024 => Ok(()),
        Check::Text => Err(bad("at most 1024 characters")),
        Check::SlowStart => match value.parse::<u64>() {
            Ok(0) | Ok(30..=900) => Ok(()),
            _ => Err(bad("use 0 to turn slow start off, or 30 to 900 seconds")),
        },
        Check::Percentage => match value {
            "off" => Ok(()),
            v if v.parse::<u8>().is_ok_and(|n| (1..=100).contains(&n)) => Ok(()),
            _ => Err(bad("use off or a percentage from 1 to 100")),
        },
    }
}

/// A complete, valid attribute set: every key of its kind, with defaults for the keys
/// never set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes(BTreeMap<String, String>);

impl Attributes {
    fn defaults(spec: Spec) -> Self {
        Attributes(spec.iter().map(|(k, v, _)| (k.to_string(), v.to_string())).collect())
    }

    /// Applies `changes` (all or nothing), refusing unknown keys and invalid values.
    fn modify(&mut self, kind: &str, spec: Spec, changes: &[(String, String)]) -> Result<(), ElbError> {
        let mut next = self.0.clone();
        for (k, v) in changes {
            let Some((_, _, c)) = spec.iter().find(|(key, _, _)| key == k) else {
                return Err(ElbError::validation(format!(
                    "'{k}' is not a {kind} attribute of an Application Load Balancer."
                )));
            };
            check(kind, k, v, *c)?;
            next.insert(k.clone(), v.clone());
        }
        self.0 = next;
        Ok(())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn get(&self, spec: Spec, key: &str) -> &str {
        match self.0.get(key) {
            Some(v) => v,
            // A set stored by an older Berth lacks keys added since: their default holds.
            None => spec.iter().find(|(k, _, _)| *k == key).map(|(_, d, _)| *d).unwrap_or(""),
        }
    }
}

/// A load balancer's attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LbAttributes(pub Attributes);

impl Default for LbAttributes {
    fn default() -> Self {
        LbAttributes(Attributes::defaults(LB_SPEC))
    }
}

/// What `X-Forwarded-For` becomes on the way to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XffMode {
    Append,
    Preserve,
    Remove,
}

impl LbAttributes {
    pub fn modify(&mut self, changes: &[(String, String)]) -> Result<(), ElbError> {
        self.0.modify("load balancer", LB_SPEC, changes)
    }
    fn get(&self, key: &str) -> &str {
        self.0.get(LB_SPEC, key)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.get("idle_timeout.timeout_seconds").parse().unwrap_or(60))
    }
    pub fn client_keep_alive(&self) -> Duration {
        Duration::from_secs(self.get("client_keep_alive.seconds").parse().unwrap_or(3600))
    }
    pub fn deletion_protection(&self) -> bool {
        self.get("deletion_protection.enabled") == "true"
    }
    pub fn drop_invalid_header_fields(&self) -> bool {
        self.get("routing.http.drop_invalid_header_fields.enabled") == "true"
    }
    pub fn xff_client_port(&self) -> bool {
        self.get("routing.http.xff_client_port.enabled") == "true"
    }
    pub fn xff_mode(&self) -> XffMode {
        match self.get("routing.http.xff_header_processing.mode") {
            "preserve" => XffMode::Preserve,
            "remove" => XffMode::Remove,
            _ => XffMode::Append,
        }
    }
}

/// A target group's attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TgAttributes(pub Attributes);

impl Default for TgAttributes {
    fn default() -> Self {
        TgAttributes(Attributes::defaults(TG_SPEC))
    }
}

/// How a target group picks a target for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    LeastOutstandingRequests,
    WeightedRandom,
}

impl TgAttributes {
    pub fn modify(&mut self, changes: &[(String, String)]) -> Result<(), ElbError> {
        let mut next = self.clone();
        next.0.modify("target group", TG_SPEC, changes)?;
        if next.stickiness_type() == "app_cookie"
            && next.stickiness_enabled()
            && next.get("stickiness.app_cookie.cookie_name").is_empty()
        {
            return Err(ElbError::config("Application-based stickiness needs stickiness.app_cookie.cookie_name."));
        }
        *self = next;
        Ok(())
    }
    fn get(&self, key: &str) -> &str {
        self.0.get(TG_SPEC, key)
    }
    pub fn deregistration_delay(&self) -> Duration {
        Duration::from_secs(self.get("deregistration_delay.timeout_seconds").parse().unwrap_or(300))
    }
    /// Zero when slow start is off.
    pub fn slow_start(&self) -> Duration {
        Duration::from_secs(self.get("slow_start.duration_seconds").parse().unwrap_or(0))
    }
    pub fn algorithm(&self) -> Algorithm {
        match self.get("load_balancing.algorithm.type") {
            "least_outstanding_requests" => Algorithm::LeastOutstandingRequests,
            "weighted_random" => Algorithm::WeightedRandom,
            _ => Algorithm::RoundRobin,
        }
    }
    pub fn stickiness_enabled(&self) -> bool {
        self.get("stickiness.enabled") == "true"
    }
    pub fn stickiness_type(&self) -> &str {
        self.get("stickiness.type")
    }
    /// The `lb_cookie` stickiness duration, when that stickiness is on.
    pub fn lb_cookie(&self) -> Option<Duration> {
        (self.stickiness_enabled() && self.stickiness_type() == "lb_cookie")
            .then(|| Duration::from_secs(self.get("stickiness.lb_cookie.duration_seconds").parse().unwrap_or(86400)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn defaults_are_albs() {
        let lb = LbAttributes::default();
        assert_eq!(lb.idle_timeout(), Duration::from_secs(60));
        assert!(!lb.deletion_protection());
        let tg = TgAttributes::default();
        assert_eq!(tg.deregistration_delay(), Duration::from_secs(300));
        assert_eq!(tg.slow_start(), Duration::ZERO);
        assert_eq!(tg.algorithm(), Algorithm::RoundRobin);
        assert_eq!(tg.lb_cookie(), None);
    }

    #[test]
    fn modify_is_all_or_nothing() {
        let mut lb = LbAttributes::default();
        let err = lb.modify(&[kv("idle_timeout.timeout_seconds", "10"), kv("idle_timeout.timeout_seconds", "0")]);
        assert!(err.is_err());
        assert_eq!(lb.idle_timeout(), Duration::from_secs(60));
        lb.modify(&[kv("idle_timeout.timeout_seconds", "10")]).unwrap();
        assert_eq!(lb.idle_timeout(), Duration::from_secs(10));
        assert_eq!(lb.modify(&[kv("nope", "1")]).unwrap_err().fault, crate::Fault::Validation);
    }

    #[test]
    fn target_group_values() {
        let mut tg = TgAttributes::default();
        assert!(tg.modify(&[kv("slow_start.duration_seconds", "10")]).is_err());
        tg.modify(&[kv("slow_start.duration_seconds", "30"), kv("stickiness.enabled", "true")]).unwrap();
        assert_eq!(tg.lb_cookie(), Some(Duration::from_secs(86400)));
        assert!(tg.modify(&[kv("stickiness.type", "app_cookie")]).is_err());
        assert!(tg.modify(&[kv("load_balancing.algorithm.type", "fastest")]).is_err());
        tg.modify(&[kv("load_balancing.algorithm.type", "least_outstanding_requests")]).unwrap();
        assert_eq!(tg.algorithm(), Algorithm::LeastOutstandingRequests);
    }
}
