//! IAM's operations: users and their access keys (`users.rs`), groups and their members
//! (`groups.rs`), roles (`roles.rs`), inline and managed policies and their attachments
//! (`policies.rs`). IAM is global: an
//! operation takes the caller's account and ignores its region.
//!
//! Decisions:
//! - Names are unique in an account regardless of case, as in IAM; maps are keyed by the
//!   lower-cased name and entities keep the case they were created with.
//! - A user's access keys are IAM state (table `iam.access_keys`), committed with the
//!   user in one writer change, so `kill -9` during `CreateAccessKey` leaves the key whole
//!   or absent, and deleting a user with keys is refused. The account's root keys stay in
//!   `auth` (`berth account` writes them from another process).
//! - Secrets are shown once, in `CreateAccessKey`'s answer. They are stored as they are,
//!   like the root keys: SigV4 needs the secret itself to check a signature.
//! - `Marker` paging uses the opaque tokens of `paging.rs`.

pub mod authz;
pub mod details;
mod groups;
mod policies;
mod roles;
pub mod sessions;
mod users;

pub use groups::{Members, MAX_GROUPS_PER_USER};
pub use policies::{AttachedPolicy, Holder, PolicyScope, PolicyView, VersionView};
pub use roles::NewRole;

use model::iam::entity::{validation_error, ID_ALPHABET, ID_SUFFIX_LEN};
use model::iam::size_without_whitespace;
use model::iam::{MalformedPolicy, PolicyDocument, PolicyKind};
use model::Invalid;
use rand::Rng;

use crate::error::{Error, IamError, Result};
use crate::paging::Page;
use crate::Ops;

/// The marker of IAM's operations: `cp.iam()`.
#[derive(Debug)]
pub enum Iam {}

impl crate::ControlPlane {
    /// The IAM operations.
    pub fn iam(&self) -> Ops<'_, Iam> {
        Ops::new(self)
    }
}

/// An entity IAM lists by path (`ListUsers`, `ListRoles`, `ListGroups`).
pub(crate) trait OnPath {
    fn path(&self) -> &model::iam::entity::IamPath;
}

impl OnPath for crate::state::iam::User {
    fn path(&self) -> &model::iam::entity::IamPath {
        &self.path
    }
}

impl OnPath for crate::state::iam::Role {
    fn path(&self) -> &model::iam::entity::IamPath {
        &self.path
    }
}

impl OnPath for crate::state::iam::Group {
    fn path(&self) -> &model::iam::entity::IamPath {
        &self.path
    }
}

/// A page of `account`'s entities in `map` whose path starts with `prefix` (`/` when
/// absent), in name order.
pub(crate) fn list_on_path<T: OnPath>(
    map: &imbl::OrdMap<(model::AccountId, String), std::sync::Arc<T>>,
    account: &model::AccountId,
    prefix: Option<&str>,
    page: &Page,
) -> Result<(Vec<std::sync::Arc<T>>, Option<String>)> {
    if let Some(p) = prefix {
        model::iam::entity::check_path_prefix(p)?;
    }
    let prefix = prefix.unwrap_or("/");
    let items = map
        .iter()
        .filter(|((a, _), e)| a == account && e.path().as_str().starts_with(prefix))
        .map(|((_, k), e)| (k.clone(), e.clone()));
    Ok(page.take(items, false))
}

/// IAM's default page size for List calls.
pub const DEFAULT_MAX_ITEMS: i32 = 100;

/// A page request of an IAM List call (`Marker`, `MaxItems`).
pub fn page(max_items: Option<i32>, marker: Option<&str>) -> Result<Page> {
    if let Some(m) = max_items.filter(|m| !(1..=1000).contains(m)) {
        return Err(Error::Invalid(validation_error(
            "maxItems",
            &m.to_string(),
            "Member must have value between 1 and 1000",
        )));
    }
    Page::parse(Some(max_items.unwrap_or(DEFAULT_MAX_ITEMS)), marker, 1000)
}

pub(crate) fn no_such_entity(message: impl Into<String>) -> Error {
    Error::Iam(IamError::new("NoSuchEntity", message))
}

pub(crate) fn already_exists(message: impl Into<String>) -> Error {
    Error::Iam(IamError::new("EntityAlreadyExists", message))
}

pub(crate) fn delete_conflict(message: impl Into<String>) -> Error {
    Error::Iam(IamError::new("DeleteConflict", message))
}

pub(crate) fn limit_exceeded(message: impl Into<String>) -> Error {
    Error::Iam(IamError::new("LimitExceeded", message))
}

pub(crate) fn invalid_input(message: impl Into<String>) -> Error {
    Error::Iam(IamError::new("InvalidInput", message))
}

fn malformed(e: MalformedPolicy) -> Error {
    Error::Iam(IamError::new("MalformedPolicyDocument", e.message()))
}

/// A new unique id of an entity: `prefix` and random upper-case base 32, 21 characters.
pub(crate) fn new_id(prefix: &str) -> String {
    let mut rng = rand::thread_rng();
    let suffix: String = (0..ID_SUFFIX_LEN).map(|_| ID_ALPHABET[rng.gen_range(0..ID_ALPHABET.len())] as char).collect();
    format!("{prefix}{suffix}")
}

/// Checks a policy document member as IAM's model does (1 to 131,072 characters of tab,
/// line breaks and U+0020–U+00FF), then as a policy of `kind`.
pub(crate) fn parse_document(member: &str, text: &str, kind: PolicyKind) -> Result<PolicyDocument> {
    let allowed = |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{ff}');
    if text.is_empty() || text.chars().count() > 131_072 || !text.chars().all(allowed) {
        let shown: String = text.chars().take(64).collect();
        return Err(Error::Invalid(validation_error(
            member,
            &shown,
            "Member must satisfy regular expression pattern: [\\u0009\\u000A\\u000D\\u0020-\\u00FF]+",
        )));
    }
    PolicyDocument::parse(text, kind).map_err(malformed)
}

/// The size IAM's quotas measure a policy by: its characters other than whitespace.
pub(crate) fn policy_size(text: &str) -> usize {
    size_without_whitespace(text)
}

/// IAM answers a bad tag with `InvalidInput` where the model's pattern holds.
pub(crate) fn check_tags(tags: &[(String, String)]) -> Result<()> {
    model::iam::entity::check_tags(tags).map_err(|e| match e {
        Invalid::Client(m) => invalid_input(m),
        other => Error::Invalid(other),
    })
}

/// Adds or replaces `new` tags (keys compared regardless of case) and checks the result.
pub(crate) fn merge_tags(tags: &mut Vec<(String, String)>, new: Vec<(String, String)>) -> Result<()> {
    check_tags(&new)?;
    for (k, v) in new {
        match tags.iter_mut().find(|(old, _)| old.eq_ignore_ascii_case(&k)) {
            Some(slot) => *slot = (k, v),
            None => tags.push((k, v)),
        }
    }
    if tags.len() > 50 {
        return Err(limit_exceeded("The number of tags has reached the maximum limit."));
    }
    Ok(())
}

/// Removes tags by key (regardless of case).
pub(crate) fn remove_tags(tags: &mut Vec<(String, String)>, keys: &[String]) {
    tags.retain(|(k, _)| !keys.iter().any(|r| r.eq_ignore_ascii_case(k)));
}
