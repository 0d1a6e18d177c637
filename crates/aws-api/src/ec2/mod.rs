//! The EC2 API (query protocol, version 2016-11-15) that ECS workflows and IaC tools
//! call: security groups and their rules (here), VPCs, subnets, tags and what a VPC
//! implies (`network`), tasks' network interfaces and container instances as EC2
//! instances (`interfaces`), with the filters EC2 documents for them.

mod interfaces;
mod network;

use axum::response::Response;

use control_plane::ec2::security_groups::{
    self as sg, GroupRef, NewSecurityGroup, Permission, RequestedRule, RequestedSource, Revoke, SecurityGroup, SgRule,
    Source,
};
use control_plane::ec2::{Network, Zone};
use control_plane::Caller;
use elb::glob::Glob;

use crate::query::{ec2_ok, Params, Xml};
use crate::{Api, ApiError};

/// One `Filter.N`: a name and values with `*` and `?` wildcards; any value may match.
pub(super) struct Filter {
    name: String,
    values: Vec<Glob>,
}

pub(super) fn filters(p: &Params) -> Result<Vec<Filter>, ApiError> {
    p.ec2_structs("Filter")?
        .into_iter()
        .map(|f| {
            let name = f.required("Name")?;
            let values = f.ec2_list("Value")?.iter().map(|v| Glob::new(v, false)).collect();
            Ok(Filter { name, values })
        })
        .collect()
}

pub(super) fn invalid_filter(name: &str) -> ApiError {
    ApiError::bad_request("InvalidParameterValue", format!("The filter '{name}' is invalid"))
}

/// Whether `facts` (filter name → the resource's values for it) and the resource's `tags`
/// satisfy every filter. A filter this resource does not know is an error, as in EC2;
/// `tag:KEY` of a tag the resource lacks matches nothing.
pub(super) fn keep(
    filters: &[Filter],
    facts: &[(&str, Vec<String>)],
    tags: &[(String, String)],
) -> Result<bool, ApiError> {
    for f in filters {
        let have: Vec<String> = if let Some(key) = f.name.strip_prefix("tag:") {
            tags.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
        } else if f.name == "tag-key" {
            tags.iter().map(|(k, _)| k.clone()).collect()
        } else {
            match facts.iter().find(|(n, _)| *n == f.name) {
                Some((_, have)) => have.clone(),
                None => return Err(invalid_filter(&f.name)),
            }
        };
        if !f.values.iter().any(|g| have.iter().any(|v| g.matches(v))) {
            return Ok(false);
        }
    }
    Ok(true)
}

pub(super) fn one(v: impl Into<String>) -> Vec<String> {
    vec![v.into()]
}

