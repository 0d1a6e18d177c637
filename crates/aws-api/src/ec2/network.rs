//! EC2's VPC calls: VPCs and subnets (described, created, deleted), a VPC's attributes,
//! tags, the account's attributes, and the internet gateway, route tables and network
//! ACLs a VPC has (derived: the default VPC's as AWS makes them, a created VPC's main
//! route table and default ACL). Translation only; the rules are in
//! `control_plane::ec2::vpcs`.

use axum::response::Response;

use control_plane::ec2::vpcs::{self, NewSubnet, StoredSubnet, Vpc, VpcAttribute};
use control_plane::ec2::{derived_id, Network};
use control_plane::Caller;

use super::{filters, keep, missing, one, tag_list, tag_specifications, tags_xml};
use crate::query::{ec2_ok, Params, Xml};
use crate::{Api, ApiError};

fn not_found(code: &'static str, what: &str, id: &str) -> ApiError {
    ApiError::bad_request(code, format!("The {what} ID '{id}' does not exist"))
}

fn bool_text(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

pub(super) async fn dispatch(
    api: &Api,
    caller: &Caller,
    action: &str,
    p: &Params,
    id: &str,
    net: &Network,
) -> Result<Response, ApiError> {
    let scope = &caller.scope;
    match action {
        "DescribeVpcs" => {
            let view = api.control.view();
            let all = vpcs::vpcs(&view, scope, net);
            let ids = p.ec2_list("VpcId")?;
            if let Some(v) = ids.iter().find(|v| !all.iter().any(|x| x.id == **v)) {
                return Err(not_found("InvalidVpcID.NotFound", "vpc", v));
            }
            let fs = filters(p)?;
            let mut shown = vec![];
            for v in all.iter().filter(|v| ids.is_empty() || ids.contains(&v.id)) {
                let facts = [
                    ("vpc-id", one(&v.id)),
                    ("is-default", one(bool_text(v.is_default))),
                    ("isDefault", one(bool_text(v.is_default))),
                    ("cidr", one(&v.cidr)),
                    ("cidr-block-association.cidr-block", one(&v.cidr)),
                    ("cidr-block-association.state", one("associated")),
                    ("state", one("available")),
                    ("owner-id", one(&net.owner)),
                    ("dhcp-options-id", one(&v.dhcp_options_id)),
                ];
                if keep(&fs, &facts, &v.tags)? {
                    shown.push(v);
                }
            }
            Ok(ec2_ok(action, id, |x| {
                x.list("vpcSet", "item", shown, |x, v| vpc_xml(x, net, v));
            }))
        }
        "DescribeSubnets" => {
            let view = api.control.view();
            let all = vpcs::subnets(&view, scope, net);
            let ids = p.ec2_list("SubnetId")?;
            if let Some(s) = ids.iter().find(|s| !all.iter().any(|x| x.id == **s)) {
                return Err(not_found("InvalidSubnetID.NotFound", "subnet", s));
            }
            let fs = filters(p)?;
            let mut shown = vec![];
            for s in all.iter().filter(|s| ids.is_empty() || ids.contains(&s.id)) {
                let facts = [
                    ("subnet-id", one(&s.id)),
                    ("vpc-id", one(&s.vpc_id)),
                    ("default-for-az", one(bool_text(s.default_for_az))),
                    ("defaultForAz", one(bool_text(s.default_for_az))),
                    ("availability-zone", one(&s.zone)),
                    ("availabilityZone", one(&s.zone)),
                    ("availability-zone-id", one(&s.zone_id)),
                    ("cidr-block", one(&s.cidr)),
                    ("cidrBlock", one(&s.cidr)),
                    ("cidr", one(&s.cidr)),
                    ("state", one("available")),
                    ("owner-id", one(&net.owner)),
                    ("map-public-ip-on-launch", one(bool_text(s.map_public_ip_on_launch))),
                    ("available-ip-address-count", one(vpcs::available_addresses(&view, s).to_string())),
                    ("subnet-arn", one(subnet_arn(net, s))),
                ];
                if keep(&fs, &facts, &s.tags)? {
                    shown.push(s);
                }
            }
            Ok(ec2_ok(action, id, |x| {
                x.list("subnetSet", "item", shown, |x, s| subnet_xml(x, net, s, vpcs::available_addresses(&view, s)));
            }))
        }
        "CreateVpc" => {
            let cidr = p.string("CidrBlock").ok_or_else(|| missing("cidrBlock"))?;
            let tags = tag_specifications(p, "vpc")?;
            let v = api.control.ec2().create_vpc(scope, &cidr, tags).await?;
            Ok(ec2_ok(action, id, |x| {
                x.elem("vpc", |x| vpc_xml(x, net, &v));
            }))
        }
        "DeleteVpc" => {
            let vpc = p.string("VpcId").ok_or_else(|| missing("vpcId"))?;
            api.control.ec2().delete_vpc(scope, &vpc).await?;
            Ok(ec2_ok(action, id, |x| {
                x.text("return", "true");
            }))
        }
        "CreateSubnet" => {
            let new = NewSubnet {
                vpc_id: p.string("VpcId").ok_or_else(|| missing("vpcId"))?,
                cidr: p.string("CidrBlock").ok_or_else(|| missing("cidrBlock"))?,
                zone: p.string("AvailabilityZone").or_else(|| p.string("AvailabilityZoneId")),
                tags: tag_specifications(p, "subnet")?,
            };
            let s = api.control.ec2().create_subnet(scope, new).await?;
            let view = api.control.view();
            Ok(ec2_ok(action, id, |x| {
                x.elem("subnet", |x| subnet_xml(x, net, &s, vpcs::available_addresses(&view, &s)));
            }))
        }
        "DeleteSubnet" => {
            let subnet = p.string("SubnetId").ok_or_else(|| missing("subnetId"))?;
            api.control.ec2().delete_subnet(scope, &subnet).await?;
            Ok(ec2_ok(action, id, |x| {
                x.text("return", "true");
            }))
        }
        "DescribeVpcAttribute" => {
            let vpc = p.string("VpcId").ok_or_else(|| missing("vpcId"))?;
            let name = p.string("Attribute").ok_or_else(|| missing("attribute"))?;
            let attribute = VpcAttribute::parse(&name)?;
            let v = vpcs::find_vpc(&api.control.view(), scope, net, &vpc)?;
            Ok(ec2_ok(action, id, |x| {
                x.text("vpcId", &v.id).elem(&name, |x| {
                    x.text("value", bool_text(attribute.of(&v)));
                });
            }))
        }
        "ModifyVpcAttribute" => {
            let vpc = p.string("VpcId").ok_or_else(|| missing("vpcId"))?;
            let mut given = vec![];
            for (member, attribute) in [
                ("EnableDnsSupport", VpcAttribute::DnsSupport),
                ("EnableDnsHostnames", VpcAttribute::DnsHostnames),
                ("EnableNetworkAddressUsageMetrics", VpcAttribute::NetworkAddressUsageMetrics),
            ] {
                if let Some(on) = p.bool(&format!("{member}.Value"))? {
                    given.push((attribute, on));
                }
            }
            // EC2 changes one attribute per call.
            let &[(attribute, on)] = given.as_slice() else {
                return Err(ApiError::bad_request(
                    "InvalidParameterCombination",
                    "Exactly one of EnableDnsSupport, EnableDnsHostnames and EnableNetworkAddressUsageMetrics must be given.",
                ));
            };
            api.control.ec2().modify_vpc_attribute(scope, &vpc, attribute, on).await?;
            Ok(ec2_ok(action, id, |x| {
                x.text("return", "true");
            }))
        }
        "CreateTags" => {
            let resources = p.ec2_list("ResourceId")?;
            if resources.is_empty() {
                return Err(missing("resourceIdSet"));
            }
            let tags = tag_list(p)?;
            api.control.ec2().create_tags(scope, resources, tags).await?;
            Ok(ec2_ok(action, id, |x| {
                x.text("return", "true");
            }))
        }
        "DeleteTags" => {
            let resources = p.ec2_list("ResourceId")?;
            if resources.is_empty() {
                return Err(missing("resourceIdSet"));
            }
            let tags = p
                .ec2_structs("Tag")?
                .into_iter()
                .map(|t| (t.string("Key").unwrap_or_default(), t.get("Value").map(str::to_string)))
                .collect();
            api.control.ec2().delete_tags(scope, resources, tags).await?;
            Ok(ec2_ok(action, id, |x| {
                x.text("return", "true");
            }))
        }
        "DescribeTags" => {
            let view = api.control.view();
            let mut all: Vec<(String, &str, String, String)> = vec![];
            for v in vpcs::vpcs(&view, scope, net) {
                all.extend(v.tags.iter().map(|(k, val)| (v.id.clone(), "vpc", k.clone(), val.clone())));
            }
            for s in vpcs::subnets(&view, scope, net) {
                all.extend(s.tags.iter().map(|(k, val)| (s.id.clone(), "subnet", k.clone(), val.clone())));
            }
            for g in control_plane::ec2::security_groups::security_groups(&view, scope, net) {
                all.extend(g.tags.iter().map(|(k, val)| (g.id.clone(), "security-group", k.clone(), val.clone())));
            }
            let fs = filters(p)?;
            let mut shown = vec![];
            for t in &all {
                let facts =
                    [("resource-id", one(&t.0)), ("resource-type", one(t.1)), ("key", one(&t.2)), ("value", one(&t.3))];
                if keep(&fs, &facts, &[])? {
                    shown.push(t);
                }
            }
            Ok(ec2_ok(action, id, |x| {
                x.list("tagSet", "item", shown, |x, (rid, kind, k, v)| {
                    x.text("resourceId", rid).text("resourceType", kind).text("key", k).text("value", v);
                });
            }))
        }
        "DescribeAccountAttributes" => {
            // What an account created today reports (EC2-Classic is gone: VPC only).
            let all = [
                ("supported-platforms", "VPC".to_string()),
                ("default-vpc", net.vpc_id.clone()),
                ("max-instances", "20".to_string()),
                ("vpc-max-security-groups-per-interface", "5".to_string()),
                ("max-elastic-ips", "5".to_string()),
                ("vpc-max-elastic-ips", "5".to_string()),
            ];
            let names = p.ec2_list("AttributeName")?;
            if let Some(n) = names.iter().find(|n| !all.iter().any(|(a, _)| a == *n)) {
                return Err(ApiError::bad_request(
                    "InvalidParameterValue",
                    format!("Value ({n}) for parameter attributeName is invalid. Unknown attribute."),
                ));
            }
            let shown = all.iter().filter(|(a, _)| names.is_empty() || names.iter().any(|n| n == a));
            Ok(ec2_ok(action, id, |x| {
                x.list("accountAttributeSet", "item", shown, |x, (name, value)| {
                    x.text("attributeName", name).list("attributeValueSet", "item", [value], |x, v| {
                        x.text("attributeValue", v);
                    });
                });
            }))
        }
        "DescribeInternetGateways" => {
            // Only the default VPC has one: a created VPC reaches nothing outside until
            // a gateway is attached, which Berth does not offer.
            let gateways = [(igw_id(caller, net), net.vpc_id.clone())];
            let ids = p.ec2_list("InternetGatewayId")?;
            if let Some(i) = ids.iter().find(|i| !gateways.iter().any(|(g, _)| g == *i)) {
                return Err(ApiError::bad_request(
                    "InvalidInternetGatewayID.NotFound",
                    format!("The internetGateway ID '{i}' does not exist"),
                ));
            }
            let fs = filters(p)?;
            let mut shown = vec![];
            for (g, vpc) in gateways.iter().filter(|(g, _)| ids.is_empty() || ids.contains(g)) {
                let facts = [
                    ("internet-gateway-id", one(g)),
                    ("attachment.vpc-id", one(vpc)),
                    ("attachment.state", one("available")),
                    ("owner-id", one(&net.owner)),
                ];
                if keep(&fs, &facts, &[])? {
                    shown.push((g, vpc));
                }
            }
            Ok(ec2_ok(action, id, |x| {
                x.list("internetGatewaySet", "item", shown, |x, (g, vpc)| {
                    x.list("attachmentSet", "item", [vpc], |x, vpc| {
                        x.text("state", "available").text("vpcId", vpc);
                    })
                    .text("internetGatewayId", g)
                    .text("ownerId", &net.owner)
                    .elem("tagSet", |_| {});
                });
            }))
        }
        "DescribeRouteTables" => {
            let view = api.control.view();
            let all = vpcs::vpcs(&view, scope, net);
            let ids = p.ec2_list("RouteTableId")?;
            let tables: Vec<(String, &Vpc)> =
                all.iter().map(|v| (derived_id("rtb", scope, &format!("{}/main", v.id)), &**v)).collect();
            if let Some(i) = ids.iter().find(|i| !tables.iter().any(|(t, _)| t == *i)) {
                return Err(ApiError::bad_request(
                    "InvalidRouteTableID.NotFound",
                    format!("The routeTable ID '{i}' does not exist"),
                ));
            }
            let fs = filters(p)?;
            let mut shown = vec![];
            for (t, v) in tables.iter().filter(|(t, _)| ids.is_empty() || ids.contains(t)) {
                let mut gateways = vec!["local".to_string()];
                if v.is_default {
                    gateways.push(igw_id(caller, net));
                }
                let facts = [
                    ("route-table-id", one(t)),
                    ("vpc-id", one(&v.id)),
                    ("association.main", one("true")),
                    ("association.route-table-id", one(t)),
                    ("owner-id", one(&net.owner)),
                    ("route.gateway-id", gateways),
                    ("route.state", one("active")),
                ];
                if keep(&fs, &facts, &[])? {
                    shown.push((t, *v));
                }
            }
            Ok(ec2_ok(action, id, |x| {
                x.list("routeTableSet", "item", shown, |x, (t, v)| route_table_xml(x, caller, net, t, v));
            }))
        }
        "DescribeNetworkAcls" => {
            let view = api.control.view();
            let all = vpcs::vpcs(&view, scope, net);
            let subnets = vpcs::subnets(&view, scope, net);
            let ids = p.ec2_list("NetworkAclId")?;
            let acls: Vec<(String, &Vpc)> =
                all.iter().map(|v| (derived_id("acl", scope, &format!("{}/default", v.id)), &**v)).collect();
            if let Some(i) = ids.iter().find(|i| !acls.iter().any(|(a, _)| a == *i)) {
                return Err(ApiError::bad_request(
                    "InvalidNetworkAclID.NotFound",
                    format!("The networkAcl ID '{i}' does not exist"),
                ));
            }
            let fs = filters(p)?;
            let mut shown = vec![];
            for (a, v) in acls.iter().filter(|(a, _)| ids.is_empty() || ids.contains(a)) {
                let members: Vec<&StoredSubnet> = subnets.iter().filter(|s| s.vpc_id == v.id).map(|s| &**s).collect();
                let facts = [
                    ("network-acl-id", one(a)),
                    ("vpc-id", one(&v.id)),
                    ("default", one("true")),
                    ("owner-id", one(&net.owner)),
                    ("association.network-acl-id", one(a)),
                    ("association.subnet-id", members.iter().map(|s| s.id.clone()).collect()),
                ];
                if keep(&fs, &facts, &[])? {
                    shown.push((a, *v, members));
                }
            }
            Ok(ec2_ok(action, id, |x| {
                x.list("networkAclSet", "item", shown, |x, (a, v, members)| {
                    network_acl_xml(x, caller, net, a, v, &members)
                });
            }))
        }
        a => Err(ApiError::bad_request(
            "InvalidAction",
            format!("Berth's EC2 API does not offer '{a}'; the README lists what it offers."),
        )),
    }
}

fn igw_id(caller: &Caller, net: &Network) -> String {
    derived_id("igw", &caller.scope, &format!("{}/igw", net.vpc_id))
}

fn subnet_arn(net: &Network, s: &StoredSubnet) -> String {
    format!("arn:aws:ec2:{}:{}:subnet/{}", net.region, net.owner, s.id)
}

fn vpc_xml(x: &mut Xml, net: &Network, v: &Vpc) {
    x.text("cidrBlock", &v.cidr)
        .text("dhcpOptionsId", &v.dhcp_options_id)
        .text("state", "available")
        .text("vpcId", &v.id)
        .text("ownerId", &net.owner)
        .text("instanceTenancy", "default")
        .list("cidrBlockAssociationSet", "item", [()], |x, ()| {
            x.text("associationId", format!("vpc-cidr-assoc-{}", &v.id[4..])).text("cidrBlock", &v.cidr).elem(
                "cidrBlockState",
                |x| {
                    x.text("state", "associated");
                },
            );
        })
        .text("isDefault", bool_text(v.is_default));
    tags_xml(x, &v.tags);
}

fn subnet_xml(x: &mut Xml, net: &Network, s: &StoredSubnet, available: u64) {
    x.text("availabilityZone", &s.zone)
        .text("availabilityZoneId", &s.zone_id)
        .text("availableIpAddressCount", available.to_string())
        .text("cidrBlock", &s.cidr)
        .text("defaultForAz", bool_text(s.default_for_az))
        .text("mapPublicIpOnLaunch", bool_text(s.map_public_ip_on_launch))
        .text("state", "available")
        .text("subnetId", &s.id)
        .text("vpcId", &s.vpc_id)
        .text("ownerId", &net.owner)
        .text("assignIpv6AddressOnCreation", "false")
        .elem("ipv6CidrBlockAssociationSet", |_| {})
        .text("subnetArn", subnet_arn(net, s));
    tags_xml(x, &s.tags);
}

/// A VPC's main route table: the VPC's block is local; the default VPC also routes
/// everything else to its internet gateway. Every subnet uses it implicitly.
fn route_table_xml(x: &mut Xml, caller: &Caller, net: &Network, table: &str, v: &Vpc) {
    x.list("associationSet", "item", [()], |x, ()| {
        x.text("main", "true")
            .text("routeTableAssociationId", derived_id("rtbassoc", &caller.scope, table))
            .text("routeTableId", table)
            .elem("associationState", |x| {
                x.text("state", "associated");
            });
    })
    .elem("propagatingVgwSet", |_| {})
    .text("routeTableId", table);
    x.elem("routeSet", |x| {
        x.elem("item", |x| {
            x.text("destinationCidrBlock", &v.cidr)
                .text("gatewayId", "local")
                .text("origin", "CreateRouteTable")
                .text("state", "active");
        });
        if v.is_default {
            x.elem("item", |x| {
                x.text("destinationCidrBlock", "0.0.0.0/0")
                    .text("gatewayId", igw_id(caller, net))
                    .text("origin", "CreateRoute")
                    .text("state", "active");
            });
        }
    });
    x.elem("tagSet", |_| {}).text("vpcId", &v.id).text("ownerId", &net.owner);
}

/// A VPC's default network ACL as EC2 makes it: all traffic allowed both ways (rule 100),
/// then the catch-all deny (rule 32767), associated with every subnet of the VPC.
fn network_acl_xml(x: &mut Xml, caller: &Caller, net: &Network, acl: &str, v: &Vpc, members: &[&StoredSubnet]) {
    x.list("associationSet", "item", members, |x, s| {
        x.text("networkAclAssociationId", derived_id("aclassoc", &caller.scope, &s.id))
            .text("networkAclId", acl)
            .text("subnetId", &s.id);
    });
    let entries = [(100, false, "allow"), (100, true, "allow"), (32767, false, "deny"), (32767, true, "deny")];
    x.list("entrySet", "item", entries, |x, (number, egress, action)| {
        x.text("cidrBlock", "0.0.0.0/0")
            .text("egress", bool_text(egress))
            .text("protocol", "-1")
            .text("ruleAction", action)
            .text("ruleNumber", number.to_string());
    });
    x.text("default", "true")
        .text("networkAclId", acl)
        .elem("tagSet", |_| {})
        .text("vpcId", &v.id)
        .text("ownerId", &net.owner);
}
