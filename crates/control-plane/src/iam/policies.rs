//! IAM policies: inline policies of users, groups and roles, customer-managed policies
//! with their versions, AWS-managed policies (read-only, from `model::iam::managed`), and
//! attaching managed policies to users, groups and roles.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use model::iam::entity::{EntityKind, IamName, IamPath, PolicyArn};
use model::iam::{PolicyDocument, PolicyKind};
use model::{AccountId, Timestamp};

use super::groups::find_group;
use super::roles::find_role;
use super::users::find_user;
use super::{already_exists, delete_conflict, invalid_input, limit_exceeded, new_id, no_such_entity, Iam};
use crate::error::Result;
use crate::paging::Page;
use crate::state::iam::{Doc, IamKey, Identity, ManagedPolicy, PolicyRef, PolicyVersion};
use crate::state::{State, Touched};
use crate::Ops;

/// A managed policy's largest document (IAM's quota, characters other than whitespace).
pub const MAX_MANAGED_POLICY: usize = 6144;
/// The largest total of a user's inline policies.
pub const MAX_USER_INLINE: usize = 2048;
/// The largest total of a role's inline policies.
pub const MAX_ROLE_INLINE: usize = 10240;
/// The largest total of a group's inline policies.
pub const MAX_GROUP_INLINE: usize = 5120;
/// Managed policies one user, group or role may have attached (IAM's default quota).
pub const MAX_ATTACHED: usize = 10;
/// Versions one managed policy keeps at most.
pub const MAX_VERSIONS: usize = 5;

/// Whose inline policies an operation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    User,
    Role,
    Group,
}

impl Holder {
    /// As IAM's messages name it (`user`).
    fn kind(self) -> &'static str {
        match self {
            Holder::User => "user",
            Holder::Role => "role",
            Holder::Group => "group",
        }
    }

    /// As IAM's quota names spell it (`PoliciesPerUser`).
    fn quota_kind(self) -> &'static str {
        match self {
            Holder::User => "User",
            Holder::Role => "Role",
            Holder::Group => "Group",
        }
    }
}

/// `ListPolicies`' `Scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyScope {
    All,
    Aws,
    Local,
}

/// A managed policy as IAM describes it.
#[derive(Debug, Clone)]
pub struct PolicyView {
    pub arn: String,
    pub name: String,
    pub path: String,
    pub id: String,
    pub description: Option<String>,
    pub default_version: String,
    pub attachment_count: usize,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub tags: Vec<(String, String)>,
}

/// A policy attached to a user, group or role.
#[derive(Debug, Clone)]
pub struct AttachedPolicy {
    pub name: String,
    pub arn: String,
}

/// A policy version as IAM describes it.
#[derive(Debug, Clone)]
pub struct VersionView {
    pub id: String,
    pub document: String,
    pub is_default: bool,
    pub created: Timestamp,
}

/// An AWS-managed policy, with what IAM describes it by.
pub(crate) struct AwsPolicy {
    pub arn: PolicyArn,
    pub id: String,
    pub description: &'static str,
    pub version: &'static str,
    pub document: &'static PolicyDocument,
}

/// A stable id for an AWS-managed policy (`ANPA` and 17 characters derived from its name):
/// AWS's own ids are not part of the policies' published text.
fn aws_policy_id(name: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let alphabet = model::iam::entity::ID_ALPHABET;
    let suffix: String = digest
        .iter()
        .take(model::iam::entity::ID_SUFFIX_LEN)
        .map(|b| alphabet[(*b as usize) % alphabet.len()] as char)
        .collect();
    format!("{}{suffix}", EntityKind::Policy.id_prefix())
}

/// The AWS-managed policies by lower-cased ARN.
pub(crate) fn aws_policies() -> &'static BTreeMap<String, AwsPolicy> {
    static POLICIES: OnceLock<BTreeMap<String, AwsPolicy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        model::iam::managed::aws_managed()
            .iter()
            .filter_map(|p| {
                let policy = AwsPolicy {
                    arn: PolicyArn::parse(p.arn)?,
                    id: aws_policy_id(p.name),
                    description: p.description,
                    version: p.default_version_id,
                    document: p.policy(),
                };
                Some((policy.arn.key(), policy))
            })
            .collect()
    })
}

/// AWS's policies live in no account: their creation time is not kept.
fn aws_epoch() -> Timestamp {
    Timestamp::from_epoch_seconds(1_430_000_000.0)
}

