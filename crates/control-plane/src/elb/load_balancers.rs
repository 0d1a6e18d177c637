//! CreateLoadBalancer, DescribeLoadBalancers, DeleteLoadBalancer and the load balancer
//! attributes.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use elb::attributes::LbAttributes;
use elb::error::enums;
use elb::names::{parse_arn, ElbArn, LbName};
use elb::resources::{merge_tags, LoadBalancer, Scheme, ZoneSubnet};
use elb::{ElbError, Fault};
use model::tags::Tags;
use model::Scope;

use crate::ec2::security_groups::{find_group, GroupRef};
use crate::ec2::Network;

use super::{fail, new_id, ElbKey, Paging, MAX_LOAD_BALANCERS, MAX_SECURITY_GROUPS};
use crate::elb::Elbv2;
use crate::error::Result;
use crate::state::{State, Touched};
use crate::Caller;
use crate::Ops;

/// What `CreateLoadBalancer` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewLoadBalancer {
    pub name: String,
    /// From `Subnets` or `SubnetMappings`.
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub scheme: Option<String>,
    pub lb_type: Option<String>,
    pub ip_address_type: Option<String>,
    pub tags: Vec<(String, String)>,
}

pub(crate) fn lb_not_found(what: &str) -> crate::Error {
    crate::Error::Elb(elb::ElbError::new(Fault::LoadBalancerNotFound, format!("Load balancer '{what}' not found")))
}

/// The load balancer an ARN names, if it is one of `scope`'s.
pub(crate) fn find_lb(state: &State, scope: &Scope, arn: &str) -> Result<Arc<LoadBalancer>> {
    let ElbArn::LoadBalancer { lb } = parse_arn(scope, arn, Fault::LoadBalancerNotFound)? else {
        return fail(Fault::Validation, format!("'{arn}' is not a load balancer ARN"));
    };
    state
        .elb
        .load_balancers
        .get(&(scope.clone(), lb))
        .filter(|l| l.arn() == arn)
        .cloned()
        .ok_or_else(|| lb_not_found(arn))
}

/// The zones of `subnets`: each must exist, in a zone of its own, at least two.
fn zones_of(network: &Network, subnets: &[String]) -> Result<Vec<ZoneSubnet>> {
    let mut zones: Vec<ZoneSubnet> = Vec::new();
    for id in subnets {
        let Some(subnet) = network.subnet(id) else {
            return fail(Fault::SubnetNotFound, format!("The subnet ID '{id}' is not valid"));
        };
        if zones.iter().any(|z| z.zone == subnet.zone.name) {
            return fail(
                Fault::InvalidConfigurationRequest,
                format!(
                    "A load balancer cannot be attached to multiple subnets in the same Availability Zone ({}).",
                    subnet.zone.name
                ),
            );
        }
        zones.push(ZoneSubnet { zone: subnet.zone.name.clone(), subnet_id: id.clone() });
    }
    if zones.len() < 2 {
        return fail(
            Fault::InvalidConfigurationRequest,
            "At least two subnets in two different Availability Zones must be specified (`aws ec2 describe-subnets` lists them).",
        );
    }
    zones.sort_by(|a, b| a.zone.cmp(&b.zone));
    Ok(zones)
}

/// Security groups given by a request: one to five groups of the load balancer's VPC,
/// its default group or any other the account created there.
fn security_groups_of(state: &State, scope: &Scope, network: &Network, groups: Vec<String>) -> Result<Vec<String>> {
    if groups.is_empty() {
        return fail(Fault::Validation, "Give at least one security group.");
    }
    if groups.len() > MAX_SECURITY_GROUPS {
        return fail(
            Fault::InvalidConfigurationRequest,
            format!("A load balancer can have at most {MAX_SECURITY_GROUPS} security groups."),
        );
    }
    for sg in &groups {
        let found = find_group(state, scope, network, &GroupRef::Id(sg.clone()));
        if !found.is_ok_and(|g| g.vpc_id == network.vpc_id) {
            return fail(
                Fault::InvalidSecurityGroup,
                format!("Security group '{sg}' does not exist in VPC '{}'", network.vpc_id),
            );
        }
    }
    Ok(groups)
}

