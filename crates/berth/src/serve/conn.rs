//! One API connection, from admission to close: the TLS handshake, HTTP/1.1 or HTTP/2,
//! and the deadlines that free its slot (see `admission` for the numbers and why).
//!
//! hyper closes an HTTP/1.1 connection whose request headers do not arrive within the
//! header timeout, counted from when it starts waiting for a request, so an idle
//! kept-alive connection goes too. HTTP/2 has no such timer, so each connection also has
//! a watchdog: a connection with no request in progress that has received nothing for the
//! header timeout is shut down gracefully, whichever protocol it speaks.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::body::Pace;

/// What a connection's watchdog knows of it: when it last received bytes or finished a
/// response, and how many requests are in progress.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last sign of life.
    last: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity { epoch: Instant::now(), last: AtomicU64::new(0), in_flight: AtomicUsize::new(0) })
    }

    fn touch(&self) {
        self.last.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Since when the connection has been idle (no request in progress, nothing
    /// received), or `None` if a request is in progress.
    pub fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) != 0 {
            return None;
        }
        Some(self.epoch + Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }

    /// Whether the connection has had no request in progress and received nothing for
    /// `timeout`.
    pub fn idle_for(&self, timeout: Duration) -> bool {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.in_flight.load(Ordering::Acquire) == 0 && self.epoch.elapsed().saturating_sub(last) >= timeout
    }

    /// Waits until the connection is idle for `timeout`, checking a few times per timeout.
    pub async fn until_idle(&self, timeout: Duration) {
        let every = (timeout / 4).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            if self.idle_for(timeout) {
                return;
            }
        }
    }
}

/// A connection's byte stream, noting every read that brings bytes.
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Watched<T> {
        Watched { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The app of one connection, under watch: it counts the requests in progress (a request
/// counts from its call until its response body has been sent or dropped, so that a long
/// download is not mistaken for an idle connection), paces request bodies, and marks an
/// answer given before its request's body was read as the connection's last.
#[derive(Clone)]
pub struct Supervised<S> {
    inner: S,
    activity: Arc<Activity>,
    pace: Pace,
    /// The client's address, handed to each request as axum's `ConnectInfo` (IAM's
    /// `aws:SourceIp`).
    peer: std::net::SocketAddr,
}

impl<S> Supervised<S> {
    pub fn new(inner: S, activity: Arc<Activity>, pace: Pace, peer: std::net::SocketAddr) -> Supervised<S> {
        Supervised { inner, activity, pace, peer }
    }
}

impl<S, B> tower::Service<http::Request<B>> for Supervised<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let guard = self.activity.begin_request();
        let (mut request, body_ended) = self.pace.wrap(request.map(Body::new));
        request.extensions_mut().insert(axum::extract::ConnectInfo(self.peer));
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            if !body_ended.load(Ordering::Acquire) && response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            Ok(response.map(|body| Body::new(Guarded { inner: body, _guard: guard })))
        })
    }
}

impl Activity {
    /// Counts a request in progress until the value is dropped.
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        InFlight::new(self.clone())
    }
}

/// One request in progress.
pub struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // The idle clock starts when the last response ends, not when its request came.
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted until it is done.
struct Guarded {
    inner: Body,
    _guard: InFlight,
}

impl hyper::body::Body for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_only_without_requests_and_bytes() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(30);
        assert!(!activity.idle_for(timeout));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(activity.idle_for(timeout), "a connection that never sent a byte is idle");
        let request = InFlight::new(activity.clone());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!activity.idle_for(timeout), "a request in progress keeps the connection");
        drop(request);
        assert!(!activity.idle_for(timeout), "the idle clock starts when the response ends");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(activity.idle_for(timeout));
    }
}
