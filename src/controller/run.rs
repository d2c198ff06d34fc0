//! `floatip controller`: the loop. It waits for something to change (a watch event, a health
//! transition, a resync, a holder check, a leadership change, a retry or recheck falling due),
//! then runs a pass: observe (observe.rs), plan (plan/), execute (execute/), and schedules
//! the next.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::execute::{Ctx, Outcome};
use super::failover::{self, Failovers};
use super::observe::{check_holders, observe, SubnetCache, Watches};
use super::plan::{plan, Plan};
use super::ControllerArgs;
use crate::admin::{self, Readiness};
use crate::api::MoveReason;
use crate::cloud::aws::Ec2;
use crate::leader::{self, LeaderConfig, LeaderError, Leadership};
use crate::metrics::Metrics;
use crate::placement::Decision;
use crate::probe::{Health, ProbeEngine, Transition};
use crate::retry::backoff;

/// When to plan again after a move was held back because its target stopped answering.
const RECHECK_SOON: Duration = Duration::from_millis(250);

/// How long a pass waits for more watch events after one arrives.
const SETTLE_EVENTS: Duration = Duration::from_millis(5);
/// How long a pass waits for more failures after a target goes Down. Failures that happen
/// together (a node dying under several addresses) do not need it to be moved in one call per
/// target ENI: a holder's first failed probe makes every address on it probed at once, and
/// a holder failing its check takes along every address that has started failing too. This
/// only lets probe results that finish together land together; every millisecond of it is
/// time clients wait.
const COALESCE_FAILURES: Duration = Duration::from_millis(5);

pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let metrics = Metrics::new();
    let readiness = Arc::new(Readiness::default());
    let admin_metrics = Arc::new(metrics.clone());
    admin::serve(args.admin_addr, admin_metrics, readiness.clone()).await?;
    let cloud = Ec2::from_env(args.ec2_attempts, args.ec2_backoff, metrics.clone()).await;
    let (leadership, lease_task) = leader::spawn(client.clone(), lease_config(&args))?;
    let trigger = Arc::new(Notify::new());
    // Every replica probes, so a new leader decides on warm results.
    let (engine, transitions) = ProbeEngine::new(args.probe_concurrency, metrics.clone());
    let watches = Watches::start(&client, &args, &trigger);
    announce_sync(watches.clone(), readiness.clone(), trigger.clone());
    let gate_leader = leadership.clone();
    let ctx = Ctx {
        client: client.clone(),
        cloud,
        metrics: metrics.clone(),
        events: super::events::Events::new(client.clone(), &args.identity, &args.namespace),
        gate: Arc::new(move || gate_leader.guard()),
        backoffs: Default::default(),
    };
    tracing::info!(identity = %args.identity, cluster = %args.cluster_name, "controller started");
    let controller = Controller {
        args,
        ctx,
        watches,
        engine,
        leadership,
        readiness,
        metrics,
        trigger,
        subnets: SubnetCache::default(),
        reensured_at: HashMap::new(),
        failovers: Failovers::default(),
    };
    controller.run(lease_task, transitions).await
}

fn lease_config(args: &ControllerArgs) -> LeaderConfig {
    LeaderConfig {
        namespace: args.namespace.clone(),
        lease_name: args.lease_name.clone(),
        identity: args.identity.clone(),
        lease_duration: args.lease_duration,
        renew_deadline: args.renew_deadline,
        retry_period: args.retry_period,
    }
}

/// Marks the controller ready once the watches have synced, and runs a pass then: events that
/// arrived before the sync were not acted on.
fn announce_sync(watches: Watches, readiness: Arc<Readiness>, trigger: Arc<Notify>) {
    tokio::spawn(async move {
        watches.synced().await;
        readiness.watches_synced.store(true, Ordering::Relaxed);
        tracing::info!("watches synced");
        trigger.notify_one();
    });
}

