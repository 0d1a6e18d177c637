//! VPCs and subnets: the default ones every account sees (derived, see [`Network`]) and
//! those an account creates (stored, tables `ec2.vpcs` and `ec2.subnets`), their tags and
//! the VPC's DNS attributes.
//!
//! A default VPC or subnet is stored only once something of it changes (a tag, an
//! attribute); only that part is read from its record, the rest stays derived from the
//! settings, so that `--vpc-cidr` and `--availability-zones` still move it.
//!
//! Decisions (where a VPC and Docker differ): every subnet, created or default, becomes a
//! Docker bridge network on each engine that runs one of its tasks, so the blocks of all
//! subnets in use on one engine must not overlap, across VPCs and accounts. EC2 allows
//! overlapping VPCs; Berth does too, and the agent names the clash when a task would need
//! both networks at once. The default VPC and its default subnets cannot be deleted: they
//! are derived, not stored (`OperationNotPermitted`).

use std::sync::Arc;

use model::ec2::{Ipv4Block, Subnet, Zone};
use model::Scope;

use super::security_groups::{check_tags, fail, new_id, put as put_group, MAX_TAGS};
use super::{Ec2, Network};
use crate::error::Result;
use crate::state::ec2::{allow_all_out, Permission, SecurityGroup, SgRule, Source};
pub use crate::state::ec2::{StoredSubnet, Vpc};
use crate::state::{State, Touched};
use crate::Ops;

/// VPCs one region may hold, the default one included (EC2's default quota).
pub const MAX_VPCS: usize = 5;
/// Subnets one VPC may hold (EC2's default quota).
pub const MAX_SUBNETS: usize = 200;

/// The default VPC as derived from the settings, with what is stored of it.
fn default_vpc(state: &State, scope: &Scope, net: &Network) -> Vpc {
    let stored = state.ec2.vpcs.get(&(scope.clone(), net.vpc_id.clone()));
    Vpc {
        scope: scope.clone(),
        id: net.vpc_id.clone(),
        cidr: net.cidr.clone(),
        is_default: true,
        dhcp_options_id: net.dhcp_options_id.clone(),
        security_group_id: net.security_group_id.clone(),
        enable_dns_support: stored.is_none_or(|v| v.enable_dns_support),
        enable_dns_hostnames: stored.is_none_or(|v| v.enable_dns_hostnames),
        enable_network_address_usage_metrics: stored.is_some_and(|v| v.enable_network_address_usage_metrics),
        tags: stored.map(|v| v.tags.clone()).unwrap_or_default(),
    }
}

/// Every VPC of `scope`: the default one first, then the created ones by id.
pub fn vpcs(state: &State, scope: &Scope, net: &Network) -> Vec<Arc<Vpc>> {
    let created = state.ec2.vpcs.iter().filter(|((s, id), _)| s == scope && *id != net.vpc_id).map(|(_, v)| v.clone());
    std::iter::once(Arc::new(default_vpc(state, scope, net))).chain(created).collect()
}

/// Every subnet of `scope`: the default ones (in zone order) first, then the created
/// ones by id.
pub fn subnets(state: &State, scope: &Scope, net: &Network) -> Vec<Arc<StoredSubnet>> {
    let defaults = net.subnets.iter().map(|s| {
        let tags = state.ec2.subnets.get(&(scope.clone(), s.id.clone())).map(|v| v.tags.clone()).unwrap_or_default();
        Arc::new(StoredSubnet {
            scope: scope.clone(),
            id: s.id.clone(),
            vpc_id: net.vpc_id.clone(),
            cidr: s.cidr.clone(),
            zone: s.zone.name.clone(),
            zone_id: s.zone.zone_id.clone(),
            default_for_az: true,
            map_public_ip_on_launch: true,
            tags,
        })
    });
    let created =
        state.ec2.subnets.iter().filter(|((s, id), _)| s == scope && net.subnet(id).is_none()).map(|(_, v)| v.clone());
    defaults.chain(created).collect()
}

