//! The Secrets Manager API (`secretsmanager.*`, JSON 1.1, SigV4 service `secretsmanager`):
//! decode, validate, call `cp.secrets()`, and render its results as Secrets Manager's wire
//! shapes. Values are base64 on the wire for `SecretBinary`; nothing here logs a value.

use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use control_plane::secrets::{ListRequest, NewSecret, NewVersion, OpenedValue, SecretValue, SortBy};
use control_plane::state::secrets::Secret;
use control_plane::{Caller, Page};
use model::secrets::shapes as w;
use model::secrets::{Filter, FilterKey, SecretName};
use model::Timestamp;

use crate::ecs::{input_worded, validate_with_model, EnumWording, Validate};
use crate::{ok, Api, ApiError};

pub const TARGET_PREFIX: &str = "secretsmanager";

validate_with_model!(
    w::CreateSecretRequest,
    w::GetSecretValueRequest,
    w::PutSecretValueRequest,
    w::UpdateSecretRequest,
    w::DescribeSecretRequest,
    w::ListSecretsRequest,
    w::ListSecretVersionIdsRequest,
    w::DeleteSecretRequest,
    w::RestoreSecretRequest,
    w::UpdateSecretVersionStageRequest,
    w::BatchGetSecretValueRequest,
    w::GetResourcePolicyRequest,
    w::PutResourcePolicyRequest,
    w::DeleteResourcePolicyRequest,
    w::ValidateResourcePolicyRequest,
    w::TagResourceRequest,
    w::UntagResourceRequest,
);

/// `ListSecrets`' and `ListSecretVersionIds`' largest (and default) page.
const PAGE_LIMIT: i32 = 100;
/// `BatchGetSecretValue`'s largest page.
const BATCH_LIMIT: i32 = 20;

/// An empty `{}` answer.
#[derive(serde::Serialize)]
struct Empty {}

fn input<T: serde::de::DeserializeOwned + Validate>(body: &[u8]) -> Result<T, ApiError> {
    input_worded(body, EnumWording::Model)
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_epoch_seconds(ms as f64 / 1000.0)
}

/// `SecretString` or `SecretBinary` (base64 on the wire).
fn value(text: Option<String>, binary: Option<String>) -> Result<Option<SecretValue>, ApiError> {
    let binary = binary
        .map(|b| STANDARD.decode(b))
        .transpose()
        .map_err(|_| ApiError::serialization("SecretBinary is not valid base64."))?;
    Ok(SecretValue::from_members(text, binary)?)
}

fn tags_in(tags: Option<Vec<w::Tag>>) -> Vec<(String, String)> {
    tags.unwrap_or_default().into_iter().map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default())).collect()
}

fn tags_out(tags: &[(String, String)]) -> Option<Vec<w::Tag>> {
    if tags.is_empty() {
        return None;
    }
    Some(tags.iter().map(|(k, v)| w::Tag { key: Some(k.clone()), value: Some(v.clone()) }).collect())
}

fn stages_map(s: &Secret) -> std::collections::BTreeMap<String, Vec<String>> {
    s.versions
        .iter()
        .filter(|(_, v)| !v.stages.is_empty())
        .map(|(id, v)| (id.clone(), v.stages.iter().cloned().collect()))
        .collect()
}

fn id(secret_id: Option<String>) -> String {
    secret_id.unwrap_or_default()
}

fn filters(list: Option<Vec<w::Filter>>) -> Result<Vec<Filter>, ApiError> {
    let mut out = Vec::new();
    for f in list.unwrap_or_default() {
        let key = match f.key {
            Some(w::FilterNameStringType::Description) => FilterKey::Description,
            Some(w::FilterNameStringType::Name) => FilterKey::Name,
            Some(w::FilterNameStringType::TagKey) => FilterKey::TagKey,
            Some(w::FilterNameStringType::TagValue) => FilterKey::TagValue,
            Some(w::FilterNameStringType::PrimaryRegion) => FilterKey::PrimaryRegion,
            Some(w::FilterNameStringType::OwningService) => FilterKey::OwningService,
            Some(w::FilterNameStringType::All) => FilterKey::All,
            None => return Err(ApiError::invalid_parameter("A filter must have a Key.")),
        };
        out.push(Filter::parse(key, f.values.unwrap_or_default())?);
    }
    Ok(out)
}

fn value_entry(v: OpenedValue) -> w::SecretValueEntry {
    let (secret_string, secret_binary) = match v.value {
        SecretValue::Text(t) => (Some(t), None),
        SecretValue::Binary(b) => (None, Some(STANDARD.encode(b))),
    };
    w::SecretValueEntry {
        arn: Some(v.arn),
        name: Some(v.name.to_string()),
        version_id: Some(v.version),
        secret_string,
        secret_binary,
        version_stages: Some(v.stages),
        created_date: Some(ts(v.created)),
    }
}

