//! The AWS query protocol, which ELBv2 and EC2 speak: a form-encoded `POST /` body
//! (`Action=...&Version=...&Name.member.1=...`), answered in XML. This module decodes the
//! form into [`Params`], writes XML with [`Xml`], renders errors as each service's XML
//! error document, and finds a request's service by the SigV4 credential scope; the
//! dispatch table itself is the crate's (`dispatch_query`), beside the JSON services'.

use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};

use crate::{sigv4, Api, ApiError};

/// Which query service a request is for; each has its own XML shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Elbv2,
    Ec2,
    Sts,
    Iam,
}

impl Service {
    fn namespace(self) -> &'static str {
        match self {
            Service::Elbv2 => "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/",
            Service::Ec2 => "http://ec2.amazonaws.com/doc/2016-11-15/",
            Service::Sts => "https://sts.amazonaws.com/doc/2011-06-15/",
            Service::Iam => "https://iam.amazonaws.com/doc/2010-05-08/",
        }
    }
    fn version(self) -> &'static str {
        match self {
            Service::Elbv2 => "2015-12-01",
            Service::Ec2 => "2016-11-15",
            Service::Sts => "2011-06-15",
            Service::Iam => "2010-05-08",
        }
    }
}

/// Whether a request without `X-Amz-Target` is a query-protocol request.
pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
}

/// A query-protocol request as far as it has been read: its id and head.
pub(crate) struct Request<'a> {
    pub id: &'a str,
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub origin: crate::Origin,
}

/// Serves one query-protocol request; every failure becomes the service's XML error.
pub(crate) async fn handle(api: &Api, request: Request<'_>, body: axum::body::Body) -> Response {
    let mut service = Service::Elbv2;
    let request_id = request.id;
    match process(api, request, body, &mut service).await {
        Ok(r) => r,
        Err(e) => {
            if e.is_server_error() {
                tracing::error!(code = e.code, "request failed");
            } else {
                tracing::info!(code = e.code, error = %e.message, "request refused");
            }
            error_response(service, e, request_id)
        }
    }
}

async fn process(
    api: &Api,
    request: Request<'_>,
    body: axum::body::Body,
    service: &mut Service,
) -> Result<Response, ApiError> {
    let Request { id: request_id, method, uri, headers, origin } = request;
    // The signature's credential scope names the service.
    let signed = sigv4::SignedRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers,
        body: b"",
    };
    let scope_service = sigv4::parse(&signed)?.credential.service;
    *service = match scope_service.as_str() {
        "elasticloadbalancing" => Service::Elbv2,
        "ec2" => Service::Ec2,
        "sts" => Service::Sts,
        "iam" => Service::Iam,
        other => {
            return Err(ApiError::bad_request(
                "UnknownService",
                format!("Berth serves the query protocol for elasticloadbalancing, ec2, sts and iam, not '{other}'."),
            ))
        }
    };
    let pending = crate::authenticate_headers(api, method, uri, headers, &scope_service)?;
    let body = crate::read_body(body, crate::MAX_BODY_BYTES).await?;
    let caller = pending.verify(method, uri, headers, &body)?;
    let params = Params::parse(&body)?;
    let action = params.get("Action").filter(|a| !a.is_empty()).ok_or_else(|| {
        ApiError::bad_request("MissingAction", "The request has no Action parameter naming the operation.")
    })?;
    if let Some(v) = params.get("Version").filter(|v| *v != service.version()) {
        return Err(ApiError::bad_request(
            "InvalidAction",
            format!("API version '{v}' is not supported; this service speaks {}.", service.version()),
        ));
    }
    tracing::Span::current().record("target", action);
    crate::dispatch_query(api, &caller, *service, action, &params, request_id, origin).await
}

/// A decoded form: flat keys such as `Tags.member.2.Key`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Params {
    map: BTreeMap<String, String>,
}

/// The largest list index accepted: more members than any operation takes.
const MAX_INDEX: usize = 1000;

