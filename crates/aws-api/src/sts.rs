//! STS (query protocol, version 2011-06-15): decodes, calls `cp.sts()`, encodes.

use axum::response::Response;
use control_plane::Caller;

use control_plane::iam::sessions::SessionCredentials;
use control_plane::sts::AssumeRole;
use model::iam::entity::SessionName;

use crate::error::ApiError;
use crate::query::{wrapped_ok, Params, Service, Xml};
use crate::Api;

/// STS actions Berth knows but does not serve yet (they answer UnsupportedFeature).
const KNOWN: &[&str] = &[
    "AssumeRoleWithSAML",
    "AssumeRoleWithWebIdentity",
    "AssumeRoot",
    "DecodeAuthorizationMessage",
    "GetAccessKeyInfo",
    "GetDelegatedAccessToken",
    "GetFederationToken",
    "GetWebIdentityToken",
];

pub(crate) async fn dispatch(
    api: &Api,
    caller: &Caller,
    action: &str,
    params: &Params,
    request_id: &str,
) -> Result<Response, ApiError> {
    match action {
        "GetCallerIdentity" => {
            let id = api.control.sts().caller_identity(caller);
            Ok(wrapped_ok(Service::Sts, action, request_id, |x| {
                x.text("Arn", &id.arn);
                x.text("UserId", &id.user_id);
                x.text("Account", &id.account);
            }))
        }
        "AssumeRole" => {
            let req = AssumeRole {
                role_arn: params.required("RoleArn")?,
                session_name: SessionName::parse(&params.required("RoleSessionName")?)?,
                duration_seconds: params.int("DurationSeconds")?,
                external_id: params.string("ExternalId"),
            };
            let assumed = api.control.sts().assume_role(caller, req)?;
            Ok(wrapped_ok(Service::Sts, action, request_id, |x| {
                write_credentials(x, &assumed.credentials);
                x.elem("AssumedRoleUser", |x| {
                    x.text("AssumedRoleId", &assumed.assumed_role_id);
                    x.text("Arn", &assumed.arn);
                });
            }))
        }
        "GetSessionToken" => {
            let credentials = api.control.sts().session_token(caller, params.int("DurationSeconds")?)?;
            Ok(wrapped_ok(Service::Sts, action, request_id, |x| write_credentials(x, &credentials)))
        }
        a if KNOWN.contains(&a) => Err(ApiError::bad_request(
            "UnsupportedFeatureException",
            format!(
                "Berth's STS does not offer {a} yet; GetCallerIdentity, AssumeRole and GetSessionToken are served."
            ),
        )),
        other => Err(ApiError::bad_request(
            "InvalidAction",
            format!("Could not find operation {other} for version 2011-06-15"),
        )),
    }
}

fn write_credentials(x: &mut Xml, c: &SessionCredentials) {
    x.elem("Credentials", |x| {
        x.text("AccessKeyId", &c.access_key_id);
        x.text("SecretAccessKey", &c.secret);
        x.text("SessionToken", &c.token);
        x.text("Expiration", crate::query::timestamp(model::Timestamp::from_epoch_seconds(c.expires_at as f64)));
    });
}
