//! The in-memory view of everything the control plane owns, and its mapping to records.
//!
//! `State` is built from persistent maps, so cloning it is cheap: the writer works on a
//! clone and publishes it only after the store has made the changes durable. Readers
//! therefore never see a write that could still be lost.

pub mod ec2;
pub mod elb;
pub mod events;
pub mod iam;
pub mod logs;
pub mod mirror;
pub mod registry;
pub mod resources;
pub mod secrets;
pub mod ssm;

use std::collections::BTreeSet;
use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use model::ecr::{Image, Repository, RepositoryName};

use model::ecr::stored::{
    ImageScan, LifecyclePreview, StoredLifecyclePolicy, StoredRegistryPolicy, StoredRepositoryPolicy,
};
use model::ecs::service::{Service, ServiceName};
use model::ecs::settings::Principal;
use model::ecs::shapes::SettingName;
use model::ecs::task::{ContainerInstance, Task, TaskStatus};
use model::ecs::{Attribute, Cluster, TaskDefinition};
use model::ids::{ClusterName, Family};
use model::Scope;
use store::{Mutation, Record, StoreError};

use self::ec2::Ec2State;
use self::elb::{ElbKey, ElbState};
use self::events::{EventsKey, EventsState};
use self::iam::{IamKey, IamState};
use self::logs::{LogsKey, LogsState};
use self::registry::{RegistryKey, RegistryState};
use self::secrets::{SecretsKey, SecretsState};
use self::ssm::{SsmKey, SsmState};

/// A stored account setting: the value one principal (or the account default) chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSetting {
    pub scope: Scope,
    pub principal: Principal,
    pub name: SettingName,
    pub value: String,
}

/// A stored custom attribute together with the cluster it lives in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAttribute {
    pub scope: Scope,
    pub cluster: ClusterName,
    pub attribute: Attribute,
}

pub type SettingKey = (Scope, Principal, SettingName);
/// A task's key: its account and region, cluster and id.
pub type TaskKey = (Scope, ClusterName, String);

/// The sum of what the tasks holding resources on one instance reserve, and how many of
/// them run or are on their way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceLoad {
    pub cpu: i64,
    pub memory: i64,
    /// Host ports, one entry a task that reserves it.
    pub ports_tcp: Vec<u16>,
    pub ports_udp: Vec<u16>,
    /// The `group` of each task, one entry a task.
    pub task_groups: Vec<String>,
    pub running: u32,
    pub pending: u32,
}

impl InstanceLoad {
    fn add(&mut self, t: &Task) {
        self.cpu += t.reserved.cpu;
        self.memory += t.reserved.memory;
        self.ports_tcp.extend(&t.reserved.ports_tcp);
        self.ports_udp.extend(&t.reserved.ports_udp);
        self.task_groups.push(t.group.clone());
        match t.last_status {
            TaskStatus::Running => self.running += 1,
            _ => self.pending += 1,
        }
    }

    fn remove(&mut self, t: &Task) {
        fn take_one<T: PartialEq>(from: &mut Vec<T>, x: &T) {
            if let Some(i) = from.iter().position(|y| y == x) {
                from.swap_remove(i);
            }
        }
        self.cpu -= t.reserved.cpu;
        self.memory -= t.reserved.memory;
        t.reserved.ports_tcp.iter().for_each(|p| take_one(&mut self.ports_tcp, p));
        t.reserved.ports_udp.iter().for_each(|p| take_one(&mut self.ports_udp, p));
        take_one(&mut self.task_groups, &t.group);
        match t.last_status {
            TaskStatus::Running => self.running -= 1,
            _ => self.pending -= 1,
        }
    }

    /// The key of the load `t` adds to, if it holds resources on an instance.
    fn key_of(t: &Task) -> Option<TaskKey> {
        let id = t.container_instance.as_ref().filter(|_| t.holds_resources())?;
        Some((t.scope.clone(), t.cluster.clone(), id.clone()))
    }

    /// Sorted, so that two loads of the same tasks compare equal.
    #[cfg(test)]
    fn normalized(&self) -> InstanceLoad {
        let mut n = self.clone();
        n.ports_tcp.sort_unstable();
        n.ports_udp.sort_unstable();
        n.task_groups.sort_unstable();
        n
    }
}
pub type AttributeKey = (Scope, ClusterName, String, String);

