//! The engine: a target table shared with the caller, and one scheduler task that fires each
//! target's probe on time, runs probes concurrently up to a bound, and reports transitions.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot, Notify};

use super::check::{self, Failure};
use super::machine::{Health, Machine};
use super::{protocol_label, ProbeSpec, Target, TargetState, Transition};
use crate::metrics::Metrics;

/// Passing probes remembered per target ([`ProbeEngine::passed_after`]): the controller looks
/// every quarter second, and no target is probed eight times as often.
const PASSES_KEPT: usize = 8;

/// Transitions the channel buffers before the engine holds further ones back (in memory, in
/// order) until the receiver catches up. Probing never waits for the receiver.
const CHANNEL_CAPACITY: usize = 256;

/// Probes a set of targets and reports their health. Cheap to clone; the scheduler task
/// stops when the last clone is dropped.
#[derive(Clone)]
pub struct ProbeEngine {
    shared: Arc<Shared>,
    metrics: Metrics,
    _stop: Arc<oneshot::Sender<()>>,
}

struct Shared {
    table: Mutex<Table>,
    /// Wakes the scheduler when set_targets armed new timer chains.
    wake: Notify,
}

/// The truth about every target, read by `state` and written by `set_targets` and the
/// scheduler. Never held across an await.
#[derive(Default)]
struct Table {
    slots: HashMap<Target, Slot>,
    /// The live timer chain of each target. A chain's id changes when its target is removed
    /// or its interval changes; timers and probe results of an old id are ignored.
    ids: HashMap<u64, Target>,
    next_id: u64,
    /// Chains set_targets created that the scheduler has not put on its heap yet.
    to_arm: Vec<(u64, Duration)>,
}

struct Slot {
    id: u64,
    spec: ProbeSpec,
    machine: Machine,
    since: Instant,
    last_failure: Option<String>,
    /// While Down: when the first failed probe of the run that made it Down started, so a
    /// decision can be timed from the first sign of failure (the failover metric).
    down_from: Option<Instant>,
    /// When the latest passing probes started and finished, oldest first: when an address
    /// first answered after a move (the failover metric).
    passes: VecDeque<(Instant, Instant)>,
    /// A probe is queued or running: the next tick skips rather than stacking a second one.
    busy: bool,
    /// That probe is one started out of turn (a confirmation): a tick it overlaps is not an
    /// overrun.
    confirming: bool,
    /// Probes out of turn left until the next tick: a target whose results alternate is not
    /// probed back to back for ever.
    budget: u32,
}

