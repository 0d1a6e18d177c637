//! Repository and registry policies, resource tags on repositories, and the one rule for
//! access to another account's repository.
//!
//! Access rule (used by the registry's `/v2/` and by ECR operations that take a
//! `registryId`): an account always has access to its own repositories (Berth models no
//! IAM, so a policy never binds the owner); another account has access to an action only
//! if the repository's policy allows it that action and no statement denies it. A missing
//! repository of another account is refused the same way as a forbidden one, so that
//! other accounts cannot probe which repositories exist.

use std::sync::Arc;

use model::ecr::policy::{Decision, PolicyDocument, PolicyKind};
use model::ecr::stored::{StoredRegistryPolicy, StoredRepositoryPolicy};
use model::ecr::RepositoryName;
use model::tags::Tags;
use model::{AccountId, Arn, Scope};

use crate::ecr::Ecr;
use crate::error::{Error, NotFoundKind, Result};
use crate::state::{State, Touched};
use crate::Caller;
use crate::Ops;

/// The ECR actions a registry pull needs (`docker pull`).
pub const PULL_ACTIONS: &[&str] = &["BatchGetImage", "GetDownloadUrlForLayer"];
/// The ECR actions a registry push needs (`docker push`).
pub const PUSH_ACTIONS: &[&str] =
    &["PutImage", "InitiateLayerUpload", "UploadLayerPart", "CompleteLayerUpload", "BatchCheckLayerAvailability"];
/// The ECR action a registry delete needs.
pub const DELETE_ACTIONS: &[&str] = &["BatchDeleteImage"];

/// Whether `caller` may do every one of `actions` on repository `repo` of `owner`: always
/// for the owner's own account, otherwise as the repository's policy says. The error is
/// an [`Error::Denied`] naming the first action refused.
pub fn check_repository_access(
    state: &State,
    caller: &AccountId,
    owner: &Scope,
    repo: &RepositoryName,
    actions: &[&str],
) -> Result<()> {
    if *caller == owner.account {
        return Ok(());
    }
    let key = (owner.clone(), repo.clone());
    let policy = state.repositories.get(&key).and(state.repository_policies.get(&key));
    for action in actions {
        let allowed = policy.is_some_and(|p| p.policy.decide(caller, action) == Decision::Allowed);
        if !allowed {
            let arn = owner.arn("ecr", &format!("repository/{repo}"));
            return Err(Error::Denied(format!(
                "User: arn:aws:iam::{caller}:root is not authorized to perform: ecr:{action} on resource: {arn} because no resource-based policy allows the ecr:{action} action. The repository's owner can grant it with `aws ecr set-repository-policy`."
            )));
        }
    }
    Ok(())
}

/// The scope of the registry a request with `registryId` addresses: the caller's own when
/// absent, otherwise that account's in the caller's region.
pub fn registry_scope(caller: &Caller, registry_id: Option<&str>) -> Result<Scope> {
    match registry_id {
        None => Ok(caller.scope.clone()),
        Some(id) => {
            let account = AccountId::parse(id).map_err(|_| {
                Error::parameter(format!(
                    "Invalid parameter at 'registryId' failed to satisfy constraint: '{id}' must be a 12-digit account id."
                ))
            })?;
            Ok(Scope { account, region: caller.scope.region.clone() })
        }
    }
}

