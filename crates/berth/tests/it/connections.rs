//! What a client may hold of the server: silent, slow and numerous connections are
//! bounded and timed out, the health check answers while the server is saturated, no
//! unsigned request makes it buffer a body, and an answer given before a body was read
//! closes the connection cleanly.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::bad_input::{signed_ecs_request, sigv4_headers, ECS_TARGET_PREFIX};
use testkit::Berth;

async fn start(args: &[&str]) -> Berth {
    Berth::start_with_args(env!("CARGO_BIN_EXE_berth"), args).await
}

fn address(b: &Berth) -> String {
    b.endpoint.trim_start_matches("http://").trim_end_matches('/').to_string()
}

/// Whether the server has closed `stream` (or does within `within`), reading and
/// dropping anything it sends first.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// A plain `GET /_berth/health` on a new connection: its status line, if it came within
/// `within`.
async fn health(addr: &str, within: Duration) -> Option<String> {
    tokio::time::timeout(within, async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /_berth/health HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n").await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        String::from_utf8_lossy(&out).lines().next().map(str::to_string)
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test]
async fn silent_connections_cannot_lock_out_the_health_check_or_the_api() {
    // 60 silent sockets against a bound of 50 used to make the server unreachable for as
    // long as they stayed open.
    let b = start(&["--max-connections", "50", "--header-timeout", "2s"]).await;
    let addr = address(&b);
    let mut silent = Vec::new();
    for _ in 0..60 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    // Saturated with idle connections: the oldest give way, so the health check and the
    // API answer at once.
    let status = health(&addr, Duration::from_secs(2)).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"), "the health check answers while saturated");
    tokio::time::timeout(Duration::from_secs(5), b.ecs().await.list_clusters().send())
        .await
        .expect("the API answers while saturated")
        .expect("the API serves while saturated");
    // The silent ones are closed after the header timeout, and the API serves again.
    let started = Instant::now();
    for s in &mut silent {
        assert!(closed_within(s, Duration::from_secs(10)).await, "a silent connection stayed open");
    }
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(6), "silent connections were closed only after {waited:?}");
    b.ecs().await.list_clusters().send().await.expect("the API serves once the silent connections are gone");
}

#[tokio::test]
async fn headers_sent_slowly_time_out() {
    let b = start(&["--header-timeout", "2s"]).await;
    let mut s = TcpStream::connect(address(&b)).await.unwrap();
    let started = Instant::now();
    let header = b"POST / HTTP/1.1\r\nHost: berth\r\nX-Slow: ";
    s.write_all(header).await.unwrap();
    // A byte a second keeps the socket busy, but the headers never complete in time.
    let closed = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if s.write_all(b"a").await.is_err() {
            break started.elapsed();
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            _ => {}
        }
        assert!(started.elapsed() < Duration::from_secs(10), "slow headers kept the connection open");
    };
    assert!(closed >= Duration::from_secs(2), "closed before the header timeout: {closed:?}");
}