impl ProbeEngine {
    /// Starts the scheduler on the current tokio runtime; at most `max_concurrency` probes run
    /// at once (0 counts as 1). Transitions arrive on the returned receiver; when it is
    /// dropped the engine keeps probing and [`ProbeEngine::state`] stays current. The state
    /// ([`ProbeEngine::snapshot`], [`ProbeEngine::down_from`]) is the truth; a transition is
    /// news that it changed (the controller's loop wakes on it).
    pub fn new(max_concurrency: usize, metrics: Metrics) -> (Self, mpsc::Receiver<Transition>) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (stop_tx, stop_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            table: Mutex::new(Table::default()),
            wake: Notify::new(),
        });
        let scheduler = Scheduler {
            shared: shared.clone(),
            metrics: metrics.clone(),
            max_concurrency: max_concurrency.max(1),
            timers: BinaryHeap::new(),
            backlog: VecDeque::new(),
            outbox: VecDeque::new(),
            tx: Some(tx),
        };
        tokio::spawn(scheduler.run(stop_rx));
        let engine = Self {
            shared,
            metrics,
            _stop: Arc::new(stop_tx),
        };
        (engine, rx)
    }

    /// Replaces the target set. New targets start Unknown and are first probed at a random
    /// point within their interval; targets not in `targets` stop being probed and are
    /// forgotten; a target whose spec changed keeps its health and uses the new spec from its
    /// next probe (a changed interval restarts its timer). Calling it again with the same map
    /// changes nothing. Merge specs of a target named twice first ([`super::merge_targets`]).
    pub fn set_targets(&self, targets: HashMap<Target, ProbeSpec>) {
        let now = Instant::now();
        let mut guard = self.shared.lock();
        let table = &mut *guard;
        let ids = &mut table.ids;
        table.slots.retain(|target, slot| {
            let keep = targets.contains_key(target);
            if !keep {
                ids.remove(&slot.id);
            }
            keep
        });
        let mut armed = false;
        for (target, spec) in targets {
            match table.slots.get_mut(&target) {
                Some(slot) if slot.spec == spec => {}
                Some(slot) if slot.spec.interval == spec.interval => slot.spec = spec,
                Some(slot) => {
                    table.ids.remove(&slot.id);
                    slot.id = table.next_id;
                    slot.busy = false;
                    table.to_arm.push((slot.id, spec.interval));
                    table.ids.insert(slot.id, target);
                    table.next_id += 1;
                    slot.spec = spec;
                    armed = true;
                }
                None => {
                    let id = table.next_id;
                    table.next_id += 1;
                    table.to_arm.push((id, spec.interval));
                    table.ids.insert(id, target);
                    let budget = confirmation_budget(&spec);
                    table.slots.insert(
                        target,
                        Slot {
                            id,
                            spec,
                            machine: Machine::new(),
                            since: now,
                            last_failure: None,
                            down_from: None,
                            passes: VecDeque::new(),
                            busy: false,
                            confirming: false,
                            budget,
                        },
                    );
                    armed = true;
                }
            }
        }
        let count = table.slots.len();
        drop(guard);
        self.metrics.set_probe_targets(count);
        if armed {
            self.shared.wake.notify_one();
        }
    }

    /// The health of one target, None when it is not in the set.
    pub fn state(&self, target: &Target) -> Option<TargetState> {
        self.shared.lock().slots.get(target).map(Slot::state)
    }

    /// While `target` is Down: when the first failed probe of the run that made it Down
    /// started. None when it is not Down or not in the set.
    pub fn down_from(&self, target: &Target) -> Option<Instant> {
        self.shared.lock().slots.get(target)?.down_from
    }

    /// When the first passing probe of `target` that started at or after `after` finished,
    /// among its latest [`PASSES_KEPT`]; None when there is none (or no such target).
    pub fn passed_after(&self, target: &Target, after: Instant) -> Option<Instant> {
        let table = self.shared.lock();
        let passes = &table.slots.get(target)?.passes;
        passes.iter().find(|(s, _)| *s >= after).map(|(_, f)| *f)
    }

    /// The health of every target.
    pub fn snapshot(&self) -> HashMap<Target, TargetState> {
        self.shared
            .lock()
            .slots
            .iter()
            .map(|(t, s)| (*t, s.state()))
            .collect()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic elsewhere while holding the lock leaves the table consistent (every update
        // is a plain field write), so keep going with it.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Slot {
    /// The job of a probe of this slot, which is now busy; `confirming` when out of turn.
    fn start(&mut self, id: u64, target: Target, confirming: bool) -> Job {
        self.busy = true;
        self.confirming = confirming;
        Job {
            id,
            target,
            timeout: self.spec.timeout,
            payload: self.spec.udp_payload.clone(),
            reply_required: self.spec.reply_required,
        }
    }

    fn state(&self) -> TargetState {
        TargetState {
            state: self.machine.health(),
            last_failure: self.last_failure.clone(),
            since: self.since,
            failing_since: self.machine.failing_since(),
        }
    }
}

/// A timer on the heap: fire chain `id` at `at`. Ordered by time, then id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: Instant,
    id: u64,
}

/// What a probe needs, copied out of the table when it is due.
struct Job {
    id: u64,
    target: Target,
    timeout: Duration,
    payload: Bytes,
    reply_required: bool,
}

struct Done {
    id: u64,
    target: Target,
    started: Instant,
    finished: Instant,
    result: Result<check::Pass, Failure>,
}

struct Scheduler {
    shared: Arc<Shared>,
    metrics: Metrics,
    max_concurrency: usize,
    timers: BinaryHeap<Reverse<Due>>,
    /// Jobs due while `max_concurrency` probes were running, oldest first.
    backlog: VecDeque<Job>,
    /// Transitions not yet accepted by the channel.
    outbox: VecDeque<Transition>,
    /// None once the receiver is gone.
    tx: Option<mpsc::Sender<Transition>>,
}

