//! The image registry's room in the state: which blobs each repository links, the
//! manifests it holds and its tags (what `/v2/` serves), as records in the control
//! plane's store (tables `registry.*`). Kept here rather than in a file beside the blobs,
//! the registry's metadata is as durable as every other record, and on PostgreSQL it is
//! shared by the replicas: the one that leads after a failover serves the same images.

use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use registry::{Digest, ManifestRecord, Repository, Tag};
use store::{Mutation, Record, StoreError};

use super::{decode, encode, put_or_delete};

/// Every repository's registry metadata.
#[derive(Debug, Clone, Default)]
pub struct RegistryState {
    /// Blobs linked into a repository (pushed or mounted there).
    pub blobs: OrdMap<(Repository, Digest), ()>,
    pub manifests: OrdMap<(Repository, Digest), Arc<ManifestRecord>>,
    pub tags: OrdMap<(Repository, Tag), Digest>,
}

/// Which record changed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RegistryKey {
    Blob(Repository, Digest),
    Manifest(Repository, Digest),
    Tag(Repository, Tag),
}

const BLOBS: &str = "registry.blobs";
const MANIFESTS: &str = "registry.manifests";
const TAGS: &str = "registry.tags";

/// A link as stored.
#[derive(Serialize, Deserialize)]
struct StoredLink {
    repository: Repository,
    digest: Digest,
}

/// A manifest as stored.
#[derive(Serialize, Deserialize)]
struct StoredManifest {
    repository: Repository,
    manifest: ManifestRecord,
}

/// A tag as stored.
#[derive(Serialize, Deserialize)]
struct StoredTag {
    repository: Repository,
    tag: Tag,
    digest: Digest,
}

/// A repository's part of a record key. Names hold no `@` or `:` (the registry's grammar),
/// so the keys below are unique.
fn repo_key(r: &Repository) -> String {
    format!("{}/{}/{}", r.namespace.account, r.namespace.region, r.name.as_str())
}

impl RegistryState {
    /// The store mutation that makes `key` durable as it now is.
    pub(crate) fn mutation(&self, key: &RegistryKey) -> Mutation {
        match key {
            RegistryKey::Blob(r, d) => {
                let value = self
                    .blobs
                    .contains_key(&(r.clone(), d.clone()))
                    .then(|| encode(&StoredLink { repository: r.clone(), digest: d.clone() }));
                put_or_delete(BLOBS, format!("{}@{d}", repo_key(r)), value)
            }
            RegistryKey::Manifest(r, d) => {
                let value = self
                    .manifests
                    .get(&(r.clone(), d.clone()))
                    .map(|m| encode(&StoredManifest { repository: r.clone(), manifest: m.as_ref().clone() }));
                put_or_delete(MANIFESTS, format!("{}@{d}", repo_key(r)), value)
            }
            RegistryKey::Tag(r, t) => {
                let value = self
                    .tags
                    .get(&(r.clone(), t.clone()))
                    .map(|d| encode(&StoredTag { repository: r.clone(), tag: t.clone(), digest: d.clone() }));
                put_or_delete(TAGS, format!("{}:{}", repo_key(r), t.as_str()), value)
            }
        }
    }

    /// Loads one record of a `registry.` table: its key, or `None` for a table this module
    /// does not own.
    pub(crate) fn load(&mut self, r: &Record) -> Result<Option<RegistryKey>, StoreError> {
        Ok(Some(match r.table.as_str() {
            BLOBS => {
                let v: StoredLink = decode(r)?;
                self.blobs.insert((v.repository.clone(), v.digest.clone()), ());
                RegistryKey::Blob(v.repository, v.digest)
            }
            MANIFESTS => {
                let v: StoredManifest = decode(r)?;
                let digest = v.manifest.digest.clone();
                self.manifests.insert((v.repository.clone(), digest.clone()), Arc::new(v.manifest));
                RegistryKey::Manifest(v.repository, digest)
            }
            TAGS => {
                let v: StoredTag = decode(r)?;
                self.tags.insert((v.repository.clone(), v.tag.clone()), v.digest);
                RegistryKey::Tag(v.repository, v.tag)
            }
            _ => return Ok(None),
        }))
    }

    /// Forgets what `key` names (its record was deleted).
    pub(crate) fn forget(&mut self, key: &RegistryKey) {
        match key {
            RegistryKey::Blob(r, d) => drop(self.blobs.remove(&(r.clone(), d.clone()))),
            RegistryKey::Manifest(r, d) => drop(self.manifests.remove(&(r.clone(), d.clone()))),
            RegistryKey::Tag(r, t) => drop(self.tags.remove(&(r.clone(), t.clone()))),
        }
    }

    /// The tags of one repository, in order.
    pub fn repository_tags<'a>(&'a self, repo: &'a Repository) -> impl Iterator<Item = (&'a Tag, &'a Digest)> + 'a {
        self.tags
            .range((repo.clone(), lowest_tag())..)
            .take_while(move |((r, _), _)| r == repo)
            .map(|((_, t), d)| (t, d))
    }

    /// The manifests of one repository.
    pub fn repository_manifests<'a>(
        &'a self,
        repo: &'a Repository,
    ) -> impl Iterator<Item = &'a Arc<ManifestRecord>> + 'a {
        self.manifests.range((repo.clone(), lowest_digest())..).take_while(move |((r, _), _)| r == repo).map(|(_, m)| m)
    }

    /// The blobs linked into one repository.
    pub fn repository_blobs<'a>(&'a self, repo: &'a Repository) -> impl Iterator<Item = &'a Digest> + 'a {
        self.blobs
            .range((repo.clone(), lowest_digest())..)
            .take_while(move |((r, _), _)| r == repo)
            .map(|((_, d), _)| d)
    }

    /// Whether the registry holds anything of `repo`.
    pub fn knows(&self, repo: &Repository) -> bool {
        self.repository_blobs(repo).next().is_some()
            || self.repository_manifests(repo).next().is_some()
            || self.repository_tags(repo).next().is_some()
    }
}

/// The first tag in order: tags start with `[0-9A-Z_a-z]`, and "0" sorts first.
fn lowest_tag() -> Tag {
    Tag::parse("0").expect("a valid tag")
}

/// The first digest in order.
fn lowest_digest() -> Digest {
    Digest::parse(&format!("sha256:{}", "0".repeat(64))).expect("a valid digest")
}
