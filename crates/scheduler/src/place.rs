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
//! Cost: one pass over the instances per call, reading only numbers: resources, the group's
//! task count and each spread attribute's value index come from the [`Cluster`] index,
//! kept across calls. Then, when no `random` strategy asks for every tie, the candidates
//! are split into buckets that share their spread attributes' values (zones, say), each a
//! heap ordered by the rest of the key (binpack's remaining CPU or memory, the group's
//! tasks on the instance) and snapshot order; each task is then one comparison per bucket
//! and one heap operation, not a pass over every candidate. Within a bucket the spread
//! counts are the same for every member, so the heap's order is the order of the whole key
//! there, and the best of the bucket heads is the best candidate: the same choice as a
//! scan of every candidate, which stays for `random` (and for a spread over so many
//! values that buckets would not pay). Required attributes and constraints are evaluated
//! lazily, only for a candidate that would otherwise win, and remembered for the call; a
//! `memberOf` that does not look at tasks is remembered in the index across calls. Only
//! constraints that look at tasks (`distinctInstance`, `task:group`, `runningTasksCount`)
//! are evaluated again, and only on the instance that just took a task, because no other
//! instance changed.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use rand::Rng;

use crate::index::{Cluster, Verdict};
use crate::query::Facts;
use crate::{BinpackField, Constraint, Failure, Instance, Plan, SpreadField, Strategy, TaskNeeds};

/// Places `count` copies of `task` on `instances`, each seeing the ones placed before it.
/// Stops at the first copy that fits nowhere and then explains, per instance, why.
///
/// This copies the instances into a fresh [`Cluster`]; a caller that owns its snapshot
/// builds the `Cluster` from it, and one that places again and again on the same cluster
/// keeps one and calls [`Cluster::place`], which does not rebuild the index each time.
pub fn place(
    instances: &[Instance],
    task: &TaskNeeds,
    count: usize,
    constraints: &[Constraint],
    strategies: &[Strategy],
    rng: &mut impl Rng,
) -> Plan {
    Cluster::new(instances.to_vec()).place(task, count, constraints, strategies, rng)
}

/// How a board chooses among its candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Selection {
    /// Bucket heads when the strategies allow it, else a scan.
    Fastest,
    /// Always a scan of every candidate (tests compare the two).
    #[cfg_attr(not(test), allow(dead_code))]
    Scan,
}

/// An index keeps the verdicts of this many distinct expressions at most; beyond, it
/// forgets them all (a cluster sees few distinct constraints, a caller that invents new
/// ones each call should not grow it without end).
const MAX_KEPT_EXPRESSIONS: usize = 64;

impl Cluster {
    /// Places `count` copies of `task`, each seeing the ones placed before it; stops at the
    /// first copy that fits nowhere and then explains, per instance, why. The plan is not
    /// recorded: the caller [`Cluster::record`]s the tasks it creates.
    pub fn place(
        &mut self,
        task: &TaskNeeds,
        count: usize,
        constraints: &[Constraint],
        strategies: &[Strategy],
        rng: &mut impl Rng,
    ) -> Plan {
        self.place_by(task, count, constraints, strategies, rng, Selection::Fastest)
    }

    fn place_by(
        &mut self,
        task: &TaskNeeds,
        count: usize,
        constraints: &[Constraint],
        strategies: &[Strategy],
        rng: &mut impl Rng,
        selection: Selection,
    ) -> Plan {
        let mut plan = Plan::default();
        if count == 0 {
            return plan;
        }
        let order = Order::of(strategies);
        self.count_group(&task.group);
        for name in &order.names {
            self.index_values(name);
        }
        let mut verdicts = self.take_verdicts(constraints);
        {
            let mut board = Board::new(self, task, constraints, &order, &mut verdicts, selection);
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
        }
        self.keep_verdicts(constraints, verdicts);
        plan
    }

