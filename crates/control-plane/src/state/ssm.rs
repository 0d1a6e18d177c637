//! SSM Parameter Store's room in the state: parameters of every account and their
//! versions.
//!
//! A parameter is two kinds of record: `ssm.parameters` (its tags) and one
//! `ssm.versions` record per kept version, so that a `PutParameter` writes the new
//! version (and the parameter record when tags change, or the oldest version it drops),
//! never all of its history. A SecureString version's value is stored sealed
//! ([`StoredValue::Sealed`]), never in clear.

use std::collections::BTreeMap;
use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use model::ssm::{ParameterName, ParameterType, Policy, Tier};
use model::Scope;
use store::{Mutation, Record, StoreError};

use super::{decode, encode, put_or_delete};

/// A version's value as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StoredValue {
    /// A String or StringList value: configuration, not a secret.
    Plain(String),
    /// A SecureString value sealed by `Sealer::seal_text` (base64) for
    /// [`ParameterVersion::purpose`].
    Sealed(String),
}

/// One version of a parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParameterVersion {
    pub scope: Scope,
    pub name: ParameterName,
    pub version: u64,
    #[serde(rename = "type")]
    pub ty: ParameterType,
    pub value: StoredValue,
    pub description: Option<String>,
    /// The KMS key id the caller named (SecureString only); recorded, not used.
    pub key_id: Option<String>,
    pub allowed_pattern: Option<String>,
    pub tier: Tier,
    pub policies: Vec<Policy>,
    pub data_type: String,
    pub labels: Vec<String>,
    /// Milliseconds since the epoch.
    pub last_modified: i64,
    pub last_modified_user: String,
}

impl ParameterVersion {
    /// What a sealed value of this version is bound to: a sealed value copied onto
    /// another parameter or version does not open.
    pub fn purpose(scope: &Scope, name: &ParameterName, version: u64) -> String {
        format!("ssm parameter {} {} {name} {version}", scope.account, scope.region)
    }
}

/// A parameter: its tags and kept versions (oldest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Parameter {
    pub scope: Scope,
    pub name: ParameterName,
    pub tags: Vec<(String, String)>,
    /// Kept in `ssm.versions`, one record each.
    #[serde(skip)]
    pub versions: BTreeMap<u64, Arc<ParameterVersion>>,
}

impl Parameter {
    pub fn latest(&self) -> &Arc<ParameterVersion> {
        self.versions.values().next_back().expect("a stored parameter has at least one version")
    }

    /// The version that carries `label`, if any.
    pub fn labelled(&self, label: &str) -> Option<&Arc<ParameterVersion>> {
        self.versions.values().find(|v| v.labels.iter().any(|l| l == label))
    }
}

/// Which record changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SsmKey {
    Parameter(Scope, ParameterName),
    Version(Scope, ParameterName, u64),
}

/// The parameters of every account.
#[derive(Debug, Clone, Default)]
pub struct SsmState {
    pub parameters: OrdMap<(Scope, ParameterName), Arc<Parameter>>,
}

const PARAMETERS: &str = "ssm.parameters";
const VERSIONS: &str = "ssm.versions";

