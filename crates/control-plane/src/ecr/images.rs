//! ECR images beyond recording pushes: resolving the images a request names, planning
//! deletions (one plan, which `registry::deletion` applies to the registry's metadata and
//! then here), pull times, and the repository settings that govern pushes (tag mutability,
//! scan on push).
//!
//! Digests and tags arrive here already checked for syntax (`registry::check_selector`,
//! which knows the registry's `Digest` and `Tag` types); this module only compares them.

use std::collections::BTreeSet;
use std::sync::Arc;

use model::ecr::{Image, ImageFailureCode, Repository, RepositoryName, TagMutability};
use model::Scope;

use super::{images_of, not_found};
use crate::ecr::Ecr;
use crate::error::Result;
use crate::state::Touched;
use crate::Caller;
use crate::Ops;
use crate::State;

/// One image a request names: by digest, by tag, or by both, which must then agree.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageSelector {
    pub digest: Option<String>,
    pub tag: Option<String>,
}

/// Why one named image was not acted on: a failure of that image, reported beside the
/// others' results, not an error of the whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFailure {
    pub selector: ImageSelector,
    pub code: ImageFailureCode,
    pub reason: String,
}

impl ImageFailure {
    pub fn new(selector: &ImageSelector, code: ImageFailureCode, reason: impl Into<String>) -> Self {
        ImageFailure { selector: selector.clone(), code, reason: reason.into() }
    }
}

/// One change a deletion makes to a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// The image goes with every tag it has. `by_digest` says whether the request named
    /// the image itself (rather than only removing its last tags), which decides what
    /// happens when an image index still references it.
    Image { digest: String, tags: Vec<String>, by_digest: bool },
    /// One tag goes; the image stays.
    Tag { digest: String, tag: String },
}

impl Deletion {
    /// The digest of the image it changes.
    pub fn digest(&self) -> &str {
        match self {
            Deletion::Image { digest, .. } | Deletion::Tag { digest, .. } => digest,
        }
    }
}

/// The image `selector` names in `repo`, or why there is none.
pub fn find_image(
    state: &State,
    scope: &Scope,
    repo: &RepositoryName,
    selector: &ImageSelector,
) -> Result<Arc<Image>, ImageFailure> {
    let not_found = || ImageFailure::new(selector, ImageFailureCode::ImageNotFound, "Requested image not found");
    match (&selector.digest, &selector.tag) {
        (None, None) => Err(ImageFailure::new(
            selector,
            ImageFailureCode::MissingDigestAndTag,
            "Invalid request parameters: both tag and digest cannot be null",
        )),
        (Some(d), tag) => {
            let image = state.images.get(&(scope.clone(), repo.clone(), d.clone())).ok_or_else(not_found)?;
            match tag {
                Some(t) if !image.tags.contains(t) => Err(ImageFailure::new(
                    selector,
                    ImageFailureCode::ImageTagDoesNotMatchDigest,
                    format!("The tag '{t}' does not point at the image with digest '{d}'."),
                )),
                _ => Ok(image.clone()),
            }
        }
        (None, Some(t)) => images_of(state, scope, repo).find(|i| i.tags.contains(t)).cloned().ok_or_else(not_found),
    }
}

/// What deleting `selectors` changes, in request order, and the selectors that name no
/// image. Removing an image's last tag deletes the image, as in ECR. Selectors are
/// deduplicated, and a request that names an image both by digest and by tag deletes it
/// once.
pub fn plan_image_deletion(
    state: &State,
    scope: &Scope,
    repo: &RepositoryName,
    selectors: &[ImageSelector],
) -> (Vec<Deletion>, Vec<ImageFailure>) {
    // Per image, in order of first mention: whether it was named itself, and which tags go.
    let mut targets: Vec<(Arc<Image>, bool, BTreeSet<String>)> = Vec::new();
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    for s in selectors {
        if !seen.insert(s.clone()) {
            continue;
        }
        let image = match find_image(state, scope, repo, s) {
            Ok(i) => i,
            Err(f) => {
                failures.push(f);
                continue;
            }
        };
        let slot = match targets.iter_mut().position(|(i, _, _)| i.digest == image.digest) {
            Some(p) => &mut targets[p],
            None => {
                targets.push((image, false, BTreeSet::new()));
                targets.last_mut().expect("just pushed")
            }
        };
        match &s.tag {
            Some(t) => {
                slot.2.insert(t.clone());
            }
            None => slot.1 = true,
        }
    }
    let mut plan = Vec::new();
    for (image, by_digest, tags) in targets {
        let last_tags_go = !image.tags.is_empty() && image.tags.iter().all(|t| tags.contains(t));
        if by_digest || last_tags_go {
            plan.push(Deletion::Image { digest: image.digest.clone(), tags: image.tags.clone(), by_digest });
        } else {
            // Keep the image's own tag order.
            for t in image.tags.iter().filter(|t| tags.contains(*t)) {
                plan.push(Deletion::Tag { digest: image.digest.clone(), tag: t.clone() });
            }
        }
    }
    (plan, failures)
}

