//! Fuzz targets for the protocol edge (see `fuzzkit` for the engine and how to run them
//! long):
//!
//! - SigV4: a request signed by the AWS SDK's signer verifies, and no single changed byte
//!   of what it signed (method, path, query, a signed header, the body, the signature or
//!   its scope) does; damaged signature parameters never panic.
//! - End to end, per service: the real router, on a fresh store and registry, gets
//!   correctly signed requests for every operation of ECS and ECR and every ELBv2 and
//!   EC2 action Berth serves, with bodies that follow the operation's input shape (from
//!   botocore, `fuzz/models.json`) and are then damaged (wrong types, huge and hostile
//!   strings, missing and unknown members, deep nesting, edge numbers, broken syntax,
//!   duplicated and misnumbered form keys). No answer may be a 5xx and nothing may panic;
//!   every refusal must be the protocol's error document with a code and a message.
//! - Raw requests: any method, path, headers and body, signed or not, on the AWS
//!   endpoint, the registry's `/v2/` (with a valid ECR token or not) and its token
//!   endpoint: no 5xx, no panic.
//!
//! The answers' statuses are counted and printed (`--no-capture` shows them).

#[path = "fuzz/models.rs"]
mod models;
#[path = "fuzz/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_api::sigv4::{self, SignedRequest};
use axum::body::Body;
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use percent_encoding::utf8_percent_encode;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use models::Models;
use server::{Answer, Server, HOST};

fn encode(s: &str) -> String {
    utf8_percent_encode(s, server::UNRESERVED).to_string()
}

// ---------------------------------------------------------------------------------------
// SigV4

/// Where a signed request can be changed by one byte.
#[derive(Debug, Clone, Copy)]
enum Place {
    Method,
    Path,
    Query,
    Header(usize),
    Body,
    /// A field of the Authorization header: Credential, SignedHeaders or Signature.
    AuthField(usize),
}

/// A request as sent: what the server's `SignedRequest` is made of.
#[derive(Clone)]
struct Wire {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, String)> =
            self.headers.iter().map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned())).collect();
        f.debug_struct("Wire")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl Wire {
    /// `None` when HTTP could not carry it (the server would never see it).
    fn header_map(&self) -> Option<HeaderMap> {
        let mut map = HeaderMap::new();
        for (k, v) in &self.headers {
            map.append(HeaderName::from_bytes(k.as_bytes()).ok()?, HeaderValue::from_bytes(v).ok()?);
        }
        Some(map)
    }

    fn representable(&self) -> bool {
        let uri = if self.query.is_empty() { self.path.clone() } else { format!("{}?{}", self.path, self.query) };
        http::Method::from_bytes(self.method.as_bytes()).is_ok()
            && uri.parse::<http::Uri>().is_ok_and(|u| u.path() == self.path && u.query().unwrap_or("") == self.query)
    }

    /// Whether the key's secret verifies this request at `now`.
    fn verifies(&self, key: &control_plane::auth::AccessKey, now: time::OffsetDateTime) -> Result<(), String> {
        let headers = self.header_map().ok_or("not representable")?;
        let req = SignedRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &headers,
            body: &self.body,
        };
        let parsed = sigv4::parse(&req).map_err(|e| format!("{e:?}"))?;
        if parsed.credential.access_key_id != key.id {
            return Err("unknown key".into());
        }
        parsed.verify(&req, &key.secret, now).map_err(|e| format!("{e:?}"))
    }
}

/// The query's pairs as the server reads them (decoded), to tell an edit that changes
/// nothing (`%2f` for `%2F`, `+` for `%20`) from one that changes what was signed.
fn decoded_query(q: &str) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec =
                |s: &str| percent_encoding::percent_decode_str(&s.replace('+', "%20")).decode_utf8_lossy().into_owned();
            (dec(k), dec(v))
        })
        .collect();
    pairs.sort();
    pairs
}

