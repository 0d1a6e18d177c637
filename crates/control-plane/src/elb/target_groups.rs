//! Target groups: create, describe, modify, delete, attributes; registering and
//! deregistering targets; and their health as ALB reports it.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use elb::attributes::TgAttributes;
use elb::error::enums;
use elb::health::{TargetHealth, TargetKey};
use elb::names::{parse_arn, ElbArn, TgName};
use elb::resources::{merge_tags, HealthCheck, HealthCheckInput, Target, TargetGroup, TargetType};
use elb::{ElbError, Fault};
use model::tags::Tags;
use model::Scope;

use super::{fail, new_id, ElbKey, Paging, MAX_TARGETS, MAX_TARGET_GROUPS};
use crate::elb::Elbv2;
use crate::error::Result;
use crate::state::{State, Touched};
use crate::Caller;
use crate::Ops;

/// What `CreateTargetGroup` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewTargetGroup {
    pub name: String,
    pub protocol: Option<String>,
    pub protocol_version: Option<String>,
    pub port: Option<i32>,
    pub vpc_id: Option<String>,
    pub target_type: Option<String>,
    pub ip_address_type: Option<String>,
    pub health_check: HealthCheckInput,
    pub tags: Vec<(String, String)>,
}

/// A target as RegisterTargets, DeregisterTargets and DescribeTargetHealth name it:
/// `port` `None` is the group's port (for DescribeTargetHealth: every port of the id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    pub id: String,
    pub port: Option<i32>,
    pub availability_zone: Option<String>,
}

impl TargetSpec {
    pub fn new(id: impl Into<String>, port: Option<i32>) -> Self {
        TargetSpec { id: id.into(), port, availability_zone: None }
    }
}

/// A target group with the ARNs of the load balancers that route to it.
pub type UsedTargetGroup = (TargetGroup, Vec<String>);

/// One row of DescribeTargetHealth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealthDescription {
    pub target: Target,
    pub health_check_port: String,
    pub health: TargetHealth,
}

pub(crate) fn tg_not_found(what: &str) -> crate::Error {
    crate::Error::Elb(elb::ElbError::new(Fault::TargetGroupNotFound, format!("Target group '{what}' not found")))
}

/// The target group an ARN names, if it is one of `scope`'s.
pub(crate) fn find_tg(state: &State, scope: &Scope, arn: &str) -> Result<Arc<TargetGroup>> {
    let ElbArn::TargetGroup { tg } = parse_arn(scope, arn, Fault::TargetGroupNotFound)? else {
        return fail(Fault::Validation, format!("'{arn}' is not a target group ARN"));
    };
    state
        .elb
        .target_groups
        .get(&(scope.clone(), tg))
        .filter(|t| t.arn() == arn)
        .cloned()
        .ok_or_else(|| tg_not_found(arn))
}

fn check_protocol(p: &str) -> Result<()> {
    match p {
        "HTTP" => Ok(()),
        "HTTPS" => fail(Fault::UnsupportedProtocol, "HTTPS target groups are not supported by Berth yet; use HTTP."),
        "TCP" | "TLS" | "UDP" | "TCP_UDP" | "GENEVE" | "QUIC" | "TCP_QUIC" => fail(
            Fault::UnsupportedProtocol,
            format!("Protocol {p} belongs to Network and Gateway Load Balancers; Berth's are Application Load Balancers (HTTP)."),
        ),
        other => Err(ElbError::not_in_enum("protocol", other, enums::PROTOCOL).into()),
    }
}

/// Where an `ip` target may be: the VPC, the private ranges of RFC 1918 and RFC 6598
/// (as ALB allows), and, for Berth, the loopback block, where processes on this machine
/// listen.
fn ip_allowed(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private() || ip.is_loopback() || (o[0] == 100 && (64..128).contains(&o[1]))
}

