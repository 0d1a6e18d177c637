//! The ELBv2 API (query protocol, version 2015-12-01): decode each action's parameters,
//! call the control plane, and write ELBv2's XML shapes.

use axum::response::Response;

use control_plane::elb::{
    NewListener, NewLoadBalancer, NewRule, NewTargetGroup, RuleChange, TargetHealthDescription, TargetSpec,
};
use control_plane::Caller;
use elb::actions::{Action, ActionInput, ActionKind, FixedResponseInput, ForwardInput, RedirectInput};
use elb::attributes::Attributes;
use elb::conditions::{Condition, ConditionInput};
use elb::resources::{HealthCheckInput, Listener, LoadBalancer, TargetGroup};
use model::tags::Tags;

use crate::query::{elb_ok, timestamp, Params, Xml};
use crate::{Api, ApiError};

/// Operations of the ELBv2 model that Berth does not offer (yet).
const UNBUILT: &[&str] = &[
    "AddListenerCertificates",
    "AddTrustStoreRevocations",
    "CreateTrustStore",
    "DeleteSharedTrustStoreAssociation",
    "DeleteTrustStore",
    "DescribeCapacityReservation",
    "DescribeListenerCertificates",
    "DescribeTrustStoreAssociations",
    "DescribeTrustStoreRevocations",
    "DescribeTrustStores",
    "GetResourcePolicy",
    "GetTrustStoreCaCertificatesBundle",
    "GetTrustStoreRevocationContent",
    "ModifyCapacityReservation",
    "ModifyIpPools",
    "ModifyTrustStore",
    "RemoveListenerCertificates",
    "RemoveTrustStoreRevocations",
];

/// The ALB hosted zone id of us-east-1, reported for every load balancer: Berth's DNS
/// names are addresses and live in no hosted zone, but clients expect the member.
const HOSTED_ZONE_ID: &str = "Z35SXDOTRQ7X7K";

