//! Fuzz targets for the model's parsers (see `fuzzkit` for the engine and how to run them
//! long): IAM policies (identity, trust, resource) and their evaluation, ECR repository and registry policies, lifecycle policies, task definitions,
//! CloudWatch Logs filter patterns, repository names, ARNs and the other identifiers. Each takes valid seeds and damages
//! them. The property: parsing never panics, an accepted input reads back as it was
//! given, and a refusal is an error with a message.

use model::ecr::lifecycle::{evaluate, Candidate, LifecyclePolicy, PolicyError};
use model::ecr::policy::{PolicyDocument, PolicyKind};
use model::ecr::RepositoryName;
use model::ecs::shapes::RegisterTaskDefinitionRequest;
use model::ecs::task_definition::NewTaskDefinition;
use model::ecs::{ClusterRef, TaskDefinitionRef};
use model::iam;
use model::ids::{ClusterName, Family};
use model::logs::filter::FilterPattern;
use model::tags::Tags;
use model::{AccountId, Arn, Invalid, Region, Scope, Timestamp};
use proptest::prelude::*;
use serde_json::{json, Value};

const LIFECYCLE_SEEDS: &[&str] = &[
    r#"{"rules":[{"rulePriority":1,"description":"expire untagged images older than 14 days","selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":14},"action":{"type":"expire"}}]}"#,
    r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["prod","v"],"countType":"imageCountMoreThan","countNumber":2},"action":{"type":"expire"}},{"rulePriority":2,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":10},"action":{"type":"expire"}}]}"#,
    r#"{"rules":[{"rulePriority":3,"description":"patterns","selection":{"tagStatus":"tagged","tagPatternList":["prod*","*-rc*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}]}"#,
];

const POLICY_SEEDS: &[&str] = &[
    r#"{"Version":"2012-10-17","Statement":[{"Sid":"pull","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:root"},"Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#,
    r#"{"Version":"2008-10-17","Statement":{"Effect":"Deny","Principal":"*","Action":"ecr:*"}}"#,
    r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":["222222222222","arn:aws:iam::333333333333:user/ci"]},"Action":"ecr:Batch*"}]}"#,
    r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"codebuild.amazonaws.com"},"Action":"*","Condition":{"StringEquals":{"aws:SourceAccount":"222222222222"},"ForAllValues:StringLikeIfExists":{"aws:PrincipalArn":["arn:aws:iam::2222*:root"]}}}]}"#,
    r#"{"Statement":[{"Effect":"Allow","NotPrincipal":{"AWS":"222222222222"},"NotAction":"ecr:PutImage","Condition":{"Null":{"aws:SourceVpce":"true"}}}]}"#,
    r#"{"Version":"2012-10-17","Statement":[{"Sid":"registry","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:root"},"Action":["ecr:CreateRepository","ecr:ReplicateImage"],"Resource":"arn:aws:ecr:us-east-1:111111111111:repository/*"}]}"#,
];

