//! Prometheus metrics, served on /metrics by the admin server: the controller's ([`Metrics`])
//! and the agent's ([`AgentMetrics`]), each in its own registry so neither shows the other's.
//!
//! Every series whose labels come from a known, finite set (move reasons, EC2 actions,
//! protocols and results, probe failure reasons, error kinds) exists from the start at 0, so
//! that a rate() or an absent() check works on a healthy install. Series keyed by open-ended
//! values (AWS error codes, FloatingIP and node names) appear when there is something to show.

mod agent;
mod fleet;

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry};

pub use agent::AgentMetrics;
pub use fleet::{FloatingIpState, Holding};

use crate::admin::Exposition;
use crate::api::MoveReason;
use crate::cloud::CloudError;
use crate::probe::check::Failure;

/// The version this binary was built as.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit it was built from (build.rs: FLOATIP_COMMIT, else git, else "unknown").
pub const COMMIT: &str = match option_env!("FLOATIP_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

/// A probe's results, as labels.
const RESULTS: [&str; 2] = ["pass", "fail"];
/// The protocols probes use, as labels ([`crate::probe::protocol_label`]).
const PROTOCOLS: [&str; 2] = ["TCP", "UDP"];

/// Every move reason, for the moves counter to show each from the start.
const MOVE_REASONS: [MoveReason; 11] = [
    MoveReason::Initial,
    MoveReason::HolderUnhealthy,
    MoveReason::NodeNotReady,
    MoveReason::NodeCordoned,
    MoveReason::NodeTainted,
    MoveReason::NodeDeleted,
    MoveReason::Handover,
    MoveReason::Failback,
    MoveReason::Drift,
    MoveReason::AgentNotReady,
    MoveReason::NodeIneligible,
];

/// Why a reconcile step failed, as the reconcile_errors label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileError {
    /// The Lease was lost before a write.
    NotLeader,
    /// The object was written since it was read (409).
    Conflict,
    /// Any other API server error.
    Kube,
}

impl ReconcileError {
    const ALL: [ReconcileError; 3] = [Self::NotLeader, Self::Conflict, Self::Kube];

