//! The service controller at scale (issue 19): how long one pass over every service takes
//! when nothing needs doing, and what an idle cluster costs while the controller runs.
//!
//! Builds, in one process, a control plane on SQLite with `BENCH_INSTANCES` container
//! instances (agents attached, as connected agents are) and `BENCH_SERVICES` REPLICA
//! services of `BENCH_TASKS` tasks each, all in one cluster, placed by the controller
//! itself and reported RUNNING as agents report them. Then times `BENCH_PASSES` passes
//! one after another, and runs the controller's own loop for `BENCH_IDLE_SECONDS`,
//! reading the process's CPU time before and after. Last, `BENCH_RUNTASKS` RunTask calls
//! of 10 tasks each on that cluster, one after another (placement and the durable commit).
//! Run by `bench/controller.sh`.

// A benchmark's report is its output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_protocol::TaskReport;
use control_plane::ecs::instances::NewInstance;
use control_plane::ecs::run_task::TaskRequest as RunTask;
use control_plane::ecs::services::ServiceSpec;
use control_plane::{Caller, ControlPlane};
use futures_util::stream::{self, StreamExt};
use model::ecs::service::RolloutState;
use model::ecs::task::{container_instance_arn, DesiredStatus, Resources, TaskStatus};
use model::{AccountId, Region, Scope, Timestamp};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The process's user and system CPU time so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The fields after the command name (which may hold spaces) start after its ')'.
    let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let (services, tasks, instances) =
        (setting("BENCH_SERVICES", 5000), setting("BENCH_TASKS", 10), setting("BENCH_INSTANCES", 500));
    let (passes, idle_seconds) = (setting("BENCH_PASSES", 20), setting("BENCH_IDLE_SECONDS", 10));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Arc::new(store::SqliteStore::open(&dir.path().join("berth.db")).expect("the store"));
    let cp = Arc::new(ControlPlane::open(store).expect("the control plane"));
    let scope =
        Scope { account: AccountId::parse("123456789012").unwrap(), region: Region::parse("us-east-1").unwrap() };
    let caller = Caller::root(scope.clone());
    let started = Instant::now();

    // Instances big enough for every task, in three zones.
    let per_instance = (services * tasks).div_ceil(instances) as i64 + 1;
    let mut links = Vec::new();
    for i in 0..instances {
        let zone = format!("us-east-1{}", ["a", "b", "c"][i % 3]);
        let instance = NewInstance {
            resources: Resources { cpu: 10 * per_instance, memory: 32 * per_instance, ..Default::default() },
            attributes: vec![("ecs.availability-zone".into(), Some(zone))],
            ..Default::default()
        };
        let inst = cp.ecs().register_container_instance(&caller, instance).await.expect("an instance");
        let arn = inst.arn().to_string();
        let (connection, link) = cp.agents.attach(&arn);
        links.push((arn, connection, link));
    }
    // The agents' heartbeats, as their channels would deliver them.
    let heartbeats = tokio::spawn({
        let cp = cp.clone();
        let agents: Vec<(String, u64)> = links.iter().map(|(arn, c, _)| (arn.clone(), *c)).collect();
        async move {
            loop {
                for (arn, connection) in &agents {
                    cp.agents.seen(arn, *connection);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let td = serde_json::json!({
        "family": "web",
        "containerDefinitions": [{"name": "web", "image": "simplehttp", "memory": 32, "cpu": 10}],
    });
    let td = model::ecs::NewTaskDefinition::parse(serde_json::from_value(td).unwrap()).unwrap();
    cp.ecs().register_task_definition(&caller, td).await.expect("the task definition");
    stream::iter(0..services)
        .for_each_concurrent(256, |i| {
            let (cp, caller) = (cp.clone(), caller.clone());
            async move {
                let spec = ServiceSpec {
                    name: format!("svc-{i}"),
                    task_definition: Some("web".into()),
                    desired_count: Some(tasks as i32),
                    ..Default::default()
                };
                cp.ecs().create_service(&caller, spec).await.expect("a service");
            }
        })
        .await;
    eprintln!("{instances} instances and {services} services created in {:.1?}", started.elapsed());

    // The controller places the tasks; the "agents" report them running, started long
    // enough ago that their deployments complete.
    let want = services * tasks;
    let mut stalls = 0;
    loop {
        cp.service_controller_pass().await.expect("a pass");
        let view = cp.view();
        let pending: Vec<_> = view
            .tasks()
            .values()
            .filter(|t| t.desired_status == DesiredStatus::Running && t.last_status < TaskStatus::Running)
            .cloned()
            .collect();
        let running = view.tasks().values().filter(|t| t.last_status == TaskStatus::Running).count();
        let settled = view
            .services
            .values()
            .all(|s| s.deployments.len() == 1 && s.deployments[0].rollout_state == RolloutState::Completed);
        eprintln!("{running} of {want} tasks running, {} to report", pending.len());
        if pending.is_empty() && running >= want && settled {
            break;
        }
        if pending.is_empty() {
            // Nothing placed in this pass: say why, from a service still short of tasks.
            let short = view
                .services
                .values()
                .find(|s| s.deployments.first().is_none_or(|d| d.rollout_state != RolloutState::Completed));
            let said = short.and_then(|s| s.events.last()).map(|e| e.message.clone()).unwrap_or_default();
            stalls += 1;
            assert!(stalls < 3, "the controller places no more tasks: {said}");
        }
        let long_ago = Timestamp::from_epoch_seconds(Timestamp::now().epoch_seconds() - 600.0);
        stream::iter(pending)
            .for_each_concurrent(1024, |t| {
                let (cp, scope) = (cp.clone(), scope.clone());
                async move {
                    let instance =
                        container_instance_arn(&t.scope, &t.cluster, t.container_instance.as_deref().unwrap());
                    let report = TaskReport {
                        started_at: Some(long_ago),
                        ..TaskReport::new(t.arn().to_string(), TaskStatus::Running)
                    };
                    cp.ecs().report_task_state(&scope, &instance.to_string(), report).await.expect("a report");
                }
            })
            .await;
    }
    eprintln!("{want} tasks running after {:.1?}", started.elapsed());

    // Passes with nothing to do.
    let version = cp.view();
    let mut took = Vec::with_capacity(passes);
    for _ in 0..passes {
        let t = Instant::now();
        cp.service_controller_pass().await.expect("a pass");
        took.push(t.elapsed());
    }
    assert!(Arc::ptr_eq(&version, &cp.view()), "an idle pass changed nothing");
    // The first decides every service again (none is known settled yet); the rest skip
    // the settled ones, as the controller's loop does on an idle cluster.
    let first = took[0];
    took.sort();

    // The controller's own loop on the idle cluster.
    let before = cpu_time();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(cp.clone().run_service_controller(async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_secs(idle_seconds as u64)).await;
    let _ = stop.send(());
    controller.await.expect("the controller");
    let idle = (cpu_time() - before).as_secs_f64() / idle_seconds as f64 * 100.0;

    // RunTask calls of RunTask's most, 10 tasks, on the busy cluster, one after another:
    // placement by the cluster's kept index, and each call's durable commit.
    let calls = setting("BENCH_RUNTASKS", 200);
    let mut run_took = Vec::with_capacity(calls);
    let mut placed = 0;
    let runs_started = Instant::now();
    for _ in 0..calls {
        let req = RunTask {
            task_definition: "web".into(),
            count: 10,
            group: Some("family:batch".into()),
            strategies: vec![
                ("spread".into(), Some("attribute:ecs.availability-zone".into())),
                ("binpack".into(), Some("memory".into())),
            ],
            ..RunTask::default()
        };
        let t = Instant::now();
        placed += cp.ecs().run_task(&caller, req).await.expect("RunTask").0.len();
        run_took.push(t.elapsed());
    }
    let runs_took = runs_started.elapsed();
    run_took.sort();

    println!("services {services}, tasks {want} ({tasks} a service), instances {instances}, one cluster");
    println!(
        "idle pass ms: p50 {:.1}, p90 {:.1}, max {:.1} ({passes} passes)",
        percentile(&took, 0.5),
        percentile(&took, 0.9),
        percentile(&took, 1.0)
    );
    println!("first idle pass (every service decided): {:.1} ms", first.as_secs_f64() * 1e3);
    println!("idle cluster, controller loop running: {idle:.2}% of one CPU over {idle_seconds} s");
    if calls > 0 {
        println!(
            "RunTask of 10 (spread zone, binpack memory) x{calls}: {placed} placed, {:.0} placements/s, call ms p50 {:.2}, p99 {:.2}",
            placed as f64 / runs_took.as_secs_f64(),
            percentile(&run_took, 0.5),
            percentile(&run_took, 0.99)
        );
    }
    heartbeats.abort();
    drop(links);
}
