//! Active health checks: one loop per target, an HTTP GET of the group's path every
//! interval on a fresh connection, judged by the group's matcher within its timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{header, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use elb::health::Outcome;
use elb::resources::Matcher;

use crate::group::{Group, Target};

/// ALB's health checker names itself so in the `User-Agent`.
const USER_AGENT: &str = "ELB-HealthChecker/2.0";

/// Checks `target` until it is deregistered (its token is cancelled). The first check
/// runs at once, so a new target is routable as soon as it answers.
pub(crate) async fn run(group: Arc<Group>, target: Arc<Target>) {
    let Some(addr) = target.addr else { return };
    loop {
        let plan = group.plan.load_full();
        let hc = &plan.health_check;
        let wait = if plan.in_use {
            let port = hc.port.unwrap_or(addr.port());
            let to = SocketAddr::new(addr.ip(), port);
            let outcome = check(to, &hc.path, &hc.matcher, Duration::from_secs(hc.timeout_seconds.into())).await;
            if target.cancel.is_cancelled() {
                return;
            }
            tracing::debug!(target_group = %group.arn, target = %to, ?outcome, "health check");
            if target.record(outcome, hc.healthy_threshold, hc.unhealthy_threshold) {
                group.publish();
            }
            Duration::from_secs(hc.interval_seconds.into())
        } else {
            // Not routed to: nothing to check until a listener uses the group.
            Duration::from_secs(1)
        };
        tokio::select! {
            _ = target.cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One health check.
pub(crate) async fn check(addr: SocketAddr, path: &str, matcher: &Matcher, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, attempt(addr, path)).await {
        Err(_) => Outcome::Timeout,
        Ok(Err(())) => Outcome::Failed,
        Ok(Ok(status)) if matcher.matches(status) => Outcome::Passed,
        Ok(Ok(status)) => Outcome::CodeMismatch(status),
    }
}

async fn attempt(addr: SocketAddr, path: &str) -> Result<u16, ()> {
    let stream = TcpStream::connect(addr).await.map_err(|_| ())?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|_| ())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(path)
        .header(header::HOST, addr.to_string())
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::CONNECTION, "close")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|_| ())?;
    let resp = sender.send_request(req).await.map_err(|_| ())?;
    Ok(resp.status().as_u16())
}
