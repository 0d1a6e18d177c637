//! The load balancer: the ELBv2 API through the official SDK and the aws CLI, and real
//! HTTP traffic through each load balancer's address to backend servers this test runs,
//! with health checks, rules, stickiness, draining and ALB's error statuses.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, ForwardActionConfig, HostHeaderConditionConfig,
    LoadBalancerAttribute, PathPatternConditionConfig, QueryStringConditionConfig, QueryStringKeyValuePair,
    RedirectActionConfig, RedirectActionStatusCodeEnum, RuleCondition, RulePriorityPair, Tag, TargetDescription,
    TargetGroupAttribute, TargetGroupTuple,
};
use aws_sdk_elasticloadbalancingv2::Client;
use testkit::{error_code, eventually, Berth};
use tokio::sync::oneshot;

async fn elbv2(b: &Berth) -> Client {
    Client::new(&b.sdk_config(&b.key, "us-east-1").await)
}

/// A server with its own block of load balancer addresses, so that tests running at
/// the same time can all listen on port 80.
async fn server() -> Berth {
    Berth::start_with_args(env!("CARGO_BIN_EXE_berth"), &["--lb-address-pool", &own_pool()]).await
}

/// A block of load balancer addresses no other test of this run uses: process id and a
/// counter pick it.
fn own_pool() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = std::process::id().wrapping_mul(7919).wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % (150 * 256);
    format!("127.{}.{}.0/24", 101 + n / 256, n % 256)
}

/// A backend HTTP server: answers every path with its name and the request's headers
/// (JSON), `/health` with the status set in `health`, `/slow?ms=N` after N milliseconds.
struct Backend {
    name: String,
    port: u16,
    health: Arc<AtomicU16>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Backend {
    async fn start(name: &str) -> Backend {
        use axum::extract::Request;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let health = Arc::new(AtomicU16::new(200));
        let (n, h) = (name.to_string(), health.clone());
        let app = axum::Router::new().fallback(move |req: Request| {
            let (n, h) = (n.clone(), h.clone());
            async move {
                if req.uri().path() == "/health" {
                    let status = axum::http::StatusCode::from_u16(h.load(Ordering::Relaxed)).unwrap();
                    return (status, String::new());
                }
                if req.uri().path() == "/slow" {
                    let ms: u64 =
                        req.uri().query().and_then(|q| q.strip_prefix("ms=")).and_then(|v| v.parse().ok()).unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                let headers: BTreeMap<String, String> =
                    req.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
                let body = serde_json::json!({"name": n, "path": req.uri().to_string(), "headers": headers});
                (axum::http::StatusCode::OK, body.to_string())
            }
        });
        let (tx, rx) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Backend { name: name.into(), port, health, stop: Some(tx), done: Some(done) }
    }

    /// Stops accepting and closes its idle keep-alive connections.
    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(d) = self.done.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), d).await;
        }
    }

    fn target(&self) -> TargetDescription {
        TargetDescription::builder().id("127.0.0.1").port(self.port as i32).build()
    }
}

struct Lb {
    arn: String,
    dns: String,
    tg: String,
    listener: String,
}

async fn subnets(b: &Berth) -> (String, Vec<String>) {
    let ec2 = crate::ec2::ec2(b).await;
    let s = ec2.describe_subnets().send().await.unwrap();
    let vpc = s.subnets()[0].vpc_id().unwrap().to_string();
    (vpc, s.subnets().iter().map(|s| s.subnet_id().unwrap().to_string()).collect())
}

/// A load balancer with a target group (health checks every 5 s on /health) and a
/// listener on port 80 forwarding to it.
async fn load_balancer(b: &Berth, elb: &Client, name: &str) -> Lb {
    let (vpc, subnets) = subnets(b).await;
    let lb = elb.create_load_balancer().name(name).subnets(&subnets[0]).subnets(&subnets[1]).send().await.unwrap();
    let lb = &lb.load_balancers()[0];
    let tg = elb
        .create_target_group()
        .name(format!("{name}-tg"))
        .protocol("HTTP".into())
        .port(80)
        .vpc_id(&vpc)
        .target_type("ip".into())
        .health_check_path("/health")
        .health_check_interval_seconds(5)
        .health_check_timeout_seconds(2)
        .healthy_threshold_count(2)
        .unhealthy_threshold_count(2)
        .send()
        .await
        .unwrap();
    let tg = tg.target_groups()[0].target_group_arn().unwrap().to_string();
    let l = elb
        .create_listener()
        .load_balancer_arn(lb.load_balancer_arn().unwrap())
        .protocol("HTTP".into())
        .port(80)
        .default_actions(Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&tg).build())
        .send()
        .await
        .unwrap();
    Lb {
        arn: lb.load_balancer_arn().unwrap().to_string(),
        dns: lb.dns_name().unwrap().to_string(),
        tg,
        listener: l.listeners()[0].listener_arn().unwrap().to_string(),
    }
}

async fn states(elb: &Client, tg: &str) -> BTreeMap<(String, i32), (String, Option<String>)> {
    let h = elb.describe_target_health().target_group_arn(tg).send().await.unwrap();
    h.target_health_descriptions()
        .iter()
        .map(|d| {
            let t = d.target().unwrap();
            let th = d.target_health().unwrap();
            (
                (t.id().unwrap().to_string(), t.port().unwrap()),
                (th.state().unwrap().as_str().to_string(), th.reason().map(|r| r.as_str().to_string())),
            )
        })
        .collect()
}

async fn wait_state(elb: &Client, tg: &str, port: u16, state: &str) {
    let ok = eventually(Duration::from_secs(30), || async {
        states(elb, tg).await.get(&("127.0.0.1".to_string(), port as i32)).is_some_and(|(s, _)| s == state)
    })
    .await;
    assert!(ok, "target {port} never became {state}: {:?}", states(elb, tg).await);
}

