//! Observe: the watches, the probe engine's snapshot, EC2 (subnets, ENIs, holder checks) and the
//! agents' pods and peer views, read into one [`Seen`], from which plan() takes its
//! [`Picture`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::Notify;

use super::doubt::PeerReport;
use super::execute::Ctx;
use super::plan::checks_of;
use super::plan::Picture;
use super::ControllerArgs;
use crate::api::FloatingIP;
use crate::cloud::{Cloud, CloudError, Eni, Subnet};
use crate::mode::{Reads, Snapshot};
use crate::nodes::NodeView;
use crate::probe::{merge_targets, ProbeEngine, ProbeSpec, Target, TargetState};

/// The three watches the controller decides from, each a reflector store.
#[derive(Clone)]
pub struct Watches {
    pub fips: Store<FloatingIP>,
    pub nodes: Store<Node>,
    pub agents: Store<Pod>,
}

impl Watches {
    /// Starts the watches; each change pokes `trigger`.
    pub fn start(client: &kube::Client, args: &ControllerArgs, trigger: &Arc<Notify>) -> Self {
        let agents = Api::<Pod>::namespaced(client.clone(), &args.agent_namespace);
        Self {
            fips: watch_store(
                Api::all(client.clone()),
                watcher::Config::default(),
                trigger,
            ),
            nodes: watch_store(
                Api::all(client.clone()),
                watcher::Config::default(),
                trigger,
            ),
            agents: watch_store(
                agents,
                watcher::Config::default().labels(&args.agent_selector),
                trigger,
            ),
        }
    }

    /// Waits until every watch has listed once.
    pub async fn synced(&self) {
        let _ = tokio::join!(
            self.fips.wait_until_ready(),
            self.nodes.wait_until_ready(),
            self.agents.wait_until_ready()
        );
    }

    /// What to probe: each health-checked address, and each node's own address on the same
    /// check (so the controller knows which nodes could take over). Shared targets merge to
    /// the strictest.
    pub fn probe_targets(&self) -> HashMap<Target, ProbeSpec> {
        let nodes: Vec<(String, IpAddr)> = (self.nodes.state().iter())
            .filter_map(|n| {
                Some((
                    kube::ResourceExt::name_any(n.as_ref()),
                    NodeView::from_node(n).internal_ip?,
                ))
            })
            .collect();
        let fips = self.fips.state();
        merge_targets(fips.iter().flat_map(|f| checks_of(f, &nodes)))
    }
}

/// A reflector store fed by a watch that pokes `trigger` on every change.
fn watch_store<K>(api: Api<K>, config: watcher::Config, trigger: &Arc<Notify>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, config).backoff(crate::watch::backoff()),
    );
    let trigger = trigger.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            match item {
                Ok(_) => trigger.notify_one(),
                Err(e) => tracing::warn!(error = %e, "watch error; retrying with backoff"),
            }
        }
    });
    store
}

/// Each subnet in use and its ENIs, reused until the next resync or a change of ours; kept as
/// the maps a [`Snapshot`] borrows.
#[derive(Default)]
pub struct SubnetCache {
    /// When each subnet was read.
    read_at: HashMap<String, Instant>,
    subnets: HashMap<String, Subnet>,
    enis: HashMap<String, Vec<Eni>>,
    /// Elastic IPs, zones and the nodes' ENIs, with when each was read.
    reads: Reads,
    reads_at: HashMap<&'static str, Instant>,
    /// The allocations and instances the last reads asked for: a FloatingIP naming a new one
    /// is planned from a fresh read, never from one that could not have seen it.
    asked: (Vec<String>, BTreeSet<String>),
    /// The route tables the last read asked for, likewise.
    asked_tables: Vec<String>,
}

/// The keys of [`SubnetCache::reads_at`], also used as the keys of their read errors.
pub const READ_ALLOCATIONS: &str = "Elastic IP allocations";
pub const READ_NODE_ENIS: &str = "the nodes' ENIs";
pub const READ_ROUTE_TABLES: &str = "route tables";
const READ_BORDER_GROUPS: &str = "zones";

/// How long the zones' border groups are trusted: they change only when a Local Zone is
/// opted in.
const BORDER_GROUPS_TTL: Duration = Duration::from_secs(3600);

