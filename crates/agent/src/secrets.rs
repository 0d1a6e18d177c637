//! A task definition's `secrets`, log `secretOptions` and `repositoryCredentials`,
//! resolved as ECS's agent resolves them: just before the task's containers are made,
//! from SSM Parameter Store and Secrets Manager, signed with the task's execution role.
//!
//! Decisions:
//! - Resolved values live only in the task's memory until its containers are created:
//!   they reach Docker as the container's environment (or log options, or pull
//!   credentials) and nothing else: no log line, no report to the control plane, no
//!   label, no file of the agent's. A restarted agent resolves them again if it still has
//!   containers to create.
//! - Every failure stops the task with ECS's `ResourceInitializationError: unable to
//!   pull secrets or registry auth: ...`, naming what could not be read and why.
//! - A task without an execution role cannot read secrets, as in ECS.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use model::ecs::shapes::ContainerDefinition;

/// What every reason starts with, as ECS words it.
const FAILED: &str =
    "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: ";
/// `GetParameters` takes at most this many names.
const SSM_BATCH: usize = 10;

/// Where a `valueFrom` points.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// An SSM parameter: its name (with a `:version` or `:label` selector if given), and
    /// the region it is in.
    Ssm { region: String, name: String },
    /// A Secrets Manager secret (`arn:...:secret:<name>[:json-key:version-stage:version-id]`).
    SecretsManager {
        region: String,
        secret_id: String,
        json_key: Option<String>,
        stage: Option<String>,
        version_id: Option<String>,
    },
}

impl Source {
    /// Reads a `valueFrom` as ECS does: an SSM or Secrets Manager ARN, or else the name of
    /// a parameter in the task's region.
    pub fn parse(value_from: &str, task_region: &str) -> Result<Source, String> {
        if !value_from.starts_with("arn:") {
            return Ok(Source::Ssm { region: task_region.to_string(), name: value_from.to_string() });
        }
        let parts: Vec<&str> = value_from.splitn(6, ':').collect();
        let [_, _, service, region, _, resource] = parts[..] else {
            return Err(format!("'{value_from}' is not a valid ARN"));
        };
        let region = if region.is_empty() { task_region } else { region }.to_string();
        match service {
            "ssm" => {
                let rest = resource
                    .strip_prefix("parameter/")
                    .ok_or_else(|| format!("'{value_from}' is not the ARN of an SSM parameter"))?;
                // An ARN drops the leading slash of a name in a hierarchy.
                let name = if rest.contains('/') { format!("/{rest}") } else { rest.to_string() };
                Ok(Source::Ssm { region, name })
            }
            "secretsmanager" => {
                let fields: Vec<&str> = resource.split(':').collect();
                let ["secret", name, ..] = fields[..] else {
                    return Err(format!("'{value_from}' is not the ARN of a Secrets Manager secret"));
                };
                let at = |i: usize| fields.get(i).filter(|s| !s.is_empty()).map(|s| s.to_string());
                let secret_id = value_from[..value_from.len() - resource.len()].to_string() + "secret:" + name;
                Ok(Source::SecretsManager { region, secret_id, json_key: at(2), stage: at(3), version_id: at(4) })
            }
            _ => Err(format!("'{value_from}' names neither an SSM parameter nor a Secrets Manager secret")),
        }
    }
}

/// What a task's containers ask to have resolved.
#[derive(Debug, Default, Clone)]
pub struct Wanted {
    /// (container, variable, valueFrom).
    env: Vec<(String, String, String)>,
    /// (container, log option, valueFrom).
    log: Vec<(String, String, String)>,
    /// (image, secret with `username` and `password`).
    registry: Vec<(String, String)>,
}

impl Wanted {
    /// What `containers` (name and definition, overrides applied) ask for.
    pub fn of<'a>(containers: impl IntoIterator<Item = (&'a str, &'a ContainerDefinition)>) -> Wanted {
        let mut w = Wanted::default();
        for (name, def) in containers {
            // Registration makes sure both members are there.
            let pair = |s: &model::ecs::shapes::Secret| {
                (name.to_string(), s.name.clone().unwrap_or_default(), s.value_from.clone().unwrap_or_default())
            };
            w.env.extend(def.secrets.iter().flatten().map(pair));
            w.log.extend(def.log_configuration.iter().flat_map(|l| l.secret_options.iter().flatten()).map(pair));
            let creds = def.repository_credentials.as_ref().and_then(|c| c.credentials_parameter.clone());
            if let (Some(image), Some(creds)) = (&def.image, creds) {
                w.registry.push((image.clone(), creds));
            }
        }
        w
    }

    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.log.is_empty() && self.registry.is_empty()
    }
}

/// What one container gets. Its `Debug` shows names only.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct ForContainer {
    /// (variable, value) for its environment.
    pub env: Vec<(String, String)>,
    /// (log option, value) for its log driver.
    pub log_options: Vec<(String, String)>,
}

