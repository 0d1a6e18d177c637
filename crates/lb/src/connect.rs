//! Connections to targets: a plain TCP connect to the address in the URI (targets are
//! always socket addresses, so there is nothing to resolve), with no-delay set and
//! nothing else asked of the kernel per connection.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::proxy::CONNECT_TIMEOUT;

/// Connects to a target's socket address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Connector;

impl tower_service::Service<Uri> for Connector {
    type Response = Target;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Target>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move {
            let addr: SocketAddr = uri.authority().and_then(|a| a.as_str().parse().ok()).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("'{uri}' names no socket address"))
            })?;
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            stream.set_nodelay(true)?;
            Ok(Target(TokioIo::new(stream)))
        })
    }
}

/// A connection to a target. Shutting it down does nothing: the connection is closed
/// when it is dropped, and close(2) sends the FIN that shutdown(2) would, one system call
/// fewer for every request to a target that closes its connections.
#[derive(Debug)]
pub(crate) struct Target(TokioIo<TcpStream>);

impl Connection for Target {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

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
