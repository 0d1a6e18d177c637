//! Table tests: malformed documents with IAM's messages, every condition operator, qualifier
//! and key callers use, the evaluation rules of AWS's "Policy evaluation logic" within one
//! account, and trust-policy principal matching.

use super::*;
use crate::AccountId;

const ACCOUNT: &str = "123456789012";
const USER_ARN: &str = "arn:aws:iam::123456789012:user/dev/alice";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/app/task-role";
const CLUSTER: &str = "arn:aws:ecs:us-east-1:123456789012:cluster/prod";

fn account() -> AccountId {
    AccountId::parse(ACCOUNT).unwrap()
}

fn user() -> Principal {
    Principal::user(&account(), USER_ARN)
}

fn session() -> Principal {
    Principal::assumed_role(&account(), ROLE_ARN, "s1")
}

fn identity(text: &str) -> PolicyDocument {
    PolicyDocument::parse(text, PolicyKind::Identity).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn resource(text: &str) -> PolicyDocument {
    PolicyDocument::parse(text, PolicyKind::Resource).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn trust(text: &str) -> PolicyDocument {
    PolicyDocument::parse(text, PolicyKind::Trust).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// An identity policy of one statement.
fn statement(effect: &str, action: &str, resource: &str, condition: &str) -> String {
    let condition = if condition.is_empty() { String::new() } else { format!(r#","Condition":{condition}"#) };
    format!(
        r#"{{"Version":"2012-10-17","Statement":{{"Effect":"{effect}","Action":{action},"Resource":{resource}{condition}}}}}"#
    )
}

/// A named case: identity policies, resource policy, request, expected decision.
type Case<'a> = (&'a str, Vec<&'a str>, Option<&'a str>, RequestContext, Decision);
/// Condition keys and their values, in order (a key may repeat).
type Keys<'a> = &'a [(&'a str, &'a str)];

/// The decision, checked to be the same when the identity policies are first narrowed to
/// the request's action ([`PolicyDocument::for_action`]), as authorization narrows them.
fn decide(policies: &[&str], resource_policy: Option<&str>, req: &RequestContext) -> Decision {
    let docs: Vec<PolicyDocument> = policies.iter().map(|p| identity(p)).collect();
    let refs: Vec<&PolicyDocument> = docs.iter().collect();
    let rp = resource_policy.map(resource);
    let whole = evaluate(&refs, rp.as_ref(), req);
    let narrowed: Vec<PolicyDocument> = docs.iter().filter_map(|d| d.for_action(req.action())).collect();
    let narrowed: Vec<&PolicyDocument> = narrowed.iter().collect();
    assert_eq!(evaluate(&narrowed, rp.as_ref(), req), whole, "narrowed to {}: {policies:?}", req.action());
    whole
}

#[test]
fn malformed_documents_get_iams_messages() {
    use PolicyKind::{Identity, Resource, Trust};
    let ok_stmt = r#""Effect":"Allow","Action":"ecs:*","Resource":"*""#;
    let with = |extra: &str| format!(r#"{{"Version":"2012-10-17","Statement":{{{extra}}}}}"#);
    let cases: Vec<(PolicyKind, String, &str)> = vec![
        (Identity, "not json".into(), "Syntax errors in policy."),
        (Identity, "[]".into(), "Syntax errors in policy."),
        (Identity, r#"{"Version":"2012-10-17","Statement":[]}"#.into(), "Syntax errors in policy."),
        (Identity, r#"{"Version":"2012-10-17"}"#.into(), "Syntax errors in policy."),
        (Identity, format!(r#"{{"Version":"2020-01-01","Statement":{{{ok_stmt}}}}}"#), "Syntax errors in policy."),
        (Identity, format!(r#"{{"Comment":"x","Statement":{{{ok_stmt}}}}}"#), "Syntax errors in policy."),
        (Identity, format!(r#"{{"Id":1,"Statement":{{{ok_stmt}}}}}"#), "Syntax errors in policy."),
        (Identity, with(r#""Effect":"Maybe","Action":"ecs:*","Resource":"*""#), "Syntax errors in policy."),
        (Identity, with(r#""Action":"ecs:*","Resource":"*""#), "Syntax errors in policy."),
        (Identity, with(&format!(r#"{ok_stmt},"Extra":1"#)), "Syntax errors in policy."),
        (Identity, with(&format!(r#"{ok_stmt},"NotAction":"ecs:*""#)), "Syntax errors in policy."),
        (Identity, with(r#""Effect":"Allow","Action":[1],"Resource":"*""#), "Syntax errors in policy."),
        (Identity, with(&format!(r#"{ok_stmt},"Condition":{{"StringEqualz":{{"aws:username":"a"}}}}"#)), "Syntax errors in policy."),
        (Identity, with(&format!(r#"{ok_stmt},"Condition":{{"StringEquals":{{"aws:username":null}}}}"#)), "Syntax errors in policy."),
        (Identity, with(&format!(r#"{ok_stmt},"Condition":{{"StringEquals":"x"}}"#)), "Syntax errors in policy."),
        (Identity, with(&format!(r#"{ok_stmt},"Principal":"*""#)), "Policy document should not specify a principal."),
        (Identity, with(&format!(r#"{ok_stmt},"NotPrincipal":{{"AWS":"{ACCOUNT}"}}"#)), "Policy document should not specify a principal."),
        (Identity, with(r#""Effect":"allow","Action":"ecs:*","Resource":"*""#), "The policy failed legacy parsing"),
        (Identity, with(&format!(r#"{ok_stmt},"Condition":{{"DateLessThan":{{"aws:CurrentTime":"yesterday"}}}}"#)), "The policy failed legacy parsing"),
        (Identity, with(r#""Effect":"Allow","Action":"ecs:*","Resource":"arn:aws::x""#), "The policy failed legacy parsing"),
        (
            Identity,
            format!(r#"{{"Statement":[{{"Sid":"A",{ok_stmt}}},{{"Sid":"A",{ok_stmt}}}]}}"#),
            "Statement IDs (SID) in a single policy must be unique.",
        ),
        (
            Identity,
            with(&format!(r#""Sid":"read-only",{ok_stmt}"#)),
            "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular expression [0-9A-Za-z]*",
        ),
        (Identity, with(r#""Effect":"Allow","Resource":"*""#), "Policy statement must contain actions."),
        (Identity, with(r#""Effect":"Allow","Action":[],"Resource":"*""#), "Policy statement must contain actions."),
        (Identity, with(r#""Effect":"Allow","Action":"ecs:*""#), "Policy statement must contain resources."),
        (Identity, with(r#""Effect":"Allow","Action":"ecs:*","Resource":"bucket""#), r#"Resource bucket must be in ARN format or "*"."#),
        (
            Identity,
            with(r#""Effect":"Allow","Action":"ecs:*","Resource":"arn:foo:ecs:::x""#),
            r#"Partition "foo" is not valid for resource "arn:foo:ecs:::x"."#,
        ),
        (
            Identity,
            with(r#""Effect":"Allow","Action":"ecs:*","Resource":"arn:aws""#),
            "Resource vendor must be fully qualified and cannot contain regexes.",
        ),
        (
            Identity,
            with(r#""Effect":"Allow","Action":"iam:*","Resource":"arn:aws:iam:us-east-1:123456789012:user/x""#),
            "IAM resource arn:aws:iam:us-east-1:123456789012:user/x cannot contain region information.",
        ),
        (
            Identity,
            with(r#""Effect":"Allow","Action":"iam:*","Resource":"arn:aws:iam::123456789012:bogus/x""#),
            r#"IAM resource path must either be "*" or start with user/, federated-user/, role/, group/, instance-profile/, mfa/, server-certificate/, policy/, sms-mfa/, saml-provider/, oidc-provider/, report/, access-report/."#,
        ),
        (
            Identity,
            with(r#""Effect":"Allow","Action":"DescribeClusters","Resource":"*""#),
            "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
        ),
        (
            Identity,
            with(&format!(r#"{ok_stmt},"Condition":{{"StringEquals":{{"username":"a"}}}}"#)),
            "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
        ),
        (Identity, with(r#""Effect":"Allow","Action":"ecs:a:b","Resource":"*""#), "Actions/Condition can contain only one colon."),
        (Identity, with(r#""Effect":"Allow","Action":"ec$:Describe","Resource":"*""#), "Vendor ec$ is not valid"),
        // Trust policies: the trust-policy parser names what is wrong.
        (Trust, with(r#""Effect":"Allow","Action":"sts:AssumeRole""#), "Missing required field Principal"),
        (Trust, with(r#""Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","Resource":"*""#), "Has prohibited field Resource"),
        (Trust, with(r#""Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","NotResource":"*""#), "Has prohibited field NotResource"),
        (Trust, with(r#""Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","Foo":1"#), "Unknown field Foo"),
        (Trust, r#"{"Version":"2012-10-17","statement":[]}"#.into(), "Unknown field statement"),
        (Trust, r#"{"Version":"2012-10-17"}"#.into(), "Missing required field Statement"),
        (Trust, with(r#""Principal":"*","Action":"sts:AssumeRole""#), "Missing required field Effect"),
        (Trust, with(r#""Effect":"Allow","Principal":"*""#), "Policy statement must contain actions."),
        (Trust, with(r#""Effect":"Allow","Principal":{"AWS":"bob"},"Action":"sts:AssumeRole""#), r#"Invalid principal in policy: "AWS":"bob""#),
        (
            Trust,
            with(r#""Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/*"},"Action":"sts:AssumeRole""#),
            r#"Invalid principal in policy: "AWS":"arn:aws:iam::123456789012:role/*""#,
        ),
        (
            Trust,
            with(r#""Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:group/devs"},"Action":"sts:AssumeRole""#),
            r#"Invalid principal in policy: "AWS":"arn:aws:iam::123456789012:group/devs""#,
        ),
        (
            Trust,
            with(r#""Effect":"Allow","Principal":{"Service":"ecs tasks"},"Action":"sts:AssumeRole""#),
            r#"Invalid principal in policy: "SERVICE":"ecs tasks""#,
        ),
        (Trust, with(r#""Effect":"Allow","Principal":{"Robot":"x"},"Action":"sts:AssumeRole""#), "Syntax errors in policy."),
        (Resource, with(r#""Effect":"Allow","Action":"ecr:*""#), "Missing required field Principal"),
    ];
    for (kind, text, message) in cases {
        match PolicyDocument::parse(&text, kind) {
            Ok(_) => panic!("{kind:?} accepted {text}"),
            Err(e) => assert_eq!(e.message(), message, "{kind:?} {text}"),
        }
    }
}

#[test]
fn valid_documents_keep_their_text_and_version() {
    let ok: Vec<(PolicyKind, &str)> = vec![
        (PolicyKind::Identity, r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#),
        (
            PolicyKind::Identity,
            r#"{"Statement":{"Effect":"Allow","Action":"ecs:*","Resource":["arn:aws:ecs","arn:*:ecs:*:*:*"]}}"#,
        ),
        (
            PolicyKind::Identity,
            r#"{"Version":"2008-10-17","Id":"x","Statement":[{"Sid":"","Effect":"Deny","NotAction":["iam:*"],"NotResource":"arn:aws:iam::*:user/*"}]}"#,
        ),
        (
            PolicyKind::Identity,
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecs:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":true},"NumericLessThan":{"ec2:count":5},"StringLike":{"ec2:ResourceTag/aws:cloudformation:stack-name":"x-*"}}}}"#,
        ),
        (
            PolicyKind::Trust,
            r#"{"Version":"2008-10-17","Statement":[{"Sid":"","Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        ),
        (
            PolicyKind::Trust,
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["123456789012","arn:aws:iam::123456789012:root","arn:aws:iam::123456789012:user/a","arn:aws:sts::123456789012:assumed-role/r/s"],"Federated":"cognito-identity.amazonaws.com"},"Action":["sts:AssumeRole","sts:TagSession"],"Condition":{"StringEquals":{"sts:ExternalId":"x"}}}]}"#,
        ),
        (
            PolicyKind::Resource,
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"pull-from-ci","Effect":"Allow","Principal":{"AWS":"*"},"Action":"ecr:BatchGetImage"}]}"#,
        ),
        (
            PolicyKind::Resource,
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#,
        ),
    ];
    for (kind, text) in ok {
        let doc = PolicyDocument::parse(text, kind).unwrap_or_else(|e| panic!("{kind:?} {text}: {e}"));
        assert_eq!(doc.text(), text);
        assert_eq!(doc.kind(), kind);
    }
    let old = identity(r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#);
    assert_eq!(old.version(), PolicyVersion::V2008_10_17);
    assert_eq!(
        old.check_managed_version().unwrap_err().message(),
        "Policy document must be version 2012-10-17 or greater."
    );
    let new = identity(&statement("Allow", r#""*""#, r#""*""#, ""));
    assert_eq!(new.version(), PolicyVersion::V2012_10_17);
    assert!(new.check_managed_version().is_ok());
    let t = trust(
        r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":["123456789012","arn:aws:iam::123456789012:role/x"]},"Action":"sts:AssumeRole"}}"#,
    );
    assert_eq!(t.aws_principals().collect::<Vec<_>>(), ["123456789012", "arn:aws:iam::123456789012:role/x"]);
    assert_eq!(
        MalformedPolicy::invalid_principal("AWS", "arn:aws:iam::123456789012:role/gone").message(),
        r#"Invalid principal in policy: "AWS":"arn:aws:iam::123456789012:role/gone""#
    );
}

#[test]
fn evaluation_follows_aws_policy_evaluation_logic() {
    use Decision::{Allow, ExplicitDeny, ImplicitDeny};
    let allow_ecs = statement("Allow", r#""ecs:*""#, r#""*""#, "");
    let deny_delete = statement("Deny", r#""ecs:Delete*""#, r#""*""#, "");
    let allow_all_but_iam =
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","NotAction":"iam:*","Resource":"*"}}"#;
    let deny_all_but_describe = r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","NotAction":["ecs:Describe*","ecs:List*"],"Resource":"*"}}"#;
    let allow_not_prod = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecs:*","NotResource":"arn:aws:ecs:*:*:cluster/prod"}}"#;
    let deny_not_dev = r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"ecs:*","NotResource":["arn:aws:ecs:*:*:cluster/dev*"]}}"#;
    let allow_clusters = statement("Allow", r#""ecs:*""#, r#"["arn:aws:ecs:us-east-1:123456789012:cluster/pr?d"]"#, "");
    let allow_user_own =
        statement("Allow", r#""iam:*""#, r#""arn:aws:iam::123456789012:user/dev/${aws:username}""#, "");
    let allow_user_own_2008 = r#"{"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"iam:*","Resource":"arn:aws:iam::123456789012:user/dev/${aws:username}"}}"#;

    let req = |action: &str, resource: &str| RequestContext::new(user(), action, resource);
    let cases: Vec<Case> = vec![
        ("nothing allows: implicit deny", vec![], None, req("ecs:ListClusters", "*"), ImplicitDeny),
        ("an allow allows", vec![&allow_ecs], None, req("ecs:ListClusters", "*"), Allow),
        ("actions are case-insensitive", vec![&allow_ecs], None, req("ECS:listclusters", "*"), Allow),
        ("other services are not covered", vec![&allow_ecs], None, req("iam:ListUsers", "*"), ImplicitDeny),
        (
            "explicit deny wins in the same policy set",
            vec![&allow_ecs, &deny_delete],
            None,
            req("ecs:DeleteCluster", CLUSTER),
            ExplicitDeny,
        ),
        (
            "deny covers only what it names",
            vec![&allow_ecs, &deny_delete],
            None,
            req("ecs:UpdateService", CLUSTER),
            Allow,
        ),
        (
            "deny wins whichever policy comes first",
            vec![&deny_delete, &allow_ecs],
            None,
            req("ecs:DeleteService", CLUSTER),
            ExplicitDeny,
        ),
        ("NotAction with Allow grants all but the list", vec![allow_all_but_iam], None, req("ecs:RunTask", "*"), Allow),
        (
            "NotAction with Allow does not grant the list",
            vec![allow_all_but_iam],
            None,
            req("iam:CreateUser", "*"),
            ImplicitDeny,
        ),
        (
            "NotAction with Deny denies all but the list",
            vec![&allow_ecs, deny_all_but_describe],
            None,
            req("ecs:CreateCluster", "*"),
            ExplicitDeny,
        ),
        (
            "NotAction with Deny spares the list",
            vec![&allow_ecs, deny_all_but_describe],
            None,
            req("ecs:DescribeClusters", "*"),
            Allow,
        ),
        (
            "NotResource with Allow: other resources",
            vec![allow_not_prod],
            None,
            req("ecs:UpdateCluster", "arn:aws:ecs:us-east-1:123456789012:cluster/dev"),
            Allow,
        ),
        (
            "NotResource with Allow: not the listed one",
            vec![allow_not_prod],
            None,
            req("ecs:UpdateCluster", CLUSTER),
            ImplicitDeny,
        ),
        (
            "NotResource with Deny",
            vec![&allow_ecs, deny_not_dev],
            None,
            req("ecs:UpdateCluster", CLUSTER),
            ExplicitDeny,
        ),
        (
            "NotResource with Deny spares the list",
            vec![&allow_ecs, deny_not_dev],
            None,
            req("ecs:UpdateCluster", "arn:aws:ecs:us-east-1:123456789012:cluster/dev-2"),
            Allow,
        ),
        ("? matches one character", vec![&allow_clusters], None, req("ecs:UpdateCluster", CLUSTER), Allow),
        (
            "resources are case-sensitive",
            vec![&allow_clusters],
            None,
            req("ecs:UpdateCluster", "arn:aws:ecs:us-east-1:123456789012:cluster/PROD"),
            ImplicitDeny,
        ),
        ("a specific ARN does not cover *", vec![&allow_clusters], None, req("ecs:ListClusters", "*"), ImplicitDeny),
        ("${aws:username} in Resource", vec![&allow_user_own], None, req("iam:CreateAccessKey", USER_ARN), Allow),
        (
            "${aws:username} is another user's",
            vec![&allow_user_own],
            None,
            req("iam:CreateAccessKey", "arn:aws:iam::123456789012:user/dev/bob"),
            ImplicitDeny,
        ),
        (
            "no variables in 2008-10-17",
            vec![allow_user_own_2008],
            None,
            req("iam:CreateAccessKey", USER_ARN),
            ImplicitDeny,
        ),
    ];
    for (name, policies, rp, req, want) in cases {
        assert_eq!(decide(&policies, rp, &req), want, "{name}");
    }
}

#[test]
fn resource_policies_in_the_same_account() {
    use Decision::{Allow, ExplicitDeny, ImplicitDeny};
    let repo = "arn:aws:ecr:us-east-1:123456789012:repository/app";
    let rp = |principal: &str, effect: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":{{"Effect":"{effect}","Principal":{principal},"Action":"ecr:BatchGetImage"}}}}"#
        )
    };
    let allow_pull = statement("Allow", r#""ecr:BatchGetImage""#, r#""*""#, "");
    let pull = |p: Principal| RequestContext::new(p, "ecr:BatchGetImage", repo);
    let cases: Vec<(&str, Vec<&str>, String, RequestContext, Decision)> = vec![
        ("naming the user is enough", vec![], rp(&format!(r#"{{"AWS":"{USER_ARN}"}}"#), "Allow"), pull(user()), Allow),
        (
            "naming the role lets its sessions in",
            vec![],
            rp(&format!(r#"{{"AWS":"{ROLE_ARN}"}}"#), "Allow"),
            pull(session()),
            Allow,
        ),
        ("* is everyone", vec![], rp(r#""*""#, "Allow"), pull(user()), Allow),
        (
            "naming the account delegates: no identity grant, no access",
            vec![],
            rp(r#"{"AWS":"123456789012"}"#, "Allow"),
            pull(user()),
            ImplicitDeny,
        ),
        (
            "naming the account plus an identity grant",
            vec![&allow_pull],
            rp(r#"{"AWS":"123456789012"}"#, "Allow"),
            pull(user()),
            Allow,
        ),
        (
            "the root is the account",
            vec![],
            rp(r#"{"AWS":"arn:aws:iam::123456789012:root"}"#, "Allow"),
            pull(Principal::root(&account())),
            Allow,
        ),
        ("identity grant alone", vec![&allow_pull], rp(r#"{"AWS":"999999999999"}"#, "Allow"), pull(user()), Allow),
        (
            "a deny in the resource policy wins",
            vec![&allow_pull],
            rp(r#"{"AWS":"123456789012"}"#, "Deny"),
            pull(user()),
            ExplicitDeny,
        ),
        (
            "a deny for another principal does not apply",
            vec![&allow_pull],
            rp(r#"{"AWS":"arn:aws:iam::123456789012:user/bob"}"#, "Deny"),
            pull(user()),
            Allow,
        ),
        (
            "AWS * is not a service",
            vec![],
            rp(r#"{"AWS":"*"}"#, "Allow"),
            pull(Principal::service("ecs-tasks.amazonaws.com")),
            ImplicitDeny,
        ),
    ];
    for (name, policies, rp, req, want) in cases {
        assert_eq!(decide(&policies, Some(&rp), &req), want, "{name}");
    }
}

#[test]
fn trust_policies_match_principals() {
    use ResourcePolicyDecision::{AllowAccount, AllowNamed, ImplicitDeny};
    let assume = |principal: &str, p: Principal| {
        let doc = trust(&format!(
            r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Principal":{principal},"Action":"sts:AssumeRole"}}}}"#
        ));
        resource_policy_decision(&doc, &RequestContext::new(p, "sts:AssumeRole", ROLE_ARN))
    };
    let other_user = Principal::user(&AccountId::parse("999999999999").unwrap(), "arn:aws:iam::999999999999:user/x");
    let ecs_tasks = || Principal::service("ecs-tasks.amazonaws.com");
    let by_user = format!(r#"{{"AWS":"{USER_ARN}"}}"#);
    let by_role = format!(r#"{{"AWS":"{ROLE_ARN}"}}"#);
    let cases: Vec<(&str, &str, Principal, ResourcePolicyDecision)> = vec![
        (
            "root ARN: a user of the account, through delegation",
            r#"{"AWS":"arn:aws:iam::123456789012:root"}"#,
            user(),
            AllowAccount,
        ),
        ("account id: same as its root", r#"{"AWS":"123456789012"}"#, session(), AllowAccount),
        (
            "root ARN: the root itself",
            r#"{"AWS":"arn:aws:iam::123456789012:root"}"#,
            Principal::root(&account()),
            AllowNamed,
        ),
        ("root ARN: another account", r#"{"AWS":"arn:aws:iam::123456789012:root"}"#, other_user.clone(), ImplicitDeny),
        ("user ARN", &by_user, user(), AllowNamed),
        ("user ARN: another user", r#"{"AWS":"arn:aws:iam::123456789012:user/dev/bob"}"#, user(), ImplicitDeny),
        ("role ARN: its session", &by_role, session(), AllowNamed),
        ("session ARN", r#"{"AWS":"arn:aws:sts::123456789012:assumed-role/task-role/s1"}"#, session(), AllowNamed),
        (
            "session ARN: another session",
            r#"{"AWS":"arn:aws:sts::123456789012:assumed-role/task-role/s2"}"#,
            session(),
            ImplicitDeny,
        ),
        ("service", r#"{"Service":"ecs-tasks.amazonaws.com"}"#, ecs_tasks(), AllowNamed),
        ("service list", r#"{"Service":["ec2.amazonaws.com","ecs-tasks.amazonaws.com"]}"#, ecs_tasks(), AllowNamed),
        ("service: another one", r#"{"Service":"ecs.amazonaws.com"}"#, ecs_tasks(), ImplicitDeny),
        ("service: not a user", r#"{"Service":"ecs-tasks.amazonaws.com"}"#, user(), ImplicitDeny),
        ("account: not a service", r#"{"AWS":"123456789012"}"#, ecs_tasks(), ImplicitDeny),
        ("*: everyone", r#""*""#, ecs_tasks(), AllowNamed),
        ("*: another account too", r#""*""#, other_user, AllowNamed),
        ("federated: no Berth caller", r#"{"Federated":"cognito-identity.amazonaws.com"}"#, user(), ImplicitDeny),
    ];
    for (name, principal, p, want) in cases {
        assert_eq!(assume(principal, p), want, "{name}");
    }

    // NotPrincipal: everyone but the list.
    let not = trust(&format!(
        r#"{{"Statement":{{"Effect":"Allow","NotPrincipal":{{"AWS":"{USER_ARN}"}},"Action":"sts:AssumeRole"}}}}"#
    ));
    let check = |p: Principal| resource_policy_decision(&not, &RequestContext::new(p, "sts:AssumeRole", ROLE_ARN));
    assert_eq!(check(user()), ImplicitDeny);
    assert_eq!(check(session()), AllowNamed);

    // The whole AssumeRole check: an account-wide trust needs the caller's own grant; a
    // condition on sts:ExternalId gates it.
    let doc = trust(&format!(
        r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Principal":{{"AWS":"{ACCOUNT}"}},"Action":"sts:AssumeRole","Condition":{{"StringEquals":{{"sts:ExternalId":"s3cret"}}}}}}}}"#
    ));
    let grant = identity(&statement("Allow", r#""sts:AssumeRole""#, &format!(r#""{ROLE_ARN}""#), ""));
    let req = RequestContext::new(user(), "sts:AssumeRole", ROLE_ARN).with("sts:ExternalId", "s3cret");
    assert_eq!(evaluate::<&PolicyDocument>(&[], Some(&doc), &req), Decision::ImplicitDeny);
    assert_eq!(evaluate(&[&grant], Some(&doc), &req), Decision::Allow);
    let wrong = RequestContext::new(user(), "sts:AssumeRole", ROLE_ARN).with("sts:ExternalId", "guess");
    assert_eq!(resource_policy_decision(&doc, &wrong), ImplicitDeny);
}

/// One condition on an `Allow *` statement, for a user request with `keys`.
fn condition_holds(condition: &str, keys: &[(&str, &str)]) -> bool {
    let policy = statement("Allow", r#""*""#, r#""*""#, condition);
    let mut req =
        RequestContext::new(user(), "ecs:UpdateService", "arn:aws:ecs:us-east-1:123456789012:service/prod/web");
    for (k, v) in keys {
        req.insert(k, *v);
    }
    decide(&[&policy], None, &req) == Decision::Allow
}

#[test]
fn every_condition_operator_qualifier_and_key() {
    let env = [("aws:ResourceTag/env", "prod")];
    let tags = [("aws:TagKeys", "env"), ("aws:TagKeys", "team")];
    let ip4 = [("aws:SourceIp", "203.0.113.7")];
    let ip6 = [("aws:SourceIp", "2001:db8::7")];
    let now = [("aws:CurrentTime", "2024-06-01T12:00:00Z"), ("aws:EpochTime", "1717243200")];
    let cases: Vec<(&str, Keys, bool)> = vec![
        // Strings.
        (r#"{"StringEquals":{"aws:ResourceTag/env":"prod"}}"#, &env, true),
        (r#"{"StringEquals":{"aws:ResourceTag/env":["dev","prod"]}}"#, &env, true),
        (r#"{"StringEquals":{"aws:ResourceTag/env":"Prod"}}"#, &env, false),
        (r#"{"StringEquals":{"aws:ResourceTag/env":"pro*"}}"#, &env, false),
        (r#"{"StringEquals":{"aws:ResourceTag/env":"prod"}}"#, &[], false),
        (r#"{"StringEquals":{"AWS:RESOURCETAG/ENV":"prod"}}"#, &env, true),
        (r#"{"StringNotEquals":{"aws:ResourceTag/env":"prod"}}"#, &env, false),
        (r#"{"StringNotEquals":{"aws:ResourceTag/env":"dev"}}"#, &env, true),
        (r#"{"StringNotEquals":{"aws:ResourceTag/env":"dev"}}"#, &[], true),
        (r#"{"StringEqualsIgnoreCase":{"aws:ResourceTag/env":"PROD"}}"#, &env, true),
        (r#"{"StringNotEqualsIgnoreCase":{"aws:ResourceTag/env":"PROD"}}"#, &env, false),
        (r#"{"StringLike":{"aws:ResourceTag/env":"pr*"}}"#, &env, true),
        (r#"{"StringLike":{"aws:ResourceTag/env":"p?od"}}"#, &env, true),
        (r#"{"StringLike":{"aws:ResourceTag/env":"dev*"}}"#, &env, false),
        (r#"{"StringNotLike":{"aws:ResourceTag/env":"dev*"}}"#, &env, true),
        (r#"{"StringNotLike":{"aws:ResourceTag/env":"pr*"}}"#, &env, false),
        (r#"{"StringEquals":{"aws:RequestTag/env":"prod"}}"#, &[("aws:RequestTag/env", "prod")], true),
        (
            r#"{"StringEquals":{"ecs:cluster":"arn:aws:ecs:us-east-1:123456789012:cluster/prod"}}"#,
            &[("ecs:cluster", CLUSTER)],
            true,
        ),
        (
            r#"{"StringLike":{"ecs:service":"*/web"}}"#,
            &[("ecs:service", "arn:aws:ecs:us-east-1:123456789012:service/prod/web")],
            true,
        ),
        (
            r#"{"StringLike":{"iam:PassedToService":"ecs-tasks.amazonaws.com"}}"#,
            &[("iam:PassedToService", "ecs-tasks.amazonaws.com")],
            true,
        ),
        (r#"{"StringEquals":{"sts:ExternalId":"abc"}}"#, &[("sts:ExternalId", "abd")], false),
        // Keys that follow from the principal.
        (r#"{"StringEquals":{"aws:username":"alice"}}"#, &[], true),
        (r#"{"StringEquals":{"aws:PrincipalAccount":"123456789012"}}"#, &[], true),
        (r#"{"StringEquals":{"aws:PrincipalType":"User"}}"#, &[], true),
        (r#"{"StringEquals":{"aws:PrincipalTag/team":"web"}}"#, &[("aws:PrincipalTag/team", "web")], true),
        // Policy variables in condition values.
        (
            r#"{"StringEquals":{"aws:ResourceTag/owner":"${aws:username}"}}"#,
            &[("aws:ResourceTag/owner", "alice")],
            true,
        ),
        (r#"{"StringEquals":{"aws:ResourceTag/owner":"${aws:username}"}}"#, &[("aws:ResourceTag/owner", "bob")], false),
        (
            r#"{"StringEquals":{"aws:ResourceTag/team":"${aws:PrincipalTag/team}"}}"#,
            &[("aws:ResourceTag/team", "web"), ("aws:PrincipalTag/team", "web")],
            true,
        ),
        (
            r#"{"StringEquals":{"aws:ResourceTag/team":"${aws:PrincipalTag/team}"}}"#,
            &[("aws:ResourceTag/team", "web")],
            false,
        ),
        (
            r#"{"StringEquals":{"aws:ResourceTag/owner":"${aws:userid}"}}"#,
            &[("aws:ResourceTag/owner", "AIDAX"), ("aws:userid", "AIDAX")],
            true,
        ),
        (r#"{"StringLike":{"aws:ResourceTag/owner":"${*}"}}"#, &[("aws:ResourceTag/owner", "*")], true),
        (r#"{"StringLike":{"aws:ResourceTag/owner":"${*}"}}"#, &[("aws:ResourceTag/owner", "x")], false),
        // ARNs.
        (r#"{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::123456789012:user/dev/alice"}}"#, &[], true),
        (r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:user/dev/*"}}"#, &[], true),
        (r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/*"}}"#, &[], false),
        (r#"{"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::123456789012:user/dev/bob"}}"#, &[], true),
        (r#"{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::*:user/*"}}"#, &[], false),
        (r#"{"ArnLike":{"ecs:cluster":"arn:aws:ecs:*:*:cluster/prod"}}"#, &[("ecs:cluster", CLUSTER)], true),
        (r#"{"ArnLike":{"ecs:cluster":"arn:aws:ecs:*:cluster/prod"}}"#, &[("ecs:cluster", "not an arn")], false),
        // Booleans: strings or JSON booleans, case-insensitive.
        (r#"{"Bool":{"aws:SecureTransport":"true"}}"#, &[("aws:SecureTransport", "true")], true),
        (r#"{"Bool":{"aws:SecureTransport":false}}"#, &[("aws:SecureTransport", "true")], false),
        (r#"{"Bool":{"aws:SecureTransport":"false"}}"#, &[("aws:SecureTransport", "FALSE")], true),
        (r#"{"Bool":{"aws:SecureTransport":"true"}}"#, &[], false),
        (r#"{"BoolIfExists":{"aws:SecureTransport":"true"}}"#, &[], true),
        // IP addresses.
        (r#"{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#, &ip4, true),
        (r#"{"IpAddress":{"aws:SourceIp":["198.51.100.0/24","203.0.113.7"]}}"#, &ip4, true),
        (r#"{"IpAddress":{"aws:SourceIp":"198.51.100.0/24"}}"#, &ip4, false),
        (r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#, &ip6, true),
        (r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#, &ip4, false),
        (r#"{"NotIpAddress":{"aws:SourceIp":"198.51.100.0/24"}}"#, &ip4, true),
        (r#"{"NotIpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#, &ip4, false),
        (r#"{"NotIpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#, &[], true),
        (r#"{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#, &[], false),
        // Numbers: strings or JSON numbers.
        (r#"{"NumericEquals":{"ec2:count":3}}"#, &[("ec2:count", "3")], true),
        (r#"{"NumericEquals":{"ec2:count":"3.0"}}"#, &[("ec2:count", "3")], true),
        (r#"{"NumericNotEquals":{"ec2:count":3}}"#, &[("ec2:count", "4")], true),
        (r#"{"NumericLessThan":{"ec2:count":3}}"#, &[("ec2:count", "3")], false),
        (r#"{"NumericLessThanEquals":{"ec2:count":3}}"#, &[("ec2:count", "3")], true),
        (r#"{"NumericGreaterThan":{"ec2:count":3}}"#, &[("ec2:count", "10")], true),
        (r#"{"NumericGreaterThanEquals":{"ec2:count":3}}"#, &[("ec2:count", "2")], false),
        (r#"{"NumericLessThan":{"ec2:count":3}}"#, &[("ec2:count", "many")], false),
        // Dates: ISO 8601 or epoch seconds on either side.
        (r#"{"DateGreaterThan":{"aws:CurrentTime":"2024-01-01T00:00:00Z"}}"#, &now, true),
        (r#"{"DateLessThan":{"aws:CurrentTime":"2024-01-01T00:00:00Z"}}"#, &now, false),
        (r#"{"DateLessThanEquals":{"aws:CurrentTime":"2024-06-01T12:00:00Z"}}"#, &now, true),
        (r#"{"DateGreaterThanEquals":{"aws:CurrentTime":"2024-06-01T12:00:01Z"}}"#, &now, false),
        (r#"{"DateEquals":{"aws:EpochTime":"2024-06-01T12:00:00Z"}}"#, &now, true),
        (r#"{"DateNotEquals":{"aws:EpochTime":"1717243200"}}"#, &now, false),
        (r#"{"DateLessThan":{"aws:EpochTime":1717243201}}"#, &now, true),
        (r#"{"DateGreaterThan":{"aws:CurrentTime":"2020-01-01"}}"#, &[], false),
        // Null tests presence.
        (r#"{"Null":{"aws:ResourceTag/env":"true"}}"#, &[], true),
        (r#"{"Null":{"aws:ResourceTag/env":"true"}}"#, &env, false),
        (r#"{"Null":{"aws:ResourceTag/env":"false"}}"#, &env, true),
        (r#"{"Null":{"aws:ResourceTag/env":false}}"#, &[], false),
        // IfExists: a missing key passes, a present one is tested.
        (r#"{"StringEqualsIfExists":{"aws:ResourceTag/env":"dev"}}"#, &[], true),
        (r#"{"StringEqualsIfExists":{"aws:ResourceTag/env":"dev"}}"#, &env, false),
        (r#"{"StringLikeIfExists":{"aws:ResourceTag/env":"pr*"}}"#, &env, true),
        (r#"{"ArnLikeIfExists":{"ecs:cluster":"arn:aws:ecs:*:*:cluster/dev"}}"#, &[], true),
        (r#"{"NumericLessThanIfExists":{"ec2:count":3}}"#, &[], true),
        (r#"{"DateLessThanIfExists":{"aws:CurrentTime":"2020-01-01"}}"#, &[], true),
        (r#"{"IpAddressIfExists":{"aws:SourceIp":"10.0.0.0/8"}}"#, &[], true),
        // Set qualifiers on multi-valued keys.
        (r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["env","team","owner"]}}"#, &tags, true),
        (r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["env"]}}"#, &tags, false),
        (r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["env"]}}"#, &[], true),
        (r#"{"ForAllValues:StringLike":{"aws:TagKeys":["e*","t*"]}}"#, &tags, true),
        (r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["team"]}}"#, &tags, true),
        (r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["owner"]}}"#, &tags, false),
        (r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["owner"]}}"#, &[], false),
        (r#"{"ForAnyValue:StringEqualsIfExists":{"aws:TagKeys":["owner"]}}"#, &[], true),
        (r#"{"ForAnyValue:StringNotEquals":{"aws:TagKeys":["env"]}}"#, &tags, true),
        (r#"{"ForAllValues:StringNotEquals":{"aws:TagKeys":["env"]}}"#, &tags, false),
        (r#"{"ForAllValues:StringNotEquals":{"aws:TagKeys":["owner"]}}"#, &tags, true),
        (r#"{"StringEquals":{"aws:TagKeys":"team"}}"#, &tags, true),
        (r#"{"StringNotEquals":{"aws:TagKeys":"team"}}"#, &tags, false),
        // Operators are ANDed, keys are ANDed, values are ORed.
        (r#"{"StringEquals":{"aws:ResourceTag/env":"prod","aws:username":"alice"}}"#, &env, true),
        (r#"{"StringEquals":{"aws:ResourceTag/env":"prod","aws:username":"bob"}}"#, &env, false),
        (r#"{"StringEquals":{"aws:ResourceTag/env":"prod"},"Bool":{"aws:SecureTransport":"true"}}"#, &env, false),
    ];
    for (condition, keys, want) in cases {
        assert_eq!(condition_holds(condition, keys), want, "{condition} with {keys:?}");
    }
}

#[test]
fn principals_fill_their_own_keys() {
    let s = RequestContext::new(session(), "ecs:ListClusters", "*");
    assert_eq!(s.values("aws:PrincipalArn"), Some(&[ROLE_ARN.to_string()][..]));
    assert_eq!(s.values("AWS:PRINCIPALTYPE"), Some(&["AssumedRole".to_string()][..]));
    assert_eq!(s.values("aws:username"), None);
    assert_eq!(session().arn(), "arn:aws:sts::123456789012:assumed-role/task-role/s1");
    let r = RequestContext::new(Principal::root(&account()), "ecs:ListClusters", "*");
    assert_eq!(r.values("aws:PrincipalArn"), Some(&["arn:aws:iam::123456789012:root".to_string()][..]));
    assert_eq!(r.values("aws:PrincipalType"), Some(&["Account".to_string()][..]));
    let svc = RequestContext::new(Principal::service("ecs-tasks.amazonaws.com"), "sts:AssumeRole", ROLE_ARN);
    assert_eq!(svc.values("aws:PrincipalAccount"), None);
    let mut u = RequestContext::new(user(), "ecs:ListClusters", "*");
    assert_eq!(u.values("aws:username"), Some(&["alice".to_string()][..]));
    u.set("aws:username", vec!["override".into()]);
    assert_eq!(u.values("aws:username"), Some(&["override".to_string()][..]));
    u.remove("aws:username");
    assert_eq!(u.values("aws:username"), None);
}

#[test]
fn requests_share_their_principals_keys_and_override_or_hide_them_alone() {
    let policy = identity(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*",
            "Condition":{"StringEquals":{"aws:PrincipalTag/team":"web","aws:username":"alice"}}}]}"#,
    );
    let mut base = PrincipalContext::new(user());
    base.set("aws:PrincipalTag/team", vec!["web".into()]);
    let base = std::sync::Arc::new(base);
    let first = RequestContext::of(base.clone(), "ecs:ListClusters", "*");
    assert_eq!(evaluate(&[&policy], None, &first), Decision::Allow, "the principal's keys, named in any case");
    let mut second = RequestContext::of(base.clone(), "ecs:ListClusters", "*");
    second.set("AWS:PRINCIPALTAG/TEAM", vec!["db".into()]);
    assert_eq!(evaluate(&[&policy], None, &second), Decision::ImplicitDeny, "a request's own value wins");
    second.remove("aws:principaltag/team");
    assert_eq!(second.values("aws:PrincipalTag/team"), None, "removed: hidden, not the shared value");
    second.insert("aws:principaltag/team", "web");
    assert_eq!(evaluate(&[&policy], None, &second), Decision::Allow, "set again after its removal");
    assert_eq!(evaluate(&[&policy], None, &first), Decision::Allow, "other requests still see the shared keys");
    assert_eq!(base.principal(), first.principal());
}
