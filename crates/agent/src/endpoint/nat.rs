//! The host's NAT rules that make `169.254.170.2:80` the task endpoint, as the ECS agent
//! sets them up: TCP to that address is redirected to the shared port on the host.
//!
//! - `PREROUTING`: packets from containers in bridge mode (docker0) and awsvpc mode (the
//!   subnets' bridges) arrive on a bridge; REDIRECT sends them to the bridge's own host
//!   address, where the shared listener (on all addresses) takes them. No
//!   `route_localnet` is needed, since nothing is sent to 127.0.0.1.
//! - `OUTPUT`: host-network containers and the host itself; REDIRECT sends them to
//!   loopback.
//!
//! Every agent installs them at start, idempotently (`-C` before `-A`), because several
//! agents share one host and any of them may start first. They are left in place when an
//! agent exits: the other agents on the host still use them, and they point at a port
//! nothing else serves. Without iptables (or without the right to change it) the agent
//! runs all the same, and its containers cannot reach the endpoint: it says so once.

use std::sync::atomic::{AtomicBool, Ordering};

use super::env::ENDPOINT_ADDRESS;

/// The rules, as `iptables -t nat` arguments after the action flag.
pub fn rules(shared_port: u16) -> [Vec<String>; 2] {
    let rule = |chain: &str| {
        [chain, "-d", &format!("{ENDPOINT_ADDRESS}/32"), "-p", "tcp", "--dport", "80", "-j", "REDIRECT"]
            .into_iter()
            .map(str::to_string)
            .chain(["--to-ports".to_string(), shared_port.to_string()])
            .collect()
    };
    [rule("PREROUTING"), rule("OUTPUT")]
}

/// Installs the rules unless they are there. Returns why not, when they could not be.
pub async fn install(shared_port: u16) -> Result<(), String> {
    for rule in rules(shared_port) {
        if iptables("-C", &rule).await.is_ok() {
            continue;
        }
        iptables("-A", &rule).await?;
    }
    Ok(())
}

/// [`install`], logging a failure once per process.
pub async fn install_or_warn(shared_port: u16) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    match install(shared_port).await {
        Ok(()) => tracing::debug!("the task endpoint's NAT rules for {ENDPOINT_ADDRESS} are in place"),
        Err(e) if !WARNED.swap(true, Ordering::Relaxed) => tracing::warn!(
            error = %e,
            "cannot install the NAT rules for {ENDPOINT_ADDRESS}: containers cannot reach their \
             credentials and metadata endpoint (the agent needs root and iptables)"
        ),
        Err(_) => {}
    }
}

async fn iptables(action: &str, rule: &[String]) -> Result<(), String> {
    let out = tokio::process::Command::new("iptables")
        .args(["-w", "5", "-t", "nat", action])
        .args(rule)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!("iptables -t nat {action} {}: {}", rule.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_redirect_the_endpoint_address_to_the_shared_port() {
        let [pre, out] = rules(51679);
        assert_eq!(pre.join(" "), "PREROUTING -d 169.254.170.2/32 -p tcp --dport 80 -j REDIRECT --to-ports 51679");
        assert_eq!(out.join(" "), "OUTPUT -d 169.254.170.2/32 -p tcp --dport 80 -j REDIRECT --to-ports 51679");
    }
}
