//! SSM Parameter Store (`AmazonSSM.*`, JSON 1.1, SigV4 service `ssm`): decode, call
//! `cp.ssm()`, and render its results as SSM's wire shapes. SSM answers a request that
//! breaks the model's rules with `ValidationException`, and an internal fault with
//! `InternalServerError`.

use axum::response::Response;

use control_plane::ssm::{page, Found, PutRequest};
use control_plane::state::ssm::ParameterVersion;
use control_plane::{Caller, Error};
use model::ssm::shapes as w;
use model::ssm::{Filter, FilterUse, ParameterType, SsmError, Tier, TierChoice};
use model::Timestamp;

use crate::ecs::{input_worded, validate_with_model, EnumWording, Validate};
use crate::{ok, Api, ApiError};

pub const TARGET_PREFIX: &str = "AmazonSSM";

/// `DescribeParameters`' and `GetParametersByPath`' default page.
const DEFAULT_PAGE: i32 = 10;
/// `GetParameterHistory`'s default page.
const HISTORY_PAGE: i32 = 50;

validate_with_model!(
    w::PutParameterRequest,
    w::GetParameterRequest,
    w::GetParametersRequest,
    w::GetParametersByPathRequest,
    w::DescribeParametersRequest,
    w::GetParameterHistoryRequest,
    w::DeleteParameterRequest,
    w::DeleteParametersRequest,
    w::LabelParameterVersionRequest,
    w::UnlabelParameterVersionRequest,
    w::AddTagsToResourceRequest,
    w::RemoveTagsFromResourceRequest,
    w::ListTagsForResourceRequest,
);

#[derive(serde::Serialize)]
struct Empty {}

/// SSM's codes for the control plane's errors.
fn error(e: Error) -> ApiError {
    match e {
        Error::Internal(_) => {
            let mut a = ApiError::from(e);
            a.code = "InternalServerError";
            a
        }
        Error::Invalid(i) => ApiError::bad_request("ValidationException", i.to_string()),
        e => e.into(),
    }
}

/// Decodes an SSM input shape; what breaks the model is a `ValidationException`. A
/// `Value` of the wrong JSON type is refused without quoting it (it may be a secret, and
/// refusals are logged).
fn input<T: serde::de::DeserializeOwned + Validate>(body: &[u8]) -> Result<T, ApiError> {
    input_worded(body, EnumWording::ModelValidation).map_err(|mut e| {
        if e.code == "SerializationException" && e.message.starts_with("Invalid value at 'Value'") {
            e.message = "Invalid value at 'Value': expected a string".into();
        }
        e
    })
}

fn ty(t: ParameterType) -> w::ParameterType {
    match t {
        ParameterType::String => w::ParameterType::String,
        ParameterType::StringList => w::ParameterType::StringList,
        ParameterType::SecureString => w::ParameterType::SecureString,
    }
}

fn tier(t: Tier) -> w::ParameterTier {
    match t {
        Tier::Standard => w::ParameterTier::Standard,
        Tier::Advanced => w::ParameterTier::Advanced,
    }
}

fn time(ms: i64) -> Timestamp {
    Timestamp::from_epoch_seconds(ms as f64 / 1000.0)
}

fn parameter(caller: &Caller, f: Found) -> w::Parameter {
    let v = &f.version;
    w::Parameter {
        name: Some(v.name.to_string()),
        type_: Some(ty(v.ty)),
        value: Some(f.value),
        version: Some(v.version as i64),
        selector: f.selector,
        last_modified_date: Some(time(v.last_modified)),
        arn: Some(v.name.arn(&caller.scope)),
        data_type: Some(v.data_type.clone()),
        ..Default::default()
    }
}

fn policies(v: &ParameterVersion) -> Vec<w::ParameterInlinePolicy> {
    v.policies
        .iter()
        .map(|p| w::ParameterInlinePolicy {
            policy_text: Some(p.text.clone()),
            policy_type: Some(p.kind.clone()),
            policy_status: Some("Pending".into()),
        })
        .collect()
}

fn metadata(caller: &Caller, v: &ParameterVersion) -> w::ParameterMetadata {
    w::ParameterMetadata {
        name: Some(v.name.to_string()),
        arn: Some(v.name.arn(&caller.scope)),
        type_: Some(ty(v.ty)),
        key_id: v.key_id.clone(),
        last_modified_date: Some(time(v.last_modified)),
        last_modified_user: Some(v.last_modified_user.clone()),
        description: v.description.clone(),
        allowed_pattern: v.allowed_pattern.clone(),
        version: Some(v.version as i64),
        tier: Some(tier(v.tier)),
        policies: Some(policies(v)),
        data_type: Some(v.data_type.clone()),
    }
}

fn history(f: Found) -> w::ParameterHistory {
    let v = &f.version;
    w::ParameterHistory {
        name: Some(v.name.to_string()),
        type_: Some(ty(v.ty)),
        key_id: v.key_id.clone(),
        last_modified_date: Some(time(v.last_modified)),
        last_modified_user: Some(v.last_modified_user.clone()),
        description: v.description.clone(),
        value: Some(f.value.clone()),
        allowed_pattern: v.allowed_pattern.clone(),
        version: Some(v.version as i64),
        labels: Some(v.labels.clone()),
        tier: Some(tier(v.tier)),
        policies: Some(policies(v)),
        data_type: Some(v.data_type.clone()),
    }
}

