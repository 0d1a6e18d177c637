//! The minimal EC2 API (query protocol, version 2016-11-15): the default VPC, its
//! subnets and security group, and the availability zones, with the filters commonly
//! used on them. Everything is read-only.

use axum::response::Response;

use control_plane::ec2::{Network, Subnet, Zone};
use control_plane::ecs::Caller;
use elb::glob::Glob;

use crate::query::{ec2_ok, Params, Xml};
use crate::{Api, ApiError};

/// One `Filter.N`: a name and values with `*` and `?` wildcards; any value may match.
struct Filter {
    name: String,
    values: Vec<Glob>,
}

fn filters(p: &Params) -> Result<Vec<Filter>, ApiError> {
    p.ec2_structs("Filter")?
        .into_iter()
        .map(|f| {
            let name = f.required("Name")?;
            let values = f.ec2_list("Value")?.iter().map(|v| Glob::new(v, false)).collect();
            Ok(Filter { name, values })
        })
        .collect()
}

fn invalid_filter(name: &str) -> ApiError {
    ApiError::bad_request("InvalidParameterValue", format!("The filter '{name}' is invalid"))
}

/// Whether `facts` (filter name → the resource's values for it) satisfy every filter.
/// A filter this resource does not know is an error, as in EC2.
fn keep(filters: &[Filter], facts: &[(&str, Vec<String>)]) -> Result<bool, ApiError> {
    for f in filters {
        let Some((_, have)) = facts.iter().find(|(n, _)| *n == f.name) else {
            return Err(invalid_filter(&f.name));
        };
        if !f.values.iter().any(|g| have.iter().any(|v| g.matches(v))) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn one(v: impl Into<String>) -> Vec<String> {
    vec![v.into()]
}

pub(crate) fn dispatch(api: &Api, caller: &Caller, action: &str, p: &Params, id: &str) -> Result<Response, ApiError> {
    let net = api.control.elb.network(&caller.scope);
    match action {
        "DescribeVpcs" => {
            let ids = p.ec2_list("VpcId")?;
            for v in &ids {
                if *v != net.vpc_id {
                    return Err(ApiError::bad_request("InvalidVpcID.NotFound", format!("The vpc ID '{v}' does not exist")));
                }
            }
            let fs = filters(p)?;
            let facts = [
                ("vpc-id", one(&net.vpc_id)),
                ("is-default", one("true")),
                ("isDefault", one("true")),
                ("cidr", one(net.cidr.clone())),
                ("cidr-block-association.cidr-block", one(net.cidr.clone())),
                ("state", one("available")),
                ("owner-id", one(&net.owner)),
                ("dhcp-options-id", one(&net.dhcp_options_id)),
            ];
            let show = keep(&fs, &facts)?;
            Ok(ec2_ok(action, id, |x| {
                x.list("vpcSet", "item", show.then_some(&net), vpc_xml);
            }))
        }
        "DescribeSubnets" => {
            let ids = p.ec2_list("SubnetId")?;
            for s in &ids {
                if net.subnet(s).is_none() {
                    return Err(ApiError::bad_request("InvalidSubnetID.NotFound", format!("The subnet ID '{s}' does not exist")));
                }
            }
            let fs = filters(p)?;
            let mut shown = Vec::new();
            for s in net.subnets.iter().filter(|s| ids.is_empty() || ids.contains(&s.id)) {
                let facts = [
                    ("subnet-id", one(&s.id)),
                    ("vpc-id", one(&net.vpc_id)),
                    ("default-for-az", one("true")),
                    ("defaultForAz", one("true")),
                    ("availability-zone", one(&s.zone.name)),
                    ("availabilityZone", one(&s.zone.name)),
                    ("availability-zone-id", one(&s.zone.zone_id)),
                    ("cidr-block", one(&s.cidr)),
                    ("cidrBlock", one(&s.cidr)),
                    ("cidr", one(&s.cidr)),
                    ("state", one("available")),
                    ("owner-id", one(&net.owner)),
                    ("map-public-ip-on-launch", one("true")),
                ];
                if keep(&fs, &facts)? {
                    shown.push(s);
                }
            }
            Ok(ec2_ok(action, id, |x| {
                x.list("subnetSet", "item", shown, |x, s| subnet_xml(x, &net, s));
            }))
        }
        "DescribeSecurityGroups" => {
            let ids = p.ec2_list("GroupId")?;
            let names = p.ec2_list("GroupName")?;
            for g in &ids {
                if *g != net.security_group_id {
                    return Err(ApiError::bad_request("InvalidGroup.NotFound", format!("The security group '{g}' does not exist")));
                }
            }
            for n in &names {
                if n != "default" {
                    return Err(ApiError::bad_request(
                        "InvalidGroup.NotFound",
                        format!("The security group '{n}' does not exist in default VPC '{}'", net.vpc_id),
                    ));
                }
            }
            let fs = filters(p)?;
            let facts = [
                ("group-id", one(&net.security_group_id)),
                ("group-name", one("default")),
                ("vpc-id", one(&net.vpc_id)),
                ("owner-id", one(&net.owner)),
                ("description", one("default VPC security group")),
            ];
            let show = keep(&fs, &facts)?;
            Ok(ec2_ok(action, id, |x| {
                x.list("securityGroupInfo", "item", show.then_some(&net), sg_xml);
            }))
        }
        "DescribeAvailabilityZones" => {
            let names = p.ec2_list("ZoneName")?;
            let zone_ids = p.ec2_list("ZoneId")?;
            for n in &names {
                if !net.zones().any(|z| z.name == *n) {
                    return Err(ApiError::bad_request(
                        "InvalidParameterValue",
                        format!("The availability zone '{n}' is not available in this region (berth up --availability-zones sets them)"),
                    ));
                }
            }
            let fs = filters(p)?;
            let mut shown = Vec::new();
            for z in net.zones() {
                if !names.is_empty() && !names.contains(&z.name) || !zone_ids.is_empty() && !zone_ids.contains(&z.zone_id) {
                    continue;
                }
                let facts = [
                    ("zone-name", one(&z.name)),
                    ("zone-id", one(&z.zone_id)),
                    ("region-name", one(&net.region)),
                    ("state", one("available")),
                    ("zone-type", one("availability-zone")),
                    ("group-name", one(&net.region)),
                    ("opt-in-status", one("opt-in-not-required")),
                ];
                if keep(&fs, &facts)? {
                    shown.push(z);
                }
            }
            Ok(ec2_ok(action, id, |x| {
                x.list("availabilityZoneInfo", "item", shown, |x, z| zone_xml(x, &net, z));
            }))
        }
        a => Err(ApiError::bad_request(
            "InvalidAction",
            format!("Berth's EC2 API offers DescribeVpcs, DescribeSubnets, DescribeSecurityGroups and DescribeAvailabilityZones, not '{a}'."),
        )),
    }
}

fn vpc_xml(x: &mut Xml, net: &Network) {
    x.text("cidrBlock", &net.cidr)
        .text("dhcpOptionsId", &net.dhcp_options_id)
        .text("state", "available")
        .text("vpcId", &net.vpc_id)
        .text("ownerId", &net.owner)
        .text("instanceTenancy", "default")
        .list("cidrBlockAssociationSet", "item", [()], |x, ()| {
            x.text("associationId", format!("vpc-cidr-assoc-{}", &net.vpc_id[4..])).text("cidrBlock", &net.cidr).elem(
                "cidrBlockState",
                |x| {
                    x.text("state", "associated");
                },
            );
        })
        .text("isDefault", "true");
}

fn subnet_xml(x: &mut Xml, net: &Network, s: &Subnet) {
    x.text("availabilityZone", &s.zone.name)
        .text("availabilityZoneId", &s.zone.zone_id)
        // A /20 holds 4096 addresses; AWS keeps five of each subnet for itself.
        .text("availableIpAddressCount", "4091")
        .text("cidrBlock", &s.cidr)
        .text("defaultForAz", "true")
        .text("mapPublicIpOnLaunch", "true")
        .text("state", "available")
        .text("subnetId", &s.id)
        .text("vpcId", &net.vpc_id)
        .text("ownerId", &net.owner)
        .text("assignIpv6AddressOnCreation", "false")
        .elem("ipv6CidrBlockAssociationSet", |_| {})
        .text("subnetArn", format!("arn:aws:ec2:{}:{}:subnet/{}", net.region, net.owner, s.id));
}

fn sg_xml(x: &mut Xml, net: &Network) {
    x.text("ownerId", &net.owner)
        .text("groupId", &net.security_group_id)
        .text("groupName", "default")
        .text("groupDescription", "default VPC security group")
        .text("vpcId", &net.vpc_id)
        .list("ipPermissions", "item", [()], |x, ()| {
            x.text("ipProtocol", "-1")
                .list("groups", "item", [()], |x, ()| {
                    x.text("groupId", &net.security_group_id).text("userId", &net.owner);
                })
                .elem("ipRanges", |_| {});
        })
        .list("ipPermissionsEgress", "item", [()], |x, ()| {
            x.text("ipProtocol", "-1").list("ipRanges", "item", [()], |x, ()| {
                x.text("cidrIp", "0.0.0.0/0");
            });
        });
}

fn zone_xml(x: &mut Xml, net: &Network, z: &Zone) {
    x.text("zoneName", &z.name)
        .text("zoneState", "available")
        .text("regionName", &net.region)
        .text("zoneId", &z.zone_id)
        .text("zoneType", "availability-zone")
        .text("optInStatus", "opt-in-not-required")
        .text("groupName", &net.region)
        .text("networkBorderGroup", &net.region)
        .elem("messageSet", |_| {});
}
