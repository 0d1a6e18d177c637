//! Verification of AWS Signature Version 4, in the Authorization header or in a presigned
//! query string.
//!
//! The server recomputes the signature from the request as received and the secret of the
//! named key, and compares. Everything the client signed must therefore be reproduced
//! byte for byte: the canonical URI, query, headers and the payload's SHA-256.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use http::HeaderMap;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use time::{macros::format_description, OffsetDateTime, PrimitiveDateTime};

/// How far a request's timestamp may be from the server's clock.
pub const MAX_SKEW_SECONDS: i64 = 15 * 60;
/// The longest validity a presigned URL may ask for (seven days, as AWS allows).
pub const MAX_PRESIGN_SECONDS: i64 = 7 * 24 * 3600;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Everything except the unreserved characters of RFC 3986 is percent-encoded.
const STRICT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The parts of a request that the signature covers.
#[derive(Debug)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as received, still percent-encoded.
    pub path: &'a str,
    /// The query string as received, without the `?`.
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// What a valid signature establishes about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub access_key_id: String,
    pub region: String,
    pub service: String,
}

/// Why a request is not authentic. Each maps to the AWS error a client expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No Authorization header and no presigned query.
    Missing,
    /// The signature parameters are malformed.
    Malformed(String),
    /// No account has this access key.
    UnknownKey,
    /// The recomputed signature differs.
    Mismatch,
    /// The request's time is too far from now, or a presigned URL has expired.
    Expired(String),
    /// The credential scope names another service than the endpoint serves.
    WrongService { expected: String },
    /// The session token of temporary credentials has expired.
    ExpiredToken,
}

/// The signing parameters found in a request, before the key's secret is known.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub credential: Credential,
    date: String,
    amz_date: String,
    signed_headers: Vec<String>,
    signature: String,
    presigned: bool,
    expires: Option<i64>,
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| percent_decode_str(&s.replace('+', "%20")).decode_utf8_lossy().into_owned();
            (dec(k), dec(v))
        })
        .collect()
}