/// Everything the control plane knows, as of the last durable commit.
///
/// Large resources are held behind `Arc`: a persistent map copies a whole tree node on
/// every write, and copying pointers is cheap where copying task definitions is not.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub clusters: OrdMap<(Scope, ClusterName), Arc<Cluster>>,
    pub task_definitions: OrdMap<(Scope, Family, u32), Arc<TaskDefinition>>,
    pub instances: OrdMap<(Scope, ClusterName, String), Arc<ContainerInstance>>,
    /// Written through [`State::put_task`] and [`State::remove_task`] only, which keep
    /// `task_groups` in step.
    tasks: OrdMap<TaskKey, Arc<Task>>,
    /// The same tasks by cluster and group (`service:NAME`, `family:NAME` or the group
    /// RunTask was given): the service controller reads a service's tasks without
    /// scanning the cluster's.
    task_groups: OrdMap<(Scope, ClusterName, String), OrdMap<String, Arc<Task>>>,
    /// What the tasks holding resources on each instance take from it, by the tasks'
    /// cluster and the instance's id: placement reads an instance's load without scanning
    /// the cluster's tasks.
    instance_loads: OrdMap<TaskKey, Arc<InstanceLoad>>,
    pub services: OrdMap<(Scope, ClusterName, ServiceName), Arc<Service>>,
    pub repositories: OrdMap<(Scope, RepositoryName), Arc<Repository>>,
    pub images: OrdMap<(Scope, RepositoryName, String), Arc<Image>>,
    /// The latest scan of each image, keyed like `images`.
    pub image_scans: OrdMap<(Scope, RepositoryName, String), Arc<ImageScan>>,
    pub repository_policies: OrdMap<(Scope, RepositoryName), Arc<StoredRepositoryPolicy>>,
    pub registry_policies: OrdMap<Scope, Arc<StoredRegistryPolicy>>,
    pub lifecycle_policies: OrdMap<(Scope, RepositoryName), Arc<StoredLifecyclePolicy>>,
    pub lifecycle_previews: OrdMap<(Scope, RepositoryName), Arc<LifecyclePreview>>,
    pub settings: OrdMap<SettingKey, StoredSetting>,
    pub attributes: OrdMap<AttributeKey, StoredAttribute>,
    pub elb: ElbState,
    pub ec2: Ec2State,
    pub logs: LogsState,
    pub iam: IamState,
    pub ssm: SsmState,
    pub secrets: SecretsState,
    pub events: EventsState,
    pub registry: RegistryState,
}

/// A reference to one stored resource, recorded when a write touches it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Touched {
    Cluster(Scope, ClusterName),
    TaskDefinition(Scope, Family, u32),
    Instance(Scope, ClusterName, String),
    Task(Scope, ClusterName, String),
    Service(Scope, ClusterName, ServiceName),
    Repository(Scope, RepositoryName),
    Image(Scope, RepositoryName, String),
    ImageScan(Scope, RepositoryName, String),
    RepositoryPolicy(Scope, RepositoryName),
    RegistryPolicy(Scope),
    LifecyclePolicy(Scope, RepositoryName),
    LifecyclePreview(Scope, RepositoryName),
    Setting(SettingKey),
    Attribute(AttributeKey),
    Elb(ElbKey),
    SecurityGroup(Scope, String),
    Vpc(Scope, String),
    Subnet(Scope, String),
    Logs(LogsKey),
    Iam(IamKey),
    Ssm(SsmKey),
    Secrets(SecretsKey),
    Events(EventsKey),
    Registry(RegistryKey),
}

const CLUSTERS: &str = "ecs.clusters";
const TASK_DEFINITIONS: &str = "ecs.task_definitions";
const SETTINGS: &str = "ecs.account_settings";
const INSTANCES: &str = "ecs.container_instances";
const TASKS: &str = "ecs.tasks";
const SERVICES: &str = "ecs.services";
const REPOSITORIES: &str = "ecr.repositories";
const IMAGES: &str = "ecr.images";
const IMAGE_SCANS: &str = "ecr.image_scans";
const REPOSITORY_POLICIES: &str = "ecr.repository_policies";
const REGISTRY_POLICIES: &str = "ecr.registry_policies";
const LIFECYCLE_POLICIES: &str = "ecr.lifecycle_policies";
const LIFECYCLE_PREVIEWS: &str = "ecr.lifecycle_previews";
const ATTRIBUTES: &str = "ecs.attributes";
const SECURITY_GROUPS: &str = "ec2.security_groups";
const VPCS: &str = "ec2.vpcs";
const SUBNETS: &str = "ec2.subnets";

