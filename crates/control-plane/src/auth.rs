//! Accounts and their access keys.
//!
//! Keys are kept in the store (tables `auth.*`), outside the ECS state, because they are
//! also written by `berth account ...` commands in another process while the server runs.
//! The server caches keys it has seen and reads the store on a miss, so a key created by
//! such a command works at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rand::Rng;
use serde::{Deserialize, Serialize};

use model::{AccountId, Timestamp};
use store::{Mutation, Record, Store};

use crate::error::{Error, Result};

const ACCOUNTS: &str = "auth.accounts";
const KEYS: &str = "auth.access_keys";
const META: &str = "auth.meta";
const FIRST_KEY: &str = "first_access_key";

/// An account: the owner of resources. Nothing is shared between accounts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub created_at: Timestamp,
}

/// An access key: the id a request names and the secret both sides sign with.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
    pub account: AccountId,
    pub created_at: Timestamp,
}

impl std::fmt::Debug for AccessKey {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey").field("id", &self.id).field("account", &self.account).finish_non_exhaustive()
    }
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

fn put<T: Serialize>(table: &str, key: &str, v: &T) -> Mutation {
    Mutation::Put(Record {
        table: table.into(),
        key: key.into(),
        value: serde_json::to_vec(v).expect("auth records serialize"),
    })
}

fn random_from(alphabet: &[u8], n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n).map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char).collect()
}

/// The accounts and keys in one store.
pub struct Credentials {
    store: Arc<dyn Store>,
    cache: RwLock<HashMap<String, AccessKey>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Credentials { store, cache: RwLock::new(HashMap::new()) }
    }

    /// The key with this id, if any account has it.
    pub fn lookup(&self, key_id: &str) -> Result<Option<AccessKey>> {
        if let Some(k) = self.cache.read().unwrap_or_else(|p| p.into_inner()).get(key_id) {
            return Ok(Some(k.clone()));
        }
        // Ids are short, fixed-alphabet strings; anything else cannot be a key of ours and
        // is not worth a store read.
        if key_id.is_empty() || key_id.len() > 128 || !key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        let Some(bytes) = self.store.get(KEYS, key_id).map_err(internal)? else {
            return Ok(None);
        };
        let key: AccessKey = serde_json::from_slice(&bytes).map_err(internal)?;
        self.cache.write().unwrap_or_else(|p| p.into_inner()).insert(key_id.to_string(), key.clone());
        Ok(Some(key))
    }

    /// Creates an account with one access key.
    pub fn create_account(&self, name: &str) -> Result<(Account, AccessKey)> {
        let id =
            AccountId::parse(&format!("{}{}", rand::thread_rng().gen_range(1..=9), random_from(b"0123456789", 11)))?;
        let account = Account { id: id.clone(), name: name.to_string(), created_at: Timestamp::now() };
        let key = new_key(&id);
        self.store.commit(&[put(ACCOUNTS, id.as_str(), &account), put(KEYS, &key.id, &key)]).map_err(internal)?;
        Ok((account, key))
    }

    /// Adds an access key to an existing account.
    pub fn create_key(&self, account: &AccountId) -> Result<AccessKey> {
        if self.store.get(ACCOUNTS, account.as_str()).map_err(internal)?.is_none() {
            return Err(Error::NotFound {
                kind: crate::error::NotFoundKind::Resource,
                message: format!("There is no account {account}; `berth account list` shows the accounts."),
            });
        }
        let key = new_key(account);
        self.store.commit(&[put(KEYS, &key.id, &key)]).map_err(internal)?;
        Ok(key)
    }

    /// Every account, with its keys.
    pub fn list(&self) -> Result<Vec<(Account, Vec<AccessKey>)>> {
        let records = self.store.load().map_err(internal)?;
        let mut accounts: Vec<(Account, Vec<AccessKey>)> = Vec::new();
        for r in records.iter().filter(|r| r.table == ACCOUNTS) {
            accounts.push((serde_json::from_slice(&r.value).map_err(internal)?, Vec::new()));
        }
        for r in records.iter().filter(|r| r.table == KEYS) {
            let k: AccessKey = serde_json::from_slice(&r.value).map_err(internal)?;
            if let Some(slot) = accounts.iter_mut().find(|(a, _)| a.id == k.account) {
                slot.1.push(k);
            }
        }
        Ok(accounts)
    }

    /// On a store with no accounts, creates the first account and key and returns them.
    pub fn bootstrap(&self) -> Result<Option<(Account, AccessKey)>> {
        if self.store.get(META, FIRST_KEY).map_err(internal)?.is_some() {
            return Ok(None);
        }
        let (account, key) = self.create_account("default")?;
        self.store.commit(&[put(META, FIRST_KEY, &key.id)]).map_err(internal)?;
        Ok(Some((account, key)))
    }

    /// The key created on first start, which `berth env` hands out.
    pub fn first_key(&self) -> Result<Option<AccessKey>> {
        let Some(bytes) = self.store.get(META, FIRST_KEY).map_err(internal)? else {
            return Ok(None);
        };
        let id: String = serde_json::from_slice(&bytes).map_err(internal)?;
        self.lookup(&id)
    }
}

/// A key in AWS's format: `AKIA` + 16 upper-case base-32 characters, and a 40-character
/// secret.
fn new_key(account: &AccountId) -> AccessKey {
    AccessKey {
        id: format!("AKIA{}", random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)),
        secret: random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40),
        account: account.clone(),
        created_at: Timestamp::now(),
    }
}