pub(crate) async fn dispatch(
    api: &Api,
    caller: &Caller,
    action: &str,
    p: &Params,
    id: &str,
) -> Result<Response, ApiError> {
    let net = api.control.elb.network(&caller.scope);
    if p.bool("DryRun")? == Some(true) {
        // Nothing here is checked against permissions: every signed caller may do it all.
        return Err(ApiError::new(
            http::StatusCode::PRECONDITION_FAILED,
            "DryRunOperation",
            "Request would have succeeded, but DryRun flag is set.",
        ));
    }
    match action {
        "DescribeSecurityGroups" => {
            let view = api.control.view();
            let all = sg::security_groups(&view, &caller.scope, &net);
            let ids = p.ec2_list("GroupId")?;
            let names = p.ec2_list("GroupName")?;
            for g in &ids {
                sg::find_group(&view, &caller.scope, &net, &GroupRef::Id(g.clone()))?;
            }
            for n in &names {
                sg::find_group(&view, &caller.scope, &net, &GroupRef::Name(n.clone()))?;
            }
            let fs = filters(p)?;
            let mut shown = Vec::new();
            for g in all.iter().filter(|g| ids.is_empty() || ids.contains(&g.id)) {
                if !names.is_empty() && !names.contains(&g.name) {
                    continue;
                }
                let sources = |cidr: bool| -> Vec<String> {
                    g.ingress
                        .iter()
                        .filter_map(|r| match (&r.permission.source, cidr) {
                            (Source::Cidr(c), true) => Some(c.clone()),
                            (Source::Group(id), false) => Some(id.clone()),
                            _ => None,
                        })
                        .collect()
                };
                let facts = [
                    ("group-id", one(&g.id)),
                    ("group-name", one(&g.name)),
                    ("vpc-id", one(&g.vpc_id)),
                    ("owner-id", one(&net.owner)),
                    ("description", one(&g.description)),
                    (
                        "ip-permission.protocol",
                        g.ingress.iter().map(|r| r.permission.protocol.as_ec2().to_string()).collect(),
                    ),
                    ("ip-permission.from-port", g.ingress.iter().map(|r| r.permission.from_port.to_string()).collect()),
                    ("ip-permission.to-port", g.ingress.iter().map(|r| r.permission.to_port.to_string()).collect()),
                    ("ip-permission.cidr", sources(true)),
                    ("ip-permission.group-id", sources(false)),
                ];
                if keep(&fs, &facts, &g.tags)? {
                    shown.push(g);
                }
            }
            Ok(ec2_ok(action, id, |x| {
                x.list("securityGroupInfo", "item", shown, |x, g| sg_xml(x, g));
            }))
        }
        "DescribeSecurityGroupRules" => {
            let view = api.control.view();
            let all = sg::security_groups(&view, &caller.scope, &net);
            let ids = p.ec2_list("SecurityGroupRuleId")?;
            let rules: Vec<(&SecurityGroup, &SgRule, bool)> = all
                .iter()
                .flat_map(|g| {
                    g.ingress.iter().map(move |r| (&**g, r, false)).chain(g.egress.iter().map(move |r| (&**g, r, true)))
                })
                .collect();
            for want in &ids {
                if !rules.iter().any(|(_, r, _)| r.id == *want) {
                    return Err(ApiError::bad_request(
                        "InvalidSecurityGroupRuleId.NotFound",
                        format!("The security group rule ID '{want}' does not exist"),
                    ));
                }
            }
            let fs = filters(p)?;
            let mut shown = Vec::new();
            for (g, r, egress) in rules {
                if !ids.is_empty() && !ids.contains(&r.id) {
                    continue;
                }
                let facts = [
                    ("group-id", one(&g.id)),
                    ("security-group-rule-id", one(&r.id)),
                    ("is-egress", one(if egress { "true" } else { "false" })),
                ];
                if keep(&fs, &facts, &[])? {
                    shown.push((g, r, egress));
                }
            }
            Ok(ec2_ok(action, id, |x| {
                x.list("securityGroupRuleSet", "item", shown, |x, (g, r, egress)| rule_xml(x, g, r, egress));
            }))
        }
        "CreateSecurityGroup" => {
            let name = p.string("GroupName").ok_or_else(|| missing("groupName"))?;
            let description = p.string("GroupDescription").ok_or_else(|| missing("groupDescription"))?;
            let tags = tag_specifications(p, "security-group")?;
            let new = NewSecurityGroup { name, description, vpc_id: p.string("VpcId"), tags };
            let g = api.control.ec2().create_security_group(&caller.scope, new).await?;
            Ok(ec2_ok(action, id, |x| {
                x.text("return", "true").text("groupId", &g.id);
                tags_xml(x, &g.tags);
                x.text("securityGroupArn", g.arn());
            }))
        }
        "DeleteSecurityGroup" => {
            let group = group_ref(p)?;
            let deleted = api.control.ec2().delete_security_group(&caller.scope, group).await?;
            Ok(ec2_ok(action, id, |x| {
                x.text("return", "true").text("groupId", deleted);
            }))
        }
        "AuthorizeSecurityGroupIngress" | "AuthorizeSecurityGroupEgress" => {
            let (direction, egress) = direction(action);
            let group = group_ref(p)?;
            let rules = requested_rules(p, &caller.scope.account.to_string())?;
            let (g, added) = api.control.ec2().authorize(&caller.scope, group, direction, rules).await?;
            Ok(ec2_ok(action, id, |x| {
                x.text("return", "true");
                x.list("securityGroupRuleSet", "item", &added, |x, r| rule_xml(x, &g, r, egress));
            }))
        }
        "RevokeSecurityGroupIngress" | "RevokeSecurityGroupEgress" => {
            let (direction, egress) = direction(action);
            let group = group_ref(p)?;
            let ids = p.ec2_list("SecurityGroupRuleId")?;
            let revoke = if ids.is_empty() {
                Revoke::Rules(requested_rules(p, &caller.scope.account.to_string())?)
            } else {
                Revoke::Ids(ids)
            };
            let (g, removed) = api.control.ec2().revoke(&caller.scope, group, direction, revoke).await?;
            Ok(ec2_ok(action, id, |x| {
                x.text("return", "true");
                x.list("revokedSecurityGroupRuleSet", "item", &removed, |x, r| {
                    x.text("securityGroupRuleId", &r.id)
                        .text("groupId", &g.id)
                        .text("isEgress", if egress { "true" } else { "false" });
                    permission_xml(x, &r.permission, "referencedGroupId");
                    x.opt("description", r.description.as_deref());
                });
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
                if !names.is_empty() && !names.contains(&z.name)
                    || !zone_ids.is_empty() && !zone_ids.contains(&z.zone_id)
                {
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
                if keep(&fs, &facts, &[])? {
                    shown.push(z);
                }
            }
            Ok(ec2_ok(action, id, |x| {
                x.list("availabilityZoneInfo", "item", shown, |x, z| zone_xml(x, &net, z));
            }))
        }
        "DescribeNetworkInterfaces" => interfaces::describe_network_interfaces(api, caller, action, p, id, &net).await,
        "DescribeInstances" => interfaces::describe_instances(api, caller, action, p, id, &net).await,
        _ => network::dispatch(api, caller, action, p, id, &net).await,
    }
}

/// Which rule list an Authorize or Revoke action names, and whether it is the egress one.
fn direction(action: &str) -> (sg::Direction, bool) {
    if action.ends_with("Egress") {
        (sg::Direction::Egress, true)
    } else {
        (sg::Direction::Ingress, false)
    }
}

pub(super) fn missing(param: &str) -> ApiError {
    ApiError::bad_request("MissingParameter", format!("The request must contain the parameter {param}"))
}

/// `GroupId` or, in the default VPC, `GroupName`.
fn group_ref(p: &Params) -> Result<GroupRef, ApiError> {
    match (p.string("GroupId"), p.string("GroupName")) {
        (Some(id), _) => Ok(GroupRef::Id(id)),
        (None, Some(name)) => Ok(GroupRef::Name(name)),
        (None, None) => Err(missing("groupId or groupName")),
    }
}

/// The rules of an Authorize or Revoke request: `IpPermissions.N`, or the older
/// top-level `IpProtocol`/`FromPort`/`ToPort` with `CidrIp` or `SourceSecurityGroupName`.
/// Sources Berth cannot enforce (IPv6 ranges, prefix lists, other accounts' groups) are
/// refused rather than ignored.
fn requested_rules(p: &Params, account: &str) -> Result<Vec<RequestedRule>, ApiError> {
    let unsupported = |what: &str| {
        ApiError::bad_request(
            "InvalidParameterValue",
            format!("Berth's security groups take IPv4 ranges and security groups of the same account as sources, not {what}."),
        )
    };
    let mut out = vec![];
    let mut add =
        |protocol: &str, from: Option<i32>, to: Option<i32>, sources: Vec<(RequestedSource, Option<String>)>| {
            let protocol = sg::parse_protocol(protocol)?;
            let (from_port, to_port) = sg::ports(protocol, from, to)?;
            if sources.is_empty() {
                return Err(ApiError::bad_request(
                    "InvalidParameterValue",
                    "A rule needs a source: give IpRanges (CidrIp) or UserIdGroupPairs (GroupId).",
                ));
            }
            for (source, description) in sources {
                out.push(RequestedRule { protocol, from_port, to_port, source, description });
            }
            Ok::<(), ApiError>(())
        };
    for perm in p.ec2_structs("IpPermissions")? {
        if !perm.ec2_structs("Ipv6Ranges")?.is_empty() {
            return Err(unsupported("IPv6 ranges"));
        }
        if !perm.ec2_structs("PrefixListIds")?.is_empty() {
            return Err(unsupported("prefix lists"));
        }
        let protocol = perm.string("IpProtocol").ok_or_else(|| missing("ipProtocol"))?;
        let mut sources = vec![];
        for r in perm.ec2_structs("IpRanges")? {
            let cidr = r.string("CidrIp").ok_or_else(|| missing("cidrIp"))?;
            sources.push((RequestedSource::Cidr(cidr), r.string("Description")));
        }
        for g in perm.ec2_structs("Groups")? {
            if g.get("UserId").is_some_and(|u| !u.is_empty() && u != account) {
                return Err(unsupported("another account's security groups"));
            }
            let group = match (g.string("GroupId"), g.string("GroupName")) {
                (Some(id), _) => GroupRef::Id(id),
                (None, Some(name)) => GroupRef::Name(name),
                (None, None) => return Err(missing("groupId")),
            };
            sources.push((RequestedSource::Group(group), g.string("Description")));
        }
        add(&protocol, perm.int("FromPort")?, perm.int("ToPort")?, sources)?;
    }
    if let Some(protocol) = p.string("IpProtocol") {
        let mut sources = vec![];
        if let Some(cidr) = p.string("CidrIp") {
            sources.push((RequestedSource::Cidr(cidr), None));
        }
        if let Some(name) = p.string("SourceSecurityGroupName") {
            sources.push((RequestedSource::Group(GroupRef::Name(name)), None));
        }
        add(&protocol, p.int("FromPort")?, p.int("ToPort")?, sources)?;
    }
    Ok(out)
}

/// The tags of `TagSpecification.N` for a resource of type `kind`, the only type the
/// creating operation takes.
pub(super) fn tag_specifications(p: &Params, kind: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut tags = vec![];
    for spec in p.ec2_structs("TagSpecification")? {
        let given = spec.string("ResourceType").unwrap_or_default();
        if given != kind {
            return Err(ApiError::bad_request(
                "InvalidParameterValue",
                format!("'{given}' is not a valid taggable resource type for this operation."),
            ));
        }
        tags.extend(tag_list(&spec)?);
    }
    Ok(tags)
}

/// `Tag.N.Key` and `Tag.N.Value` pairs.
pub(super) fn tag_list(p: &Params) -> Result<Vec<(String, String)>, ApiError> {
    Ok(p.ec2_structs("Tag")?
        .into_iter()
        .map(|t| (t.string("Key").unwrap_or_default(), t.string("Value").unwrap_or_default()))
        .collect())
}

pub(super) fn tags_xml(x: &mut Xml, tags: &[(String, String)]) {
    x.list("tagSet", "item", tags, |x, (k, v)| {
        x.text("key", k).text("value", v);
    });
}

/// A permission's protocol and ports as EC2 writes them (no ports for `-1`), and its
/// source: `cidrIpv4` or a group under `group_tag`.
fn permission_xml(x: &mut Xml, p: &Permission, group_tag: &str) {
    x.text("ipProtocol", p.protocol.as_ec2());
    if p.protocol != control_plane::ec2::security_groups::IpProtocol::All {
        x.text("fromPort", p.from_port.to_string()).text("toPort", p.to_port.to_string());
    }
    match &p.source {
        Source::Cidr(c) => {
            x.text("cidrIpv4", c);
        }
        Source::Group(g) => {
            x.text(group_tag, g);
        }
    }
}

fn rule_xml(x: &mut Xml, g: &SecurityGroup, r: &SgRule, egress: bool) {
    x.text("securityGroupRuleId", &r.id)
        .text("groupId", &g.id)
        .text("groupOwnerId", g.scope.account.to_string())
        .text("isEgress", if egress { "true" } else { "false" })
        .text("ipProtocol", r.permission.protocol.as_ec2());
    let (from, to) = match r.permission.protocol {
        control_plane::ec2::security_groups::IpProtocol::All => (-1, -1),
        _ => (r.permission.from_port, r.permission.to_port),
    };
    x.text("fromPort", from.to_string()).text("toPort", to.to_string());
    match &r.permission.source {
        Source::Cidr(c) => {
            x.text("cidrIpv4", c);
        }
        Source::Group(id) => {
            x.elem("referencedGroupInfo", |x| {
                x.text("groupId", id).text("userId", g.scope.account.to_string());
            });
        }
    }
    x.opt("description", r.description.as_deref());
    x.elem("tagSet", |_| {});
    x.text(
        "securityGroupRuleArn",
        format!("arn:aws:ec2:{}:{}:security-group-rule/{}", g.scope.region, g.scope.account, r.id),
    );
}

/// Rules as EC2's `IpPermission`s: one per (protocol, ports), its sources gathered.
fn permissions_xml(x: &mut Xml, tag: &str, g: &SecurityGroup, rules: &[SgRule]) {
    let mut keys: Vec<(control_plane::ec2::security_groups::IpProtocol, i32, i32)> = vec![];
    for r in rules {
        let k = (r.permission.protocol, r.permission.from_port, r.permission.to_port);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    x.list(tag, "item", keys, |x, (protocol, from, to)| {
        let mine: Vec<&SgRule> = rules
            .iter()
            .filter(|r| (r.permission.protocol, r.permission.from_port, r.permission.to_port) == (protocol, from, to))
            .collect();
        x.text("ipProtocol", protocol.as_ec2());
        if protocol != control_plane::ec2::security_groups::IpProtocol::All {
            x.text("fromPort", from.to_string()).text("toPort", to.to_string());
        }
        x.list("groups", "item", mine.iter().filter(|r| matches!(r.permission.source, Source::Group(_))), |x, r| {
            if let Source::Group(id) = &r.permission.source {
                x.opt("description", r.description.as_deref())
                    .text("groupId", id)
                    .text("userId", g.scope.account.to_string());
            }
        });
        x.list("ipRanges", "item", mine.iter().filter(|r| matches!(r.permission.source, Source::Cidr(_))), |x, r| {
            if let Source::Cidr(c) = &r.permission.source {
                x.text("cidrIp", c).opt("description", r.description.as_deref());
            }
        });
        x.elem("ipv6Ranges", |_| {}).elem("prefixListIds", |_| {});
    });
}

fn sg_xml(x: &mut Xml, g: &SecurityGroup) {
    x.text("ownerId", g.scope.account.to_string())
        .text("groupId", &g.id)
        .text("groupName", &g.name)
        .text("groupDescription", &g.description)
        .text("vpcId", &g.vpc_id);
    permissions_xml(x, "ipPermissions", g, &g.ingress);
    permissions_xml(x, "ipPermissionsEgress", g, &g.egress);
    tags_xml(x, &g.tags);
    x.text("securityGroupArn", g.arn());
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
