//! Berth's AWS protocol edge. Every AWS API request arrives here: it is authenticated
//! with SigV4, dispatched on its `X-Amz-Target`, decoded into the service's wire shapes,
//! handed to the control plane in domain terms, and answered in AWS's wire format.
//!
//! Layering: this crate calls `control-plane` and holds no rule of its own beyond wire
//! translation and authentication: each service's module decodes, calls one operation of
//! `cp.<service>()`, and encodes. The control plane never sees a request or response
//! shape, a header or a status code. Errors are rendered here and logged once, here.

mod agent_channel;
mod authz;
mod ec2;
pub mod ecr;
mod ecs;
/// Berth's ECS extension operations, for `berth`'s commands that send them.
pub mod ecs_extensions {
    pub use crate::ecs::tasks::INTERRUPT_OPERATION;
    pub use crate::ecs::TARGET_PREFIX;
}
mod elbv2;
pub mod error;
mod events;
mod iam;
mod logs;
mod query;
pub mod replica;
mod secretsmanager;
pub mod sigv4;
mod ssm;
mod sts;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http::{HeaderMap, HeaderValue, Method, Uri};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use time::OffsetDateTime;
use tracing::Instrument;

use control_plane::Caller;
use control_plane::ControlPlane;
use model::{Region, Scope};

pub use error::ApiError;

/// The largest request body accepted. Task definitions are limited to 64 KiB; this leaves
/// room for any legitimate request and bounds what one request can make us buffer.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct Api {
    pub control: Arc<ControlPlane>,
    /// The image registry behind `/v2/`, which the ECR API reads and writes too; `None`
    /// on a follower replica, which passes ECR's requests to the leader.
    pub registry: Option<Arc<ecr::registry::EcrRegistry>>,
    /// How clients reach this server, for the addresses handed out to them.
    pub public: PublicAddress,
}

/// How clients reach this server: whether it serves TLS, and the `host[:port]` that the
/// addresses handed out to clients (repository URIs, the registry's proxy endpoint and
/// token realm, DiscoverPollEndpoint) name instead of the request's `Host`, for hosts that
/// reach Berth under another name (`--advertise-host`).
#[derive(Debug, Clone, Default)]
pub struct PublicAddress {
    pub tls: bool,
    pub advertise_host: Option<String>,
}

impl PublicAddress {
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The `host[:port]` to hand out to the client of a request with `headers`.
    pub fn host<'a>(&'a self, headers: &'a HeaderMap) -> &'a str {
        match &self.advertise_host {
            Some(h) => h,
            None => headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1"),
        }
    }
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

/// The router for `POST /` carrying AWS JSON 1.1 requests, the agent channel, and the
/// registry's `/v2/`.
pub fn router(api: Api) -> Router {
    let registry = api.registry.clone().map(registry::http::router);
    let app = Router::new()
        .route("/", post(handle).fallback(unsupported_method))
        .route(agent_protocol::CONNECT_PATH, axum::routing::get(agent_channel::connect))
        .route(ecr::registry::TOKEN_PATH, axum::routing::get(ecr::registry::token))
        .layer(DefaultBodyLimit::disable())
        .with_state(api);
    match registry {
        Some(registry) => app.merge(registry),
        None => app,
    }
}

impl Api {
    /// The registry, which only the leading replica serves.
    pub(crate) fn registry(&self) -> Result<&Arc<ecr::registry::EcrRegistry>, ApiError> {
        self.registry.as_ref().ok_or_else(|| control_plane::Error::NotLeader.into())
    }
}

async fn unsupported_method() -> ApiError {
    ApiError::bad_request(
        "UnknownOperationException",
        "AWS API requests are POST requests to / with an X-Amz-Target header, or a form-encoded Action.",
    )
}

fn request_id() -> String {
    let b: [u8; 16] = rand::thread_rng().gen();
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

async fn handle(State(api): State<Api>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let origin = Origin {
        source: parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip()),
        secure: api.public.tls,
    };
    let id = request_id();
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let span = tracing::info_span!("aws_request", request_id = %id, target = %target);
    // The query protocol (ELBv2, EC2) has no X-Amz-Target: a form names the action.
    if target.is_empty() && query::is_form(&headers) {
        let request = query::Request { id: &id, method: &method, uri: &uri, headers: &headers, origin };
        let mut response = query::handle(&api, request, body).instrument(span).await;
        if let Ok(v) = HeaderValue::from_str(&id) {
            response.headers_mut().insert("x-amzn-requestid", v);
        }
        return response;
    }
    let mut response = async {
        let result = process(&api, &method, &uri, &headers, body, &target, origin).await;
        match result {
            Ok(r) => r,
            Err(e) => {
                if e.is_server_error() {
                    tracing::error!(code = e.code, "request failed");
                } else {
                    tracing::info!(code = e.code, error = %e.message, "request refused");
                }
                e.into_response()
            }
        }
    }
    .instrument(span)
    .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    response
}

/// ECR's layer parts (up to 20 MiB, base64 in JSON) and image manifests (up to 4 MiB,
/// escaped in JSON) need more room than any other request.
///
/// A `PutLogEvents` batch holds up to 1 MiB of messages, which JSON escaping can make
/// six times larger (`\u0000`); its batch rules are checked on the decoded messages.
fn body_limit(target: &str) -> usize {
    if target == concat!("Logs_20140328", ".PutLogEvents") {
        return 7 * 1024 * 1024;
    }
    match target.strip_prefix(ecr::TARGET_PREFIX).and_then(|op| op.strip_prefix('.')) {
        Some("UploadLayerPart") => 28 * 1024 * 1024,
        Some("PutImage") => 10 * 1024 * 1024,
        _ => MAX_BODY_BYTES,
    }
}

/// Reads a request body of at most `limit` bytes. Call it only once the request's
/// signature headers have been checked ([`authenticate_headers`]), so that no unsigned
/// request makes the server buffer anything. A body over the limit is left unread: the
/// server (`berth`'s `serve`) drains what the client still sends and closes the
/// connection after the answer.
async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let too_large = || {
        ApiError::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "SerializationException",
            format!("The request body is larger than {limit} bytes."),
        )
    };
    if axum::body::HttpBody::size_hint(&body).exact().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::serialization(format!("The request body could not be read: {e}"))),
    }
}