impl Params {
    pub fn parse(body: &[u8]) -> Result<Params, ApiError> {
        let text = std::str::from_utf8(body).map_err(|_| malformed("the body is not UTF-8"))?;
        let mut map = BTreeMap::new();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (decode(k)?, decode(v)?);
            if map.insert(k.clone(), v).is_some() {
                return Err(malformed(&format!("parameter '{k}' appears twice")));
            }
        }
        Ok(Params { map })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    pub fn string(&self, key: &str) -> Option<String> {
        self.get(key).map(str::to_string)
    }

    /// A required member: missing is a validation error naming it.
    pub fn required(&self, key: &str) -> Result<String, ApiError> {
        self.string(key).ok_or_else(|| {
            ApiError::bad_request("ValidationError", format!("1 validation error detected: Value null at '{key}' failed to satisfy constraint: Member must not be null"))
        })
    }

    pub fn int(&self, key: &str) -> Result<Option<i32>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse::<i32>().map_err(|_| {
                    ApiError::bad_request("ValidationError", format!("'{v}' at '{key}' is not an integer."))
                })
            })
            .transpose()
    }

    pub fn long(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    ApiError::bad_request("ValidationError", format!("'{v}' at '{key}' is not an integer."))
                })
            })
            .transpose()
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        self.get(key)
            .map(|v| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(ApiError::bad_request("ValidationError", format!("'{v}' at '{key}' is not true or false."))),
            })
            .transpose()
    }

    /// Whether any member is at or under `prefix` (`Key` or `Key.*`).
    pub fn has(&self, prefix: &str) -> bool {
        self.map.keys().any(|k| k == prefix || k.starts_with(&format!("{prefix}.")))
    }

    /// The members of `prefix.`: a nested structure, or `None` when it is absent.
    pub fn sub(&self, prefix: &str) -> Option<Params> {
        let p = format!("{prefix}.");
        let map: BTreeMap<String, String> =
            self.map.iter().filter_map(|(k, v)| k.strip_prefix(&p).map(|rest| (rest.to_string(), v.clone()))).collect();
        (!map.is_empty()).then_some(Params { map })
    }

    /// The elements `prefix.1`, `prefix.2`, ... grouped by index, in index order. ELBv2
    /// names list elements `List.member.N`, EC2 `List.N`: the caller passes the part before
    /// the index.
    fn indexed(&self, prefix: &str) -> Result<Vec<(Option<String>, Params)>, ApiError> {
        let p = format!("{prefix}.");
        let mut items: BTreeMap<usize, (Option<String>, BTreeMap<String, String>)> = BTreeMap::new();
        for (k, v) in &self.map {
            let Some(rest) = k.strip_prefix(&p) else { continue };
            let (index, tail) = match rest.split_once('.') {
                Some((i, t)) => (i, Some(t)),
                None => (rest, None),
            };
            let n: usize = index
                .parse()
                .ok()
                .filter(|n| (1..=MAX_INDEX).contains(n))
                .ok_or_else(|| malformed(&format!("'{k}' has no list index from 1 to {MAX_INDEX}")))?;
            let slot = items.entry(n).or_default();
            match tail {
                None => slot.0 = Some(v.clone()),
                Some(t) => {
                    slot.1.insert(t.to_string(), v.clone());
                }
            }
        }
        Ok(items.into_values().map(|(v, m)| (v, Params { map: m })).collect())
    }

    /// A list of strings (`Key.member.N`).
    pub fn list(&self, key: &str) -> Result<Vec<String>, ApiError> {
        Ok(self.indexed(&format!("{key}.member"))?.into_iter().filter_map(|(v, _)| v).collect())
    }

    /// A list of strings, `None` when the member is absent altogether.
    pub fn opt_list(&self, key: &str) -> Result<Option<Vec<String>>, ApiError> {
        if !self.has(key) {
            return Ok(None);
        }
        self.list(key).map(Some)
    }

    /// A list of structures (`Key.member.N.Member`).
    pub fn structs(&self, key: &str) -> Result<Vec<Params>, ApiError> {
        Ok(self.indexed(&format!("{key}.member"))?.into_iter().map(|(_, p)| p).collect())
    }

    /// EC2's lists: `Key.N`.
    pub fn ec2_list(&self, key: &str) -> Result<Vec<String>, ApiError> {
        Ok(self.indexed(key)?.into_iter().filter_map(|(v, _)| v).collect())
    }

    /// EC2's lists of structures: `Key.N.Member`.
    pub fn ec2_structs(&self, key: &str) -> Result<Vec<Params>, ApiError> {
        Ok(self.indexed(key)?.into_iter().map(|(_, p)| p).collect())
    }
}

