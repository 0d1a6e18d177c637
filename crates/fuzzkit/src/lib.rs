//! Test-only support for Berth's fuzzing harness: how many cases each target runs, and
//! proptest strategies that take valid seed inputs and damage them the way a hostile or
//! broken client would (byte edits, hostile strings, JSON edits that change types, drop
//! members, nest deeply or grow huge).
//!
//! The harness is a set of proptest properties in the crates' `tests/fuzz*.rs` (see each
//! one's module docs). Decision: proptest, not `cargo fuzz`, is the engine, because CI has
//! only the stable toolchain; structure-aware seeds make up for the missing coverage
//! feedback. A run is short by default, so that `cargo nextest run --workspace` stays
//! fast; `BERTH_FUZZ_CASES` makes it as long as you like:
//!
//! ```text
//! BERTH_FUZZ_CASES=200000 cargo nextest run --release -E 'binary(/fuzz/)'
//! ```

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;

/// The environment variable that sets how many cases every fuzz target runs.
pub const CASES_VAR: &str = "BERTH_FUZZ_CASES";

/// How many cases a target runs: `BERTH_FUZZ_CASES` when set, else `ci_default`, which
/// each target chooses so that the whole harness takes a few seconds in CI.
pub fn cases(ci_default: u32) -> u32 {
    match std::env::var(CASES_VAR) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{CASES_VAR} must be a number of cases, not '{v}'")),
        Err(_) => ci_default,
    }
}

/// The proptest configuration of a fuzz target: [`cases`] cases, a bounded shrink (a long
/// run that finds something must still end), and no rejection limit worth hitting.
pub fn config(ci_default: u32) -> Config {
    Config { cases: cases(ci_default), max_shrink_iters: 4096, max_global_rejects: u32::MAX, ..Config::default() }
}

/// One edit of a byte string. Positions are taken modulo the input's length, so an edit
/// applies to any input and shrinks towards the start.
#[derive(Debug, Clone)]
pub enum ByteEdit {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Delete { at: usize, len: usize },
    Repeat { at: usize, len: usize, times: usize },
    Truncate { at: usize },
}

/// Bytes that mean something to the parsers under test: quotes, escapes, separators,
/// percent signs, NUL, CR/LF, non-ASCII and invalid UTF-8.
const INTERESTING_BYTES: &[u8] =
    b"\0\r\n\t \"'\\/{}[]:,;=&%+.-_@*?()<>!~#$^|`0019azAZ\x7f\x80\xbf\xc0\xc3\xe2\xef\xf0\xfe\xff";

fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![3 => proptest::sample::select(INTERESTING_BYTES), 1 => any::<u8>()]
}

/// Insertions that are likely to change how a parser reads what follows.
fn interesting_insert() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(interesting_byte(), 1..8),
        hostile_string().prop_map(String::into_bytes),
        proptest::sample::select(vec![
            &b"%"[..],
            b"%0",
            b"%zz",
            b"%ff",
            b"%00",
            b"\\u0000",
            b"\\ud800",
            b"\\",
            b"\"",
            b"null",
            b"[]",
            b"{}",
            b"1e999",
            b"-0",
            b"18446744073709551616",
            b"-9223372036854775809",
            b"&&",
            b"==",
            b"..",
            b"//",
            b"sha256:",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
        ])
        .prop_map(<[u8]>::to_vec),
    ]
}

pub fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| ByteEdit::Flip { at, bit }),
        (any::<usize>(), interesting_byte()).prop_map(|(at, byte)| ByteEdit::Set { at, byte }),
        (any::<usize>(), interesting_insert()).prop_map(|(at, bytes)| ByteEdit::Insert { at, bytes }),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| ByteEdit::Delete { at, len }),
        (any::<usize>(), 1usize..16, 2usize..64).prop_map(|(at, len, times)| ByteEdit::Repeat { at, len, times }),
        any::<usize>().prop_map(|at| ByteEdit::Truncate { at }),
    ]
}