async fn process(
    api: &Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: axum::body::Body,
    target: &str,
    origin: Origin,
) -> Result<Response, ApiError> {
    let (prefix, operation) = target.split_once('.').unwrap_or((target, ""));
    let service = match prefix {
        ecs::TARGET_PREFIX => "ecs",
        ecr::TARGET_PREFIX => "ecr",
        logs::TARGET_PREFIX => "logs",
        ssm::TARGET_PREFIX => "ssm",
        secretsmanager::TARGET_PREFIX => "secretsmanager",
        events::TARGET_PREFIX => "events",
        "" => {
            return Err(ApiError::bad_request(
                "UnknownOperationException",
                "The request has no X-Amz-Target header naming an operation.",
            ))
        }
        _ => {
            return Err(ApiError::bad_request(
                "UnknownOperationException",
                format!("Unknown service target '{prefix}'."),
            ))
        }
    };
    let pending = authenticate_headers(api, method, uri, headers, service)?;
    let body = read_body(body, body_limit(target)).await?;
    let caller = pending.verify(method, uri, headers, &body)?;
    if !caller.is_root() {
        let json = authz::Body::parse(&body);
        let mut access = match service {
            "ecs" => authz::ecs(operation, &json, &caller.scope),
            "ecr" => authz::ecr(operation, &json, &caller.scope),
            "ssm" => authz::ssm(operation, &json, &caller.scope),
            "events" => authz::events(operation, &json, &caller.scope),
            "secretsmanager" => {
                let resolve = |id: &str| api.control.secrets().secret_arn(&caller.scope, id);
                authz::secretsmanager(operation, &json, &caller.scope, &resolve)
            }
            _ => authz::logs(operation, &json, &caller.scope),
        };
        origin.add_to(&mut access);
        api.control.iam().authorize(&caller, access)?;
    }
    // Repository URIs, the registry's proxy endpoint and DiscoverPollEndpoint name the
    // address the client reached us on, or the advertised one.
    let host = api.public.host(headers);
    match service {
        "ecs" => ecs::dispatch(api, &caller, operation, &body, &format!("{}://{host}", api.public.scheme())).await,
        "ecr" => ecr::dispatch(api, &caller, operation, &body, host).await,
        "logs" => logs::dispatch(api, &caller, operation, &body).await,
        "ssm" => ssm::dispatch(api, &caller, operation, &body).await,
        "secretsmanager" => secretsmanager::dispatch(api, &caller, operation, &body).await,
        "events" => events::dispatch(api, &caller, operation, &body).await,
        _ => unreachable!("services are matched above"),
    }
}

/// A request whose signature parameters, key, time and signed headers check out: all
/// that can be known before its body is read. [`Authenticating::verify`] finishes the
/// check with the body.
pub(crate) struct Authenticating {
    parsed: sigv4::Parsed,
    grant: control_plane::iam::sessions::KeyGrant,
}

/// The session token of temporary credentials: the `X-Amz-Security-Token` header, or the
/// query parameter of a presigned request.
fn session_token<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<std::borrow::Cow<'a, str>> {
    if let Some(v) = headers.get("x-amz-security-token").and_then(|v| v.to_str().ok()) {
        return Some(v.into());
    }
    let value = uri.query()?.split('&').find_map(|p| p.strip_prefix("X-Amz-Security-Token="))?;
    Some(percent_encoding::percent_decode_str(value).decode_utf8_lossy())
}