fn parse_policy_arn(value: &str) -> Result<PolicyArn> {
    PolicyArn::parse(value).ok_or_else(|| invalid_input(format!("ARN {value} is not valid.")))
}

fn policy_not_found(arn: &str) -> crate::error::Error {
    no_such_entity(format!("Policy {arn} does not exist or is not attachable."))
}

fn version_number(id: &str) -> Result<u32> {
    id.strip_prefix('v')
        .and_then(|n| n.split('.').next())
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            crate::error::Error::Invalid(model::iam::entity::validation_error(
                "versionId",
                id,
                "Member must satisfy regular expression pattern: v[1-9][0-9]*(\\.[A-Za-z0-9-]*)?",
            ))
        })
}

/// How many users and roles of `account` have the policy `key` attached.
fn attachment_count(state: &State, account: &AccountId, key: &str) -> usize {
    let users = state.iam.users.iter().filter(|((a, _), u)| a == account && u.attached.contains(key)).count();
    let roles = state.iam.roles.iter().filter(|((a, _), r)| a == account && r.attached.contains(key)).count();
    let groups = state.iam.groups.iter().filter(|((a, _), g)| a == account && g.attached.contains(key)).count();
    users + roles + groups
}

fn customer_view(state: &State, p: &ManagedPolicy) -> PolicyView {
    let arn = PolicyArn { account: Some(p.account.clone()), path: p.path.clone(), name: p.name.clone() };
    PolicyView {
        attachment_count: attachment_count(state, &p.account, &arn.key()),
        arn: arn.arn(),
        name: p.name.to_string(),
        path: p.path.to_string(),
        id: p.id.clone(),
        description: p.description.clone(),
        default_version: format!("v{}", p.default_version),
        created: p.created,
        updated: p.updated,
        tags: p.tags.clone(),
    }
}

fn aws_view(state: &State, account: &AccountId, p: &AwsPolicy) -> PolicyView {
    PolicyView {
        attachment_count: attachment_count(state, account, &p.arn.key()),
        arn: p.arn.arn(),
        name: p.arn.name.to_string(),
        path: p.arn.path.to_string(),
        id: p.id.clone(),
        description: Some(p.description.to_string()),
        default_version: p.version.to_string(),
        created: aws_epoch(),
        updated: aws_epoch(),
        tags: vec![],
    }
}

/// The customer policy `arn` names in the caller's account.
fn find_customer(state: &State, account: &AccountId, arn: &PolicyArn) -> Result<Arc<ManagedPolicy>> {
    if arn.account.as_ref() != Some(account) {
        return Err(policy_not_found(&arn.arn()));
    }
    state.iam.policies.get(&(account.clone(), arn.key())).cloned().ok_or_else(|| policy_not_found(&arn.arn()))
}

fn touch_policy(txn: &mut crate::writer::Txn<'_>, p: ManagedPolicy) {
    let key = PolicyArn { account: Some(p.account.clone()), path: p.path.clone(), name: p.name.clone() }.key();
    txn.touch(Touched::Iam(IamKey::Policy(p.account.clone(), key.clone())));
    txn.state.iam.policies.insert((p.account.clone(), key), Arc::new(p));
}

/// Whether `arn` names a policy that can be attached in `account`.
fn attachable(state: &State, account: &AccountId, arn: &PolicyArn) -> Result<()> {
    match &arn.account {
        None if aws_policies().contains_key(&arn.key()) => Ok(()),
        None => Err(policy_not_found(&arn.arn())),
        Some(_) => find_customer(state, account, arn).map(|_| ()),
    }
}

fn identity_document(member: &str, text: &str) -> Result<Doc<Identity>> {
    Ok(Doc::new(super::parse_document(member, text, PolicyKind::Identity)?))
}

/// The policies of one user, group or role, as the operations on any read and change them.
struct Held<'a> {
    /// `user`, `group` or `role`, as IAM's messages name it.
    kind: &'static str,
    name: &'a IamName,
    inline: &'a mut BTreeMap<IamName, Doc<Identity>>,
    attached: &'a mut std::collections::BTreeSet<String>,
    /// IAM's quota on the holder's inline policies together.
    inline_limit: usize,
}

