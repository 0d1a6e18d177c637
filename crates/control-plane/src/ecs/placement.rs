//! The scheduler's placement index of each cluster, kept across launches.
//!
//! Building the scheduler's view of a cluster (every instance's attributes, free
//! resources, ports and task groups) costs far more than placing ten tasks on it, and
//! almost none of it changes from one RunTask to the next. So the control plane keeps one
//! [`scheduler::Cluster`] per cluster and, before each launch, compares what each instance
//! was built from with the state by identity: the instance record and its load are `Arc`s
//! that the writer replaces whenever they change, so an unchanged instance costs two
//! pointer comparisons, one connection check and no copy. Only instances that changed are
//! rebuilt; a change in which instances are live rebuilds the whole index.
//!
//! The index is derived from the state it was last brought up to date with, never the
//! other way round: a launch whose change the writer then drops leaves an index that the
//! next launch finds out of step (its `Arc`s are not the state's) and mends. Each kept
//! source holds its `Arc`s, so an address cannot be reused by another record while it is
//! compared. The indexes live in memory only; a new leader starts without them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use model::ecs::task::ContainerInstance;
use model::ids::ClusterName;
use model::Scope;
use rand::Rng;

use super::instances::{custom_attributes, instance_view};
use super::launch::placement_instance;
use crate::agents::Agents;
use crate::state::{InstanceLoad, State};

/// The kept placement indexes, by account, region and cluster.
#[derive(Debug, Default)]
pub(crate) struct Placements {
    kept: Mutex<HashMap<(Scope, ClusterName), Kept>>,
}

/// One cluster's index and what each of its instances was built from, in the same order.
#[derive(Debug, Default)]
struct Kept {
    index: scheduler::Cluster,
    sources: Vec<Source>,
}

/// What one instance of an index was built from.
#[derive(Debug)]
struct Source {
    instance: Arc<ContainerInstance>,
    arn: String,
    load: Option<Arc<InstanceLoad>>,
    connected: bool,
    custom: Vec<(String, Option<String>)>,
}

/// Where to place, and by which rules.
pub(crate) struct Request<'a> {
    pub scope: &'a Scope,
    pub cluster: &'a ClusterName,
    /// The candidate instances, in id order.
    pub candidates: &'a [Arc<ContainerInstance>],
    /// Whether `candidates` are every live instance of the cluster, so the cluster's kept
    /// index applies; otherwise placement uses an index of the candidates alone.
    pub whole_cluster: bool,
    pub needs: &'a scheduler::TaskNeeds,
    pub count: usize,
    pub constraints: &'a [scheduler::Constraint],
    pub strategies: &'a [scheduler::Strategy],
}

impl Placements {
    /// The scheduler's plan for `r`; its placements index `r.candidates`.
    pub(crate) fn place(&self, agents: &Agents, state: &State, r: &Request<'_>, rng: &mut impl Rng) -> scheduler::Plan {
        let sorted = r.candidates.windows(2).all(|w| w[0].id < w[1].id);
        if !r.whole_cluster || !sorted {
            let mut kept = Kept::default();
            kept.sync(agents, state, r);
            return kept.index.place(r.needs, r.count, r.constraints, r.strategies, rng);
        }
        let mut all = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if all.len() > 2 * state.clusters.len() + 16 {
            all.retain(|key, _| state.clusters.contains_key(key));
        }
        let kept = all.entry((r.scope.clone(), r.cluster.clone())).or_default();
        kept.sync(agents, state, r);
        kept.index.place(r.needs, r.count, r.constraints, r.strategies, rng)
    }
}

