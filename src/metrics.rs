//! Prometheus metrics, served on /metrics by the admin server.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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
struct ErrorLabel {
    error: String,
}

struct Inner {
    registry: Registry,
    moves: Family<ReasonLabel, Counter>,
    move_duration: Histogram,
    ec2_calls: Family<ActionLabel, Counter>,
    ec2_errors: Family<ActionErrorLabel, Counter>,
    leader: Gauge,
    reconcile_errors: Family<ErrorLabel, Counter>,
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
        let moves = Family::<ReasonLabel, Counter>::default();
        registry.register("moves", "Address moves, by reason", moves.clone());
        // 10 ms to ~40 s: one EC2 round trip up to a slow Interface-mode move.
        let move_duration = Histogram::new(exponential_buckets(0.01, 2.0, 13));
        registry.register(
            "move_duration_seconds",
            "From the decision to move to EC2 confirming the new holder",
            move_duration.clone(),
        );
        let ec2_calls = Family::<ActionLabel, Counter>::default();
        registry.register("ec2_calls", "EC2 API calls, by action", ec2_calls.clone());
        let ec2_errors = Family::<ActionErrorLabel, Counter>::default();
        registry.register(
            "ec2_errors",
            "Failed EC2 API calls (after the SDK's retries), by action, kind and AWS error code",
            ec2_errors.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        let reconcile_errors = Family::<ErrorLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconcile passes that ended in an error, by error",
            reconcile_errors.clone(),
        );
        Self(Arc::new(Inner {
            registry,
            moves,
            move_duration,
            ec2_calls,
            ec2_errors,
            leader,
            reconcile_errors,
        }))
    }

    pub fn moved(&self, reason: &str, seconds: f64) {
        self.0
            .moves
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
        self.0.move_duration.observe(seconds);
    }

    pub fn ec2_call(&self, action: &str) {
        self.0
            .ec2_calls
            .get_or_create(&ActionLabel {
                action: action.to_string(),
            })
            .inc();
    }

    pub fn ec2_error(&self, action: &str, err: &CloudError) {
        self.0
            .ec2_errors
            .get_or_create(&ActionErrorLabel {
                action: action.to_string(),
                kind: err.metric_label().to_string(),
                code: err.code.clone(),
            })
            .inc();
    }

    pub fn set_leader(&self, leading: bool) {
        self.0.leader.set(i64::from(leading));
    }

    pub fn reconcile_error(&self, label: &str) {
        self.0
            .reconcile_errors
            .get_or_create(&ErrorLabel {
                error: label.to_string(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.0.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The registry, for other modules to register their metrics in.
    pub fn with_registry<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        f(&self.0.registry)
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
        let text = m.encode();
        for want in [
            "floatip_moves_total{reason=\"NodeCordoned\"} 1",
            "floatip_move_duration_seconds_count 1",
            "floatip_ec2_calls_total{action=\"AssignPrivateIpAddresses\"} 1",
            "floatip_ec2_errors_total{action=\"AssignPrivateIpAddresses\",kind=\"permanent\",code=\"UnauthorizedOperation\"} 1",
            "floatip_leader 1",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
