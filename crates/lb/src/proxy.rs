//! Serving one listener: accept connections (each in its own task, so a slow client
//! holds up nobody), evaluate the rules for each request, and forward, redirect or
//! answer it; errors become ALB's 502, 503 and 504.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use elb::actions::{ActionKind, Forward, RedirectSource};
use elb::attributes::{LbAttributes, XffMode};
use elb::health::TargetKey;
use elb::snapshot::RulePlan;

use crate::accept::{accept, Accepted};
use crate::connect::{Conn, Pool};
use crate::group::{Group, InflightGuard};
use crate::workers::{Job, Workers};

pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// The largest request head (request line and headers) accepted; larger ones get 431,
/// as from ALB.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// hyper's read buffer: a little more than the limit, which [`oversized`] applies exactly.
const MAX_BUF_BYTES: usize = MAX_HEAD_BYTES + 16 * 1024;
/// Connections one listener serves at once.
const MAX_CONNECTIONS: usize = 16 * 1024;
const STICKY_COOKIE: &str = "AWSALB";
const STICKY_CORS_COOKIE: &str = "AWSALBCORS";
const GROUP_COOKIE: &str = "AWSALBTG";
const GROUP_CORS_COOKIE: &str = "AWSALBTGCORS";

/// What one listener serves now; replaced whole when the configuration changes.
#[derive(Debug)]
pub(crate) struct ListenerConfig {
    pub port: u16,
    pub rules: Vec<RulePlan>,
    /// The target groups its rules forward to.
    pub groups: HashMap<String, Arc<Group>>,
    /// The load balancer's attributes that requests need, read once.
    idle_timeout: Duration,
    xff_mode: XffMode,
    xff_client_port: bool,
    /// `X-Forwarded-Port`.
    port_header: HeaderValue,
}

impl ListenerConfig {
    pub fn new(
        port: u16,
        attributes: &LbAttributes,
        rules: Vec<RulePlan>,
        groups: HashMap<String, Arc<Group>>,
    ) -> Self {
        ListenerConfig {
            port,
            rules,
            groups,
            idle_timeout: attributes.idle_timeout(),
            xff_mode: attributes.xff_mode(),
            xff_client_port: attributes.xff_client_port(),
            port_header: HeaderValue::from(port),
        }
    }
}

#[derive(Debug)]
pub(crate) struct ListenerCtx {
    pub config: ArcSwap<ListenerConfig>,
    pub cancel: CancellationToken,
}

/// Accepts connections until the listener is cancelled and hands them to the workers.
pub(crate) async fn serve(listener: TcpListener, ctx: Arc<ListenerCtx>, workers: Arc<Workers>) {
    let cancel = ctx.cancel.clone();
    accept(&listener, MAX_CONNECTIONS, &cancel, |Accepted { stream, peer, permit }| match stream.into_std() {
        Ok(stream) => workers.dispatch(Job { stream, peer, ctx: ctx.clone(), permit }),
        Err(e) => tracing::warn!(%peer, error = %e, "cannot hand over a client connection"),
    })
    .await
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// A client connection that notes when bytes last moved, for the idle timeout.
struct Tracked {
    inner: TcpStream,
    last: Arc<AtomicU64>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last.store(now_ms(), Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last.store(now_ms(), Ordering::Relaxed);
        }
        r
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
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last.store(now_ms(), Ordering::Relaxed);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The client at the other end of a connection, with what requests from it carry.
struct Client {
    ip: IpAddr,
    /// The client as `X-Forwarded-For` names it: the address, and the address with port.
    xff: HeaderValue,
    xff_with_port: HeaderValue,
}

impl Client {
    fn new(addr: SocketAddr) -> Self {
        let ip = client_ip(addr);
        let with_port = match ip {
            IpAddr::V4(v4) => format!("{v4}:{}", addr.port()),
            IpAddr::V6(v6) => format!("[{v6}]:{}", addr.port()),
        };
        let value = |s: String| HeaderValue::from_maybe_shared(Bytes::from(s)).unwrap_or(HeaderValue::from_static(""));
        Client { ip, xff: value(ip.to_string()), xff_with_port: value(with_port) }
    }
}

/// Serves one client connection: HTTP/1.1 with keep-alive, closed after the load
/// balancer's idle timeout with no request in flight and no bytes moving.
pub(crate) async fn connection(stream: TcpStream, peer: SocketAddr, ctx: Arc<ListenerCtx>, pool: Arc<Pool>) {
    let last = Arc::new(AtomicU64::new(now_ms()));
    let busy = Arc::new(AtomicUsize::new(0));
    let client = Arc::new(Client::new(peer));
    let idle = ctx.config.load().idle_timeout;
    let io = TokioIo::new(Tracked { inner: stream, last: last.clone() });
    let service = {
        let (ctx, busy) = (ctx.clone(), busy.clone());
        service_fn(move |req| {
            let (ctx, pool, busy, client) = (ctx.clone(), pool.clone(), busy.clone(), client.clone());
            async move {
                busy.fetch_add(1, Ordering::Relaxed);
                let r = handle(req, &client, &ctx, &pool).await;
                busy.fetch_sub(1, Ordering::Relaxed);
                Ok::<_, Infallible>(r)
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .max_buf_size(MAX_BUF_BYTES)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(idle));
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "client connection ended with an error");
                }
                return;
            }
            _ = tick.tick(), if !closing => {
                let quiet = Duration::from_millis(now_ms().saturating_sub(last.load(Ordering::Relaxed)));
                if busy.load(Ordering::Relaxed) == 0 && quiet >= idle {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = ctx.cancel.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The request facts conditions look at.
struct Facts<'a> {
    host: &'a str,
    path: &'a str,
    method: &'a str,
    /// Decoded only if a query-string condition asks.
    raw_query: &'a str,
    query: std::cell::OnceCell<Vec<(String, String)>>,
    headers: &'a HeaderMap,
    ip: IpAddr,
}

impl elb::conditions::Request for Facts<'_> {
    fn host(&self) -> &str {
        self.host
    }
    fn path(&self) -> &str {
        self.path
    }
    fn method(&self) -> &str {
        self.method
    }
    fn query(&self) -> &[(String, String)] {
        self.query.get_or_init(|| decode_query(self.raw_query))
    }
    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect()
    }
    fn source_ip(&self) -> IpAddr {
        self.ip
    }
}

fn decode_query(q: &str) -> Vec<(String, String)> {
    let dec = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (dec(k), dec(v)),
            None => (dec(p), String::new()),
        })
        .collect()
}