impl Kept {
    /// Brings the index up to date with the candidates as `state` has them.
    fn sync(&mut self, agents: &Agents, state: &State, r: &Request<'_>) {
        let same_members = self.sources.len() == r.candidates.len()
            && self.sources.iter().zip(r.candidates).all(|(s, c)| Arc::ptr_eq(&s.instance, c) || s.instance.id == c.id);
        if !same_members {
            self.sources.clear();
        }
        // The ARN of each candidate: the kept one while its record is the same.
        let new_arns: Vec<Option<String>> = r
            .candidates
            .iter()
            .enumerate()
            .map(|(n, c)| match self.sources.get(n) {
                Some(s) if Arc::ptr_eq(&s.instance, c) => None,
                _ => Some(c.arn().to_string()),
            })
            .collect();
        let arn = |n: usize| new_arns[n].as_deref().unwrap_or_else(|| &self.sources[n].arn);
        let connected = agents.connected_each((0..r.candidates.len()).map(arn));
        let mut custom = custom_attributes(state, r.scope, r.cluster);
        // The loads come in instance id order, like the candidates: walk both together.
        let mut loads = state.cluster_loads(r.scope, r.cluster).peekable();
        let mut fresh = Vec::new();
        for (n, (candidate, new_arn)) in r.candidates.iter().zip(new_arns).enumerate() {
            while loads.next_if(|(id, _)| *id < candidate.id.as_str()).is_some() {}
            let load = loads.next_if(|(id, _)| *id == candidate.id.as_str()).map(|(_, l)| l);
            let custom = custom.remove(candidate.id.as_str()).unwrap_or_default();
            if let Some(kept) = self.sources.get(n) {
                if kept.matches(candidate, load, connected[n], &custom) {
                    continue;
                }
            }
            let arn = new_arn.unwrap_or_else(|| self.sources[n].arn.clone());
            let source =
                Source { instance: candidate.clone(), arn, load: load.cloned(), connected: connected[n], custom };
            match self.sources.get_mut(n) {
                Some(kept) => {
                    self.index.set(n, source.build());
                    *kept = source;
                }
                None => {
                    fresh.push(source.build());
                    self.sources.push(source);
                }
            }
        }
        if !same_members {
            self.index = scheduler::Cluster::new(fresh);
        }
    }
}

impl Source {
    /// Whether this source is what the instance is built from now.
    fn matches(
        &self,
        instance: &Arc<ContainerInstance>,
        load: Option<&Arc<InstanceLoad>>,
        connected: bool,
        custom: &[(String, Option<String>)],
    ) -> bool {
        let same_load = match (&self.load, load) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        };
        Arc::ptr_eq(&self.instance, instance) && same_load && self.connected == connected && self.custom == custom
    }

    fn build(&self) -> scheduler::Instance {
        let view = instance_view(&self.instance, self.load.as_deref(), self.connected, self.custom.clone());
        placement_instance(&view)
    }
}

#[cfg(test)]
mod tests {
    //! A kept index against one built afresh, through the control plane's own writes: after
    //! every kind of change (tasks started and stopped, attributes put, an agent gone and
    //! back, an instance drained) the two place alike.

    use agent_protocol::TaskReport;
    use model::ecs::task::{InstanceStatus, Resources, TaskStatus};
    use model::ecs::Attribute;
    use model::{AccountId, Region};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::ecs::instances::NewInstance;
    use crate::ecs::launch::live_instances;
    use crate::ecs::run_task::TaskRequest;
    use crate::{Caller, ControlPlane};

    fn rules(c: &str, s: &[(&str, &str)]) -> (Vec<scheduler::Constraint>, Vec<scheduler::Strategy>) {
        let constraints = (!c.is_empty()).then(|| scheduler::parse_constraint("memberOf", Some(c)).unwrap());
        let strategies = s.iter().map(|(t, f)| scheduler::parse_strategy(t, Some(f)).unwrap()).collect();
        (constraints.into_iter().collect(), strategies)
    }

    #[tokio::test]
    async fn a_kept_index_places_as_one_built_afresh_after_every_kind_of_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(store::SqliteStore::open(&dir.path().join("db")).unwrap());
        let cp = Arc::new(ControlPlane::open(store).unwrap());
        let scope =
            Scope { account: AccountId::parse("123456789012").unwrap(), region: Region::parse("us-east-1").unwrap() };
        let caller = Caller::root(scope.clone());
        let cluster = ClusterName::default_cluster();
        let mut arns = Vec::new();
        let mut links = Vec::new();
        for i in 0..9 {
            let zone = format!("us-east-1{}", ["a", "b", "c"][i % 3]);
            let new = NewInstance {
                resources: Resources { cpu: 4096, memory: 2048 + 512 * i as i64, ..Default::default() },
                attributes: vec![("ecs.availability-zone".into(), Some(zone))],
                ..Default::default()
            };
            let inst = cp.ecs().register_container_instance(&caller, new).await.unwrap();
            arns.push(inst.arn().to_string());
            links.push(Some(cp.agents.attach(&inst.arn().to_string())));
        }
        let td = serde_json::json!({
            "family": "web",
            "containerDefinitions": [{"name": "web", "image": "simplehttp", "memory": 96}],
        });
        let td = model::ecs::NewTaskDefinition::parse(serde_json::from_value(td).unwrap()).unwrap();
        cp.ecs().register_task_definition(&caller, td).await.unwrap();

