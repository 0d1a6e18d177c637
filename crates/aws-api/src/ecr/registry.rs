//! Wires the image registry into the endpoint: ECR tokens authenticate `docker login`,
//! pushes and pulls ([`TokenAuth`], and the token endpoint of Docker's token flow). What
//! the registry does with ECR's images (tag immutability, records of pushes and pulls,
//! scans, which repository a path names) is ECR's registry service in
//! `control_plane::ecr::registry`.

use std::sync::Arc;

use base64::Engine;
use registry::{Access, Action, AuthError, Authorize, Grant, Namespace};

use control_plane::ControlPlane;

/// The query parameter of a layer download URL (`GetDownloadUrlForLayer`) that carries
/// its signed credential.
pub const LAYER_URL_CREDENTIAL: &str = "X-Berth-Credential";

/// Where the registry's token endpoint (Docker's Bearer token flow) answers.
pub const TOKEN_PATH: &str = "/_berth/registry/token";

/// Authenticates registry requests with the tokens of `GetAuthorizationToken`, sent by
/// Docker as Basic credentials `AWS:<token>`, or as a Bearer token from [`TOKEN_PATH`]
/// when the client follows the token flow; the control plane decides which account's
/// repository a path names (`registry_target`).
pub struct TokenAuth {
    control: Arc<ControlPlane>,
    public: crate::PublicAddress,
}

impl TokenAuth {
    /// The grant of a layer download URL: valid only for a GET or HEAD of exactly the blob
    /// and repository it was issued for, so it opens nothing else.
    fn layer_url_grant(
        &self,
        parts: &http::request::Parts,
        access: Access<'_>,
        credential: &str,
    ) -> Option<control_plane::auth::TokenGrant> {
        if !(parts.method == http::Method::GET || parts.method == http::Method::HEAD) || access.action != Action::Pull {
            return None;
        }
        let rest = parts.uri.path().strip_prefix("/v2/")?;
        let rest = percent_encoding::percent_decode_str(rest).decode_utf8().ok()?;
        let registry::http::Route::Blob { name, digest } = registry::http::parse_route(&rest)? else {
            return None;
        };
        if access.repository.map(|r| r.as_str()) != Some(name.as_str()) {
            return None;
        }
        self.control.credentials.verify_layer_url_token(credential, &name, &digest, unix_now()?).ok().flatten()
    }

    /// The grant of the request's credentials: Basic `AWS:<token>`, or a Bearer token
    /// from the token endpoint (which is the same signed token, so it expires with it).
    fn grant(&self, parts: &http::request::Parts) -> Option<control_plane::auth::TokenGrant> {
        let header = parts.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        let token = match header.strip_prefix("Bearer ") {
            Some(bearer) => bearer.trim().to_string(),
            None => basic_token(header)?,
        };
        self.control.credentials.verify_registry_token(&token, unix_now()?).ok().flatten()
    }

    /// The `WWW-Authenticate` challenges of a 401: the Bearer token flow (which Docker
    /// prefers when offered) and Basic with the ECR token.
    fn challenges(&self, parts: &http::request::Parts, access: Access<'_>) -> Vec<String> {
        let host = self.public.host(&parts.headers);
        let mut bearer = format!("Bearer realm=\"{}://{host}{TOKEN_PATH}\",service=\"{host}\"", self.public.scheme());
        if let Some(repo) = access.repository {
            let actions = match access.action {
                Action::Pull => "pull",
                Action::Push => "pull,push",
                Action::Delete => "delete",
            };
            bearer.push_str(&format!(",scope=\"repository:{}:{actions}\"", repo.as_str()));
        }
        let presented_bearer = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| h.starts_with("Bearer "));
        if presented_bearer {
            bearer.push_str(",error=\"invalid_token\"");
        }
        vec![bearer, format!("Basic realm=\"{host}\"")]
    }

    /// The token endpoint of Docker's token flow: Basic `AWS:<ECR token>` in, a Bearer
    /// token out (`token`/`access_token`, `expires_in`, `issued_at`). No refresh token is
    /// issued, so `docker login` keeps the ECR token itself as its credential.
    pub fn issue_token(&self, parts: &http::request::Parts) -> axum::response::Response {
        use axum::response::IntoResponse;
        let token = parts.headers.get(http::header::AUTHORIZATION).and_then(|h| h.to_str().ok()).and_then(basic_token);
        let now = unix_now().unwrap_or(0);
        let grant =
            token.as_deref().and_then(|t| self.control.credentials.verify_registry_token(t, now).ok().flatten());
        let (Some(token), Some(grant)) = (token, grant) else {
            let host = self.public.host(&parts.headers);
            let message = "the token endpoint takes Basic credentials AWS:<token> from `aws ecr get-login-password`; they are missing, wrong or expired";
            let err = registry::ApiError::new(http::StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message);
            return match http::HeaderValue::try_from(format!("Basic realm=\"{host}\"")) {
                Ok(v) => err.with_header(http::header::WWW_AUTHENTICATE, v).into_response(),
                Err(e) => registry::ApiError::internal(e).into_response(),
            };
        };
        let issued = grant.expires_at - control_plane::auth::TOKEN_LIFETIME_SECONDS;
        let issued_at = time::OffsetDateTime::from_unix_timestamp(issued)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_default();
        let body = serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": (grant.expires_at - now).max(0),
            "issued_at": issued_at,
        });
        ([(http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}

/// The token of Basic credentials `AWS:<token>`.
fn basic_token(header: &str) -> Option<String> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.strip_prefix("AWS:")?.to_string())
}