/// The VPC `id`, or EC2's `InvalidVpcID.NotFound`.
pub fn find_vpc(state: &State, scope: &Scope, net: &Network, id: &str) -> Result<Arc<Vpc>> {
    match vpcs(state, scope, net).into_iter().find(|v| v.id == id) {
        Some(v) => Ok(v),
        None => fail("InvalidVpcID.NotFound", format!("The vpc ID '{id}' does not exist")),
    }
}

/// The subnet `id` of `scope`, if it exists.
pub fn find_subnet(state: &State, scope: &Scope, net: &Network, id: &str) -> Option<Arc<StoredSubnet>> {
    subnets(state, scope, net).into_iter().find(|s| s.id == id)
}

/// A subnet as awsvpc placement sees it.
pub fn placement_subnet(s: &StoredSubnet) -> Subnet {
    Subnet { id: s.id.clone(), zone: Zone { name: s.zone.clone(), zone_id: s.zone_id.clone() }, cidr: s.cidr.clone() }
}

/// A subnet's free addresses as EC2 counts them: its size less the five AWS reserves and
/// the addresses live tasks hold.
pub fn available_addresses(state: &State, s: &StoredSubnet) -> u64 {
    let size = Ipv4Block::parse_exact(&s.cidr).map_or(0, |b| b.size());
    let used = state
        .tasks()
        .values()
        .filter(|t| t.scope == s.scope && t.holds_resources())
        .filter(|t| t.eni.as_ref().is_some_and(|e| e.subnet_id == s.id))
        .count() as u64;
    size.saturating_sub(5 + used)
}

/// A VPC or subnet block given to CreateVpc or CreateSubnet: host bits zero, /16 to /28.
fn block(cidr: &str, range_code: &'static str) -> Result<Ipv4Block> {
    let Some(b) = Ipv4Block::parse_exact(cidr) else {
        return fail(
            "InvalidParameterValue",
            format!("Value ({cidr}) for parameter cidrBlock is invalid. This is not a valid CIDR block."),
        );
    };
    if !(16..=28).contains(&b.prefix) {
        return fail(range_code, format!("The CIDR '{cidr}' is invalid."));
    }
    Ok(b)
}

/// A VPC attribute that ModifyVpcAttribute sets and DescribeVpcAttribute reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VpcAttribute {
    DnsSupport,
    DnsHostnames,
    NetworkAddressUsageMetrics,
}

impl VpcAttribute {
    /// EC2's name of the attribute (`enableDnsSupport`, ...).
    pub fn parse(name: &str) -> Result<VpcAttribute> {
        Ok(match name {
            "enableDnsSupport" => VpcAttribute::DnsSupport,
            "enableDnsHostnames" => VpcAttribute::DnsHostnames,
            "enableNetworkAddressUsageMetrics" => VpcAttribute::NetworkAddressUsageMetrics,
            other => {
                return fail(
                    "InvalidParameterValue",
                    format!("Value ({other}) for parameter attribute is invalid. Unknown attribute."),
                )
            }
        })
    }

    pub fn of(self, v: &Vpc) -> bool {
        match self {
            VpcAttribute::DnsSupport => v.enable_dns_support,
            VpcAttribute::DnsHostnames => v.enable_dns_hostnames,
            VpcAttribute::NetworkAddressUsageMetrics => v.enable_network_address_usage_metrics,
        }
    }

    fn set(self, v: &mut Vpc, on: bool) {
        match self {
            VpcAttribute::DnsSupport => v.enable_dns_support = on,
            VpcAttribute::DnsHostnames => v.enable_dns_hostnames = on,
            VpcAttribute::NetworkAddressUsageMetrics => v.enable_network_address_usage_metrics = on,
        }
    }
}

