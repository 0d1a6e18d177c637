//! Wires the image registry into the endpoint: ECR tokens authenticate `docker login`,
//! pushes and pulls, and only repositories created with the ECR API accept images.

use std::sync::Arc;

use base64::Engine;
use registry::{Access, AuthError, Authorize, BlobStore, LocalMeta, Namespace, NoHooks, Registry};

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

/// The registry's router, storing blobs and metadata under `dir`.
pub fn router(control: Arc<ControlPlane>, dir: &std::path::Path, realm: String) -> anyhow::Result<axum::Router> {
    std::fs::create_dir_all(dir)?;
    let store = BlobStore::open(dir.to_path_buf())?;
    let meta = LocalMeta::open(&dir.join("meta.log"))?;
    let registry = Registry { store, meta, auth: TokenAuth { control }, hooks: NoHooks, realm };
    Ok(registry::http::router(Arc::new(registry)))
}