fn scope_key(s: &Scope) -> String {
    format!("{}/{}", s.account, s.region)
}

impl Touched {
    fn table_and_key(&self) -> (&'static str, String) {
        match self {
            Touched::Cluster(s, n) => (CLUSTERS, format!("{}/{n}", scope_key(s))),
            // Zero-padded so that keys sort by revision.
            Touched::TaskDefinition(s, f, r) => (TASK_DEFINITIONS, format!("{}/{f}/{r:010}", scope_key(s))),
            Touched::Instance(s, c, id) => (INSTANCES, format!("{}/{c}/{id}", scope_key(s))),
            Touched::Task(s, c, id) => (TASKS, format!("{}/{c}/{id}", scope_key(s))),
            Touched::Service(s, c, n) => (SERVICES, format!("{}/{c}/{n}", scope_key(s))),
            Touched::Repository(s, n) => (REPOSITORIES, format!("{}/{n}", scope_key(s))),
            Touched::Image(s, n, d) => (IMAGES, format!("{}/{n}@{d}", scope_key(s))),
            Touched::ImageScan(s, n, d) => (IMAGE_SCANS, format!("{}/{n}@{d}", scope_key(s))),
            Touched::RepositoryPolicy(s, n) => (REPOSITORY_POLICIES, format!("{}/{n}", scope_key(s))),
            Touched::RegistryPolicy(s) => (REGISTRY_POLICIES, scope_key(s)),
            Touched::LifecyclePolicy(s, n) => (LIFECYCLE_POLICIES, format!("{}/{n}", scope_key(s))),
            Touched::LifecyclePreview(s, n) => (LIFECYCLE_PREVIEWS, format!("{}/{n}", scope_key(s))),
            Touched::Setting((s, p, n)) => {
                let who = match p {
                    Principal::AccountDefault => "*".to_string(),
                    Principal::Arn(a) => a.clone(),
                };
                (SETTINGS, format!("{}/{who}/{n}", scope_key(s)))
            }
            Touched::Attribute((s, c, t, n)) => (ATTRIBUTES, format!("{}/{c}/{t}/{n}", scope_key(s))),
            Touched::SecurityGroup(s, id) => (SECURITY_GROUPS, format!("{}/{id}", scope_key(s))),
            Touched::Vpc(s, id) => (VPCS, format!("{}/{id}", scope_key(s))),
            Touched::Subnet(s, id) => (SUBNETS, format!("{}/{id}", scope_key(s))),
            Touched::Elb(_) => unreachable!("ELBv2 records are keyed by the elb module"),
            Touched::Logs(_) => unreachable!("CloudWatch Logs records are keyed by the logs module"),
            Touched::Iam(_) => unreachable!("IAM records are keyed by the iam module"),
            Touched::Ssm(_) => unreachable!("SSM records are keyed by the ssm module"),
            Touched::Secrets(_) => unreachable!("Secrets Manager records are keyed by the secrets module"),
            Touched::Events(_) => unreachable!("EventBridge records are keyed by the events module"),
            Touched::Registry(_) => unreachable!("registry records are keyed by the registry module"),
        }
    }
}

/// A stored value's bytes; every room of the state stores its records this way.
pub(super) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("domain types always serialize")
}

/// A stored value back from its record; damage is named by table and key.
pub(super) fn decode<T: for<'de> Deserialize<'de>>(r: &Record) -> Result<T, StoreError> {
    serde_json::from_slice(&r.value).map_err(|e| StoreError::Corrupt(format!("record {}/{}: {e}", r.table, r.key)))
}

/// The mutation that makes a record what the state holds: its value, or gone.
pub(super) fn put_or_delete(table: &str, key: String, value: Option<Vec<u8>>) -> Mutation {
    match value {
        Some(value) => Mutation::Put(Record { table: table.into(), key, value }),
        None => Mutation::Delete { table: table.into(), key },
    }
}

