//! ECS resources as the control plane keeps them.

pub mod service;
pub mod settings;
pub mod shapes;
pub mod task;
pub mod task_definition;

use serde::{Deserialize, Serialize};

use crate::ids::{ClusterName, Family, Scope};
use crate::tags::Tags;
use crate::{Arn, Invalid, Timestamp};

pub use task_definition::{NewTaskDefinition, TaskDefinitionSpec};

/// The lifecycle of a cluster. A deleted cluster stays describable as `INACTIVE`, as in
/// ECS, and creating it again makes it `ACTIVE` with a fresh configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterStatus {
    Active,
    Inactive,
}

impl ClusterStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterStatus::Active => "ACTIVE",
            ClusterStatus::Inactive => "INACTIVE",
        }
    }
}

/// An ECS cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub scope: Scope,
    pub name: ClusterName,
    pub status: ClusterStatus,
    pub tags: Tags,
    pub settings: Vec<shapes::ClusterSetting>,
    pub configuration: Option<shapes::ClusterConfiguration>,
    pub capacity_providers: Vec<String>,
    pub default_capacity_provider_strategy: Vec<shapes::CapacityProviderStrategyItem>,
    pub service_connect_namespace: Option<String>,
}

impl Cluster {
    pub fn arn(&self) -> Arn {
        cluster_arn(&self.scope, &self.name)
    }
}

pub fn cluster_arn(scope: &Scope, name: &ClusterName) -> Arn {
    scope.arn("ecs", &format!("cluster/{name}"))
}

/// How a request names a cluster: by name or by ARN. Omitted means `default`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRef(pub ClusterName);

impl ClusterRef {
    /// Accepts a cluster name or a cluster ARN of `scope`. An ARN of another account or
    /// region names a cluster that, from this caller's view, does not exist.
    pub fn parse(s: Option<&str>, scope: &Scope) -> Result<Result<Self, String>, Invalid> {
        let Some(s) = s else {
            return Ok(Ok(ClusterRef(ClusterName::default_cluster())));
        };
        if s.starts_with("arn:") {
            let arn = Arn::parse(s)?;
            let Some(("cluster", name)) = arn.typed_resource() else {
                return Err(Invalid::Parameter(format!("'{s}' is not a cluster ARN.")));
            };
            let name = ClusterName::parse(name)?;
            if arn.service != "ecs" || !arn.is_in(scope) {
                return Ok(Err(s.to_string()));
            }
            return Ok(Ok(ClusterRef(name)));
        }
        Ok(Ok(ClusterRef(ClusterName::parse(s)?)))
    }
}

/// The status of a task definition revision.
pub use shapes::TaskDefinitionStatus;

/// One registered revision of a task definition family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDefinition {
    pub scope: Scope,
    pub family: Family,
    pub revision: u32,
    pub spec: TaskDefinitionSpec,
    pub status: TaskDefinitionStatus,
    pub registered_at: Timestamp,
    pub registered_by: String,
    pub deregistered_at: Option<Timestamp>,
    pub delete_requested_at: Option<Timestamp>,
    pub tags: Tags,
}

impl TaskDefinition {
    pub fn arn(&self) -> Arn {
        task_definition_arn(&self.scope, &self.family, self.revision)
    }
}

pub fn task_definition_arn(scope: &Scope, family: &Family, revision: u32) -> Arn {
    scope.arn("ecs", &format!("task-definition/{family}:{revision}"))
}

/// How a request names a task definition: `family` (latest ACTIVE revision),
/// `family:revision`, or a full ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDefinitionRef {
    pub family: Family,
    pub revision: Option<u32>,
}