fn client_ip(peer: SocketAddr) -> IpAddr {
    match peer.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// ALB's limits on a request: 16 KiB for the request line and for one header, 64 KiB for
/// all headers.
const MAX_LINE_BYTES: usize = 16 * 1024;

/// The length of `uri` as written, counted without writing it.
fn uri_len(uri: &http::Uri) -> usize {
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + 3);
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    scheme + authority + uri.path_and_query().map_or(0, |p| p.as_str().len())
}

/// The status for a request over ALB's size limits, if it is.
fn oversized(req: &Request<Incoming>) -> Option<StatusCode> {
    if uri_len(req.uri()) > MAX_LINE_BYTES {
        return Some(StatusCode::URI_TOO_LONG);
    }
    let mut total = 0;
    for (name, value) in req.headers() {
        let size = name.as_str().len() + value.len() + 4;
        if size > MAX_LINE_BYTES {
            return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        total += size;
    }
    (total > MAX_HEAD_BYTES).then_some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
}

async fn handle(req: Request<Incoming>, client: &Client, ctx: &ListenerCtx, pool: &Arc<Pool>) -> Response<ProxyBody> {
    // hyper bounds what it buffers (MAX_BUF_BYTES) only roughly; the limits are ALB's.
    if let Some(status) = oversized(&req) {
        return lb_error(status);
    }
    let config = ctx.config.load_full();
    let rule = {
        let facts = Facts {
            host: host_header(&req),
            path: req.uri().path(),
            method: req.method().as_str(),
            raw_query: req.uri().query().unwrap_or(""),
            query: std::cell::OnceCell::new(),
            headers: req.headers(),
            ip: client.ip,
        };
        config.rules.iter().find(|r| r.conditions.iter().all(|c| c.matches(&facts)))
    };
    let Some(rule) = rule else {
        return lb_error(StatusCode::SERVICE_UNAVAILABLE);
    };
    match &rule.action {
        ActionKind::FixedResponse(f) => {
            let status =
                f.status_code.parse::<u16>().ok().and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::OK);
            let body = f.message_body.clone().unwrap_or_default();
            let mut r = Response::new(full(body));
            *r.status_mut() = status;
            if let Some(ct) = f.content_type.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
                r.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            r.headers_mut().insert(header::SERVER, HeaderValue::from_static("awselb/2.0"));
            r
        }
        ActionKind::Redirect(redirect) => {
            let src = RedirectSource {
                protocol: "http",
                host: host_without_port(host_header(&req)),
                port: config.port,
                path: req.uri().path(),
                query: req.uri().query().unwrap_or(""),
            };
            let location = redirect.location(&src);
            let mut r = Response::new(empty());
            *r.status_mut() = StatusCode::from_u16(redirect.status()).unwrap_or(StatusCode::FOUND);
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r.headers_mut().insert(header::SERVER, HeaderValue::from_static("awselb/2.0"));
            r
        }
        ActionKind::Forward(forward) => forward_request(req, client, &config, forward, pool).await,
    }
}

