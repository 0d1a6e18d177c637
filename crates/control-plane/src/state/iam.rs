//! IAM's room in the state: the users, groups, roles, customer-managed policies and user
//! access keys of every account. IAM is global, so everything is keyed by account, never region.
//!
//! Policy documents are stored as the text the caller gave (IAM hands it back unchanged)
//! and held parsed in memory, so that authorizing a request never parses a policy.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use model::iam::entity::{IamName, IamPath, KeyStatus};
use model::iam::{PolicyDocument, PolicyKind};
use model::{AccountId, Timestamp};
use store::{Mutation, Record, StoreError};

use super::{decode, encode, put_or_delete};

/// Which grammar a stored document was checked against.
pub trait DocKind {
    const KIND: PolicyKind;
}

/// Identity policies: inline policies and managed policy versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {}
impl DocKind for Identity {
    const KIND: PolicyKind = PolicyKind::Identity;
}

/// Role trust policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {}
impl DocKind for Trust {
    const KIND: PolicyKind = PolicyKind::Trust;
}

/// A valid policy document, stored as its text and held parsed.
pub struct Doc<K> {
    pub parsed: Arc<PolicyDocument>,
    kind: PhantomData<K>,
}

impl<K> Doc<K> {
    pub fn new(parsed: PolicyDocument) -> Self {
        Doc { parsed: Arc::new(parsed), kind: PhantomData }
    }
    pub fn text(&self) -> &str {
        self.parsed.text()
    }
}

impl<K> Clone for Doc<K> {
    fn clone(&self) -> Self {
        Doc { parsed: self.parsed.clone(), kind: PhantomData }
    }
}

impl<K> std::fmt::Debug for Doc<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Doc").field(&self.text()).finish()
    }
}

impl<K> PartialEq for Doc<K> {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl<K> Serialize for Doc<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.text())
    }
}

impl<'de, K: DocKind> Deserialize<'de> for Doc<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        PolicyDocument::parse(&text, K::KIND).map(Doc::new).map_err(|e| serde::de::Error::custom(e.message()))
    }
}

/// An IAM user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub account: AccountId,
    pub name: IamName,
    pub path: IamPath,
    pub id: String,
    pub created: Timestamp,
    pub tags: Vec<(String, String)>,
    /// Inline policies by name, in the order IAM lists them (by name).
    pub inline: BTreeMap<IamName, Doc<Identity>>,
    /// The keys (lower-cased ARNs) of the managed policies attached.
    pub attached: BTreeSet<String>,
}

/// An IAM group: its members take its policies as their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub account: AccountId,
    pub name: IamName,
    pub path: IamPath,
    pub id: String,
    pub created: Timestamp,
    /// Inline policies by name.
    pub inline: BTreeMap<IamName, Doc<Identity>>,
    /// The keys (lower-cased ARNs) of the managed policies attached.
    pub attached: BTreeSet<String>,
    /// The members' lower-cased names (the users' map keys). Kept on the group, as IAM's
    /// `GetGroup` lists them; a user's groups are found by looking through its account's.
    pub users: BTreeSet<String>,
}

/// An identity policy that applies to a principal: one of the AWS-managed policies Berth
/// ships, or a document of the account's, shared with the state that holds it.
#[derive(Debug, Clone)]
pub enum PolicyRef {
    Aws(&'static PolicyDocument),
    Own(Arc<PolicyDocument>),
}

impl std::ops::Deref for PolicyRef {
    type Target = PolicyDocument;

    fn deref(&self) -> &PolicyDocument {
        match self {
            PolicyRef::Aws(d) => d,
            PolicyRef::Own(d) => d,
        }
    }
}

/// What every request of one principal starts from when it is authorized: its identity
/// policies and the condition keys that follow from it alone. Preparing them allocated
/// more than the rest of a request's authorization, so `iam::authz` keeps them in
/// [`PreparedPrincipals`] for as long as IAM's state is unchanged.
#[derive(Debug)]
pub struct PreparedPrincipal {
    pub context: Arc<model::iam::PrincipalContext>,
    pub policies: Vec<PolicyRef>,
    /// Whom it was prepared for.
    account: AccountId,
    principal: crate::caller::Principal,
    /// The IAM state it was prepared from: it is valid while the state still holds the
    /// same users, groups, roles and policies.
    from: IamState,
    /// `policies` narrowed to each action asked of them so far: most of a principal's
    /// statements are for other actions, and matching their actions on every request was
    /// most of what deciding it cost.
    by_action: std::sync::RwLock<std::collections::HashMap<Box<str>, NarrowedPolicies, foldhash::fast::RandomState>>,
}

/// A principal's identity policies narrowed to one action.
pub type NarrowedPolicies = Arc<[Arc<model::iam::PolicyDocument>]>;

impl PreparedPrincipal {
    /// Distinct actions remembered before the memory starts over.
    const MAX_ACTIONS: usize = 1024;

