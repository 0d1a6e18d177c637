//! A test bed of hosts on one machine: each [`Host`] is a network namespace of its own
//! with one address on a private bridge, as a machine on a LAN has one on its switch. A
//! process started in a host (`ip netns exec`) listens and connects from that address
//! only; the test itself, PostgreSQL and the agents stay in the machine's own namespace
//! and reach the hosts through the bridge, whose address ([`Net::gateway`]) the hosts
//! reach them at.
//!
//! Cutting a host off ([`Host::cut`]) takes its cable out: the bridge's end of its veth
//! pair goes down, so every packet to or from the host is lost, PostgreSQL's, clients' and
//! agents' alike, and no one is told; each side finds out by its own timeouts and
//! keepalives, as across a real network.
//!
//! Addresses: a free /24 in 10.98.0.0/16, chosen by the test process's id and checked
//! against the machine's routes, so that tests running at once get bridges of their own,
//! and so that nothing overlaps the Docker networks Berth makes for its VPCs
//! (the tests' VPC blocks are in 10.100.0.0-10.199.255.255).
//!
//! Cleanup: dropping the [`Net`] deletes its veth pairs, its namespaces, the bridge and
//! the firewall rule. A test process killed before that leaves
//! them behind; `ip netns list | grep berth-` shows them.
//!
//! Needs root and iproute2 (`scripts/install-test-deps.sh` installs it).

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// How many test beds this process has made (names stay unique within it).
static BEDS: AtomicU32 = AtomicU32::new(0);

/// A bridge and the hosts on it.
#[derive(Debug)]
pub struct Net {
    /// The bridge's name (at most 15 bytes, as Linux wants interface names).
    bridge: String,
    /// The first three octets of the /24.
    prefix: [u8; 3],
    /// Names of the namespaces made, and the bridge's ends of their cables, for the drop.
    namespaces: Vec<String>,
    cables: Vec<String>,
    /// The FORWARD rule that lets hosts reach each other (see [`Net::new`]).
    forward: Vec<String>,
    /// A tag for names: the process id and this bed's number.
    tag: String,
}

/// One host of a [`Net`].
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    netns: String,
    /// The bridge's end of the host's cable.
    cable: String,
    pub address: Ipv4Addr,
}

impl Net {
    /// A bridge with the first address of a free /24 (root and iproute2 needed).
    pub fn new() -> Net {
        let tag = format!("{}{}", std::process::id() % 100_000, BEDS.fetch_add(1, Ordering::Relaxed));
        let prefix = free_block();
        let bridge = format!("bb{tag}");
        ip(&["link", "add", &bridge, "type", "bridge"]);
        let gateway = Ipv4Addr::new(prefix[0], prefix[1], prefix[2], 1);
        ip(&["addr", "add", &format!("{gateway}/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        // Traffic between two hosts crosses the bridge; where Docker has made bridged
        // packets pass through iptables, its FORWARD policy (DROP) would lose it.
        let forward: Vec<String> =
            ["FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT"].iter().map(|s| s.to_string()).collect();
        let status = Command::new("iptables").arg("-I").args(&forward).status().expect("run iptables");
        assert!(status.success(), "iptables -I {forward:?} failed");
        Net { bridge, prefix, namespaces: Vec::new(), cables: Vec::new(), forward, tag }
    }

    /// The machine's own address on the bridge: where the hosts reach servers that run
    /// outside them (PostgreSQL, S3, the test's own listeners).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], 1)
    }

    /// The bridge's /24, e.g. for PostgreSQL's `pg_hba.conf`.
    pub fn block(&self) -> String {
        format!("{}.{}.{}.0/24", self.prefix[0], self.prefix[1], self.prefix[2])
    }

    /// A new host named `name`, with the next address on the bridge and a default route
    /// through the machine.
    pub fn host(&mut self, name: &str) -> Host {
        let n = self.namespaces.len() as u8 + 2;
        let netns = format!("berth-{}-{name}", self.tag);
        let (cable, inside) = (format!("bv{}{n}", self.tag), format!("bh{}{n}", self.tag));
        let address = Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], n);
        ip(&["netns", "add", &netns]);
        self.namespaces.push(netns.clone());
        ip(&["link", "add", &cable, "type", "veth", "peer", "name", &inside]);
        self.cables.push(cable.clone());
        ip(&["link", "set", &inside, "netns", &netns]);
        ip(&["link", "set", &cable, "master", &self.bridge]);
        ip(&["link", "set", &cable, "up"]);
        let within = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &netns, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        within(&["link", "set", "lo", "up"]);
        within(&["addr", "add", &format!("{address}/24"), "dev", &inside]);
        within(&["link", "set", &inside, "up"]);
        within(&["route", "add", "default", "via", &self.gateway().to_string()]);
        Host { name: name.to_string(), netns, cable, address }
    }
}

