//! Requests no SDK would send, as raw signed HTTP: malformed JSON, wrong member types,
//! unknown members, oversized bodies and strings, unknown and unimplemented operations.
//! Each is refused with an AWS JSON error and changes nothing.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use testkit::{Berth, Key};

use crate::berth;

/// The `X-Amz-Target` prefix of ECS operations.
pub const ECS_TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";

/// Signs a request with SigV4 and returns the headers to add to it (`authorization`,
/// `x-amz-date`). `url` is the full request URL, `headers` the headers to sign (the host
/// is taken from `url`).
pub fn sigv4_headers(
    method: &str,
    url: &str,
    key: &Key,
    region: &str,
    service: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<(String, String)> {
    let identity: Identity = Credentials::new(&key.id, &key.secret, None, None, "bad_input").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let request = SignableRequest::new(method, url, headers.iter().copied(), SignableBody::Bytes(body))
        .expect("signable request");
    let (instructions, _signature) = sign(request, &params).expect("sign").into_parts();
    let (signed, _query) = instructions.into_parts();
    signed.into_iter().map(|h| (h.name().to_string(), h.value().to_string())).collect()
}

/// A `POST {endpoint}/` calling the ECS operation `operation` with `body` as AWS JSON 1.1,
/// signed for service `ecs` in `us-east-1` with `key`. Send it with `.send().await`.
pub fn signed_ecs_request(
    http: &reqwest::Client,
    endpoint: &str,
    key: &Key,
    operation: &str,
    body: impl Into<Vec<u8>>,
) -> reqwest::RequestBuilder {
    let body = body.into();
    let url = format!("{}/", endpoint.trim_end_matches('/'));
    let target = format!("{ECS_TARGET_PREFIX}.{operation}");
    let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target.as_str())];
    let auth = sigv4_headers("POST", &url, key, "us-east-1", "ecs", &headers, &body);
    let mut req = http.post(&url);
    for (name, value) in headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).chain(auth) {
        req = req.header(name, value);
    }
    req.body(body)
}

/// Sends a signed ECS request with the harness key and returns its status and JSON body,
/// checking that the body is JSON with string `__type` and `message` members.
async fn call(b: &Berth, operation: &str, body: impl Into<Vec<u8>>) -> (u16, serde_json::Value) {
    let http = reqwest::Client::new();
    let r = signed_ecs_request(&http, &b.endpoint, &b.key, operation, body).send().await.expect("send");
    let status = r.status().as_u16();
    let bytes = r.bytes().await.expect("body");
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{operation}: response is not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, json)
}

/// Like [`call`] for a request that must fail: checks the error envelope and returns
/// (status, `__type`, `message`).
async fn refused(b: &Berth, operation: &str, body: impl Into<Vec<u8>>) -> (u16, String, String) {
    let (status, json) = call(b, operation, body).await;
    assert!(status >= 400, "{operation}: expected an error, got {status}: {json}");
    let code = json["__type"].as_str().unwrap_or_else(|| panic!("{operation}: no __type in {json}")).to_string();
    let message = json["message"].as_str().unwrap_or_else(|| panic!("{operation}: no message in {json}")).to_string();
    (status, code, message)
}

