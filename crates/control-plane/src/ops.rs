//! The operations of one AWS service, as a view over the control plane.
//!
//! `ControlPlane` is the base: the published state, the writer, the connected agents and
//! the run-time companions. Each service module (`ecs`, `ecr`, `elb`, `ec2`) adds its
//! operations to `Ops<'_, Service>` and an accessor (`cp.ecs()`, `cp.ecr()`, `cp.elbv2()`,
//! `cp.ec2()`), so a reader finds an operation under its service, and every view shares
//! the same state and writer: a change that spans services (the service controller
//! registering targets) is still one atomic writer change.

use std::marker::PhantomData;
use std::ops::Deref;

use crate::ControlPlane;

/// The operations of service `S` (a marker type of the service's module).
pub struct Ops<'a, S> {
    cp: &'a ControlPlane,
    service: PhantomData<S>,
}

impl<'a, S> Ops<'a, S> {
    pub(crate) fn new(cp: &'a ControlPlane) -> Self {
        Ops { cp, service: PhantomData }
    }

    /// The whole control plane, for reaching another service's operations.
    pub fn control(&self) -> &'a ControlPlane {
        self.cp
    }
}

impl<S> std::fmt::Debug for Ops<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops").field("service", &std::any::type_name::<S>()).finish_non_exhaustive()
    }
}

/// A view reads the base (`view()`, `write()`, `agents`, ...) as if it were the control
/// plane itself; it adds only its own service's operations.
impl<S> Deref for Ops<'_, S> {
    type Target = ControlPlane;
    fn deref(&self) -> &ControlPlane {
        self.cp
    }
}
