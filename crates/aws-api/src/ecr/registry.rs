//! Wires the image registry into the endpoint: ECR tokens authenticate `docker login`,
//! pushes and pulls, and only repositories created with the ECR API accept images.

use std::sync::Arc;

use base64::Engine;
use registry::{Access, AuthError, Authorize, BlobStore, LocalMeta, Namespace, OnPush, PushEvent, Registry};

use control_plane::ControlPlane;
use model::ecr::RepositoryName;
use model::{Region, Scope};

/// Authenticates registry requests with the tokens of `GetAuthorizationToken`, sent by
/// Docker as Basic credentials `AWS:<token>`.
pub struct TokenAuth {
    control: Arc<ControlPlane>,
}

impl TokenAuth {
    fn grant(&self, parts: &http::request::Parts) -> Option<control_plane::auth::TokenGrant> {
        let header = parts.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        let encoded = header.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let token = text.strip_prefix("AWS:")?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
        self.control.credentials.verify_registry_token(token, now).ok().flatten()
    }
}

impl Authorize for TokenAuth {
    async fn authorize(&self, parts: &http::request::Parts, access: Access<'_>) -> Result<Namespace, AuthError> {
        let Some(grant) = self.grant(parts) else {
            return Err(AuthError::Unauthorized { challenge: None });
        };
        if let Some(repo) = access.repository {
            // As in ECR, images go only into repositories created beforehand.
            let name = RepositoryName::parse(repo.as_str()).map_err(|e| AuthError::Denied(e.to_string()))?;
            let region = Region::parse(&grant.region).map_err(|e| AuthError::Denied(e.to_string()))?;
            let scope = Scope { account: grant.account.clone(), region };
            if !self.control.view().repositories.contains_key(&(scope, name)) {
                return Err(AuthError::Denied(format!(
                    "The repository with name '{repo}' does not exist in the registry with id '{}'. Create it with `aws ecr create-repository --repository-name {repo}`.",
                    grant.account
                )));
            }
        }
        Ok(Namespace { account: grant.account.to_string(), region: grant.region })
    }
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
pub fn open(control: Arc<ControlPlane>, dir: &std::path::Path, realm: String) -> std::io::Result<Arc<EcrRegistry>> {
    std::fs::create_dir_all(dir)?;
    let store = BlobStore::open(dir.to_path_buf())?;
    let meta = LocalMeta::open(&dir.join("meta.log"))?;
    let hooks = RecordPush { control: control.clone() };
    Ok(Arc::new(Registry { store, meta, auth: TokenAuth { control }, hooks, realm }))
}
