//! What a request asks of IAM: the action as the Service Authorization Reference names it
//! (`ecs:UpdateService`), the resource ARNs it lists for that action, and the condition
//! keys the request carries (`ecs:cluster`, `aws:RequestTag/*`, `aws:TagKeys`).
//!
//! This is translation of the wire request into IAM's terms, so it lives at the edge; the
//! decision is the control plane's (`cp.iam().authorize`). Requests of an account's root
//! are never translated: the root may do everything, and pays nothing for it.
//!
//! Decisions:
//! - An action whose reference lists no resource type is checked against `*`.
//! - A cluster, service or task named by name is given the ARN it has in the caller's
//!   region; one named by ARN keeps it. A task definition named by family alone is checked
//!   as `task-definition/<family>:*` would match, as `<family>:latest`; name a revision in
//!   the policy with a wildcard (`web:*`) to cover it.
//! - IAM users, groups and roles named by name are checked with the ARN they have, path
//!   included (`entity_arn` looks them up); one that does not exist (yet) with the path
//!   the request gives, else the root path (`user/<name>`).

use control_plane::iam::authz::Access;
use model::iam::entity::EntityKind;
use model::Scope;
use serde_json::Value;

use crate::query::Params;

/// The members of a JSON request body that authorization reads. Every other member is
/// skipped unbuilt: a `PutLogEvents` batch of 10,000 events signed by an execution role
/// costs a scan here, not a tree of values, and a small request does not allocate its
/// keys. A body that is not a JSON object reads as one without members (decoding it for
/// the operation then refuses it).
#[derive(Debug, Default)]
pub(crate) struct Body(Vec<(&'static str, Value)>);

/// Every member the functions below read, across the JSON services.
const MEMBERS: &[&str] = &[
    "cluster",
    "clusterName",
    "clusters",
    "containerInstances",
    "Description",
    "KmsKeyId",
    "logGroupIdentifier",
    "logGroupName",
    "logStreamName",
    "Name",
    "Names",
    "Path",
    "registryId",
    "repositoryName",
    "repositoryNames",
    "resourceArn",
    "ResourceARN",
    "ResourceId",
    "ResourceType",
    "Rule",
    "SecretId",
    "service",
    "serviceName",
    "services",
    "tags",
    "Tags",
    "task",
    "taskDefinition",
    "tasks",
    "VersionId",
    "VersionStage",
];

impl Body {
    pub(crate) fn parse(body: &[u8]) -> Body {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// A body of the given members (for a check made on a request's part).
    pub(crate) fn of(members: &[(&'static str, Value)]) -> Body {
        Body(members.to_vec())
    }

    fn get(&self, member: &str) -> Option<&Value> {
        self.0.iter().find(|(m, _)| *m == member).map(|(_, v)| v)
    }
}

impl<'de> serde::Deserialize<'de> for Body {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Body;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Body, A::Error> {
                let mut kept = Vec::new();
                while let Some(key) = map.next_key::<Key>()? {
                    match key.0 {
                        Some(member) => kept.push((member, map.next_value::<Value>()?)),
                        None => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(Body(kept))
            }
        }
        d.deserialize_map(Members)
    }
}

/// A member's name as one of [`MEMBERS`], or `None` for a member authorization ignores;
/// read without copying the name.
struct Key(Option<&'static str>);

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(MEMBERS.iter().find(|m| **m == v).copied()))
            }
        }
        d.deserialize_str(Name)
    }
}

/// `resource` is formatted into the ARN directly (`format_args!`): authorization is on
/// every request's path, and an intermediate string per ARN showed in its profile.
fn arn(service: &str, scope: &Scope, resource: impl std::fmt::Display) -> String {
    format!("arn:aws:{service}:{}:{}:{resource}", scope.region, scope.account)
}

/// A member given as a name or an ARN: the ARN.
fn ecs_arn(scope: &Scope, kind: &str, cluster: Option<&str>, value: &str) -> String {
    if value.starts_with("arn:") {
        return value.to_string();
    }
    match cluster {
        Some(c) => arn("ecs", scope, format_args!("{kind}/{c}/{value}")),
        None => arn("ecs", scope, format_args!("{kind}/{value}")),
    }
}

fn str_of<'a>(body: &'a Body, member: &str) -> Option<&'a str> {
    body.get(member).and_then(Value::as_str)
}

fn strs_of<'a>(body: &'a Body, member: &str) -> Vec<&'a str> {
    body.get(member).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// The cluster's name from a `cluster` member (name or ARN; `default` when absent).
fn cluster_name(body: &Body) -> &str {
    let c = str_of(body, "cluster").unwrap_or("default");
    c.rsplit_once('/').map_or(c, |(_, n)| n)
}

