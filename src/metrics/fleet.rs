//! The leader's series about what it manages: one set per FloatingIP (Ready, Healthy, holder,
//! moves) and one per candidate node (its agent ready or not). Only the leader sets them, and
//! it drops them all when it stops leading, so that exactly one replica exports them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::registered;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct FloatingIpLabel {
    pub floatingip: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HolderLabel {
    floatingip: String,
    node: String,
    address: String,
    mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

/// What one FloatingIP's status says, as the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloatingIpState {
    /// The Ready condition is True.
    pub ready: bool,
    /// The Healthy condition is True.
    pub healthy: bool,
    pub holder: Option<Holding>,
}

/// Who holds a FloatingIP's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub node: String,
    pub address: String,
    pub mode: String,
}

pub(super) struct FleetMetrics {
    ready: Family<FloatingIpLabel, Gauge>,
    healthy: Family<FloatingIpLabel, Gauge>,
    holder: Family<HolderLabel, Gauge>,
    moves: Family<FloatingIpLabel, Counter>,
    agent_ready: Family<NodeLabel, Gauge>,
    /// Each FloatingIP with series, and the holder series it has: a family cannot be listed,
    /// and the old holder series must go when the holder changes.
    known: Mutex<HashMap<String, Option<HolderLabel>>>,
    /// The nodes with an agent_ready series.
    nodes: Mutex<Vec<String>>,
}

impl FleetMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        Self {
            ready: registered(
                r,
                "floatingip_ready",
                "1 while the FloatingIP's Ready condition is True, else 0; exported by the leader only",
                Family::default(),
            ),
            healthy: registered(
                r,
                "floatingip_healthy",
                "1 while the FloatingIP's Healthy condition is True (its address answers its health check), else 0; exported by the leader only",
                Family::default(),
            ),
            holder: registered(
                r,
                "floatingip_holder_info",
                "1 for the node holding the FloatingIP's address (one series per held FloatingIP, none while nobody holds it); exported by the leader only",
                Family::default(),
            ),
            moves: registered(
                r,
                "floatingip_moves",
                "Moves of the FloatingIP's address since this replica became leader (0 from when it first saw the FloatingIP); exported by the leader only",
                Family::default(),
            ),
            agent_ready: registered(
                r,
                "node_agent_ready",
                "For each node some FloatingIP may use: 1 while its floatip agent pod is Ready, else 0; exported by the leader only",
                Family::default(),
            ),
            known: Mutex::default(),
            nodes: Mutex::default(),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<HolderLabel>>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn set(&self, name: &str, state: &FloatingIpState) {
        let label = FloatingIpLabel {
            floatingip: name.to_string(),
        };
        self.ready.get_or_create(&label).set(i64::from(state.ready));
        self.healthy
            .get_or_create(&label)
            .set(i64::from(state.healthy));
        // Created at 0 the first time, so an increase() sees the first move.
        drop(self.moves.get_or_create(&label));
        let holder = state.holder.as_ref().map(|h| HolderLabel {
            floatingip: name.to_string(),
            node: h.node.clone(),
            address: h.address.clone(),
            mode: h.mode.clone(),
        });
        let mut known = self.known();
        let old = known.insert(name.to_string(), holder.clone());
        if let Some(old) = old.flatten().filter(|o| Some(o) != holder.as_ref()) {
            self.holder.remove(&old);
        }
        if let Some(h) = &holder {
            self.holder.get_or_create(h).set(1);
        }
    }

    /// Sets `state` unless `name` has series already: what the leader reads of a FloatingIP
    /// it has not written yet. Its own writes are newer than what its cache may still hold.
    pub(super) fn first_sight(&self, name: &str, state: &FloatingIpState) {
        if !self.known().contains_key(name) {
            self.set(name, state);
        }
    }

    pub(super) fn moved(&self, name: &str) {
        let label = FloatingIpLabel {
            floatingip: name.to_string(),
        };
        self.moves.get_or_create(&label).inc();
    }

    /// Removes the series of every FloatingIP `live` says is gone.
    pub(super) fn retain(&self, live: impl Fn(&str) -> bool) {
        self.known().retain(|name, holder| {
            if live(name) {
                return true;
            }
            let label = FloatingIpLabel {
                floatingip: name.clone(),
            };
            self.ready.remove(&label);
            self.healthy.remove(&label);
            self.moves.remove(&label);
            if let Some(h) = holder {
                self.holder.remove(h);
            }
            false
        });
    }

    /// One series per node in `nodes` (true: its agent is ready); the others' go.
    pub(super) fn set_agents(&self, nodes: &BTreeMap<String, bool>) {
        let mut had = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        for gone in had.iter().filter(|n| !nodes.contains_key(*n)) {
            self.agent_ready.remove(&NodeLabel { node: gone.clone() });
        }
        for (node, ready) in nodes {
            let label = NodeLabel { node: node.clone() };
            self.agent_ready
                .get_or_create(&label)
                .set(i64::from(*ready));
        }
        *had = nodes.keys().cloned().collect();
    }

    /// Drops every series: this replica no longer leads.
    pub(super) fn clear(&self) {
        self.known().clear();
        self.nodes.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.ready.clear();
        self.healthy.clear();
        self.holder.clear();
        self.moves.clear();
        self.agent_ready.clear();
    }
}
