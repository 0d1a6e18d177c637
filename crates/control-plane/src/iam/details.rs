//! `GetAccountAuthorizationDetails`: every user, group, role and managed policy of an
//! account with what relates them (inline policies, attachments, group memberships,
//! policy versions), in one listing paged with `MaxItems`/`Marker` across all four kinds.
//!
//! Decisions: users come first, then groups, roles and policies; users, groups and roles
//! in name order, policies in ARN order; a page counts entities of every kind alike.
//! AWS-managed policies are listed only while attached to an entity of the account (the
//! listing describes the account's permissions; AWS has hundreds of its own). The whole
//! listing is read from one state, so a page is consistent.

use std::sync::Arc;

use model::AccountId;

use super::policies::{attached_policies, policy_versions, policy_views};
use super::Iam;
use super::{AttachedPolicy, PolicyScope, PolicyView, VersionView};
use crate::error::Result;
use crate::paging::Page;
use crate::state::iam::{Group, Role, User};
use crate::Ops;

/// The kinds of entity a listing may be narrowed to (IAM's `EntityType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityType {
    User,
    Role,
    Group,
    LocalManagedPolicy,
    AwsManagedPolicy,
}

impl EntityType {
    pub const NAMES: [&'static str; 5] = ["User", "Role", "Group", "LocalManagedPolicy", "AWSManagedPolicy"];

    pub fn parse(name: &str) -> Option<EntityType> {
        match name {
            "User" => Some(EntityType::User),
            "Role" => Some(EntityType::Role),
            "Group" => Some(EntityType::Group),
            "LocalManagedPolicy" => Some(EntityType::LocalManagedPolicy),
            "AWSManagedPolicy" => Some(EntityType::AwsManagedPolicy),
            _ => None,
        }
    }
}

pub struct UserDetail {
    pub user: Arc<User>,
    /// The names of the groups it is a member of.
    pub groups: Vec<String>,
    pub attached: Vec<AttachedPolicy>,
}

pub struct GroupDetail {
    pub group: Arc<Group>,
    pub attached: Vec<AttachedPolicy>,
}

pub struct RoleDetail {
    pub role: Arc<Role>,
    pub attached: Vec<AttachedPolicy>,
}

pub struct PolicyDetail {
    pub policy: PolicyView,
    pub versions: Vec<VersionView>,
}

/// One page of the listing.
#[derive(Default)]
pub struct AuthorizationDetails {
    pub users: Vec<UserDetail>,
    pub groups: Vec<GroupDetail>,
    pub roles: Vec<RoleDetail>,
    pub policies: Vec<PolicyDetail>,
}

enum Detail {
    User(UserDetail),
    Group(GroupDetail),
    Role(RoleDetail),
    Policy(PolicyDetail),
}

impl Ops<'_, Iam> {
    /// One page of `account`'s entities of the kinds in `filter` (every kind when empty),
    /// all read from one state.
    pub fn authorization_details(
        &self,
        account: &AccountId,
        filter: &[EntityType],
        page: &Page,
    ) -> Result<(AuthorizationDetails, Option<String>)> {
        let wanted = |t: EntityType| filter.is_empty() || filter.contains(&t);
        let state = self.view();
        let iam = &state.iam;
        let of_account = |(a, _): &(AccountId, String)| a == account;
        let attached = |keys| attached_policies(&state, keys, "/").into_iter().map(|(_, a)| a).collect();
        // Keys order the kinds (users, groups, roles, policies) for the page's marker.
        let mut items: Vec<(String, Detail)> = Vec::new();
        if wanted(EntityType::User) {
            for ((_, key), user) in iam.users.iter().filter(|(k, _)| of_account(k)) {
                let groups = iam.user_groups(account, key).map(|g| g.name.to_string()).collect();
                let detail = UserDetail { attached: attached(&user.attached), groups, user: user.clone() };
                items.push((format!("1{key}"), Detail::User(detail)));
            }
        }
        if wanted(EntityType::Group) {
            for ((_, key), group) in iam.groups.iter().filter(|(k, _)| of_account(k)) {
                let detail = GroupDetail { attached: attached(&group.attached), group: group.clone() };
                items.push((format!("2{key}"), Detail::Group(detail)));
            }
        }
        if wanted(EntityType::Role) {
            for ((_, key), role) in iam.roles.iter().filter(|(k, _)| of_account(k)) {
                let detail = RoleDetail { attached: attached(&role.attached), role: role.clone() };
                items.push((format!("3{key}"), Detail::Role(detail)));
            }
        }
        let mut policies = Vec::new();
        if wanted(EntityType::LocalManagedPolicy) {
            policies.extend(policy_views(&state, account, PolicyScope::Local, false, None));
        }
        if wanted(EntityType::AwsManagedPolicy) {
            policies.extend(policy_views(&state, account, PolicyScope::Aws, true, None));
        }
        for (key, policy) in policies {
            let versions = policy_versions(&state, account, &policy.arn)?;
            items.push((format!("4{key}"), Detail::Policy(PolicyDetail { policy, versions })));
        }
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let (page_items, marker) = page.take(items.into_iter(), false);
        let mut out = AuthorizationDetails::default();
        for item in page_items {
            match item {
                Detail::User(u) => out.users.push(u),
                Detail::Group(g) => out.groups.push(g),
                Detail::Role(r) => out.roles.push(r),
                Detail::Policy(p) => out.policies.push(p),
            }
        }
        Ok((out, marker))
    }
}