fn collapse(v: &[u8]) -> String {
    String::from_utf8_lossy(v).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A signing key for the SigV4 properties; they need no server.
fn test_key() -> control_plane::auth::AccessKey {
    serde_json::from_value(json!({
        "id": "AKIAFUZZEXAMPLE00001", "secret": "fuzz/secret+KEY0123456789abcdefghijklmn",
        "account": "111111111111", "created_at": 0.0
    }))
    .expect("an access key record")
}

#[derive(Debug, Clone)]
struct Unsigned {
    method: &'static str,
    path: &'static str,
    query: Vec<(String, String)>,
    target: String,
    note: String,
    body: Vec<u8>,
    presigned: bool,
}

fn unsigned() -> impl Strategy<Value = Unsigned> {
    (
        proptest::sample::select(vec!["POST", "GET", "PUT", "DELETE"]),
        proptest::sample::select(vec!["/", "/v2/fuzz/manifests/v1", "/a%20b/%C3%BC", "/x/y~z_-"]),
        proptest::collection::vec(("[a-zA-Z0-9_.~-]{1,6}", "[a-zA-Z0-9 /+=&%é-]{0,8}"), 0..4),
        "[A-Za-z0-9_.]{0,40}",
        "[a-z]{1,4}( {1,2}[a-z]{1,4}){0,2}",
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(|(method, path, query, target, note, body, presigned)| Unsigned {
            method,
            path,
            query,
            target,
            note,
            body,
            presigned,
        })
}

/// Signs `u` with the AWS SDK's signer at `time`, in the Authorization header or in the
/// query (presigned).
fn sign(u: &Unsigned, key: &control_plane::auth::AccessKey, time: SystemTime) -> Wire {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings};
    let query: String =
        u.query.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&");
    let headers: Vec<(String, String)> = vec![
        ("host".into(), HOST.into()),
        ("content-type".into(), "application/x-amz-json-1.1".into()),
        ("x-amz-target".into(), u.target.clone()),
        ("x-amz-meta-note".into(), u.note.clone()),
    ];
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(&key.id, &key.secret, None, None, "fuzz").into();
    let mut settings = SigningSettings::default();
    if u.presigned {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(300));
    }
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(server::REGION)
        .name("ecs")
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let url =
        if query.is_empty() { format!("http://{HOST}{}", u.path) } else { format!("http://{HOST}{}?{query}", u.path) };
    let request = SignableRequest::new(
        u.method,
        url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(&u.body),
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let (added_headers, added_params) = instructions.into_parts();
    let mut query = query;
    for (k, v) in added_params {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&format!("{}={}", encode(k), encode(&v)));
    }
    let mut all: Vec<(String, Vec<u8>)> = headers.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
    all.extend(added_headers.into_iter().map(|h| (h.name().to_string(), h.value().as_bytes().to_vec())));
    Wire { method: u.method.to_string(), path: u.path.to_string(), query, headers: all, body: u.body.clone() }
}

const AUTH_FIELDS: [&str; 3] = ["Credential=", "SignedHeaders=", "Signature="];

/// The byte range of an Authorization header's field value.
fn auth_field(value: &[u8], field: usize) -> Option<std::ops::Range<usize>> {
    let text = std::str::from_utf8(value).ok()?;
    let start = text.find(AUTH_FIELDS[field])? + AUTH_FIELDS[field].len();
    let end = text[start..].find(',').map_or(text.len(), |e| start + e);
    Some(start..end)
}