impl State {
    /// The store mutation that makes `touched` durable as it now is in this state.
    pub fn mutation(&self, touched: &Touched) -> Mutation {
        if let Touched::Elb(k) = touched {
            return self.elb.mutation(k);
        }
        if let Touched::Logs(k) = touched {
            return self.logs.mutation(k);
        }
        if let Touched::Iam(k) = touched {
            return self.iam.mutation(k);
        }
        if let Touched::Ssm(k) = touched {
            return self.ssm.mutation(k);
        }
        if let Touched::Secrets(k) = touched {
            return self.secrets.mutation(k);
        }
        if let Touched::Events(k) = touched {
            return self.events.mutation(k);
        }
        if let Touched::Registry(k) = touched {
            return self.registry.mutation(k);
        }
        let (table, key) = touched.table_and_key();
        let value = match touched {
            Touched::Cluster(s, n) => self.clusters.get(&(s.clone(), n.clone())).map(|c| encode(c.as_ref())),
            Touched::TaskDefinition(s, f, r) => {
                self.task_definitions.get(&(s.clone(), f.clone(), *r)).map(|t| encode(t.as_ref()))
            }
            Touched::Instance(s, c, id) => {
                self.instances.get(&(s.clone(), c.clone(), id.clone())).map(|i| encode(i.as_ref()))
            }
            Touched::Task(s, c, id) => self.tasks.get(&(s.clone(), c.clone(), id.clone())).map(|t| encode(t.as_ref())),
            Touched::Service(s, c, n) => {
                self.services.get(&(s.clone(), c.clone(), n.clone())).map(|v| encode(v.as_ref()))
            }
            Touched::Repository(s, n) => self.repositories.get(&(s.clone(), n.clone())).map(|r| encode(r.as_ref())),
            Touched::Image(s, n, d) => self.images.get(&(s.clone(), n.clone(), d.clone())).map(|i| encode(i.as_ref())),
            Touched::ImageScan(s, n, d) => {
                self.image_scans.get(&(s.clone(), n.clone(), d.clone())).map(|i| encode(i.as_ref()))
            }
            Touched::RepositoryPolicy(s, n) => {
                self.repository_policies.get(&(s.clone(), n.clone())).map(|p| encode(p.as_ref()))
            }
            Touched::RegistryPolicy(s) => self.registry_policies.get(s).map(|p| encode(p.as_ref())),
            Touched::LifecyclePolicy(s, n) => {
                self.lifecycle_policies.get(&(s.clone(), n.clone())).map(|p| encode(p.as_ref()))
            }
            Touched::LifecyclePreview(s, n) => {
                self.lifecycle_previews.get(&(s.clone(), n.clone())).map(|p| encode(p.as_ref()))
            }
            Touched::Setting(k) => self.settings.get(k).map(encode),
            Touched::Attribute(k) => self.attributes.get(k).map(encode),
            Touched::SecurityGroup(s, id) => {
                self.ec2.security_groups.get(&(s.clone(), id.clone())).map(|g| encode(g.as_ref()))
            }
            Touched::Vpc(s, id) => self.ec2.vpcs.get(&(s.clone(), id.clone())).map(|v| encode(v.as_ref())),
            Touched::Subnet(s, id) => self.ec2.subnets.get(&(s.clone(), id.clone())).map(|v| encode(v.as_ref())),
            Touched::Elb(_)
            | Touched::Logs(_)
            | Touched::Iam(_)
            | Touched::Ssm(_)
            | Touched::Secrets(_)
            | Touched::Events(_)
            | Touched::Registry(_) => {
                unreachable!("handled above")
            }
        };
        put_or_delete(table, key, value)
    }

    /// Rebuilds the state from every stored record. Records of tables this version does
    /// not know are an error: they were written by a newer Berth.
    pub fn from_records(records: Vec<Record>) -> Result<State, StoreError> {
        let mut state = State::default();
        for r in &records {
            state.load_record(r)?;
        }
        state.ssm.finish_load();
        Ok(state)
    }

