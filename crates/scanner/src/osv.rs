//! OSV advisories (the Open Source Vulnerability schema): the records as published, and
//! [`Advisory`], the part of one that a scan uses, checked and normalised at import.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::os::{Distro, Ecosystem};
use crate::version::{Scheme, Version};

/// An OSV record as published. Members the scanner does not use are ignored, so newer
/// schema versions still import.
#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub upstream: Vec<String>,
    pub summary: Option<String>,
    pub details: Option<String>,
    pub withdrawn: Option<String>,
    #[serde(default)]
    pub affected: Vec<Affected>,
    #[serde(default)]
    pub severity: Vec<SeverityScore>,
    #[serde(default)]
    pub references: Vec<Reference>,
    pub database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Affected {
    pub package: Option<Package>,
    #[serde(default)]
    pub ranges: Vec<Range>,
    #[serde(default)]
    pub versions: Vec<String>,
    #[serde(default)]
    pub severity: Vec<SeverityScore>,
    pub ecosystem_specific: Option<serde_json::Value>,
    pub database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Package {
    pub ecosystem: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Range {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub events: Vec<RawEvent>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RawEvent {
    pub introduced: Option<String>,
    pub fixed: Option<String>,
    pub last_affected: Option<String>,
    pub limit: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeverityScore {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Reference {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub url: String,
}

/// ECR's finding severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Informational,
    Undefined,
}

impl Severity {
    pub const ALL: [Severity; 6] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Informational,
        Severity::Undefined,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "CRITICAL",
            Severity::High => "HIGH",
            Severity::Medium => "MEDIUM",
            Severity::Low => "LOW",
            Severity::Informational => "INFORMATIONAL",
            Severity::Undefined => "UNDEFINED",
        }
    }

    /// CVSS v3's qualitative rating of a base score.
    pub fn from_cvss(score: f64) -> Severity {
        match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            _ => Severity::Informational,
        }
    }

    /// The words advisory databases use (GitHub's `MODERATE`, Red Hat's `IMPORTANT`,
    /// Debian's and Ubuntu's `negligible`, ...); `None` for an unknown word.
    pub fn from_word(word: &str) -> Option<Severity> {
        Some(match word.trim().to_ascii_uppercase().as_str() {
            "CRITICAL" => Severity::Critical,
            "HIGH" | "IMPORTANT" => Severity::High,
            "MEDIUM" | "MODERATE" => Severity::Medium,
            "LOW" => Severity::Low,
            "NEGLIGIBLE" | "UNIMPORTANT" | "INFORMATIONAL" | "NONE" => Severity::Informational,
            _ => return None,
        })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a scan needs of an OSV record, in Berth's own stored form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// The record's OSV id.
    pub id: String,
    /// The finding's name: the CVE the record is about when it names one, else its id.
    pub name: String,
    pub description: String,
    pub uri: Option<String>,
    pub severity: Severity,
    pub cvss3: Option<Cvss3>,
    pub affected: Vec<AffectedPackage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cvss3 {
    pub vector: String,
    pub score: f64,
}

/// The versions of one package in one ecosystem that an advisory affects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AffectedPackage {
    pub ecosystem: Ecosystem,
    pub package: String,
    /// Each range is a list of events, as in OSV.
    pub ranges: Vec<Vec<Event>>,
    pub versions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

/// Why a record was not imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    #[error("withdrawn")]
    Withdrawn,
    #[error("no Debian, Ubuntu or Alpine package with ECOSYSTEM ranges or versions")]
    NoSupportedPackage,
    #[error("{0}")]
    BadVersion(String),
}

impl Advisory {
    /// Keeps what a scan needs of `record`, or says why it cannot be used.
    pub fn from_record(record: Record) -> Result<Advisory, Skip> {
        if record.withdrawn.is_some() {
            return Err(Skip::Withdrawn);
        }
        let mut affected = Vec::new();
        for a in &record.affected {
            let Some(package) = &a.package else { continue };
            let ecosystem = Ecosystem::parse(&package.ecosystem);
            let Some(distro) = Distro::from_ecosystem_name(&ecosystem.name) else { continue };
            let scheme = distro.scheme();
            let mut ranges = Vec::new();
            for r in a.ranges.iter().filter(|r| r.kind == "ECOSYSTEM") {
                let mut events = Vec::new();
                for e in &r.events {
                    let event = match (&e.introduced, &e.fixed, &e.last_affected, &e.limit) {
                        (Some(v), None, None, None) => Event::Introduced(v.clone()),
                        (None, Some(v), None, None) => Event::Fixed(v.clone()),
                        (None, None, Some(v), None) => Event::LastAffected(v.clone()),
                        (None, None, None, Some(v)) => Event::Limit(v.clone()),
                        _ => {
                            return Err(Skip::BadVersion(format!(
                                "an event of {} must have exactly one of introduced, fixed, last_affected, limit",
                                package.name
                            )))
                        }
                    };
                    check_version(scheme, event.version())?;
                    events.push(event);
                }
                if !events.is_empty() {
                    ranges.push(events);
                }
            }
            for v in &a.versions {
                check_version(scheme, v)?;
            }
            if ranges.is_empty() && a.versions.is_empty() {
                continue;
            }
            affected.push(AffectedPackage {
                ecosystem,
                package: package.name.clone(),
                ranges,
                versions: a.versions.clone(),
            });
        }
        if affected.is_empty() {
            return Err(Skip::NoSupportedPackage);
        }
        let cvss3 = cvss3_of(&record.severity).or_else(|| record.affected.iter().find_map(|a| cvss3_of(&a.severity)));
        let severity = match &cvss3 {
            Some(c) => Severity::from_cvss(c.score),
            None => word_severity(&record).unwrap_or(Severity::Undefined),
        };
        let cve = |s: &&String| s.starts_with("CVE-");
        let name = std::iter::once(&record.id)
            .chain(&record.aliases)
            .chain(&record.upstream)
            .find(cve)
            .unwrap_or(&record.id)
            .clone();
        let description = record
            .details
            .as_deref()
            .filter(|d| !d.trim().is_empty())
            .or(record.summary.as_deref())
            .unwrap_or_default()
            .trim()
            .to_owned();
        let uri = record
            .references
            .iter()
            .find(|r| r.kind.as_deref() == Some("ADVISORY"))
            .or_else(|| record.references.first())
            .map(|r| r.url.clone());
        Ok(Advisory { id: record.id, name, description, uri, severity, cvss3, affected })
    }
}

impl Event {
    pub fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }
}

fn check_version(scheme: Scheme, v: &str) -> Result<(), Skip> {
    if v == "0" {
        return Ok(());
    }
    scheme.parse(v).map(|_| ()).map_err(|e| Skip::BadVersion(e.to_string()))
}

fn cvss3_of(scores: &[SeverityScore]) -> Option<Cvss3> {
    scores
        .iter()
        .filter(|s| s.kind == "CVSS_V3")
        .find_map(|s| cvss3_base_score(&s.score).map(|score| Cvss3 { vector: s.score.clone(), score }))
}

/// A severity word from wherever databases put one: `database_specific.severity` of the
/// record or of an affected package, `ecosystem_specific.severity`, or a `severity` entry
/// of a non-CVSS type (Ubuntu's).
fn word_severity(record: &Record) -> Option<Severity> {
    let from_json = |v: &Option<serde_json::Value>| {
        v.as_ref().and_then(|v| v.get("severity")).and_then(|s| s.as_str()).and_then(Severity::from_word)
    };
    let from_scores = |s: &[SeverityScore]| {
        s.iter().filter(|s| !s.kind.starts_with("CVSS")).find_map(|s| Severity::from_word(&s.score))
    };
    from_json(&record.database_specific).or_else(|| from_scores(&record.severity)).or_else(|| {
        record.affected.iter().find_map(|a| {
            from_json(&a.database_specific)
                .or_else(|| from_json(&a.ecosystem_specific))
                .or_else(|| from_scores(&a.severity))
        })
    })
}

/// The base score of a CVSS v3.0 or v3.1 vector (`CVSS:3.1/AV:N/AC:L/...`), by the
/// specification's formulas; `None` if a base metric is missing or unknown.
pub fn cvss3_base_score(vector: &str) -> Option<f64> {
    let mut parts = vector.split('/');
    if !parts.next()?.starts_with("CVSS:3") {
        return None;
    }
    let metrics: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once(':')).collect();
    let get = |k: &str| metrics.iter().find(|(m, _)| *m == k).map(|(_, v)| *v);
    let changed = match get("S")? {
        "U" => false,
        "C" => true,
        _ => return None,
    };
    let av = match get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match get("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let pr = match (get("PR")?, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match get("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let cia = |k| match get(k)? {
        "H" => Some(0.56),
        "L" => Some(0.22),
        "N" => Some(0.0),
        _ => None,
    };
    let (c, i, a) = (cia("C")?, cia("I")?, cia("A")?);
    let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if changed { 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02f64).powi(15) } else { 6.42 * iss };
    if impact <= 0.0 {
        return Some(0.0);
    }
    let exploitability = 8.22 * av * ac * pr * ui;
    let raw = if changed { 1.08 * (impact + exploitability) } else { impact + exploitability };
    Some(round_up(raw.min(10.0)))
}

