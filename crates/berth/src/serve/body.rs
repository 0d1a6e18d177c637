//! Request bodies: they must keep arriving, and one that a handler left unread must not
//! reset the client.
//!
//! A body that pauses longer than the body timeout, or that after that grace has averaged
//! less than the minimum rate since it started, ends in an error, which ends its request
//! and closes its connection. Without this, a client could hold a connection (and
//! whatever the handler buffered of its body) by sending a byte now and then.
//!
//! A handler may answer without reading the body (a refused signature, a body over its
//! limit). hyper then closes the connection after the answer, and a client still sending
//! would get a TCP reset instead of the answer; so the rest is drained in the background
//! (discarded, at most [`DRAIN_BYTES`] for at most [`DRAIN_TIME`]) and the answer says
//! `Connection: close` (see `conn`), since the client must not reuse the connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use hyper::body::{Body as _, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::tracker::Tracker;

/// How much of an unread body is drained, and for how long.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// How fast a body must arrive, and where the drains of unread bodies run.
#[derive(Debug, Clone)]
pub struct Pace {
    /// The longest pause between two parts of a body, and the grace before `min_rate`.
    pub max_pause: Duration,
    /// Bytes per second, averaged from the body's start; 0 for no minimum.
    pub min_rate: u64,
    pub drains: Tracker,
}

impl Pace {
    /// Wraps a request's body so that it fails when it arrives too slowly. The flag
    /// returned tells, once the handler has answered, whether the body was read to its end.
    pub fn wrap(&self, request: axum::extract::Request) -> (axum::extract::Request, Arc<AtomicBool>) {
        let ended = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| Body::new(Paced::new(body, self.clone(), ended.clone())));
        (request, ended)
    }
}

struct Paced {
    inner: Body,
    pace: Pace,
    started: Instant,
    received: u64,
    deadline: Pin<Box<Sleep>>,
    ended: Arc<AtomicBool>,
    /// Cut off for arriving too slowly: the rest is not worth waiting for.
    abandoned: bool,
}

impl Paced {
    fn new(inner: Body, pace: Pace, ended: Arc<AtomicBool>) -> Paced {
        let started = Instant::now();
        if inner.is_end_stream() {
            ended.store(true, Ordering::Release);
        }
        let deadline = Box::pin(tokio::time::sleep(pace.max_pause));
        Paced { inner, pace, started, received: 0, deadline, ended, abandoned: false }
    }

    /// When the next part of the body is due: within the pause allowed from now, and
    /// soon enough to keep the average rate.
    fn next_deadline(&self) -> Instant {
        let pause = Instant::now() + self.pace.max_pause;
        if self.pace.min_rate == 0 {
            return pause;
        }
        let on_schedule = self.started
            + self.pace.max_pause
            + Duration::from_secs_f64(self.received as f64 / self.pace.min_rate as f64);
        pause.min(on_schedule)
    }
}

impl Paced {
    fn too_slow(&mut self) -> axum::Error {
        self.abandoned = true;
        axum::Error::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the request body arrived too slowly ({} bytes in {:.0?}); send it without pauses over {:?}",
                self.received,
                self.started.elapsed(),
                self.pace.max_pause
            ),
        ))
    }
}

impl Drop for Paced {
    fn drop(&mut self) {
        if self.abandoned || self.ended.load(Ordering::Acquire) {
            return;
        }
        let mut rest = std::mem::take(&mut self.inner);
        let max_pause = self.pace.max_pause;
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.pace.drains.spawn("draining an unread request body", async move {
            use http_body_util::BodyExt;
            let _ = tokio::time::timeout(DRAIN_TIME, async {
                let mut seen = 0;
                while let Ok(Some(Ok(frame))) = tokio::time::timeout(max_pause, rest.frame()).await {
                    seen += frame.data_ref().map_or(0, |d| d.len());
                    if seen > DRAIN_BYTES {
                        return;
                    }
                }
            })
            .await;
        });
    }
}

impl hyper::body::Body for Paced {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        // Checked first too: a body that is always a little data ahead of each read would
        // otherwise never see its deadline.
        if this.deadline.is_elapsed() {
            return Poll::Ready(Some(Err(this.too_slow())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let due = this.next_deadline();
                    this.deadline.as_mut().reset(due);
                }
                if this.inner.is_end_stream() {
                    this.ended.store(true, Ordering::Release);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.ended.store(true, Ordering::Release);
                Poll::Ready(None)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(this.too_slow()))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
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
    use http_body_util::BodyExt;

    fn streamed(pace: Pace) -> (tokio::sync::mpsc::Sender<Result<Frame<axum::body::Bytes>, std::io::Error>>, Body) {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let frames = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
        let stream = http_body_util::StreamBody::new(frames);
        (tx, Body::new(Paced::new(Body::new(stream), pace, Arc::default())))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_pauses_too_long_fails() {
        let (tx, mut body) =
            streamed(Pace { max_pause: Duration::from_secs(30), min_rate: 0, drains: Tracker::default() });
        tx.send(Ok(Frame::data("a".into()))).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        tokio::time::advance(Duration::from_secs(29)).await;
        tx.send(Ok(Frame::data("b".into()))).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok(), "a pause within the bound is fine");
        let stalled = body.frame().await.unwrap();
        assert!(stalled.is_err(), "a body silent for longer than the bound fails");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dripping_body_fails_once_below_the_rate() {
        let (tx, mut body) =
            streamed(Pace { max_pause: Duration::from_secs(30), min_rate: 1024, drains: Tracker::default() });
        let started = Instant::now();
        // A byte every 10 s never pauses too long, but falls below 1 KiB/s after the grace.
        let failed = loop {
            tokio::time::advance(Duration::from_secs(10)).await;
            if tx.send(Ok(Frame::data("x".into()))).await.is_err() {
                break started.elapsed();
            }
            match tokio::time::timeout(Duration::from_secs(10), body.frame()).await {
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) => break started.elapsed(),
                _ => {}
            }
            assert!(started.elapsed() < Duration::from_secs(120), "the dripping body was never cut off");
        };
        assert!(failed >= Duration::from_secs(30), "cut off before the grace: {failed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_body_passes() {
        let (tx, mut body) =
            streamed(Pace { max_pause: Duration::from_secs(30), min_rate: 1024, drains: Tracker::default() });
        for _ in 0..100 {
            tokio::time::advance(Duration::from_secs(1)).await;
            tx.send(Ok(Frame::data(vec![0u8; 2048].into()))).await.unwrap();
            assert!(body.frame().await.unwrap().is_ok());
        }
    }
}