    /// The statements of the principal's policies that can apply to `action`
    /// ([`model::iam::PolicyDocument::for_action`]), narrowed once per action.
    pub fn policies_for(&self, action: &str) -> NarrowedPolicies {
        if let Some(p) = self.by_action.read().unwrap_or_else(|p| p.into_inner()).get(action) {
            return p.clone();
        }
        let narrowed: NarrowedPolicies =
            self.policies.iter().filter_map(|p| p.for_action(action)).map(Arc::new).collect();
        let mut by_action = self.by_action.write().unwrap_or_else(|p| p.into_inner());
        if by_action.len() >= Self::MAX_ACTIONS {
            by_action.clear();
        }
        by_action.insert(action.into(), narrowed.clone());
        narrowed
    }
}

/// Prepared principals, by a hash of who they are (a collision only costs a rebuild).
/// Dropped whole when it grows past [`PreparedPrincipals::MAX`] (role sessions come and go).
#[derive(Debug, Default)]
pub struct PreparedPrincipals(std::sync::RwLock<std::collections::HashMap<u64, Arc<PreparedPrincipal>>>);

impl PreparedPrincipals {
    const MAX: usize = 10_000;

    fn slot(account: &AccountId, principal: &crate::caller::Principal) -> u64 {
        use std::hash::BuildHasher;
        // foldhash, seeded per process: the slot is only a hint (`get` compares the principal).
        static SEED: std::sync::OnceLock<foldhash::fast::RandomState> = std::sync::OnceLock::new();
        SEED.get_or_init(Default::default).hash_one((account, principal))
    }

    /// The principal's prepared part, if it was prepared from IAM's state as it is now.
    pub fn get(
        &self,
        iam: &IamState,
        account: &AccountId,
        principal: &crate::caller::Principal,
    ) -> Option<Arc<PreparedPrincipal>> {
        let slots = self.0.read().unwrap_or_else(|p| p.into_inner());
        let p = slots.get(&Self::slot(account, principal))?;
        let from = &p.from;
        let current = from.users.ptr_eq(&iam.users)
            && from.roles.ptr_eq(&iam.roles)
            && from.groups.ptr_eq(&iam.groups)
            && from.policies.ptr_eq(&iam.policies);
        (current && p.account == *account && p.principal == *principal).then(|| p.clone())
    }

    /// Keeps what was prepared for `principal` from `iam`.
    pub fn put(
        &self,
        iam: &IamState,
        account: &AccountId,
        principal: &crate::caller::Principal,
        context: model::iam::PrincipalContext,
        policies: Vec<PolicyRef>,
    ) -> Arc<PreparedPrincipal> {
        let prepared = Arc::new(PreparedPrincipal {
            context: Arc::new(context),
            policies,
            account: account.clone(),
            principal: principal.clone(),
            from: iam.clone(),
            by_action: Default::default(),
        });
        let mut slots = self.0.write().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= Self::MAX {
            slots.clear();
        }
        slots.insert(Self::slot(account, principal), prepared.clone());
        prepared
    }
}

/// An IAM role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub account: AccountId,
    pub name: IamName,
    pub path: IamPath,
    pub id: String,
    pub created: Timestamp,
    pub trust: Doc<Trust>,
    pub description: Option<String>,
    pub max_session_duration: i32,
    pub tags: Vec<(String, String)>,
    pub inline: BTreeMap<IamName, Doc<Identity>>,
    pub attached: BTreeSet<String>,
}

/// One version of a managed policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyVersion {
    pub document: Doc<Identity>,
    pub created: Timestamp,
}

/// A customer-managed policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedPolicy {
    pub account: AccountId,
    pub name: IamName,
    pub path: IamPath,
    pub id: String,
    pub description: Option<String>,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub tags: Vec<(String, String)>,
    /// Versions by number (`v3` is 3).
    pub versions: BTreeMap<u32, PolicyVersion>,
    pub default_version: u32,
    /// The number the next version gets: versions are never numbered twice.
    pub next_version: u32,
}

/// An access key of an IAM user. The account's root keys are `auth`'s.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserKey {
    pub id: String,
    /// The secret, sealed with the master key for [`UserKey::purpose`]: the store never
    /// holds it in clear.
    pub sealed_secret: String,
    pub account: AccountId,
    /// The lower-cased user name (the user's map key).
    pub user: String,
    pub status: KeyStatus,
    pub created: Timestamp,
}

impl UserKey {
    /// What a key's secret is sealed for: this key only.
    pub fn purpose(id: &str) -> String {
        format!("iam access key {id}")
    }
}

impl std::fmt::Debug for UserKey {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserKey").field("id", &self.id).field("user", &self.user).finish_non_exhaustive()
    }
}

