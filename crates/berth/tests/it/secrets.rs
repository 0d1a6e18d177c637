//! Secrets Manager driven by the official `aws-sdk-secretsmanager`: secrets and their
//! versions, staging labels moved as AWS moves them, lookups by name, ARN and partial
//! ARN, scheduled deletion and restore, listing filters and paging, batch reads, resource
//! policies that let another IAM user read, tags, AWS's errors; values sealed at rest and
//! versions that are whole after `kill -9`.

use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, SortOrderType, Tag};
use aws_sdk_secretsmanager::Client;
use testkit::{error_code, Berth};

use crate::berth;
use crate::iam::{config_with, iam};

async fn sm(b: &Berth) -> Client {
    Client::new(&b.sdk_config(&b.key, "us-east-1").await)
}

fn token(n: u32) -> String {
    format!("{n:08}-0000-4000-8000-000000000000")
}

fn stages(v: &[String]) -> Vec<&str> {
    let mut s: Vec<&str> = v.iter().map(String::as_str).collect();
    s.sort();
    s
}

async fn current(c: &Client, id: &str) -> String {
    c.get_secret_value().secret_id(id).send().await.unwrap().secret_string().unwrap().to_string()
}

#[tokio::test]
async fn secrets_are_created_read_by_name_arn_and_partial_arn() {
    let b = berth().await;
    let c = sm(&b).await;
    let r = c
        .create_secret()
        .name("web/db")
        .secret_string(r#"{"user":"app","password":"s3cret"}"#)
        .description("The web database")
        .kms_key_id("alias/web")
        .tags(Tag::builder().key("team").value("web").build())
        .send()
        .await
        .unwrap();
    let arn = r.arn().unwrap().to_string();
    let prefix = format!("arn:aws:secretsmanager:us-east-1:{}:secret:web/db-", b.key.account);
    let suffix = arn.strip_prefix(&prefix).expect("the ARN names the secret");
    assert!(suffix.len() == 6 && suffix.chars().all(|c| c.is_ascii_alphanumeric()), "{arn}");
    let version = r.version_id().unwrap().to_string();

    for id in ["web/db", arn.as_str(), &prefix[..prefix.len() - 1]] {
        let v = c.get_secret_value().secret_id(id).send().await.unwrap();
        assert_eq!(v.arn(), Some(arn.as_str()), "{id}");
        assert_eq!(v.name(), Some("web/db"));
        assert_eq!(v.version_id(), Some(version.as_str()));
        assert_eq!(v.secret_string(), Some(r#"{"user":"app","password":"s3cret"}"#));
        assert_eq!(v.version_stages(), ["AWSCURRENT"]);
        assert!(v.created_date().is_some());
    }
    let d = c.describe_secret().secret_id("web/db").send().await.unwrap();
    assert_eq!(d.description(), Some("The web database"));
    assert_eq!(d.kms_key_id(), Some("alias/web"));
    assert_eq!(d.tags().len(), 1);
    assert_eq!(d.version_ids_to_stages().unwrap()[&version], ["AWSCURRENT"]);
    assert!(d.created_date().is_some() && d.last_changed_date().is_some() && d.deleted_date().is_none());

    // Binary values go in and out as bytes.
    let bytes = vec![0u8, 159, 146, 150, 255];
    c.create_secret().name("bin").secret_binary(Blob::new(bytes.clone())).send().await.unwrap();
    let v = c.get_secret_value().secret_id("bin").send().await.unwrap();
    assert_eq!(v.secret_binary().unwrap().as_ref(), &bytes[..]);
    assert!(v.secret_string().is_none());

    // Errors as AWS answers them.
    let e = c.create_secret().name("web/db").secret_string("x").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceExistsException");
    let e = c.create_secret().name("bad name").secret_string("x").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
    let e = c.create_secret().name("both").secret_string("x").secret_binary(Blob::new("y")).send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
    let e = c.create_secret().name("big").secret_string("x".repeat(65_537)).send().await.unwrap_err();
    assert!(error_code(&e).contains("InvalidParameterException"), "{}", error_code(&e));
    c.create_secret().name("max").secret_string("x".repeat(65_536)).send().await.unwrap();
    for id in ["nope", "arn:aws:secretsmanager:us-east-1:000000000000:secret:web/db", &format!("{arn}x")] {
        let e = c.get_secret_value().secret_id(id).send().await.unwrap_err();
        assert_eq!(error_code(&e), "ResourceNotFoundException", "{id}");
    }
    let e = c.get_secret_value().secret_id("web/db").version_stage("AWSPENDING").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceNotFoundException");
    let e = c.rotate_secret().secret_id("web/db").send().await.unwrap_err();
    assert_eq!(error_code(&e), "UnsupportedFeatureException");

    // A secret without a value has no current version.
    let r = c.create_secret().name("empty").send().await.unwrap();
    assert!(r.version_id().is_none());
    let e = c.get_secret_value().secret_id("empty").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceNotFoundException");
}

#[tokio::test]
async fn the_same_token_is_the_same_version_and_another_value_is_refused() {
    let b = berth().await;
    let c = sm(&b).await;
    let first = c.create_secret().name("s").client_request_token(token(1)).secret_string("a").send().await.unwrap();
    assert_eq!(first.version_id(), Some(token(1).as_str()));
    let again = c.create_secret().name("s").client_request_token(token(1)).secret_string("a").send().await.unwrap();
    assert_eq!(again.arn(), first.arn(), "the same request is answered again");
    let e = c.create_secret().name("s").client_request_token(token(1)).secret_string("b").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceExistsException");

    c.put_secret_value().secret_id("s").client_request_token(token(2)).secret_string("b").send().await.unwrap();
    let same =
        c.put_secret_value().secret_id("s").client_request_token(token(2)).secret_string("b").send().await.unwrap();
    assert_eq!(stages(same.version_stages()), ["AWSCURRENT"]);
    let e =
        c.put_secret_value().secret_id("s").client_request_token(token(2)).secret_string("c").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceExistsException");
    let e =
        c.put_secret_value().secret_id("s").client_request_token("short").secret_string("c").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
    let versions = c.list_secret_version_ids().secret_id("s").send().await.unwrap();
    assert_eq!(versions.versions().len(), 2);
}

#[tokio::test]
async fn staging_labels_move_as_aws_moves_them() {
    let b = berth().await;
    let c = sm(&b).await;
    c.create_secret().name("s").client_request_token(token(1)).secret_string("one").send().await.unwrap();
    c.put_secret_value().secret_id("s").client_request_token(token(2)).secret_string("two").send().await.unwrap();
    let get = |stage: &'static str| {
        let c = c.clone();
        async move {
            c.get_secret_value()
                .secret_id("s")
                .version_stage(stage)
                .send()
                .await
                .map(|v| v.secret_string().unwrap().to_string())
        }
    };
    assert_eq!(get("AWSCURRENT").await.unwrap(), "two");
    assert_eq!(get("AWSPREVIOUS").await.unwrap(), "one");

    // A pending version does not become current.
    let r = c
        .put_secret_value()
        .secret_id("s")
        .client_request_token(token(3))
        .secret_string("three")
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();
    assert_eq!(r.version_stages(), ["AWSPENDING"]);
    assert_eq!(get("AWSCURRENT").await.unwrap(), "two");
    assert_eq!(get("AWSPENDING").await.unwrap(), "three");

    // Moving AWSCURRENT needs the version it leaves named, and makes that one previous.
    let e = c
        .update_secret_version_stage()
        .secret_id("s")
        .version_stage("AWSCURRENT")
        .move_to_version_id(token(3))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
    c.update_secret_version_stage()
        .secret_id("s")
        .version_stage("AWSCURRENT")
        .move_to_version_id(token(3))
        .remove_from_version_id(token(2))
        .send()
        .await
        .unwrap();
    let d = c.describe_secret().secret_id("s").send().await.unwrap();
    let map = d.version_ids_to_stages().unwrap();
    assert_eq!(stages(&map[&token(3)]), ["AWSCURRENT", "AWSPENDING"]);
    assert_eq!(stages(&map[&token(2)]), ["AWSPREVIOUS"]);
    assert!(!map.contains_key(&token(1)), "a version without labels is deprecated: {map:?}");
    let all = c.list_secret_version_ids().secret_id("s").include_deprecated(true).send().await.unwrap();
    assert_eq!(all.versions().len(), 3);
    assert_eq!(c.list_secret_version_ids().secret_id("s").send().await.unwrap().versions().len(), 2);
    // A deprecated version is still readable by id; a label on the wrong version is not found.
    let v = c.get_secret_value().secret_id("s").version_id(token(1)).send().await.unwrap();
    assert_eq!(v.secret_string(), Some("one"));
    assert!(v.version_stages().is_empty());
    let e =
        c.get_secret_value().secret_id("s").version_id(token(1)).version_stage("AWSCURRENT").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceNotFoundException");

    // Removing a label; custom labels move alone.
    c.update_secret_version_stage()
        .secret_id("s")
        .version_stage("AWSPENDING")
        .remove_from_version_id(token(3))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(&get("AWSPENDING").await.unwrap_err()), "ResourceNotFoundException");
    c.update_secret_version_stage()
        .secret_id("s")
        .version_stage("blue")
        .move_to_version_id(token(1))
        .send()
        .await
        .unwrap();
    assert_eq!(get("AWSCURRENT").await.unwrap(), "three");

    // UpdateSecret with a value makes a new current version.
    let u = c.update_secret().secret_id("s").description("d").secret_string("four").send().await.unwrap();
    assert!(u.version_id().is_some());
    assert_eq!(get("AWSCURRENT").await.unwrap(), "four");
    assert_eq!(get("AWSPREVIOUS").await.unwrap(), "three");
    let u = c.update_secret().secret_id("s").description("only the description").send().await.unwrap();
    assert!(u.version_id().is_none());
    assert_eq!(current(&c, "s").await, "four");
}

#[tokio::test]
async fn deletion_is_scheduled_refuses_use_and_is_restored_or_forced() {
    let b = berth().await;
    let c = sm(&b).await;
    c.create_secret().name("s").secret_string("v").send().await.unwrap();
    for days in [6, 31] {
        let e = c.delete_secret().secret_id("s").recovery_window_in_days(days).send().await.unwrap_err();
        assert_eq!(error_code(&e), "InvalidParameterException", "{days}");
    }
    let e = c
        .delete_secret()
        .secret_id("s")
        .recovery_window_in_days(7)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
    let d = c.delete_secret().secret_id("s").recovery_window_in_days(7).send().await.unwrap();
    let date = d.deletion_date().unwrap().secs();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((date - now - 7 * 86_400).abs() < 60, "{date} vs {now}");

    let e = c.get_secret_value().secret_id("s").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidRequestException");
    let e = c.put_secret_value().secret_id("s").secret_string("w").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidRequestException");
    let e = c.create_secret().name("s").secret_string("w").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidRequestException");
    let described = c.describe_secret().secret_id("s").send().await.unwrap();
    assert!(described.deleted_date().is_some());
    assert!(c.list_secrets().send().await.unwrap().secret_list().is_empty());
    let listed = c.list_secrets().include_planned_deletion(true).send().await.unwrap();
    assert_eq!(listed.secret_list().len(), 1);

    c.restore_secret().secret_id("s").send().await.unwrap();
    assert_eq!(current(&c, "s").await, "v");
    assert!(c.describe_secret().secret_id("s").send().await.unwrap().deleted_date().is_none());

    c.delete_secret().secret_id("s").force_delete_without_recovery(true).send().await.unwrap();
    let e = c.describe_secret().secret_id("s").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceNotFoundException");
    // The name is free again, with a new ARN.
    c.create_secret().name("s").secret_string("again").send().await.unwrap();
    assert_eq!(current(&c, "s").await, "again");
}

#[tokio::test]
async fn list_filters_sort_and_pages() {
    let b = berth().await;
    let c = sm(&b).await;
    for (name, team, description) in
        [("prod/db", "pay", "Prod database"), ("prod/api", "web", "API key"), ("dev/db", "pay", "dev database")]
    {
        c.create_secret()
            .name(name)
            .description(description)
            .secret_string("x")
            .tags(Tag::builder().key("team").value(team).build())
            .send()
            .await
            .unwrap();
    }
    let names = |r: aws_sdk_secretsmanager::operation::list_secrets::ListSecretsOutput| {
        let mut n: Vec<String> = r.secret_list().iter().map(|s| s.name().unwrap().to_string()).collect();
        n.sort();
        n
    };
    let filter = |key: FilterNameStringType, values: &[&str]| {
        Filter::builder().key(key).set_values(Some(values.iter().map(|s| s.to_string()).collect())).build()
    };
    let r = c.list_secrets().filters(filter(FilterNameStringType::Name, &["prod/"])).send().await.unwrap();
    assert_eq!(names(r), ["prod/api", "prod/db"]);
    let r = c.list_secrets().filters(filter(FilterNameStringType::Name, &["!prod/"])).send().await.unwrap();
    assert_eq!(names(r), ["dev/db"]);
    let r = c
        .list_secrets()
        .filters(filter(FilterNameStringType::TagValue, &["pay"]))
        .filters(filter(FilterNameStringType::Description, &["PROD"]))
        .send()
        .await
        .unwrap();
    assert_eq!(names(r), ["prod/db"]);
    let r = c.list_secrets().filters(filter(FilterNameStringType::All, &["database"])).send().await.unwrap();
    assert_eq!(names(r), ["dev/db", "prod/db"]);
    let e = c.list_secrets().filters(filter(FilterNameStringType::Name, &["a*"])).send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");

    let asc: Vec<String> = c
        .list_secrets()
        .sort_order(SortOrderType::Asc)
        .send()
        .await
        .unwrap()
        .secret_list()
        .iter()
        .map(|s| s.name().unwrap().to_string())
        .collect();
    let desc: Vec<String> = c
        .list_secrets()
        .sort_order(SortOrderType::Desc)
        .send()
        .await
        .unwrap()
        .secret_list()
        .iter()
        .map(|s| s.name().unwrap().to_string())
        .collect();
    assert_eq!(asc, ["prod/db", "prod/api", "dev/db"], "by creation");
    assert_eq!(desc, ["dev/db", "prod/api", "prod/db"]);

    let mut seen = Vec::new();
    let mut next = None;
    loop {
        let r = c.list_secrets().max_results(1).set_next_token(next).send().await.unwrap();
        assert!(r.secret_list().len() <= 1);
        seen.extend(r.secret_list().iter().map(|s| s.name().unwrap().to_string()));
        next = r.next_token().map(str::to_string);
        if next.is_none() {
            break;
        }
    }
    assert_eq!(seen, asc);

    // Batch reads: by ids, with errors for those that do not resolve; or by filters.
    let r = c.batch_get_secret_value().secret_id_list("prod/db").secret_id_list("nope").send().await.unwrap();
    assert_eq!(r.secret_values().len(), 1);
    assert_eq!(r.errors().len(), 1);
    assert_eq!(r.errors()[0].error_code(), Some("ResourceNotFoundException"));
    assert_eq!(r.errors()[0].secret_id(), Some("nope"));
    let r = c.batch_get_secret_value().filters(filter(FilterNameStringType::Name, &["prod/"])).send().await.unwrap();
    assert_eq!(r.secret_values().len(), 2);
    let e = c.batch_get_secret_value().send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
}

#[tokio::test]
async fn tags_are_added_replaced_and_removed() {
    let b = berth().await;
    let c = sm(&b).await;
    c.create_secret()
        .name("s")
        .secret_string("x")
        .tags(Tag::builder().key("a").value("1").build())
        .send()
        .await
        .unwrap();
    c.tag_resource()
        .secret_id("s")
        .tags(Tag::builder().key("a").value("2").build())
        .tags(Tag::builder().key("b").value("3").build())
        .send()
        .await
        .unwrap();
    let d = c.describe_secret().secret_id("s").send().await.unwrap();
    let tags: Vec<(&str, &str)> = d.tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
    assert_eq!(tags, [("a", "2"), ("b", "3")]);
    c.untag_resource().secret_id("s").tag_keys("a").send().await.unwrap();
    assert_eq!(c.describe_secret().secret_id("s").send().await.unwrap().tags().len(), 1);
    let e =
        c.tag_resource().secret_id("s").tags(Tag::builder().key("aws:x").value("1").build()).send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
    let e =
        c.tag_resource().secret_id("nope").tags(Tag::builder().key("k").value("1").build()).send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceNotFoundException");
}

/// A resource policy must name its principals; this one does not.
const NO_PRINCIPAL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;

#[tokio::test]
async fn a_resource_policy_lets_another_user_read_one_secret() {
    let b = berth().await;
    let c = sm(&b).await;
    let account = b.key.account.clone();
    let shared = c.create_secret().name("shared").secret_string("for-reader").send().await.unwrap();
    c.create_secret().name("private").secret_string("not-for-reader").send().await.unwrap();

    let iam = iam(&b).await;
    iam.create_user().user_name("reader").send().await.unwrap();
    let key = iam.create_access_key().user_name("reader").send().await.unwrap().access_key.unwrap();
    let reader = Client::new(&config_with(&b, key.access_key_id(), key.secret_access_key(), None).await);
    let e = reader.get_secret_value().secret_id("shared").send().await.unwrap_err();
    assert_eq!(error_code(&e), "AccessDeniedException", "no policy grants it yet");

    let e = c.put_resource_policy().secret_id("shared").resource_policy("{not json").send().await.unwrap_err();
    assert_eq!(error_code(&e), "MalformedPolicyDocumentException");
    let e = c.put_resource_policy().secret_id("shared").resource_policy(NO_PRINCIPAL).send().await.unwrap_err();
    assert_eq!(error_code(&e), "MalformedPolicyDocumentException", "a resource policy names its principals");
    let v = c.validate_resource_policy().resource_policy(NO_PRINCIPAL).send().await.unwrap();
    assert!(!v.policy_validation_passed());

    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{account}:user/reader"}},"Action":"secretsmanager:GetSecretValue","Resource":"*"}}]}}"#
    );
    let v = c.validate_resource_policy().secret_id("shared").resource_policy(&policy).send().await.unwrap();
    assert!(v.policy_validation_passed());
    c.put_resource_policy().secret_id("shared").resource_policy(&policy).send().await.unwrap();
    let got = c.get_resource_policy().secret_id("shared").send().await.unwrap();
    assert_eq!(got.resource_policy(), Some(policy.as_str()));

    // By name, ARN and partial ARN; not the other secret, and no other action.
    let partial = shared.arn().unwrap().rsplit_once('-').unwrap().0.to_string();
    for id in ["shared", shared.arn().unwrap(), &partial] {
        assert_eq!(current(&reader, id).await, "for-reader", "{id}");
    }
    let e = reader.get_secret_value().secret_id("private").send().await.unwrap_err();
    assert_eq!(error_code(&e), "AccessDeniedException");
    let e = reader.put_secret_value().secret_id("shared").secret_string("x").send().await.unwrap_err();
    assert_eq!(error_code(&e), "AccessDeniedException");
    let r = reader.batch_get_secret_value().secret_id_list("shared").secret_id_list("private").send().await;
    let e = r.unwrap_err();
    assert_eq!(error_code(&e), "AccessDeniedException", "BatchGetSecretValue itself needs an identity policy");

    // An explicit deny in the policy wins over the user's own allow.
    iam.put_user_policy()
        .user_name("reader")
        .policy_name("batch")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:BatchGetSecretValue","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    let r = reader.batch_get_secret_value().secret_id_list("shared").secret_id_list("private").send().await.unwrap();
    assert_eq!(r.secret_values().len(), 1);
    assert_eq!(r.errors()[0].error_code(), Some("AccessDeniedException"));

    c.delete_resource_policy().secret_id("shared").send().await.unwrap();
    assert!(c.get_resource_policy().secret_id("shared").send().await.unwrap().resource_policy().is_none());
    let e = reader.get_secret_value().secret_id("shared").send().await.unwrap_err();
    assert_eq!(error_code(&e), "AccessDeniedException");
}