fn list_entry(s: &Secret) -> w::SecretListEntry {
    w::SecretListEntry {
        arn: Some(s.arn.clone()),
        name: Some(s.name.to_string()),
        description: s.description.clone(),
        kms_key_id: s.kms_key_id.clone(),
        last_changed_date: Some(ts(s.last_changed)),
        deleted_date: s.deletion_date.map(ts),
        tags: tags_out(&s.tags),
        secret_versions_to_stages: Some(stages_map(s)),
        created_date: Some(ts(s.created)),
        ..Default::default()
    }
}

/// `{ARN, Name}`, the answer of several operations.
#[derive(serde::Serialize)]
struct ArnName {
    #[serde(rename = "ARN")]
    arn: String,
    #[serde(rename = "Name")]
    name: String,
}

fn arn_name((arn, name): (String, SecretName)) -> Response {
    ok(&ArnName { arn, name: name.to_string() })
}

fn refused_rotation() -> ApiError {
    ApiError::bad_request(
        "UnsupportedFeatureException",
        "Berth does not rotate secrets: rotation runs an AWS Lambda function, and Berth has no Lambda. Put new values with PutSecretValue instead.",
    )
}

pub async fn dispatch(api: &Api, caller: &Caller, operation: &str, body: &[u8]) -> Result<Response, ApiError> {
    let sm = api.control.secrets();
    let scope = &caller.scope;
    match operation {
        "CreateSecret" => {
            let r: w::CreateSecretRequest = input(body)?;
            if r.add_replica_regions.is_some() {
                return Err(ApiError::bad_request(
                    "UnsupportedFeatureException",
                    "Berth does not replicate secrets to other regions; leave AddReplicaRegions out.",
                ));
            }
            let req = NewSecret {
                name: SecretName::parse(&r.name.unwrap_or_default())?,
                token: r.client_request_token,
                description: r.description,
                kms_key_id: r.kms_key_id,
                value: value(r.secret_string, r.secret_binary)?,
                tags: tags_in(r.tags),
            };
            let out = sm.create(scope, req).await?;
            Ok(ok(&w::CreateSecretResponse {
                arn: Some(out.arn),
                name: Some(out.name.to_string()),
                version_id: out.version,
                ..Default::default()
            }))
        }
        "GetSecretValue" => {
            let r: w::GetSecretValueRequest = input(body)?;
            let v = sm.get_value(scope, &id(r.secret_id), r.version_id.as_deref(), r.version_stage.as_deref())?;
            let e = value_entry(v);
            Ok(ok(&w::GetSecretValueResponse {
                arn: e.arn,
                name: e.name,
                version_id: e.version_id,
                secret_binary: e.secret_binary,
                secret_string: e.secret_string,
                version_stages: e.version_stages,
                created_date: e.created_date,
            }))
        }
        "PutSecretValue" => {
            let r: w::PutSecretValueRequest = input(body)?;
            let Some(v) = value(r.secret_string, r.secret_binary)? else {
                return Err(ApiError::invalid_parameter("You must provide either SecretString or SecretBinary."));
            };
            let version = NewVersion { token: r.client_request_token, value: v, stages: r.version_stages };
            let out = sm.put_value(scope, id(r.secret_id), version).await?;
            Ok(ok(&w::PutSecretValueResponse {
                arn: Some(out.arn),
                name: Some(out.name.to_string()),
                version_id: out.version,
                version_stages: Some(out.stages),
            }))
        }
        "UpdateSecret" => {
            let r: w::UpdateSecretRequest = input(body)?;
            let version = value(r.secret_string, r.secret_binary)?.map(|v| NewVersion {
                token: r.client_request_token,
                value: v,
                stages: None,
            });
            let out = sm.update(scope, id(r.secret_id), r.description, r.kms_key_id, version).await?;
            Ok(ok(&w::UpdateSecretResponse {
                arn: Some(out.arn),
                name: Some(out.name.to_string()),
                version_id: out.version,
            }))
        }
        "DescribeSecret" => {
            let r: w::DescribeSecretRequest = input(body)?;
            let s = sm.describe(scope, &id(r.secret_id))?;
            Ok(ok(&w::DescribeSecretResponse {
                arn: Some(s.arn.clone()),
                name: Some(s.name.to_string()),
                description: s.description.clone(),
                kms_key_id: s.kms_key_id.clone(),
                last_changed_date: Some(ts(s.last_changed)),
                deleted_date: s.deletion_date.map(ts),
                tags: tags_out(&s.tags),
                version_ids_to_stages: Some(stages_map(&s)),
                created_date: Some(ts(s.created)),
                ..Default::default()
            }))
        }
        "ListSecrets" => {
            let r: w::ListSecretsRequest = input(body)?;
            let page = Page::parse(r.max_results, r.next_token.as_deref(), PAGE_LIMIT)?;
            let req = ListRequest {
                filters: filters(r.filters)?,
                sort_by: match r.sort_by {
                    Some(w::SortByType::Name) => SortBy::Name,
                    Some(w::SortByType::LastChangedDate) => SortBy::LastChanged,
                    _ => SortBy::Created,
                },
                descending: r.sort_order == Some(w::SortOrderType::Desc),
                include_planned_deletion: r.include_planned_deletion.unwrap_or(false),
            };
            let (secrets, next_token) = sm.list(scope, &req, &page);
            Ok(ok(&w::ListSecretsResponse {
                secret_list: Some(secrets.iter().map(|s| list_entry(s)).collect()),
                next_token,
            }))
        }
        "ListSecretVersionIds" => {
            let r: w::ListSecretVersionIdsRequest = input(body)?;
            let page = Page::parse(r.max_results, r.next_token.as_deref(), PAGE_LIMIT)?;
            let found = sm.versions(scope, &id(r.secret_id), r.include_deprecated.unwrap_or(false), &page)?;
            let (s, versions, next_token) = (found.secret, found.versions, found.next_token);
            Ok(ok(&w::ListSecretVersionIdsResponse {
                versions: Some(
                    versions
                        .into_iter()
                        .map(|(id, v)| w::SecretVersionsListEntry {
                            version_id: Some(id),
                            version_stages: Some(v.stages.into_iter().collect()),
                            created_date: Some(ts(v.created)),
                            kms_key_ids: Some(vec![s
                                .kms_key_id
                                .clone()
                                .unwrap_or_else(|| "DefaultEncryptionKey".into())]),
                            ..Default::default()
                        })
                        .collect(),
                ),
                next_token,
                arn: Some(s.arn.clone()),
                name: Some(s.name.to_string()),
            }))
        }
        "DeleteSecret" => {
            let r: w::DeleteSecretRequest = input(body)?;
            let force = r.force_delete_without_recovery.unwrap_or(false);
            let (arn, name, date) = sm.delete(scope, id(r.secret_id), r.recovery_window_in_days, force).await?;
            Ok(ok(&w::DeleteSecretResponse {
                arn: Some(arn),
                name: Some(name.to_string()),
                deletion_date: Some(ts(date)),
            }))
        }
        "RestoreSecret" => {
            let r: w::RestoreSecretRequest = input(body)?;
            Ok(arn_name(sm.restore(scope, id(r.secret_id)).await?))
        }
        "UpdateSecretVersionStage" => {
            let r: w::UpdateSecretVersionStageRequest = input(body)?;
            let out = sm
                .update_stage(
                    scope,
                    id(r.secret_id),
                    r.version_stage.unwrap_or_default(),
                    r.remove_from_version_id,
                    r.move_to_version_id,
                )
                .await?;
            Ok(arn_name(out))
        }
        "BatchGetSecretValue" => batch_get(api, caller, body).await,
        "GetResourcePolicy" => {
            let r: w::GetResourcePolicyRequest = input(body)?;
            let s = sm.describe(scope, &id(r.secret_id))?;
            Ok(ok(&w::GetResourcePolicyResponse {
                arn: Some(s.arn.clone()),
                name: Some(s.name.to_string()),
                resource_policy: s.policy.as_ref().map(|p| p.text().to_string()),
            }))
        }
        "PutResourcePolicy" => {
            let r: w::PutResourcePolicyRequest = input(body)?;
            let text = r.resource_policy.unwrap_or_default();
            if r.block_public_policy.unwrap_or(false) && grants_everyone(&text) {
                return Err(ApiError::bad_request(
                    "PublicPolicyException",
                    "The BlockPublicPolicy parameter is set to true, and the resource policy did not prevent broad access to the secret.",
                ));
            }
            Ok(arn_name(sm.put_policy(scope, id(r.secret_id), text).await?))
        }
        "DeleteResourcePolicy" => {
            let r: w::DeleteResourcePolicyRequest = input(body)?;
            Ok(arn_name(sm.delete_policy(scope, id(r.secret_id)).await?))
        }
        "ValidateResourcePolicy" => {
            let r: w::ValidateResourcePolicyRequest = input(body)?;
            if let Some(s) = &r.secret_id {
                sm.describe(scope, s)?;
            }
            let text = r.resource_policy.unwrap_or_default();
            if serde_json::from_str::<serde_json::Value>(&text).is_err() {
                return Err(ApiError::bad_request(
                    "MalformedPolicyDocumentException",
                    "The resource policy is not valid JSON.",
                ));
            }
            let errors = match control_plane::secrets::parse_policy(&text) {
                Ok(_) => vec![],
                Err(e) => vec![w::ValidationErrorsEntry {
                    check_name: Some("IAM_POLICY_VALIDATION".into()),
                    error_message: Some(e.to_string()),
                }],
            };
            Ok(ok(&w::ValidateResourcePolicyResponse {
                policy_validation_passed: Some(errors.is_empty()),
                validation_errors: Some(errors),
            }))
        }
        "TagResource" => {
            let r: w::TagResourceRequest = input(body)?;
            sm.tag(scope, id(r.secret_id), tags_in(r.tags)).await?;
            Ok(ok(&Empty {}))
        }
        "UntagResource" => {
            let r: w::UntagResourceRequest = input(body)?;
            sm.untag(scope, id(r.secret_id), r.tag_keys.unwrap_or_default()).await?;
            Ok(ok(&Empty {}))
        }
        "RotateSecret" | "CancelRotateSecret" => Err(refused_rotation()),
        "ReplicateSecretToRegions" | "RemoveRegionsFromReplication" | "StopReplicationToReplica" => {
            Err(ApiError::bad_request(
                "UnsupportedFeatureException",
                "Berth does not replicate secrets: one Berth serves every region from one store.",
            ))
        }
        _ if w::OPERATIONS.contains(&operation) => Err(ApiError::bad_request(
            "UnsupportedFeatureException",
            format!("Berth does not implement Secrets Manager's {operation} yet."),
        )),
        _ => Err(ApiError::bad_request(
            "UnknownOperationException",
            format!("Secrets Manager has no operation '{operation}'."),
        )),
    }
}

