//! Support types for the generated AWS shapes: timestamps and validation findings.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, carried as AWS JSON carries it: seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Timestamp(f64);

impl Timestamp {
    pub fn from_system(t: SystemTime) -> Self {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        // Millisecond precision is what AWS returns and what survives a JSON round trip.
        Timestamp((d.as_millis() as f64) / 1000.0)
    }
    pub fn now() -> Self {
        Self::from_system(SystemTime::now())
    }
    pub fn from_epoch_seconds(s: f64) -> Self {
        Timestamp(s)
    }
    pub fn epoch_seconds(self) -> f64 {
        self.0
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        f64::deserialize(d).map(Timestamp)
    }
}

/// One way in which a request breaks the model's rules, with the member path that does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub problem: String,
}

impl Violation {
    pub fn new(path: impl Into<String>, problem: &str) -> Self {
        Violation { path: path.into(), problem: problem.to_string() }
    }
    pub fn missing(path: impl Into<String>) -> Self {
        Violation { path: path.into(), problem: "is required but was not given".to_string() }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.path, self.problem)
    }
}

/// Joins a member name onto a path: `containerDefinitions[0]` + `name`.
pub fn join(path: &str, member: &str) -> String {
    if path.is_empty() {
        member.to_string()
    } else {
        format!("{path}.{member}")
    }
}
