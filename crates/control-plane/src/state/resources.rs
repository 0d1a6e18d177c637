//! Which stored resource an ARN names, and its tags: read by ECS's tagging operations and
//! by authorization (`aws:ResourceTag/...`), so it belongs to the base, which every
//! service may read.

use elb::names::ElbArn;
use model::ecr::RepositoryName;
use model::ecs::service::ServiceName;
use model::ecs::{ClusterStatus, TaskDefinitionRef};
use model::iam::PolicyDocument;
use model::ids::ClusterName;
use model::tags::Tags;
use model::{AccountId, Arn, Region, Scope};

use crate::error::{Error, NotFoundKind, Result};
use crate::state::State;

/// A taggable resource that exists in the caller's scope.
pub(crate) enum Target {
    Cluster(ClusterName),
    TaskDefinition(model::ids::Family, u32),
    Service(ClusterName, ServiceName),
    Task(ClusterName, String),
    Instance(ClusterName, String),
}

fn resource_not_found(arn: &str) -> Error {
    Error::NotFound {
        kind: NotFoundKind::Resource,
        message: format!("The specified resource {arn} could not be found."),
    }
}

pub(crate) fn locate(state: &State, scope: &Scope, arn_text: &str) -> Result<Target> {
    let arn = Arn::parse(arn_text).map_err(|_| Error::parameter(format!("The ARN '{arn_text}' is not valid.")))?;
    if arn.service != "ecs" {
        return Err(Error::parameter(format!("The ARN '{arn_text}' is not an ECS resource ARN.")));
    }
    if !arn.is_in(scope) {
        return Err(resource_not_found(arn_text));
    }
    match arn.typed_resource() {
        Some(("cluster", name)) => {
            let name = ClusterName::parse(name)?;
            match state.cluster(scope, &name) {
                Some(c) if c.status == ClusterStatus::Active => Ok(Target::Cluster(name)),
                _ => Err(Error::cluster_not_found()),
            }
        }
        Some(("task-definition", _)) => {
            let r = TaskDefinitionRef::parse(arn_text, scope)?.map_err(|_| resource_not_found(arn_text))?;
            let rev = r.revision.ok_or_else(|| resource_not_found(arn_text))?;
            if state.task_definitions.contains_key(&(scope.clone(), r.family.clone(), rev)) {
                Ok(Target::TaskDefinition(r.family, rev))
            } else {
                Err(resource_not_found(arn_text))
            }
        }
        Some(("service", rest)) => {
            let (cluster, name) = cluster_and_id(rest);
            let name = ServiceName::parse(name).map_err(|_| resource_not_found(arn_text))?;
            find_in(&state.services, scope, cluster, &name)
                .map(|c| Target::Service(c, name))
                .ok_or_else(|| resource_not_found(arn_text))
        }
        Some(("task", rest)) => {
            let (cluster, id) = cluster_and_id(rest);
            find_in(state.tasks(), scope, cluster, &id.to_string())
                .map(|c| Target::Task(c, id.to_string()))
                .ok_or_else(|| resource_not_found(arn_text))
        }
        Some(("container-instance", rest)) => {
            let (cluster, id) = cluster_and_id(rest);
            find_in(&state.instances, scope, cluster, &id.to_string())
                .map(|c| Target::Instance(c, id.to_string()))
                .ok_or_else(|| resource_not_found(arn_text))
        }
        Some(("capacity-provider" | "task-set", _)) => Err(resource_not_found(arn_text)),
        _ => Err(Error::parameter(format!("The ARN '{arn_text}' does not name a taggable ECS resource."))),
    }
}

/// The cluster and the id of a `<cluster>/<id>` resource, or of the old `<id>` form that
/// names no cluster.
fn cluster_and_id(rest: &str) -> (Option<&str>, &str) {
    match rest.split_once('/') {
        Some((cluster, id)) => (Some(cluster), id),
        None => (None, rest),
    }
}

