//! Placement throughput on a simulated large cluster: 5,000 instances across three zones,
//! 100,000 tasks that accumulate on them, placed with a `memberOf` constraint and
//! `spread(attribute:ecs.availability-zone)` then `binpack(memory)`. Prints placements per
//! second and the process's peak resident memory. A benchmark, not a test: it asserts
//! nothing.
//!
//! Usage: `scheduler-bench [--uniform-names] [--rebuild] [--random] [BATCH...]` (default
//! batches `10 1000`). Each batch size is one run on a fresh cluster: 10 is a RunTask
//! call's maximum count, 1000 a service scaling up at once. The placement index
//! (`scheduler::Cluster`) is kept across calls and told of each placement, as a caller
//! that keeps it does; `--rebuild` builds it afresh from the instances for every call
//! instead (what a caller holding only a snapshot pays). `--uniform-names` names the
//! services `svc-00`..`svc-19`, all of one length. `--random` places with ECS's RunTask
//! default, `random`, instead of the spread and binpack strategies.

#![allow(clippy::print_stdout)] // Printing its figures is what a benchmark is for.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scheduler::{parse_constraint, parse_strategy, Cluster, Instance, Strategy, TaskNeeds};

const INSTANCES: usize = 5_000;
const TASKS: usize = 100_000;
/// Service names as a real cluster has them: lengths vary, and some coincide.
const SERVICES: [&str; 20] = [
    "web",
    "api",
    "orders",
    "payments",
    "checkout",
    "search",
    "cart",
    "auth",
    "notifications",
    "inventory",
    "recommendations",
    "shipping",
    "catalog",
    "reviews",
    "billing",
    "email-worker",
    "image-resizer",
    "analytics",
    "gateway",
    "session",
];
const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
/// Instance types with the CPU units and MiB an ECS agent typically registers for them.
const TYPES: [(&str, i64, i64); 8] = [
    ("t3.medium", 2048, 3_800),
    ("t3.large", 2048, 7_800),
    ("t3.xlarge", 4096, 15_800),
    ("t3.2xlarge", 8192, 31_800),
    ("m5.large", 2048, 7_700),
    ("m5.xlarge", 4096, 15_600),
    ("c5.xlarge", 4096, 7_400),
    ("c5.2xlarge", 8192, 15_400),
];
/// Task sizes (CPU units, MiB) the services cycle through.
const SIZES: [(i64, i64); 5] = [(32, 128), (64, 256), (128, 256), (64, 512), (32, 64)];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let uniform = args.iter().any(|a| a == "--uniform-names");
    let rebuild = args.iter().any(|a| a == "--rebuild");
    let random = args.iter().any(|a| a == "--random");
    let mut batches: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if batches.is_empty() {
        batches = vec![10, 1000];
    }
    let names: Vec<String> = SERVICES
        .iter()
        .enumerate()
        .map(|(n, name)| if uniform { format!("service:svc-{n:02}") } else { format!("service:{name}") })
        .collect();
    println!("scheduler-bench: {INSTANCES} instances, {TASKS} tasks of {} services", names.len());
    println!("  constraint memberOf(attribute:ecs.instance-type =~ t3.*)");
    let strategies = if random {
        println!("  strategy random");
        vec![Strategy::Random]
    } else {
        println!("  strategies spread(attribute:ecs.availability-zone), binpack(memory)");
        vec![
            parse_strategy("spread", Some("attribute:ecs.availability-zone")).expect("valid"),
            parse_strategy("binpack", Some("memory")).expect("valid"),
        ]
    };
    println!("  placement index {}", if rebuild { "rebuilt for every call" } else { "kept across calls" });
    for batch in batches.into_iter().filter(|&b| b > 0) {
        run(batch, &names, &strategies, rebuild);
    }
    println!("peak resident memory (VmHWM): {}", peak_memory().unwrap_or_else(|| "unknown".to_owned()));
}