/// Changes the byte at `at` (modulo the place's length) of `place` to `byte`; `None`
/// when the place is empty, the byte is the same, or the change is one the server is
/// meant to treat as no change.
fn change(w: &Wire, place: Place, at: usize, byte: u8) -> Option<Wire> {
    let mut out = w.clone();
    let signed: Vec<String> = {
        let auth = w.headers.iter().find(|(k, _)| k == "authorization");
        match auth.and_then(|(_, v)| auth_field(v, 1).map(|r| String::from_utf8_lossy(&v[r]).into_owned())) {
            Some(list) => list.split(';').map(str::to_string).collect(),
            None => {
                let q = decoded_query(&w.query);
                let list =
                    q.iter().find(|(k, _)| k == "X-Amz-SignedHeaders").map(|(_, v)| v.clone()).unwrap_or_default();
                list.split(';').map(str::to_string).collect()
            }
        }
    };
    let flip = |bytes: &mut Vec<u8>, range: std::ops::Range<usize>| -> Option<u8> {
        if range.is_empty() {
            return None;
        }
        let i = range.start + at % range.len();
        let old = bytes[i];
        (old != byte).then(|| {
            bytes[i] = byte;
            old
        })
    };
    match place {
        Place::Method => {
            let mut b = out.method.clone().into_bytes();
            let len = b.len();
            flip(&mut b, 0..len)?;
            out.method = String::from_utf8(b).ok()?;
        }
        Place::Path => {
            let mut b = out.path.clone().into_bytes();
            let len = b.len();
            flip(&mut b, 0..len)?;
            out.path = String::from_utf8(b).ok()?;
        }
        Place::Query => {
            let mut b = out.query.clone().into_bytes();
            let len = b.len();
            flip(&mut b, 0..len)?;
            out.query = String::from_utf8(b).ok()?;
            if decoded_query(&out.query) == decoded_query(&w.query) {
                return None;
            }
        }
        Place::Header(i) => {
            let (name, value) = &mut out.headers[i % w.headers.len()];
            if !signed.contains(name) {
                return None;
            }
            let len = value.len();
            flip(value, 0..len)?;
            // Canonical headers trim and collapse spaces, as SigV4 specifies.
            if collapse(value) == collapse(&w.headers[i % w.headers.len()].1) {
                return None;
            }
        }
        Place::Body => {
            let len = out.body.len();
            flip(&mut out.body, 0..len)?;
        }
        Place::AuthField(f) => {
            let (_, value) = out.headers.iter_mut().find(|(k, _)| k == "authorization")?;
            let range = auth_field(value, f % 3)?;
            let old = flip(value, range)?;
            // Signed header names are case-insensitive.
            if f % 3 == 1 && old.eq_ignore_ascii_case(&byte) {
                return None;
            }
        }
    }
    out.representable().then_some(out)
}

fn place() -> impl Strategy<Value = Place> {
    prop_oneof![
        1 => Just(Place::Method),
        1 => Just(Place::Path),
        2 => Just(Place::Query),
        3 => any::<usize>().prop_map(Place::Header),
        2 => Just(Place::Body),
        3 => any::<usize>().prop_map(Place::AuthField),
    ]
}

proptest! {
    #![proptest_config(fuzzkit::config(1024))]

    #[test]
    fn sigv4_signed_requests_verify_and_no_changed_byte_does(
        u in unsigned(),
        // Within the 15 minutes of skew, and the 5 minutes of a presigned URL.
        offset in -600i64..300,
        place in place(),
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        let key = test_key();
        let signed_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_564_800);
        let now = time::OffsetDateTime::from_unix_timestamp(1_714_564_800 + offset).unwrap();
        let wire = sign(&u, &key, signed_at);
        prop_assert!(wire.representable());
        if let Err(e) = wire.verifies(&key, now) {
            panic!("a request signed by the AWS SDK does not verify ({e}): {wire:?}");
        }
        let Some(changed) = change(&wire, place, at, byte) else { return Ok(()) };
        prop_assert!(
            changed.verifies(&key, now).is_err(),
            "changing {:?} still verifies:\n  signed:  {:?}\n  changed: {:?}", place, wire, changed
        );
    }

    #[test]
    fn sigv4_damaged_parameters_never_panic(
        u in unsigned(),
        edits in proptest::collection::vec((place(), fuzzkit::byte_edit()), 1..4),
        offset in -2_000_000i64..2_000_000,
    ) {
        let key = test_key();
        let signed_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_564_800);
        let now = time::OffsetDateTime::from_unix_timestamp(1_714_564_800 + offset).unwrap();
        let mut wire = sign(&u, &key, signed_at);
        for (place, edit) in edits {
            let edit = std::slice::from_ref(&edit);
            match place {
                Place::Method => wire.method = String::from_utf8_lossy(&fuzzkit::apply_bytes(wire.method.as_bytes(), edit)).into_owned(),
                Place::Path => wire.path = String::from_utf8_lossy(&fuzzkit::apply_bytes(wire.path.as_bytes(), edit)).into_owned(),
                Place::Query => wire.query = String::from_utf8_lossy(&fuzzkit::apply_bytes(wire.query.as_bytes(), edit)).into_owned(),
                Place::Header(i) | Place::AuthField(i) => {
                    let n = wire.headers.len();
                    let (_, v) = &mut wire.headers[i % n];
                    *v = fuzzkit::apply_bytes(v, edit);
                }
                Place::Body => wire.body = fuzzkit::apply_bytes(&wire.body, edit),
            }
        }
        // Whatever the outcome, it is an answer, not a panic.
        let _ = wire.verifies(&key, now);
    }
}

