//! The Berth agent: the program on each container instance. It registers the instance
//! with the control plane, keeps a channel open on which it receives the desired state of
//! its tasks, runs those tasks as Docker containers, and reports what really happens.
//!
//! Layering: `session` talks to the control plane and owns the set of tasks; `runner`
//! drives one task towards its desired state through `docker`; `config` reads the ECS
//! agent's settings; `awsvpc` (checks and CIDR arithmetic) and `pause` (the pause image's
//! bytes) serve awsvpc task networking without doing I/O; `endpoint` serves containers
//! their task role credentials and task metadata at 169.254.170.2; `subnets` clears the
//! engine of subnet networks a gone Berth left before `berth up` starts; `backends`
//! reaches whichever of several control-plane replicas answers. Only `docker` knows the
//! Docker Engine API.

pub mod awslogs;
pub mod awsvpc;
pub mod backends;
pub mod config;
pub mod docker;
pub mod endpoint;
pub mod firewall;
pub mod pause;
pub mod registry_login;
pub mod runner;
pub mod secrets;
pub mod session;
pub mod subnets;
