//! The CloudWatch Logs API (`Logs_20140328.*`, JSON 1.1, SigV4 service `logs`): decode,
//! validate, call `cp.logs()`, and render its results as Logs' wire shapes.

use std::collections::BTreeMap;

use axum::response::Response;

use control_plane::logs::{EventsRequest, FilterRequest, GroupView, StreamOrder, StreamView};
use control_plane::{Caller, Page};
use model::logs::shapes as w;
use model::logs::{LogGroupName, LogStreamName, RetentionDays};

use crate::ecs::{input_worded, validate_with_model, EnumWording, Validate};
use crate::{ok, Api, ApiError};

pub const TARGET_PREFIX: &str = "Logs_20140328";

/// `DescribeLogGroups`' and `DescribeLogStreams`' default and largest page.
const PAGE_LIMIT: i32 = 50;

validate_with_model!(
    w::CreateLogGroupRequest,
    w::DeleteLogGroupRequest,
    w::DescribeLogGroupsRequest,
    w::CreateLogStreamRequest,
    w::DeleteLogStreamRequest,
    w::DescribeLogStreamsRequest,
    w::PutLogEventsRequest,
    w::GetLogEventsRequest,
    w::FilterLogEventsRequest,
    w::PutRetentionPolicyRequest,
    w::DeleteRetentionPolicyRequest,
    w::TagResourceRequest,
    w::UntagResourceRequest,
    w::ListTagsForResourceRequest,
    w::TagLogGroupRequest,
    w::UntagLogGroupRequest,
    w::ListTagsLogGroupRequest,
);

/// An empty `{}` answer.
#[derive(serde::Serialize)]
struct Empty {}

/// Decodes a CloudWatch Logs input shape; a wrong enum value is an
/// `InvalidParameterException`.
fn input<T: serde::de::DeserializeOwned + Validate>(body: &[u8]) -> Result<T, ApiError> {
    input_worded(body, EnumWording::Model)
}

fn group(name: Option<String>) -> Result<LogGroupName, ApiError> {
    Ok(LogGroupName::parse(&name.unwrap_or_default())?)
}

fn stream(name: Option<String>) -> Result<LogStreamName, ApiError> {
    Ok(LogStreamName::parse(&name.unwrap_or_default())?)
}

/// A group named by `logGroupName` or `logGroupIdentifier` (a name or an ARN); exactly
/// one of them.
fn group_or_identifier(
    caller: &Caller,
    name: Option<String>,
    identifier: Option<String>,
) -> Result<LogGroupName, ApiError> {
    match (name, identifier) {
        (Some(n), None) => group(Some(n)),
        (None, Some(id)) if id.starts_with("arn:") => LogGroupName::from_arn(&id, &caller.scope)?.ok_or_else(|| {
            ApiError::bad_request("ResourceNotFoundException", "The specified log group does not exist.")
        }),
        (None, Some(id)) => group(Some(id)),
        (Some(_), Some(_)) => {
            Err(ApiError::invalid_parameter("LogGroupName and LogGroupIdentifier are mutually exclusive parameters."))
        }
        (None, None) => Err(ApiError::invalid_parameter("Either LogGroupName or LogGroupIdentifier is required.")),
    }
}

/// The group a tagging ARN names, in the caller's account and region.
fn group_of_arn(caller: &Caller, arn: Option<String>) -> Result<LogGroupName, ApiError> {
    LogGroupName::from_arn(&arn.unwrap_or_default(), &caller.scope)?
        .ok_or_else(|| ApiError::bad_request("ResourceNotFoundException", "The specified resource does not exist."))
}

fn group_shape(caller: &Caller, v: GroupView) -> w::LogGroup {
    let g = &v.group;
    w::LogGroup {
        log_group_name: Some(g.name.to_string()),
        creation_time: Some(g.creation_time),
        retention_in_days: g.retention.map(RetentionDays::days),
        metric_filter_count: Some(0),
        arn: Some(g.name.arn_star(&caller.scope)),
        stored_bytes: Some(v.stored_bytes as i64),
        log_group_class: Some(w::LogGroupClass::Standard),
        log_group_arn: Some(g.name.arn(&caller.scope)),
        deletion_protection_enabled: Some(false),
        ..Default::default()
    }
}

