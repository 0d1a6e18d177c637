//! Properties of placement over random clusters, checked against a plain reference model
//! that replays a plan one task at a time: no instance is over-committed or has a port
//! booked twice, every placement satisfies every constraint, `distinctInstance` never
//! doubles up a group, each task goes where the strategies say, and a plan stops only when
//! nothing fits, with the failure reason the model expects for every instance. Also: a
//! parsed expression reads back the same from its `Display`.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use scheduler::{
    eval, parse_constraint, parse_expression, parse_strategy, place, BinpackField, Constraint, Instance, SpreadField,
    Strategy as PlacementStrategy, TaskNeeds,
};

const GROUPS: [&str; 3] = ["family:web", "service:db", "family:batch"];
const ZONE: &str = "ecs.availability-zone";
const EXPRESSIONS: [&str; 6] = [
    "attribute:ecs.instance-type =~ t3.*",
    "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]",
    "not(task:group == service:db)",
    "runningTasksCount < 3",
    "task:group != family:web or attribute:stack == prod",
    "attribute:stack exists && agentVersion >= 1.50.0",
];

fn arb_instance() -> impl Strategy<Value = Instance> {
    (
        (0i64..4096, 0i64..8192, 0usize..3, 0usize..3, proptest::option::of(0usize..2)),
        (proptest::sample::subsequence(vec![80u16, 443, 8080], 0..=3), proptest::bool::weighted(0.1)),
        (proptest::bool::weighted(0.9), proptest::bool::weighted(0.1), 0usize..2),
        (proptest::collection::vec(0usize..3, 0..5), 0u32..3),
    )
        .prop_map(
            |((cpu, memory, zone, kind, stack), (ports, udp53), (connected, draining, agent), (groups, extra))| {
                let mut attributes = BTreeMap::new();
                attributes.insert(ZONE.to_owned(), Some(["us-east-1a", "us-east-1b", "us-east-1c"][zone].to_owned()));
                attributes.insert(
                    "ecs.instance-type".to_owned(),
                    Some(["t3.small", "t3.large", "m5.large"][kind].to_owned()),
                );
                if let Some(s) = stack {
                    attributes.insert("stack".to_owned(), Some(["prod", "dev"][s].to_owned()));
                }
                if kind == 1 {
                    attributes.insert("ecs.capability.task-eni".to_owned(), None);
                }
                let task_groups: Vec<String> = groups.iter().map(|&g| GROUPS[g].to_owned()).collect();
                Instance {
                    arn: String::new(),
                    ec2_instance_id: String::new(),
                    attributes,
                    remaining_cpu: cpu,
                    remaining_memory: memory,
                    used_ports_tcp: ports.into_iter().collect(),
                    used_ports_udp: if udp53 { [53].into() } else { Default::default() },
                    running_tasks_count: task_groups.len() as u32 + extra,
                    agent_connected: connected,
                    agent_version: ["1.40.0", "1.87.0"][agent].to_owned(),
                    registered_at: 1.5e9,
                    draining,
                    task_groups,
                }
            },
        )
}

fn arb_cluster() -> impl Strategy<Value = Vec<Instance>> {
    proptest::collection::vec(arb_instance(), 0..12).prop_map(|mut v| {
        for (i, instance) in v.iter_mut().enumerate() {
            instance.arn = format!("arn:aws:ecs:us-east-1:123456789012:container-instance/c/{i}");
            instance.ec2_instance_id = format!("i-{i:08x}");
        }
        v
    })
}

fn arb_task() -> impl Strategy<Value = TaskNeeds> {
    (
        0i64..1024,
        1i64..2048,
        proptest::sample::subsequence(vec![80u16, 8080], 0..=2),
        proptest::bool::weighted(0.2),
        0usize..3,
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(cpu, memory, tcp, udp, group, eni)| TaskNeeds {
            cpu,
            memory,
            static_ports_tcp: tcp,
            static_ports_udp: if udp { vec![53] } else { vec![] },
            group: GROUPS[group].to_owned(),
            required_attributes: if eni { vec!["ecs.capability.task-eni".to_owned()] } else { vec![] },
        })
}

fn arb_constraints() -> impl Strategy<Value = Vec<Constraint>> {
    (proptest::bool::weighted(0.3), proptest::sample::subsequence(EXPRESSIONS.to_vec(), 0..=2)).prop_map(
        |(distinct, exprs)| {
            let mut c: Vec<Constraint> =
                exprs.into_iter().map(|e| parse_constraint("memberOf", Some(e)).unwrap()).collect();
            if distinct {
                c.push(parse_constraint("distinctInstance", None).unwrap());
            }
            c
        },
    )
}

fn arb_strategies() -> impl Strategy<Value = Vec<PlacementStrategy>> {
    let one = prop_oneof![
        Just(("binpack", Some("cpu"))),
        Just(("binpack", Some("memory"))),
        Just(("spread", Some("instanceId"))),
        Just(("spread", Some("attribute:ecs.availability-zone"))),
        Just(("spread", Some("attribute:stack"))),
        Just(("random", None)),
    ];
    proptest::collection::vec(one, 0..4)
        .prop_map(|v| v.into_iter().map(|(t, f)| parse_strategy(t, f).unwrap()).collect())
}

