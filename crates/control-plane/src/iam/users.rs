//! IAM users and their access keys.

use std::sync::Arc;

use model::iam::entity::{EntityKind, IamName, IamPath, KeyStatus, ID_ALPHABET};
use model::{AccountId, Timestamp};
use rand::Rng;

use super::{already_exists, delete_conflict, limit_exceeded, new_id, no_such_entity, Iam};
use crate::error::Result;
use crate::paging::Page;
use crate::state::iam::{IamKey, User, UserKey};
use crate::state::{State, Touched};
use crate::Ops;

/// Access keys one user may have (IAM's quota).
pub const MAX_KEYS_PER_USER: usize = 2;

pub(crate) fn find_user(state: &State, account: &AccountId, name: &str) -> Result<Arc<User>> {
    state
        .iam
        .users
        .get(&(account.clone(), name.to_ascii_lowercase()))
        .cloned()
        .ok_or_else(|| no_such_entity(format!("The user with name {name} cannot be found.")))
}

fn touch_user(txn: &mut crate::writer::Txn<'_>, user: User) {
    let key = (user.account.clone(), user.name.key());
    txn.touch(Touched::Iam(IamKey::User(key.0.clone(), key.1.clone())));
    txn.state.iam.users.insert(key, Arc::new(user));
}

/// A new key pair in AWS's format: `AKIA` and 16 characters of upper-case base 32, and
/// a 40-character secret (returned beside the key, which holds it sealed).
fn new_key(sealer: &crate::sealing::Sealer, account: &AccountId, user: &str) -> (UserKey, String) {
    let mut rng = rand::thread_rng();
    let id: String = (0..16).map(|_| ID_ALPHABET[rng.gen_range(0..ID_ALPHABET.len())] as char).collect();
    const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let secret: String = (0..40).map(|_| SECRET[rng.gen_range(0..SECRET.len())] as char).collect();
    let id = format!("AKIA{id}");
    let key = UserKey {
        sealed_secret: sealer.seal_text(&UserKey::purpose(&id), &secret),
        id,
        account: account.clone(),
        user: user.to_ascii_lowercase(),
        status: KeyStatus::Active,
        created: Timestamp::now(),
    };
    (key, secret)
}

