//! `floatip agent`: puts the addresses this node holds (per FloatingIP status) on the right
//! interface, routes their replies out through it, and removes what it added when the node no
//! longer holds them. Runs as a DaemonSet with hostNetwork and NET_ADMIN (NET_RAW for --garp).

pub mod garp;
pub mod handover;
pub mod health;
pub mod host;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod peer;
pub mod pod;
pub mod want;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::Notify;

use crate::admin;
use crate::api::FloatingIP;
use crate::cli::parse_duration;
use crate::metrics::AgentMetrics;
use health::{AgentHealth, Reconciled};
use host::{Host, HostConfig, Report};
use want::{RoutingTuning, Vip};

/// Flags shared by `floatip agent` and `floatip attach`: how the node is configured.
#[derive(Debug, Clone, clap::Args)]
pub struct HostArgs {
    /// First routing table number: an interface's table is this plus its ifindex. Clear of the
    /// VPC CNI's tables (2 and up) and amazon-ec2-net-utils' (10000 + device number).
    #[arg(long, env = "FLOATIP_ROUTE_TABLE_BASE", default_value_t = 20000)]
    pub route_table_base: u32,
    /// Priority of the fwmark rules; the from-address rules get the next one. Below the VPC
    /// CNI's rules (512 and up) so replies are steered before them.
    #[arg(long, env = "FLOATIP_RULE_PRIORITY", default_value_t = 100)]
    pub rule_priority: u32,
    /// Bits of the packet and connection mark floatip may use (an interface's mark is its
    /// ifindex shifted into them). Keep clear of kube-proxy (0xc000) and the VPC CNI (0x80).
    #[arg(long, env = "FLOATIP_FWMARK_MASK", default_value = "0x00ff0000", value_parser = parse_mask)]
    pub fwmark_mask: u32,
    /// Send gratuitous ARP after adding an IPv4 address (Outposts servers' local network
    /// interface; useless in a VPC). Needs CAP_NET_RAW.
    #[arg(long, env = "FLOATIP_GARP", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub garp: bool,
    /// Configure this network namespace (a /run/netns path) instead of the process's own.
    /// For tests; the Kubernetes API is still reached from the process's namespace.
    #[arg(long, env = "FLOATIP_NETNS", hide = true)]
    pub netns: Option<PathBuf>,
}

impl HostArgs {
    pub fn config(&self) -> HostConfig {
        HostConfig {
            netns: self.netns.clone(),
            tuning: RoutingTuning {
                table_base: self.route_table_base,
                rule_priority: self.rule_priority,
                mark_mask: self.fwmark_mask,
            },
            garp: self.garp,
        }
    }
}

fn parse_mask(s: &str) -> Result<u32, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|_| format!("{s:?} is not a 32-bit mask such as 0x00ff0000"))?;
    if v == 0 {
        return Err("the mark mask must have at least one bit".into());
    }
    Ok(v)
}

/// `floatip agent` flags; each can also be set through its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// This node's name (downward API spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// This pod's name (downward API metadata.name): annotated on SIGTERM to ask for a handover.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// This pod's namespace (downward API metadata.namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// On SIGTERM, how long to keep serving while the controller moves the addresses away.
    /// Keep it below the pod's terminationGracePeriodSeconds.
    #[arg(long, env = "FLOATIP_GRACE_PERIOD", default_value = "20s", value_parser = parse_duration)]
    pub grace_period: Duration,
    /// After an address moves to another node, keep it here this long: the VPC still routes
    /// some packets here while it converges (about 1.2 s in AWS).
    #[arg(long, env = "FLOATIP_RELEASE_DELAY", default_value = "2s", value_parser = parse_duration)]
    pub release_delay: Duration,
    /// The peer view (what this node sees of the nodes holding addresses, for the
    /// controller) is written to this pod when it changes and at least this often, so that a
    /// reader can tell a live view from a stale one.
    #[arg(long, env = "FLOATIP_PEER_VIEW_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub peer_view_interval: Duration,
    /// How often the host is compared with status even when nothing changed (drift repair).
    #[arg(long, env = "FLOATIP_RESYNC", default_value = "10s", value_parser = parse_duration)]
    pub resync: Duration,
    /// Address of the admin server: /readyz (the FloatingIP watch has synced and the last
    /// reconcile of the node succeeded), /livez (the reconcile loop goes round), /metrics. The
    /// agent shares the node's network, so the port must be free on every node; 10290 is clear
    /// of the kubelet's, kube-proxy's, the VPC CNI's and node-exporter's.
    #[arg(long, env = "FLOATIP_ADMIN_ADDR", default_value = "0.0.0.0:10290")]
    pub admin_addr: SocketAddr,
    #[command(flatten)]
    pub host: HostArgs,
}

