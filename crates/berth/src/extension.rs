//! Calls of Berth's own extension operations (`berth ecr run-lifecycle`, `berth fargate
//! interrupt`): a JSON 1.1 request to the running server with an `X-Amz-Target` of the
//! service's prefix, SigV4-signed with an access key of the data dir like any `aws` call.

use std::time::SystemTime;

use anyhow::{bail, Context};

use crate::datadir::DataDir;

/// One extension call: where, as whom, and what.
pub struct Call<'a> {
    pub data_dir: &'a std::path::Path,
    pub account: Option<&'a str>,
    pub region: &'a str,
    /// The SigV4 service name (`ecr`, `ecs`).
    pub service: &'a str,
    /// The whole `X-Amz-Target`, e.g. `AmazonEC2ContainerServiceV20141113.BerthInterruptSpotTask`.
    pub target: String,
    pub body: Vec<u8>,
}

/// Sends the call and returns the answer's body; an AWS error answer becomes an error
/// that reads `Code: message`.
pub async fn send(call: Call<'_>) -> anyhow::Result<Vec<u8>> {
    model::Region::parse(call.region)?;
    let dir = DataDir::open_existing(call.data_dir)?;
    let endpoint = dir.endpoint().context("Berth has not been started with this data dir yet: run `berth up` first")?;
    let key = crate::cli::account_key(&dir, call.account)?;
    let url = format!("{}/", endpoint.trim_end_matches('/'));
    let headers = sign(&url, &call, &key)?;
    let mut request = reqwest::Client::new().post(&url).body(call.body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response =
        request.send().await.with_context(|| format!("sending the request to {endpoint}; is berth running?"))?;
    let status = response.status();
    let bytes = response.bytes().await.context("reading the answer")?;
    if !status.is_success() {
        let error: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        match (error["__type"].as_str(), error["message"].as_str()) {
            (Some(code), Some(message)) => bail!("{code}: {message}"),
            _ => bail!("the server answered {status}: {}", String::from_utf8_lossy(&bytes)),
        }
    }
    Ok(bytes.to_vec())
}

/// The headers of a SigV4-signed `POST` of a JSON 1.1 request.
fn sign(url: &str, call: &Call<'_>, key: &control_plane::auth::AccessKey) -> anyhow::Result<Vec<(String, String)>> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(&key.id, &key.secret, None, None, "berth-cli").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(call.region)
        .name(call.service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()?
        .into();
    let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", call.target.as_str())];
    let request = SignableRequest::new("POST", url, headers.iter().copied(), SignableBody::Bytes(&call.body))?;
    let (instructions, _) = sign(request, &params)?.into_parts();
    let (signed, _) = instructions.into_parts();
    let mut all: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    all.extend(signed.into_iter().map(|h| (h.name().to_string(), h.value().to_string())));
    Ok(all)
}
