//! SSM Parameter Store's operations: parameters, their versions, labels and tags
//! (`state::ssm`, tables `ssm.*`).
//!
//! Decisions:
//! - SecureString values are sealed with the deployment's master key (`cp.sealer`) inside
//!   the writer's change, bound to account, region, name and version; the `KeyId` a caller
//!   names is recorded and answered, not used (Berth has no KMS). `WithDecryption=false`
//!   answers the sealed form (base64), as SSM answers its KMS ciphertext.
//! - An overwrite without `Type`, `Description` or `KeyId` keeps the previous version's;
//!   `AllowedPattern` and `Policies` belong to the version whose request carried them.
//! - Policies are recorded and answered with status `Pending`; Berth does not expire
//!   parameters.
//! - Paging tokens carry the last name (or version) of the page, so a page after a
//!   deletion goes on where it stopped.

use std::collections::BTreeMap;
use std::sync::Arc;

use model::ssm::{
    check_data_type, check_key_id, label_is_valid, parse_path, parse_policies, resolve_tier, AllowedPattern, Facts,
    Filter, FilterKey, ParameterName, ParameterType, Reference, Selector, SsmError, Tier, TierChoice, DEFAULT_KEY_ID,
    MAX_ADVANCED_PARAMETERS, MAX_LABELS_PER_VERSION, MAX_STANDARD_PARAMETERS, MAX_TAGS, MAX_VERSIONS,
};
use model::tags::Tags;
use model::Scope;

use crate::error::{Error, Result};
use crate::state::ssm::{Parameter, ParameterVersion, SsmKey, StoredValue};
use crate::state::{State, Touched};
use crate::{Caller, Ops, Page};

/// The marker of SSM's operations: `cp.ssm()`.
#[derive(Debug)]
pub enum Ssm {}

impl crate::ControlPlane {
    /// The SSM Parameter Store operations.
    pub fn ssm(&self) -> Ops<'_, Ssm> {
        Ops::new(self)
    }
}

/// A `PutParameter` request in domain terms.
#[derive(Debug, Clone, Default)]
pub struct PutRequest {
    pub name: String,
    pub value: String,
    pub ty: Option<ParameterType>,
    pub description: Option<String>,
    pub key_id: Option<String>,
    pub overwrite: bool,
    pub allowed_pattern: Option<String>,
    pub tags: Vec<(String, String)>,
    pub tier: Option<TierChoice>,
    pub policies: Option<String>,
    pub data_type: Option<String>,
}

/// A version with its value as the caller may see it.
#[derive(Debug, Clone)]
pub struct Found {
    pub version: Arc<ParameterVersion>,
    /// The value in clear, or a SecureString's sealed form when not decrypted.
    pub value: String,
    /// `:<version>` or `:<label>` when the reference had one.
    pub selector: Option<String>,
}

/// A parameter's latest version with its tags, for `DescribeParameters`.
pub type Described = Arc<ParameterVersion>;

fn ssm(code: &'static str, message: impl Into<String>) -> Error {
    Error::Ssm(SsmError::new(code, message))
}

fn not_found(name: &str) -> Error {
    Error::Ssm(SsmError::not_found(name))
}

fn version_not_found(name: &ParameterName, v: u64) -> Error {
    ssm(
        "ParameterVersionNotFound",
        format!("Systems Manager could not find version {v} of {name}. Verify the version and try again."),
    )
}

/// A page of `max` (checked by the edge against the model) after an SSM token.
pub fn page(max: Option<i32>, token: Option<&str>, default: i32) -> Result<Page> {
    let max = max.unwrap_or(default);
    Page::parse(Some(max), token, max.max(1)).map_err(|_| {
        ssm("InvalidNextToken", "The specified token is not valid; pass a NextToken of a previous answer.")
    })
}

fn now_ms(txn_now: model::Timestamp) -> i64 {
    (txn_now.epoch_seconds() * 1000.0) as i64
}

/// The name a name-or-ARN member gives, without a selector.
fn plain_name(scope: &Scope, s: &str) -> Result<Option<ParameterName>> {
    match Reference::parse(s, scope)? {
        Some(Reference { name, selector: Selector::Latest }) => Ok(Some(name)),
        Some(_) => Err(Error::Ssm(SsmError::validation(format!(
            "'{s}' names a version or label; this operation takes a parameter's name."
        )))),
        None => Ok(None),
    }
}

