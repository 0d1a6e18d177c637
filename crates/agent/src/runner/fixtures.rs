//! Small builders for the runner's unit tests.

use std::net::Ipv4Addr;

use agent_protocol::{AwsvpcNetwork, DesiredStatus, TaskAssignment};
use model::ecs::shapes::{ContainerDefinition, RegisterTaskDefinitionRequest};

use super::state::{Ctr, Dep};

/// A running task of family `fam` revision 1 with this definition.
pub fn assignment(definition: RegisterTaskDefinitionRequest) -> TaskAssignment {
    TaskAssignment {
        task_arn: "arn:aws:ecs:us-east-1:000000000000:task/c/abc".into(),
        cluster_arn: "arn:aws:ecs:us-east-1:000000000000:cluster/c".into(),
        family: "fam".into(),
        revision: 1,
        desired_status: DesiredStatus::Running,
        stop_reason: None,
        definition,
        overrides: None,
        network: None,
        container_arns: Default::default(),
        task_tags: Default::default(),
        instance_tags: Default::default(),
    }
}

/// A waiting container named `name` (on Docker: `ecs-<name>`) with these dependencies.
pub fn ctr(name: &str, deps: Vec<Dep>) -> Ctr {
    let def = ContainerDefinition { name: Some(name.into()), ..Default::default() };
    Ctr::new(format!("ecs-{name}"), def, deps)
}

/// An attachment to subnet `subnet-1` (10.0.1.0/24) with this address.
pub fn network(address: impl Into<Ipv4Addr>) -> AwsvpcNetwork {
    AwsvpcNetwork {
        attachment_id: "a".into(),
        subnet_id: "subnet-1".into(),
        subnet_cidr: "10.0.1.0/24".into(),
        gateway: [10, 0, 1, 1].into(),
        private_ipv4_address: address.into(),
        mac_address: "0a:58:0a:00:01:07".into(),
        docker_network: "berth-subnet-1".into(),
        ingress: None,
    }
}
