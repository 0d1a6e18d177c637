//! Several control-plane replicas (`ECS_BACKEND_HOST=http://a:7447,http://b:7447`): the
//! agent reaches whichever one answers.
//!
//! "Answers" means "accepts a TCP connection": the leader, or a follower, which passes
//! what it does not answer itself (the channel among it) to the leader; a deposed leader
//! stops. Rather than teach every client
//! of the agent (the ECS SDK for registration, the channel's WebSocket, the Logs, ECR,
//! SSM and Secrets Manager SDKs) about several endpoints, the agent forwards a loopback
//! port to them: each new connection goes to the replica that took the last one, or, if
//! it refuses, to the next that accepts. A replica that dies breaks the connections
//! through it; the channel reconnects (and resends its reports) and the SDKs retry, both
//! through the forwarder to the new leader.
//!
//! Requests are signed for the forwarder's address, which the server checks them
//! against as it receives them: nothing is rewritten. Plain HTTP only, as the agent's
//! channel is.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long a replica may take to accept a connection before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The control plane's names as `ECS_BACKEND_HOST` gives them (`host[:port]`, scheme and
/// trailing `/` cut): the registry's names, which images carry.
pub fn names(list: &str) -> Vec<String> {
    list.split(',')
        .map(|u| {
            u.trim().trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/').to_string()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// The replicas' `host:port`s, from their `http://` URLs.
pub fn parse(list: &str) -> anyhow::Result<Vec<String>> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            let rest = u
                .strip_prefix("http://")
                .with_context(|| format!("'{u}' in ECS_BACKEND_HOST: several endpoints must each be an http:// URL"))?;
            let host = rest.trim_end_matches('/');
            anyhow::ensure!(!host.is_empty() && !host.contains('/'), "'{u}' in ECS_BACKEND_HOST is not host[:port]");
            Ok(if host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
                host.to_string()
            } else {
                format!("{host}:80")
            })
        })
        .collect()
}

/// Forwards a loopback port to the first of `replicas` that accepts, until `shutdown`;
/// returns the port's address.
pub async fn forward(replicas: Vec<String>, shutdown: CancellationToken) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the replicas' forwarder")?;
    let addr = listener.local_addr()?;
    let replicas = Arc::new(replicas);
    let current = Arc::new(AtomicUsize::new(0));
    tracing::info!(%addr, replicas = ?replicas, "reaching the control plane's replicas through a local forwarder");
    tokio::spawn(async move {
        loop {
            let (inbound, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "the replicas' forwarder cannot accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (replicas, current) = (replicas.clone(), current.clone());
            tokio::spawn(async move {
                let Some(mut outbound) = connect(&replicas, &current).await else {
                    tracing::warn!(replicas = ?replicas, "no control-plane replica accepts a connection");
                    return;
                };
                let mut inbound = inbound;
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    Ok(addr)
}

/// A connection to the replica that took the last one, else to the next that accepts.
async fn connect(replicas: &[String], current: &AtomicUsize) -> Option<TcpStream> {
    let first = current.load(Ordering::Relaxed);
    for i in (0..replicas.len()).map(|k| (first + k) % replicas.len()) {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&replicas[i])).await {
            Ok(Ok(stream)) => {
                if current.swap(i, Ordering::Relaxed) != i {
                    tracing::info!(replica = %replicas[i], "reaching the control plane at another replica");
                }
                let _ = stream.set_nodelay(true);
                return Some(stream);
            }
            Ok(Err(e)) => tracing::debug!(replica = %replicas[i], error = %e, "replica refused"),
            Err(_) => tracing::debug!(replica = %replicas[i], "replica did not accept in time"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn endpoints_are_http_urls() {
        assert_eq!(parse("http://a:7447, http://b/").unwrap(), ["a:7447", "b:80"]);
        assert_eq!(names("http://a:7447, http://b/"), ["a:7447", "b"]);
        assert_eq!(names("https://berth.example"), ["berth.example"]);
        assert!(parse("https://a:7447,http://b:1").is_err());
        assert!(parse("http://a:1/path,http://b:1").is_err());
    }

    /// A server that answers each connection with `name`.
    async fn named(name: &'static str) -> (String, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(name.as_bytes()).await;
            }
        });
        (addr, h)
    }

    async fn ask(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn connections_go_to_the_replica_that_answers() {
        // The first replica listens nowhere (a standby), the second leads.
        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().to_string();
        let (b, b_server) = named("b").await;
        let (c, _c_server) = named("c").await;
        let shutdown = CancellationToken::new();
        let addr = forward(vec![gone, b, c], shutdown.clone()).await.unwrap();
        assert_eq!(ask(addr).await, "b");
        assert_eq!(ask(addr).await, "b", "the replica that answered keeps the connections");
        // The leader dies: the next connection finds the other.
        b_server.abort();
        let _ = b_server.await;
        assert_eq!(ask(addr).await, "c");
        shutdown.cancel();
    }
}