/// Addresses that moved from this node to another, kept on it for the release delay while the
/// VPC converges: what the host should carry is what is held plus these.
#[derive(Debug)]
pub struct Departing {
    delay: Duration,
    kept: BTreeMap<IpAddr, (Vip, Instant)>,
    last: Vec<Vip>,
}

impl Departing {
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            kept: BTreeMap::new(),
            last: Vec::new(),
        }
    }

    /// What the host should carry: what is held now, plus what moved to another node less
    /// than the release delay ago. An address whose FloatingIP is gone or has no holder is
    /// dropped at once.
    pub fn desired(&mut self, fips: &[FloatingIP], node: &str, now: Instant) -> Vec<Vip> {
        let held = want::held_by(fips, node);
        for v in std::mem::take(&mut self.last) {
            if held.iter().any(|h| h.address == v.address) || self.kept.contains_key(&v.address) {
                continue;
            }
            // The same FloatingIP (for an ElasticIP holder, `v` is its own private address,
            // not spec.address), still there and held by another node.
            let elsewhere = fips.iter().any(|f| {
                f.metadata.name.as_deref() == Some(v.name.as_str())
                    && f.metadata.deletion_timestamp.is_none()
                    && f.status
                        .as_ref()
                        .and_then(|s| s.holder.as_ref())
                        .is_some_and(|h| h.node != node)
            });
            if elsewhere {
                let v = Vip {
                    departing: true,
                    ..v
                };
                self.kept.insert(v.address, (v, now + self.delay));
            }
        }
        self.kept
            .retain(|a, (_, until)| *until > now && !held.iter().any(|h| h.address == *a));
        let mut out = held;
        out.extend(self.kept.values().map(|(v, _)| v.clone()));
        out.sort();
        self.last = out.clone();
        out
    }

    /// When the next kept address is due to go.
    pub fn next_wake(&self) -> Option<Instant> {
        self.kept.values().map(|(_, t)| *t).min()
    }
}

/// The running agent.
pub struct Agent {
    pub args: AgentArgs,
    pub client: kube::Client,
    pub host: Host,
    pub store: Store<FloatingIP>,
    pub changed: Arc<Notify>,
    pub departing: Departing,
    pub health: Arc<AgentHealth>,
    pub metrics: AgentMetrics,
    /// MACs of the interfaces this node's addresses were last put on: still checked once the
    /// addresses are gone, so readiness does not come back with nothing to configure.
    interfaces: BTreeSet<String>,
    failures: u32,
    /// A held whole ENI's interface (Interface mode) has not appeared yet.
    awaiting: bool,
}

/// How often the node's links are looked at while a whole ENI's interface is awaited: EC2
/// shows the ENI attached some seconds after the move, and the address should be up the
/// moment it appears, not at the next resync.
const AWAITED_INTERFACE_POLL: Duration = Duration::from_millis(100);