/// A new subnet as CreateSubnet asks for it.
#[derive(Debug, Clone)]
pub struct NewSubnet {
    pub vpc_id: String,
    pub cidr: String,
    /// A zone name or zone id; the first zone when neither is given.
    pub zone: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// A resource CreateTags and DeleteTags act on.
enum Taggable {
    Vpc(Arc<Vpc>),
    Subnet(Arc<StoredSubnet>),
    Group(Arc<SecurityGroup>),
}

fn taggable(state: &State, scope: &Scope, net: &Network, id: &str) -> Result<Taggable> {
    let kind = id.split_once('-').map(|(k, _)| k).unwrap_or_default();
    match kind {
        "vpc" => Ok(Taggable::Vpc(find_vpc(state, scope, net, id)?)),
        "subnet" => match find_subnet(state, scope, net, id) {
            Some(s) => Ok(Taggable::Subnet(s)),
            None => fail("InvalidSubnetID.NotFound", format!("The subnet ID '{id}' does not exist")),
        },
        "sg" => Ok(Taggable::Group(super::security_groups::find_group(
            state,
            scope,
            net,
            &super::security_groups::GroupRef::Id(id.to_string()),
        )?)),
        _ => fail("InvalidID", format!("The ID '{id}' is not valid (Berth tags VPCs, subnets and security groups)")),
    }
}

/// Sets or removes tags on the stored copy of `r`.
fn retag(
    txn: &mut crate::Txn<'_>,
    r: Taggable,
    change: impl Fn(&mut Vec<(String, String)>) -> Result<()>,
) -> Result<()> {
    match r {
        Taggable::Vpc(v) => {
            let mut v = v.as_ref().clone();
            change(&mut v.tags)?;
            put_vpc(txn, v);
        }
        Taggable::Subnet(s) => {
            let mut s = s.as_ref().clone();
            change(&mut s.tags)?;
            put_subnet(txn, s);
        }
        Taggable::Group(g) => {
            let mut g = g.as_ref().clone();
            change(&mut g.tags)?;
            put_group(txn, g);
        }
    }
    Ok(())
}

fn put_vpc(txn: &mut crate::Txn<'_>, v: Vpc) {
    txn.touch(Touched::Vpc(v.scope.clone(), v.id.clone()));
    txn.state.ec2.vpcs.insert((v.scope.clone(), v.id.clone()), Arc::new(v));
}

fn put_subnet(txn: &mut crate::Txn<'_>, s: StoredSubnet) {
    txn.touch(Touched::Subnet(s.scope.clone(), s.id.clone()));
    txn.state.ec2.subnets.insert((s.scope.clone(), s.id.clone()), Arc::new(s));
}

/// The tasks of `scope` whose interface is still in subnet `id`.
fn interfaces_in(state: &State, scope: &Scope, id: &str) -> usize {
    state
        .tasks()
        .values()
        .filter(|t| &t.scope == scope && t.holds_resources())
        .filter(|t| t.eni.as_ref().is_some_and(|e| e.subnet_id == id))
        .count()
}

impl Ops<'_, Ec2> {
    /// CreateVpc: a /16 to /28 block, with its own `default` security group as EC2 makes
    /// one (all traffic from its members in, everything out).
    pub async fn create_vpc(&self, scope: &Scope, cidr: &str, tags: Vec<(String, String)>) -> Result<Arc<Vpc>> {
        let b = block(cidr, "InvalidVpc.Range")?;
        check_tags(&tags)?;
        let net = self.elb.network(scope);
        let scope = scope.clone();
        self.write(move |txn| {
            if vpcs(txn.state, &scope, &net).len() >= MAX_VPCS {
                return fail("VpcLimitExceeded", "The maximum number of VPCs has been reached.");
            }
            let group_id = new_id("sg");
            let v = Vpc {
                scope: scope.clone(),
                id: new_id("vpc"),
                cidr: b.to_string(),
                is_default: false,
                dhcp_options_id: net.dhcp_options_id.clone(),
                security_group_id: group_id.clone(),
                enable_dns_support: true,
                enable_dns_hostnames: false,
                enable_network_address_usage_metrics: false,
                tags,
            };
            let group = SecurityGroup {
                scope: scope.clone(),
                id: group_id.clone(),
                name: "default".into(),
                description: "default VPC security group".into(),
                vpc_id: v.id.clone(),
                tags: vec![],
                ingress: vec![SgRule {
                    id: new_id("sgr"),
                    permission: Permission {
                        protocol: super::security_groups::IpProtocol::All,
                        from_port: -1,
                        to_port: -1,
                        source: Source::Group(group_id),
                    },
                    description: None,
                }],
                egress: vec![allow_all_out(new_id("sgr"))],
            };
            put_group(txn, group);
            put_vpc(txn, v.clone());
            Ok(Arc::new(v))
        })
        .await
    }