/// The cluster holding `id` in a map keyed by (scope, cluster, id): the one the ARN names,
/// or, for an ARN of the old form, the first cluster of the account that has it.
fn find_in<K: Ord + Clone, V>(
    map: &imbl::OrdMap<(Scope, ClusterName, K), V>,
    scope: &Scope,
    cluster: Option<&str>,
    id: &K,
) -> Option<ClusterName> {
    match cluster {
        Some(c) => {
            let c = ClusterName::parse(c).ok()?;
            map.contains_key(&(scope.clone(), c.clone(), id.clone())).then_some(c)
        }
        None => map.keys().find(|(s, _, k)| s == scope && k == id).map(|(_, c, _)| c.clone()),
    }
}

pub(crate) fn tags_of(state: &State, scope: &Scope, t: &Target) -> Tags {
    match t {
        Target::Cluster(n) => state.cluster(scope, n).map(|c| c.tags.clone()).unwrap_or_default(),
        Target::TaskDefinition(f, r) => {
            state.task_definitions.get(&(scope.clone(), f.clone(), *r)).map(|t| t.tags.clone()).unwrap_or_default()
        }
        Target::Service(c, n) => {
            state.services.get(&(scope.clone(), c.clone(), n.clone())).map(|s| s.tags.clone()).unwrap_or_default()
        }
        Target::Task(c, id) => {
            state.tasks().get(&(scope.clone(), c.clone(), id.clone())).map(|t| t.tags.clone()).unwrap_or_default()
        }
        Target::Instance(c, id) => {
            state.instances.get(&(scope.clone(), c.clone(), id.clone())).map(|i| i.tags.clone()).unwrap_or_default()
        }
    }
}