    /// Loads one stored record, replacing what the state held under its key: the key, or
    /// `None` for records the state does not hold (`auth.*`: accounts and their keys,
    /// which are read through the store).
    pub fn load_record(&mut self, r: &Record) -> Result<Option<Touched>, StoreError> {
        let state = self;
        let touched = match r.table.as_str() {
            CLUSTERS => {
                let c: Cluster = decode(r)?;
                let key = (c.scope.clone(), c.name.clone());
                state.clusters.insert(key.clone(), Arc::new(c));
                Touched::Cluster(key.0, key.1)
            }
            TASK_DEFINITIONS => {
                let t: TaskDefinition = decode(r)?;
                let key = (t.scope.clone(), t.family.clone(), t.revision);
                state.task_definitions.insert(key.clone(), Arc::new(t));
                Touched::TaskDefinition(key.0, key.1, key.2)
            }
            INSTANCES => {
                let i: ContainerInstance = decode(r)?;
                let key = (i.scope.clone(), i.cluster.clone(), i.id.clone());
                state.instances.insert(key.clone(), Arc::new(i));
                Touched::Instance(key.0, key.1, key.2)
            }
            TASKS => {
                let t: Task = decode(r)?;
                let touched = Touched::Task(t.scope.clone(), t.cluster.clone(), t.id.clone());
                state.put_task(Arc::new(t));
                touched
            }
            SERVICES => {
                let v: Service = decode(r)?;
                let key = (v.scope.clone(), v.cluster.clone(), v.name.clone());
                state.services.insert(key.clone(), Arc::new(v));
                Touched::Service(key.0, key.1, key.2)
            }
            IMAGES => {
                let i: Image = decode(r)?;
                let key = (i.scope.clone(), i.repository.clone(), i.digest.clone());
                state.images.insert(key.clone(), Arc::new(i));
                Touched::Image(key.0, key.1, key.2)
            }
            IMAGE_SCANS => {
                let s: ImageScan = decode(r)?;
                let key = (s.scope.clone(), s.repository.clone(), s.digest.clone());
                state.image_scans.insert(key.clone(), Arc::new(s));
                Touched::ImageScan(key.0, key.1, key.2)
            }
            LIFECYCLE_POLICIES => {
                let p: StoredLifecyclePolicy = decode(r)?;
                let key = (p.scope.clone(), p.repository.clone());
                state.lifecycle_policies.insert(key.clone(), Arc::new(p));
                Touched::LifecyclePolicy(key.0, key.1)
            }
            LIFECYCLE_PREVIEWS => {
                let p = decode::<LifecyclePreview>(r)?.after_restart();
                let key = (p.scope.clone(), p.repository.clone());
                state.lifecycle_previews.insert(key.clone(), Arc::new(p));
                Touched::LifecyclePreview(key.0, key.1)
            }
            REPOSITORY_POLICIES => {
                let p: StoredRepositoryPolicy = decode(r)?;
                let key = (p.scope.clone(), p.repository.clone());
                state.repository_policies.insert(key.clone(), Arc::new(p));
                Touched::RepositoryPolicy(key.0, key.1)
            }
            REGISTRY_POLICIES => {
                let p: StoredRegistryPolicy = decode(r)?;
                let scope = p.scope.clone();
                state.registry_policies.insert(scope.clone(), Arc::new(p));
                Touched::RegistryPolicy(scope)
            }
            REPOSITORIES => {
                let r: Repository = decode(r)?;
                let key = (r.scope.clone(), r.name.clone());
                state.repositories.insert(key.clone(), Arc::new(r));
                Touched::Repository(key.0, key.1)
            }
            SETTINGS => {
                let s: StoredSetting = decode(r)?;
                let key = (s.scope.clone(), s.principal.clone(), s.name);
                state.settings.insert(key.clone(), s);
                Touched::Setting(key)
            }
            ATTRIBUTES => {
                let a: StoredAttribute = decode(r)?;
                let key = (a.scope.clone(), a.cluster.clone(), a.attribute.target_id.clone(), a.attribute.name.clone());
                state.attributes.insert(key.clone(), a);
                Touched::Attribute(key)
            }
            SECURITY_GROUPS => {
                let g: ec2::SecurityGroup = decode(r)?;
                let key = (g.scope.clone(), g.id.clone());
                state.ec2.security_groups.insert(key.clone(), Arc::new(g));
                Touched::SecurityGroup(key.0, key.1)
            }
            VPCS => {
                let v: ec2::Vpc = decode(r)?;
                let key = (v.scope.clone(), v.id.clone());
                state.ec2.vpcs.insert(key.clone(), Arc::new(v));
                Touched::Vpc(key.0, key.1)
            }
            SUBNETS => {
                let v: ec2::StoredSubnet = decode(r)?;
                let key = (v.scope.clone(), v.id.clone());
                state.ec2.subnets.insert(key.clone(), Arc::new(v));
                Touched::Subnet(key.0, key.1)
            }
            t if t.starts_with("auth.") => return Ok(None),
            t => {
                let room = if t.starts_with("elb.") {
                    state.elb.load(r)?.map(Touched::Elb)
                } else if t.starts_with("logs.") {
                    state.logs.load(r)?.map(Touched::Logs)
                } else if t.starts_with("iam.") {
                    state.iam.load(r)?.map(Touched::Iam)
                } else if t.starts_with("ssm.") {
                    state.ssm.load(r)?.map(Touched::Ssm)
                } else if t.starts_with("secrets.") {
                    state.secrets.load(r)?.map(Touched::Secrets)
                } else if t.starts_with("events.") {
                    state.events.load(r)?.map(Touched::Events)
                } else if t.starts_with("registry.") {
                    state.registry.load(r)?.map(Touched::Registry)
                } else {
                    None
                };
                room.ok_or_else(|| StoreError::Corrupt(format!("unknown table '{t}' (written by a newer Berth?)")))?
            }
        };
        Ok(Some(touched))
    }

