//! The ECR repositories of an account. Images arrive with the registry (`registry` crate),
//! which is wired in by a later change; until then a repository never holds images.

use std::sync::Arc;

use model::ecr::shapes::{EncryptionConfiguration, EncryptionType, ImageTagMutability};
use model::ecr::{Repository, RepositoryName};
use model::tags::Tags;

use crate::ecs::Caller;
use crate::error::{ConflictKind, Error, NotFoundKind, Result};
use crate::state::Touched;
use crate::{ControlPlane, Page};

/// What `CreateRepository` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewRepository {
    pub name: String,
    pub tags: Vec<(String, String)>,
    pub tag_mutability: Option<ImageTagMutability>,
    pub scan_on_push: bool,
    pub encryption: Option<EncryptionConfiguration>,
}

fn not_found(caller: &Caller, name: &str) -> Error {
    Error::NotFound {
        kind: NotFoundKind::Repository,
        message: format!(
            "The repository with name '{name}' does not exist in the registry with id '{}'",
            caller.scope.account
        ),
    }
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

impl ControlPlane {
    pub async fn create_repository(&self, caller: &Caller, req: NewRepository) -> Result<Repository> {
        let name = RepositoryName::parse(&req.name)?;
        let tags = Tags::parse(req.tags)?;
        let encryption = req
            .encryption
            .unwrap_or(EncryptionConfiguration { encryption_type: Some(EncryptionType::Aes256), kms_key: None });
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
                tag_mutability: req.tag_mutability.unwrap_or(ImageTagMutability::Mutable),
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

    /// Repositories by name (each must exist), or all of them in name order.
    pub fn describe_repositories(
        &self,
        caller: &Caller,
        names: &[String],
        page: &Page,
    ) -> Result<(Vec<Repository>, Option<String>)> {
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

    /// Deletes a repository. It holds no images in this version, so `force` changes
    /// nothing yet; with images, deleting without `force` will refuse.
    pub async fn delete_repository(&self, caller: &Caller, name: String, _force: bool) -> Result<Repository> {
        let repo = RepositoryName::parse(&name)?;
        let caller = caller.clone();
        self.write(move |txn| {
            let key = (caller.scope.clone(), repo.clone());
            let r = txn.state.repositories.remove(&key).ok_or_else(|| not_found(&caller, &name))?;
            txn.touch(Touched::Repository(caller.scope.clone(), repo));
            Ok(r.as_ref().clone())
        })
        .await
    }
}
