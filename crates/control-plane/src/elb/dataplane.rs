//! The data plane's view of the ELBv2 state: a [`Snapshot`] with rules in evaluation order
//! and targets resolved to socket addresses.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use elb::health::TargetKey;
use elb::resources::{TargetGroup, TargetType};
use elb::snapshot::{LbPlan, ListenerPlan, RulePlan, Snapshot, TargetPlan, TgPlan};

use crate::state::State;
use crate::ControlPlane;

/// A container instance attribute naming the address its host is reached at, for
/// `instance` targets on other machines (set it with `ECS_INSTANCE_ATTRIBUTES`). Without
/// it, an instance is taken to run on the Berth host itself (127.0.0.1), which is true of
/// `berth up`'s own agent.
pub const HOST_ADDRESS_ATTRIBUTE: &str = "berth.host-address";

impl ControlPlane {
    /// What the data plane should serve now.
    pub fn elb_snapshot(&self) -> Snapshot {
        build(&self.view())
    }
}

fn build(state: &State) -> Snapshot {
    let elb = &state.elb;
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut load_balancers = Vec::new();
    for ((scope, _), lb) in &elb.load_balancers {
        let mut listeners = Vec::new();
        for l in elb.lb_listeners(scope, &lb.id) {
            let mut rules: Vec<RulePlan> = Vec::new();
            for r in elb.listener_rules(scope, &l.id) {
                let Some(action) = r.actions.last() else { continue };
                used.extend(action.target_groups().into_iter().map(str::to_string));
                rules.push(RulePlan {
                    priority: Some(r.priority),
                    conditions: r.conditions.clone(),
                    action: action.kind.clone(),
                });
            }
            if let Some(action) = l.default_actions.last() {
                used.extend(action.target_groups().into_iter().map(str::to_string));
                rules.push(RulePlan { priority: None, conditions: Vec::new(), action: action.kind.clone() });
            }
            listeners.push(ListenerPlan { arn: l.arn(), port: l.port, rules });
        }
        load_balancers.push(LbPlan {
            arn: lb.arn(),
            address: lb.address,
            attributes: lb.attributes.clone(),
            listeners,
        });
    }
    let target_groups = elb
        .target_groups
        .values()
        .map(|tg| {
            let arn = tg.arn();
            let plan = TgPlan {
                in_use: used.contains(&arn),
                health_check: tg.health_check.clone(),
                attributes: tg.attributes.clone(),
                targets: targets(state, tg),
                arn: arn.clone(),
            };
            (arn, plan)
        })
        .collect();
    Snapshot { load_balancers, target_groups }
}

fn targets(state: &State, tg: &TargetGroup) -> Vec<TargetPlan> {
    tg.targets
        .iter()
        .map(|t| {
            let ip = match tg.target_type {
                TargetType::Ip => t.id.parse::<IpAddr>().ok(),
                TargetType::Instance => state
                    .instances
                    .values()
                    .find(|i| {
                        i.scope == tg.scope
                            && i.ec2_instance_id == t.id
                            && i.status != model::ecs::task::InstanceStatus::Inactive
                    })
                    .map(|i| {
                        i.attribute(HOST_ADDRESS_ATTRIBUTE)
                            .and_then(|v| v.as_deref())
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
                    }),
            };
            TargetPlan {
                key: TargetKey { id: t.id.clone(), port: t.port },
                addr: ip.map(|ip| SocketAddr::new(ip, t.port)),
            }
        })
        .collect()
}
