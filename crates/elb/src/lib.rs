//! The Application Load Balancer's domain: load balancers, target groups, listeners and
//! rules as values that can only be built valid (names, attributes, conditions, actions,
//! health-check settings with AWS's defaults and limits), the pure parts of the data
//! plane (rule matching, redirect rendering, the health-check state machine, target
//! choice), and the [`snapshot::Snapshot`] the control plane hands to the data plane.
//!
//! Never: I/O, clocks (times are passed in), wire formats. The control plane keeps these
//! values durable; the `lb` crate serves traffic with them.

pub mod actions;
pub mod attributes;
pub mod conditions;
pub mod error;
pub mod glob;
pub mod health;
pub mod names;
pub mod resources;
pub mod snapshot;

pub use error::{ElbError, Fault};
