//! The registry's garbage collection on a schedule (see `registry::gc` for what it removes
//! and why that is safe while pushes run).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use registry::gc::GcPolicy;

use super::EcrRegistry;

/// Collects garbage every `every` (the first time one interval after start, so that a
/// restart loop cannot turn into a collection loop), until `stop` completes.
pub async fn run_schedule<A>(registry: Arc<EcrRegistry<A>>, every: Duration, stop: impl Future<Output = ()>) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticks.tick() => {}
        }
        let started = std::time::Instant::now();
        match registry.collect_garbage(GcPolicy::default()).await {
            Ok(r) => tracing::info!(
                blobs_seen = r.blobs_seen,
                blobs_removed = r.blobs_removed,
                bytes_freed = r.bytes_freed,
                uploads_removed = r.uploads_removed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "registry garbage collection done"
            ),
            Err(e) => tracing::error!(error = %e, "registry garbage collection failed; it runs again next interval"),
        }
    }
}
