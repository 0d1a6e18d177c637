//! `/stats` and `/task/stats`: Docker's stats of a task's containers, as ECS passes them
//! on, plus version 4's `network_rate_stats`.
//!
//! Containers of an awsvpc task share their pause container's network namespace, where
//! Docker reports no network counters of their own: their `networks` are the pause
//! container's (as on ECS). The rates compare a container's counters with those of the
//! previous request for it; the first request answers 0.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use futures_util::future::join_all;
use serde_json::{json, Map, Value};

use super::metadata::{ContainerSnapshot, TaskSnapshot, Version};
use crate::docker::{Docker, DockerError};

/// The previous network counters of each container that has been asked for.
#[derive(Default)]
pub struct Rates {
    last: Mutex<HashMap<String, Sample>>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    rx: u64,
    tx: u64,
}

/// Why there are no stats.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The container has not been created yet.
    #[error("the container has no Docker container yet")]
    NotCreated,
    #[error("{0}")]
    Docker(#[from] DockerError),
}

/// One container's stats.
pub async fn container(docker: &Docker, rates: &Rates, c: &ContainerSnapshot, v: Version) -> Result<Value, StatsError> {
    let id = c.docker_id.as_deref().ok_or(StatsError::NotCreated)?;
    let shared_from = c.network_stats_from.as_deref().filter(|from| *from != id);
    // Docker takes a second or two per answer: ask for both at once.
    let (own, shared) = tokio::join!(docker.stats(id), async {
        match shared_from {
            Some(from) => docker.stats(from).await.map(Some),
            None => Ok(None),
        }
    });
    let mut stats = own?;
    if let (Some(o), Some(n)) = (stats.as_object_mut(), shared?.as_ref().and_then(|s| s.get("networks"))) {
        o.insert("networks".into(), n.clone());
    }
    if v == Version::V4 {
        add_rates(&mut stats, rates, id, Instant::now());
    }
    Ok(stats)
}

/// Every created container's stats by Docker id (`null` where Docker gave none).
pub async fn task(docker: &Docker, rates: &Rates, t: &TaskSnapshot, v: Version) -> Value {
    let created: Vec<&ContainerSnapshot> = t.containers.iter().filter(|c| c.docker_id.is_some()).collect();
    let all = join_all(created.iter().map(|c| container(docker, rates, c, v))).await;
    let mut out = Map::new();
    for (c, stats) in created.iter().zip(all) {
        let id = c.docker_id.clone().unwrap_or_default();
        out.insert(id, stats.unwrap_or(Value::Null));
    }
    Value::Object(out)
}

/// Adds `network_rate_stats` to stats that have network counters.
fn add_rates(stats: &mut Value, rates: &Rates, id: &str, now: Instant) {
    let Some(networks) = stats.get("networks").and_then(Value::as_object) else { return };
    let total = |key: &str| networks.values().filter_map(|n| n.get(key)?.as_u64()).sum::<u64>();
    let sample = Sample { at: now, rx: total("rx_bytes"), tx: total("tx_bytes") };
    let previous = rates.last.lock().ok().and_then(|mut last| last.insert(id.to_string(), sample));
    let (rx, tx) = per_second(previous, sample);
    if let Some(o) = stats.as_object_mut() {
        o.insert("network_rate_stats".into(), json!({ "rx_bytes_per_sec": rx, "tx_bytes_per_sec": tx }));
    }
}

/// Bytes per second between two samples; 0 without an earlier one (or when the counters
/// went back, as after a restart).
fn per_second(previous: Option<Sample>, now: Sample) -> (f64, f64) {
    let Some(p) = previous else { return (0.0, 0.0) };
    let secs = now.at.saturating_duration_since(p.at).as_secs_f64();
    if secs <= 0.0 {
        return (0.0, 0.0);
    }
    let rate = |a: u64, b: u64| b.checked_sub(a).map_or(0.0, |d| d as f64 / secs);
    (rate(p.rx, now.rx), rate(p.tx, now.tx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_compare_with_the_previous_request() {
        let rates = Rates::default();
        let t0 = Instant::now();
        let mut stats = json!({ "networks": { "eth0": { "rx_bytes": 1000, "tx_bytes": 10 } } });
        add_rates(&mut stats, &rates, "c", t0);
        assert_eq!(stats["network_rate_stats"], json!({ "rx_bytes_per_sec": 0.0, "tx_bytes_per_sec": 0.0 }));
        let mut later = json!({ "networks": {
            "eth0": { "rx_bytes": 2000, "tx_bytes": 10 },
            "eth1": { "rx_bytes": 1000, "tx_bytes": 5 },
        } });
        add_rates(&mut later, &rates, "c", t0 + Duration::from_secs(2));
        assert_eq!(later["network_rate_stats"], json!({ "rx_bytes_per_sec": 1000.0, "tx_bytes_per_sec": 2.5 }));

        let mut no_network = json!({ "read": "x" });
        add_rates(&mut no_network, &rates, "host-mode", t0);
        assert!(no_network.get("network_rate_stats").is_none(), "host mode has no counters, so no rates");
        let s = |rx| Sample { at: t0, rx, tx: 0 };
        assert_eq!(per_second(Some(s(5)), s(1)), (0.0, 0.0), "no time passed");
    }
}
