//! The minimal EC2 networking every account sees: one default VPC with a default subnet
//! in each configured availability zone, and the ids of its default security group.
//!
//! The network is not stored: it is a pure function of the account, the region and the
//! deployment's settings, and its ids are derived from them, so they are the same after
//! every restart.

use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

use crate::Scope;

/// The default VPC's address range, as in every AWS region.
pub const VPC_CIDR: &str = "172.31.0.0/16";

impl std::fmt::Display for Ipv4Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// The zones and load balancer addresses of this deployment (`berth up` flags).
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Zone suffixes appended to the region (`a`, `b`, ...): `us-east-1a`, ...
    pub zone_suffixes: Vec<String>,
    /// The block load balancers' addresses are allocated from (a loopback block by
    /// default, since Linux routes all of 127.0.0.0/8 to the loopback interface).
    pub lb_pool: Ipv4Block,
    /// The default VPC's block (172.31.0.0/16, as in AWS, unless `--vpc-cidr` says
    /// otherwise): awsvpc tasks get addresses in its subnets, and each subnet is a Docker
    /// network on every engine, so Berths sharing an engine need blocks that do not overlap.
    pub vpc: Ipv4Block,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            zone_suffixes: vec!["a".into(), "b".into(), "c".into()],
            lb_pool: Ipv4Block { base: Ipv4Addr::new(127, 100, 0, 0), prefix: 16 },
            vpc: Ipv4Block { base: Ipv4Addr::new(172, 31, 0, 0), prefix: 16 },
        }
    }
}

/// An IPv4 address block such as 127.100.0.0/16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Block {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Block {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not an IPv4 block such as 127.100.0.0/16");
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let base: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("'{s}': the prefix must be between /8 and /30 so that it holds addresses"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Ipv4Block { base: Ipv4Addr::from(u32::from(base) & mask), prefix })
    }

    /// The usable addresses of the block, lowest first (network and broadcast excluded).
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.base) + 1;
        let size = 1u32 << (32 - self.prefix);
        (first..first + size - 2).map(Ipv4Addr::from)
    }

    /// The `i`th of the 16 equal subnets of the block (wrapping), as AWS carves the
    /// default VPC: 172.31.0.0/20, 172.31.16.0/20, ... of 172.31.0.0/16.
    pub fn subnet(&self, i: usize) -> String {
        let prefix = (self.prefix + 4).min(28);
        let size = 1u32 << (32 - prefix);
        let count = 1u32 << (prefix - self.prefix);
        let base = u32::from(self.base) + (i as u32 % count) * size;
        format!("{}/{prefix}", Ipv4Addr::from(base))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == u32::from(self.base)
    }

    /// Whether the two blocks share an address.
    pub fn overlaps(&self, other: &Ipv4Block) -> bool {
        self.contains(other.base) || other.contains(self.base)
    }

    /// Whether every address of `inner` is in this block.
    pub fn covers(&self, inner: &Ipv4Block) -> bool {
        inner.prefix >= self.prefix && self.contains(inner.base)
    }

    /// How many addresses the block spans.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    /// A block as EC2 takes a VPC's or subnet's: `a.b.c.d/n` with host bits zero (any
    /// prefix 0-32; the caller checks the sizes it allows).
    pub fn parse_exact(s: &str) -> Option<Ipv4Block> {
        let (a, p) = s.split_once('/')?;
        let base: Ipv4Addr = a.parse().ok()?;
        let prefix: u8 = p.parse().ok().filter(|p| (1..=32).contains(p))?;
        let mask = u32::MAX << (32 - prefix);
        (u32::from(base) & !mask == 0).then_some(Ipv4Block { base, prefix })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub zone_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    pub zone: Zone,
    pub cidr: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub owner: String,
    pub region: String,
    pub vpc_id: String,
    pub dhcp_options_id: String,
    pub security_group_id: String,
    pub subnets: Vec<Subnet>,
    /// The VPC's IPv4 block.
    pub cidr: String,
}