/// The tags of the resource `arn` names (ECS resources, ECR repositories, secrets,
/// EventBridge rules, IAM users and roles, log groups, SSM parameters, ELBv2 load
/// balancers, target groups, listeners and rules), in the scope the ARN says; none when it
/// names nothing Berth keeps.
pub(crate) fn resource_tags(state: &State, arn: &str) -> Vec<(String, String)> {
    let Ok(parsed) = Arn::parse(arn) else { return vec![] };
    let scope = || {
        Some(Scope { account: AccountId::parse(&parsed.account).ok()?, region: Region::parse(&parsed.region).ok()? })
    };
    let pairs = |t: &Tags| t.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let found = match (parsed.service.as_str(), parsed.typed_resource()) {
        ("ecs", _) => scope().and_then(|scope| {
            let target = locate(state, &scope, arn).ok()?;
            Some(pairs(&tags_of(state, &scope, &target)))
        }),
        ("ecr", Some(("repository", name))) => scope().and_then(|scope| {
            state.repositories.get(&(scope, RepositoryName::parse(name).ok()?)).map(|r| pairs(&r.tags))
        }),
        ("secretsmanager", _) => secret_at(state, arn).map(|s| s.tags.clone()),
        ("events", Some(("rule", _))) => scope().and_then(|scope| {
            let name = model::events::RuleName::from_arn(arn, &scope)?;
            state.events.rules.get(&(scope, name)).map(|r| r.tags.clone())
        }),
        ("logs", _) => scope().and_then(|scope| {
            // `log-group:<name>`, or a stream's `log-group:<name>:log-stream:<stream>`,
            // whose group's tags are the ones a policy reads.
            let rest = parsed.resource.strip_prefix("log-group:")?;
            let name = rest.split_once(":log-stream:").map_or(rest, |(g, _)| g).trim_end_matches(":*");
            let name = model::logs::LogGroupName::parse(name).ok()?;
            state.logs.groups.get(&(scope, name)).map(|g| g.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        }),
        ("ssm", Some(("parameter", name))) => scope().and_then(|scope| {
            let name = model::ssm::ParameterName::parse(&format!("/{name}"))
                .ok()
                .filter(|n| state.ssm.parameters.contains_key(&(scope.clone(), n.clone())))
                .or_else(|| model::ssm::ParameterName::parse(name).ok())?;
            state.ssm.parameters.get(&(scope, name)).map(|p| p.tags.clone())
        }),
        ("elasticloadbalancing", _) => scope().and_then(|scope| elb_tags(state, &scope, arn)).map(|t| pairs(&t)),
        ("iam", Some((kind @ ("user" | "role"), path_and_name))) => {
            let account = AccountId::parse(&parsed.account).ok();
            let name = path_and_name.rsplit('/').next().unwrap_or_default().to_ascii_lowercase();
            account.and_then(|a| match kind {
                "user" => state.iam.users.get(&(a, name)).map(|u| u.tags.clone()),
                _ => state.iam.roles.get(&(a, name)).map(|r| r.tags.clone()),
            })
        }
        _ => None,
    };
    found.unwrap_or_default()
}

/// The tags of the ELBv2 resource `arn` names, if it is one of `scope`'s.
pub(crate) fn elb_tags(state: &State, scope: &Scope, arn: &str) -> Option<Tags> {
    let elb = &state.elb;
    let key = |id: String| (scope.clone(), id);
    Some(match elb::names::parse_arn(scope, arn, elb::Fault::LoadBalancerNotFound).ok()? {
        ElbArn::LoadBalancer { lb } => elb.load_balancers.get(&key(lb)).filter(|l| l.arn() == arn)?.tags.clone(),
        ElbArn::TargetGroup { tg } => elb.target_groups.get(&key(tg)).filter(|t| t.arn() == arn)?.tags.clone(),
        ElbArn::Listener { listener, .. } => elb.listeners.get(&key(listener)).filter(|l| l.arn() == arn)?.tags.clone(),
        ElbArn::Rule { listener, rule, .. } => match elb.rules.get(&key(rule)).filter(|r| r.arn() == arn) {
            Some(r) => r.tags.clone(),
            None => {
                elb.listeners.get(&key(listener)).filter(|l| l.default_rule_arn() == arn)?.default_rule_tags.clone()
            }
        },
    })
}

/// The resource-based policy of the resource `arn` names, where Berth keeps one (ECR
/// repositories, secrets): within the account it can allow a principal it names on its own.
pub(crate) fn resource_policy<'a>(state: &'a State, arn: &str) -> Option<&'a PolicyDocument> {
    // On every authorized request's path: no parse for the services that keep none.
    match arn.split(':').nth(2)? {
        "ecr" => {
            let parsed = Arn::parse(arn).ok()?;
            let ("repository", name) = parsed.typed_resource()? else { return None };
            let scope =
                Scope { account: AccountId::parse(&parsed.account).ok()?, region: Region::parse(&parsed.region).ok()? };
            let key = (scope, RepositoryName::parse(name).ok()?);
            state.repository_policies.get(&key).map(|p| p.policy.compiled())
        }
        "secretsmanager" => secret_at(state, arn)?.policy.as_ref().map(|d| d.parsed.as_ref()),
        _ => None,
    }
}

/// The secret whose full ARN (`...:secret:<name>-<6 characters>`) is `arn`.
fn secret_at<'a>(state: &'a State, arn: &str) -> Option<&'a std::sync::Arc<crate::state::secrets::Secret>> {
    let parsed = Arn::parse(arn).ok()?;
    // A secret's resource is `secret:<name>-<suffix>` (a colon, where most have a slash).
    let with_suffix = parsed.resource.strip_prefix("secret:")?;
    let name = with_suffix.get(..with_suffix.len().checked_sub(7)?)?;
    let scope = Scope { account: AccountId::parse(&parsed.account).ok()?, region: Region::parse(&parsed.region).ok()? };
    let key = (scope, model::secrets::SecretName::parse(name).ok()?);
    state.secrets.secrets.get(&key).filter(|s| s.arn == arn)
}
