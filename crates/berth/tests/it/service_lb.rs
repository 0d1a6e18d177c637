//! Services behind the load balancer, on real Docker with two `berth agent` processes and
//! real HTTP through the load balancer's address: tasks are registered when they run and
//! serve; a rolling update under continuous load fails no request; a task the target
//! group finds unhealthy is replaced; ECS's checks of `loadBalancers`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::types::{ContainerDefinition, KeyValuePair, LoadBalancer, PortMapping};
use aws_sdk_ecs::Client;
use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, TargetHealthStateEnum};
use testkit::images::simplehttp_image;
use testkit::{error_code, Berth};

use crate::services::{cleanup, describe, eventually, messages, service_tasks, wait_instances, wait_steady};

/// A server with its own block of load balancer addresses (tests run at the same time
/// all listen on port 80) and two agents in cluster `cluster`.
async fn berth_with_agents(cluster: &str) -> (Berth, Vec<testkit::Agent>) {
    assert!(!simplehttp_image().is_empty());
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = (std::process::id().wrapping_mul(7919).wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) + 17_000)
        % (150 * 256);
    let pool = format!("127.{}.{}.0/24", 101 + n / 256, n % 256);
    let b = Berth::start_with_args(env!("CARGO_BIN_EXE_berth"), &["--lb-address-pool", &pool]).await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name(cluster).send().await.unwrap();
    let agents = vec![b.spawn_agent(cluster, &[]), b.spawn_agent(cluster, &[])];
    wait_instances(&ecs, cluster, 2).await;
    (b, agents)
}

/// Registers `web` answering with `greeting` on 8080 (a dynamic host port).
async fn register(ecs: &Client, greeting: &str) {
    ecs.register_task_definition()
        .family("web")
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image(simplehttp_image())
                .memory(16)
                .set_command(Some(vec!["serve".into(), "--port".into(), "8080".into()]))
                .environment(KeyValuePair::builder().name("GREETING").value(greeting).build())
                .port_mappings(PortMapping::builder().container_port(8080).host_port(0).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
}

pub(crate) struct Alb {
    pub client: aws_sdk_elasticloadbalancingv2::Client,
    pub dns: String,
    pub tg: String,
}

/// A load balancer listening on 80 with a target group checked on `/health` every 5 s.
async fn alb(b: &Berth, name: &str) -> Alb {
    alb_of(b, name, "instance").await
}

/// The same with targets of type `kind` (`instance` or `ip`).
pub(crate) async fn alb_of(b: &Berth, name: &str, kind: &str) -> Alb {
    let client = aws_sdk_elasticloadbalancingv2::Client::new(&b.sdk_config(&b.key, "us-east-1").await);
    let ec2 = crate::ec2::ec2(b).await;
    let subnets = ec2.describe_subnets().send().await.unwrap();
    let vpc = subnets.subnets()[0].vpc_id().unwrap().to_string();
    let ids: Vec<String> = subnets.subnets().iter().filter_map(|s| s.subnet_id().map(str::to_string)).collect();
    let lb = client.create_load_balancer().name(name).set_subnets(Some(ids)).send().await.unwrap();
    let lb = &lb.load_balancers()[0];
    let tg = client
        .create_target_group()
        .name(name)
        .protocol("HTTP".into())
        .port(80)
        .vpc_id(vpc)
        .target_type(kind.into())
        .health_check_path("/health")
        .health_check_interval_seconds(5)
        .health_check_timeout_seconds(2)
        .healthy_threshold_count(2)
        .unhealthy_threshold_count(2)
        .send()
        .await
        .unwrap();
    let tg = tg.target_groups()[0].target_group_arn().unwrap().to_string();
    client
        .create_listener()
        .load_balancer_arn(lb.load_balancer_arn().unwrap())
        .protocol("HTTP".into())
        .port(80)
        .default_actions(Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&tg).build())
        .send()
        .await
        .unwrap();
    Alb { client, dns: lb.dns_name().unwrap().to_string(), tg }
}

pub(crate) fn behind(tg: &str) -> LoadBalancer {
    LoadBalancer::builder().target_group_arn(tg).container_name("web").container_port(8080).build()
}

/// `(id, port)` of the target group's targets in `state`.
pub(crate) async fn targets_in(alb: &Alb, state: TargetHealthStateEnum) -> BTreeSet<(String, i32)> {
    let h = alb.client.describe_target_health().target_group_arn(&alb.tg).send().await.unwrap();
    h.target_health_descriptions()
        .iter()
        .filter(|d| d.target_health().and_then(|t| t.state()) == Some(&state))
        .filter_map(|d| d.target().map(|t| (t.id().unwrap_or_default().to_string(), t.port().unwrap_or_default())))
        .collect()
}

