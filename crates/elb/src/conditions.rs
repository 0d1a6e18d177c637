//! Rule conditions: what a request must look like for a rule's actions to apply, ALB's
//! limits on them, and how they match a request.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::ElbError;
use crate::glob::Glob;

/// Match evaluations (condition values) one rule may hold, in all its conditions.
pub const MAX_VALUES_PER_RULE: usize = 5;
/// Wildcards one rule may hold, in all its conditions.
pub const MAX_WILDCARDS_PER_RULE: usize = 5;
const MAX_VALUE_LEN: usize = 128;

/// A condition as a request gives it, before validation: the legacy `Field` + `Values`
/// form and the `*Config` form both arrive here.
#[derive(Debug, Clone, Default)]
pub struct ConditionInput {
    pub field: Option<String>,
    /// The legacy `Values` member.
    pub values: Option<Vec<String>>,
    /// `Values` of the field's `*Config` (host-header, path-pattern, http-header,
    /// http-request-method, source-ip).
    pub config_values: Option<Vec<String>>,
    pub header_name: Option<String>,
    /// `QueryStringConfig.Values`: optional key, value.
    pub query: Option<Vec<(Option<String>, Option<String>)>>,
}

/// One valid condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "field", rename_all = "kebab-case")]
pub enum Condition {
    HostHeader { values: Vec<String> },
    PathPattern { values: Vec<String> },
    HttpHeader { name: String, values: Vec<String> },
    HttpRequestMethod { values: Vec<String> },
    QueryString { values: Vec<(Option<String>, String)> },
    SourceIp { values: Vec<String> },
}