/// `aws:RequestTag/*` and `aws:TagKeys` of the tags a request brings (`[{key, value}]`
/// as ECS writes them, `[{Key, Value}]` elsewhere).
fn request_tags(access: &mut Access, tags: Option<&Value>) {
    let Some(tags) = tags.and_then(Value::as_array) else { return };
    let mut keys = Vec::new();
    for t in tags {
        let k = t.get("key").or_else(|| t.get("Key")).and_then(Value::as_str);
        let v = t.get("value").or_else(|| t.get("Value")).and_then(Value::as_str);
        if let Some(k) = k {
            access.context.push((format!("aws:RequestTag/{k}").into(), vec![v.unwrap_or_default().to_string()]));
            keys.push(k.to_string());
        }
    }
    if !keys.is_empty() {
        access.context.push(("aws:TagKeys".into(), keys));
    }
}

/// ECS (`ecs:<Operation>`).
pub(crate) fn ecs(operation: &str, body: &Body, scope: &Scope) -> Access {
    let mut access = Access::new(format!("ecs:{operation}"));
    let cluster = cluster_name(body);
    let cluster_arn = || arn("ecs", scope, format_args!("cluster/{cluster}"));
    let in_cluster = |kind: &str, v: &str| ecs_arn(scope, kind, Some(cluster), v);
    let resources: Vec<String> = match operation {
        "CreateCluster" => {
            vec![arn("ecs", scope, format_args!("cluster/{}", str_of(body, "clusterName").unwrap_or("default")))]
        }
        "DeleteCluster"
        | "UpdateCluster"
        | "UpdateClusterSettings"
        | "PutClusterCapacityProviders"
        | "ListContainerInstances"
        | "RegisterContainerInstance"
        | "DeregisterContainerInstance"
        | "SubmitTaskStateChange"
        | "SubmitContainerStateChange" => vec![cluster_arn()],
        "DescribeClusters" => {
            let names = strs_of(body, "clusters");
            if names.is_empty() {
                vec![arn("ecs", scope, "cluster/default")]
            } else {
                names.iter().map(|c| ecs_arn(scope, "cluster", None, c)).collect()
            }
        }
        "CreateService" => vec![in_cluster("service", str_of(body, "serviceName").unwrap_or_default())],
        "UpdateService" | "DeleteService" => vec![in_cluster("service", str_of(body, "service").unwrap_or_default())],
        "DescribeServices" => strs_of(body, "services").iter().map(|s| in_cluster("service", s)).collect(),
        "StopTask" => vec![in_cluster("task", str_of(body, "task").unwrap_or_default())],
        "DescribeTasks" => strs_of(body, "tasks").iter().map(|t| in_cluster("task", t)).collect(),
        "DescribeContainerInstances" => {
            strs_of(body, "containerInstances").iter().map(|i| in_cluster("container-instance", i)).collect()
        }
        "UpdateContainerInstancesState" => {
            strs_of(body, "containerInstances").iter().map(|i| in_cluster("container-instance", i)).collect()
        }
        "RunTask" | "StartTask" => {
            let td = str_of(body, "taskDefinition").unwrap_or_default();
            let td = if td.starts_with("arn:") {
                td.to_string()
            } else if td.contains(':') {
                arn("ecs", scope, format_args!("task-definition/{td}"))
            } else {
                arn("ecs", scope, format_args!("task-definition/{td}:latest"))
            };
            vec![td]
        }
        "TagResource" | "UntagResource" | "ListTagsForResource" => {
            vec![str_of(body, "resourceArn").unwrap_or_default().to_string()]
        }
        _ => vec!["*".into()],
    };
    access.resources = resources;
    // Every operation inside a cluster says which, for `ecs:cluster` conditions.
    if body.get("cluster").is_some()
        || matches!(
            operation,
            "CreateService"
                | "UpdateService"
                | "DeleteService"
                | "RunTask"
                | "StartTask"
                | "StopTask"
                | "ListServices"
                | "ListTasks"
        )
    {
        access.context.push(("ecs:cluster".into(), vec![cluster_arn()]));
    }
    if let Some(s) = str_of(body, "service").or(str_of(body, "serviceName")) {
        access.context.push(("ecs:service".into(), vec![in_cluster("service", s)]));
    }
    request_tags(&mut access, body.get("tags"));
    access
}