    /// The kept verdicts of each constraint that does not look at tasks, one per instance.
    fn take_verdicts(&mut self, constraints: &[Constraint]) -> Vec<Option<Vec<Verdict>>> {
        let n = self.instances.len();
        constraints
            .iter()
            .map(|c| match c {
                Constraint::MemberOf(e) if !e.depends_on_tasks() => {
                    let mut kept = self.verdicts.remove(&e.to_string()).unwrap_or_default();
                    kept.resize(n, Verdict::Unknown);
                    Some(kept)
                }
                _ => None,
            })
            .collect()
    }

    fn keep_verdicts(&mut self, constraints: &[Constraint], verdicts: Vec<Option<Vec<Verdict>>>) {
        if self.verdicts.len() >= MAX_KEPT_EXPRESSIONS {
            self.verdicts.clear();
        }
        for (c, kept) in constraints.iter().zip(verdicts) {
            if let (Constraint::MemberOf(e), Some(kept)) = (c, kept) {
                self.verdicts.insert(e.to_string(), kept);
            }
        }
    }
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

/// The strategies as keys.
struct Order<'a> {
    keys: Vec<Key>,
    /// The attributes `GroupTasksWithValue` counts by.
    names: Vec<&'a str>,
    /// A `random` strategy follows `keys`.
    random: bool,
}

impl<'a> Order<'a> {
    fn of(strategies: &'a [Strategy]) -> Self {
        let mut order = Order { keys: Vec::new(), names: Vec::new(), random: strategies.is_empty() };
        for strategy in strategies {
            order.keys.push(match strategy {
                Strategy::Random => {
                    order.random = true;
                    break;
                }
                Strategy::Binpack(BinpackField::Cpu) => Key::Cpu,
                Strategy::Binpack(BinpackField::Memory) => Key::Memory,
                Strategy::Spread(SpreadField::InstanceId) => Key::GroupTasksOnInstance,
                Strategy::Spread(SpreadField::Attribute(name)) => {
                    order.names.push(name);
                    Key::GroupTasksWithValue(order.names.len() - 1)
                }
            });
        }
        order
    }
}

/// One instance's state during planning.
#[derive(Debug, Clone)]
struct Slot {
    cpu: i64,
    memory: i64,
    /// Tasks of the task's group on the instance, counting those placed by this plan.
    group_tasks: u32,
    /// Tasks placed on the instance by this plan.
    placed: u32,
    ports_free: bool,
    /// Required attributes and constraints, evaluated when first needed.
    rules: Verdict,
}

/// What does not change while planning: the snapshot, the task and its rules.
struct Rulebook<'a> {
    instances: &'a [Instance],
    task: &'a TaskNeeds,
    constraints: &'a [Constraint],
    /// The constraints a placement can change the outcome of.
    changing: Vec<&'a Constraint>,
    /// Per constraint, the index's verdicts on each instance when it does not look at
    /// tasks.
    verdicts: &'a mut [Option<Vec<Verdict>>],
}

struct Board<'a> {
    book: Rulebook<'a>,
    slots: Vec<Slot>,
    /// Instances that may still take a task, in snapshot order: connected, not draining,
    /// with the resources and ports, and not known to break a rule. Placements only take
    /// from instances, so an instance that leaves this list never returns.
    candidates: Vec<usize>,
    keys: &'a [Key],
    random: bool,
    spread: Spread<'a>,
    /// The candidates by bucket, when the strategies allow choosing by bucket heads.
    buckets: Option<Buckets>,
    /// The best key seen in the current selection.
    best_key: Vec<i64>,
    /// The candidates tied on `best_key`, when `random` must choose among them.
    ties: Vec<usize>,
}

/// Tasks of the group per value of each spread attribute.
struct Spread<'a> {
    /// `of[n][i]`: instance `i`'s value index for the `n`th attribute, from the index.
    of: Vec<&'a [u32]>,
    /// `tasks[n][v]`: tasks of the group on instances with value index `v`.
    tasks: Vec<Vec<i64>>,
}