/// Registers `backends` with target group `tg` and waits until each is healthy.
async fn register_healthy(elb: &Client, tg: &str, backends: &[&Backend]) {
    let targets = backends.iter().map(|b| b.target()).collect();
    elb.register_targets().target_group_arn(tg).set_targets(Some(targets)).send().await.unwrap();
    for b in backends {
        wait_state(elb, tg, b.port, "healthy").await;
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn get_json(c: &reqwest::Client, url: &str) -> serde_json::Value {
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.unwrap()
}

#[tokio::test]
async fn forwards_to_healthy_targets_with_forwarded_headers() {
    let b = server().await;
    let elb = elbv2(&b).await;
    let lb = load_balancer(&b, &elb, "web").await;
    let (mut one, two) = (Backend::start("one").await, Backend::start("two").await);

    // Registered but not yet checked, or checked: initial or healthy; before a listener
    // used it, the group was "unused".
    register_healthy(&elb, &lb.tg, &[&one, &two]).await;

    let c = http();
    let url = format!("http://{}/hello?x=1", lb.dns);
    let mut names = BTreeSet::new();
    for _ in 0..6 {
        let v = get_json(&c, &url).await;
        names.insert(v["name"].as_str().unwrap().to_string());
        assert_eq!(v["path"], "/hello?x=1");
        let h = &v["headers"];
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-port"], "80");
        assert_eq!(h["host"], lb.dns.as_str());
        let trace = h["x-amzn-trace-id"].as_str().unwrap();
        let root = trace.strip_prefix("Root=1-").unwrap();
        assert_eq!(root.len(), 8 + 1 + 24, "{trace}");
    }
    assert_eq!(names, BTreeSet::from(["one".to_string(), "two".to_string()]), "round robin reaches both");

    // A client's X-Forwarded-For is appended to.
    let v: serde_json::Value =
        c.get(&url).header("x-forwarded-for", "203.0.113.7").send().await.unwrap().json().await.unwrap();
    assert_eq!(v["headers"]["x-forwarded-for"], "203.0.113.7, 127.0.0.1");

    // One target dies: every request still succeeds (the refused connection is retried
    // on the other target), and health checks mark it unhealthy.
    one.stop().await;
    for _ in 0..6 {
        let v = get_json(&c, &url).await;
        assert_eq!(v["name"], "two");
    }
    wait_state(&elb, &lb.tg, one.port, "unhealthy").await;
    let s = states(&elb, &lb.tg).await;
    assert_eq!(s[&("127.0.0.1".into(), one.port as i32)].1.as_deref(), Some("Target.FailedHealthChecks"));

    // Health checks answering 500: ResponseCodeMismatch; with every target unhealthy the
    // load balancer fails open and still forwards.
    two.health.store(500, Ordering::Relaxed);
    wait_state(&elb, &lb.tg, two.port, "unhealthy").await;
    let s = states(&elb, &lb.tg).await;
    assert_eq!(s[&("127.0.0.1".into(), two.port as i32)].1.as_deref(), Some("Target.ResponseCodeMismatch"));
    assert_eq!(get_json(&c, &url).await["name"], "two");
}

#[tokio::test]
async fn target_health_states_before_and_after_a_listener() {
    let b = server().await;
    let elb = elbv2(&b).await;
    let (vpc, subnets) = subnets(&b).await;
    elb.create_load_balancer().name("states").subnets(&subnets[0]).subnets(&subnets[1]).send().await.unwrap();
    let tg = elb
        .create_target_group()
        .name("idle")
        .protocol("HTTP".into())
        .port(80)
        .vpc_id(vpc)
        .target_type("ip".into())
        .send()
        .await
        .unwrap();
    let t = &tg.target_groups()[0];
    // AWS's defaults for an HTTP target group.
    assert_eq!(t.health_check_interval_seconds(), Some(30));
    assert_eq!(t.health_check_timeout_seconds(), Some(5));
    assert_eq!(t.healthy_threshold_count(), Some(5));
    assert_eq!(t.unhealthy_threshold_count(), Some(2));
    assert_eq!(t.health_check_path(), Some("/"));
    assert_eq!(t.health_check_port(), Some("traffic-port"));
    assert_eq!(t.matcher().unwrap().http_code(), Some("200"));
    let tg = t.target_group_arn().unwrap();
    let backend = Backend::start("x").await;
    elb.register_targets().target_group_arn(tg).targets(backend.target()).send().await.unwrap();
    let s = states(&elb, tg).await;
    assert_eq!(s.values().next().unwrap(), &("unused".to_string(), Some("Target.NotInUse".to_string())));
    let h = elb
        .describe_target_health()
        .target_group_arn(tg)
        .targets(TargetDescription::builder().id("10.9.9.9").port(81).build())
        .send()
        .await
        .unwrap();
    let th = h.target_health_descriptions()[0].target_health().unwrap();
    assert_eq!(th.state().unwrap().as_str(), "unused");
    assert_eq!(th.reason().unwrap().as_str(), "Target.NotRegistered");
    let attrs = elb.describe_target_group_attributes().target_group_arn(tg).send().await.unwrap();
    let get =
        |k: &str| attrs.attributes().iter().find(|a| a.key() == Some(k)).and_then(|a| a.value()).map(str::to_string);
    assert_eq!(get("deregistration_delay.timeout_seconds").as_deref(), Some("300"));
    assert_eq!(get("stickiness.enabled").as_deref(), Some("false"));
    assert_eq!(get("load_balancing.algorithm.type").as_deref(), Some("round_robin"));
    assert_eq!(get("slow_start.duration_seconds").as_deref(), Some("0"));
}

#[tokio::test]
async fn two_load_balancers_on_port_80_and_serving_across_a_restart() {
    let mut b = server().await;
    let elb = elbv2(&b).await;
    let (first, second) = (load_balancer(&b, &elb, "first").await, load_balancer(&b, &elb, "second").await);
    assert_ne!(first.dns, second.dns);
    let (x, y) = (Backend::start("x").await, Backend::start("y").await);
    register_healthy(&elb, &first.tg, &[&x]).await;
    register_healthy(&elb, &second.tg, &[&y]).await;
    let c = http();
    assert_eq!(get_json(&c, &format!("http://{}/", first.dns)).await["name"], "x");
    assert_eq!(get_json(&c, &format!("http://{}/", second.dns)).await["name"], "y");

    // kill -9 and start again: the load balancers serve from the store before any API
    // call, at the same addresses.
    b.restart().await;
    assert_eq!(get_json(&c, &format!("http://{}/", first.dns)).await["name"], "x");
    assert_eq!(get_json(&c, &format!("http://{}/", second.dns)).await["name"], "y");
    let elb = elbv2(&b).await;
    let d = elb.describe_load_balancers().names("first").send().await.unwrap();
    assert_eq!(d.load_balancers()[0].dns_name(), Some(first.dns.as_str()));
    wait_state(&elb, &first.tg, x.port, "healthy").await;

    // Deleting a load balancer stops its listeners.
    elb.delete_load_balancer().load_balancer_arn(&first.arn).send().await.unwrap();
    let gone =
        eventually(Duration::from_secs(10), || async { c.get(format!("http://{}/", first.dns)).send().await.is_err() })
            .await;
    assert!(gone, "the deleted load balancer still answers");
    assert_eq!(get_json(&c, &format!("http://{}/", second.dns)).await["name"], "y");
    let _ = second.listener;
}

#[tokio::test]
async fn rules_route_redirect_and_answer() {
    let b = server().await;
    let elb = elbv2(&b).await;
    let lb = load_balancer(&b, &elb, "rules").await;
    let (vpc, _) = subnets(&b).await;
    let api = Backend::start("api").await;
    let web = Backend::start("web").await;
    elb.register_targets().target_group_arn(&lb.tg).targets(web.target()).send().await.unwrap();
    let api_tg = elb
        .create_target_group()
        .name("api")
        .protocol("HTTP".into())
        .port(80)
        .vpc_id(&vpc)
        .target_type("ip".into())
        .health_check_path("/health")
        .send()
        .await
        .unwrap();
    let api_tg = api_tg.target_groups()[0].target_group_arn().unwrap().to_string();
    elb.register_targets().target_group_arn(&api_tg).targets(api.target()).send().await.unwrap();

    let forward_api = Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&api_tg).build();
    let path = |v: &str| {
        RuleCondition::builder()
            .field("path-pattern")
            .path_pattern_config(PathPatternConditionConfig::builder().values(v).build())
            .build()
    };
    let r1 = elb
        .create_rule()
        .listener_arn(&lb.listener)
        .priority(10)
        .conditions(path("/api/*"))
        .actions(forward_api.clone())
        .send()
        .await
        .unwrap();
    let r1 = r1.rules()[0].rule_arn().unwrap().to_string();
    let fixed = Action::builder()
        .r#type(ActionTypeEnum::FixedResponse)
        .fixed_response_config(
            FixedResponseActionConfig::builder()
                .status_code("418")
                .content_type("text/plain")
                .message_body("teapot")
                .build(),
        )
        .build();
    elb.create_rule()
        .listener_arn(&lb.listener)
        .priority(5)
        .conditions(
            RuleCondition::builder()
                .field("host-header")
                .host_header_config(HostHeaderConditionConfig::builder().values("tea.*").build())
                .build(),
        )
        .actions(fixed)
        .send()
        .await
        .unwrap();
    let redirect = Action::builder()
        .r#type(ActionTypeEnum::Redirect)
        .redirect_config(
            RedirectActionConfig::builder()
                .host("new.example.com")
                .path("/v2/#{path}")
                .status_code(RedirectActionStatusCodeEnum::Http301)
                .build(),
        )
        .build();
    elb.create_rule()
        .listener_arn(&lb.listener)
        .priority(20)
        .conditions(
            RuleCondition::builder()
                .field("query-string")
                .query_string_config(
                    QueryStringConditionConfig::builder()
                        .values(QueryStringKeyValuePair::builder().key("old").value("y*").build())
                        .build(),
                )
                .build(),
        )
        .actions(redirect)
        .send()
        .await
        .unwrap();
    wait_state(&elb, &lb.tg, web.port, "healthy").await;
    wait_state(&elb, &api_tg, api.port, "healthy").await;

    let c = http();
    let base = format!("http://{}", lb.dns);
    // The rules were committed one after another; the data plane applies them
    // asynchronously, so wait until the last one serves.
    let applied = eventually(Duration::from_secs(10), || async {
        c.get(format!("{base}/a/b?old=yes")).send().await.unwrap().status() == 301
    })
    .await;
    assert!(applied, "the redirect rule never served");
    assert_eq!(get_json(&c, &format!("{base}/api/users")).await["name"], "api");
    assert_eq!(get_json(&c, &format!("{base}/other")).await["name"], "web");
    let r = c.get(format!("{base}/x")).header("host", "tea.example.com").send().await.unwrap();
    assert_eq!(r.status(), 418);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.text().await.unwrap(), "teapot");
    let r = c.get(format!("{base}/a/b?old=yes")).send().await.unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "http://new.example.com/v2/a/b?old=yes");

    // Priorities decide: moving the api rule before the teapot makes it win for /api/.
    elb.set_rule_priorities()
        .rule_priorities(RulePriorityPair::builder().rule_arn(&r1).priority(1).build())
        .send()
        .await
        .unwrap();
    // The data plane applies a committed change asynchronously: wait for it.
    let api_first = eventually(Duration::from_secs(10), || async {
        let r = c.get(format!("{base}/api/x")).header("host", "tea.example.com").send().await.unwrap();
        r.json::<serde_json::Value>().await.is_ok_and(|v| v["name"] == "api")
    })
    .await;
    assert!(api_first, "after SetRulePriorities the api rule answers /api/ before the teapot");
    let rules = elb.describe_rules().listener_arn(&lb.listener).send().await.unwrap();
    let prios: Vec<&str> = rules.rules().iter().map(|r| r.priority().unwrap()).collect();
    assert_eq!(prios, ["1", "5", "20", "default"]);
    assert_eq!(rules.rules()[3].is_default(), Some(true));

    // Weighted forward: weight 0 for web sends everything to api.
    let weighted = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .target_groups(TargetGroupTuple::builder().target_group_arn(&lb.tg).weight(0).build())
                .target_groups(TargetGroupTuple::builder().target_group_arn(&api_tg).weight(5).build())
                .build(),
        )
        .build();
    elb.modify_listener().listener_arn(&lb.listener).default_actions(weighted).send().await.unwrap();
    let ok =
        eventually(Duration::from_secs(5), || async { get_json(&c, &format!("{base}/other")).await["name"] == "api" })
            .await;
    assert!(ok);
    for _ in 0..5 {
        assert_eq!(get_json(&c, &format!("{base}/other")).await["name"], "api");
    }

    // A target group with no targets: 503.
    let empty = elb
        .create_target_group()
        .name("empty")
        .protocol("HTTP".into())
        .port(80)
        .vpc_id(&vpc)
        .target_type("ip".into())
        .send()
        .await
        .unwrap();
    let empty = empty.target_groups()[0].target_group_arn().unwrap().to_string();
    elb.modify_rule()
        .rule_arn(&r1)
        .actions(Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&empty).build())
        .send()
        .await
        .unwrap();
    let ok = eventually(Duration::from_secs(5), || async {
        c.get(format!("{base}/api/x")).send().await.unwrap().status() == 503
    })
    .await;
    assert!(ok, "no registered targets gives 503");
    // The group in use cannot be deleted.
    let e = elb.delete_target_group().target_group_arn(&empty).send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceInUse");
}

