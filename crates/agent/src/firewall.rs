//! Security groups for `awsvpc` tasks: the inbound rules the control plane resolved for a
//! task, enforced with iptables inside the task's own network namespace (its pause
//! container's).
//!
//! Why the task's namespace and not Docker's `DOCKER-USER` chain: `DOCKER-USER` hangs off
//! the host's FORWARD chain, which traffic *from the host itself* never traverses
//! (host-originated packets go OUTPUT → the bridge → the task). The load balancer runs in
//! the Berth process on the host, and `curl` from the host is how users reach a task, so
//! those are exactly the packets a security group must judge. In the task's namespace,
//! every packet to the task, from the host (whose source is the subnet's gateway address),
//! from other tasks or from elsewhere, passes the namespace's INPUT chain.
//!
//! The rules live and die with the namespace: they exist before any of the task's
//! containers start (the runner starts them only after [`apply`] succeeded), and they are
//! gone when the pause container is removed at teardown, so nothing is left behind on the
//! host. Applying is idempotent (the namespace's filter table is replaced whole), which is
//! how an agent that restarts and adopts a running task puts the rules in place again.
//!
//! Needs, on the agent's host: root, `nsenter` (util-linux), `iptables-restore` (any
//! backend: the namespace is the task's own), and the agent in the Docker engine's PID
//! namespace (to open `/proc/<pid>/ns/net` of the pause container).

use std::fmt::Write as _;
use std::time::Duration;

use agent_protocol::{IngressRule, IpProtocol};
use tokio::io::AsyncWriteExt;

use crate::awsvpc::Ipv4Cidr;

/// The chain holding a task's rules, inside its namespace.
pub const CHAIN: &str = "BERTH-INGRESS";

/// How long installing the rules may take.
const APPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// Checks that the control plane's rules can be enforced as written.
pub fn check(rules: &[IngressRule]) -> Result<(), String> {
    for r in rules {
        Ipv4Cidr::parse(&r.cidr).map_err(|e| format!("security group rule source: {e}"))?;
        match r.protocol {
            IpProtocol::Tcp | IpProtocol::Udp => {
                let ok = |p: i32| (0..=65535).contains(&p);
                if !ok(r.from_port) || !ok(r.to_port) || r.from_port > r.to_port {
                    return Err(format!("security group rule: invalid port range {}-{}", r.from_port, r.to_port));
                }
            }
            IpProtocol::Icmp => {
                let ok = |p: i32| (-1..=255).contains(&p);
                if !ok(r.from_port) || !ok(r.to_port) || (r.from_port == -1 && r.to_port != -1) {
                    return Err(format!("security group rule: invalid ICMP type/code {}/{}", r.from_port, r.to_port));
                }
            }
            IpProtocol::All => {}
        }
    }
    Ok(())
}