impl TaskDefinitionRef {
    /// Parses a reference; `Ok(Err(_))` is a well-formed ARN of another account or region.
    pub fn parse(s: &str, scope: &Scope) -> Result<Result<Self, String>, Invalid> {
        let bad = || {
            Invalid::Client(format!(
                "Invalid revision number or name: '{s}'. Use a family, family:revision or a task definition ARN."
            ))
        };
        let (text, foreign) = if s.starts_with("arn:") {
            let arn = Arn::parse(s)?;
            let Some(("task-definition", rest)) = arn.typed_resource() else {
                return Err(bad());
            };
            (rest.to_string(), arn.service != "ecs" || !arn.is_in(scope))
        } else {
            (s.to_string(), false)
        };
        let (family, revision) = match text.split_once(':') {
            Some((f, r)) => {
                let rev: u32 = r.parse().map_err(|_| bad())?;
                if rev == 0 {
                    return Err(bad());
                }
                (f, Some(rev))
            }
            None if s.starts_with("arn:") => return Err(bad()),
            None => (text.as_str(), None),
        };
        let family = Family::parse(family).map_err(|_| bad())?;
        if foreign {
            return Ok(Err(s.to_string()));
        }
        Ok(Ok(TaskDefinitionRef { family, revision }))
    }
}

/// A custom attribute on a resource (today: a container instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
    pub target_type: String,
    pub target_id: String,
}

impl Attribute {
    /// Attribute names: up to 128 letters, numbers, hyphens, underscores, slashes,
    /// back slashes and periods. Values: up to 128 of those plus `@`, `:` and spaces.
    pub fn check(name: &str, value: Option<&str>) -> Result<(), Invalid> {
        let name_ok = !name.is_empty()
            && name.len() <= 128
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_/\\.".contains(&b));
        if !name_ok {
            return Err(Invalid::Parameter(format!(
                "Attribute name '{name}' is not valid: use up to 128 letters, numbers, hyphens, underscores, slashes, back slashes or periods."
            )));
        }
        if let Some(v) = value {
            let ok = !v.is_empty()
                && v.len() <= 128
                && !v.starts_with(' ')
                && !v.ends_with(' ')
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_/\\.@: ".contains(&b));
            if !ok {
                return Err(Invalid::Parameter(format!(
                    "Value of attribute '{name}' is not valid: use up to 128 letters, numbers, hyphens, underscores, periods, at signs, slashes, back slashes, colons or spaces."
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccountId, Region};

    fn scope() -> Scope {
        Scope { account: AccountId::parse("123456789012").unwrap(), region: Region::parse("us-east-1").unwrap() }
    }

    #[test]
    fn task_definition_refs() {
        let s = scope();
        let r = TaskDefinitionRef::parse("web", &s).unwrap().unwrap();
        assert_eq!((r.family.as_str(), r.revision), ("web", None));
        let r = TaskDefinitionRef::parse("web:3", &s).unwrap().unwrap();
        assert_eq!(r.revision, Some(3));
        let r =
            TaskDefinitionRef::parse("arn:aws:ecs:us-east-1:123456789012:task-definition/web:7", &s).unwrap().unwrap();
        assert_eq!((r.family.as_str(), r.revision), ("web", Some(7)));
        assert!(TaskDefinitionRef::parse("arn:aws:ecs:us-west-2:123456789012:task-definition/web:7", &s)
            .unwrap()
            .is_err());
        for bad in [
            "web:0",
            "web:x",
            "we b",
            "arn:aws:ecs:us-east-1:123456789012:task-definition/web",
            "arn:aws:ecs:us-east-1:123456789012:cluster/web:1",
        ] {
            assert!(TaskDefinitionRef::parse(bad, &s).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_refs() {
        let s = scope();
        assert_eq!(ClusterRef::parse(None, &s).unwrap().unwrap().0.as_str(), "default");
        assert_eq!(
            ClusterRef::parse(Some("arn:aws:ecs:us-east-1:123456789012:cluster/demo"), &s).unwrap().unwrap().0.as_str(),
            "demo"
        );
        assert!(ClusterRef::parse(Some("arn:aws:ecs:us-east-1:999999999999:cluster/demo"), &s).unwrap().is_err());
        assert!(ClusterRef::parse(Some("bad name"), &s).is_err());
    }
}
