//! Fuzz target for the cluster query language and the placement rules that carry it (see
//! `fuzzkit` for the engine and how to run it long). Seeds are the guide's expressions;
//! they are damaged byte by byte and spliced. The property: parsing never panics, an
//! accepted expression reads back the same from its canonical text and evaluates against
//! any instance, and a refusal says where the problem is.

use std::collections::BTreeMap;

use proptest::prelude::*;
use scheduler::{eval, parse_constraint, parse_expression, parse_strategy, Instance};

const SEEDS: &[&str] = &[
    "attribute:ecs.instance-type == t2.small",
    "attribute:ecs.instance-type =~ t3.*",
    "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]",
    "attribute:ecs.availability-zone not_in (us-east-1a, 'us-east-1b')",
    "not(task:group == service:db)",
    "runningTasksCount < 3 && agentConnected == true",
    "task:group != family:web or attribute:stack == prod",
    "attribute:stack exists && agentVersion >= 1.50.0",
    "registeredAt >= 2018-02-13T00:00:00Z and registeredAt < '2019-01-01 10:00:00+02:00'",
    "ec2InstanceId in ['i-abcd1234', \"i-wxyz5678\"]",
    "attribute:ecs.instance-type matches \"(t2|t3)\\..*\" || !(attribute:ecs.os-type == linux)",
];

fn instances() -> Vec<Instance> {
    let mut attributes = BTreeMap::new();
    attributes.insert("ecs.instance-type".to_string(), Some("t3.small".to_string()));
    attributes.insert("ecs.availability-zone".to_string(), Some("us-east-1a".to_string()));
    attributes.insert("stack".to_string(), Some("prod".to_string()));
    attributes.insert("ecs.capability.task-eni".to_string(), None);
    let full = Instance {
        arn: "arn:aws:ecs:us-east-1:123456789012:container-instance/c/1".to_string(),
        ec2_instance_id: "i-abcd1234".to_string(),
        attributes,
        remaining_cpu: 1024,
        remaining_memory: 2048,
        used_ports_tcp: [80].into(),
        used_ports_udp: Default::default(),
        running_tasks_count: 2,
        agent_connected: true,
        agent_version: "1.87.0".to_string(),
        registered_at: 1.5e9,
        draining: false,
        task_groups: vec!["service:db".to_string(), "family:web".to_string()],
    };
    let empty = Instance {
        arn: String::new(),
        ec2_instance_id: String::new(),
        attributes: BTreeMap::new(),
        remaining_cpu: 0,
        remaining_memory: 0,
        used_ports_tcp: Default::default(),
        used_ports_udp: Default::default(),
        running_tasks_count: 0,
        agent_connected: false,
        agent_version: String::new(),
        registered_at: f64::MAX,
        draining: true,
        task_groups: Vec::new(),
    };
    vec![full, empty]
}

proptest! {
    #![proptest_config(fuzzkit::config(1024))]

    #[test]
    fn cluster_query_language(text in fuzzkit::mutated_text(SEEDS, 6)) {
        match parse_expression(&text) {
            Ok(expr) => {
                let canonical = expr.to_string();
                let again = parse_expression(&canonical)
                    .unwrap_or_else(|e| panic!("{text:?} reads back as {canonical:?}, which is refused: {e}"));
                prop_assert_eq!(&again, &expr, "{:?} reads back as {:?}", text, canonical);
                for instance in instances() {
                    prop_assert_eq!(eval(&expr, &instance), eval(&again, &instance));
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        // The same text where ECS takes it: a memberOf constraint.
        if let Err(e) = parse_constraint("memberOf", Some(&text)) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn placement_rules(
        kind in fuzzkit::mutated_text(&["memberOf", "distinctInstance", "spread", "binpack", "random"], 2),
        field in proptest::option::of(fuzzkit::mutated_text(&["cpu", "memory", "instanceId", "attribute:ecs.availability-zone", "host"], 3)),
    ) {
        let _ = parse_constraint(&kind, field.as_deref());
        let _ = parse_strategy(&kind, field.as_deref());
    }
}
