//! The agent's metrics (prefix floatip_agent_), in a registry of their own so that the agent's
//! /metrics shows none of the controller's.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::{build_info, encode, registered, Metrics, RESULTS};
use crate::admin::Exposition;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabel {
    pub result: &'static str,
}

/// Cheap to clone; every clone records into the same registry.
#[derive(Clone)]
pub struct AgentMetrics(Arc<AgentInner>);

struct AgentInner {
    registry: Registry,
    addresses: Gauge,
    ready: Gauge,
    reconcile_errors: Counter,
    reconcile_duration: Histogram,
    peer_probes: Family<ResultLabel, Counter>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("floatip_agent");
        build_info(&mut r);
        let addresses = registered(
            &mut r,
            "addresses",
            "Floating addresses configured on this node after its last successful reconcile \
             (held, or kept for the release delay)",
            Gauge::default(),
        );
        let ready = registered(
            &mut r,
            "ready",
            "1 while the agent's /readyz says ready (its FloatingIP watch synced and its last \
             reconcile of the node succeeded), else 0",
            Gauge::default(),
        );
        // A plain counter, not a family: it shows 0 before the first error, so a rate() or an
        // increase() alert works from the agent's first scrape.
        let reconcile_errors = registered(
            &mut r,
            "reconcile_errors",
            "Reconciles of the node that failed or left an address it holds unconfigured",
            Counter::default(),
        );
        // 0.5 ms to ~4 s: a few netlink round trips up to a node whose kernel is struggling.
        let reconcile_duration = registered(
            &mut r,
            "reconcile_duration_seconds",
            "How long one reconcile of the node took, failed ones included",
            Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
        );
        let peer_probes: Family<ResultLabel, Counter> = registered(
            &mut r,
            "peer_probes",
            "Probes this agent made of the other nodes' holders for its peer view, by result \
             (pass or fail)",
            Family::default(),
        );
        for result in RESULTS {
            drop(peer_probes.get_or_create(&ResultLabel { result }));
        }
        Self(Arc::new(AgentInner {
            registry: r,
            addresses,
            ready,
            reconcile_errors,
            reconcile_duration,
            peer_probes,
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

    /// What /readyz answers now.
    pub fn set_ready(&self, ready: bool) {
        self.0.ready.set(i64::from(ready));
    }

    /// Metrics for the peer view's probe engine: not served themselves, but every probe it
    /// finishes counts in this agent's floatip_agent_peer_probes_total.
    pub fn peer_probe_metrics(&self) -> Metrics {
        Metrics::counting_probes_in(self.0.peer_probes.clone())
    }
}

impl Exposition for AgentMetrics {
    fn encode(&self) -> String {
        encode(&self.0.registry)
    }
}