impl Default for Net {
    fn default() -> Self {
        Net::new()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // A namespace outlives its deletion while a socket of it still has work (an orphaned
        // connection retransmitting), and its veth pair with it: deleting the bridge's end
        // removes the pair at once.
        for cable in &self.cables {
            let _ = Command::new("ip").args(["link", "delete", cable]).status();
        }
        for netns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "delete", netns]).status();
        }
        let _ = Command::new("ip").args(["link", "delete", &self.bridge]).status();
        let _ = Command::new("iptables").arg("-D").args(&self.forward).status();
    }
}

impl Host {
    /// What runs a program inside the host: `ip netns exec NAME`, which execs it, so the
    /// child's process id is the program's own.
    pub fn prefix(&self) -> Vec<&str> {
        vec!["ip", "netns", "exec", &self.netns]
    }

    /// Takes the host's cable out until the returned [`Cut`] is dropped.
    pub fn cut(&self) -> Cut {
        ip(&["link", "set", &self.cable, "down"]);
        Cut { undo: vec![["ip", "link", "set", &self.cable, "up"].map(String::from).to_vec()] }
    }

    /// Cuts the host off from `address:port` alone (a server outside it, e.g.
    /// PostgreSQL at the gateway), its other traffic untouched, until the returned [`Cut`]
    /// is dropped: the host's own firewall drops the packets both ways, and neither end is
    /// told.
    pub fn cut_from(&self, address: Ipv4Addr, port: u16) -> Cut {
        let (address, port) = (address.to_string(), port.to_string());
        let rules = [
            ["OUTPUT", "-p", "tcp", "-d", &address, "--dport", &port, "-j", "DROP"],
            ["INPUT", "-p", "tcp", "-s", &address, "--sport", &port, "-j", "DROP"],
        ];
        let mut undo = Vec::new();
        for rule in rules {
            let within = |op: &str| {
                let mut cmd: Vec<String> =
                    ["ip", "netns", "exec", &self.netns, "iptables", op].map(String::from).to_vec();
                cmd.extend(rule.iter().map(|s| s.to_string()));
                cmd
            };
            let insert = within("-I");
            let status = Command::new(&insert[0]).args(&insert[1..]).status().expect("run iptables in the host");
            assert!(status.success(), "{insert:?} failed");
            undo.push(within("-D"));
        }
        Cut { undo }
    }
}

/// A host cut off, wholly or from one server; reconnected when dropped.
#[derive(Debug)]
pub struct Cut {
    /// The commands that undo the cut.
    undo: Vec<Vec<String>>,
}

impl Drop for Cut {
    fn drop(&mut self) {
        for cmd in &self.undo {
            let _ = Command::new(&cmd[0]).args(&cmd[1..]).status();
        }
    }
}

/// Runs `ip` with `args`, asserting it succeeds.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip (iproute2; needs root)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
}

/// A /24 of 10.98.0.0/16 that no route of the machine's covers.
fn free_block() -> [u8; 3] {
    let routes = Command::new("ip").args(["-4", "route", "show"]).output().expect("run ip route");
    let routes = String::from_utf8_lossy(&routes.stdout).to_string();
    let start = (std::process::id() % 250) as u8;
    (0..250u8)
        .map(|i| [10, 98, start.wrapping_add(i) % 250 + 1])
        .find(|p| !routes.contains(&format!("{}.{}.{}.", p[0], p[1], p[2])))
        .expect("no free /24 in 10.98.0.0/16")
}
