//! The placement process of the ECS guide, one task at a time: keep the instances with the
//! CPU, memory and ports the task needs, then those that satisfy every constraint, then
//! order them by the strategies and take the first.
//!
//! Decisions where the guide is silent or that it states elsewhere:
//!
//! - No strategy means `random`. The guide's "Scheduling Amazon ECS tasks" says RunTask
//!   lets "the default task placement strategy distribute tasks randomly across your
//!   cluster"; a service's default (spread over availability zones) is the caller's to
//!   pass, see [`crate::Strategy::service_default`].
//! - `spread` counts tasks of the task's own group, as the guide says ("service tasks are
//!   spread based on the tasks from that service; standalone tasks ... from the same task
//!   group"), and for `spread` on an attribute the count is summed over every instance with
//!   that value, including instances that cannot take this task (full, or excluded by a
//!   constraint): balance is about where the group runs, not where it could go next. An
//!   instance without the attribute counts under "no value", which is one more value.
//!   Tasks on a `DRAINING` instance are on their way out and are not counted.
//! - `binpack` prefers the least remaining CPU or memory; since the task takes the same
//!   amount from every candidate, "least before" and "least after" are the same order.
//! - `random` chooses uniformly among the instances tied on the strategies before it, so a
//!   strategy after `random` never has a tie left to break. Remaining ties go to the
//!   instance that comes first in the snapshot.
//! - A `DRAINING` instance is treated like one that has left the cluster: never a
//!   candidate and not listed in `failures`, the way ECS only places on `ACTIVE`
//!   instances. A connected instance's first failing check names it; the order is agent,
//!   CPU, memory, ports, then attributes and constraints (`ATTRIBUTE`).
//!
//! Cost: one pass over the instances per call (resources, ports, the group's task count,
//! spread attribute values), then one pass over the remaining candidates per task,
//! comparing a small key with no sorting. Required attributes and constraints are
//! evaluated lazily, only for a candidate that would otherwise win, and remembered for the
//! call; only constraints that look at tasks (`distinctInstance`, `task:group`,
//! `runningTasksCount`) are evaluated again, and only on the instance that just took a
//! task, because no other instance changed. Nothing survives between calls: the snapshot
//! is the only state, which keeps the function pure but makes each call cost a pass over
//! every instance's attributes and task groups (see `scheduler-bench`).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use rand::Rng;

use crate::query::{same, Facts};
use crate::{BinpackField, Constraint, Failure, Instance, Plan, SpreadField, Strategy, TaskNeeds};

/// Places `count` copies of `task` on `instances`, each seeing the ones placed before it.
/// Stops at the first copy that fits nowhere and then explains, per instance, why.
pub fn place(
    instances: &[Instance],
    task: &TaskNeeds,
    count: usize,
    constraints: &[Constraint],
    strategies: &[Strategy],
    rng: &mut impl Rng,
) -> Plan {
    let mut plan = Plan::default();
    if count == 0 {
        return plan;
    }
    let mut board = Board::new(instances, task, constraints, strategies);
    while plan.placements.len() < count {
        match board.best(rng) {
            Some(i) => {
                board.take(i);
                plan.placements.push(i);
            }
            None => {
                plan.failures = board.failures();
                break;
            }
        }
    }
    plan
}

/// One instance's state during planning.
#[derive(Debug, Clone)]
struct Slot {
    cpu: i64,
    memory: i64,
    /// Tasks of the task's group on the instance, counting those placed by this plan.
    /// Kept only when a strategy or constraint needs it.
    group_tasks: u32,
    /// Tasks placed on the instance by this plan.
    placed: u32,
    ports_free: bool,
    /// Required attributes and constraints, evaluated when first needed.
    rules: Rules,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rules {
    Unknown,
    Hold,
    Fail,
}

/// A strategy reduced to the number it orders candidates by; smaller is better.
#[derive(Debug, Clone, Copy)]
enum Key {
    Cpu,
    Memory,
    GroupTasksOnInstance,
    /// Tasks of the group on instances sharing this instance's value of the `n`th spread
    /// attribute.
    GroupTasksWithValue(usize),
}

/// What does not change while planning: the snapshot, the task and its rules.
struct Rulebook<'a> {
    instances: &'a [Instance],
    task: &'a TaskNeeds,
    constraints: &'a [Constraint],
    /// The constraints a placement can change the outcome of.
    changing: Vec<&'a Constraint>,
}

