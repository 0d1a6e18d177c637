//! Signed calls of the running server from Berth's own commands: its extension operations
//! (`berth ecr run-lifecycle`, `berth fargate interrupt`) and the AWS operations behind
//! commands of the aws CLI (`berth logs tail`). A JSON 1.1 request with an `X-Amz-Target`
//! of the service's prefix, SigV4-signed with an access key of the data dir like any `aws`
//! call.

use std::time::SystemTime;

use anyhow::{bail, Context};

/// One extension call: where, as whom, and what.
pub struct Call<'a> {
    pub data: &'a crate::cli::DataDirArg,
    pub account: Option<&'a str>,
    pub region: &'a str,
    /// The SigV4 service name (`ecr`, `ecs`).
    pub service: &'a str,
    /// The whole `X-Amz-Target`, e.g. `AmazonEC2ContainerServiceV20141113.BerthInterruptSpotTask`.
    pub target: String,
    pub body: Vec<u8>,
}

/// An error answer of the server, which reads `Code: message`; a command that can say
/// what to do about a particular code finds it with `downcast_ref`.
#[derive(Debug)]
pub struct AwsError {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for AwsError {}

/// Sends the call and returns the answer's body; an AWS error answer becomes an
/// [`AwsError`].
pub async fn send(call: Call<'_>) -> anyhow::Result<Vec<u8>> {
    Client::open(call.data, call.account, call.region)?.call(call.service, &call.target, call.body).await
}

/// The running server as one account in one region, looked up once for many calls
/// (`berth logs tail --follow` calls every second): its endpoint, the access key, and one
/// HTTP client whose connection is reused.
pub struct Client {
    endpoint: String,
    region: String,
    key: control_plane::auth::AccessKey,
    http: reqwest::Client,
}

impl Client {
    pub fn open(data: &crate::cli::DataDirArg, account: Option<&str>, region: &str) -> anyhow::Result<Client> {
        model::Region::parse(region)?;
        let dir = data.open()?;
        let endpoint =
            dir.endpoint().context("Berth has not been started with this data dir yet: run `berth up` first")?;
        let key = dir.account_key(account)?;
        Ok(Client { endpoint, region: region.to_string(), key, http: reqwest::Client::new() })
    }

    /// Sends one JSON 1.1 request: `service` is the SigV4 service name (`ecr`, `ecs`,
    /// `logs`), `target` the whole `X-Amz-Target`.
    pub async fn call(&self, service: &str, target: &str, body: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}/", self.endpoint.trim_end_matches('/'));
        let headers = sign(&url, &self.region, service, target, &body, &self.key)?;
        let mut request = self.http.post(&url).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let endpoint = &self.endpoint;
        let response =
            request.send().await.with_context(|| format!("sending the request to {endpoint}; is berth running?"))?;
        let status = response.status();
        let bytes = response.bytes().await.context("reading the answer")?;
        if !status.is_success() {
            let error: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            match (error["__type"].as_str(), error["message"].as_str()) {
                (Some(code), Some(message)) => {
                    return Err(AwsError { code: code.to_string(), message: message.to_string() }.into())
                }
                _ => bail!("the server answered {status}: {}", String::from_utf8_lossy(&bytes)),
            }
        }
        Ok(bytes.to_vec())
    }
}

/// The headers of a SigV4-signed `POST` of a JSON 1.1 request.
fn sign(
    url: &str,
    region: &str,
    service: &str,
    target: &str,
    body: &[u8],
    key: &control_plane::auth::AccessKey,
) -> anyhow::Result<Vec<(String, String)>> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(&key.id, &key.secret, None, None, "berth-cli").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()?
        .into();
    let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target)];
    let request = SignableRequest::new("POST", url, headers.iter().copied(), SignableBody::Bytes(body))?;
    let (instructions, _) = sign(request, &params)?.into_parts();
    let (signed, _) = instructions.into_parts();
    let mut all: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    all.extend(signed.into_iter().map(|h| (h.name().to_string(), h.value().to_string())));
    Ok(all)
}