fn check_ip_address_type(t: Option<&str>) -> Result<()> {
    match t {
        None | Some("ipv4") => Ok(()),
        Some(t) if !enums::IP_ADDRESS_TYPE.contains(&t) => {
            Err(ElbError::not_in_enum("ipAddressType", t, enums::IP_ADDRESS_TYPE).into())
        }
        Some(t) => fail(
            Fault::InvalidConfigurationRequest,
            format!("IP address type '{t}' is not supported by Berth; use ipv4."),
        ),
    }
}

impl Ops<'_, Elbv2> {
    pub async fn create_load_balancer(&self, caller: &Caller, req: NewLoadBalancer) -> Result<LoadBalancer> {
        let name = LbName::parse(&req.name)?;
        match req.lb_type.as_deref() {
            None | Some("application") => {}
            Some(t @ ("network" | "gateway")) => {
                return fail(
                    Fault::InvalidConfigurationRequest,
                    format!("Berth offers Application Load Balancers only, not '{t}'."),
                )
            }
            Some(t) => return Err(ElbError::not_in_enum("type", t, enums::LOAD_BALANCER_TYPE).into()),
        }
        check_ip_address_type(req.ip_address_type.as_deref())?;
        let scheme = req.scheme.as_deref().map(Scheme::parse).transpose()?.unwrap_or(Scheme::InternetFacing);
        let network = self.elb.network(&caller.scope);
        let zones = zones_of(&network, &req.subnets)?;
        let mut tags = Tags::default();
        merge_tags(&mut tags, req.tags)?;
        let scope = caller.scope.clone();
        let pool = self.elb.network_config().lb_pool;
        let lb = self
            .change(move |txn| {
                let security_groups = if req.security_groups.is_empty() {
                    vec![network.security_group_id.clone()]
                } else {
                    security_groups_of(txn.state, &scope, &network, req.security_groups.clone())?
                };
                let existing = txn.state.elb.scoped_load_balancers(&scope).find(|l| l.name == name).cloned();
                if let Some(l) = existing {
                    // CreateLoadBalancer is idempotent: the same request again returns the
                    // load balancer it made.
                    if l.zones == zones && l.scheme == scheme && l.security_groups == security_groups {
                        return Ok(l.as_ref().clone());
                    }
                    return fail(
                        Fault::DuplicateLoadBalancerName,
                        format!("A load balancer with the name '{name}' already exists"),
                    );
                }
                if txn.state.elb.scoped_load_balancers(&scope).count() >= MAX_LOAD_BALANCERS {
                    return fail(
                        Fault::TooManyLoadBalancers,
                        format!("An account can have at most {MAX_LOAD_BALANCERS} load balancers per region."),
                    );
                }
                // Addresses are unique on this machine, across accounts and regions.
                let used: BTreeSet<Ipv4Addr> = txn.state.elb.load_balancers.values().map(|l| l.address).collect();
                let Some(address) = pool.hosts().find(|a| !used.contains(a)) else {
                    return fail(
                        Fault::TooManyLoadBalancers,
                        "The load balancer address pool (--lb-address-pool) is exhausted.",
                    );
                };
                let lb = LoadBalancer {
                    scope: scope.clone(),
                    name,
                    id: new_id(),
                    scheme,
                    vpc_id: network.vpc_id.clone(),
                    zones,
                    security_groups,
                    ip_address_type: "ipv4".into(),
                    address,
                    created: txn.now,
                    attributes: LbAttributes::default(),
                    tags,
                };
                txn.state.elb.load_balancers.insert((scope.clone(), lb.id.clone()), Arc::new(lb.clone()));
                txn.touch(Touched::Elb(ElbKey::LoadBalancer(scope, lb.id.clone())));
                Ok(lb)
            })
            .await?;
        Ok(lb)
    }

    /// Load balancers by ARN or name (each must exist), or all of them by name.
    pub fn describe_load_balancers(
        &self,
        caller: &Caller,
        arns: &[String],
        names: &[String],
        page_size: Option<i32>,
        marker: Option<&str>,
    ) -> Result<(Vec<LoadBalancer>, Option<String>)> {
        let state = self.view();
        let paging = Paging::parse(page_size, marker)?;
        if !arns.is_empty() && !names.is_empty() {
            return fail(Fault::Validation, "Give LoadBalancerArns or Names, not both.");
        }
        let scope = &caller.scope;
        let lbs = super::select::<LoadBalancer>(&state, scope, arns, names)?;
        Ok(paging.take(lbs.into_iter().map(|l| (l.name.to_string(), l.as_ref().clone()))))
    }

    /// Deletes a load balancer with its listeners and rules. Deleting one that does not
    /// exist succeeds, as in ELBv2.
    pub async fn delete_load_balancer(&self, caller: &Caller, arn: String) -> Result<()> {
        let scope = caller.scope.clone();
        if let Err(e) = parse_arn(&scope, &arn, Fault::LoadBalancerNotFound) {
            if e.fault == Fault::Validation {
                return Err(e.into());
            }
            return Ok(());
        }
        self.change(move |txn| {
            let lb = match find_lb(txn.state, &scope, &arn) {
                Ok(lb) => lb,
                Err(_) => return Ok(()),
            };
            if lb.attributes.deletion_protection() {
                return fail(
                    Fault::OperationNotPermitted,
                    format!("Load balancer '{arn}' cannot be deleted because deletion protection is enabled"),
                );
            }
            for l in txn.state.elb.lb_listeners(&scope, &lb.id) {
                super::listeners::remove_listener(txn, &scope, &l.id);
            }
            txn.state.elb.load_balancers.remove(&(scope.clone(), lb.id.clone()));
            txn.touch(Touched::Elb(ElbKey::LoadBalancer(scope.clone(), lb.id.clone())));
            Ok(())
        })
        .await?;
        Ok(())
    }
}

