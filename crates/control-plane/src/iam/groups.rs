//! IAM groups: named sets of users whose inline and attached policies apply to every
//! member, as if each member held them (`authz` adds them to a user's policies).
//!
//! Decisions:
//! - Membership is kept on the group (`Group::users`, lower-cased user names), as
//!   `GetGroup` lists it; `ListGroupsForUser` looks through the account's groups. A user
//!   renamed by `UpdateUser` stays in its groups (the writer change renames it there);
//!   a user in a group cannot be deleted (`DeleteConflict`, as IAM).
//! - Adding a member twice, or removing a user who is not a member, succeeds and changes
//!   nothing, as IAM answers both; the group and the user must exist.

use std::sync::Arc;

use model::iam::entity::{EntityKind, IamName, IamPath};
use model::AccountId;

use super::users::find_user;
use super::{already_exists, delete_conflict, limit_exceeded, new_id, no_such_entity, Iam};
use crate::error::Result;
use crate::paging::Page;
use crate::state::iam::{Group, IamKey, User};
use crate::state::{State, Touched};
use crate::Ops;

/// A page of a group's members.
pub struct Members {
    pub users: Vec<Arc<User>>,
    /// Where the next page starts, if there is one.
    pub marker: Option<String>,
}

/// Groups one user may be a member of (IAM's quota).
pub const MAX_GROUPS_PER_USER: usize = 10;

pub(crate) fn find_group(state: &State, account: &AccountId, name: &str) -> Result<Arc<Group>> {
    state
        .iam
        .groups
        .get(&(account.clone(), name.to_ascii_lowercase()))
        .cloned()
        .ok_or_else(|| no_such_entity(format!("The group with name {name} cannot be found.")))
}

pub(crate) fn touch_group(txn: &mut crate::writer::Txn<'_>, group: Group) {
    let key = (group.account.clone(), group.name.key());
    txn.touch(Touched::Iam(IamKey::Group(key.0.clone(), key.1.clone())));
    txn.state.iam.groups.insert(key, Arc::new(group));
}

/// Renames a user (lower-cased `old` to `new`) in every group of `account` that holds it.
pub(crate) fn rename_member(txn: &mut crate::writer::Txn<'_>, account: &AccountId, old: &str, new: &str) {
    let groups: Vec<Arc<Group>> = txn.state.iam.user_groups(account, old).cloned().collect();
    for g in groups {
        let mut g = g.as_ref().clone();
        g.users.remove(old);
        g.users.insert(new.to_string());
        touch_group(txn, g);
    }
}

impl Ops<'_, Iam> {
    pub async fn create_group(&self, account: &AccountId, name: IamName, path: Option<IamPath>) -> Result<Arc<Group>> {
        let account = account.clone();
        self.write(move |txn| {
            if txn.state.iam.groups.contains_key(&(account.clone(), name.key())) {
                return Err(already_exists(format!("Group with name {name} already exists.")));
            }
            let group = Group {
                account: account.clone(),
                path: path.unwrap_or_else(IamPath::root),
                id: new_id(EntityKind::Group.id_prefix()),
                created: txn.now,
                inline: Default::default(),
                attached: Default::default(),
                users: Default::default(),
                name,
            };
            touch_group(txn, group.clone());
            Ok(Arc::new(group))
        })
        .await
    }

    /// A group and a page of its members, in name order.
    pub fn get_group(&self, account: &AccountId, name: &str, page: &Page) -> Result<(Arc<Group>, Members)> {
        let state = self.view();
        let group = find_group(&state, account, name)?;
        let members = group
            .users
            .iter()
            .filter_map(|u| state.iam.users.get(&(account.clone(), u.clone())).map(|user| (u.clone(), user.clone())));
        let (users, marker) = page.take(members, false);
        Ok((group, Members { users, marker }))
    }

    pub fn list_groups(
        &self,
        account: &AccountId,
        prefix: Option<&str>,
        page: &Page,
    ) -> Result<(Vec<Arc<Group>>, Option<String>)> {
        super::list_on_path(&self.view().iam.groups, account, prefix, page)
    }

    /// The groups a user is a member of, in name order.
    pub fn list_groups_for_user(
        &self,
        account: &AccountId,
        user: &str,
        page: &Page,
    ) -> Result<(Vec<Arc<Group>>, Option<String>)> {
        let state = self.view();
        let user = find_user(&state, account, user)?;
        let key = user.name.key();
        let items = state.iam.user_groups(account, &key).map(|g| (g.name.key(), g.clone()));
        Ok(page.take(items, false))
    }

    pub async fn update_group(
        &self,
        account: &AccountId,
        name: String,
        new_name: Option<IamName>,
        new_path: Option<IamPath>,
    ) -> Result<()> {
        let account = account.clone();
        self.write(move |txn| {
            let group = find_group(txn.state, &account, &name)?;
            let mut g = group.as_ref().clone();
            if let Some(p) = new_path {
                g.path = p;
            }
            if let Some(n) = new_name {
                if n.key() != group.name.key() {
                    if txn.state.iam.groups.contains_key(&(account.clone(), n.key())) {
                        return Err(already_exists(format!("Group with name {n} already exists.")));
                    }
                    txn.state.iam.groups.remove(&(account.clone(), group.name.key()));
                    txn.touch(Touched::Iam(IamKey::Group(account.clone(), group.name.key())));
                }
                g.name = n;
            }
            touch_group(txn, g);
            Ok(())
        })
        .await
    }

    /// Deletes a group without members or policies, as IAM requires.
    pub async fn delete_group(&self, account: &AccountId, name: String) -> Result<()> {
        let account = account.clone();
        self.write(move |txn| {
            let group = find_group(txn.state, &account, &name)?;
            if !group.users.is_empty() {
                return Err(delete_conflict("Cannot delete entity, must remove users from group first."));
            }
            if !group.inline.is_empty() {
                return Err(delete_conflict("Cannot delete entity, must delete policies first."));
            }
            if !group.attached.is_empty() {
                return Err(delete_conflict("Cannot delete entity, must detach all policies first."));
            }
            txn.state.iam.groups.remove(&(account.clone(), group.name.key()));
            txn.touch(Touched::Iam(IamKey::Group(account, group.name.key())));
            Ok(())
        })
        .await
    }

    /// Adds (`add`) or removes a user to or from a group.
    pub async fn set_membership(&self, account: &AccountId, group: String, user: String, add: bool) -> Result<()> {
        let account = account.clone();
        self.write(move |txn| {
            let mut g = find_group(txn.state, &account, &group)?.as_ref().clone();
            let key = find_user(txn.state, &account, &user)?.name.key();
            if add {
                if g.users.contains(&key) {
                    return Ok(());
                }
                if txn.state.iam.user_groups(&account, &key).count() >= MAX_GROUPS_PER_USER {
                    return Err(limit_exceeded(format!(
                        "Cannot exceed quota for GroupsPerUser: {MAX_GROUPS_PER_USER}"
                    )));
                }
                g.users.insert(key);
            } else if !g.users.remove(&key) {
                return Ok(());
            }
            touch_group(txn, g);
            Ok(())
        })
        .await
    }
}
