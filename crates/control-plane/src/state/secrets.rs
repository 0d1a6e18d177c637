//! Secrets Manager's room in the state: secrets (metadata, each version's labels, the
//! resource policy) and their versions' values, sealed.
//!
//! A version's value is its own record (`secrets.versions`), so a `PutSecretValue`
//! writes the new value and the secret's record (whose version map moves the labels) in
//! one writer change: after a crash both are there or neither is. Values are held and
//! stored only sealed ([`crate::sealing::Sealer`], bound to the secret's ARN and the
//! version id); they are opened for the caller that reads them.

use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use model::secrets::{SecretName, Versions};
use model::Scope;
use store::{Mutation, Record, StoreError};

use super::iam::{Doc, DocKind};
use super::{decode, encode, put_or_delete};

/// Resource policies of secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretPolicy {}
impl DocKind for SecretPolicy {
    const KIND: model::iam::PolicyKind = model::iam::PolicyKind::Resource;
}

/// A secret as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub scope: Scope,
    pub name: SecretName,
    pub arn: String,
    pub description: Option<String>,
    pub kms_key_id: Option<String>,
    /// In the order they were first given.
    pub tags: Vec<(String, String)>,
    /// Milliseconds since the epoch.
    pub created: i64,
    pub last_changed: i64,
    /// When a scheduled deletion takes effect; the secret refuses most operations
    /// meanwhile and is removed once it passes.
    pub deletion_date: Option<i64>,
    pub policy: Option<Doc<SecretPolicy>>,
    pub versions: Versions,
}

/// A version's value, sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedVersion {
    pub scope: Scope,
    pub name: SecretName,
    pub version: String,
    /// Whether the value was given as `SecretBinary`.
    pub binary: bool,
    /// The sealed bytes, base64.
    pub sealed: String,
}

/// Which record changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretsKey {
    Secret(Scope, SecretName),
    Version(Scope, SecretName, String),
}

pub type VersionKey = (Scope, SecretName, String);

/// The secrets of every account.
#[derive(Debug, Clone, Default)]
pub struct SecretsState {
    pub secrets: OrdMap<(Scope, SecretName), Arc<Secret>>,
    pub versions: OrdMap<VersionKey, Arc<SealedVersion>>,
}

const SECRETS: &str = "secrets.secrets";
const VERSIONS: &str = "secrets.versions";

impl SecretsState {
    /// The store mutation that makes `key` durable as it now is.
    pub(crate) fn mutation(&self, key: &SecretsKey) -> Mutation {
        let (table, key, value) = match key {
            SecretsKey::Secret(s, n) => (
                SECRETS,
                format!("{}/{}/{n}", s.account, s.region),
                self.secrets.get(&(s.clone(), n.clone())).map(|v| encode(v.as_ref())),
            ),
            // Names hold no ':', so the key is unique.
            SecretsKey::Version(s, n, v) => (
                VERSIONS,
                format!("{}/{}/{n}:{v}", s.account, s.region),
                self.versions.get(&(s.clone(), n.clone(), v.clone())).map(|v| encode(v.as_ref())),
            ),
        };
        put_or_delete(table, key, value)
    }

    /// Loads one record of a `secrets.` table: the record's key, or `None` for a table
    /// this module does not own.
    pub(crate) fn load(&mut self, r: &Record) -> std::result::Result<Option<SecretsKey>, StoreError> {
        Ok(Some(match r.table.as_str() {
            SECRETS => {
                let v: Secret = decode(r)?;
                let key = SecretsKey::Secret(v.scope.clone(), v.name.clone());
                self.secrets.insert((v.scope.clone(), v.name.clone()), Arc::new(v));
                key
            }
            VERSIONS => {
                let v: SealedVersion = decode(r)?;
                let key = SecretsKey::Version(v.scope.clone(), v.name.clone(), v.version.clone());
                self.versions.insert((v.scope.clone(), v.name.clone(), v.version.clone()), Arc::new(v));
                key
            }
            _ => return Ok(None),
        }))
    }

    /// Forgets what `key` names (its record was deleted).
    pub(crate) fn forget(&mut self, key: &SecretsKey) {
        match key {
            SecretsKey::Secret(s, n) => drop(self.secrets.remove(&(s.clone(), n.clone()))),
            SecretsKey::Version(s, n, v) => drop(self.versions.remove(&(s.clone(), n.clone(), v.clone()))),
        };
    }
}
