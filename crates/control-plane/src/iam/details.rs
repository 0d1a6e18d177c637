//! `GetAccountAuthorizationDetails`: every user, group, role and managed policy of an
//! account with what relates them (inline policies, attachments, group memberships,
//! policy versions), in one listing paged with `MaxItems`/`Marker` across all four kinds.
//!
//! Decisions: users come first, then groups, roles and policies; users, groups and roles
//! in name order, policies in ARN order; a page counts entities of every kind alike.
//! AWS-managed policies are listed only while attached to an entity of the account (the
//! listing describes the account's permissions; AWS has hundreds of its own). Each part
//! is read from the state as it is when read, like a series of List calls.

use std::sync::Arc;

use model::AccountId;

use super::Iam;
use super::{AttachedPolicy, Holder, PolicyScope, PolicyView, VersionView};
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

/// Every item of a part, unpaged.
fn whole() -> Result<Page> {
    Page::parse(Some(i32::MAX), None, i32::MAX)
}

impl Ops<'_, Iam> {
    /// One page of `account`'s entities of the kinds in `filter` (every kind when empty).
    pub fn authorization_details(
        &self,
        account: &AccountId,
        filter: &[EntityType],
        page: &Page,
    ) -> Result<(AuthorizationDetails, Option<String>)> {
        let wanted = |t: EntityType| filter.is_empty() || filter.contains(&t);
        let all = whole()?;
        // Keys order the kinds (users, groups, roles, policies) for the page's marker.
        let mut items: Vec<(String, Detail)> = Vec::new();
        if wanted(EntityType::User) {
            for user in self.list_users(account, None, &all)?.0 {
                let name = user.name.as_str();
                let groups = self.list_groups_for_user(account, name, &all)?.0;
                let attached = self.list_attached(account, Holder::User, name, None, &all)?.0;
                let groups = groups.iter().map(|g| g.name.to_string()).collect();
                items.push((format!("1{}", user.name.key()), Detail::User(UserDetail { user, groups, attached })));
            }
        }
        if wanted(EntityType::Group) {
            for group in self.list_groups(account, None, &all)?.0 {
                let attached = self.list_attached(account, Holder::Group, group.name.as_str(), None, &all)?.0;
                items.push((format!("2{}", group.name.key()), Detail::Group(GroupDetail { group, attached })));
            }
        }
        if wanted(EntityType::Role) {
            for role in self.list_roles(account, None, &all)?.0 {
                let attached = self.list_attached(account, Holder::Role, role.name.as_str(), None, &all)?.0;
                items.push((format!("3{}", role.name.key()), Detail::Role(RoleDetail { role, attached })));
            }
        }
        let mut policies = Vec::new();
        if wanted(EntityType::LocalManagedPolicy) {
            policies.extend(self.list_policies(account, PolicyScope::Local, false, None, &all)?.0);
        }
        if wanted(EntityType::AwsManagedPolicy) {
            policies.extend(self.list_policies(account, PolicyScope::Aws, true, None, &all)?.0);
        }
        for policy in policies {
            let versions = self.list_policy_versions(account, &policy.arn)?;
            items.push((
                format!("4{}", policy.arn.to_ascii_lowercase()),
                Detail::Policy(PolicyDetail { policy, versions }),
            ));
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