/// CVSS v3.1's round-up to one decimal, done in integers so that float noise (4.000001)
/// does not round up a whole tenth.
fn round_up(x: f64) -> f64 {
    let scaled = (x * 100_000.0).round() as i64;
    if scaled % 10_000 == 0 {
        scaled as f64 / 100_000.0
    } else {
        ((scaled / 10_000) + 1) as f64 / 10.0
    }
}

/// An affected package with its versions parsed once, for matching.
#[derive(Debug, Clone)]
pub struct Matcher {
    ranges: Vec<Vec<(EventKind, Option<Version>)>>,
    versions: Vec<Version>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EventKind {
    Introduced,
    Fixed,
    LastAffected,
    Limit,
}

impl Matcher {
    /// Parses the versions of `a` in `scheme`; versions that do not parse (only possible
    /// for a database written by another tool) make their range never match.
    pub fn new(a: &AffectedPackage, scheme: Scheme) -> Matcher {
        let parse = |v: &str| if v == "0" { Ok(None) } else { scheme.parse(v).map(Some) };
        let ranges = a
            .ranges
            .iter()
            .filter_map(|r| {
                r.iter()
                    .map(|e| {
                        let kind = match e {
                            Event::Introduced(_) => EventKind::Introduced,
                            Event::Fixed(_) => EventKind::Fixed,
                            Event::LastAffected(_) => EventKind::LastAffected,
                            Event::Limit(_) => EventKind::Limit,
                        };
                        parse(e.version()).ok().map(|v| (kind, v))
                    })
                    .collect::<Option<Vec<_>>>()
            })
            .map(|mut events| {
                // OSV evaluates events in version order; "0" (None) is before everything.
                events.sort_by(|(ka, a), (kb, b)| {
                    let by_version = match (a, b) {
                        (None, None) => Ordering::Equal,
                        (None, Some(_)) => Ordering::Less,
                        (Some(_), None) => Ordering::Greater,
                        (Some(a), Some(b)) => a.compare(b).unwrap_or(Ordering::Equal),
                    };
                    by_version.then(ka.cmp(kb))
                });
                events
            })
            .collect();
        let versions = a.versions.iter().filter_map(|v| scheme.parse(v).ok()).collect();
        Matcher { ranges, versions }
    }

