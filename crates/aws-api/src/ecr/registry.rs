//! Wires the image registry into the endpoint: ECR tokens authenticate `docker login`,
//! pushes and pulls, and only repositories created with the ECR API accept images; tag
//! immutability applies to pushes ([`EcrMeta`]); pushes and pulls are recorded in the
//! control plane ([`RecordPush`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use registry::{
    Access, Action, AuthError, Authorize, BlobStore, Digest, Grant, LocalMeta, ManifestRecord, Meta, MetaError,
    Namespace, OnPush, PullEvent, PushEvent, Registry, Repository, Tag,
};

use control_plane::ControlPlane;
use model::ecr::RepositoryName;
use model::{Region, Scope};

/// The query parameter of a layer download URL (`GetDownloadUrlForLayer`) that carries
/// its signed credential.
pub const LAYER_URL_CREDENTIAL: &str = "X-Berth-Credential";

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
        let (owner, name) = self.resolve(&grant, repo.as_str(), actions)?;
        let repository = registry::RepoName::parse(name.as_str()).map_err(|e| AuthError::Denied(e.to_string()))?;
        let namespace = Namespace { account: owner.account.to_string(), region: owner.region.to_string() };
        Ok(Grant { namespace, repository: Some(repository) })
    }
}

/// The registry's metadata with ECR's rule on top: a push may not move an immutable tag
/// (`imageTagMutability` and its exclusion filters, read from the control plane). The
/// same manifest pushed again under its tag changes nothing and is allowed.
pub struct EcrMeta {
    inner: LocalMeta,
    control: Arc<ControlPlane>,
    /// Serialises tagged manifest writes, so that two pushes racing for one immutable tag
    /// cannot both find it free.
    tag_writes: tokio::sync::Mutex<()>,
}

impl EcrMeta {
    fn tag_is_immutable(&self, repo: &Repository, tag: &Tag) -> bool {
        let (Some(scope), Ok(name)) = (scope_of(&repo.namespace), RepositoryName::parse(repo.name.as_str())) else {
            return false;
        };
        self.control.view().repositories.get(&(scope, name)).is_some_and(|r| r.tag_is_immutable(tag.as_str()))
    }
}

/// Garbage collection marks and sweeps the metadata underneath.
impl AsRef<LocalMeta> for EcrMeta {
    fn as_ref(&self) -> &LocalMeta {
        &self.inner
    }
}

impl Meta for EcrMeta {
    async fn link_blob(&self, repo: &Repository, digest: &Digest) -> Result<(), MetaError> {
        self.inner.link_blob(repo, digest).await
    }
    async fn blob_linked(&self, repo: &Repository, digest: &Digest) -> Result<bool, MetaError> {
        self.inner.blob_linked(repo, digest).await
    }
    async fn unlink_blob(&self, repo: &Repository, digest: &Digest) -> Result<bool, MetaError> {
        self.inner.unlink_blob(repo, digest).await
    }
    async fn put_manifest(
        &self,
        repo: &Repository,
        manifest: ManifestRecord,
        tag: Option<&Tag>,
    ) -> Result<(), MetaError> {
        let Some(tag) = tag else {
            return self.inner.put_manifest(repo, manifest, None).await;
        };
        let _serial = self.tag_writes.lock().await;
        let current = self.inner.resolve_tag(repo, tag).await?;
        if current.is_some_and(|d| d != manifest.digest) && self.tag_is_immutable(repo, tag) {
            return Err(MetaError::TagImmutable(format!(
                "The image tag '{}' already exists in the '{}' repository and cannot be overwritten because the tag is immutable.",
                tag.as_str(),
                repo.name.as_str()
            )));
        }
        self.inner.put_manifest(repo, manifest, Some(tag)).await
    }
    async fn manifest(&self, repo: &Repository, digest: &Digest) -> Result<Option<ManifestRecord>, MetaError> {
        self.inner.manifest(repo, digest).await
    }
    async fn resolve_tag(&self, repo: &Repository, tag: &Tag) -> Result<Option<Digest>, MetaError> {
        self.inner.resolve_tag(repo, tag).await
    }
    async fn delete_manifest(&self, repo: &Repository, digest: &Digest) -> Result<bool, MetaError> {
        self.inner.delete_manifest(repo, digest).await
    }
    async fn delete_tag(&self, repo: &Repository, tag: &Tag) -> Result<bool, MetaError> {
        self.inner.delete_tag(repo, tag).await
    }
    async fn tags(&self, repo: &Repository) -> Result<Option<Vec<Tag>>, MetaError> {
        self.inner.tags(repo).await
    }
    async fn referrers(&self, repo: &Repository, digest: &Digest) -> Result<Vec<ManifestRecord>, MetaError> {
        self.inner.referrers(repo, digest).await
    }
}