impl fmt::Debug for ForContainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |v: &[(String, String)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        f.debug_struct("ForContainer")
            .field("env", &names(&self.env))
            .field("log_options", &names(&self.log_options))
            .finish()
    }
}

/// A task's resolved values. Its `Debug` shows names only.
#[derive(Default, Clone)]
pub struct Resolved {
    /// By container name.
    pub containers: HashMap<String, ForContainer>,
    /// Image → (username, password) for its pull.
    pub registry: HashMap<String, (String, String)>,
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolved")
            .field("containers", &self.containers)
            .field("registry", &self.registry.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Reads secrets for the agent's tasks: the agent's SDK settings (endpoint, region), with
/// each task's execution role as the credentials.
#[derive(Debug, Clone)]
pub struct Fetcher {
    sdk: aws_config::SdkConfig,
}

impl Fetcher {
    pub fn new(sdk: aws_config::SdkConfig) -> Fetcher {
        Fetcher { sdk }
    }

    /// Resolves everything `wanted` names for a task in `task_region`, signed with
    /// `role`; the reason the task cannot start if anything is missing.
    pub async fn resolve(
        &self,
        wanted: &Wanted,
        task_region: &str,
        role: Option<SharedCredentialsProvider>,
    ) -> Result<Resolved, String> {
        if wanted.is_empty() {
            return Ok(Resolved::default());
        }
        let role = role.ok_or_else(|| {
            format!("{FAILED}the task has no execution role (executionRoleArn) to read its secrets with")
        })?;
        let parse = |v: &str| Source::parse(v, task_region).map_err(|e| format!("{FAILED}{e}"));
        let mut sources = BTreeMap::new();
        for (_, _, v) in wanted.env.iter().chain(&wanted.log) {
            sources.insert(v.clone(), parse(v)?);
        }
        for (_, v) in &wanted.registry {
            sources.insert(v.clone(), parse(v)?);
        }
        let values = self.fetch(&sources, &role).await?;
        let value = |v: &str| values.get(v).cloned().unwrap_or_default();
        let mut out = Resolved::default();
        for (c, k, v) in &wanted.env {
            out.containers.entry(c.clone()).or_default().env.push((k.clone(), value(v)));
        }
        for (c, k, v) in &wanted.log {
            out.containers.entry(c.clone()).or_default().log_options.push((k.clone(), value(v)));
        }
        for (image, v) in &wanted.registry {
            out.registry.insert(image.clone(), registry_credentials(v, &value(v))?);
        }
        Ok(out)
    }

    /// The value of every source, by its `valueFrom`.
    async fn fetch(
        &self,
        sources: &BTreeMap<String, Source>,
        role: &SharedCredentialsProvider,
    ) -> Result<HashMap<String, String>, String> {
        let mut values = HashMap::new();
        let mut by_region: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
        for (value_from, source) in sources {
            match source {
                Source::Ssm { region, name } => by_region.entry(region).or_default().push((value_from, name)),
                Source::SecretsManager { region, secret_id, json_key, stage, version_id } => {
                    let secret = self.secret(region, role, secret_id, stage.as_deref(), version_id.as_deref()).await?;
                    let value = match json_key {
                        None => secret,
                        Some(key) => json_field(&secret, key).ok_or_else(|| {
                            format!("{FAILED}retrieved secret from Secrets Manager did not contain json key {key}")
                        })?,
                    };
                    values.insert(value_from.clone(), value);
                }
            }
        }
        for (region, names) in by_region {
            let client = aws_sdk_ssm::Client::from_conf(
                aws_sdk_ssm::config::Builder::from(&self.sdk)
                    .region(aws_config::Region::new(region.to_string()))
                    .credentials_provider(role.clone())
                    .build(),
            );
            for chunk in names.chunks(SSM_BATCH) {
                let mut wanted: Vec<String> = chunk.iter().map(|(_, n)| n.to_string()).collect();
                wanted.dedup();
                let out = client
                    .get_parameters()
                    .set_names(Some(wanted))
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| format!("{FAILED}unable to retrieve secrets from ssm: {}", describe(&e)))?;
                if !out.invalid_parameters().is_empty() {
                    return Err(format!(
                        "{FAILED}unable to retrieve secrets from ssm: invalid parameters: {}",
                        out.invalid_parameters().join(", ")
                    ));
                }
                for (value_from, name) in chunk {
                    // A selector comes back beside the name (`db` and `:3`).
                    let found = out.parameters().iter().find(|p| {
                        let plain = p.name().unwrap_or_default();
                        plain == *name || format!("{plain}{}", p.selector().unwrap_or_default()) == *name
                    });
                    let Some(p) = found else {
                        return Err(format!("{FAILED}unable to retrieve secrets from ssm: invalid parameters: {name}"));
                    };
                    values.insert(value_from.to_string(), p.value().unwrap_or_default().to_string());
                }
            }
        }
        Ok(values)
    }

    async fn secret(
        &self,
        region: &str,
        role: &SharedCredentialsProvider,
        secret_id: &str,
        stage: Option<&str>,
        version_id: Option<&str>,
    ) -> Result<String, String> {
        let client = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&self.sdk)
                .region(aws_config::Region::new(region.to_string()))
                .credentials_provider(role.clone())
                .build(),
        );
        let failed = |why: String| {
            format!("{FAILED}unable to retrieve secret from asm: failed to fetch secret {secret_id} from secrets manager: {why}")
        };
        let out = client
            .get_secret_value()
            .secret_id(secret_id)
            .set_version_stage(stage.map(str::to_string))
            .set_version_id(version_id.map(str::to_string))
            .send()
            .await
            .map_err(|e| failed(describe(&e)))?;
        match out.secret_string() {
            Some(s) => Ok(s.to_string()),
            None => Err(failed("the secret holds binary data; ECS passes only a SecretString".into())),
        }
    }
}