/// The host the request names: its `Host` header, else the authority of its URI.
fn host_header(req: &Request<Incoming>) -> &str {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default()
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h)
}

/// Reads cookie `name` from the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A short fingerprint of a target group, so that a cookie made for one group is not
/// taken for another's.
fn group_tag(arn: &str) -> String {
    // FNV-1a: stable across processes and versions, unlike the std hasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in arn.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

fn encode_sticky(arn: &str, key: &TargetKey) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{}|{}", group_tag(arn), key.port, key.id))
}

fn decode_sticky(arn: &str, value: &str) -> Option<TargetKey> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(value).ok()?).ok()?;
    let mut parts = text.splitn(3, '|');
    let (tag, port, id) = (parts.next()?, parts.next()?, parts.next()?);
    if tag != group_tag(arn) {
        return None;
    }
    Some(TargetKey { id: id.to_string(), port: port.parse().ok()? })
}

fn expires(d: Duration) -> String {
    let at = time::OffsetDateTime::now_utc() + d;
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    at.format(&f).unwrap_or_default()
}

/// Chooses among a forward action's target groups: the one the client is stuck to, else
/// by weight.
fn choose_group<'a>(forward: &'a Forward, headers: &HeaderMap) -> Option<(&'a str, bool)> {
    if let [only] = forward.groups.as_slice() {
        return Some((&only.arn, false));
    }
    if forward.stickiness_seconds.is_some() {
        if let Some(v) = cookie(headers, GROUP_COOKIE).or_else(|| cookie(headers, GROUP_CORS_COOKIE)) {
            if let Some(g) = forward.groups.iter().find(|g| g.weight > 0 && group_tag(&g.arn) == v) {
                return Some((&g.arn, false));
            }
        }
    }
    let total: u32 = forward.groups.iter().map(|g| g.weight).sum();
    if total == 0 {
        return None;
    }
    let mut r = rand::thread_rng().gen_range(0..total);
    for g in &forward.groups {
        if r < g.weight {
            return Some((&g.arn, forward.stickiness_seconds.is_some()));
        }
        r -= g.weight;
    }
    None
}

