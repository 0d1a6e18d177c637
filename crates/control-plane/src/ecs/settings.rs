//! Account settings: per principal, per account default, and AWS's defaults beneath.
//!
//! Berth's access keys act as the account's root principal. As in ECS, a setting of the
//! root principal is the account default, so `PutAccountSettingDefault` and
//! `PutAccountSetting` by root without `principalArn` write the same record.

use model::ecs::settings::{account_default_only, aws_default, check_value, Principal};
use model::ecs::shapes::SettingName;
use model::{AccountId, Arn};

use crate::ecs::Ecs;
use crate::error::{Error, Result};
use crate::state::{StoredSetting, Touched};
use crate::Caller;
use crate::Ops;
use crate::Page;

/// A setting as ECS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub name: SettingName,
    pub value: String,
    pub principal_arn: String,
    /// `false` when the value is AWS's default rather than one somebody set.
    pub user_set: bool,
}

fn principal_of(caller: &Caller, given: Option<&str>) -> Result<Principal> {
    let root = caller.principal_arn();
    let Some(arn_text) = given else {
        return Ok(Principal::AccountDefault);
    };
    if arn_text == root {
        return Ok(Principal::AccountDefault);
    }
    let arn =
        Arn::parse(arn_text).map_err(|_| Error::parameter(format!("principalArn '{arn_text}' is not a valid ARN.")))?;
    let kind_ok = arn.resource.starts_with("user/") || arn.resource.starts_with("role/") || arn.resource == "root";
    if arn.service != "iam" || !kind_ok {
        return Err(Error::parameter(format!(
            "principalArn '{arn_text}' must be the ARN of an IAM user, role or root of your account."
        )));
    }
    if arn.account != caller.scope.account.as_str() {
        return Err(Error::parameter(format!("principalArn '{arn_text}' belongs to another account.")));
    }
    Ok(Principal::Arn(arn_text.to_string()))
}

fn arn_of(account: &AccountId, p: &Principal) -> String {
    match p {
        Principal::AccountDefault => crate::root_arn(account),
        Principal::Arn(a) => a.clone(),
    }
}

impl Ops<'_, Ecs> {
    pub async fn put_account_setting(
        &self,
        caller: &Caller,
        name: SettingName,
        value: String,
        principal: Option<String>,
    ) -> Result<Setting> {
        check_value(name, &value)?;
        if name == SettingName::GuardDutyActivate {
            return Err(Error::parameter(
                "guardDutyActivate is read-only: GuardDuty manages it. It can be listed but not set.",
            ));
        }
        let principal = principal_of(caller, principal.as_deref())?;
        if principal != Principal::AccountDefault && account_default_only(name) {
            return Err(Error::parameter(format!(
                "The {name} setting can only be changed for the whole account: use put-account-setting-default."
            )));
        }
        let scope = caller.scope.clone();
        self.write(move |txn| {
            let key = (scope.clone(), principal.clone(), name);
            let stored =
                StoredSetting { scope: scope.clone(), principal: principal.clone(), name, value: value.clone() };
            txn.state.settings.insert(key.clone(), stored);
            txn.touch(Touched::Setting(key));
            Ok(Setting { name, value, principal_arn: arn_of(&scope.account, &principal), user_set: true })
        })
        .await
    }

    pub async fn put_account_setting_default(
        &self,
        caller: &Caller,
        name: SettingName,
        value: String,
    ) -> Result<Setting> {
        self.put_account_setting(caller, name, value, None).await
    }

    /// Removes a principal's (or the account default's) setting; returns what was removed,
    /// or the value that applies if nothing was set.
    pub async fn delete_account_setting(
        &self,
        caller: &Caller,
        name: SettingName,
        principal: Option<String>,
    ) -> Result<Setting> {
        let principal = principal_of(caller, principal.as_deref())?;
        let scope = caller.scope.clone();
        self.write(move |txn| {
            let key = (scope.clone(), principal.clone(), name);
            let principal_arn = arn_of(&scope.account, &principal);
            match txn.state.settings.remove(&key) {
                Some(old) => {
                    txn.touch(Touched::Setting(key));
                    Ok(Setting { name, value: old.value, principal_arn, user_set: true })
                }
                None => Ok(Setting { name, value: aws_default(name).into(), principal_arn, user_set: false }),
            }
        })
        .await
    }

    /// Lists settings of one principal (the caller by default). With `effective`, every
    /// setting is listed with the value that applies: the principal's, else the account
    /// default, else AWS's default.
    pub fn list_account_settings(
        &self,
        caller: &Caller,
        name: Option<SettingName>,
        value: Option<&str>,
        principal: Option<&str>,
        effective: bool,
        page: &Page,
    ) -> Result<(Vec<Setting>, Option<String>)> {
        if value.is_some() && name.is_none() {
            return Err(Error::parameter("A value filter needs a setting name: pass name together with value."));
        }
        let principal = principal_of(caller, principal)?;
        let state = self.view();
        let scope = &caller.scope;
        let lookup =
            |p: &Principal, n: SettingName| state.settings.get(&(scope.clone(), p.clone(), n)).map(|s| s.value.clone());
        let names: Vec<SettingName> = match name {
            Some(n) => vec![n],
            None => SettingName::ALL.to_vec(),
        };
        let mut out = Vec::new();
        for n in names {
            let own = lookup(&principal, n);
            let setting = match (own, effective) {
                (Some(v), _) => Some(Setting {
                    name: n,
                    value: v,
                    principal_arn: arn_of(&scope.account, &principal),
                    user_set: true,
                }),
                (None, true) => Some(match lookup(&Principal::AccountDefault, n) {
                    Some(v) => {
                        Setting { name: n, value: v, principal_arn: arn_of(&scope.account, &principal), user_set: true }
                    }
                    None => Setting {
                        name: n,
                        value: aws_default(n).into(),
                        principal_arn: arn_of(&scope.account, &principal),
                        user_set: false,
                    },
                }),
                (None, false) => None,
            };
            if let Some(s) = setting.filter(|s| value.is_none_or(|v| v == s.value)) {
                out.push((n.as_str().to_string(), s));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(page.take(out.into_iter(), false))
    }
}
