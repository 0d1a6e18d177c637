//! The filter pattern language against AWS's documented examples: one table of
//! (pattern, events with whether each matches), invalid patterns, and the literals a
//! prefilter may rely on.

use super::*;

const JSON_EXAMPLE: &str = r#"{
  "eventType": "UpdateTrail",
  "sourceIPAddress": "111.111.111.111",
  "arrayKey": ["value", "another value"],
  "objectList": [{"name": "a", "id": 1}, {"name": "b", "id": 2}],
  "SomeObject": null,
  "ThisFlag": true
}"#;

const JSON_COMPOUND: &str = r#"{
  "user": {"id": 1, "email": "John.Stiles@example.com"},
  "users": [{"id": 2, "email": "John.Doe@example.com"}, {"id": 3, "email": "Jane.Doe@example.com"}],
  "actions": ["GET", "PUT", "DELETE"],
  "coordinates": [[0, 1, 2], [4, 5, 6], [7, 8, 9]]
}"#;

const APACHE_200: &str = r#"127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /apache_pb.gif HTTP/1.0" 200 1534"#;
const APACHE_500: &str = r#"127.0.0.1 - frank [10/Oct/2000:13:35:22 -0700] "GET /apache_pb.gif HTTP/1.0" 500 5324"#;
const APACHE_404: &str = r#"127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /index.html HTTP/1.0" 404 1534"#;
const APACHE_403: &str = r#"127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /index.html HTTP/1.0" 403 2048"#;
const APACHE_SMALL: &str = r#"127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /apache_pb.gif HTTP/1.0" 200 999"#;

