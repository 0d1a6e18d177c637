//! EC2's room in the state: the stored security groups of every account and their rules,
//! the VPCs and subnets accounts created, and what was changed of the default ones (their
//! tags, the VPC's DNS attributes), stored once it differs from the derived default.

use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use agent_protocol::IpProtocol;
use model::ec2::{derived_id, Network};
use model::Scope;

/// Where a rule's traffic may come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// An IPv4 block such as `10.0.0.0/16` (host bits zero).
    Cidr(String),
    /// The members of a security group (of the same account), by id.
    Group(String),
}

/// What a rule allows: the part of a rule that makes it a duplicate of another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    pub protocol: IpProtocol,
    /// EC2's ports: a range for tcp and udp, type and code for icmp (-1: any), -1 for all.
    pub from_port: i32,
    pub to_port: i32,
    pub source: Source,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let peer = match &self.source {
            Source::Cidr(c) => c,
            Source::Group(g) => g,
        };
        let proto = match self.protocol {
            IpProtocol::All => "ALL".to_string(),
            p => p.as_ec2().to_uppercase(),
        };
        write!(f, "peer: {peer}, {proto}, from port: {}, to port: {}, ALLOW", self.from_port, self.to_port)
    }
}

/// One rule of a group, with its `sgr-` id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SgRule {
    pub id: String,
    #[serde(flatten)]
    pub permission: Permission,
    pub description: Option<String>,
}

/// A security group of a VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroup {
    pub scope: Scope,
    pub id: String,
    pub name: String,
    pub description: String,
    pub vpc_id: String,
    pub tags: Vec<(String, String)>,
    pub ingress: Vec<SgRule>,
    pub egress: Vec<SgRule>,
}

impl SecurityGroup {
    pub fn arn(&self) -> String {
        format!("arn:aws:ec2:{}:{}:security-group/{}", self.scope.region, self.scope.account, self.id)
    }

    pub fn is_default(&self) -> bool {
        self.name == "default"
    }

    /// The default VPC's `default` group as EC2 creates it: all traffic from its own
    /// members in, everything out.
    pub fn default_of(scope: &Scope, net: &Network) -> SecurityGroup {
        let id = net.security_group_id.clone();
        SecurityGroup {
            scope: scope.clone(),
            name: "default".into(),
            description: "default VPC security group".into(),
            vpc_id: net.vpc_id.clone(),
            tags: vec![],
            ingress: vec![SgRule {
                id: derived_id("sgr", scope, "default-sg-ingress"),
                permission: Permission {
                    protocol: IpProtocol::All,
                    from_port: -1,
                    to_port: -1,
                    source: Source::Group(id.clone()),
                },
                description: None,
            }],
            egress: vec![allow_all_out(derived_id("sgr", scope, "default-sg-egress"))],
            id,
        }
    }
}

pub(crate) fn allow_all_out(id: String) -> SgRule {
    SgRule {
        id,
        permission: Permission {
            protocol: IpProtocol::All,
            from_port: -1,
            to_port: -1,
            source: Source::Cidr("0.0.0.0/0".into()),
        },
        description: None,
    }
}

/// A VPC: one an account created, or the default VPC once something of it was changed
/// (then only its tags and attributes are read from the record; the rest stays derived).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vpc {
    pub scope: Scope,
    pub id: String,
    pub cidr: String,
    pub is_default: bool,
    pub dhcp_options_id: String,
    /// The id of the VPC's `default` security group.
    pub security_group_id: String,
    pub enable_dns_support: bool,
    pub enable_dns_hostnames: bool,
    #[serde(default)]
    pub enable_network_address_usage_metrics: bool,
    pub tags: Vec<(String, String)>,
}

/// A subnet: one an account created, or a default subnet once tagged (then only its tags
/// are read from the record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSubnet {
    pub scope: Scope,
    pub id: String,
    pub vpc_id: String,
    pub cidr: String,
    pub zone: String,
    pub zone_id: String,
    pub default_for_az: bool,
    pub map_public_ip_on_launch: bool,
    pub tags: Vec<(String, String)>,
}

/// The stored EC2 resources of every account.
#[derive(Debug, Clone, Default)]
pub struct Ec2State {
    pub security_groups: OrdMap<(Scope, String), Arc<SecurityGroup>>,
    pub vpcs: OrdMap<(Scope, String), Arc<Vpc>>,
    pub subnets: OrdMap<(Scope, String), Arc<StoredSubnet>>,
}