impl Ops<'_, Elbv2> {
    pub async fn create_target_group(&self, caller: &Caller, req: NewTargetGroup) -> Result<TargetGroup> {
        let name = TgName::parse(&req.name)?;
        let target_type =
            req.target_type.as_deref().map(TargetType::parse).transpose()?.unwrap_or(TargetType::Instance);
        let protocol = req.protocol.clone().ok_or_else(|| {
            crate::Error::Elb(elb::ElbError::validation(
                "A target group of instances or IP addresses needs a Protocol.",
            ))
        })?;
        check_protocol(&protocol)?;
        let port = match req.port {
            Some(p) if (1..=65535).contains(&p) => p as u16,
            Some(p) => return fail(Fault::Validation, format!("Port {p} is not between 1 and 65535.")),
            None => return fail(Fault::Validation, "A target group of instances or IP addresses needs a Port."),
        };
        let network = self.elb.network(&caller.scope);
        let vpc_id = req.vpc_id.clone().ok_or_else(|| {
            crate::Error::Elb(elb::ElbError::validation("A target group of instances or IP addresses needs a VpcId."))
        })?;
        if vpc_id != network.vpc_id {
            return fail(
                Fault::Validation,
                format!("The VPC ID '{vpc_id}' is not found (the default VPC is {})", network.vpc_id),
            );
        }
        match req.protocol_version.as_deref() {
            None | Some("HTTP1") => {}
            Some(v) => {
                return fail(
                    Fault::UnsupportedProtocol,
                    format!("Protocol version {v} is not supported by Berth; use HTTP1."),
                )
            }
        }
        match req.ip_address_type.as_deref() {
            None | Some("ipv4") => {}
            Some(t) if !enums::TARGET_GROUP_IP_ADDRESS_TYPE.contains(&t) => {
                return Err(ElbError::not_in_enum("ipAddressType", t, enums::TARGET_GROUP_IP_ADDRESS_TYPE).into())
            }
            Some(t) => {
                return fail(
                    Fault::InvalidConfigurationRequest,
                    format!("IP address type '{t}' is not supported by Berth; use ipv4."),
                )
            }
        }
        let health_check = HealthCheck::default().with(req.health_check.clone())?;
        check_enabled(&health_check)?;
        let mut tags = Tags::default();
        merge_tags(&mut tags, req.tags.clone())?;
        let scope = caller.scope.clone();
        let tg = self
            .change(move |txn| {
                if let Some(t) = txn.state.elb.scoped_target_groups(&scope).find(|t| t.name == name) {
                    // Idempotent like CreateLoadBalancer: the same settings return the group.
                    if t.protocol == protocol
                        && t.port == port
                        && t.target_type == target_type
                        && t.health_check == health_check
                    {
                        return Ok(t.as_ref().clone());
                    }
                    return fail(
                        Fault::DuplicateTargetGroupName,
                        format!("A target group with the same name '{name}' exists, but with different settings"),
                    );
                }
                if txn.state.elb.scoped_target_groups(&scope).count() >= MAX_TARGET_GROUPS {
                    return fail(
                        Fault::TooManyTargetGroups,
                        format!("An account can have at most {MAX_TARGET_GROUPS} target groups per region."),
                    );
                }
                let tg = TargetGroup {
                    scope: scope.clone(),
                    name,
                    id: new_id(),
                    protocol,
                    protocol_version: "HTTP1".into(),
                    port,
                    vpc_id,
                    target_type,
                    ip_address_type: "ipv4".into(),
                    health_check,
                    attributes: TgAttributes::default(),
                    targets: Vec::new(),
                    created: txn.now,
                    tags,
                };
                txn.state.elb.target_groups.insert((scope.clone(), tg.id.clone()), Arc::new(tg.clone()));
                txn.touch(Touched::Elb(ElbKey::TargetGroup(scope, tg.id.clone())));
                Ok(tg)
            })
            .await?;
        Ok(tg)
    }

    /// Target groups by ARN, by name, or of one load balancer; or all of them; by name.
    /// Each comes with the ARNs of the load balancers that route to it.
    pub fn describe_target_groups(
        &self,
        caller: &Caller,
        lb_arn: Option<&str>,
        arns: &[String],
        names: &[String],
        page_size: Option<i32>,
        marker: Option<&str>,
    ) -> Result<(Vec<UsedTargetGroup>, Option<String>)> {
        let state = self.view();
        let paging = Paging::parse(page_size, marker)?;
        let scope = &caller.scope;
        let given = usize::from(lb_arn.is_some()) + usize::from(!arns.is_empty()) + usize::from(!names.is_empty());
        if given > 1 {
            return fail(Fault::Validation, "Give at most one of LoadBalancerArn, TargetGroupArns and Names.");
        }
        let mut tgs: Vec<Arc<TargetGroup>> = if let Some(lb) = lb_arn {
            let lb = super::load_balancers::find_lb(&state, scope, lb)?;
            state
                .elb
                .scoped_target_groups(scope)
                .filter(|t| state.elb.lbs_using(scope, &t.arn()).contains(&lb.arn()))
                .cloned()
                .collect()
        } else {
            super::select::<TargetGroup>(&state, scope, arns, names)?
        };
        if lb_arn.is_some() {
            tgs.sort_by(|a, b| a.name.cmp(&b.name));
        }
        let items = tgs.into_iter().map(|t| {
            let lbs = state.elb.lbs_using(scope, &t.arn());
            (t.name.to_string(), (t.as_ref().clone(), lbs))
        });
        Ok(paging.take(items))
    }

    pub async fn modify_target_group(
        &self,
        caller: &Caller,
        arn: String,
        input: HealthCheckInput,
    ) -> Result<(TargetGroup, Vec<String>)> {
        let scope = caller.scope.clone();
        let out = self
            .change(move |txn| {
                let tg = find_tg(txn.state, &scope, &arn)?;
                let mut next = tg.as_ref().clone();
                next.health_check = next.health_check.with(input)?;
                check_enabled(&next.health_check)?;
                txn.state.elb.target_groups.insert((scope.clone(), next.id.clone()), Arc::new(next.clone()));
                txn.touch(Touched::Elb(ElbKey::TargetGroup(scope.clone(), next.id.clone())));
                let lbs = txn.state.elb.lbs_using(&scope, &arn);
                Ok((next, lbs))
            })
            .await?;
        Ok(out)
    }

    /// Deletes a target group no listener or rule forwards to. One that does not exist
    /// is already deleted: that succeeds, as in ELBv2.
    pub async fn delete_target_group(&self, caller: &Caller, arn: String) -> Result<()> {
        let scope = caller.scope.clone();
        if let Err(e) = parse_arn(&scope, &arn, Fault::TargetGroupNotFound) {
            if e.fault == Fault::Validation {
                return Err(e.into());
            }
            return Ok(());
        }
        self.change(move |txn| {
            let Ok(tg) = find_tg(txn.state, &scope, &arn) else {
                return Ok(());
            };
            if !txn.state.elb.lbs_using(&scope, &arn).is_empty() {
                return fail(
                    Fault::ResourceInUse,
                    format!("Target group '{arn}' is currently in use by a listener or a rule"),
                );
            }
            txn.state.elb.target_groups.remove(&(scope.clone(), tg.id.clone()));
            txn.touch(Touched::Elb(ElbKey::TargetGroup(scope, tg.id.clone())));
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Registers targets (`port` `None`: the group's port). Registering a registered
    /// target again changes nothing. Instance ids must name container instances of the
    /// caller's account and region; IP addresses must be private or loopback.
    pub async fn register_targets(&self, caller: &Caller, arn: String, targets: Vec<TargetSpec>) -> Result<()> {
        if targets.is_empty() {
            return fail(Fault::Validation, "Give at least one target.");
        }
        let scope = caller.scope.clone();
        self.rewrite(caller, arn, move |state, next: &mut TargetGroup| {
            for TargetSpec { id, port, availability_zone: zone } in targets {
                let port = resolve_port(port, next.port)?;
                match next.target_type {
                    TargetType::Ip => {
                        let ip: IpAddr = id.parse().map_err(|_| {
                            crate::Error::Elb(elb::ElbError::new(Fault::InvalidTarget, format!("'{id}' is not an IPv4 address; this target group's targets are IP addresses")))
                        })?;
                        let allowed = matches!(ip, IpAddr::V4(v4) if ip_allowed(v4));
                        if !allowed {
                            return fail(Fault::InvalidTarget, format!("The IP address '{id}' is not in the VPC, a private range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10) or 127.0.0.0/8"));
                        }
                    }
                    TargetType::Instance => {
                        if !state.instances.values().any(|i| i.scope == scope && i.ec2_instance_id == id && i.status != model::ecs::task::InstanceStatus::Inactive) {
                            return fail(Fault::InvalidTarget, format!("The following targets are not valid instances: '{id}' (instances are the container instances of this account and region)"));
                        }
                    }
                }
                if !next.targets.iter().any(|t| t.id == id && t.port == port) {
                    next.targets.push(Target { id, port, availability_zone: zone });
                }
            }
            if next.targets.len() > MAX_TARGETS {
                return fail(Fault::TooManyTargets, format!("A target group can have at most {MAX_TARGETS} targets."));
            }
            Ok(())
        })
        .await
    }

    /// Deregisters targets; the data plane drains them for the group's deregistration
    /// delay (state `draining`), or until their in-flight requests are done.
    pub async fn deregister_targets(&self, caller: &Caller, arn: String, targets: Vec<TargetSpec>) -> Result<()> {
        if targets.is_empty() {
            return fail(Fault::Validation, "Give at least one target.");
        }
        self.rewrite(caller, arn.clone(), move |_, next: &mut TargetGroup| {
            for TargetSpec { id, port, .. } in targets {
                let port = resolve_port(port, next.port)?;
                let before = next.targets.len();
                next.targets.retain(|t| !(t.id == id && t.port == port));
                if next.targets.len() == before {
                    return fail(
                        Fault::InvalidTarget,
                        format!("The following targets are not registered in target group '{arn}': '{id}:{port}'"),
                    );
                }
            }
            Ok(())
        })
        .await
    }

    /// The health of the given targets (`port` `None`: every registration of the id), or
    /// of every registered and draining target.
    pub fn describe_target_health(
        &self,
        caller: &Caller,
        arn: &str,
        targets: &[TargetSpec],
    ) -> Result<Vec<TargetHealthDescription>> {
        let state = self.view();
        let tg = find_tg(&state, &caller.scope, arn)?;
        let in_use = !state.elb.lbs_using(&caller.scope, arn).is_empty();
        let board = self.elb.board.group(arn);
        let hc_port = |t: &Target| tg.health_check.port.unwrap_or(t.port).to_string();
        let registered_health = |t: &Target| {
            if !in_use {
                return TargetHealth::not_in_use();
            }
            if !tg.health_check.enabled {
                return TargetHealth::disabled();
            }
            board.get(&TargetKey { id: t.id.clone(), port: t.port }).cloned().unwrap_or_else(TargetHealth::registering)
        };
        // The board holds what the data plane serves. A target it still knows but the
        // group no longer lists was deregistered: it drains (or is about to, when the
        // data plane has not applied the change yet).
        let draining = |id: &str, port: Option<u16>| {
            let mut keys: Vec<&TargetKey> = board
                .iter()
                .filter(|(k, _)| k.id == id && port.is_none_or(|p| p == k.port))
                .map(|(k, _)| k)
                .filter(|k| !tg.targets.iter().any(|t| t.id == k.id && t.port == k.port))
                .collect();
            keys.sort();
            keys.into_iter().cloned().collect::<Vec<_>>()
        };
        let describe_draining = |k: TargetKey| {
            let t = Target { id: k.id, port: k.port, availability_zone: None };
            TargetHealthDescription { health_check_port: hc_port(&t), target: t, health: TargetHealth::draining() }
        };
        let mut out = Vec::new();
        if targets.is_empty() {
            for t in &tg.targets {
                out.push(TargetHealthDescription {
                    target: t.clone(),
                    health_check_port: hc_port(t),
                    health: registered_health(t),
                });
            }
            let mut drained: Vec<TargetKey> = board
                .iter()
                .filter(|(k, _)| !tg.targets.iter().any(|t| t.id == k.id && t.port == k.port))
                .map(|(k, _)| k.clone())
                .collect();
            drained.sort();
            out.extend(drained.into_iter().map(describe_draining));
            return Ok(out);
        }
        for TargetSpec { id, port, .. } in targets {
            let port = port.map(|p| resolve_port(Some(p), tg.port)).transpose()?;
            let matching: Vec<&Target> =
                tg.targets.iter().filter(|t| t.id == *id && port.is_none_or(|p| p == t.port)).collect();
            let drains = draining(id, port);
            if matching.is_empty() && drains.is_empty() {
                let t = Target { id: id.clone(), port: port.unwrap_or(tg.port), availability_zone: None };
                out.push(TargetHealthDescription {
                    health_check_port: hc_port(&t),
                    target: t,
                    health: TargetHealth::not_registered(),
                });
                continue;
            }
            for t in matching {
                out.push(TargetHealthDescription {
                    target: t.clone(),
                    health_check_port: hc_port(t),
                    health: registered_health(t),
                });
            }
            out.extend(drains.into_iter().map(describe_draining));
        }
        Ok(out)
    }
}

/// Health checks of instance and IP targets are always on in ALB.
fn check_enabled(hc: &HealthCheck) -> Result<()> {
    if !hc.enabled {
        return fail(
            Fault::InvalidConfigurationRequest,
            "Health checks cannot be disabled for target groups of instances or IP addresses.",
        );
    }
    Ok(())
}

fn resolve_port(port: Option<i32>, default: u16) -> Result<u16> {
    match port {
        None => Ok(default),
        Some(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Some(p) => fail(Fault::Validation, format!("Target port {p} is not between 1 and 65535.")),
    }
}