        let cases = [
            rules("", &[("spread", "attribute:ecs.availability-zone"), ("binpack", "memory")]),
            rules("attribute:stack != dev", &[("binpack", "memory")]),
            rules("not(task:group == family:web)", &[("spread", "instanceId")]),
            rules("runningTasksCount < 2", &[("binpack", "cpu")]),
            rules("attribute:stack == prod", &[("spread", "instanceId")]),
            rules("", &[]),
        ];
        let needs =
            scheduler::TaskNeeds { cpu: 10, memory: 96, group: "family:web".into(), ..scheduler::TaskNeeds::default() };
        let mut rng = StdRng::seed_from_u64(5);
        let mut placed = 0;
        for step in 0..90 {
            let i = rng.gen_range(0..arns.len());
            match step % 6 {
                0..=2 => {
                    let req = TaskRequest {
                        task_definition: "web".into(),
                        count: rng.gen_range(1..=10),
                        strategies: vec![("binpack".into(), Some("memory".into()))],
                        ..TaskRequest::default()
                    };
                    placed += cp.ecs().run_task(&caller, req).await.unwrap().0.len();
                }
                3 => {
                    let value = ["prod", "dev"][rng.gen_range(0..2)].to_string();
                    let attr = Attribute {
                        name: "stack".into(),
                        value: Some(value),
                        target_type: "container-instance".into(),
                        target_id: arns[i].clone(),
                    };
                    cp.ecs().put_attributes(&caller, None, vec![attr]).await.unwrap();
                }
                4 => {
                    // Alternately a pending task starts (its instance's load changes, its
                    // record does not) and a task stops (both change).
                    let (from, to) = match step % 12 {
                        4 => (TaskStatus::Pending, TaskStatus::Running),
                        _ => (TaskStatus::Running, TaskStatus::Stopped),
                    };
                    let view = cp.view();
                    let Some(t) = view.tasks().values().find(|t| t.last_status <= from) else { continue };
                    let report = TaskReport::new(t.arn().to_string(), to);
                    let at = model::ecs::task::container_instance_arn(
                        &t.scope,
                        &t.cluster,
                        t.container_instance.as_deref().unwrap(),
                    );
                    cp.ecs().report_task_state(&scope, &at.to_string(), report).await.unwrap();
                }
                _ if step == 29 => {
                    let drain = vec![arns[i].clone()];
                    cp.ecs()
                        .update_container_instances_state(&caller, None, drain, InstanceStatus::Draining)
                        .await
                        .unwrap();
                }
                _ => match links[i].take() {
                    Some((connection, _rx)) => cp.agents.detach(&arns[i], connection),
                    None => links[i] = Some(cp.agents.attach(&arns[i])),
                },
            }
            let state = cp.view();
            let candidates = live_instances(&state, &scope, &cluster);
            for (constraints, strategies) in &cases {
                let r = Request {
                    scope: &scope,
                    cluster: &cluster,
                    candidates: &candidates,
                    whole_cluster: true,
                    needs: &needs,
                    count: 12,
                    constraints,
                    strategies,
                };
                let kept = cp.placements.place(&cp.agents, &state, &r, &mut StdRng::seed_from_u64(step as u64));
                let afresh = Request { whole_cluster: false, ..r };
                let fresh =
                    Placements::default().place(&cp.agents, &state, &afresh, &mut StdRng::seed_from_u64(step as u64));
                assert_eq!(kept, fresh, "step {step}: {constraints:?} {strategies:?}");
            }
        }
        assert!(placed > 50, "the steps ran tasks: {placed}");
    }
}