/// The first check `i` fails for `task`, in ECS's order, or `None` if it can take it.
fn rejection(i: &Instance, task: &TaskNeeds, constraints: &[Constraint]) -> Option<&'static str> {
    if !i.agent_connected {
        return Some("AGENT");
    }
    if i.remaining_cpu < task.cpu {
        return Some("RESOURCE:CPU");
    }
    if i.remaining_memory < task.memory {
        return Some("RESOURCE:MEMORY");
    }
    if task.static_ports_tcp.iter().any(|p| i.used_ports_tcp.contains(p))
        || task.static_ports_udp.iter().any(|p| i.used_ports_udp.contains(p))
    {
        return Some("RESOURCE:PORTS");
    }
    let attributes = task.required_attributes.iter().all(|a| i.attributes.contains_key(a));
    let rules = constraints.iter().all(|c| match c {
        Constraint::DistinctInstance => !i.task_groups.contains(&task.group),
        Constraint::MemberOf(e) => eval(e, i),
    });
    if !(attributes && rules) {
        return Some("ATTRIBUTE");
    }
    None
}

/// The reference model's key for `i` under the strategies before the first `random`.
fn key(state: &[Instance], i: usize, task: &TaskNeeds, strategies: &[PlacementStrategy]) -> Vec<i64> {
    let group_tasks = |x: &Instance| x.task_groups.iter().filter(|g| **g == task.group).count() as i64;
    strategies
        .iter()
        .take_while(|s| **s != PlacementStrategy::Random)
        .map(|s| match s {
            PlacementStrategy::Binpack(BinpackField::Cpu) => state[i].remaining_cpu,
            PlacementStrategy::Binpack(BinpackField::Memory) => state[i].remaining_memory,
            PlacementStrategy::Spread(SpreadField::InstanceId) => group_tasks(&state[i]),
            PlacementStrategy::Spread(SpreadField::Attribute(name)) => {
                let value = state[i].attributes.get(name).cloned().flatten();
                state
                    .iter()
                    .filter(|x| !x.draining && x.attributes.get(name).cloned().flatten() == value)
                    .map(group_tasks)
                    .sum()
            }
            PlacementStrategy::Random => unreachable!(),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn plans_agree_with_the_reference_model(
        instances in arb_cluster(),
        task in arb_task(),
        count in 0usize..25,
        constraints in arb_constraints(),
        strategies in arb_strategies(),
        seed in any::<u64>(),
    ) {
        let plan = place(&instances, &task, count, &constraints, &strategies, &mut StdRng::seed_from_u64(seed));
        prop_assert!(plan.placements.len() <= count);
        let random = strategies.is_empty() || strategies.contains(&PlacementStrategy::Random);
        let mut state = instances.clone();
        for &chosen in &plan.placements {
            // Every placement is on an instance that can take the task right now: resources,
            // ports, required attributes and every constraint, given the tasks before it.
            let i = &state[chosen];
            prop_assert!(!i.draining);
            prop_assert_eq!(rejection(i, &task, &constraints), None);

            // And it is the one the strategies prefer (or one of those tied before `random`).
            let feasible: Vec<usize> = (0..state.len())
                .filter(|&j| !state[j].draining && rejection(&state[j], &task, &constraints).is_none())
                .collect();
            let best = feasible.iter().map(|&j| key(&state, j, &task, &strategies)).min().unwrap();
            let mine = key(&state, chosen, &task, &strategies);
            prop_assert_eq!(&mine, &best);
            if !random {
                let first = feasible.iter().copied().find(|&j| key(&state, j, &task, &strategies) == best);
                prop_assert_eq!(Some(chosen), first);
            }

            let i = &mut state[chosen];
            i.remaining_cpu -= task.cpu;
            i.remaining_memory -= task.memory;
            for p in &task.static_ports_tcp {
                prop_assert!(i.used_ports_tcp.insert(*p), "tcp port {} booked twice", p);
            }
            for p in &task.static_ports_udp {
                prop_assert!(i.used_ports_udp.insert(*p), "udp port {} booked twice", p);
            }
            i.task_groups.push(task.group.clone());
            i.running_tasks_count += 1;
        }
        // Nothing is over-committed (the generated instances start with no debt).
        for after in &state {
            prop_assert!(after.remaining_cpu >= 0 && after.remaining_memory >= 0);
        }
        if constraints.contains(&Constraint::DistinctInstance) {
            for (before, after) in instances.iter().zip(&state) {
                let added = after.task_groups.len() - before.task_groups.len();
                let had = before.task_groups.contains(&task.group);
                prop_assert!(added == 0 || (added == 1 && !had));
            }
        }
        if plan.placements.len() < count {
            // The plan stops only when nothing fits, and says why for each instance.
            let expected: Vec<(String, &str)> = state
                .iter()
                .filter(|i| !i.draining)
                .map(|i| (i.arn.clone(), rejection(i, &task, &constraints).expect("an instance could still take it")))
                .collect();
            let got: Vec<(String, &str)> = plan.failures.iter().map(|f| (f.arn.clone(), f.reason.as_str())).collect();
            prop_assert_eq!(got, expected);
        } else {
            prop_assert!(plan.failures.is_empty());
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_plan(
        instances in arb_cluster(),
        task in arb_task(),
        strategies in arb_strategies(),
        seed in any::<u64>(),
    ) {
        let a = place(&instances, &task, 10, &[], &strategies, &mut StdRng::seed_from_u64(seed));
        let b = place(&instances, &task, 10, &[], &strategies, &mut StdRng::seed_from_u64(seed));
        prop_assert_eq!(a, b);
    }

    #[test]
    fn expressions_read_back_from_their_display(
        parts in proptest::collection::vec((0usize..EXPRESSIONS.len(), 0usize..4), 1..5),
    ) {
        let mut text = String::new();
        for (n, &(e, join)) in parts.iter().enumerate() {
            if n > 0 {
                text.push_str(["and", "||", "or", "&&"][join]);
            }
            text.push_str(if join == 3 { " not (" } else { " (" });
            text.push_str(EXPRESSIONS[e]);
            text.push_str(") ");
        }
        let parsed = parse_expression(&text).unwrap();
        let shown = parsed.to_string();
        prop_assert_eq!(parse_expression(&shown).unwrap(), parsed);
    }
}