/// Applies `edits` in order.
pub fn apply_bytes(input: &[u8], edits: &[ByteEdit]) -> Vec<u8> {
    let mut out = input.to_vec();
    for edit in edits {
        let n = out.len();
        // An insertion point may be the end; every other edit needs a byte to act on.
        let ins = |at: usize| at % (n + 1);
        match edit {
            ByteEdit::Insert { at, bytes } => {
                let at = ins(*at);
                out.splice(at..at, bytes.iter().copied());
            }
            _ if n == 0 => {}
            ByteEdit::Flip { at, bit } => out[at % n] ^= 1 << bit,
            ByteEdit::Set { at, byte } => out[at % n] = *byte,
            ByteEdit::Delete { at, len } => {
                let at = at % n;
                out.drain(at..(at + len).min(n));
            }
            ByteEdit::Repeat { at, len, times } => {
                let at = at % n;
                let piece = out[at..(at + len).min(n)].to_vec();
                let copies: Vec<u8> = piece.iter().copied().cycle().take(piece.len() * (times - 1)).collect();
                out.splice(at..at, copies);
            }
            ByteEdit::Truncate { at } => out.truncate(at % n),
        }
    }
    out
}

/// One of `seeds` with up to `max_edits` byte edits.
pub fn mutated_bytes(seeds: Vec<Vec<u8>>, max_edits: usize) -> impl Strategy<Value = Vec<u8>> {
    (proptest::sample::select(seeds), proptest::collection::vec(byte_edit(), 0..=max_edits))
        .prop_map(|(seed, edits)| apply_bytes(&seed, &edits))
}

/// One of `seeds` with up to `max_edits` byte edits, read back as text (invalid UTF-8
/// becomes U+FFFD), or a hostile string, or two seeds spliced.
pub fn mutated_text(seeds: &[&str], max_edits: usize) -> impl Strategy<Value = String> {
    let seeds: Vec<Vec<u8>> = seeds.iter().map(|s| s.as_bytes().to_vec()).collect();
    let splice_seeds = seeds.clone();
    prop_oneof![
        6 => mutated_bytes(seeds, max_edits).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        1 => hostile_string(),
        1 => (
            proptest::sample::select(splice_seeds.clone()),
            proptest::sample::select(splice_seeds),
            any::<usize>(),
            any::<usize>()
        )
            .prop_map(|(a, b, i, j)| {
                let mut out = a[..i % (a.len() + 1)].to_vec();
                out.extend_from_slice(&b[j % (b.len() + 1)..]);
                String::from_utf8_lossy(&out).into_owned()
            }),
    ]
}

/// Strings that have broken parsers before: empty, huge, control characters, NUL,
/// combining marks, right-to-left overrides, astral planes, escapes meant for another
/// layer, and numbers at the edges of their types.
pub fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_string()),
        Just("\0".to_string()),
        Just("\r\n".to_string()),
        Just("a\nb=c level=ERROR".to_string()),
        Just("\u{202e}\u{200b}\u{feff}".to_string()),
        Just("e\u{301}\u{301}\u{301}".to_string()),
        Just("\u{1F600}\u{10FFFF}".to_string()),
        Just("%s%n%x%%".to_string()),
        Just("../../../../etc/passwd".to_string()),
        Just("${jndi:ldap://x}".to_string()),
        Just("<a>&amp;</b>]]>".to_string()),
        Just("' OR 1=1 --".to_string()),
        Just("arn:aws:ecs:us-east-1:000000000000:cluster/".to_string()),
        Just("sha256:".to_string()),
        Just("-1".to_string()),
        Just("2147483648".to_string()),
        Just("9223372036854775808".to_string()),
        Just("1e308".to_string()),
        Just("NaN".to_string()),
        (1usize..70_000).prop_map(|n| "a".repeat(n)),
        (1usize..5_000).prop_map(|n| "\u{1F600}".repeat(n)),
        (1usize..2_000).prop_map(|n| "(".repeat(n)),
        proptest::collection::vec(proptest::char::range('\0', '\x1f'), 1..32).prop_map(String::from_iter),
        proptest::collection::vec(any::<char>(), 0..64).prop_map(String::from_iter),
    ]
}

