//! IAM roles: their trust policies, settings and tags.

use std::sync::Arc;

use model::iam::entity::{EntityKind, IamName, IamPath};
use model::iam::PolicyKind;
use model::AccountId;

use super::{already_exists, delete_conflict, invalid_input, limit_exceeded, new_id, no_such_entity, Iam};
use crate::error::Result;
use crate::paging::Page;
use crate::state::iam::{Doc, IamKey, Role};
use crate::state::{State, Touched};
use crate::Ops;

/// A role's trust policy may be at most this long (IAM's default quota, characters
/// other than whitespace).
pub const MAX_TRUST_POLICY: usize = 2048;
/// A role's sessions last an hour unless it says otherwise; at most 12 hours.
pub const DEFAULT_MAX_SESSION: i32 = 3600;

/// What `CreateRole` asks for.
#[derive(Debug, Clone)]
pub struct NewRole {
    pub name: IamName,
    pub path: Option<IamPath>,
    pub trust: String,
    pub description: Option<String>,
    pub max_session_duration: Option<i32>,
    pub tags: Vec<(String, String)>,
}

pub(crate) fn find_role(state: &State, account: &AccountId, name: &str) -> Result<Arc<Role>> {
    state
        .iam
        .roles
        .get(&(account.clone(), name.to_ascii_lowercase()))
        .cloned()
        .ok_or_else(|| no_such_entity(format!("The role with name {name} cannot be found.")))
}

fn touch_role(txn: &mut crate::writer::Txn<'_>, role: Role) {
    let key = (role.account.clone(), role.name.key());
    txn.touch(Touched::Iam(IamKey::Role(key.0.clone(), key.1.clone())));
    txn.state.iam.roles.insert(key, Arc::new(role));
}

fn trust_document(text: &str) -> Result<Doc<crate::state::iam::Trust>> {
    let parsed = super::parse_document("assumeRolePolicyDocument", text, PolicyKind::Trust)?;
    if super::policy_size(text) > MAX_TRUST_POLICY {
        return Err(limit_exceeded(format!("Cannot exceed quota for ACLSizePerRole: {MAX_TRUST_POLICY}")));
    }
    Ok(Doc::new(parsed))
}

fn check_session_duration(d: Option<i32>) -> Result<()> {
    if let Some(d) = d.filter(|d| !(3600..=43200).contains(d)) {
        return Err(crate::error::Error::Invalid(model::iam::entity::validation_error(
            "maxSessionDuration",
            &d.to_string(),
            "Member must have value between 3600 and 43200",
        )));
    }
    Ok(())
}

fn check_description(d: &Option<String>) -> Result<()> {
    if let Some(d) = d {
        let ok = |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{7e}' | '\u{a1}'..='\u{ff}');
        if d.chars().count() > 1000 || !d.chars().all(ok) {
            return Err(crate::error::Error::Invalid(model::iam::entity::validation_error(
                "description",
                d,
                "Member must satisfy regular expression pattern: [\\u0009\\u000A\\u000D\\u0020-\\u007E\\u00A1-\\u00FF]*",
            )));
        }
    }
    Ok(())
}

impl Ops<'_, Iam> {
    pub async fn create_role(&self, account: &AccountId, new: NewRole) -> Result<Arc<Role>> {
        super::check_tags(&new.tags)?;
        check_session_duration(new.max_session_duration)?;
        check_description(&new.description)?;
        let trust = trust_document(&new.trust)?;
        let account = account.clone();
        self.write(move |txn| {
            if txn.state.iam.roles.contains_key(&(account.clone(), new.name.key())) {
                return Err(already_exists(format!("Role with name {} already exists.", new.name)));
            }
            let role = Role {
                account: account.clone(),
                path: new.path.unwrap_or_else(IamPath::root),
                id: new_id(EntityKind::Role.id_prefix()),
                created: txn.now,
                trust,
                description: new.description,
                max_session_duration: new.max_session_duration.unwrap_or(DEFAULT_MAX_SESSION),
                tags: new.tags,
                inline: Default::default(),
                attached: Default::default(),
                name: new.name,
            };
            touch_role(txn, role.clone());
            Ok(Arc::new(role))
        })
        .await
    }

    pub fn get_role(&self, account: &AccountId, name: &str) -> Result<Arc<Role>> {
        find_role(&self.view(), account, name)
    }

    pub fn list_roles(
        &self,
        account: &AccountId,
        prefix: Option<&str>,
        page: &Page,
    ) -> Result<(Vec<Arc<Role>>, Option<String>)> {
        super::list_on_path(&self.view().iam.roles, account, prefix, page)
    }

    /// Deletes a role with no policies left, as IAM requires.
    pub async fn delete_role(&self, account: &AccountId, name: String) -> Result<()> {
        let account = account.clone();
        self.write(move |txn| {
            let role = find_role(txn.state, &account, &name)?;
            if !role.inline.is_empty() {
                return Err(delete_conflict("Cannot delete entity, must delete policies first."));
            }
            if !role.attached.is_empty() {
                return Err(delete_conflict("Cannot delete entity, must detach all policies first."));
            }
            txn.state.iam.roles.remove(&(account.clone(), role.name.key()));
            txn.touch(Touched::Iam(IamKey::Role(account, role.name.key())));
            Ok(())
        })
        .await
    }

    pub async fn update_assume_role_policy(&self, account: &AccountId, name: String, text: String) -> Result<()> {
        let trust = trust_document(&text)?;
        let account = account.clone();
        self.write(move |txn| {
            let mut r = find_role(txn.state, &account, &name)?.as_ref().clone();
            r.trust = trust;
            touch_role(txn, r);
            Ok(())
        })
        .await
    }

    pub async fn update_role(
        &self,
        account: &AccountId,
        name: String,
        description: Option<String>,
        max_session_duration: Option<i32>,
    ) -> Result<()> {
        check_session_duration(max_session_duration)?;
        check_description(&description)?;
        let account = account.clone();
        self.write(move |txn| {
            let mut r = find_role(txn.state, &account, &name)?.as_ref().clone();
            if let Some(d) = description {
                r.description = Some(d);
            }
            if let Some(m) = max_session_duration {
                r.max_session_duration = m;
            }
            touch_role(txn, r);
            Ok(())
        })
        .await
    }

    pub async fn tag_role(&self, account: &AccountId, name: String, tags: Vec<(String, String)>) -> Result<()> {
        if tags.is_empty() {
            return Err(invalid_input("The specified tag list is empty."));
        }
        let account = account.clone();
        self.write(move |txn| {
            let mut r = find_role(txn.state, &account, &name)?.as_ref().clone();
            super::merge_tags(&mut r.tags, tags)?;
            touch_role(txn, r);
            Ok(())
        })
        .await
    }

    pub async fn untag_role(&self, account: &AccountId, name: String, keys: Vec<String>) -> Result<()> {
        let account = account.clone();
        self.write(move |txn| {
            let mut r = find_role(txn.state, &account, &name)?.as_ref().clone();
            super::remove_tags(&mut r.tags, &keys);
            touch_role(txn, r);
            Ok(())
        })
        .await
    }
}