/// `(instance, host port)` of each of the service's running tasks.
async fn task_targets(ecs: &Client, cluster: &str) -> BTreeSet<(String, i32)> {
    let tasks = service_tasks(ecs, cluster, "web", "RUNNING").await;
    let mut out = BTreeSet::new();
    for t in tasks.iter().filter(|t| t.last_status() == Some("RUNNING")) {
        let ci = ecs
            .describe_container_instances()
            .cluster(cluster)
            .container_instances(t.container_instance_arn().unwrap())
            .send()
            .await
            .unwrap();
        let ec2_id = ci.container_instances()[0].ec2_instance_id().unwrap().to_string();
        let port = t.containers()[0].network_bindings()[0].host_port().unwrap();
        out.insert((ec2_id, port));
    }
    out
}

/// Requests through the load balancer from four clients until stopped: counts failures
/// (anything but a 200) and collects the greetings that answered. Every other request
/// takes 300 ms at the task, so that some are in flight whenever a task is stopped: only
/// draining before the stop lets them finish.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    pub ok: Arc<AtomicU64>,
    failed: Arc<Mutex<Vec<String>>>,
    greetings: Arc<Mutex<BTreeSet<String>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(url: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let greetings = Arc::new(Mutex::new(BTreeSet::new()));
        let workers = (0..4)
            .map(|_| {
                let (stop, ok, failed, greetings, url) =
                    (stop.clone(), ok.clone(), failed.clone(), greetings.clone(), url.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
                    let slow = format!("{url}slow/300");
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let target = if n.is_multiple_of(2) { &slow } else { &url };
                        match client.get(target).send().await {
                            Ok(r) if r.status() == 200 => {
                                let body = r.text().await.unwrap_or_default();
                                if let Some(g) = body.split_whitespace().find_map(|w| w.strip_prefix("greeting=")) {
                                    greetings.lock().unwrap().insert(g.to_string());
                                }
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => failed.lock().unwrap().push(format!("status {}", r.status())),
                            Err(e) => failed.lock().unwrap().push(format!("error {e}")),
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Load { stop, ok, failed, greetings, workers }
    }

    pub(crate) async fn finish(self) -> (u64, Vec<String>, BTreeSet<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        let greetings = self.greetings.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failed, greetings)
    }
}

#[tokio::test]
async fn a_service_behind_a_load_balancer_rolls_out_without_a_failed_request() {
    // Declared first, dropped last: containers go once the server and agents are gone.
    let _c;
    let (b, _agents) = berth_with_agents("lb").await;
    _c = cleanup(&b, "lb");
    let ecs = b.ecs().await;
    register(&ecs, "one").await;
    register(&ecs, "two").await;
    let alb = alb(&b, "web").await;

    ecs.create_service()
        .cluster("lb")
        .service_name("web")
        .task_definition("web:1")
        .desired_count(2)
        .load_balancers(behind(&alb.tg))
        .send()
        .await
        .unwrap();
    let s = wait_steady(&ecs, "lb", "web").await;
    assert_eq!(s.load_balancers().len(), 1);
    // Steady means every task is healthy in the target group: exactly the tasks' targets.
    let running = task_targets(&ecs, "lb").await;
    assert_eq!(running.len(), 2);
    assert_eq!(targets_in(&alb, TargetHealthStateEnum::Healthy).await, running);
    assert!(messages(&s).iter().any(|m| m.contains("registered") && m.contains(&alb.tg)), "{:#?}", messages(&s));

    let url = format!("http://{}/", alb.dns);
    let load = Load::start(url.clone());
    eventually("requests pass through the load balancer", async || load.ok.load(Ordering::Relaxed) > 20).await;

    ecs.update_service().cluster("lb").service("web").task_definition("web:2").send().await.unwrap();
    eventually("the new revision is rolled out and the old tasks are gone", async || {
        let s = describe(&ecs, "lb", "web").await;
        s.deployments().len() == 1
            && s.running_count() == 2
            && s.deployments()[0].task_definition().is_some_and(|t| t.ends_with(":2"))
            && targets_in(&alb, TargetHealthStateEnum::Draining).await.is_empty()
    })
    .await;
    let s = wait_steady(&ecs, "lb", "web").await;
    // A little more traffic on the new tasks alone.
    let served = load.ok.load(Ordering::Relaxed);
    eventually("requests reach the new tasks", async || load.ok.load(Ordering::Relaxed) > served + 20).await;
    let (ok, failed, greetings) = load.finish().await;
    assert!(failed.is_empty(), "{} of {} requests failed during the rolling update: {failed:?}", failed.len(), ok);
    assert_eq!(greetings, BTreeSet::from(["one".to_string(), "two".to_string()]), "both revisions answered");

    let all = messages(&s);
    assert!(all.iter().any(|m| m.contains("has begun draining connections on")), "{all:#?}");
    assert!(all.iter().any(|m| m.contains("deregistered") && m.contains(&alb.tg)), "{all:#?}");
    // Only the new tasks are targets now, and they answer with the new greeting.
    let running = task_targets(&ecs, "lb").await;
    assert_eq!(targets_in(&alb, TargetHealthStateEnum::Healthy).await, running);
    let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(body.contains("greeting=two"), "{body}");
    // The old tasks were drained before they stopped, and say why they stopped.
    let stopped = service_tasks(&ecs, "lb", "web", "STOPPED").await;
    assert_eq!(stopped.len(), 2, "the two tasks of the first revision");
    for t in &stopped {
        assert_eq!(t.stop_code(), Some(&aws_sdk_ecs::types::TaskStopCode::ServiceSchedulerInitiated));
    }

    // Deleting the service deregisters its targets.
    ecs.delete_service().cluster("lb").service("web").force(true).send().await.unwrap();
    eventually("no targets are left", async || {
        let h = alb.client.describe_target_health().target_group_arn(&alb.tg).send().await.unwrap();
        h.target_health_descriptions().is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_task_the_target_group_finds_unhealthy_is_replaced() {
    // Declared first, dropped last: containers go once the server and agents are gone.
    let _c;
    let (b, _agents) = berth_with_agents("sick").await;
    _c = cleanup(&b, "sick");
    let ecs = b.ecs().await;
    register(&ecs, "one").await;
    let alb = alb(&b, "sick").await;
    ecs.create_service()
        .cluster("sick")
        .service_name("web")
        .task_definition("web:1")
        .desired_count(1)
        .load_balancers(behind(&alb.tg))
        .send()
        .await
        .unwrap();
    wait_steady(&ecs, "sick", "web").await;
    let task = service_tasks(&ecs, "sick", "web", "RUNNING").await.remove(0);
    let container = task.containers()[0].runtime_id().unwrap().to_string();
    // A frozen process answers no health check: the target times out, turns unhealthy,
    // and the service replaces the task.
    let out = std::process::Command::new("docker").args(["pause", &container]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let arn = task.task_arn().unwrap().to_string();
    eventually("the paused task is stopped for failing ELB health checks", async || {
        let d = ecs.describe_tasks().cluster("sick").tasks(&arn).send().await.unwrap();
        d.tasks()[0]
            .stopped_reason()
            .is_some_and(|r| r.starts_with("Task failed ELB health checks in (target-group ") && r.contains(&alb.tg))
    })
    .await;
    let s = wait_steady(&ecs, "sick", "web").await;
    assert!(messages(&s).iter().any(|m| m.contains("is unhealthy in (target-group")), "{:#?}", messages(&s));
    let running = task_targets(&ecs, "sick").await;
    assert_eq!(running.len(), 1);
    assert_eq!(targets_in(&alb, TargetHealthStateEnum::Healthy).await, running);
    let _ = std::process::Command::new("docker").args(["rm", "-f", &container]).output();
}

#[tokio::test]
async fn load_balancers_are_checked_as_ecs_checks_them() {
    let b = Berth::start(env!("CARGO_BIN_EXE_berth")).await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("chk").send().await.unwrap();
    register(&ecs, "one").await;
    let client = aws_sdk_elasticloadbalancingv2::Client::new(&b.sdk_config(&b.key, "us-east-1").await);
    let ec2 = crate::ec2::ec2(&b).await;
    let vpc = ec2.describe_vpcs().send().await.unwrap().vpcs()[0].vpc_id().unwrap().to_string();
    let tg = |name: &str, kind: &str| {
        client
            .create_target_group()
            .name(name)
            .protocol("HTTP".into())
            .port(80)
            .vpc_id(&vpc)
            .target_type(kind.into())
            .send()
    };
    let lonely = tg("lonely", "instance").await.unwrap().target_groups()[0].target_group_arn().unwrap().to_string();
    let missing = lonely.replace("lonely", "missing");
    let create = |arn: &str| {
        ecs.create_service()
            .cluster("chk")
            .service_name("web")
            .task_definition("web")
            .desired_count(1)
            .load_balancers(behind(arn))
            .send()
    };
    for (arn, says) in [(&missing, "does not exist"), (&lonely, "does not have an associated load balancer")] {
        let e = create(arn).await.unwrap_err();
        assert_eq!(error_code(&e), "InvalidParameterException");
        let message = e.into_service_error().meta().message().unwrap_or_default().to_string();
        assert!(message.contains(says), "{message}");
    }
    let listed = ecs.list_services().cluster("chk").send().await.unwrap();
    assert!(listed.service_arns().is_empty(), "nothing was created");
}
