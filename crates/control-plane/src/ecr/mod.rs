//! ECR in the control plane: the repositories of an account and their images here; image
//! details, scans, lifecycle policies and policies in the submodules; and ECR's service
//! layer over the image registry (`registry` crate) in [`registry`], which keeps the
//! registry's metadata and these records together.
//!
//! Decisions where ECR is silent or one machine differs:
//! - Tokens: `GetAuthorizationToken` answers base64 of `AWS:<token>`; the token is a claim
//!   (account, region, 12 h expiry, nonce) signed with HMAC-SHA256 under a per-deployment
//!   secret kept in the store (`auth::Credentials::registry_token`), so it survives
//!   restarts and cannot be forged or moved to another account. The registry takes it as
//!   Basic credentials or through the Bearer flow (`GET /_berth/registry/token`).
//! - Addresses: repository URIs name the `Host` the client called (or `--advertise-host`):
//!   Docker accepts plain HTTP for loopback registries, so `docker push
//!   127.0.0.1:<port>/<repo>` needs no daemon configuration.
//! - One registry host serves every account; the token selects the account.
//!   `<host>/<account-id>/<name>` names another account's repository when the caller has
//!   none with that full name, reachable only if that repository's policy allows the
//!   caller's account the action (Deny wins). A missing repository of another account is
//!   refused like a forbidden one, so accounts cannot probe each other.
//! - Immutable tags (with `*_WITH_EXCLUSION` filters) are refused in one place, `EcrMeta`,
//!   so `docker push` and `PutImage` give ECR's message. An image an index still lists
//!   cannot be deleted by digest. Layer download URLs carry an HMAC credential for one blob
//!   for one hour. `lastRecordedPullTime` is set by a manifest GET or `BatchGetImage` (not
//!   HEAD), at most once per image per minute.
//! - Scans: an image index is scanned through its linux/amd64 image (else its first
//!   non-attestation image); a non-container config or no dpkg/apk database is
//!   `UNSUPPORTED_IMAGE`; with no imported database a scan is `FAILED` (saying to run
//!   `berth vulndb import`) and does not count against the 24-hour limit, which every other
//!   outcome does; one finding per (CVE, source package), the most severe kept. Scans a
//!   stop interrupted run again at start.
//! - Lifecycle: previews and enforcement call the same `expiring()`; enforcement confirms
//!   its plan inside the writer, at start and every `--lifecycle-interval`, or at once with
//!   `berth ecr run-lifecycle`. Same-instant pushes are ordered by digest; "older than n
//!   days" is strictly more than n × 24 h; two rules with the same tag set are refused; a
//!   preview cut off by a restart reads `FAILED`; archive storage classes answer
//!   `UnsupportedFeatureException`.

pub mod images;
pub mod lifecycle;
pub mod policies;
pub mod registry;
pub mod scans;

use std::sync::Arc;

use model::ecr::{Encryption, EncryptionType, Image, Repository, RepositoryName, TagMutability, TagStatus};
use model::tags::Tags;

use crate::ecr::images::ImageSelector;
use crate::error::{ConflictKind, Error, NotFoundKind, Result};
use crate::state::Touched;
use crate::Caller;
use crate::Ops;
use crate::Page;

/// The marker of ECR's operations: `cp.ecr()`.
#[derive(Debug)]
pub enum Ecr {}

impl crate::ControlPlane {
    /// The ECR operations.
    pub fn ecr(&self) -> crate::Ops<'_, Ecr> {
        crate::Ops::new(self)
    }
}

/// What `CreateRepository` asks for.
#[derive(Debug, Clone)]
pub struct NewRepository {
    pub name: String,
    pub tags: Tags,
    pub tag_mutability: TagMutability,
    pub scan_on_push: bool,
    pub encryption: Option<Encryption>,
}

pub(crate) fn not_found(caller: &Caller, name: &str) -> Error {
    Error::NotFound {
        kind: NotFoundKind::Repository,
        message: format!(
            "The repository with name '{name}' does not exist in the registry with id '{}'",
            caller.scope.account
        ),
    }
}