async fn forward_request(
    req: Request<Incoming>,
    client: &Client,
    config: &ListenerConfig,
    forward: &Forward,
    pool: &Arc<Pool>,
) -> Response<ProxyBody> {
    let Some((arn, new_group_cookie)) = choose_group(forward, req.headers()) else {
        return lb_error(StatusCode::SERVICE_UNAVAILABLE);
    };
    let Some(group) = config.groups.get(arn) else {
        return lb_error(StatusCode::SERVICE_UNAVAILABLE);
    };
    let settings = group.settings();
    let sticky_key = settings.lb_cookie.and_then(|_| {
        cookie(req.headers(), STICKY_COOKIE)
            .or_else(|| cookie(req.headers(), STICKY_CORS_COOKIE))
            .and_then(|v| decode_sticky(arn, v))
    });
    let Some(mut target) = group.pick(sticky_key.as_ref(), None) else {
        return lb_error(StatusCode::SERVICE_UNAVAILABLE);
    };
    let (mut parts, body) = req.into_parts();
    // A request without a body can be sent again to another target when the first
    // refuses the connection: nothing of it reached the target.
    let replayable = body.is_end_stream();
    forward_headers(&mut parts.headers, client, config);
    let mut attempts = 0;
    let (mut conn, guard) = loop {
        attempts += 1;
        let Some(addr) = target.addr else { return lb_error(StatusCode::SERVICE_UNAVAILABLE) };
        let guard = target.begin();
        match pool.get(addr).await {
            Ok(conn) => break (conn, guard),
            Err(e) => {
                drop(guard);
                tracing::info!(target = %addr, error = %e, "target refused or failed the connection");
                target.eject(settings.eject_for);
                if e.kind() == io::ErrorKind::TimedOut {
                    return lb_error(StatusCode::GATEWAY_TIMEOUT);
                }
                if replayable && attempts < 2 {
                    if let Some(next) = group.pick(None, Some(&target)) {
                        target = next;
                        continue;
                    }
                }
                return lb_error(StatusCode::BAD_GATEWAY);
            }
        }
    };
    if !parts.headers.contains_key(header::HOST) {
        if let Some(a) = &target.authority {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                parts.headers.insert(header::HOST, v);
            }
        }
    }
    let mut out = Request::new(if replayable { empty() } else { body.boxed_unsync() });
    *out.method_mut() = parts.method;
    *out.uri_mut() = parts.uri.path_and_query().cloned().map_or_else(|| http::Uri::from_static("/"), http::Uri::from);
    *out.headers_mut() = parts.headers;
    let response = match tokio::time::timeout(config.idle_timeout, send(pool, &mut conn, out)).await {
        Ok(Ok(r)) => r,
        Ok(Err(SendError::Connect(e))) => {
            tracing::info!(target = %conn.addr, error = %e, "target refused or failed the connection");
            target.eject(settings.eject_for);
            let status =
                if e.kind() == io::ErrorKind::TimedOut { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY };
            return lb_error(status);
        }
        Ok(Err(SendError::Http(e))) => {
            tracing::info!(target = %conn.addr, error = %e, "target failed the request");
            return lb_error(StatusCode::BAD_GATEWAY);
        }
        Err(_) => {
            tracing::info!(target = %conn.addr, "target did not answer within the idle timeout");
            return lb_error(StatusCode::GATEWAY_TIMEOUT);
        }
    };
    let (mut rparts, rbody) = response.into_parts();
    strip_hop_by_hop(&mut rparts.headers);
    if let Some(d) = settings.lb_cookie {
        let value = encode_sticky(arn, &target.key);
        let when = expires(d);
        for (name, extra) in [(STICKY_COOKIE, ""), (STICKY_CORS_COOKIE, "; SameSite=None; Secure")] {
            if let Ok(v) = HeaderValue::from_str(&format!("{name}={value}; Expires={when}; Path=/{extra}")) {
                rparts.headers.append(header::SET_COOKIE, v);
            }
        }
    }
    if let (true, Some(secs)) = (new_group_cookie, forward.stickiness_seconds) {
        let when = expires(Duration::from_secs(secs.into()));
        let tag = group_tag(arn);
        for (name, extra) in [(GROUP_COOKIE, ""), (GROUP_CORS_COOKIE, "; SameSite=None; Secure")] {
            if let Ok(v) = HeaderValue::from_str(&format!("{name}={tag}; Expires={when}; Path=/{extra}")) {
                rparts.headers.append(header::SET_COOKIE, v);
            }
        }
    }
    let body = Guarded { inner: rbody, done: false, conn: Some(conn), pool: pool.clone(), _guard: guard };
    Response::from_parts(rparts, body.boxed_unsync())
}

enum SendError {
    Connect(io::Error),
    Http(hyper::Error),
}

/// Sends `req` on `conn`; if that connection turns out closed before the request went
/// out (the target closed it while it was idle), on a new one.
async fn send(pool: &Pool, conn: &mut Conn, req: Request<ProxyBody>) -> Result<Response<Incoming>, SendError> {
    let mut e = match conn.sender.try_send_request(req).await {
        Ok(r) => return Ok(r),
        Err(e) => e,
    };
    let Some(req) = e.take_message() else { return Err(SendError::Http(e.into_error())) };
    *conn = pool.connect(conn.addr).await.map_err(SendError::Connect)?;
    conn.sender.try_send_request(req).await.map_err(|e| SendError::Http(e.into_error()))
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    KEEP_ALIVE,
    PROXY_CONNECTION,
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Headers that `Connection` names are hop-by-hop too; `close` and `keep-alive`, the
    // usual ones, name no header that is not already removed.
    let listed: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.eq_ignore_ascii_case("close") && !n.eq_ignore_ascii_case("keep-alive"))
        .map(str::to_string)
        .collect();
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
    for n in &listed {
        h.remove(n.as_str());
    }
}

