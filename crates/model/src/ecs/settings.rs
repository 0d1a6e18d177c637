//! ECS account settings: which values each setting takes and what AWS defaults them to.

use serde::{Deserialize, Serialize};

use super::shapes::SettingName;
use crate::Invalid;

/// Who a stored setting applies to: one principal, or the account's default for all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Principal {
    AccountDefault,
    Arn(String),
}

/// The value AWS uses when neither the principal nor the account has set one.
pub fn aws_default(name: SettingName) -> &'static str {
    use SettingName::*;
    match name {
        ServiceLongArnFormat | TaskLongArnFormat | ContainerInstanceLongArnFormat => "enabled",
        TagResourceAuthorization => "on",
        FargateTaskRetirementWaitPeriod => "7",
        DefaultLogDriverMode => "non-blocking",
        AwsvpcTrunking | ContainerInsights | FargateFIPSMode | GuardDutyActivate | FargateEventWindows => "disabled",
    }
}

/// Checks a value for a setting against what ECS accepts for it.
pub fn check_value(name: SettingName, value: &str) -> Result<(), Invalid> {
    use SettingName::*;
    let allowed: &[&str] = match name {
        ContainerInsights => &["enabled", "disabled", "enhanced"],
        FargateTaskRetirementWaitPeriod => &["0", "7", "14"],
        DefaultLogDriverMode => &["blocking", "non-blocking"],
        TagResourceAuthorization => &["on", "off"],
        _ => &["enabled", "disabled"],
    };
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(Invalid::Parameter(format!(
            "Invalid value '{value}' for setting {name}; valid values are: {}.",
            allowed.join(", ")
        )))
    }
}

/// Settings that only the account default may carry, as in ECS.
pub fn account_default_only(name: SettingName) -> bool {
    matches!(
        name,
        SettingName::FargateFIPSMode | SettingName::FargateTaskRetirementWaitPeriod | SettingName::GuardDutyActivate
    )
}
