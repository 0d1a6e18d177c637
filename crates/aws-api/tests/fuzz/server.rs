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
use base64::Engine;
use control_plane::auth::AccessKey;
use control_plane::ControlPlane;
use http::{Request, Response};
use http_body_util::BodyExt;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};
use tower::ServiceExt;

pub const ECS: &str = "AmazonEC2ContainerServiceV20141113";
pub const ECR: &str = "AmazonEC2ContainerRegistry_V20150921";

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
                registry::BlobStore::open(dir.path().join("registry")).unwrap(),
                HOST.to_string(),
                public.clone(),
                dir.path().join("vulndb"),
            )
            .await
            .unwrap()
        });
        let router = aws_api::router(Api { control, registry: Some(registry), public });
        Server { router, key, runtime, dict: Dictionary::default(), _dir: dir }
    }

    /// A server holding one of each resource, so that generated requests find something:
    /// a cluster, task definition and service; a repository with an image, a repository
    /// policy and a lifecycle policy; a security group; a target group, load balancer and
    /// listener.
    pub fn seeded() -> Server {
        let s = Server::start();
        s.must("CreateCluster", s.ecs("CreateCluster", json!({"clusterName": "fuzz"})));
        let container =
            json!({"name": "web", "image": "nginx", "memory": 128, "portMappings": [{"containerPort": 80}]});
        let td = json!({"family": "fuzz", "containerDefinitions": [container]});
        s.must("RegisterTaskDefinition", s.ecs("RegisterTaskDefinition", td));
        let service =
            json!({"cluster": "fuzz", "serviceName": "fuzz-web", "taskDefinition": "fuzz", "desiredCount": 0});
        s.must("CreateService", s.ecs("CreateService", service));

        s.must("CreateRepository", s.ecr("CreateRepository", json!({"repositoryName": "fuzz"})));
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
        let mut descriptors = Vec::new();
        for (blob, media_type) in [
            (&config[..], "application/vnd.oci.image.config.v1+json"),
            (&b"fuzz layer bytes"[..], "application/vnd.oci.image.layer.v1.tar"),
        ] {
            let up = s.must("InitiateLayerUpload", s.ecr("InitiateLayerUpload", json!({"repositoryName": "fuzz"})));
            let id = up["uploadId"].as_str().expect("InitiateLayerUpload answers an uploadId");
            let part = base64::engine::general_purpose::STANDARD.encode(blob);
            let (first, last) = (0, blob.len() - 1);
            let upload = json!({"repositoryName": "fuzz", "uploadId": id, "partFirstByte": first, "partLastByte": last,
                "layerPartBlob": part});
            s.must("UploadLayerPart", s.ecr("UploadLayerPart", upload));
            let digest = format!("sha256:{}", aws_api::sigv4::sha256_hex(blob));
            let complete = json!({"repositoryName": "fuzz", "uploadId": id, "layerDigests": [digest]});
            s.must("CompleteLayerUpload", s.ecr("CompleteLayerUpload", complete));
            descriptors.push(json!({"mediaType": media_type, "digest": digest, "size": blob.len()}));
        }
        let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptors[0], "layers": [descriptors[1]]})
        .to_string();
        s.dict.add("imageManifest", &manifest);
        let image = json!({"repositoryName": "fuzz", "imageManifest": manifest, "imageTag": "v1"});
        s.must("PutImage", s.ecr("PutImage", image));
        let policy =
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage"}]}"#;
        s.dict.add("policyText", policy);
        s.must(
            "SetRepositoryPolicy",
            s.ecr("SetRepositoryPolicy", json!({"repositoryName": "fuzz", "policyText": policy})),
        );
        let lifecycle = r#"{"rules":[{"rulePriority":1,"description":"expire untagged","selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}}]}"#;
        s.dict.add("lifecyclePolicyText", lifecycle);
        let put = json!({"repositoryName": "fuzz", "lifecyclePolicyText": lifecycle});
        s.must("PutLifecyclePolicy", s.ecr("PutLifecyclePolicy", put));

        s.must("DescribeVpcs", s.ec2("DescribeVpcs", &[]));
        s.must("DescribeSubnets", s.ec2("DescribeSubnets", &[]));
        let vpc = s.dict.all("vpcId").pop().expect("DescribeVpcs names the default VPC");
        let subnets = s.dict.all("subnetId");
        assert!(subnets.len() >= 2, "the default VPC has a subnet per zone: {subnets:?}");
        let group = [("GroupName", "fuzz"), ("GroupDescription", "fuzz"), ("VpcId", &vpc)];
        s.must("CreateSecurityGroup", s.ec2("CreateSecurityGroup", &group));
        let tg = [("Name", "fuzz"), ("Protocol", "HTTP"), ("Port", "80"), ("VpcId", &vpc), ("TargetType", "ip")];
        s.must("CreateTargetGroup", s.elbv2("CreateTargetGroup", &tg));
        let lb = [("Name", "fuzz"), ("Subnets.member.1", &subnets[0]), ("Subnets.member.2", &subnets[1])];
        s.must("CreateLoadBalancer", s.elbv2("CreateLoadBalancer", &lb));
        let lb = s.dict.all("LoadBalancerArn").pop().expect("CreateLoadBalancer answers its ARN");
        let tg = s.dict.all("TargetGroupArn").pop().expect("CreateTargetGroup answers its ARN");
        let listener = [
            ("LoadBalancerArn", lb.as_str()),
            ("Protocol", "HTTP"),
            ("Port", "8080"),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", &tg),
        ];
        s.must("CreateListener", s.elbv2("CreateListener", &listener));
        s
    }

    /// A set-up call's answer, which must be a success: its JSON, or null for XML.
    fn must(&self, what: &str, a: Answer) -> Value {
        let text = String::from_utf8_lossy(&a.body);
        assert!(a.status == 200, "setting up the fuzz server: {what} answered {}: {text}", a.status);
        serde_json::from_slice(&a.body).unwrap_or(Value::Null)
    }

    pub fn ecs(&self, operation: &str, body: Value) -> Answer {
        self.json("ecs", ECS, operation, &body)
    }

    pub fn ecr(&self, operation: &str, body: Value) -> Answer {
        self.json("ecr", ECR, operation, &body)
    }

    fn ec2(&self, action: &str, params: &[(&str, &str)]) -> Answer {
        let head = [("Action", action), ("Version", "2016-11-15")];
        self.form("ec2", &form(&[&head[..], params].concat()))
    }

    fn elbv2(&self, action: &str, params: &[(&str, &str)]) -> Answer {
        let head = [("Action", action), ("Version", "2015-12-01")];
        self.form("elasticloadbalancing", &form(&[&head[..], params].concat()))
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

/// A form-encoded body.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string();
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// What the query protocol and SigV4 leave unencoded.
pub const UNRESERVED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

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

    /// Every value seen under `name`, oldest first.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.by_name.lock().unwrap().get(&name.to_lowercase()).cloned().unwrap_or_default()
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
