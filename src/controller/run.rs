//! `floatip controller`: watches, leader election, the pass loop, the admin server.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use tokio::sync::Notify;

use super::execute::Ctx;
use super::plan::{plan, Picture, Plan};
use crate::admin::{self, Readiness};
use crate::api::FloatingIP;
use crate::api::MoveReason;
use crate::cli::parse_duration;
use crate::cloud::aws::Ec2;
use crate::cloud::{Cloud, CloudError, Eni, Subnet};
use crate::leader::{self, LeaderConfig};
use crate::metrics::Metrics;
use crate::nodes::NodeView;
use crate::placement::Decision;
use crate::probe::{health_check_targets, merge_targets, Health, ProbeEngine, ProbeSpec, Target};
use crate::retry::backoff;
use std::net::IpAddr;

/// `floatip controller` flags; each can also be set through its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// Name of the EKS cluster; floating ENIs are recognised by their floatip.io/cluster tag.
    #[arg(long, env = "FLOATIP_CLUSTER_NAME")]
    pub cluster_name: String,
    /// Namespace of the leader Lease (the controller's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "floatip-system")]
    pub namespace: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: String,
    /// Name of the leader Lease.
    #[arg(long, env = "FLOATIP_LEASE_NAME", default_value = "floatip-controller")]
    pub lease_name: String,
    /// How long a leader's Lease stays valid without renewal: the worst-case takeover time.
    #[arg(long, env = "FLOATIP_LEASE_DURATION", default_value = "4s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// A leader that could not renew for this long stops writing. Shorter than the lease.
    #[arg(long, env = "FLOATIP_RENEW_DEADLINE", default_value = "3s", value_parser = parse_duration)]
    pub renew_deadline: Duration,
    /// How often the Lease is renewed or retried.
    #[arg(long, env = "FLOATIP_RETRY_PERIOD", default_value = "500ms", value_parser = parse_duration)]
    pub retry_period: Duration,
    /// How often EC2 is read again in full: every subnet's ENIs, orphaned floating ENIs.
    #[arg(long, env = "FLOATIP_RESYNC", default_value = "30s", value_parser = parse_duration)]
    pub resync: Duration,
    /// How often the ENIs holding addresses are read back, to notice within seconds an
    /// address changed outside floatip (one DescribeNetworkInterfaces per 200 holding ENIs).
    #[arg(long, env = "FLOATIP_HOLDER_CHECK", default_value = "2s", value_parser = parse_duration)]
    pub holder_check: Duration,
    /// Namespace of the agent pods.
    #[arg(
        long,
        env = "FLOATIP_AGENT_NAMESPACE",
        default_value = "floatip-system"
    )]
    pub agent_namespace: String,
    /// Label selector of the agent pods.
    #[arg(
        long,
        env = "FLOATIP_AGENT_SELECTOR",
        default_value = "app.kubernetes.io/name=floatip,app.kubernetes.io/component=agent"
    )]
    pub agent_selector: String,
    /// Only nodes with a ready agent pod may hold an address. Turn off only where the address
    /// is configured on the node by other means.
    #[arg(long, env = "FLOATIP_REQUIRE_AGENT", default_value_t = true, action = clap::ArgAction::Set)]
    pub require_agent: bool,
    /// Attempts per EC2 call, the first included; throttling and 5xx are retried with
    /// jittered exponential backoff.
    #[arg(long, env = "FLOATIP_EC2_ATTEMPTS", default_value_t = 4)]
    pub ec2_attempts: u32,
    /// First backoff between EC2 attempts.
    #[arg(long, env = "FLOATIP_EC2_BACKOFF", default_value = "100ms", value_parser = parse_duration)]
    pub ec2_backoff: Duration,
    /// Health checks in flight at once, over all targets.
    #[arg(long, env = "FLOATIP_PROBE_CONCURRENCY", default_value_t = 256)]
    pub probe_concurrency: usize,
    /// Address of the admin server (/metrics, /livez, /readyz).
    #[arg(long, env = "FLOATIP_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,
}