struct Board<'a> {
    book: Rulebook<'a>,
    slots: Vec<Slot>,
    /// Instances that may still take a task, in snapshot order: connected, not draining,
    /// with the resources and ports, and not known to break a rule. Placements only take
    /// from instances, so an instance that leaves this list never returns.
    candidates: Vec<usize>,
    keys: Vec<Key>,
    /// A `random` strategy follows `keys`.
    random: bool,
    spread: Spread<'a>,
    /// The best key seen in the current selection.
    best_key: Vec<i64>,
    /// The candidates tied on `best_key`, when `random` must choose among them.
    ties: Vec<usize>,
}

/// Tasks of the group per value of each spread attribute.
struct Spread<'a> {
    names: Vec<&'a str>,
    /// `values[i * names.len() + n]`: instance `i`'s value index for the `n`th attribute.
    /// Looked up only for candidates and for instances running tasks of the group.
    values: Vec<u32>,
    distinct: Vec<Distinct<'a>>,
    /// `tasks[n][v]`: tasks of the group on instances with value index `v`.
    tasks: Vec<Vec<i64>>,
}

impl<'a> Spread<'a> {
    fn look_up(&mut self, instance: &'a Instance, i: usize) {
        for n in 0..self.names.len() {
            let value = instance.attribute(self.names[n]).flatten();
            let v = self.distinct[n].index(value);
            if v == self.tasks[n].len() {
                self.tasks[n].push(0);
            }
            self.values[i * self.names.len() + n] = v as u32;
        }
    }

    fn add(&mut self, i: usize, tasks: i64) {
        for n in 0..self.names.len() {
            self.tasks[n][self.values[i * self.names.len() + n] as usize] += tasks;
        }
    }
}

/// The distinct values of one attribute. A linear scan while there are few (zones,
/// instance types), which beats a map's comparisons, and a map beyond that.
#[derive(Default)]
struct Distinct<'a> {
    list: Vec<Option<&'a str>>,
    map: BTreeMap<Option<&'a str>, usize>,
}

impl<'a> Distinct<'a> {
    const LINEAR: usize = 16;

    fn index(&mut self, value: Option<&'a str>) -> usize {
        let found = if self.list.len() <= Self::LINEAR {
            self.list.iter().position(|v| match (v, value) {
                (Some(a), Some(b)) => same(a, b),
                (a, b) => a.is_none() && b.is_none(),
            })
        } else {
            self.map.get(&value).copied()
        };
        if let Some(v) = found {
            return v;
        }
        self.list.push(value);
        if self.list.len() > Self::LINEAR {
            if self.map.is_empty() {
                self.map = self.list.iter().enumerate().map(|(v, value)| (*value, v)).collect();
            } else {
                self.map.insert(value, self.list.len() - 1);
            }
        }
        self.list.len() - 1
    }
}

