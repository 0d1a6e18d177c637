//! `awsvpc` task networking, the pure part: checking the control plane's network attachment
//! and IPv4 CIDR arithmetic. No I/O.
//!
//! How a task gets its network: the Docker network named in the attachment stands for the
//! subnet (a bridge with exactly the subnet's CIDR and gateway, so the host routes to it);
//! a pause container on it holds the task's address and MAC address in its network
//! namespace; the task's containers join that namespace (`container:<pause id>`), so they
//! share the address and reach each other on localhost. `runner` drives these steps and
//! `docker` performs them.
//!
//! The Docker network standing for a subnet (`berth-<subnet-id>`, labelled
//! `berth.managed`/`berth.subnet-id`) is shared by every task and agent of the engine and
//! never removed by the agent; `docker::ensure_subnet_network` creates or checks it: a
//! differing or overlapping network fails the task as `TaskFailedToStart`
//! ("ResourceInitializationError: ..."), and losing a creation race to another agent is
//! success. The pause container (`~internal~ecs~pause`, labelled like the task's so that
//! adoption finds it) is stopped last with SIGKILL. The firewall is installed with
//! `nsenter` + `iptables-restore` inside the task's namespace, not in Docker's `DOCKER-USER`
//! chain, which host-originated traffic (the load balancer, curl) never crosses.

use std::fmt;
use std::net::Ipv4Addr;

use agent_protocol::AwsvpcNetwork;

/// The name the ECS agent gives its pause container in a task; ours carries it as its
/// container-name label, which is how adoption tells it from the task's own containers.
pub const PAUSE_CONTAINER_NAME: &str = "~internal~ecs~pause";

/// An IPv4 network: an address with all host bits zero, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    network: u32,
    prefix: u8,
}

impl Ipv4Cidr {
    /// Parses `a.b.c.d/n`; host bits must be zero, as EC2 requires of a subnet's block.
    pub fn parse(s: &str) -> Result<Ipv4Cidr, String> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| format!("{s:?} is not an IPv4 CIDR block (a.b.c.d/n)"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("{s:?} is not an IPv4 CIDR block (a.b.c.d/n)"))?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(|| format!("{s:?} has no prefix 0-32"))?;
        let cidr = Ipv4Cidr { network: u32::from(addr) & mask(prefix), prefix };
        if cidr.network != u32::from(addr) {
            return Err(format!("{s:?} has host bits set (the block is {cidr})"));
        }
        Ok(cidr)
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & mask(self.prefix) == self.network
    }

    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        let common = mask(self.prefix.min(other.prefix));
        self.network & common == other.network & common
    }

    fn broadcast(&self) -> u32 {
        self.network | !mask(self.prefix)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// A network attachment the agent can set up: the CIDR parsed, the addresses checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskNetwork {
    pub attachment: AwsvpcNetwork,
    pub cidr: Ipv4Cidr,
}

/// Checks what the control plane sent, so that a mistake there fails the task with a
/// reason instead of an obscure Docker error (or a container on the wrong address).
pub fn check(n: &AwsvpcNetwork) -> Result<TaskNetwork, String> {
    let cidr = Ipv4Cidr::parse(&n.subnet_cidr).map_err(|e| format!("subnet {}: {e}", n.subnet_id))?;
    if cidr.prefix > 30 {
        return Err(format!("subnet {} ({cidr}) has no room for a gateway and a task", n.subnet_id));
    }
    let usable = |a: Ipv4Addr| cidr.contains(a) && u32::from(a) != cidr.network && u32::from(a) != cidr.broadcast();
    if !usable(n.gateway) {
        return Err(format!("the gateway {} is not a host address of subnet {} ({cidr})", n.gateway, n.subnet_id));
    }
    let ip = n.private_ipv4_address;
    if !usable(ip) || ip == n.gateway {
        return Err(format!("the address {ip} is not a free host address of subnet {} ({cidr})", n.subnet_id));
    }
    if !is_mac(&n.mac_address) {
        return Err(format!("{:?} is not a MAC address (six hex pairs separated by colons)", n.mac_address));
    }
    if n.docker_network.is_empty() {
        return Err("the attachment names no Docker network".into());
    }
    Ok(TaskNetwork { attachment: n.clone(), cidr })
}

/// Six pairs of hex digits separated by colons, of a unicast address (Docker refuses
/// multicast ones).
fn is_mac(s: &str) -> bool {
    let pairs: Vec<&str> = s.split(':').collect();
    pairs.len() == 6
        && pairs.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        && u8::from_str_radix(pairs[0], 16).is_ok_and(|first| first & 1 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(cidr: &str, gw: [u8; 4], ip: [u8; 4], mac: &str) -> AwsvpcNetwork {
        AwsvpcNetwork {
            attachment_id: "a".into(),
            subnet_id: "subnet-1".into(),
            subnet_cidr: cidr.into(),
            gateway: gw.into(),
            private_ipv4_address: ip.into(),
            mac_address: mac.into(),
            docker_network: "berth-subnet-1".into(),
            ingress: None,
        }
    }

    #[test]
    fn cidr_arithmetic() {
        let a = Ipv4Cidr::parse("10.213.4.0/24").unwrap();
        assert_eq!(a.to_string(), "10.213.4.0/24");
        assert!(a.contains(Ipv4Addr::new(10, 213, 4, 255)));
        assert!(!a.contains(Ipv4Addr::new(10, 213, 5, 0)));
        assert!(a.overlaps(&Ipv4Cidr::parse("10.213.0.0/16").unwrap()));
        assert!(Ipv4Cidr::parse("10.213.0.0/16").unwrap().overlaps(&a));
        assert!(!a.overlaps(&Ipv4Cidr::parse("10.213.5.0/24").unwrap()));
        assert!(Ipv4Cidr::parse("0.0.0.0/0").unwrap().overlaps(&a));
        assert!(Ipv4Cidr::parse("10.213.4.1/24").unwrap_err().contains("host bits"));
        assert!(Ipv4Cidr::parse("10.213.4.0/33").is_err());
        assert!(Ipv4Cidr::parse("10.213.4.0").is_err());
    }

    #[test]
    fn attachments_are_checked() {
        let mac = "0a:58:0a:d5:04:07";
        assert!(check(&net("10.213.4.0/24", [10, 213, 4, 1], [10, 213, 4, 7], mac)).is_ok());
        let bad = [
            net("10.213.4.0/33", [10, 213, 4, 1], [10, 213, 4, 7], mac),
            net("10.213.4.0/24", [10, 213, 4, 1], [10, 213, 5, 7], mac),
            net("10.213.4.0/24", [10, 213, 4, 1], [10, 213, 4, 255], mac),
            net("10.213.4.0/24", [10, 213, 4, 1], [10, 213, 4, 1], mac),
            net("10.213.4.0/24", [10, 213, 4, 0], [10, 213, 4, 7], mac),
            net("10.213.4.0/24", [10, 213, 4, 1], [10, 213, 4, 7], "0a:58:0a:d5:04"),
            net("10.213.4.0/24", [10, 213, 4, 1], [10, 213, 4, 7], "01:00:5e:00:00:01"),
        ];
        for n in bad {
            assert!(check(&n).is_err(), "{n:?}");
        }
    }
}
