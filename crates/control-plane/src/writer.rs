//! The single writer: applies changes in batches and acknowledges them once durable.
//!
//! Every change is a closure run on the writer thread against a working copy of the state.
//! The writer takes whatever closures are queued (up to [`MAX_BATCH`]), runs them one
//! after another, commits all their changes to the store in one transaction (one fsync),
//! then publishes the new state and answers each caller. This group commit is what lets
//! many concurrent writers share the cost of durability.
//!
//! When the store cannot tell whether a batch was committed
//! ([`store::StoreError::OutcomeUnknown`], a PostgreSQL connection lost mid-commit), the
//! view may no longer match the store: the writer re-reads the whole state from the store
//! and publishes that, and commits nothing until it has.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};

use model::Timestamp;
use store::Store;

use crate::error::{Error, Result};
use crate::state::{State, Touched};

/// The most changes committed in one transaction.
pub const MAX_BATCH: usize = 512;

/// A change in progress: the working state, what it touched, and the batch's clock.
pub struct Txn<'a> {
    pub state: &'a mut State,
    touched: &'a mut Vec<Touched>,
    pub now: Timestamp,
}

impl Txn<'_> {
    /// Records that a resource was created, changed or removed in `state`.
    pub fn touch(&mut self, t: Touched) {
        self.touched.push(t);
    }
}

type Deliver = Box<dyn FnOnce(Result<()>) + Send>;
pub(crate) type Job = Box<dyn FnOnce(&mut Txn<'_>) -> (bool, Deliver) + Send>;

/// Queues `f` for the writer and waits until its outcome is durable.
pub(crate) async fn submit<R, F>(jobs: &mpsc::Sender<Job>, f: F) -> Result<R>
where
    R: Send + 'static,
    F: FnOnce(&mut Txn<'_>) -> Result<R> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move |txn| {
        let result = f(txn);
        let failed = result.is_err();
        let deliver: Deliver = Box::new(move |commit| {
            let _ = tx.send(result.and_then(|r| commit.map(|()| r)));
        });
        (failed, deliver)
    });
    jobs.send(job).await.map_err(|_| Error::Internal("the writer has stopped".into()))?;
    rx.await.map_err(|_| Error::Internal("the writer dropped a change".into()))?
}

/// Runs the writer until every sender is gone. Meant for a dedicated thread: it blocks on
/// the store.
pub(crate) fn run(mut jobs: mpsc::Receiver<Job>, store: Arc<dyn Store>, view: Arc<ArcSwap<State>>) {
    // Whether the view must be re-read from the store before the next commit.
    let mut stale = false;
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let before = view.load_full();
        let mut next: State = (*before).clone();
        let mut touched = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        let now = Timestamp::now();
        for job in batch {
            // Each change is atomic: if it fails or panics, its partial edits are undone
            // by going back to the checkpoint (cheap, the maps are persistent).
            let checkpoint = (next.clone(), touched.len());
            let mut txn = Txn { state: &mut next, touched: &mut touched, now };
            match catch_unwind(AssertUnwindSafe(|| job(&mut txn))) {
                Ok((failed, deliver)) => {
                    if failed {
                        next = checkpoint.0;
                        touched.truncate(checkpoint.1);
                    }
                    replies.push(deliver);
                }
                Err(_) => {
                    tracing::error!("a change panicked in the writer; it was rolled back");
                    next = checkpoint.0;
                    touched.truncate(checkpoint.1);
                }
            }
        }
        next.count_instance_versions(&before, &mut touched);
        touched.sort();
        touched.dedup();
        let mutations: Vec<_> = touched.iter().map(|t| next.mutation(t)).collect();
        if stale {
            stale = !reload(store.as_ref(), &view);
        }
        let committed = match stale {
            true => Err(store::StoreError::Unavailable("the state is being re-read from the store".into())),
            false => store.commit(&mutations),
        };
        let outcome = match committed {
            Ok(()) => {
                view.store(Arc::new(next));
                Ok(())
            }
            Err(e @ store::StoreError::Fenced(_)) => {
                // Another replica took the writer lease: nothing this process writes will
                // be committed again, so every later change fails the same way.
                tracing::error!(error = %e, changes = mutations.len(), "this replica lost the writer lease; the batch was not applied");
                Err(Error::Internal(e.to_string()))
            }
            Err(e @ store::StoreError::OutcomeUnknown(_)) => {
                tracing::error!(error = %e, changes = mutations.len(), "a commit's outcome is unknown; re-reading the state from the store");
                stale = !reload(store.as_ref(), &view);
                Err(Error::Internal(e.to_string()))
            }
            Err(e) => {
                tracing::error!(error = %e, changes = mutations.len(), "commit failed; the batch was not applied");
                Err(Error::Internal(e.to_string()))
            }
        };
        for deliver in replies {
            deliver(outcome.clone());
        }
    }
}

/// Replaces the view with the state the store holds; false if the store could not be read.
fn reload(store: &dyn Store, view: &ArcSwap<State>) -> bool {
    match store.load().map_err(|e| e.to_string()).and_then(|r| State::from_records(r).map_err(|e| e.to_string())) {
        Ok(state) => {
            view.store(Arc::new(state));
            tracing::info!("the state was re-read from the store");
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "re-reading the state from the store failed; writes wait for it");
            false
        }
    }
}