fn stream_shape(caller: &Caller, v: StreamView) -> w::LogStream {
    let s = &v.stream;
    w::LogStream {
        log_stream_name: Some(s.name.to_string()),
        creation_time: Some(s.creation_time),
        first_event_timestamp: v.stats.first_timestamp,
        last_event_timestamp: v.stats.last_timestamp,
        last_ingestion_time: v.stats.last_ingestion_time,
        arn: Some(s.name.arn(&caller.scope, &s.group)),
        // AWS has reported zero for streams since 2019; groups carry the real figure.
        stored_bytes: Some(0),
        ..Default::default()
    }
}

pub async fn dispatch(api: &Api, caller: &Caller, operation: &str, body: &[u8]) -> Result<Response, ApiError> {
    let logs = api.control.logs();
    let scope = &caller.scope;
    match operation {
        "CreateLogGroup" => {
            let r: w::CreateLogGroupRequest = input(body)?;
            if r.kms_key_id.is_some() {
                return Err(ApiError::bad_request(
                    "UnsupportedFeatureException",
                    "Berth does not encrypt log groups with KMS keys; leave kmsKeyId out.",
                ));
            }
            logs.create_group(scope, group(r.log_group_name)?, r.tags.unwrap_or_default()).await?;
            Ok(ok(&Empty {}))
        }
        "DeleteLogGroup" => {
            let r: w::DeleteLogGroupRequest = input(body)?;
            logs.delete_group(scope, group(r.log_group_name)?).await?;
            Ok(ok(&Empty {}))
        }
        "DescribeLogGroups" => {
            let r: w::DescribeLogGroupsRequest = input(body)?;
            let page = Page::parse(r.limit, r.next_token.as_deref(), PAGE_LIMIT)?;
            let (groups, next_token) = logs
                .groups(scope, r.log_group_name_prefix.as_deref(), r.log_group_name_pattern.as_deref(), &page)
                .await?;
            Ok(ok(&w::DescribeLogGroupsResponse {
                log_groups: Some(groups.into_iter().map(|g| group_shape(caller, g)).collect()),
                next_token,
            }))
        }
        "CreateLogStream" => {
            let r: w::CreateLogStreamRequest = input(body)?;
            logs.create_stream(scope, group(r.log_group_name)?, stream(r.log_stream_name)?).await?;
            Ok(ok(&Empty {}))
        }
        "DeleteLogStream" => {
            let r: w::DeleteLogStreamRequest = input(body)?;
            logs.delete_stream(scope, group(r.log_group_name)?, stream(r.log_stream_name)?).await?;
            Ok(ok(&Empty {}))
        }
        "DescribeLogStreams" => {
            let r: w::DescribeLogStreamsRequest = input(body)?;
            let g = group_or_identifier(caller, r.log_group_name, r.log_group_identifier)?;
            let page = Page::parse(r.limit, r.next_token.as_deref(), PAGE_LIMIT)?;
            let order = match r.order_by {
                Some(w::OrderBy::LastEventTime) => StreamOrder::LastEventTime,
                _ => StreamOrder::Name,
            };
            let (streams, next_token) = logs
                .streams(scope, &g, r.log_stream_name_prefix.as_deref(), order, r.descending.unwrap_or(false), &page)
                .await?;
            Ok(ok(&w::DescribeLogStreamsResponse {
                log_streams: Some(streams.into_iter().map(|s| stream_shape(caller, s)).collect()),
                next_token,
            }))
        }
        "PutLogEvents" => {
            let r: w::PutLogEventsRequest = input(body)?;
            let (g, s) = (group(r.log_group_name)?, stream(r.log_stream_name)?);
            let events = r
                .log_events
                .unwrap_or_default()
                .into_iter()
                .map(|e| (e.timestamp.unwrap_or_default(), e.message.unwrap_or_default()))
                .collect();
            let v = logs.put_events(scope, &g, &s, events).await?;
            let rejected =
                (v.too_new_start.is_some() || v.too_old_end.is_some() || v.expired_end.is_some()).then(|| {
                    w::RejectedLogEventsInfo {
                        too_new_log_event_start_index: v.too_new_start.map(|i| i as i32),
                        too_old_log_event_end_index: v.too_old_end.map(|i| i as i32),
                        expired_log_event_end_index: v.expired_end.map(|i| i as i32),
                    }
                });
            // Sequence tokens are ignored (as AWS now does), so none is handed out.
            Ok(ok(&w::PutLogEventsResponse { rejected_log_events_info: rejected, ..Default::default() }))
        }
        "GetLogEvents" => {
            let r: w::GetLogEventsRequest = input(body)?;
            let g = group_or_identifier(caller, r.log_group_name, r.log_group_identifier)?;
            let s = stream(r.log_stream_name)?;
            let req = EventsRequest {
                start: r.start_time,
                end: r.end_time,
                token: r.next_token,
                start_from_head: r.start_from_head.unwrap_or(false),
                limit: r.limit,
            };
            let page = logs.get_events(scope, &g, &s, req).await?;
            Ok(ok(&w::GetLogEventsResponse {
                events: Some(
                    page.events
                        .into_iter()
                        .map(|e| w::OutputLogEvent {
                            timestamp: Some(e.timestamp),
                            message: Some(e.message),
                            ingestion_time: Some(e.ingestion_time),
                        })
                        .collect(),
                ),
                next_forward_token: Some(page.next_forward),
                next_backward_token: Some(page.next_backward),
            }))
        }
        "FilterLogEvents" => {
            let r: w::FilterLogEventsRequest = input(body)?;
            let g = group_or_identifier(caller, r.log_group_name, r.log_group_identifier)?;
            let streams = r
                .log_stream_names
                .map(|names| names.iter().map(|n| LogStreamName::parse(n)).collect::<Result<Vec<_>, _>>())
                .transpose()?;
            let req = FilterRequest {
                streams,
                prefix: r.log_stream_name_prefix,
                start: r.start_time,
                end: r.end_time,
                pattern: r.filter_pattern,
                token: r.next_token,
                limit: r.limit,
            };
            let page = logs.filter_events(scope, &g, req).await?;
            Ok(ok(&w::FilterLogEventsResponse {
                events: Some(
                    page.events
                        .into_iter()
                        .map(|f| w::FilteredLogEvent {
                            log_stream_name: Some(f.stream.to_string()),
                            timestamp: Some(f.event.timestamp),
                            message: Some(f.event.message),
                            ingestion_time: Some(f.event.ingestion_time),
                            event_id: Some(f.event_id),
                        })
                        .collect(),
                ),
                next_token: page.next_token,
                ..Default::default()
            }))
        }
        "PutRetentionPolicy" => {
            let r: w::PutRetentionPolicyRequest = input(body)?;
            let days = RetentionDays::parse(r.retention_in_days.unwrap_or_default())?;
            logs.put_retention(scope, group(r.log_group_name)?, Some(days)).await?;
            Ok(ok(&Empty {}))
        }
        "DeleteRetentionPolicy" => {
            let r: w::DeleteRetentionPolicyRequest = input(body)?;
            logs.put_retention(scope, group(r.log_group_name)?, None).await?;
            Ok(ok(&Empty {}))
        }
        "TagResource" => {
            let r: w::TagResourceRequest = input(body)?;
            logs.tag_group(scope, group_of_arn(caller, r.resource_arn)?, r.tags.unwrap_or_default()).await?;
            Ok(ok(&Empty {}))
        }
        "UntagResource" => {
            let r: w::UntagResourceRequest = input(body)?;
            logs.untag_group(scope, group_of_arn(caller, r.resource_arn)?, r.tag_keys.unwrap_or_default()).await?;
            Ok(ok(&Empty {}))
        }
        "ListTagsForResource" => {
            let r: w::ListTagsForResourceRequest = input(body)?;
            let g = logs.group(scope, &group_of_arn(caller, r.resource_arn)?)?;
            Ok(ok(&w::ListTagsForResourceResponse { tags: Some(g.tags.clone()) }))
        }
        "TagLogGroup" => {
            let r: w::TagLogGroupRequest = input(body)?;
            logs.tag_group(scope, group(r.log_group_name)?, r.tags.unwrap_or_default()).await?;
            Ok(ok(&Empty {}))
        }
        "UntagLogGroup" => {
            let r: w::UntagLogGroupRequest = input(body)?;
            logs.untag_group(scope, group(r.log_group_name)?, r.tags.unwrap_or_default()).await?;
            Ok(ok(&Empty {}))
        }
        "ListTagsLogGroup" => {
            let r: w::ListTagsLogGroupRequest = input(body)?;
            let g = logs.group(scope, &group(r.log_group_name)?)?;
            let tags: BTreeMap<String, String> = g.tags.clone();
            Ok(ok(&w::ListTagsLogGroupResponse { tags: Some(tags) }))
        }
        op if w::OPERATIONS.contains(&op) => Err(ApiError::bad_request(
            "UnsupportedFeatureException",
            format!("Berth does not implement the CloudWatch Logs operation {op} yet."),
        )),
        op => Err(ApiError::bad_request(
            "UnknownOperationException",
            format!("CloudWatch Logs has no operation named '{op}'."),
        )),
    }
}