/// How many entries `GetAuthorizationToken` answers: one per registry asked for, or one
/// for the caller's own. Other accounts' registries are accepted: one host serves them
/// all, the token is always the caller's own, and each registry request is checked
/// against the repository's policy; each id must still name an account.
pub fn authorization_entries(caller: &Caller, registry_ids: &[String]) -> Result<usize> {
    for id in registry_ids {
        policies::registry_scope(caller, Some(id))?;
    }
    Ok(registry_ids.len().max(1))
}

/// Checks a `registryId`: Berth has one registry per account, whose id is the account id.
pub fn check_registry_id(caller: &Caller, registry_id: Option<&str>) -> Result<()> {
    match registry_id {
        Some(id) if id != caller.scope.account.as_str() => Err(Error::parameter(format!(
            "Invalid parameter at 'registryId': '{id}' is not your registry; omit it or use your account id {}.",
            caller.scope.account
        ))),
        _ => Ok(()),
    }
}

impl Ops<'_, Ecr> {
    pub async fn create_repository(&self, caller: &Caller, req: NewRepository) -> Result<Repository> {
        let name = RepositoryName::parse(&req.name)?;
        let tags = req.tags;
        let encryption =
            req.encryption.unwrap_or(Encryption { encryption_type: Some(EncryptionType::Aes256), kms_key: None });
        if encryption.encryption_type == Some(EncryptionType::Aes256) && encryption.kms_key.is_some() {
            return Err(Error::parameter("A kmsKey can only be given with encryptionType KMS or KMS_DSSE."));
        }
        let caller = caller.clone();
        self.write(move |txn| {
            let key = (caller.scope.clone(), name.clone());
            if txn.state.repositories.contains_key(&key) {
                return Err(Error::Conflict {
                    kind: ConflictKind::RepositoryExists,
                    message: format!(
                        "The repository with name '{name}' already exists in the registry with id '{}'",
                        caller.scope.account
                    ),
                });
            }
            let repo = Repository {
                scope: caller.scope.clone(),
                name: name.clone(),
                created_at: txn.now,
                tag_mutability: req.tag_mutability.setting,
                tag_mutability_exclusions: req.tag_mutability.exclusions,
                scan_on_push: req.scan_on_push,
                encryption,
                tags,
            };
            txn.state.repositories.insert(key, Arc::new(repo.clone()));
            txn.touch(Touched::Repository(caller.scope.clone(), name));
            Ok(repo)
        })
        .await
    }

    /// `DescribeRepositories`: repositories by name (each must exist, at most 100), or all
    /// of them in name order, a page of at most 1000 at a time; names and paging do not
    /// combine.
    pub fn describe_repositories(
        &self,
        caller: &Caller,
        registry_id: Option<&str>,
        names: &[String],
        max_results: Option<i32>,
        next_token: Option<&str>,
    ) -> Result<(Vec<Repository>, Option<String>)> {
        check_registry_id(caller, registry_id)?;
        if !names.is_empty() && (max_results.is_some() || next_token.is_some()) {
            return Err(Error::parameter("repositoryNames cannot be combined with maxResults or nextToken."));
        }
        let page = Page::parse(max_results, next_token, 1000)?;
        let state = self.view();
        if !names.is_empty() {
            if names.len() > 100 {
                return Err(Error::parameter("At most 100 repositoryNames may be given."));
            }
            let mut out = Vec::new();
            for n in names {
                let name = RepositoryName::parse(n)?;
                let r = state.repositories.get(&(caller.scope.clone(), name)).ok_or_else(|| not_found(caller, n))?;
                out.push(r.as_ref().clone());
            }
            return Ok((out, None));
        }
        let items = state
            .repositories
            .iter()
            .filter(|((s, _), _)| *s == caller.scope)
            .map(|((_, n), r)| (n.to_string(), r.as_ref().clone()));
        Ok(page.take(items, false))
    }

    /// Deletes a repository; one that holds images only with `force`, which deletes them
    /// too.
    pub async fn delete_repository(&self, caller: &Caller, name: String, force: bool) -> Result<Repository> {
        let repo = RepositoryName::parse(&name)?;
        let caller = caller.clone();
        self.write(move |txn| {
            let key = (caller.scope.clone(), repo.clone());
            let images: Vec<String> = images_of(txn.state, &caller.scope, &repo).map(|i| i.digest.clone()).collect();
            if !images.is_empty() && !force {
                return Err(Error::Conflict {
                    kind: ConflictKind::RepositoryNotEmpty,
                    message: format!(
                        "The repository with name '{name}' in registry with id '{}' cannot be deleted because it still contains images. Delete them first or pass --force.",
                        caller.scope.account
                    ),
                });
            }
            for digest in images {
                txn.state.images.remove(&(caller.scope.clone(), repo.clone(), digest.clone()));
                scans::forget_image(txn, &caller.scope, &repo, &digest);
                txn.touch(Touched::Image(caller.scope.clone(), repo.clone(), digest));
            }
            let r = txn.state.repositories.remove(&key).ok_or_else(|| not_found(&caller, &name))?;
            // A repository created again later under this name starts without a policy.
            if txn.state.repository_policies.remove(&key).is_some() {
                txn.touch(Touched::RepositoryPolicy(caller.scope.clone(), repo.clone()));
            }
            lifecycle::forget_repository(txn, &caller.scope, &repo);
            txn.touch(Touched::Repository(caller.scope.clone(), repo));
            Ok(r.as_ref().clone())
        })
        .await
    }
}