/// `ParameterFilters` for `usage`; a key given twice is refused, as SSM refuses it.
fn filters(given: Option<Vec<w::ParameterStringFilter>>, usage: FilterUse) -> Result<Vec<Filter>, ApiError> {
    let mut out = Vec::new();
    let mut keys = std::collections::BTreeSet::new();
    for f in given.unwrap_or_default() {
        let key = f.key.unwrap_or_default();
        if !keys.insert(key.clone()) {
            return Err(ApiError::bad_request(
                "ValidationException",
                format!("The following filter is duplicated in the request: {key}. A request can contain only one occurrence of a specific filter."),
            ));
        }
        out.push(Filter::parse(&key, f.option.as_deref(), f.values.unwrap_or_default(), usage).map_err(ssm_error)?);
    }
    Ok(out)
}

/// The legacy `Filters` of `DescribeParameters` (`Name` matches the start of a name).
fn legacy_filters(given: Vec<w::ParametersFilter>) -> Result<Vec<Filter>, ApiError> {
    given
        .into_iter()
        .map(|f| {
            let key = f.key.map_or("", |k| k.as_str());
            let option = (key == "Name").then_some("BeginsWith");
            Filter::parse(key, option, f.values.unwrap_or_default(), FilterUse::Describe).map_err(ssm_error)
        })
        .collect()
}

fn ssm_error(e: SsmError) -> ApiError {
    ApiError::bad_request(e.code, e.message)
}

fn tags(given: Option<Vec<w::Tag>>) -> Vec<(String, String)> {
    given.unwrap_or_default().into_iter().map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default())).collect()
}

/// Tags are kept on parameters only.
fn parameter_resource(t: Option<w::ResourceTypeForTagging>) -> Result<(), ApiError> {
    match t {
        Some(w::ResourceTypeForTagging::Parameter) => Ok(()),
        other => Err(ApiError::bad_request(
            "InvalidResourceType",
            format!(
                "Berth's SSM keeps tags on parameters only, not on resources of type {}.",
                other.map_or("(none)", |t| t.as_str())
            ),
        )),
    }
}

pub async fn dispatch(api: &Api, caller: &Caller, operation: &str, body: &[u8]) -> Result<Response, ApiError> {
    handle(api, caller, operation, body).await.map_err(|e| match e {
        Failure::Api(a) => a,
        Failure::Control(e) => error(e),
    })
}

/// An error before or after the control plane: the control plane's get SSM's codes.
enum Failure {
    Api(ApiError),
    Control(Error),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}
impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Control(e)
    }
}
impl From<SsmError> for Failure {
    fn from(e: SsmError) -> Self {
        Failure::Api(ssm_error(e))
    }
}