pub(crate) async fn dispatch(
    api: &Api,
    caller: &Caller,
    action: &str,
    p: &Params,
    id: &str,
) -> Result<Response, ApiError> {
    let cp = &api.control;
    let ok = |f: &dyn Fn(&mut Xml)| elb_ok(action, id, f);
    match action {
        "CreateLoadBalancer" => {
            let mut subnets = p.list("Subnets")?;
            let mappings = p.structs("SubnetMappings")?;
            if !subnets.is_empty() && !mappings.is_empty() {
                return Err(ApiError::bad_request("ValidationError", "Give Subnets or SubnetMappings, not both."));
            }
            for m in mappings {
                if m.has("AllocationId") || m.has("PrivateIPv4Address") || m.has("IPv6Address") {
                    return Err(ApiError::bad_request(
                        "InvalidConfigurationRequest",
                        "Subnet mappings of an Application Load Balancer take only a SubnetId.",
                    ));
                }
                subnets.push(m.required("SubnetId")?);
            }
            let lb = cp
                .elbv2()
                .create_load_balancer(
                    caller,
                    NewLoadBalancer {
                        name: p.required("Name")?,
                        subnets,
                        security_groups: p.list("SecurityGroups")?,
                        scheme: p.string("Scheme"),
                        lb_type: p.string("Type"),
                        ip_address_type: p.string("IpAddressType"),
                        tags: tags(p, "Tags")?,
                    },
                )
                .await?;
            Ok(ok(&|x| {
                x.list("LoadBalancers", "member", [&lb], lb_xml);
            }))
        }
        "DescribeLoadBalancers" => {
            let (lbs, next) = cp.elbv2().describe_load_balancers(
                caller,
                &p.list("LoadBalancerArns")?,
                &p.list("Names")?,
                p.int("PageSize")?,
                p.get("Marker"),
            )?;
            Ok(ok(&|x| {
                x.list("LoadBalancers", "member", &lbs, lb_xml);
                x.opt("NextMarker", next.as_deref());
            }))
        }
        "DeleteLoadBalancer" => {
            cp.elbv2().delete_load_balancer(caller, p.required("LoadBalancerArn")?).await?;
            Ok(ok(&|_| {}))
        }
        "SetSubnets" => {
            let mut subnets = p.list("Subnets")?;
            for m in p.structs("SubnetMappings")? {
                subnets.push(m.required("SubnetId")?);
            }
            let lb = cp
                .elbv2()
                .set_subnets(caller, p.required("LoadBalancerArn")?, subnets, p.string("IpAddressType"))
                .await?;
            Ok(ok(&|x| {
                zones_xml(x, &lb);
                x.text("IpAddressType", &lb.ip_address_type);
            }))
        }
        "SetSecurityGroups" => {
            let lb = cp
                .elbv2()
                .set_security_groups(caller, p.required("LoadBalancerArn")?, p.list("SecurityGroups")?)
                .await?;
            Ok(ok(&|x| {
                x.list("SecurityGroupIds", "member", &lb.security_groups, |x, sg| {
                    x.out_text(sg);
                });
            }))
        }
        "SetIpAddressType" => {
            let lb = cp
                .elbv2()
                .set_ip_address_type(caller, p.required("LoadBalancerArn")?, p.required("IpAddressType")?)
                .await?;
            Ok(ok(&|x| {
                x.text("IpAddressType", &lb.ip_address_type);
            }))
        }
        "DescribeLoadBalancerAttributes" => {
            let a = cp.elbv2().describe_attributes::<LoadBalancer>(caller, &p.required("LoadBalancerArn")?)?;
            Ok(ok(&|x| attributes_xml(x, &a)))
        }
        "ModifyLoadBalancerAttributes" => {
            let a = cp
                .elbv2()
                .modify_attributes::<LoadBalancer>(caller, p.required("LoadBalancerArn")?, key_values(p)?)
                .await?;
            Ok(ok(&|x| attributes_xml(x, &a)))
        }
        "CreateTargetGroup" => {
            let tg = cp
                .elbv2()
                .create_target_group(
                    caller,
                    NewTargetGroup {
                        name: p.required("Name")?,
                        protocol: p.string("Protocol"),
                        protocol_version: p.string("ProtocolVersion"),
                        port: p.int("Port")?,
                        vpc_id: p.string("VpcId"),
                        target_type: p.string("TargetType"),
                        ip_address_type: p.string("IpAddressType"),
                        health_check: health_check(p)?,
                        tags: tags(p, "Tags")?,
                    },
                )
                .await?;
            Ok(ok(&|x| {
                x.list("TargetGroups", "member", [(&tg, &Vec::new())], |x, (t, l)| tg_xml(x, t, l));
            }))
        }
        "DescribeTargetGroups" => {
            let (tgs, next) = cp.elbv2().describe_target_groups(
                caller,
                p.get("LoadBalancerArn"),
                &p.list("TargetGroupArns")?,
                &p.list("Names")?,
                p.int("PageSize")?,
                p.get("Marker"),
            )?;
            Ok(ok(&|x| {
                x.list("TargetGroups", "member", &tgs, |x, (t, l)| tg_xml(x, t, l));
                x.opt("NextMarker", next.as_deref());
            }))
        }
        "ModifyTargetGroup" => {
            let (tg, lbs) =
                cp.elbv2().modify_target_group(caller, p.required("TargetGroupArn")?, health_check(p)?).await?;
            Ok(ok(&|x| {
                x.list("TargetGroups", "member", [(&tg, &lbs)], |x, (t, l)| tg_xml(x, t, l));
            }))
        }
        "DeleteTargetGroup" => {
            cp.elbv2().delete_target_group(caller, p.required("TargetGroupArn")?).await?;
            Ok(ok(&|_| {}))
        }
        "DescribeTargetGroupAttributes" => {
            let a = cp.elbv2().describe_attributes::<TargetGroup>(caller, &p.required("TargetGroupArn")?)?;
            Ok(ok(&|x| attributes_xml(x, &a)))
        }
        "ModifyTargetGroupAttributes" => {
            let a = cp
                .elbv2()
                .modify_attributes::<TargetGroup>(caller, p.required("TargetGroupArn")?, key_values(p)?)
                .await?;
            Ok(ok(&|x| attributes_xml(x, &a)))
        }
        "RegisterTargets" => {
            cp.elbv2().register_targets(caller, p.required("TargetGroupArn")?, target_list(p)?).await?;
            Ok(ok(&|_| {}))
        }
        "DeregisterTargets" => {
            cp.elbv2().deregister_targets(caller, p.required("TargetGroupArn")?, target_list(p)?).await?;
            Ok(ok(&|_| {}))
        }
        "DescribeTargetHealth" => {
            let rows = cp.elbv2().describe_target_health(caller, &p.required("TargetGroupArn")?, &target_list(p)?)?;
            Ok(ok(&|x| {
                x.list("TargetHealthDescriptions", "member", &rows, health_xml);
            }))
        }
        "CreateListener" => {
            reject_tls(p)?;
            let l = cp
                .elbv2()
                .create_listener(
                    caller,
                    NewListener {
                        lb_arn: p.required("LoadBalancerArn")?,
                        protocol: p.string("Protocol"),
                        port: p.int("Port")?,
                        default_actions: actions(p, "DefaultActions")?,
                        certificates: p.structs("Certificates")?.len(),
                        tags: tags(p, "Tags")?,
                    },
                )
                .await?;
            Ok(ok(&|x| {
                x.list("Listeners", "member", [&l], listener_xml);
            }))
        }
        "DescribeListeners" => {
            let (ls, next) = cp.elbv2().describe_listeners(
                caller,
                p.get("LoadBalancerArn"),
                &p.list("ListenerArns")?,
                p.int("PageSize")?,
                p.get("Marker"),
            )?;
            Ok(ok(&|x| {
                x.list("Listeners", "member", &ls, listener_xml);
                x.opt("NextMarker", next.as_deref());
            }))
        }
        "ModifyListener" => {
            reject_tls(p)?;
            let default_actions = if p.has("DefaultActions") { Some(actions(p, "DefaultActions")?) } else { None };
            let l = cp
                .elbv2()
                .modify_listener(
                    caller,
                    p.required("ListenerArn")?,
                    p.int("Port")?,
                    p.string("Protocol"),
                    p.structs("Certificates")?.len(),
                    default_actions,
                )
                .await?;
            Ok(ok(&|x| {
                x.list("Listeners", "member", [&l], listener_xml);
            }))
        }
        "DeleteListener" => {
            cp.elbv2().delete_listener(caller, p.required("ListenerArn")?).await?;
            Ok(ok(&|_| {}))
        }
        "DescribeListenerAttributes" => {
            // Listener attributes of an ALB concern TLS and mutual authentication, which
            // Berth's HTTP listeners do not have; the listener must exist.
            cp.elbv2().describe_listeners(caller, None, &[p.required("ListenerArn")?], None, None)?;
            Ok(ok(&|x| {
                x.elem("Attributes", |_| {});
            }))
        }
        "CreateRule" => {
            no_transforms(p)?;
            let rule = cp
                .elbv2()
                .create_rule(
                    caller,
                    NewRule {
                        listener_arn: p.required("ListenerArn")?,
                        conditions: conditions(p, "Conditions")?,
                        priority: p.long("Priority")?.ok_or_else(|| missing("Priority"))?,
                        actions: actions(p, "Actions")?,
                        tags: tags(p, "Tags")?,
                    },
                )
                .await?;
            Ok(ok(&|x| {
                x.list("Rules", "member", [&rule], rule_xml);
            }))
        }
        "DescribeRules" => {
            let (rules, next) = cp.elbv2().describe_rules(
                caller,
                p.get("ListenerArn"),
                &p.list("RuleArns")?,
                p.int("PageSize")?,
                p.get("Marker"),
            )?;
            Ok(ok(&|x| {
                x.list("Rules", "member", &rules, rule_xml);
                x.opt("NextMarker", next.as_deref());
            }))
        }
        "ModifyRule" => {
            no_transforms(p)?;
            let change = RuleChange {
                rule_arn: p.required("RuleArn")?,
                conditions: if p.has("Conditions") { Some(conditions(p, "Conditions")?) } else { None },
                actions: if p.has("Actions") { Some(actions(p, "Actions")?) } else { None },
            };
            let rule = cp.elbv2().modify_rule(caller, change).await?;
            Ok(ok(&|x| {
                x.list("Rules", "member", [&rule], rule_xml);
            }))
        }
        "DeleteRule" => {
            cp.elbv2().delete_rule(caller, p.required("RuleArn")?).await?;
            Ok(ok(&|_| {}))
        }
        "SetRulePriorities" => {
            let pairs = p
                .structs("RulePriorities")?
                .into_iter()
                .map(|s| Ok((s.required("RuleArn")?, s.long("Priority")?.ok_or_else(|| missing("Priority"))?)))
                .collect::<Result<Vec<_>, ApiError>>()?;
            let rules = cp.elbv2().set_rule_priorities(caller, pairs).await?;
            Ok(ok(&|x| {
                x.list("Rules", "member", &rules, rule_xml);
            }))
        }
        "AddTags" => {
            let t = tags(p, "Tags")?;
            if t.is_empty() {
                return Err(missing("Tags"));
            }
            cp.elbv2().elb_add_tags(caller, p.list("ResourceArns")?, t).await?;
            Ok(ok(&|_| {}))
        }
        "RemoveTags" => {
            cp.elbv2().elb_remove_tags(caller, p.list("ResourceArns")?, p.list("TagKeys")?).await?;
            Ok(ok(&|_| {}))
        }
        "DescribeTags" => {
            let described = cp.elbv2().elb_describe_tags(caller, &p.list("ResourceArns")?)?;
            Ok(ok(&|x| {
                x.list("TagDescriptions", "member", &described, |x, (arn, t)| {
                    x.text("ResourceArn", arn);
                    tags_xml(x, t);
                });
            }))
        }
        "DescribeAccountLimits" => {
            let limits = [
                ("application-load-balancers", control_plane::elb::MAX_LOAD_BALANCERS),
                ("target-groups", control_plane::elb::MAX_TARGET_GROUPS),
                ("targets-per-application-load-balancer", control_plane::elb::MAX_TARGETS),
                ("listeners-per-application-load-balancer", control_plane::elb::MAX_LISTENERS),
                ("rules-per-application-load-balancer", control_plane::elb::MAX_RULES),
                ("condition-values-per-alb-rule", elb::conditions::MAX_VALUES_PER_RULE),
                ("condition-wildcards-per-alb-rule", elb::conditions::MAX_WILDCARDS_PER_RULE),
                ("target-groups-per-action-on-application-load-balancer", elb::actions::MAX_FORWARD_GROUPS),
            ];
            Ok(ok(&|x| {
                x.list("Limits", "member", limits, |x, (n, m)| {
                    x.text("Name", n).text("Max", m.to_string());
                });
            }))
        }
        "DescribeSSLPolicies" => Ok(ok(&|x| {
            x.elem("SslPolicies", |_| {});
        })),
        a if UNBUILT.contains(&a) || a == "ModifyListenerAttributes" => {
            Err(ApiError::bad_request("UnsupportedOperation", format!("{a} is not supported by Berth yet.")))
        }
        a => Err(ApiError::bad_request("InvalidAction", format!("'{a}' is not an Elastic Load Balancing v2 action."))),
    }
}