impl Spread<'_> {
    fn add(&mut self, i: usize, tasks: i64) {
        for (of, counts) in self.of.iter().zip(&mut self.tasks) {
            counts[of[i] as usize] += tasks;
        }
    }
}

impl<'a> Board<'a> {
    fn new(
        cluster: &'a Cluster,
        task: &'a TaskNeeds,
        constraints: &'a [Constraint],
        order: &'a Order<'a>,
        verdicts: &'a mut [Option<Vec<Verdict>>],
        selection: Selection,
    ) -> Self {
        let instances = cluster.instances();
        let changing = constraints
            .iter()
            .filter(|c| match c {
                Constraint::DistinctInstance => true,
                Constraint::MemberOf(e) => e.depends_on_tasks(),
            })
            .collect();
        let values: Vec<_> = order.names.iter().map(|name| &cluster.values[*name]).collect();
        let mut spread = Spread {
            of: values.iter().map(|v| v.of.as_slice()).collect(),
            tasks: values.iter().map(|v| vec![0; v.distinct.len()]).collect(),
        };
        let counts = cluster.group_counts(&task.group);

        let mut slots = Vec::with_capacity(instances.len());
        let mut candidates = Vec::new();
        for (i, instance) in instances.iter().enumerate() {
            let group_tasks = counts.get(i).copied().unwrap_or(0);
            let candidate = !instance.draining
                && instance.agent_connected
                && instance.remaining_cpu >= task.cpu
                && instance.remaining_memory >= task.memory;
            let ports_free = candidate
                && task.static_ports_tcp.iter().all(|p| !instance.used_ports_tcp.contains(p))
                && task.static_ports_udp.iter().all(|p| !instance.used_ports_udp.contains(p));
            if group_tasks > 0 && !instance.draining {
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
                rules: Verdict::Unknown,
            });
        }
        let buckets = match selection {
            Selection::Fastest if !order.random => Buckets::new(&order.keys, &spread, &slots, &candidates),
            _ => None,
        };
        Board {
            book: Rulebook { instances, task, constraints, changing, verdicts },
            slots,
            candidates,
            keys: &order.keys,
            random: order.random,
            spread,
            buckets,
            best_key: Vec::new(),
            ties: Vec::new(),
        }
    }

    /// The instance the next task goes to, or `None` if it fits nowhere.
    fn best(&mut self, rng: &mut impl Rng) -> Option<usize> {
        match &mut self.buckets {
            Some(buckets) => buckets.best(&mut self.book, &mut self.slots, self.keys, &self.spread),
            None => self.scan(rng),
        }
    }

    /// [`Board::best`] by one pass over the candidates. A candidate's key is compared
    /// component by component and abandoned at the first worse one; rules are evaluated
    /// only for a candidate that would otherwise win (or tie, under `random`), so an
    /// instance that never competes is never evaluated. Candidates that cannot take this
    /// task leave the list for the rest of the plan.
    fn scan(&mut self, rng: &mut impl Rng) -> Option<usize> {
        let Board { book, slots, candidates, keys, random, spread, best_key, ties, .. } = self;
        let mut found = None;
        let mut kept = 0;
        ties.clear();
        for c in 0..candidates.len() {
            let i = candidates[c];
            let slot = &slots[i];
            if !book.fits(slot) {
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
        self.slots[i].rules = if hold { Verdict::Hold } else { Verdict::Fail };
        if let Some(buckets) = &mut self.buckets {
            buckets.took(i, &self.book, &self.slots, self.keys);
        }
    }

    /// Why each instance cannot take the task, as ECS lists it in `failures`.
    fn failures(&mut self) -> Vec<Failure> {
        let Board { book, slots, .. } = self;
        let mut failures = Vec::new();
        for (i, instance) in book.instances.iter().enumerate() {
            if instance.draining {
                continue;
            }
            let slot = &slots[i];
            let reason = if !instance.agent_connected {
                "AGENT"
            } else if slot.cpu < book.task.cpu {
                "RESOURCE:CPU"
            } else if slot.memory < book.task.memory {
                "RESOURCE:MEMORY"
            } else if !slot.ports_free {
                "RESOURCE:PORTS"
            } else {
                let hold = book.rules_hold(slots, i);
                debug_assert!(!hold, "an instance that passes every check was not chosen");
                "ATTRIBUTE"
            };
            failures.push(Failure { arn: instance.arn.clone(), reason: reason.to_owned() });
        }
        failures
    }
}

/// Up to this many keys that vary by instance, a bucket's heap holds them inline.
const INSTANCE_KEYS: usize = 4;
/// Beyond this many combinations of spread values, buckets would cost more than a scan.
const MAX_BUCKETS: usize = 4096;
/// Keys a bucket comparison holds inline (ECS allows five strategies).
const MAX_KEYS: usize = 16;

/// The instance-level part of a candidate's key, then its snapshot position: the heap's
/// order is the key's order with ties to the earlier instance.
type Entry = Reverse<([i64; INSTANCE_KEYS], usize)>;

/// Candidates grouped by their spread attributes' values.
struct Buckets {
    /// For each key, where its value comes from.
    parts: Vec<Part>,
    list: Vec<Bucket>,
    /// The bucket the last [`Buckets::best`] chose from.
    chosen: usize,
}

#[derive(Debug, Clone, Copy)]
enum Part {
    /// The bucket's count of the group's tasks on the `n`th spread attribute's value.
    Bucket(usize),
    /// The `n`th instance-level component of the entry.
    Instance(usize),
}

struct Bucket {
    /// The bucket's value index for each spread attribute.
    values: Vec<u32>,
    heap: BinaryHeap<Entry>,
}

impl Buckets {
    /// `None` when the keys do not suit buckets: more instance-level keys than an entry
    /// holds, or more value combinations than is worth it.
    fn new(keys: &[Key], spread: &Spread<'_>, slots: &[Slot], candidates: &[usize]) -> Option<Buckets> {
        let mut parts = Vec::with_capacity(keys.len());
        let mut inline = 0;
        for key in keys {
            parts.push(match key {
                Key::GroupTasksWithValue(n) => Part::Bucket(*n),
                _ => {
                    inline += 1;
                    Part::Instance(inline - 1)
                }
            });
        }
        if inline > INSTANCE_KEYS || keys.len() > MAX_KEYS {
            return None;
        }
        let combinations = spread.tasks.iter().try_fold(1usize, |n, values| n.checked_mul(values.len().max(1)))?;
        if combinations > MAX_BUCKETS {
            return None;
        }
        let mut by_code = vec![u32::MAX; combinations];
        let mut list: Vec<Bucket> = Vec::new();
        let mut entries: Vec<Vec<Entry>> = Vec::new();
        for &i in candidates {
            let mut code = 0;
            for (of, values) in spread.of.iter().zip(&spread.tasks) {
                code = code * values.len() + of[i] as usize;
            }
            if by_code[code] == u32::MAX {
                by_code[code] = list.len() as u32;
                list.push(Bucket { values: spread.of.iter().map(|of| of[i]).collect(), heap: BinaryHeap::new() });
                entries.push(Vec::new());
            }
            entries[by_code[code] as usize].push(Reverse((instance_key(keys, &slots[i]), i)));
        }
        for (bucket, entries) in list.iter_mut().zip(entries) {
            bucket.heap = BinaryHeap::from(entries);
        }
        Some(Buckets { parts, list, chosen: 0 })
    }

    /// The best candidate that keeps the rules: the best of each bucket's head, after
    /// dropping heads that break a rule.
    fn best(
        &mut self,
        book: &mut Rulebook<'_>,
        slots: &mut [Slot],
        keys: &[Key],
        spread: &Spread<'_>,
    ) -> Option<usize> {
        let mut found: Option<(usize, usize)> = None;
        let mut best_key = [0i64; MAX_KEYS];
        let mut key = best_key;
        for (b, bucket) in self.list.iter_mut().enumerate() {
            let head = loop {
                let Some(Reverse((_, i))) = bucket.heap.peek() else { break None };
                let i = *i;
                if book.rules_hold(slots, i) {
                    break Some(i);
                }
                bucket.heap.pop();
            };
            let Some(i) = head else { continue };
            let Some(Reverse((inline, _))) = bucket.heap.peek() else { continue };
            for (k, part) in self.parts.iter().enumerate() {
                key[k] = match *part {
                    Part::Bucket(n) => spread.tasks[n][bucket.values[n] as usize],
                    Part::Instance(n) => inline[n],
                };
            }
            let better = match found {
                None => true,
                Some((_, j)) => match key[..keys.len()].cmp(&best_key[..keys.len()]) {
                    Ordering::Less => true,
                    Ordering::Equal => i < j,
                    Ordering::Greater => false,
                },
            };
            if better {
                found = Some((b, i));
                best_key = key;
            }
        }
        let (b, i) = found?;
        self.chosen = b;
        Some(i)
    }

    /// Puts instance `i`, which just took a task from the chosen bucket, back in its place
    /// if it can take another.
    fn took(&mut self, i: usize, book: &Rulebook<'_>, slots: &[Slot], keys: &[Key]) {
        let bucket = &mut self.list[self.chosen];
        let popped = bucket.heap.pop();
        debug_assert_eq!(popped.map(|Reverse((_, j))| j), Some(i), "the chosen instance heads its bucket");
        if book.fits(&slots[i]) && slots[i].rules != Verdict::Fail {
            bucket.heap.push(Reverse((instance_key(keys, &slots[i]), i)));
        }
    }
}

/// The instance-level components of a candidate's key, in the order of `keys`.
fn instance_key(keys: &[Key], slot: &Slot) -> [i64; INSTANCE_KEYS] {
    let mut out = [0; INSTANCE_KEYS];
    let mut n = 0;
    for key in keys {
        let value = match key {
            Key::Cpu => slot.cpu,
            Key::Memory => slot.memory,
            Key::GroupTasksOnInstance => i64::from(slot.group_tasks),
            Key::GroupTasksWithValue(_) => continue,
        };
        out[n] = value;
        n += 1;
    }
    out
}

impl Rulebook<'_> {
    /// Whether the task's resources and ports fit the instance as planned, and it is not
    /// known to break a rule.
    fn fits(&self, slot: &Slot) -> bool {
        slot.cpu >= self.task.cpu && slot.memory >= self.task.memory && slot.ports_free && slot.rules != Verdict::Fail
    }

    /// Does instance `i`, with the tasks this plan has put on it, satisfy the required
    /// attributes and every constraint? Evaluated on first use and remembered in its slot:
    /// only a placement on `i` can change the answer, and [`Board::take`] refreshes it.
    fn rules_hold(&mut self, slots: &mut [Slot], i: usize) -> bool {
        if slots[i].rules == Verdict::Unknown {
            let instance = &self.instances[i];
            let mut hold = self.task.required_attributes.iter().all(|a| instance.attributes.contains_key(a));
            for (n, c) in self.constraints.iter().enumerate() {
                if !hold {
                    break;
                }
                hold = match self.verdicts[n].as_ref().map(|kept| kept[i]) {
                    Some(Verdict::Hold) => true,
                    Some(Verdict::Fail) => false,
                    _ => {
                        let h = self.holds(c, slots, i);
                        if let Some(kept) = self.verdicts[n].as_mut() {
                            kept[i] = if h { Verdict::Hold } else { Verdict::Fail };
                        }
                        h
                    }
                };
            }
            slots[i].rules = if hold { Verdict::Hold } else { Verdict::Fail };
        }
        slots[i].rules == Verdict::Hold
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
        Key::GroupTasksWithValue(n) => spread.tasks[n][spread.of[n][i] as usize],
    }
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