    /// Forgets the resource `touched` names, whose record was deleted.
    pub fn forget(&mut self, touched: &Touched) {
        match touched {
            Touched::Cluster(s, n) => drop(self.clusters.remove(&(s.clone(), n.clone()))),
            Touched::TaskDefinition(s, f, r) => drop(self.task_definitions.remove(&(s.clone(), f.clone(), *r))),
            Touched::Instance(s, c, id) => drop(self.instances.remove(&(s.clone(), c.clone(), id.clone()))),
            Touched::Task(s, c, id) => drop(self.remove_task(&(s.clone(), c.clone(), id.clone()))),
            Touched::Service(s, c, n) => drop(self.services.remove(&(s.clone(), c.clone(), n.clone()))),
            Touched::Repository(s, n) => drop(self.repositories.remove(&(s.clone(), n.clone()))),
            Touched::Image(s, n, d) => drop(self.images.remove(&(s.clone(), n.clone(), d.clone()))),
            Touched::ImageScan(s, n, d) => drop(self.image_scans.remove(&(s.clone(), n.clone(), d.clone()))),
            Touched::RepositoryPolicy(s, n) => drop(self.repository_policies.remove(&(s.clone(), n.clone()))),
            Touched::RegistryPolicy(s) => drop(self.registry_policies.remove(s)),
            Touched::LifecyclePolicy(s, n) => drop(self.lifecycle_policies.remove(&(s.clone(), n.clone()))),
            Touched::LifecyclePreview(s, n) => drop(self.lifecycle_previews.remove(&(s.clone(), n.clone()))),
            Touched::Setting(k) => drop(self.settings.remove(k)),
            Touched::Attribute(k) => drop(self.attributes.remove(k)),
            Touched::SecurityGroup(s, id) => drop(self.ec2.security_groups.remove(&(s.clone(), id.clone()))),
            Touched::Vpc(s, id) => drop(self.ec2.vpcs.remove(&(s.clone(), id.clone()))),
            Touched::Subnet(s, id) => drop(self.ec2.subnets.remove(&(s.clone(), id.clone()))),
            Touched::Elb(k) => self.elb.forget(k),
            Touched::Logs(k) => self.logs.forget(k),
            Touched::Iam(k) => self.iam.forget(k),
            Touched::Ssm(k) => self.ssm.forget(k),
            Touched::Secrets(k) => self.secrets.forget(k),
            Touched::Events(k) => self.events.forget(k),
            Touched::Registry(k) => self.registry.forget(k),
        }
    }

    pub fn cluster(&self, scope: &Scope, name: &ClusterName) -> Option<&Cluster> {
        self.clusters.get(&(scope.clone(), name.clone())).map(|c| &**c)
    }

    /// All revisions of one family, oldest first.
    pub fn revisions<'a>(
        &'a self,
        scope: &Scope,
        family: &Family,
    ) -> impl DoubleEndedIterator<Item = &'a TaskDefinition> + 'a {
        let lo = (scope.clone(), family.clone(), 0);
        let hi = (scope.clone(), family.clone(), u32::MAX);
        self.task_definitions.range(lo..=hi).map(|(_, t)| &**t)
    }
}