#[tokio::test]
async fn deregistration_drains_in_flight_requests() {
    let b = server().await;
    let elb = elbv2(&b).await;
    let lb = load_balancer(&b, &elb, "drain").await;
    let slow = Backend::start("slow").await;
    register_healthy(&elb, &lb.tg, &[&slow]).await;
    let c = http();
    let url = format!("http://{}/slow?ms=2500", lb.dns);
    let in_flight = tokio::spawn({
        let c = c.clone();
        async move { c.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    elb.deregister_targets().target_group_arn(&lb.tg).targets(slow.target()).send().await.unwrap();
    let s = states(&elb, &lb.tg).await;
    assert_eq!(
        s.values().next(),
        Some(&("draining".to_string(), Some("Target.DeregistrationInProgress".to_string()))),
        "{s:?}"
    );
    // No new requests go to a draining target (once the data plane has applied the
    // deregistration, which it does asynchronously).
    let refused = eventually(Duration::from_secs(2), || async {
        c.get(format!("http://{}/", lb.dns)).send().await.unwrap().status() == 503
    })
    .await;
    assert!(refused, "a draining target still takes new requests");
    assert_eq!(in_flight.await.unwrap().unwrap(), 200, "the in-flight request finished");
    let done = eventually(Duration::from_secs(5), || async { states(&elb, &lb.tg).await.is_empty() }).await;
    assert!(done, "draining ends with the last request: {:?}", states(&elb, &lb.tg).await);
    let e = elb.deregister_targets().target_group_arn(&lb.tg).targets(slow.target()).send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidTarget");
}

#[tokio::test]
async fn lb_cookie_stickiness() {
    let b = server().await;
    let elb = elbv2(&b).await;
    let lb = load_balancer(&b, &elb, "sticky").await;
    let (one, two) = (Backend::start("one").await, Backend::start("two").await);
    elb.register_targets().target_group_arn(&lb.tg).targets(one.target()).targets(two.target()).send().await.unwrap();
    elb.modify_target_group_attributes()
        .target_group_arn(&lb.tg)
        .attributes(TargetGroupAttribute::builder().key("stickiness.enabled").value("true").build())
        .attributes(TargetGroupAttribute::builder().key("stickiness.lb_cookie.duration_seconds").value("60").build())
        .send()
        .await
        .unwrap();
    wait_state(&elb, &lb.tg, one.port, "healthy").await;
    wait_state(&elb, &lb.tg, two.port, "healthy").await;
    let c = http();
    let url = format!("http://{}/", lb.dns);
    let ok = eventually(Duration::from_secs(5), || async {
        c.get(&url).send().await.unwrap().headers().contains_key("set-cookie")
    })
    .await;
    assert!(ok, "stickiness sets AWSALB");
    let first = c.get(&url).send().await.unwrap();
    let cookie = first
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("AWSALB="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let name = first.json::<serde_json::Value>().await.unwrap()["name"].clone();
    for _ in 0..8 {
        let v: serde_json::Value = c.get(&url).header("cookie", &cookie).send().await.unwrap().json().await.unwrap();
        assert_eq!(v["name"], name);
    }
    let _ = (one.name.as_str(), two.name.as_str());
}

/// A target that accepts connections and closes them without answering, and one that
/// never answers.
async fn bad_target(answer: bool) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            if answer {
                drop(s);
            } else {
                held.push(s);
            }
        }
    });
    port
}

