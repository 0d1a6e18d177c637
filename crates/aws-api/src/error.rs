//! The AWS JSON error envelope: `{"__type": code, "message": ...}` with an HTTP status.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};

use control_plane::error::{ConflictKind, NotFoundKind, RejectedKind};
use control_plane::Error;
use model::Invalid;

use crate::sigv4::AuthError;

/// An error as the client will see it. Internal detail never goes into `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Whether the leading replica may answer where this one could not (see
    /// [`DEFER_HEADER`]).
    pub defer: bool,
}

/// Set on an answer that a follower replica gave but the leading one may answer
/// otherwise: a write, which a follower refuses, or a key the follower does not know yet.
/// A follower's server sends such a request on to the leader instead of answering it.
pub const DEFER_HEADER: &str = "x-berth-defer-to-leader";

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), defer: false }
    }
    /// This error, marked for the leader to answer instead (see [`DEFER_HEADER`]).
    pub fn deferred(self) -> Self {
        ApiError { defer: true, ..self }
    }
    /// Marks `response` for the leader to answer if this error says so.
    pub(crate) fn mark(&self, response: &mut Response) {
        if self.defer {
            response.headers_mut().insert(DEFER_HEADER, HeaderValue::from_static("1"));
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::bad_request("InvalidParameterException", message)
    }
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::bad_request("SerializationException", message)
    }
    pub fn is_server_error(&self) -> bool {
        self.status.is_server_error()
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        match e {
            Invalid::Parameter(m) => ApiError::invalid_parameter(m),
            Invalid::Client(m) => ApiError::bad_request("ClientException", m),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(i) => i.into(),
            Error::NotFound { kind, message } => {
                let code = match kind {
                    NotFoundKind::Cluster => "ClusterNotFoundException",
                    NotFoundKind::Resource => "ResourceNotFoundException",
                    NotFoundKind::Target => "TargetNotFoundException",
                    // ECS reports a missing task definition as a ClientException.
                    NotFoundKind::TaskDefinition => "ClientException",
                    NotFoundKind::Service => "ServiceNotFoundException",
                    NotFoundKind::Repository => "RepositoryNotFoundException",
                    NotFoundKind::Image => "ImageNotFoundException",
                    NotFoundKind::RepositoryPolicy => "RepositoryPolicyNotFoundException",
                    NotFoundKind::RegistryPolicy => "RegistryPolicyNotFoundException",
                    NotFoundKind::Scan => "ScanNotFoundException",
                    NotFoundKind::LifecyclePolicy => "LifecyclePolicyNotFoundException",
                    NotFoundKind::LifecyclePolicyPreview => "LifecyclePolicyPreviewNotFoundException",
                    NotFoundKind::Layers => "LayersNotFoundException",
                    NotFoundKind::ReferencedImages => "ReferencedImagesNotFoundException",
                    NotFoundKind::Upload => "UploadNotFoundException",
                };
                ApiError::bad_request(code, message)
            }
            Error::Conflict { kind, message } => {
                let code = match kind {
                    ConflictKind::ClusterHasInstances => "ClusterContainsContainerInstancesException",
                    ConflictKind::ClusterHasServices => "ClusterContainsServicesException",
                    ConflictKind::ClusterHasTasks => "ClusterContainsTasksException",
                    ConflictKind::ClusterHasCapacityProviders => "ClusterContainsCapacityProviderException",
                    ConflictKind::ResourceInUse => "ResourceInUseException",
                    ConflictKind::ServiceNotActive => "ServiceNotActiveException",
                    ConflictKind::AttributeLimit => "AttributeLimitExceededException",
                    ConflictKind::RepositoryExists => "RepositoryAlreadyExistsException",
                    ConflictKind::RepositoryNotEmpty => "RepositoryNotEmptyException",
                    ConflictKind::LifecyclePolicyPreviewInProgress => "LifecyclePolicyPreviewInProgressException",
                    ConflictKind::ImageExists => "ImageAlreadyExistsException",
                    ConflictKind::ImageTagImmutable => "ImageTagAlreadyExistsException",
                    ConflictKind::LayerExists => "LayerAlreadyExistsException",
                    ConflictKind::LayerNotInImage => "LayerInaccessibleException",
                    ConflictKind::EmptyUpload => "EmptyUploadException",
                    ConflictKind::ResourceExists => "ResourceAlreadyExistsException",
                };
                ApiError::bad_request(code, message)
            }
            Error::Rejected { kind, message } => {
                let code = match kind {
                    RejectedKind::ImageDigestMismatch => "ImageDigestDoesNotMatchException",
                    RejectedKind::LayerPart => "InvalidLayerPartException",
                    RejectedKind::LayerPartTooSmall => "LayerPartTooSmallException",
                    RejectedKind::LayerDigestMismatch => "InvalidLayerException",
                };
                ApiError::bad_request(code, message)
            }
            Error::Denied(m) => ApiError::bad_request("AccessDeniedException", m),
            Error::LimitExceeded(m) => ApiError::bad_request("LimitExceededException", m),
            Error::Unsupported(m) => ApiError::bad_request("UnsupportedFeatureException", m),
            Error::Elb(e) => ApiError::bad_request(e.fault.code(), e.message),
            Error::Ec2(e) => ApiError::bad_request(e.code, e.message),
            Error::Ssm(e) => ApiError::bad_request(e.code, e.message),
            Error::Secrets(e) => ApiError::bad_request(e.code, e.message),
            Error::Events(e) => ApiError::bad_request(e.code, e.message),
            Error::Iam(e) => match e.code {
                "NoSuchEntity" => ApiError::new(http::StatusCode::NOT_FOUND, e.code, e.message),
                "EntityAlreadyExists" | "DeleteConflict" => {
                    ApiError::new(http::StatusCode::CONFLICT, e.code, e.message)
                }
                "AccessDenied" => ApiError::new(http::StatusCode::FORBIDDEN, e.code, e.message),
                _ => ApiError::bad_request(e.code, e.message),
            },
            Error::NotLeader => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                "This Berth replica follows the leading one and could not pass the request on; retry it.",
            )
            .deferred(),
            Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ServerException",
                    "Berth failed to process the request; retry it. The server log has the detail.",
                )
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing => Self::new(StatusCode::BAD_REQUEST, "MissingAuthenticationTokenException", "Missing Authentication Token"),
            AuthError::Malformed(m) => Self::bad_request("IncompleteSignatureException", m),
            AuthError::UnknownKey => Self::bad_request(
                "UnrecognizedClientException",
                "The security token included in the request is invalid. Check the access key id (`berth env` prints a valid one).",
            )
            .deferred(),
            AuthError::Mismatch => Self::bad_request(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
            ),
            AuthError::Expired(m) => Self::bad_request("InvalidSignatureException", m),
            AuthError::ExpiredToken => Self::new(
                StatusCode::FORBIDDEN,
                "ExpiredTokenException",
                "The security token included in the request is expired",
            ),
            AuthError::WrongService { expected } => {
                Self::bad_request("InvalidSignatureException", format!("Credential should be scoped to correct service: '{expected}'."))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "__type": self.code, "message": self.message }).to_string();
        let mut r = (self.status, body).into_response();
        self.mark(&mut r);
        let h = r.headers_mut();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/x-amz-json-1.1"));
        if let Ok(v) = HeaderValue::from_str(self.code) {
            h.insert("x-amzn-errortype", v);
        }
        r
    }
}
