use proptest::prelude::*;

use super::*;
use crate::{AccountId, Region};

fn scope() -> Scope {
    Scope { account: AccountId::parse("123456789012").unwrap(), region: Region::parse("us-east-1").unwrap() }
}

fn versions(list: &[(&str, i64, &[&str])]) -> Versions {
    list.iter()
        .map(|(id, created, stages)| {
            (id.to_string(), VersionInfo { created: *created, stages: stages.iter().map(|s| s.to_string()).collect() })
        })
        .collect()
}

fn stages_of(v: &Versions, id: &str) -> Vec<String> {
    v[id].stages.iter().cloned().collect()
}

#[test]
fn names_follow_the_api_rules() {
    assert!(SecretName::parse("web/db_pass+1=x.y@z-w").is_ok());
    assert!(SecretName::parse(&"a".repeat(512)).is_ok());
    for bad in ["", "a b", "é", "a:b", "a*", &"a".repeat(513)] {
        assert!(SecretName::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_secret_id_is_a_name_an_arn_of_the_scope_or_foreign() {
    let s = scope();
    assert_eq!(SecretRef::parse("web/db", &s), SecretRef::Name("web/db"));
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:web/db-AbCdEf";
    assert_eq!(SecretRef::parse(arn, &s), SecretRef::Arn("web/db-AbCdEf"));
    let other = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:web/db-AbCdEf";
    assert_eq!(SecretRef::parse(other, &s), SecretRef::Foreign);
    assert_eq!(SecretRef::parse("arn:aws:ssm:us-east-1:123456789012:parameter/x", &s), SecretRef::Foreign);
}

#[test]
fn a_new_current_version_makes_the_old_one_previous() {
    let mut v = versions(&[("a", 1, &[AWSPREVIOUS]), ("b", 2, &[AWSCURRENT, AWSPENDING]), ("c", 3, &[])]);
    move_stage(&mut v, AWSCURRENT, "c");
    assert_eq!(stages_of(&v, "c"), [AWSCURRENT]);
    assert_eq!(stages_of(&v, "b"), [AWSPENDING, AWSPREVIOUS]);
    assert!(stages_of(&v, "a").is_empty());
    // Moving a label onto its holder changes nothing.
    let before = v.clone();
    move_stage(&mut v, AWSCURRENT, "c");
    assert_eq!(v, before);
    // Other labels move alone.
    move_stage(&mut v, "blue", "a");
    move_stage(&mut v, "blue", "b");
    assert!(stages_of(&v, "a").is_empty());
    assert_eq!(stage_holder(&v, "blue"), Some("b"));
}

#[test]
fn only_the_oldest_unlabelled_versions_are_dropped() {
    let mut v = Versions::new();
    for i in 0..(MAX_VERSIONS as i64 + 3) {
        v.insert(format!("v{i:03}"), VersionInfo { created: i, stages: BTreeSet::new() });
    }
    v.get_mut("v000").unwrap().stages.insert(AWSPREVIOUS.into());
    assert_eq!(versions_to_drop(&v), ["v001", "v002", "v003"]);
}

#[test]
fn filters_match_prefixes_with_negation() {
    let tags = vec![("team".to_string(), "payments".to_string())];
    let facts = Facts { name: "prod/db-password", description: Some("The Prod database"), tags: &tags };
    let f = |key, values: &[&str]| Filter::parse(key, values.iter().map(|s| s.to_string()).collect()).unwrap();
    assert!(f(FilterKey::Name, &["prod/"]).matches(&facts));
    assert!(!f(FilterKey::Name, &["Prod/"]).matches(&facts), "names are case-sensitive");
    assert!(f(FilterKey::Description, &["the prod"]).matches(&facts), "descriptions are not");
    assert!(f(FilterKey::Name, &["dev/", "prod/"]).matches(&facts));
    assert!(!f(FilterKey::Name, &["!prod/"]).matches(&facts));
    assert!(f(FilterKey::Name, &["!dev/"]).matches(&facts));
    assert!(f(FilterKey::TagKey, &["te"]).matches(&facts));
    assert!(!f(FilterKey::TagValue, &["!pay"]).matches(&facts));
    assert!(f(FilterKey::All, &["DATABASE pay"]).matches(&facts));
    assert!(f(FilterKey::All, &["password"]).matches(&facts));
    assert!(!f(FilterKey::All, &["word"]).matches(&facts));
    assert!(Filter::parse(FilterKey::Name, vec!["a*".into()]).is_err());
}

proptest! {
    #[test]
    fn suffixes_are_six_alphanumerics(random in any::<[u8; 6]>()) {
        let s = arn_suffix(random);
        prop_assert_eq!(s.len(), 6);
        prop_assert!(s.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn every_label_has_at_most_one_holder(moves in proptest::collection::vec((0usize..4, 0usize..5), 0..40)) {
        let labels = [AWSCURRENT, AWSPREVIOUS, AWSPENDING, "x"];
        let mut v = versions(&[("a", 1, &[]), ("b", 2, &[]), ("c", 3, &[]), ("d", 4, &[]), ("e", 5, &[])]);
        let ids = ["a", "b", "c", "d", "e"];
        for (l, i) in moves {
            move_stage(&mut v, labels[l], ids[i]);
            prop_assert_eq!(stage_holder(&v, labels[l]), Some(ids[i]));
        }
        for l in labels {
            prop_assert!(v.values().filter(|x| x.stages.contains(l)).count() <= 1);
        }
    }
}