impl Agent {
    /// One reconcile of the host with status, recorded for /readyz, /livez and /metrics.
    /// Returns whether any address is still wanted.
    pub async fn reconcile(&mut self) -> bool {
        let fips: Vec<FloatingIP> = self.store.state().iter().map(|f| (**f).clone()).collect();
        let vips = self
            .departing
            .desired(&fips, &self.args.node_name, Instant::now());
        let wanted = !vips.is_empty();
        // A whole ENI's interface (Interface mode) leaves with its address: not checked after.
        let in_use: BTreeSet<String> = (vips.iter().filter(|v| !v.whole))
            .map(|v| v.mac.clone())
            .collect();
        if wanted {
            self.interfaces = in_use.clone();
        }
        let started = Instant::now();
        let applied = self.host.apply(vips).await;
        let configured = applied.as_ref().ok().map(|r| r.configured);
        self.awaiting = applied.as_ref().is_ok_and(|r| r.awaiting > 0);
        let outcome = match applied {
            Ok(report) => {
                log_report(&fips, &report);
                let idle: BTreeSet<String> = self.interfaces.difference(&in_use).cloned().collect();
                let mut problems = report.problems;
                problems.extend(want::idle_problems(&idle, &report.interfaces));
                outcome_of(problems)
            }
            Err(e) => Reconciled::Failed(e.to_string()),
        };
        let ok = outcome == Reconciled::Ok;
        self.metrics
            .reconciled(started.elapsed().as_secs_f64(), ok, configured);
        if let Reconciled::Failed(why) = &outcome {
            self.failures += 1;
            tracing::error!(error = %why, "configuring the node failed; retrying");
        } else {
            self.failures = 0;
        }
        self.health.reconciled(outcome);
        wanted
    }

    fn retry_in(&self) -> Option<Duration> {
        (self.failures > 0).then(|| crate::retry::backoff(self.failures - 1))
    }
}

/// A reconcile that left an address unconfigured (its interface is missing, say), or found an
/// interface addresses were put on unusable, failed: the node cannot serve those addresses and
/// must not be offered more. `floatip attach` counts such problems as failures too.
fn outcome_of(problems: Vec<String>) -> Reconciled {
    if problems.is_empty() {
        Reconciled::Ok
    } else {
        Reconciled::Failed(problems.join("; "))
    }
}

fn log_report(fips: &[FloatingIP], report: &Report) {
    for a in &report.added {
        let since = fips.iter().find_map(|f| {
            let h = f.status.as_ref()?.holder.as_ref()?;
            (crate::api::parse_address(&f.spec.address) == Some(*a)).then_some(h.since.0)
        });
        let lag_ms = since.map(|s| {
            (jiff::Timestamp::now() - s)
                .total(jiff::Unit::Millisecond)
                .unwrap_or(0.0) as i64
        });
        tracing::info!(address = %a, lag_ms, "added the address");
    }
    for a in &report.removed {
        tracing::info!(address = %a, "removed the address");
    }
    if report.routing_changes > 0 {
        tracing::debug!(
            changes = report.routing_changes,
            "wrote or removed routes, rules or the nf_tables table"
        );
    }
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let host = Host::spawn(args.host.config()).map_err(|e| {
        anyhow::anyhow!("cannot open netlink: {e} (the agent needs hostNetwork and CAP_NET_ADMIN)")
    })?;
    let health = Arc::new(AgentHealth::new(health::stall_bound(args.resync)));
    let metrics = AgentMetrics::new();
    let scrape = health::Scrape {
        metrics: metrics.clone(),
        health: health.clone(),
    };
    admin::serve(args.admin_addr, Arc::new(scrape), health.clone()).await?;
    let client = kube::Client::try_default().await?;
    let changed = Arc::new(Notify::new());
    let peers_changed = Arc::new(Notify::new());
    let store = watch(
        Api::all(client.clone()),
        [changed.clone(), peers_changed.clone()],
    );
    let peer_metrics = metrics.peer_probe_metrics();
    let peers = peer_view(&args, &client, &store, peers_changed, peer_metrics)?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut agent = Agent {
        departing: Departing::new(args.release_delay),
        args,
        client,
        host,
        store,
        changed,
        health,
        metrics,
        interfaces: BTreeSet::new(),
        awaiting: false,
        failures: 0,
    };
    tokio::select! {
        r = agent.store.wait_until_ready() => r?,
        _ = sigterm.recv() => {
            // Nothing was configured from status yet: nothing to hand over or keep.
            return Ok(());
        }
    }
    agent.health.synced();
    if let Some(peers) = peers {
        tokio::spawn(peers.run());
    }
    tracing::info!(node = %agent.args.node_name, "agent started; FloatingIPs synced");
    agent.serve(sigterm).await
}

