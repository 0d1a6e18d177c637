//! The Berth agent: the program on each container instance. It registers the instance
//! with the control plane, keeps a channel open on which it receives the desired state of
//! its tasks, runs those tasks as Docker containers, and reports what really happens.
//!
//! Layering: `session` talks to the control plane and owns the set of tasks; `runner`
//! drives one task towards its desired state through `docker`; `config` reads the ECS
//! agent's settings; `awsvpc` (checks and CIDR arithmetic) and `pause` (the pause image's
//! bytes) serve awsvpc task networking without doing I/O. Only `docker` knows the Docker
//! Engine API.

pub mod awsvpc;
pub mod config;
pub mod docker;
pub mod firewall;
pub mod pause;
pub mod registry_login;
pub mod runner;
pub mod session;