fn missing(member: &str) -> ApiError {
    ApiError::bad_request(
        "ValidationError",
        format!("1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"),
    )
}

fn reject_tls(p: &Params) -> Result<(), ApiError> {
    if p.has("SslPolicy") || p.has("AlpnPolicy") || p.has("MutualAuthentication") {
        return Err(ApiError::bad_request(
            "UnsupportedProtocol",
            "TLS settings need an HTTPS listener, which Berth does not offer yet.",
        ));
    }
    Ok(())
}

fn no_transforms(p: &Params) -> Result<(), ApiError> {
    if p.has("Transforms") {
        return Err(ApiError::bad_request("UnsupportedOperation", "Rule transforms are not supported by Berth yet."));
    }
    Ok(())
}

fn tags(p: &Params, key: &str) -> Result<Vec<(String, String)>, ApiError> {
    p.structs(key)?.into_iter().map(|t| Ok((t.required("Key")?, t.string("Value").unwrap_or_default()))).collect()
}

fn key_values(p: &Params) -> Result<Vec<(String, String)>, ApiError> {
    let attrs = p.structs("Attributes")?;
    if attrs.is_empty() {
        return Err(missing("Attributes"));
    }
    attrs.into_iter().map(|a| Ok((a.required("Key")?, a.string("Value").unwrap_or_default()))).collect()
}

