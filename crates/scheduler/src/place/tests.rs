//! Placement, case by case: each strategy's order, ties, the working copy that later tasks
//! see, constraints that change as tasks land, and the failure reasons.

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::Cluster;
use crate::{parse_constraint, parse_strategy};

const GROUP: &str = "family:web";

fn node(n: usize, zone: &str, cpu: i64, memory: i64) -> Instance {
    Instance {
        arn: format!("arn:aws:ecs:us-east-1:123456789012:container-instance/default/{n}"),
        ec2_instance_id: format!("i-{n:08x}"),
        attributes: [("ecs.availability-zone".to_owned(), Some(zone.to_owned()))].into(),
        remaining_cpu: cpu,
        remaining_memory: memory,
        agent_connected: true,
        agent_version: "1.87.0".into(),
        ..Instance::default()
    }
}

/// `n` identical instances in one zone with room for anything.
fn roomy(n: usize) -> Vec<Instance> {
    (0..n).map(|i| node(i, "us-east-1a", 1 << 20, 1 << 20)).collect()
}

fn with_tasks(mut i: Instance, group: &str, n: usize) -> Instance {
    i.task_groups.extend(std::iter::repeat_n(group.to_owned(), n));
    i.running_tasks_count += n as u32;
    i
}

fn task(cpu: i64, memory: i64) -> TaskNeeds {
    TaskNeeds { cpu, memory, group: GROUP.into(), ..TaskNeeds::default() }
}

fn strategy(t: &str, f: &str) -> Strategy {
    parse_strategy(t, Some(f)).unwrap()
}