#[tokio::test]
async fn bad_gateway_gateway_timeout_and_oversized_headers() {
    let b = server().await;
    let elb = elbv2(&b).await;
    let lb = load_balancer(&b, &elb, "errors").await;
    elb.modify_load_balancer_attributes()
        .load_balancer_arn(&lb.arn)
        .attributes(LoadBalancerAttribute::builder().key("idle_timeout.timeout_seconds").value("2").build())
        .send()
        .await
        .unwrap();
    let closer = bad_target(true).await;
    elb.register_targets()
        .target_group_arn(&lb.tg)
        .targets(TargetDescription::builder().id("127.0.0.1").port(closer as i32).build())
        .send()
        .await
        .unwrap();
    let c = http();
    let url = format!("http://{}/", lb.dns);
    let ok = eventually(Duration::from_secs(10), || async { c.get(&url).send().await.unwrap().status() == 502 }).await;
    assert!(ok, "a target that closes the connection gives 502");
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["server"], "awselb/2.0");

    elb.deregister_targets()
        .target_group_arn(&lb.tg)
        .targets(TargetDescription::builder().id("127.0.0.1").port(closer as i32).build())
        .send()
        .await
        .unwrap();
    let silent = bad_target(false).await;
    elb.register_targets()
        .target_group_arn(&lb.tg)
        .targets(TargetDescription::builder().id("127.0.0.1").port(silent as i32).build())
        .send()
        .await
        .unwrap();
    let ok = eventually(Duration::from_secs(20), || async { c.get(&url).send().await.unwrap().status() == 504 }).await;
    assert!(ok, "a target that never answers gives 504 after the idle timeout");

    // ALB's limits: 16 KiB per header, 64 KiB in all, 16 KiB for the request line.
    let r = c.get(&url).header("x-big", "x".repeat(17 * 1024)).send().await.unwrap();
    assert_eq!(r.status(), 431);
    let mut many = c.get(&url);
    for i in 0..5 {
        many = many.header(format!("x-big-{i}"), "x".repeat(15 * 1024));
    }
    assert_eq!(many.send().await.unwrap().status(), 431);
    let r = c.get(format!("{url}?q={}", "x".repeat(17 * 1024))).send().await.unwrap();
    assert_eq!(r.status(), 414);
    // Far beyond what is buffered, the connection is refused outright.
    let huge = c.get(&url).header("x-huge", "x".repeat(200 * 1024)).send().await;
    assert!(huge.map_or(true, |r| r.status() == 431), "a 200 KiB header is not served");
}