/// Each subnet and its ENIs from EC2, with when they were read.
#[derive(Default)]
struct EniCache {
    subnets: HashMap<String, (Instant, Subnet, Vec<Eni>)>,
}

/// What the loop remembers between passes.
struct Memory {
    cache: EniCache,
    /// When the failing run of each Down target began: for the detection-time metric.
    first_failures: HashMap<Target, Instant>,
    /// When each FloatingIP's assignment was last re-ensured because its address failed.
    reensured_at: HashMap<String, Instant>,
}

pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let metrics = Metrics::new();
    let readiness = Arc::new(Readiness::default());
    admin::serve(
        args.admin_addr,
        Arc::new(metrics.clone()),
        readiness.clone(),
    )
    .await?;
    let cloud = Ec2::from_env(args.ec2_attempts, args.ec2_backoff, metrics.clone()).await;
    let (leadership, mut lease_task) = leader::spawn(
        client.clone(),
        LeaderConfig {
            namespace: args.namespace.clone(),
            lease_name: args.lease_name.clone(),
            identity: args.identity.clone(),
            lease_duration: args.lease_duration,
            renew_deadline: args.renew_deadline,
            retry_period: args.retry_period,
        },
    )?;

    let trigger = Arc::new(Notify::new());
    // Every replica probes, so a new leader decides on warm results.
    let (engine, mut transitions) = ProbeEngine::new(args.probe_concurrency, metrics.clone());
    let fips = watch_store(
        Api::<FloatingIP>::all(client.clone()),
        watcher::Config::default(),
        &trigger,
    );
    let nodes = watch_store(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        &trigger,
    );
    let agents = watch_store(
        Api::<Pod>::namespaced(client.clone(), &args.agent_namespace),
        watcher::Config::default().labels(&args.agent_selector),
        &trigger,
    );
    {
        let (fips, nodes, agents, readiness) = (
            fips.clone(),
            nodes.clone(),
            agents.clone(),
            readiness.clone(),
        );
        let trigger = trigger.clone();
        tokio::spawn(async move {
            let _ = tokio::join!(
                fips.wait_until_ready(),
                nodes.wait_until_ready(),
                agents.wait_until_ready()
            );
            readiness.watches_synced.store(true, Ordering::Relaxed);
            tracing::info!("watches synced");
            // Events that arrived before the sync were not acted on: act now.
            trigger.notify_one();
        });
    }

    let gate_leader = leadership.clone();
    let ctx = Ctx {
        client: client.clone(),
        cloud,
        metrics: metrics.clone(),
        events: super::events::Events::new(client.clone(), &args.identity),
        gate: Arc::new(move || gate_leader.guard()),
        backoffs: Default::default(),
    };
    let mut leader_changes = leadership.changes();
    let mut memory = Memory {
        cache: EniCache::default(),
        first_failures: HashMap::new(),
        reensured_at: HashMap::new(),
    };
    let mut resync = tokio::time::interval(args.resync);
    let mut holder_check = tokio::time::interval(args.holder_check);
    holder_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut attempt = 0u32;
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut recheck_at: Option<tokio::time::Instant> = None;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tracing::info!(identity = %args.identity, cluster = %args.cluster_name, "controller started");
    let mut window = SETTLE_EVENTS;
    // Kept until a pass runs: a refresh asked for while not leading or not synced still happens.
    let mut full_refresh = true;
    loop {
        tokio::select! {
            done = &mut lease_task => {
                // Without a working lease task this replica cannot know whether it may write.
                anyhow::bail!("leader election stopped: {done:?}");
            }
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM: releasing the lease");
                leadership.release().await;
                return Ok(());
            }
            _ = trigger.notified() => {}
            Some(t) = transitions.recv() => {
                // A health transition acts now, not at the next resync; a failure waits a
                // moment for the failures that come with it.
                if t.to == Health::Down {
                    window = COALESCE_FAILURES;
                }
                note_transition(&mut memory, t);
            }
            _ = resync.tick() => full_refresh = true,
            _ = holder_check.tick() => {
                if leadership.is_leader() && readiness.watches_synced.load(Ordering::Relaxed) {
                    check_holders(&ctx.cloud, &mut memory.cache, &fips.state()).await;
                }
            }
            _ = leader_changes.changed() => {
                let leading = *leader_changes.borrow_and_update();
                metrics.set_leader(leading);
                tracing::info!(leading, "leadership changed");
                // A new leader trusts nothing it read before.
                full_refresh |= leading;
            }
            _ = sleep_until(retry_at) => { retry_at = None; }
            _ = sleep_until(recheck_at) => { recheck_at = None; }
        }
        readiness
            .lease_known
            .store(leadership.state_known(), Ordering::Relaxed);
        if !readiness.watches_synced.load(Ordering::Relaxed) {
            continue;
        }
        engine.set_targets(probe_targets(&fips.state(), &nodes.state()));
        if !leadership.is_leader() {
            continue;
        }
        // Let a burst of watch events (or failures) land before deciding, so that what
        // happened together is decided together: one EC2 call per target ENI.
        tokio::time::sleep(std::mem::replace(&mut window, SETTLE_EVENTS)).await;
        while let Ok(t) = transitions.try_recv() {
            note_transition(&mut memory, t);
        }
        let outcome = pass(
            &ctx,
            &args,
            (&fips, &nodes, &agents),
            &engine,
            &mut memory,
            full_refresh,
        )
        .await;
        full_refresh = false;
        recheck_at = outcome.recheck.map(|d| tokio::time::Instant::now() + d);
        if outcome.retry {
            let wait = backoff(attempt);
            attempt = attempt.saturating_add(1);
            retry_at = Some(tokio::time::Instant::now() + wait);
        } else {
            attempt = 0;
        }
    }
}