    /// Whether `installed` is one of the affected versions.
    pub fn affects(&self, installed: &Version) -> bool {
        let at_least = |v: &Option<Version>| match v {
            None => true,
            Some(v) => installed.compare(v).is_some_and(|o| o != Ordering::Less),
        };
        if self.versions.iter().any(|v| installed.compare(v) == Some(Ordering::Equal)) {
            return true;
        }
        self.ranges.iter().any(|events| {
            if events.iter().any(|(k, v)| *k == EventKind::Limit && at_least(v)) {
                return false;
            }
            let mut affected = false;
            for (kind, v) in events {
                match kind {
                    EventKind::Introduced if at_least(v) => affected = true,
                    EventKind::Fixed if at_least(v) => affected = false,
                    EventKind::LastAffected
                        if v.as_ref().is_some_and(|v| installed.compare(v) == Some(Ordering::Greater)) =>
                    {
                        affected = false
                    }
                    _ => {}
                }
            }
            affected
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss3_base_scores() {
        let cases = [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", Some(9.8)),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", Some(8.8)),
            ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", Some(10.0)),
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", Some(5.5)),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:L", Some(3.7)),
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", Some(6.4)),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", Some(0.0)),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H", None),
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", None),
            ("AV:N/AC:L/Au:N/C:P/I:P/A:P", None),
        ];
        for (vector, want) in cases {
            assert_eq!(cvss3_base_score(vector), want, "{vector}");
        }
    }

