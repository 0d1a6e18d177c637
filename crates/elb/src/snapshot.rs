//! What the data plane serves: every load balancer's address and listeners with their
//! rules in evaluation order, and every target group in use with its targets resolved to
//! socket addresses. The control plane computes it from its state; the data plane
//! applies it whole, so it never sees a half-made change.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use crate::actions::ActionKind;
use crate::attributes::{LbAttributes, TgAttributes};
use crate::conditions::Condition;
use crate::health::TargetKey;
use crate::resources::HealthCheck;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub load_balancers: Vec<LbPlan>,
    /// Every target group, by ARN; `in_use` says whether a listener routes to it.
    pub target_groups: BTreeMap<String, TgPlan>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LbPlan {
    pub arn: String,
    pub address: Ipv4Addr,
    pub attributes: LbAttributes,
    pub listeners: Vec<ListenerPlan>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerPlan {
    pub arn: String,
    pub port: u16,
    /// Rules by ascending priority; the default rule (no conditions) last.
    pub rules: Vec<RulePlan>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RulePlan {
    /// `None` for the default rule.
    pub priority: Option<u32>,
    pub conditions: Vec<Condition>,
    pub action: ActionKind,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TgPlan {
    pub arn: String,
    pub health_check: HealthCheck,
    pub attributes: TgAttributes,
    pub targets: Vec<TargetPlan>,
    /// Whether some listener rule forwards to this group; only then are its targets
    /// health-checked and served.
    pub in_use: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPlan {
    pub key: TargetKey,
    /// Where traffic goes; `None` for an instance id that names no container instance.
    pub addr: Option<SocketAddr>,
}