/// Changes the policies of a user, group or role with `f`, and stores the holder.
fn change_held<R>(
    txn: &mut crate::writer::Txn<'_>,
    holder: Holder,
    account: &AccountId,
    name: &str,
    f: impl FnOnce(Held<'_>) -> Result<R>,
) -> Result<R> {
    match holder {
        Holder::User => {
            let mut u = find_user(txn.state, account, name)?.as_ref().clone();
            let held = Held {
                kind: "user",
                name: &u.name,
                inline: &mut u.inline,
                attached: &mut u.attached,
                inline_limit: MAX_USER_INLINE,
            };
            let r = f(held)?;
            let key = (account.clone(), u.name.key());
            txn.touch(Touched::Iam(IamKey::User(key.0.clone(), key.1.clone())));
            txn.state.iam.users.insert(key, Arc::new(u));
            Ok(r)
        }
        Holder::Role => {
            let mut r = find_role(txn.state, account, name)?.as_ref().clone();
            let held = Held {
                kind: "role",
                name: &r.name,
                inline: &mut r.inline,
                attached: &mut r.attached,
                inline_limit: MAX_ROLE_INLINE,
            };
            let out = f(held)?;
            let key = (account.clone(), r.name.key());
            txn.touch(Touched::Iam(IamKey::Role(key.0.clone(), key.1.clone())));
            txn.state.iam.roles.insert(key, Arc::new(r));
            Ok(out)
        }
        Holder::Group => {
            let mut g = find_group(txn.state, account, name)?.as_ref().clone();
            let held = Held {
                kind: "group",
                name: &g.name,
                inline: &mut g.inline,
                attached: &mut g.attached,
                inline_limit: MAX_GROUP_INLINE,
            };
            let out = f(held)?;
            super::groups::touch_group(txn, g);
            Ok(out)
        }
    }
}

/// A holder's inline policies by name.
type InlinePolicies = BTreeMap<IamName, Doc<Identity>>;

/// The name (as stored), inline policies and attached policies of a user, group or role.
fn read_held(
    state: &State,
    holder: Holder,
    account: &AccountId,
    name: &str,
) -> Result<(String, InlinePolicies, std::collections::BTreeSet<String>)> {
    Ok(match holder {
        Holder::User => {
            let u = find_user(state, account, name)?;
            (u.name.to_string(), u.inline.clone(), u.attached.clone())
        }
        Holder::Role => {
            let r = find_role(state, account, name)?;
            (r.name.to_string(), r.inline.clone(), r.attached.clone())
        }
        Holder::Group => {
            let g = find_group(state, account, name)?;
            (g.name.to_string(), g.inline.clone(), g.attached.clone())
        }
    })
}

fn no_inline_policy(holder: Holder, policy: &IamName) -> crate::error::Error {
    no_such_entity(format!("The {} policy with name {policy} cannot be found.", holder.kind()))
}

impl Ops<'_, Iam> {
    /// Adds or replaces an inline policy of a user, group or role, within IAM's size quota for
    /// all of the holder's inline policies together.
    pub async fn put_inline_policy(
        &self,
        account: &AccountId,
        holder: Holder,
        name: String,
        policy: IamName,
        text: String,
    ) -> Result<()> {
        let doc = identity_document("policyDocument", &text)?;
        let account = account.clone();
        self.write(move |txn| {
            change_held(txn, holder, &account, &name, |held| {
                let others: usize =
                    held.inline.iter().filter(|(k, _)| **k != policy).map(|(_, d)| super::policy_size(d.text())).sum();
                if others + super::policy_size(doc.text()) > held.inline_limit {
                    return Err(limit_exceeded(format!(
                        "Maximum policy size of {} bytes exceeded for {} {}",
                        held.inline_limit, held.kind, held.name
                    )));
                }
                held.inline.insert(policy, doc);
                Ok(())
            })
        })
        .await
    }

    /// An inline policy's document: the holder's name as stored, and the text.
    pub fn get_inline_policy(
        &self,
        account: &AccountId,
        holder: Holder,
        name: &str,
        policy: &IamName,
    ) -> Result<(String, String)> {
        let (holder_name, inline, _) = read_held(&self.view(), holder, account, name)?;
        let doc = inline.get(policy).ok_or_else(|| no_inline_policy(holder, policy))?;
        Ok((holder_name, doc.text().to_string()))
    }

    pub fn list_inline_policies(
        &self,
        account: &AccountId,
        holder: Holder,
        name: &str,
        page: &Page,
    ) -> Result<(Vec<String>, Option<String>)> {
        let (_, inline, _) = read_held(&self.view(), holder, account, name)?;
        let names: Vec<String> = inline.keys().map(|k| k.to_string()).collect();
        Ok(page.take(names.into_iter().map(|n| (n.clone(), n)), false))
    }

    pub async fn delete_inline_policy(
        &self,
        account: &AccountId,
        holder: Holder,
        name: String,
        policy: IamName,
    ) -> Result<()> {
        let account = account.clone();
        self.write(move |txn| {
            change_held(txn, holder, &account, &name, |held| {
                held.inline.remove(&policy).map(|_| ()).ok_or_else(|| no_inline_policy(holder, &policy))
            })
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn create_policy(
        &self,
        account: &AccountId,
        name: IamName,
        path: Option<IamPath>,
        text: String,
        description: Option<String>,
        tags: Vec<(String, String)>,
    ) -> Result<PolicyView> {
        super::check_tags(&tags)?;
        let doc = identity_document("policyDocument", &text)?;
        if super::policy_size(&text) > MAX_MANAGED_POLICY {
            return Err(limit_exceeded(format!("Cannot exceed quota for PolicySize: {MAX_MANAGED_POLICY}")));
        }
        let account = account.clone();
        self.write(move |txn| {
            let path = path.unwrap_or_else(IamPath::root);
            // Names are unique in an account whatever their paths.
            if txn.state.iam.policies.iter().any(|((a, _), p)| *a == account && p.name.key() == name.key()) {
                return Err(already_exists(format!(
                    "A policy called {name} already exists. Duplicate names are not allowed."
                )));
            }
            let p = ManagedPolicy {
                account: account.clone(),
                id: new_id(EntityKind::Policy.id_prefix()),
                description,
                created: txn.now,
                updated: txn.now,
                tags,
                versions: BTreeMap::from([(1, PolicyVersion { document: doc, created: txn.now })]),
                default_version: 1,
                next_version: 2,
                name,
                path,
            };
            touch_policy(txn, p.clone());
            Ok(customer_view(txn.state, &p))
        })
        .await
    }

    pub fn get_policy(&self, account: &AccountId, arn: &str) -> Result<PolicyView> {
        let arn = parse_policy_arn(arn)?;
        let state = self.view();
        match &arn.account {
            None => aws_policies()
                .get(&arn.key())
                .map(|p| aws_view(&state, account, p))
                .ok_or_else(|| policy_not_found(&arn.arn())),
            Some(_) => Ok(customer_view(&state, find_customer(&state, account, &arn)?.as_ref())),
        }
    }

    pub fn list_policies(
        &self,
        account: &AccountId,
        scope: PolicyScope,
        only_attached: bool,
        prefix: Option<&str>,
        page: &Page,
    ) -> Result<(Vec<PolicyView>, Option<String>)> {
        Ok(page.take(policy_views(&self.view(), account, scope, only_attached, prefix).into_iter(), false))
    }

    pub async fn delete_policy(&self, account: &AccountId, arn: &str) -> Result<()> {
        let arn = parse_policy_arn(arn)?;
        let account = account.clone();
        self.write(move |txn| {
            let p = find_customer(txn.state, &account, &arn)?;
            if attachment_count(txn.state, &account, &arn.key()) > 0 {
                return Err(delete_conflict("Cannot delete a policy attached to entities."));
            }
            if p.versions.len() > 1 {
                return Err(delete_conflict("This policy has more than one version. Before you delete a policy, you must delete the policy's non-default versions."));
            }
            txn.state.iam.policies.remove(&(account.clone(), arn.key()));
            txn.touch(Touched::Iam(IamKey::Policy(account, arn.key())));
            Ok(())
        })
        .await
    }

    pub async fn create_policy_version(
        &self,
        account: &AccountId,
        arn: &str,
        text: String,
        set_default: bool,
    ) -> Result<VersionView> {
        let arn = parse_policy_arn(arn)?;
        let doc = identity_document("policyDocument", &text)?;
        if super::policy_size(&text) > MAX_MANAGED_POLICY {
            return Err(limit_exceeded(format!("Cannot exceed quota for PolicySize: {MAX_MANAGED_POLICY}")));
        }
        let account = account.clone();
        self.write(move |txn| {
            let mut p = find_customer(txn.state, &account, &arn)?.as_ref().clone();
            if p.versions.len() >= MAX_VERSIONS {
                return Err(limit_exceeded(format!("A managed policy can have up to {MAX_VERSIONS} versions. Before you create a new version, you must delete an existing version.")));
            }
            let n = p.next_version;
            p.next_version += 1;
            p.versions.insert(n, PolicyVersion { document: doc.clone(), created: txn.now });
            if set_default {
                p.default_version = n;
            }
            p.updated = txn.now;
            let view = VersionView { id: format!("v{n}"), document: doc.text().to_string(), is_default: set_default, created: txn.now };
            touch_policy(txn, p);
            Ok(view)
        })
        .await
    }

    pub fn get_policy_version(&self, account: &AccountId, arn: &str, version: &str) -> Result<VersionView> {
        let arn = parse_policy_arn(arn)?;
        let n = version_number(version)?;
        let state = self.view();
        let missing =
            || no_such_entity(format!("Policy {} version {version} does not exist or is not attachable.", arn.arn()));
        match &arn.account {
            None => {
                let p = aws_policies().get(&arn.key()).ok_or_else(|| policy_not_found(&arn.arn()))?;
                if p.version != version {
                    return Err(missing());
                }
                Ok(VersionView {
                    id: p.version.to_string(),
                    document: p.document.text().to_string(),
                    is_default: true,
                    created: aws_epoch(),
                })
            }
            Some(_) => {
                let p = find_customer(&state, account, &arn)?;
                let v = p.versions.get(&n).ok_or_else(missing)?;
                Ok(VersionView {
                    id: format!("v{n}"),
                    document: v.document.text().to_string(),
                    is_default: n == p.default_version,
                    created: v.created,
                })
            }
        }
    }

    /// Versions, newest first, as IAM lists them.
    pub fn list_policy_versions(&self, account: &AccountId, arn: &str) -> Result<Vec<VersionView>> {
        policy_versions(&self.view(), account, arn)
    }

    pub async fn delete_policy_version(&self, account: &AccountId, arn: &str, version: &str) -> Result<()> {
        let arn = parse_policy_arn(arn)?;
        let n = version_number(version)?;
        let version = version.to_string();
        let account = account.clone();
        self.write(move |txn| {
            let mut p = find_customer(txn.state, &account, &arn)?.as_ref().clone();
            if !p.versions.contains_key(&n) {
                return Err(no_such_entity(format!(
                    "Policy {} version {version} does not exist or is not attachable.",
                    arn.arn()
                )));
            }
            if n == p.default_version {
                return Err(delete_conflict("Cannot delete the default version of a policy."));
            }
            p.versions.remove(&n);
            touch_policy(txn, p);
            Ok(())
        })
        .await
    }

    pub async fn set_default_policy_version(&self, account: &AccountId, arn: &str, version: &str) -> Result<()> {
        let arn = parse_policy_arn(arn)?;
        let n = version_number(version)?;
        let version = version.to_string();
        let account = account.clone();
        self.write(move |txn| {
            let mut p = find_customer(txn.state, &account, &arn)?.as_ref().clone();
            if !p.versions.contains_key(&n) {
                return Err(no_such_entity(format!(
                    "Policy {} version {version} does not exist or is not attachable.",
                    arn.arn()
                )));
            }
            p.default_version = n;
            p.updated = txn.now;
            touch_policy(txn, p);
            Ok(())
        })
        .await
    }

    /// Attaches (`attach`) or detaches a managed policy to or from a user, group or role.
    pub async fn set_attached(
        &self,
        account: &AccountId,
        holder: Holder,
        name: String,
        arn: &str,
        attach: bool,
    ) -> Result<()> {
        let arn = parse_policy_arn(arn)?;
        let account = account.clone();
        self.write(move |txn| {
            if attach {
                attachable(txn.state, &account, &arn)?;
            }
            let key = arn.key();
            change_held(txn, holder, &account, &name, |held| {
                if !attach {
                    return held
                        .attached
                        .remove(&key)
                        .then_some(())
                        .ok_or_else(|| no_such_entity(format!("Policy {} was not found.", arn.arn())));
                }
                if !held.attached.contains(&key) && held.attached.len() >= MAX_ATTACHED {
                    let kind = holder.quota_kind();
                    return Err(limit_exceeded(format!("Cannot exceed quota for PoliciesPer{kind}: {MAX_ATTACHED}")));
                }
                held.attached.insert(key);
                Ok(())
            })
        })
        .await
    }

    pub fn list_attached(
        &self,
        account: &AccountId,
        holder: Holder,
        name: &str,
        prefix: Option<&str>,
        page: &Page,
    ) -> Result<(Vec<AttachedPolicy>, Option<String>)> {
        let state = self.view();
        let (_, _, attached) = read_held(&state, holder, account, name)?;
        Ok(page.take(attached_policies(&state, &attached, prefix.unwrap_or("/")).into_iter(), false))
    }
}

/// Account `account`'s managed policies of `scope` (only those attached to something if
/// `only_attached`) whose path starts with `prefix`, keyed and ordered by ARN key.
pub(crate) fn policy_views(
    state: &State,
    account: &AccountId,
    scope: PolicyScope,
    only_attached: bool,
    prefix: Option<&str>,
) -> Vec<(String, PolicyView)> {
    let prefix = prefix.unwrap_or("/");
    let mut all: Vec<(String, PolicyView)> = Vec::new();
    if scope != PolicyScope::Local {
        all.extend(aws_policies().values().map(|p| (p.arn.key(), aws_view(state, account, p))));
    }
    if scope != PolicyScope::Aws {
        all.extend(
            state
                .iam
                .policies
                .iter()
                .filter(|((a, _), _)| a == account)
                .map(|((_, k), p)| (k.clone(), customer_view(state, p))),
        );
    }
    all.retain(|(_, v)| v.path.starts_with(prefix) && (!only_attached || v.attachment_count > 0));
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// The versions of the managed policy `arn`, newest first.
pub(crate) fn policy_versions(state: &State, account: &AccountId, arn: &str) -> Result<Vec<VersionView>> {
    let arn = parse_policy_arn(arn)?;
    if arn.account.is_none() {
        let p = aws_policies().get(&arn.key()).ok_or_else(|| policy_not_found(&arn.arn()))?;
        return Ok(vec![VersionView {
            id: p.version.to_string(),
            document: p.document.text().to_string(),
            is_default: true,
            created: aws_epoch(),
        }]);
    }
    let p = find_customer(state, account, &arn)?;
    Ok(p.versions
        .iter()
        .rev()
        .map(|(n, v)| VersionView {
            id: format!("v{n}"),
            document: v.document.text().to_string(),
            is_default: *n == p.default_version,
            created: v.created,
        })
        .collect())
}

/// The managed policies the keys in `attached` name, with their names and ARNs, whose
/// path starts with `prefix`, keyed by ARN key (a policy gone since is skipped).
pub(crate) fn attached_policies(
    state: &State,
    attached: &std::collections::BTreeSet<String>,
    prefix: &str,
) -> Vec<(String, AttachedPolicy)> {
    attached
        .iter()
        .filter_map(|key| {
            let arn = PolicyArn::parse(key)?;
            let (name, arn_text, path) = match &arn.account {
                None => {
                    let p = aws_policies().get(key)?;
                    (p.arn.name.to_string(), p.arn.arn(), p.arn.path.to_string())
                }
                Some(a) => {
                    let p = state.iam.policies.get(&(a.clone(), key.clone()))?;
                    let arn = PolicyArn { account: Some(a.clone()), path: p.path.clone(), name: p.name.clone() };
                    (p.name.to_string(), arn.arn(), p.path.to_string())
                }
            };
            path.starts_with(prefix).then(|| (key.clone(), AttachedPolicy { name, arn: arn_text }))
        })
        .collect()
}

/// The identity policies of a principal that authorization evaluates: its inline
/// policies and the default versions of its attached managed policies.
pub(crate) fn identity_policies(
    state: &State,
    account: &AccountId,
    inline: &BTreeMap<IamName, Doc<Identity>>,
    attached: &std::collections::BTreeSet<String>,
) -> Vec<PolicyRef> {
    let mut out: Vec<PolicyRef> = inline.values().map(|d| PolicyRef::Own(d.parsed.clone())).collect();
    for key in attached {
        if let Some(p) = aws_policies().get(key) {
            out.push(PolicyRef::Aws(p.document));
        } else if let Some(p) = state.iam.policies.get(&(account.clone(), key.clone())) {
            if let Some(v) = p.versions.get(&p.default_version) {
                out.push(PolicyRef::Own(v.document.parsed.clone()));
            }
        }
    }
    out
}