impl Ops<'_, Ecr> {
    /// The scope of repository `repository` that a request with `registryId` addresses,
    /// after checking that the caller may do `actions` there (see the module's rule). For
    /// ECR operations that accept another account's `registryId`.
    pub fn repository_scope_for(
        &self,
        caller: &Caller,
        registry_id: Option<&str>,
        repository: &str,
        actions: &[&str],
    ) -> Result<Scope> {
        let scope = registry_scope(caller, registry_id)?;
        let name = RepositoryName::parse(repository)?;
        check_repository_access(&self.view(), &caller.scope.account, &scope, &name, actions)?;
        Ok(scope)
    }

    /// The caller to act as on `repository` of the registry `registry_id` names: the
    /// caller itself for its own registry, otherwise the owning account (in the caller's
    /// region) once the repository's policy allows `actions`. ECR operations that accept
    /// another account's `registryId` run their usual code as this caller.
    pub fn caller_for_repository(
        &self,
        caller: &Caller,
        registry_id: Option<&str>,
        repository: &str,
        actions: &[&str],
    ) -> Result<Caller> {
        // The repository's policy granted the actions; the operation then runs in the
        // owner's account as its usual code does.
        Ok(Caller::root(self.repository_scope_for(caller, registry_id, repository, actions)?))
    }

    pub async fn set_repository_policy(
        &self,
        caller: &Caller,
        registry_id: Option<&str>,
        repository: &str,
        text: &str,
        force: bool,
    ) -> Result<StoredRepositoryPolicy> {
        let scope = self.repository_scope_for(caller, registry_id, repository, &["SetRepositoryPolicy"])?;
        let name = RepositoryName::parse(repository)?;
        let policy = PolicyDocument::parse(text, PolicyKind::Repository)?;
        // As ECR does, a policy that would deny the owner further policy changes needs
        // `force`, so that scripts written for AWS behave alike. (Berth does not bind the
        // owner by its policies, so nothing is actually locked out.)
        if !force && policy.decide(&scope.account, "SetRepositoryPolicy") == Decision::Denied {
            return Err(Error::parameter(
                "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'The repository policy would prevent you from setting another policy in the future'. Set force (--force) to set it anyway.",
            ));
        }
        self.write(move |txn| {
            let key = (scope.clone(), name.clone());
            if !txn.state.repositories.contains_key(&key) {
                return Err(repository_not_found(&scope, &name));
            }
            let stored = StoredRepositoryPolicy { scope: scope.clone(), repository: name.clone(), policy };
            txn.state.repository_policies.insert(key, Arc::new(stored.clone()));
            txn.touch(Touched::RepositoryPolicy(scope, name));
            Ok(stored)
        })
        .await
    }

    pub fn get_repository_policy(
        &self,
        caller: &Caller,
        registry_id: Option<&str>,
        repository: &str,
    ) -> Result<StoredRepositoryPolicy> {
        let scope = self.repository_scope_for(caller, registry_id, repository, &["GetRepositoryPolicy"])?;
        let name = RepositoryName::parse(repository)?;
        let state = self.view();
        let key = (scope.clone(), name.clone());
        if !state.repositories.contains_key(&key) {
            return Err(repository_not_found(&scope, &name));
        }
        state.repository_policies.get(&key).map(|p| p.as_ref().clone()).ok_or_else(|| policy_not_found(&scope, &name))
    }

    pub async fn delete_repository_policy(
        &self,
        caller: &Caller,
        registry_id: Option<&str>,
        repository: &str,
    ) -> Result<StoredRepositoryPolicy> {
        let scope = self.repository_scope_for(caller, registry_id, repository, &["DeleteRepositoryPolicy"])?;
        let name = RepositoryName::parse(repository)?;
        self.write(move |txn| {
            let key = (scope.clone(), name.clone());
            if !txn.state.repositories.contains_key(&key) {
                return Err(repository_not_found(&scope, &name));
            }
            let removed = txn.state.repository_policies.remove(&key).ok_or_else(|| policy_not_found(&scope, &name))?;
            txn.touch(Touched::RepositoryPolicy(scope, name));
            Ok(removed.as_ref().clone())
        })
        .await
    }

    pub async fn put_registry_policy(&self, caller: &Caller, text: &str) -> Result<StoredRegistryPolicy> {
        let policy = PolicyDocument::parse(text, PolicyKind::Registry)?;
        let scope = caller.scope.clone();
        self.write(move |txn| {
            let stored = StoredRegistryPolicy { scope: scope.clone(), policy };
            txn.state.registry_policies.insert(scope.clone(), Arc::new(stored.clone()));
            txn.touch(Touched::RegistryPolicy(scope));
            Ok(stored)
        })
        .await
    }

    pub fn get_registry_policy(&self, caller: &Caller) -> Result<StoredRegistryPolicy> {
        self.view()
            .registry_policies
            .get(&caller.scope)
            .map(|p| p.as_ref().clone())
            .ok_or_else(|| registry_policy_not_found(&caller.scope))
    }

    pub async fn delete_registry_policy(&self, caller: &Caller) -> Result<StoredRegistryPolicy> {
        let scope = caller.scope.clone();
        self.write(move |txn| {
            let removed =
                txn.state.registry_policies.remove(&scope).ok_or_else(|| registry_policy_not_found(&scope))?;
            txn.touch(Touched::RegistryPolicy(scope));
            Ok(removed.as_ref().clone())
        })
        .await
    }
}

