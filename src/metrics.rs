//! Prometheus metrics, served on /metrics by the admin server: the controller's ([`Metrics`])
//! and the agent's ([`AgentMetrics`]), each in its own registry so neither shows the other's.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

use crate::admin::Exposition;
use crate::cloud::CloudError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
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
struct FloatingIpLabel {
    floatingip: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    error: String,
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

struct Inner {
    registry: Registry,
    control: ControlMetrics,
    probe: ProbeMetrics,
}

/// Registers `metric` under `name` and hands it back for recording.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// What the controller does: moves, EC2 calls, leadership, errors and backoffs.
struct ControlMetrics {
    moves: Family<ReasonLabel, Counter>,
    move_duration: Histogram,
    unassigned_window: Histogram,
    ec2_calls: Family<ActionLabel, Counter>,
    ec2_errors: Family<ActionErrorLabel, Counter>,
    leader: Gauge,
    reconcile_errors: Family<ErrorLabel, Counter>,
    backoff_until: Family<FloatingIpLabel, Gauge>,
}

impl ControlMetrics {
    fn register(r: &mut Registry) -> Self {
        Self {
            moves: registered(r, "moves", "Address moves, by reason", Family::default()),
            // 10 ms to ~40 s: one EC2 round trip up to a slow Interface-mode move.
            move_duration: registered(
                r,
                "move_duration_seconds",
                "From the decision to move to the status write naming the new holder (after EC2 accepted the move)",
                Histogram::new(exponential_buckets(0.01, 2.0, 13)),
            ),
            // 1 ms to ~4 s: one EC2 round trip between the two calls of an IPv6 move.
            unassigned_window: registered(
                r,
                "ipv6_unassigned_window_seconds",
                "IPv6 moves: how long EC2 had the address on no ENI, between UnassignIpv6Addresses and AssignIpv6Addresses",
                Histogram::new(exponential_buckets(0.001, 2.0, 13)),
            ),
            ec2_calls: registered(r, "ec2_calls", "EC2 API calls, by action", Family::default()),
            ec2_errors: registered(
                r,
                "ec2_errors",
                "Failed EC2 API calls (after the SDK's retries), by action, kind and AWS error code",
                Family::default(),
            ),
            leader: registered(
                r,
                "leader",
                "1 while this replica holds the leader Lease",
                Gauge::default(),
            ),
            reconcile_errors: registered(
                r,
                "reconcile_errors",
                "Reconcile passes that ended in an error, by error",
                Family::default(),
            ),
            backoff_until: registered(
                r,
                "backoff_until_timestamp_seconds",
                "For each FloatingIP whose move EC2 refused in a way no retry fixes: when it is tried again (Unix time); absent when none backs off",
                Family::default(),
            ),
        }
    }
}

/// What the probe engine sees, and how long detection takes.
struct ProbeMetrics {
    probes: Family<ProbeResultLabel, Counter>,
    rtt: Family<ProtocolLabel, Histogram>,
    failures: Family<ProbeFailureLabel, Counter>,
    overruns: Counter,
    targets: Gauge,
    detection: Histogram,
    failover_detection: Histogram,
}

impl ProbeMetrics {
    fn register(r: &mut Registry) -> Self {
        // 100 us to ~6.5 s: loopback up to a slow cross-zone handshake.
        let rtt = Family::<ProtocolLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0001, 2.0, 17))) as fn() -> Histogram,
        );
        Self {
            probes: registered(
                r,
                "probes",
                "Finished probes, by protocol and result (pass or fail)",
                Family::default(),
            ),
            rtt: registered(
                r,
                "probe_rtt_seconds",
                "Round trip of passing probes (TCP handshake, UDP reply), by protocol",
                rtt,
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
        }
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
        let mut registry = Registry::with_prefix("floatip");
        let control = ControlMetrics::register(&mut registry);
        let probe = ProbeMetrics::register(&mut registry);
        Self(Arc::new(Inner {
            registry,
            control,
            probe,
        }))
    }

    pub fn moved(&self, reason: &str, seconds: f64) {
        self.0
            .control
            .moves
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
        self.0.control.move_duration.observe(seconds);
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

    pub fn set_leader(&self, leading: bool) {
        self.0.control.leader.set(i64::from(leading));
    }

    /// A FloatingIP backs off until `until` (Unix seconds), or no longer (None).
    pub fn backoff(&self, floatingip: &str, until: Option<i64>) {
        let label = FloatingIpLabel {
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

    pub fn reconcile_error(&self, label: &str) {
        self.0
            .control
            .reconcile_errors
            .get_or_create(&ErrorLabel {
                error: label.to_string(),
            })
            .inc();
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

/// The agent's metrics. Cheap to clone; every clone records into the same registry.
#[derive(Clone)]
pub struct AgentMetrics(Arc<AgentInner>);

struct AgentInner {
    registry: Registry,
    addresses: Gauge,
    reconcile_errors: Counter,
    reconcile_duration: Histogram,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("floatip_agent");
        let addresses = Gauge::default();
        registry.register(
            "addresses",
            "Floating addresses configured on this node after its last successful reconcile \
             (held, or kept for the release delay)",
            addresses.clone(),
        );
        // A plain counter, not a family: it shows 0 before the first error, so a rate() or an
        // increase() alert works from the agent's first scrape.
        let reconcile_errors = Counter::default();
        registry.register(
            "reconcile_errors",
            "Reconciles of the node that failed or left an address it holds unconfigured",
            reconcile_errors.clone(),
        );
        // 0.5 ms to ~4 s: a few netlink round trips up to a node whose kernel is struggling.
        let reconcile_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "How long one reconcile of the node took, failed ones included",
            reconcile_duration.clone(),
        );
        Self(Arc::new(AgentInner {
            registry,
            addresses,
            reconcile_errors,
            reconcile_duration,
        }))
    }

    /// One reconcile ended after `seconds`; `configured` is how many addresses the node
    /// carries now, None when the reconcile failed before it could know.
    pub fn reconciled(&self, seconds: f64, ok: bool, configured: Option<usize>) {
        self.0.reconcile_duration.observe(seconds);
        if !ok {
            self.0.reconcile_errors.inc();
        }
        if let Some(n) = configured {
            self.0.addresses.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

impl Exposition for AgentMetrics {
    fn encode(&self) -> String {
        encode(&self.0.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::ErrorKind;

    #[test]
    fn counts_show_in_the_exposition() {
        let m = Metrics::new();
        m.moved("NodeCordoned", 0.2);
        m.ec2_call("AssignPrivateIpAddresses");
        m.ec2_error(
            "AssignPrivateIpAddresses",
            &CloudError {
                action: "AssignPrivateIpAddresses",
                code: "UnauthorizedOperation".into(),
                message: String::new(),
                kind: ErrorKind::Permanent,
            },
        );
        m.set_leader(true);
        m.probe_done("TCP", Some(std::time::Duration::from_millis(2)), None);
        m.probe_done("UDP", None, Some("no_reply"));
        m.probe_overrun();
        m.set_probe_targets(7);
        m.probe_detected(1.2);
        let text = m.encode();
        for want in [
            "floatip_moves_total{reason=\"NodeCordoned\"} 1",
            "floatip_move_duration_seconds_count 1",
            "floatip_ec2_calls_total{action=\"AssignPrivateIpAddresses\"} 1",
            "floatip_ec2_errors_total{action=\"AssignPrivateIpAddresses\",kind=\"permanent\",code=\"UnauthorizedOperation\"} 1",
            "floatip_leader 1",
            "floatip_probes_total{protocol=\"TCP\",result=\"pass\"} 1",
            "floatip_probes_total{protocol=\"UDP\",result=\"fail\"} 1",
            "floatip_probe_rtt_seconds_count{protocol=\"TCP\"} 1",
            "floatip_probe_failures_total{protocol=\"UDP\",reason=\"no_reply\"} 1",
            "floatip_probe_overruns_total 1",
            "floatip_probe_targets 7",
            "floatip_probe_detection_seconds_count 1",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn agent_metrics_start_at_zero_and_count_failed_reconciles() {
        let m = AgentMetrics::new();
        let text = m.encode();
        for want in [
            "floatip_agent_addresses 0",
            "floatip_agent_reconcile_errors_total 0",
            "floatip_agent_reconcile_duration_seconds_count 0",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(
            !text.contains("floatip_moves"),
            "no controller metric: {text}"
        );
        m.reconciled(0.002, true, Some(2));
        m.reconciled(0.001, false, Some(1));
        m.reconciled(0.001, false, None);
        let text = m.encode();
        for want in [
            "floatip_agent_addresses 1",
            "floatip_agent_reconcile_errors_total 2",
            "floatip_agent_reconcile_duration_seconds_count 3",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
