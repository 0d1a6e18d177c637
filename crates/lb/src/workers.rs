//! The threads that serve client connections: one per core, each running its own
//! single-threaded runtime with its own pool of connections to targets, like HAProxy's
//! threads. A listener accepts on the process's runtime and hands each connection to
//! the next worker in turn; from then on the connection, its requests and the target
//! connections they use stay on that one thread.
//!
//! Why: on a work-stealing runtime every request crosses between tasks that may run on
//! different threads (the client connection, the pooled target connection, the response
//! body), and the wake-ups between them cost more than the proxying itself. Measured
//! under wrk, a request took about 55 µs of CPU on the shared runtime and about 37 µs
//! on a single-threaded one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::connect::{self, Pool};
use crate::proxy::{self, ListenerCtx};

/// A client connection on its way to a worker.
pub(crate) struct Job {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub ctx: Arc<ListenerCtx>,
    /// Held while the connection is open: the listener's bound on connections.
    pub permit: OwnedSemaphorePermit,
}

/// The worker threads of a data plane.
#[derive(Debug)]
pub(crate) struct Workers {
    senders: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
    /// Serves connections on the process's runtime if no worker thread could start.
    fallback: Arc<Pool>,
}

impl Workers {
    /// Starts `count` workers; they end when `shutdown` is cancelled and their
    /// connections have closed, or when the data plane is gone.
    pub fn start(count: usize, shutdown: &CancellationToken) -> Self {
        let mut senders = Vec::new();
        for i in 0..count {
            let (tx, rx) = mpsc::unbounded_channel();
            let shutdown = shutdown.clone();
            let started = tokio::runtime::Builder::new_current_thread().enable_all().build().and_then(|runtime| {
                std::thread::Builder::new()
                    .name(format!("lb-worker-{i}"))
                    .spawn(move || runtime.block_on(run(rx, shutdown)))
            });
            match started {
                Ok(_) => senders.push(tx),
                Err(e) => tracing::error!(error = %e, "cannot start a load balancer worker thread"),
            }
        }
        Workers { senders, next: AtomicUsize::new(0), fallback: Arc::default() }
    }

    /// Hands a connection to the next worker.
    pub fn dispatch(&self, job: Job) {
        if self.senders.is_empty() {
            tokio::spawn(serve(job, self.fallback.clone()));
            return;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        if self.senders[i].send(job).is_err() {
            tracing::debug!("a load balancer worker has stopped; connection dropped");
        }
    }
}

async fn serve(job: Job, pool: Arc<Pool>) {
    let Job { stream, peer, ctx, permit } = job;
    match tokio::net::TcpStream::from_std(stream) {
        Ok(stream) => proxy::connection(stream, peer, ctx, pool).await,
        Err(e) => tracing::warn!(%peer, error = %e, "cannot serve a client connection"),
    }
    drop(permit);
}

/// One worker: serves the connections it is given, each in its own task, with a client
/// (and pool of target connections) of its own.
async fn run(mut jobs: mpsc::UnboundedReceiver<Job>, shutdown: CancellationToken) {
    let pool = Arc::new(Pool::default());
    tokio::spawn(connect::expire_idle(Arc::downgrade(&pool)));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            job = jobs.recv() => {
                let Some(job) = job else { break };
                connections.spawn(serve(job, pool.clone()));
            }
            Some(_) = connections.join_next() => {}
        }
    }
    // Connections close on their own once shutdown is signalled (after their requests).
    while connections.join_next().await.is_some() {}
}
