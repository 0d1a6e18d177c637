//! A target group at run time: its targets with their health, in-flight requests and
//! draining, and the choice of a target for a request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use elb::attributes::Algorithm;
use elb::health::{Board, Outcome, TargetHealth, TargetKey, Tracker};
use elb::snapshot::TgPlan;

/// One registered (or draining) target.
#[derive(Debug)]
pub(crate) struct Target {
    pub key: TargetKey,
    pub addr: Option<SocketAddr>,
    /// `addr` as a URI authority, made once rather than for every request.
    pub authority: Option<http::uri::Authority>,
    inflight: AtomicUsize,
    healthy: AtomicBool,
    health: Mutex<Health>,
    /// Set when a connection to the target failed: it takes no new requests (while
    /// others can) until a health check passes or the time runs out. Milliseconds
    /// since [`epoch`]; 0 when it is not ejected.
    ejected_until: AtomicU64,
    /// Stops the target's health checks.
    pub cancel: CancellationToken,
}

#[derive(Debug)]
struct Health {
    tracker: Tracker,
    healthy_since: Option<Instant>,
}

impl Target {
    fn new(key: TargetKey, addr: Option<SocketAddr>) -> Self {
        Target {
            key,
            authority: addr.and_then(|a| a.to_string().parse().ok()),
            addr,
            inflight: AtomicUsize::new(0),
            healthy: AtomicBool::new(false),
            health: Mutex::new(Health { tracker: Tracker::new(), healthy_since: None }),
            ejected_until: AtomicU64::new(0),
            cancel: CancellationToken::new(),
        }
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a health check; returns whether the reported health changed.
    pub fn record(&self, outcome: Outcome, healthy_threshold: u32, unhealthy_threshold: u32) -> bool {
        let passed = outcome == Outcome::Passed;
        let mut h = self.lock();
        let before = h.tracker.report();
        let flipped = h.tracker.record(outcome, healthy_threshold, unhealthy_threshold);
        if flipped {
            let healthy = h.tracker.is_healthy();
            h.healthy_since = healthy.then(Instant::now);
            self.healthy.store(healthy, Ordering::Relaxed);
        }
        if passed {
            self.ejected_until.store(0, Ordering::Relaxed);
        }
        before != h.tracker.report()
    }

    pub fn report(&self) -> TargetHealth {
        self.lock().tracker.report()
    }

    fn healthy_since(&self) -> Option<Instant> {
        self.lock().healthy_since
    }

    /// Takes the target out of rotation for `d` after a failed connection.
    pub fn eject(&self, d: Duration) {
        let until = millis_since_epoch(Instant::now() + d).max(1);
        self.ejected_until.store(until, Ordering::Relaxed);
    }

    fn ejected(&self, now: Instant) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && until > millis_since_epoch(now)
    }

    /// Counts a request as in flight until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(self.clone())
    }
}

/// A fixed instant early in the process's life, so that instants fit in an atomic.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn millis_since_epoch(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_millis() as u64
}

