//! SSM Parameter Store driven by the official `aws-sdk-ssm`: versions, selectors, labels,
//! paths, filters, tags, SSM's validation and error codes, SecureString values that are
//! never stored in clear, IAM decisions on parameter ARNs, and a `kill -9` right after a
//! `PutParameter` answered.

use aws_sdk_ssm::types::{
    ParameterStringFilter, ParameterTier, ParameterType, ParametersFilter, ParametersFilterKey, ResourceTypeForTagging,
    Tag,
};
use aws_sdk_ssm::Client;
use testkit::{error_code, Berth};

use crate::berth;

async fn ssm(b: &Berth) -> Client {
    Client::new(&b.sdk_config(&b.key, "us-east-1").await)
}

async fn put(c: &Client, name: &str, value: &str, ty: ParameterType) -> i64 {
    c.put_parameter().name(name).value(value).r#type(ty).send().await.unwrap().version()
}

async fn overwrite(c: &Client, name: &str, value: &str) -> i64 {
    c.put_parameter().name(name).value(value).overwrite(true).send().await.unwrap().version()
}

async fn value(c: &Client, name: &str) -> String {
    let r = c.get_parameter().name(name).with_decryption(true).send().await.unwrap();
    r.parameter().unwrap().value().unwrap().to_string()
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build().unwrap()
}

fn filter(key: &str, option: Option<&str>, values: &[&str]) -> ParameterStringFilter {
    let mut f = ParameterStringFilter::builder().key(key).set_option(option.map(str::to_string));
    for v in values {
        f = f.values(*v);
    }
    f.build().unwrap()
}