/// The peer view writer, when the pod knows its own name and namespace.
fn peer_view(
    args: &AgentArgs,
    client: &kube::Client,
    store: &Store<FloatingIP>,
    changed: Arc<Notify>,
    metrics: crate::metrics::Metrics,
) -> anyhow::Result<Option<peer::Peers>> {
    let (Some(ns), Some(pod)) = (&args.pod_namespace, &args.pod_name) else {
        tracing::warn!("POD_NAME/POD_NAMESPACE unknown: no peer view is published, so the controller cannot ask this node how the others look");
        return Ok(None);
    };
    let prober = peer::Prober::spawn(args.host.netns.clone(), metrics)
        .map_err(|e| anyhow::anyhow!("cannot start the peer probes: {e}"))?;
    let pod = (ns.clone(), pod.clone());
    Ok(Some(peer::Peers::new(
        client.clone(),
        store.clone(),
        changed,
        pod,
        args,
        prober,
    )))
}

impl Agent {
    /// Reconciles on every change, every resync, when a departing address is due and when a
    /// failed reconcile is retried, until SIGTERM starts the handover.
    async fn serve(&mut self, mut sigterm: tokio::signal::unix::Signal) -> anyhow::Result<()> {
        let mut resync = tokio::time::interval(self.args.resync);
        loop {
            self.reconcile().await;
            let awaited = self.awaiting.then_some(AWAITED_INTERFACE_POLL);
            let soonest = [self.retry_in(), awaited].into_iter().flatten().min();
            let wake = match (self.departing.next_wake(), soonest) {
                (Some(k), Some(r)) => Some(k.min(Instant::now() + r)),
                (k, r) => k.or_else(|| r.map(|r| Instant::now() + r)),
            };
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = resync.tick() => {}
                _ = sleep_until(wake) => {}
                _ = sigterm.recv() => {
                    let grace = self.args.grace_period;
                    return handover::run(self, grace).await;
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// A FloatingIP store fed by a watch that pokes each of `changed` on every event: the
/// reconcile loop and the peer view each wait on their own.
fn watch(api: Api<FloatingIP>, changed: [Arc<Notify>; 2]) -> Store<FloatingIP> {
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).backoff(crate::watch::backoff()),
    );
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            match item {
                Ok(_) => changed.iter().for_each(|c| c.notify_one()),
                Err(e) => {
                    tracing::warn!(error = %e, "FloatingIP watch error; retrying with backoff")
                }
            }
        }
    });
    store
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fip(address: &str, holder: Option<&str>) -> FloatingIP {
        let status = holder.map_or(json!({}), |n| {
            json!({"holder": {"node": n, "instanceId": "i-1", "macAddress": "02:aa:00:00:00:01", "since": "2026-01-01T00:00:00Z"}})
        });
        serde_json::from_value(json!({
            "apiVersion": "floatip.io/v1alpha1", "kind": "FloatingIP",
            "metadata": {"name": address},
            "spec": {"address": address, "subnetId": "subnet-0a1b2c3d"},
            "status": status,
        }))
        .unwrap()
    }

    fn addrs(v: &[Vip]) -> Vec<String> {
        v.iter().map(|v| v.address.to_string()).collect()
    }

    #[test]
    fn an_address_that_moved_away_is_kept_for_the_release_delay_only() {
        let t0 = Instant::now();
        let mut k = Departing::new(Duration::from_secs(2));
        assert_eq!(
            addrs(&k.desired(&[fip("10.0.0.1", Some("me"))], "me", t0)),
            ["10.0.0.1"]
        );
        let moved = [fip("10.0.0.1", Some("other"))];
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(addrs(&k.desired(&moved, "me", t1)), ["10.0.0.1"]);
        assert_eq!(k.next_wake(), Some(t1 + Duration::from_secs(2)));
        // Still kept before the deadline, even across reconciles.
        assert_eq!(
            addrs(&k.desired(&moved, "me", t1 + Duration::from_millis(1500))),
            ["10.0.0.1"]
        );
        assert!(k
            .desired(&moved, "me", t1 + Duration::from_secs(2))
            .is_empty());
        assert_eq!(k.next_wake(), None);
    }

    /// ElasticIP mode: the routing of the old holder's own private address stays for the
    /// release delay too, while the VPC still sends the public address's traffic there.
    #[test]
    fn an_elastic_ip_holders_routing_is_kept_for_the_release_delay() {
        let public = |node: &str, private: &str| {
            let mut f = fip("198.51.100.7", Some(node));
            f.spec.mode = crate::api::Mode::ElasticIP;
            let h = f.status.as_mut().unwrap().holder.as_mut().unwrap();
            h.private_address = Some(private.into());
            f
        };
        let t0 = Instant::now();
        let mut k = Departing::new(Duration::from_secs(2));
        let mine = k.desired(&[public("me", "10.0.0.21")], "me", t0);
        assert_eq!(addrs(&mine), ["10.0.0.21"]);
        assert!(mine[0].own);
        let moved = [public("other", "10.0.0.31")];
        let kept = k.desired(&moved, "me", t0 + Duration::from_secs(1));
        assert_eq!(addrs(&kept), ["10.0.0.21"]);
        assert!(kept[0].own, "still only routed, never added");
        assert!(k
            .desired(&moved, "me", t0 + Duration::from_secs(3))
            .is_empty());
    }

    #[test]
    fn an_address_nobody_holds_or_whose_floatingip_is_gone_goes_at_once() {
        let t0 = Instant::now();
        let mut k = Departing::new(Duration::from_secs(2));
        k.desired(
            &[fip("10.0.0.1", Some("me")), fip("10.0.0.2", Some("me"))],
            "me",
            t0,
        );
        let v = k.desired(&[fip("10.0.0.1", None)], "me", t0);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn an_address_that_comes_back_is_held_not_kept() {
        let t0 = Instant::now();
        let mut k = Departing::new(Duration::from_secs(2));
        k.desired(&[fip("10.0.0.1", Some("me"))], "me", t0);
        k.desired(&[fip("10.0.0.1", Some("other"))], "me", t0);
        assert_eq!(
            addrs(&k.desired(&[fip("10.0.0.1", Some("me"))], "me", t0)),
            ["10.0.0.1"]
        );
        assert_eq!(k.next_wake(), None);
    }

    #[test]
    fn a_reconcile_that_leaves_an_address_unconfigured_failed() {
        assert_eq!(outcome_of(Vec::new()), Reconciled::Ok);
        let missing = vec!["10.0.0.1 (web): no interface has MAC 02:aa:00:00:00:01".into()];
        match outcome_of(missing) {
            Reconciled::Failed(why) => assert!(why.contains("no interface has MAC"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn masks() {
        assert_eq!(parse_mask("0x00ff0000"), Ok(0x00ff_0000));
        assert_eq!(parse_mask("65280"), Ok(0xff00));
        assert!(parse_mask("0").is_err());
        assert!(parse_mask("zz").is_err());
    }
}