fn find<'a>(state: &'a State, scope: &Scope, name: &ParameterName) -> Option<&'a Arc<Parameter>> {
    state.ssm.parameters.get(&(scope.clone(), name.clone()))
}

fn facts<'a>(p: &'a Parameter, v: &'a ParameterVersion, labels: &'a [&'a str]) -> Facts<'a> {
    Facts {
        name: p.name.as_str(),
        ty: v.ty,
        key_id: v.key_id.as_deref(),
        tier: v.tier,
        data_type: &v.data_type,
        tags: &p.tags,
        labels,
    }
}

fn check_tags(tags: &[(String, String)]) -> Result<Tags> {
    if tags.len() > MAX_TAGS {
        return Err(ssm("TooManyTagsError", format!("A parameter can have at most {MAX_TAGS} tags.")));
    }
    Tags::parse(tags.iter().cloned()).map_err(|e| Error::Ssm(SsmError::validation(e.to_string())))
}

impl Ops<'_, Ssm> {
    /// `PutParameter`: a new parameter, or a new version of one (`overwrite`). Answers the
    /// version and its tier.
    pub async fn put(&self, caller: &Caller, req: PutRequest) -> Result<(u64, Tier)> {
        let scope = caller.scope.clone();
        // An ARN of the caller's own scope names the parameter as its name does.
        let name = match Reference::parse(&req.name, &scope) {
            Ok(Some(Reference { name, selector: Selector::Latest })) => name.to_string(),
            Ok(None) => {
                return Err(Error::Ssm(SsmError::validation(
                    "A parameter of another account or region cannot be written here.",
                )))
            }
            _ => req.name.clone(),
        };
        let name = ParameterName::for_put(&name, &scope)?;
        if req.overwrite && !req.tags.is_empty() {
            return Err(Error::Ssm(SsmError::validation(
                "Invalid request: tags and overwrite can't be used together. To create a parameter with tags, remove \
                 overwrite; to change the tags of an existing parameter, use AddTagsToResource or RemoveTagsFromResource.",
            )));
        }
        if req.value.is_empty() {
            return Err(Error::Ssm(SsmError::validation(
                "1 validation error detected: Value at 'value' failed to satisfy constraint: Member must have length \
                 greater than or equal to 1",
            )));
        }
        let tags = check_tags(&req.tags)?;
        let pattern =
            req.allowed_pattern.as_deref().filter(|p| !p.is_empty()).map(AllowedPattern::parse).transpose()?;
        if let Some(p) = &pattern {
            p.check(&req.value)?;
        }
        let policies = req.policies.as_deref().map(parse_policies).transpose()?;
        if let Some(k) = &req.key_id {
            check_key_id(k)?;
        }
        let sealer = self.sealer.clone();
        let user = caller.principal_arn();
        self.write(move |txn| {
            let now = now_ms(txn.now);
            let existing = find(txn.state, &scope, &name).cloned();
            let previous = existing.as_ref().map(|p| p.latest().clone());
            if previous.is_some() && !req.overwrite {
                return Err(ssm(
                    "ParameterAlreadyExists",
                    "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.",
                ));
            }
            let ty = match (req.ty, &previous) {
                (Some(t), _) => t,
                (None, Some(p)) => p.ty,
                (None, None) => {
                    return Err(Error::Ssm(SsmError::validation("A parameter type is required when you create a parameter.")))
                }
            };
            let key_id = match (ty, req.key_id, &previous) {
                (ParameterType::SecureString, Some(k), _) => Some(k),
                (ParameterType::SecureString, None, Some(p)) if p.key_id.is_some() => p.key_id.clone(),
                (ParameterType::SecureString, None, _) => Some(DEFAULT_KEY_ID.to_string()),
                (_, Some(_), _) => {
                    return Err(Error::Ssm(SsmError::validation("KeyId is required for SecureString type parameter only.")))
                }
                (_, None, _) => None,
            };
            let data_type = req.data_type.clone().unwrap_or_else(|| "text".into());
            check_data_type(&data_type, ty)?;
            let policies = policies.clone().unwrap_or_default();
            let tier = resolve_tier(req.tier, previous.as_ref().map(|p| p.tier), &req.value, !policies.is_empty())?;
            if previous.is_none() {
                let (limit, count) = match tier {
                    Tier::Standard => (MAX_STANDARD_PARAMETERS, count_tier(txn.state, &scope, Tier::Standard)),
                    Tier::Advanced => (MAX_ADVANCED_PARAMETERS, count_tier(txn.state, &scope, Tier::Advanced)),
                };
                if count >= limit {
                    return Err(ssm(
                        "ParameterLimitExceeded",
                        format!("This account has the most {} parameters a region may hold ({limit}).", tier.as_str()),
                    ));
                }
            }
            let mut param = existing.map_or_else(
                || Parameter { scope: scope.clone(), name: name.clone(), tags: Vec::new(), versions: BTreeMap::new() },
                |p| (*p).clone(),
            );
            let version = previous.as_ref().map_or(1, |p| p.version + 1);
            if param.versions.len() as u64 >= MAX_VERSIONS {
                let (&oldest, v) = param.versions.iter().next().expect("a full parameter has versions");
                if !v.labels.is_empty() {
                    return Err(ssm(
                        "ParameterMaxVersionLimitExceeded",
                        format!(
                            "You attempted to create a new version of {name} by calling the PutParameter API with the \
                             overwrite flag. Version {oldest}, the oldest version, can't be deleted because it has a \
                             label associated with it. Move the label to another version of the parameter, and try again."
                        ),
                    ));
                }
                param.versions.remove(&oldest);
                txn.touch(Touched::Ssm(SsmKey::Version(scope.clone(), name.clone(), oldest)));
            }
            let value = match ty {
                ParameterType::SecureString => StoredValue::Sealed(
                    sealer.seal_text(&ParameterVersion::purpose(&scope, &name, version), &req.value),
                ),
                _ => StoredValue::Plain(req.value),
            };
            let v = ParameterVersion {
                scope: scope.clone(),
                name: name.clone(),
                version,
                ty,
                value,
                description: req.description.or_else(|| previous.as_ref().and_then(|p| p.description.clone())),
                key_id,
                allowed_pattern: req.allowed_pattern.filter(|p| !p.is_empty()),
                tier,
                policies,
                data_type,
                labels: Vec::new(),
                last_modified: now,
                last_modified_user: user,
            };
            param.versions.insert(version, Arc::new(v));
            if previous.is_none() {
                param.tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                txn.touch(Touched::Ssm(SsmKey::Parameter(scope.clone(), name.clone())));
            }
            txn.state.ssm.parameters.insert((scope.clone(), name.clone()), Arc::new(param));
            txn.touch(Touched::Ssm(SsmKey::Version(scope, name, version)));
            Ok((version, tier))
        })
        .await
    }

    /// `GetParameter`: the version a reference (name or ARN, `:version` or `:label`) names.
    pub fn get(&self, scope: &Scope, reference: &str, decrypt: bool) -> Result<Found> {
        let Some(r) = Reference::parse(reference, scope)? else {
            return Err(not_found(reference));
        };
        self.resolve(&self.view(), scope, &r, decrypt)
    }

    /// `GetParameters`: the versions found, and the references that found nothing.
    pub fn get_many(&self, scope: &Scope, references: &[String], decrypt: bool) -> Result<(Vec<Found>, Vec<String>)> {
        let state = self.view();
        let (mut found, mut invalid) = (Vec::new(), Vec::new());
        let mut seen = std::collections::BTreeSet::new();
        for s in references {
            if !seen.insert(s.as_str()) {
                continue;
            }
            let r = match Reference::parse(s, scope) {
                Ok(Some(r)) => r,
                _ => {
                    invalid.push(s.clone());
                    continue;
                }
            };
            match self.resolve(&state, scope, &r, decrypt) {
                Ok(f) => found.push(f),
                Err(Error::Ssm(_)) => invalid.push(s.clone()),
                Err(e) => return Err(e),
            }
        }
        Ok((found, invalid))
    }

    fn resolve(&self, state: &State, scope: &Scope, r: &Reference, decrypt: bool) -> Result<Found> {
        let p = find(state, scope, &r.name).ok_or_else(|| not_found(r.name.as_str()))?;
        let v = match &r.selector {
            Selector::Latest => p.latest(),
            Selector::Version(n) => p.versions.get(n).ok_or_else(|| version_not_found(&r.name, *n))?,
            Selector::Label(l) => p.labelled(l).ok_or_else(|| not_found(&format!("{}:{l}", r.name)))?,
        };
        Ok(Found { version: v.clone(), value: self.value(v, decrypt)?, selector: r.selector.suffix() })
    }

    /// A version's value: in clear, or a SecureString's sealed form unless `decrypt`.
    fn value(&self, v: &ParameterVersion, decrypt: bool) -> Result<String> {
        match &v.value {
            StoredValue::Plain(s) => Ok(s.clone()),
            StoredValue::Sealed(s) if !decrypt => Ok(s.clone()),
            StoredValue::Sealed(s) => {
                self.sealer.open_text(&ParameterVersion::purpose(&v.scope, &v.name, v.version), s).map_err(|_| {
                    Error::Internal(format!("the sealed value of {} version {} does not open", v.name, v.version))
                })
            }
        }
    }

    /// `GetParametersByPath`: the parameters under `path` (directly, or at any depth when
    /// `recursive`) that pass every filter, one page in name order. A `Label` filter
    /// answers the version carrying the label.
    pub fn by_path(
        &self,
        scope: &Scope,
        path: &str,
        recursive: bool,
        filters: &[Filter],
        decrypt: bool,
        page: &Page,
    ) -> Result<(Vec<Found>, Option<String>)> {
        let path = parse_path(path)?;
        let state = self.view();
        let label_filter = filters.iter().find(|f| f.key == FilterKey::Label);
        let items = state.ssm.of_scope(scope).filter(|p| p.name.is_under(&path, recursive)).filter_map(|p| {
            let labels: Vec<&str> = p.versions.values().flat_map(|v| v.labels.iter().map(String::as_str)).collect();
            let chosen = match label_filter {
                Some(f) => p.versions.values().find(|v| {
                    let own: Vec<&str> = v.labels.iter().map(String::as_str).collect();
                    f.matches(&facts(p, v, &own))
                })?,
                None => p.latest(),
            };
            let fx = facts(p, chosen, &labels);
            filters.iter().all(|f| f.matches(&fx)).then(|| (p.name.to_string(), chosen.clone()))
        });
        let (versions, token) = page.take(items, false);
        let found = versions
            .into_iter()
            .map(|v| Ok(Found { value: self.value(&v, decrypt)?, version: v, selector: None }))
            .collect::<Result<_>>()?;
        Ok((found, token))
    }

    /// `DescribeParameters`: the latest version of every parameter that passes the
    /// filters, one page in name order.
    pub fn describe(&self, scope: &Scope, filters: &[Filter], page: &Page) -> Result<(Vec<Described>, Option<String>)> {
        let state = self.view();
        let items = state.ssm.of_scope(scope).filter_map(|p| {
            let labels: Vec<&str> = p.versions.values().flat_map(|v| v.labels.iter().map(String::as_str)).collect();
            let fx = facts(p, p.latest(), &labels);
            filters.iter().all(|f| f.matches(&fx)).then(|| (p.name.to_string(), p.latest().clone()))
        });
        Ok(page.take(items, false))
    }

    /// `GetParameterHistory`: every kept version, oldest first, one page.
    pub fn history(
        &self,
        scope: &Scope,
        name: &str,
        decrypt: bool,
        page: &Page,
    ) -> Result<(Vec<Found>, Option<String>)> {
        let state = self.view();
        let Some(n) = plain_name(scope, name)? else { return Err(not_found(name)) };
        let p = find(&state, scope, &n).ok_or_else(|| not_found(name))?;
        let items = p.versions.iter().map(|(k, v)| (format!("{k:020}"), v.clone()));
        let (versions, token) = page.take(items, false);
        let found = versions
            .into_iter()
            .map(|v| Ok(Found { value: self.value(&v, decrypt)?, version: v, selector: None }))
            .collect::<Result<_>>()?;
        Ok((found, token))
    }

    /// `DeleteParameter`.
    pub async fn delete(&self, scope: &Scope, name: &str) -> Result<()> {
        let Some(n) = plain_name(scope, name)? else { return Err(not_found(name)) };
        let (scope, shown) = (scope.clone(), name.to_string());
        self.write(move |txn| if remove(txn, &scope, &n) { Ok(()) } else { Err(not_found(&shown)) }).await
    }

    /// `DeleteParameters`: the names deleted and the names that were not there.
    pub async fn delete_many(&self, scope: &Scope, names: Vec<String>) -> Result<(Vec<String>, Vec<String>)> {
        let scope = scope.clone();
        self.write(move |txn| {
            let (mut deleted, mut invalid) = (Vec::new(), Vec::new());
            for s in names {
                match plain_name(&scope, &s) {
                    Ok(Some(n)) if remove(txn, &scope, &n) => deleted.push(s),
                    _ if deleted.contains(&s) => {}
                    _ => invalid.push(s),
                }
            }
            Ok((deleted, invalid))
        })
        .await
    }

    /// `LabelParameterVersion`: attaches the valid labels to `version` (the latest when
    /// absent), moving any that another version carries. Answers the version and the
    /// labels that break SSM's rules (attached to nothing).
    pub async fn label(
        &self,
        scope: &Scope,
        name: &str,
        version: Option<u64>,
        labels: Vec<String>,
    ) -> Result<(u64, Vec<String>)> {
        let Some(n) = plain_name(scope, name)? else { return Err(not_found(name)) };
        let (scope, shown) = (scope.clone(), name.to_string());
        self.write(move |txn| {
            modify(
                txn,
                &scope,
                &n,
                || not_found(&shown),
                |p| {
                    let target = version.unwrap_or_else(|| p.latest().version);
                    if !p.versions.contains_key(&target) {
                        return Err(version_not_found(&p.name, target));
                    }
                    let (valid, invalid): (Vec<String>, Vec<String>) =
                        labels.into_iter().partition(|l| label_is_valid(l));
                    let mut changed = Vec::new();
                    for (&k, v) in p.versions.iter_mut() {
                        let mut kept: Vec<String> = v.labels.iter().filter(|x| !valid.contains(x)).cloned().collect();
                        if k == target {
                            for l in &valid {
                                if !kept.contains(l) {
                                    kept.push(l.clone());
                                }
                            }
                            if kept.len() > MAX_LABELS_PER_VERSION {
                                return Err(ssm(
                                    "ParameterVersionLabelLimitExceeded",
                                    format!(
                                    "A parameter version can have at most {MAX_LABELS_PER_VERSION} labels. Move one \
                                     or more labels to another version and try again."
                                ),
                                ));
                            }
                        }
                        if kept != v.labels {
                            Arc::make_mut(v).labels = kept;
                            changed.push(SsmKey::Version(p.scope.clone(), p.name.clone(), k));
                        }
                    }
                    Ok(((target, invalid), changed))
                },
            )
        })
        .await
    }

    /// `UnlabelParameterVersion`: removes labels from one version. Answers the labels
    /// removed and those the version did not carry.
    pub async fn unlabel(
        &self,
        scope: &Scope,
        name: &str,
        version: u64,
        labels: Vec<String>,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let Some(n) = plain_name(scope, name)? else { return Err(not_found(name)) };
        let (scope, shown) = (scope.clone(), name.to_string());
        self.write(move |txn| {
            modify(
                txn,
                &scope,
                &n,
                || not_found(&shown),
                |p| {
                    let key = SsmKey::Version(p.scope.clone(), p.name.clone(), version);
                    let v = p.versions.get_mut(&version).ok_or_else(|| version_not_found(&p.name, version))?;
                    let (removed, invalid): (Vec<String>, Vec<String>) =
                        labels.into_iter().partition(|l| v.labels.contains(l));
                    Arc::make_mut(v).labels.retain(|l| !removed.contains(l));
                    let changed = if removed.is_empty() { Vec::new() } else { vec![key] };
                    Ok(((removed, invalid), changed))
                },
            )
        })
        .await
    }

    /// `AddTagsToResource` for a parameter (by name).
    pub async fn add_tags(&self, scope: &Scope, id: &str, tags: Vec<(String, String)>) -> Result<()> {
        let tags = check_tags(&tags)?;
        self.update_tags(scope, id, move |current| {
            let mut all = Tags::parse(current.iter().cloned()).unwrap_or_default();
            let new_keys = tags.iter().filter(|(k, _)| !current.iter().any(|(c, _)| c == k)).count();
            if current.len() + new_keys > MAX_TAGS {
                return Err(ssm("TooManyTagsError", format!("A parameter can have at most {MAX_TAGS} tags.")));
            }
            all.merge(tags.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                .map_err(|e| Error::Ssm(SsmError::validation(e.to_string())))?;
            *current = all.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Ok(())
        })
        .await
    }

    /// `RemoveTagsFromResource` for a parameter (by name).
    pub async fn remove_tags(&self, scope: &Scope, id: &str, keys: Vec<String>) -> Result<()> {
        self.update_tags(scope, id, move |current| {
            current.retain(|(k, _)| !keys.contains(k));
            Ok(())
        })
        .await
    }

    /// `ListTagsForResource` for a parameter (by name).
    pub fn tags(&self, scope: &Scope, id: &str) -> Result<Vec<(String, String)>> {
        let n = resource(scope, id)?;
        let state = self.view();
        Ok(find(&state, scope, &n).ok_or_else(|| invalid_resource(id))?.tags.clone())
    }

    async fn update_tags(
        &self,
        scope: &Scope,
        id: &str,
        f: impl FnOnce(&mut Vec<(String, String)>) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let n = resource(scope, id)?;
        let (scope, id) = (scope.clone(), id.to_string());
        self.write(move |txn| {
            modify(
                txn,
                &scope,
                &n,
                || invalid_resource(&id),
                |p| {
                    f(&mut p.tags)?;
                    Ok(((), vec![SsmKey::Parameter(p.scope.clone(), p.name.clone())]))
                },
            )
        })
        .await
    }
}

fn invalid_resource(id: &str) -> Error {
    ssm(
        "InvalidResourceId",
        format!("The resource ID '{id}' is not valid. Verify that you entered the correct ID and try again."),
    )
}

/// The parameter a tagging `ResourceId` names (its name, or its ARN).
fn resource(scope: &Scope, id: &str) -> Result<ParameterName> {
    match plain_name(scope, id) {
        Ok(Some(n)) => Ok(n),
        _ => Err(invalid_resource(id)),
    }
}

/// Changes a parameter in a writer's change: `f` answers its result and the records it
/// changed; `missing` is the error when there is no such parameter.
fn modify<R>(
    txn: &mut crate::Txn<'_>,
    scope: &Scope,
    name: &ParameterName,
    missing: impl FnOnce() -> Error,
    f: impl FnOnce(&mut Parameter) -> Result<(R, Vec<SsmKey>)>,
) -> Result<R> {
    let mut p = (**find(txn.state, scope, name).ok_or_else(missing)?).clone();
    let (r, changed) = f(&mut p)?;
    txn.state.ssm.parameters.insert((scope.clone(), name.clone()), Arc::new(p));
    for k in changed {
        txn.touch(Touched::Ssm(k));
    }
    Ok(r)
}

/// Removes a parameter and all its versions; `false` if it was not there.
fn remove(txn: &mut crate::Txn<'_>, scope: &Scope, name: &ParameterName) -> bool {
    let Some(p) = txn.state.ssm.parameters.remove(&(scope.clone(), name.clone())) else { return false };
    for &v in p.versions.keys() {
        txn.touch(Touched::Ssm(SsmKey::Version(scope.clone(), name.clone(), v)));
    }
    txn.touch(Touched::Ssm(SsmKey::Parameter(scope.clone(), name.clone())));
    true
}

fn count_tier(state: &State, scope: &Scope, tier: Tier) -> usize {
    state.ssm.of_scope(scope).filter(|p| p.latest().tier == tier).count()
}