#[tokio::test]
async fn parameters_are_versioned_and_read_by_name_arn_version_and_label() {
    let b = berth().await;
    let c = ssm(&b).await;
    let account = b.key.account.clone();
    assert_eq!(put(&c, "/web/db/host", "db1", ParameterType::String).await, 1);
    let e = c.put_parameter().name("/web/db/host").value("x").r#type(ParameterType::String).send().await.unwrap_err();
    assert_eq!(error_code(&e), "ParameterAlreadyExists");
    assert_eq!(overwrite(&c, "/web/db/host", "db2").await, 2);
    assert_eq!(overwrite(&c, "/web/db/host", "db3").await, 3);

    let r = c.get_parameter().name("/web/db/host").send().await.unwrap();
    let p = r.parameter().unwrap();
    assert_eq!(
        (p.name(), p.value(), p.version(), p.r#type()),
        (Some("/web/db/host"), Some("db3"), 3, Some(&ParameterType::String))
    );
    assert_eq!(p.arn(), Some(format!("arn:aws:ssm:us-east-1:{account}:parameter/web/db/host").as_str()));
    assert_eq!(p.data_type(), Some("text"));
    assert!(p.last_modified_date().is_some());
    let r = c.get_parameter().name("/web/db/host:1").send().await.unwrap();
    assert_eq!((r.parameter().unwrap().value(), r.parameter().unwrap().selector()), (Some("db1"), Some(":1")));
    let arn = format!("arn:aws:ssm:us-east-1:{account}:parameter/web/db/host");
    assert_eq!(value(&c, &arn).await, "db3");
    assert_eq!(value(&c, &format!("{arn}:2")).await, "db2");
    let e = c.get_parameter().name("/web/db/host:9").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ParameterVersionNotFound");
    let e = c.get_parameter().name("/web/nothing").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ParameterNotFound");
    let e = c.get_parameter().name("/web/db/host:nolabel").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ParameterNotFound");

    // A label names one version; labelling another version moves it.
    let r = c
        .label_parameter_version()
        .name("/web/db/host")
        .parameter_version(1)
        .labels("prod")
        .labels("1bad")
        .send()
        .await
        .unwrap();
    assert_eq!((r.parameter_version(), r.invalid_labels()), (1, &["1bad".to_string()][..]));
    assert_eq!(value(&c, "/web/db/host:prod").await, "db1");
    let r = c.label_parameter_version().name("/web/db/host").labels("prod").send().await.unwrap();
    assert_eq!(r.parameter_version(), 3);
    assert_eq!(value(&c, "/web/db/host:prod").await, "db3");
    let h = c.get_parameter_history().name("/web/db/host").send().await.unwrap();
    let labels: Vec<Vec<String>> = h.parameters().iter().map(|p| p.labels().to_vec()).collect();
    assert_eq!(labels, [vec![], vec![], vec!["prod".to_string()]]);
    let values: Vec<_> = h.parameters().iter().map(|p| p.value().unwrap()).collect();
    assert_eq!(values, ["db1", "db2", "db3"]);
    let e = c.label_parameter_version().name("/web/db/host").parameter_version(7).labels("x").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ParameterVersionNotFound");
    // Version 3 carries "prod" and nine more: ten, the most one version may carry.
    let nine: Vec<String> = (0..9).map(|i| format!("l{i}")).collect();
    c.label_parameter_version().name("/web/db/host").set_labels(Some(nine)).send().await.unwrap();
    let e = c.label_parameter_version().name("/web/db/host").labels("l9").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ParameterVersionLabelLimitExceeded");
    let r = c
        .unlabel_parameter_version()
        .name("/web/db/host")
        .parameter_version(3)
        .labels("prod")
        .labels("absent")
        .send()
        .await
        .unwrap();
    assert_eq!((r.removed_labels(), r.invalid_labels()), (&["prod".to_string()][..], &["absent".to_string()][..]));

    // GetParameters: what was found, and what was not, as given.
    put(&c, "plain", "p", ParameterType::StringList).await;
    let r = c
        .get_parameters()
        .names("plain")
        .names("/web/db/host:2")
        .names("missing")
        .names("/web/db/host:8")
        .send()
        .await
        .unwrap();
    let found: Vec<_> = r.parameters().iter().map(|p| (p.name().unwrap(), p.value().unwrap())).collect();
    assert_eq!(found, [("plain", "p"), ("/web/db/host", "db2")]);
    assert_eq!(r.invalid_parameters(), ["missing", "/web/db/host:8"]);

    c.delete_parameter().name("plain").send().await.unwrap();
    let e = c.delete_parameter().name("plain").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ParameterNotFound");
    let r = c.delete_parameters().names("/web/db/host").names("gone").send().await.unwrap();
    assert_eq!(
        (r.deleted_parameters(), r.invalid_parameters()),
        (&["/web/db/host".to_string()][..], &["gone".to_string()][..])
    );
    // A name deleted and created again starts at version 1.
    assert_eq!(put(&c, "/web/db/host", "new", ParameterType::String).await, 1);
}

#[tokio::test]
async fn a_hundred_versions_are_kept_and_a_labelled_oldest_one_blocks_the_next() {
    let b = berth().await;
    let c = ssm(&b).await;
    put(&c, "counter", "1", ParameterType::String).await;
    c.label_parameter_version().name("counter").parameter_version(1).labels("first").send().await.unwrap();
    for i in 2..=100 {
        assert_eq!(overwrite(&c, "counter", &i.to_string()).await, i);
    }
    let e = c.put_parameter().name("counter").value("101").overwrite(true).send().await.unwrap_err();
    assert_eq!(error_code(&e), "ParameterMaxVersionLimitExceeded");
    c.unlabel_parameter_version().name("counter").parameter_version(1).labels("first").send().await.unwrap();
    assert_eq!(overwrite(&c, "counter", "101").await, 101);
    let e = c.get_parameter().name("counter:1").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ParameterVersionNotFound");
    // History pages through the 100 kept versions, oldest first.
    let mut versions = Vec::new();
    let mut token = None;
    loop {
        let r = c.get_parameter_history().name("counter").max_results(30).set_next_token(token).send().await.unwrap();
        versions.extend(r.parameters().iter().map(|p| p.version()));
        token = r.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(versions, (2..=101).collect::<Vec<i64>>());
}

#[tokio::test]
async fn by_path_reads_one_level_or_all_below_in_pages() {
    let b = berth().await;
    let c = ssm(&b).await;
    for n in ["/app/a", "/app/b", "/app/sub/c", "/app/sub/deep/d", "/apple/x", "/other/y"] {
        put(&c, n, n, ParameterType::String).await;
    }
    put(&c, "/app/secret", "s3cret", ParameterType::SecureString).await;
    let names = |r: &aws_sdk_ssm::operation::get_parameters_by_path::GetParametersByPathOutput| {
        r.parameters().iter().map(|p| p.name().unwrap().to_string()).collect::<Vec<_>>()
    };
    let r = c.get_parameters_by_path().path("/app").send().await.unwrap();
    assert_eq!(names(&r), ["/app/a", "/app/b", "/app/secret"]);
    let sealed = r.parameters()[2].value().unwrap();
    assert_ne!(sealed, "s3cret", "without decryption a SecureString is answered sealed");
    let r = c.get_parameters_by_path().path("/app/").recursive(true).with_decryption(true).send().await.unwrap();
    assert_eq!(names(&r), ["/app/a", "/app/b", "/app/secret", "/app/sub/c", "/app/sub/deep/d"]);
    assert_eq!(r.parameters()[2].value(), Some("s3cret"));

    // One per page, every parameter once.
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let r = c
            .get_parameters_by_path()
            .path("/")
            .recursive(true)
            .max_results(2)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        assert!(r.parameters().len() <= 2);
        seen.extend(names(&r));
        token = r.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 7);
    let e = c.get_parameters_by_path().path("/").next_token("garbage").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidNextToken");

    // Filters: Type, and Label (which answers the labelled version).
    let r = c
        .get_parameters_by_path()
        .path("/app")
        .parameter_filters(filter("Type", None, &["SecureString"]))
        .send()
        .await
        .unwrap();
    assert_eq!(names(&r), ["/app/secret"]);
    overwrite(&c, "/app/a", "a2").await;
    c.label_parameter_version().name("/app/a").parameter_version(1).labels("stable").send().await.unwrap();
    let r = c
        .get_parameters_by_path()
        .path("/app")
        .parameter_filters(filter("Label", None, &["stable"]))
        .send()
        .await
        .unwrap();
    assert_eq!((names(&r), r.parameters()[0].version()), (vec!["/app/a".to_string()], 1));
    let e = c
        .get_parameters_by_path()
        .path("/app")
        .parameter_filters(filter("Name", None, &["/app/a"]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidFilterKey");
    let e = c
        .get_parameters_by_path()
        .path("/app")
        .parameter_filters(filter("Label", Some("BeginsWith"), &["s"]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidFilterOption");
    let e = c.get_parameters_by_path().path("app").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ValidationException");
    let e = c.get_parameters_by_path().path("/").max_results(11).send().await.unwrap_err();
    assert_eq!(error_code(&e), "ValidationException");
}

#[tokio::test]
async fn describe_filters_by_ssms_keys_and_options_and_pages() {
    let b = berth().await;
    let c = ssm(&b).await;
    for n in ["/app/a", "/app/sub/b", "/db/host", "plain"] {
        put(&c, n, "v", ParameterType::String).await;
    }
    c.put_parameter()
        .name("/db/password")
        .value("pw")
        .r#type(ParameterType::SecureString)
        .description("the db")
        .tags(tag("team", "db"))
        .send()
        .await
        .unwrap();
    let names = |r: &aws_sdk_ssm::operation::describe_parameters::DescribeParametersOutput| {
        r.parameters().iter().map(|p| p.name().unwrap().to_string()).collect::<Vec<_>>()
    };
    let d = |f: ParameterStringFilter| c.describe_parameters().parameter_filters(f).send();
    assert_eq!(names(&d(filter("Name", Some("BeginsWith"), &["/db"])).await.unwrap()), ["/db/host", "/db/password"]);
    assert_eq!(names(&d(filter("Name", Some("Contains"), &["ub"])).await.unwrap()), ["/app/sub/b"]);
    assert_eq!(names(&d(filter("Name", None, &["plain"])).await.unwrap()), ["plain"]);
    assert_eq!(names(&d(filter("Path", None, &["/app"])).await.unwrap()), ["/app/a"]);
    assert_eq!(names(&d(filter("Path", Some("Recursive"), &["/app"])).await.unwrap()), ["/app/a", "/app/sub/b"]);
    assert_eq!(names(&d(filter("Type", None, &["SecureString"])).await.unwrap()), ["/db/password"]);
    assert_eq!(names(&d(filter("KeyId", None, &["alias/aws/ssm"])).await.unwrap()), ["/db/password"]);
    assert_eq!(names(&d(filter("tag:team", None, &["db"])).await.unwrap()), ["/db/password"]);
    assert_eq!(names(&d(filter("tag:team", None, &[])).await.unwrap()), ["/db/password"]);
    assert_eq!(names(&d(filter("Tier", None, &["Standard"])).await.unwrap()).len(), 5);
    let r = d(filter("Name", None, &["/db/password"])).await.unwrap();
    let m = &r.parameters()[0];
    assert_eq!(
        (m.description(), m.key_id(), m.tier()),
        (Some("the db"), Some("alias/aws/ssm"), Some(&ParameterTier::Standard))
    );
    assert!(m.last_modified_user().unwrap().ends_with(":root"), "{:?}", m.last_modified_user());
    let legacy = ParametersFilter::builder().key(ParametersFilterKey::Type).values("SecureString").build().unwrap();
    assert_eq!(names(&c.describe_parameters().filters(legacy.clone()).send().await.unwrap()), ["/db/password"]);

    for (f, code) in [
        (filter("Label", None, &["x"]), "InvalidFilterKey"),
        (filter("Path", Some("Equals"), &["/app"]), "InvalidFilterOption"),
        (filter("Type", Some("Contains"), &["String"]), "InvalidFilterOption"),
        (filter("Path", None, &["app"]), "InvalidFilterValue"),
        (filter("Type", None, &["Number"]), "InvalidFilterValue"),
    ] {
        assert_eq!(error_code(&d(f).await.unwrap_err()), code);
    }
    let e = c
        .describe_parameters()
        .filters(legacy)
        .parameter_filters(filter("Name", None, &["x"]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "ValidationException");
    let e = c
        .describe_parameters()
        .parameter_filters(filter("Name", None, &["x"]))
        .parameter_filters(filter("Name", None, &["y"]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "ValidationException");

    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let r = c.describe_parameters().max_results(2).set_next_token(token).send().await.unwrap();
        seen.extend(names(&r));
        token = r.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["/app/a", "/app/sub/b", "/db/host", "/db/password", "plain"]);
}

#[tokio::test]
async fn puts_are_validated_as_ssm_validates_them() {
    let b = berth().await;
    let c = ssm(&b).await;
    let p = || c.put_parameter().value("v").r#type(ParameterType::String);
    let deep = (1..=16).map(|i| format!("/{i}")).collect::<String>();
    for (name, code) in [
        ("awsthing", "ValidationException"),
        ("/SSM/x", "ValidationException"),
        ("a/b", "ValidationException"),
        ("has space", "ValidationException"),
        ("/a//b", "ValidationException"),
        (deep.as_str(), "HierarchyLevelLimitExceededException"),
    ] {
        assert_eq!(error_code(&p().name(name).send().await.unwrap_err()), code, "{name}");
    }
    p().name(&deep[..deep.rfind('/').unwrap()]).send().await.unwrap();
    let e = c.put_parameter().name("x").value("v").r#type(ParameterType::from("Number")).send().await.unwrap_err();
    assert_eq!(error_code(&e), "ValidationException");
    let e = c.put_parameter().name("x").value("v").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ValidationException", "a type is needed to create");
    let e = p().name("x").value("").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ValidationException");
    let e = p().name("x").overwrite(true).tags(tag("a", "b")).send().await.unwrap_err();
    assert_eq!(error_code(&e), "ValidationException");

    // Tiers: 4 KB standard, 8 KB advanced, Intelligent-Tiering picks, no way back.
    let big = "x".repeat(4097);
    assert_eq!(error_code(&p().name("big").value(&big).send().await.unwrap_err()), "ValidationException");
    let r = p().name("big").value(&big).tier(ParameterTier::IntelligentTiering).send().await.unwrap();
    assert_eq!(r.tier(), Some(&ParameterTier::Advanced));
    p().name("huge").value("x".repeat(8192)).tier(ParameterTier::Advanced).send().await.unwrap();
    let e = p().name("huger").value("x".repeat(8193)).tier(ParameterTier::Advanced).send().await.unwrap_err();
    assert_eq!(error_code(&e), "ValidationException");
    let e = p().name("big").value("small").overwrite(true).tier(ParameterTier::Standard).send().await.unwrap_err();
    assert_eq!(error_code(&e), "ValidationException");
    let r = p().name("big").value("small").overwrite(true).send().await.unwrap();
    assert_eq!(r.tier(), Some(&ParameterTier::Advanced));
    let r = p().name("small").value("v").tier(ParameterTier::IntelligentTiering).send().await.unwrap();
    assert_eq!(r.tier(), Some(&ParameterTier::Standard));
    let r = p()
        .name("expiring")
        .value("v")
        .tier(ParameterTier::IntelligentTiering)
        .policies(r#"[{"Type":"Expiration","Version":"1.0","Attributes":{"Timestamp":"2030-01-01T00:00:00.000Z"}}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.tier(), Some(&ParameterTier::Advanced));
    let e = p()
        .name("badpolicy")
        .value("v")
        .tier(ParameterTier::Advanced)
        .policies(r#"[{"Type":"Explode"}]"#)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidPolicyTypeException");

    // Allowed patterns, key ids, data types.
    p().name("port").value("8080").allowed_pattern("^\\d+$").send().await.unwrap();
    let e = p().name("port2").value("80a").allowed_pattern("^\\d+$").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ParameterPatternMismatchException");
    let e = p().name("port3").value("80").allowed_pattern("(").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidAllowedPatternException");
    let e = p().name("k").key_id("alias/mine").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ValidationException", "a key id is for SecureString only");
    let e = c
        .put_parameter()
        .name("k")
        .value("v")
        .r#type(ParameterType::SecureString)
        .key_id("not/a/key")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidKeyId");
    c.put_parameter()
        .name("k")
        .value("v")
        .r#type(ParameterType::SecureString)
        .key_id("alias/mine")
        .send()
        .await
        .unwrap();
    let e = p().name("dt").data_type("number").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ValidationException");
    p().name("ami").data_type("aws:ec2:image").value("ami-0123456789abcdef0").send().await.unwrap();
    let e = c.get_parameters().set_names(Some((0..11).map(|i| format!("n{i}")).collect())).send().await.unwrap_err();
    assert_eq!(error_code(&e), "ValidationException");
}

#[tokio::test]
async fn tags_are_kept_on_parameters() {
    let b = berth().await;
    let c = ssm(&b).await;
    c.put_parameter()
        .name("/t/p")
        .value("v")
        .r#type(ParameterType::String)
        .tags(tag("env", "prod"))
        .send()
        .await
        .unwrap();
    let list = |id: &'static str| {
        c.list_tags_for_resource().resource_type(ResourceTypeForTagging::Parameter).resource_id(id).send()
    };
    let pairs = |r: aws_sdk_ssm::operation::list_tags_for_resource::ListTagsForResourceOutput| {
        r.tag_list().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect::<Vec<_>>()
    };
    assert_eq!(pairs(list("/t/p").await.unwrap()), [("env".to_string(), "prod".to_string())]);
    c.add_tags_to_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id("/t/p")
        .tags(tag("team", "web"))
        .tags(tag("env", "dev"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        pairs(list("/t/p").await.unwrap()),
        [("env".to_string(), "dev".to_string()), ("team".to_string(), "web".to_string())]
    );
    c.remove_tags_from_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id("/t/p")
        .tag_keys("env")
        .send()
        .await
        .unwrap();
    assert_eq!(pairs(list("/t/p").await.unwrap()), [("team".to_string(), "web".to_string())]);
    // Overwriting keeps the tags.
    overwrite(&c, "/t/p", "v2").await;
    assert_eq!(pairs(list("/t/p").await.unwrap()).len(), 1);

    assert_eq!(error_code(&list("/t/none").await.unwrap_err()), "InvalidResourceId");
    let e = c
        .list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::Document)
        .resource_id("/t/p")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidResourceType");
    let many: Vec<Tag> = (0..50).map(|i| tag(&format!("k{i}"), "v")).collect();
    let e = c
        .add_tags_to_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id("/t/p")
        .set_tags(Some(many))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "TooManyTagsError");
    let e = c
        .add_tags_to_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id("/t/p")
        .tags(tag("aws:x", "v"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "ValidationException");
}

#[tokio::test]
async fn secure_strings_are_sealed_at_rest_and_survive_kill_9() {
    let mut b = berth().await;
    let c = ssm(&b).await;
    let secret = "s3cret-4f0c9a7e-value";
    let plain = "plain-8d2e61b0-value";
    c.put_parameter().name("/web/db-password").value(secret).r#type(ParameterType::SecureString).send().await.unwrap();
    // A String value is stored as it is: the search below does see values in clear.
    put(&c, "/web/plain", plain, ParameterType::String).await;
    // Killed right after the answer: the acknowledged version is there after a restart.
    b.kill9();
    let holds = |needle: &str| {
        crate::support::files_under(b.data_dir())
            .into_iter()
            .any(|f| std::fs::read(&f).unwrap_or_default().windows(needle.len()).any(|w| w == needle.as_bytes()))
    };
    assert!(holds(plain), "the data dir's search finds a String value");
    assert!(!holds(secret), "the data dir holds the SecureString value in clear");
    b.restart().await;
    let c = ssm(&b).await;
    assert_eq!(value(&c, "/web/db-password").await, secret);
    let r = c.get_parameter().name("/web/db-password").send().await.unwrap();
    let sealed = r.parameter().unwrap().value().unwrap();
    assert!(!sealed.contains(secret) && sealed.len() > secret.len(), "answered sealed, not in clear");
    let h = c.get_parameter_history().name("/web/db-password").send().await.unwrap();
    assert_eq!(h.parameters()[0].value(), Some(sealed));
    assert_eq!(h.parameters()[0].key_id(), Some("alias/aws/ssm"));
    assert_eq!(overwrite(&c, "/web/db-password", "next").await, 2);
    b.kill9();
    b.restart().await;
    let c = ssm(&b).await;
    assert_eq!(value(&c, "/web/db-password").await, "next");
    assert_eq!(value(&c, "/web/db-password:1").await, secret);
}

#[tokio::test]
async fn a_users_policy_decides_which_parameters_it_reads() {
    let b = berth().await;
    let account = b.key.account.clone();
    let c = ssm(&b).await;
    put(&c, "/app/db", "a", ParameterType::String).await;
    put(&c, "/other/db", "b", ParameterType::String).await;
    let iam = crate::iam::iam(&b).await;
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["ssm:GetParameter","ssm:GetParameters"],"Resource":"arn:aws:ssm:us-east-1:{account}:parameter/app/*"}}]}}"#
    );
    iam.create_user().user_name("reader").send().await.unwrap();
    iam.put_user_policy().user_name("reader").policy_name("read-app").policy_document(policy).send().await.unwrap();
    let key = iam.create_access_key().user_name("reader").send().await.unwrap().access_key.unwrap();
    let reader = Client::new(&crate::iam::config_with(&b, key.access_key_id(), key.secret_access_key(), None).await);
    assert_eq!(value(&reader, "/app/db").await, "a");
    assert_eq!(value(&reader, "/app/db:1").await, "a");
    let e = reader.get_parameter().name("/other/db").send().await.unwrap_err();
    assert_eq!(error_code(&e), "AccessDeniedException");
    let e = reader.get_parameters().names("/app/db").names("/other/db").send().await.unwrap_err();
    assert_eq!(error_code(&e), "AccessDeniedException");
    let e = reader.put_parameter().name("/app/db").value("x").overwrite(true).send().await.unwrap_err();
    assert_eq!(error_code(&e), "AccessDeniedException");
}

/// A request no SDK sends, as raw signed HTTP: (status, `__type`, `message`).
async fn raw(b: &Berth, operation: &str, body: &str) -> (u16, String, String) {
    let url = format!("{}/", b.endpoint.trim_end_matches('/'));
    let target = format!("AmazonSSM.{operation}");
    let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target.as_str())];
    let auth = crate::bad_input::sigv4_headers("POST", &url, &b.key, "us-east-1", "ssm", &headers, body.as_bytes());
    let mut req = reqwest::Client::new().post(&url);
    for (name, value) in headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).chain(auth) {
        req = req.header(name, value);
    }
    let r = req.body(body.to_string()).send().await.unwrap();
    let status = r.status().as_u16();
    let json: serde_json::Value = r.json().await.unwrap();
    (status, json["__type"].as_str().unwrap_or_default().into(), json["message"].as_str().unwrap_or_default().into())
}

#[tokio::test]
async fn malformed_requests_are_refused_without_quoting_values() {
    let b = berth().await;
    let (status, code, message) = raw(&b, "PutParameter", r#"{"Name":"n","Type":"String","Value":987654321}"#).await;
    assert_eq!((status, code.as_str()), (400, "SerializationException"));
    assert!(!message.contains("987654321"), "{message}");
    let (_, code, _) = raw(&b, "PutParameter", r#"{"Name":"n","Type":"String","Value":"v","Bogus":1}"#).await;
    assert_eq!(code, "SerializationException");
    let (_, code, _) = raw(&b, "GetParameter", r#"{}"#).await;
    assert_eq!(code, "ValidationException", "a missing required member");
    let (_, code, _) = raw(&b, "SendCommand", r#"{}"#).await;
    assert_eq!(code, "UnsupportedFeatureException");
    let (_, code, _) = raw(&b, "NoSuchThing", r#"{}"#).await;
    assert_eq!(code, "InvalidAction");
}
