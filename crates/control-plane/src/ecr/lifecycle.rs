//! The lifecycle policies of ECR repositories: the stored policy (with when it last ran),
//! the preview of a policy, and [`expiring`], the one computation of what a policy expires
//! at an instant. Previews and enforcement both call it, so what a preview shows is by
//! construction what enforcement deletes from the same images.
//!
//! Deleting the images is not done here: `registry::enforcement` deletes them from the
//! registry and the image records together, right after
//! [`Ops::evaluate_lifecycle_policy`] has evaluated the policy inside the writer against
//! the latest committed state.

use std::sync::Arc;

use model::ecr::lifecycle::{evaluate, Candidate, LifecyclePolicy, PolicyError};
use model::ecr::stored::{Expiring, LifecyclePreview, PreviewStatus, StoredLifecyclePolicy, StoredPreviewStatus};
use model::ecr::{Image, RepositoryName};
use model::{Scope, Timestamp};

use crate::ecr::{check_registry_id, Ecr, ImageQuery};
use crate::error::{ConflictKind, Error, NotFoundKind, Result};
use crate::state::Touched;
use crate::Caller;
use crate::ControlPlane;
use crate::Ops;
use crate::Page;
use crate::{State, Txn};

/// `StartLifecyclePolicyPreview` of repository `name` of the caller (its own registry):
/// records the preview in progress ([`Ops::start_lifecycle_preview`]) and computes it
/// after answering, as in ECR, where it runs in the background; callers poll
/// `GetLifecyclePolicyPreview` until it is `COMPLETE`. A preview that cannot be computed
/// is recorded as failed.
pub async fn start_preview(
    control: &Arc<ControlPlane>,
    caller: &Caller,
    registry_id: Option<&str>,
    name: &str,
    text: Option<&str>,
) -> Result<LifecyclePreview> {
    check_registry_id(caller, registry_id)?;
    let preview = control.ecr().start_lifecycle_preview(caller, name, text).await?;
    let control = control.clone();
    let (scope, repo) = (preview.scope.clone(), preview.repository.clone());
    tokio::spawn(async move {
        if let Err(e) = control.ecr().complete_lifecycle_preview(scope.clone(), repo.clone()).await {
            tracing::error!(error = %e, repository = %repo, "a lifecycle policy preview failed");
            let reason = "Berth could not compute the preview; start it again. The server log has the detail.";
            if let Err(e) = control.ecr().fail_lifecycle_preview(scope, repo.clone(), reason.into()).await {
                tracing::error!(error = %e, repository = %repo, "recording a failed lifecycle policy preview failed");
            }
        }
    });
    Ok(preview)
}

/// The largest page of `GetLifecyclePolicyPreview`, as in ECR.
const PREVIEW_PAGE_LIMIT: i32 = 100;

/// What `GetLifecyclePolicyPreview` answers.
#[derive(Debug, Clone)]
pub struct PreviewPage {
    pub preview: LifecyclePreview,
    /// The preview's status now.
    pub status: PreviewStatus,
    /// The page of results selected.
    pub results: Vec<Expiring>,
    pub next_token: Option<String>,
    /// How many images the whole preview expires, once it is complete.
    pub total: Option<usize>,
}

/// What a lifecycle policy expires in `repo` at `now`, oldest first. The single
/// computation behind previews and enforcement.
pub fn expiring(
    state: &State,
    scope: &Scope,
    repo: &RepositoryName,
    policy: &LifecyclePolicy,
    now: Timestamp,
) -> Vec<Expiring> {
    let images: Vec<&Arc<Image>> = repository_images(state, scope, repo).collect();
    let candidates: Vec<Candidate<'_>> =
        images.iter().map(|i| Candidate { digest: &i.digest, tags: &i.tags, pushed_at: i.pushed_at }).collect();
    evaluate(policy, &candidates, now)
        .into_iter()
        .map(|e| Expiring {
            digest: e.image.digest.to_string(),
            tags: e.image.tags.to_vec(),
            pushed_at: e.image.pushed_at,
            rule_priority: e.rule.get(),
        })
        .collect()
}

