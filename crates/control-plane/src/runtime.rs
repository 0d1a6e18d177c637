//! The control plane's run-time companions that are not state: the deployment's network
//! settings and the seam to the load balancer data plane. Nothing here is stored.

use std::sync::{Arc, RwLock};

use elb::health::Board;
use model::ec2::{Network, NetworkConfig};
use model::Scope;

/// What the ELBv2 operations share at run time besides the state: the deployment's
/// network settings, the board the data plane publishes target health on, and the signal
/// that wakes the data plane after a change.
#[derive(Debug, Default)]
pub struct ElbRuntime {
    network: RwLock<NetworkConfig>,
    pub board: Arc<Board>,
    pub changed: Arc<tokio::sync::Notify>,
}

impl ElbRuntime {
    /// Sets the zones and the load balancer address pool; called once at start, before
    /// requests are served.
    pub fn configure(&self, config: NetworkConfig) {
        *self.network.write().unwrap_or_else(|p| p.into_inner()) = config;
    }
    pub fn network_config(&self) -> NetworkConfig {
        self.network.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub fn network(&self, scope: &Scope) -> Network {
        Network::of(scope, &self.network_config())
    }
}

/// Runs `job` at once and then every `every`, until `stop` completes. A run that takes
/// longer than `every` delays the next one instead of letting runs pile up.
pub(crate) async fn repeat<F, Fut>(every: std::time::Duration, stop: impl std::future::Future<Output = ()>, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticks.tick() => {}
        }
        job().await;
    }
}
