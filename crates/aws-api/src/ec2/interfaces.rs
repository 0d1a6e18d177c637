//! EC2's view of ECS's resources: DescribeNetworkInterfaces (awsvpc tasks' interfaces)
//! and DescribeInstances (container instances under their EC2 instance ids).
//! Translation only; what exists is `control_plane::ec2::interfaces`'s answer.

use axum::response::Response;

use control_plane::ec2::interfaces::{self, Instance, NetworkInterface};
use control_plane::ec2::security_groups::security_groups;
use control_plane::ec2::Network;
use control_plane::Caller;

use super::{filters, keep, one};
use crate::query::{ec2_ok, timestamp, Xml};
use crate::{Api, ApiError};

/// EC2's private DNS name of an address: `ip-a-b-c-d.ec2.internal` in us-east-1,
/// `ip-a-b-c-d.<region>.compute.internal` elsewhere.
fn private_dns(region: &str, ip: &std::net::Ipv4Addr) -> String {
    let host = format!("ip-{}", ip.to_string().replace('.', "-"));
    if region == "us-east-1" {
        format!("{host}.ec2.internal")
    } else {
        format!("{host}.{region}.compute.internal")
    }
}

/// The owner EC2 shows for capacity AWS runs on a user's behalf (Fargate's).
const AWS_OWNER: &str = "amazon-aws";

pub(super) async fn describe_network_interfaces(
    api: &Api,
    caller: &Caller,
    action: &str,
    p: &crate::query::Params,
    id: &str,
    net: &Network,
) -> Result<Response, ApiError> {
    let view = api.control.view();
    let all = interfaces::network_interfaces(&view, &caller.scope, net);
    let ids = p.ec2_list("NetworkInterfaceId")?;
    if let Some(i) = ids.iter().find(|i| !all.iter().any(|n| n.eni.eni_id == **i)) {
        return Err(ApiError::bad_request(
            "InvalidNetworkInterfaceID.NotFound",
            format!("The networkInterface ID '{i}' does not exist"),
        ));
    }
    let groups = security_groups(&view, &caller.scope, net);
    let group_name = |g: &str| groups.iter().find(|x| x.id == g).map(|x| x.name.clone()).unwrap_or_default();
    let fs = filters(p)?;
    let mut shown = vec![];
    for n in all.iter().filter(|n| ids.is_empty() || ids.contains(&n.eni.eni_id)) {
        let ip = n.eni.private_ipv4.to_string();
        let dns = private_dns(&net.region, &n.eni.private_ipv4);
        let facts = [
            ("network-interface-id", one(&n.eni.eni_id)),
            ("addresses.private-ip-address", one(&ip)),
            ("addresses.primary", one("true")),
            ("private-ip-address", one(&ip)),
            ("private-dns-name", one(&dns)),
            ("attachment.instance-id", n.instance_id.iter().cloned().collect()),
            ("attachment.instance-owner-id", one(owner(n, net))),
            ("attachment.status", one("attached")),
            ("attachment.device-index", one("1")),
            ("attachment.attachment-id", one(attachment_id(n))),
            ("subnet-id", one(&n.eni.subnet_id)),
            ("vpc-id", one(&n.vpc_id)),
            ("availability-zone", one(&n.eni.availability_zone)),
            ("group-id", n.eni.security_groups.clone()),
            ("group-name", n.eni.security_groups.iter().map(|g| group_name(g)).collect()),
            ("description", one(&n.description)),
            ("status", one("in-use")),
            ("mac-address", one(&n.eni.mac)),
            ("interface-type", one("interface")),
            ("requester-managed", one(if n.requester_managed { "true" } else { "false" })),
            ("owner-id", one(&net.owner)),
            ("source-dest-check", one("true")),
        ];
        if keep(&fs, &facts, &[])? {
            shown.push(n);
        }
    }
    Ok(ec2_ok(action, id, |x| {
        x.list("networkInterfaceSet", "item", shown, |x, n| {
            interface_xml(x, net, n, &|g| group_name(g));
        });
    }))
}

/// The attachment's own id, derived from the interface's (EC2's `eni-attach-` shape).
fn attachment_id(n: &NetworkInterface) -> String {
    format!("eni-attach-{}", &n.eni.eni_id[4..])
}

fn owner<'a>(n: &NetworkInterface, net: &'a Network) -> &'a str {
    if n.requester_managed {
        AWS_OWNER
    } else {
        &net.owner
    }
}