fn repository_images<'a>(
    state: &'a State,
    scope: &Scope,
    repo: &RepositoryName,
) -> impl Iterator<Item = &'a Arc<Image>> + 'a {
    let lo = (scope.clone(), repo.clone(), String::new());
    let (s, r) = (scope.clone(), repo.clone());
    state.images.range(lo..).take_while(move |((ks, kr, _), _)| *ks == s && *kr == r).map(|(_, i)| i)
}

/// Forgets the lifecycle policy and preview of a repository that is being deleted.
pub(crate) fn forget_repository(txn: &mut Txn<'_>, scope: &Scope, repo: &RepositoryName) {
    let key = (scope.clone(), repo.clone());
    if txn.state.lifecycle_policies.remove(&key).is_some() {
        txn.touch(Touched::LifecyclePolicy(key.0.clone(), key.1.clone()));
    }
    if txn.state.lifecycle_previews.remove(&key).is_some() {
        txn.touch(Touched::LifecyclePreview(key.0, key.1));
    }
}

fn parse_policy(text: &str) -> Result<LifecyclePolicy> {
    LifecyclePolicy::parse(text).map_err(|e| match e {
        PolicyError::Invalid(m) => Error::parameter(m),
        PolicyError::Unsupported(m) => Error::Unsupported(m),
    })
}

fn repository_not_found(scope: &Scope, repo: &RepositoryName) -> Error {
    Error::NotFound {
        kind: NotFoundKind::Repository,
        message: format!(
            "The repository with name '{repo}' does not exist in the registry with id '{}'",
            scope.account
        ),
    }
}

fn policy_not_found(scope: &Scope, repo: &RepositoryName) -> Error {
    Error::NotFound {
        kind: NotFoundKind::LifecyclePolicy,
        message: format!(
            "Lifecycle policy does not exist for the repository with name '{repo}' in the registry with id '{}'. Set one with PutLifecyclePolicy.",
            scope.account
        ),
    }
}

/// The caller's repository, checked to exist in `state`.
fn existing(state: &State, caller: &Caller, name: &str) -> Result<(Scope, RepositoryName)> {
    let repo = RepositoryName::parse(name)?;
    let scope = caller.scope.clone();
    if !state.repositories.contains_key(&(scope.clone(), repo.clone())) {
        return Err(repository_not_found(&scope, &repo));
    }
    Ok((scope, repo))
}