/// When to plan again after a move was held back because its target stopped answering.
const RECHECK_SOON: Duration = Duration::from_millis(250);

/// How long a pass waits for more watch events after one arrives.
const SETTLE_EVENTS: Duration = Duration::from_millis(10);
/// How long a pass waits for more failures after a target goes Down: failures that happen
/// together (a node dying under several addresses) are moved in one call per target ENI.
/// Tens of milliseconds: every one of them is time clients wait.
const COALESCE_FAILURES: Duration = Duration::from_millis(40);

/// Books a health transition: when its failing run began, for the detection-time metric.
fn note_transition(memory: &mut Memory, t: crate::probe::Transition) {
    match (t.to, t.first_failure_at) {
        (Health::Down, Some(first)) => {
            memory.first_failures.insert(t.target, first);
        }
        _ => {
            memory.first_failures.remove(&t.target);
        }
    }
    tracing::info!(target = %t.target, from = %t.from, to = %t.to, reason = ?t.reason, "health changed");
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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

/// What to probe: each health-checked address, and each node's own address on the same check
/// (so the controller knows which nodes could take over). Shared targets merge to the strictest.
fn probe_targets(fips: &[Arc<FloatingIP>], nodes: &[Arc<Node>]) -> HashMap<Target, ProbeSpec> {
    let node_ips: Vec<IpAddr> = nodes
        .iter()
        .filter_map(|n| NodeView::from_node(n).internal_ip)
        .collect();
    let mut pairs = Vec::new();
    for fip in fips {
        let (Some(hc), Some(address)) = (
            &fip.spec.health_check,
            crate::api::parse_address(&fip.spec.address),
        ) else {
            continue;
        };
        let ips = std::iter::once(address).chain(node_ips.iter().copied());
        pairs.extend(health_check_targets(hc, ips));
    }
    merge_targets(pairs)
}

async fn pass<C: Cloud>(
    ctx: &Ctx<C>,
    args: &ControllerArgs,
    (fips, nodes, agents): (&Store<FloatingIP>, &Store<Node>, &Store<Pod>),
    engine: &ProbeEngine,
    memory: &mut Memory,
    full_refresh: bool,
) -> super::execute::Outcome {
    let cache = &mut memory.cache;
    let fip_list = fips.state();
    let health = engine.snapshot();
    let reensured: HashMap<String, Duration> = memory
        .reensured_at
        .iter()
        .map(|(n, at)| (n.clone(), at.elapsed()))
        .collect();
    let node_views: Vec<NodeView> = nodes
        .state()
        .iter()
        .map(|n| NodeView::from_node(n))
        .collect();
    let agent_pods = agents.state();
    let on_node = |p: &Pod| p.spec.as_ref()?.node_name.clone();
    let ready_agents: HashSet<String> = agent_pods
        .iter()
        .filter(|p| pod_ready(p))
        .filter_map(|p| on_node(p))
        .collect();
    let leaving_agents: HashSet<String> = agent_pods
        .iter()
        .filter(|p| agent_leaving(p))
        .filter_map(|p| on_node(p))
        .collect();

    // EC2 truth: one describe per subnet in use, reused until the next resync or move.
    let subnets: BTreeSet<String> = fip_list
        .iter()
        .filter(|f| f.spec.mode.not_supported().is_none())
        .filter_map(|f| f.spec.subnet_id.clone())
        .collect();
    let mut cloud_errors: BTreeMap<String, CloudError> = BTreeMap::new();
    let mut retry = false;
    for subnet in &subnets {
        let fresh = cache
            .subnets
            .get(subnet)
            .is_some_and(|(at, _, _)| at.elapsed() < args.resync);
        if fresh && !full_refresh {
            continue;
        }
        // The subnet first: a subnet that does not exist has no ENIs either, and its
        // FloatingIPs must say so rather than "no node is fit".
        let read = match ctx.cloud.subnet(subnet).await {
            Ok(info) => ctx.cloud.subnet_enis(subnet).await.map(|enis| (info, enis)),
            Err(e) => Err(e),
        };
        match read {
            Ok((info, enis)) => {
                cache
                    .subnets
                    .insert(subnet.clone(), (Instant::now(), info, enis));
            }
            Err(e) => {
                retry |= e.retryable();
                cache.subnets.remove(subnet);
                cloud_errors.insert(subnet.clone(), e);
            }
        }
    }
    cache.subnets.retain(|s, _| subnets.contains(s));
    if full_refresh && (ctx.gate)().is_ok() {
        cleanup_orphans(ctx, &args.cluster_name, &node_views).await;
    }
    let enis: HashMap<String, Vec<Eni>> = cache
        .subnets
        .iter()
        .map(|(s, (_, _, e))| (s.clone(), e.clone()))
        .collect();
    let subnet_info: HashMap<String, Subnet> = cache
        .subnets
        .iter()
        .map(|(s, (_, info, _))| (s.clone(), info.clone()))
        .collect();
    let plans = plan(&Picture {
        fips: &fip_list,
        nodes: &node_views,
        agents_ready: args.require_agent.then_some(&ready_agents),
        agents_leaving: &leaving_agents,
        enis: &enis,
        subnets: &subnet_info,
        cluster: &args.cluster_name,
        now: jiff::Timestamp::now(),
        health: &health,
        reensured: &reensured,
        peers: &peer_reports(&agent_pods),
    });
    let recheck = recheck_after(&plans);
    for p in &plans {
        let Plan::Place(a) = p else { continue };
        tracing::debug!(floatingip = %a.name, decision = ?a.decision, holder = ?a.holder.as_ref().map(|h| &h.node),
            vip = ?a.vip.as_ref().map(|v| v.health), candidates = a.candidates, "planned");
        let vip_passing = a.vip.as_ref().is_some_and(|v| v.health == Health::Up);
        if vip_passing || matches!(a.decision, Decision::Move { .. }) {
            memory.reensured_at.remove(&a.name);
        }
        if let (
            Decision::Move {
                reason: MoveReason::HolderUnhealthy,
                ..
            },
            Some(v),
        ) = (&a.decision, &a.vip)
        {
            if let Some(first) = memory.first_failures.get(&v.target) {
                ctx.metrics.failover_decided(first.elapsed().as_secs_f64());
            }
        }
    }
    let mut outcome = ctx.execute(&fip_list, plans, &cloud_errors).await;
    let now = Instant::now();
    for name in &outcome.reensured {
        memory.reensured_at.insert(name.clone(), now);
    }
    if outcome.moved > 0 || outcome.ec2_mutations > 0 {
        // What we changed is no longer what the cache says: read it again next pass.
        cache.subnets.clear();
    }
    outcome.retry |= retry;
    // A FloatingIP backing off is tried again when its wait ends, with nothing else changing.
    let backoff_due = {
        let mut backoffs = ctx.backoffs.lock().expect("backoffs lock");
        backoffs.retain(|name| fip_list.iter().any(|f| f.name_any() == name));
        backoffs.next_due()
    };
    let soon = outcome.recheck_soon.then_some(RECHECK_SOON);
    outcome.recheck = [recheck, backoff_due, soon].into_iter().flatten().min();
    outcome
}

/// Reads back the ENIs the cache says hold a FloatingIP's address; a subnet where EC2 no longer
/// agrees (an address unassigned or moved outside floatip) is dropped from the cache, so the
/// pass that follows reads it again and repairs it, seconds after the change instead of at the
/// next resync. A failed read changes nothing: the resync still comes.
async fn check_holders<C: Cloud>(cloud: &C, cache: &mut EniCache, fips: &[Arc<FloatingIP>]) {
    let addresses: HashSet<IpAddr> = fips
        .iter()
        .filter_map(|f| crate::api::parse_address(&f.spec.address))
        .collect();
    // (ENI, subnet, an address the cache has on it)
    let held: Vec<(String, String, IpAddr)> = cache
        .subnets
        .iter()
        .flat_map(|(subnet, (_, _, enis))| {
            enis.iter().flat_map(move |e| {
                e.secondary
                    .iter()
                    .map(move |a| (e.id.clone(), subnet.clone(), *a))
            })
        })
        .filter(|(_, _, a)| addresses.contains(a))
        .collect();
    let ids: Vec<String> = held
        .iter()
        .map(|(id, _, _)| id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut fresh: HashMap<String, Eni> = HashMap::new();
    for chunk in ids.chunks(200) {
        match cloud.enis(chunk).await {
            Ok(enis) => fresh.extend(enis.into_iter().map(|e| (e.id.clone(), e))),
            Err(e) => {
                tracing::debug!(error = %e, "could not read the holding ENIs back; the resync will");
                return;
            }
        }
    }
    let stale: BTreeSet<String> = held
        .into_iter()
        .filter(|(id, _, a)| !fresh.get(id).is_some_and(|e| e.holds(*a)))
        .map(|(_, subnet, _)| subnet)
        .collect();
    for subnet in stale {
        tracing::info!(
            subnet,
            "an address is no longer where floatip saw it in EC2: reading the subnet again"
        );
        cache.subnets.remove(&subnet);
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

/// What each agent published of the holders it probes (annotation
/// [`crate::api::PEER_VIEW_ANNOTATION`] on its pod), by its node. A pod without a readable view
/// contributes nothing.
fn peer_reports(pods: &[Arc<Pod>]) -> HashMap<String, super::doubt::PeerReport> {
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
            Some((node, super::doubt::PeerReport { age, nodes }))
        })
        .collect()
}

/// An agent pod being deleted, or one that asked for a handover.
fn agent_leaving(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        || pod.metadata.annotations.as_ref().is_some_and(|a| {
            a.get(crate::api::HANDOVER_ANNOTATION)
                .is_some_and(|v| v == crate::api::HANDOVER_REQUESTED)
        })
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

fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
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