fn interface_xml(x: &mut Xml, net: &Network, n: &NetworkInterface, group_name: &dyn Fn(&str) -> String) {
    let ip = n.eni.private_ipv4.to_string();
    let dns = private_dns(&net.region, &n.eni.private_ipv4);
    x.elem("attachment", |x| {
        x.text("attachmentId", attachment_id(n))
            .text("deleteOnTermination", "false")
            .text("deviceIndex", "1")
            .text("networkCardIndex", "0")
            .opt("instanceId", n.instance_id.as_deref())
            .text("instanceOwnerId", owner(n, net))
            .text("status", "attached");
    })
    .text("availabilityZone", &n.eni.availability_zone)
    .text("description", &n.description)
    .list("groupSet", "item", &n.eni.security_groups, |x, g| {
        x.text("groupId", g).text("groupName", group_name(g));
    })
    .text("interfaceType", "interface")
    .elem("ipv6AddressesSet", |_| {})
    .text("macAddress", &n.eni.mac)
    .text("networkInterfaceId", &n.eni.eni_id)
    .text("ownerId", &net.owner)
    .text("privateDnsName", &dns)
    .text("privateIpAddress", &ip)
    .list("privateIpAddressesSet", "item", [()], |x, ()| {
        x.text("primary", "true").text("privateIpAddress", &ip).text("privateDnsName", &dns);
    })
    .text("requesterId", owner(n, net))
    .text("requesterManaged", if n.requester_managed { "true" } else { "false" })
    .text("sourceDestCheck", "true")
    .text("status", "in-use")
    .text("subnetId", &n.eni.subnet_id)
    .elem("tagSet", |_| {})
    .text("vpcId", &n.vpc_id);
}

pub(super) async fn describe_instances(
    api: &Api,
    caller: &Caller,
    action: &str,
    p: &crate::query::Params,
    id: &str,
    net: &Network,
) -> Result<Response, ApiError> {
    let view = api.control.view();
    let all = interfaces::instances(&view, &caller.scope);
    let ids = p.ec2_list("InstanceId")?;
    if let Some(i) = ids.iter().find(|i| !all.iter().any(|n| n.instance_id == **i)) {
        return Err(ApiError::bad_request(
            "InvalidInstanceID.NotFound",
            format!("The instance ID '{i}' does not exist"),
        ));
    }
    let fs = filters(p)?;
    let mut shown = vec![];
    for i in all.iter().filter(|i| ids.is_empty() || ids.contains(&i.instance_id)) {
        let facts = [
            ("instance-id", one(&i.instance_id)),
            ("instance-state-name", one("running")),
            ("instance-state-code", one("16")),
            ("availability-zone", i.zone.iter().cloned().collect()),
            ("instance-type", i.instance_type.iter().cloned().collect()),
            ("owner-id", one(&net.owner)),
            ("vpc-id", one(&net.vpc_id)),
        ];
        if keep(&fs, &facts, &i.tags)? {
            shown.push(i);
        }
    }
    // One reservation per instance, as for instances launched one at a time.
    Ok(ec2_ok(action, id, |x| {
        x.list("reservationSet", "item", shown, |x, i| {
            x.text("reservationId", format!("r-{}", i.instance_id.trim_start_matches("i-")))
                .text("ownerId", &net.owner)
                .elem("groupSet", |_| {})
                .list("instancesSet", "item", [i], |x, i| instance_xml(x, net, i));
        });
    }))
}

fn instance_xml(x: &mut Xml, net: &Network, i: &Instance) {
    x.text("instanceId", &i.instance_id)
        .elem("instanceState", |x| {
            x.text("code", "16").text("name", "running");
        })
        .opt("instanceType", i.instance_type.as_deref())
        .text("launchTime", timestamp(i.launched_at))
        .elem("placement", |x| {
            x.opt("availabilityZone", i.zone.as_deref()).text("tenancy", "default");
        })
        .elem("monitoring", |x| {
            x.text("state", "disabled");
        })
        .text("vpcId", &net.vpc_id)
        .text("architecture", std::env::consts::ARCH.replace("aarch64", "arm64"))
        .text("rootDeviceType", "ebs")
        .text("hypervisor", "xen")
        .text("virtualizationType", "hvm");
    super::tags_xml(x, &i.tags);
}