impl Ops<'_, Ecr> {
    /// `PutLifecyclePolicy`: sets or replaces the policy. A new policy has not run yet.
    pub async fn put_lifecycle_policy(&self, caller: &Caller, name: &str, text: &str) -> Result<StoredLifecyclePolicy> {
        let repo = RepositoryName::parse(name)?;
        let policy = parse_policy(text)?;
        let caller = caller.clone();
        self.write(move |txn| {
            let (scope, repo) = existing(txn.state, &caller, repo.as_str())?;
            let stored = StoredLifecyclePolicy { scope, repository: repo, policy, last_evaluated_at: None };
            let key = (stored.scope.clone(), stored.repository.clone());
            txn.state.lifecycle_policies.insert(key.clone(), Arc::new(stored.clone()));
            txn.touch(Touched::LifecyclePolicy(key.0, key.1));
            Ok(stored)
        })
        .await
    }

    /// `GetLifecyclePolicy`.
    pub fn lifecycle_policy(&self, caller: &Caller, name: &str) -> Result<StoredLifecyclePolicy> {
        let state = self.view();
        let (scope, repo) = existing(&state, caller, name)?;
        let key = (scope, repo);
        state.lifecycle_policies.get(&key).map(|p| p.as_ref().clone()).ok_or_else(|| policy_not_found(&key.0, &key.1))
    }

    /// `DeleteLifecyclePolicy`: removes the policy and answers what it was.
    pub async fn delete_lifecycle_policy(&self, caller: &Caller, name: &str) -> Result<StoredLifecyclePolicy> {
        let (caller, name) = (caller.clone(), name.to_string());
        self.write(move |txn| {
            let key = existing(txn.state, &caller, &name)?;
            let removed = txn.state.lifecycle_policies.remove(&key).ok_or_else(|| policy_not_found(&key.0, &key.1))?;
            txn.touch(Touched::LifecyclePolicy(key.0, key.1));
            Ok(removed.as_ref().clone())
        })
        .await
    }

    /// `StartLifecyclePolicyPreview`: records a preview in progress of `text`, or of the
    /// repository's policy when no text is given. [`Self::complete_lifecycle_preview`]
    /// computes it. One preview per repository runs at a time.
    pub async fn start_lifecycle_preview(
        &self,
        caller: &Caller,
        name: &str,
        text: Option<&str>,
    ) -> Result<LifecyclePreview> {
        let given = text.map(parse_policy).transpose()?;
        let (caller, name) = (caller.clone(), name.to_string());
        self.write(move |txn| {
            let key = existing(txn.state, &caller, &name)?;
            if let Some(p) = txn.state.lifecycle_previews.get(&key) {
                if p.status == StoredPreviewStatus::InProgress {
                    return Err(Error::Conflict {
                        kind: ConflictKind::LifecyclePolicyPreviewInProgress,
                        message: format!(
                            "A lifecycle policy preview of the repository with name '{}' is already in progress; wait for it with GetLifecyclePolicyPreview and try again.",
                            key.1
                        ),
                    });
                }
            }
            let policy = match given {
                Some(p) => p,
                None => match txn.state.lifecycle_policies.get(&key) {
                    Some(stored) => stored.policy.clone(),
                    None => return Err(policy_not_found(&key.0, &key.1)),
                },
            };
            let preview = LifecyclePreview {
                scope: key.0.clone(),
                repository: key.1.clone(),
                policy,
                status: StoredPreviewStatus::InProgress,
                started_at: txn.now,
                completed_at: None,
                results: Vec::new(),
                failure: None,
            };
            txn.state.lifecycle_previews.insert(key.clone(), Arc::new(preview.clone()));
            txn.touch(Touched::LifecyclePreview(key.0, key.1));
            Ok(preview)
        })
        .await
    }

    /// Computes the preview in progress of a repository against the images as they are
    /// when the writer runs it. A preview that is no longer in progress is left alone.
    pub async fn complete_lifecycle_preview(&self, scope: Scope, repo: RepositoryName) -> Result<()> {
        self.write(move |txn| {
            let key = (scope, repo);
            let Some(preview) = txn.state.lifecycle_previews.get(&key) else { return Ok(()) };
            if preview.status != StoredPreviewStatus::InProgress {
                return Ok(());
            }
            let mut preview = preview.as_ref().clone();
            preview.results = expiring(txn.state, &key.0, &key.1, &preview.policy, txn.now);
            preview.status = StoredPreviewStatus::Complete;
            preview.completed_at = Some(txn.now);
            txn.state.lifecycle_previews.insert(key.clone(), Arc::new(preview));
            txn.touch(Touched::LifecyclePreview(key.0, key.1));
            Ok(())
        })
        .await
    }

    /// Marks the preview in progress of a repository as failed, with the reason.
    pub async fn fail_lifecycle_preview(&self, scope: Scope, repo: RepositoryName, reason: String) -> Result<()> {
        self.write(move |txn| {
            let key = (scope, repo);
            let Some(preview) = txn.state.lifecycle_previews.get(&key) else { return Ok(()) };
            if preview.status != StoredPreviewStatus::InProgress {
                return Ok(());
            }
            let mut preview = preview.as_ref().clone();
            preview.status = StoredPreviewStatus::Failed;
            preview.completed_at = Some(txn.now);
            preview.failure = Some(reason);
            txn.state.lifecycle_previews.insert(key.clone(), Arc::new(preview));
            txn.touch(Touched::LifecyclePreview(key.0, key.1));
            Ok(())
        })
        .await
    }

    /// `GetLifecyclePolicyPreview`: the repository's latest preview.
    pub fn lifecycle_preview(&self, caller: &Caller, name: &str) -> Result<LifecyclePreview> {
        let state = self.view();
        let key = existing(&state, caller, name)?;
        state.lifecycle_previews.get(&key).map(|p| p.as_ref().clone()).ok_or_else(|| Error::NotFound {
            kind: NotFoundKind::LifecyclePolicyPreview,
            message: format!(
                "There is no lifecycle policy preview for the repository with name '{}' in the registry with id '{}'. Start one with StartLifecyclePolicyPreview.",
                key.1, key.0.account
            ),
        })
    }

    /// `GetLifecyclePolicyPreview`: the repository's preview with its status now and, when
    /// it is complete, a page (at most 100) of its results that the filter and the named
    /// images select, in the preview's order (oldest first). Named images and paging do
    /// not combine.
    pub fn lifecycle_preview_page(&self, caller: &Caller, query: ImageQuery) -> Result<PreviewPage> {
        check_registry_id(caller, query.registry_id.as_deref())?;
        let ids = query.ids;
        if !ids.is_empty() && (query.max_results.is_some() || query.next_token.is_some()) {
            return Err(Error::parameter("imageIds cannot be combined with maxResults or nextToken."));
        }
        if ids.iter().any(|i| i.digest.is_none() && i.tag.is_none()) {
            return Err(Error::parameter("Each imageId needs an imageDigest or an imageTag."));
        }
        let page = Page::parse(query.max_results, query.next_token.as_deref(), PREVIEW_PAGE_LIMIT)?;
        let preview = self.lifecycle_preview(caller, &query.repository)?;
        let status = preview.status_at(Timestamp::now());
        // Results exist only for a complete preview; the summary counts all of them,
        // whatever the filter and the page.
        let results: &[Expiring] = if status == PreviewStatus::Complete { &preview.results } else { &[] };
        let selected = results.iter().enumerate().filter(|(_, e)| {
            let by_tags = query.tag_status.is_none_or(|t| t.keeps(&e.tags));
            let by_id = ids.is_empty()
                || ids.iter().any(|id| match (&id.digest, &id.tag) {
                    (Some(d), Some(t)) => *d == e.digest && e.tags.contains(t),
                    (Some(d), None) => *d == e.digest,
                    (None, Some(t)) => e.tags.contains(t),
                    (None, None) => false,
                });
            by_tags && by_id
        });
        // The key is the position in the preview's results.
        let (results, next_token) = page.take(selected.map(|(i, e)| (format!("{i:08}"), e.clone())), false);
        let total = (status == PreviewStatus::Complete).then_some(preview.results.len());
        Ok(PreviewPage { preview, status, results, next_token, total })
    }

    /// The repositories with a lifecycle policy, in `scope` or everywhere.
    pub fn lifecycle_repositories(&self, scope: Option<&Scope>) -> Vec<(Scope, RepositoryName)> {
        self.view().lifecycle_policies.keys().filter(|(s, _)| scope.is_none_or(|want| want == s)).cloned().collect()
    }

    /// Evaluates the repository's policy inside the writer, against the latest committed
    /// state, records the run as `lastEvaluatedAt`, and answers what the policy expires
    /// now; `None` when the repository has no policy (any more). The caller deletes the
    /// images right after, naming tagged images by their tags, so that an image a push
    /// tags meanwhile keeps that tag and stays.
    pub async fn evaluate_lifecycle_policy(&self, scope: Scope, repo: RepositoryName) -> Result<Option<Vec<Expiring>>> {
        self.write(move |txn| {
            let key = (scope, repo);
            let Some(stored) = txn.state.lifecycle_policies.get(&key) else { return Ok(None) };
            let mut stored = stored.as_ref().clone();
            let expiring = expiring(txn.state, &key.0, &key.1, &stored.policy, txn.now);
            stored.last_evaluated_at = Some(txn.now);
            txn.state.lifecycle_policies.insert(key.clone(), Arc::new(stored));
            txn.touch(Touched::LifecyclePolicy(key.0, key.1));
            Ok(Some(expiring))
        })
        .await
    }
}