const IAM_SEEDS: &[&str] = &[
    r#"{"Version":"2012-10-17","Statement":[{"Sid":"Read","Effect":"Allow","Action":["ecs:Describe*","ecs:List*"],"Resource":"*"},{"Effect":"Deny","NotAction":"iam:*","NotResource":"arn:aws:iam::*:user/${aws:username}"}]}"#,
    r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecs:*","Resource":"arn:aws:ecs:*:123456789012:service/*","Condition":{"StringEquals":{"aws:ResourceTag/team":"${aws:PrincipalTag/team}"},"IpAddress":{"aws:SourceIp":["10.0.0.0/8","2001:db8::/32"]},"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"},"ForAllValues:StringLike":{"aws:TagKeys":["a*"]},"NumericLessThanEquals":{"ec2:count":3},"Bool":{"aws:SecureTransport":true}}}}"#,
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com","AWS":["123456789012","arn:aws:iam::123456789012:role/r"]},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"x"}}}]}"#,
];

fn task_definition_seeds() -> Vec<Value> {
    vec![
        json!({"family": "web", "containerDefinitions": [{"name": "web", "image": "nginx:1.27", "memory": 128,
            "portMappings": [{"containerPort": 80, "hostPort": 8080, "protocol": "tcp"}],
            "environment": [{"name": "A", "value": "b"}], "essential": true}],
            "tags": [{"key": "team", "value": "web"}]}),
        json!({"family": "fargate", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
            "cpu": "1 vCPU", "memory": "2GB", "containerDefinitions": [
                {"name": "app", "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                 "cpu": 256, "memoryReservation": 512, "command": ["serve", "--port", "80"],
                 "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}],
                 "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 5, "retries": 3}},
                {"name": "init", "image": "busybox", "essential": false, "memory": 6}]}),
        json!({"family": "volumes", "volumes": [{"name": "data", "host": {"sourcePath": "/tmp"}}],
            "placementConstraints": [{"type": "memberOf", "expression": "attribute:stack == prod"}],
            "containerDefinitions": [{"name": "c", "image": "busybox", "memory": 64,
                "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": true}],
                "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
                "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "1m"}}}]}),
    ]
}

/// Mostly what tags look like, sometimes hostile.
fn tag_text() -> impl Strategy<Value = String> {
    const ALPHABET: &[char] = &['a', 'Z', '0', ' ', '_', '.', ':', '/', '=', '+', '@', '-', '\t', 'é', '<', '\0'];
    prop_oneof![
        8 => proptest::collection::vec(proptest::sample::select(ALPHABET), 0..20).prop_map(String::from_iter),
        1 => Just("aws:x".to_string()),
        1 => fuzzkit::hostile_string(),
    ]
}

fn scope() -> Scope {
    Scope { account: AccountId::parse("111111111111").unwrap(), region: Region::parse("us-east-1").unwrap() }
}

fn assert_message(e: &Invalid) {
    let (Invalid::Parameter(m) | Invalid::Client(m)) = e;
    assert!(!m.trim().is_empty(), "a refusal without a message");
}

proptest! {
    #![proptest_config(fuzzkit::config(512))]

    #[test]
    fn lifecycle_policies(
        text in prop_oneof![
            3 => fuzzkit::mutated_json(LIFECYCLE_SEEDS.iter().map(|s| serde_json::from_str(s).unwrap()).collect(), 4)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            1 => fuzzkit::mutated_text(LIFECYCLE_SEEDS, 6),
        ],
        tags in proptest::collection::vec(proptest::collection::vec("[a-z0-9*-]{0,8}", 0..3), 0..6),
        ages in proptest::collection::vec(0f64..100.0, 6),
    ) {
        match LifecyclePolicy::parse(&text) {
            Ok(policy) => {
                prop_assert_eq!(policy.text(), text.as_str());
                let again = LifecyclePolicy::parse(policy.text()).unwrap();
                prop_assert_eq!(&again, &policy);
                let back: LifecyclePolicy = serde_json::from_str(&serde_json::to_string(&policy).unwrap()).unwrap();
                prop_assert_eq!(&back, &policy);
                let digests: Vec<String> = (0..tags.len()).map(|i| format!("sha256:{i:064}")).collect();
                let now = 200.0 * 86_400.0;
                let images: Vec<Candidate<'_>> = tags
                    .iter()
                    .zip(&digests)
                    .zip(&ages)
                    .map(|((tags, digest), age)| Candidate {
                        digest,
                        tags,
                        pushed_at: Timestamp::from_epoch_seconds(now - age * 86_400.0),
                    })
                    .collect();
                let expired = evaluate(&policy, &images, Timestamp::from_epoch_seconds(now));
                // Each image expires at most once, by a rule of the policy.
                let mut seen: Vec<&str> = expired.iter().map(|e| e.image.digest).collect();
                seen.sort_unstable();
                seen.dedup();
                prop_assert_eq!(seen.len(), expired.len());
                for e in &expired {
                    prop_assert!(policy.rules().iter().any(|r| r.priority() == e.rule));
                }
            }
            Err(PolicyError::Invalid(m) | PolicyError::Unsupported(m)) => prop_assert!(!m.is_empty()),
        }
    }

    #[test]
    fn iam_policies(
        text in prop_oneof![
            3 => fuzzkit::mutated_json(IAM_SEEDS.iter().map(|s| serde_json::from_str(s).unwrap()).collect(), 4)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            1 => fuzzkit::mutated_text(IAM_SEEDS, 6),
        ],
        kind in prop_oneof![Just(iam::PolicyKind::Identity), Just(iam::PolicyKind::Trust), Just(iam::PolicyKind::Resource)],
        action in prop_oneof![Just("ecs:DescribeClusters".to_string()), Just("sts:AssumeRole".to_string()), fuzzkit::hostile_string()],
        resource in prop_oneof![Just("*".to_string()), Just("arn:aws:ecs:us-east-1:123456789012:service/c/s".to_string()), fuzzkit::hostile_string()],
        value in fuzzkit::hostile_string(),
    ) {
        match iam::PolicyDocument::parse(&text, kind) {
            Ok(policy) => {
                prop_assert_eq!(policy.text(), text.as_str());
                let account = AccountId::parse("123456789012").unwrap();
                for principal in [
                    iam::Principal::user(&account, "arn:aws:iam::123456789012:user/alice"),
                    iam::Principal::assumed_role(&account, "arn:aws:iam::123456789012:role/r", "s"),
                    iam::Principal::service("ecs-tasks.amazonaws.com"),
                ] {
                    let mut req = iam::RequestContext::new(principal, action.clone(), resource.clone());
                    for key in ["aws:ResourceTag/team", "aws:PrincipalTag/team", "aws:SourceIp", "aws:CurrentTime", "aws:TagKeys", "ec2:count", "aws:SecureTransport", "sts:ExternalId"] {
                        req.insert(key, value.clone());
                    }
                    iam::evaluate(&[&policy], Some(&policy), &req);
                }
            }
            Err(e) => prop_assert!(!e.message().trim().is_empty(), "a refusal without a message"),
        }
    }

    #[test]
    fn repository_and_registry_policies(
        text in prop_oneof![
            3 => fuzzkit::mutated_json(POLICY_SEEDS.iter().map(|s| serde_json::from_str(s).unwrap()).collect(), 4)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            1 => fuzzkit::mutated_text(POLICY_SEEDS, 6),
        ],
        registry in any::<bool>(),
        action in prop_oneof![Just("BatchGetImage".to_string()), Just("PutImage".to_string()), fuzzkit::hostile_string()],
    ) {
        let kind = if registry { PolicyKind::Registry } else { PolicyKind::Repository };
        match PolicyDocument::parse(&text, kind) {
            Ok(policy) => {
                prop_assert_eq!(policy.text(), text.as_str());
                prop_assert_eq!(&PolicyDocument::parse(policy.text(), kind).unwrap(), &policy);
                for account in ["222222222222", "111111111111"] {
                    policy.decide(&AccountId::parse(account).unwrap(), &action);
                }
            }
            Err(e) => assert_message(&e),
        }
    }

    #[test]
    fn task_definitions(body in fuzzkit::mutated_json(task_definition_seeds(), 4)) {
        // A document that does not decode is the edge's SerializationException.
        let Ok(doc) = serde_json::from_slice::<RegisterTaskDefinitionRequest>(&body) else { return Ok(()) };
        match NewTaskDefinition::parse(doc) {
            Ok(def) => {
                // What is stored reads back as it was written.
                let stored = serde_json::to_vec(&def.spec).unwrap();
                let back: model::ecs::task_definition::TaskDefinitionSpec = serde_json::from_slice(&stored).unwrap();
                prop_assert_eq!(back, def.spec);
            }
            Err(e) => assert_message(&e),
        }
    }

    #[test]
    fn names_and_identifiers(
        s in fuzzkit::mutated_text(&[
            "my-repo", "team/app.web__x", "a0-----b/c", "default", "web_1-x", "111111111111", "us-east-1",
            "arn:aws:ecs:us-east-1:111111111111:cluster/default",
            "arn:aws:ecs:us-east-1:111111111111:task-definition/web:12", "web:3", "web",
            "arn:aws:ecr:us-east-1:111111111111:repository/team/app",
        ], 4),
    ) {
        if let Ok(n) = RepositoryName::parse(&s) {
            prop_assert_eq!(n.as_str(), s.as_str());
            prop_assert!((2..=256).contains(&s.len()));
            prop_assert!(model::ecr::is_oci_repository_name(&s));
        }
        if let Ok(arn) = Arn::parse(&s) {
            prop_assert_eq!(arn.to_string(), s.clone());
        }
        for ok in [
            ClusterName::parse(&s).map(|v| v.to_string()),
            Family::parse(&s).map(|v| v.to_string()),
            AccountId::parse(&s).map(|v| v.to_string()),
            Region::parse(&s).map(|v| v.to_string()),
        ] {
            match ok {
                Ok(v) => prop_assert_eq!(v, s.clone()),
                Err(e) => assert_message(&e),
            }
        }
        let scope = scope();
        match ClusterRef::parse(Some(&s), &scope) {
            Ok(Ok(c)) => prop_assert!(s.ends_with(c.0.as_str())),
            Ok(Err(m)) => prop_assert!(!m.is_empty()),
            Err(e) => assert_message(&e),
        }
        if let Err(e) = TaskDefinitionRef::parse(&s, &scope) {
            assert_message(&e);
        }
    }

    #[test]
    fn tags(pairs in proptest::collection::vec((tag_text(), tag_text()), 0..60)) {
        match Tags::parse(pairs.clone()) {
            Ok(tags) => {
                for (k, v) in tags.iter() {
                    prop_assert!(pairs.iter().any(|(pk, pv)| pk == k && pv == v));
                }
            }
            Err(e) => assert_message(&e),
        }
    }

    #[test]
    fn filter_patterns(
        pattern in fuzzkit::mutated_text(&[
            "ERROR \"Failed to\" -WARN ?x ?y", "%colou?r% -\"x y\"",
            "{ ($.user.id = 1) && $.users[0].email = \"a@b\" || $.n >= -1.5e3 || $.f IS TRUE || $.g NOT EXISTS }",
            "{ $.a = *x* && $.b != %^y% }",
            "[ip, user = frank, ..., status_code = 4* && status_code != 403 || status_code = 500, bytes > 1000]",
            "[..., a = \"x y\", ..., b = %z%,]",
        ], 6),
        event in fuzzkit::mutated_text(&[
            "ERROR Failed to x",
            r#"{"user": {"id": 1}, "users": [{"email": "a@b"}], "n": -1, "f": true, "a": "xx", "b": "y"}"#,
            r#"127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET / HTTP/1.0" 404 1534"#,
        ], 6),
    ) {
        match FilterPattern::parse(&pattern) {
            Ok(p) => {
                if p.matches(&event) {
                    for lit in p.required_literals() {
                        prop_assert!(event.contains(lit), "{pattern:?} matched {event:?} without {lit:?}");
                    }
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
