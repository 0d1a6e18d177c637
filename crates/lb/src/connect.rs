//! Connections to targets: a plain TCP connect to the target's socket address (there is
//! nothing to resolve), with no-delay set and nothing else asked of the kernel per
//! connection, kept open between requests in each worker's [`Pool`].

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::proxy::ProxyBody;

/// How long a target may take to accept a connection (ALB's is 10 s): then 504.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection to a target stays open with no request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The keep-alive connections of one worker to its targets. Only that worker's thread
/// uses it, so its lock is never contended.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

/// A connection to a target, taken from the pool or newly made; [`Pool::put`] gives it
/// back once its response has been read.
#[derive(Debug)]
pub(crate) struct Conn {
    pub addr: SocketAddr,
    pub sender: SendRequest<ProxyBody>,
}

impl Pool {
    /// A connection to `addr` ready for a request: the most recently used idle one, or a
    /// new one.
    pub async fn get(&self, addr: SocketAddr) -> io::Result<Conn> {
        if let Some(sender) = self.take_idle(addr) {
            return Ok(Conn { addr, sender });
        }
        self.connect(addr).await
    }

    /// A new connection to `addr`, whose driving task runs on the current thread's runtime.
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<Conn> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(Target(TokioIo::new(stream))).await.map_err(io::Error::other)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(target = %addr, error = %e, "target connection ended with an error");
            }
        });
        Ok(Conn { addr, sender })
    }

    fn take_idle(&self, addr: SocketAddr) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(&addr)?;
        let now = Instant::now();
        // The most recently used first; one that has not yet seen the end of its last
        // response stays for later, closed ones go in `expire`.
        while let Some(i) = list.iter().rposition(|i| i.sender.is_ready()) {
            let i = list.swap_remove(i);
            if now.duration_since(i.since) < IDLE_TIMEOUT {
                return Some(i.sender);
            }
        }
        None
    }

    /// Keeps `conn` for the next request to its target, unless it is closed.
    pub fn put(&self, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.entry(conn.addr).or_default().push(Idle { sender: conn.sender, since: Instant::now() });
    }

    /// Closes connections idle for longer than the idle timeout.
    pub fn expire(&self) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|_, list| {
            list.retain(|i| !i.sender.is_closed() && now.duration_since(i.since) < IDLE_TIMEOUT);
            !list.is_empty()
        });
    }
}

/// Runs [`Pool::expire`] every few seconds while `pool` is in use.
pub(crate) async fn expire_idle(pool: std::sync::Weak<Pool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        pool.expire();
    }
}

/// A connection to a target. Shutting it down does nothing: the connection is closed
/// when it is dropped, and close(2) sends the FIN that shutdown(2) would, one system call
/// fewer for every request to a target that closes its connections.
#[derive(Debug)]
struct Target(TokioIo<TcpStream>);

impl hyper::rt::Read for Target {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Target {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, Empty, Full};
    use hyper::service::service_fn;
    use tokio::net::TcpListener;

    use super::*;

    /// A target that counts its connections and closes each after `per_connection`
    /// requests (0: never).
    async fn target(per_connection: usize) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let served = Arc::new(AtomicUsize::new(0));
                let service = service_fn(move |_req| {
                    let n = served.fetch_add(1, Ordering::SeqCst) + 1;
                    async move {
                        let mut r = Response::new(Full::new(Bytes::from_static(b"hello")));
                        if n == per_connection {
                            r.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                        }
                        Ok::<_, Infallible>(r)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (addr, accepted)
    }

    /// One request through the pool, its body read to the end, the connection given back.
    async fn request(pool: &Pool, addr: SocketAddr) {
        let mut conn = pool.get(addr).await.unwrap();
        let req = Request::get("/")
            .header(http::header::HOST, addr.to_string())
            .body(Empty::new().map_err(|never| match never {}).boxed_unsync())
            .unwrap();
        let body = conn.sender.send_request(req).await.unwrap().into_body().collect().await.unwrap();
        assert_eq!(body.to_bytes(), "hello");
        pool.put(conn);
        // Let the connection's task see the end of the response.
        tokio::task::yield_now().await;
    }

    #[tokio::test]
    async fn connections_are_kept_for_the_next_request() {
        let (addr, accepted) = target(0).await;
        let pool = Pool::default();
        for _ in 0..5 {
            request(&pool, addr).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn connections_the_target_closes_are_not_reused() {
        let (addr, accepted) = target(1).await;
        let pool = Pool::default();
        for _ in 0..3 {
            request(&pool, addr).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }
}