fn malformed(why: &str) -> ApiError {
    ApiError::bad_request("MalformedQueryString", format!("The request body is not a valid query string: {why}."))
}

fn decode(s: &str) -> Result<String, ApiError> {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| malformed("a percent-encoded value is not UTF-8"))
}

/// A small XML writer: elements with escaped text, in the order written.
#[derive(Debug, Default)]
pub(crate) struct Xml {
    out: String,
}

pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

impl Xml {
    pub fn new() -> Self {
        Xml::default()
    }

    /// `<tag>text</tag>`.
    pub fn text(&mut self, tag: &str, value: impl AsRef<str>) -> &mut Self {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        self.out.push_str(&escape(value.as_ref()));
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
        self
    }

    /// Escaped text inside the element being written.
    pub fn out_text(&mut self, value: &str) -> &mut Self {
        self.out.push_str(&escape(value));
        self
    }

    /// `<tag>text</tag>` when there is a value.
    pub fn opt(&mut self, tag: &str, value: Option<impl AsRef<str>>) -> &mut Self {
        if let Some(v) = value {
            self.text(tag, v);
        }
        self
    }

    /// `<tag>...</tag>` with what `f` writes inside.
    pub fn elem(&mut self, tag: &str, f: impl FnOnce(&mut Xml)) -> &mut Self {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        f(self);
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
        self
    }

    /// `<tag><item_tag>...</item_tag>...</tag>`: ELBv2 lists use `member`, EC2 `item`.
    pub fn list<T>(
        &mut self,
        tag: &str,
        item_tag: &str,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(&mut Xml, T),
    ) -> &mut Self {
        self.elem(tag, |x| {
            for item in items {
                x.elem(item_tag, |x| f(x, item));
            }
        })
    }

    pub fn into_string(self) -> String {
        self.out
    }
}

fn xml_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    r
}

/// ELBv2's success envelope around what `f` writes into `<{action}Result>`.
pub(crate) fn elb_ok(action: &str, request_id: &str, f: impl FnOnce(&mut Xml)) -> Response {
    wrapped_ok(Service::Elbv2, action, request_id, f)
}

/// The success envelope of ELBv2 and STS (and most query services): `<{action}Response>`
/// holding `<{action}Result>`, with what `f` writes, and the request id.
pub(crate) fn wrapped_ok(service: Service, action: &str, request_id: &str, f: impl FnOnce(&mut Xml)) -> Response {
    let mut x = Xml::new();
    x.out.push_str(&format!("<{action}Response xmlns=\"{}\">", service.namespace()));
    x.elem(&format!("{action}Result"), f);
    x.elem("ResponseMetadata", |x| {
        x.text("RequestId", request_id);
    });
    x.out.push_str(&format!("</{action}Response>"));
    xml_response(StatusCode::OK, x.into_string())
}

/// EC2's success envelope: the result's members directly inside `<{action}Response>`.
pub(crate) fn ec2_ok(action: &str, request_id: &str, f: impl FnOnce(&mut Xml)) -> Response {
    let mut x = Xml::new();
    x.out.push_str(&format!("<{action}Response xmlns=\"{}\">", Service::Ec2.namespace()));
    x.text("requestId", request_id);
    f(&mut x);
    x.out.push_str(&format!("</{action}Response>"));
    xml_response(StatusCode::OK, x.into_string())
}