impl Scheduler {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut running = FuturesUnordered::new();
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        loop {
            // Results first: a probe that has finished must not count as still running when
            // its target's next tick is handled below.
            while let Some(Some(done)) = running.next().now_or_never() {
                self.apply(done);
            }
            let now = Instant::now();
            while let Some(Reverse(due)) = self.timers.peek().copied() {
                if due.at > now {
                    break;
                }
                self.timers.pop();
                if let Some(job) = self.fire(due, now) {
                    self.backlog.push_back(job);
                }
            }
            while running.len() < self.max_concurrency {
                let Some(job) = self.backlog.pop_front() else {
                    break;
                };
                // Removed while it waited?
                if self.shared.lock().ids.contains_key(&job.id) {
                    running.push(run_job(job));
                }
            }
            self.flush();
            if let Some(Reverse(next)) = self.timers.peek() {
                sleep.as_mut().reset(next.at.into());
            }
            let has_timer = !self.timers.is_empty();
            let sending = !self.outbox.is_empty() && self.tx.is_some();
            tokio::select! {
                biased;
                _ = &mut stop => return,
                Some(done) = running.next(), if !running.is_empty() => self.apply(done),
                _ = self.shared.wake.notified() => self.arm_new(),
                _ = &mut sleep, if has_timer => {}
                sent = reserve(self.tx.clone()), if sending => match sent {
                    Some(permit) => {
                        if let Some(t) = self.outbox.pop_front() {
                            permit.send(t);
                        }
                    }
                    None => self.receiver_gone(),
                },
            }
        }
    }

    /// Puts the chains set_targets created on the heap, each first at a random point within
    /// its interval so that targets added together spread out.
    fn arm_new(&mut self) {
        let to_arm = std::mem::take(&mut self.shared.lock().to_arm);
        let now = Instant::now();
        for (id, interval) in to_arm {
            self.timers.push(Reverse(Due {
                at: now + jitter(interval),
                id,
            }));
        }
    }

    /// Handles one due timer: re-arms the chain and returns the probe to start, if any.
    fn fire(&mut self, due: Due, now: Instant) -> Option<Job> {
        let mut table = self.shared.lock();
        let target = *table.ids.get(&due.id)?;
        let slot = table.slots.get_mut(&target)?;
        self.timers.push(Reverse(Due {
            at: next_tick(due.at, slot.spec.interval, now),
            id: due.id,
        }));
        slot.budget = confirmation_budget(&slot.spec);
        if slot.busy {
            if !slot.confirming {
                self.metrics.probe_overrun();
            }
            return None;
        }
        Some(slot.start(due.id, target, false))
    }

    /// Feeds a probe result to its target's state machine; queues a transition if it made one,
    /// and the confirmations it calls for ([`confirmations`]).
    fn apply(&mut self, done: Done) {
        let failure = done.result.err();
        self.metrics.probe_done(
            protocol_label(done.target.protocol),
            done.result.ok().flatten(),
            failure.map(Failure::as_str),
        );
        let mut table = self.shared.lock();
        if table.ids.get(&done.id) != Some(&done.target) {
            return;
        }
        let Some(slot) = table.slots.get_mut(&done.target) else {
            return;
        };
        slot.busy = false;
        slot.confirming = false;
        if failure.is_none() {
            if slot.passes.len() == PASSES_KEPT {
                slot.passes.pop_front();
            }
            slot.passes.push_back((done.started, done.finished));
        }
        if let Some(f) = failure {
            if slot.last_failure.as_deref() != Some(f.as_str()) {
                slot.last_failure = Some(f.as_str().to_string());
            }
        }
        let step = slot.machine.record(
            failure.is_none(),
            done.started,
            slot.spec.failure_threshold,
            slot.spec.success_threshold,
        );
        let jobs = confirmations(&mut table, done.id, done.target);
        self.backlog.extend(jobs);
        let Some(step) = step else {
            return;
        };
        let Some(slot) = table.slots.get_mut(&done.target) else {
            return;
        };
        slot.since = done.finished;
        slot.down_from = step.first_failure_at.filter(|_| step.to == Health::Down);
        drop(table);
        if let (Health::Up, Health::Down, Some(first)) = (step.from, step.to, step.first_failure_at)
        {
            self.metrics
                .probe_detected(done.finished.duration_since(first).as_secs_f64());
        }
        // How long it had been failing: where a timeline puts its first failed probe.
        let failing_ms = step
            .first_failure_at
            .filter(|_| step.to == Health::Down)
            .map(|first| done.finished.duration_since(first).as_millis() as u64);
        tracing::info!(target = %done.target, from = %step.from, to = %step.to,
            reason = failure.map(Failure::as_str), failing_ms, "probe target changed health");
        if self.tx.is_some() {
            self.outbox.push_back(Transition {
                target: done.target,
                from: step.from,
                to: step.to,
                at: done.finished,
                reason: failure.map(|f| f.as_str().to_string()),
                first_failure_at: step.first_failure_at,
            });
        }
    }

    /// Hands queued transitions to the channel while it has room.
    fn flush(&mut self) {
        while let (Some(tx), Some(t)) = (&self.tx, self.outbox.pop_front()) {
            match tx.try_send(t) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(t)) => {
                    self.outbox.push_front(t);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => self.receiver_gone(),
            }
        }
    }

    fn receiver_gone(&mut self) {
        self.tx = None;
        self.outbox.clear();
    }
}