fn member_of(e: &str) -> Constraint {
    parse_constraint("memberOf", Some(e)).unwrap()
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn run(instances: &[Instance], t: &TaskNeeds, count: usize, c: &[Constraint], s: &[Strategy]) -> Plan {
    place(instances, t, count, c, s, &mut rng())
}

fn reasons(plan: &Plan) -> Vec<&str> {
    plan.failures.iter().map(|f| f.reason.as_str()).collect()
}

#[test]
fn binpack_memory_fills_the_fullest_instance_first() {
    let instances = [node(0, "a", 4096, 4096), node(1, "a", 4096, 1024), node(2, "a", 4096, 2048)];
    let plan = run(&instances, &task(0, 512), 3, &[], &[strategy("binpack", "memory")]);
    assert_eq!(plan.placements, [1, 1, 2]);
    assert!(plan.failures.is_empty());
}

#[test]
fn binpack_cpu_fills_the_fullest_instance_first() {
    let instances = [node(0, "a", 1024, 4096), node(1, "a", 512, 4096), node(2, "a", 2048, 4096)];
    let plan = run(&instances, &task(256, 0), 4, &[], &[strategy("binpack", "cpu")]);
    assert_eq!(plan.placements, [1, 1, 0, 0]);
}

#[test]
fn spread_instance_id_counts_tasks_of_the_group_only() {
    let instances = [
        with_tasks(node(0, "a", 4096, 4096), GROUP, 2),
        // Many tasks, but of another group: they do not count.
        with_tasks(node(1, "a", 4096, 4096), "family:other", 9),
        with_tasks(node(2, "a", 4096, 4096), GROUP, 1),
    ];
    let plan = run(&instances, &task(1, 1), 4, &[], &[strategy("spread", "instanceId")]);
    assert_eq!(plan.placements, [1, 1, 2, 0]);
    let host = run(&instances, &task(1, 1), 4, &[], &[strategy("spread", "host")]);
    assert_eq!(host.placements, plan.placements);
}

#[test]
fn spread_attribute_balances_values_counting_existing_tasks() {
    let instances = [
        with_tasks(node(0, "us-east-1a", 4096, 4096), GROUP, 1),
        node(1, "us-east-1a", 4096, 4096),
        with_tasks(node(2, "us-east-1b", 4096, 4096), GROUP, 1),
        node(3, "us-east-1c", 4096, 4096),
    ];
    let zone = strategy("spread", "attribute:ecs.availability-zone");
    let plan = run(&instances, &task(1, 1), 6, &[], std::slice::from_ref(&zone));
    // a=1, b=1, c=0: c first, then the value ties go to the earliest instance.
    assert_eq!(plan.placements, [3, 0, 2, 3, 0, 2]);
}

#[test]
fn spread_counts_tasks_on_instances_that_cannot_take_more() {
    let instances = [
        // Zone a's only task sits on a full instance; zone a still counts it.
        with_tasks(node(0, "us-east-1a", 0, 0), GROUP, 1),
        node(1, "us-east-1a", 4096, 4096),
        node(2, "us-east-1b", 4096, 4096),
    ];
    let zone = strategy("spread", "attribute:ecs.availability-zone");
    let plan = run(&instances, &task(1, 1), 2, &[], &[zone]);
    assert_eq!(plan.placements, [2, 1]);
}

#[test]
fn an_instance_without_the_attribute_is_its_own_value() {
    let mut bare = node(2, "x", 4096, 4096);
    bare.attributes.clear();
    let instances = [node(0, "us-east-1a", 4096, 4096), node(1, "us-east-1b", 4096, 4096), bare];
    let zone = strategy("spread", "attribute:ecs.availability-zone");
    let plan = run(&instances, &task(1, 1), 3, &[], &[zone]);
    assert_eq!(plan.placements, [0, 1, 2]);
}

#[test]
fn a_later_strategy_breaks_ties_of_an_earlier_one() {
    let instances = [
        node(0, "us-east-1a", 4096, 4096),
        node(1, "us-east-1a", 4096, 1024),
        node(2, "us-east-1b", 4096, 3072),
        node(3, "us-east-1b", 4096, 2048),
    ];
    let s = [strategy("spread", "attribute:ecs.availability-zone"), strategy("binpack", "memory")];
    let plan = run(&instances, &task(1, 512), 4, &[], &s);
    // Zones alternate; within a zone the instance with the least memory wins.
    assert_eq!(plan.placements, [1, 3, 1, 3]);
}

#[test]
fn remaining_ties_go_to_the_earliest_instance() {
    let plan = run(&roomy(5), &task(1, 1), 3, &[], &[strategy("binpack", "memory")]);
    assert_eq!(plan.placements, [0, 0, 0]);
}

#[test]
fn random_is_reproducible_from_the_seed_and_covers_every_candidate() {
    let instances = roomy(4);
    let a = place(&instances, &task(1, 1), 400, &[], &[Strategy::Random], &mut StdRng::seed_from_u64(1));
    let b = place(&instances, &task(1, 1), 400, &[], &[Strategy::Random], &mut StdRng::seed_from_u64(1));
    let c = place(&instances, &task(1, 1), 400, &[], &[Strategy::Random], &mut StdRng::seed_from_u64(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    for i in 0..4 {
        let n = a.placements.iter().filter(|&&p| p == i).count();
        assert!((60..=140).contains(&n), "instance {i} got {n} of 400");
    }
}

#[test]
fn no_strategy_means_random() {
    let instances = roomy(6);
    let default = run(&instances, &task(1, 1), 50, &[], &[]);
    let random = run(&instances, &task(1, 1), 50, &[], &[Strategy::Random]);
    assert_eq!(default, random);
    assert!(default.placements.iter().any(|&p| p != default.placements[0]));
}

#[test]
fn random_only_chooses_among_ties_of_the_strategies_before_it() {
    let instances = [node(0, "a", 9999, 1024), node(1, "a", 9999, 4096), node(2, "a", 9999, 1024)];
    let s = [strategy("binpack", "memory"), Strategy::Random];
    for seed in 0..20 {
        let plan = place(&instances, &task(1, 1), 1, &[], &s, &mut StdRng::seed_from_u64(seed));
        assert_ne!(plan.placements, [1], "seed {seed}");
    }
}

#[test]
fn strategies_after_random_have_nothing_to_break() {
    let instances = roomy(5);
    let after = run(&instances, &task(1, 1), 30, &[], &[Strategy::Random, strategy("binpack", "memory")]);
    assert_eq!(after, run(&instances, &task(1, 1), 30, &[], &[Strategy::Random]));
}

#[test]
fn later_tasks_see_what_earlier_ones_took() {
    let plan = run(&[node(0, "a", 1024, 1024)], &task(256, 512), 3, &[], &[]);
    assert_eq!(plan.placements, [0, 0]);
    assert_eq!(reasons(&plan), ["RESOURCE:MEMORY"]);
}

#[test]
fn static_ports_are_not_booked_twice() {
    let mut t = task(1, 1);
    t.static_ports_tcp = vec![80];
    t.static_ports_udp = vec![53];
    let mut taken_tcp = node(2, "a", 4096, 4096);
    taken_tcp.used_ports_tcp.insert(80);
    let mut udp_only = node(3, "a", 4096, 4096);
    // The same number on the other protocol does not clash.
    udp_only.used_ports_tcp.insert(53);
    let instances = [node(0, "a", 4096, 4096), node(1, "a", 4096, 4096), taken_tcp, udp_only];
    let plan = run(&instances, &t, 4, &[], &[strategy("binpack", "memory")]);
    assert_eq!(plan.placements, [0, 1, 3]);
    assert_eq!(reasons(&plan), ["RESOURCE:PORTS"; 4]);
}

#[test]
fn each_instance_reports_its_first_failing_check() {
    let mut t = task(512, 512);
    t.static_ports_tcp = vec![8080];
    t.required_attributes = vec!["ecs.capability.task-eni".into()];
    let mut disconnected = node(0, "a", 0, 0);
    disconnected.agent_connected = false;
    let mut draining = node(6, "a", 4096, 4096);
    draining.draining = true;
    let mut ports = node(4, "a", 4096, 4096);
    ports.used_ports_tcp.insert(8080);
    let mut attribute = node(5, "a", 4096, 4096);
    attribute.used_ports_tcp.insert(80);
    let instances = [
        disconnected,
        node(1, "a", 100, 100), // short of both: CPU is checked first
        node(2, "a", 4096, 100),
        node(3, "a", 100, 4096),
        ports,
        attribute,
        draining,
    ];
    let plan = run(&instances, &t, 1, &[], &[]);
    assert!(plan.placements.is_empty());
    assert_eq!(
        reasons(&plan),
        ["AGENT", "RESOURCE:CPU", "RESOURCE:MEMORY", "RESOURCE:CPU", "RESOURCE:PORTS", "ATTRIBUTE"]
    );
    assert_eq!(plan.failures[4].arn, instances[4].arn);
}

#[test]
fn required_attributes_must_exist() {
    let mut t = task(1, 1);
    t.required_attributes = vec!["ecs.capability.docker-remote-api.1.19".into()];
    let mut capable = node(1, "a", 4096, 4096);
    capable.attributes.insert("ecs.capability.docker-remote-api.1.19".into(), None);
    let plan = run(&[node(0, "a", 4096, 4096), capable], &t, 1, &[], &[]);
    assert_eq!(plan.placements, [1]);
}

#[test]
fn distinct_instance_puts_one_task_of_the_group_per_instance() {
    let instances =
        [node(0, "a", 4096, 4096), with_tasks(node(1, "a", 4096, 4096), GROUP, 1), node(2, "a", 4096, 4096)];
    let plan = run(&instances, &task(1, 1), 3, &[Constraint::DistinctInstance], &[strategy("binpack", "memory")]);
    assert_eq!(plan.placements, [0, 2]);
    assert_eq!(reasons(&plan), ["ATTRIBUTE"; 3]);
}

#[test]
fn member_of_filters_by_attribute() {
    let mut t3 = node(1, "a", 4096, 4096);
    t3.attributes.insert("ecs.instance-type".into(), Some("t3.large".into()));
    let mut m5 = node(0, "a", 4096, 4096);
    m5.attributes.insert("ecs.instance-type".into(), Some("m5.large".into()));
    let c = [member_of("attribute:ecs.instance-type =~ t3.*")];
    let plan = run(&[m5, t3], &task(1, 1), 2, &c, &[]);
    assert_eq!(plan.placements, [1, 1]);
}

#[test]
fn affinity_to_another_group() {
    let instances = [node(0, "a", 4096, 4096), with_tasks(node(1, "a", 4096, 4096), "service:db", 1)];
    let plan = run(&instances, &task(1, 1), 2, &[member_of("task:group == service:db")], &[]);
    assert_eq!(plan.placements, [1, 1]);
}

#[test]
fn constraints_on_tasks_see_tasks_placed_by_this_plan() {
    let instances = roomy(2);
    let anti = [member_of("not(task:group == family:web)")];
    let plan = run(&instances, &task(1, 1), 3, &anti, &[strategy("binpack", "memory")]);
    assert_eq!(plan.placements, [0, 1]);
    assert_eq!(reasons(&plan), ["ATTRIBUTE"; 2]);

    let few = [member_of("runningTasksCount < 2")];
    let plan =
        run(&[with_tasks(node(0, "a", 4096, 4096), "x", 1), node(1, "a", 4096, 4096)], &task(1, 1), 4, &few, &[]);
    assert_eq!(plan.placements.len(), 3);
    assert_eq!(plan.placements.iter().filter(|&&p| p == 0).count(), 1);
}

#[test]
fn nothing_to_place_on_means_no_failures() {
    let plan = run(&[], &task(1, 1), 3, &[], &[]);
    assert_eq!(plan, Plan::default());
    let mut draining = node(0, "a", 4096, 4096);
    draining.draining = true;
    assert_eq!(run(&[draining], &task(1, 1), 3, &[], &[]), Plan::default());
    assert_eq!(run(&roomy(2), &task(1, 1), 0, &[], &[]), Plan::default());
}

#[test]
fn a_draining_instances_tasks_do_not_count_for_spread() {
    let mut draining = with_tasks(node(0, "us-east-1a", 4096, 4096), GROUP, 5);
    draining.draining = true;
    let instances =
        [draining, node(1, "us-east-1b", 4096, 4096), with_tasks(node(2, "us-east-1a", 4096, 4096), "x", 0)];
    let zone = strategy("spread", "attribute:ecs.availability-zone");
    let plan = run(&instances, &task(1, 1), 2, &[], &[zone]);
    assert_eq!(plan.placements, [1, 2]);
}

/// A cluster of `n` instances drawn from `seed`: three zones, four instance types, some
/// tasks of three groups, a few instances full, disconnected, draining or holding port 80.
fn varied(n: usize, seed: u64) -> Vec<Instance> {
    use rand::Rng;
    let mut r = StdRng::seed_from_u64(seed);
    let zones = ["us-east-1a", "us-east-1b", "us-east-1c"];
    let types = ["t3.small", "t3.large", "m5.large", "c5.xlarge"];
    (0..n)
        .map(|i| {
            let mut inst = node(i, zones[r.gen_range(0..3)], r.gen_range(0..6) * 512, r.gen_range(0..6) * 1024);
            inst.attributes.insert("ecs.instance-type".into(), Some(types[r.gen_range(0..4)].into()));
            if r.gen_bool(0.3) {
                inst.attributes.insert("stack".into(), Some(["prod", "dev"][r.gen_range(0..2)].into()));
            }
            for group in [GROUP, "family:db", "service:api"] {
                inst = with_tasks(inst, group, r.gen_range(0..3));
            }
            inst.agent_connected = !r.gen_bool(0.05);
            inst.draining = r.gen_bool(0.05);
            if r.gen_bool(0.2) {
                inst.used_ports_tcp.insert(80);
            }
            inst
        })
        .collect()
}

#[test]
fn buckets_choose_exactly_what_a_scan_of_every_candidate_chooses() {
    let orders: Vec<Vec<Strategy>> = vec![
        vec![strategy("spread", "attribute:ecs.availability-zone"), strategy("binpack", "memory")],
        vec![strategy("binpack", "cpu")],
        vec![strategy("spread", "instanceId")],
        vec![strategy("binpack", "memory"), strategy("spread", "attribute:ecs.availability-zone")],
        vec![
            strategy("spread", "attribute:ecs.availability-zone"),
            strategy("spread", "attribute:ecs.instance-type"),
            strategy("binpack", "cpu"),
        ],
        vec![strategy("spread", "attribute:stack"), strategy("spread", "instanceId"), strategy("binpack", "memory")],
    ];
    let rules: Vec<Vec<Constraint>> = vec![
        vec![],
        vec![member_of("attribute:ecs.instance-type =~ t3.*")],
        vec![Constraint::DistinctInstance],
        vec![member_of("not(task:group == family:db) and attribute:stack != dev")],
        vec![member_of("runningTasksCount < 5")],
    ];
    let mut compared = 0;
    for seed in 0..12 {
        let instances = varied(150, seed);
        for strategies in &orders {
            for constraints in &rules {
                for (count, mut needs) in [(40, task(128, 256)), (7, task(512, 1024)), (300, task(64, 64))] {
                    if seed % 3 == 0 {
                        needs.static_ports_tcp = vec![80];
                    }
                    let by = |selection| {
                        Cluster::new(instances.clone()).place_by(
                            &needs,
                            count,
                            constraints,
                            strategies,
                            &mut rng(),
                            selection,
                        )
                    };
                    let (fast, scan) = (by(Selection::Fastest), by(Selection::Scan));
                    assert_eq!(fast, scan, "seed {seed}, {strategies:?}, {constraints:?}, {count} tasks");
                    compared += fast.placements.len();
                }
            }
        }
    }
    assert!(compared > 10_000, "the cases place enough tasks to compare: {compared}");
}

#[test]
fn an_index_kept_across_calls_places_as_one_built_from_the_instances() {
    let strategies = [strategy("spread", "attribute:ecs.availability-zone"), strategy("binpack", "memory")];
    let constraints = [member_of("attribute:ecs.instance-type =~ t3.* or attribute:stack == prod")];
    let mut kept = Cluster::new(varied(120, 99));
    let mut placed: Vec<(usize, TaskNeeds)> = Vec::new();
    for round in 0..60 {
        let mut needs = task(64 * (1 + round % 3), 128);
        needs.group = ["family:web", "service:api", "family:db"][round as usize % 3].into();
        let fresh = Cluster::new(kept.instances().to_vec()).place(&needs, 5, &constraints, &strategies, &mut rng());
        let plan = kept.place(&needs, 5, &constraints, &strategies, &mut rng());
        assert_eq!(plan, fresh, "round {round}");
        for &i in &plan.placements {
            kept.record(i, &needs);
            placed.push((i, needs.clone()));
        }
        // Tasks stop, and instances change under the kept verdicts and values, as a
        // caller tells the index: the instance as it is now.
        if round % 4 == 3 {
            let (i, needs) = placed.remove(placed.len() / 2);
            let mut freed = kept.instances()[i].clone();
            freed.remaining_cpu += needs.cpu;
            freed.remaining_memory += needs.memory;
            freed.running_tasks_count -= 1;
            let at = freed.task_groups.iter().position(|g| *g == needs.group).unwrap();
            freed.task_groups.swap_remove(at);
            kept.set(i, freed);
        }
        if round % 5 == 4 {
            let i = (round as usize * 7) % kept.instances().len();
            let mut changed = kept.instances()[i].clone();
            let kind = if round % 10 == 4 { "t3.medium" } else { "m5.large" };
            changed.attributes.insert("ecs.instance-type".into(), Some(kind.into()));
            changed.attributes.insert("ecs.availability-zone".into(), Some(format!("us-east-1{}", round % 4)));
            kept.set(i, changed);
        }
    }
    assert!(!placed.is_empty());
}
