//! Account settings: PutAccountSetting, PutAccountSettingDefault, ListAccountSettings,
//! DeleteAccountSetting.

use aws_sdk_ecs::types::{Setting, SettingName, SettingType};
use aws_sdk_ecs::Client;
use testkit::error_code;

use crate::berth;

fn root(account: &str) -> String {
    format!("arn:aws:iam::{account}:root")
}

/// Every setting ListAccountSettings returns, following next tokens with pages of `max`.
async fn list_paged(ecs: &Client, effective: bool, principal: Option<&str>, max: i32) -> Vec<Setting> {
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let page = ecs
            .list_account_settings()
            .effective_settings(effective)
            .set_principal_arn(principal.map(str::to_string))
            .max_results(max)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        assert!(page.settings().len() <= max as usize, "page larger than maxResults {max}");
        all.extend(page.settings().iter().cloned());
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return all;
        }
    }
}

fn find<'a>(settings: &'a [Setting], name: &SettingName) -> Option<&'a Setting> {
    settings.iter().find(|s| s.name() == Some(name))
}

#[tokio::test]
async fn put_list_delete() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let root = root(&b.key.account);

    // Nothing set: the plain list is empty.
    let l = ecs.list_account_settings().send().await.unwrap();
    assert!(l.settings().is_empty());

    let p = ecs.put_account_setting().name(SettingName::ContainerInsights).value("enabled").send().await.unwrap();
    let s = p.setting().unwrap();
    assert_eq!(s.name(), Some(&SettingName::ContainerInsights));
    assert_eq!(s.value(), Some("enabled"));
    assert_eq!(s.principal_arn(), Some(root.as_str()));
    assert_eq!(s.r#type(), Some(&SettingType::User));

    let l = ecs.list_account_settings().send().await.unwrap();
    assert_eq!(l.settings().len(), 1);
    assert_eq!(l.settings()[0].value(), Some("enabled"));
    assert_eq!(l.settings()[0].r#type(), Some(&SettingType::User));

    // Putting again replaces the value.
    ecs.put_account_setting().name(SettingName::ContainerInsights).value("enhanced").send().await.unwrap();
    let l = ecs.list_account_settings().name(SettingName::ContainerInsights).send().await.unwrap();
    assert_eq!(l.settings()[0].value(), Some("enhanced"));

    // Naming the root principal explicitly is the same as naming nobody.
    let l = ecs.list_account_settings().principal_arn(&root).send().await.unwrap();
    assert_eq!(l.settings()[0].value(), Some("enhanced"));

    let d = ecs.delete_account_setting().name(SettingName::ContainerInsights).send().await.unwrap();
    assert_eq!(d.setting().unwrap().name(), Some(&SettingName::ContainerInsights));
    assert!(ecs.list_account_settings().send().await.unwrap().settings().is_empty());
    // With effective settings, the AWS default applies again.
    let l =
        ecs.list_account_settings().name(SettingName::ContainerInsights).effective_settings(true).send().await.unwrap();
    assert_eq!(l.settings()[0].value(), Some("disabled"));
    assert_eq!(l.settings()[0].r#type(), Some(&SettingType::AwsManaged));
}

#[tokio::test]
async fn effective_settings_and_type() {
    let b = berth().await;
    let ecs = b.ecs().await;
    ecs.put_account_setting_default().name(SettingName::AwsvpcTrunking).value("enabled").send().await.unwrap();

    let plain = list_paged(&ecs, false, None, 10).await;
    assert_eq!(plain.len(), 1);
    assert_eq!(plain[0].name(), Some(&SettingName::AwsvpcTrunking));

    let effective = list_paged(&ecs, true, None, 10).await;
    assert!(effective.len() > 1, "effective settings list every setting");
    for s in &effective {
        let expected =
            if s.name() == Some(&SettingName::AwsvpcTrunking) { SettingType::User } else { SettingType::AwsManaged };
        assert_eq!(s.r#type(), Some(&expected), "{:?}", s.name());
        assert_eq!(s.principal_arn(), Some(root(&b.key.account).as_str()));
    }
    assert_eq!(find(&effective, &SettingName::AwsvpcTrunking).unwrap().value(), Some("enabled"));
    assert_eq!(find(&effective, &SettingName::ServiceLongArnFormat).unwrap().value(), Some("enabled"));
    assert_eq!(find(&effective, &SettingName::ContainerInsights).unwrap().value(), Some("disabled"));
    let names: std::collections::HashSet<_> = effective.iter().map(|s| s.name().unwrap().clone()).collect();
    assert_eq!(names.len(), effective.len(), "each setting once");
}

#[tokio::test]
async fn name_and_value_filters() {
    let b = berth().await;
    let ecs = b.ecs().await;
    ecs.put_account_setting().name(SettingName::AwsvpcTrunking).value("enabled").send().await.unwrap();
    ecs.put_account_setting().name(SettingName::ContainerInsights).value("disabled").send().await.unwrap();
    ecs.put_account_setting().name(SettingName::ServiceLongArnFormat).value("enabled").send().await.unwrap();

    let l = ecs.list_account_settings().name(SettingName::ContainerInsights).send().await.unwrap();
    assert_eq!(l.settings().len(), 1);
    assert_eq!(l.settings()[0].value(), Some("disabled"));

    let l = ecs.list_account_settings().name(SettingName::AwsvpcTrunking).value("enabled").send().await.unwrap();
    assert_eq!(l.settings().len(), 1);
    assert_eq!(l.settings()[0].name(), Some(&SettingName::AwsvpcTrunking));
    let l = ecs.list_account_settings().name(SettingName::ContainerInsights).value("enabled").send().await.unwrap();
    assert!(l.settings().is_empty());

    // With effective settings the value filter applies to the effective value.
    let effective = |name: SettingName, value: &str| {
        ecs.list_account_settings().effective_settings(true).name(name).value(value).send()
    };
    let l = effective(SettingName::TaskLongArnFormat, "enabled").await.unwrap();
    assert_eq!(l.settings().len(), 1, "AWS's default for taskLongArnFormat is enabled");
    assert_eq!(l.settings()[0].r#type(), Some(&SettingType::AwsManaged));
    assert!(effective(SettingName::TaskLongArnFormat, "disabled").await.unwrap().settings().is_empty());
    assert_eq!(effective(SettingName::AwsvpcTrunking, "enabled").await.unwrap().settings().len(), 1);
}

/// ECS documents that `value` can only be used together with `name`.
#[tokio::test]

async fn value_filter_needs_a_name() {
    let b = berth().await;
    let ecs = b.ecs().await;
    ecs.put_account_setting().name(SettingName::AwsvpcTrunking).value("enabled").send().await.unwrap();
    let err = ecs.list_account_settings().value("enabled").send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    let err = ecs.list_account_settings().effective_settings(true).value("enabled").send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
}

#[tokio::test]
async fn pagination() {
    let b = berth().await;
    let ecs = b.ecs().await;
    ecs.put_account_setting().name(SettingName::ContainerInsights).value("enabled").send().await.unwrap();
    let everything = list_paged(&ecs, true, None, 10).await;
    for max in 1..=10 {
        let paged = list_paged(&ecs, true, None, max).await;
        assert_eq!(paged, everything, "maxResults {max}");
    }
    let err = ecs.list_account_settings().max_results(11).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    let err = ecs.list_account_settings().max_results(0).send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
    let err = ecs.list_account_settings().next_token("garbage").send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
}

#[tokio::test]
async fn invalid_values_are_refused() {
    let b = berth().await;
    let ecs = b.ecs().await;
    for (name, value) in [
        (SettingName::ContainerInsights, "sometimes"),
        (SettingName::ServiceLongArnFormat, "on"),
        (SettingName::FargateTaskRetirementWaitPeriod, "3"),
        (SettingName::TagResourceAuthorization, "enabled"),
        (SettingName::AwsvpcTrunking, ""),
    ] {
        let err = ecs.put_account_setting().name(name.clone()).value(value).send().await.unwrap_err();
        assert_eq!(error_code(&err), "InvalidParameterException", "{name:?}={value:?}");
        let err = ecs.put_account_setting_default().name(name.clone()).value(value).send().await.unwrap_err();
        assert_eq!(error_code(&err), "InvalidParameterException", "default {name:?}={value:?}");
    }
    assert!(ecs.list_account_settings().send().await.unwrap().settings().is_empty());
}

#[tokio::test]
async fn iam_user_principal_is_separate() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let alice = format!("arn:aws:iam::{}:user/alice", b.key.account);
    ecs.put_account_setting_default().name(SettingName::ContainerInsights).value("enabled").send().await.unwrap();

    let p = ecs
        .put_account_setting()
        .name(SettingName::ServiceLongArnFormat)
        .value("disabled")
        .principal_arn(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(p.setting().unwrap().principal_arn(), Some(alice.as_str()));
    assert_eq!(p.setting().unwrap().r#type(), Some(&SettingType::User));

    // Alice's setting is listed for her, not for the root principal.
    let l = ecs.list_account_settings().principal_arn(&alice).send().await.unwrap();
    assert_eq!(l.settings().len(), 1);
    assert_eq!(l.settings()[0].name(), Some(&SettingName::ServiceLongArnFormat));
    assert_eq!(l.settings()[0].principal_arn(), Some(alice.as_str()));
    let l = ecs.list_account_settings().send().await.unwrap();
    assert_eq!(l.settings().len(), 1);
    assert_eq!(l.settings()[0].name(), Some(&SettingName::ContainerInsights));

    // Her effective settings: her own value, else the account default, else AWS's.
    let effective = list_paged(&ecs, true, Some(&alice), 10).await;
    assert_eq!(find(&effective, &SettingName::ServiceLongArnFormat).unwrap().value(), Some("disabled"));
    assert_eq!(find(&effective, &SettingName::ContainerInsights).unwrap().value(), Some("enabled"));
    assert_eq!(find(&effective, &SettingName::AwsvpcTrunking).unwrap().value(), Some("disabled"));
    let root_effective = list_paged(&ecs, true, None, 10).await;
    assert_eq!(find(&root_effective, &SettingName::ServiceLongArnFormat).unwrap().value(), Some("enabled"));

    ecs.delete_account_setting().name(SettingName::ServiceLongArnFormat).principal_arn(&alice).send().await.unwrap();
    assert!(ecs.list_account_settings().principal_arn(&alice).send().await.unwrap().settings().is_empty());
    // Deleting hers left the account default alone.
    assert_eq!(ecs.list_account_settings().send().await.unwrap().settings().len(), 1);
}

#[tokio::test]
async fn principals_of_other_accounts_are_refused() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let foreign = if b.key.account == "111122223333" { "444455556666" } else { "111122223333" };
    for principal in [
        format!("arn:aws:iam::{foreign}:user/mallory"),
        format!("arn:aws:iam::{foreign}:root"),
        "not-an-arn".to_string(),
    ] {
        let err = ecs
            .put_account_setting()
            .name(SettingName::ServiceLongArnFormat)
            .value("disabled")
            .principal_arn(&principal)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "InvalidParameterException", "{principal}");
        let err = ecs.list_account_settings().principal_arn(&principal).send().await.unwrap_err();
        assert_eq!(error_code(&err), "InvalidParameterException", "{principal}");
        let err = ecs
            .delete_account_setting()
            .name(SettingName::ServiceLongArnFormat)
            .principal_arn(&principal)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "InvalidParameterException", "{principal}");
    }

    // A real second account: its settings and ours do not mix.
    let other = b.create_account();
    let theirs = b.ecs_as(&other, "us-east-1").await;
    theirs.put_account_setting().name(SettingName::ContainerInsights).value("enabled").send().await.unwrap();
    assert!(ecs.list_account_settings().send().await.unwrap().settings().is_empty());
    let err = theirs
        .put_account_setting()
        .name(SettingName::ContainerInsights)
        .value("enabled")
        .principal_arn(format!("arn:aws:iam::{}:user/alice", b.key.account))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "InvalidParameterException");
}

/// Account settings are set per Region.
#[tokio::test]
async fn settings_are_per_region() {
    let b = berth().await;
    let east = b.ecs().await;
    let west = b.ecs_as(&b.key, "us-west-2").await;
    east.put_account_setting().name(SettingName::ContainerInsights).value("enabled").send().await.unwrap();
    assert!(west.list_account_settings().send().await.unwrap().settings().is_empty());
    let l = west
        .list_account_settings()
        .name(SettingName::ContainerInsights)
        .effective_settings(true)
        .send()
        .await
        .unwrap();
    assert_eq!(l.settings()[0].value(), Some("disabled"));
    assert_eq!(east.list_account_settings().send().await.unwrap().settings().len(), 1);
}