/// Tags of repositories, addressed by ARN. Tags cannot be set on another account's
/// repository: ECR's tagging actions act on the caller's own resources.
impl Ops<'_, Ecr> {
    /// Adds or overwrites tags. Errors: [`TagError`] says which of ECR's codes applies.
    pub async fn tag_repository(
        &self,
        caller: &Caller,
        arn: &str,
        tags: Vec<(String, String)>,
    ) -> Result<(), TagError> {
        // Checked before queueing so that a bad tag never costs a write.
        Tags::parse(tags.clone()).map_err(|e| TagError::InvalidTag(e.to_string()))?;
        let (scope, name) = locate(caller, arn).map_err(TagError::Other)?;
        self.write(move |txn| {
            let key = (scope.clone(), name.clone());
            let repo = txn.state.repositories.get_mut(&key).ok_or_else(|| repository_not_found(&scope, &name))?;
            let mut next = repo.tags.clone();
            next.merge(tags).map_err(|e| Error::LimitExceeded(e.to_string()))?;
            Arc::make_mut(repo).tags = next;
            txn.touch(Touched::Repository(scope, name));
            Ok(())
        })
        .await
        .map_err(|e| match e {
            Error::LimitExceeded(m) => TagError::TooMany(m),
            other => TagError::Other(other),
        })
    }

    pub async fn untag_repository(&self, caller: &Caller, arn: &str, keys: Vec<String>) -> Result<(), TagError> {
        if let Some(k) = keys.iter().find(|k| k.is_empty() || k.chars().count() > 128) {
            return Err(TagError::InvalidTag(format!("Tag key '{k}' must be 1 to 128 characters long.")));
        }
        let (scope, name) = locate(caller, arn).map_err(TagError::Other)?;
        self.write(move |txn| {
            let key = (scope.clone(), name.clone());
            let repo = txn.state.repositories.get_mut(&key).ok_or_else(|| repository_not_found(&scope, &name))?;
            Arc::make_mut(repo).tags.remove(&keys);
            txn.touch(Touched::Repository(scope, name));
            Ok(())
        })
        .await
        .map_err(TagError::Other)
    }

    pub fn list_repository_tags(&self, caller: &Caller, arn: &str) -> Result<Tags> {
        let (scope, name) = locate(caller, arn)?;
        let state = self.view();
        let repo = state
            .repositories
            .get(&(scope.clone(), name.clone()))
            .ok_or_else(|| repository_not_found(&scope, &name))?;
        Ok(repo.tags.clone())
    }
}

/// The tags of a new repository (`CreateRepository`), checked as ECR checks them: more
/// than [`MAX_TAGS`](model::tags::MAX_TAGS) keys is [`TagError::TooMany`], a bad key or
/// value [`TagError::InvalidTag`].
pub fn new_repository_tags(pairs: Vec<(String, String)>) -> Result<Tags, TagError> {
    let keys: std::collections::BTreeSet<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    if keys.len() > model::tags::MAX_TAGS {
        return Err(TagError::TooMany(format!(
            "A repository can have at most {} tags; {} were given.",
            model::tags::MAX_TAGS,
            keys.len()
        )));
    }
    Tags::parse(pairs).map_err(|e| TagError::InvalidTag(e.to_string()))
}

/// Why tagging failed, in the terms of ECR's distinct error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// A key or value breaks the tag rules (`InvalidTagParameterException`).
    #[error("{0}")]
    InvalidTag(String),
    /// The repository would have more than 50 tags (`TooManyTagsException`).
    #[error("{0}")]
    TooMany(String),
    #[error(transparent)]
    Other(Error),
}

/// The repository an ECR ARN names; only the caller's own account and region.
fn locate(caller: &Caller, text: &str) -> Result<(Scope, RepositoryName)> {
    let bad = |why: &str| {
        Error::parameter(format!(
            "Invalid parameter at 'resourceArn' failed to satisfy constraint: '{text}' {why}; use a repository ARN such as arn:aws:ecr:{}:{}:repository/<name> (describe-repositories shows it).",
            caller.scope.region, caller.scope.account
        ))
    };
    let arn = Arn::parse(text).map_err(|_| bad("is not an ARN"))?;
    if arn.service != "ecr" {
        return Err(bad("is not an ECR ARN"));
    }
    let Some(("repository", name)) = arn.typed_resource() else {
        return Err(bad("does not name a repository"));
    };
    let name = RepositoryName::parse(name).map_err(|_| bad("does not name a valid repository"))?;
    if !arn.is_in(&caller.scope) {
        // Another account's or region's repository is not the caller's to tag or list.
        let scope = Scope {
            account: AccountId::parse(&arn.account).map_err(|_| bad("has no valid account id"))?,
            region: caller.scope.region.clone(),
        };
        return Err(repository_not_found(&scope, &name));
    }
    Ok((caller.scope.clone(), name))
}

fn repository_not_found(scope: &Scope, name: &RepositoryName) -> Error {
    Error::NotFound {
        kind: NotFoundKind::Repository,
        message: format!(
            "The repository with name '{name}' does not exist in the registry with id '{}'",
            scope.account
        ),
    }
}

fn policy_not_found(scope: &Scope, name: &RepositoryName) -> Error {
    Error::NotFound {
        kind: NotFoundKind::RepositoryPolicy,
        message: format!(
            "Repository policy does not exist for the repository with name '{name}' in the registry with id '{}'",
            scope.account
        ),
    }
}

fn registry_policy_not_found(scope: &Scope) -> Error {
    Error::NotFound {
        kind: NotFoundKind::RegistryPolicy,
        message: format!("Registry policy does not exist in the registry with id '{}'", scope.account),
    }
}
