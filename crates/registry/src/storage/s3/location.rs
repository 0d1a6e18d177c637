//! Where the S3 backend keeps blobs (`--blobs s3://BUCKET[/PREFIX]?endpoint=...`), and why
//! a bucket cannot be used, each reason with what to do about it.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Where the blobs live: `s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION]`. Credentials
/// are not part of it; they come from the AWS SDK's default chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub(super) bucket: String,
    /// Empty, or a key prefix ending in `/`.
    pub(super) prefix: String,
    pub(super) endpoint: Option<String>,
    pub(super) region: Option<String>,
}

impl S3Location {
    /// Parses `s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION]`.
    pub fn parse(s: &str) -> Result<S3Location, String> {
        let rest = s.strip_prefix("s3://").ok_or("expected s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION]")?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        // Lenient on purpose: S3-compatible stores differ in what they allow, and the
        // store itself refuses a name it does not take; this only keeps the name usable in
        // a URL path and a copy source.
        if bucket.is_empty() || !bucket.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return Err(format!("{bucket:?} is not a bucket name (letters, digits, '.', '_' and '-')"));
        }
        let prefix = prefix.trim_matches('/');
        let mut location = S3Location {
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() { String::new() } else { format!("{prefix}/") },
            endpoint: None,
            region: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| format!("the value of {key} is not UTF-8"))?
                .into_owned();
            match key {
                "endpoint" if value.starts_with("http://") || value.starts_with("https://") => {
                    location.endpoint = Some(value.trim_end_matches('/').to_owned())
                }
                "endpoint" => return Err(format!("endpoint {value:?} is not an http:// or https:// URL")),
                "region" if !value.is_empty() => location.region = Some(value),
                _ => return Err(format!("unknown or empty parameter {key:?} (known: endpoint, region)")),
            }
        }
        Ok(location)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The endpoint, as error messages name it.
    pub(super) fn endpoint_name(&self) -> &str {
        self.endpoint.as_deref().unwrap_or("Amazon S3")
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)?;
        let params: Vec<String> = [("endpoint", &self.endpoint), ("region", &self.region)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect();
        if !params.is_empty() {
            write!(f, "?{}", params.join("&"))?;
        }
        Ok(())
    }
}

/// Why the store could not be opened, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum S3OpenError {
    #[error(
        "the bucket {bucket} does not exist at {endpoint}: create it (for example `aws s3 mb s3://{bucket} --endpoint-url <endpoint>`) or name an existing bucket in --blobs"
    )]
    BucketMissing { bucket: String, endpoint: String },
    #[error(
        "{endpoint} refused access to the bucket {bucket} ({detail}): check the credentials Berth finds (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) and the bucket's policy"
    )]
    AccessDenied { bucket: String, endpoint: String, detail: String },
    #[error(
        "no credentials for the object store ({detail}): give Berth AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
    )]
    NoCredentials { detail: String },
    #[error("the object store at {endpoint} did not answer ({detail}): check the endpoint in --blobs and that the store runs")]
    Unreachable { endpoint: String, detail: String },
    #[error("checking the bucket {bucket} at {endpoint} failed: {detail}")]
    Other { bucket: String, endpoint: String, detail: String },
    #[error("the local spool directory {path}: {source}")]
    Spool { path: PathBuf, source: io::Error },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        let l = S3Location::parse("s3://berth-blobs?endpoint=http://127.0.0.1:9000").unwrap();
        assert_eq!(l.bucket(), "berth-blobs");
        assert_eq!(
            (l.prefix.as_str(), l.endpoint.as_deref(), l.region.as_deref()),
            ("", Some("http://127.0.0.1:9000"), None)
        );
        let l =
            S3Location::parse("s3://b/team/registry/?region=eu-west-1&endpoint=https%3A%2F%2Fs3.example%2F").unwrap();
        assert_eq!(l.prefix, "team/registry/");
        assert_eq!(l.endpoint.as_deref(), Some("https://s3.example"));
        assert_eq!(l.to_string(), "s3://b/team/registry/?endpoint=https://s3.example&region=eu-west-1");
        assert_eq!(S3Location::parse("s3://plain").unwrap().to_string(), "s3://plain/");
        for bad in ["http://b", "s3://", "s3://a b", "s3://b?endpoint=ftp://x", "s3://b?secret=1", "s3://b?region="] {
            assert!(S3Location::parse(bad).is_err(), "{bad}");
        }
    }
}