impl Ops<'_, Ecr> {
    /// The caller's repository `name`, or `RepositoryNotFoundException`.
    pub fn repository(&self, caller: &Caller, name: &str) -> Result<Arc<Repository>> {
        let repo = RepositoryName::parse(name)?;
        self.view().repositories.get(&(caller.scope.clone(), repo)).cloned().ok_or_else(|| not_found(caller, name))
    }

    /// Applies a deletion plan to the image records. Idempotent: what is already gone is
    /// skipped, so a retry after a partial failure converges.
    pub async fn apply_image_deletions(
        &self,
        scope: Scope,
        repo: RepositoryName,
        deletions: Vec<Deletion>,
    ) -> Result<()> {
        self.write(move |txn| {
            for d in deletions {
                match d {
                    Deletion::Image { digest, .. } => {
                        let key = (scope.clone(), repo.clone(), digest.clone());
                        if txn.state.images.remove(&key).is_some() {
                            super::scans::forget_image(txn, &key.0, &key.1, &key.2);
                            txn.touch(Touched::Image(key.0, key.1, key.2));
                        }
                    }
                    Deletion::Tag { digest, tag } => {
                        let key = (scope.clone(), repo.clone(), digest);
                        let Some(image) = txn.state.images.get(&key) else { continue };
                        if !image.tags.contains(&tag) {
                            continue;
                        }
                        let mut image = image.as_ref().clone();
                        image.tags.retain(|t| *t != tag);
                        txn.state.images.insert(key.clone(), Arc::new(image));
                        txn.touch(Touched::Image(key.0, key.1, key.2));
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// Records that the image was pulled now. An image that is not (or no longer) recorded
    /// is left alone: a pull never creates one.
    pub async fn record_pull(&self, scope: Scope, repository: &str, digest: String) -> Result<()> {
        let repo = RepositoryName::parse(repository)?;
        self.write(move |txn| {
            let key = (scope, repo, digest);
            let Some(image) = txn.state.images.get(&key) else { return Ok(()) };
            let mut image = image.as_ref().clone();
            image.last_recorded_pull_time = Some(txn.now);
            txn.state.images.insert(key.clone(), Arc::new(image));
            txn.touch(Touched::Image(key.0, key.1, key.2));
            Ok(())
        })
        .await
    }

    /// `PutImageTagMutability`: the setting applies to pushes from now on; existing tags
    /// stay where they are.
    pub async fn put_tag_mutability(&self, caller: &Caller, name: &str, m: TagMutability) -> Result<Repository> {
        self.update_repository(caller, name, move |r| {
            r.tag_mutability = m.setting;
            r.tag_mutability_exclusions = m.exclusions;
        })
        .await
    }

    /// `PutImageScanningConfiguration`.
    pub async fn put_scan_on_push(&self, caller: &Caller, name: &str, scan_on_push: bool) -> Result<Repository> {
        self.update_repository(caller, name, move |r| r.scan_on_push = scan_on_push).await
    }

    async fn update_repository(
        &self,
        caller: &Caller,
        name: &str,
        change: impl FnOnce(&mut Repository) + Send + 'static,
    ) -> Result<Repository> {
        let repo = RepositoryName::parse(name)?;
        let (caller, name) = (caller.clone(), name.to_string());
        self.write(move |txn| {
            let key = (caller.scope.clone(), repo.clone());
            let mut r = txn.state.repositories.get(&key).ok_or_else(|| not_found(&caller, &name))?.as_ref().clone();
            change(&mut r);
            txn.state.repositories.insert(key, Arc::new(r.clone()));
            txn.touch(Touched::Repository(caller.scope.clone(), repo));
            Ok(r)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{AccountId, Region, Timestamp};

    fn scope() -> Scope {
        Scope { account: AccountId::parse("123456789012").unwrap(), region: Region::parse("us-east-1").unwrap() }
    }

    fn state(images: &[(&str, &[&str])]) -> (State, RepositoryName) {
        let repo = RepositoryName::parse("app").unwrap();
        let mut s = State::default();
        for (digest, tags) in images {
            let image = Image {
                scope: scope(),
                repository: repo.clone(),
                digest: digest.to_string(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                size: 1,
                media_type: "m".into(),
                pushed_at: Timestamp::now(),
                last_recorded_pull_time: None,
            };
            s.images.insert((scope(), repo.clone(), digest.to_string()), Arc::new(image));
        }
        (s, repo)
    }

    fn sel(digest: Option<&str>, tag: Option<&str>) -> ImageSelector {
        ImageSelector { digest: digest.map(str::to_string), tag: tag.map(str::to_string) }
    }

    #[test]
    fn removing_the_last_tag_deletes_the_image() {
        let (s, repo) = state(&[("d1", &["a", "b"]), ("d2", &["c"]), ("d3", &[])]);
        let (plan, failures) = plan_image_deletion(
            &s,
            &scope(),
            &repo,
            &[sel(None, Some("a")), sel(None, Some("c")), sel(Some("d3"), None), sel(None, Some("a"))],
        );
        assert!(failures.is_empty());
        assert_eq!(
            plan,
            vec![
                Deletion::Tag { digest: "d1".into(), tag: "a".into() },
                Deletion::Image { digest: "d2".into(), tags: vec!["c".into()], by_digest: false },
                Deletion::Image { digest: "d3".into(), tags: vec![], by_digest: true },
            ]
        );
        let (plan, _) = plan_image_deletion(&s, &scope(), &repo, &[sel(None, Some("b")), sel(None, Some("a"))]);
        assert_eq!(
            plan,
            vec![Deletion::Image { digest: "d1".into(), tags: vec!["a".into(), "b".into()], by_digest: false }]
        );
    }

    #[test]
    fn failures_name_the_reason() {
        let (s, repo) = state(&[("d1", &["a"])]);
        let (plan, failures) = plan_image_deletion(
            &s,
            &scope(),
            &repo,
            &[sel(None, None), sel(Some("d9"), None), sel(Some("d1"), Some("zz")), sel(None, Some("zz"))],
        );
        assert!(plan.is_empty());
        let codes: Vec<_> = failures.iter().map(|f| f.code).collect();
        assert_eq!(
            codes,
            vec![
                ImageFailureCode::MissingDigestAndTag,
                ImageFailureCode::ImageNotFound,
                ImageFailureCode::ImageTagDoesNotMatchDigest,
                ImageFailureCode::ImageNotFound,
            ]
        );
    }
}
