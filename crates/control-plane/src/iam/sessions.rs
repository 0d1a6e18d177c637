//! Who a request's key belongs to: the account's root keys (`auth`), IAM users' keys,
//! and temporary credentials from STS, whose session token carries the session.
//!
//! Decisions:
//! - A session token is the session itself, sealed (ChaCha20-Poly1305, key kept in the
//!   store like the registry's signing secret): the account, the principal, the key pair
//!   and the expiry. Nothing is stored per session, so sessions survive a restart, and a
//!   token cannot be forged, altered or moved to another account without the key.
//! - Each request re-reads the principal from the state: a session of a role that was
//!   deleted (or recreated: the unique id differs) stops working at once, and so do a
//!   deleted user's keys and sessions; an inactive key is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::Rng;
use serde::{Deserialize, Serialize};

use model::iam::entity::{KeyStatus, SessionName, ID_ALPHABET};
use model::AccountId;

use super::Iam;
use crate::caller::Principal;
use crate::error::{Error, Result};
use crate::state::State;
use crate::Ops;

/// What a request's access key id (and session token) stand for.
#[derive(Clone)]
pub struct KeyGrant {
    pub secret: String,
    pub account: AccountId,
    pub principal: Principal,
}

impl std::fmt::Debug for KeyGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyGrant")
            .field("account", &self.account)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// Why a key is refused; each has its own AWS error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No such key, an inactive key, or a token that is not ours or was altered.
    Unknown,
    /// A session token whose time is over.
    Expired,
}

/// Temporary credentials as STS hands them out.
#[derive(Clone)]
pub struct SessionCredentials {
    pub access_key_id: String,
    pub secret: String,
    pub token: String,
    /// Seconds since the epoch.
    pub expires_at: i64,
}

impl std::fmt::Debug for SessionCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCredentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// Whose session a token holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "lowercase")]
pub(crate) enum SessionOf {
    /// `GetSessionToken` of the account's root.
    Root,
    /// `GetSessionToken` of a user: its lower-cased name and unique id.
    User { n: String, i: String },
    /// `AssumeRole`: the role's lower-cased name and unique id, and the session name.
    Role { n: String, i: String, s: String },
}

#[derive(Serialize, Deserialize)]
struct Claims {
    /// The format, so that a later Berth can read what this one sealed.
    v: u8,
    a: AccountId,
    who: SessionOf,
    id: String,
    sec: String,
    e: i64,
}

/// Tokens start with this, so a token of another origin is refused before decryption.
const TOKEN_PREFIX: &str = "BSTS1";

fn now_seconds() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn random(alphabet: &[u8], n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n).map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char).collect()
}