/// The running controller: what a pass reads from and acts through, and what it keeps from one
/// pass to the next.
struct Controller {
    args: ControllerArgs,
    ctx: Ctx<Ec2>,
    watches: Watches,
    engine: ProbeEngine,
    leadership: Leadership,
    readiness: Arc<Readiness>,
    metrics: Metrics,
    trigger: Arc<Notify>,
    /// EC2's subnets and ENIs, reused until a resync, a holder check or a move.
    subnets: SubnetCache,
    /// When each FloatingIP's assignment was last re-ensured because its address failed.
    reensured_at: HashMap<String, Instant>,
    /// Failovers whose address has not answered since its move.
    failovers: Failovers,
}

/// When the next pass runs, besides the next change.
struct Schedule {
    /// Passes in a row that asked for a retry: the backoff's exponent.
    attempt: u32,
    retry_at: Option<tokio::time::Instant>,
    recheck_at: Option<tokio::time::Instant>,
    /// How long the next pass waits for more of what woke it.
    window: Duration,
    /// Read all of EC2 again; kept until a pass runs, so a refresh asked for while not leading
    /// or not synced still happens.
    full_refresh: bool,
}

impl Schedule {
    fn after(&mut self, outcome: &Outcome) {
        let now = tokio::time::Instant::now();
        self.full_refresh = false;
        self.recheck_at = outcome.recheck.map(|d| now + d);
        if outcome.retry {
            self.retry_at = Some(now + backoff(self.attempt));
            self.attempt = self.attempt.saturating_add(1);
        } else {
            self.attempt = 0;
        }
    }
}

impl Controller {
    async fn run(
        mut self,
        mut lease_task: JoinHandle<Result<(), LeaderError>>,
        mut transitions: mpsc::Receiver<Transition>,
    ) -> anyhow::Result<()> {
        let mut leader_changes = self.leadership.changes();
        let mut resync = tokio::time::interval(self.args.resync);
        let mut holder_check = tokio::time::interval(self.args.holder_check);
        holder_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut next = Schedule {
            attempt: 0,
            retry_at: None,
            recheck_at: None,
            window: SETTLE_EVENTS,
            full_refresh: true,
        };
        loop {
            tokio::select! {
                done = &mut lease_task => {
                    // Without a working lease task this replica cannot know whether it may write.
                    anyhow::bail!("leader election stopped: {done:?}");
                }
                _ = sigterm.recv() => {
                    tracing::info!("SIGTERM: releasing the lease");
                    self.leadership.release().await;
                    return Ok(());
                }
                _ = self.trigger.notified() => {}
                // A health transition acts now, not at the next resync; a failure waits a
                // moment for the failures that come with it. The engine logged it; the
                // pass reads its state from the engine's snapshot.
                Some(t) = transitions.recv() => {
                    if t.to == Health::Down {
                        next.window = COALESCE_FAILURES;
                    }
                }
                _ = resync.tick() => next.full_refresh = true,
                _ = holder_check.tick() => self.check_holders().await,
                _ = leader_changes.changed() => {
                    let leading = *leader_changes.borrow_and_update();
                    // A new leader trusts nothing it read before.
                    next.full_refresh |= self.leadership_changed(leading);
                }
                _ = sleep_until(next.retry_at) => next.retry_at = None,
                _ = sleep_until(next.recheck_at) => next.recheck_at = None,
            }
            if !self.may_pass() {
                continue;
            }
            // Let a burst of watch events (or failures) land before deciding, so that what
            // happened together is decided together: one EC2 call per target ENI.
            tokio::time::sleep(std::mem::replace(&mut next.window, SETTLE_EVENTS)).await;
            while transitions.try_recv().is_ok() {}
            let outcome = self.pass(next.full_refresh).await;
            next.after(&outcome);
        }
    }

    /// Returns whether this replica now leads.
    fn leadership_changed(&mut self, leading: bool) -> bool {
        self.metrics.set_leader(leading);
        if !leading {
            self.failovers.clear();
        }
        tracing::info!(leading, "leadership changed");
        leading
    }