/// What the registry reports after a manifest is stored.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub scope: model::Scope,
    pub repository: String,
    pub digest: String,
    pub tag: Option<String>,
    pub size: i64,
    pub media_type: String,
}

/// What `DescribeImages`, `ListImages` and `GetLifecyclePolicyPreview` ask for.
#[derive(Debug, Clone, Default)]
pub struct ImageQuery {
    pub registry_id: Option<String>,
    pub repository: String,
    /// Images named (not by `ListImages`); none means all.
    pub ids: Vec<ImageSelector>,
    pub tag_status: Option<TagStatus>,
    pub max_results: Option<i32>,
    pub next_token: Option<String>,
}

/// Which images `DescribeImages` asks about: by digest or by tag.
#[derive(Debug, Clone)]
pub enum ImageId {
    Digest(String),
    Tag(String),
}

impl ImageId {
    /// The image an identifier names: by its digest when it has one (a tag beside it is
    /// not checked), else by its tag.
    pub fn of(selector: ImageSelector) -> Result<ImageId> {
        match (selector.digest, selector.tag) {
            (Some(d), _) => Ok(ImageId::Digest(d)),
            (None, Some(t)) => Ok(ImageId::Tag(t)),
            (None, None) => Err(Error::parameter("Each imageId needs an imageDigest or an imageTag.")),
        }
    }
}