/// Finds the signature parameters, from the Authorization header or the query.
pub fn parse(req: &SignedRequest<'_>) -> Result<Parsed, AuthError> {
    if let Some(auth) = req.headers.get(http::header::AUTHORIZATION) {
        let auth = auth.to_str().map_err(|_| AuthError::Malformed("Authorization header is not ASCII".into()))?;
        let rest = auth
            .strip_prefix(ALGORITHM)
            .ok_or_else(|| AuthError::Malformed(format!("only {ALGORITHM} is supported")))?;
        let mut fields = BTreeMap::new();
        for part in rest.split(',') {
            if let Some((k, v)) = part.trim().split_once('=') {
                fields.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        let get = |k: &str| {
            fields.get(k).cloned().ok_or_else(|| AuthError::Malformed(format!("Authorization header lacks {k}")))
        };
        let amz_date = match req.headers.get("x-amz-date") {
            Some(v) => v.to_str().map_err(|_| AuthError::Malformed("X-Amz-Date is not ASCII".into()))?.to_string(),
            None => return Err(AuthError::Malformed("the request needs an X-Amz-Date header".into())),
        };
        let parsed = finish(&get("Credential")?, &get("SignedHeaders")?, get("Signature")?, amz_date, false, None)?;
        return parsed.covering(req.headers);
    }
    let q = parse_query(req.query);
    let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let Some(signature) = get("X-Amz-Signature") else {
        return Err(AuthError::Missing);
    };
    if get("X-Amz-Algorithm").as_deref() != Some(ALGORITHM) {
        return Err(AuthError::Malformed(format!("X-Amz-Algorithm must be {ALGORITHM}")));
    }
    let need = |k: &str| get(k).ok_or_else(|| AuthError::Malformed(format!("the presigned URL lacks {k}")));
    let expires: i64 =
        need("X-Amz-Expires")?.parse().map_err(|_| AuthError::Malformed("X-Amz-Expires is not a number".into()))?;
    if !(1..=MAX_PRESIGN_SECONDS).contains(&expires) {
        return Err(AuthError::Malformed(format!("X-Amz-Expires must be between 1 and {MAX_PRESIGN_SECONDS}")));
    }
    finish(
        &need("X-Amz-Credential")?,
        &need("X-Amz-SignedHeaders")?,
        signature,
        need("X-Amz-Date")?,
        true,
        Some(expires),
    )?
    .covering(req.headers)
}

fn finish(
    credential: &str,
    signed_headers: &str,
    signature: String,
    amz_date: String,
    presigned: bool,
    expires: Option<i64>,
) -> Result<Parsed, AuthError> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service, "aws4_request"] = parts[..] else {
        return Err(AuthError::Malformed(format!(
            "Credential should be scoped to a valid region and service: '{credential}'"
        )));
    };
    if !amz_date.starts_with(date) {
        return Err(AuthError::Malformed(format!(
            "Credential should be scoped to the date of the request: '{date}' differs from '{amz_date}'"
        )));
    }
    let signed_headers: Vec<String> = signed_headers.split(';').map(|h| h.to_ascii_lowercase()).collect();
    if !signed_headers.iter().any(|h| h == "host") {
        return Err(AuthError::Malformed(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    Ok(Parsed {
        credential: Credential { access_key_id: key.into(), region: region.into(), service: service.into() },
        date: date.into(),
        amz_date,
        signed_headers,
        signature,
        presigned,
        expires,
    })
}

fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let fmt = format_description!("[year][month][day]T[hour][minute][second]Z");
    PrimitiveDateTime::parse(s, fmt).ok().map(|t| t.assume_utc())
}

fn format_amz_date(t: OffsetDateTime) -> String {
    let fmt = format_description!("[year][month][day]T[hour][minute][second]Z");
    t.format(fmt).unwrap_or_default()
}

impl Parsed {
    /// Refuses a signature that leaves out a header naming what the request does or
    /// who sends it: every `x-amz-*` header present (`X-Amz-Target` names the operation,
    /// so an unsigned one could turn a captured `ListServices` into `DeleteCluster`). The
    /// SDKs and the aws CLI sign all of them; the query protocol's `Action` is in the
    /// signed body or query.
    fn covering(self, headers: &HeaderMap) -> Result<Self, AuthError> {
        let unsigned = headers
            .keys()
            .map(|name| name.as_str())
            .find(|name| name.starts_with("x-amz-") && !self.signed_headers.iter().any(|s| s == name));
        match unsigned {
            Some(name) => Err(AuthError::Malformed(format!(
                "'{}' must be a 'SignedHeader' in the AWS Authorization.",
                display_header_name(name)
            ))),
            None => Ok(self),
        }
    }

    /// Checks the request's time against `now`: whether it is within the allowed skew or,
    /// for a presigned URL, not yet expired. This needs no secret and no body, so it runs
    /// before a body is read.
    pub fn check_time(&self, now: OffsetDateTime) -> Result<(), AuthError> {
        let when = parse_amz_date(&self.amz_date)
            .ok_or_else(|| AuthError::Malformed(format!("'{}' is not a valid X-Amz-Date", self.amz_date)))?;
        let age = (now - when).whole_seconds();
        if let Some(expires) = self.expires {
            if age > expires {
                return Err(AuthError::Expired(format!(
                    "Signature expired: the presigned URL was valid until {}; it is now {}.",
                    format_amz_date(when + time::Duration::seconds(expires)),
                    format_amz_date(now)
                )));
            }
            if -age > MAX_SKEW_SECONDS {
                return Err(AuthError::Expired(format!(
                    "Signature not yet current: {} is still later than {}.",
                    self.amz_date,
                    format_amz_date(now + time::Duration::seconds(MAX_SKEW_SECONDS))
                )));
            }
        } else if age > MAX_SKEW_SECONDS {
            return Err(AuthError::Expired(format!(
                "Signature expired: {} is now earlier than {} ({} - 15 min.)",
                self.amz_date,
                format_amz_date(now - time::Duration::seconds(MAX_SKEW_SECONDS)),
                format_amz_date(now)
            )));
        } else if -age > MAX_SKEW_SECONDS {
            return Err(AuthError::Expired(format!(
                "Signature not yet current: {} is still later than {} ({} + 15 min.)",
                self.amz_date,
                format_amz_date(now + time::Duration::seconds(MAX_SKEW_SECONDS)),
                format_amz_date(now)
            )));
        }
        Ok(())
    }

    /// Checks the request's time against `now`, then the signature against `secret`.
    pub fn verify(&self, req: &SignedRequest<'_>, secret: &str, now: OffsetDateTime) -> Result<(), AuthError> {
        self.check_time(now)?;
        let payload_hash = self.payload_hash(req)?;
        let canonical = self.canonical_request(req, &payload_hash)?;
        let scope = format!("{}/{}/{}/aws4_request", self.date, self.credential.region, self.credential.service);
        let to_sign = format!("{ALGORITHM}\n{}\n{scope}\n{}", self.amz_date, sha256_hex(canonical.as_bytes()));
        let mut key = hmac(format!("AWS4{secret}").as_bytes(), self.date.as_bytes());
        for part in [self.credential.region.as_bytes(), self.credential.service.as_bytes(), b"aws4_request"] {
            key = hmac(&key, part);
        }
        let expected = hex::encode(hmac(&key, to_sign.as_bytes()));
        if constant_time_eq(expected.as_bytes(), self.signature.as_bytes()) {
            Ok(())
        } else {
            Err(AuthError::Mismatch)
        }
    }

    /// The payload hash the client claims (if it sent one) must be the body's; an unsigned
    /// payload is refused, because these APIs must never act on a body nobody signed.
    fn payload_hash(&self, req: &SignedRequest<'_>) -> Result<String, AuthError> {
        let actual = sha256_hex(req.body);
        match req.headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok()) {
            None => Ok(actual),
            Some(claimed) if claimed.eq_ignore_ascii_case(&actual) => Ok(claimed.to_string()),
            Some("UNSIGNED-PAYLOAD") => {
                Err(AuthError::Malformed("UNSIGNED-PAYLOAD is not accepted here; sign the request body".into()))
            }
            Some(_) => Err(AuthError::Malformed(
                "The provided 'x-amz-content-sha256' header does not match what was computed.".into(),
            )),
        }
    }

    fn canonical_request(&self, req: &SignedRequest<'_>, payload_hash: &str) -> Result<String, AuthError> {
        // Non-S3 services sign the path with each segment encoded once more than it was
        // sent (the SDKs encode the already-encoded path).
        let uri = if req.path.is_empty() || req.path == "/" {
            "/".to_string()
        } else {
            req.path.split('/').map(|seg| utf8_percent_encode(seg, STRICT).to_string()).collect::<Vec<_>>().join("/")
        };
        let mut query: Vec<(String, String)> = parse_query(req.query)
            .into_iter()
            .filter(|(k, _)| !(self.presigned && k == "X-Amz-Signature"))
            .map(|(k, v)| (utf8_percent_encode(&k, STRICT).to_string(), utf8_percent_encode(&v, STRICT).to_string()))
            .collect();
        query.sort();
        let query = query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let mut headers = String::new();
        for name in &self.signed_headers {
            let values: Vec<String> = req
                .headers
                .get_all(name.as_str())
                .iter()
                .map(|v| collapse_spaces(&String::from_utf8_lossy(v.as_bytes())))
                .collect();
            if values.is_empty() {
                return Err(AuthError::Malformed(format!("the signed header '{name}' is not in the request")));
            }
            headers.push_str(&format!("{name}:{}\n", values.join(",")));
        }
        Ok(format!("{}\n{uri}\n{query}\n{headers}\n{}\n{payload_hash}", req.method, self.signed_headers.join(";")))
    }
}

/// `x-amz-target` as AWS writes it in messages: `X-Amz-Target`.
fn display_header_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn collapse_spaces(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example request of AWS's published SigV4 test suite ("get-vanilla"), with its
    // documented secret and expected signature.
    #[test]
    fn aws_test_suite_get_vanilla() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
                .parse()
                .unwrap(),
        );
        let req = SignedRequest { method: "GET", path: "/", query: "", headers: &headers, body: b"" };
        let parsed = parse(&req).unwrap();
        assert_eq!(parsed.credential.access_key_id, "AKIDEXAMPLE");
        let now = parse_amz_date("20150830T123700Z").unwrap();
        parsed.verify(&req, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", now).unwrap();
        assert_eq!(parsed.verify(&req, "wrong", now), Err(AuthError::Mismatch));
        let late = parse_amz_date("20150830T130000Z").unwrap();
        assert!(matches!(
            parsed.verify(&req, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", late),
            Err(AuthError::Expired(_))
        ));
    }

    #[test]
    fn missing_and_malformed() {
        let headers = HeaderMap::new();
        let req = SignedRequest { method: "POST", path: "/", query: "", headers: &headers, body: b"{}" };
        assert_eq!(parse(&req).unwrap_err(), AuthError::Missing);
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AK/2015/x, SignedHeaders=host, Signature=00".parse().unwrap(),
        );
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        let req = SignedRequest { method: "POST", path: "/", query: "", headers: &headers, body: b"{}" };
        assert!(matches!(parse(&req), Err(AuthError::Malformed(_))));
    }
}
