//! The agent's peer view: from its node's own network, it probes every other node that holds
//! a health-checked address, on that address's health check, and keeps what it sees on its own
//! Pod ([`PEER_VIEW_ANNOTATION`]). When the controller's probes fail together, its own network
//! is the likelier fault; these views tell it whether the nodes still answer from where they
//! stand.

pub mod view;

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::reflector::Store;
use tokio::sync::{mpsc, oneshot, Notify};

use super::sleep_until;
use crate::api::{FloatingIP, PeerView, PEER_VIEW_ANNOTATION};
use crate::metrics::Metrics;
use crate::nodes::NodeView;
use crate::probe::{ProbeEngine, Transition};
use view::Written;

/// Peer probes in flight at once. An agent probes one target per holder and check, a few in
/// most clusters; this only bounds a burst of timeouts.
const CONCURRENCY: usize = 16;

/// The probe engine on its own thread in the node's network namespace, so the probes leave
/// from the node (in production the agent's hostNetwork namespace; `--netns` under test).
/// Stops with its thread when dropped.
pub struct Prober {
    engine: ProbeEngine,
    transitions: mpsc::Receiver<Transition>,
    _stop: oneshot::Sender<()>,
}

impl Prober {
    /// `metrics` are not served themselves; the agent's peer-probe counter is fed from them
    /// ([`crate::metrics::AgentMetrics::peer_probe_metrics`]).
    pub fn spawn(netns: Option<PathBuf>, metrics: Metrics) -> io::Result<Self> {
        let (stop, stopped) = oneshot::channel::<()>();
        let (engine, transitions) = super::netns::spawn_in("floatip-peers", netns, move || {
            let started = ProbeEngine::new(CONCURRENCY, metrics);
            Ok((started, async move {
                let _ = stopped.await;
            }))
        })?;
        Ok(Self {
            engine,
            transitions,
            _stop: stop,
        })
    }
}

/// Keeps the peer view on the agent's Pod.
pub struct Peers {
    client: kube::Client,
    store: Store<FloatingIP>,
    /// Poked on every FloatingIP event.
    changed: Arc<Notify>,
    node: String,
    pod_namespace: String,
    pod_name: String,
    /// The longest time between two writes while there is something to report.
    interval: Duration,
    prober: Prober,
    /// The InternalIP of each node holding an address (None: its Node has none, or is gone).
    /// A Node's InternalIP is its instance's primary private address, fixed for the
    /// instance's life, so each is read once while the node holds an address rather than
    /// every Node watched from every node.
    ips: BTreeMap<String, Option<IpAddr>>,
    last: Option<Written>,
    failures: u32,
}

impl Peers {
    /// For the agent on `args.node_name`, writing to the Pod `(namespace, name)`.
    pub fn new(
        client: kube::Client,
        store: Store<FloatingIP>,
        changed: Arc<Notify>,
        (pod_namespace, pod_name): (String, String),
        args: &super::AgentArgs,
        prober: Prober,
    ) -> Self {
        Self {
            client,
            store,
            changed,
            node: args.node_name.clone(),
            pod_namespace,
            pod_name,
            interval: args.peer_view_interval,
            prober,
            ips: BTreeMap::new(),
            last: None,
            failures: 0,
        }
    }

    /// Runs until the agent exits: a round on every FloatingIP change, every probe transition,
    /// and when the refresh (or the retry of a failed write) is due.
    pub async fn run(mut self) {
        loop {
            self.round().await;
            let retry = (self.failures > 0).then(|| crate::retry::backoff(self.failures - 1));
            let wake = view::next_wake(self.last.as_ref(), retry, Instant::now(), self.interval);
            tokio::select! {
                _ = self.changed.notified() => {}
                Some(_) = self.prober.transitions.recv() => {}
                _ = sleep_until(wake) => {}
            }
        }
    }

    /// Probes the nodes holding addresses now and writes the view if it is due.
    async fn round(&mut self) {
        let fips = self.store.state();
        let holders = view::holders(&fips, &self.node);
        self.ips.retain(|node, _| holders.contains_key(node));
        for node in holders.keys() {
            if !self.ips.contains_key(node) {
                if let Ok(ip) = self.internal_ip(node).await {
                    self.ips.insert(node.clone(), ip);
                }
            }
        }
        let probes = view::peer_targets(&holders, &self.ips);
        self.prober.engine.set_targets(probes.targets);
        let at = jiff::Timestamp::now();
        let nodes = view::node_states(&probes.by_node, &self.prober.engine.snapshot());
        let now = Instant::now();
        if view::write_due(self.last.as_ref(), &nodes, now, self.interval) {
            self.write(PeerView { at, nodes }, now).await;
        }
    }

    /// The node's InternalIP, None when the Node has none or does not exist (both logged);
    /// an error (logged) when it could not be read, so it is asked for again next round.
    async fn internal_ip(&self, node: &str) -> Result<Option<IpAddr>, kube::Error> {
        let found = Api::<Node>::all(self.client.clone())
            .get_opt(node)
            .await
            .inspect_err(|e| {
                tracing::warn!(node, error = %e, "could not read the Node's InternalIP; asking again next round")
            })?;
        let Some(found) = found else {
            tracing::warn!(
                node,
                "status.holder names a Node that does not exist: its peer health stays Unknown"
            );
            return Ok(None);
        };
        let ip = NodeView::from_node(&found).internal_ip;
        if ip.is_none() {
            tracing::warn!(
                node,
                "the Node has no InternalIP address: its peer health stays Unknown"
            );
        }
        Ok(ip)
    }

    async fn write(&mut self, view: PeerView, now: Instant) {
        let value = view.to_annotation();
        let (ns, pod) = (&self.pod_namespace, &self.pod_name);
        match super::pod::annotate(&self.client, ns, pod, PEER_VIEW_ANNOTATION, &value).await {
            Ok(()) => {
                if self.last.as_ref().is_none_or(|w| w.nodes != view.nodes) {
                    tracing::info!(nodes = ?view.nodes, "published the peer view");
                }
                self.last = Some(Written {
                    nodes: view.nodes,
                    at: now,
                });
                self.failures = 0;
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                tracing::warn!(pod, error = %e, "could not write the peer view to the pod; retrying");
            }
        }
    }
}
