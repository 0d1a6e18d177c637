//! The OCI distribution API (end-1 … end-14 and the referrers API) as an axum `Router`.
//!
//! Repository names contain slashes, so one catch-all route takes `/v2/*` and [`parse_route`]
//! splits the path on its last well-known segments (`/blobs/`, `/manifests/`, `/tags/list`,
//! `/referrers/`). Each handler authorizes first, then calls storage and metadata.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, StatusCode};

use crate::digest::Digest;
use crate::error::{range_value, ApiError};
use crate::manifest::{MAX_MANIFEST_BYTES, OCI_INDEX};
use crate::meta::{ManifestRecord, Meta};
use crate::names::{Reference, RepoName, Repository};
use crate::storage::UploadId;
use crate::{Access, Action, AuthError, Authorize, OnPush, PullEvent, PutManifestError, Registry};

const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// The `/v2/` routes, ready to be merged into the binary's router.
pub fn router<M: Meta, A: Authorize, H: OnPush>(registry: Arc<Registry<M, A, H>>) -> Router {
    Router::new()
        .route("/v2", any(handle::<M, A, H>))
        .route("/v2/", any(handle::<M, A, H>))
        .route("/v2/{*rest}", any(handle::<M, A, H>))
        .with_state(registry)
}

/// What a `/v2/` path names, before validation of its parts.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Base,
    Tags { name: String },
    Manifest { name: String, reference: String },
    Blob { name: String, digest: String },
    UploadStart { name: String },
    Upload { name: String, id: String },
    Referrers { name: String, digest: String },
}