/// The probes a result calls for at once, rather than at their next tick:
/// - the same target again while its latest result has not settled its health (a failure
///   while not Down, a pass while not Up), so a failure is confirmed in the time the probes
///   take instead of `failure_threshold` intervals;
/// - its linked targets when a run of failures just began (an address and the node holding
///   it), so the other side's verdict comes with this one.
///
/// Targets with a probe running already are left to it.
fn confirmations(table: &mut Table, id: u64, target: Target) -> Vec<Job> {
    let mut jobs = Vec::new();
    let Some(slot) = table.slots.get_mut(&target) else {
        return jobs;
    };
    let linked = if slot.machine.first_failure() && slot.machine.health() != Health::Down {
        slot.spec.linked.clone()
    } else {
        Vec::new()
    };
    if slot.machine.undecided() && slot.budget > 0 {
        slot.budget -= 1;
        jobs.push(slot.start(id, target, true));
    }
    for other in linked {
        if let Some(slot) = (table.slots.get_mut(&other)).filter(|s| !s.busy && s.budget > 0) {
            slot.budget -= 1;
            jobs.push(slot.start(slot.id, other, true));
        }
    }
    jobs
}

/// Probes out of turn a target may have between two ticks: enough to reach either threshold
/// from its first result.
fn confirmation_budget(spec: &ProbeSpec) -> u32 {
    spec.failure_threshold.max(spec.success_threshold).max(1)
}

/// Waits for room in the channel; None when the receiver is gone. Owned, so that the
/// scheduler is not borrowed while it waits.
async fn reserve(tx: Option<mpsc::Sender<Transition>>) -> Option<mpsc::OwnedPermit<Transition>> {
    match tx {
        Some(tx) => tx.reserve_owned().await.ok(),
        None => std::future::pending().await,
    }
}

async fn run_job(job: Job) -> Done {
    let started = Instant::now();
    let result = check::probe(
        job.target.protocol,
        job.target.addr,
        job.timeout,
        &job.payload,
        job.reply_required,
    )
    .await;
    Done {
        id: job.id,
        target: job.target,
        started,
        finished: Instant::now(),
        result,
    }
}

/// A uniformly random offset in [0, interval).
fn jitter(interval: Duration) -> Duration {
    let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(fastrand::u64(0..nanos))
}

/// The tick after `due`: fixed-rate, so a chain keeps its phase and targets stay spread out;
/// but a chain that fell more than an interval behind restarts from now instead of firing a
/// burst of catch-up probes.
fn next_tick(due: Instant, interval: Duration, now: Instant) -> Instant {
    let next = due + interval;
    if next > now {
        next
    } else {
        now + interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_keep_their_phase_when_on_time() {
        let t0 = Instant::now();
        let i = Duration::from_millis(200);
        // Fired 3 ms late: the next tick is still due + interval.
        assert_eq!(next_tick(t0, i, t0 + Duration::from_millis(3)), t0 + i);
    }

    #[test]
    fn ticks_that_fell_behind_restart_from_now_without_a_burst() {
        let t0 = Instant::now();
        let i = Duration::from_millis(200);
        let late = t0 + Duration::from_millis(650);
        assert_eq!(next_tick(t0, i, late), late + i);
    }

    #[test]
    fn jitter_stays_within_the_interval_and_spreads_out() {
        let i = Duration::from_millis(500);
        let offsets: Vec<Duration> = (0..1000).map(|_| jitter(i)).collect();
        assert!(offsets.iter().all(|o| *o < i));
        // 1,000 uniform draws: each fifth of the interval gets about 200.
        let mut buckets = [0u32; 5];
        for o in &offsets {
            buckets[(o.as_millis() / 100) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|b| (100..=300).contains(b)),
            "{buckets:?}"
        );
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn timers_pop_in_time_order() {
        let t0 = Instant::now();
        let mut heap = BinaryHeap::new();
        for (ms, id) in [(30, 1), (10, 2), (20, 3), (10, 0)] {
            heap.push(Reverse(Due {
                at: t0 + Duration::from_millis(ms),
                id,
            }));
        }
        let order: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|Reverse(d)| d.id)).collect();
        assert_eq!(order, vec![0, 2, 3, 1]);
    }
}