impl State {
    /// Keeps container instances' `version` counters, after a batch of changes `touched`
    /// made on top of `before`: an instance whose record changed, or that a task began or
    /// stopped holding resources on, has one version more than before the batch. The
    /// instances so changed are added to `touched`. (Changes batched together count once.)
    pub(crate) fn count_instance_versions(&mut self, before: &State, touched: &mut Vec<Touched>) {
        let mut changed: BTreeSet<(Scope, ClusterName, String)> = BTreeSet::new();
        for t in touched.iter() {
            match t {
                Touched::Instance(s, c, id) => {
                    let key = (s.clone(), c.clone(), id.clone());
                    let (old, new) = (before.instances.get(&key), self.instances.get(&key));
                    let same = match (old, new) {
                        (Some(o), Some(n)) => {
                            Arc::ptr_eq(o, n) || ContainerInstance { version: n.version, ..(**o).clone() } == **n
                        }
                        _ => true,
                    };
                    if !same {
                        changed.insert(key);
                    }
                }
                Touched::Task(s, c, id) => {
                    let key = (s.clone(), c.clone(), id.clone());
                    let host = |state: &State| {
                        state.tasks.get(&key).filter(|t| t.holds_resources()).and_then(|t| t.container_instance.clone())
                    };
                    let (old, new) = (host(before), host(self));
                    if old != new {
                        changed.extend([old, new].into_iter().flatten().map(|i| (s.clone(), c.clone(), i)));
                    }
                }
                _ => {}
            }
        }
        for key in changed {
            let Some(old) = before.instances.get(&key).map(|i| i.version) else { continue };
            let Some(instance) = self.instances.get_mut(&key) else { continue };
            Arc::make_mut(instance).version = old + 1;
            touched.push(Touched::Instance(key.0, key.1, key.2));
        }
    }

