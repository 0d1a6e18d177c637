//! Policies and metadata of repositories and the registry: lifecycle policies and their
//! preview, repository policies, resource tags, `DescribeRegistry`.

use axum::response::Response;

use control_plane::ecs::Caller;

use crate::ApiError;

/// Answers the operations of this module; `None` for any other.
pub(super) async fn dispatch(
    _api: &crate::Api,
    _caller: &Caller,
    operation: &str,
    _body: &[u8],
) -> Option<Result<Response, ApiError>> {
    match operation {
        _ => None,
    }
}