fn target_list(p: &Params) -> Result<Vec<TargetSpec>, ApiError> {
    p.structs("Targets")?
        .into_iter()
        .map(|t| {
            Ok(TargetSpec {
                id: t.required("Id")?,
                port: t.int("Port")?,
                availability_zone: t.string("AvailabilityZone"),
            })
        })
        .collect()
}

fn health_check(p: &Params) -> Result<HealthCheckInput, ApiError> {
    Ok(HealthCheckInput {
        enabled: p.bool("HealthCheckEnabled")?,
        protocol: p.string("HealthCheckProtocol"),
        port: p.string("HealthCheckPort"),
        path: p.string("HealthCheckPath"),
        interval_seconds: p.int("HealthCheckIntervalSeconds")?,
        timeout_seconds: p.int("HealthCheckTimeoutSeconds")?,
        healthy_threshold: p.int("HealthyThresholdCount")?,
        unhealthy_threshold: p.int("UnhealthyThresholdCount")?,
        matcher: match p.sub("Matcher") {
            None => None,
            Some(m) if m.has("GrpcCode") => {
                return Err(ApiError::bad_request(
                    "ValidationError",
                    "GrpcCode applies to gRPC target groups; use HttpCode.",
                ))
            }
            Some(m) => Some(m.required("HttpCode")?),
        },
    })
}