/// A request in flight to a target; dropping it ends the request.
#[derive(Debug)]
pub(crate) struct InflightGuard(Arc<Target>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Draining {
    target: Arc<Target>,
    until: Instant,
}

/// What choosing a target and proxying to it need of a group's attributes, read once
/// per change rather than for every request.
#[derive(Debug)]
pub(crate) struct Settings {
    pub algorithm: Algorithm,
    /// Zero when slow start is off.
    pub slow_start: Duration,
    /// How long the load balancer's stickiness cookie lasts, when it is on.
    pub lb_cookie: Option<Duration>,
    /// How long a target whose connection failed takes no new requests: a health-check
    /// interval.
    pub eject_for: Duration,
}

impl Settings {
    fn of(plan: &TgPlan) -> Self {
        Settings {
            algorithm: plan.attributes.algorithm(),
            slow_start: plan.attributes.slow_start(),
            lb_cookie: plan.attributes.lb_cookie(),
            eject_for: Duration::from_secs(plan.health_check.interval_seconds.into()),
        }
    }
}

/// A target group's run-time state.
#[derive(Debug)]
pub(crate) struct Group {
    pub arn: String,
    pub plan: ArcSwap<TgPlan>,
    settings: ArcSwap<Settings>,
    /// Targets that take new requests (healthy or not; the choice decides).
    active: ArcSwap<Vec<Arc<Target>>>,
    draining: Mutex<Vec<Draining>>,
    rr: AtomicUsize,
    board: Arc<Board>,
}

impl Group {
    pub fn new(plan: TgPlan, board: Arc<Board>) -> Self {
        Group {
            arn: plan.arn.clone(),
            settings: ArcSwap::from_pointee(Settings::of(&plan)),
            plan: ArcSwap::from_pointee(plan),
            active: ArcSwap::from_pointee(Vec::new()),
            draining: Mutex::new(Vec::new()),
            rr: AtomicUsize::new(0),
            board,
        }
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    pub fn active(&self) -> Arc<Vec<Arc<Target>>> {
        self.active.load_full()
    }

    /// Applies a new plan; returns the targets that are new (to start checking).
    /// Targets no longer registered start draining for the deregistration delay.
    pub fn update(&self, plan: TgPlan) -> Vec<Arc<Target>> {
        let old = self.active.load_full();
        let delay = plan.attributes.deregistration_delay();
        let mut next = Vec::with_capacity(plan.targets.len());
        let mut added = Vec::new();
        for t in &plan.targets {
            match old.iter().find(|o| o.key == t.key && o.addr == t.addr) {
                Some(o) => next.push(o.clone()),
                None => {
                    let n = Arc::new(Target::new(t.key.clone(), t.addr));
                    added.push(n.clone());
                    next.push(n);
                }
            }
        }
        let now = Instant::now();
        {
            let mut draining = self.draining.lock().unwrap_or_else(|p| p.into_inner());
            // A target registered again stops draining: its new registration replaces it.
            draining.retain(|d| !next.iter().any(|n| n.key == d.target.key));
            for o in old.iter().filter(|o| !next.iter().any(|n| Arc::ptr_eq(n, o))) {
                o.cancel.cancel();
                if o.inflight() > 0 && !delay.is_zero() {
                    draining.push(Draining { target: o.clone(), until: now + delay });
                }
            }
        }
        self.settings.store(Arc::new(Settings::of(&plan)));
        self.plan.store(Arc::new(plan));
        self.active.store(Arc::new(next));
        self.publish();
        added
    }

    /// Ends draining for targets with no request in flight or whose delay is over;
    /// returns whether any draining target is left.
    pub fn sweep(&self) -> bool {
        let now = Instant::now();
        let (changed, left) = {
            let mut draining = self.draining.lock().unwrap_or_else(|p| p.into_inner());
            let before = draining.len();
            draining.retain(|d| d.target.inflight() > 0 && d.until > now);
            (draining.len() != before, !draining.is_empty())
        };
        if changed {
            self.publish();
        }
        left
    }

    /// Stops every health check (the group is gone).
    pub fn stop(&self) {
        for t in self.active.load().iter() {
            t.cancel.cancel();
        }
        self.board.forget(&self.arn);
    }

    /// Publishes the group's target health for DescribeTargetHealth.
    pub fn publish(&self) {
        let mut map: HashMap<TargetKey, TargetHealth> = HashMap::new();
        for d in self.draining.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            map.insert(d.target.key.clone(), TargetHealth::draining());
        }
        for t in self.active.load().iter() {
            let h = if t.addr.is_none() { TargetHealth::unresolvable(&t.key.id) } else { t.report() };
            map.insert(t.key.clone(), h);
        }
        self.board.publish(&self.arn, map);
    }

    /// Chooses a target for a request: a healthy one if there is any; otherwise, as ALB
    /// fails open, any registered one. `sticky` is a target the client is stuck to; it
    /// is used while it can take requests. `avoid` is a target that just failed.
    pub fn pick(&self, sticky: Option<&TargetKey>, avoid: Option<&Arc<Target>>) -> Option<Arc<Target>> {
        let all = self.active.load();
        let now = Instant::now();
        let usable = |t: &Arc<Target>| t.addr.is_some() && !avoid.is_some_and(|a| Arc::ptr_eq(a, t));
        let any_healthy = all.iter().any(|t| usable(t) && t.is_healthy());
        let tier = |t: &Arc<Target>| usable(t) && (!any_healthy || t.is_healthy());
        // Targets whose connection just failed wait, as long as another can serve.
        let any_fresh = all.iter().any(|t| tier(t) && !t.ejected(now));
        let eligible = |t: &Arc<Target>| tier(t) && (!any_fresh || !t.ejected(now));
        if let Some(key) = sticky {
            if let Some(t) = all.iter().find(|t| t.key == *key && eligible(t)) {
                return Some(t.clone());
            }
        }
        let settings = self.settings.load();
        // The usual case, round robin with nobody in slow start, needs no list.
        if settings.algorithm == Algorithm::RoundRobin && settings.slow_start.is_zero() {
            let n = all.iter().filter(|t| eligible(t)).count();
            if n == 0 {
                return None;
            }
            let k = self.rr.fetch_add(1, Ordering::Relaxed) % n;
            return all.iter().filter(|t| eligible(t)).nth(k).cloned();
        }
        let pool: Vec<&Arc<Target>> = all.iter().filter(|t| eligible(t)).collect();
        if pool.is_empty() {
            return None;
        }
        let weights = slow_start_weights(&pool, settings.slow_start, now);
        let chosen = match (settings.algorithm, weights) {
            (Algorithm::LeastOutstandingRequests, w) => {
                // Fewest requests in flight relative to its weight; ties go round robin.
                let start = self.rr.fetch_add(1, Ordering::Relaxed);
                let n = pool.len();
                let score = |i: usize| {
                    let t = pool[(start + i) % n];
                    let weight = w.as_ref().map_or(1.0, |w| w[(start + i) % n]);
                    (t.inflight() as f64 + 1.0) / weight
                };
                let best = (0..n).min_by(|a, b| score(*a).total_cmp(&score(*b))).unwrap_or(0);
                pool[(start + best) % n]
            }
            (Algorithm::WeightedRandom, w) => {
                let w = w.unwrap_or_else(|| vec![1.0; pool.len()]);
                pool[weighted_index(&w)]
            }
            (Algorithm::RoundRobin, Some(w)) => pool[weighted_index(&w)],
            (Algorithm::RoundRobin, None) => pool[self.rr.fetch_add(1, Ordering::Relaxed) % pool.len()],
        };
        Some(chosen.clone())
    }

    #[cfg(test)]
    pub fn find(&self, key: &TargetKey) -> Option<Arc<Target>> {
        self.active.load().iter().find(|t| t.key == *key).cloned()
    }
}

/// Slow start: a target that became healthy less than `duration` ago gets a share that
/// grows linearly with time, provided some target is past its slow start (a group that
/// starts cold serves with everything it has). `None` when nobody is ramping.
fn slow_start_weights(pool: &[&Arc<Target>], duration: Duration, now: Instant) -> Option<Vec<f64>> {
    if duration.is_zero() {
        return None;
    }
    let weights: Vec<f64> = pool
        .iter()
        .map(|t| match t.healthy_since() {
            Some(since) if t.is_healthy() => {
                let f = now.saturating_duration_since(since).as_secs_f64() / duration.as_secs_f64();
                f.clamp(0.01, 1.0)
            }
            _ => 1.0,
        })
        .collect();
    let ramping = weights.iter().any(|w| *w < 1.0);
    let settled = weights.iter().any(|w| *w >= 1.0);
    (ramping && settled).then_some(weights)
}

fn weighted_index(weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut r = rand::thread_rng().gen::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if r < *w {
            return i;
        }
        r -= w;
    }
    weights.len().saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use elb::attributes::TgAttributes;
    use elb::resources::HealthCheck;
    use elb::snapshot::TargetPlan;

    fn plan(targets: &[u16], attrs: &[(&str, &str)]) -> TgPlan {
        let mut attributes = TgAttributes::default();
        attributes.modify(&attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>()).unwrap();
        TgPlan {
            arn: "tg".into(),
            health_check: HealthCheck::default(),
            attributes,
            targets: targets
                .iter()
                .map(|p| TargetPlan {
                    key: TargetKey { id: "127.0.0.1".into(), port: *p },
                    addr: Some(SocketAddr::from(([127, 0, 0, 1], *p))),
                })
                .collect(),
            in_use: true,
        }
    }

    fn healthy(g: &Group, port: u16) {
        let t = g.find(&TargetKey { id: "127.0.0.1".into(), port }).unwrap();
        t.record(Outcome::Passed, 2, 2);
    }

    #[test]
    fn round_robin_over_healthy_targets_and_fail_open() {
        let g = Group::new(plan(&[], &[]), Arc::new(Board::default()));
        g.update(plan(&[1, 2, 3], &[]));
        // Nobody healthy yet: every registered target serves (fail open).
        let ports: std::collections::BTreeSet<u16> = (0..6).map(|_| g.pick(None, None).unwrap().key.port).collect();
        assert_eq!(ports.len(), 3);
        healthy(&g, 1);
        healthy(&g, 3);
        let picks: Vec<u16> = (0..4).map(|_| g.pick(None, None).unwrap().key.port).collect();
        assert!(picks.iter().all(|p| *p != 2));
        assert!(picks.contains(&1) && picks.contains(&3));
    }

    #[test]
    fn least_outstanding_requests() {
        let g = Group::new(plan(&[], &[]), Arc::new(Board::default()));
        g.update(plan(&[1, 2], &[("load_balancing.algorithm.type", "least_outstanding_requests")]));
        healthy(&g, 1);
        healthy(&g, 2);
        let busy = g.find(&TargetKey { id: "127.0.0.1".into(), port: 1 }).unwrap();
        let _guards: Vec<_> = (0..3).map(|_| busy.begin()).collect();
        for _ in 0..5 {
            assert_eq!(g.pick(None, None).unwrap().key.port, 2);
        }
    }

    #[test]
    fn draining_lasts_while_requests_are_in_flight() {
        let board = Arc::new(Board::default());
        let g = Group::new(plan(&[], &[]), board.clone());
        g.update(plan(&[1, 2], &[]));
        let t1 = g.find(&TargetKey { id: "127.0.0.1".into(), port: 1 }).unwrap();
        let guard = t1.begin();
        g.update(plan(&[2], &[]));
        assert!(t1.cancel.is_cancelled());
        let key = TargetKey { id: "127.0.0.1".into(), port: 1 };
        assert_eq!(board.group("tg")[&key].state, elb::health::State::Draining);
        // Never chosen while draining.
        for _ in 0..4 {
            assert_eq!(g.pick(None, None).unwrap().key.port, 2);
        }
        assert!(g.sweep());
        drop(guard);
        assert!(!g.sweep());
        assert!(!board.group("tg").contains_key(&key));
    }

    #[test]
    fn sticky_targets_win_while_usable_and_failed_ones_wait() {
        let g = Group::new(plan(&[], &[]), Arc::new(Board::default()));
        g.update(plan(&[1, 2], &[]));
        healthy(&g, 1);
        healthy(&g, 2);
        let k2 = TargetKey { id: "127.0.0.1".into(), port: 2 };
        for _ in 0..4 {
            assert_eq!(g.pick(Some(&k2), None).unwrap().key.port, 2);
        }
        g.find(&k2).unwrap().eject(Duration::from_secs(60));
        for _ in 0..4 {
            assert_eq!(g.pick(None, None).unwrap().key.port, 1);
        }
    }

    #[test]
    fn slow_start_ramps_linearly() {
        let a = Arc::new(Target::new(TargetKey { id: "a".into(), port: 1 }, None));
        let b = Arc::new(Target::new(TargetKey { id: "b".into(), port: 1 }, None));
        a.record(Outcome::Passed, 2, 2);
        b.record(Outcome::Passed, 2, 2);
        let now = Instant::now();
        a.lock().healthy_since = Some(now - Duration::from_secs(100));
        b.lock().healthy_since = Some(now - Duration::from_secs(15));
        let w = slow_start_weights(&[&a, &b], Duration::from_secs(30), now).unwrap();
        assert_eq!(w[0], 1.0);
        assert!((w[1] - 0.5).abs() < 0.01);
        assert!(slow_start_weights(&[&b], Duration::from_secs(30), now).is_none());
    }
}
