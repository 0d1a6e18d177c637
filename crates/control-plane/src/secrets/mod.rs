//! Secrets Manager's operations (`cp.secrets()`): secrets, their versions and staging
//! labels, scheduled deletion, resource policies and tags. State in `state::secrets`.
//!
//! Decisions:
//! - Values are sealed inside the writer's change that stores them and opened only for
//!   the caller that reads them; a [`SecretValue`] never prints its content.
//! - A secret is found by name, by full ARN, or by partial ARN (the ARN without its
//!   random suffix), as AWS resolves `SecretId`. Another account's or region's ARN names
//!   nothing.
//! - A secret scheduled for deletion answers `InvalidRequestException` to everything but
//!   `DescribeSecret`, `ListSecretVersionIds`, `GetResourcePolicy`, `RestoreSecret` and a
//!   forced `DeleteSecret`. Once its deletion date passes it is gone for every read at
//!   once; [`run_purge`] then removes its records.
//! - `RotateSecret` needs AWS Lambda, which Berth does not have: refused at the edge.

use std::sync::Arc;

use rand::RngCore;

use model::iam::PolicyDocument;
use model::secrets::{self as rules, Facts, Filter, SecretName, SecretRef, VersionInfo, AWSCURRENT, MAX_VALUE_BYTES};
use model::Scope;

use crate::error::{Error, NotFoundKind, Result, SecretsError};
use crate::state::iam::Doc;
use crate::state::secrets::{SealedVersion, Secret, SecretsKey};
use crate::state::{State, Touched};
use crate::writer::Txn;
use crate::{Ops, Page};

/// The marker of Secrets Manager's operations: `cp.secrets()`.
#[derive(Debug)]
pub enum Secrets {}

impl crate::ControlPlane {
    /// The Secrets Manager operations.
    pub fn secrets(&self) -> Ops<'_, Secrets> {
        Ops::new(self)
    }
}

fn refused(code: &'static str, message: impl Into<String>) -> Error {
    Error::Secrets(SecretsError { code, message: message.into() })
}

fn not_found() -> Error {
    Error::NotFound { kind: NotFoundKind::Resource, message: "Secrets Manager can't find the specified secret.".into() }
}

fn marked_for_deletion() -> Error {
    refused(
        "InvalidRequestException",
        "You can't perform this operation on the secret because it was marked for deletion.",
    )
}

/// A secret's value. Its `Debug` never shows the content.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretValue {
    Text(String),
    Binary(Vec<u8>),
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretValue::Text(_) => f.write_str("Text(..)"),
            SecretValue::Binary(_) => f.write_str("Binary(..)"),
        }
    }
}

impl SecretValue {
    /// One of `SecretString` and `SecretBinary`, within the size limit; `None` for neither.
    pub fn from_members(text: Option<String>, binary: Option<Vec<u8>>) -> Result<Option<SecretValue>> {
        let value = match (text, binary) {
            (Some(_), Some(_)) => {
                return Err(Error::parameter(
                    "You can't specify both a binary secret value and a string secret value in the same secret.",
                ))
            }
            (Some(t), None) => SecretValue::Text(t),
            (None, Some(b)) => SecretValue::Binary(b),
            (None, None) => return Ok(None),
        };
        if value.bytes().len() > MAX_VALUE_BYTES {
            return Err(Error::parameter(format!("The secret value must be at most {MAX_VALUE_BYTES} bytes.")));
        }
        Ok(Some(value))
    }

    fn bytes(&self) -> &[u8] {
        match self {
            SecretValue::Text(t) => t.as_bytes(),
            SecretValue::Binary(b) => b,
        }
    }
}

/// A `CreateSecret` request in domain terms.
#[derive(Debug, Clone)]
pub struct NewSecret {
    pub name: SecretName,
    pub token: Option<String>,
    pub description: Option<String>,
    pub kms_key_id: Option<String>,
    pub value: Option<SecretValue>,
    pub tags: Vec<(String, String)>,
}

/// A new version: its token (the version id) and labels (`AWSCURRENT` if none).
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub token: Option<String>,
    pub value: SecretValue,
    pub stages: Option<Vec<String>>,
}