impl SsmState {
    /// The parameters of one scope, in name order.
    pub fn of_scope<'a>(&'a self, scope: &'a Scope) -> impl Iterator<Item = &'a Arc<Parameter>> + 'a {
        // Every name is longer than "", so the range starts at the scope's first one.
        self.parameters
            .range((scope.clone(), ParameterName::lowest())..)
            .take_while(move |((s, _), _)| s == scope)
            .map(|(_, p)| p)
    }

    /// The store mutation that makes `key` durable as it now is.
    pub(crate) fn mutation(&self, key: &SsmKey) -> Mutation {
        match key {
            SsmKey::Parameter(s, n) => put_or_delete(
                PARAMETERS,
                format!("{}/{}/{n}", s.account, s.region),
                self.parameters.get(&(s.clone(), n.clone())).map(|p| encode(p.as_ref())),
            ),
            // Names hold no ':', so the key is unique; the zero padding sorts versions.
            SsmKey::Version(s, n, v) => put_or_delete(
                VERSIONS,
                format!("{}/{}/{n}:{v:020}", s.account, s.region),
                self.parameters
                    .get(&(s.clone(), n.clone()))
                    .and_then(|p| p.versions.get(v))
                    .map(|v| encode(v.as_ref())),
            ),
        }
    }

    /// Loads one record of an `ssm.` table: the record's key, or `None` for a table this
    /// module does not own. A parameter's records may come in any order.
    pub(crate) fn load(&mut self, r: &Record) -> Result<Option<SsmKey>, StoreError> {
        Ok(Some(match r.table.as_str() {
            PARAMETERS => {
                let p: Parameter = decode(r)?;
                let key = (p.scope.clone(), p.name.clone());
                let mut entry = self.parameters.get(&key).map_or(p.clone(), |e| (**e).clone());
                entry.tags = p.tags;
                self.parameters.insert(key.clone(), Arc::new(entry));
                SsmKey::Parameter(key.0, key.1)
            }
            VERSIONS => {
                let v: ParameterVersion = decode(r)?;
                let key = (v.scope.clone(), v.name.clone());
                let mut entry = self.parameters.get(&key).map_or_else(
                    || Parameter {
                        scope: v.scope.clone(),
                        name: v.name.clone(),
                        tags: Vec::new(),
                        versions: BTreeMap::new(),
                    },
                    |e| (**e).clone(),
                );
                let version = v.version;
                entry.versions.insert(version, Arc::new(v));
                self.parameters.insert(key.clone(), Arc::new(entry));
                SsmKey::Version(key.0, key.1, version)
            }
            _ => return Ok(None),
        }))
    }

    /// Forgets what `key` names (its record was deleted): the parameter with its
    /// versions, or one version (and the parameter with it if it was the last).
    pub(crate) fn forget(&mut self, key: &SsmKey) {
        match key {
            SsmKey::Parameter(s, n) => {
                self.parameters.remove(&(s.clone(), n.clone()));
            }
            SsmKey::Version(s, n, v) => {
                let key = (s.clone(), n.clone());
                let Some(entry) = self.parameters.get_mut(&key) else { return };
                let entry = Arc::make_mut(entry);
                entry.versions.remove(v);
                if entry.versions.is_empty() {
                    self.parameters.remove(&key);
                }
            }
        }
    }

    /// Drops parameters that have a tags record but no version (a damaged store); called
    /// once all records are loaded, so that no reader meets a parameter without versions.
    pub(crate) fn finish_load(&mut self) {
        let empty: Vec<_> =
            self.parameters.iter().filter(|(_, p)| p.versions.is_empty()).map(|(k, _)| k.clone()).collect();
        for k in empty {
            tracing::warn!(parameter = %k.1, "an SSM parameter record without versions is ignored");
            self.parameters.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{State, Touched};
    use model::{AccountId, Region};

    fn version(scope: &Scope, name: &ParameterName, v: u64) -> Arc<ParameterVersion> {
        Arc::new(ParameterVersion {
            scope: scope.clone(),
            name: name.clone(),
            version: v,
            ty: ParameterType::String,
            value: StoredValue::Plain(format!("v{v}")),
            description: None,
            key_id: None,
            allowed_pattern: None,
            tier: Tier::Standard,
            policies: Vec::new(),
            data_type: "text".into(),
            labels: vec![format!("l{v}")],
            last_modified: 0,
            last_modified_user: "arn:aws:iam::123456789012:root".into(),
        })
    }

    #[test]
    fn a_parameter_comes_back_from_its_records_in_any_order() {
        let scope =
            Scope { account: AccountId::parse("123456789012").unwrap(), region: Region::parse("us-east-1").unwrap() };
        let name = ParameterName::parse("/a/b").unwrap();
        let mut state = State::default();
        let versions = (1..=3).map(|v| (v, version(&scope, &name, v))).collect();
        let p = Parameter { scope: scope.clone(), name: name.clone(), tags: vec![("k".into(), "v".into())], versions };
        state.ssm.parameters.insert((scope.clone(), name.clone()), Arc::new(p.clone()));
        let mut touched = vec![Touched::Ssm(SsmKey::Parameter(scope.clone(), name.clone()))];
        touched.extend((1..=3).map(|v| Touched::Ssm(SsmKey::Version(scope.clone(), name.clone(), v))));
        let mut records: Vec<Record> = touched
            .iter()
            .map(|t| match state.mutation(t) {
                Mutation::Put(r) => r,
                other => panic!("{other:?}"),
            })
            .collect();
        for _ in 0..2 {
            let back = State::from_records(records.clone()).unwrap();
            assert_eq!(back.ssm.parameters.get(&(scope.clone(), name.clone())).map(|p| (**p).clone()), Some(p.clone()));
            records.reverse();
        }
        // A tags record without versions is not a parameter.
        let lone = records.iter().filter(|r| r.table == PARAMETERS).cloned().collect();
        assert!(State::from_records(lone).unwrap().ssm.parameters.is_empty());
    }
}