// ---------------------------------------------------------------------------------------
// End to end

/// Statuses of the answers of one target, printed when it ends.
struct Tally {
    name: &'static str,
    statuses: Mutex<BTreeMap<u16, u64>>,
    /// Error codes, to see how deep the requests get.
    codes: Mutex<BTreeMap<String, u64>>,
    started: std::time::Instant,
}

impl Tally {
    fn new(name: &'static str) -> Tally {
        Tally {
            name,
            statuses: Mutex::new(BTreeMap::new()),
            codes: Mutex::new(BTreeMap::new()),
            started: std::time::Instant::now(),
        }
    }
    fn count(&self, a: &Answer) {
        *self.statuses.lock().unwrap().entry(a.status).or_default() += 1;
        if a.status >= 400 {
            let code = match serde_json::from_slice::<Value>(&a.body) {
                Ok(doc) => doc["__type"].as_str().map(str::to_string),
                Err(_) => {
                    let text = String::from_utf8_lossy(&a.body);
                    text.split_once("<Code>")
                        .and_then(|(_, rest)| rest.split_once("</Code>"))
                        .map(|(c, _)| c.to_string())
                }
            };
            *self.codes.lock().unwrap().entry(code.unwrap_or_else(|| a.status.to_string())).or_default() += 1;
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        let statuses = self.statuses.lock().unwrap();
        let total: u64 = statuses.values().sum();
        let mut codes: Vec<(String, u64)> = self.codes.lock().unwrap().clone().into_iter().collect();
        codes.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        eprintln!(
            "fuzz target {}: {total} requests in {:.1}s, statuses {:?}; errors {:?}",
            self.name,
            self.started.elapsed().as_secs_f64(),
            *statuses,
            codes
        );
    }
}

fn show(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if text.len() > 2000 {
        format!("{}... ({} bytes)", &text[..text.char_indices().nth(2000).map_or(text.len(), |(i, _)| i)], body.len())
    } else {
        text.into_owned()
    }
}

/// The checks every answer of an AWS endpoint passes: no server error, and a refusal is
/// the protocol's error document with a code and a message.
fn check_answer(protocol: &str, request: &str, a: &Answer) -> Result<(), TestCaseError> {
    prop_assert!(a.status < 500, "{request}\n  answered {}: {}", a.status, show(&a.body));
    if a.status >= 400 {
        if protocol == "json" {
            let doc: Value = serde_json::from_slice(&a.body)
                .map_err(|e| TestCaseError::fail(format!("{request}\n  error is not JSON ({e}): {}", show(&a.body))))?;
            prop_assert!(doc["__type"].as_str().is_some_and(|c| !c.is_empty()), "{request}\n  no __type: {doc}");
            prop_assert!(doc["message"].as_str().is_some_and(|m| !m.is_empty()), "{request}\n  no message: {doc}");
        } else {
            let text = String::from_utf8_lossy(&a.body);
            prop_assert!(
                text.contains("<Code>") && text.contains("<Message>"),
                "{request}\n  not an XML error: {text}"
            );
        }
    } else if protocol == "json" {
        prop_assert!(
            serde_json::from_slice::<Value>(&a.body).is_ok(),
            "{request}\n  answer is not JSON: {}",
            show(&a.body)
        );
    }
    Ok(())
}

/// One generated request: which operation, the seed of its body, and the damage.
#[derive(Debug, Clone)]
struct Call {
    operation: usize,
    seed: u64,
    json_edits: Vec<fuzzkit::JsonEdit>,
    byte_edits: Option<Vec<fuzzkit::ByteEdit>>,
    /// The operation's name is damaged too.
    rename: Option<Vec<fuzzkit::ByteEdit>>,
}

fn call() -> impl Strategy<Value = Call> {
    (
        any::<usize>(),
        any::<u64>(),
        // Half the bodies follow the shape; the others are damaged.
        prop_oneof![Just(Vec::new()), proptest::collection::vec(fuzzkit::json_edit(), 1..4)],
        proptest::option::weighted(0.1, proptest::collection::vec(fuzzkit::byte_edit(), 1..4)),
        proptest::option::weighted(0.03, proptest::collection::vec(fuzzkit::byte_edit(), 1..3)),
    )
        .prop_map(|(operation, seed, json_edits, byte_edits, rename)| Call {
            operation,
            seed,
            json_edits,
            byte_edits,
            rename,
        })
}

/// Damage to a query-protocol form, on top of the damage to its values.
fn damage_form(pairs: &mut Vec<(String, String)>, rng: &mut StdRng) {
    for _ in 0..rng.gen_range(0..3) {
        if pairs.is_empty() {
            return;
        }
        let i = rng.gen_range(0..pairs.len());
        match rng.gen_range(0..7) {
            0 => {
                pairs.remove(i);
            }
            1 => pairs.push(pairs[i].clone()),
            2 => {
                let index = ["0", "1001", "-1", "x", "99999999999999999999", "01", ""][rng.gen_range(0..7)];
                let key = &mut pairs[i].0;
                if let Some(pos) = key.rfind(|c: char| c.is_ascii_digit()) {
                    key.replace_range(pos..pos + 1, index);
                } else {
                    key.push('.');
                    key.push_str(index);
                }
            }
            3 => pairs[i].0 = pairs[i].0.to_lowercase(),
            4 => pairs[i].1 = "\u{0}\n<&>é".repeat(rng.gen_range(1..50)),
            5 => pairs.push((format!("{}.member.1", pairs[i].0), "x".into())),
            _ => pairs[i].0.push_str(".member"),
        }
    }
}

/// The operations of `svc` that Berth serves, and those it answers as unsupported, found
/// by calling each once with an empty body.
fn probe<'a>(server: &Server, svc: &'a models::Service) -> (Operations<'a>, Operations<'a>) {
    let mut served = Vec::new();
    let mut unserved = Vec::new();
    for (name, shape) in &svc.operations {
        let answer = match &svc.target {
            Some(prefix) => server.json(&svc.signing, prefix, name, &json!({})),
            None => server.form(&svc.signing, &server::form(&[("Action", name), ("Version", &svc.version)])),
        };
        let text = String::from_utf8_lossy(&answer.body);
        let unsupported = ["UnsupportedFeatureException", "UnsupportedOperation", "InvalidAction"];
        if unsupported.iter().any(|code| text.contains(code)) {
            unserved.push((name, shape));
        } else {
            served.push((name, shape));
        }
    }
    assert!(!served.is_empty(), "Berth serves none of {:?}", svc.operations.keys());
    (served, unserved)
}

