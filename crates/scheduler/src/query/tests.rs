//! The query language, case by case: every operator in both spellings, every subject,
//! the boolean forms, and the byte offsets that parse errors report.

use super::*;

/// An instance shaped like the ECS guide's examples.
fn instance() -> Instance {
    let attrs = [
        ("ecs.availability-zone", Some("us-east-1a")),
        ("ecs.instance-type", Some("t2.small")),
        ("ecs.capability.docker-remote-api.1.19", None),
        ("stack", Some("prod")),
        ("cores", Some("8")),
        ("description", Some("two words")),
    ];
    Instance {
        arn: "arn:aws:ecs:us-east-1:123456789012:container-instance/default/1".into(),
        ec2_instance_id: "i-abcd1234".into(),
        attributes: attrs.into_iter().map(|(k, v)| (k.to_owned(), v.map(str::to_owned))).collect(),
        running_tasks_count: 1,
        agent_connected: true,
        agent_version: "1.14.2".into(),
        // 2018-02-12T10:00:00Z
        registered_at: 1_518_429_600.0,
        task_groups: vec!["service:production".into()],
        ..Instance::default()
    }
}

#[track_caller]
fn check(expr: &str, want: bool) {
    let parsed = parse_expression(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    assert_eq!(eval(&parsed, &instance()), want, "{expr}");
}

/// The byte offset and message of the error `expr` gives, checking that the message names
/// the offset.
#[track_caller]
fn error(expr: &str) -> (usize, String) {
    let e = parse_expression(expr).expect_err(expr);
    let at = e.position.expect("parse errors carry a position");
    assert!(e.message.ends_with(&format!("at byte {at}")), "{}", e.message);
    (at, e.message)
}

#[test]
fn equals_in_both_spellings() {
    check("attribute:ecs.instance-type == t2.small", true);
    check("attribute:ecs.instance-type equals t2.small", true);
    check("attribute:ecs.instance-type == t2.medium", false);
    check("attribute:ecs.instance-type equals t2.medium", false);
}

#[test]
fn not_equals_in_both_spellings() {
    check("attribute:stack != dev", true);
    check("attribute:stack not_equals dev", true);
    check("attribute:stack != prod", false);
    check("attribute:stack not_equals prod", false);
}

#[test]
fn ordering_operators_in_both_spellings() {
    check("attribute:cores > 4", true);
    check("attribute:cores greater_than 8", false);
    check("attribute:cores >= 8", true);
    check("attribute:cores greater_than_equal 9", false);
    check("attribute:cores < 9", true);
    check("attribute:cores less_than 8", false);
    check("attribute:cores <= 8", true);
    check("attribute:cores less_than_equal 7", false);
}

#[test]
fn numbers_compare_as_numbers_and_text_as_text() {
    // Lexically "8" > "10"; numerically it is not.
    check("attribute:cores > 10", false);
    check("attribute:cores < 10", true);
    check("attribute:cores == 8.0", true);
    check("attribute:stack > pro", true);
    check("attribute:stack < prof", true);
}

#[test]
fn exists_in_all_spellings() {
    check("attribute:ecs.capability.docker-remote-api.1.19 exists", true);
    check("attribute:stack exists", true);
    check("attribute:missing exists", false);
    check("attribute:missing !exists", true);
    check("attribute:missing not_exists", true);
    check("attribute:stack !exists", false);
    check("attribute:stack not_exists", false);
}

#[test]
fn in_and_not_in_with_brackets_or_parentheses() {
    check("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]", true);
    check("attribute:ecs.availability-zone in (us-east-1a, us-east-1b)", true);
    check("attribute:ecs.availability-zone in [us-east-1c, us-east-1d]", false);
    check("attribute:ecs.availability-zone !in [us-east-1b]", true);
    check("attribute:ecs.availability-zone not_in (us-east-1a)", false);
    check("attribute:cores in [7, 8.0]", true);
}

#[test]
fn matches_is_a_whole_value_regular_expression() {
    check("attribute:ecs.instance-type =~ t2.*", true);
    check("attribute:ecs.instance-type matches t3.*", false);
    check("attribute:ecs.instance-type =~ 2.*", false);
    check("attribute:ecs.instance-type =~ t2", false);
    check("attribute:ecs.instance-type =~ \"(t2|t3)\\.small\"", true);
    check("attribute:ecs.instance-type !~ g2.*", true);
    check("attribute:ecs.instance-type not_matches t2.*", false);
}

#[test]
fn comparisons_need_the_attribute_and_its_value() {
    for op in ["== x", "!= x", "> 1", "< 1", "in [x]", "!in [x]", "=~ .*", "!~ x"] {
        check(&format!("attribute:missing {op}"), false);
        check(&format!("attribute:ecs.capability.docker-remote-api.1.19 {op}"), false);
    }
}

#[test]
fn every_subject() {
    check("agentConnected == true", true);
    check("agentConnected != true", false);
    check("agentConnected in [false]", false);
    check("agentConnected =~ tr.*", true);
    check("agentVersion < 1.14.5", true);
    check("agentVersion > 1.9.0", true);
    check("agentVersion == 1.14.2.0", true);
    check("agentVersion >= 1.15", false);
    check("ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']", true);
    check("ec2InstanceId == i-abcd1234", true);
    check("ec2InstanceId !~ i-abcd.*", false);
    check("registeredAt < 2018-02-13", true);
    check("registeredAt == 2018-02-12", true);
    check("registeredAt > 2018-02-12", false);
    check("registeredAt > 2018-02-12T09:00:00Z", true);
    check("registeredAt <= 2018-02-12T10:00:00", true);
    check("registeredAt < 2018-02-12T11:00:00+02:00", false);
    check("runningTasksCount == 1", true);
    check("runningTasksCount > 0", true);
    check("runningTasksCount <= 0", false);
    check("task:group == service:production", true);
    check("task:group == database", false);
    check("task:group in [database, service:production]", true);
    check("task:group =~ service:.*", true);
    check("task:group exists", true);
    check("task:group !exists", false);
}

#[test]
fn task_group_negations_mean_no_such_task() {
    check("not(task:group == database)", true);
    check("task:group != database", true);
    check("task:group != service:production", false);
    check("task:group !in [service:production]", false);
    check("task:group !~ database.*", true);
    let empty = Instance { task_groups: vec![], ..instance() };
    let e = parse_expression("task:group != database").unwrap();
    assert!(eval(&e, &empty));
    assert!(!eval(&parse_expression("task:group exists").unwrap(), &empty));
}

#[test]
fn boolean_operators_in_both_spellings() {
    check("attribute:stack == prod and attribute:cores == 8", true);
    check("attribute:stack == prod && attribute:cores == 7", false);
    check("attribute:stack == dev or attribute:cores == 8", true);
    check("attribute:stack == dev || attribute:cores == 7", false);
    check("not attribute:stack == dev", true);
    check("!attribute:stack == prod", false);
    check("! (attribute:stack == prod)", false);
    check("attribute:stack==prod&&attribute:cores>4", true);
    check("attribute:stack EQUALS prod AND NOT attribute:cores LESS_THAN 2", true);
}

#[test]
fn and_binds_tighter_than_or_and_not_tightest() {
    // true or (false and false); reading left to right would give false.
    check("attribute:stack == prod or attribute:stack == dev and attribute:cores == 1", true);
    check("(attribute:stack == prod or attribute:stack == dev) and attribute:cores == 1", false);
    // (not true) and true
    check("not attribute:stack == prod and attribute:cores == 8", false);
    check("not (attribute:stack == prod and attribute:cores == 1)", true);
}

#[test]
fn the_guides_compound_example() {
    check("attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone != us-east-1d", true);
    check("attribute:ecs.instance-type =~ g2.* and attribute:ecs.availability-zone != us-east-1d", false);
}

#[test]
fn quoted_literals() {
    check("attribute:ecs.instance-type == \"t2.small\"", true);
    check("attribute:ecs.instance-type == 't2.small'", true);
    check("attribute:description == \"two words\"", true);
    check("attribute:description == 'two words'", true);
    check("attribute:stack in ['prod', \"dev\"]", true);
}

#[test]
fn errors_name_the_byte_where_parsing_failed() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 0, "empty"),
        ("   ", 0, "empty"),
        ("attribute:stack", 15, "expected an operator"),
        ("attribute:stack prod", 16, "expected an operator after `attribute:stack`, found `prod`"),
        ("attribute:stack == ", 19, "expected a value"),
        ("attribute:stack = prod", 16, "unexpected `=`"),
        ("attribute:stack == prod & x", 24, "unexpected `&`"),
        ("foo == bar", 0, "unknown subject `foo`"),
        ("attribute: == b", 0, "not an attribute name"),
        ("attribute:a == b c", 17, "expected `and`, `or` or the end"),
        ("(attribute:a == b", 17, "expected `)`"),
        ("attribute:a == 'b", 15, "unterminated quoted literal"),
        ("agentVersion in [1]", 13, "`in` is not valid for `agentVersion`"),
        ("ec2InstanceId > i-1", 14, "`>` is not valid for `ec2InstanceId`"),
        ("registeredAt < yesterday", 15, "not a date"),
        ("runningTasksCount > many", 20, "not a number"),
        ("attribute:a in [b, c", 20, "expected `,` or `]`"),
        ("attribute:a in (b]", 17, "expected `,` or `)`"),
        ("attribute:a in b", 15, "expected an argument list"),
        ("attribute:a =~ '(unclosed'", 15, "invalid regular expression"),
        ("attribute:a == b and", 20, "expected a subject"),
        ("attribute:a == b or )", 20, "expected a subject"),
        ("attribute:a exists b", 19, "expected `and`, `or` or the end"),
        ("() ", 1, "expected a subject"),
    ];
    for &(expr, at, text) in cases {
        let (got, message) = error(expr);
        assert_eq!(got, at, "{expr}: {message}");
        assert!(message.contains(text), "{expr}: {message}");
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let deep = format!("{}attribute:a exists{}", "(".repeat(10_000), ")".repeat(10_000));
    let (at, message) = error(&deep);
    assert!(message.contains("nests deeper"), "{message}");
    assert_eq!(at, 64);
    let nots = format!("{}attribute:a exists", "not ".repeat(10_000));
    assert!(error(&nots).1.contains("nests deeper"));
}