/// What a write answers: the secret, and the version it made (if any) with its labels.
#[derive(Debug, Clone)]
pub struct Written {
    pub arn: String,
    pub name: SecretName,
    pub version: Option<String>,
    pub stages: Vec<String>,
}

/// A version's value, opened for the caller.
#[derive(Debug, Clone)]
pub struct OpenedValue {
    pub arn: String,
    pub name: SecretName,
    pub version: String,
    pub value: SecretValue,
    pub stages: Vec<String>,
    pub created: i64,
}

/// A secret's current value, or why it cannot be read (with the secret's ARN).
pub type ValueOrError = Result<OpenedValue, (String, Error)>;

/// A page of `ListSecretVersionIds`.
#[derive(Debug, Clone)]
pub struct VersionPage {
    pub secret: Arc<Secret>,
    pub versions: Vec<(String, VersionInfo)>,
    pub next_token: Option<String>,
}

/// How `ListSecrets` orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Created,
    LastChanged,
    Name,
}

/// A `ListSecrets` request in domain terms.
#[derive(Debug, Clone)]
pub struct ListRequest {
    pub filters: Vec<Filter>,
    pub sort_by: SortBy,
    pub descending: bool,
    pub include_planned_deletion: bool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A random version id in the UUID v4 form AWS uses.
fn new_version_id() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn is_gone(s: &Secret, now: i64) -> bool {
    s.deletion_date.is_some_and(|d| d <= now)
}

/// The secret `id` names in `scope` (deleted ones included, unless their window passed).
pub fn find(state: &State, scope: &Scope, id: &str) -> Result<Arc<Secret>> {
    let get = |name: &str| {
        let name = SecretName::parse(name).ok()?;
        state.secrets.secrets.get(&(scope.clone(), name)).filter(|s| !is_gone(s, now_ms())).cloned()
    };
    let found = match SecretRef::parse(id, scope) {
        SecretRef::Name(n) => get(n),
        SecretRef::Arn(tail) => {
            // A full ARN ends in `-` and six characters; otherwise it is partial.
            let full = tail.rsplit_once('-').and_then(|(name, _)| get(name)).filter(|s| s.arn == id);
            full.or_else(|| get(tail))
        }
        SecretRef::Foreign => None,
    };
    found.ok_or_else(not_found)
}

fn find_live(state: &State, scope: &Scope, id: &str) -> Result<Arc<Secret>> {
    let s = find(state, scope, id)?;
    if s.deletion_date.is_some() {
        return Err(marked_for_deletion());
    }
    Ok(s)
}

fn stages_of(s: &Secret, version: &str) -> Vec<String> {
    s.versions.get(version).map(|v| v.stages.iter().cloned().collect()).unwrap_or_default()
}

/// Opens one version's value.
fn open(cp: &crate::ControlPlane, state: &State, s: &Secret, version: &str) -> Result<SecretValue> {
    let sealed = state
        .secrets
        .versions
        .get(&(s.scope.clone(), s.name.clone(), version.to_string()))
        .ok_or_else(|| Error::Internal(format!("secret {} has no stored value for version {version}", s.arn)))?;
    let purpose = rules::sealing_purpose(&s.scope, &s.arn, version);
    let plain = cp.sealer.open_text(&purpose, &sealed.sealed).map_err(|_| {
        refused("DecryptionFailure", "Secrets Manager can't decrypt the protected secret text using the provided key.")
    })?;
    if sealed.binary {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD.decode(plain).map_err(|_| {
            refused(
                "DecryptionFailure",
                "Secrets Manager can't decrypt the protected secret text using the provided key.",
            )
        })?;
        Ok(SecretValue::Binary(bytes))
    } else {
        Ok(SecretValue::Text(plain))
    }
}

/// Adds a version to the secret in the writer's copy: the value sealed, the labels moved
/// (`AWSCURRENT` by default), deprecated versions beyond the limit dropped. A token that
/// names an existing version is accepted again only with the same value.
fn add_version(
    txn: &mut Txn<'_>,
    cp_sealer: &crate::sealing::Sealer,
    secret: &Secret,
    version: NewVersion,
) -> Result<Written> {
    let id = match version.token {
        Some(t) => {
            rules::check_version_id(&t)?;
            t
        }
        None => new_version_id(),
    };
    let stages = version.stages.unwrap_or_else(|| vec![AWSCURRENT.to_string()]);
    rules::check_stages(&stages)?;
    let written = |s: &Secret| Written {
        arn: s.arn.clone(),
        name: s.name.clone(),
        version: Some(id.clone()),
        stages: stages_of(s, &id),
    };
    if secret.versions.contains_key(&id) {
        let key = (secret.scope.clone(), secret.name.clone(), id.clone());
        let same = txn.state.secrets.versions.get(&key).is_some_and(|sealed| {
            let purpose = rules::sealing_purpose(&secret.scope, &secret.arn, &id);
            let stored = cp_sealer.open_text(&purpose, &sealed.sealed).ok();
            stored.as_deref().map(str::as_bytes) == Some(&encode_value(&version.value)[..])
                && sealed.binary == matches!(version.value, SecretValue::Binary(_))
        });
        if same {
            return Ok(written(secret));
        }
        return Err(refused(
            "ResourceExistsException",
            "You can't modify an existing version, you can only create a new version.",
        ));
    }
    let now = txn.now_ms();
    let mut s = secret.clone();
    s.versions.insert(id.clone(), VersionInfo { created: now, stages: Default::default() });
    for stage in &stages {
        rules::move_stage(&mut s.versions, stage, &id);
    }
    for old in rules::versions_to_drop(&s.versions) {
        s.versions.remove(&old);
        txn.state.secrets.versions.remove(&(s.scope.clone(), s.name.clone(), old.clone()));
        txn.touch(Touched::Secrets(SecretsKey::Version(s.scope.clone(), s.name.clone(), old)));
    }
    s.last_changed = now;
    let purpose = rules::sealing_purpose(&s.scope, &s.arn, &id);
    let binary = matches!(version.value, SecretValue::Binary(_));
    let plain = String::from_utf8(encode_value(&version.value)).expect("text or base64");
    let sealed = SealedVersion {
        scope: s.scope.clone(),
        name: s.name.clone(),
        version: id.clone(),
        binary,
        sealed: cp_sealer.seal_text(&purpose, &plain),
    };
    let key = (s.scope.clone(), s.name.clone(), id.clone());
    txn.state.secrets.versions.insert(key, Arc::new(sealed));
    txn.touch(Touched::Secrets(SecretsKey::Version(s.scope.clone(), s.name.clone(), id.clone())));
    let out = written(&s);
    put_secret(txn, s);
    Ok(out)
}

/// The text a value is sealed as: the string itself, or the base64 of binary bytes.
fn encode_value(v: &SecretValue) -> Vec<u8> {
    use base64::Engine;
    match v {
        SecretValue::Text(t) => t.as_bytes().to_vec(),
        SecretValue::Binary(b) => base64::engine::general_purpose::STANDARD.encode(b).into_bytes(),
    }
}

fn put_secret(txn: &mut Txn<'_>, s: Secret) {
    let key = SecretsKey::Secret(s.scope.clone(), s.name.clone());
    txn.state.secrets.secrets.insert((s.scope.clone(), s.name.clone()), Arc::new(s));
    txn.touch(Touched::Secrets(key));
}

/// Removes a secret and all its versions in the writer's copy.
fn remove_secret(txn: &mut Txn<'_>, s: &Secret) {
    for id in s.versions.keys() {
        txn.state.secrets.versions.remove(&(s.scope.clone(), s.name.clone(), id.clone()));
        txn.touch(Touched::Secrets(SecretsKey::Version(s.scope.clone(), s.name.clone(), id.clone())));
    }
    txn.state.secrets.secrets.remove(&(s.scope.clone(), s.name.clone()));
    txn.touch(Touched::Secrets(SecretsKey::Secret(s.scope.clone(), s.name.clone())));
}

impl Txn<'_> {
    fn now_ms(&self) -> i64 {
        (self.now.epoch_seconds() * 1000.0) as i64
    }
}

