//! The operations' input shapes (from `models.json`, written by `tools/gen_fuzz_models.py`
//! from botocore) and a generator of request bodies that follow them: members present or
//! not, enum values or not, strings learned from earlier answers, numbers at their bounds.
//! A body that follows the shape gets past the decoder, so the control plane's rules see
//! it; the harness then damages it.

use std::collections::{BTreeMap, HashMap};

use rand::rngs::StdRng;
use rand::Rng;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::server::Dictionary;

#[derive(Debug, Deserialize)]
pub struct Models {
    pub services: BTreeMap<String, Service>,
    shapes: HashMap<String, Shape>,
}

#[derive(Debug, Deserialize)]
pub struct Service {
    /// `json`, `query` or `ec2`.
    pub protocol: String,
    /// The SigV4 service name.
    pub signing: String,
    /// The `X-Amz-Target` prefix of a JSON service.
    pub target: Option<String>,
    pub version: String,
    /// Operation name to input shape.
    pub operations: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum Shape {
    Struct {
        /// `[json name, query name, shape]` of every member.
        m: Vec<(String, String, String)>,
        r: Vec<String>,
    },
    List {
        m: String,
        /// The segment before an element's index in the query protocol (`member`), or
        /// none (EC2, flattened lists).
        item: Option<String>,
        min: Option<i64>,
        max: Option<i64>,
    },
    Map {
        k: String,
        v: String,
        flat: bool,
        kw: String,
        vw: String,
    },
    String {
        #[serde(rename = "enum")]
        values: Option<Vec<String>>,
        min: Option<i64>,
        max: Option<i64>,
    },
    Int {
        min: Option<i64>,
        max: Option<i64>,
    },
    Float,
    Bool,
    Timestamp,
    Blob,
}

/// Bodies are bounded in depth (the models are recursive in places) and in breadth.
const MAX_DEPTH: usize = 8;

impl Models {
    pub fn load() -> Models {
        serde_json::from_str(include_str!("models.json")).expect("models.json is the generator's output")
    }

    /// A body for the input shape `shape` (none for an operation without input).
    pub fn generate(&self, shape: Option<&str>, rng: &mut StdRng, dict: &Dictionary) -> Value {
        match shape {
            Some(s) => self.value(s, "", 0, rng, dict),
            None => Value::Object(Map::new()),
        }
    }

    fn value(&self, key: &str, member: &str, depth: usize, rng: &mut StdRng, dict: &Dictionary) -> Value {
        match &self.shapes[key] {
            Shape::Struct { m, r } => {
                let mut out = Map::new();
                for (json_name, _, shape) in m {
                    let required = r.contains(json_name);
                    // Required members almost always, others less often the deeper we are.
                    let p = if required { 0.95 } else { 0.5 / (depth as f64 + 1.0) };
                    if depth < MAX_DEPTH && rng.gen_bool(p) {
                        out.insert(json_name.clone(), self.value(shape, json_name, depth + 1, rng, dict));
                    }
                }
                Value::Object(out)
            }
            Shape::List { m, min, max, .. } => {
                let lo = min.unwrap_or(0).max(0) as usize;
                let hi = max.map_or(4, |m| (m.max(0) as usize).min(4)).max(lo);
                let n = if depth >= MAX_DEPTH { 0 } else { rng.gen_range(lo..=hi.min(lo + 4)) };
                let item = member.strip_suffix('s').unwrap_or(member);
                Value::Array((0..n).map(|_| self.value(m, item, depth + 1, rng, dict)).collect())
            }
            Shape::Map { k, v, .. } => {
                let n = if depth >= MAX_DEPTH { 0 } else { rng.gen_range(0..=3) };
                let mut out = Map::new();
                for _ in 0..n {
                    let key = match self.value(k, "key", depth + 1, rng, dict) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    out.insert(key, self.value(v, member, depth + 1, rng, dict));
                }
                Value::Object(out)
            }
            Shape::String { values, min, max } => {
                Value::String(string(member, values.as_deref(), *min, *max, rng, dict))
            }
            Shape::Int { min, max } => Value::from(integer(*min, *max, rng)),
            Shape::Float => Value::from(match rng.gen_range(0..4) {
                0 => 0.0,
                1 => rng.gen_range(-1e6..1e6),
                2 => rng.gen_range(0.0..100.0),
                _ => f64::MAX,
            }),
            Shape::Bool => Value::Bool(rng.gen()),
            Shape::Timestamp => Value::from(rng.gen_range(0..2_000_000_000i64)),
            Shape::Blob => Value::String(match rng.gen_range(0..3) {
                0 => "aGVsbG8=".to_string(),
                1 => "not base64!".to_string(),
                _ => String::new(),
            }),
        }
    }