impl SubnetCache {
    /// What we changed is no longer what the cache says: read everything again next pass.
    pub fn forget(&mut self) {
        self.read_at.clear();
        self.subnets.clear();
        self.enis.clear();
        self.reads_at.remove(READ_ALLOCATIONS);
        self.reads_at.remove(READ_NODE_ENIS);
        self.reads_at.remove(READ_ROUTE_TABLES);
    }

    /// Whether `key` was read less than `ttl` ago.
    fn fresh(&self, key: &str, ttl: Duration) -> bool {
        self.reads_at.get(key).is_some_and(|at| at.elapsed() < ttl)
    }

    fn remove(&mut self, subnet: &str) {
        self.read_at.remove(subnet);
        self.subnets.remove(subnet);
        self.enis.remove(subnet);
    }

    fn snapshot<'a>(&'a self, cluster: &'a str) -> Snapshot<'a> {
        Snapshot::new(&self.enis, &self.subnets, cluster, &self.reads)
    }
}

/// Everything one pass saw, owned; [`Seen::picture`] lends it to plan().
pub struct Seen {
    pub fips: Vec<Arc<FloatingIP>>,
    nodes: Vec<NodeView>,
    agents_ready: HashSet<String>,
    agents_leaving: HashSet<String>,
    enis: HashMap<String, Vec<Eni>>,
    subnets: HashMap<String, Subnet>,
    reads: Reads,
    health: HashMap<Target, TargetState>,
    reensured: HashMap<String, Duration>,
    peers: HashMap<String, PeerReport>,
    /// Subnets EC2 could not be read for this pass, and why.
    pub cloud_errors: BTreeMap<String, CloudError>,
    /// A read failed in a way worth retrying soon.
    pub retry: bool,
}

impl Seen {
    /// Each node some FloatingIP's nodeSelector selects, and whether its agent pod is Ready.
    pub fn agents_ready(&self) -> BTreeMap<String, bool> {
        (self.nodes.iter())
            .filter(|n| (self.fips.iter()).any(|f| crate::nodes::selects(&f.spec, n)))
            .map(|n| (n.name.clone(), self.agents_ready.contains(&n.name)))
            .collect()
    }

    pub fn picture<'a>(&'a self, args: &'a ControllerArgs) -> Picture<'a> {
        Picture {
            fips: &self.fips,
            nodes: &self.nodes,
            agents_ready: args.require_agent.then_some(&self.agents_ready),
            agents_leaving: &self.agents_leaving,
            enis: &self.enis,
            subnets: &self.subnets,
            reads: &self.reads,
            cluster: &args.cluster_name,
            now: jiff::Timestamp::now(),
            health: &self.health,
            reensured: &self.reensured,
            peers: &self.peers,
        }
    }
}

/// Reads the cluster, the probes and EC2 into one [`Seen`]. A full refresh reads every subnet
/// again and cleans up the floating ENIs of nodes that no longer exist.
pub async fn observe<C: Cloud>(
    ctx: &Ctx<C>,
    args: &ControllerArgs,
    watches: &Watches,
    engine: &ProbeEngine,
    cache: &mut SubnetCache,
    reensured_at: &HashMap<String, Instant>,
    full_refresh: bool,
) -> Seen {
    let fips = watches.fips.state();
    let health = engine.snapshot();
    let nodes: Vec<NodeView> = (watches.nodes.state().iter())
        .map(|n| NodeView::from_node(n))
        .collect();
    let pods = watches.agents.state();
    let agents_ready: HashSet<String> = pods
        .iter()
        .filter(|p| pod_ready(p))
        .filter_map(on_node)
        .collect();
    let agents_leaving: HashSet<String> = pods
        .iter()
        .filter(|p| agent_leaving(p))
        .filter_map(on_node)
        .collect();
    let reensured = (reensured_at.iter())
        .map(|(n, at)| (n.clone(), at.elapsed()))
        .collect();
    let (mut cloud_errors, mut retry) =
        read_subnets(&ctx.cloud, cache, &fips, args, full_refresh).await;
    let instances = nodes.iter().filter_map(|n| n.instance_id.clone()).collect();
    let needs = Needs::of(&fips, instances, &args.cluster_name);
    let beyond = read_beyond_subnets(&ctx.cloud, cache, &needs, args.resync, full_refresh);
    for (key, e) in beyond.await {
        retry |= e.retryable();
        cloud_errors.insert(key.to_string(), e);
    }
    if full_refresh && (ctx.gate)().is_ok() {
        cleanup_orphans(ctx, &args.cluster_name, &nodes).await;
    }
    Seen {
        agents_ready,
        agents_leaving,
        enis: cache.enis.clone(),
        subnets: cache.subnets.clone(),
        reads: cache.reads.clone(),
        reensured,
        peers: peer_reports(&pods),
        fips,
        nodes,
        health,
        cloud_errors,
        retry,
    }
}

