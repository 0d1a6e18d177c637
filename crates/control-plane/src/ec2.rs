//! EC2's operations in Berth: the default network every account sees (its shape is
//! `model::ec2`), the VPCs and subnets accounts create and the tags of both (`vpcs`), the
//! security groups (`security_groups`), and what EC2 shows of ECS's resources: tasks'
//! network interfaces and container instances (`interfaces`).

pub mod interfaces;
pub mod security_groups;
pub mod vpcs;

pub use model::ec2::{derived_id, Ipv4Block, Network, NetworkConfig, Subnet, Zone, VPC_CIDR};

/// The marker of EC2's operations: `cp.ec2()`.
#[derive(Debug)]
pub enum Ec2 {}

impl crate::ControlPlane {
    /// The EC2 operations.
    pub fn ec2(&self) -> crate::Ops<'_, Ec2> {
        crate::Ops::new(self)
    }
}
