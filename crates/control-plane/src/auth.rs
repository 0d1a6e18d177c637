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
const TOKEN_SECRET: &str = "registry_token_secret";
const SESSION_KEY: &str = "session_token_key";

/// How long a registry token (`GetAuthorizationToken`) is valid, as in ECR.
pub const TOKEN_LIFETIME_SECONDS: i64 = 12 * 3600;

/// What a valid registry token proves: the account (and region) it was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub account: AccountId,
    pub region: String,
    pub expires_at: i64,
    /// Who asked for it: what the registry's requests are authorized as.
    pub principal: crate::caller::Principal,
}

#[derive(Serialize, Deserialize)]
struct TokenClaims {
    a: String,
    r: String,
    e: i64,
    n: String,
    /// The principal; tokens of Berths before IAM have none and were the root's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p: Option<crate::caller::Principal>,
}

/// How long a layer download URL (`GetDownloadUrlForLayer`) is valid. AWS does not say
/// how long its pre-signed layer URLs live; clients fetch them at once, so an hour is
/// ample and keeps a leaked URL's use short.
pub const LAYER_URL_LIFETIME_SECONDS: i64 = 3600;

/// The claims of a layer download URL: one blob of one repository, until `e`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerClaims {
    a: String,
    r: String,
    p: String,
    d: String,
    e: i64,
}

/// Prefixed to what a layer URL's signature covers, so that no signature of one kind of
/// token can ever pass for the other (a layer URL must not work as a registry login).
const LAYER_URL_DOMAIN: &str = "berth-layer-url\n";

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
    token_secret: std::sync::OnceLock<Vec<u8>>,
    session_key: std::sync::OnceLock<Vec<u8>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Credentials {
            store,
            cache: RwLock::new(HashMap::new()),
            token_secret: std::sync::OnceLock::new(),
            session_key: std::sync::OnceLock::new(),
        }
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

    /// The secret registry tokens are signed with, created once per deployment and kept
    /// in the store, so tokens stay valid across restarts and cannot be forged without it.
    fn token_secret(&self) -> Result<&[u8]> {
        self.meta_secret(TOKEN_SECRET, &self.token_secret)
    }

    /// The key STS session tokens are sealed with (`iam::sessions`), kept like
    /// [`Self::token_secret`] so that temporary credentials survive a restart.
    pub(crate) fn session_key(&self) -> Result<&[u8]> {
        self.meta_secret(SESSION_KEY, &self.session_key)
    }

    /// 32 random bytes kept under `name` in the store, created on first use.
    fn meta_secret<'a>(&self, name: &str, cell: &'a std::sync::OnceLock<Vec<u8>>) -> Result<&'a [u8]> {
        if let Some(s) = cell.get() {
            return Ok(s);
        }
        let secret = match self.store.get(META, name).map_err(internal)? {
            Some(bytes) => serde_json::from_slice::<String>(&bytes)
                .map_err(internal)
                .and_then(|h| hex::decode(h).map_err(internal))?,
            None => {
                let bytes: [u8; 32] = rand::thread_rng().gen();
                self.store.commit(&[put(META, name, &hex::encode(bytes))]).map_err(internal)?;
                bytes.to_vec()
            }
        };
        Ok(cell.get_or_init(|| secret))
    }

    fn sign(&self, payload: &str) -> Result<String> {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(self.token_secret()?).map_err(internal)?;
        mac.update(payload.as_bytes());
        Ok(hex::encode(mac.finalize().into_bytes()))
    }

    /// A registry token for `account` in `region`, valid for 12 hours from `now`
    /// (seconds since the epoch): a signed claim, `<payload>.<hmac>`.
    pub fn registry_token(
        &self,
        account: &AccountId,
        region: &str,
        principal: &crate::caller::Principal,
        now: i64,
    ) -> Result<(String, i64)> {
        use base64::Engine;
        let expires_at = now + TOKEN_LIFETIME_SECONDS;
        let claims = TokenClaims {
            a: account.to_string(),
            r: region.to_string(),
            e: expires_at,
            n: random_from(b"0123456789abcdef", 16),
            p: Some(principal.clone()),
        };
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).map_err(internal)?);
        let signature = self.sign(&payload)?;
        Ok((format!("{payload}.{signature}"), expires_at))
    }

    /// Checks a registry token's signature and expiry; `None` for any token that is not
    /// one of ours, was altered, or has expired.
    pub fn verify_registry_token(&self, token: &str, now: i64) -> Result<Option<TokenGrant>> {
        use base64::Engine;
        let Some((payload, signature)) = token.split_once('.') else { return Ok(None) };
        let expected = self.sign(payload)?;
        if !constant_time_eq(&expected, signature) {
            return Ok(None);
        }
        let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) else { return Ok(None) };
        let Ok(claims) = serde_json::from_slice::<TokenClaims>(&bytes) else { return Ok(None) };
        if claims.e <= now {
            return Ok(None);
        }
        let Ok(account) = AccountId::parse(&claims.a) else { return Ok(None) };
        let principal = claims.p.unwrap_or(crate::caller::Principal::Root);
        Ok(Some(TokenGrant { account, region: claims.r, expires_at: claims.e, principal }))
    }

    /// A credential for downloading blob `digest` of `repository` (in `account` and
    /// `region`) without other credentials, valid for [`LAYER_URL_LIFETIME_SECONDS`] from
    /// `now`: `<payload>.<hmac>`, URL-safe.
    pub fn layer_url_token(
        &self,
        account: &AccountId,
        region: &str,
        repository: &str,
        digest: &str,
        now: i64,
    ) -> Result<(String, i64)> {
        use base64::Engine;
        let expires_at = now + LAYER_URL_LIFETIME_SECONDS;
        let claims = LayerClaims {
            a: account.to_string(),
            r: region.to_string(),
            p: repository.to_string(),
            d: digest.to_string(),
            e: expires_at,
        };
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).map_err(internal)?);
        let signature = self.sign(&format!("{LAYER_URL_DOMAIN}{payload}"))?;
        Ok((format!("{payload}.{signature}"), expires_at))
    }

    /// Checks a layer URL credential for downloading `digest` of `repository`; `None`
    /// unless it is one of ours, unaltered, unexpired and issued for exactly that blob.
    pub fn verify_layer_url_token(
        &self,
        token: &str,
        repository: &str,
        digest: &str,
        now: i64,
    ) -> Result<Option<TokenGrant>> {
        use base64::Engine;
        let Some((payload, signature)) = token.split_once('.') else { return Ok(None) };
        let expected = self.sign(&format!("{LAYER_URL_DOMAIN}{payload}"))?;
        if !constant_time_eq(&expected, signature) {
            return Ok(None);
        }
        let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) else { return Ok(None) };
        let Ok(claims) = serde_json::from_slice::<LayerClaims>(&bytes) else { return Ok(None) };
        if claims.e <= now || claims.p != repository || claims.d != digest {
            return Ok(None);
        }
        let Ok(account) = AccountId::parse(&claims.a) else { return Ok(None) };
        // GetDownloadUrlForLayer was authorized when the URL was made; the URL opens only
        // that blob.
        let principal = crate::caller::Principal::Root;
        Ok(Some(TokenGrant { account, region: claims.r, expires_at: claims.e, principal }))
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

