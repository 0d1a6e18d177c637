//! Credentials for pulling images from Berth's own registry: the agent asks the control
//! plane for an ECR token (`GetAuthorizationToken`) and hands it to Docker, so hosts never
//! need a manual `docker login`.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use tokio::sync::Mutex;

/// Tokens are refreshed this long before they expire.
const REFRESH_MARGIN_SECONDS: i64 = 600;

/// Fetches and caches registry credentials for Berth's registry, under each name it has.
pub struct RegistryLogin {
    /// `host:port` of the registry, as image names carry it: one per control-plane
    /// replica the agent was given.
    hosts: Vec<String>,
    ecr: aws_sdk_ecr::Client,
    cached: Mutex<Option<(String, i64)>>,
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLogin").field("hosts", &self.hosts).finish_non_exhaustive()
    }
}

impl RegistryLogin {
    pub fn new(hosts: Vec<String>, ecr: aws_sdk_ecr::Client) -> Self {
        RegistryLogin { hosts, ecr, cached: Mutex::new(None) }
    }

    /// The same registry, logged in to with other credentials: a task's execution role,
    /// which ECS's agent pulls a task's images from ECR with.
    pub fn with_credentials(&self, provider: aws_credential_types::provider::SharedCredentialsProvider) -> Self {
        let config = self.ecr.config().to_builder().credentials_provider(provider).build();
        RegistryLogin::new(self.hosts.clone(), aws_sdk_ecr::Client::from_conf(config))
    }

    /// `(user, password)` for `image` when it lives in this registry; `None` for images
    /// of other registries, which are pulled as Docker would.
    pub async fn credentials_for(&self, image: &str) -> Result<Option<(String, String)>, String> {
        let Some((registry, _)) = image.split_once('/') else { return Ok(None) };
        if !self.hosts.iter().any(|h| h == registry) {
            return Ok(None);
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let mut cached = self.cached.lock().await;
        if let Some((password, expires)) = cached.as_ref() {
            if expires - now > REFRESH_MARGIN_SECONDS {
                return Ok(Some(("AWS".into(), password.clone())));
            }
        }
        let r =
            self.ecr.get_authorization_token().send().await.map_err(|e| {
                format!("cannot get registry credentials: {}", aws_sdk_ecr::error::DisplayErrorContext(&e))
            })?;
        let data = r.authorization_data().first().ok_or("GetAuthorizationToken returned no authorizationData")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data.authorization_token().unwrap_or_default())
            .map_err(|e| format!("unreadable authorization token: {e}"))?;
        let text = String::from_utf8(decoded).map_err(|e| format!("unreadable authorization token: {e}"))?;
        let (user, password) = text.split_once(':').ok_or("the authorization token is not user:password")?;
        let expires = data.expires_at().map(|t| t.secs()).unwrap_or(now + 3600);
        *cached = Some((password.to_string(), expires));
        Ok(Some((user.to_string(), password.to_string())))
    }
}