impl Ops<'_, Ecr> {
    /// Records a pushed image. A tag moves: the image it pointed at before loses it.
    pub async fn record_push(&self, p: Pushed) -> Result<Image> {
        let repo = RepositoryName::parse(&p.repository)?;
        self.write(move |txn| {
            if !txn.state.repositories.contains_key(&(p.scope.clone(), repo.clone())) {
                return Err(Error::NotFound {
                    kind: NotFoundKind::Repository,
                    message: format!("repository {repo} does not exist"),
                });
            }
            if let Some(tag) = &p.tag {
                let holders: Vec<Arc<Image>> = images_of(txn.state, &p.scope, &repo)
                    .filter(|i| i.digest != p.digest && i.tags.contains(tag))
                    .cloned()
                    .collect();
                for old in holders {
                    let mut old = old.as_ref().clone();
                    old.tags.retain(|t| t != tag);
                    let key = (p.scope.clone(), repo.clone(), old.digest.clone());
                    txn.touch(Touched::Image(key.0.clone(), key.1.clone(), key.2.clone()));
                    txn.state.images.insert(key, Arc::new(old));
                }
            }
            let key = (p.scope.clone(), repo.clone(), p.digest.clone());
            let mut image = match txn.state.images.get(&key) {
                Some(i) => i.as_ref().clone(),
                None => Image {
                    scope: p.scope.clone(),
                    repository: repo.clone(),
                    digest: p.digest.clone(),
                    tags: Vec::new(),
                    size: p.size,
                    media_type: p.media_type.clone(),
                    pushed_at: txn.now,
                    last_recorded_pull_time: None,
                },
            };
            if let Some(tag) = p.tag {
                if !image.tags.contains(&tag) {
                    image.tags.push(tag);
                }
            }
            txn.touch(Touched::Image(key.0.clone(), key.1.clone(), key.2.clone()));
            txn.state.images.insert(key, Arc::new(image.clone()));
            Ok(image)
        })
        .await
    }

    /// `DescribeImages`: images of a repository, of the caller or of an account whose
    /// repository policy allows `DescribeImages`; all of them a page of at most 1000 at a
    /// time, or those named. A named image that is missing is an `ImageNotFoundException`,
    /// as in ECR. `tag_status` filters the page, after it is cut.
    pub fn describe_images(&self, caller: &Caller, query: ImageQuery) -> Result<(Vec<Image>, Option<String>)> {
        self.query_images(caller, "DescribeImages", query)
    }

    /// `ListImages`: the images of `DescribeImages` as identifiers, one per tag, and one
    /// without a tag for an untagged image.
    pub fn list_images(&self, caller: &Caller, query: ImageQuery) -> Result<(Vec<ImageSelector>, Option<String>)> {
        let (images, next_token) = self.query_images(caller, "ListImages", ImageQuery { ids: Vec::new(), ..query })?;
        let mut ids = Vec::new();
        for i in images {
            if i.tags.is_empty() {
                ids.push(ImageSelector { digest: Some(i.digest), tag: None });
            } else {
                ids.extend(i.tags.into_iter().map(|t| ImageSelector { digest: Some(i.digest.clone()), tag: Some(t) }));
            }
        }
        Ok((ids, next_token))
    }

    fn query_images(&self, caller: &Caller, operation: &str, q: ImageQuery) -> Result<(Vec<Image>, Option<String>)> {
        let caller = &self.caller_for_repository(caller, q.registry_id.as_deref(), &q.repository, &[operation])?;
        let ids = q.ids.into_iter().map(ImageId::of).collect::<Result<Vec<_>>>()?;
        let page = Page::parse(q.max_results, q.next_token.as_deref(), 1000)?;
        let (mut images, next_token) = self.images_named(caller, &q.repository, &ids, &page)?;
        if let Some(t) = q.tag_status {
            images.retain(|i| t.keeps(&i.tags));
        }
        Ok((images, next_token))
    }

    /// Images of a repository, all or those named.
    fn images_named(
        &self,
        caller: &Caller,
        repository: &str,
        ids: &[ImageId],
        page: &Page,
    ) -> Result<(Vec<Image>, Option<String>)> {
        let state = self.view();
        let repo = RepositoryName::parse(repository)?;
        if !state.repositories.contains_key(&(caller.scope.clone(), repo.clone())) {
            return Err(not_found(caller, repository));
        }
        if ids.is_empty() {
            let items = images_of(&state, &caller.scope, &repo).map(|i| (i.digest.clone(), i.as_ref().clone()));
            return Ok(page.take(items, false));
        }
        let mut out = Vec::new();
        for id in ids {
            let found = images_of(&state, &caller.scope, &repo).find(|i| match id {
                ImageId::Digest(d) => &i.digest == d,
                ImageId::Tag(t) => i.tags.contains(t),
            });
            match found {
                Some(i) => out.push(i.as_ref().clone()),
                None => {
                    let what = match id {
                        ImageId::Digest(d) => format!("imageDigest={d}"),
                        ImageId::Tag(t) => format!("imageTag={t}"),
                    };
                    return Err(Error::NotFound {
                        kind: NotFoundKind::Image,
                        message: format!(
                            "The image with imageId {{{what}}} does not exist within the repository with name '{repository}' in the registry with id '{}'",
                            caller.scope.account
                        ),
                    });
                }
            }
        }
        Ok((out, None))
    }
}

/// The images of one repository, in digest order.
pub fn images_of<'a>(
    state: &'a crate::State,
    scope: &model::Scope,
    repo: &RepositoryName,
) -> impl Iterator<Item = &'a Arc<Image>> + 'a {
    let lo = (scope.clone(), repo.clone(), String::new());
    let (s, r) = (scope.clone(), repo.clone());
    state.images.range(lo..).take_while(move |((ks, kr, _), _)| *ks == s && *kr == r).map(|(_, i)| i)
}