#[test]
fn display_reads_back_as_the_same_expression() {
    for expr in [
        "attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone != us-east-1d",
        "not(task:group == database) or runningTasksCount <= 3 && agentConnected equals true",
        "ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']",
        "attribute:description == 'two words' and attribute:q == '\"' and attribute:e == \"\"",
        "attribute:ecs.instance-type =~ \"(t2|t3)\\.small\"",
        "registeredAt < 2018-02-13 and attribute:x !exists and attribute:y not_in (a, b)",
    ] {
        let parsed = parse_expression(expr).unwrap();
        let shown = parsed.to_string();
        assert_eq!(parse_expression(&shown).as_ref(), Ok(&parsed), "{expr} => {shown}");
    }
}

// Found by the fuzzing harness (scheduler/tests/fuzz.rs): the text put every operand in
// parentheses, so an accepted chain of 33 `!` or of 65 `and` read back nested deeper than
// the limit and was refused.
#[test]
fn display_nests_no_deeper_than_the_text_it_came_from() {
    let ands = vec!["attribute:a exists"; 200].join(" and ");
    for expr in [
        format!("{}(attribute:a exists)", "!".repeat(60)),
        ands.clone(),
        vec!["attribute:a exists"; 200].join(" or "),
        format!("not ({ands}) or ({ands}) and not not attribute:b == c"),
    ] {
        let parsed = parse_expression(&expr).unwrap();
        let shown = parsed.to_string();
        assert_eq!(parse_expression(&shown).as_ref(), Ok(&parsed), "{expr} => {shown}");
    }
    let grouped = "not (attribute:a exists and attribute:b exists) or attribute:c exists and (attribute:d exists or attribute:e exists)";
    assert_eq!(parse_expression(grouped).unwrap().to_string(), grouped);
}

