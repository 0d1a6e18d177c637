//! Amazon EventBridge (`AWSEvents.*`, JSON 1.1, SigV4 service `events`): decode, call
//! `cp.events()`, and render its results as EventBridge's wire shapes. What breaks the
//! model's rules is a `ValidationException`; an internal fault is `InternalException`.

use axum::response::Response;

use control_plane::events::{page, FailedEntry, PutRule};
use control_plane::state::events::{Rule, RuleState};
use control_plane::Caller;
use control_plane::Error;
use model::events::shapes as w;
use model::events::RuleName;

use crate::ecs::{input_worded, validate_with_model, EnumWording, Validate};
use crate::{ok, Api, ApiError};

pub const TARGET_PREFIX: &str = "AWSEvents";

validate_with_model!(
    w::PutRuleRequest,
    w::DescribeRuleRequest,
    w::ListRulesRequest,
    w::EnableRuleRequest,
    w::DisableRuleRequest,
    w::DeleteRuleRequest,
    w::PutTargetsRequest,
    w::ListTargetsByRuleRequest,
    w::RemoveTargetsRequest,
    w::ListRuleNamesByTargetRequest,
    w::TagResourceRequest,
    w::UntagResourceRequest,
    w::ListTagsForResourceRequest,
);

#[derive(serde::Serialize)]
struct Empty {}

/// EventBridge's codes for the control plane's errors.
fn error(e: Error) -> ApiError {
    match e {
        Error::Internal(_) => {
            let mut a = ApiError::from(e);
            a.code = "InternalException";
            a
        }
        Error::Invalid(i) => ApiError::bad_request("ValidationException", i.to_string()),
        e => e.into(),
    }
}

fn input<T: serde::de::DeserializeOwned + Validate>(body: &[u8]) -> Result<T, ApiError> {
    input_worded(body, EnumWording::ModelValidation)
}

fn name(n: Option<String>) -> Result<RuleName, ApiError> {
    RuleName::parse(&n.unwrap_or_default()).map_err(|e| error(e.into()))
}

fn state_in(s: w::RuleState) -> RuleState {
    match s {
        w::RuleState::Enabled => RuleState::Enabled,
        w::RuleState::Disabled => RuleState::Disabled,
        w::RuleState::EnabledWithAllCloudtrailManagementEvents => RuleState::EnabledWithAllCloudtrailManagementEvents,
    }
}

fn state_out(s: RuleState) -> w::RuleState {
    match s {
        RuleState::Enabled => w::RuleState::Enabled,
        RuleState::Disabled => w::RuleState::Disabled,
        RuleState::EnabledWithAllCloudtrailManagementEvents => w::RuleState::EnabledWithAllCloudtrailManagementEvents,
    }
}

fn tags_in(tags: Option<Vec<w::Tag>>) -> Vec<(String, String)> {
    tags.unwrap_or_default().into_iter().map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default())).collect()
}

fn rule_out(r: &Rule) -> w::Rule {
    w::Rule {
        name: Some(r.name.to_string()),
        arn: Some(r.arn()),
        event_pattern: r.event_pattern.clone(),
        state: Some(state_out(r.state)),
        description: r.description.clone(),
        schedule_expression: r.schedule_expression.clone(),
        role_arn: r.role_arn.clone(),
        managed_by: None,
        event_bus_name: Some(model::events::DEFAULT_BUS.into()),
    }
}

fn failed(entries: Vec<FailedEntry>) -> (i32, Vec<(String, String, String)>) {
    let n = entries.len() as i32;
    (n, entries.into_iter().map(|f| (f.target_id, f.code.to_string(), f.message)).collect())
}

