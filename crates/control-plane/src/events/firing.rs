//! The loop that fires enabled schedule rules on time (UTC) and starts their ECS
//! targets' tasks through RunTask's launch path.
//!
//! Each pass reads the published state, finds the rules with a firing due in
//! `(last fired, now]` (all missed firings of a downtime collapse into the latest one),
//! records that firing through the writer, and only then launches: a crash between the
//! two loses that firing rather than repeating it, and a firing once recorded is never
//! started again. A target that cannot be launched (no capacity, a task definition that
//! is gone) is logged and does not hold up the loop or the rule's other targets.

use std::sync::Arc;

use model::ecs::shapes as task_shapes;
use model::events::shapes::{EcsParameters, Target};
use model::events::{ecs_cluster_of, is_ecs_cluster_arn, parse_schedule, task_definition_reference};

use crate::ecs::run_task::TaskRequest;
use crate::error::Result;
use crate::state::events::{EventsKey, Rule};
use crate::state::Touched;
use crate::{Caller, ControlPlane};

/// How often the loop looks for due rules: a firing starts within this of its time.
pub const FIRING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// How long after start the loop waits before its first pass: agents that were
/// connected before a restart reconnect meanwhile, so a firing missed during the downtime
/// can be placed on them instead of failing for want of a connected agent.
pub const STARTUP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Fires schedule rules every `every` (after [`STARTUP_GRACE`]) until `stop` completes.
pub async fn run_schedule(
    cp: Arc<ControlPlane>,
    every: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    tokio::select! {
        _ = &mut stop => return,
        _ = tokio::time::sleep(STARTUP_GRACE) => {}
    }
    let cp = &cp;
    crate::runtime::repeat(every, stop, || async move { fire_due(cp).await }).await
}

/// A firing found due: the rule as read, and the scheduled time.
struct Due {
    rule: Arc<Rule>,
    at: i64,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn due_rules(cp: &ControlPlane, now: i64) -> Vec<Due> {
    let state = cp.view();
    state
        .events
        .rules
        .values()
        .filter(|r| r.state.is_enabled())
        .filter_map(|r| {
            let expr = r.schedule_expression.as_deref()?;
            // Stored expressions were checked when put; one that no longer parses
            // (a later Berth's stricter rule) is skipped rather than fired.
            let schedule = parse_schedule(expr).ok()?;
            let at = schedule.latest_due(r.anchor, r.last_fired.unwrap_or(r.anchor), now)?;
            Some(Due { rule: r.clone(), at })
        })
        .collect()
}

async fn fire_due(cp: &ControlPlane) {
    for due in due_rules(cp, now_secs()) {
        match record(cp, &due).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::error!(rule = %due.rule.name, error = %e, "recording a rule's firing failed; it is tried again next pass");
                continue;
            }
        }
        tracing::info!(rule = %due.rule.name, account = %due.rule.scope.account, at = due.at, "schedule rule fired");
        for target in &due.rule.targets {
            launch(cp, &due.rule, target).await;
        }
    }
}

/// Records the firing, unless the rule changed since it was read (then the next pass
/// decides again). `Ok(false)` when nothing was recorded.
async fn record(cp: &ControlPlane, due: &Due) -> Result<bool> {
    let read = due.rule.clone();
    let at = due.at;
    cp.write(move |txn| {
        let key = (read.scope.clone(), read.name.clone());
        let Some(now) = txn.state.events.rules.get(&key) else { return Ok(false) };
        if **now != *read {
            return Ok(false);
        }
        let mut rule = (**now).clone();
        rule.last_fired = Some(at);
        txn.touch(Touched::Events(EventsKey::Rule(key.0.clone(), key.1.clone())));
        txn.state.events.rules.insert(key, Arc::new(rule));
        Ok(true)
    })
    .await
}

async fn launch(cp: &ControlPlane, rule: &Rule, target: &Target) {
    let id = target.id.as_deref().unwrap_or_default();
    let arn = target.arn.as_deref().unwrap_or_default();
    let (Some(params), true) = (&target.ecs_parameters, is_ecs_cluster_arn(arn)) else {
        tracing::warn!(rule = %rule.name, target = id, arn, "Berth starts only ECS targets; this target is skipped");
        return;
    };
    let Some(cluster) = ecs_cluster_of(arn, &rule.scope) else {
        tracing::warn!(rule = %rule.name, target = id, arn, "the target's cluster is in another account or region; skipped");
        return;
    };
    let req = task_request(rule, cluster, target, params);
    let caller = Caller::root(rule.scope.clone());
    match cp.ecs().run_task(&caller, req).await {
        Ok((tasks, failures)) => {
            for f in &failures {
                tracing::warn!(rule = %rule.name, target = id, arn = ?f.arn, reason = ?f.reason, "a scheduled task could not be placed");
            }
            tracing::info!(rule = %rule.name, target = id, started = tasks.len(), "scheduled tasks started");
        }
        Err(e) => {
            tracing::warn!(rule = %rule.name, target = id, error = %e, "the rule's target could not start its tasks")
        }
    }
}

/// RunTask's request for one firing of an ECS target.
fn task_request(rule: &Rule, cluster: String, target: &Target, p: &EcsParameters) -> TaskRequest {
    // Checked when the target was put; an Input that no longer parses runs without
    // overrides rather than not at all.
    let overrides = target.input.as_deref().and_then(|i| serde_json::from_str::<task_shapes::TaskOverride>(i).ok());
    TaskRequest {
        cluster: Some(cluster),
        task_definition: task_definition_reference(p.task_definition_arn.as_deref().unwrap_or_default()).to_string(),
        count: p.task_count.unwrap_or(1),
        group: p.group.clone(),
        started_by: Some(started_by(rule)),
        overrides,
        constraints: p
            .placement_constraints
            .iter()
            .flatten()
            .map(|c| (c.type_.map(|t| t.as_str().to_string()).unwrap_or_default(), c.expression.clone()))
            .collect(),
        strategies: p
            .placement_strategy
            .iter()
            .flatten()
            .map(|s| (s.type_.map(|t| t.as_str().to_string()).unwrap_or_default(), s.field.clone()))
            .collect(),
        tags: p
            .tags
            .iter()
            .flatten()
            .map(|t| (t.key.clone().unwrap_or_default(), t.value.clone().unwrap_or_default()))
            .collect(),
        launch_type: p.launch_type.map(|l| l.as_str().to_string()),
        instances: None,
        managed_tags: p.enable_ecs_managed_tags.unwrap_or(false),
        propagate_task_definition_tags: p.propagate_tags.is_some(),
        network: p.network_configuration.as_ref().map(|n| task_shapes::NetworkConfiguration {
            awsvpc_configuration: n.awsvpc_configuration.as_ref().map(|a| task_shapes::AwsVpcConfiguration {
                subnets: a.subnets.clone(),
                security_groups: a.security_groups.clone(),
                assign_public_ip: a.assign_public_ip.and_then(|v| v.as_str().parse().ok()),
            }),
        }),
        platform_version: p.platform_version.clone(),
        capacity_provider_strategy: p
            .capacity_provider_strategy
            .iter()
            .flatten()
            .map(|c| task_shapes::CapacityProviderStrategyItem {
                capacity_provider: c.capacity_provider.clone(),
                weight: c.weight,
                base: c.base,
            })
            .collect(),
    }
}

/// What ECS shows as `startedBy` for a task EventBridge started.
pub fn started_by(rule: &Rule) -> String {
    format!("events-rule/{}", rule.name)
}