/// Which record changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IamKey {
    /// Account, lower-cased name.
    User(AccountId, String),
    Role(AccountId, String),
    Group(AccountId, String),
    /// Account, lower-cased ARN.
    Policy(AccountId, String),
    AccessKey(String),
}

/// IAM's entities of every account.
#[derive(Debug, Clone, Default)]
pub struct IamState {
    pub users: OrdMap<(AccountId, String), Arc<User>>,
    pub roles: OrdMap<(AccountId, String), Arc<Role>>,
    pub groups: OrdMap<(AccountId, String), Arc<Group>>,
    pub policies: OrdMap<(AccountId, String), Arc<ManagedPolicy>>,
    pub keys: OrdMap<String, Arc<UserKey>>,
}

const USERS: &str = "iam.users";
const ROLES: &str = "iam.roles";
const GROUPS: &str = "iam.groups";
const POLICIES: &str = "iam.policies";
const KEYS: &str = "iam.access_keys";

impl IamState {
    /// The store mutation that makes `key` durable as it now is.
    pub(crate) fn mutation(&self, key: &IamKey) -> Mutation {
        let (table, k, value) = match key {
            IamKey::User(a, n) => {
                (USERS, format!("{a}/{n}"), self.users.get(&(a.clone(), n.clone())).map(|v| encode(v.as_ref())))
            }
            IamKey::Role(a, n) => {
                (ROLES, format!("{a}/{n}"), self.roles.get(&(a.clone(), n.clone())).map(|v| encode(v.as_ref())))
            }
            IamKey::Group(a, n) => {
                (GROUPS, format!("{a}/{n}"), self.groups.get(&(a.clone(), n.clone())).map(|v| encode(v.as_ref())))
            }
            IamKey::Policy(a, arn) => (
                POLICIES,
                format!("{a}/{arn}"),
                self.policies.get(&(a.clone(), arn.clone())).map(|v| encode(v.as_ref())),
            ),
            IamKey::AccessKey(id) => (KEYS, id.clone(), self.keys.get(id).map(|v| encode(v.as_ref()))),
        };
        put_or_delete(table, k, value)
    }

    /// Loads one record of an `iam.` table: the entity's key, or `None` for a table this
    /// module does not own.
    pub(crate) fn load(&mut self, r: &Record) -> std::result::Result<Option<IamKey>, StoreError> {
        Ok(Some(match r.table.as_str() {
            USERS => {
                let v: User = decode(r)?;
                let (account, name) = (v.account.clone(), v.name.key());
                self.users.insert((account.clone(), name.clone()), Arc::new(v));
                IamKey::User(account, name)
            }
            ROLES => {
                let v: Role = decode(r)?;
                let (account, name) = (v.account.clone(), v.name.key());
                self.roles.insert((account.clone(), name.clone()), Arc::new(v));
                IamKey::Role(account, name)
            }
            GROUPS => {
                let v: Group = decode(r)?;
                let (account, name) = (v.account.clone(), v.name.key());
                self.groups.insert((account.clone(), name.clone()), Arc::new(v));
                IamKey::Group(account, name)
            }
            POLICIES => {
                let v: ManagedPolicy = decode(r)?;
                let key = model::iam::entity::PolicyArn {
                    account: Some(v.account.clone()),
                    path: v.path.clone(),
                    name: v.name.clone(),
                }
                .key();
                let account = v.account.clone();
                self.policies.insert((account.clone(), key.clone()), Arc::new(v));
                IamKey::Policy(account, key)
            }
            KEYS => {
                let v: UserKey = decode(r)?;
                let id = v.id.clone();
                self.keys.insert(id.clone(), Arc::new(v));
                IamKey::AccessKey(id)
            }
            _ => return Ok(None),
        }))
    }

    /// Forgets the entity `key` names (its record was deleted).
    pub(crate) fn forget(&mut self, key: &IamKey) {
        match key {
            IamKey::User(a, n) => drop(self.users.remove(&(a.clone(), n.clone()))),
            IamKey::Role(a, n) => drop(self.roles.remove(&(a.clone(), n.clone()))),
            IamKey::Group(a, n) => drop(self.groups.remove(&(a.clone(), n.clone()))),
            IamKey::Policy(a, arn) => drop(self.policies.remove(&(a.clone(), arn.clone()))),
            IamKey::AccessKey(id) => drop(self.keys.remove(id)),
        };
    }

    /// The groups `user` (lower-cased name) is a member of.
    pub fn user_groups<'a>(&'a self, account: &'a AccountId, user: &'a str) -> impl Iterator<Item = &'a Arc<Group>> {
        self.groups.iter().filter(move |((a, _), g)| a == account && g.users.contains(user)).map(|(_, g)| g)
    }

    /// The access keys of one user.
    pub fn user_keys<'a>(&'a self, account: &'a AccountId, user: &'a str) -> impl Iterator<Item = &'a Arc<UserKey>> {
        self.keys.values().filter(move |k| &k.account == account && k.user == user)
    }
}