type Operations<'a> = Vec<(&'a String, &'a Option<String>)>;

/// Sends generated and damaged calls of every operation of `service` and checks every
/// answer.
fn fuzz_service(service: &str, tally_name: &'static str, ci_cases: u32) {
    let models = Models::load();
    let svc = &models.services[service];
    let server = Server::seeded();
    let (served, unserved) = probe(&server, svc);
    let tally = Tally::new(tally_name);
    // A failure cannot be replayed without the state that earlier requests built, so
    // none is saved; the failure message has the whole request.
    let config = proptest::test_runner::Config { failure_persistence: None, ..fuzzkit::config(ci_cases) };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(&call(), |c| {
        // Mostly what Berth serves; what it does not is answered before any decoding.
        let operations = if c.operation % 20 == 0 && !unserved.is_empty() { &unserved } else { &served };
        let (name, shape) = operations[(c.operation / 20) % operations.len()];
        let mut rng = StdRng::seed_from_u64(c.seed);
        let mut body = models.generate(shape.as_deref(), &mut rng, &server.dict);
        fuzzkit::apply_json(&mut body, &c.json_edits);
        let name = match &c.rename {
            Some(edits) => String::from_utf8_lossy(&fuzzkit::apply_bytes(name.as_bytes(), edits)).into_owned(),
            None => name.clone(),
        };
        let (request, description) = if svc.protocol == "json" {
            let mut bytes = serde_json::to_vec(&body).unwrap();
            if let Some(edits) = &c.byte_edits {
                bytes = fuzzkit::apply_bytes(&bytes, edits);
            }
            let target = format!("{}.{name}", svc.target.as_deref().unwrap());
            let description = format!("{target} {}", show(&bytes));
            // The SDK's signer takes header values as text: printable ASCII only.
            if !target.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Ok(());
            }
            let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target.as_str())];
            (server.signed(&svc.signing, &headers, bytes), description)
        } else {
            let mut pairs = models.flatten(&body, shape.as_deref());
            damage_form(&mut pairs, &mut rng);
            let mut head = vec![("Action".to_string(), name.clone())];
            match rng.gen_range(0..20) {
                0 => {}
                1 => head.push(("Version".into(), "2099-01-01".into())),
                _ => head.push(("Version".into(), svc.version.clone())),
            }
            let encoded: Vec<String> = head
                .iter()
                .chain(&pairs)
                .map(|(k, v)| {
                    let v = encode(v);
                    // Clients write spaces as `+` or `%20`.
                    let v = if rng.gen_bool(0.5) { v.replace("%20", "+") } else { v };
                    format!("{}={v}", encode(k))
                })
                .collect();
            let mut bytes = encoded.join("&").into_bytes();
            if let Some(edits) = &c.byte_edits {
                bytes = fuzzkit::apply_bytes(&bytes, edits);
            }
            let description = format!("{} {name}: {}", svc.signing, show(&bytes));
            let headers = [("content-type", "application/x-www-form-urlencoded; charset=utf-8")];
            (server.signed(&svc.signing, &headers, bytes), description)
        };
        let answer = server.send(request);
        tally.count(&answer);
        check_answer(if svc.protocol == "json" { "json" } else { "query" }, &description, &answer)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn ecs_operations() {
    fuzz_service("ecs", "ecs", 300);
}