/// A field of a JSON object secret: a string as it is, anything else as its JSON text.
fn json_field(secret: &str, key: &str) -> Option<String> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(secret).ok()?;
    match object.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `repositoryCredentials`: a secret holding `{"username": ..., "password": ...}`.
fn registry_credentials(value_from: &str, secret: &str) -> Result<(String, String), String> {
    match (json_field(secret, "username"), json_field(secret, "password")) {
        (Some(u), Some(p)) => Ok((u, p)),
        _ => Err(format!(
            "{FAILED}the repository credentials secret {value_from} must be a JSON object with username and password"
        )),
    }
}

fn describe<E: ProvideErrorMetadata + std::error::Error>(e: &E) -> String {
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_from_reads_as_ecs_reads_it() {
        let ssm = |region: &str, name: &str| Source::Ssm { region: region.into(), name: name.into() };
        assert_eq!(Source::parse("db-password", "eu-west-1").unwrap(), ssm("eu-west-1", "db-password"));
        assert_eq!(Source::parse("/web/db:3", "eu-west-1").unwrap(), ssm("eu-west-1", "/web/db:3"));
        assert_eq!(
            Source::parse("arn:aws:ssm:us-east-2:123456789012:parameter/web/db-password", "eu-west-1").unwrap(),
            ssm("us-east-2", "/web/db-password")
        );
        assert_eq!(
            Source::parse("arn:aws:ssm:us-east-2:123456789012:parameter/plain", "eu-west-1").unwrap(),
            ssm("us-east-2", "plain")
        );
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:web/db-AbCdEf";
        assert_eq!(
            Source::parse(&format!("{arn}:user::"), "eu-west-1").unwrap(),
            Source::SecretsManager {
                region: "us-east-1".into(),
                secret_id: arn.into(),
                json_key: Some("user".into()),
                stage: None,
                version_id: None
            }
        );
        assert_eq!(
            Source::parse(&format!("{arn}::AWSPREVIOUS:"), "eu-west-1").unwrap(),
            Source::SecretsManager {
                region: "us-east-1".into(),
                secret_id: arn.into(),
                json_key: None,
                stage: Some("AWSPREVIOUS".into()),
                version_id: None
            }
        );
        assert_eq!(
            Source::parse(arn, "x").unwrap(),
            Source::SecretsManager {
                region: "us-east-1".into(),
                secret_id: arn.into(),
                json_key: None,
                stage: None,
                version_id: None
            }
        );
        assert!(Source::parse("arn:aws:s3:::bucket/key", "x").is_err());
        assert!(Source::parse("arn:aws:ssm:us-east-1:1:document/x", "x").is_err());
        assert!(Source::parse("arn:aws", "x").is_err());
    }

    #[test]
    fn json_keys_take_strings_as_they_are_and_the_rest_as_json() {
        let s = r#"{"user":"app","port":5432,"nested":{"a":1}}"#;
        assert_eq!(json_field(s, "user").as_deref(), Some("app"));
        assert_eq!(json_field(s, "port").as_deref(), Some("5432"));
        assert_eq!(json_field(s, "nested").as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(json_field(s, "missing"), None);
        assert_eq!(json_field("not json", "user"), None);
    }

    #[test]
    fn resolved_values_never_show_in_debug_output() {
        let mut r = Resolved::default();
        let web = ForContainer { env: vec![("DB_PASSWORD".into(), "s3cret".into())], log_options: vec![] };
        r.containers.insert("web".into(), web);
        r.registry.insert("img".into(), ("u".into(), "hunter2".into()));
        let shown = format!("{r:?}");
        assert!(shown.contains("DB_PASSWORD"));
        assert!(!shown.contains("s3cret") && !shown.contains("hunter2"), "{shown}");
    }
}
