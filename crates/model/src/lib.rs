//! Berth's domain: identifiers that can only be built valid, the resources the control
//! plane owns, and the rules a request must satisfy before it changes anything.
//!
//! This crate does no I/O and knows no wire protocol. The ECS document types in
//! [`ecs::shapes`] are generated from AWS's model because ECS's task definition schema *is*
//! the domain a user writes; everything with an invariant (names, ARNs, tags, revisions)
//! is a hand-written type here that checks it on construction.

pub mod ec2;
pub mod ecr;
pub mod ecs;
pub mod events;
pub mod iam;
pub mod ids;
pub mod logs;
pub mod secrets;
pub mod shape;
pub mod ssm;
pub mod tags;

pub use ids::{AccountId, Arn, Region, Scope};
pub use shape::{Timestamp, Violation};

/// Why a request cannot be carried out as given. The caller fixes its input and retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// A parameter is malformed or out of range (ECS `InvalidParameterException`).
    #[error("{0}")]
    Parameter(String),
    /// The request as a whole is not acceptable (ECS `ClientException`).
    #[error("{0}")]
    Client(String),
}
