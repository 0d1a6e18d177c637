//! awsvpc networking: the checks of a task's `networkConfiguration`, and each task's
//! elastic network interface, an address of its own in one of its subnets.
//!
//! Addresses are not stored apart from the tasks: the addresses in use in a subnet are
//! those of the tasks that may still hold theirs (every task not yet STOPPED), so an
//! address is free again exactly when its task has stopped, and allocation runs inside the
//! writer, where no two tasks can take the same one. As in a VPC, the first four addresses
//! of a subnet and its last are never handed out; the agent gives the first (the gateway)
//! to the host side of the subnet's Docker bridge.

use std::net::Ipv4Addr;

use rand::Rng;

use model::ecs::shapes::{AssignPublicIp, NetworkConfiguration};
use model::ecs::task::Eni;
use model::Scope;

use crate::ec2::{Ipv4Block, Network, Subnet};
use crate::error::{Error, Result};
use crate::state::State;

/// At most this many subnets and security groups in an `awsvpcConfiguration`.
const MAX_SUBNETS: usize = 16;
const MAX_SECURITY_GROUPS: usize = 5;

/// Where a task's interface may go: checked subnets and security groups.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    pub subnets: Vec<Subnet>,
    pub security_groups: Vec<String>,
    pub vpc_cidr: String,
}

/// Checks a request's `networkConfiguration` against the task definition's network mode
/// as ECS does: required for awsvpc, refused otherwise; subnets of the account's VPC;
/// `assignPublicIp` only on Fargate.
pub(crate) fn check(
    state: &State,
    scope: &Scope,
    network: &Network,
    config: Option<&NetworkConfiguration>,
    awsvpc: bool,
    fargate: bool,
) -> Result<Option<Placement>> {
    let vpc = config.and_then(|c| c.awsvpc_configuration.as_ref());
    let vpc = match (awsvpc, vpc) {
        (false, None) => return Ok(None),
        (false, Some(_)) => {
            return Err(Error::parameter(
                "Network Configuration is not valid for the given networkMode of this task definition.",
            ))
        }
        (true, None) => {
            return Err(Error::parameter(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
            ))
        }
        (true, Some(v)) => v,
    };
    let ids = vpc.subnets.clone().unwrap_or_default();
    if ids.is_empty() {
        return Err(Error::parameter("subnets can not be empty."));
    }
    if ids.len() > MAX_SUBNETS {
        return Err(Error::parameter(format!("At most {MAX_SUBNETS} subnets can be given.")));
    }
    let mut subnets = Vec::new();
    let mut vpc_id = None;
    for id in &ids {
        let s = crate::ec2::vpcs::find_subnet(state, scope, network, id).ok_or_else(|| {
            Error::parameter(format!(
                "Error retrieving subnet information for [{id}]: The subnet ID '{id}' does not exist (ErrorCode: InvalidSubnetID.NotFound)"
            ))
        })?;
        match &vpc_id {
            None => vpc_id = Some(s.vpc_id.clone()),
            Some(v) if *v != s.vpc_id => {
                return Err(Error::parameter("All subnets must belong to the same VPC."));
            }
            Some(_) => {}
        }
        if !subnets.iter().any(|x: &Subnet| x.id == s.id) {
            subnets.push(crate::ec2::vpcs::placement_subnet(&s));
        }
    }
    let in_vpc = crate::ec2::vpcs::find_vpc(state, scope, network, vpc_id.as_deref().unwrap_or(&network.vpc_id))
        .map_err(|_| Error::parameter("The subnets' VPC no longer exists."))?;
    let groups = vpc.security_groups.clone().unwrap_or_default();
    if groups.len() > MAX_SECURITY_GROUPS {
        return Err(Error::parameter(format!("At most {MAX_SECURITY_GROUPS} security groups can be given.")));
    }
    for g in &groups {
        if !crate::ec2::security_groups::security_group_exists(state, scope, g) {
            return Err(Error::parameter(format!(
                "Error retrieving security group information for [{g}]: The security group '{g}' does not exist (ErrorCode: InvalidGroup.NotFound)"
            )));
        }
    }
    if vpc.assign_public_ip == Some(AssignPublicIp::Enabled) && !fargate {
        return Err(Error::parameter("Assign public IP is not supported for this launch type."));
    }
    // As in ECS, a task given no groups is in its VPC's default group.
    let security_groups = if groups.is_empty() { vec![in_vpc.security_group_id.clone()] } else { groups };
    Ok(Some(Placement { subnets, security_groups, vpc_cidr: in_vpc.cidr.clone() }))
}

/// Reserved at the start of every subnet (network, router, DNS, future use), as in a VPC.
const RESERVED_LOW: u32 = 4;

/// A new interface for a task in `scope`: in the first of `placement`'s subnets in `zone`
/// (if any is; else the first subnet) that has a free address. `Err` says why none could
/// be had.
pub(crate) fn allocate(
    state: &State,
    scope: &Scope,
    placement: &Placement,
    zone: Option<&str>,
    rng: &mut impl Rng,
) -> std::result::Result<Eni, String> {
    let mut order: Vec<&Subnet> = placement.subnets.iter().filter(|s| Some(s.zone.name.as_str()) == zone).collect();
    if order.is_empty() {
        order = placement.subnets.iter().collect();
    }
    for subnet in &order {
        let Some(ip) = free_address(state, scope, subnet) else { continue };
        let o = ip.octets();
        return Ok(Eni {
            attachment_id: super::tasks::uuid(rng),
            eni_id: format!("eni-{}", &super::tasks::random_hex(17, rng)),
            subnet_id: subnet.id.clone(),
            subnet_cidr: subnet.cidr.clone(),
            availability_zone: subnet.zone.name.clone(),
            private_ipv4: ip,
            mac: format!("0a:58:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]),
            security_groups: placement.security_groups.clone(),
            vpc_cidr: placement.vpc_cidr.clone(),
        });
    }
    let names: Vec<&str> = order.iter().map(|s| s.id.as_str()).collect();
    Err(format!("No free IPv4 addresses are left in subnets [{}].", names.join(", ")))
}

/// The lowest address of the subnet no live task of `scope` holds.
fn free_address(state: &State, scope: &Scope, subnet: &Subnet) -> Option<Ipv4Addr> {
    let block = Ipv4Block::parse(&subnet.cidr).ok()?;
    let used: std::collections::HashSet<Ipv4Addr> = state
        .tasks()
        .values()
        .filter(|t| &t.scope == scope && t.holds_resources())
        .filter_map(|t| t.eni.as_ref())
        .filter(|e| e.subnet_id == subnet.id)
        .map(|e| e.private_ipv4)
        .collect();
    // `hosts()` already leaves out the network and broadcast addresses.
    block.hosts().skip(RESERVED_LOW as usize - 1).find(|ip| !used.contains(ip))
}

/// The gateway of a subnet: its first host address.
pub(crate) fn gateway(cidr: &str) -> Option<Ipv4Addr> {
    Ipv4Block::parse(cidr).ok()?.hosts().next()
}