    /// The query protocol's form of `body` for the input shape `shape`: nested members
    /// joined with `.`, list elements numbered from 1. A value that no longer matches its
    /// shape (the harness changed it) is written as it is, under its own names.
    pub fn flatten(&self, body: &Value, shape: Option<&str>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        self.flatten_at(body, shape, "", &mut out);
        out
    }

    fn flatten_at(&self, v: &Value, shape: Option<&str>, prefix: &str, out: &mut Vec<(String, String)>) {
        let join = |name: &str| if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") };
        match (v, shape.map(|s| &self.shapes[s])) {
            (Value::Object(members), Some(Shape::Struct { m, .. })) => {
                for (k, x) in members {
                    match m.iter().find(|(json, _, _)| json == k) {
                        Some((_, wire, s)) => self.flatten_at(x, Some(s), &join(wire), out),
                        None => self.flatten_at(x, None, &join(k), out),
                    }
                }
            }
            (Value::Object(members), Some(Shape::Map { v: vs, flat, kw, vw, .. })) => {
                let base = if *flat { prefix.to_string() } else { join("entry") };
                for (i, (k, x)) in members.iter().enumerate() {
                    out.push((format!("{base}.{}.{kw}", i + 1), k.clone()));
                    self.flatten_at(x, Some(vs), &format!("{base}.{}.{vw}", i + 1), out);
                }
            }
            (Value::Array(items), Some(Shape::List { m, item, .. })) => {
                if items.is_empty() {
                    out.push((prefix.to_string(), String::new()));
                }
                for (i, x) in items.iter().enumerate() {
                    let at = match item {
                        Some(seg) => join(&format!("{seg}.{}", i + 1)),
                        None => join(&(i + 1).to_string()),
                    };
                    self.flatten_at(x, Some(m), &at, out);
                }
            }
            (Value::Object(members), _) => {
                for (k, x) in members {
                    self.flatten_at(x, None, &join(k), out);
                }
            }
            (Value::Array(items), _) => {
                for (i, x) in items.iter().enumerate() {
                    self.flatten_at(x, None, &join(&format!("member.{}", i + 1)), out);
                }
            }
            (Value::Null, _) => out.push((prefix.to_string(), String::new())),
            (Value::String(s), _) => out.push((prefix.to_string(), s.clone())),
            (other, _) => out.push((prefix.to_string(), other.to_string())),
        }
    }
}

/// Names the harness creates at start, so that generated requests find them.
pub const NAMES: &[&str] = &["fuzz", "default", "fuzz-web"];

fn string(
    member: &str,
    values: Option<&[String]>,
    min: Option<i64>,
    max: Option<i64>,
    rng: &mut StdRng,
    dict: &Dictionary,
) -> String {
    if let Some(values) = values {
        // An unknown enum value is refused while decoding; mostly send known ones.
        if rng.gen_bool(0.97) {
            return values[rng.gen_range(0..values.len())].clone();
        }
    }
    match rng.gen_range(0..10) {
        0..=3 => {
            if let Some(known) = dict.pick(member, rng) {
                return known;
            }
            NAMES[rng.gen_range(0..NAMES.len())].to_string()
        }
        4..=5 => NAMES[rng.gen_range(0..NAMES.len())].to_string(),
        6..=7 => {
            let lo = min.unwrap_or(0).clamp(0, 64) as usize;
            let hi = max.unwrap_or(32).clamp(lo as i64, 64) as usize;
            let n = rng.gen_range(lo..=hi);
            const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_./:";
            (0..n).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
        }
        8 => ["0", "-1", "true", "*", "arn:aws:ecs:us-east-1:000000000000:cluster/x", "1.5", " "][rng.gen_range(0..7)]
            .to_string(),
        _ => {
            let n = match rng.gen_range(0..4) {
                0 => max.unwrap_or(256).clamp(0, 70_000) as usize + 1,
                _ => rng.gen_range(1..24),
            };
            let pieces = ["a", "\u{0}", "\n", "é", "\u{1F600}", "<", "&", "\"", "%", "\u{202e}"];
            (0..n).map(|_| pieces[rng.gen_range(0..pieces.len())]).collect()
        }
    }
}

fn integer(min: Option<i64>, max: Option<i64>, rng: &mut StdRng) -> i64 {
    match rng.gen_range(0..12) {
        0 => min.unwrap_or(0),
        1 => max.unwrap_or(100),
        2 => min.unwrap_or(0) - 1,
        3 => max.unwrap_or(i32::MAX as i64).saturating_add(1),
        4 => [i32::MAX as i64, i32::MIN as i64, i64::MAX, -1][rng.gen_range(0..4)],
        5..=6 => rng.gen_range(0..10),
        _ => {
            let lo = min.unwrap_or(0);
            let hi = max.unwrap_or(1000).max(lo);
            rng.gen_range(lo..=hi)
        }
    }
}
