//! ECR's image operations beyond listing: `BatchGetImage`, `BatchDeleteImage`, `PutImage`,
//! the layer-upload API, `GetDownloadUrlForLayer`, `BatchCheckLayerAvailability`,
//! `PutImageTagMutability` and `PutImageScanningConfiguration`.

use axum::response::Response;

use control_plane::ecs::Caller;

use crate::ApiError;

/// Answers the operations of this module; `None` for any other.
pub(super) async fn dispatch(
    _api: &crate::Api,
    _caller: &Caller,
    operation: &str,
    _body: &[u8],
    _host: &str,
) -> Option<Result<Response, ApiError>> {
    match operation {
        _ => None,
    }
}