/// Any JSON value, weighted towards the ones decoders get wrong: huge and negative
/// numbers, floats where integers belong, hostile strings, empty and nested containers.
pub fn hostile_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        edge_number(),
        edge_number(),
        proptest::sample::select(vec![0.5, -0.0, 1e308, -1e308, 1e-308, 9007199254740993.0]).prop_map(Value::from),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(hostile_string(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Numbers at the edges of the integer types, where sums, casts and bounds go wrong.
fn edge_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        proptest::sample::select(vec![
            0i64,
            -1,
            1,
            i32::MAX as i64,
            i32::MAX as i64 + 1,
            i32::MIN as i64 - 1,
            u32::MAX as i64 + 1,
            i64::MAX,
            i64::MIN
        ])
        .prop_map(Value::from),
        proptest::sample::select(vec![u64::MAX, u64::MAX / 2 + 1, 1 << 53]).prop_map(Value::from),
    ]
}

/// One edit of a JSON document. `node` picks a value by its pre-order index, modulo the
/// number of values in the document.
#[derive(Debug, Clone)]
pub enum JsonEdit {
    /// The value becomes another, usually of another type.
    Replace { node: usize, with: Value },
    /// The value is removed from its object or array (the root becomes `{}`).
    Remove { node: usize },
    /// An object gains a member (unknown, or a duplicate name in another case).
    AddMember { node: usize, key: String, value: Value },
    /// The value is repeated inside an array, `times` times.
    Repeat { node: usize, times: usize },
    /// The value is wrapped in `depth` arrays or objects.
    Nest { node: usize, depth: usize, in_object: bool },
    /// A number (picked among the document's numbers) becomes one at the edge of a type.
    EdgeNumber { node: usize, with: Value },
    /// A number or boolean becomes its text, a string its JSON text, as a confused
    /// client would send them.
    Stringify { node: usize },
}

pub fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        4 => (any::<usize>(), hostile_json()).prop_map(|(node, with)| JsonEdit::Replace { node, with }),
        2 => any::<usize>().prop_map(|node| JsonEdit::Remove { node }),
        1 => (any::<usize>(), hostile_string(), hostile_json())
            .prop_map(|(node, key, value)| JsonEdit::AddMember { node, key, value }),
        1 => (any::<usize>(), 2usize..200).prop_map(|(node, times)| JsonEdit::Repeat { node, times }),
        1 => (any::<usize>(), 1usize..300, any::<bool>())
            .prop_map(|(node, depth, in_object)| JsonEdit::Nest { node, depth, in_object }),
        1 => any::<usize>().prop_map(|node| JsonEdit::Stringify { node }),
        2 => (any::<usize>(), edge_number()).prop_map(|(node, with)| JsonEdit::EdgeNumber { node, with }),
    ]
}

/// Documents larger than this stop growing: the point is hostile shapes, not memory.
const MAX_JSON_BYTES: usize = 4 << 20;

/// Applies `edits` in order; an edit that would make the document larger than a few MiB
/// is skipped.
pub fn apply_json(doc: &mut Value, edits: &[JsonEdit]) {
    for edit in edits {
        let before = doc.clone();
        apply_json_edit(doc, edit);
        if serde_json::to_vec(doc).map_or(true, |b| b.len() > MAX_JSON_BYTES) {
            *doc = before;
        }
    }
}