/// Splits the path after `/v2/` (already percent-decoded) into a [`Route`].
pub fn parse_route(rest: &str) -> Option<Route> {
    if rest.is_empty() {
        return Some(Route::Base);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let name = |k: usize| (n > k).then(|| segs[..n - k].join("/"));
    let tail = |k: usize| &segs[n.saturating_sub(k)..];
    if tail(3).len() == 3 && tail(3)[..2] == ["blobs", "uploads"] {
        let id = segs[n - 1].to_owned();
        let name = name(3)?;
        return Some(if id.is_empty() { Route::UploadStart { name } } else { Route::Upload { name, id } });
    }
    if tail(2) == ["blobs", "uploads"] {
        return Some(Route::UploadStart { name: name(2)? });
    }
    if tail(2) == ["tags", "list"] {
        return Some(Route::Tags { name: name(2)? });
    }
    if n < 3 {
        return None;
    }
    let last = segs[n - 1].to_owned();
    match segs[n - 2] {
        "manifests" => Some(Route::Manifest { name: name(2)?, reference: last }),
        "blobs" => Some(Route::Blob { name: name(2)?, digest: last }),
        "referrers" => Some(Route::Referrers { name: name(2)?, digest: last }),
        _ => None,
    }
}

type Reg<M, A, H> = Arc<Registry<M, A, H>>;
type Result<T, E = ApiError> = std::result::Result<T, E>;

async fn handle<M: Meta, A: Authorize, H: OnPush>(State(reg): State<Reg<M, A, H>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut resp = match dispatch(&reg, &parts, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    resp.headers_mut().insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    resp
}

async fn dispatch<M: Meta, A: Authorize, H: OnPush>(reg: &Reg<M, A, H>, parts: &Parts, body: Body) -> Result<Response> {
    let path = parts.uri.path();
    let rest = path.strip_prefix("/v2").unwrap_or(path);
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let rest = percent_encoding::percent_decode_str(rest).decode_utf8().map_err(|_| ApiError::name_invalid())?;
    let route = parse_route(&rest).ok_or_else(ApiError::not_found)?;
    let m = &parts.method;
    let cx = Cx { reg, parts };
    match route {
        Route::Base if m == Method::GET || m == Method::HEAD => {
            cx.authorize(None, Action::Pull).await?;
            Ok(([(CONTENT_TYPE, "application/json")], "{}").into_response())
        }
        Route::Base => Err(ApiError::unsupported()),
        Route::Tags { name } if m == Method::GET => cx.tags_list(&name).await,
        Route::Manifest { name, reference } => match *m {
            Method::GET | Method::HEAD => cx.get_manifest(&name, &reference).await,
            Method::PUT => cx.put_manifest(&name, &reference, body).await,
            Method::DELETE => cx.delete_manifest(&name, &reference).await,
            _ => Err(ApiError::unsupported()),
        },
        Route::Blob { name, digest } => match *m {
            Method::GET | Method::HEAD => cx.get_blob(&name, &digest).await,
            Method::DELETE => cx.delete_blob(&name, &digest).await,
            _ => Err(ApiError::unsupported()),
        },
        Route::UploadStart { name } if m == Method::POST => cx.start_upload(&name, body).await,
        Route::Upload { name, id } => match *m {
            Method::GET => cx.upload_status(&name, &id).await,
            Method::PATCH => cx.patch_upload(&name, &id, body).await,
            Method::PUT => cx.put_upload(&name, &id, body).await,
            Method::DELETE => cx.cancel_upload(&name, &id).await,
            _ => Err(ApiError::unsupported()),
        },
        Route::Referrers { name, digest } if m == Method::GET => cx.referrers(&name, &digest).await,
        _ => Err(ApiError::unsupported()),
    }
}

/// One request's context.
struct Cx<'a, M, A, H> {
    reg: &'a Reg<M, A, H>,
    parts: &'a Parts,
}

impl<M: Meta, A: Authorize, H: OnPush> Cx<'_, M, A, H> {
    async fn authorize(&self, repository: Option<&RepoName>, action: Action) -> Result<crate::Grant> {
        self.reg.auth.authorize(self.parts, Access { repository, action }).await.map_err(|e| match e {
            AuthError::Unauthorized { mut challenges } => {
                if challenges.is_empty() {
                    challenges.push(format!("Basic realm=\"{}\"", self.reg.realm));
                }
                let mut err = ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "authentication required");
                for challenge in challenges {
                    match HeaderValue::try_from(challenge) {
                        Ok(v) => err = err.with_header(http::header::WWW_AUTHENTICATE, v),
                        Err(e) => return ApiError::internal(e),
                    }
                }
                err
            }
            AuthError::Denied(m) => ApiError::new(StatusCode::FORBIDDEN, "DENIED", m),
        })
    }

    /// Validates the name, then authorizes: an invalid name is refused before anything else.
    async fn repo(&self, name: &str, action: Action) -> Result<Repository> {
        let name = RepoName::parse(name).map_err(|_| ApiError::name_invalid())?;
        let grant = self.authorize(Some(&name), action).await?;
        Ok(Repository { namespace: grant.namespace, name: grant.repository.unwrap_or(name) })
    }

    fn query(&self) -> Result<HashMap<String, String>> {
        Query::try_from_uri(&self.parts.uri)
            .map(|Query(q)| q)
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "UNSUPPORTED", "malformed query string"))
    }

    fn header(&self, name: HeaderName) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    async fn tags_list(&self, name: &str) -> Result<Response> {
        let repo = self.repo(name, Action::Pull).await?;
        let q = self.query()?;
        let tags = self.reg.meta.tags(&repo).await?.ok_or_else(ApiError::name_unknown)?;
        let n = match q.get("n") {
            Some(n) => Some(n.parse::<usize>().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "PAGINATION_NUMBER_INVALID",
                    "invalid number of results requested",
                )
            })?),
            None => None,
        };
        let after = q.get("last");
        let mut rest = tags.iter().map(|t| t.as_str()).filter(|t| after.is_none_or(|l| *t > l.as_str()));
        let page: Vec<&str> = rest.by_ref().take(n.unwrap_or(usize::MAX)).collect();
        let mut headers = vec![];
        if let (Some(n), Some(last), true) = (n, page.last(), rest.next().is_some()) {
            headers.push((http::header::LINK, format!("</v2/{name}/tags/list?n={n}&last={last}>; rel=\"next\"")));
        }
        let body = serde_json::json!({"name": name, "tags": page}).to_string();
        respond(StatusCode::OK, headers, json_body(body))
    }

    async fn resolve(&self, repo: &Repository, reference: &str) -> Result<Option<ManifestRecord>> {
        let digest = match Reference::parse(reference).map_err(|_| ApiError::manifest_unknown())? {
            Reference::Digest(d) => d,
            Reference::Tag(t) => match self.reg.meta.resolve_tag(repo, &t).await? {
                Some(d) => d,
                None => return Ok(None),
            },
        };
        Ok(self.reg.meta.manifest(repo, &digest).await?)
    }

    async fn get_manifest(&self, name: &str, reference: &str) -> Result<Response> {
        let repo = self.repo(name, Action::Pull).await?;
        let record = self.resolve(&repo, reference).await?.ok_or_else(ApiError::manifest_unknown)?;
        let bytes = self.reg.store.read(&record.digest).await?.ok_or_else(ApiError::manifest_unknown)?;
        if self.parts.method == Method::GET {
            self.reg.hooks.on_pull(PullEvent { repository: repo, digest: record.digest.clone() }).await;
        }
        let headers = vec![
            (CONTENT_TYPE, record.media_type.clone()),
            (CONTENT_LENGTH, bytes.len().to_string()),
            (DOCKER_CONTENT_DIGEST, record.digest.to_string()),
        ];
        let body = if self.parts.method == Method::HEAD { Body::empty() } else { Body::from(bytes) };
        respond(StatusCode::OK, headers, body)
    }

    async fn put_manifest(&self, name: &str, reference: &str, body: Body) -> Result<Response> {
        let repo = self.repo(name, Action::Push).await?;
        let reference = Reference::parse(reference).map_err(|e| match e {
            crate::names::NameError::Digest(e) => ApiError::digest_invalid(e.to_string()),
            _ => ApiError::manifest_invalid("invalid tag"),
        })?;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                format!("manifest exceeds {MAX_MANIFEST_BYTES} bytes"),
            )
        };
        if self.header(CONTENT_LENGTH).and_then(|l| l.parse::<usize>().ok()).is_some_and(|l| l > MAX_MANIFEST_BYTES) {
            return Err(too_large());
        }
        let bytes = axum::body::to_bytes(body, MAX_MANIFEST_BYTES).await.map_err(|_| too_large())?;
        let (expected, tag) = match reference {
            Reference::Digest(d) => (Some(d), None),
            Reference::Tag(t) => (None, Some(t)),
        };
        let record =
            self.reg.put_manifest(repo, tag, expected.as_ref(), self.header(CONTENT_TYPE), bytes).await.map_err(
                |e| match e {
                    PutManifestError::DigestMismatch(_) => {
                        ApiError::digest_invalid("manifest does not match the digest in the URL")
                    }
                    PutManifestError::Invalid(m) => ApiError::manifest_invalid(m),
                    PutManifestError::BlobsUnknown(d) | PutManifestError::ManifestsUnknown(d) => {
                        manifest_blob_unknown(d.first())
                    }
                    PutManifestError::Meta(e) => e.into(),
                    PutManifestError::Storage(e) => e.into(),
                },
            )?;
        let digest = record.digest;
        let mut headers =
            vec![(LOCATION, format!("/v2/{name}/manifests/{digest}")), (DOCKER_CONTENT_DIGEST, digest.to_string())];
        if let Some(s) = record.subject {
            headers.push((OCI_SUBJECT, s.to_string()));
        }
        respond(StatusCode::CREATED, headers, Body::empty())
    }

    async fn delete_manifest(&self, name: &str, reference: &str) -> Result<Response> {
        let repo = self.repo(name, Action::Delete).await?;
        let deleted = match Reference::parse(reference).map_err(|_| ApiError::manifest_unknown())? {
            Reference::Digest(d) => self.reg.meta.delete_manifest(&repo, &d).await?,
            Reference::Tag(t) => self.reg.meta.delete_tag(&repo, &t).await?,
        };
        if !deleted {
            return Err(ApiError::manifest_unknown());
        }
        respond(StatusCode::ACCEPTED, vec![], Body::empty())
    }

    async fn get_blob(&self, name: &str, digest: &str) -> Result<Response> {
        let repo = self.repo(name, Action::Pull).await?;
        let digest = parse_digest(digest)?;
        if !self.reg.meta.blob_linked(&repo, &digest).await? {
            return Err(ApiError::blob_unknown());
        }
        let size = self.reg.store.size(&digest).await?.ok_or_else(ApiError::blob_unknown)?;
        let mut headers = vec![
            (CONTENT_TYPE, "application/octet-stream".to_owned()),
            (DOCKER_CONTENT_DIGEST, digest.to_string()),
            (http::header::ACCEPT_RANGES, "bytes".to_owned()),
        ];
        let (status, start, len) = match self.header(RANGE) {
            Some(r) => {
                let (start, end) = parse_byte_range(r, size).ok_or_else(|| {
                    ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UNKNOWN", "range not satisfiable")
                        .with_header(CONTENT_RANGE, header_value(format!("bytes */{size}")))
                })?;
                headers.push((CONTENT_RANGE, format!("bytes {start}-{end}/{size}")));
                (StatusCode::PARTIAL_CONTENT, start, end + 1 - start)
            }
            None => (StatusCode::OK, 0, size),
        };
        headers.push((CONTENT_LENGTH, len.to_string()));
        if self.parts.method == Method::HEAD {
            return respond(status, headers, Body::empty());
        }
        let stream = self.reg.store.stream_blob(&digest, start, len).await?.ok_or_else(ApiError::blob_unknown)?;
        respond(status, headers, Body::from_stream(stream))
    }

    async fn delete_blob(&self, name: &str, digest: &str) -> Result<Response> {
        let repo = self.repo(name, Action::Delete).await?;
        let digest = parse_digest(digest)?;
        if !self.reg.meta.unlink_blob(&repo, &digest).await? {
            return Err(ApiError::blob_unknown());
        }
        respond(StatusCode::ACCEPTED, vec![(DOCKER_CONTENT_DIGEST, digest.to_string())], Body::empty())
    }

    async fn start_upload(&self, name: &str, body: Body) -> Result<Response> {
        let repo = self.repo(name, Action::Push).await?;
        let q = self.query()?;
        if let (Some(mount), Some(from)) = (q.get("mount"), q.get("from")) {
            if let Some(digest) = self.try_mount(&repo, mount, from).await? {
                return blob_created(name, &digest);
            }
        }
        let owner = owner_key(&repo);
        let id = self.reg.store.start_upload(&owner).await?;
        let Some(digest) = q.get("digest") else {
            return upload_accepted(StatusCode::ACCEPTED, name, id, 0);
        };
        // Monolithic upload: the body is the whole blob.
        let result = async {
            let digest = parse_digest(digest)?;
            self.reg.store.append(id, &owner, None, self.content_length(), body.into_data_stream()).await?;
            self.reg.store.complete(id, &owner, &digest).await?;
            self.reg.meta.link_blob(&repo, &digest).await?;
            Ok(digest)
        }
        .await;
        match result {
            Ok(digest) => blob_created(name, &digest),
            Err(e) => {
                // Nothing of a failed single-request upload is kept.
                let _ = self.reg.store.cancel(id, &owner).await;
                Err(e)
            }
        }
    }

    /// Links `mount` from repository `from` if the caller may pull it there and it exists;
    /// `None` means "not mounted", and the caller starts an ordinary upload instead.
    async fn try_mount(&self, repo: &Repository, mount: &str, from: &str) -> Result<Option<Digest>> {
        let (Ok(digest), Ok(from)) = (Digest::parse(mount), RepoName::parse(from)) else {
            return Ok(None);
        };
        let Ok(grant) = self.authorize(Some(&from), Action::Pull).await else {
            return Ok(None);
        };
        let source = Repository { namespace: grant.namespace, name: grant.repository.unwrap_or(from) };
        let _reachable = self.reg.store.collection_lock().read().await;
        if !self.reg.meta.blob_linked(&source, &digest).await? || !self.reg.store.touch(&digest).await? {
            return Ok(None);
        }
        self.reg.meta.link_blob(repo, &digest).await?;
        Ok(Some(digest))
    }

    async fn upload_status(&self, name: &str, id: &str) -> Result<Response> {
        let repo = self.repo(name, Action::Push).await?;
        let id = UploadId::parse(id).ok_or_else(ApiError::upload_unknown)?;
        let offset = self.reg.store.upload_offset(id, &owner_key(&repo)).await?;
        upload_accepted(StatusCode::NO_CONTENT, name, id, offset)
    }

    async fn patch_upload(&self, name: &str, id: &str, body: Body) -> Result<Response> {
        let repo = self.repo(name, Action::Push).await?;
        let id = UploadId::parse(id).ok_or_else(ApiError::upload_unknown)?;
        let (start, len) = self.chunk_range()?;
        let offset = self.reg.store.append(id, &owner_key(&repo), start, len, body.into_data_stream()).await?;
        upload_accepted(StatusCode::ACCEPTED, name, id, offset)
    }

    async fn put_upload(&self, name: &str, id: &str, body: Body) -> Result<Response> {
        let repo = self.repo(name, Action::Push).await?;
        let id = UploadId::parse(id).ok_or_else(ApiError::upload_unknown)?;
        let q = self.query()?;
        let digest =
            parse_digest(q.get("digest").ok_or_else(|| ApiError::digest_invalid("digest parameter missing"))?)?;
        let owner = owner_key(&repo);
        let (start, len) = self.chunk_range()?;
        self.reg.store.append(id, &owner, start, len, body.into_data_stream()).await?;
        self.reg.store.complete(id, &owner, &digest).await?;
        self.reg.meta.link_blob(&repo, &digest).await?;
        blob_created(name, &digest)
    }

    async fn cancel_upload(&self, name: &str, id: &str) -> Result<Response> {
        let repo = self.repo(name, Action::Push).await?;
        let id = UploadId::parse(id).ok_or_else(ApiError::upload_unknown)?;
        self.reg.store.cancel(id, &owner_key(&repo)).await?;
        respond(StatusCode::NO_CONTENT, vec![], Body::empty())
    }

    async fn referrers(&self, name: &str, digest: &str) -> Result<Response> {
        let repo = self.repo(name, Action::Pull).await?;
        let digest = parse_digest(digest)?;
        let q = self.query()?;
        let filter = q.get("artifactType");
        let manifests: Vec<serde_json::Value> = self
            .reg
            .meta
            .referrers(&repo, &digest)
            .await?
            .into_iter()
            .filter(|m| filter.is_none_or(|f| m.artifact_type.as_ref() == Some(f)))
            .map(|m| {
                let mut d = serde_json::json!({"mediaType": m.media_type, "digest": m.digest, "size": m.size});
                if let Some(a) = m.artifact_type {
                    d["artifactType"] = a.into();
                }
                if let Some(a) = m.annotations {
                    d["annotations"] = a.into();
                }
                d
            })
            .collect();
        let body = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).to_string();
        let mut headers = vec![(CONTENT_TYPE, OCI_INDEX.to_owned())];
        if filter.is_some() {
            headers.push((OCI_FILTERS_APPLIED, "artifactType".to_owned()));
        }
        respond(StatusCode::OK, headers, Body::from(body))
    }

    fn content_length(&self) -> Option<u64> {
        self.header(CONTENT_LENGTH).and_then(|l| l.parse().ok())
    }

    /// The chunk's start and length from `Content-Range` (else its length from
    /// `Content-Length`, if any).
    fn chunk_range(&self) -> Result<(Option<u64>, Option<u64>)> {
        let Some(range) = self.header(CONTENT_RANGE) else {
            return Ok((None, self.content_length()));
        };
        let (start, end) =
            parse_content_range(range).ok_or_else(|| ApiError::upload_invalid("malformed Content-Range"))?;
        if end < start {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UPLOAD_INVALID",
                "invalid Content-Range",
            ));
        }
        Ok((Some(start), Some(end - start + 1)))
    }
}