    /// DeleteVpc: refused while it has subnets or security groups other than its
    /// `default` one (EC2's `DependencyViolation`); the default group goes with it.
    pub async fn delete_vpc(&self, scope: &Scope, id: &str) -> Result<()> {
        let net = self.elb.network(scope);
        let scope = scope.clone();
        let id = id.to_string();
        self.write(move |txn| {
            let v = find_vpc(txn.state, &scope, &net, &id)?;
            if v.is_default {
                return fail(
                    "OperationNotPermitted",
                    format!("Berth's default VPC {id} is derived from its settings and cannot be deleted"),
                );
            }
            let groups = super::security_groups::security_groups(txn.state, &scope, &net);
            let in_vpc: Vec<_> = groups.iter().filter(|g| g.vpc_id == id).collect();
            let has_subnets = subnets(txn.state, &scope, &net).iter().any(|s| s.vpc_id == id);
            if has_subnets || in_vpc.iter().any(|g| !g.is_default()) {
                return fail("DependencyViolation", format!("The vpc '{id}' has dependencies and cannot be deleted."));
            }
            for g in in_vpc {
                txn.touch(Touched::SecurityGroup(scope.clone(), g.id.clone()));
                txn.state.ec2.security_groups.remove(&(scope.clone(), g.id.clone()));
            }
            txn.touch(Touched::Vpc(scope.clone(), id.clone()));
            txn.state.ec2.vpcs.remove(&(scope.clone(), id.clone()));
            Ok(())
        })
        .await
    }

    /// CreateSubnet: inside its VPC's block, overlapping none of the VPC's subnets, in
    /// one of the deployment's zones.
    pub async fn create_subnet(&self, scope: &Scope, new: NewSubnet) -> Result<Arc<StoredSubnet>> {
        let b = block(&new.cidr, "InvalidSubnet.Range")?;
        check_tags(&new.tags)?;
        let net = self.elb.network(scope);
        let zone = match &new.zone {
            None => net.subnets[0].zone.clone(),
            Some(z) => match net.zones().find(|x| x.name == *z || x.zone_id == *z) {
                Some(found) => found.clone(),
                None => {
                    let names: Vec<&str> = net.zones().map(|z| z.name.as_str()).collect();
                    return fail(
                        "InvalidParameterValue",
                        format!(
                            "Value ({z}) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: {}.",
                            names.join(", ")
                        ),
                    );
                }
            },
        };
        let scope = scope.clone();
        self.write(move |txn| {
            let vpc = find_vpc(txn.state, &scope, &net, &new.vpc_id)?;
            let vpc_block = Ipv4Block::parse_exact(&vpc.cidr).expect("a VPC's block is valid");
            if !vpc_block.covers(&b) {
                return fail("InvalidSubnet.Range", format!("The CIDR '{}' is invalid.", new.cidr));
            }
            let siblings: Vec<_> =
                subnets(txn.state, &scope, &net).into_iter().filter(|s| s.vpc_id == vpc.id).collect();
            if siblings.iter().any(|s| Ipv4Block::parse_exact(&s.cidr).is_some_and(|o| o.overlaps(&b))) {
                return fail(
                    "InvalidSubnet.Conflict",
                    format!("The CIDR '{}' conflicts with another subnet", new.cidr),
                );
            }
            if siblings.len() >= MAX_SUBNETS {
                return fail("SubnetLimitExceeded", "The maximum number of subnets has been reached.");
            }
            let s = StoredSubnet {
                scope: scope.clone(),
                id: new_id("subnet"),
                vpc_id: vpc.id.clone(),
                cidr: b.to_string(),
                zone: zone.name.clone(),
                zone_id: zone.zone_id.clone(),
                default_for_az: false,
                map_public_ip_on_launch: false,
                tags: new.tags,
            };
            put_subnet(txn, s.clone());
            Ok(Arc::new(s))
        })
        .await
    }