/// ECR (`ecr:<Operation>`).
pub(crate) fn ecr(operation: &str, body: &Body, scope: &Scope) -> Access {
    let mut access = Access::new(format!("ecr:{operation}"));
    let repo_arn = |name: &str| {
        let account = str_of(body, "registryId").unwrap_or(scope.account.as_str());
        format!("arn:aws:ecr:{}:{account}:repository/{name}", scope.region)
    };
    access.resources = match str_of(body, "repositoryName") {
        Some(name) => vec![repo_arn(name)],
        None if operation == "TagResource" || operation == "UntagResource" || operation == "ListTagsForResource" => {
            vec![str_of(body, "resourceArn").unwrap_or_default().to_string()]
        }
        None => match strs_of(body, "repositoryNames") {
            names if !names.is_empty() => names.iter().map(|n| repo_arn(n)).collect(),
            _ => vec!["*".into()],
        },
    };
    request_tags(&mut access, body.get("tags"));
    access
}

/// CloudWatch Logs (`logs:<Operation>`): log groups, and streams where the operation
/// works on one.
pub(crate) fn logs(operation: &str, body: &Body, scope: &Scope) -> Access {
    let mut access = Access::new(format!("logs:{operation}"));
    let group = str_of(body, "logGroupName").or_else(|| str_of(body, "logGroupIdentifier")).map(str::to_string);
    access.resources = match (group, str_of(body, "logStreamName")) {
        (Some(g), _) if g.starts_with("arn:") => vec![g.trim_end_matches(":*").to_string()],
        (Some(g), Some(s)) if matches!(operation, "PutLogEvents" | "GetLogEvents") => {
            vec![arn("logs", scope, format_args!("log-group:{g}:log-stream:{s}"))]
        }
        (Some(g), _) => vec![arn("logs", scope, format_args!("log-group:{g}"))],
        (None, _) => match str_of(body, "resourceArn") {
            Some(r) => vec![r.to_string()],
            None => vec!["*".into()],
        },
    };
    access
}

/// SSM Parameter Store (`ssm:<Operation>`): the parameters a request names, as
/// `arn:aws:ssm:<region>:<account>:parameter/<name without its leading slash>`; a
/// `name:selector` is checked as its parameter, `GetParametersByPath` as its path
/// (`parameter/app` for `/app`, as SSM checks it), `DescribeParameters` as `*`.
pub(crate) fn ssm(operation: &str, body: &Body, scope: &Scope) -> Access {
    let mut access = Access::new(format!("ssm:{operation}"));
    let parameter = |name: &str| {
        if name.starts_with("arn:") {
            // An ARN keeps its account and region; only a selector goes.
            let cut = name.rfind(':').filter(|&i| name[..i].contains(":parameter/")).unwrap_or(name.len());
            return name[..cut].to_string();
        }
        let bare = name.split(':').next().unwrap_or_default();
        arn("ssm", scope, format_args!("parameter/{}", bare.trim_start_matches('/')))
    };
    let mut names: Vec<&str> = strs_of(body, "Names");
    names.extend(str_of(body, "Name"));
    names.extend(str_of(body, "Path"));
    if str_of(body, "ResourceType") == Some("Parameter") {
        names.extend(str_of(body, "ResourceId"));
    }
    access.resources = if names.is_empty() { vec!["*".into()] } else { names.into_iter().map(parameter).collect() };
    request_tags(&mut access, body.get("Tags"));
    access
}

/// EventBridge (`events:<Operation>`): the rule a request names (`Name` or `Rule`) as
/// `arn:aws:events:<region>:<account>:rule/<name>`, a tagging request's `ResourceARN`
/// as given, and `*` for the listings, as the Service Authorization Reference lists them.
pub(crate) fn events(operation: &str, body: &Body, scope: &Scope) -> Access {
    let mut access = Access::new(format!("events:{operation}"));
    let rule = str_of(body, "Name").or_else(|| str_of(body, "Rule"));
    access.resources = match (rule, str_of(body, "ResourceARN")) {
        (Some(r), _) => vec![arn("events", scope, format_args!("rule/{r}"))],
        (None, Some(a)) => vec![a.to_string()],
        (None, None) => vec!["*".into()],
    };
    request_tags(&mut access, body.get("Tags"));
    access
}