fn oversized_body() -> Vec<u8> {
    let mut body = br#"{"clusterName":""#.to_vec();
    body.extend(std::iter::repeat_n(b'a', 1024 * 1024 + 16));
    body.extend(br#""}"#);
    body
}

/// Every bad request of this module: operation, body, expected status and error code.
fn bad_requests() -> Vec<(&'static str, Vec<u8>, u16, &'static str)> {
    let deep = format!(r#"{{"clusterName": {}"#, "[".repeat(100_000)).into_bytes();
    vec![
        ("CreateCluster", br#"{"clusterName": "#.to_vec(), 400, "SerializationException"),
        ("CreateCluster", b"not json at all".to_vec(), 400, "SerializationException"),
        ("CreateCluster", b"[1, 2, 3]".to_vec(), 400, "SerializationException"),
        ("CreateCluster", vec![0xff, 0xfe, 0x7b, 0x7d], 400, "SerializationException"),
        ("CreateCluster", deep, 400, "SerializationException"),
        ("CreateCluster", br#"{"clusterName": 5}"#.to_vec(), 400, "SerializationException"),
        ("CreateCluster", br#"{"clusterName": "x", "bogus": 1}"#.to_vec(), 400, "SerializationException"),
        ("CreateCluster", oversized_body(), 413, "SerializationException"),
        (
            "CreateCluster",
            format!(r#"{{"clusterName": "{}"}}"#, "x".repeat(100_000)).into_bytes(),
            400,
            "InvalidParameterException",
        ),
        ("FrobnicateClusters", b"{}".to_vec(), 400, "UnknownOperationException"),
        ("CreateTaskSet", br#"{"service": "web"}"#.to_vec(), 400, "UnsupportedFeatureException"),
        ("CreateService", br#"{"serviceName": "web"}"#.to_vec(), 400, "InvalidParameterException"),
    ]
}

#[tokio::test]
async fn malformed_json_is_a_serialization_exception() {
    let b = berth().await;
    for body in [&br#"{"clusterName": "#[..], b"not json at all", b"{,}", b"[1, 2, 3]", &[0xff, 0xfe, 0x7b, 0x7d]] {
        let (status, code, _) = refused(&b, "CreateCluster", body.to_vec()).await;
        assert_eq!((status, code.as_str()), (400, "SerializationException"), "{}", String::from_utf8_lossy(body));
    }
    // Nesting deeper than any parser should follow is refused, not a crash.
    let deep = format!(r#"{{"clusterName": {}"#, "[".repeat(100_000));
    let (status, code, _) = refused(&b, "CreateCluster", deep).await;
    assert_eq!((status, code.as_str()), (400, "SerializationException"));
}

#[tokio::test]
async fn wrong_member_type_names_the_member() {
    let b = berth().await;
    let (status, code, message) = refused(&b, "CreateCluster", r#"{"clusterName": 5}"#).await;
    assert_eq!((status, code.as_str()), (400, "SerializationException"));
    assert!(message.contains("clusterName"), "{message}");

    let (_, code, message) = refused(&b, "DescribeClusters", r#"{"clusters": "demo"}"#).await;
    assert_eq!(code, "SerializationException");
    assert!(message.contains("clusters"), "{message}");

    // Deep inside a task definition, the path to the member is named.
    let td = r#"{"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "memory": "lots"}]}"#;
    let (_, code, message) = refused(&b, "RegisterTaskDefinition", td).await;
    assert_eq!(code, "SerializationException");
    assert!(message.contains("memory"), "{message}");

    let (_, code, _) = refused(&b, "ListClusters", r#"{"maxResults": 1.5}"#).await;
    assert_eq!(code, "SerializationException");
    let (_, code, _) = refused(&b, "ListClusters", r#"{"maxResults": 99999999999}"#).await;
    assert_eq!(code, "SerializationException");
}

#[tokio::test]
async fn unknown_member_is_a_serialization_exception() {
    let b = berth().await;
    let (status, code, message) = refused(&b, "CreateCluster", r#"{"clusterName": "x", "bogus": 1}"#).await;
    assert_eq!((status, code.as_str()), (400, "SerializationException"));
    assert!(message.contains("bogus"), "{message}");

    let td =
        r#"{"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64, "imaginary": true}]}"#;
    let (_, code, message) = refused(&b, "RegisterTaskDefinition", td).await;
    assert_eq!(code, "SerializationException");
    assert!(message.contains("imaginary"), "{message}");
    let ecs = b.ecs().await;
    assert!(ecs.list_clusters().send().await.unwrap().cluster_arns().is_empty());
    assert!(ecs.list_task_definitions().send().await.unwrap().task_definition_arns().is_empty());
}

#[tokio::test]
async fn body_over_one_mebibyte_is_refused() {
    let b = berth().await;
    let (status, code, message) = refused(&b, "CreateCluster", oversized_body()).await;
    assert_eq!(status, 413);
    assert!(!code.is_empty() && !message.is_empty());
    assert!(b.ecs().await.list_clusters().send().await.unwrap().cluster_arns().is_empty());
}

#[tokio::test]
async fn huge_cluster_name_is_an_invalid_parameter() {
    let b = berth().await;
    let name = "x".repeat(100_000);
    let (status, code, message) = refused(&b, "CreateCluster", format!(r#"{{"clusterName": "{name}"}}"#)).await;
    assert_eq!((status, code.as_str()), (400, "InvalidParameterException"));
    assert!(message.len() < 10_000, "the message does not echo the whole input ({} bytes)", message.len());
    let (_, code, _) = refused(&b, "DeleteCluster", format!(r#"{{"cluster": "{name}"}}"#)).await;
    assert_eq!(code, "InvalidParameterException");
}

#[tokio::test]
async fn unknown_and_unimplemented_operations() {
    let b = berth().await;
    let (status, code, _) = refused(&b, "FrobnicateClusters", "{}").await;
    assert_eq!((status, code.as_str()), (400, "UnknownOperationException"));
    let (status, code, message) = refused(&b, "CreateTaskSet", r#"{"service": "web"}"#).await;
    assert_eq!((status, code.as_str()), (400, "UnsupportedFeatureException"));
    assert!(message.contains("CreateTaskSet"), "{message}");
}

#[tokio::test]
async fn error_responses_are_aws_json() {
    let b = berth().await;
    let http = reqwest::Client::new();
    let r =
        signed_ecs_request(&http, &b.endpoint, &b.key, "CreateCluster", r#"{"clusterName": 5}"#).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.headers()["content-type"], "application/x-amz-json-1.1");
    assert!(r.headers().contains_key("x-amzn-requestid"));
    let json: serde_json::Value = r.json().await.unwrap();
    assert_eq!(json["__type"], "SerializationException");
    assert!(json["message"].is_string());
}

#[tokio::test]
async fn nothing_changes_and_the_server_stays_healthy() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let keep = ecs.create_cluster().cluster_name("keep").send().await.unwrap();
    let keep_arn = keep.cluster().unwrap().cluster_arn().unwrap().to_string();

    for (op, body, status, code) in bad_requests() {
        let (got_status, got_code, _) = refused(&b, op, body).await;
        assert_eq!((got_status, got_code.as_str()), (status, code), "{op}");
    }

    // A good raw request still works.
    let (status, json) = call(&b, "ListClusters", "{}").await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["clusterArns"], serde_json::json!([keep_arn]));

    let d = ecs.describe_clusters().clusters("keep").clusters("x").send().await.unwrap();
    assert_eq!(d.clusters().len(), 1);
    assert_eq!(d.clusters()[0].status(), Some("ACTIVE"));
    assert_eq!(d.failures().len(), 1);
    assert_eq!(ecs.list_clusters().send().await.unwrap().cluster_arns(), [keep_arn]);
    assert!(ecs.list_task_definitions().send().await.unwrap().task_definition_arns().is_empty());

    let health = reqwest::get(format!("{}/_berth/health", b.endpoint)).await.unwrap();
    assert!(health.status().is_success());
}

#[tokio::test]
async fn wrong_enum_value_is_an_invalid_parameter_naming_the_member() {
    let b = berth().await;
    let (status, code, message) = refused(&b, "ListTasks", r#"{"desiredStatus": "DONE"}"#).await;
    assert_eq!((status, code.as_str()), (400, "InvalidParameterException"));
    assert_eq!(message, "desiredStatus should be one of [RUNNING,PENDING,STOPPED]");

    // Through the SDK, which lets a caller send a value its model does not know.
    let ecs = b.ecs().await;
    let include = aws_sdk_ecs::types::ClusterField::from("EVERYTHING");
    let e = ecs.describe_clusters().include(include).send().await.unwrap_err();
    assert_eq!(testkit::error_code(&e), "InvalidParameterException");
    let ecr = b.ecr().await;
    let e = ecr
        .create_repository()
        .repository_name("app")
        .image_tag_mutability("SOMETIMES".into())
        .send()
        .await
        .unwrap_err();
    let e = e.into_service_error();
    assert!(e.is_invalid_parameter_exception(), "{e:?}");
    assert!(format!("{e}").contains("at 'imageTagMutability'"), "{e}");
    assert!(ecr.describe_repositories().send().await.unwrap().repositories().is_empty());
}