/// Compares without an early exit, so the time taken says nothing about where a forged
/// signature first differs.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> (tempfile::TempDir, Credentials) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(store::SqliteStore::open(&dir.path().join("db")).unwrap());
        (dir, Credentials::new(store))
    }

    #[test]
    fn registry_tokens_verify_until_they_expire_and_cannot_be_altered() {
        let (_dir, c) = credentials();
        let account = AccountId::parse("123456789012").unwrap();
        let (token, expires) = c.registry_token(&account, "us-east-1", &crate::caller::Principal::Root, 1_000).unwrap();
        assert_eq!(expires, 1_000 + TOKEN_LIFETIME_SECONDS);
        let grant = c.verify_registry_token(&token, 2_000).unwrap().unwrap();
        assert_eq!((grant.account, grant.region.as_str()), (account.clone(), "us-east-1"));
        assert_eq!(c.verify_registry_token(&token, expires).unwrap(), None, "expired");
        let (payload, sig) = token.split_once('.').unwrap();
        let mut forged = payload.to_string();
        forged.replace_range(0..1, if payload.starts_with('A') { "B" } else { "A" });
        assert_eq!(c.verify_registry_token(&format!("{forged}.{sig}"), 2_000).unwrap(), None);
        assert_eq!(c.verify_registry_token("garbage", 2_000).unwrap(), None);
    }

    #[test]
    fn layer_urls_open_one_blob_until_they_expire_and_are_no_registry_login() {
        let (_dir, c) = credentials();
        let account = AccountId::parse("123456789012").unwrap();
        let (token, expires) = c.layer_url_token(&account, "us-east-1", "app", "sha256:ab", 1_000).unwrap();
        assert_eq!(expires, 1_000 + LAYER_URL_LIFETIME_SECONDS);
        let grant = c.verify_layer_url_token(&token, "app", "sha256:ab", 1_001).unwrap().unwrap();
        assert_eq!((grant.account, grant.region.as_str()), (account, "us-east-1"));
        assert_eq!(c.verify_layer_url_token(&token, "app", "sha256:cd", 1_001).unwrap(), None, "another blob");
        assert_eq!(c.verify_layer_url_token(&token, "other", "sha256:ab", 1_001).unwrap(), None, "another repo");
        assert_eq!(c.verify_layer_url_token(&token, "app", "sha256:ab", expires).unwrap(), None, "expired");
        assert_eq!(c.verify_registry_token(&token, 1_001).unwrap(), None, "not a docker login");
        let (login, _) = c
            .registry_token(
                &AccountId::parse("123456789012").unwrap(),
                "us-east-1",
                &crate::caller::Principal::Root,
                1_000,
            )
            .unwrap();
        assert_eq!(c.verify_layer_url_token(&login, "app", "sha256:ab", 1_001).unwrap(), None);
    }

    #[test]
    fn the_signing_secret_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let account = AccountId::parse("123456789012").unwrap();
        let token = {
            let c = Credentials::new(Arc::new(store::SqliteStore::open(&path).unwrap()));
            c.registry_token(&account, "us-east-1", &crate::caller::Principal::Root, 0).unwrap().0
        };
        let c = Credentials::new(Arc::new(store::SqliteStore::open(&path).unwrap()));
        assert!(c.verify_registry_token(&token, 1).unwrap().is_some());
    }
}