fn actions(p: &Params, key: &str) -> Result<Vec<ActionInput>, ApiError> {
    p.structs(key)?
        .into_iter()
        .map(|a| {
            let forward = match a.sub("ForwardConfig") {
                None => None,
                Some(f) => Some(ForwardInput {
                    groups: f
                        .structs("TargetGroups")?
                        .into_iter()
                        .map(|g| Ok((g.string("TargetGroupArn"), g.int("Weight")?)))
                        .collect::<Result<_, ApiError>>()?,
                    stickiness_enabled: f.bool("TargetGroupStickinessConfig.Enabled")?,
                    stickiness_seconds: f.int("TargetGroupStickinessConfig.DurationSeconds")?,
                }),
            };
            let redirect = a.sub("RedirectConfig").map(|r| RedirectInput {
                protocol: r.string("Protocol"),
                port: r.string("Port"),
                host: r.string("Host"),
                path: r.string("Path"),
                query: r.string("Query"),
                status_code: r.string("StatusCode"),
            });
            let fixed_response = a.sub("FixedResponseConfig").map(|f| FixedResponseInput {
                message_body: f.string("MessageBody"),
                status_code: f.string("StatusCode"),
                content_type: f.string("ContentType"),
            });
            Ok(ActionInput {
                kind: a.string("Type"),
                target_group_arn: a.string("TargetGroupArn"),
                order: a.int("Order")?,
                forward,
                redirect,
                fixed_response,
            })
        })
        .collect()
}