#[tokio::test]
async fn refusals_carry_elbv2_error_codes() {
    let b = server().await;
    let elb = elbv2(&b).await;
    let (vpc, subnets) = subnets(&b).await;
    let lb = load_balancer(&b, &elb, "dup").await;

    // The same request again is the same load balancer; other settings are a conflict.
    let again = elb.create_load_balancer().name("dup").subnets(&subnets[0]).subnets(&subnets[1]).send().await.unwrap();
    assert_eq!(again.load_balancers()[0].load_balancer_arn(), Some(lb.arn.as_str()));
    let e = elb.create_load_balancer().name("dup").subnets(&subnets[0]).subnets(&subnets[2]).send().await.unwrap_err();
    assert_eq!(error_code(&e), "DuplicateLoadBalancerName");
    let e = elb.create_load_balancer().name("one-subnet").subnets(&subnets[0]).send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidConfigurationRequest");
    let e = elb
        .create_load_balancer()
        .name("nosubnet")
        .subnets("subnet-nope")
        .subnets(&subnets[0])
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "SubnetNotFound");
    let e = elb.create_load_balancer().name("-bad").subnets(&subnets[0]).subnets(&subnets[1]).send().await.unwrap_err();
    assert_eq!(error_code(&e), "ValidationError");
    let e = elb.describe_load_balancers().names("missing").send().await.unwrap_err();
    assert_eq!(error_code(&e), "LoadBalancerNotFound");
    let e = elb
        .create_target_group()
        .name("dup-tg")
        .protocol("HTTP".into())
        .port(81)
        .vpc_id(&vpc)
        .target_type("ip".into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "DuplicateTargetGroupName");
    let e = elb
        .create_target_group()
        .name("other-vpc")
        .protocol("HTTP".into())
        .port(80)
        .vpc_id("vpc-0123456789abcdef0")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "ValidationError");
    let e = elb
        .create_target_group()
        .name("bad-timeout")
        .protocol("HTTP".into())
        .port(80)
        .vpc_id(&vpc)
        .health_check_interval_seconds(5)
        .health_check_timeout_seconds(6)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidConfigurationRequest");

    let forward = Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&lb.tg).build();
    let e = elb
        .create_listener()
        .load_balancer_arn(&lb.arn)
        .protocol("HTTP".into())
        .port(80)
        .default_actions(
            Action::builder()
                .r#type(ActionTypeEnum::FixedResponse)
                .fixed_response_config(FixedResponseActionConfig::builder().status_code("200").build())
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "DuplicateListener");
    let path = RuleCondition::builder().field("path-pattern").values("/a").build();
    elb.create_rule()
        .listener_arn(&lb.listener)
        .priority(7)
        .conditions(path.clone())
        .actions(forward.clone())
        .send()
        .await
        .unwrap();
    let e = elb
        .create_rule()
        .listener_arn(&lb.listener)
        .priority(7)
        .conditions(path.clone())
        .actions(forward.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "PriorityInUse");
    let e = elb
        .create_rule()
        .listener_arn(&lb.listener)
        .priority(50001)
        .conditions(path.clone())
        .actions(forward.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "ValidationError");
    let six = PathPatternConditionConfig::builder()
        .values("/1")
        .values("/2")
        .values("/3")
        .values("/4")
        .values("/5")
        .values("/6")
        .build();
    let e = elb
        .create_rule()
        .listener_arn(&lb.listener)
        .priority(8)
        .conditions(RuleCondition::builder().field("path-pattern").path_pattern_config(six).build())
        .actions(forward.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "ValidationError");
    let bad_pattern = RuleCondition::builder().field("host-header").values("bad host!").build();
    let e = elb
        .create_rule()
        .listener_arn(&lb.listener)
        .priority(9)
        .conditions(bad_pattern)
        .actions(forward.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "ValidationError");
    let missing_tg = lb.tg.replace(&lb.tg[lb.tg.len() - 16..], "0000000000000000");
    let e = elb
        .create_rule()
        .listener_arn(&lb.listener)
        .priority(11)
        .conditions(path.clone())
        .actions(Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&missing_tg).build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "TargetGroupNotFound");
    let rules = elb.describe_rules().listener_arn(&lb.listener).send().await.unwrap();
    let default_rule = rules.rules().iter().find(|r| r.is_default() == Some(true)).unwrap().rule_arn().unwrap();
    let e = elb.delete_rule().rule_arn(default_rule).send().await.unwrap_err();
    assert_eq!(error_code(&e), "OperationNotPermitted");

    let e = elb
        .register_targets()
        .target_group_arn(&lb.tg)
        .targets(TargetDescription::builder().id("8.8.8.8").build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidTarget");
    let inst =
        elb.create_target_group().name("instances").protocol("HTTP".into()).port(80).vpc_id(&vpc).send().await.unwrap();
    let inst = inst.target_groups()[0].target_group_arn().unwrap().to_string();
    let e = elb
        .register_targets()
        .target_group_arn(&inst)
        .targets(TargetDescription::builder().id("i-0123456789abcdef0").build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidTarget");

    // SetSubnets moves it to other zones; only the default security group exists.
    let moved =
        elb.set_subnets().load_balancer_arn(&lb.arn).subnets(&subnets[1]).subnets(&subnets[2]).send().await.unwrap();
    let zones: Vec<&str> = moved.availability_zones().iter().map(|z| z.zone_name().unwrap()).collect();
    assert_eq!(zones, ["us-east-1b", "us-east-1c"]);
    let e = elb.set_subnets().load_balancer_arn(&lb.arn).subnets(&subnets[1]).send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidConfigurationRequest");
    let e = elb.set_security_groups().load_balancer_arn(&lb.arn).security_groups("sg-nope").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidSecurityGroup");
    let e = elb
        .set_ip_address_type()
        .load_balancer_arn(&lb.arn)
        .ip_address_type(aws_sdk_elasticloadbalancingv2::types::IpAddressType::Dualstack)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidConfigurationRequest");

    // Tags, and deletion protection.
    elb.add_tags()
        .resource_arns(&lb.arn)
        .resource_arns(&lb.tg)
        .tags(Tag::builder().key("team").value("web").build())
        .send()
        .await
        .unwrap();
    let t = elb.describe_tags().resource_arns(&lb.arn).resource_arns(&lb.tg).send().await.unwrap();
    assert!(t
        .tag_descriptions()
        .iter()
        .all(|d| d.tags().iter().any(|t| t.key() == Some("team") && t.value() == Some("web"))));
    elb.remove_tags().resource_arns(&lb.tg).tag_keys("team").send().await.unwrap();
    let t = elb.describe_tags().resource_arns(&lb.tg).send().await.unwrap();
    assert!(t.tag_descriptions()[0].tags().is_empty());
    let t = elb.describe_tags().resource_arns(&lb.listener).send().await.unwrap();
    assert_eq!(t.tag_descriptions()[0].resource_arn(), Some(lb.listener.as_str()), "a listener has tags too");
    // The same name with an id Berth never gave: a target group that does not exist.
    let gone = format!("{}/ffffffffffffffff", lb.tg.rsplit_once('/').unwrap().0);
    let e = elb.describe_tags().resource_arns(&gone).send().await.unwrap_err();
    assert_eq!(error_code(&e), "TargetGroupNotFound", "{gone}");
    let text = e.into_service_error().meta().message().unwrap_or_default().to_string();
    assert_eq!(text, format!("Target group '{gone}' not found"));
    elb.modify_load_balancer_attributes()
        .load_balancer_arn(&lb.arn)
        .attributes(LoadBalancerAttribute::builder().key("deletion_protection.enabled").value("true").build())
        .send()
        .await
        .unwrap();
    let e = elb.delete_load_balancer().load_balancer_arn(&lb.arn).send().await.unwrap_err();
    assert_eq!(error_code(&e), "OperationNotPermitted");
    let e = elb
        .modify_load_balancer_attributes()
        .load_balancer_arn(&lb.arn)
        .attributes(LoadBalancerAttribute::builder().key("idle_timeout.timeout_seconds").value("0").build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidConfigurationRequest");

    // Another account sees none of it.
    let other = b.create_account();
    let theirs = Client::new(&b.sdk_config(&other, "us-east-1").await);
    assert!(theirs.describe_load_balancers().send().await.unwrap().load_balancers().is_empty());
    let e = theirs.describe_load_balancers().load_balancer_arns(&lb.arn).send().await.unwrap_err();
    assert_eq!(error_code(&e), "LoadBalancerNotFound");
}

#[tokio::test]
async fn the_aws_cli_reads_and_writes_elbv2() {
    let b = server().await;
    let (_, subnets) = subnets(&b).await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("aws").args(args).envs(b.cli_env()).output().expect("aws CLI");
        assert!(out.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let created = cli(&["elbv2", "create-load-balancer", "--name", "cli-alb", "--subnets", &subnets[0], &subnets[1]]);
    let lb = &created["LoadBalancers"][0];
    assert_eq!(lb["State"]["Code"], "active");
    assert_eq!(lb["Type"], "application");
    assert_eq!(lb["AvailabilityZones"].as_array().unwrap().len(), 2);
    let described = cli(&["elbv2", "describe-load-balancers", "--names", "cli-alb"]);
    assert_eq!(described["LoadBalancers"][0]["DNSName"], lb["DNSName"]);
    let out = std::process::Command::new("aws")
        .args(["elbv2", "describe-load-balancers", "--names", "nope"])
        .envs(b.cli_env())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("LoadBalancerNotFound"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A form request signed for `service`, as no SDK would send it.
async fn raw_query(b: &Berth, service: &str, body: &str) -> (u16, String) {
    let url = format!("{}/", b.endpoint.trim_end_matches('/'));
    let headers = [("content-type", "application/x-www-form-urlencoded; charset=utf-8")];
    let auth = crate::bad_input::sigv4_headers("POST", &url, &b.key, "us-east-1", service, &headers, body.as_bytes());
    let mut req = reqwest::Client::new().post(&url).header(headers[0].0, headers[0].1);
    for (n, v) in auth {
        req = req.header(n, v);
    }
    let r = req.body(body.to_string()).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn malformed_query_requests_get_xml_errors() {
    let b = crate::berth().await;
    let (status, body) =
        raw_query(&b, "elasticloadbalancing", "Action=DescribeLoadBalancers&Version=2015-12-01&Names.member.0=x").await;
    assert_eq!(status, 400);
    assert!(body.starts_with("<ErrorResponse"), "{body}");
    assert!(body.contains("<Code>MalformedQueryString</Code>") && body.contains("<Type>Sender</Type>"), "{body}");
    assert!(body.contains("<RequestId>"), "{body}");
    let (status, body) =
        raw_query(&b, "elasticloadbalancing", "Action=DescribeLoadBalancers&Version=2015-12-01&PageSize=%ZZ").await;
    assert_eq!(status, 400, "{body}");
    let (_, body) = raw_query(&b, "elasticloadbalancing", "Action=Frobnicate&Version=2015-12-01").await;
    assert!(body.contains("<Code>InvalidAction</Code>"), "{body}");
    let (_, body) = raw_query(&b, "elasticloadbalancing", "Version=2015-12-01").await;
    assert!(body.contains("<Code>MissingAction</Code>"), "{body}");
    let (_, body) = raw_query(&b, "elasticloadbalancing", "Action=DescribeLoadBalancers&Version=2012-06-01").await;
    assert!(body.contains("<Code>InvalidAction</Code>"), "{body}");
    let (_, body) = raw_query(&b, "elasticloadbalancing", "Action=CreateLoadBalancer&Version=2015-12-01").await;
    assert!(body.contains("<Code>ValidationError</Code>") && body.contains("Name"), "{body}");
    let (status, body) =
        raw_query(&b, "ec2", "Action=DescribeVpcs&Version=2016-11-15&Filter.1.Name=vpc-id&Filter.1.Value.x=y").await;
    assert_eq!(status, 400);
    assert!(body.starts_with("<Response><Errors><Error><Code>MalformedQueryString</Code>"), "{body}");
    let (status, body) = raw_query(&b, "sqs", "Action=ListQueues").await;
    assert_eq!(status, 400);
    assert!(body.contains("<Code>UnknownService</Code>"), "{body}");

    // Unsigned and wrongly signed requests are refused with the query protocol's codes.
    let r = reqwest::Client::new()
        .post(format!("{}/", b.endpoint))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("Action=DescribeLoadBalancers&Version=2015-12-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("<Code>MissingAuthenticationToken</Code>"));
    let mut wrong = b.key.clone();
    wrong.secret = "not-the-secret".into();
    let e = Client::new(&b.sdk_config(&wrong, "us-east-1").await).describe_load_balancers().send().await.unwrap_err();
    assert_eq!(error_code(&e), "SignatureDoesNotMatch");
}

#[tokio::test]
async fn slow_clients_and_slow_targets_hold_up_no_one_else() {
    use tokio::io::AsyncWriteExt;
    let b = server().await;
    let elb = elbv2(&b).await;
    let lb = load_balancer(&b, &elb, "slow").await;
    let backend = Backend::start("b").await;
    register_healthy(&elb, &lb.tg, &[&backend]).await;
    let c = http();
    let ok = eventually(Duration::from_secs(5), || async {
        c.get(format!("http://{}/", lb.dns)).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ok);

    // Clients that send half a request head and stop, and requests a target takes long
    // to answer.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect((lb.dns.as_str(), 80)).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: slow\r\nX-Partial: ").await.unwrap();
        stalled.push(s);
    }
    let slow: Vec<_> = (0..20)
        .map(|_| {
            let (c, url) = (c.clone(), format!("http://{}/slow?ms=3000", lb.dns));
            tokio::spawn(async move { c.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let v = get_json(&c, &format!("http://{}/fast", lb.dns)).await;
        assert_eq!(v["path"], "/fast");
        assert!(started.elapsed() < Duration::from_secs(1), "a quick request waited {:?}", started.elapsed());
    }
    for s in slow {
        assert_eq!(s.await.unwrap().unwrap(), 200);
    }
    drop(stalled);
}

/// The code and message of a refused ELBv2 call.
fn refusal<E, R>(e: aws_sdk_elasticloadbalancingv2::error::SdkError<E, R>) -> (String, String)
where
    E: aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = error_code(&e);
    let message = match &e {
        aws_sdk_elasticloadbalancingv2::error::SdkError::ServiceError(s) => s.err().message().unwrap_or_default(),
        _ => "",
    };
    (code, message.to_string())
}

#[tokio::test]
async fn wrong_enum_values_are_validation_errors_naming_the_member() {
    let b = server().await;
    let elb = elbv2(&b).await;
    let (vpc, subnets) = subnets(&b).await;
    let lb = |name: &str| elb.create_load_balancer().name(name).subnets(&subnets[0]).subnets(&subnets[1]);
    let tg = |name: &str| elb.create_target_group().name(name).protocol("HTTP".into()).port(80).vpc_id(&vpc);
    let expect = |(code, message): (String, String), member: &str| {
        assert_eq!(code, "ValidationError", "{message}");
        assert!(
            message.contains(&format!(
                "at '{member}' failed to satisfy constraint: Member must satisfy enum value set: ["
            )),
            "{message}"
        );
    };
    expect(refusal(lb("a").scheme("public".into()).send().await.unwrap_err()), "scheme");
    expect(refusal(lb("b").r#type("classic".into()).send().await.unwrap_err()), "type");
    expect(refusal(lb("c").ip_address_type("ipv5".into()).send().await.unwrap_err()), "ipAddressType");
    expect(refusal(tg("d").protocol("HTTP2".into()).send().await.unwrap_err()), "protocol");
    expect(refusal(tg("e").target_type("container".into()).send().await.unwrap_err()), "targetType");
    expect(refusal(tg("f").health_check_protocol("PING".into()).send().await.unwrap_err()), "healthCheckProtocol");
    // Values of the enum that Berth does not serve keep their own codes.
    assert_eq!(refusal(lb("g").r#type("network".into()).send().await.unwrap_err()).0, "InvalidConfigurationRequest");
    assert_eq!(refusal(tg("h").protocol("TCP".into()).send().await.unwrap_err()).0, "UnsupportedProtocol");

    let lb = elb.create_load_balancer().name("ok").subnets(&subnets[0]).subnets(&subnets[1]).send().await.unwrap();
    let lb_arn = lb.load_balancers()[0].load_balancer_arn().unwrap();
    let listener = |protocol: &str, action: Action| {
        elb.create_listener().load_balancer_arn(lb_arn).protocol(protocol.into()).port(80).default_actions(action)
    };
    let fixed = FixedResponseActionConfig::builder().status_code("200").build();
    let answer = Action::builder().r#type(ActionTypeEnum::FixedResponse).fixed_response_config(fixed).build();
    expect(refusal(listener("SMTP", answer.clone()).send().await.unwrap_err()), "protocol");
    let odd = Action::builder().r#type("teleport".into()).build();
    expect(refusal(listener("HTTP", odd).send().await.unwrap_err()), "type");
    let redirect = RedirectActionConfig::builder().status_code("HTTP_307".into()).build();
    let odd = Action::builder().r#type(ActionTypeEnum::Redirect).redirect_config(redirect).build();
    expect(refusal(listener("HTTP", odd).send().await.unwrap_err()), "statusCode");
    listener("HTTP", answer).send().await.unwrap();
}

#[tokio::test]
async fn names_follow_elbv2_rules_and_any_vpc_security_group_is_accepted() {
    let b = server().await;
    let elb = elbv2(&b).await;
    let (vpc, subnets) = subnets(&b).await;
    let tg = |name: &str| elb.create_target_group().name(name).protocol("HTTP".into()).port(80).vpc_id(&vpc);
    // Consecutive hyphens are allowed by the API (only AWS's console refuses them).
    let made = tg("Na--me").send().await.unwrap();
    assert_eq!(made.target_groups()[0].target_group_name(), Some("Na--me"));
    for (name, message) in [
        ("web-", "Target group name 'web-' cannot begin or end with '-'"),
        ("-web", "Target group name '-web' cannot begin or end with '-'"),
        ("a_b", "Target group name 'a_b' can only contain characters that are alphanumeric characters or hyphens(-)"),
        (
            "abcdefghijklmnopqrstuvwxyz0123456",
            "Target group name 'abcdefghijklmnopqrstuvwxyz0123456' cannot be longer than '32' characters",
        ),
    ] {
        assert_eq!(refusal(tg(name).send().await.unwrap_err()), ("ValidationError".into(), message.into()));
    }

    let ec2 = crate::ec2::ec2(&b).await;
    let group = |name: &str| ec2.create_security_group().group_name(name).description("lb").vpc_id(&vpc).send();
    let web = group("web").await.unwrap().group_id().unwrap().to_string();
    let admin = group("admin").await.unwrap().group_id().unwrap().to_string();
    let lb = |name: &str| elb.create_load_balancer().name(name).subnets(&subnets[0]).subnets(&subnets[1]);
    let made = lb("Lb--one").security_groups(&web).send().await.unwrap();
    let made = &made.load_balancers()[0];
    assert_eq!(made.security_groups(), std::slice::from_ref(&web));
    let arn = made.load_balancer_arn().unwrap();
    let set = elb.set_security_groups().load_balancer_arn(arn).security_groups(&web).security_groups(&admin);
    assert_eq!(set.send().await.unwrap().security_group_ids(), [web.clone(), admin.clone()]);
    let d = elb.describe_load_balancers().load_balancer_arns(arn).send().await.unwrap();
    assert_eq!(d.load_balancers()[0].security_groups(), [web.clone(), admin]);

    let (code, _) = refusal(lb("two").security_groups("sg-0123456789abcdef0").send().await.unwrap_err());
    assert_eq!(code, "InvalidSecurityGroup");
    let e = elb.set_security_groups().load_balancer_arn(arn).security_groups("sg-nope").send().await.unwrap_err();
    assert_eq!(refusal(e).0, "InvalidSecurityGroup");
    let mut six = lb("six");
    for i in 0..6 {
        six = six.security_groups(group(&format!("g{i}")).await.unwrap().group_id().unwrap());
    }
    assert_eq!(refusal(six.send().await.unwrap_err()).0, "InvalidConfigurationRequest");
    // Another account's group is not one of this VPC's.
    let other = b.create_account();
    let theirs = aws_sdk_ec2::Client::new(&b.sdk_config(&other, "us-east-1").await);
    let their_vpc = theirs.describe_vpcs().send().await.unwrap().vpcs()[0].vpc_id().unwrap().to_string();
    let foreign = theirs.create_security_group().group_name("x").description("x").vpc_id(their_vpc).send().await;
    let foreign = foreign.unwrap().group_id().unwrap().to_string();
    assert_eq!(refusal(lb("three").security_groups(&foreign).send().await.unwrap_err()).0, "InvalidSecurityGroup");
    assert_eq!(elb.describe_load_balancers().send().await.unwrap().load_balancers().len(), 1);
}

/// `berth lb` as a process of its own, stopped when dropped.
struct LbHost {
    child: std::process::Child,
    _log: tempfile::NamedTempFile,
}

impl LbHost {
    fn start(store: &str, pool: &str) -> LbHost {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["lb", "--store", store, "--lb-address-pool", pool])
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        LbHost { child, _log: log }
    }
}

impl Drop for LbHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn berth_lb_apart_from_the_servers_serves_their_load_balancers_and_outlives_them() {
    let pg = testkit::postgres::TestPostgres::start();
    let (servers_pool, hosts_pool) = (own_pool(), own_pool());
    let env = [("BERTH_MASTER_KEY", crate::postgres::MASTER_KEY), ("BERTH_LB_ADDRESS_POOL", servers_pool.as_str())];
    let mut b = Berth::start_on_store(env!("CARGO_BIN_EXE_berth"), &pg.url(), &env).await;
    let elb = elbv2(&b).await;
    let lb = load_balancer(&b, &elb, "apart").await;
    let one = Backend::start("one").await;
    register_healthy(&elb, &lb.tg, &[&one]).await;

    // The load balancer on the other host's address at the same offset.
    let _host = LbHost::start(&pg.url(), &hosts_pool);
    let offset = lb.dns.rsplit('.').next().unwrap();
    let moved = format!("{}.{offset}", hosts_pool.trim_end_matches(".0/24"));
    assert_ne!(moved, lb.dns);
    let c = http();
    let url = format!("http://{moved}/apart");
    let answered = || async { c.get(&url).send().await.is_ok_and(|r| r.status() == 200) };
    assert!(eventually(Duration::from_secs(20), answered).await, "berth lb never served {url}");
    assert_eq!(get_json(&c, &url).await["name"], "one");

    // A target registered at the servers reaches it.
    let two = Backend::start("two").await;
    register_healthy(&elb, &lb.tg, &[&one, &two]).await;
    let both = || async {
        let mut names = BTreeSet::new();
        for _ in 0..6 {
            names.insert(get_json(&c, &url).await["name"].as_str().unwrap().to_string());
        }
        names.len() == 2
    };
    assert!(eventually(Duration::from_secs(20), both).await, "the new target never reached berth lb");

    // No replica answers any more: it serves the targets it knows.
    b.kill9();
    for _ in 0..6 {
        let name = get_json(&c, &url).await["name"].as_str().unwrap().to_string();
        assert!(name == "one" || name == "two", "{name}");
    }
}
