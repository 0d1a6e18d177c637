//! The system under test, in process: the real router (`aws_api::router`) over a
//! `ControlPlane` on a temporary SQLite store and the ECR registry in a temporary
//! directory, wired as `berth server` wires them. Requests are signed with the AWS SDK's
//! own SigV4 signer and sent with `oneshot`, so a panic anywhere in a handler fails the
//! property that sent it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_api::{Api, PublicAddress};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use axum::body::Body;
use axum::Router;
use control_plane::auth::AccessKey;
use control_plane::ControlPlane;
use http::{Request, Response};
use http_body_util::BodyExt;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::Value;
use tower::ServiceExt;

/// The host every request names (and signs).
pub const HOST: &str = "berth.fuzz";
pub const REGION: &str = "us-east-1";

pub struct Server {
    pub router: Router,
    pub key: AccessKey,
    pub runtime: tokio::runtime::Runtime,
    pub dict: Dictionary,
    _dir: tempfile::TempDir,
}

/// What an answer was.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Server {
    pub fn start() -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(store::SqliteStore::open(&dir.path().join("berth.db")).unwrap());
        let control = Arc::new(ControlPlane::open(store).unwrap());
        let (_, key) = control.credentials.bootstrap().unwrap().expect("a fresh store has no account");
        let public = PublicAddress::default();
        let registry = runtime.block_on(async {
            aws_api::ecr::registry::open(
                control.clone(),
                &dir.path().join("registry"),
                HOST.to_string(),
                public.clone(),
                dir.path().join("vulndb"),
            )
            .unwrap()
        });
        let router = aws_api::router(Api { control, registry, public });
        Server { router, key, runtime, dict: Dictionary::default(), _dir: dir }
    }

    /// Sends `request` and reads the whole answer; what it says is learned.
    pub fn send(&self, request: Request<Body>) -> Answer {
        let router = self.router.clone();
        let answer = self.runtime.block_on(async move {
            let response: Response<Body> = router.oneshot(request).await.expect("the router is infallible");
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.map(|c| c.to_bytes().to_vec()).unwrap_or_default();
            Answer { status, body }
        });
        self.dict.learn(&answer.body);
        answer
    }

    /// A `POST /` with `headers` and `body`, signed for `service` with the harness's key.
    pub fn signed(&self, service: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Request<Body> {
        let mut builder = Request::post("/").header("host", HOST);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let auth = sign_headers(&self.key, service, SystemTime::now(), "POST", "/", headers, &body)
            .expect("the SDK signs a POST / with valid headers");
        for (name, value) in auth {
            builder = builder.header(name, value);
        }
        builder.body(Body::from(body)).unwrap()
    }

    /// Calls a JSON operation of `target_prefix`.
    pub fn json(&self, service: &str, target_prefix: &str, operation: &str, body: &Value) -> Answer {
        let target = format!("{target_prefix}.{operation}");
        let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target.as_str())];
        self.send(self.signed(service, &headers, serde_json::to_vec(body).unwrap()))
    }

    /// Calls a query-protocol action with an encoded form.
    pub fn form(&self, service: &str, form: &str) -> Answer {
        let headers = [("content-type", "application/x-www-form-urlencoded; charset=utf-8")];
        self.send(self.signed(service, &headers, form.as_bytes().to_vec()))
    }
}

/// The SigV4 headers (`authorization`, `x-amz-date`) for a request to `http://HOST{path}`
/// with `headers` (all signed, with `host`) and `body`, signed at `time`; `None` when the
/// SDK's signer refuses the request.
pub fn sign_headers(
    key: &AccessKey,
    service: &str,
    time: SystemTime,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Vec<(String, String)>> {
    let identity: Identity = Credentials::new(&key.id, &key.secret, None, None, "fuzz").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let url = format!("http://{HOST}{path_and_query}");
    let mut all: Vec<(&str, &str)> = vec![("host", HOST)];
    all.extend_from_slice(headers);
    let request = SignableRequest::new(method, url, all.into_iter(), SignableBody::Bytes(body)).ok()?;
    let (instructions, _) = sign(request, &params).ok()?.into_parts();
    let (signed, _) = instructions.into_parts();
    Some(signed.into_iter().map(|h| (h.name().to_string(), h.value().to_string())).collect())
}

/// Strings seen in answers, by the (lower-cased) member or element name they came in:
/// `clusterArn`, `<LoadBalancerArn>`, `imageDigest`. A request member named alike gets
/// them back, which is how generated requests find the resources earlier ones created.
#[derive(Default)]
pub struct Dictionary {
    by_name: Mutex<HashMap<String, Vec<String>>>,
}

/// Values kept per name: recent ones replace old ones.
const PER_NAME: usize = 24;

impl Dictionary {
    pub fn learn(&self, body: &[u8]) {
        let mut found = Vec::new();
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => json_strings(&v, "", &mut found),
            Err(_) => xml_strings(&String::from_utf8_lossy(body), &mut found),
        }
        let mut map = self.by_name.lock().unwrap();
        for (name, value) in found {
            if value.is_empty() || value.len() > 4096 {
                continue;
            }
            let values = map.entry(name).or_default();
            if !values.contains(&value) {
                if values.len() == PER_NAME {
                    values.remove(0);
                }
                values.push(value);
            }
        }
    }

    pub fn add(&self, name: &str, value: &str) {
        self.by_name.lock().unwrap().entry(name.to_lowercase()).or_default().push(value.to_string());
    }

    /// A value seen under `member` or a name like it (`cluster` finds `clusterArn` and
    /// `clusterName`; `GroupIds` finds `groupId`).
    pub fn pick(&self, member: &str, rng: &mut StdRng) -> Option<String> {
        let m = member.to_lowercase();
        let singular = m.strip_suffix('s').unwrap_or(&m).to_string();
        let names = [m.clone(), format!("{m}arn"), format!("{m}name"), singular.clone(), format!("{singular}arn")];
        let map = self.by_name.lock().unwrap();
        let candidates: Vec<&String> = names.iter().filter_map(|n| map.get(n)).flatten().collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[rng.gen_range(0..candidates.len())].clone())
    }
}

fn json_strings(v: &Value, name: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) if !name.is_empty() => out.push((name.to_lowercase(), s.clone())),
        Value::Array(items) => items.iter().for_each(|x| json_strings(x, name, out)),
        Value::Object(members) => members.iter().for_each(|(k, x)| json_strings(x, k, out)),
        _ => {}
    }
}

/// `<Name>text</Name>` pairs of an XML answer (the query protocol's).
fn xml_strings(text: &str, out: &mut Vec<(String, String)>) {
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find('>') else { return };
        let tag = &rest[..close];
        rest = &rest[close + 1..];
        if tag.starts_with('/') || tag.contains(' ') {
            continue;
        }
        if let Some(end) = rest.find(&format!("</{tag}>")) {
            let inner = &rest[..end];
            if !inner.contains('<') {
                let value =
                    inner.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'");
                out.push((tag.to_lowercase(), value.replace("&amp;", "&")));
            }
        }
    }
}
