//! The one error this crate returns: a placement rule or query that cannot be accepted.

/// A constraint, strategy or cluster query that is not valid. The caller reports it as an
/// invalid parameter; nothing was placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlacementError {
    /// A sentence for the client; when `position` is set it names that byte offset.
    pub message: String,
    /// The byte offset in the query expression where parsing failed.
    pub position: Option<usize>,
}

impl PlacementError {
    /// An error about a rule as a whole (a type, a field), not a place in an expression.
    pub(crate) fn rule(message: impl Into<String>) -> Self {
        Self { message: message.into(), position: None }
    }

    /// An error at byte `position` of an expression; the message says where.
    pub(crate) fn at(position: usize, message: impl std::fmt::Display) -> Self {
        Self { message: format!("{message} at byte {position}"), position: Some(position) }
    }
}