pub async fn dispatch(api: &Api, caller: &Caller, operation: &str, body: &[u8]) -> Result<Response, ApiError> {
    let ev = api.control.events();
    let scope = &caller.scope;
    match operation {
        "PutRule" => {
            let r: w::PutRuleRequest = input(body)?;
            let req = PutRule {
                name: name(r.name)?,
                schedule_expression: r.schedule_expression,
                event_pattern: r.event_pattern,
                state: r.state.map(state_in),
                description: r.description,
                role_arn: r.role_arn,
                tags: tags_in(r.tags),
            };
            let arn = ev.put_rule(scope, r.event_bus_name.as_deref(), req).await.map_err(error)?;
            Ok(ok(&w::PutRuleResponse { rule_arn: Some(arn) }))
        }
        "DescribeRule" => {
            let r: w::DescribeRuleRequest = input(body)?;
            let rule = ev.describe_rule(scope, r.event_bus_name.as_deref(), &name(r.name)?).map_err(error)?;
            let out = rule_out(&rule);
            Ok(ok(&w::DescribeRuleResponse {
                name: out.name,
                arn: out.arn,
                event_pattern: out.event_pattern,
                schedule_expression: out.schedule_expression,
                state: out.state,
                description: out.description,
                role_arn: out.role_arn,
                managed_by: None,
                event_bus_name: out.event_bus_name,
                created_by: Some(rule.scope.account.to_string()),
            }))
        }
        "ListRules" => {
            let r: w::ListRulesRequest = input(body)?;
            let page = page(r.limit, r.next_token.as_deref()).map_err(error)?;
            let (rules, next_token) =
                ev.list_rules(scope, r.event_bus_name.as_deref(), r.name_prefix.as_deref(), &page).map_err(error)?;
            Ok(ok(&w::ListRulesResponse { rules: Some(rules.iter().map(|r| rule_out(r)).collect()), next_token }))
        }
        "EnableRule" | "DisableRule" => {
            let (n, bus) = if operation == "EnableRule" {
                let r: w::EnableRuleRequest = input(body)?;
                (r.name, r.event_bus_name)
            } else {
                let r: w::DisableRuleRequest = input(body)?;
                (r.name, r.event_bus_name)
            };
            ev.set_state(scope, bus.as_deref(), name(n)?, operation == "EnableRule").await.map_err(error)?;
            Ok(ok(&Empty {}))
        }
        "DeleteRule" => {
            let r: w::DeleteRuleRequest = input(body)?;
            let force = r.force.unwrap_or(false);
            ev.delete_rule(scope, r.event_bus_name.as_deref(), name(r.name)?, force).await.map_err(error)?;
            Ok(ok(&Empty {}))
        }
        "PutTargets" => {
            let r: w::PutTargetsRequest = input(body)?;
            let targets = r.targets.unwrap_or_default();
            let out =
                ev.put_targets(scope, r.event_bus_name.as_deref(), name(r.rule)?, targets).await.map_err(error)?;
            let (count, entries) = failed(out);
            Ok(ok(&w::PutTargetsResponse {
                failed_entry_count: Some(count),
                failed_entries: Some(
                    entries
                        .into_iter()
                        .map(|(id, code, message)| w::PutTargetsResultEntry {
                            target_id: Some(id),
                            error_code: Some(code),
                            error_message: Some(message),
                        })
                        .collect(),
                ),
            }))
        }
        "ListTargetsByRule" => {
            let r: w::ListTargetsByRuleRequest = input(body)?;
            let page = page(r.limit, r.next_token.as_deref()).map_err(error)?;
            let (targets, next_token) =
                ev.list_targets(scope, r.event_bus_name.as_deref(), &name(r.rule)?, &page).map_err(error)?;
            Ok(ok(&w::ListTargetsByRuleResponse { targets: Some(targets), next_token }))
        }
        "RemoveTargets" => {
            let r: w::RemoveTargetsRequest = input(body)?;
            let ids = r.ids.unwrap_or_default();
            let out = ev.remove_targets(scope, r.event_bus_name.as_deref(), name(r.rule)?, ids).await.map_err(error)?;
            let (count, entries) = failed(out);
            Ok(ok(&w::RemoveTargetsResponse {
                failed_entry_count: Some(count),
                failed_entries: Some(
                    entries
                        .into_iter()
                        .map(|(id, code, message)| w::RemoveTargetsResultEntry {
                            target_id: Some(id),
                            error_code: Some(code),
                            error_message: Some(message),
                        })
                        .collect(),
                ),
            }))
        }
        "ListRuleNamesByTarget" => {
            let r: w::ListRuleNamesByTargetRequest = input(body)?;
            let page = page(r.limit, r.next_token.as_deref()).map_err(error)?;
            let arn = r.target_arn.unwrap_or_default();
            let (names, next_token) =
                ev.rule_names_by_target(scope, r.event_bus_name.as_deref(), &arn, &page).map_err(error)?;
            Ok(ok(&w::ListRuleNamesByTargetResponse { rule_names: Some(names), next_token }))
        }
        "TagResource" => {
            let r: w::TagResourceRequest = input(body)?;
            ev.tag(scope, r.resource_arn.unwrap_or_default(), tags_in(r.tags)).await.map_err(error)?;
            Ok(ok(&Empty {}))
        }
        "UntagResource" => {
            let r: w::UntagResourceRequest = input(body)?;
            ev.untag(scope, r.resource_arn.unwrap_or_default(), r.tag_keys.unwrap_or_default()).await.map_err(error)?;
            Ok(ok(&Empty {}))
        }
        "ListTagsForResource" => {
            let r: w::ListTagsForResourceRequest = input(body)?;
            let tags = ev.tags_of(scope, &r.resource_arn.unwrap_or_default()).map_err(error)?;
            Ok(ok(&w::ListTagsForResourceResponse {
                tags: Some(tags.into_iter().map(|(k, v)| w::Tag { key: Some(k), value: Some(v) }).collect()),
            }))
        }
        op if w::OPERATIONS.contains(&op) => Err(ApiError::bad_request(
            "UnsupportedFeatureException",
            format!("Berth's EventBridge implements rules and targets for scheduled ECS tasks; {op} is not available."),
        )),
        op => Err(ApiError::bad_request("UnknownOperationException", format!("Unknown operation {op}."))),
    }
}
