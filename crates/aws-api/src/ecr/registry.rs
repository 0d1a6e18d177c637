//! Wires the image registry into the endpoint: ECR tokens authenticate `docker login`,
//! pushes and pulls, and only repositories created with the ECR API accept images.

use std::sync::Arc;

use base64::Engine;
use registry::{
    Access, Action, AuthError, Authorize, BlobStore, Grant, LocalMeta, Namespace, OnPush, PushEvent, Registry,
};

use control_plane::ControlPlane;
use model::ecr::RepositoryName;
use model::{Region, Scope};

/// Where the registry's token endpoint (Docker's Bearer token flow) answers.
pub const TOKEN_PATH: &str = "/_berth/registry/token";

/// Authenticates registry requests with the tokens of `GetAuthorizationToken`, sent by
/// Docker as Basic credentials `AWS:<token>`, or as a Bearer token from [`TOKEN_PATH`]
/// when the client follows the token flow; and decides which account's repository a
/// path names (see [`TokenAuth::resolve`]).
pub struct TokenAuth {
    control: Arc<ControlPlane>,
    public: crate::PublicAddress,
}

impl TokenAuth {
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

    /// Which repository `path` names for an account holding `grant`, and whether that
    /// account may do `actions` there. The caller's own repository of that name comes
    /// first; otherwise `<account-id>/<name>` names repository `<name>` of that account
    /// (same region), which its repository policy must open to the caller.
    fn resolve(
        &self,
        grant: &control_plane::auth::TokenGrant,
        path: &str,
        actions: &[&str],
    ) -> Result<(Scope, RepositoryName), AuthError> {
        let region = Region::parse(&grant.region).map_err(|e| AuthError::Denied(e.to_string()))?;
        let own = Scope { account: grant.account.clone(), region: region.clone() };
        let state = self.control.view();
        if let Ok(name) = RepositoryName::parse(path) {
            if state.repositories.contains_key(&(own.clone(), name.clone())) {
                return Ok((own, name));
            }
        }
        let other = path.split_once('/').and_then(|(account, rest)| {
            Some((model::AccountId::parse(account).ok()?, RepositoryName::parse(rest).ok()?))
        });
        let Some((account, name)) = other else {
            // As in ECR, images go only into repositories created beforehand.
            return Err(AuthError::Denied(format!(
                "The repository with name '{path}' does not exist in the registry with id '{}'. Create it with `aws ecr create-repository --repository-name {path}`.",
                grant.account
            )));
        };
        let owner = Scope { account, region };
        control_plane::ecr::policies::check_repository_access(&state, &grant.account, &owner, &name, actions)
            .map_err(|e| AuthError::Denied(e.to_string()))?;
        // The owner passes the policy check even for a repository it never created, which
        // must not take images either.
        if !state.repositories.contains_key(&(owner.clone(), name.clone())) {
            return Err(AuthError::Denied(format!(
                "The repository with name '{name}' does not exist in the registry with id '{}'. Create it with `aws ecr create-repository --repository-name {name}`.",
                owner.account
            )));
        }
        Ok((owner, name))
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
    api.registry.auth.issue_token(&parts)
}

impl Authorize for TokenAuth {
    async fn authorize(&self, parts: &http::request::Parts, access: Access<'_>) -> Result<Grant, AuthError> {
        let grant =
            self.grant(parts).ok_or_else(|| AuthError::Unauthorized { challenges: self.challenges(parts, access) })?;
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
        let (owner, name) = self.resolve(&grant, repo.as_str(), actions)?;
        let repository = registry::RepoName::parse(name.as_str()).map_err(|e| AuthError::Denied(e.to_string()))?;
        let namespace = Namespace { account: owner.account.to_string(), region: owner.region.to_string() };
        Ok(Grant { namespace, repository: Some(repository) })
    }
}

fn unix_now() -> Option<i64> {
    Some(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// Records every pushed image in the control plane, where `DescribeImages` and
/// `ListImages` read them, durably and per account.
pub struct RecordPush {
    control: Arc<ControlPlane>,
}

impl OnPush for RecordPush {
    async fn on_push(&self, event: PushEvent) {
        let ns = &event.repository.namespace;
        let (Ok(account), Ok(region)) = (model::AccountId::parse(&ns.account), Region::parse(&ns.region)) else {
            tracing::error!(account = %ns.account, "a push in a namespace that is not an account; not recorded");
            return;
        };
        let pushed = control_plane::ecr::Pushed {
            scope: Scope { account, region },
            repository: event.repository.name.as_str().to_string(),
            digest: event.digest.to_string(),
            tag: event.tag.as_ref().map(|t| t.as_str().to_string()),
            size: i64::try_from(event.image_size).unwrap_or(i64::MAX),
            media_type: event.media_type.clone(),
        };
        if let Err(e) = self.control.record_push(pushed).await {
            tracing::error!(error = %e, repository = %event.repository.name.as_str(), "recording a pushed image failed");
        }
    }
}

/// The registry as Berth wires it: ECR tokens, and pushes recorded in the control plane.
pub type EcrRegistry = Registry<LocalMeta, TokenAuth, RecordPush>;

/// Opens the registry that stores blobs and metadata under `dir`.
pub fn open(
    control: Arc<ControlPlane>,
    dir: &std::path::Path,
    realm: String,
    public: crate::PublicAddress,
) -> std::io::Result<Arc<EcrRegistry>> {
    std::fs::create_dir_all(dir)?;
    let store = BlobStore::open(dir.to_path_buf())?;
    let meta = LocalMeta::open(&dir.join("meta.log"))?;
    let hooks = RecordPush { control: control.clone() };
    Ok(Arc::new(Registry { store, meta, auth: TokenAuth { control, public }, hooks, realm }))
}
