use super::*;
use crate::{AccountId, Region};

fn scope() -> Scope {
    Scope { account: AccountId::parse("123456789012").unwrap(), region: Region::parse("us-east-1").unwrap() }
}

#[test]
fn names_follow_ssms_rules() {
    for ok in ["a", "db-password", "/web/db/password", "/a.b_c-d", "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15"] {
        ParameterName::for_put(ok, &scope()).unwrap();
    }
    for (bad, code) in [
        ("", "ValidationException"),
        ("has space", "ValidationException"),
        ("a/b", "ValidationException"),
        ("/a//b", "ValidationException"),
        ("/a/", "ValidationException"),
        ("awsthing", "ValidationException"),
        ("/SSM/x", "ValidationException"),
        ("/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16", "HierarchyLevelLimitExceededException"),
    ] {
        assert_eq!(ParameterName::for_put(bad, &scope()).unwrap_err().code, code, "{bad}");
    }
    let long = format!("/{}", "x".repeat(MAX_ARN_LEN));
    assert!(ParameterName::for_put(&long, &scope()).is_err());
}

#[test]
fn arns_and_references_round_trip() {
    let n = ParameterName::parse("/web/db").unwrap();
    assert_eq!(n.arn(&scope()), "arn:aws:ssm:us-east-1:123456789012:parameter/web/db");
    let r = Reference::parse(&format!("{}:3", n.arn(&scope())), &scope()).unwrap().unwrap();
    assert_eq!((r.name, r.selector), (n, Selector::Version(3)));
    let r = Reference::parse("plain:prod", &scope()).unwrap().unwrap();
    assert_eq!(r.selector, Selector::Label("prod".into()));
    assert_eq!(Reference::parse("arn:aws:ssm:eu-west-1:123456789012:parameter/x", &scope()).unwrap(), None);
    assert!(Reference::parse("a:1:2", &scope()).is_err());
}

#[test]
fn hierarchy_membership() {
    let n = ParameterName::parse("/a/b/c").unwrap();
    assert!(n.is_under("/a/b", false) && n.is_under("/a", true) && n.is_under("/", true));
    assert!(!n.is_under("/a", false) && !n.is_under("/a/b/c", true) && !n.is_under("/a/bb", true));
    assert!(ParameterName::parse("/top").unwrap().is_under("/", false));
}

#[test]
fn labels_tiers_and_patterns() {
    assert!(label_is_valid("prod") && label_is_valid("v1.2_x-y"));
    for bad in ["1st", "awsx", "SSMx", "a b", "", &"l".repeat(101)] {
        assert!(!label_is_valid(bad), "{bad}");
    }
    let big = "x".repeat(5000);
    assert_eq!(resolve_tier(None, None, "v", false), Ok(Tier::Standard));
    assert!(resolve_tier(None, None, &big, false).is_err());
    assert_eq!(resolve_tier(Some(TierChoice::IntelligentTiering), None, &big, false), Ok(Tier::Advanced));
    assert_eq!(resolve_tier(None, Some(Tier::Advanced), "v", false), Ok(Tier::Advanced));
    assert!(resolve_tier(Some(TierChoice::Standard), Some(Tier::Advanced), "v", false).is_err());
    assert!(resolve_tier(Some(TierChoice::Advanced), None, &"x".repeat(8193), false).is_err());
    let p = AllowedPattern::parse("^\\d+$").unwrap();
    assert!(p.check("123").is_ok());
    assert_eq!(p.check("12a").unwrap_err().code, "ParameterPatternMismatchException");
    assert_eq!(AllowedPattern::parse("(").unwrap_err().code, "InvalidAllowedPatternException");
    for ok in ["alias/aws/ssm", "1234abcd-12ab-34cd-56ef-1234567890ab", "arn:aws:kms:us-east-1:123456789012:key/abc"] {
        check_key_id(ok).unwrap();
    }
    assert_eq!(check_key_id("nope/x").unwrap_err().code, "InvalidKeyId");
}

#[test]
fn filters_check_keys_and_options_per_operation() {
    let f = |k: &str, o: Option<&str>, u| Filter::parse(k, o, vec!["/a".into()], u);
    assert_eq!(f("Label", None, FilterUse::Describe).unwrap_err().code, "InvalidFilterKey");
    assert_eq!(f("Name", None, FilterUse::ByPath).unwrap_err().code, "InvalidFilterKey");
    assert_eq!(f("Path", Some("Equals"), FilterUse::Describe).unwrap_err().code, "InvalidFilterOption");
    assert_eq!(f("Name", Some("Contains"), FilterUse::ByPath).unwrap_err().code, "InvalidFilterKey");
    assert_eq!(f("Type", Some("Contains"), FilterUse::Describe).unwrap_err().code, "InvalidFilterOption");
    let path = f("Path", Some("Recursive"), FilterUse::Describe).unwrap();
    let facts = Facts {
        name: "/a/b/c",
        ty: ParameterType::String,
        key_id: None,
        tier: Tier::Standard,
        data_type: "text",
        tags: &[],
        labels: &[],
    };
    assert!(path.matches(&facts));
    let name = Filter::parse("Name", Some("BeginsWith"), vec!["a/b".into()], FilterUse::Describe).unwrap();
    assert!(name.matches(&facts));
}