fn conditions(p: &Params, key: &str) -> Result<Vec<ConditionInput>, ApiError> {
    p.structs(key)?
        .into_iter()
        .map(|c| {
            if c.has("RegexValues")
                || ["HostHeaderConfig", "PathPatternConfig", "HttpHeaderConfig"]
                    .iter()
                    .any(|k| c.has(&format!("{k}.RegexValues")))
            {
                return Err(ApiError::bad_request(
                    "ValidationError",
                    "Regular-expression condition values are not supported by Berth; use wildcard Values.",
                ));
            }
            let field = c.string("Field");
            let config = match field.as_deref() {
                Some("host-header") => "HostHeaderConfig",
                Some("path-pattern") => "PathPatternConfig",
                Some("http-header") => "HttpHeaderConfig",
                Some("http-request-method") => "HttpRequestMethodConfig",
                Some("source-ip") => "SourceIpConfig",
                _ => "",
            };
            let config_values = if config.is_empty() { None } else { c.opt_list(&format!("{config}.Values"))? };
            let query = match c.sub("QueryStringConfig") {
                None => None,
                Some(q) => {
                    Some(q.structs("Values")?.into_iter().map(|kv| (kv.string("Key"), kv.string("Value"))).collect())
                }
            };
            Ok(ConditionInput {
                field,
                values: c.opt_list("Values")?,
                config_values,
                header_name: c.string("HttpHeaderConfig.HttpHeaderName"),
                query,
            })
        })
        .collect()
}

fn tags_xml(x: &mut Xml, t: &Tags) {
    x.list("Tags", "member", t.iter(), |x, (k, v)| {
        x.text("Key", k).text("Value", v);
    });
}

fn attributes_xml(x: &mut Xml, a: &Attributes) {
    x.list("Attributes", "member", a.iter(), |x, (k, v)| {
        x.text("Key", k).text("Value", v);
    });
}

fn lb_xml(x: &mut Xml, lb: &LoadBalancer) {
    x.text("LoadBalancerArn", lb.arn())
        .text("DNSName", lb.dns_name())
        .text("CanonicalHostedZoneId", HOSTED_ZONE_ID)
        .text("CreatedTime", timestamp(lb.created))
        .text("LoadBalancerName", lb.name.as_str())
        .text("Scheme", lb.scheme.as_str())
        .text("VpcId", &lb.vpc_id)
        .elem("State", |x| {
            x.text("Code", "active");
        })
        .text("Type", "application");
    zones_xml(x, lb);
    x.list("SecurityGroups", "member", &lb.security_groups, |x, sg| {
        x.out_text(sg);
    })
    .text("IpAddressType", &lb.ip_address_type);
}

fn zones_xml(x: &mut Xml, lb: &LoadBalancer) {
    x.list("AvailabilityZones", "member", &lb.zones, |x, z| {
        x.text("ZoneName", &z.zone).text("SubnetId", &z.subnet_id).elem("LoadBalancerAddresses", |_| {});
    });
}

fn tg_xml(x: &mut Xml, tg: &TargetGroup, lbs: &Vec<String>) {
    let hc = &tg.health_check;
    x.text("TargetGroupArn", tg.arn())
        .text("TargetGroupName", tg.name.as_str())
        .text("Protocol", &tg.protocol)
        .text("Port", tg.port.to_string())
        .text("VpcId", &tg.vpc_id)
        .text("HealthCheckProtocol", &hc.protocol)
        .text("HealthCheckPort", hc.port_text())
        .text("HealthCheckEnabled", hc.enabled.to_string())
        .text("HealthCheckIntervalSeconds", hc.interval_seconds.to_string())
        .text("HealthCheckTimeoutSeconds", hc.timeout_seconds.to_string())
        .text("HealthyThresholdCount", hc.healthy_threshold.to_string())
        .text("UnhealthyThresholdCount", hc.unhealthy_threshold.to_string())
        .text("HealthCheckPath", &hc.path)
        .elem("Matcher", |x| {
            x.text("HttpCode", hc.matcher.as_str());
        })
        .list("LoadBalancerArns", "member", lbs, |x, a| {
            x.out_text(a);
        })
        .text("TargetType", tg.target_type.as_str())
        .text("ProtocolVersion", &tg.protocol_version)
        .text("IpAddressType", &tg.ip_address_type);
}