impl Ops<'_, Iam> {
    fn cipher(&self) -> Result<ChaCha20Poly1305> {
        let key = self.credentials.session_key()?;
        Ok(ChaCha20Poly1305::new(Key::from_slice(key)))
    }

    /// Mints temporary credentials for `who` in `account`, valid for `seconds`.
    pub(crate) fn seal_session(&self, account: &AccountId, who: SessionOf, seconds: i64) -> Result<SessionCredentials> {
        let access_key_id = format!("ASIA{}", random(ID_ALPHABET, 16));
        let secret = random(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40);
        let expires_at = now_seconds() + seconds;
        let claims =
            Claims { v: 1, a: account.clone(), who, id: access_key_id.clone(), sec: secret.clone(), e: expires_at };
        let plain = serde_json::to_vec(&claims).map_err(|e| Error::Internal(e.to_string()))?;
        let nonce: [u8; 12] = rand::thread_rng().gen();
        let sealed = self
            .cipher()?
            .encrypt(Nonce::from_slice(&nonce), plain.as_slice())
            .map_err(|_| Error::Internal("sealing a session token failed".into()))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(SessionCredentials {
            access_key_id,
            secret,
            token: format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)),
            expires_at,
        })
    }

    fn open_session(&self, token: &str) -> Result<Option<Claims>> {
        let Some(b64) = token.strip_prefix(TOKEN_PREFIX) else { return Ok(None) };
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(b64) else { return Ok(None) };
        if bytes.len() < 12 + 16 {
            return Ok(None);
        }
        let (nonce, sealed) = bytes.split_at(12);
        let Ok(plain) = self.cipher()?.decrypt(Nonce::from_slice(nonce), sealed) else { return Ok(None) };
        Ok(serde_json::from_slice::<Claims>(&plain).ok().filter(|c| c.v == 1))
    }

    /// The secret and principal of access key `key_id`, with the request's session token
    /// if it has one.
    pub fn key_grant(&self, key_id: &str, token: Option<&str>) -> Result<std::result::Result<KeyGrant, KeyRefusal>> {
        if let Some(token) = token {
            let Some(c) = self.open_session(token)? else { return Ok(Err(KeyRefusal::Unknown)) };
            if c.id != key_id {
                return Ok(Err(KeyRefusal::Unknown));
            }
            if c.e <= now_seconds() {
                return Ok(Err(KeyRefusal::Expired));
            }
            let state = self.view();
            let Some(principal) = session_principal(&state, &c.a, &c.who) else { return Ok(Err(KeyRefusal::Unknown)) };
            return Ok(Ok(KeyGrant { secret: c.sec, account: c.a, principal }));
        }
        // Users' keys are in the published state: no store read, as a root key that
        // missed the cache costs.
        let state = self.view();
        if let Some(key) = state.iam.keys.get(key_id) {
            if key.status != KeyStatus::Active {
                return Ok(Err(KeyRefusal::Unknown));
            }
            let Some(user) = state.iam.users.get(&(key.account.clone(), key.user.clone())) else {
                return Ok(Err(KeyRefusal::Unknown));
            };
            let principal = Principal::User { name: user.name.clone(), id: user.id.clone(), path: user.path.clone() };
            let secret = self.user_key_secret(key)?;
            return Ok(Ok(KeyGrant { secret: secret.to_string(), account: key.account.clone(), principal }));
        }
        match self.credentials.lookup(key_id)? {
            Some(root) => Ok(Ok(KeyGrant { secret: root.secret, account: root.account, principal: Principal::Root })),
            None => Ok(Err(KeyRefusal::Unknown)),
        }
    }
}

impl Ops<'_, Iam> {
    /// A user key's secret in clear, opened once and then kept in memory. Only keys found
    /// in the state get here, so a deleted key's entry is never used again.
    fn user_key_secret(&self, key: &crate::state::iam::UserKey) -> Result<std::sync::Arc<str>> {
        if let Some(s) = self.unsealed_keys.read().unwrap_or_else(|p| p.into_inner()).get(&key.id) {
            return Ok(s.clone());
        }
        let secret: std::sync::Arc<str> = self
            .sealer
            .open_text(&crate::state::iam::UserKey::purpose(&key.id), &key.sealed_secret)
            .map_err(|_| Error::Internal(format!("the secret of access key {} does not open", key.id)))?
            .into();
        self.unsealed_keys.write().unwrap_or_else(|p| p.into_inner()).insert(key.id.clone(), secret.clone());
        Ok(secret)
    }
}

/// The principal a session stands for, if it still exists as it was.
fn session_principal(state: &State, account: &AccountId, who: &SessionOf) -> Option<Principal> {
    match who {
        SessionOf::Root => Some(Principal::Root),
        SessionOf::User { n, i } => {
            let u = state.iam.users.get(&(account.clone(), n.clone())).filter(|u| &u.id == i)?;
            Some(Principal::User { name: u.name.clone(), id: u.id.clone(), path: u.path.clone() })
        }
        SessionOf::Role { n, i, s } => {
            let r = state.iam.roles.get(&(account.clone(), n.clone())).filter(|r| &r.id == i)?;
            Some(Principal::Role {
                name: r.name.clone(),
                id: r.id.clone(),
                path: r.path.clone(),
                session: SessionName::parse(s).ok()?,
            })
        }
    }
}

/// The session a principal's `GetSessionToken` holds.
pub(crate) fn session_of(principal: &Principal) -> SessionOf {
    match principal {
        Principal::Root => SessionOf::Root,
        Principal::User { name, id, .. } => SessionOf::User { n: name.key(), i: id.clone() },
        Principal::Role { name, id, session, .. } => {
            SessionOf::Role { n: name.key(), i: id.clone(), s: session.to_string() }
        }
    }
}
