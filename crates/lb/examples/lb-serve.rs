//! The data plane alone, for profiling: one load balancer with one HTTP listener that
//! forwards to a target group of the given backends, configured as `berth up` would
//! configure it with ALB's defaults (round robin, health checks of /health every 5 s).
//!
//! `cargo run --release -p lb --example lb-serve -- LISTEN_ADDR:PORT BACKEND_ADDR:PORT...`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use elb::actions::{ActionKind, Forward, WeightedGroup};
use elb::health::{Board, TargetKey};
use elb::resources::HealthCheck;
use elb::snapshot::{LbPlan, ListenerPlan, RulePlan, Snapshot, TargetPlan, TgPlan};
use tokio_util::sync::CancellationToken;

fn main() {
    let args: Vec<SocketAddr> = std::env::args().skip(1).map(|a| a.parse().expect("ADDR:PORT")).collect();
    let [listen, backends @ ..] = args.as_slice() else {
        eprintln!("usage: lb-serve LISTEN_ADDR:PORT BACKEND_ADDR:PORT...");
        std::process::exit(2);
    };
    let std::net::IpAddr::V4(address) = listen.ip() else { panic!("IPv4 listen address") };
    let runtime = match std::env::var("LB_RT").as_deref() {
        Ok("current") => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    }
    .expect("runtime");
    runtime.block_on(async {
        let tg = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/bench/0".to_string();
        let health_check = HealthCheck { path: "/health".into(), interval_seconds: 5, ..HealthCheck::default() };
        let plan = TgPlan {
            arn: tg.clone(),
            health_check,
            attributes: Default::default(),
            targets: backends
                .iter()
                .map(|b| TargetPlan { key: TargetKey { id: b.ip().to_string(), port: b.port() }, addr: Some(*b) })
                .collect(),
            in_use: true,
        };
        let snapshot = Snapshot {
            load_balancers: vec![LbPlan {
                arn: "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/bench/0".into(),
                address,
                attributes: Default::default(),
                listeners: vec![ListenerPlan {
                    arn: "listener".into(),
                    port: listen.port(),
                    rules: vec![RulePlan {
                        priority: None,
                        conditions: Vec::new(),
                        action: ActionKind::Forward(Forward {
                            groups: vec![WeightedGroup { arn: tg.clone(), weight: 1 }],
                            stickiness_seconds: None,
                        }),
                    }],
                }],
            }],
            target_groups: BTreeMap::from([(tg, plan)]),
        };
        let shutdown = CancellationToken::new();
        let dp = lb::DataPlane::new(Arc::new(Board::default()), shutdown.clone());
        let failures = dp.apply(&snapshot).await;
        assert!(failures.is_empty(), "{failures:?}");
        eprintln!("lb-serve: serving on {listen}");
        let _ = tokio::signal::ctrl_c().await;
        shutdown.cancel();
    });
}
