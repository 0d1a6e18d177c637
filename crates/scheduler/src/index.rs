//! The placement index: a cluster's instances together with what placement derives from
//! them, kept from one call to the next.
//!
//! A call places at most a handful of tasks (RunTask's most is 10) on a cluster of
//! thousands of instances, so what a call must not do is redo per-instance work whose
//! answer did not change since the last one. Three things are derived once and then kept
//! in step by the changes the caller reports ([`Cluster::record`] for a task it placed,
//! [`Cluster::set`] for an instance that changed in any other way):
//!
//! - each task group's number of tasks on every instance, counted the first time a call
//!   places a task of the group (`spread` and `distinctInstance` count them; scanning
//!   every instance's task list for the group's name was a quarter of a call);
//! - each attribute's value on every instance, as a small index into that attribute's
//!   distinct values (built the first time a `spread` names the attribute);
//! - each `memberOf` expression's verdict on every instance, for expressions that look
//!   only at the instance itself (attributes, agent, registration): they cannot change
//!   until the instance does. Expressions on `task:group` or `runningTasksCount` are
//!   evaluated afresh for each call.
//!
//! The index never decides anything: [`Cluster::place`] reads it, and the plan it returns
//! is only a proposal until the caller records it.

use std::collections::HashMap;

use crate::query::Facts;
use crate::Instance;

/// A cluster's instances and the placement index over them.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub(crate) instances: Vec<Instance>,
    /// `groups[g][i]`: tasks of group `g` on instance `i`, for the groups a call has asked
    /// about.
    pub(crate) groups: HashMap<String, Vec<u32>>,
    /// Attribute values by attribute name, built on first use.
    pub(crate) values: HashMap<String, Values>,
    /// `memberOf` verdicts by the expression's canonical text, for expressions that do
    /// not look at tasks; taken out while a call uses them and put back after.
    pub(crate) verdicts: HashMap<String, Vec<Verdict>>,
}

/// One attribute's value on every instance.
#[derive(Debug, Clone, Default)]
pub(crate) struct Values {
    /// The distinct values seen, `None` for "absent or without a value" (one more value
    /// for `spread`), each with its index.
    pub distinct: HashMap<Option<String>, u32>,
    /// `of[i]`: instance `i`'s index into `distinct`.
    pub of: Vec<u32>,
}

impl Values {
    fn build(instances: &[Instance], name: &str) -> Self {
        let mut values = Values::default();
        for instance in instances {
            let v = values.index_of(instance, name);
            values.of.push(v);
        }
        values
    }

    fn index_of(&mut self, instance: &Instance, name: &str) -> u32 {
        let value = instance.attribute(name).flatten().map(str::to_owned);
        let next = u32::try_from(self.distinct.len()).unwrap_or(u32::MAX);
        *self.distinct.entry(value).or_insert(next)
    }
}

/// A cached verdict of one expression on one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Unknown,
    Hold,
    Fail,
}

impl Cluster {
    /// An index over `instances`. Nothing is derived yet: each group's counts, each
    /// attribute's values and each expression's verdicts are built when a call first needs
    /// them, so a caller that builds an index for one call pays only for what it uses.
    pub fn new(instances: Vec<Instance>) -> Self {
        Cluster { instances, ..Cluster::default() }
    }

    /// The instances, in the order plans name them.
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    /// Replaces instance `i` (its attributes, agent, resources or tasks changed).
    pub fn set(&mut self, i: usize, instance: Instance) {
        self.count_groups(i, -1);
        self.instances[i] = instance;
        self.count_groups(i, 1);
        self.refresh(i);
    }

    /// Records a task of `needs` placed on instance `i`: it now holds its resources and
    /// ports there and counts in its group.
    pub fn record(&mut self, i: usize, needs: &crate::TaskNeeds) {
        let instance = &mut self.instances[i];
        instance.remaining_cpu -= needs.cpu;
        instance.remaining_memory -= needs.memory;
        instance.used_ports_tcp.extend(&needs.static_ports_tcp);
        instance.used_ports_udp.extend(&needs.static_ports_udp);
        instance.running_tasks_count = instance.running_tasks_count.saturating_add(1);
        instance.task_groups.push(needs.group.clone());
        if let Some(counts) = self.groups.get_mut(&needs.group) {
            bump(counts, i, 1);
        }
    }

    /// Makes sure the tasks of `group` are counted on every instance.
    pub(crate) fn count_group(&mut self, group: &str) {
        if !self.groups.contains_key(group) {
            let counts = self.instances.iter().map(|i| tasks_of_group(&i.task_groups, group)).collect();
            self.groups.insert(group.to_owned(), counts);
        }
    }

    /// Tasks of `group` on each instance; empty unless [`Cluster::count_group`] counted it.
    pub(crate) fn group_counts(&self, group: &str) -> &[u32] {
        self.groups.get(group).map_or(&[], Vec::as_slice)
    }

    /// Makes sure the values of attribute `name` are indexed.
    pub(crate) fn index_values(&mut self, name: &str) {
        if !self.values.contains_key(name) {
            let values = Values::build(&self.instances, name);
            self.values.insert(name.to_owned(), values);
        }
    }

    fn count_groups(&mut self, i: usize, by: i64) {
        let Cluster { instances, groups, .. } = self;
        for group in &instances[i].task_groups {
            if let Some(counts) = groups.get_mut(group.as_str()) {
                bump(counts, i, by);
            }
        }
    }

    /// Brings the attribute values and verdicts of instance `i` up to date.
    fn refresh(&mut self, i: usize) {
        let instance = &self.instances[i];
        for (name, values) in &mut self.values {
            values.of[i] = values.index_of(instance, name);
        }
        for verdicts in self.verdicts.values_mut() {
            if let Some(v) = verdicts.get_mut(i) {
                *v = Verdict::Unknown;
            }
        }
    }
}

/// How many of `groups` equal `group`, comparing lengths and last bytes before the
/// bytes: names that differ mostly differ there.
fn tasks_of_group(groups: &[String], group: &str) -> u32 {
    let same = |g: &&String| g.len() == group.len() && g.as_bytes().last() == group.as_bytes().last() && *g == group;
    u32::try_from(groups.iter().filter(same).count()).unwrap_or(u32::MAX)
}

fn bump(counts: &mut [u32], i: usize, by: i64) {
    counts[i] = u32::try_from((i64::from(counts[i]) + by).max(0)).unwrap_or(u32::MAX);
}