    /// The container instances of one cluster.
    pub fn cluster_instances<'a>(
        &'a self,
        scope: &Scope,
        cluster: &ClusterName,
    ) -> impl Iterator<Item = &'a Arc<ContainerInstance>> + 'a {
        let lo = (scope.clone(), cluster.clone(), String::new());
        let (s, c) = (scope.clone(), cluster.clone());
        self.instances.range(lo..).take_while(move |((ks, kc, _), _)| *ks == s && *kc == c).map(|(_, i)| i)
    }

    /// The services of one cluster, in name order (INACTIVE ones included).
    pub fn cluster_services<'a>(
        &'a self,
        scope: &Scope,
        cluster: &ClusterName,
    ) -> impl Iterator<Item = &'a Arc<Service>> + 'a {
        let (s, c) = (scope.clone(), cluster.clone());
        // "-" is the smallest valid name: names are made of [-0-9A-Z_a-z] only.
        let lo = ServiceName::parse("-").expect("a valid name");
        self.services
            .range((scope.clone(), cluster.clone(), lo)..)
            .take_while(move |((ks, kc, _), _)| *ks == s && *kc == c)
            .map(|(_, v)| v)
    }

    /// Every task, by key.
    pub fn tasks(&self) -> &OrdMap<TaskKey, Arc<Task>> {
        &self.tasks
    }

    /// Records a task, replacing the one with its key.
    pub(crate) fn put_task(&mut self, t: Arc<Task>) {
        let key = (t.scope.clone(), t.cluster.clone(), t.id.clone());
        if let Some(old) = self.tasks.insert(key, t.clone()) {
            if old.group != t.group {
                self.unindex(&old);
            }
            self.unload(&old);
        }
        self.load(&t);
        let group = (t.scope.clone(), t.cluster.clone(), t.group.clone());
        self.task_groups.entry(group).or_default().insert(t.id.clone(), t);
    }

    /// Forgets a task.
    pub(crate) fn remove_task(&mut self, key: &TaskKey) -> Option<Arc<Task>> {
        let old = self.tasks.remove(key)?;
        self.unindex(&old);
        self.unload(&old);
        Some(old)
    }

    fn unindex(&mut self, t: &Task) {
        let group = (t.scope.clone(), t.cluster.clone(), t.group.clone());
        if let Some(members) = self.task_groups.get_mut(&group) {
            members.remove(&t.id);
            if members.is_empty() {
                self.task_groups.remove(&group);
            }
        }
    }

    fn load(&mut self, t: &Task) {
        if let Some(key) = InstanceLoad::key_of(t) {
            Arc::make_mut(self.instance_loads.entry(key).or_default()).add(t);
        }
    }

    fn unload(&mut self, t: &Task) {
        let Some(key) = InstanceLoad::key_of(t) else { return };
        if let Some(load) = self.instance_loads.get_mut(&key) {
            let load = Arc::make_mut(load);
            load.remove(t);
            if load.task_groups.is_empty() {
                self.instance_loads.remove(&key);
            }
        }
    }

    /// What the tasks of `cluster` holding resources on instance `id` take from it.
    pub fn instance_load(&self, scope: &Scope, cluster: &ClusterName, id: &str) -> Option<&InstanceLoad> {
        self.instance_loads.get(&(scope.clone(), cluster.clone(), id.to_string())).map(|l| l.as_ref())
    }

    /// The loads of one cluster's instances, in instance id order; an instance that no
    /// task holds resources on has none. Each load is a new `Arc` when it changes.
    pub fn cluster_loads<'a>(
        &'a self,
        scope: &Scope,
        cluster: &ClusterName,
    ) -> impl Iterator<Item = (&'a str, &'a Arc<InstanceLoad>)> + 'a {
        let lo = (scope.clone(), cluster.clone(), String::new());
        let (s, c) = (scope.clone(), cluster.clone());
        self.instance_loads
            .range(lo..)
            .take_while(move |((ks, kc, _), _)| *ks == s && *kc == c)
            .map(|((_, _, id), load)| (id.as_str(), load))
    }

    /// Panics unless `task_groups` holds exactly the tasks, each under its group, and
    /// `instance_loads` adds up what they hold (tests call it after their writes).
    #[cfg(test)]
    pub(crate) fn check_indexes(&self) {
        let mut expected: OrdMap<(Scope, ClusterName, String), OrdMap<String, Arc<Task>>> = OrdMap::new();
        for t in self.tasks.values() {
            let group = (t.scope.clone(), t.cluster.clone(), t.group.clone());
            expected.entry(group).or_default().insert(t.id.clone(), t.clone());
        }
        assert_eq!(self.task_groups, expected, "the task group index is out of step with the tasks");
        let mut loads: OrdMap<TaskKey, InstanceLoad> = OrdMap::new();
        for t in self.tasks.values() {
            if let Some(key) = InstanceLoad::key_of(t) {
                loads.entry(key).or_default().add(t);
            }
        }
        let normalized = |m: OrdMap<TaskKey, InstanceLoad>| -> OrdMap<TaskKey, InstanceLoad> {
            m.into_iter().map(|(k, l)| (k, l.normalized())).collect()
        };
        let kept = self.instance_loads.iter().map(|(k, l)| (k.clone(), l.as_ref().clone())).collect();
        assert_eq!(normalized(kept), normalized(loads), "the instance loads are out of step with the tasks");
    }

    /// The state's Debug form with each instance load's lists in order (their order
    /// depends on the order tasks came and went): two states holding the same resources
    /// have the same form.
    #[cfg(test)]
    pub(crate) fn canonical_debug(&self) -> String {
        let mut s = self.clone();
        s.instance_loads = s.instance_loads.into_iter().map(|(k, l)| (k, Arc::new(l.normalized()))).collect();
        format!("{s:?}")
    }

    /// The tasks of one group of a cluster, in id order.
    pub fn group_tasks<'a>(
        &'a self,
        scope: &Scope,
        cluster: &ClusterName,
        group: &str,
    ) -> impl Iterator<Item = &'a Arc<Task>> + 'a {
        let key = (scope.clone(), cluster.clone(), group.to_string());
        self.task_groups.get(&key).into_iter().flat_map(|members| members.values())
    }

    /// One group of a cluster's tasks by id, as a persistent map: a writer's change to any
    /// of them makes a new one, so an unchanged group is told by identity (`ptr_eq`).
    pub fn task_group(&self, scope: &Scope, cluster: &ClusterName, group: &str) -> Option<&OrdMap<String, Arc<Task>>> {
        self.task_groups.get(&(scope.clone(), cluster.clone(), group.to_string()))
    }

    /// Whether no task changed between `self` and `other` (one is the other's successor):
    /// the writer's every change to a task makes a new task map.
    pub fn same_tasks(&self, other: &State) -> bool {
        self.task_groups.ptr_eq(&other.task_groups)
    }

    /// The tasks of one cluster.
    pub fn cluster_tasks<'a>(
        &'a self,
        scope: &Scope,
        cluster: &ClusterName,
    ) -> impl Iterator<Item = &'a Arc<Task>> + 'a {
        let lo = (scope.clone(), cluster.clone(), String::new());
        let (s, c) = (scope.clone(), cluster.clone());
        self.tasks.range(lo..).take_while(move |((ks, kc, _), _)| *ks == s && *kc == c).map(|(_, t)| t)
    }
}