/// The query services: ELBv2 (`elasticloadbalancing:`), EC2, IAM and STS.
/// `entity_arn` finds an existing IAM user's or role's ARN by its name.
pub(crate) fn query(
    prefix: &str,
    action: &str,
    params: &Params,
    scope: &Scope,
    entity_arn: &dyn Fn(EntityKind, &str) -> Option<String>,
) -> Access {
    let mut access = Access::new(format!("{prefix}:{action}"));
    let account = scope.account.as_str();
    let mut resources = Vec::new();
    for member in ["LoadBalancerArn", "TargetGroupArn", "ListenerArn", "RuleArn", "PolicyArn", "RoleArn"] {
        if let Some(v) = params.get(member) {
            resources.push(v.to_string());
        }
    }
    for member in ["LoadBalancerArns", "TargetGroupArns", "ResourceArns", "ListenerArns", "RuleArns"] {
        if let Ok(list) = params.list(member) {
            resources.extend(list);
        }
    }
    if prefix == "iam" {
        let named = |kind: EntityKind, member: &str, creates: &str| {
            let name = params.get(member)?;
            if action == creates {
                let path = params.get("Path").unwrap_or("/");
                return Some(format!("arn:aws:iam::{account}:{}{path}{name}", kind.arn_type()));
            }
            entity_arn(kind, name).or_else(|| Some(format!("arn:aws:iam::{account}:{}/{name}", kind.arn_type())))
        };
        // Membership changes act on the group alone (the Service Authorization Reference
        // lists no user resource for them).
        if !matches!(action, "AddUserToGroup" | "RemoveUserFromGroup") {
            resources.extend(named(EntityKind::User, "UserName", "CreateUser"));
        }
        resources.extend(named(EntityKind::Role, "RoleName", "CreateRole"));
        resources.extend(named(EntityKind::Group, "GroupName", "CreateGroup"));
        if action == "CreatePolicy" {
            let path = params.get("Path").unwrap_or("/");
            resources
                .push(format!("arn:aws:iam::{account}:policy{path}{}", params.get("PolicyName").unwrap_or_default()));
        }
    }
    if resources.is_empty() {
        resources.push("*".into());
    }
    access.resources = resources;
    access
}

/// Secrets Manager (`secretsmanager:<Operation>`): the secret a request names, by its full
/// ARN whatever way the request names it (`resolve` finds it; the control plane then reads
/// its resource policy and tags). A secret that does not exist is checked as
/// `secret:<name>-??????`, which a policy's `<name>-*` matches.
pub(crate) fn secretsmanager(
    operation: &str,
    body: &Body,
    scope: &Scope,
    resolve: &dyn Fn(&str) -> Option<String>,
) -> Access {
    let mut access = Access::new(format!("secretsmanager:{operation}"));
    let named =
        str_of(body, "SecretId").or_else(|| if operation == "CreateSecret" { str_of(body, "Name") } else { None });
    if let Some(id) = named {
        match resolve(id) {
            Some(arn) => {
                access.context.push(("secretsmanager:SecretId".into(), vec![arn.clone()]));
                access.resources = vec![arn];
            }
            None => {
                let name = match model::secrets::SecretRef::parse(id, scope) {
                    model::secrets::SecretRef::Name(n) | model::secrets::SecretRef::Arn(n) => n,
                    model::secrets::SecretRef::Foreign => id,
                };
                let arn = if id.starts_with("arn:") {
                    id.to_string()
                } else {
                    format!("{}{name}-??????", model::secrets::arn_prefix(scope))
                };
                access.resources = vec![arn];
            }
        }
    }
    if operation == "CreateSecret" {
        if let Some(n) = str_of(body, "Name") {
            access.context.push(("secretsmanager:Name".into(), vec![n.to_string()]));
        }
    }
    for (member, key) in [
        ("VersionId", "secretsmanager:VersionId"),
        ("VersionStage", "secretsmanager:VersionStage"),
        ("Description", "secretsmanager:Description"),
        ("KmsKeyId", "secretsmanager:KmsKeyId"),
    ] {
        if let Some(v) = str_of(body, member) {
            access.context.push((key.into(), vec![v.to_string()]));
        }
    }
    request_tags(&mut access, body.get("Tags"));
    access
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_keeps_the_members_read_and_skips_the_rest() {
        let body = Body::parse(
            br#"{"logEvents":[{"timestamp":1,"message":"{\"cluster\":\"no\"}"}],"logGroupName":"/ecs/w\u0065b","logStreamName":"s","clusters":["a","b"]}"#,
        );
        assert_eq!(str_of(&body, "logGroupName"), Some("/ecs/web"));
        assert_eq!(strs_of(&body, "clusters"), ["a", "b"]);
        assert!(body.get("logEvents").is_none());
        assert!(body.get("cluster").is_none());
        for not_an_object in [&b"[1]"[..], b"", b"{\"cluster\":", b"null"] {
            assert!(Body::parse(not_an_object).0.is_empty());
        }
    }

    #[test]
    fn every_member_a_rule_reads_is_kept() {
        let source = include_str!("authz.rs");
        let source = &source[..source.find("#[cfg(test)]").unwrap()];
        for call in ["str_of(body, \"", "strs_of(body, \"", "body.get(\""] {
            for (_, rest) in source.match_indices(call).map(|(i, _)| source.split_at(i + call.len())) {
                let member = &rest[..rest.find('"').unwrap()];
                if !member.is_empty() && !member.contains(['{', ' ']) {
                    assert!(MEMBERS.contains(&member), "{member} is read but not kept");
                }
            }
        }
    }
}