/// A connection in the middle of a request: a signed ListClusters whose body has only
/// begun to arrive.
async fn busy_connection(b: &Berth) -> TcpStream {
    let url = format!("{}/", b.endpoint);
    let target = format!("{ECS_TARGET_PREFIX}.ListClusters");
    let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target.as_str())];
    let auth = sigv4_headers("POST", &url, &b.key, "us-east-1", "ecs", &headers, b"{}");
    let mut head = format!("POST / HTTP/1.1\r\nHost: {}\r\nContent-Length: 2\r\n", address(b));
    for (name, value) in headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).chain(auth) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n{");
    let mut s = TcpStream::connect(address(b)).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

#[tokio::test]
async fn one_client_cannot_take_every_connection() {
    let b = start(&["--max-connections-per-client", "5"]).await;
    let addr = address(&b);
    // Five connections busy with a request: a sixth of the same client is turned away.
    let mut busy = Vec::new();
    for _ in 0..5 {
        busy.push(busy_connection(&b).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut sixth = TcpStream::connect(&addr).await.unwrap();
    assert!(closed_within(&mut sixth, Duration::from_secs(2)).await, "a sixth connection of one client was kept");
    assert_eq!(
        health(&addr, Duration::from_secs(2)).await,
        None,
        "the client's health check waits behind its own busy connections"
    );
    drop(busy);
    // Idle connections give way: with five silent ones open, the same client's next
    // connection is served, and the oldest silent one is closed to make room.
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        testkit::eventually(Duration::from_secs(5), || async {
            health(&addr, Duration::from_secs(1)).await.as_deref() == Some("HTTP/1.1 200 OK")
        })
        .await,
        "a new connection is served once idle ones make room"
    );
    assert!(closed_within(&mut idle[0], Duration::from_secs(2)).await, "the oldest idle connection made room");
}

#[tokio::test]
async fn a_stalled_body_is_cut_off() {
    let b = start(&["--body-timeout", "2s"]).await;
    let started = Instant::now();
    let mut s = busy_connection(&b).await;
    assert!(closed_within(&mut s, Duration::from_secs(10)).await, "a stalled body kept its connection");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(4), "cut off after {waited:?}");
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn unsigned_uploads_are_not_buffered() {
    // 16 unsigned UploadLayerPart requests of 27 MiB that then stall used to raise the
    // server's memory by 437 MiB for as long as they stalled. Now the body of a request
    // whose signature headers fail is never held: 100 of them stay under 100 MiB.
    let b = start(&[]).await;
    let pid = b.pid().expect("the server runs");
    let addr = address(&b);
    let idle = rss_kib(pid);
    let chunk = vec![b'a'; 1024 * 1024];
    let mut uploads = Vec::new();
    for _ in 0..100 {
        let (addr, chunk) = (addr.clone(), chunk.clone());
        uploads.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            let head = format!(
                "POST / HTTP/1.1\r\nHost: berth\r\nX-Amz-Target: AmazonEC2ContainerRegistry_V20150921.UploadLayerPart\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n",
                28 * 1024 * 1024
            );
            s.write_all(head.as_bytes()).await.unwrap();
            for _ in 0..27 {
                if s.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            // Stall, holding the connection.
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(s);
        }));
    }
    let mut peak = idle;
    while uploads.iter().any(|u| !u.is_finished()) {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let grew_mib = (peak.saturating_sub(idle)) / 1024;
    eprintln!("resident memory: idle {} MiB, peak {} MiB (+{grew_mib} MiB)", idle / 1024, peak / 1024);
    assert!(grew_mib < 100, "100 stalled unsigned uploads raised memory by {grew_mib} MiB");
    b.ecs().await.list_clusters().send().await.expect("the server still serves");
}

#[tokio::test]
async fn an_oversized_body_is_answered_and_the_connection_closed_cleanly() {
    // A 413 used to close the connection without saying so: a client reusing it got
    // "connection reset" on its next request.
    let b = start(&[]).await;
    let http = reqwest::Client::new();
    let big = format!(r#"{{"clusterName":"{}"}}"#, "a".repeat(3 * 1024 * 1024));
    for _ in 0..5 {
        let resp = signed_ecs_request(&http, &b.endpoint, &b.key, "CreateCluster", big.clone()).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 413);
        assert_eq!(resp.headers().get("connection").and_then(|v| v.to_str().ok()), Some("close"));
        // The same client's next request (a new connection, as told) is served.
        let ok = signed_ecs_request(&http, &b.endpoint, &b.key, "ListClusters", "{}").send().await.unwrap();
        assert_eq!(ok.status().as_u16(), 200);
    }
    // An unsigned oversized body is refused before it is read, drained, and the answer
    // arrives in full rather than as a reset.
    let mut s = TcpStream::connect(address(&b)).await.unwrap();
    let body = vec![b'a'; 5 * 1024 * 1024];
    let head = format!(
        "POST / HTTP/1.1\r\nHost: berth\r\nX-Amz-Target: AmazonEC2ContainerServiceV20141113.ListClusters\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (mut read, mut write) = s.split();
    let sending = async {
        write.write_all(head.as_bytes()).await?;
        write.write_all(&body).await
    };
    let mut answer = Vec::new();
    let (sent, received) = tokio::join!(sending, read.read_to_end(&mut answer));
    sent.expect("the whole body was taken, not reset");
    received.expect("the answer arrived, not a reset");
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 400"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.contains("missingauthenticationtoken"), "{answer}");
}
