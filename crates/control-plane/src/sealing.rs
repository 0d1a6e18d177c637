//! Encryption at rest for what users hand Berth as secrets (SSM SecureString values,
//! Secrets Manager secrets, access key secrets).
//!
//! Decision: one 256-bit master key per deployment, kept outside the store (the data
//! dir's `master.key`, owner-only, or `BERTH_MASTER_KEY`), so a copy of the database
//! alone reveals nothing. Values are sealed with XChaCha20-Poly1305 (random 192-bit
//! nonces never repeat in practice, so no counter has to survive a crash). Each value is
//! bound to what it belongs to through the associated data (`purpose`): a sealed value
//! copied onto another record does not open.
//!
//! The store holds one sealed check value (table `sealing`, key `check`). A control plane
//! opened with another key (or with a new one because the key file was lost) refuses to
//! start instead of answering with garbage later.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::error::{Error, Result};

/// The table and key of the check value.
pub(crate) const CHECK_TABLE: &str = "auth.sealing";
pub(crate) const CHECK_KEY: &str = "check";
const CHECK_PURPOSE: &str = "berth master key check";
/// The first byte of every sealed value: the format, so a later one can be told apart.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
/// The key file's name inside the data dir.
pub const KEY_FILE: &str = "master.key";
/// The environment variable that supplies the key instead of the file (base64 of 32 bytes).
pub const KEY_ENV: &str = "BERTH_MASTER_KEY";

/// Seals and opens values with the deployment's master key.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(..)")
    }
}

/// A sealed value that does not open: another key, another purpose, or damaged bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsealable;

impl Sealer {
    pub fn from_key(key: [u8; 32]) -> Sealer {
        Sealer { cipher: XChaCha20Poly1305::new(Key::from_slice(&key)) }
    }

    /// A sealer with a fresh random key: for tests and for control planes whose store is
    /// thrown away with them.
    pub fn ephemeral() -> Sealer {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        Sealer::from_key(key)
    }

    /// The key from `BERTH_MASTER_KEY` if set, else from `dir/master.key`, created
    /// (owner-only) on first use.
    pub fn for_data_dir(dir: &Path) -> Result<Sealer> {
        if let Ok(text) = std::env::var(KEY_ENV) {
            return parse_key(&text)
                .map(Sealer::from_key)
                .map_err(|why| Error::Internal(format!("{KEY_ENV} must be the base64 of 32 random bytes ({why})")));
        }
        let path = dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => parse_key(&text)
                .map(Sealer::from_key)
                .map_err(|why| Error::Internal(format!("{} is not a Berth master key ({why})", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut key);
                write_owner_only(&path, &STANDARD.encode(key))
                    .map_err(|e| Error::Internal(format!("writing the master key {}: {e}", path.display())))?;
                Ok(Sealer::from_key(key))
            }
            Err(e) => Err(Error::Internal(format!("reading the master key {}: {e}", path.display()))),
        }
    }

    /// Seals `plain` for `purpose` (what the value belongs to, e.g. a parameter's ARN and
    /// version): version byte, nonce, ciphertext with its tag.
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad: purpose.as_bytes() })
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`Sealer::seal`] sealed for the same `purpose`.
    pub fn open(&self, purpose: &str, sealed: &[u8]) -> std::result::Result<Vec<u8>, Unsealable> {
        let (&version, rest) = sealed.split_first().ok_or(Unsealable)?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return Err(Unsealable);
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad: purpose.as_bytes() })
            .map_err(|_| Unsealable)
    }

    /// Seals a UTF-8 string and returns it as base64, for records kept as JSON.
    pub fn seal_text(&self, purpose: &str, plain: &str) -> String {
        STANDARD.encode(self.seal(purpose, plain.as_bytes()))
    }

    /// Opens what [`Sealer::seal_text`] sealed.
    pub fn open_text(&self, purpose: &str, sealed: &str) -> std::result::Result<String, Unsealable> {
        let bytes = STANDARD.decode(sealed).map_err(|_| Unsealable)?;
        String::from_utf8(self.open(purpose, &bytes)?).map_err(|_| Unsealable)
    }

    /// The check value a store keeps, so that a later start can tell the key is its own.
    pub(crate) fn check_value(&self) -> Vec<u8> {
        self.seal(CHECK_PURPOSE, b"berth")
    }

    /// Whether `check` (from the store) was sealed with this key.
    /// Checks that this key opens the sealed values of the store whose `records` these
    /// are (by its check value, which the leading server records on its first start; a
    /// store without one has nothing sealed yet).
    pub fn verify_records(&self, records: &[store::Record]) -> Result<()> {
        match records.iter().find(|r| r.table == CHECK_TABLE && r.key == CHECK_KEY) {
            Some(r) => self.verify_check(&r.value),
            None => Ok(()),
        }
    }

    pub(crate) fn verify_check(&self, check: &[u8]) -> Result<()> {
        match self.open(CHECK_PURPOSE, check) {
            Ok(_) => Ok(()),
            Err(Unsealable) => Err(Error::Internal(format!(
                "the master key does not open this data dir's sealed values: restore the data dir's {KEY_FILE} \
                 (or set {KEY_ENV}) to the key it was created with"
            ))),
        }
    }
}

fn parse_key(text: &str) -> std::result::Result<[u8; 32], String> {
    let bytes = STANDARD.decode(text.trim()).map_err(|e| e.to_string())?;
    bytes.try_into().map_err(|b: Vec<u8>| format!("{} bytes, not 32", b.len()))
}

fn write_owner_only(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // create_new: two processes starting at once must not each write a different key.
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_only_with_its_key_and_purpose() {
        let s = Sealer::ephemeral();
        let sealed = s.seal("param a v1", b"s3cret");
        assert_eq!(s.open("param a v1", &sealed).unwrap(), b"s3cret");
        assert_eq!(s.open("param b v1", &sealed), Err(Unsealable));
        assert_eq!(Sealer::ephemeral().open("param a v1", &sealed), Err(Unsealable));
        let mut damaged = sealed.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert_eq!(s.open("param a v1", &damaged), Err(Unsealable));
        assert_eq!(s.open("param a v1", &[]), Err(Unsealable));
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"), "nothing in clear");
    }

    #[test]
    fn the_key_file_is_created_owner_only_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = Sealer::for_data_dir(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Sealer::for_data_dir(dir.path()).unwrap();
        again.verify_check(&first.check_value()).unwrap();
        std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        let other = Sealer::for_data_dir(dir.path()).unwrap();
        let e = other.verify_check(&first.check_value()).unwrap_err();
        assert!(e.to_string().contains("master.key"), "{e}");
    }

    #[test]
    fn a_store_refuses_a_control_plane_with_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let open = |sealer: Sealer| {
            let store = std::sync::Arc::new(store::SqliteStore::open(&dir.path().join("db")).unwrap());
            crate::ControlPlane::open_with(store, crate::Config { sealer, ..Default::default() }).map(drop)
        };
        let key = Sealer::ephemeral();
        open(key.clone()).unwrap();
        open(key).unwrap();
        let e = open(Sealer::ephemeral()).unwrap_err();
        assert!(e.to_string().contains("master key"), "{e}");
    }
}
