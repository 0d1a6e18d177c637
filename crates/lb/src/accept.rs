//! The one accept loop of Berth's TCP servers: the API's listener (in `berth`) and every
//! load balancer listener. It bounds open connections, backs off when accepting fails and
//! ends on cancellation, so both servers do all three the same way.
//!
//! Why here: `berth` already depends on `lb`, and `lb` may depend on neither `berth` nor
//! the control plane, so the loop must live in `lb` or below it. It needs nothing but
//! tokio, and serving connections is what this crate is for; a crate of its own would be
//! a new dependency edge and a manifest for one function.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long to pause after a failed accept before trying again: the failures that
/// persist (out of file descriptors and the like) would otherwise make the loop spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A connection that [`accept`] hands over.
#[derive(Debug)]
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// Counts the connection against the loop's bound: hold it until the connection closes.
    pub permit: OwnedSemaphorePermit,
}

/// Accepts connections on `listener` until `cancel` is cancelled, at most `max` open at
/// once, and gives each to `handle` with `TCP_NODELAY` set. `handle` runs on the loop
/// itself, so it only hands the connection on (spawns or dispatches it); the loop waits
/// for a permit before it accepts again.
pub async fn accept(listener: &TcpListener, max: usize, cancel: &CancellationToken, mut handle: impl FnMut(Accepted)) {
    let permits = Arc::new(Semaphore::new(max));
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => return,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let Some((stream, peer)) = next_connection(listener, cancel).await else { return };
        handle(Accepted { stream, peer, permit });
    }
}

/// The next connection on `listener`, with `TCP_NODELAY` set, or `None` once `cancel` is
/// cancelled. A failed accept is logged and retried after a pause.
pub async fn next_connection(listener: &TcpListener, cancel: &CancellationToken) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return None,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Handed = tokio::sync::mpsc::UnboundedReceiver<Accepted>;

    /// The next connection handed over within `within`.
    async fn handed_over(rx: &mut Handed, within: Duration) -> Option<Accepted> {
        tokio::time::timeout(within, rx.recv()).await.ok().flatten()
    }

    #[tokio::test]
    async fn holds_connections_to_the_bound_and_ends_on_cancel() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = cancel.clone();
        let looping = tokio::spawn(async move { accept(&listener, 1, &stop, |a| tx.send(a).unwrap()).await });

        let _first = TcpStream::connect(addr).await.unwrap();
        let first = handed_over(&mut rx, Duration::from_secs(5)).await.expect("the first connection is handed over");
        assert!(first.stream.nodelay().unwrap());
        let _second = TcpStream::connect(addr).await.unwrap();
        // An absence can only be observed for a while; a connection taken beyond the bound
        // would be handed over at once.
        let beyond = handed_over(&mut rx, Duration::from_millis(200)).await;
        assert!(beyond.is_none(), "a second connection is taken beyond the bound of one");
        drop(first);
        let second = handed_over(&mut rx, Duration::from_secs(5)).await;
        assert!(second.is_some(), "the second connection is taken once the first has closed");

        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), looping).await.expect("the loop ends on cancel").unwrap();
    }
}