    fn label(self) -> &'static str {
        match self {
            Self::NotLeader => "not_leader",
            Self::Conflict => "conflict",
            Self::Kube => "kube",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionErrorLabel {
    action: String,
    kind: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabel {
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeResultLabel {
    protocol: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeFailureLabel {
    protocol: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabel {
    version: &'static str,
    commit: &'static str,
}

/// Registers `<prefix>_build_info{version,commit} 1`.
fn build_info(r: &mut Registry) {
    r.register(
        "build",
        "The floatip version and commit this process runs (always 1)",
        Info::new(BuildLabel {
            version: VERSION,
            commit: COMMIT,
        }),
    );
}

struct Inner {
    registry: Registry,
    control: ControlMetrics,
    probe: ProbeMetrics,
    fleet: fleet::FleetMetrics,
    /// Where else each finished probe is counted: the agent's peer probes.
    also_count: Option<Family<agent::ResultLabel, Counter>>,
}

/// Registers `metric` under `name` and hands it back for recording.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// A histogram family whose every histogram has `buckets`.
fn histograms<L>(buckets: fn() -> Histogram) -> Family<L, Histogram, fn() -> Histogram>
where
    L: Clone + std::hash::Hash + Eq,
{
    Family::new_with_constructor(buckets)
}

/// What the controller does: moves, EC2 calls, leadership, passes, errors and backoffs.
struct ControlMetrics {
    moves: Family<ReasonLabel, Counter>,
    move_duration: Histogram,
    failover_duration: Histogram,
    unassigned_window: Histogram,
    ec2_calls: Family<ActionLabel, Counter>,
    ec2_call_duration: Family<ActionLabel, Histogram, fn() -> Histogram>,
    ec2_errors: Family<ActionErrorLabel, Counter>,
    leader: Gauge,
    pass_duration: Histogram,
    reconcile_errors: Family<ErrorLabel, Counter>,
    backoff_until: Family<fleet::FloatingIpLabel, Gauge>,
}

impl ControlMetrics {
    fn register(r: &mut Registry) -> Self {
        let m = Self {
            moves: registered(r, "moves", "Address moves, by reason", Family::default()),
            // 10 ms to ~40 s: one EC2 round trip up to a slow Interface-mode move.
            move_duration: registered(
                r,
                "move_duration_seconds",
                "From the decision to move to the status write naming the new holder (after EC2 accepted the move)",
                Histogram::new(exponential_buckets(0.01, 2.0, 13)),
            ),
            // 50 ms to ~51 s: a fast detection and one EC2 call up to a slow cross-zone failover.
            failover_duration: registered(
                r,
                "failover_duration_seconds",
                "Unplanned moves (the holder or the address failed its health check): from the first failed probe of the address or of its holder to the controller's first passing probe of the address after the move",
                Histogram::new(exponential_buckets(0.05, 2.0, 11)),
            ),
            // 1 ms to ~4 s: one EC2 round trip between the two calls of an IPv6 move.
            unassigned_window: registered(
                r,
                "ipv6_unassigned_window_seconds",
                "IPv6 moves: how long EC2 had the address on no ENI, between UnassignIpv6Addresses and AssignIpv6Addresses",
                Histogram::new(exponential_buckets(0.001, 2.0, 13)),
            ),
            ec2_calls: registered(r, "ec2_calls", "EC2 API calls, by action", Family::default()),
            // 5 ms to ~41 s: a warm connection in the same region up to the SDK retrying a
            // throttled call.
            ec2_call_duration: registered(
                r,
                "ec2_call_duration_seconds",
                "How long each EC2 API call took (the SDK's retries included, failed calls too), by action",
                histograms(|| Histogram::new(exponential_buckets(0.005, 2.0, 14))),
            ),
            ec2_errors: registered(
                r,
                "ec2_errors",
                "Failed EC2 API calls (after the SDK's retries), by action, kind and AWS error code; a series appears at the first error of its kind",
                Family::default(),
            ),
            leader: registered(
                r,
                "leader",
                "1 while this replica holds the leader Lease",
                Gauge::default(),
            ),
            // 1 ms to ~16 s: a pass from the caches up to one that reads EC2 and moves.
            pass_duration: registered(
                r,
                "pass_duration_seconds",
                "One reconcile pass of the leader: observe, plan and execute",
                Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            ),
            reconcile_errors: registered(
                r,
                "reconcile_errors",
                "Reconcile steps that ended in an error, by error (not_leader, conflict, kube)",
                Family::default(),
            ),
            backoff_until: registered(
                r,
                "backoff_until_timestamp_seconds",
                "For each FloatingIP whose move EC2 refused in a way no retry fixes: when it is tried again (Unix time); absent when none backs off",
                Family::default(),
            ),
        };
        for reason in MOVE_REASONS {
            drop(m.moves.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            }));
        }
        for action in crate::cloud::aws::ACTIONS {
            let label = ActionLabel {
                action: action.to_string(),
            };
            drop(m.ec2_calls.get_or_create(&label));
            drop(m.ec2_call_duration.get_or_create(&label));
        }
        for e in ReconcileError::ALL {
            drop(
                m.reconcile_errors
                    .get_or_create(&ErrorLabel { error: e.label() }),
            );
        }
        m
    }
}

/// What the probe engine sees, and how long detection takes.
struct ProbeMetrics {
    probes: Family<ProbeResultLabel, Counter>,
    rtt: Family<ProtocolLabel, Histogram, fn() -> Histogram>,
    failures: Family<ProbeFailureLabel, Counter>,
    overruns: Counter,
    targets: Gauge,
    detection: Histogram,
    failover_detection: Histogram,
}

impl ProbeMetrics {
    fn register(r: &mut Registry) -> Self {
        let m = Self {
            probes: registered(
                r,
                "probes",
                "Finished probes, by protocol and result (pass or fail)",
                Family::default(),
            ),
            // 100 us to ~6.5 s: loopback up to a slow cross-zone handshake.
            rtt: registered(
                r,
                "probe_rtt_seconds",
                "Round trip of passing probes (TCP handshake, UDP reply), by protocol",
                histograms(|| Histogram::new(exponential_buckets(0.0001, 2.0, 17))),
            ),
            failures: registered(
                r,
                "probe_failures",
                "Failed probes, by protocol and reason",
                Family::default(),
            ),
            overruns: registered(
                r,
                "probe_overruns",
                "Probes skipped because the target's previous probe was still queued or running \
                 (the engine is at its concurrency limit)",
                Counter::default(),
            ),
            targets: registered(
                r,
                "probe_targets",
                "Targets the probe engine checks",
                Gauge::default(),
            ),
            // 50 ms to ~49 s around the default ~1-1.75 s.
            detection: registered(
                r,
                "probe_detection_seconds",
                "From the start of the first failed probe to the target going from Up to Down",
                Histogram::new(exponential_buckets(0.05, 1.5, 18)),
            ),
            failover_detection: registered(
                r,
                "failover_detection_seconds",
                "From the first failed probe of an address to the decision to move it",
                Histogram::new(exponential_buckets(0.05, 2.0, 10)),
            ),
        };
        for protocol in PROTOCOLS {
            for result in RESULTS {
                drop(
                    m.probes
                        .get_or_create(&ProbeResultLabel { protocol, result }),
                );
            }
            drop(m.rtt.get_or_create(&ProtocolLabel { protocol }));
            for f in Failure::ALL {
                let reason = f.as_str();
                drop(
                    m.failures
                        .get_or_create(&ProbeFailureLabel { protocol, reason }),
                );
            }
        }
        m
    }
}

/// Cheap to clone; every clone records into the same registry.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::with(None)
    }

    /// Unserved metrics whose finished probes are also counted in `results`.
    fn counting_probes_in(results: Family<agent::ResultLabel, Counter>) -> Self {
        Self::with(Some(results))
    }

    fn with(also_count: Option<Family<agent::ResultLabel, Counter>>) -> Self {
        let mut registry = Registry::with_prefix("floatip");
        build_info(&mut registry);
        let control = ControlMetrics::register(&mut registry);
        let probe = ProbeMetrics::register(&mut registry);
        let fleet = fleet::FleetMetrics::register(&mut registry);
        Self(Arc::new(Inner {
            registry,
            control,
            probe,
            fleet,
            also_count,
        }))
    }

    pub fn moved(&self, reason: MoveReason, seconds: f64) {
        let reason = reason.as_str();
        self.0
            .control
            .moves
            .get_or_create(&ReasonLabel { reason })
            .inc();
        self.0.control.move_duration.observe(seconds);
    }

    /// An unplanned move ended `seconds` after the first failed probe that led to it.
    pub fn failover(&self, seconds: f64) {
        self.0.control.failover_duration.observe(seconds);
    }

    pub fn unassigned_window(&self, seconds: f64) {
        self.0.control.unassigned_window.observe(seconds);
    }

    pub fn ec2_call(&self, action: &str) {
        self.0
            .control
            .ec2_calls
            .get_or_create(&ActionLabel {
                action: action.to_string(),
            })
            .inc();
    }

    /// An EC2 call of `action` answered (or failed) after `seconds`.
    pub fn ec2_call_took(&self, action: &str, seconds: f64) {
        self.0
            .control
            .ec2_call_duration
            .get_or_create(&ActionLabel {
                action: action.to_string(),
            })
            .observe(seconds);
    }

    pub fn ec2_error(&self, action: &str, err: &CloudError) {
        self.0
            .control
            .ec2_errors
            .get_or_create(&ActionErrorLabel {
                action: action.to_string(),
                kind: err.metric_label().to_string(),
                code: err.code.clone(),
            })
            .inc();
    }

    /// Leadership changed. A replica that stops leading drops the series only the leader
    /// exports, so that they come from one replica at a time.
    pub fn set_leader(&self, leading: bool) {
        self.0.control.leader.set(i64::from(leading));
        if !leading {
            self.0.fleet.clear();
            // A backoff is the leader's: a replica that no longer leads does not act on it.
            self.0.control.backoff_until.clear();
        }
    }

    /// One pass (observe, plan, execute) took `seconds`.
    pub fn pass(&self, seconds: f64) {
        self.0.control.pass_duration.observe(seconds);
    }

    /// What FloatingIP `name`'s status says now (the leader only).
    pub fn floatingip(&self, name: &str, state: &FloatingIpState) {
        self.0.fleet.set(name, state);
    }

    /// What FloatingIP `name`'s status says as first read (the leader only): ignored once
    /// the FloatingIP has series.
    pub fn floatingip_seen(&self, name: &str, state: &FloatingIpState) {
        self.0.fleet.first_sight(name, state);
    }

    /// FloatingIP `name`'s address moved (the leader only).
    pub fn floatingip_moved(&self, name: &str) {
        self.0.fleet.moved(name);
    }

    /// Drops the series of every FloatingIP for which `live` is false (deleted).
    pub fn retain_floatingips(&self, live: impl Fn(&str) -> bool) {
        self.0.fleet.retain(live);
    }

    /// Whether each node some FloatingIP may use has a ready agent (the leader only); the
    /// series of nodes not listed go.
    pub fn set_agents_ready(&self, nodes: &std::collections::BTreeMap<String, bool>) {
        self.0.fleet.set_agents(nodes);
    }

    /// A FloatingIP backs off until `until` (Unix seconds), or no longer (None).
    pub fn backoff(&self, floatingip: &str, until: Option<i64>) {
        let label = fleet::FloatingIpLabel {
            floatingip: floatingip.to_string(),
        };
        match until {
            Some(t) => {
                self.0.control.backoff_until.get_or_create(&label).set(t);
            }
            None => {
                self.0.control.backoff_until.remove(&label);
            }
        }
    }

    pub fn reconcile_error(&self, e: ReconcileError) {
        let label = ErrorLabel { error: e.label() };
        self.0.control.reconcile_errors.get_or_create(&label).inc();
    }

    /// One finished probe: its round trip when it passed with one, its failure reason when
    /// it failed.
    pub fn probe_done(
        &self,
        protocol: &'static str,
        rtt: Option<std::time::Duration>,
        failure: Option<&'static str>,
    ) {
        let result = if failure.is_some() { "fail" } else { "pass" };
        self.0
            .probe
            .probes
            .get_or_create(&ProbeResultLabel { protocol, result })
            .inc();
        if let Some(also) = &self.0.also_count {
            also.get_or_create(&agent::ResultLabel { result }).inc();
        }
        if let Some(rtt) = rtt {
            self.0
                .probe
                .rtt
                .get_or_create(&ProtocolLabel { protocol })
                .observe(rtt.as_secs_f64());
        }
        if let Some(reason) = failure {
            self.0
                .probe
                .failures
                .get_or_create(&ProbeFailureLabel { protocol, reason })
                .inc();
        }
    }

    pub fn probe_overrun(&self) {
        self.0.probe.overruns.inc();
    }

    pub fn set_probe_targets(&self, n: usize) {
        self.0
            .probe
            .targets
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A move was decided `seconds` after the first failed probe of the address that caused it.
    pub fn failover_decided(&self, seconds: f64) {
        self.0.probe.failover_detection.observe(seconds);
    }

    /// A target went from Up to Down `seconds` after its first failed probe started.
    pub fn probe_detected(&self, seconds: f64) {
        self.0.probe.detection.observe(seconds);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        encode(&self.0.registry)
    }

    /// The registry, for other modules to register their metrics in.
    pub fn with_registry<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        f(&self.0.registry)
    }
}

impl Exposition for Metrics {
    fn encode(&self) -> String {
        Metrics::encode(self)
    }
}

fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests;