/// The private DNS name EC2 gives an address in `region`: us-east-1 has its own form
/// (`ip-10-0-0-1.ec2.internal`), every other region `ip-10-0-0-1.<region>.compute.internal`.
/// The agent's task metadata and DescribeTasks' ENI attachments both use it.
pub fn private_dns_name(ipv4: std::net::Ipv4Addr, region: &str) -> String {
    let host = ipv4.to_string().replace('.', "-");
    match region {
        "us-east-1" => format!("ip-{host}.ec2.internal"),
        _ => format!("ip-{host}.{region}.compute.internal"),
    }
}

/// An EC2-shaped id (`prefix-` and 17 hex digits) derived from the scope and `what`.
pub fn derived_id(prefix: &str, scope: &Scope, what: &str) -> String {
    let digest = Sha256::digest(format!("{}/{}/{what}", scope.account, scope.region).as_bytes());
    format!("{prefix}-{}", &hex::encode(digest)[..17])
}

/// AWS's short zone ids: `use1-az1` for the first zone of us-east-1.
fn zone_id(region: &str, n: usize) -> String {
    let parts: Vec<&str> = region.split('-').collect();
    let short: String = match parts.as_slice() {
        [area, dir, num] => format!("{area}{}{num}", &dir[..1]),
        _ => region.replace('-', ""),
    };
    format!("{short}-az{}", n + 1)
}

impl Network {
    /// The network of `scope` with `config`'s zones.
    pub fn of(scope: &Scope, config: &NetworkConfig) -> Network {
        let region = scope.region.as_str();
        let subnets = config
            .zone_suffixes
            .iter()
            .enumerate()
            .map(|(i, suffix)| {
                let name = format!("{region}{suffix}");
                Subnet {
                    id: derived_id("subnet", scope, &name),
                    cidr: config.vpc.subnet(i),
                    zone: Zone { name, zone_id: zone_id(region, i) },
                }
            })
            .collect();
        Network {
            owner: scope.account.to_string(),
            region: region.to_string(),
            vpc_id: derived_id("vpc", scope, "default-vpc"),
            dhcp_options_id: derived_id("dopt", scope, "default-dhcp"),
            security_group_id: derived_id("sg", scope, "default-sg"),
            subnets,
            cidr: config.vpc.to_string(),
        }
    }

    pub fn subnet(&self, id: &str) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.id == id)
    }

    pub fn zones(&self) -> impl Iterator<Item = &Zone> {
        self.subnets.iter().map(|s| &s.zone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dns_names_follow_the_region() {
        let ip = std::net::Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(private_dns_name(ip, "us-east-1"), "ip-10-0-0-1.ec2.internal");
        assert_eq!(private_dns_name(ip, "eu-west-3"), "ip-10-0-0-1.eu-west-3.compute.internal");
    }

    fn scope(account: &str) -> Scope {
        Scope { account: crate::AccountId::parse(account).unwrap(), region: crate::Region::parse("us-east-1").unwrap() }
    }

    #[test]
    fn ids_are_stable_and_per_account() {
        let c = NetworkConfig::default();
        let a = Network::of(&scope("123456789012"), &c);
        assert_eq!(a, Network::of(&scope("123456789012"), &c));
        assert_ne!(a.vpc_id, Network::of(&scope("210987654321"), &c).vpc_id);
        assert_eq!(a.subnets.len(), 3);
        assert_eq!(a.subnets[1].zone.name, "us-east-1b");
        assert_eq!(a.subnets[1].zone.zone_id, "use1-az2");
        assert_eq!(a.subnets[1].cidr, "172.31.16.0/20");
        assert!(a.vpc_id.starts_with("vpc-") && a.vpc_id.len() == 21);
    }

    #[test]
    fn blocks() {
        let b = Ipv4Block::parse("127.100.0.7/24").unwrap();
        assert_eq!(b.base, Ipv4Addr::new(127, 100, 0, 0));
        assert_eq!(b.hosts().next(), Some(Ipv4Addr::new(127, 100, 0, 1)));
        assert_eq!(b.hosts().count(), 254);
        assert!(Ipv4Block::parse("127.0.0.0/31").is_err());
        assert!(b.contains(Ipv4Addr::new(127, 100, 0, 200)));
    }
}
