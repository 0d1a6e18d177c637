//! Lifecycle policy enforcement: on a schedule ([`run_schedule`]) and on demand (the
//! protocol edge's `BerthRunLifecyclePolicy`). The policy is evaluated inside the writer
//! (`Ops::evaluate_lifecycle_policy`, the same computation as previews), and what it
//! expires is deleted from both records through [`Ops::delete_images`], so expiry follows
//! the same rules as `BatchDeleteImage`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use model::ecr::stored::Expiring;
use model::ecr::RepositoryName;
use model::Scope;
use registry::Meta;

use super::EcrRegistry;
use crate::ecr::images::ImageSelector;
use crate::ecr::{check_registry_id, Ecr};
use crate::error::{Error, Result};
use crate::{Caller, ControlPlane, Ops};

/// What one enforcement of a repository's policy did.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleRun {
    pub repository: RepositoryName,
    /// The images deleted, oldest first.
    pub expired: Vec<Expiring>,
    /// Why the run stopped early, if it did.
    pub failure: Option<LifecycleFailure>,
}

/// Why an enforcement stopped early.
#[derive(Debug, Clone, PartialEq)]
pub enum LifecycleFailure {
    /// The policy could not be evaluated; the log has the detail.
    Evaluation,
    /// Deleting the expired images failed.
    Deletion(Error),
}

impl Ops<'_, Ecr> {
    /// Enforces the lifecycle policy of one repository now: evaluates it inside the
    /// writer, deletes what it expires from the registry's metadata `meta` and the image
    /// records, and logs each image deleted.
    pub async fn enforce_lifecycle_policy(
        &self,
        meta: &impl Meta,
        scope: &Scope,
        repo: &RepositoryName,
    ) -> LifecycleRun {
        let mut run = LifecycleRun { repository: repo.clone(), expired: Vec::new(), failure: None };
        let expiring = match self.evaluate_lifecycle_policy(scope.clone(), repo.clone()).await {
            Ok(Some(e)) => e,
            // The policy was deleted meanwhile.
            Ok(None) => return run,
            Err(e) => {
                tracing::error!(error = %e, account = %scope.account, region = %scope.region, repository = %repo, "lifecycle policy evaluation failed");
                run.failure = Some(LifecycleFailure::Evaluation);
                return run;
            }
        };
        if expiring.is_empty() {
            return run;
        }
        match self.delete_expired(meta, scope, repo, &expiring).await {
            Ok(deleted) => {
                for e in &deleted {
                    tracing::info!(
                        account = %scope.account,
                        region = %scope.region,
                        repository = %repo,
                        digest = %e.digest,
                        tags = ?e.tags,
                        rule_priority = e.rule_priority,
                        "lifecycle policy expired an image"
                    );
                }
                run.expired = deleted;
            }
            Err(e) => {
                tracing::error!(error = %e, account = %scope.account, region = %scope.region, repository = %repo, "deleting expired images failed");
                run.failure = Some(LifecycleFailure::Deletion(e));
            }
        }
        run
    }

    /// Deletes the expiring images from the registry and the image records, through the
    /// same path as `BatchDeleteImage`, and answers those that are gone.
    ///
    /// A tagged image is named by its tags, not its digest: removing an image's last tag
    /// deletes it, but if a push gave it another tag since the evaluation, only the
    /// planned tags go and the image stays with the new one.
    async fn delete_expired(
        &self,
        meta: &impl Meta,
        scope: &Scope,
        repo: &RepositoryName,
        expiring: &[Expiring],
    ) -> Result<Vec<Expiring>> {
        let selectors: Vec<ImageSelector> = expiring
            .iter()
            .flat_map(|e| {
                let digest = Some(e.digest.clone());
                if e.tags.is_empty() {
                    vec![ImageSelector { digest, tag: None }]
                } else {
                    e.tags.iter().map(|t| ImageSelector { digest: digest.clone(), tag: Some(t.clone()) }).collect()
                }
            })
            .collect();
        let (_, failures) = self.delete_images(meta, scope, repo, &selectors).await?;
        for f in &failures {
            tracing::info!(
                repository = %repo,
                image = ?f.selector,
                code = ?f.code,
                reason = f.reason.as_str(),
                "lifecycle policy left an image in place"
            );
        }
        let state = self.view();
        Ok(expiring
            .iter()
            .filter(|e| !state.images.contains_key(&(scope.clone(), repo.clone(), e.digest.clone())))
            .cloned()
            .collect())
    }

    /// Enforces now the lifecycle policy of repository `repository` of the caller, which
    /// must exist and have one (as for `GetLifecyclePolicy`), or when absent those of every
    /// repository of the caller's account and region that has one (the protocol edge's
    /// `BerthRunLifecyclePolicy`).
    pub async fn run_lifecycle_policies(
        &self,
        meta: &impl Meta,
        caller: &Caller,
        registry_id: Option<&str>,
        repository: Option<&str>,
    ) -> Result<Vec<LifecycleRun>> {
        check_registry_id(caller, registry_id)?;
        let targets = match repository {
            Some(name) => {
                let stored = self.lifecycle_policy(caller, name)?;
                vec![(stored.scope, stored.repository)]
            }
            None => self.lifecycle_repositories(Some(&caller.scope)),
        };
        let mut runs = Vec::with_capacity(targets.len());
        for (scope, repo) in targets {
            runs.push(self.enforce_lifecycle_policy(meta, &scope, &repo).await);
        }
        Ok(runs)
    }

    /// Enforces every repository's lifecycle policy now, in every account and region.
    pub async fn enforce_all_lifecycle_policies(&self, meta: &impl Meta) {
        for (scope, repo) in self.lifecycle_repositories(None) {
            let run = self.enforce_lifecycle_policy(meta, &scope, &repo).await;
            if !run.expired.is_empty() {
                tracing::info!(account = %scope.account, repository = %repo, expired = run.expired.len(), "lifecycle policy run");
            }
        }
    }
}

/// Enforces every lifecycle policy at start and then every `every`, until `shutdown`
/// completes. ECR promises expiry within 24 hours of an image meeting a rule; the interval
/// is how soon Berth does it.
pub async fn run_schedule<A>(
    control: Arc<ControlPlane>,
    registry: Arc<EcrRegistry<A>>,
    every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut ticks = tokio::time::interval(every);
    // After a long run (or a suspended machine), wait a whole interval rather than
    // catching up with a burst of runs.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticks.tick() => control.ecr().enforce_all_lifecycle_policies(&registry.meta).await,
        }
    }
}