#[tokio::test]
async fn values_are_sealed_at_rest_and_whole_after_kill_9() {
    let mut b = berth().await;
    let c = sm(&b).await;
    let marker = "berth-secret-marker-9f3a1c";
    c.create_secret()
        .name("s")
        .client_request_token(token(0))
        .secret_string(format!("{marker}-0"))
        .send()
        .await
        .unwrap();
    // Eight writers put versions one after another; the server is killed once twenty
    // are acknowledged, with more in flight. Each acknowledged one must be whole after.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..8u32 {
        let (c, done) = (c.clone(), done.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            // At most 96 puts, so no acknowledged version is dropped as deprecated (100 kept).
            for i in 1..=12u32 {
                let n = w * 1000 + i;
                let put =
                    c.put_secret_value().secret_id("s").client_request_token(token(n)).secret_string(format!("v{n}"));
                if put.send().await.is_err() {
                    break;
                }
                acked.push(n);
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            acked
        }));
    }
    let enough = || async { done.load(std::sync::atomic::Ordering::SeqCst) >= 20 };
    assert!(testkit::eventually(std::time::Duration::from_secs(30), enough).await, "the puts did not go through");
    b.kill9();
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    b.restart().await;
    assert!(acked.len() >= 20);
    let c = sm(&b).await;
    let d = c.describe_secret().secret_id("s").send().await.unwrap();
    let map = d.version_ids_to_stages().unwrap().clone();
    let all = c.list_secret_version_ids().secret_id("s").include_deprecated(true).send().await.unwrap();
    let ids: Vec<String> = all.versions().iter().map(|v| v.version_id().unwrap().to_string()).collect();
    eprintln!("{} puts acknowledged before kill -9, {} versions after", acked.len(), ids.len() - 1);
    for n in &acked {
        assert!(ids.contains(&token(*n)), "acknowledged version {n} is there");
    }
    // Every version present has its value, and exactly one is current.
    for id in &ids {
        let v = c.get_secret_value().secret_id("s").version_id(id).send().await.unwrap();
        let n: u32 = id[..8].parse().unwrap();
        let want = if n == 0 { format!("{marker}-0") } else { format!("v{n}") };
        assert_eq!(v.secret_string(), Some(want.as_str()));
    }
    assert_eq!(map.values().filter(|s| s.iter().any(|x| x == "AWSCURRENT")).count(), 1);
    if ids.len() > 1 {
        assert_eq!(map.values().filter(|s| s.iter().any(|x| x == "AWSPREVIOUS")).count(), 1);
    }

    // No file of the data dir holds a value in clear.
    c.put_secret_value().secret_id("s").secret_string(format!("{marker}-last")).send().await.unwrap();
    b.kill9();
    let mut found = Vec::new();
    let mut dirs = vec![b.data_dir().to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if std::fs::read(&p).unwrap().windows(marker.len()).any(|w| w == marker.as_bytes()) {
                found.push(p);
            }
        }
    }
    assert!(found.is_empty(), "a secret value in clear in {found:?}");
    b.restart().await;
    assert_eq!(current(&sm(&b).await, "s").await, format!("{marker}-last"));
}