impl<'a> Board<'a> {
    fn new(
        instances: &'a [Instance],
        task: &'a TaskNeeds,
        constraints: &'a [Constraint],
        strategies: &'a [Strategy],
    ) -> Self {
        let mut keys = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        let mut random = strategies.is_empty();
        for strategy in strategies {
            keys.push(match strategy {
                Strategy::Random => {
                    random = true;
                    break;
                }
                Strategy::Binpack(BinpackField::Cpu) => Key::Cpu,
                Strategy::Binpack(BinpackField::Memory) => Key::Memory,
                Strategy::Spread(SpreadField::InstanceId) => Key::GroupTasksOnInstance,
                Strategy::Spread(SpreadField::Attribute(name)) => {
                    names.push(name);
                    Key::GroupTasksWithValue(names.len() - 1)
                }
            });
        }
        let count_group = constraints.iter().any(|c| matches!(c, Constraint::DistinctInstance))
            || keys.iter().any(|k| matches!(k, Key::GroupTasksOnInstance | Key::GroupTasksWithValue(_)));
        let changing = constraints
            .iter()
            .filter(|c| match c {
                Constraint::DistinctInstance => true,
                Constraint::MemberOf(e) => e.depends_on_tasks(),
            })
            .collect();
        let mut spread = Spread {
            values: vec![0; instances.len() * names.len()],
            distinct: names.iter().map(|_| Distinct::default()).collect(),
            tasks: vec![Vec::new(); names.len()],
            names,
        };

        let mut slots = Vec::with_capacity(instances.len());
        let mut candidates = Vec::new();
        for (i, instance) in instances.iter().enumerate() {
            let group_tasks = if count_group { tasks_of_group(&instance.task_groups, &task.group) } else { 0 };
            let candidate = !instance.draining
                && instance.agent_connected
                && instance.remaining_cpu >= task.cpu
                && instance.remaining_memory >= task.memory;
            let ports_free = candidate
                && task.static_ports_tcp.iter().all(|p| !instance.used_ports_tcp.contains(p))
                && task.static_ports_udp.iter().all(|p| !instance.used_ports_udp.contains(p));
            let counted = group_tasks > 0 && !instance.draining;
            if ports_free || counted {
                spread.look_up(instance, i);
            }
            if counted {
                spread.add(i, i64::from(group_tasks));
            }
            if ports_free {
                candidates.push(i);
            }
            slots.push(Slot {
                cpu: instance.remaining_cpu,
                memory: instance.remaining_memory,
                group_tasks,
                placed: 0,
                ports_free,
                rules: Rules::Unknown,
            });
        }
        Board {
            book: Rulebook { instances, task, constraints, changing },
            slots,
            candidates,
            keys,
            random,
            spread,
            best_key: Vec::new(),
            ties: Vec::new(),
        }
    }

    /// The instance the next task goes to, or `None` if it fits nowhere.
    ///
    /// One pass over the candidates. A candidate's key is compared component by
    /// component and abandoned at the first worse one; rules are evaluated only for a
    /// candidate that would otherwise win (or tie, under `random`), so an instance that
    /// never competes is never evaluated. Candidates that cannot take this task leave the
    /// list for the rest of the plan.
    fn best(&mut self, rng: &mut impl Rng) -> Option<usize> {
        let Board { book, slots, candidates, keys, random, spread, best_key, ties } = self;
        let (cpu, memory) = (book.task.cpu, book.task.memory);
        let mut found = None;
        let mut kept = 0;
        ties.clear();
        for c in 0..candidates.len() {
            let i = candidates[c];
            let slot = &slots[i];
            if slot.cpu < cpu || slot.memory < memory || !slot.ports_free || slot.rules == Rules::Fail {
                continue;
            }
            candidates[kept] = i;
            kept += 1;
            let mut order = Ordering::Less;
            if found.is_some() {
                order = Ordering::Equal;
                for (k, key) in keys.iter().enumerate() {
                    order = key_value(*key, slot, i, spread).cmp(&best_key[k]);
                    if order != Ordering::Equal {
                        break;
                    }
                }
            }
            let wanted = match order {
                Ordering::Less => true,
                Ordering::Equal => *random,
                Ordering::Greater => false,
            };
            if !wanted || !book.rules_hold(slots, i) {
                continue;
            }
            if order == Ordering::Less {
                found = Some(i);
                best_key.clear();
                best_key.extend(keys.iter().map(|key| key_value(*key, &slots[i], i, spread)));
                ties.clear();
            }
            ties.push(i);
        }
        candidates.truncate(kept);
        if *random && ties.len() > 1 {
            return Some(ties[rng.gen_range(0..ties.len())]);
        }
        found
    }