fn manifest_blob_unknown(digest: Option<&Digest>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN", "manifest references an unknown blob or manifest")
        .with_detail(serde_json::json!({ "digest": digest }))
}

fn parse_digest(s: &str) -> Result<Digest> {
    Digest::parse(s).map_err(|e| ApiError::digest_invalid(e.to_string()))
}

/// The key an upload session is owned by: its repository in its namespace. Public so that
/// an embedder's own upload API (ECR's layer uploads) binds sessions the same way.
pub fn owner_key(repo: &Repository) -> String {
    serde_json::to_string(repo).expect("a repository serialises")
}

/// `start-end`, optionally as `bytes=start-end` or `bytes start-end/total`.
fn parse_content_range(s: &str) -> Option<(u64, u64)> {
    let s = s.trim();
    let s = s.strip_prefix("bytes=").or_else(|| s.strip_prefix("bytes ")).unwrap_or(s);
    let s = s.split('/').next()?;
    let (a, b) = s.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// A single `bytes=` range of a blob of `size` bytes, as inclusive bounds.
fn parse_byte_range(s: &str, size: u64) -> Option<(u64, u64)> {
    let (a, b) = s.trim().strip_prefix("bytes=")?.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (size.checked_sub(n.min(size))?, size.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, size.checked_sub(1)?),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(size.checked_sub(1)?)),
    };
    (start <= end && start < size).then_some((start, end))
}