impl Condition {
    pub fn field(&self) -> &'static str {
        match self {
            Condition::HostHeader { .. } => "host-header",
            Condition::PathPattern { .. } => "path-pattern",
            Condition::HttpHeader { .. } => "http-header",
            Condition::HttpRequestMethod { .. } => "http-request-method",
            Condition::QueryString { .. } => "query-string",
            Condition::SourceIp { .. } => "source-ip",
        }
    }

    fn value_count(&self) -> usize {
        match self {
            Condition::HostHeader { values }
            | Condition::PathPattern { values }
            | Condition::HttpHeader { values, .. }
            | Condition::HttpRequestMethod { values }
            | Condition::SourceIp { values } => values.len(),
            Condition::QueryString { values } => values.len(),
        }
    }

    fn wildcard_count(&self) -> usize {
        let count = |s: &str| s.chars().filter(|c| *c == '*' || *c == '?').count();
        match self {
            Condition::HostHeader { values }
            | Condition::PathPattern { values }
            | Condition::HttpHeader { values, .. } => values.iter().map(|v| count(v)).sum(),
            Condition::QueryString { values } => {
                values.iter().map(|(k, v)| k.as_deref().map_or(0, count) + count(v)).sum()
            }
            Condition::HttpRequestMethod { .. } | Condition::SourceIp { .. } => 0,
        }
    }

    /// Validates one condition as ALB does.
    pub fn parse(input: ConditionInput) -> Result<Condition, ElbError> {
        let field = input.field.ok_or_else(|| ElbError::validation("A condition must name its Field."))?;
        let values = |allow_legacy: bool| -> Result<Vec<String>, ElbError> {
            match (input.values.clone().filter(|v| !v.is_empty()), input.config_values.clone()) {
                (Some(_), Some(_)) => Err(ElbError::validation(format!(
                    "A {field} condition takes Values or its configuration's Values, not both."
                ))),
                (Some(v), None) if allow_legacy => Ok(v),
                (Some(_), None) => Err(ElbError::validation(format!(
                    "A {field} condition takes its values in its configuration, not in Values."
                ))),
                (None, Some(v)) => Ok(v),
                (None, None) => Ok(Vec::new()),
            }
        };
        let condition = match field.as_str() {
            "host-header" => {
                let values = values(true)?;
                for v in &values {
                    check_len(&field, v)?;
                    if !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.*?".contains(&b)) {
                        return Err(ElbError::validation(format!(
                            "The host-header value '{v}' may contain only letters, digits and - . * ?"
                        )));
                    }
                }
                Condition::HostHeader { values }
            }
            "path-pattern" => {
                let values = values(true)?;
                for v in &values {
                    check_len(&field, v)?;
                    if !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.$/~\"'@:+&*?".contains(&b)) {
                        return Err(ElbError::validation(format!(
                            "The path-pattern value '{v}' may contain only letters, digits and _ - . $ / ~ \" ' @ : + & * ?"
                        )));
                    }
                }
                Condition::PathPattern { values }
            }
            "http-header" => {
                let values = values(false)?;
                let name = input
                    .header_name
                    .clone()
                    .ok_or_else(|| ElbError::validation("An http-header condition needs HttpHeaderConfig.HttpHeaderName."))?;
                if name.is_empty() || name.len() > 40 || !name.bytes().all(is_token_byte) {
                    return Err(ElbError::validation(format!(
                        "'{name}' is not a valid header name: 1 to 40 letters, digits and !#$%&'*+-.^_`|~"
                    )));
                }
                for v in &values {
                    check_len(&field, v)?;
                }
                Condition::HttpHeader { name, values }
            }
            "http-request-method" => {
                let values = values(false)?;
                for v in &values {
                    if v.is_empty() || v.len() > 40 || !v.bytes().all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_') {
                        return Err(ElbError::validation(format!(
                            "'{v}' is not a valid request method: 1 to 40 upper-case letters, - and _"
                        )));
                    }
                }
                Condition::HttpRequestMethod { values }
            }
            "query-string" => {
                if input.values.as_ref().is_some_and(|v| !v.is_empty()) {
                    return Err(ElbError::validation("A query-string condition takes its values in QueryStringConfig."));
                }
                let mut pairs = Vec::new();
                for (k, v) in input.query.clone().unwrap_or_default() {
                    let v = v.ok_or_else(|| ElbError::validation("Every query-string condition value needs a Value."))?;
                    if let Some(k) = &k {
                        check_len(&field, k)?;
                    }
                    check_len(&field, &v)?;
                    pairs.push((k, v));
                }
                Condition::QueryString { values: pairs }
            }
            "source-ip" => {
                let values = values(false)?;
                for v in &values {
                    Cidr::parse(v)?;
                }
                Condition::SourceIp { values }
            }
            other => {
                return Err(ElbError::validation(format!(
                    "'{other}' is not a condition field: use host-header, path-pattern, http-header, http-request-method, query-string or source-ip."
                )))
            }
        };
        if condition.value_count() == 0 {
            return Err(ElbError::validation(format!("A {} condition needs at least one value.", condition.field())));
        }
        Ok(condition)
    }

    /// Whether `request` satisfies this condition (any of its values matches).
    pub fn matches(&self, request: &impl Request) -> bool {
        match self {
            Condition::HostHeader { values } => {
                let host = strip_port(request.host());
                values.iter().any(|p| Glob::new(p, true).matches(host))
            }
            Condition::PathPattern { values } => values.iter().any(|p| Glob::new(p, false).matches(request.path())),
            Condition::HttpHeader { name, values } => {
                let present = request.header_values(name);
                values.iter().any(|p| {
                    let g = Glob::new(p, true);
                    present.iter().any(|v| g.matches(v))
                })
            }
            Condition::HttpRequestMethod { values } => values.iter().any(|m| m == request.method()),
            Condition::QueryString { values } => values.iter().any(|(k, v)| {
                let (kg, vg) = (k.as_deref().map(|k| Glob::new(k, true)), Glob::new(v, true));
                request.query().iter().any(|(qk, qv)| kg.as_ref().is_none_or(|g| g.matches(qk)) && vg.matches(qv))
            }),
            Condition::SourceIp { values } => {
                values.iter().filter_map(|c| Cidr::parse(c).ok()).any(|c| c.contains(request.source_ip()))
            }
        }
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map(|h| h.trim_start_matches('[')).unwrap_or(host);
    }
    host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_len(field: &str, v: &str) -> Result<(), ElbError> {
    if v.is_empty() || v.chars().count() > MAX_VALUE_LEN {
        return Err(ElbError::validation(format!("Each {field} value must be 1 to {MAX_VALUE_LEN} characters long.")));
    }
    Ok(())
}

/// Checks the conditions of one rule together: each of host-header, path-pattern,
/// http-request-method and source-ip at most once, and ALB's limits on values and
/// wildcards per rule.
pub fn check_rule_conditions(conditions: &[Condition]) -> Result<(), ElbError> {
    for single in ["host-header", "path-pattern", "http-request-method", "source-ip"] {
        if conditions.iter().filter(|c| c.field() == single).count() > 1 {
            return Err(ElbError::validation(format!("A rule can have at most one '{single}' condition.")));
        }
    }
    let values: usize = conditions.iter().map(Condition::value_count).sum();
    if values > MAX_VALUES_PER_RULE {
        return Err(ElbError::validation(format!(
            "A rule can have at most {MAX_VALUES_PER_RULE} condition values in all; this one has {values}."
        )));
    }
    let wildcards: usize = conditions.iter().map(Condition::wildcard_count).sum();
    if wildcards > MAX_WILDCARDS_PER_RULE {
        return Err(ElbError::validation(format!(
            "A rule can have at most {MAX_WILDCARDS_PER_RULE} wildcards in its conditions; this one has {wildcards}."
        )));
    }
    Ok(())
}

