//! The OCI error shape: `{"errors":[{"code","message","detail"}]}` with the spec's codes and
//! statuses. Internal detail is logged here, once, and never sent to the client.

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::meta::MetaError;
use crate::storage::StorageError;

/// An error answer of the distribution API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<serde_json::Value>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), detail: None, headers: vec![] }
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> ApiError {
        self.detail = Some(detail);
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub fn internal(err: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %err, "registry internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "internal error")
    }

    pub fn blob_unknown() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown to registry")
    }
    pub fn upload_unknown() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
    }
    pub fn upload_invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", message)
    }
    pub fn digest_invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", message)
    }
    pub fn manifest_unknown() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", "manifest unknown to registry")
    }
    pub fn manifest_invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", message)
    }
    pub fn name_invalid() -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", "invalid repository name")
    }
    pub fn name_unknown() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "repository name not known to registry")
    }
    pub fn unsupported() -> ApiError {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "the operation is unsupported")
    }
    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint")
    }
    /// 416 for a chunk that does not start where the upload ends; `Range` says where it does.
    pub fn range_invalid(offset: u64) -> ApiError {
        ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID", "chunk out of order")
            .with_header(http::header::RANGE, range_value(offset))
    }
}

/// The `Range` value for an upload holding `offset` bytes: `0-<offset-1>` (`0-0` when
/// empty, as Docker's distribution answers).
pub fn range_value(offset: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("0-{}", offset.saturating_sub(1))).expect("digits are a valid header")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({"code": self.code, "message": self.message});
        if let Some(d) = self.detail {
            error["detail"] = d;
        }
        let body = serde_json::json!({ "errors": [error] }).to_string();
        let mut resp = (self.status, [(http::header::CONTENT_TYPE, "application/json")], body).into_response();
        resp.headers_mut().extend(self.headers);
        resp
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        match e {
            StorageError::UploadUnknown => ApiError::upload_unknown(),
            StorageError::RangeInvalid { offset } => ApiError::range_invalid(offset),
            StorageError::LengthMismatch => ApiError::upload_invalid("chunk length differs from Content-Range"),
            StorageError::DigestMismatch => ApiError::digest_invalid("provided digest did not match uploaded content"),
            StorageError::Body(m) => ApiError::upload_invalid(format!("request body failed: {m}")),
            StorageError::Unavailable(m) => {
                tracing::error!(error = %m, "blob storage unavailable");
                // Distribution's code for a backend that is down: clients retry on 503.
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "blob storage is unavailable; retry")
            }
            StorageError::Io(e) => ApiError::internal(e),
        }
    }
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> ApiError {
        match e {
            MetaError::NameUnknown => ApiError::name_unknown(),
            MetaError::Denied(m) => ApiError::new(StatusCode::FORBIDDEN, "DENIED", m),
            // Docker shows this code as "tag invalid: <message>".
            MetaError::TagImmutable(m) => ApiError::new(StatusCode::BAD_REQUEST, "TAG_INVALID", m),
            MetaError::Internal(m) => ApiError::internal(m),
        }
    }
}