/// EC2 truth: one describe per subnet in use, reused until the next resync or move. Returns
/// the subnets that could not be read, and whether a retry may help.
async fn read_subnets<C: Cloud>(
    cloud: &C,
    cache: &mut SubnetCache,
    fips: &[Arc<FloatingIP>],
    args: &ControllerArgs,
    full_refresh: bool,
) -> (BTreeMap<String, CloudError>, bool) {
    let subnets: BTreeSet<String> = fips
        .iter()
        .filter_map(|f| Some(crate::mode::port(f.spec.mode)?.subnets(&f.spec)))
        .flatten()
        .collect();
    let mut cloud_errors = BTreeMap::new();
    let mut retry = false;
    for subnet in &subnets {
        let read_at = cache.read_at.get(subnet);
        if read_at.is_some_and(|at| at.elapsed() < args.resync) && !full_refresh {
            continue;
        }
        // The subnet first: a subnet that does not exist has no ENIs either, and its
        // FloatingIPs must say so rather than "no node is fit".
        let read = match cloud.subnet(subnet).await {
            Ok(info) => cloud.subnet_enis(subnet).await.map(|enis| (info, enis)),
            Err(e) => Err(e),
        };
        match read {
            Ok((subnet_info, enis)) => {
                cache.read_at.insert(subnet.clone(), Instant::now());
                cache.subnets.insert(subnet.clone(), subnet_info);
                cache.enis.insert(subnet.clone(), enis);
            }
            Err(e) => {
                retry |= e.retryable();
                cache.remove(subnet);
                cloud_errors.insert(subnet.clone(), e);
            }
        }
    }
    cache.read_at.retain(|s, _| subnets.contains(s));
    cache.subnets.retain(|s, _| subnets.contains(s));
    cache.enis.retain(|s, _| subnets.contains(s));
    (cloud_errors, retry)
}

/// What the FloatingIPs need read of EC2 besides their subnets.
struct Needs {
    allocations: Vec<String>,
    node_enis: bool,
    instances: HashSet<String>,
    /// The route tables RouteTable FloatingIPs list (their cluster's ENIs are read with them).
    route_tables: Vec<String>,
    cluster: String,
}

impl Needs {
    fn of(fips: &[Arc<FloatingIP>], instances: HashSet<String>, cluster: &str) -> Self {
        let mut allocations: BTreeSet<String> = BTreeSet::new();
        let mut node_enis = false;
        let mut route_tables: BTreeSet<String> = BTreeSet::new();
        for f in fips {
            let Some(mode) = crate::mode::port(f.spec.mode) else {
                continue;
            };
            allocations.extend(f.spec.elastic_ip.iter().map(|e| e.allocation_id.clone()));
            node_enis |= mode.needs_node_enis(&f.spec);
            route_tables.extend(f.spec.route_table_ids.iter().cloned());
        }
        Self {
            allocations: allocations.into_iter().collect(),
            node_enis,
            instances,
            route_tables: route_tables.into_iter().collect(),
            cluster: cluster.to_string(),
        }
    }
}