fn listener_xml(x: &mut Xml, l: &Listener) {
    x.text("ListenerArn", l.arn())
        .text("LoadBalancerArn", l.lb_arn())
        .text("Port", l.port.to_string())
        .text("Protocol", &l.protocol)
        .list("DefaultActions", "member", &l.default_actions, action_xml);
}

fn action_xml(x: &mut Xml, a: &Action) {
    match &a.kind {
        ActionKind::Forward(f) => {
            x.text("Type", "forward");
            if let [only] = f.groups.as_slice() {
                x.text("TargetGroupArn", &only.arn);
            }
            x.text("Order", a.order.to_string());
            x.elem("ForwardConfig", |x| {
                x.list("TargetGroups", "member", &f.groups, |x, g| {
                    x.text("TargetGroupArn", &g.arn).text("Weight", g.weight.to_string());
                });
                x.elem("TargetGroupStickinessConfig", |x| {
                    x.text("Enabled", f.stickiness_seconds.is_some().to_string());
                    x.opt("DurationSeconds", f.stickiness_seconds.map(|s| s.to_string()));
                });
            });
        }
        ActionKind::Redirect(r) => {
            x.text("Type", "redirect").text("Order", a.order.to_string()).elem("RedirectConfig", |x| {
                x.text("Protocol", &r.protocol)
                    .text("Port", &r.port)
                    .text("Host", &r.host)
                    .text("Path", &r.path)
                    .text("Query", &r.query)
                    .text("StatusCode", &r.status_code);
            });
        }
        ActionKind::FixedResponse(f) => {
            x.text("Type", "fixed-response").text("Order", a.order.to_string()).elem("FixedResponseConfig", |x| {
                x.opt("MessageBody", f.message_body.as_deref())
                    .text("StatusCode", &f.status_code)
                    .opt("ContentType", f.content_type.as_deref());
            });
        }
    }
}

fn condition_xml(x: &mut Xml, c: &Condition) {
    let values = |x: &mut Xml, tag: &str, v: &Vec<String>| {
        x.list(tag, "member", v, |x, s| {
            x.out_text(s);
        });
    };
    x.text("Field", c.field());
    match c {
        Condition::HostHeader { values: v } => {
            values(x, "Values", v);
            x.elem("HostHeaderConfig", |x| values(x, "Values", v));
        }
        Condition::PathPattern { values: v } => {
            values(x, "Values", v);
            x.elem("PathPatternConfig", |x| values(x, "Values", v));
        }
        Condition::HttpHeader { name, values: v } => {
            x.elem("HttpHeaderConfig", |x| {
                x.text("HttpHeaderName", name);
                values(x, "Values", v);
            });
        }
        Condition::HttpRequestMethod { values: v } => {
            x.elem("HttpRequestMethodConfig", |x| values(x, "Values", v));
        }
        Condition::QueryString { values: v } => {
            x.elem("QueryStringConfig", |x| {
                x.list("Values", "member", v, |x, (k, val)| {
                    x.opt("Key", k.as_deref()).text("Value", val);
                });
            });
        }
        Condition::SourceIp { values: v } => {
            x.elem("SourceIpConfig", |x| values(x, "Values", v));
        }
    }
}

fn rule_xml(x: &mut Xml, r: &control_plane::elb::RuleView) {
    x.text("RuleArn", &r.arn)
        .text("Priority", r.priority.map_or_else(|| "default".to_string(), |p| p.to_string()))
        .list("Conditions", "member", &r.conditions, condition_xml)
        .list("Actions", "member", &r.actions, action_xml)
        .text("IsDefault", r.priority.is_none().to_string());
}

fn health_xml(x: &mut Xml, d: &TargetHealthDescription) {
    x.elem("Target", |x| {
        x.text("Id", &d.target.id)
            .text("Port", d.target.port.to_string())
            .opt("AvailabilityZone", d.target.availability_zone.as_deref());
    })
    .text("HealthCheckPort", &d.health_check_port)
    .elem("TargetHealth", |x| {
        x.text("State", d.health.state.as_str())
            .opt("Reason", d.health.reason.map(|r| r.as_str()))
            .opt("Description", d.health.description.as_deref());
    });
}
