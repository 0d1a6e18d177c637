//! EC2 security groups, kept durably like every other resource (table
//! `ec2.security_groups`), and the inbound rules they give an `awsvpc` task.
//!
//! The default VPC's `default` group exists in every account without being stored: its id
//! is derived (see [`Network`]) and it allows all traffic from its own members. It is
//! stored only once a rule of it changes, and from then on read from the store.
//!
//! Decision (where a VPC and Docker differ): a rule whose source is a group allows the
//! whole VPC block (172.31.0.0/16), not only that group's members. Addresses of the
//! group's members are not all known here (a load balancer's traffic reaches a task from
//! the host, through the subnet's gateway address), so the rule is widened to everything
//! inside the VPC, and never to anything outside it.

use std::net::Ipv4Addr;
use std::sync::Arc;

use rand::Rng;

pub use agent_protocol::{IngressRule, IpProtocol};
use model::Scope;

use super::{derived_id, Network};
use crate::ec2::Ec2;
use crate::error::{Ec2Error, Error, Result};
use crate::state::ec2::allow_all_out;
pub use crate::state::ec2::{Ec2State, Permission, SecurityGroup, SgRule, Source};
use crate::state::{State, Touched};
use crate::Ops;

/// Groups one VPC may hold (EC2's default quota is 2500 per region).
pub const MAX_GROUPS: usize = 2500;
/// Inbound rules one group may hold (EC2's default quota).
pub const MAX_RULES: usize = 60;
/// Tags one resource may carry.
pub const MAX_TAGS: usize = 50;

pub(crate) fn fail<T>(code: &'static str, message: impl Into<String>) -> Result<T> {
    Err(Error::Ec2(Ec2Error { code, message: message.into() }))
}

/// `prefix-` and 17 lower-case hex digits, the shape of EC2's ids.
pub(crate) fn new_id(prefix: &str) -> String {
    let b: [u8; 9] = rand::thread_rng().gen();
    format!("{prefix}-{}", &hex::encode(b)[..17])
}

/// A group named by id or, in the default VPC, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRef {
    Id(String),
    Name(String),
}

/// Every group of `scope`: the default group (stored or derived) first, then the others
/// by id.
pub fn security_groups(state: &State, scope: &Scope, net: &Network) -> Vec<Arc<SecurityGroup>> {
    let stored = state.ec2.security_groups.iter().filter(|((s, _), _)| s == scope).map(|(_, g)| g.clone());
    let (default, others): (Vec<_>, Vec<_>) = stored.partition(|g| g.id == net.security_group_id);
    let default = default.into_iter().next().unwrap_or_else(|| Arc::new(SecurityGroup::default_of(scope, net)));
    std::iter::once(default).chain(others).collect()
}

/// The group `r` names, or EC2's `InvalidGroup.NotFound`.
pub fn find_group(state: &State, scope: &Scope, net: &Network, r: &GroupRef) -> Result<Arc<SecurityGroup>> {
    let found = security_groups(state, scope, net).into_iter().find(|g| match r {
        GroupRef::Id(id) => g.id == *id,
        GroupRef::Name(n) => g.name == *n && g.vpc_id == net.vpc_id,
    });
    match (found, r) {
        (Some(g), _) => Ok(g),
        (None, GroupRef::Id(id)) => fail("InvalidGroup.NotFound", format!("The security group '{id}' does not exist")),
        (None, GroupRef::Name(n)) => fail(
            "InvalidGroup.NotFound",
            format!("The security group '{n}' does not exist in default VPC '{}'", net.vpc_id),
        ),
    }
}

/// Whether security group `id` exists in `scope` (for RunTask's and CreateService's
/// `awsvpcConfiguration.securityGroups`).
pub fn security_group_exists(state: &State, scope: &Scope, id: &str) -> bool {
    id == default_group_id(scope) || state.ec2.security_groups.contains_key(&(scope.clone(), id.to_string()))
}

/// The default group's id, which depends on the scope only (not on the zones).
fn default_group_id(scope: &Scope) -> String {
    derived_id("sg", scope, "default-sg")
}