/// The Elastic IP allocations, the zones' border groups and the nodes' ENIs, each only when a
/// FloatingIP needs it, reused until the next resync or move as subnets are, and read again
/// at once when a FloatingIP names an allocation (or a node appears) the last read did not
/// ask for. Returns what could not be read; a zone read that fails only logs (EC2 checks the
/// group itself).
async fn read_beyond_subnets<C: Cloud>(
    cloud: &C,
    cache: &mut SubnetCache,
    needs: &Needs,
    resync: Duration,
    full_refresh: bool,
) -> Vec<(&'static str, CloudError)> {
    cache.reads.node_instances = needs.instances.clone();
    let instances: BTreeSet<String> = needs.instances.iter().cloned().collect();
    if cache.asked.0 != needs.allocations {
        cache.reads_at.remove(READ_ALLOCATIONS);
        cache.asked.0 = needs.allocations.clone();
    }
    if cache.asked.1 != instances {
        cache.reads_at.remove(READ_NODE_ENIS);
        cache.reads_at.remove(READ_ROUTE_TABLES);
        cache.asked.1 = instances;
    }
    if cache.asked_tables != needs.route_tables {
        cache.reads_at.remove(READ_ROUTE_TABLES);
        cache.asked_tables = needs.route_tables.clone();
    }
    let stale = |c: &SubnetCache, key| full_refresh || !c.fresh(key, resync);
    let mut errors = Vec::new();
    if needs.allocations.is_empty() {
        cache.reads.allocations = None;
    } else if stale(cache, READ_ALLOCATIONS) {
        errors.extend(read_allocations(cloud, cache, &needs.allocations).await);
    }
    if !needs.node_enis {
        cache.reads.node_enis = None;
    } else if stale(cache, READ_NODE_ENIS) {
        let instances: Vec<String> = needs.instances.iter().cloned().collect();
        match cloud.instance_enis(&instances).await {
            Ok(enis) => {
                cache.reads.node_enis = Some(enis);
                cache.reads_at.insert(READ_NODE_ENIS, Instant::now());
            }
            Err(e) => {
                cache.reads.node_enis = None;
                errors.push((READ_NODE_ENIS, e));
            }
        }
    }
    if needs.route_tables.is_empty() {
        cache.reads.route_tables = None;
        cache.reads.cluster_enis = None;
    } else if stale(cache, READ_ROUTE_TABLES) {
        errors.extend(read_route_tables(cloud, cache, &needs.route_tables, &needs.cluster).await);
    }
    errors
}

/// The route tables and, with them, the cluster's ENIs their routes may lead to (a holder's
/// ENI whose node is gone included).
async fn read_route_tables<C: Cloud>(
    cloud: &C,
    cache: &mut SubnetCache,
    ids: &[String],
    cluster: &str,
) -> Option<(&'static str, CloudError)> {
    let read = match cloud.route_tables(ids).await {
        Ok(tables) => cloud.cluster_enis(cluster).await.map(|enis| (tables, enis)),
        Err(e) => Err(e),
    };
    match read {
        Ok((tables, enis)) => {
            let by_id = tables.into_iter().map(|t| (t.id.clone(), t));
            cache.reads.route_tables = Some(by_id.collect());
            cache.reads.cluster_enis = Some(enis);
            cache.reads_at.insert(READ_ROUTE_TABLES, Instant::now());
            None
        }
        Err(e) => {
            cache.reads.route_tables = None;
            cache.reads.cluster_enis = None;
            Some((READ_ROUTE_TABLES, e))
        }
    }
}

/// The allocations (and, hourly, the zones' border groups they are checked against).
async fn read_allocations<C: Cloud>(
    cloud: &C,
    cache: &mut SubnetCache,
    ids: &[String],
) -> Option<(&'static str, CloudError)> {
    if !cache.fresh(READ_BORDER_GROUPS, BORDER_GROUPS_TTL) {
        match cloud.border_groups().await {
            Ok(groups) => {
                cache.reads.border_groups = groups;
                cache.reads_at.insert(READ_BORDER_GROUPS, Instant::now());
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the zones' network border groups; EC2 will refuse a mismatch itself")
            }
        }
    }
    match cloud.allocations(ids).await {
        Ok(all) => {
            let by_id = all.into_iter().map(|a| (a.allocation_id.clone(), a));
            cache.reads.allocations = Some(by_id.collect());
            cache.reads_at.insert(READ_ALLOCATIONS, Instant::now());
            None
        }
        Err(e) => {
            cache.reads.allocations = None;
            Some((READ_ALLOCATIONS, e))
        }
    }
}