/// `GET /_berth/registry/token`: see [`TokenAuth::issue_token`].
pub async fn token(
    axum::extract::State(api): axum::extract::State<crate::Api>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, _) = request.into_parts();
    match api.registry() {
        Ok(registry) => registry.auth.issue_token(&parts),
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

fn unix_now() -> Option<i64> {
    Some(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// The value of query parameter `name`, if the request has it.
fn query_param<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    parts.uri.query()?.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

impl Authorize for TokenAuth {
    async fn authorize(&self, parts: &http::request::Parts, access: Access<'_>) -> Result<Grant, AuthError> {
        let grant = match query_param(parts, LAYER_URL_CREDENTIAL) {
            Some(credential) => self.layer_url_grant(parts, access, credential).ok_or_else(|| {
                AuthError::Denied(
                    "This layer download URL has expired or is not valid for this request; call GetDownloadUrlForLayer again."
                        .into(),
                )
            })?,
            None => self
                .grant(parts)
                .ok_or_else(|| AuthError::Unauthorized { challenges: self.challenges(parts, access) })?,
        };
        let Some(repo) = access.repository else {
            return Ok(Grant {
                namespace: Namespace { account: grant.account.to_string(), region: grant.region },
                repository: None,
            });
        };
        use control_plane::ecr::policies::{DELETE_ACTIONS, PULL_ACTIONS, PUSH_ACTIONS};
        let is_blob_check = parts.method == http::Method::HEAD && parts.uri.path().contains("/blobs/");
        let actions = match access.action {
            // `docker push` checks which layers exist with HEAD: ECR's BatchCheckLayerAvailability.
            Action::Pull if is_blob_check => &["BatchCheckLayerAvailability"][..],
            Action::Pull => PULL_ACTIONS,
            Action::Push => PUSH_ACTIONS,
            Action::Delete => DELETE_ACTIONS,
        };
        let (owner, name) = self
            .control
            .ecr()
            .registry_target(&grant, repo.as_str(), actions)
            .map_err(|e| AuthError::Denied(e.to_string()))?;
        if grant.principal != control_plane::Principal::Root {
            // The token's principal needs each of the request's ECR actions on the
            // repository, as the API's calls do.
            let caller = control_plane::Caller {
                scope: model::Scope {
                    account: grant.account.clone(),
                    region: model::Region::parse(&grant.region).map_err(|e| AuthError::Denied(e.to_string()))?,
                },
                principal: grant.principal.clone(),
            };
            let arn = format!("arn:aws:ecr:{}:{}:repository/{name}", owner.region, owner.account);
            for action in actions {
                let access = control_plane::iam::authz::Access {
                    action: format!("ecr:{action}"),
                    resources: vec![arn.clone()],
                    context: vec![],
                };
                self.control.iam().authorize(&caller, access).map_err(|e| AuthError::Denied(e.to_string()))?;
            }
        }
        let repository = registry::RepoName::parse(name.as_str()).map_err(|e| AuthError::Denied(e.to_string()))?;
        let namespace = Namespace { account: owner.account.to_string(), region: owner.region.to_string() };
        Ok(Grant { namespace, repository: Some(repository) })
    }
}

/// The registry as Berth serves it: ECR's registry service (`control_plane::ecr::registry`)
/// authenticated with ECR tokens.
pub type EcrRegistry = control_plane::ecr::registry::EcrRegistry<TokenAuth>;

/// Opens the registry over the blob store `blobs` with its metadata under `dir` (see
/// `control_plane::ecr::registry::open`), authenticated with the tokens of
/// `GetAuthorizationToken`.
pub async fn open(
    control: Arc<ControlPlane>,
    dir: &std::path::Path,
    blobs: registry::BlobStore,
    realm: String,
    public: crate::PublicAddress,
    vulndb: std::path::PathBuf,
) -> std::io::Result<Arc<EcrRegistry>> {
    let auth = TokenAuth { control: control.clone(), public };
    control_plane::ecr::registry::open(control, dir, blobs, realm, auth, vulndb).await
}