/// Makes a request's headers what a target receives from ALB: hop-by-hop headers gone,
/// `X-Forwarded-For`/`-Proto`/`-Port` and `X-Amzn-Trace-Id` set.
fn forward_headers(h: &mut HeaderMap, client: &Client, config: &ListenerConfig) {
    let xff = match config.xff_mode {
        XffMode::Append => {
            let own = if config.xff_client_port { &client.xff_with_port } else { &client.xff };
            let prior: Vec<&str> = h.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).collect();
            if prior.is_empty() {
                Some(own.clone())
            } else {
                let value = format!("{}, {}", prior.join(", "), own.to_str().unwrap_or_default());
                HeaderValue::from_maybe_shared(Bytes::from(value)).ok()
            }
        }
        XffMode::Preserve | XffMode::Remove => None,
    };
    let trace = trace_header(h.get(&X_AMZN_TRACE_ID).and_then(|v| v.to_str().ok()).filter(|v| v.contains("Root=1-")));
    strip_hop_by_hop(h);
    match (config.xff_mode, xff) {
        (XffMode::Remove, _) => {
            h.remove(&X_FORWARDED_FOR);
        }
        (_, Some(v)) => {
            h.insert(X_FORWARDED_FOR, v);
        }
        _ => {}
    }
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    h.insert(X_FORWARDED_PORT, config.port_header.clone());
    if let Some(v) = trace {
        h.insert(X_AMZN_TRACE_ID, v);
    }
}

/// `X-Amzn-Trace-Id` as ALB sends it: a new root, or a valid trace from the client kept
/// with ALB's own segment added as `Self`.
fn trace_header(from_client: Option<&str>) -> Option<HeaderValue> {
    let id = trace_id();
    let id = std::str::from_utf8(&id).unwrap_or_default();
    let value = match from_client {
        Some(t) => format!("Self={id};{t}"),
        None => format!("Root={id}"),
    };
    HeaderValue::from_maybe_shared(Bytes::from(value)).ok()
}

/// `1-<epoch seconds, 8 hex digits>-<24 hex digits>`, the X-Ray trace id format.
fn trace_id() -> [u8; 35] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let random: u128 = rand::thread_rng().gen();
    let mut id = [b'-'; 35];
    id[0] = b'1';
    for i in 0..8 {
        id[2 + i] = DIGITS[((secs >> (28 - 4 * i)) & 15) as usize];
    }
    for i in 0..24 {
        id[11 + i] = DIGITS[((random >> (4 * i)) & 15) as usize];
    }
    id
}

fn full(s: String) -> ProxyBody {
    Full::new(Bytes::from(s)).map_err(|never| match never {}).boxed_unsync()
}

fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A response made by the load balancer itself, with ALB's plain HTML page.
pub(crate) fn lb_error(status: StatusCode) -> Response<ProxyBody> {
    let text = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    let page = format!("<html>\r\n<head><title>{text}</title></head>\r\n<body>\r\n<center><h1>{text}</h1></center>\r\n</body>\r\n</html>\r\n");
    let mut r = Response::new(full(page));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r.headers_mut().insert(header::SERVER, HeaderValue::from_static("awselb/2.0"));
    r
}

/// A target's response body that keeps the request in flight until it is fully sent,
/// so draining and least-outstanding-requests count it, and then gives the connection
/// back to the pool.
struct Guarded {
    inner: Incoming,
    /// The body has been read to its end.
    done: bool,
    conn: Option<Conn>,
    pool: Arc<Pool>,
    _guard: InflightGuard,
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => self.done = true,
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.done = true,
            _ => {}
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // A connection whose response was not read to the end cannot carry another.
        if self.done || self.inner.is_end_stream() {
            if let Some(conn) = self.conn.take() {
                self.pool.put(conn);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_cookies_round_trip_per_group() {
        let key = TargetKey { id: "10.0.0.1".into(), port: 8080 };
        let v = encode_sticky("arn:a", &key);
        assert_eq!(decode_sticky("arn:a", &v), Some(key));
        assert_eq!(decode_sticky("arn:b", &v), None);
        assert_eq!(decode_sticky("arn:a", "garbage"), None);
    }

    #[test]
    fn trace_ids_have_the_xray_shape() {
        let t = trace_id();
        let t = std::str::from_utf8(&t).unwrap();
        let parts: Vec<&str> = t.split('-').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "1");
        assert_eq!(parts[1].len(), 8);
        assert_eq!(parts[2].len(), 24);
    }

    #[test]
    fn cookies_and_hosts() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; AWSALB=xyz; b=2"));
        assert_eq!(cookie(&h, "AWSALB"), Some("xyz"));
        assert_eq!(cookie(&h, "AWSALBCORS"), None);
        assert_eq!(host_without_port("example.com:8080"), "example.com");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
        assert_eq!(
            decode_query("a=1&b=x+y&c"),
            vec![("a".into(), "1".into()), ("b".into(), "x y".into()), ("c".into(), String::new())]
        );
    }
}