    /// Keeps readiness and the probe targets current; true when this replica should run a pass
    /// (synced and leading).
    fn may_pass(&self) -> bool {
        let known = self.leadership.state_known();
        self.readiness.lease_known.store(known, Ordering::Relaxed);
        if !self.readiness.watches_synced.load(Ordering::Relaxed) {
            return false;
        }
        self.engine.set_targets(self.watches.probe_targets());
        self.leadership.is_leader()
    }

    async fn check_holders(&mut self) {
        let synced = self.readiness.watches_synced.load(Ordering::Relaxed);
        if self.leadership.is_leader() && synced {
            let fips = self.watches.fips.state();
            let cluster = &self.args.cluster_name;
            check_holders(&self.ctx.cloud, &mut self.subnets, &fips, cluster).await;
        }
    }

    /// Observe, plan, execute; then what the next pass needs to know.
    async fn pass(&mut self, full_refresh: bool) -> Outcome {
        let (ctx, args) = (&self.ctx, &self.args);
        let started = Instant::now();
        let seen = observe(
            ctx,
            args,
            &self.watches,
            &self.engine,
            &mut self.subnets,
            &self.reensured_at,
            full_refresh,
        )
        .await;
        let observed = started.elapsed();
        let plans = plan(&seen.picture(args));
        let planned = started.elapsed();
        let recheck = recheck_after(&plans);
        self.note_plans(&plans);
        let failovers = self.failovers_decided(&plans, &seen.fips);
        self.metrics.set_agents_ready(&seen.agents_ready());
        let mut outcome = self
            .ctx
            .execute(&seen.fips, plans, &seen.cloud_errors)
            .await;
        self.metrics.pass(started.elapsed().as_secs_f64());
        self.failovers.moved(failovers, &outcome.arrived);
        let engine = &self.engine;
        let live = |name: &str| seen.fips.iter().any(|f| f.name_any() == name);
        let passed_after = |t: &crate::probe::Target, at| engine.passed_after(t, at);
        self.failovers.finish(&self.metrics, passed_after, live);
        tracing::debug!(
            observe_ms = observed.as_secs_f64() * 1e3,
            plan_ms = (planned - observed).as_secs_f64() * 1e3,
            execute_ms = (started.elapsed() - planned).as_secs_f64() * 1e3,
            moved = outcome.moved,
            "pass"
        );
        let now = Instant::now();
        for name in &outcome.reensured {
            self.reensured_at.insert(name.clone(), now);
        }
        if outcome.moved > 0 || outcome.ec2_mutations > 0 {
            self.subnets.forget();
        }
        outcome.retry |= seen.retry;
        // A FloatingIP backing off is tried again when its wait ends, with nothing else changing.
        let backoff_due = {
            let mut backoffs = self.ctx.backoffs.lock().expect("backoffs lock");
            backoffs.retain(|name| seen.fips.iter().any(|f| f.name_any() == name));
            backoffs.next_due()
        };
        // A failover is timed to the first passing probe of its address: look every quarter
        // second until then.
        let soon = (outcome.recheck_soon || self.failovers.waiting()).then_some(RECHECK_SOON);
        outcome.recheck = [recheck, backoff_due, soon].into_iter().flatten().min();
        outcome
    }

    /// Logs each plan; forgets a re-ensure once the address passes or moves; times a failover
    /// decision from the first failed probe of its address.
    fn note_plans(&mut self, plans: &[Plan]) {
        for p in plans {
            let Plan::Place(a) = p else { continue };
            tracing::debug!(floatingip = %a.name, decision = ?a.decision, holder = ?a.holder.as_ref().map(|h| &h.node),
                vip = ?a.vip.as_ref().map(|v| v.health), candidates = a.candidates, "planned");
            let vip_passing = a.vip.as_ref().is_some_and(|v| v.health == Health::Up);
            if vip_passing || matches!(a.decision, Decision::Move { .. }) {
                self.reensured_at.remove(&a.name);
            }
            let unhealthy = MoveReason::HolderUnhealthy;
            let unhealthy =
                matches!(&a.decision, Decision::Move { reason, .. } if *reason == unhealthy);
            if let (true, Some(v)) = (unhealthy, &a.vip) {
                if let Some(first) = self.engine.down_from(&v.target) {
                    self.metrics.failover_decided(first.elapsed().as_secs_f64());
                }
            }
        }
    }
}