impl Ops<'_, Iam> {
    pub async fn create_user(
        &self,
        account: &AccountId,
        name: IamName,
        path: Option<IamPath>,
        tags: Vec<(String, String)>,
    ) -> Result<Arc<User>> {
        super::check_tags(&tags)?;
        let account = account.clone();
        self.write(move |txn| {
            if txn.state.iam.users.contains_key(&(account.clone(), name.key())) {
                return Err(already_exists(format!("User with name {name} already exists.")));
            }
            let user = User {
                account: account.clone(),
                path: path.unwrap_or_else(IamPath::root),
                id: new_id(EntityKind::User.id_prefix()),
                created: txn.now,
                tags,
                inline: Default::default(),
                attached: Default::default(),
                name,
            };
            touch_user(txn, user.clone());
            Ok(Arc::new(user))
        })
        .await
    }

    pub fn get_user(&self, account: &AccountId, name: &str) -> Result<Arc<User>> {
        find_user(&self.view(), account, name)
    }

    pub fn list_users(
        &self,
        account: &AccountId,
        prefix: Option<&str>,
        page: &Page,
    ) -> Result<(Vec<Arc<User>>, Option<String>)> {
        super::list_on_path(&self.view().iam.users, account, prefix, page)
    }

    pub async fn update_user(
        &self,
        account: &AccountId,
        name: String,
        new_name: Option<IamName>,
        new_path: Option<IamPath>,
    ) -> Result<()> {
        let account = account.clone();
        self.write(move |txn| {
            let user = find_user(txn.state, &account, &name)?;
            let mut u = user.as_ref().clone();
            if let Some(p) = new_path {
                u.path = p;
            }
            if let Some(n) = new_name {
                if n.key() != user.name.key() {
                    if txn.state.iam.users.contains_key(&(account.clone(), n.key())) {
                        return Err(already_exists(format!("User with name {n} already exists.")));
                    }
                    txn.state.iam.users.remove(&(account.clone(), user.name.key()));
                    txn.touch(Touched::Iam(IamKey::User(account.clone(), user.name.key())));
                    // The user's keys follow it.
                    let keys: Vec<Arc<UserKey>> =
                        txn.state.iam.user_keys(&account, &user.name.key()).cloned().collect();
                    for k in keys {
                        let mut k = k.as_ref().clone();
                        k.user = n.key();
                        txn.touch(Touched::Iam(IamKey::AccessKey(k.id.clone())));
                        txn.state.iam.keys.insert(k.id.clone(), Arc::new(k));
                    }
                    // And so do its group memberships.
                    super::groups::rename_member(txn, &account, &user.name.key(), &n.key());
                }
                u.name = n;
            }
            touch_user(txn, u);
            Ok(())
        })
        .await
    }

    /// Deletes a user that has no access keys, policies or groups left, as IAM requires.
    pub async fn delete_user(&self, account: &AccountId, name: String) -> Result<()> {
        let account = account.clone();
        self.write(move |txn| {
            let user = find_user(txn.state, &account, &name)?;
            if txn.state.iam.user_keys(&account, &user.name.key()).next().is_some() {
                return Err(delete_conflict("Cannot delete entity, must delete access keys first."));
            }
            if !user.inline.is_empty() {
                return Err(delete_conflict("Cannot delete entity, must delete policies first."));
            }
            if !user.attached.is_empty() {
                return Err(delete_conflict("Cannot delete entity, must detach all policies first."));
            }
            if txn.state.iam.user_groups(&account, &user.name.key()).next().is_some() {
                return Err(delete_conflict("Cannot delete entity, must remove user from all groups first."));
            }
            txn.state.iam.users.remove(&(account.clone(), user.name.key()));
            txn.touch(Touched::Iam(IamKey::User(account, user.name.key())));
            Ok(())
        })
        .await
    }

    pub async fn tag_user(&self, account: &AccountId, name: String, tags: Vec<(String, String)>) -> Result<()> {
        let account = account.clone();
        self.write(move |txn| {
            let mut u = find_user(txn.state, &account, &name)?.as_ref().clone();
            super::merge_tags(&mut u.tags, tags)?;
            touch_user(txn, u);
            Ok(())
        })
        .await
    }

    pub async fn untag_user(&self, account: &AccountId, name: String, keys: Vec<String>) -> Result<()> {
        let account = account.clone();
        self.write(move |txn| {
            let mut u = find_user(txn.state, &account, &name)?.as_ref().clone();
            super::remove_tags(&mut u.tags, &keys);
            touch_user(txn, u);
            Ok(())
        })
        .await
    }

    /// Creates an access key for a user; its secret is in the answer and never again.
    pub async fn create_access_key(&self, account: &AccountId, user: String) -> Result<(Arc<User>, UserKey, String)> {
        let account = account.clone();
        let sealer = self.sealer.clone();
        self.write(move |txn| {
            let u = find_user(txn.state, &account, &user)?;
            if txn.state.iam.user_keys(&account, &u.name.key()).count() >= MAX_KEYS_PER_USER {
                return Err(limit_exceeded(format!("Cannot exceed quota for AccessKeysPerUser: {MAX_KEYS_PER_USER}")));
            }
            let (key, secret) = new_key(&sealer, &account, u.name.as_str());
            txn.touch(Touched::Iam(IamKey::AccessKey(key.id.clone())));
            txn.state.iam.keys.insert(key.id.clone(), Arc::new(key.clone()));
            Ok((u, key, secret))
        })
        .await
    }

    /// The keys of a user, oldest first.
    pub fn list_access_keys(&self, account: &AccountId, user: &str) -> Result<(Arc<User>, Vec<Arc<UserKey>>)> {
        let state = self.view();
        let u = find_user(&state, account, user)?;
        let mut keys: Vec<Arc<UserKey>> = state.iam.user_keys(account, &u.name.key()).cloned().collect();
        keys.sort_by(|a, b| a.created.epoch_seconds().total_cmp(&b.created.epoch_seconds()));
        Ok((u, keys))
    }

    fn user_key(state: &State, account: &AccountId, user: &str, id: &str) -> Result<Arc<UserKey>> {
        let u = find_user(state, account, user)?;
        state
            .iam
            .keys
            .get(id)
            .filter(|k| &k.account == account && k.user == u.name.key())
            .cloned()
            .ok_or_else(|| no_such_entity(format!("The Access Key with id {id} cannot be found.")))
    }

    pub async fn update_access_key(
        &self,
        account: &AccountId,
        user: String,
        id: String,
        status: KeyStatus,
    ) -> Result<()> {
        let account = account.clone();
        self.write(move |txn| {
            let mut k = Self::user_key(txn.state, &account, &user, &id)?.as_ref().clone();
            k.status = status;
            txn.touch(Touched::Iam(IamKey::AccessKey(k.id.clone())));
            txn.state.iam.keys.insert(k.id.clone(), Arc::new(k));
            Ok(())
        })
        .await
    }

    pub async fn delete_access_key(&self, account: &AccountId, user: String, id: String) -> Result<()> {
        let account = account.clone();
        self.write(move |txn| {
            let k = Self::user_key(txn.state, &account, &user, &id)?;
            txn.state.iam.keys.remove(&k.id);
            txn.touch(Touched::Iam(IamKey::AccessKey(k.id.clone())));
            Ok(())
        })
        .await
    }
}