/// The first half of authentication, on the headers alone: the request must be signed
/// (header or presigned query) for `service`, with a known key, at a current time, and
/// its signature must cover the headers that say what it does. Only a request that
/// passes has its body read.
pub(crate) fn authenticate_headers(
    api: &Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    service: &str,
) -> Result<Authenticating, ApiError> {
    let req = sigv4::SignedRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers,
        body: b"",
    };
    let parsed = sigv4::parse(&req)?;
    if parsed.credential.service != service {
        return Err(sigv4::AuthError::WrongService { expected: service.into() }.into());
    }
    let token = session_token(uri, headers);
    let grant = match api.control.iam().key_grant(&parsed.credential.access_key_id, token.as_deref())? {
        Ok(grant) => grant,
        Err(control_plane::iam::sessions::KeyRefusal::Expired) => return Err(sigv4::AuthError::ExpiredToken.into()),
        Err(control_plane::iam::sessions::KeyRefusal::Unknown) => return Err(sigv4::AuthError::UnknownKey.into()),
    };
    parsed.check_time(OffsetDateTime::now_utc())?;
    Ok(Authenticating { parsed, grant })
}

impl Authenticating {
    /// The second half: the signature over the whole request, body included.
    pub(crate) fn verify(
        self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Caller, ApiError> {
        let req = sigv4::SignedRequest {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            headers,
            body,
        };
        self.parsed.verify(&req, &self.grant.secret, OffsetDateTime::now_utc())?;
        let region = Region::parse(&self.parsed.credential.region).map_err(|_| {
            ApiError::bad_request(
                "InvalidSignatureException",
                format!("'{}' is not a valid region in the credential scope.", self.parsed.credential.region),
            )
        })?;
        Ok(Caller { scope: Scope { account: self.grant.account, region }, principal: self.grant.principal })
    }
}

/// Authenticates a request whose body is already at hand (the agent channel's upgrade
/// has none).
pub(crate) fn authenticate(
    api: &Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    service: &str,
) -> Result<Caller, ApiError> {
    authenticate_headers(api, method, uri, headers, service)?.verify(method, uri, headers, body)
}

/// Decodes a request body into its input shape. Wrong types, unknown members and
/// malformed JSON become a `SerializationException` naming the member at fault.
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    // The plain decoder first: tracking the path costs a third of decoding a large body
    // (a `PutLogEvents` batch of 10,000 events), and is only needed to word a failure.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            ApiError::serialization(format!("The request body is not valid JSON for this operation: {inner}"))
        } else {
            ApiError::serialization(format!("Invalid value at '{path}': {inner}"))
        }
    })
}

/// A 200 response carrying `value` as AWS JSON.
pub(crate) fn ok<T: Serialize>(value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("response shapes always serialize");
    let mut r = (http::StatusCode::OK, body).into_response();
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/x-amz-json-1.1"));
    r
}

/// The dispatch table of the query-protocol services: the service (from the credential
/// scope) and the `Action` choose the module that decodes, calls and encodes.
/// Where a request came from, as IAM's global condition keys say it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    /// The client's address (`aws:SourceIp`); `None` when the server did not say.
    source: Option<std::net::IpAddr>,
    /// Whether it came over TLS (`aws:SecureTransport`).
    secure: bool,
}

impl Origin {
    fn add_to(self, access: &mut control_plane::iam::authz::Access) {
        if let Some(ip) = self.source {
            access.context.push(("aws:SourceIp".into(), vec![ip.to_string()]));
        }
        // Every principal's prepared keys say "false" already (see `iam::authz`).
        if self.secure {
            access.context.push(("aws:SecureTransport".into(), vec!["true".into()]));
        }
    }
}

async fn dispatch_query(
    api: &Api,
    caller: &Caller,
    service: query::Service,
    action: &str,
    params: &query::Params,
    request_id: &str,
    origin: Origin,
) -> Result<Response, ApiError> {
    // Who one is, and one's own session, need no permission in AWS; AssumeRole decides
    // with the role's trust policy.
    let exempt =
        service == query::Service::Sts && matches!(action, "GetCallerIdentity" | "GetSessionToken" | "AssumeRole");
    if !caller.is_root() && !exempt {
        let prefix = match service {
            query::Service::Elbv2 => "elasticloadbalancing",
            query::Service::Ec2 => "ec2",
            query::Service::Sts => "sts",
            query::Service::Iam => "iam",
        };
        let account = &caller.scope.account;
        let entity_arn = |kind, name: &str| api.control.iam().entity_arn(account, kind, name);
        let mut access = authz::query(prefix, action, params, &caller.scope, &entity_arn);
        origin.add_to(&mut access);
        api.control.iam().authorize(caller, access)?;
    }
    match service {
        query::Service::Elbv2 => elbv2::dispatch(api, caller, action, params, request_id).await,
        query::Service::Ec2 => ec2::dispatch(api, caller, action, params, request_id).await,
        query::Service::Sts => sts::dispatch(api, caller, action, params, request_id).await,
        query::Service::Iam => iam::dispatch(api, caller, action, params, request_id).await,
    }
}