type Case = (&'static str, &'static [(&'static str, bool)]);

/// Each pattern with events and whether the event matches.
const CASES: &[Case] = &[
    // Unstructured: terms, phrases, exclusion, OR, regex.
    ("", &[("anything", true), ("", true)]),
    ("\"\"", &[("anything", true)]),
    (
        "ERROR",
        &[
            ("[ERROR] A fatal exception has occurred", true),
            ("Exiting with ERRORCODE: -1", true),
            ("error: lower case", false),
        ],
    ),
    ("ERROR -Exiting", &[("[ERROR] A fatal exception has occurred", true), ("Exiting with ERRORCODE: -1", false)]),
    (
        "\"ERROR\" - \"Exiting\"",
        &[("[ERROR] A fatal exception has occurred", true), ("Exiting with ERRORCODE: -1", false)],
    ),
    (
        "ERROR Exception",
        &[
            ("[ERROR] Caught IllegalArgumentException", true),
            ("[ERROR] Unhandled Exception", true),
            ("[WARN] Unhandled Exception", false),
        ],
    ),
    (
        "Failed to process the request",
        &[
            ("[WARN] Failed to process the request", true),
            ("[ERROR] Unable to continue: Failed to process the request", true),
            ("the request to process Failed", true),
            ("Failed the request", false),
        ],
    ),
    (
        "\"Failed to process the request\"",
        &[("[WARN] Failed to process the request", true), ("the request to process Failed", false)],
    ),
    ("ERROR WARN", &[("ERROR WARN message", true), ("ERROR message", false), ("WARN message", false)]),
    (
        "?ERROR ?WARN",
        &[("ERROR WARN message", true), ("ERROR message", true), ("WARN message", true), ("INFO message", false)],
    ),
    ("ERROR -WARN", &[("ERROR WARN message", false), ("ERROR message", true), ("WARN message", false)]),
    ("\"ERROR:\"", &[("ERROR: disk full", true), ("ERROR disk full", false)]),
    ("\"say \\\"hi\\\"\"", &[("they say \"hi\" twice", true), ("they say hi", false)]),
    (
        "%AUTHORIZED%",
        &[
            ("[ERROR 401] UNAUTHORIZED REQUEST", true),
            ("[SUCCESS 200] AUTHORIZED REQUEST", true),
            ("authorized", false),
        ],
    ),
    ("%^[hc]at%", &[("hat trick", true), ("cat", true), ("that", false)]),
    ("%colou?r%", &[("color", true), ("colour", true), ("colr", false)]),
    ("%gray|grey%", &[("grey", true), ("gray", true), ("green", false)]),
    ("ERROR -%4[0-9][0-9]%", &[("ERROR 500", true), ("ERROR 404", false)]),
    // JSON: the documentation's example event and its patterns.
    (
        "{ $.eventType = \"UpdateTrail\" }",
        &[(JSON_EXAMPLE, true), (r#"{"eventType": "DeleteTrail"}"#, false), ("eventType UpdateTrail", false)],
    ),
    (
        "{ $.sourceIPAddress != 123.123.* }",
        &[(JSON_EXAMPLE, true), (r#"{"sourceIPAddress": "123.123.0.1"}"#, false), ("{}", false)],
    ),
    ("{ $.arrayKey[0] = \"value\" }", &[(JSON_EXAMPLE, true), (r#"{"arrayKey": "value"}"#, false)]),
    ("{ $.objectList[1].id = 2 }", &[(JSON_EXAMPLE, true), (r#"{"objectList": [{"id": 2}]}"#, false)]),
    ("{ $.SomeObject IS NULL }", &[(JSON_EXAMPLE, true), (r#"{"SomeObject": {}}"#, false), ("{}", false)]),
    ("{ $.SomeOtherObject NOT EXISTS }", &[(JSON_EXAMPLE, true), (r#"{"SomeOtherObject": null}"#, false)]),
    (
        "{ $.ThisFlag IS TRUE }",
        &[(JSON_EXAMPLE, true), (r#"{"ThisFlag": "true"}"#, false), (r#"{"ThisFlag": false}"#, false)],
    ),
    ("{ $.ThisFlag is false }", &[(JSON_EXAMPLE, false), (r#"{"ThisFlag": false}"#, true)]),
    ("{$.foo = bar}", &[(r#"{"foo": "bar"}"#, true), (r#"{"foo": "baz"}"#, false), (r#"{"foo": "barbar"}"#, false)]),
    ("{$.foo = baz }", &[(r#"{"foo": "bar"}"#, false), (r#"{"foo": "baz"}"#, true)]),
    (
        "{$.foo = bar || $.foo = baz }",
        &[(r#"{"foo": "bar"}"#, true), (r#"{"foo": "baz"}"#, true), (r#"{"foo": "qux"}"#, false)],
    ),
    // Compound conditions: () before && before ||.
    ("{ ($.user.id = 1) && ($.users[0].email = \"John.Doe@example.com\") }", &[(JSON_COMPOUND, true)]),
    ("{ ($.user.id = 2 && $.users[0].email = \"nonmatch\") || $.actions[2] = \"GET\" }", &[(JSON_COMPOUND, false)]),
    (
        "{ $.user.email = \"John.Stiles@example.com\" || $.coordinates[0][1] = nonmatch && $.actions[2] = nomatch }",
        &[(JSON_COMPOUND, true)],
    ),
    (
        "{ ($.user.email = \"John.Stiles@example.com\" || $.coordinates[0][1] = nonmatch) && $.actions[2] = nomatch }",
        &[(JSON_COMPOUND, false)],
    ),
    ("{ $.coordinates[2][0] = 7 && $.actions[1] = PUT }", &[(JSON_COMPOUND, true)]),
    // A selector on an array or object fails = and != alike.
    ("{ $.users = 1 }", &[(r#"{"users": [1, 2, 3]}"#, false)]),
    ("{ $.users != 1 }", &[(r#"{"users": [1, 2, 3]}"#, false), (r#"{"users": 2}"#, true)]),
    // Numbers: integers, decimals, signs, exponents.
    (
        "{ $.latency >= 500 }",
        &[
            (r#"{"latency": 500}"#, true),
            (r#"{"latency": 499.9}"#, false),
            (r#"{"latency": "600"}"#, true),
            (r#"{"latency": "slow"}"#, false),
        ],
    ),
    ("{ $.numbers[0] < 10e3 }", &[(r#"{"numbers": [9999]}"#, true), (r#"{"numbers": [10000]}"#, false)]),
    ("{ $.numbers[0] < 10e-3 }", &[(r#"{"numbers": [0.001]}"#, true), (r#"{"numbers": [0.01]}"#, false)]),
    (
        "{ $.processes[4].averageRuntime <= 55.5 }",
        &[
            (r#"{"processes": [{}, {}, {}, {}, {"averageRuntime": 55.5}]}"#, true),
            (r#"{"processes": [{}, {}, {}, {}, {"averageRuntime": 55.6}]}"#, false),
        ],
    ),
    (
        "{ $.errorCode = 400 }",
        &[
            (r#"{"errorCode": 400}"#, true),
            (r#"{"errorCode": 400.0}"#, true),
            (r#"{"errorCode": "400"}"#, true),
            (r#"{"errorCode": 401}"#, false),
        ],
    ),
    ("{ $.errorCode != 500 }", &[(r#"{"errorCode": 400}"#, true), (r#"{"errorCode": 500}"#, false), ("{}", false)]),
    ("{ $.latency > +1000 }", &[(r#"{"latency": 1001}"#, true), (r#"{"latency": 1000}"#, false)]),
    ("{ $.delta > -1.5 }", &[(r#"{"delta": -1}"#, true), (r#"{"delta": -2}"#, false)]),
    (
        "{ $.latency = * }",
        &[(r#"{"latency": 5}"#, true), (r#"{"latency": "x"}"#, true), ("{}", false), (r#"{"latency": {}}"#, false)],
    ),
    ("{ $.latency = \"*\" }", &[(r#"{"latency": 5}"#, true), ("{}", false)]),
    // Wildcards only at either end.
    (
        "{ $.eventType = *Event }",
        &[
            (r#"{"eventType": "PutEvent"}"#, true),
            (r#"{"eventType": "GetEvent"}"#, true),
            (r#"{"eventType": "EventId"}"#, false),
        ],
    ),
    (
        "{ $.eventType = Event* }",
        &[
            (r#"{"eventType": "EventId"}"#, true),
            (r#"{"eventType": "EventName"}"#, true),
            (r#"{"eventType": "PutEvent"}"#, false),
        ],
    ),
    ("{ $.eventType = Ev*ent }", &[(r#"{"eventType": "Ev*ent"}"#, true), (r#"{"eventType": "Event"}"#, false)]),
    ("{ $.eventType = \"*Trail*\" }", &[(JSON_EXAMPLE, true), (r#"{"eventType": "Trai"}"#, false)]),
    // Others: a CDK-style compound, regex values, names with - and _, escapes, a top-level array.
    (
        "{ $.component = \"HttpServer\" && ($.error IS TRUE || $.latency > 1000) }",
        &[
            (r#"{"component": "HttpServer", "error": true}"#, true),
            (r#"{"component": "HttpServer", "error": false, "latency": 1001}"#, true),
            (r#"{"component": "HttpServer", "error": false, "latency": 10}"#, false),
            (r#"{"component": "Db", "error": true}"#, false),
        ],
    ),
    (
        "{ $.message = %bind: address% }",
        &[(r#"{"message": "bind: address already in use"}"#, true), (r#"{"message": "ok"}"#, false)],
    ),
    ("{ $.message != %^ok% }", &[(r#"{"message": "failed"}"#, true), (r#"{"message": "ok then"}"#, false)]),
    ("{ $.a.b-c_d = x }", &[(r#"{"a": {"b-c_d": "x"}}"#, true), (r#"{"a": {"b-c_d": "y"}}"#, false)]),
    ("{ $.x = \"a\\\"b\" }", &[(r#"{"x": "a\"b"}"#, true), (r#"{"x": "ab"}"#, false)]),
    ("{ $.name = \"caf\u{e9}\" }", &[(r#"{"name": "caf\u00e9"}"#, true)]),
    ("{ $[1] = 2 }", &[("[1, 2]", true), ("[2, 1]", false)]),
    ("{ $.level = error }", &[("{ not json", false), ("level = error", false), ("", false)]),
    // How the event is read: the last of repeated keys counts, escapes are decoded, an
    // event must be JSON to its end, and selectors sharing steps or repeated all see it.
    ("{ $.a.b = 1 }", &[(r#"{"a": {"b": 1}, "a": "x"}"#, false), (r#"{"a": "x", "a": {"b": 1}}"#, true)]),
    (
        "{ $.level = error }",
        &[
            (r#"{"le\u0076el": "error"}"#, true),
            (r#"{"level": "err\u006fr"}"#, true),
            (r#"{"level": "error"} trailing"#, false),
        ],
    ),
    (
        "{ $.a.b = 1 && $.a.c = 2 && $.x[1][0] = 3 }",
        &[(r#"{"x": [0, [3]], "a": {"c": 2, "b": 1}}"#, true), (r#"{"x": [[3]], "a": {"c": 2, "b": 1}}"#, false)],
    ),
    (
        "{ $.n = 1 || $.n = 2 || $.n IS NULL }",
        &[(r#"{"n": 2}"#, true), (r#"{"n": null}"#, true), (r#"{"n": 3}"#, false)],
    ),
    // Space-delimited: AWS's Apache access log examples.
    (
        "[ip, user, username, timestamp, request, status_code, bytes]",
        &[(APACHE_200, true), ("a b c", false), ("127.0.0.1 - frank [t] \"r\" 200 1534 extra", false)],
    ),
    ("[..., status_code, bytes]", &[(APACHE_200, true), ("x", false)]),
    ("[ip, user, ..., status_code, bytes]", &[(APACHE_200, true), ("a b c", false)]),
    ("[ip, user, ...]", &[(APACHE_200, true), ("a b", true), ("only", false)]),
    (
        "[ip, user, username, timestamp, request, status_code, bytes > 1000]",
        &[(APACHE_200, true), (APACHE_SMALL, false)],
    ),
    ("[ip, user, username, timestamp, request, status_code = 200, bytes]", &[(APACHE_200, true), (APACHE_500, false)]),
    ("[ip, user, username, timestamp, request, status_code = 4*, bytes]", &[(APACHE_404, true), (APACHE_200, false)]),
    (
        "[ip, user, username, timestamp, request = *html*, status_code = 4*, bytes]",
        &[(APACHE_404, true), (APACHE_200, false)],
    ),
    (
        "[ip, user, username, timestamp, request, status_code = 403 || status_code = 404, bytes]",
        &[(APACHE_404, true), (APACHE_403, true), (APACHE_200, false)],
    ),
    (
        "[ip, user, username, timestamp, request, status_code = 4* && status_code != 403, bytes]",
        &[(APACHE_404, true), (APACHE_403, false)],
    ),
    ("[..., request=*.html*, status_code=4*,]", &[(APACHE_404, true), (APACHE_200, false)]),
    (
        "[ip, user, username, timestamp = \"10/Oct/2000:13:25:15 -0700\", ...]",
        &[(APACHE_200, true), (APACHE_500, false)],
    ),
    ("[ip = %^127\\.%, ...]", &[(APACHE_200, true), ("10.0.0.127 x", false)]),
    ("[..., bytes = 1534]", &[(APACHE_200, true), ("x 1534.0", true), (APACHE_500, false)]),
    // The OR examples on words.
    (
        "[w1=ERROR, w2]",
        &[("ERROR WARN message", false), ("ERROR message", true), ("WARN message", false), ("ERRORS message", false)],
    ),
    ("[w1=ERROR || w1=WARN, w2]", &[("ERROR message", true), ("WARN message", true), ("INFO message", false)]),
    ("[w1!=ERROR&&w1!=WARN, w2]", &[("INFO message", true), ("ERROR message", false), ("WARN message", false)]),
    // A condition naming another field; several ellipses; blanks of any kind.
    ("[a, b = 2 && a = x]", &[("x 2", true), ("y 2", false)]),
    (
        "[..., level = ERROR, ..., code = 500]",
        &[("t ERROR foo 500", true), ("t ERROR 500", true), ("t ERROR foo 400", false), ("t WARN 500", false)],
    ),
    ("[a, b, c]", &[("1\t 2  3 ", true), ("\"1 2\" [3 4] 5", true), ("\"1 2 3\"", false)]),
];

#[test]
fn the_documented_examples_match_as_aws_says() {
    let mut checked = 0;
    for (pattern, events) in CASES {
        let p = FilterPattern::parse(pattern).unwrap_or_else(|e| panic!("pattern {pattern:?}: {e}"));
        for (event, want) in *events {
            assert_eq!(p.matches(event), *want, "pattern {pattern:?} on event {event:?}");
            checked += 1;
        }
    }
    assert!(checked > 150, "{checked}");
}

#[test]
fn every_matching_event_contains_the_required_literals() {
    for (pattern, events) in CASES {
        let p = FilterPattern::parse(pattern).unwrap();
        for (event, _) in events.iter().filter(|(e, _)| p.matches(e)) {
            for lit in p.required_literals() {
                assert!(event.contains(lit), "pattern {pattern:?}: {event:?} lacks {lit:?}");
            }
        }
    }
}

#[test]
fn required_literals_are_the_certain_ones() {
    let cases: &[(&str, &[&str])] = &[
        ("ERROR \"Failed to\" -WARN ?x ?y", &["ERROR", "Failed to"]),
        ("?ERROR ?WARN", &[]),
        ("", &[]),
        ("\"\"", &[]),
        ("%ERROR%", &[]),
        ("{ $.level = \"error\" && $.code = x }", &[]),
        ("[ip, user = frank, ..., status_code = 404]", &["frank"]),
        ("[w1=ERROR || w1=WARN, w2]", &[]),
        ("[a = \"GET /index.html HTTP/1.0\", b != x, c = *html*, d = %x%]", &["GET /index.html HTTP/1.0"]),
        ("[a = x && a != y, b]", &["x"]),
    ];
    for (pattern, want) in cases {
        assert_eq!(&FilterPattern::parse(pattern).unwrap().required_literals(), want, "pattern {pattern:?}");
    }
}

#[test]
fn invalid_patterns_say_what_is_wrong() {
    let cases: &[(&str, &str)] = &[
        ("\"open", "not closed"),
        ("a.b", "Invalid character(s) in term 'a.b'"),
        ("ERROR:", "Invalid character(s) in term 'ERROR:'"),
        ("ERROR -", "not followed by a term"),
        ("%abc", "not closed"),
        ("%(%", "invalid regular expression"),
        ("{ $.level = \"error\" ", "enclosed in { and }"),
        ("{ }", "selector"),
        ("{ level = 1 }", "selector"),
        ("{ $. = 1 }", "property name is missing"),
        ("{ $.a[x] = 1 }", "needs a number"),
        ("{ $.a[0 = 1 }", "not closed"),
        ("{ $.a = }", "value is missing"),
        ("{ $.a > abc }", "compare with a number"),
        ("{ $.a IS MAYBE }", "TRUE, FALSE or NULL"),
        ("{ $.a NOT THERE }", "EXISTS"),
        ("{ $.a }", "expected =, !="),
        ("{ ($.a = 1 }", "parenthesis is not closed"),
        ("{ $.a = 1 $.b = 2 }", "&& or ||"),
        ("{ $.a = \"x }", "quoted value is not closed"),
        ("[]", "at least one field"),
        ("[a, b", "enclosed in [ and ]"),
        ("[a b]", "expected , between fields"),
        ("[a = ]", "value is missing"),
        ("[a > x]", "compare with a number"),
        ("[a = 1 && ]", "field name"),
        ("[a = 1 && b]", "operator"),
    ];
    for (pattern, fragment) in cases {
        match FilterPattern::parse(pattern) {
            Err(PatternError::Invalid(m)) => assert!(m.contains(fragment), "pattern {pattern:?}: {m}"),
            other => panic!("pattern {pattern:?}: {other:?}"),
        }
    }
    assert!(matches!(FilterPattern::parse("{ $.a[*] = 1 }"), Err(PatternError::Unsupported(_))));
    let deep = format!("{{ {}$.a = 1{} }}", "(".repeat(5000), ")".repeat(5000));
    assert!(matches!(FilterPattern::parse(&deep), Err(PatternError::Invalid(m)) if m.contains("nest too deep")));
    let fine = format!("{{ {}$.a = 1{} }}", "(".repeat(64), ")".repeat(64));
    assert!(FilterPattern::parse(&fine).unwrap().matches(r#"{"a": 1}"#));
}

#[test]
fn events_split_as_aws_splits_access_logs() {
    assert_eq!(
        delimited::split_for_tests(APACHE_200),
        ["127.0.0.1", "-", "frank", "10/Oct/2000:13:25:15 -0700", "GET /apache_pb.gif HTTP/1.0", "200", "1534"]
    );
    assert_eq!(delimited::split_for_tests("  a  \"b c\"d [e"), ["a", "b c", "d", "e"]);
}

#[test]
fn patterns_are_equal_when_written_alike() {
    assert_eq!(FilterPattern::parse(" ERROR ").unwrap(), FilterPattern::parse("ERROR").unwrap());
    assert_ne!(FilterPattern::parse("ERROR").unwrap(), FilterPattern::parse("WARN").unwrap());
    assert!(FilterPattern::default().matches("anything"));
}

#[test]
fn several_ellipses_stay_fast_on_long_events() {
    // Without remembering failed states this search takes about n^3 steps.
    let p = FilterPattern::parse("[..., a = x, ..., b = y, ..., c = z]").unwrap();
    let mut words = vec!["w"; 3000];
    assert!(!p.matches(&words.join(" ")));
    words[10] = "x";
    words[2000] = "y";
    words[2999] = "z";
    assert!(p.matches(&words.join(" ")));
    words[2999] = "w";
    assert!(!p.matches(&words.join(" ")));
}