    /// Records a task placed on instance `i`.
    fn take(&mut self, i: usize) {
        let task = self.book.task;
        let slot = &mut self.slots[i];
        slot.cpu -= task.cpu;
        slot.memory -= task.memory;
        slot.placed += 1;
        slot.group_tasks = slot.group_tasks.saturating_add(1);
        if !task.static_ports_tcp.is_empty() || !task.static_ports_udp.is_empty() {
            slot.ports_free = false;
        }
        self.spread.add(i, 1);
        let hold = self.book.changing.iter().all(|c| self.book.holds(c, &self.slots, i));
        self.slots[i].rules = if hold { Rules::Hold } else { Rules::Fail };
    }

    /// Why each instance cannot take the task, as ECS lists it in `failures`.
    fn failures(&mut self) -> Vec<Failure> {
        let book = &self.book;
        let mut failures = Vec::new();
        for (i, instance) in book.instances.iter().enumerate() {
            if instance.draining {
                continue;
            }
            let slot = &self.slots[i];
            let reason = if !instance.agent_connected {
                "AGENT"
            } else if slot.cpu < book.task.cpu {
                "RESOURCE:CPU"
            } else if slot.memory < book.task.memory {
                "RESOURCE:MEMORY"
            } else if !slot.ports_free {
                "RESOURCE:PORTS"
            } else {
                let hold = book.rules_hold(&mut self.slots, i);
                debug_assert!(!hold, "an instance that passes every check was not chosen");
                "ATTRIBUTE"
            };
            failures.push(Failure { arn: instance.arn.clone(), reason: reason.to_owned() });
        }
        failures
    }
}

impl Rulebook<'_> {
    /// Does instance `i`, with the tasks this plan has put on it, satisfy the required
    /// attributes and every constraint? Evaluated on first use and remembered in its slot:
    /// only a placement on `i` can change the answer, and [`Board::take`] refreshes it.
    fn rules_hold(&self, slots: &mut [Slot], i: usize) -> bool {
        if slots[i].rules == Rules::Unknown {
            let instance = &self.instances[i];
            let hold = self.task.required_attributes.iter().all(|a| instance.attributes.contains_key(a))
                && self.constraints.iter().all(|c| self.holds(c, slots, i));
            slots[i].rules = if hold { Rules::Hold } else { Rules::Fail };
        }
        slots[i].rules == Rules::Hold
    }

    fn holds(&self, c: &Constraint, slots: &[Slot], i: usize) -> bool {
        let slot = &slots[i];
        match c {
            Constraint::DistinctInstance => slot.group_tasks == 0,
            Constraint::MemberOf(e) => {
                e.holds(&Planned { instance: &self.instances[i], placed: slot.placed, group: &self.task.group })
            }
        }
    }
}

/// The value of one strategy's key for candidate `i`.
#[inline]
fn key_value(key: Key, slot: &Slot, i: usize, spread: &Spread<'_>) -> i64 {
    match key {
        Key::Cpu => slot.cpu,
        Key::Memory => slot.memory,
        Key::GroupTasksOnInstance => i64::from(slot.group_tasks),
        Key::GroupTasksWithValue(n) => spread.tasks[n][spread.values[i * spread.names.len() + n] as usize],
    }
}

/// How many of `groups` equal `group`. This runs over every task in the snapshot on each
/// call, so it avoids touching a name's bytes when the lengths differ.
fn tasks_of_group(groups: &[String], group: &str) -> u32 {
    let n = groups.iter().filter(|g| same(g, group)).count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// An instance as the query language sees it after this plan put `placed` tasks of
/// `group` on it.
struct Planned<'a> {
    instance: &'a Instance,
    placed: u32,
    group: &'a str,
}

impl Facts for Planned<'_> {
    fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.instance.attribute(name)
    }
    fn any_group(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.instance.any_group(f) || (self.placed > 0 && f(self.group))
    }
    fn agent_connected(&self) -> bool {
        self.instance.agent_connected
    }
    fn agent_version(&self) -> &str {
        &self.instance.agent_version
    }
    fn ec2_instance_id(&self) -> &str {
        &self.instance.ec2_instance_id
    }
    fn registered_at(&self) -> f64 {
        self.instance.registered_at
    }
    fn running_tasks_count(&self) -> u32 {
        self.instance.running_tasks_count.saturating_add(self.placed)
    }
}

#[cfg(test)]
mod tests;