#[test]
fn ecr_operations() {
    fuzz_service("ecr", "ecr", 300);
}

#[test]
fn elbv2_actions() {
    fuzz_service("elbv2", "elbv2", 300);
}

#[test]
fn ec2_actions() {
    fuzz_service("ec2", "ec2", 200);
}

// ---------------------------------------------------------------------------------------
// Raw requests

#[derive(Debug, Clone)]
struct Raw {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Signed for this SigV4 service after the damage, so that it gets past
    /// authentication.
    sign_as: Option<&'static str>,
    /// A valid ECR token as Basic credentials (for `/v2/` and the token endpoint).
    ecr_token: bool,
}

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","size":7},"layers":[]}"#;

fn raw() -> impl Strategy<Value = Raw> {
    let paths = fuzzkit::mutated_text(
        &[
            "/",
            "/v2/",
            "/v2/fuzz/manifests/v1",
            "/v2/fuzz/manifests/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "/v2/fuzz/blobs/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "/v2/fuzz/blobs/uploads/",
            "/v2/fuzz/blobs/uploads/5f0c7c2e-8a4b-4b8e-9f55-3b1d0a6c2e11?digest=sha256:0",
            "/v2/fuzz/tags/list?n=2&last=a",
            "/v2/fuzz/referrers/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "/v2/_catalog",
            "/_berth/registry/token?service=x&scope=repository:fuzz:pull,push",
            "/_berth/agent/v1/connect",
        ],
        3,
    );
    let header = prop_oneof![
        (Just("content-type"), fuzzkit::mutated_text(&[
            "application/x-amz-json-1.1", "application/x-www-form-urlencoded; charset=utf-8",
            "application/vnd.oci.image.manifest.v1+json", "application/octet-stream"], 2)),
        (Just("x-amz-target"), fuzzkit::mutated_text(&[
            "AmazonEC2ContainerServiceV20141113.ListClusters", "AmazonEC2ContainerRegistry_V20150921.PutImage",
            "AmazonEC2ContainerServiceV20141113.", "."], 2)),
        (Just("authorization"), fuzzkit::mutated_text(&[
            "AWS4-HMAC-SHA256 Credential=AKIA/20240501/us-east-1/ecs/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
            "Basic QVdTOnRva2Vu", "Bearer x.y"], 3)),
        (Just("x-amz-date"), fuzzkit::mutated_text(&["20240501T120000Z", "99991231T235959Z"], 2)),
        (Just("x-amz-content-sha256"), fuzzkit::mutated_text(&["UNSIGNED-PAYLOAD", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"], 2)),
        (Just("content-range"), fuzzkit::mutated_text(&["0-15", "bytes 0-15/16"], 2)),
        (Just("content-length"), fuzzkit::mutated_text(&["0", "16"], 2)),
        (Just("connection"), fuzzkit::mutated_text(&["upgrade"], 1)),
        (Just("upgrade"), fuzzkit::mutated_text(&["websocket"], 1)),
    ];
    (
        proptest::sample::select(vec!["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
        paths,
        proptest::collection::vec(header, 0..5),
        prop_oneof![
            fuzzkit::mutated_json(
                vec![json!({}), serde_json::from_str(MANIFEST).unwrap(), json!({"clusterName": "fuzz"})],
                3
            ),
            fuzzkit::mutated_bytes(
                vec![b"Action=DescribeVpcs&Version=2016-11-15".to_vec(), b"layer".to_vec(), vec![]],
                3
            ),
        ],
        proptest::option::of(proptest::sample::select(vec!["ecs", "ecr", "ec2", "elasticloadbalancing", "s3"])),
        any::<bool>(),
    )
        .prop_map(|(method, path, headers, body, sign_as, ecr_token)| Raw {
            method,
            path,
            headers,
            body,
            sign_as,
            ecr_token,
        })
}

#[test]
fn raw_requests() {
    let server = Server::seeded();
    let token = {
        let a = server.ecr("GetAuthorizationToken", json!({}));
        let doc: Value = serde_json::from_slice(&a.body).unwrap();
        doc["authorizationData"][0]["authorizationToken"].as_str().unwrap().to_string()
    };
    let tally = Tally::new("raw");
    let config = proptest::test_runner::Config { failure_persistence: None, ..fuzzkit::config(300) };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(&raw(), |r| {
        let Ok(uri) = r.path.parse::<http::Uri>() else { return Ok(()) };
        let mut builder = Request::builder().method(r.method).uri(uri.clone()).header("host", HOST);
        let mut headers: Vec<(&str, &str)> = Vec::new();
        for (k, v) in &r.headers {
            if HeaderValue::from_str(v).is_err()
                || (r.sign_as.is_some() && (*k == "authorization" || *k == "x-amz-date"))
            {
                continue;
            }
            headers.push((k, v));
        }
        for (k, v) in &headers {
            builder = builder.header(*k, *v);
        }
        if let Some(service) = r.sign_as {
            let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
            // The SDK signer refuses what it cannot sign; such a request goes unsigned.
            let signed = server::sign_headers(
                &server.key,
                service,
                SystemTime::now(),
                r.method,
                path_and_query,
                &headers,
                &r.body,
            );
            if let Some(auth) = signed {
                for (k, v) in auth {
                    builder = builder.header(k, v);
                }
            }
        } else if r.ecr_token {
            builder = builder.header("authorization", format!("Basic {token}"));
        }
        let Ok(request) = builder.body(Body::from(r.body.clone())) else { return Ok(()) };
        let description = format!("{} {} {:?} signed as {:?}: {}", r.method, r.path, headers, r.sign_as, show(&r.body));
        let answer = server.send(request);
        tally.count(&answer);
        prop_assert!(answer.status < 500, "{description}\n  answered {}: {}", answer.status, show(&answer.body));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