fn run(batch: usize, names: &[String], strategies: &[Strategy], rebuild: bool) {
    let mut rng = StdRng::seed_from_u64(2024);
    let mut index = Cluster::new(cluster(&mut rng));
    let services: Vec<TaskNeeds> = names
        .iter()
        .enumerate()
        .map(|(s, name)| TaskNeeds {
            cpu: SIZES[s % SIZES.len()].0,
            memory: SIZES[s % SIZES.len()].1,
            group: name.clone(),
            ..TaskNeeds::default()
        })
        .collect();
    let constraints = [parse_constraint("memberOf", Some("attribute:ecs.instance-type =~ t3.*")).expect("valid")];

    let mut placed = 0;
    let mut calls = 0usize;
    let mut in_place = Duration::ZERO;
    let mut per_zone: BTreeMap<(usize, &str), usize> = BTreeMap::new();
    let started = Instant::now();
    while placed < TASKS {
        let service = calls % services.len();
        let task = &services[service];
        let t = Instant::now();
        if rebuild {
            index = Cluster::new(index.instances().to_vec());
        }
        let plan = index.place(task, batch.min(TASKS - placed), &constraints, strategies, &mut rng);
        in_place += t.elapsed();
        calls += 1;
        if plan.placements.is_empty() {
            println!("  the cluster is full after {placed} tasks ({} instances refused)", plan.failures.len());
            break;
        }
        // Feed the plan back, as the control plane would once the tasks are recorded.
        for &i in &plan.placements {
            index.record(i, task);
            let zone = index.instances()[i].attributes["ecs.availability-zone"].as_deref().unwrap_or("-");
            *per_zone.entry((service, ZONES.iter().find(|z| **z == zone).copied().unwrap_or("-"))).or_default() += 1;
        }
        placed += plan.placements.len();
    }
    let total = started.elapsed();

    let used = index.instances().iter().filter(|i| i.running_tasks_count > 0).count();
    let worst_skew = (0..services.len())
        .map(|s| {
            let counts: Vec<usize> = ZONES.iter().map(|z| per_zone.get(&(s, *z)).copied().unwrap_or(0)).collect();
            counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0)
        })
        .max()
        .unwrap_or(0);
    println!("batch {batch} per call ({calls} calls):");
    println!(
        "  placed {placed} tasks in {:.3} s: {:.0} placements/s overall, {:.0} placements/s inside place()",
        total.as_secs_f64(),
        placed as f64 / total.as_secs_f64(),
        placed as f64 / in_place.as_secs_f64(),
    );
    println!("  {used} instances in use; largest zone imbalance of one service: {worst_skew} tasks");
}

fn cluster(rng: &mut StdRng) -> Vec<Instance> {
    (0..INSTANCES)
        .map(|n| {
            let (kind, cpu, memory) = TYPES[rng.gen_range(0..TYPES.len())];
            let zone = ZONES[n % ZONES.len()];
            let attributes = [
                ("ecs.availability-zone", Some(zone)),
                ("ecs.instance-type", Some(kind)),
                ("ecs.os-type", Some("linux")),
                ("ecs.cpu-architecture", Some("x86_64")),
                ("ecs.ami-id", Some("ami-0123456789abcdef0")),
                ("ecs.capability.docker-remote-api.1.44", None),
                ("ecs.capability.task-eni", None),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.map(str::to_owned)))
            .collect();
            Instance {
                arn: format!("arn:aws:ecs:us-east-1:123456789012:container-instance/bench/{n:032x}"),
                ec2_instance_id: format!("i-{n:017x}"),
                attributes,
                remaining_cpu: cpu,
                remaining_memory: memory,
                used_ports_tcp: [22, 2375, 2376, 51678, 51679].into(),
                used_ports_udp: Default::default(),
                running_tasks_count: 0,
                agent_connected: n % 250 != 7,
                agent_version: "1.87.0".to_owned(),
                registered_at: 1.7e9 + n as f64,
                // One instance in a hundred is being drained.
                draining: n % 100 == 42,
                task_groups: Vec::new(),
            }
        })
        .collect()
}

/// The peak resident set size the kernel reports for this process.
fn peak_memory() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.trim_start_matches("VmHWM:").trim().to_owned())
}
