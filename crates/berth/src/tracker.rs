//! Every task the binary spawns goes through one [`Tracker`], so that shutdown can wait
//! for them all: in the manner of mini-redis's shutdown, the cancellation token says
//! "stop" and the tracker says "all have stopped". Tasks carry names, so that shutdown can
//! say which did not end in time, and a panic in one is logged with its name when it
//! happens, instead of vanishing into a join handle that nobody reads.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::Notify;

/// The running tasks of the process. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    inner: Arc<Inner>,
}

impl Tracker {
    /// Spawns `task` on the runtime as `name`. The task ends by itself, normally when the
    /// shutdown token it was given is cancelled; a panic in it ends it too, and is logged.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.inner.running().insert(id, name);
        let ended = Ended { inner: self.inner.clone(), id };
        tokio::spawn(async move {
            // Dropped however the task ends, also when the runtime drops it unfinished.
            let _ended = ended;
            // Asserted as tokio asserts it for every task it runs: a task that panicked is never
            // polled again.
            if let Err(panic) = AssertUnwindSafe(task).catch_unwind().await {
                tracing::error!(task = name, panic = panic_message(panic.as_ref()), "a background task panicked");
            }
        });
    }

    /// Waits until every task has ended, for at most `timeout`, and logs the outcome:
    /// that all ended, or which did not (they stop with the process). Returns whether
    /// all ended.
    pub async fn wait(&self, timeout: Duration) -> bool {
        let all_ended = async {
            loop {
                let idle = self.inner.idle.notified();
                tokio::pin!(idle);
                // Registered before the check, so that an end between the two is not missed.
                idle.as_mut().enable();
                if self.inner.running().is_empty() {
                    return;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(timeout, all_ended).await.is_ok() {
            tracing::info!("every background task has ended");
            return true;
        }
        let mut left: BTreeMap<&str, usize> = BTreeMap::new();
        for name in self.inner.running().values() {
            *left.entry(name).or_default() += 1;
        }
        let left: Vec<String> = left
            .into_iter()
            .map(|(name, n)| if n == 1 { name.to_string() } else { format!("{name} (x{n})") })
            .collect();
        tracing::warn!(?timeout, tasks = %left.join(", "), "background tasks did not end in time; they stop with the process");
        false
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// The tasks that have not ended, by a number of their own, with their names.
    running: Mutex<HashMap<u64, &'static str>>,
    next: AtomicU64,
    /// Woken when the last running task ends.
    idle: Notify,
}

impl Inner {
    fn running(&self) -> MutexGuard<'_, HashMap<u64, &'static str>> {
        // The map is consistent after every statement, so a panic elsewhere leaves it usable.
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Takes its task off the running ones when dropped.
struct Ended {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Ended {
    fn drop(&mut self) {
        let mut running = self.inner.running();
        running.remove(&self.id);
        if running.is_empty() {
            self.inner.idle.notify_waiters();
        }
    }
}

/// The message of a panic, which is a string unless the panic was given something else.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    match (panic.downcast_ref::<&'static str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => s,
        (None, Some(s)) => s,
        (None, None) => "(not a string)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    /// A task that runs until its sender is used or dropped.
    async fn until(rx: oneshot::Receiver<()>) {
        let _ = rx.await;
    }

    // Time is not paused here (the binary's tokio has no test-util); the timeouts that
    // are meant to pass are short, the others far longer than any test runs.

    #[tokio::test]
    async fn wait_returns_when_the_last_task_has_ended() {
        let tracker = Tracker::default();
        let (first, first_rx) = oneshot::channel();
        let (second, second_rx) = oneshot::channel();
        tracker.spawn("first", until(first_rx));
        tracker.spawn("second", until(second_rx));
        let waiting = tokio::spawn({
            let tracker = tracker.clone();
            async move { tracker.wait(Duration::from_secs(60)).await }
        });
        first.send(()).unwrap();
        assert!(!tracker.wait(Duration::from_millis(50)).await, "one task still runs");
        assert!(!waiting.is_finished(), "wait returned before the last task had ended");
        second.send(()).unwrap();
        assert!(waiting.await.unwrap());
        assert!(tracker.inner.running().is_empty());
    }

    #[tokio::test]
    async fn wait_gives_up_at_its_timeout_and_keeps_what_did_not_end() {
        let tracker = Tracker::default();
        let (quick, quick_rx) = oneshot::channel();
        tracker.spawn("stuck", std::future::pending());
        tracker.spawn("quick", until(quick_rx));
        quick.send(()).unwrap();
        assert!(!tracker.wait(Duration::from_millis(50)).await);
        let left: Vec<&str> = tracker.inner.running().values().copied().collect();
        assert_eq!(left, ["stuck"]);
    }

    #[tokio::test]
    async fn a_panicking_task_counts_as_ended() {
        let tracker = Tracker::default();
        tracker.spawn("doomed", async { panic!("broken on purpose") });
        assert!(tracker.wait(Duration::from_secs(60)).await);
    }

    #[tokio::test]
    async fn wait_with_nothing_running_returns_at_once() {
        assert!(Tracker::default().wait(Duration::from_secs(60)).await);
    }

    #[test]
    fn panic_messages() {
        assert_eq!(panic_message(&"static"), "static");
        assert_eq!(panic_message(&String::from("formatted")), "formatted");
        assert_eq!(panic_message(&42), "(not a string)");
    }
}