/// Reads back the ENIs the cache says hold a FloatingIP's address (as each FloatingIP's mode
/// reads EC2); a subnet where EC2 no longer agrees (an address unassigned or moved outside
/// floatip) is dropped from the cache, so the pass that follows reads it again and repairs it,
/// seconds after the change instead of at the next resync. A failed read changes nothing: the
/// resync still comes.
pub async fn check_holders<C: Cloud>(
    cloud: &C,
    cache: &mut SubnetCache,
    fips: &[Arc<FloatingIP>],
    cluster: &str,
) {
    check_route_tables(cloud, cache).await;
    let cached = cache.snapshot(cluster);
    // (FloatingIP, its mode, its address, a holding ENI, that ENI's subnet)
    let mut held = Vec::new();
    for f in fips {
        let mode = crate::mode::port(f.spec.mode);
        let (Some(mode), Some(a)) = (mode, crate::api::parse_address(&f.spec.address)) else {
            continue;
        };
        for h in mode.holding(&f.spec, a, &cached) {
            held.push((f, mode, a, h.eni.id.clone(), h.eni.subnet_id.clone()));
        }
    }
    let ids: BTreeSet<String> = held.iter().map(|(.., id, _)| id.clone()).collect();
    let ids: Vec<String> = ids.into_iter().collect();
    // The ENIs read back, by subnet, as a snapshot of their own.
    let mut fresh: HashMap<String, Vec<Eni>> = HashMap::new();
    for chunk in ids.chunks(200) {
        match cloud.enis(chunk).await {
            Ok(enis) => enis
                .into_iter()
                .for_each(|e| fresh.entry(e.subnet_id.clone()).or_default().push(e)),
            Err(e) => {
                tracing::debug!(error = %e, "could not read the holding ENIs back; the resync will");
                return;
            }
        }
    }
    let now = Snapshot {
        enis: &fresh,
        ..cached
    };
    let stale: BTreeSet<String> = held
        .into_iter()
        .filter(|(f, mode, a, id, _)| {
            !(mode.holding(&f.spec, *a, &now).iter()).any(|h| h.eni.id == *id)
        })
        .map(|(.., subnet)| subnet)
        .collect();
    for subnet in stale {
        tracing::info!(
            subnet,
            "an address is no longer where floatip saw it in EC2: reading the subnet again"
        );
        cache.remove(&subnet);
    }
}

/// Reads the cached route tables back (one DescribeRouteTables); when EC2 no longer shows
/// what the cache holds (a route replaced or deleted outside floatip), the next pass reads
/// them again and repairs, as [`check_holders`] does for ENIs. A failed read changes nothing.
async fn check_route_tables<C: Cloud>(cloud: &C, cache: &mut SubnetCache) {
    let Some(cached) = &cache.reads.route_tables else {
        return;
    };
    let mut ids: Vec<String> = cached.keys().cloned().collect();
    ids.sort();
    match cloud.route_tables(&ids).await {
        Ok(fresh) => {
            let same =
                fresh.len() == cached.len() && fresh.iter().all(|t| cached.get(&t.id) == Some(t));
            if !same {
                tracing::info!(
                    "a route table is no longer what floatip saw in EC2: reading the tables again"
                );
                cache.reads_at.remove(READ_ROUTE_TABLES);
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "could not read the route tables back; the resync will");
        }
    }
}

/// What each agent published of the holders it probes (annotation
/// [`crate::api::PEER_VIEW_ANNOTATION`] on its pod), by its node. A pod without a readable view
/// contributes nothing.
fn peer_reports(pods: &[Arc<Pod>]) -> HashMap<String, PeerReport> {
    let now = jiff::Timestamp::now();
    pods.iter()
        .filter_map(|p| {
            let node = p.spec.as_ref()?.node_name.clone()?;
            let text = p
                .metadata
                .annotations
                .as_ref()?
                .get(crate::api::PEER_VIEW_ANNOTATION)?;
            let view = crate::api::PeerView::parse(text).ok()?;
            let age = now.duration_since(view.at).unsigned_abs();
            let nodes = view.nodes.into_iter().collect();
            Some((node, PeerReport { age, nodes }))
        })
        .collect()
}

/// The node an agent pod runs on.
fn on_node(pod: &Arc<Pod>) -> Option<String> {
    pod.spec.as_ref()?.node_name.clone()
}

/// An agent pod being deleted, or one that asked for a handover.
fn agent_leaving(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        || pod.metadata.annotations.as_ref().is_some_and(|a| {
            a.get(crate::api::HANDOVER_ANNOTATION)
                .is_some_and(|v| v == crate::api::HANDOVER_REQUESTED)
        })
}

fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Deletes the floating ENIs of nodes that no longer exist (tag-scoped, detached only).
/// Best effort: a failure is logged and tried again at the next resync.
async fn cleanup_orphans<C: Cloud>(ctx: &Ctx<C>, cluster: &str, nodes: &[NodeView]) {
    let names: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
    match crate::cloud::delete_orphaned_floating_enis(&ctx.cloud, cluster, &names).await {
        Ok(c) if !c.deleted.is_empty() || !c.attached.is_empty() => tracing::info!(
            deleted = ?c.deleted,
            still_attached = ?c.attached,
            "floating ENIs of nodes that no longer exist"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not clean up floating ENIs of deleted nodes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::fake::FakeCloud;
    use crate::cloud::Allocation;

    fn allocation(id: &str) -> Allocation {
        Allocation {
            allocation_id: id.into(),
            public_ip: Some("198.51.100.7".parse().unwrap()),
            customer_owned_ip: None,
            customer_owned_pool: None,
            network_border_group: None,
            association: None,
        }
    }

    fn needs(allocations: &[&str]) -> Needs {
        Needs {
            allocations: allocations.iter().map(|a| a.to_string()).collect(),
            node_enis: false,
            instances: HashSet::new(),
            route_tables: Vec::new(),
            cluster: "c1".into(),
        }
    }

    /// A FloatingIP created after the last read names an allocation that read did not ask
    /// for: it is read at once, not reported missing until the resync.
    #[tokio::test]
    async fn a_newly_named_allocation_is_read_at_once() {
        let cloud = FakeCloud {
            allocations: vec![allocation("eipalloc-a"), allocation("eipalloc-b")].into(),
            ..Default::default()
        };
        let mut cache = SubnetCache::default();
        let hour = Duration::from_secs(3600);
        let one = needs(&["eipalloc-a"]);
        let errors = read_beyond_subnets(&cloud, &mut cache, &one, hour, false).await;
        assert!(errors.is_empty());
        let read = cache.reads.allocations.clone().unwrap();
        assert_eq!(read.keys().collect::<Vec<_>>(), ["eipalloc-a"]);

        let both = needs(&["eipalloc-a", "eipalloc-b"]);
        assert!(read_beyond_subnets(&cloud, &mut cache, &both, hour, false)
            .await
            .is_empty());
        let read = cache.reads.allocations.clone().unwrap();
        assert!(read.contains_key("eipalloc-b"), "{read:?}");
        // Nothing new asked for: the read is reused until the resync.
        cloud.allocations.lock().unwrap().clear();
        assert!(read_beyond_subnets(&cloud, &mut cache, &both, hour, false)
            .await
            .is_empty());
        assert_eq!(cache.reads.allocations.as_ref().map(HashMap::len), Some(2));
    }

    fn node(name: &str, edge: bool) -> NodeView {
        let labels = match edge {
            true => serde_json::json!({"floatip.io/edge": "true"}),
            false => serde_json::json!({}),
        };
        let n: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels},
        }))
        .unwrap();
        NodeView::from_node(&n)
    }

    fn fip(selector: serde_json::Value) -> Arc<FloatingIP> {
        let mut spec = serde_json::json!({"address": "10.0.8.100", "subnetId": "subnet-a"});
        if !selector.is_null() {
            spec["nodeSelector"] = selector;
        }
        let f = serde_json::from_value(serde_json::json!({
            "apiVersion": "floatip.io/v1alpha1", "kind": "FloatingIP",
            "metadata": {"name": "a"}, "spec": spec,
        }));
        Arc::new(f.unwrap())
    }

    fn seen(fips: Vec<Arc<FloatingIP>>, ready: &[&str]) -> Seen {
        Seen {
            fips,
            nodes: vec![node("n1", true), node("n2", true), node("n3", false)],
            agents_ready: ready.iter().map(|n| n.to_string()).collect(),
            agents_leaving: HashSet::new(),
            enis: HashMap::new(),
            subnets: HashMap::new(),
            reads: Reads::default(),
            health: HashMap::new(),
            reensured: HashMap::new(),
            peers: HashMap::new(),
            cloud_errors: BTreeMap::new(),
            retry: false,
        }
    }

    /// floatip_node_agent_ready{node}: the nodes some FloatingIP may use, each with whether its
    /// agent is ready; none without a FloatingIP.
    #[test]
    fn agents_ready_covers_the_nodes_a_floatingip_selects() {
        let edge = serde_json::json!({"matchLabels": {"floatip.io/edge": "true"}});
        let s = seen(vec![fip(edge)], &["n1", "n3"]);
        let want: BTreeMap<String, bool> =
            [("n1".to_string(), true), ("n2".to_string(), false)].into();
        assert_eq!(s.agents_ready(), want, "n3 is selected by none");
        let s = seen(vec![fip(serde_json::Value::Null)], &["n2"]);
        assert_eq!(s.agents_ready().len(), 3, "no selector: every node");
        assert_eq!(s.agents_ready().get("n2"), Some(&true));
        assert!(seen(vec![], &["n1"]).agents_ready().is_empty());
    }
}