/// The query protocol's codes for the errors the JSON services name differently.
fn query_code(service: Service, e: &ApiError) -> (&'static str, StatusCode) {
    let status = e.status;
    match e.code {
        "InvalidSignatureException" => ("SignatureDoesNotMatch", StatusCode::FORBIDDEN),
        "UnrecognizedClientException" => ("InvalidClientTokenId", StatusCode::FORBIDDEN),
        "MissingAuthenticationTokenException" => ("MissingAuthenticationToken", StatusCode::FORBIDDEN),
        "IncompleteSignatureException" => ("IncompleteSignature", StatusCode::BAD_REQUEST),
        "SerializationException" => ("MalformedQueryString", status),
        "InvalidParameterException" | "ClientException" | "ValidationError" => match service {
            Service::Elbv2 | Service::Sts | Service::Iam => ("ValidationError", status),
            Service::Ec2 => ("InvalidParameterValue", status),
        },
        "ServerException" => ("InternalFailure", status),
        "ExpiredTokenException" => ("ExpiredToken", status),
        "AccessDeniedException" => match service {
            Service::Ec2 => ("UnauthorizedOperation", status),
            _ => ("AccessDenied", status),
        },
        code => (code, status),
    }
}

/// The XML error document of `service`.
pub(crate) fn error_response(service: Service, e: ApiError, request_id: &str) -> Response {
    let (code, status) = query_code(service, &e);
    let mut x = Xml::new();
    match service {
        Service::Elbv2 | Service::Sts | Service::Iam => {
            x.out.push_str(&format!("<ErrorResponse xmlns=\"{}\">", service.namespace()));
            x.elem("Error", |x| {
                x.text("Type", if status.is_server_error() { "Receiver" } else { "Sender" });
                x.text("Code", code);
                x.text("Message", &e.message);
            });
            x.text("RequestId", request_id);
            x.out.push_str("</ErrorResponse>");
        }
        Service::Ec2 => {
            x.out.push_str("<Response>");
            x.elem("Errors", |x| {
                x.elem("Error", |x| {
                    x.text("Code", code);
                    x.text("Message", &e.message);
                });
            });
            x.text("RequestID", request_id);
            x.out.push_str("</Response>");
        }
    }
    let mut response = xml_response(status, x.into_string());
    e.mark(&mut response);
    response
}

/// An ISO 8601 timestamp with milliseconds, as the query protocol writes them.
pub(crate) fn timestamp(t: model::Timestamp) -> String {
    let nanos = (t.epoch_seconds() * 1000.0).round() as i128 * 1_000_000;
    let dt = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    dt.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_into_lists_and_structures() {
        let p = Params::parse(b"Action=CreateLoadBalancer&Name=a+b%2Fc&Subnets.member.2=s2&Subnets.member.1=s1&Tags.member.1.Key=k&Tags.member.1.Value=v&Tags.member.10.Key=z").unwrap();
        assert_eq!(p.get("Name"), Some("a b/c"));
        assert_eq!(p.list("Subnets").unwrap(), vec!["s1", "s2"]);
        let tags = p.structs("Tags").unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[0].get("Value"), Some("v"));
        assert_eq!(tags[1].get("Key"), Some("z"));
        assert_eq!(p.opt_list("SecurityGroups").unwrap(), None);
        let empty = Params::parse(b"Subnets=").unwrap();
        assert_eq!(empty.opt_list("Subnets").unwrap(), Some(vec![]));
    }

    #[test]
    fn malformed_forms_are_refused() {
        for bad in [&b"A=%ff"[..], b"A=1&A=2", b"L.member.0=x", b"L.member.x=y", b"L.member.99999=y", &[0xff, 0xfe]] {
            let p = Params::parse(bad).and_then(|p| p.list("L"));
            assert!(p.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn xml_is_escaped() {
        let mut x = Xml::new();
        x.list("Values", "member", ["<a&b>", "'\""], |x, v| {
            x.text("V", v);
        });
        assert_eq!(
            x.into_string(),
            "<Values><member><V>&lt;a&amp;b&gt;</V></member><member><V>&apos;&quot;</V></member></Values>"
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(model::Timestamp::from_epoch_seconds(1_700_000_000.123)), "2023-11-14T22:13:20.123Z");
    }
}