    /// DeleteSubnet: refused while a task's interface is in it (`DependencyViolation`).
    pub async fn delete_subnet(&self, scope: &Scope, id: &str) -> Result<()> {
        let net = self.elb.network(scope);
        let scope = scope.clone();
        let id = id.to_string();
        self.write(move |txn| {
            let Some(s) = find_subnet(txn.state, &scope, &net, &id) else {
                return fail("InvalidSubnetID.NotFound", format!("The subnet ID '{id}' does not exist"));
            };
            if s.default_for_az {
                return fail(
                    "OperationNotPermitted",
                    format!("Berth's default subnet {id} is derived from its settings and cannot be deleted"),
                );
            }
            if interfaces_in(txn.state, &scope, &id) > 0 {
                return fail(
                    "DependencyViolation",
                    format!("The subnet '{id}' has dependencies and cannot be deleted."),
                );
            }
            txn.touch(Touched::Subnet(scope.clone(), id.clone()));
            txn.state.ec2.subnets.remove(&(scope.clone(), id.clone()));
            Ok(())
        })
        .await
    }

    /// ModifyVpcAttribute: one attribute at a time, as EC2 takes it.
    pub async fn modify_vpc_attribute(&self, scope: &Scope, id: &str, attribute: VpcAttribute, on: bool) -> Result<()> {
        let net = self.elb.network(scope);
        let scope = scope.clone();
        let id = id.to_string();
        self.write(move |txn| {
            let mut v = find_vpc(txn.state, &scope, &net, &id)?.as_ref().clone();
            attribute.set(&mut v, on);
            put_vpc(txn, v);
            Ok(())
        })
        .await
    }

    /// CreateTags: every resource gets every tag (a key it has is overwritten), or none does.
    pub async fn create_tags(&self, scope: &Scope, resources: Vec<String>, tags: Vec<(String, String)>) -> Result<()> {
        check_tags(&tags)?;
        let net = self.elb.network(scope);
        let scope = scope.clone();
        self.write(move |txn| {
            for id in &resources {
                let r = taggable(txn.state, &scope, &net, id)?;
                retag(txn, r, |have| {
                    for (k, v) in &tags {
                        match have.iter_mut().find(|(hk, _)| hk == k) {
                            Some(slot) => slot.1 = v.clone(),
                            None => have.push((k.clone(), v.clone())),
                        }
                    }
                    if have.len() > MAX_TAGS {
                        return fail(
                            "TagLimitExceeded",
                            format!("The maximum number of tags per resource is {MAX_TAGS}"),
                        );
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })
        .await
    }

    /// DeleteTags: a key with no value removes the tag whatever its value; with a value,
    /// only when it matches. No tags given removes them all.
    pub async fn delete_tags(
        &self,
        scope: &Scope,
        resources: Vec<String>,
        tags: Vec<(String, Option<String>)>,
    ) -> Result<()> {
        let net = self.elb.network(scope);
        let scope = scope.clone();
        self.write(move |txn| {
            for id in &resources {
                let r = taggable(txn.state, &scope, &net, id)?;
                retag(txn, r, |have| {
                    if tags.is_empty() {
                        have.clear();
                    }
                    have.retain(|(k, v)| !tags.iter().any(|(dk, dv)| dk == k && dv.as_ref().is_none_or(|dv| dv == v)));
                    Ok(())
                })?;
            }
            Ok(())
        })
        .await
    }
}