#[test]
fn only_expressions_about_tasks_depend_on_tasks() {
    let depends = |s| parse_expression(s).unwrap().depends_on_tasks();
    assert!(!depends("attribute:a == b and agentVersion > 1.0"));
    assert!(depends("attribute:a == b and not task:group == x"));
    assert!(depends("runningTasksCount < 3 or attribute:a exists"));
}

#[test]
fn plain_patterns_answer_like_the_regex() {
    let values = ["t2", "t2.small", "t2\nsmall", "xt2.small", "t3.small", "", "t2-x", "T2.small"];
    for source in ["t2.*", "t2", ".*", "t2-x", "t2\\..*", "t[23].*", "t2.small"] {
        let p = Pattern::new(source.to_owned()).unwrap();
        for v in values {
            assert_eq!(p.is_match(v), p.regex.is_match(v), "{source} on {v:?}");
        }
    }
    assert!(Pattern::new("t2.*".into()).unwrap().plain.is_some());
    assert!(Pattern::new("t[23].*".into()).unwrap().plain.is_none());
}

proptest::proptest! {
    #[test]
    fn plain_patterns_agree_with_the_regex_on_any_value(
        text in "[a-z0-9:/@ _-]{0,6}",
        tail in proptest::bool::ANY,
        value in "[a-z0-9.:\n-]{0,9}",
    ) {
        let source = if tail { format!("{text}.*") } else { text };
        let p = Pattern::new(source).unwrap();
        proptest::prop_assert!(p.plain.is_some());
        proptest::prop_assert_eq!(p.is_match(&value), p.regex.is_match(&value));
    }
}