async fn handle(api: &Api, caller: &Caller, operation: &str, body: &[u8]) -> Result<Response, Failure> {
    let ssm = api.control.ssm();
    let scope = &caller.scope;
    match operation {
        "PutParameter" => {
            let r: w::PutParameterRequest = input(body)?;
            let req = PutRequest {
                name: r.name.unwrap_or_default(),
                value: r.value.unwrap_or_default(),
                ty: r.type_.map(|t| match t {
                    w::ParameterType::String => ParameterType::String,
                    w::ParameterType::StringList => ParameterType::StringList,
                    w::ParameterType::SecureString => ParameterType::SecureString,
                }),
                description: r.description,
                key_id: r.key_id,
                overwrite: r.overwrite.unwrap_or(false),
                allowed_pattern: r.allowed_pattern,
                tags: tags(r.tags),
                tier: r.tier.map(|t| match t {
                    w::ParameterTier::Standard => TierChoice::Standard,
                    w::ParameterTier::Advanced => TierChoice::Advanced,
                    w::ParameterTier::IntelligentTiering => TierChoice::IntelligentTiering,
                }),
                policies: r.policies,
                data_type: r.data_type,
            };
            let (version, t) = ssm.put(caller, req).await?;
            Ok(ok(&w::PutParameterResult { version: Some(version as i64), tier: Some(tier(t)) }))
        }
        "GetParameter" => {
            let r: w::GetParameterRequest = input(body)?;
            let f = ssm.get(scope, &r.name.unwrap_or_default(), r.with_decryption.unwrap_or(false))?;
            Ok(ok(&w::GetParameterResult { parameter: Some(parameter(caller, f)) }))
        }
        "GetParameters" => {
            let r: w::GetParametersRequest = input(body)?;
            let (found, invalid) =
                ssm.get_many(scope, &r.names.unwrap_or_default(), r.with_decryption.unwrap_or(false))?;
            Ok(ok(&w::GetParametersResult {
                parameters: Some(found.into_iter().map(|f| parameter(caller, f)).collect()),
                invalid_parameters: Some(invalid),
            }))
        }
        "GetParametersByPath" => {
            let r: w::GetParametersByPathRequest = input(body)?;
            let fs = filters(r.parameter_filters, FilterUse::ByPath)?;
            let p = page(r.max_results, r.next_token.as_deref(), DEFAULT_PAGE)?;
            let (found, next_token) = ssm.by_path(
                scope,
                &r.path.unwrap_or_default(),
                r.recursive.unwrap_or(false),
                &fs,
                r.with_decryption.unwrap_or(false),
                &p,
            )?;
            Ok(ok(&w::GetParametersByPathResult {
                parameters: Some(found.into_iter().map(|f| parameter(caller, f)).collect()),
                next_token,
            }))
        }
        "DescribeParameters" => {
            let r: w::DescribeParametersRequest = input(body)?;
            let fs = match (r.filters, r.parameter_filters) {
                (Some(_), Some(_)) => {
                    return Err(ApiError::bad_request(
                        "ValidationException",
                        "You can use either Filters or ParameterFilters in a single request.",
                    )
                    .into())
                }
                (Some(legacy), None) => legacy_filters(legacy)?,
                (None, given) => filters(given, FilterUse::Describe)?,
            };
            let p = page(r.max_results, r.next_token.as_deref(), DEFAULT_PAGE)?;
            let (versions, next_token) = ssm.describe(scope, &fs, &p)?;
            Ok(ok(&w::DescribeParametersResult {
                parameters: Some(versions.iter().map(|v| metadata(caller, v)).collect()),
                next_token,
            }))
        }
        "GetParameterHistory" => {
            let r: w::GetParameterHistoryRequest = input(body)?;
            let p = page(r.max_results, r.next_token.as_deref(), HISTORY_PAGE)?;
            let (found, next_token) =
                ssm.history(scope, &r.name.unwrap_or_default(), r.with_decryption.unwrap_or(false), &p)?;
            Ok(ok(&w::GetParameterHistoryResult {
                parameters: Some(found.into_iter().map(history).collect()),
                next_token,
            }))
        }
        "DeleteParameter" => {
            let r: w::DeleteParameterRequest = input(body)?;
            ssm.delete(scope, &r.name.unwrap_or_default()).await?;
            Ok(ok(&Empty {}))
        }
        "DeleteParameters" => {
            let r: w::DeleteParametersRequest = input(body)?;
            let (deleted, invalid) = ssm.delete_many(scope, r.names.unwrap_or_default()).await?;
            Ok(ok(&w::DeleteParametersResult { deleted_parameters: Some(deleted), invalid_parameters: Some(invalid) }))
        }
        "LabelParameterVersion" => {
            let r: w::LabelParameterVersionRequest = input(body)?;
            let version = r.parameter_version.map(|v| u64::try_from(v).unwrap_or(u64::MAX));
            let (v, invalid) =
                ssm.label(scope, &r.name.unwrap_or_default(), version, r.labels.unwrap_or_default()).await?;
            Ok(ok(&w::LabelParameterVersionResult { invalid_labels: Some(invalid), parameter_version: Some(v as i64) }))
        }
        "UnlabelParameterVersion" => {
            let r: w::UnlabelParameterVersionRequest = input(body)?;
            let version = r.parameter_version.map_or(0, |v| u64::try_from(v).unwrap_or(u64::MAX));
            let (removed, invalid) =
                ssm.unlabel(scope, &r.name.unwrap_or_default(), version, r.labels.unwrap_or_default()).await?;
            Ok(ok(&w::UnlabelParameterVersionResult { removed_labels: Some(removed), invalid_labels: Some(invalid) }))
        }
        "AddTagsToResource" => {
            let r: w::AddTagsToResourceRequest = input(body)?;
            parameter_resource(r.resource_type)?;
            ssm.add_tags(scope, &r.resource_id.unwrap_or_default(), tags(r.tags)).await?;
            Ok(ok(&Empty {}))
        }
        "RemoveTagsFromResource" => {
            let r: w::RemoveTagsFromResourceRequest = input(body)?;
            parameter_resource(r.resource_type)?;
            ssm.remove_tags(scope, &r.resource_id.unwrap_or_default(), r.tag_keys.unwrap_or_default()).await?;
            Ok(ok(&Empty {}))
        }
        "ListTagsForResource" => {
            let r: w::ListTagsForResourceRequest = input(body)?;
            parameter_resource(r.resource_type)?;
            let list = ssm.tags(scope, &r.resource_id.unwrap_or_default())?;
            Ok(ok(&w::ListTagsForResourceResult {
                tag_list: Some(list.into_iter().map(|(k, v)| w::Tag { key: Some(k), value: Some(v) }).collect()),
            }))
        }
        op if w::OPERATIONS.contains(&op) => Err(ApiError::bad_request(
            "UnsupportedFeatureException",
            format!("Berth implements SSM's Parameter Store only; {op} is not implemented."),
        )
        .into()),
        op => Err(ApiError::bad_request("InvalidAction", format!("SSM has no operation named '{op}'.")).into()),
    }
}