fn header_value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn json_body(s: String) -> Body {
    Body::from(Bytes::from(s))
}

fn respond(status: StatusCode, headers: Vec<(HeaderName, String)>, body: Body) -> Result<Response> {
    let mut resp = Response::builder().status(status);
    for (k, v) in headers {
        resp = resp.header(k, HeaderValue::try_from(v).map_err(ApiError::internal)?);
    }
    let is_json = resp.headers_ref().is_some_and(|h| !h.contains_key(CONTENT_TYPE)) && status == StatusCode::OK;
    if is_json {
        resp = resp.header(CONTENT_TYPE, "application/json");
    }
    resp.body(body).map_err(ApiError::internal)
}

fn blob_created(name: &str, digest: &Digest) -> Result<Response> {
    respond(
        StatusCode::CREATED,
        vec![
            (LOCATION, format!("/v2/{name}/blobs/{digest}")),
            (DOCKER_CONTENT_DIGEST, digest.to_string()),
            (CONTENT_LENGTH, "0".to_owned()),
        ],
        Body::empty(),
    )
}

fn upload_accepted(status: StatusCode, name: &str, id: UploadId, offset: u64) -> Result<Response> {
    let range = range_value(offset).to_str().unwrap_or("0-0").to_owned();
    respond(
        status,
        vec![
            (LOCATION, format!("/v2/{name}/blobs/uploads/{id}")),
            (RANGE, range),
            (DOCKER_UPLOAD_UUID, id.to_string()),
            (CONTENT_LENGTH, "0".to_owned()),
        ],
        Body::empty(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let s = |x: &str| x.to_owned();
        assert_eq!(parse_route(""), Some(Route::Base));
        assert_eq!(parse_route("a/b/tags/list"), Some(Route::Tags { name: s("a/b") }));
        assert_eq!(parse_route("a/manifests/latest"), Some(Route::Manifest { name: s("a"), reference: s("latest") }));
        assert_eq!(parse_route("a/b/blobs/sha256:x"), Some(Route::Blob { name: s("a/b"), digest: s("sha256:x") }));
        assert_eq!(parse_route("a/blobs/uploads/"), Some(Route::UploadStart { name: s("a") }));
        assert_eq!(parse_route("a/blobs/uploads"), Some(Route::UploadStart { name: s("a") }));
        assert_eq!(parse_route("a/blobs/uploads/u1"), Some(Route::Upload { name: s("a"), id: s("u1") }));
        assert_eq!(parse_route("a/referrers/sha256:x"), Some(Route::Referrers { name: s("a"), digest: s("sha256:x") }));
        // A repository may itself be called "blobs" or "manifests".
        assert_eq!(
            parse_route("manifests/manifests/x"),
            Some(Route::Manifest { name: s("manifests"), reference: s("x") })
        );
        assert_eq!(parse_route("blobs/uploads/"), None);
        assert_eq!(parse_route("a/tags"), None);
        assert_eq!(parse_route("manifests/x"), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_content_range("0-9"), Some((0, 9)));
        assert_eq!(parse_content_range("bytes 10-19/100"), Some((10, 19)));
        assert_eq!(parse_content_range("x"), None);
        assert_eq!(parse_byte_range("bytes=0-3", 10), Some((0, 3)));
        assert_eq!(parse_byte_range("bytes=5-", 10), Some((5, 9)));
        assert_eq!(parse_byte_range("bytes=-3", 10), Some((7, 9)));
        assert_eq!(parse_byte_range("bytes=8-100", 10), Some((8, 9)));
        assert_eq!(parse_byte_range("bytes=10-", 10), None);
        assert_eq!(parse_byte_range("bytes=0-0", 0), None);
    }
}