/// Whether a policy has an `Allow` statement for every principal (`"*"` or `{"AWS":"*"}`).
fn grants_everyone(text: &str) -> bool {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(text) else { return false };
    let statements = match doc.get("Statement") {
        Some(serde_json::Value::Array(a)) => a.clone(),
        Some(s) => vec![s.clone()],
        None => vec![],
    };
    statements.iter().any(|s| {
        let allow = s.get("Effect").and_then(|e| e.as_str()) == Some("Allow");
        let p = s.get("Principal");
        let star = |v: Option<&serde_json::Value>| match v {
            Some(serde_json::Value::String(x)) => x == "*",
            Some(serde_json::Value::Array(a)) => a.iter().any(|x| x.as_str() == Some("*")),
            _ => false,
        };
        allow && (star(p) || star(p.and_then(|p| p.get("AWS"))))
    })
}

/// `BatchGetSecretValue`: every secret named (or matched by the filters) that the caller
/// may read with `GetSecretValue`; the others are in `Errors`, as AWS answers them.
async fn batch_get(api: &Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::BatchGetSecretValueRequest = input(body)?;
    let sm = api.control.secrets();
    let scope = &caller.scope;
    let error_entry = |secret_id: String, e: ApiError| w::APIErrorType {
        secret_id: Some(secret_id),
        error_code: Some(e.code.to_string()),
        message: Some(e.message),
    };
    let allowed = |secret_id: &str| -> Result<(), ApiError> {
        if caller.is_root() {
            return Ok(());
        }
        let body = crate::authz::Body::of(&[("SecretId", secret_id.into())]);
        let resolve = |id: &str| api.control.secrets().secret_arn(scope, id);
        let access = crate::authz::secretsmanager("GetSecretValue", &body, scope, &resolve);
        api.control.iam().authorize(caller, access).map_err(ApiError::from)
    };
    let mut values = Vec::new();
    let mut errors = Vec::new();
    let next_token = match (r.secret_id_list, r.filters) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ApiError::invalid_parameter(
                "Either 'SecretIdList' or 'Filters' must be provided, but not both.",
            ))
        }
        (Some(ids), None) => {
            if r.max_results.is_some() {
                return Err(ApiError::invalid_parameter("'MaxResults' can only be used with 'Filters'."));
            }
            for secret_id in ids {
                match allowed(&secret_id).and_then(|()| Ok(sm.get_value(scope, &secret_id, None, None)?)) {
                    Ok(v) => values.push(value_entry(v)),
                    Err(e) => errors.push(error_entry(secret_id, e)),
                }
            }
            None
        }
        (None, Some(f)) => {
            let page = Page::parse(r.max_results, r.next_token.as_deref(), BATCH_LIMIT)?;
            let (found, token) = sm.values_by_filter(scope, filters(Some(f))?, &page);
            for v in found {
                let arn = match &v {
                    Ok(v) => v.arn.clone(),
                    Err((arn, _)) => arn.clone(),
                };
                match allowed(&arn).and_then(|()| v.map_err(|(_, e)| ApiError::from(e))) {
                    Ok(v) => values.push(value_entry(v)),
                    Err(e) => errors.push(error_entry(arn, e)),
                }
            }
            token
        }
    };
    Ok(ok(&w::BatchGetSecretValueResponse { secret_values: Some(values), next_token, errors: Some(errors) }))
}