/// The inbound rules that apply to a task in security groups `groups`: the union of
/// their rules, group sources widened to the VPC's block `vpc_cidr` (see the module's
/// decision). Unknown groups contribute nothing. Sorted and without duplicates.
pub fn ingress_rules(state: &State, scope: &Scope, vpc_cidr: &str, groups: &[String]) -> Vec<IngressRule> {
    let net = Network::of(scope, &super::NetworkConfig::default());
    let all = security_groups(state, scope, &net);
    let mut out: Vec<IngressRule> = all
        .iter()
        .filter(|g| groups.contains(&g.id))
        .flat_map(|g| g.ingress.iter())
        .map(|r| IngressRule {
            protocol: r.permission.protocol,
            from_port: r.permission.from_port,
            to_port: r.permission.to_port,
            cidr: match &r.permission.source {
                Source::Cidr(c) => c.clone(),
                Source::Group(_) => vpc_cidr.to_string(),
            },
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A new group as CreateSecurityGroup asks for it.
#[derive(Debug, Clone)]
pub struct NewSecurityGroup {
    pub name: String,
    pub description: String,
    pub vpc_id: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// EC2's character set for VPC group names and descriptions.
fn valid_text(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(c))
}

/// Checks a group's name and description as EC2 does for VPC groups.
pub fn check_name(name: &str, description: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 || !valid_text(name) {
        return fail(
            "InvalidParameterValue",
            format!("Value ({name}) for parameter GroupName is invalid. Group names must be 1-255 characters of a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{{}}!$*"),
        );
    }
    if name.to_ascii_lowercase().starts_with("sg-") {
        return fail(
            "InvalidParameterValue",
            format!("Value ({name}) for parameter GroupName is invalid. Group names may not be in the format sg-*."),
        );
    }
    if description.is_empty() || description.len() > 255 || !valid_text(description) {
        return fail(
            "InvalidParameterValue",
            format!("Value ({description}) for parameter GroupDescription is invalid. Descriptions must be 1-255 characters of a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{{}}!$*"),
        );
    }
    Ok(())
}

/// Checks EC2 tags: at most 50, keys of 1-127 characters not starting with `aws:`,
/// values of at most 255, each key once.
pub fn check_tags(tags: &[(String, String)]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return fail("TagLimitExceeded", format!("The maximum number of tags per resource is {MAX_TAGS}"));
    }
    for (i, (k, v)) in tags.iter().enumerate() {
        if k.is_empty() || k.chars().count() > 127 || v.chars().count() > 255 {
            return fail("InvalidParameterValue", format!("Tag key '{k}' or its value is too long or empty"));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return fail(
                "InvalidParameterValue",
                format!("Tag keys starting with 'aws:' are reserved for internal use: '{k}'"),
            );
        }
        if tags[..i].iter().any(|(o, _)| o == k) {
            return fail("InvalidParameterValue", format!("Duplicate tag key '{k}' specified"));
        }
    }
    Ok(())
}

/// Checks a rule as given to Authorize or Revoke: a protocol enforced here, ports in
/// range, an IPv4 block with host bits zero. `ec2_protocol` is EC2's spelling (name or
/// number).
pub fn parse_protocol(ec2_protocol: &str) -> Result<IpProtocol> {
    Ok(match ec2_protocol.to_ascii_lowercase().as_str() {
        "tcp" | "6" => IpProtocol::Tcp,
        "udp" | "17" => IpProtocol::Udp,
        "icmp" | "1" => IpProtocol::Icmp,
        "-1" => IpProtocol::All,
        other if other.parse::<u8>().is_ok() => {
            return fail(
                "InvalidParameterValue",
                format!("Invalid value '{other}' for IP protocol. Berth enforces tcp, udp, icmp and -1 (all) only."),
            )
        }
        other => {
            return fail("InvalidParameterValue", format!("Invalid value '{other}' for IP protocol. Unknown protocol."))
        }
    })
}

/// The ports of a permission as EC2 stores them: tcp/udp need both ports, 0-65535, from
/// not above to; icmp takes type and code (-1: any); all protocols ignore them (-1).
pub fn ports(protocol: IpProtocol, from: Option<i32>, to: Option<i32>) -> Result<(i32, i32)> {
    match protocol {
        IpProtocol::All => Ok((-1, -1)),
        IpProtocol::Tcp | IpProtocol::Udp => {
            let (Some(f), Some(t)) = (from, to) else {
                return fail(
                    "InvalidParameterValue",
                    "Invalid value for portRange. Must specify both from and to ports with TCP/UDP.",
                );
            };
            if !(0..=65535).contains(&f) || !(0..=65535).contains(&t) || f > t {
                return fail(
                    "InvalidParameterValue",
                    format!("Invalid value for portRange. {f}-{t} is not a valid range of ports 0-65535."),
                );
            }
            Ok((f, t))
        }
        IpProtocol::Icmp => {
            let (f, t) = (from.unwrap_or(-1), to.unwrap_or(-1));
            if !(-1..=255).contains(&f) || !(-1..=255).contains(&t) || (f == -1 && t != -1) {
                return fail("InvalidParameterValue", format!("Invalid value for ICMP type and code: {f}/{t}."));
            }
            Ok((f, t))
        }
    }
}

/// An IPv4 block with host bits zero, as EC2 wants a rule's `CidrIp`.
pub fn check_cidr(cidr: &str) -> Result<()> {
    let bad = || {
        fail(
            "InvalidParameterValue",
            format!("Value ({cidr}) for parameter cidrIp is invalid. This is not a valid CIDR block."),
        )
    };
    let Some((a, p)) = cidr.split_once('/') else { return bad() };
    let (Ok(a), Ok(p)) = (a.parse::<Ipv4Addr>(), p.parse::<u8>()) else { return bad() };
    if p > 32 {
        return bad();
    }
    let mask = if p == 0 { 0 } else { u32::MAX << (32 - u32::from(p)) };
    if u32::from(a) & !mask != 0 {
        return fail(
            "InvalidParameterValue",
            format!(
                "CIDR block {cidr} is malformed: it has host bits set (the block is {}/{p})",
                Ipv4Addr::from(u32::from(a) & mask)
            ),
        );
    }
    Ok(())
}

/// A permission as a request names it: the source group may still be a name.
#[derive(Debug, Clone)]
pub struct RequestedRule {
    pub protocol: IpProtocol,
    pub from_port: i32,
    pub to_port: i32,
    pub source: RequestedSource,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub enum RequestedSource {
    Cidr(String),
    Group(GroupRef),
}

/// Which of a group's rule lists an Authorize or Revoke acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn rules(self, g: &mut SecurityGroup) -> &mut Vec<SgRule> {
        match self {
            Direction::Ingress => &mut g.ingress,
            Direction::Egress => &mut g.egress,
        }
    }
}

/// How Revoke names the rules to remove.
#[derive(Debug, Clone)]
pub enum Revoke {
    Rules(Vec<RequestedRule>),
    Ids(Vec<String>),
}

fn resolve(
    state: &State,
    scope: &Scope,
    net: &Network,
    rules: Vec<RequestedRule>,
) -> Result<Vec<(Permission, Option<String>)>> {
    rules
        .into_iter()
        .map(|r| {
            let source = match r.source {
                RequestedSource::Cidr(c) => {
                    check_cidr(&c)?;
                    Source::Cidr(c)
                }
                RequestedSource::Group(g) => Source::Group(find_group(state, scope, net, &g)?.id.clone()),
            };
            let permission = Permission { protocol: r.protocol, from_port: r.from_port, to_port: r.to_port, source };
            Ok((permission, r.description))
        })
        .collect()
}

pub(crate) fn put(txn: &mut crate::Txn<'_>, g: SecurityGroup) -> Arc<SecurityGroup> {
    let key = (g.scope.clone(), g.id.clone());
    txn.touch(Touched::SecurityGroup(key.0.clone(), key.1.clone()));
    let g = Arc::new(g);
    txn.state.ec2.security_groups.insert(key, g.clone());
    g
}

impl Ops<'_, Ec2> {
    /// CreateSecurityGroup.
    pub async fn create_security_group(&self, scope: &Scope, new: NewSecurityGroup) -> Result<Arc<SecurityGroup>> {
        check_name(&new.name, &new.description)?;
        check_tags(&new.tags)?;
        let net = self.elb.network(scope);
        let vpc_id = new.vpc_id.clone().unwrap_or_else(|| net.vpc_id.clone());
        let scope = scope.clone();
        self.write(move |txn| {
            super::vpcs::find_vpc(txn.state, &scope, &net, &vpc_id)?;
            let groups = security_groups(txn.state, &scope, &net);
            if groups.iter().any(|g| g.name == new.name && g.vpc_id == vpc_id) {
                return fail(
                    "InvalidGroup.Duplicate",
                    format!("The security group '{}' already exists for VPC '{vpc_id}'", new.name),
                );
            }
            if groups.len() >= MAX_GROUPS {
                return fail(
                    "SecurityGroupLimitExceeded",
                    format!("The maximum number of security groups ({MAX_GROUPS}) has been reached."),
                );
            }
            let g = SecurityGroup {
                scope: scope.clone(),
                id: new_id("sg"),
                name: new.name,
                description: new.description,
                vpc_id,
                tags: new.tags,
                ingress: vec![],
                egress: vec![allow_all_out(new_id("sgr"))],
            };
            Ok(put(txn, g))
        })
        .await
    }

    /// DeleteSecurityGroup: refused for the default group and for a group other groups'
    /// rules refer to (EC2's `DependencyViolation`).
    pub async fn delete_security_group(&self, scope: &Scope, group: GroupRef) -> Result<String> {
        let net = self.elb.network(scope);
        let scope = scope.clone();
        self.write(move |txn| {
            let g = find_group(txn.state, &scope, &net, &group)?;
            if g.is_default() {
                return fail(
                    "CannotDelete",
                    format!("the specified group: \"{}\" name: \"default\" cannot be deleted by a user", g.id),
                );
            }
            let referenced = security_groups(txn.state, &scope, &net).iter().any(|o| {
                o.id != g.id
                    && o.ingress.iter().chain(&o.egress).any(|r| r.permission.source == Source::Group(g.id.clone()))
            });
            if referenced {
                return fail("DependencyViolation", format!("resource {} has a dependent object", g.id));
            }
            txn.touch(Touched::SecurityGroup(scope.clone(), g.id.clone()));
            txn.state.ec2.security_groups.remove(&(scope.clone(), g.id.clone()));
            Ok(g.id.clone())
        })
        .await
    }

    /// AuthorizeSecurityGroupIngress and AuthorizeSecurityGroupEgress: adds every rule or
    /// none; a rule the group already has (or one given twice) is
    /// `InvalidPermission.Duplicate`. Returns the new rules.
    pub async fn authorize(
        &self,
        scope: &Scope,
        group: GroupRef,
        direction: Direction,
        rules: Vec<RequestedRule>,
    ) -> Result<(Arc<SecurityGroup>, Vec<SgRule>)> {
        if rules.is_empty() {
            return fail("MissingParameter", "No rules were specified: give IpPermissions.");
        }
        let net = self.elb.network(scope);
        let scope = scope.clone();
        self.write(move |txn| {
            let g = find_group(txn.state, &scope, &net, &group)?;
            let wanted = resolve(txn.state, &scope, &net, rules)?;
            let mut g = g.as_ref().clone();
            let list = direction.rules(&mut g);
            let mut added = vec![];
            for (permission, description) in wanted {
                if list.iter().any(|r| r.permission == permission) {
                    return fail(
                        "InvalidPermission.Duplicate",
                        format!("the specified rule \"{permission}\" already exists"),
                    );
                }
                let rule = SgRule { id: new_id("sgr"), permission, description };
                list.push(rule.clone());
                added.push(rule);
            }
            if list.len() > MAX_RULES {
                return fail(
                    "RulesPerSecurityGroupLimitExceeded",
                    format!("The maximum number of rules per security group ({MAX_RULES}) has been reached."),
                );
            }
            Ok((put(txn, g), added))
        })
        .await
    }

    /// RevokeSecurityGroupIngress and RevokeSecurityGroupEgress: removes every named rule
    /// or none; a rule the group does not have is `InvalidPermission.NotFound`. Returns the
    /// removed rules.
    pub async fn revoke(
        &self,
        scope: &Scope,
        group: GroupRef,
        direction: Direction,
        revoke: Revoke,
    ) -> Result<(Arc<SecurityGroup>, Vec<SgRule>)> {
        let net = self.elb.network(scope);
        let scope = scope.clone();
        self.write(move |txn| {
            let g = find_group(txn.state, &scope, &net, &group)?;
            let mut g = g.as_ref().clone();
            let list = direction.rules(&mut g);
            let mut removed = vec![];
            match revoke {
                Revoke::Rules(rules) => {
                    if rules.is_empty() {
                        return fail(
                            "MissingParameter",
                            "No rules were specified: give IpPermissions or SecurityGroupRuleIds.",
                        );
                    }
                    for (permission, _) in resolve(txn.state, &scope, &net, rules)? {
                        let Some(at) = list.iter().position(|r| r.permission == permission) else {
                            return fail(
                                "InvalidPermission.NotFound",
                                format!("The specified rule does not exist in this security group: \"{permission}\""),
                            );
                        };
                        removed.push(list.remove(at));
                    }
                }
                Revoke::Ids(ids) => {
                    for id in ids {
                        let Some(at) = list.iter().position(|r| r.id == id) else {
                            return fail(
                                "InvalidSecurityGroupRuleId.NotFound",
                                format!("The security group rule ID '{id}' does not exist"),
                            );
                        };
                        removed.push(list.remove(at));
                    }
                }
            }
            Ok((put(txn, g), removed))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ec2::NetworkConfig;

    fn scope() -> Scope {
        Scope {
            account: model::AccountId::parse("123456789012").unwrap(),
            region: model::Region::parse("us-east-1").unwrap(),
        }
    }

    #[test]
    fn names_cidrs_and_protocols_are_checked_as_ec2_does() {
        assert!(check_name("web", "for web").is_ok());
        assert!(check_name("sg-web", "x").is_err());
        assert!(check_name("", "x").is_err());
        assert!(check_name("w\u{e9}b", "x").is_err());
        assert!(check_name("web", "").is_err());
        assert!(check_cidr("10.0.0.0/8").is_ok());
        assert!(check_cidr("0.0.0.0/0").is_ok());
        assert!(check_cidr("10.0.0.1/8").is_err());
        assert!(check_cidr("10.0.0.0").is_err());
        assert_eq!(parse_protocol("6").unwrap(), IpProtocol::Tcp);
        assert_eq!(parse_protocol("-1").unwrap(), IpProtocol::All);
        assert!(parse_protocol("50").is_err());
        assert!(parse_protocol("gre").is_err());
        assert_eq!(ports(IpProtocol::All, Some(1), Some(2)).unwrap(), (-1, -1));
        assert!(ports(IpProtocol::Tcp, Some(80), None).is_err());
        assert!(ports(IpProtocol::Tcp, Some(81), Some(80)).is_err());
        assert_eq!(ports(IpProtocol::Icmp, None, None).unwrap(), (-1, -1));
        assert!(check_tags(&[("aws:x".into(), "1".into())]).is_err());
    }

    #[test]
    fn the_default_group_allows_the_vpc_and_rules_are_merged() {
        let s = scope();
        let net = Network::of(&s, &NetworkConfig::default());
        let mut state = State::default();
        assert!(security_group_exists(&state, &s, &net.security_group_id));
        assert!(!security_group_exists(&state, &s, "sg-0123456789abcdef0"));
        let rules = ingress_rules(&state, &s, crate::ec2::VPC_CIDR, std::slice::from_ref(&net.security_group_id));
        assert_eq!(
            rules,
            [IngressRule { protocol: IpProtocol::All, from_port: -1, to_port: -1, cidr: crate::ec2::VPC_CIDR.into() }]
        );

        let mut web = SecurityGroup::default_of(&s, &net);
        web.id = "sg-0123456789abcdef0".into();
        web.name = "web".into();
        web.ingress = vec![SgRule {
            id: "sgr-1".into(),
            permission: Permission {
                protocol: IpProtocol::Tcp,
                from_port: 8080,
                to_port: 8080,
                source: Source::Cidr("0.0.0.0/0".into()),
            },
            description: None,
        }];
        state.ec2.security_groups.insert((s.clone(), web.id.clone()), Arc::new(web.clone()));
        let both = ingress_rules(
            &state,
            &s,
            crate::ec2::VPC_CIDR,
            &[web.id.clone(), net.security_group_id.clone(), "sg-unknown".into()],
        );
        assert_eq!(both.len(), 2);
        assert!(both.iter().any(|r| r.protocol == IpProtocol::Tcp && r.cidr == "0.0.0.0/0"));
        assert!(security_group_exists(&state, &s, &web.id));
        assert_eq!(ingress_rules(&state, &s, crate::ec2::VPC_CIDR, &[]), []);
        assert_eq!(security_groups(&state, &s, &net)[0].id, net.security_group_id, "the default group first");
    }
}