impl Ops<'_, Secrets> {
    pub async fn create(&self, scope: &Scope, req: NewSecret) -> Result<Written> {
        rules::check_tags(&req.tags)?;
        let scope = scope.clone();
        let sealer = self.sealer.clone();
        self.write(move |txn| {
            let key = (scope.clone(), req.name.clone());
            if let Some(existing) = txn.state.secrets.secrets.get(&key).cloned() {
                if is_gone(&existing, txn.now_ms()) {
                    remove_secret(txn, &existing);
                } else if existing.deletion_date.is_some() {
                    return Err(refused(
                        "InvalidRequestException",
                        "You can't create this secret because a secret with this name is already scheduled for deletion.",
                    ));
                } else {
                    // The same token and value again is the same request, answered again.
                    if let (Some(token), Some(value)) = (&req.token, &req.value) {
                        if existing.versions.contains_key(token) {
                            let again = NewVersion { token: Some(token.clone()), value: value.clone(), stages: None };
                            if let Ok(w) = add_version(txn, &sealer, &existing, again) {
                                return Ok(w);
                            }
                        }
                    }
                    return Err(refused(
                        "ResourceExistsException",
                        format!("The operation failed because the secret {} already exists.", req.name),
                    ));
                }
            }
            let mut random = [0u8; 6];
            rand::thread_rng().fill_bytes(&mut random);
            let now = txn.now_ms();
            let secret = Secret {
                arn: rules::secret_arn(&scope, &req.name, &rules::arn_suffix(random)),
                scope: scope.clone(),
                name: req.name.clone(),
                description: req.description,
                kms_key_id: req.kms_key_id,
                tags: req.tags,
                created: now,
                last_changed: now,
                deletion_date: None,
                policy: None,
                versions: Default::default(),
            };
            match req.value {
                Some(value) => add_version(txn, &sealer, &secret, NewVersion { token: req.token, value, stages: None }),
                None => {
                    let out = Written { arn: secret.arn.clone(), name: secret.name.clone(), version: None, stages: vec![] };
                    put_secret(txn, secret);
                    Ok(out)
                }
            }
        })
        .await
    }

    /// A version's value: by id, by label (`AWSCURRENT` when neither is given), or by
    /// both when they agree.
    pub fn get_value(
        &self,
        scope: &Scope,
        id: &str,
        version: Option<&str>,
        stage: Option<&str>,
    ) -> Result<OpenedValue> {
        let state = self.view();
        let s = find_live(&state, scope, id)?;
        self.value_of(&state, &s, version, stage)
    }

    fn value_of(&self, state: &State, s: &Secret, version: Option<&str>, stage: Option<&str>) -> Result<OpenedValue> {
        let version_id = match (version, stage) {
            (Some(v), stage) => {
                let info = s.versions.get(v).ok_or_else(|| Error::NotFound {
                    kind: NotFoundKind::Resource,
                    message: format!("Secrets Manager can't find the specified secret value for VersionId: {v}"),
                })?;
                if let Some(stage) = stage {
                    if !info.stages.contains(stage) {
                        return Err(Error::NotFound {
                            kind: NotFoundKind::Resource,
                            message: format!(
                                "Secrets Manager can't find the specified secret value for VersionId: {v} and staging label: {stage}"
                            ),
                        });
                    }
                }
                v.to_string()
            }
            (None, stage) => {
                let stage = stage.unwrap_or(AWSCURRENT);
                rules::stage_holder(&s.versions, stage).map(str::to_string).ok_or_else(|| Error::NotFound {
                    kind: NotFoundKind::Resource,
                    message: format!(
                        "Secrets Manager can't find the specified secret value for staging label: {stage}"
                    ),
                })?
            }
        };
        let value = open(self, state, s, &version_id)?;
        Ok(OpenedValue {
            arn: s.arn.clone(),
            name: s.name.clone(),
            stages: stages_of(s, &version_id),
            created: s.versions.get(&version_id).map_or(0, |v| v.created),
            version: version_id,
            value,
        })
    }

    /// `PutSecretValue`: a new version.
    pub async fn put_value(&self, scope: &Scope, id: String, version: NewVersion) -> Result<Written> {
        let scope = scope.clone();
        let sealer = self.sealer.clone();
        self.write(move |txn| {
            let s = find_live(txn.state, &scope, &id)?;
            add_version(txn, &sealer, &s, version)
        })
        .await
    }

    /// `UpdateSecret`: description and KMS key, and a new current version if a value is
    /// given.
    pub async fn update(
        &self,
        scope: &Scope,
        id: String,
        description: Option<String>,
        kms_key_id: Option<String>,
        version: Option<NewVersion>,
    ) -> Result<Written> {
        let scope = scope.clone();
        let sealer = self.sealer.clone();
        self.write(move |txn| {
            let mut s = (*find_live(txn.state, &scope, &id)?).clone();
            let now = txn.now_ms();
            if description.is_some() || kms_key_id.is_some() {
                if description.is_some() {
                    s.description = description;
                }
                if kms_key_id.is_some() {
                    s.kms_key_id = kms_key_id;
                }
                s.last_changed = now;
                put_secret(txn, s.clone());
            }
            match version {
                Some(v) => add_version(txn, &sealer, &s, v),
                None => Ok(Written { arn: s.arn.clone(), name: s.name.clone(), version: None, stages: vec![] }),
            }
        })
        .await
    }

    /// `DescribeSecret`.
    pub fn describe(&self, scope: &Scope, id: &str) -> Result<Arc<Secret>> {
        find(&self.view(), scope, id)
    }

    /// `ListSecrets`: one page of the secrets that pass every filter.
    pub fn list(&self, scope: &Scope, req: &ListRequest, page: &Page) -> (Vec<Arc<Secret>>, Option<String>) {
        let state = self.view();
        let now = now_ms();
        let mut items: Vec<(String, Arc<Secret>)> = state
            .secrets
            .secrets
            .iter()
            .filter(|((s, _), _)| s == scope)
            .map(|(_, v)| v)
            .filter(|s| !is_gone(s, now))
            .filter(|s| req.include_planned_deletion || s.deletion_date.is_none())
            .filter(|s| {
                let facts = Facts { name: s.name.as_str(), description: s.description.as_deref(), tags: &s.tags };
                req.filters.iter().all(|f| f.matches(&facts))
            })
            .map(|s| {
                let key = match req.sort_by {
                    SortBy::Created => format!("{:020}/{}", s.created, s.name),
                    SortBy::LastChanged => format!("{:020}/{}", s.last_changed, s.name),
                    SortBy::Name => s.name.to_string(),
                };
                (key, s.clone())
            })
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        if req.descending {
            items.reverse();
        }
        page.take(items.into_iter(), req.descending)
    }

    /// The current values of the secrets `ListSecrets` would list with `filters`, one page.
    pub fn values_by_filter(
        &self,
        scope: &Scope,
        filters: Vec<Filter>,
        page: &Page,
    ) -> (Vec<ValueOrError>, Option<String>) {
        let req = ListRequest { filters, sort_by: SortBy::Created, descending: false, include_planned_deletion: false };
        let (secrets, token) = self.list(scope, &req, page);
        let state = self.view();
        let values =
            secrets.iter().map(|s| self.value_of(&state, s, None, None).map_err(|e| (s.arn.clone(), e))).collect();
        (values, token)
    }

    /// `ListSecretVersionIds`: the versions by id, those without labels only if asked.
    pub fn versions(&self, scope: &Scope, id: &str, include_deprecated: bool, page: &Page) -> Result<VersionPage> {
        let s = find(&self.view(), scope, id)?;
        let items = s
            .versions
            .iter()
            .filter(|(_, v)| include_deprecated || !v.stages.is_empty())
            .map(|(id, v)| (id.clone(), (id.clone(), v.clone())));
        let (versions, next_token) = page.take(items, false);
        Ok(VersionPage { secret: s, versions, next_token })
    }

    /// `DeleteSecret`: scheduled after `window_days` (30 by default), or at once if forced.
    /// Answers the secret and its deletion date.
    pub async fn delete(
        &self,
        scope: &Scope,
        id: String,
        window_days: Option<i64>,
        force: bool,
    ) -> Result<(String, SecretName, i64)> {
        if force && window_days.is_some() {
            return Err(Error::parameter(
                "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
            ));
        }
        if let Some(d) = window_days {
            if !rules::RECOVERY_WINDOW_DAYS.contains(&d) {
                return Err(Error::parameter(
                    "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).",
                ));
            }
        }
        let scope = scope.clone();
        self.write(move |txn| {
            let s = find(txn.state, &scope, &id)?;
            let now = txn.now_ms();
            if force {
                remove_secret(txn, &s);
                return Ok((s.arn.clone(), s.name.clone(), now));
            }
            if s.deletion_date.is_some() {
                return Err(refused(
                    "InvalidRequestException",
                    "You can't delete secret because it was already scheduled for deletion.",
                ));
            }
            let days = window_days.unwrap_or(rules::DEFAULT_RECOVERY_WINDOW_DAYS);
            let date = now + days * 24 * 3600 * 1000;
            let mut s = (*s).clone();
            s.deletion_date = Some(date);
            let out = (s.arn.clone(), s.name.clone(), date);
            put_secret(txn, s);
            Ok(out)
        })
        .await
    }

    /// `RestoreSecret`: cancels a scheduled deletion.
    pub async fn restore(&self, scope: &Scope, id: String) -> Result<(String, SecretName)> {
        let scope = scope.clone();
        self.write(move |txn| {
            let s = find(txn.state, &scope, &id)?;
            let out = (s.arn.clone(), s.name.clone());
            if s.deletion_date.is_some() {
                let mut s = (*s).clone();
                s.deletion_date = None;
                s.last_changed = txn.now_ms();
                put_secret(txn, s);
            }
            Ok(out)
        })
        .await
    }

    /// `UpdateSecretVersionStage`: moves or removes one label.
    pub async fn update_stage(
        &self,
        scope: &Scope,
        id: String,
        stage: String,
        remove_from: Option<String>,
        move_to: Option<String>,
    ) -> Result<(String, SecretName)> {
        rules::check_stages(std::slice::from_ref(&stage))?;
        let scope = scope.clone();
        self.write(move |txn| {
            let mut s = (*find_live(txn.state, &scope, &id)?).clone();
            let holder = rules::stage_holder(&s.versions, &stage).map(str::to_string);
            for v in remove_from.iter().chain(move_to.iter()) {
                if !s.versions.contains_key(v) {
                    return Err(Error::NotFound {
                        kind: NotFoundKind::Resource,
                        message: format!("Secrets Manager can't find the specified secret version: {v}"),
                    });
                }
            }
            if let Some(from) = &remove_from {
                if holder.as_deref() != Some(from.as_str()) {
                    return Err(Error::parameter(format!(
                        "The staging label {stage} isn't attached to version {from}, so it can't be removed from it."
                    )));
                }
            }
            match (&move_to, &holder, &remove_from) {
                (Some(to), Some(h), None) if h != to => {
                    return Err(Error::parameter(format!(
                        "The parameter RemoveFromVersionId can't be empty. Staging label {stage} is currently attached to version {h}, so you must explicitly reference that version in RemoveFromVersionId."
                    )));
                }
                (Some(to), _, _) => {
                    if s.versions[to].stages.len() >= rules::MAX_STAGES_PER_VERSION && !s.versions[to].stages.contains(&stage) {
                        return Err(refused(
                            "LimitExceededException",
                            format!("A version can have at most {} staging labels.", rules::MAX_STAGES_PER_VERSION),
                        ));
                    }
                    rules::move_stage(&mut s.versions, &stage, to);
                }
                (None, _, Some(from)) => rules::remove_stage(&mut s.versions, &stage, from),
                (None, _, None) => {
                    return Err(Error::parameter("You must specify RemoveFromVersionId, MoveToVersionId, or both."))
                }
            }
            s.last_changed = txn.now_ms();
            let out = (s.arn.clone(), s.name.clone());
            put_secret(txn, s);
            Ok(out)
        })
        .await
    }

    /// `PutResourcePolicy`: `text` must be a valid resource policy.
    pub async fn put_policy(&self, scope: &Scope, id: String, text: String) -> Result<(String, SecretName)> {
        let doc = parse_policy(&text)?;
        self.change(scope, id, move |s| {
            s.policy = Some(doc);
            Ok(())
        })
        .await
    }

    pub async fn delete_policy(&self, scope: &Scope, id: String) -> Result<(String, SecretName)> {
        self.change(scope, id, |s| {
            s.policy = None;
            Ok(())
        })
        .await
    }

    pub async fn tag(&self, scope: &Scope, id: String, tags: Vec<(String, String)>) -> Result<(String, SecretName)> {
        rules::check_tags(&tags)?;
        self.change(scope, id, move |s| {
            rules::merge_tags(&mut s.tags, tags);
            rules::check_tags(&s.tags)?;
            Ok(())
        })
        .await
    }

    pub async fn untag(&self, scope: &Scope, id: String, keys: Vec<String>) -> Result<(String, SecretName)> {
        self.change(scope, id, move |s| {
            s.tags.retain(|(k, _)| !keys.contains(k));
            Ok(())
        })
        .await
    }

    /// Changes a live secret's record with `f`.
    async fn change(
        &self,
        scope: &Scope,
        id: String,
        f: impl FnOnce(&mut Secret) -> Result<()> + Send + 'static,
    ) -> Result<(String, SecretName)> {
        let scope = scope.clone();
        self.write(move |txn| {
            let mut s = (*find_live(txn.state, &scope, &id)?).clone();
            f(&mut s)?;
            s.last_changed = txn.now_ms();
            let out = (s.arn.clone(), s.name.clone());
            put_secret(txn, s);
            Ok(out)
        })
        .await
    }

    /// The full ARN of the secret `id` names (a name, or a full or partial ARN), for
    /// authorization; `None` if it names none.
    pub fn secret_arn(&self, scope: &Scope, id: &str) -> Option<String> {
        find(&self.view(), scope, id).ok().map(|s| s.arn.clone())
    }

    /// Removes the secrets whose recovery window has passed; answers how many.
    pub async fn purge(&self) -> Result<usize> {
        let now = now_ms();
        if !self.view().secrets.secrets.values().any(|s| is_gone(s, now)) {
            return Ok(0);
        }
        self.write(move |txn| {
            let gone: Vec<Arc<Secret>> =
                txn.state.secrets.secrets.values().filter(|s| is_gone(s, now)).cloned().collect();
            for s in &gone {
                remove_secret(txn, s);
            }
            Ok(gone.len())
        })
        .await
    }
}

/// Parses a resource policy as Secrets Manager does (IAM's grammar for resource policies).
pub fn parse_policy(text: &str) -> Result<Doc<crate::state::secrets::SecretPolicy>> {
    if text.chars().count() > rules::MAX_POLICY_CHARS {
        return Err(refused(
            "MalformedPolicyDocumentException",
            format!("The resource policy is longer than {} characters.", rules::MAX_POLICY_CHARS),
        ));
    }
    PolicyDocument::parse(text, model::iam::PolicyKind::Resource)
        .map(Doc::new)
        .map_err(|e| refused("MalformedPolicyDocumentException", e.message().to_string()))
}

/// How often [`run_purge`] looks for secrets whose recovery window has passed.
pub const PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes secrets whose recovery window has passed, every `every`, until `stop`.
pub async fn run_purge(
    cp: Arc<crate::ControlPlane>,
    every: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let cp = &cp;
    crate::runtime::repeat(every, stop, || async move {
        match cp.secrets().purge().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(secrets = n, "secrets past their recovery window removed"),
            Err(e) => tracing::error!(error = %e, "removing deleted secrets failed; it runs again next interval"),
        }
    })
    .await
}