impl Controller {
    /// The unplanned moves among `plans`, with when their first failed probe started.
    fn failovers_decided(
        &self,
        plans: &[Plan],
        fips: &[Arc<crate::api::FloatingIP>],
    ) -> HashMap<String, failover::Decided> {
        let nodes = self.watches.nodes.state();
        let node_ip = |name: &str| {
            let node = nodes.iter().find(|n| n.name_any() == name)?;
            crate::nodes::NodeView::from_node(node).internal_ip
        };
        let engine = &self.engine;
        let failing_from = |t: &crate::probe::Target| {
            (engine.down_from(t)).or_else(|| engine.state(t)?.failing_since)
        };
        failover::decided(plans, fips, node_ip, failing_from)
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// When to plan again though nothing changes: a held move is due when its hold ends, and an
/// address failing its check waits on graces measured in time (settle, a probe interval, the
/// re-ensure grace), so it is looked at again every quarter second until it recovers or moves.
/// Without this a held move waited for the next resync.
fn recheck_after(plans: &[Plan]) -> Option<Duration> {
    const FAILING: Duration = Duration::from_millis(250);
    plans
        .iter()
        .filter_map(|p| match p {
            Plan::Place(a) => match &a.decision {
                Decision::Hold { remaining } => Some(*remaining + Duration::from_millis(10)),
                _ if a.vip.as_ref().is_some_and(|v| v.health == Health::Down) => Some(FAILING),
                _ => None,
            },
            _ => None,
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(name: &str, decision: Decision, vip: Option<Health>) -> Plan {
        let address: std::net::IpAddr = "10.0.8.100".parse().unwrap();
        Plan::Place(Box::new(super::super::plan::Placement {
            name: name.into(),
            address,
            holder: None,
            foreign: None,
            decision,
            target: None,
            confirm_target: None,
            holder_fit: None,
            holder_health: Health::Unknown,
            doubt: None,
            verdict_pending: false,
            associate: None,
            public: None,
            candidates: 2,
            vip: vip.map(|health| super::super::plan::VipHealth {
                target: crate::probe::Target::new(
                    crate::api::Protocol::TCP,
                    "10.0.8.100:80".parse().unwrap(),
                ),
                health,
                last_failure: None,
                failing_for: Duration::ZERO,
                suspect: false,
                recovering: false,
            }),
        }))
    }

    #[test]
    fn time_bound_decisions_are_planned_again_without_another_trigger() {
        // Nothing waits on time: no recheck.
        let calm = [act("a", Decision::Stay, Some(Health::Up))];
        assert_eq!(recheck_after(&calm), None);
        // A held move is due when its hold ends.
        let held = [
            act("a", Decision::Stay, Some(Health::Up)),
            act(
                "b",
                Decision::Hold {
                    remaining: Duration::from_secs(2),
                },
                Some(Health::Down),
            ),
        ];
        assert_eq!(recheck_after(&held), Some(Duration::from_millis(2010)));
        let held_alone = [act(
            "b",
            Decision::Hold {
                remaining: Duration::from_millis(40),
            },
            None,
        )];
        assert_eq!(recheck_after(&held_alone), Some(Duration::from_millis(50)));
        // An address failing on a holder kept for now (settle, re-ensure grace): look again soon.
        let failing = [act("c", Decision::Stay, Some(Health::Down))];
        assert_eq!(recheck_after(&failing), Some(Duration::from_millis(250)));
    }
}