/// The JSON pointers of every value of `doc`, in pre-order.
fn pointers(doc: &Value) -> Vec<String> {
    fn walk(v: &Value, at: String, out: &mut Vec<String>) {
        out.push(at.clone());
        match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{at}/{i}"), out);
                }
            }
            Value::Object(members) => {
                for (k, item) in members {
                    walk(item, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, String::new(), &mut out);
    out
}

fn apply_json_edit(doc: &mut Value, edit: &JsonEdit) {
    let all = pointers(doc);
    let pick = |node: &usize| all[node % all.len()].clone();
    match edit {
        JsonEdit::Replace { node, with } => {
            if let Some(v) = doc.pointer_mut(&pick(node)) {
                *v = with.clone();
            }
        }
        JsonEdit::Remove { node } => {
            let at = pick(node);
            let Some((parent, last)) = at.rsplit_once('/') else {
                *doc = Value::Object(Default::default());
                return;
            };
            match doc.pointer_mut(parent) {
                Some(Value::Object(m)) => {
                    m.remove(&last.replace("~1", "/").replace("~0", "~"));
                }
                Some(Value::Array(a)) => {
                    if let Ok(i) = last.parse::<usize>() {
                        if i < a.len() {
                            a.remove(i);
                        }
                    }
                }
                _ => {}
            }
        }
        JsonEdit::AddMember { node, key, value } => {
            let at = pick(node);
            let target = doc.pointer_mut(&at);
            if let Some(Value::Object(m)) = target {
                // Half the time a member the object already has, in another letter case.
                let key = match m.keys().nth(key.len() % (m.len() + 1)) {
                    Some(existing) if key.len() % 2 == 0 => existing.to_uppercase(),
                    _ => key.clone(),
                };
                m.insert(key, value.clone());
            }
        }
        JsonEdit::Repeat { node, times } => {
            if let Some(v) = doc.pointer_mut(&pick(node)) {
                *v = Value::Array(vec![v.clone(); *times]);
            }
        }
        JsonEdit::Nest { node, depth, in_object } => {
            if let Some(v) = doc.pointer_mut(&pick(node)) {
                let mut inner = v.clone();
                for _ in 0..*depth {
                    inner = if *in_object {
                        Value::Object([("a".to_string(), inner)].into_iter().collect())
                    } else {
                        Value::Array(vec![inner])
                    };
                }
                *v = inner;
            }
        }
        JsonEdit::EdgeNumber { node, with } => {
            let numbers: Vec<&String> = all.iter().filter(|p| doc.pointer(p).is_some_and(Value::is_number)).collect();
            if numbers.is_empty() {
                return;
            }
            let at = numbers[node % numbers.len()].clone();
            if let Some(v) = doc.pointer_mut(&at) {
                *v = with.clone();
            }
        }
        JsonEdit::Stringify { node } => {
            if let Some(v) = doc.pointer_mut(&pick(node)) {
                let text = match &*v {
                    Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
                    other => other.to_string(),
                };
                *v = Value::String(text);
            }
        }
    }
}

/// One of `seeds` (JSON documents) with up to `max_edits` JSON edits, serialized, and
/// sometimes with byte edits on top (broken syntax, invalid UTF-8).
pub fn mutated_json(seeds: Vec<Value>, max_edits: usize) -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(seeds),
        proptest::collection::vec(json_edit(), 0..=max_edits),
        proptest::option::weighted(0.2, proptest::collection::vec(byte_edit(), 1..3)),
    )
        .prop_map(|(mut doc, edits, bytes)| {
            apply_json(&mut doc, &edits);
            let text = serde_json::to_vec(&doc).unwrap_or_default();
            match bytes {
                Some(b) => apply_bytes(&text, &b),
                None => text,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_edits_apply_to_any_input() {
        let edits = [
            ByteEdit::Set { at: 7, byte: b'x' },
            ByteEdit::Insert { at: 100, bytes: b"yz".to_vec() },
            ByteEdit::Repeat { at: 0, len: 2, times: 3 },
            ByteEdit::Delete { at: 1, len: 1 },
        ];
        assert_eq!(apply_bytes(b"abc", &edits), b"yyzyzaxc");
        assert_eq!(apply_bytes(b"", &edits), b"yyzyz");
    }

    #[test]
    fn json_edits_reach_nested_values() {
        let mut doc = serde_json::json!({"a": [1, {"b/c": true}]});
        // Pre-order: "", /a, /a/0, /a/1, /a/1/b~1c.
        apply_json(&mut doc, &[JsonEdit::Stringify { node: 4 }, JsonEdit::Remove { node: 2 }]);
        assert_eq!(doc, serde_json::json!({"a": [{"b/c": "true"}]}));
        apply_json(&mut doc, &[JsonEdit::Nest { node: 1, depth: 2, in_object: false }]);
        assert_eq!(doc, serde_json::json!({"a": [[[{"b/c": "true"}]]]}));
        apply_json(&mut doc, &[JsonEdit::Remove { node: 0 }]);
        assert_eq!(doc, serde_json::json!({}));
    }

    #[test]
    fn documents_stop_growing() {
        let mut doc = serde_json::json!({"a": "x".repeat(1 << 20)});
        apply_json(&mut doc, &[JsonEdit::Repeat { node: 1, times: 10 }]);
        assert!(doc["a"].is_string());
    }
}