/// The `iptables-restore` input that makes the namespace's filter table exactly this
/// task's rules: loopback (the task's containers talking to each other) and replies to
/// the task's own connections are accepted, then what a rule allows, and all else is
/// dropped. Every rule carries a comment naming the task.
pub fn ruleset(task_arn: &str, rules: &[IngressRule]) -> String {
    // iptables-restore reads a quoted comment; keep the ARN from closing the quotes.
    let tag: String = format!("berth security groups of {task_arn}").chars().filter(|c| *c != '"').take(250).collect();
    let comment = format!("-m comment --comment \"{tag}\"");
    let mut out = String::new();
    out.push_str("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    let _ = writeln!(out, ":{CHAIN} - [0:0]");
    let _ = writeln!(out, "-A INPUT {comment} -j {CHAIN}");
    let _ = writeln!(out, "-A {CHAIN} -i lo {comment} -j ACCEPT");
    let _ = writeln!(out, "-A {CHAIN} -m conntrack --ctstate ESTABLISHED,RELATED {comment} -j ACCEPT");
    for r in rules {
        let matcher = match r.protocol {
            IpProtocol::Tcp => format!(" -p tcp -m tcp --dport {}:{}", r.from_port, r.to_port),
            IpProtocol::Udp => format!(" -p udp -m udp --dport {}:{}", r.from_port, r.to_port),
            IpProtocol::Icmp if r.from_port == -1 => " -p icmp".to_string(),
            IpProtocol::Icmp if r.to_port == -1 => format!(" -p icmp -m icmp --icmp-type {}", r.from_port),
            IpProtocol::Icmp => format!(" -p icmp -m icmp --icmp-type {}/{}", r.from_port, r.to_port),
            IpProtocol::All => String::new(),
        };
        let _ = writeln!(out, "-A {CHAIN} -s {}{matcher} {comment} -j ACCEPT", r.cidr);
    }
    let _ = writeln!(out, "-A {CHAIN} {comment} -j DROP");
    out.push_str("COMMIT\n");
    out
}

/// Installs `ruleset` in the network namespace of process `pid` (the pause container's).
pub async fn apply(pid: u32, ruleset: &str) -> Result<(), String> {
    let run = async {
        let mut child = tokio::process::Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .args(["--", "iptables-restore", "-w", "5"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run nsenter: {e} (the agent needs nsenter and iptables-restore)"))?;
        let mut stdin = child.stdin.take().ok_or("no stdin for iptables-restore")?;
        stdin.write_all(ruleset.as_bytes()).await.map_err(|e| format!("writing to iptables-restore: {e}"))?;
        drop(stdin);
        let out = child.wait_with_output().await.map_err(|e| format!("iptables-restore: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "iptables-restore in the task's namespace failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    tokio::time::timeout(APPLY_TIMEOUT, run).await.map_err(|_| "iptables-restore did not finish in time".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(protocol: IpProtocol, from_port: i32, to_port: i32, cidr: &str) -> IngressRule {
        IngressRule { protocol, from_port, to_port, cidr: cidr.into() }
    }

    #[test]
    fn rules_render_in_order_with_a_final_drop() {
        let rules = [
            rule(IpProtocol::Tcp, 8080, 8081, "10.0.0.1/32"),
            rule(IpProtocol::Udp, 53, 53, "0.0.0.0/0"),
            rule(IpProtocol::Icmp, -1, -1, "10.0.0.0/8"),
            rule(IpProtocol::Icmp, 8, -1, "10.0.0.0/8"),
            rule(IpProtocol::Icmp, 3, 4, "10.0.0.0/8"),
            rule(IpProtocol::All, -1, -1, "172.31.0.0/16"),
        ];
        let text = ruleset("arn:aws:ecs:us-east-1:1:task/c/\"x", &rules);
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("-A")).collect();
        let tag = "-m comment --comment \"berth security groups of arn:aws:ecs:us-east-1:1:task/c/x\"";
        assert_eq!(lines[0], format!("-A INPUT {tag} -j BERTH-INGRESS"));
        assert!(lines[1].contains("-i lo"));
        assert!(lines[2].contains("ESTABLISHED,RELATED"));
        assert!(lines[3].starts_with("-A BERTH-INGRESS -s 10.0.0.1/32 -p tcp -m tcp --dport 8080:8081 "));
        assert!(lines[4].contains("-p udp -m udp --dport 53:53"));
        assert!(lines[5].contains("-s 10.0.0.0/8 -p icmp -m comment"));
        assert!(lines[6].contains("--icmp-type 8 "));
        assert!(lines[7].contains("--icmp-type 3/4 "));
        assert!(lines[8].starts_with("-A BERTH-INGRESS -s 172.31.0.0/16 -m comment"));
        assert_eq!(lines[9], format!("-A BERTH-INGRESS {tag} -j DROP"));
        assert!(lines.iter().all(|l| l.contains(tag)), "every rule names the task");
        assert!(text.ends_with("COMMIT\n"));
    }

    #[test]
    fn unenforceable_rules_are_refused() {
        assert!(check(&[rule(IpProtocol::Tcp, 1, 65535, "0.0.0.0/0")]).is_ok());
        assert!(check(&[rule(IpProtocol::Tcp, 10, 9, "0.0.0.0/0")]).is_err());
        assert!(check(&[rule(IpProtocol::Udp, -1, 9, "0.0.0.0/0")]).is_err());
        assert!(check(&[rule(IpProtocol::Tcp, 1, 2, "10.0.0.1/8")]).is_err());
        assert!(check(&[rule(IpProtocol::Icmp, -1, 4, "10.0.0.0/8")]).is_err());
        assert!(check(&[rule(IpProtocol::All, 0, 0, "not a block")]).is_err());
    }
}