/// What a condition can ask about a request.
pub trait Request {
    /// The `Host` header (a port may follow).
    fn host(&self) -> &str;
    /// The path without the query string, as sent (not decoded).
    fn path(&self) -> &str;
    fn method(&self) -> &str;
    /// Decoded query parameters in order.
    fn query(&self) -> &[(String, String)];
    fn header_values(&self, name: &str) -> Vec<&str>;
    fn source_ip(&self) -> IpAddr;
}

/// An IPv4 or IPv6 address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, ElbError> {
        let bad = || ElbError::validation(format!("'{s}' is not a CIDR block such as 192.0.2.0/24 or 2001:db8::/32."));
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Req {
        host: &'static str,
        path: &'static str,
        method: &'static str,
        query: Vec<(String, String)>,
        headers: Vec<(&'static str, &'static str)>,
        ip: IpAddr,
    }

    impl Request for Req {
        fn host(&self) -> &str {
            self.host
        }
        fn path(&self) -> &str {
            self.path
        }
        fn method(&self) -> &str {
            self.method
        }
        fn query(&self) -> &[(String, String)] {
            &self.query
        }
        fn header_values(&self, name: &str) -> Vec<&str> {
            self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v).collect()
        }
        fn source_ip(&self) -> IpAddr {
            self.ip
        }
    }

    fn req() -> Req {
        Req {
            host: "Api.Example.com:8080",
            path: "/img/cat.png",
            method: "GET",
            query: vec![("version".into(), "v2".into())],
            headers: vec![("User-Agent", "Mobile Safari")],
            ip: "10.1.2.3".parse().unwrap(),
        }
    }

    fn cond(field: &str, values: &[&str]) -> Condition {
        Condition::parse(ConditionInput {
            field: Some(field.into()),
            config_values: Some(values.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn matching() {
        let r = req();
        assert!(cond("host-header", &["*.example.com"]).matches(&r));
        assert!(!cond("host-header", &["example.com"]).matches(&r));
        assert!(cond("path-pattern", &["/img/*"]).matches(&r));
        assert!(!cond("path-pattern", &["/IMG/*"]).matches(&r));
        assert!(cond("http-request-method", &["POST", "GET"]).matches(&r));
        assert!(cond("source-ip", &["10.0.0.0/8"]).matches(&r));
        assert!(!cond("source-ip", &["192.168.0.0/16"]).matches(&r));
        let h = Condition::parse(ConditionInput {
            field: Some("http-header".into()),
            header_name: Some("user-agent".into()),
            config_values: Some(vec!["*mobile*".into()]),
            ..Default::default()
        })
        .unwrap();
        assert!(h.matches(&r));
        let q = Condition::parse(ConditionInput {
            field: Some("query-string".into()),
            query: Some(vec![(Some("version".into()), Some("V?".into()))]),
            ..Default::default()
        })
        .unwrap();
        assert!(q.matches(&r));
    }

    #[test]
    fn refusals() {
        let parse = |field: &str, values: &[&str]| {
            Condition::parse(ConditionInput {
                field: Some(field.into()),
                config_values: Some(values.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            })
        };
        assert!(parse("host-header", &["bad host"]).is_err());
        assert!(parse("path-pattern", &[&format!("/{}", "a".repeat(128))]).is_err());
        assert!(parse("path-pattern", &[]).is_err());
        assert!(parse("http-request-method", &["get"]).is_err());
        assert!(parse("source-ip", &["10.0.0.0/33"]).is_err());
        assert!(parse("cookie", &["x"]).is_err());
        let many = [cond("path-pattern", &["/a", "/b", "/c"]), cond("host-header", &["a", "b", "c"])];
        assert!(check_rule_conditions(&many).is_err());
        let twice = [cond("path-pattern", &["/a"]), cond("path-pattern", &["/b"])];
        assert!(check_rule_conditions(&twice).is_err());
        let stars = [cond("path-pattern", &["/*/*/*"]), cond("host-header", &["*.*.*"])];
        assert!(check_rule_conditions(&stars).is_err());
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains("2001:db8::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("::ffff:1.2.3.4".parse().unwrap()));
        assert!(Cidr::parse("x/1").is_err());
    }
}