    fn record(json: serde_json::Value) -> Record {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn records_become_advisories() {
        let a = Advisory::from_record(record(serde_json::json!({
            "id": "DSA-9999-1",
            "aliases": ["CVE-2099-0001"],
            "summary": "openssl - security update",
            "details": "A flaw in the frobnicator.",
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
            "references": [{"type": "WEB", "url": "https://example.com/a"}, {"type": "ADVISORY", "url": "https://example.com/dsa"}],
            "affected": [
                {"package": {"ecosystem": "Debian:12", "name": "openssl"},
                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.13-1~deb12u1"}]}]},
                {"package": {"ecosystem": "PyPI", "name": "cryptography"},
                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}
            ],
            "unknown_member": true
        })))
        .unwrap();
        assert_eq!(a.name, "CVE-2099-0001");
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.uri.as_deref(), Some("https://example.com/dsa"));
        assert_eq!(a.description, "A flaw in the frobnicator.");
        assert_eq!(a.affected.len(), 1, "only supported ecosystems are kept");

        let words =
            [("MODERATE", Severity::Medium), ("negligible", Severity::Informational), ("odd", Severity::Undefined)];
        for (word, want) in words {
            let a = Advisory::from_record(record(serde_json::json!({
                "id": "ALPINE-X", "database_specific": {"severity": word},
                "affected": [{"package": {"ecosystem": "Alpine:v3.19", "name": "busybox"}, "versions": ["1.36.1-r15"]}]
            })))
            .unwrap();
            assert_eq!(a.severity, want, "{word}");
            assert_eq!(a.name, "ALPINE-X");
        }
    }

    #[test]
    fn unusable_records_are_skipped_with_a_reason() {
        let cases = [
            (serde_json::json!({"id": "X", "withdrawn": "2024-01-01T00:00:00Z", "affected": []}), Skip::Withdrawn),
            (
                serde_json::json!({"id": "X", "affected": [{"package": {"ecosystem": "npm", "name": "x"}}]}),
                Skip::NoSupportedPackage,
            ),
            (
                serde_json::json!({"id": "X", "affected": [{"package": {"ecosystem": "Debian:12", "name": "x"},
                    "ranges": [{"type": "GIT", "repo": "https://example.com/x", "events": [{"introduced": "0"}]}]}]}),
                Skip::NoSupportedPackage,
            ),
        ];
        for (json, want) in cases {
            assert_eq!(Advisory::from_record(record(json.clone())).unwrap_err(), want, "{json}");
        }
        let bad = Advisory::from_record(record(serde_json::json!({"id": "X", "affected": [
            {"package": {"ecosystem": "Alpine:v3.19", "name": "x"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"fixed": "1.0_bogus"}]}]}
        ]})));
        assert!(matches!(bad, Err(Skip::BadVersion(_))), "{bad:?}");
    }

    fn matcher(ranges: &[&[Event]], versions: &[&str], scheme: Scheme) -> Matcher {
        Matcher::new(
            &AffectedPackage {
                ecosystem: Ecosystem::parse("Debian:12"),
                package: "p".into(),
                ranges: ranges.iter().map(|r| r.to_vec()).collect(),
                versions: versions.iter().map(|v| v.to_string()).collect(),
            },
            scheme,
        )
    }

    #[test]
    fn ranges_and_versions_match_by_the_package_managers_order() {
        use Event::*;
        let i = |v: &str| Introduced(v.into());
        let f = |v: &str| Fixed(v.into());
        let l = |v: &str| LastAffected(v.into());
        // (ranges, explicit versions, scheme, installed version, affected?)
        type Case<'a> = (Vec<Vec<Event>>, Vec<&'a str>, Scheme, &'a str, bool);
        let cases: Vec<Case> = vec![
            (vec![vec![i("0"), f("1.2-3")]], vec![], Scheme::Dpkg, "1.2-2", true),
            (vec![vec![i("0"), f("1.2-3")]], vec![], Scheme::Dpkg, "1.2-3", false),
            (vec![vec![i("0"), f("1.2-3")]], vec![], Scheme::Dpkg, "1.2-3~bpo1", true),
            (vec![vec![i("0"), f("1:1.0")]], vec![], Scheme::Dpkg, "9.9", true),
            (vec![vec![i("1.5"), f("2.0")]], vec![], Scheme::Dpkg, "1.4", false),
            (vec![vec![i("0"), l("1.2")]], vec![], Scheme::Dpkg, "1.2", true),
            (vec![vec![i("0"), l("1.2")]], vec![], Scheme::Dpkg, "1.2.1", false),
            // Two ranges in one list of events: between them is not affected.
            (vec![vec![i("1.0"), f("1.5"), i("2.0"), f("2.5")]], vec![], Scheme::Dpkg, "1.7", false),
            (vec![vec![f("2.5"), i("2.0"), f("1.5"), i("1.0")]], vec![], Scheme::Dpkg, "2.2", true),
            (vec![vec![i("0")]], vec![], Scheme::Apk, "1.0-r0", true),
            (vec![vec![i("0"), f("1.36.1-r20")]], vec![], Scheme::Apk, "1.36.1-r15", true),
            (vec![vec![i("0"), f("1.36.1-r20")]], vec![], Scheme::Apk, "1.36.1-r20", false),
            (vec![vec![i("0"), f("3.1.4-r6")]], vec![], Scheme::Apk, "3.1.4_rc1-r0", true),
            (vec![], vec!["1.0-r1"], Scheme::Apk, "1.0-r1", true),
            (vec![], vec!["1.0-r1"], Scheme::Apk, "1.0-r2", false),
        ];
        for (ranges, versions, scheme, installed, want) in cases {
            let refs: Vec<&[Event]> = ranges.iter().map(|r| &r[..]).collect();
            let m = matcher(&refs, &versions, scheme);
            assert_eq!(m.affects(&scheme.parse(installed).unwrap()), want, "{installed} in {ranges:?} {versions:?}");
        }
    }
}
