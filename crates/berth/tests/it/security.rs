//! Authentication: every AWS API request must carry a valid SigV4 signature by a known key,
//! made recently, over the exact request received.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use testkit::{error_code, Berth, Key};

use crate::berth;

const TARGET: &str = "AmazonEC2ContainerServiceV20141113.ListClusters";
const CREATE_CLUSTER: &str = "AmazonEC2ContainerServiceV20141113.CreateCluster";

/// How a test request is signed.
struct Signing<'a> {
    key: &'a Key,
    /// The `X-Amz-Target` signed and sent.
    target: &'a str,
    time: SystemTime,
    service: &'a str,
    location: SignatureLocation,
    /// Headers sent but left out of the signature.
    unsigned: &'a [&'static str],
}

/// Signs `POST {endpoint}/` with `body` and returns the URL (with any presigned query) and
/// the headers to send.
fn sign_request(endpoint: &str, body: &[u8], s: &Signing<'_>) -> (String, Vec<(String, String)>) {
    let url = format!("{endpoint}/");
    let identity: Identity = Credentials::new(&s.key.id, &s.key.secret, None, None, "security").into();
    let mut settings = SigningSettings::default();
    settings.signature_location = s.location;
    settings.expires_in = Some(Duration::from_secs(300));
    if let Some(excluded) = settings.excluded_headers.as_mut() {
        excluded.extend(s.unsigned.iter().map(|h| std::borrow::Cow::Borrowed(*h)));
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(s.service)
        .time(s.time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", s.target)];
    let request = SignableRequest::new("POST", &url, headers.iter().copied(), SignableBody::Bytes(body)).unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let (signed_headers, query) = instructions.into_parts();
    let mut all: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    all.extend(signed_headers.into_iter().map(|h| (h.name().to_string(), h.value().to_string())));
    let url = if query.is_empty() {
        url
    } else {
        let q: Vec<String> = query.into_iter().map(|(k, v)| format!("{k}={}", percent_encode(&v))).collect();
        format!("{url}?{}", q.join("&"))
    };
    (url, all)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends a request and returns (status, `__type`).
async fn send(url: &str, headers: &[(String, String)], body: &[u8]) -> (u16, String) {
    let (status, code, _) = send_full(url, headers, body).await;
    (status, code)
}

/// Sends a request and returns (status, `__type`, `message`).
async fn send_full(url: &str, headers: &[(String, String)], body: &[u8]) -> (u16, String, String) {
    let mut req = reqwest::Client::new().post(url).body(body.to_vec());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let json: serde_json::Value = resp.json().await.unwrap_or_default();
    (status, json["__type"].as_str().unwrap_or("").to_string(), json["message"].as_str().unwrap_or("").to_string())
}

fn signing(key: &Key) -> Signing<'_> {
    Signing {
        key,
        target: TARGET,
        time: SystemTime::now(),
        service: "ecs",
        location: SignatureLocation::Headers,
        unsigned: &[],
    }
}

/// Replaces the value of header `name` in `headers`.
fn with_header(headers: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| (k.clone(), if k.eq_ignore_ascii_case(name) { value.into() } else { v.clone() }))
        .collect()
}

#[tokio::test]
async fn a_signature_must_cover_the_operation() {
    // A request signed without X-Amz-Target (its signature covers content-type, host and
    // x-amz-date) was accepted with any operation put in afterwards: a captured
    // ListServices of cluster prod became DeleteCluster of prod.
    let b = berth().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("prod").send().await.unwrap();
    let body = br#"{"cluster":"prod"}"#;
    let list_services = "AmazonEC2ContainerServiceV20141113.ListServices";
    let delete_cluster = "AmazonEC2ContainerServiceV20141113.DeleteCluster";
    for location in [SignatureLocation::Headers, SignatureLocation::QueryParams] {
        // Presigned, the signature covers only the host.
        let unsigned: &[&'static str] = match location {
            SignatureLocation::Headers => &["x-amz-target"],
            _ => &["x-amz-target", "content-type"],
        };
        let s = Signing { target: list_services, location, unsigned, ..signing(&b.key) };
        let (url, headers) = sign_request(&b.endpoint, body, &s);
        let swapped = with_header(&headers, "x-amz-target", delete_cluster);
        let (status, code, message) = send_full(&url, &swapped, body).await;
        assert_eq!((status, code.as_str()), (400, "IncompleteSignatureException"), "{location:?}: {message}");
        assert!(message.contains("X-Amz-Target"), "the refusal names the header: {message}");
        // Not even the operation it was signed for goes through without it.
        assert_eq!(send(&url, &headers, body).await, (400, "IncompleteSignatureException".into()), "{location:?}");
    }
    let clusters = ecs.describe_clusters().clusters("prod").send().await.unwrap();
    assert_eq!(clusters.clusters()[0].status(), Some("ACTIVE"), "the cluster survived");
    // Signed as the SDKs sign, with the target among the signed headers, it is served.
    let s = Signing { target: list_services, ..signing(&b.key) };
    let (url, headers) = sign_request(&b.endpoint, body, &s);
    assert_eq!(send(&url, &headers, body).await, (200, String::new()));
}

#[tokio::test]
async fn every_x_amz_header_must_be_signed() {
    let b = berth().await;
    let (url, mut headers) = sign_request(&b.endpoint, b"{}", &signing(&b.key));
    headers.push(("x-amz-security-token".into(), "added-after-signing".into()));
    let (status, code, message) = send_full(&url, &headers, b"{}").await;
    assert_eq!((status, code.as_str()), (400, "IncompleteSignatureException"), "{message}");
    assert!(message.contains("X-Amz-Security-Token"), "{message}");
}

#[tokio::test]
async fn a_correctly_signed_raw_request_is_accepted() {
    // The control case: the same machinery as the refusals below, signed correctly.
    let b = berth().await;
    let (url, headers) = sign_request(&b.endpoint, b"{}", &signing(&b.key));
    assert_eq!(send(&url, &headers, b"{}").await, (200, String::new()));
}

#[tokio::test]
async fn no_signature_is_refused() {
    let b = berth().await;
    let headers = vec![
        ("x-amz-target".to_string(), TARGET.to_string()),
        ("content-type".into(), "application/x-amz-json-1.1".into()),
    ];
    let (status, code) = send(&format!("{}/", b.endpoint), &headers, b"{}").await;
    assert_eq!((status, code.as_str()), (400, "MissingAuthenticationTokenException"));
}

#[tokio::test]
async fn unknown_key_and_wrong_secret_are_refused() {
    let b = berth().await;
    let unknown = Key { account: String::new(), id: "AKIAAAAAAAAAAAAAAAAA".into(), secret: b.key.secret.clone() };
    let err = b.ecs_as(&unknown, "us-east-1").await.list_clusters().send().await.unwrap_err();
    assert_eq!(error_code(&err), "UnrecognizedClientException");
    let wrong = Key { secret: "x".repeat(40), ..b.key.clone() };
    let err = b.ecs_as(&wrong, "us-east-1").await.list_clusters().send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidSignatureException");
}

#[tokio::test]
async fn a_tampered_body_is_refused_and_changes_nothing() {
    let b = berth().await;
    let body = br#"{"clusterName":"good"}"#;
    // Signed for CreateCluster with one body, sent with another.
    let (url, headers) = sign_request(&b.endpoint, body, &Signing { target: CREATE_CLUSTER, ..signing(&b.key) });
    let tampered = br#"{"clusterName":"evil"}"#;
    assert_eq!(send(&url, &headers, tampered).await, (400, "InvalidSignatureException".to_string()));
    // A claimed payload hash that does not match the body is refused too.
    let mut claimed = headers.clone();
    claimed.push(("x-amz-content-sha256".into(), "0".repeat(64)));
    let (status, _) = send(&url, &claimed, body).await;
    assert_eq!(status, 400);
    // The untouched request goes through, and only it took effect.
    assert_eq!(send(&url, &headers, body).await.0, 200);
    let names: Vec<String> = b.ecs().await.list_clusters().send().await.unwrap().cluster_arns().to_vec();
    assert_eq!(names.len(), 1);
    assert!(names[0].ends_with("/good"));
}

#[tokio::test]
async fn stale_and_future_timestamps_are_refused() {
    let b = berth().await;
    for offset in [-20 * 60i64, 20 * 60] {
        let time = if offset < 0 {
            SystemTime::now() - Duration::from_secs(offset.unsigned_abs())
        } else {
            SystemTime::now() + Duration::from_secs(offset as u64)
        };
        let s = Signing { time, ..signing(&b.key) };
        let (url, headers) = sign_request(&b.endpoint, b"{}", &s);
        assert_eq!(
            send(&url, &headers, b"{}").await,
            (400, "InvalidSignatureException".to_string()),
            "offset {offset}s"
        );
    }
    // Ten minutes off is within AWS's 15-minute tolerance.
    let s = Signing { time: SystemTime::now() - Duration::from_secs(600), ..signing(&b.key) };
    let (url, headers) = sign_request(&b.endpoint, b"{}", &s);
    assert_eq!(send(&url, &headers, b"{}").await.0, 200);
}

#[tokio::test]
async fn presigned_query_strings_are_verified() {
    let b = berth().await;
    let s = Signing { location: SignatureLocation::QueryParams, ..signing(&b.key) };
    let (url, headers) = sign_request(&b.endpoint, b"{}", &s);
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert_eq!(send(&url, &headers, b"{}").await.0, 200);
    let tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0");
    assert_eq!(send(&tampered, &headers, b"{}").await.0, 400);
    // Expired: signed an hour ago, valid for five minutes.
    let old = Signing { time: SystemTime::now() - Duration::from_secs(3600), ..s };
    let (url, headers) = sign_request(&b.endpoint, b"{}", &old);
    assert_eq!(send(&url, &headers, b"{}").await, (400, "InvalidSignatureException".to_string()));
}

#[tokio::test]
async fn a_signature_for_another_service_is_refused() {
    let b = berth().await;
    let s = Signing { service: "s3", ..signing(&b.key) };
    let (url, headers) = sign_request(&b.endpoint, b"{}", &s);
    assert_eq!(send(&url, &headers, b"{}").await, (400, "InvalidSignatureException".to_string()));
}

#[tokio::test]
async fn new_keys_work_at_once_and_see_only_their_account() {
    let b: Berth = berth().await;
    b.ecs().await.create_cluster().cluster_name("mine").send().await.unwrap();
    let other = b.create_account();
    let theirs = b.ecs_as(&other, "us-east-1").await;
    assert!(theirs.list_clusters().send().await.unwrap().cluster_arns().is_empty());
    // A second key of the first account sees the first account's resources.
    let text = b.command(&["key", "create", "--account", &b.key.account]);
    let get = |p: &str| text.lines().find_map(|l| l.strip_prefix(p)).unwrap().to_string();
    let second = Key { account: b.key.account.clone(), id: get("access key id "), secret: get("secret access key ") };
    let mine = b.ecs_as(&second, "us-east-1").await;
    assert_eq!(mine.list_clusters().send().await.unwrap().cluster_arns().len(), 1);
}