impl Ops<'_, Elbv2> {
    /// Moves a load balancer to other subnets (SetSubnets). Its address stays.
    pub async fn set_subnets(
        &self,
        caller: &Caller,
        arn: String,
        subnets: Vec<String>,
        ip_address_type: Option<String>,
    ) -> Result<LoadBalancer> {
        check_ip_address_type(ip_address_type.as_deref())?;
        let zones = zones_of(&self.elb.network(&caller.scope), &subnets)?;
        self.change_lb(caller, arn, move |_, _, lb| {
            lb.zones = zones;
            Ok(())
        })
        .await
    }

    /// Replaces a load balancer's security groups (SetSecurityGroups).
    pub async fn set_security_groups(&self, caller: &Caller, arn: String, groups: Vec<String>) -> Result<LoadBalancer> {
        let network = self.elb.network(&caller.scope);
        self.change_lb(caller, arn, move |state, scope, lb| {
            lb.security_groups = security_groups_of(state, scope, &network, groups)?;
            Ok(())
        })
        .await
    }

    /// SetIpAddressType: Berth's load balancers are IPv4 only.
    pub async fn set_ip_address_type(&self, caller: &Caller, arn: String, t: String) -> Result<LoadBalancer> {
        check_ip_address_type(Some(&t))?;
        self.change_lb(caller, arn, |_, _, _| Ok(())).await
    }

    async fn change_lb(
        &self,
        caller: &Caller,
        arn: String,
        change: impl FnOnce(&State, &Scope, &mut LoadBalancer) -> Result<()> + Send + 'static,
    ) -> Result<LoadBalancer> {
        let scope = caller.scope.clone();
        self.write(move |txn| {
            let lb = find_lb(txn.state, &scope, &arn)?;
            let mut next = lb.as_ref().clone();
            change(txn.state, &scope, &mut next)?;
            txn.state.elb.load_balancers.insert((scope.clone(), next.id.clone()), Arc::new(next.clone()));
            txn.touch(Touched::Elb(ElbKey::LoadBalancer(scope, next.id.clone())));
            Ok(next)
        })
        .await
    }
}
