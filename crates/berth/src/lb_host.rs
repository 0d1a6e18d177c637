//! `berth lb`: the load balancer data plane on a host of its own, beside or away from the
//! control plane's replicas. It follows the PostgreSQL store as a follower replica does
//! (`serve::follower::follow`: a view of the state current from the change log) and
//! serves the ELBv2 state of that view: listeners, rules and targets, with its own health
//! checks. Several may run, for redundancy; each keeps serving the targets it last knew
//! while no replica or PostgreSQL answers, as its view stays as it was.
//!
//! Decision: a load balancer's address (its DNS name) is allocated by the control plane
//! from the servers' `--lb-address-pool`; with its own `--lb-address-pool`, this host
//! listens on the address at the same offset in that block instead (the load balancer at
//! 127.100.0.7 of 127.100.0.0/16 listens on 10.0.8.7 with 10.0.8.0/24), so that a host
//! can serve them on addresses of its own network. Without it, on the same addresses.

use std::net::Ipv4Addr;
use std::time::Duration;

use control_plane::ec2::Ipv4Block;
use elb::snapshot::Snapshot;
use tokio_util::sync::CancellationToken;

use crate::cli::LbArgs;
use crate::serve;
use crate::tracker::Tracker;

/// How often the data plane is brought in line with the view even without a change
/// (listeners that could not bind are retried), as in the server.
const RESYNC: Duration = Duration::from_secs(5);

pub async fn run(args: LbArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let tasks = Tracker::default();
    tasks.spawn("signal handler", serve::signal_shutdown(shutdown.clone()));
    // The data plane opens no sealed value: no master key is needed or checked.
    let config = control_plane::Config::default();
    let following = serve::follower::follow(&args.store, config, false);
    let (control, _, tail, _) = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        following = following => following,
    };
    tracing::info!(store = %args.store, pool = ?args.lb_address_pool.map(|p| p.to_string()), "serving the load balancers of the store");
    let dataplane = lb::DataPlane::new(control.elb.board.clone(), shutdown.clone());
    let serving = async {
        loop {
            dataplane.apply(&relocate(control.elb_snapshot(), args.lb_address_pool)).await;
            tokio::select! {
                _ = control.elb.changed.notified() => {}
                _ = tokio::time::sleep(RESYNC) => {}
            }
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        never = tail => match never {},
        never = serving => never,
    }
    tasks.wait(serve::TASKS_TIMEOUT).await;
    tracing::info!("berth lb stopped");
    Ok(())
}

/// `snapshot` with each load balancer's address moved into `pool` at the same offset.
fn relocate(mut snapshot: Snapshot, pool: Option<Ipv4Block>) -> Snapshot {
    if let Some(pool) = pool {
        for lb in &mut snapshot.load_balancers {
            lb.address = within(pool, lb.address);
        }
    }
    snapshot
}

/// The address of `pool` with the host part of `address`.
fn within(pool: Ipv4Block, address: Ipv4Addr) -> Ipv4Addr {
    // Blocks are /8 to /30 (`Ipv4Block::parse`).
    let network = u32::MAX.checked_shl(32 - u32::from(pool.prefix)).unwrap_or(0);
    Ipv4Addr::from((u32::from(pool.base) & network) | (u32::from(address) & !network))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_keeps_its_offset_in_the_hosts_block() {
        let block = |s: &str| Ipv4Block::parse(s).unwrap();
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(within(block("10.0.8.0/24"), ip("127.100.0.7")), ip("10.0.8.7"));
        assert_eq!(within(block("127.101.0.0/16"), ip("127.100.3.9")), ip("127.101.3.9"));
        assert_eq!(within(block("10.1.0.0/8"), ip("127.100.3.9")), ip("10.100.3.9"));
        assert_eq!(within(block("10.1.2.4/30"), ip("127.100.3.9")), ip("10.1.2.5"));
    }
}