/// The account and region a registry namespace stands for.
pub(crate) fn scope_of(ns: &Namespace) -> Option<Scope> {
    Some(Scope { account: model::AccountId::parse(&ns.account).ok()?, region: Region::parse(&ns.region).ok()? })
}

/// A pull of an image is recorded at most once per this interval. ECR itself refreshes
/// `lastRecordedPullTime` only about daily; a minute keeps the time close to the truth
/// while a busy image (every task start pulls it) costs one durable write a minute, not
/// one per pull.
const PULL_RECORD_INTERVAL: Duration = Duration::from_secs(60);
/// Past this many remembered pulls, those older than the interval are forgotten.
const PULL_MEMORY: usize = 10_000;

/// Records every pushed image in the control plane, where `DescribeImages` and
/// `ListImages` read them, durably and per account; and the time of pulls
/// (`lastRecordedPullTime`).
pub struct RecordPush {
    control: Arc<ControlPlane>,
    /// When a pull of each image was last recorded.
    pulls: Mutex<HashMap<(Namespace, String, Digest), Instant>>,
    /// Scans pushed images of repositories with scan on push; `StartImageScan` uses it too.
    pub scanner: super::scans::Scanner,
}

impl RecordPush {
    /// Whether a pull of this image should be recorded now; if so, it counts as recorded.
    fn due(&self, key: (Namespace, String, Digest)) -> bool {
        let now = Instant::now();
        let mut pulls = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
        if pulls.get(&key).is_some_and(|t| now.duration_since(*t) < PULL_RECORD_INTERVAL) {
            return false;
        }
        if pulls.len() >= PULL_MEMORY {
            pulls.retain(|_, t| now.duration_since(*t) < PULL_RECORD_INTERVAL);
        }
        pulls.insert(key, now);
        true
    }
}

impl OnPush for RecordPush {
    async fn on_pull(&self, event: PullEvent) {
        let repository = event.repository.name.as_str().to_string();
        let key = (event.repository.namespace.clone(), repository.clone(), event.digest.clone());
        let Some(scope) = scope_of(&event.repository.namespace) else { return };
        if !self.due(key) {
            return;
        }
        if let Err(e) = self.control.ecr().record_pull(scope, &repository, event.digest.to_string()).await {
            tracing::warn!(error = %e, %repository, "recording a pull failed");
        }
    }

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
        match self.control.ecr().record_push(pushed).await {
            Ok(image) => self.scanner.scan_on_push(&image),
            Err(e) => {
                tracing::error!(error = %e, repository = %event.repository.name.as_str(), "recording a pushed image failed")
            }
        }
    }
}

/// The registry as Berth wires it: ECR tokens, ECR's tag immutability, and pushes and
/// pulls recorded in the control plane.
pub type EcrRegistry = Registry<EcrMeta, TokenAuth, RecordPush>;

/// Opens the registry that stores blobs and metadata under `dir`; its scans read the
/// vulnerability database in `vulndb` (see `scanner::db`). Scans that a stop interrupted
/// start again.
pub fn open(
    control: Arc<ControlPlane>,
    dir: &std::path::Path,
    realm: String,
    public: crate::PublicAddress,
    vulndb: std::path::PathBuf,
) -> std::io::Result<Arc<EcrRegistry>> {
    std::fs::create_dir_all(dir)?;
    let store = BlobStore::open(dir.to_path_buf())?;
    let meta = EcrMeta {
        inner: LocalMeta::open(&dir.join("meta.log"))?,
        control: control.clone(),
        tag_writes: tokio::sync::Mutex::new(()),
    };
    let registry = Arc::new_cyclic(|me| {
        let scanner = super::scans::Scanner::new(control.clone(), me.clone(), vulndb);
        let hooks = RecordPush { control: control.clone(), pulls: Mutex::new(HashMap::new()), scanner };
        Registry { store, meta, auth: TokenAuth { control, public }, hooks, realm }
    });
    registry.hooks.scanner.resume_interrupted();
    Ok(registry)
}
