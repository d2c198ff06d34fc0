//! One pass's decisions for every FloatingIP, from snapshots of the cluster and of EC2. Pure:
//! no I/O, so conflicts, drift, candidates and moves are all unit-tested.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;

use super::doubt::{self, PeerReport};
use crate::api::{validate_spec, FloatingIP, InterfaceChoice, Mode, MoveReason, SpecErrors};
use crate::cloud::{Eni, Subnet};
use crate::mode::Unusable;
use crate::nodes::{node_fitness, NodeView, Unfit};
use crate::placement::{self, Candidate, Decision, Incumbent};
use crate::probe::{Health, Target, TargetState};

pub use crate::status::Seat;

/// Everything a pass knows.
pub struct Picture<'a> {
    pub fips: &'a [Arc<FloatingIP>],
    pub nodes: &'a [NodeView],
    /// Nodes with a ready agent; None when agents are not required.
    pub agents_ready: Option<&'a HashSet<String>>,
    /// Nodes whose agent is shutting down and asked to hand its addresses over.
    pub agents_leaving: &'a HashSet<String>,
    /// ENIs by subnet, as EC2 last reported them. A subnet missing here could not be read.
    pub enis: &'a HashMap<String, Vec<Eni>>,
    /// The subnets themselves (their address blocks), read with the ENIs.
    pub subnets: &'a HashMap<String, Subnet>,
    pub cluster: &'a str,
    pub now: Timestamp,
    /// Health-check results by target (the probe engine's snapshot).
    pub health: &'a HashMap<Target, TargetState>,
    /// FloatingIPs whose assignment was re-ensured because the address failed while its holder
    /// passed, and how long ago.
    pub reensured: &'a HashMap<String, Duration>,
    /// What each node's agent sees of the holders, by the agent's node: the second vantage
    /// point an unplanned move needs while the controller doubts its own probes.
    pub peers: &'a HashMap<String, PeerReport>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// The spec is invalid: never acted on.
    Invalid { name: String, errors: SpecErrors },
    /// Another, older FloatingIP has the same address: never acted on.
    Conflict { name: String, winner: String },
    /// Its mode is not carried out by this version: never acted on.
    Unsupported { name: String, why: String },
    /// EC2 would refuse the address in its subnet: never acted on, so it cannot fail a
    /// batched call for other FloatingIPs.
    Unusable { name: String, problem: Unusable },
    /// Being deleted: take the address off these ENIs (none for FloatingIPs that were never
    /// acted on), then release the finalizer.
    Release {
        name: String,
        address: IpAddr,
        from: Vec<String>,
    },
    /// EC2 for this subnet could not be read this pass.
    Unknown { name: String },
    /// A valid, unique, live FloatingIP.
    Place(Box<Placement>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub name: String,
    pub address: IpAddr,
    /// Who holds the address in EC2 now.
    pub holder: Option<Seat>,
    /// An ENI floatip does not manage holds the address: never taken from it.
    pub foreign: Option<String>,
    pub decision: Decision,
    /// Where a Move goes.
    pub target: Option<Seat>,
    /// For an unplanned move (the holder failing its checks): the target's own check, probed
    /// once more right before the move, so that it goes only where something answers now.
    pub confirm_target: Option<Target>,
    /// Whether the holder is fit, for the Ready condition.
    pub holder_fit: Option<Result<(), Unfit>>,
    /// The holder's own health check (Unknown without a holder or a check): a holder that
    /// fails it is not Ready, whether or not the address can move yet.
    pub holder_health: Health,
    /// Fit nodes, for messages.
    pub candidates: usize,
    /// The address's own health check, when it has one.
    pub vip: Option<VipHealth>,
    /// Why a move its checks call for is held: the controller doubts its own probes and no
    /// agent confirms the holder is down.
    pub doubt: Option<String>,
}

/// What the address's health check says, for the Healthy condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipHealth {
    pub target: Target,
    pub health: Health,
    pub last_failure: Option<String>,
    /// How long it has been failing (zero when it is not).
    pub failing_for: Duration,
    /// Still Up, but its latest probe failed.
    pub suspect: bool,
}

/// How long a first-attach claim by `floatip attach` is left alone while its node's agent starts.
pub const ATTACH_CLAIM_TIMEOUT: Duration = Duration::from_secs(120);

/// The finalizer floatip puts on a FloatingIP it acts on.
pub const FINALIZER: &str = "floatip.io/release";

/// Decides, for every FloatingIP in name order, what this pass should do.
pub fn plan(picture: &Picture<'_>) -> Vec<Plan> {
    let mut fips: Vec<&Arc<FloatingIP>> = picture.fips.iter().collect();
    fips.sort_by_key(|f| f.name_any());
    let winners = conflict_winners(&fips);
    let node_ips: HashMap<IpAddr, String> = picture
        .nodes
        .iter()
        .filter_map(|n| Some((n.internal_ip?, n.name.clone())))
        .collect();
    let self_doubt = doubt::self_doubt(&node_ips, picture.health);
    // Addresses per node as EC2 has them now, for spreading.
    let mut load: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    let mut located = Vec::new();
    for fip in &fips {
        match locate(picture, fip, &winners) {
            Ok(l) => {
                if let Some(h) = &l.holder {
                    *load.entry(h.node.clone()).or_default() += 1;
                }
                located.push(l);
            }
            Err(plan) => out.push(plan),
        }
    }
    for l in located {
        out.push(act(picture, l, &mut load, self_doubt.as_deref()));
    }
    out.sort_by(|a, b| plan_name(a).cmp(plan_name(b)));
    out
}

/// A valid, unique, live FloatingIP of a mode carried out, and where EC2 has its address.
struct Located<'a> {
    fip: &'a FloatingIP,
    name: String,
    address: IpAddr,
    /// A managed ENI holding the address.
    holder: Option<Seat>,
    /// An ENI floatip does not manage holding the address.
    foreign: Option<String>,
}

/// Everything that settles a FloatingIP before placement: invalid, conflicting, unsupported,
/// EC2 unread, an address EC2 would refuse, being deleted. Otherwise where its address is.
fn locate<'a>(
    picture: &Picture<'_>,
    fip: &'a FloatingIP,
    winners: &HashMap<IpAddr, String>,
) -> Result<Located<'a>, Plan> {
    let name = fip.name_any();
    if let Err(errors) = validate_spec(&fip.spec) {
        return Err(release_or(fip, Plan::Invalid { name, errors }));
    }
    let address = crate::api::parse_address(&fip.spec.address).expect("validated");
    let winner = &winners[&address];
    if *winner != name {
        let winner = winner.clone();
        return Err(release_or(fip, Plan::Conflict { name, winner }));
    }
    if let Some(why) = fip.spec.mode.not_supported() {
        return Err(release_or(fip, Plan::Unsupported { name, why }));
    }
    let subnet = fip.spec.subnet_id.clone().unwrap_or_default();
    let Some(enis) = picture.enis.get(&subnet) else {
        return Err(Plan::Unknown { name });
    };
    if let Some(Err(problem)) = picture
        .subnets
        .get(&subnet)
        .map(|s| crate::mode::usable::check(address, s, enis))
    {
        return Err(release_or(fip, Plan::Unusable { name, problem }));
    }
    let holding: Vec<&Eni> = enis.iter().filter(|e| e.holds(address)).collect();
    if fip.metadata.deletion_timestamp.is_some() {
        let from = if has_finalizer(fip) {
            holding.iter().map(|e| e.id.clone()).collect()
        } else {
            Vec::new()
        };
        return Err(Plan::Release {
            name,
            address,
            from,
        });
    }
    let holder = holding.first().and_then(|e| holder_on(picture, fip, e));
    let foreign = holding
        .first()
        .filter(|_| holder.is_none())
        .map(|e| e.id.clone());
    Ok(Located {
        fip,
        name,
        address,
        holder,
        foreign,
    })
}

/// The holder an ENI makes, if floatip manages it. An ENI of ours whose instance no node
/// claims any more still holds the address: its node is gone (named as status last recorded
/// it, else by the instance).
fn holder_on(picture: &Picture<'_>, fip: &FloatingIP, e: &Eni) -> Option<Seat> {
    let instance = e.instance_id.as_deref()?;
    let node = match picture
        .nodes
        .iter()
        .find(|n| n.instance_id.as_deref() == Some(instance))
    {
        Some(n) => n.name.clone(),
        None => fip
            .status
            .as_ref()
            .and_then(|s| s.holder.as_ref())
            .filter(|h| h.instance_id == instance)
            .map(|h| h.node.clone())
            .unwrap_or_else(|| format!("instance {instance}")),
    };
    managed(e, fip, picture.cluster).then(|| Seat {
        node,
        instance_id: instance.to_string(),
        eni: e.id.clone(),
        mac: e.mac.clone(),
    })
}

/// One FloatingIP's view of the nodes: which may hold it, and what its check says of each.
struct View<'a, 'w> {
    picture: &'a Picture<'w>,
    fip: &'a FloatingIP,
    enis: &'a [Eni],
}

impl View<'_, '_> {
    fn fitness(&self, n: &NodeView) -> Result<Seat, Unfit> {
        let (picture, fip) = (self.picture, self.fip);
        node_fitness(n, &fip.spec)?;
        if picture.agents_leaving.contains(&n.name) {
            return Err(Unfit::AgentLeaving);
        }
        if picture
            .agents_ready
            .is_some_and(|ready| !ready.contains(&n.name))
        {
            return Err(Unfit::NoAgent);
        }
        let instance = n.instance_id.clone().ok_or(Unfit::NoInstance)?;
        let subnet = fip.spec.subnet_id.as_deref().unwrap_or_default();
        let eni = self
            .enis
            .iter()
            .find(|e| {
                e.instance_id.as_deref() == Some(instance.as_str())
                    && managed(e, fip, picture.cluster)
            })
            .ok_or_else(|| Unfit::NoInterface(no_interface(fip, subnet, picture.cluster)))?;
        Ok(Seat {
            node: n.name.clone(),
            instance_id: instance,
            eni: eni.id.clone(),
            mac: eni.mac.clone(),
        })
    }

    fn node(&self, name: &str) -> Option<&NodeView> {
        self.picture.nodes.iter().find(|n| n.name == name)
    }

    fn fit_of(&self, node: &str) -> Result<(), Unfit> {
        match self.node(node) {
            None => Err(Unfit::Gone),
            Some(n) => self.fitness(n).map(|_| ()),
        }
    }

    /// What the probes say of a node on this FloatingIP's check, if they say anything.
    fn node_state(&self, name: &str) -> Option<&TargetState> {
        let hc = self.fip.spec.health_check.as_ref()?;
        self.picture
            .health
            .get(&Target::for_health_check(hc, self.node(name)?.internal_ip?).ok()?)
    }

    fn node_health(&self, name: &str) -> Health {
        self.node_state(name)
            .map(|s| s.state)
            .unwrap_or(Health::Unknown)
    }

    /// How long the node's check has been failing (zero when it passes).
    fn node_failing_for(&self, name: &str) -> Duration {
        match self.node_state(name) {
            Some(s) if s.state == crate::probe::Health::Down => {
                s.failing_since.unwrap_or(s.since).elapsed()
            }
            Some(s) => s.failing_since.map(|f| f.elapsed()).unwrap_or_default(),
            None => Duration::ZERO,
        }
    }

    /// A candidate must answer now: one whose latest probe failed is no candidate yet, even
    /// while it is still Up.
    fn fresh_node_health(&self, name: &str) -> Health {
        match self.node_state(name) {
            Some(s) if s.failing_since.is_some() => Health::Unknown,
            _ => self.node_health(name),
        }
    }

    /// What the address's own check says.
    fn vip(&self, address: IpAddr) -> Option<VipHealth> {
        let hc = self.fip.spec.health_check.as_ref()?;
        let target = Target::for_health_check(hc, address).ok()?;
        let state = self.picture.health.get(&target);
        let health = state.map(|s| s.state).unwrap_or(Health::Unknown);
        Some(VipHealth {
            health,
            last_failure: state.and_then(|s| s.last_failure.clone()),
            failing_for: state
                .filter(|_| health == Health::Down)
                .map(|s| s.since.elapsed())
                .unwrap_or_default(),
            suspect: health == Health::Up && state.is_some_and(|s| s.failing_since.is_some()),
            target,
        })
    }

    /// For an unplanned move: the target's check, to probe once more right before it.
    fn confirm_target(&self, decision: &Decision) -> Option<Target> {
        let Decision::Move {
            to,
            reason: MoveReason::HolderUnhealthy,
        } = decision
        else {
            return None;
        };
        let hc = self.fip.spec.health_check.as_ref()?;
        Target::for_health_check(hc, self.node(to)?.internal_ip?).ok()
    }
}

/// The nodes that may hold the address now (with where it would go on each), and why no node
/// can when none can.
fn fit_nodes<'n>(view: &View<'_, 'n>) -> (BTreeMap<&'n str, Seat>, String) {
    let mut fit = BTreeMap::new();
    let mut unfit: Vec<(&str, Unfit)> = Vec::new();
    for n in view.picture.nodes {
        match view.fitness(n) {
            Ok(p) => {
                fit.insert(n.name.as_str(), p);
            }
            Err(u) => unfit.push((n.name.as_str(), u)),
        }
    }
    (fit, crate::nodes::no_fit_node(&unfit))
}

/// What this pass does with one located FloatingIP.
fn act(
    picture: &Picture<'_>,
    l: Located<'_>,
    load: &mut BTreeMap<String, usize>,
    self_doubt: Option<&str>,
) -> Plan {
    let subnet = l.fip.spec.subnet_id.as_deref().unwrap_or_default();
    let view = View {
        picture,
        fip: l.fip,
        enis: &picture.enis[subnet],
    };
    let vip = view.vip(l.address);
    let (fit, no_fit_node) = fit_nodes(&view);
    let candidates: Vec<Candidate> = fit
        .keys()
        .map(|n| Candidate {
            node: n.to_string(),
            load: load.get(*n).copied().unwrap_or(0),
            health: view.fresh_node_health(n),
        })
        .collect();
    let waiting = |decision: Decision, foreign: Option<String>| {
        Plan::Place(Box::new(Placement {
            name: l.name.clone(),
            address: l.address,
            holder: None,
            foreign,
            decision,
            target: None,
            confirm_target: None,
            holder_fit: None,
            holder_health: Health::Unknown,
            candidates: candidates.len(),
            vip: vip.clone(),
            doubt: None,
        }))
    };
    if let Some(eni) = &l.foreign {
        let why = format!("{} is held by {eni}, which floatip does not manage; release it there or choose another address", l.address);
        return waiting(Decision::Stuck { why }, Some(eni.clone()));
    }
    if let Some(remaining) = attach_claim_hold(&view, &l) {
        return waiting(Decision::Hold { remaining }, None);
    }
    let decision = match repair(&l, &fit) {
        Some(d) => d,
        None => place(&view, &l, &candidates, &no_fit_node, vip.as_ref()),
    };
    let doubt = held_in_doubt(&view, &l, &decision, self_doubt);
    let decision = if doubt.is_some() {
        Decision::Stay
    } else {
        decision
    };
    let target = match &decision {
        Decision::Move { to, .. } => fit.get(to.as_str()).cloned(),
        _ => None,
    };
    if let Some(t) = &target {
        *load.entry(t.node.clone()).or_default() += 1;
        if let Some(count) = l.holder.as_ref().and_then(|h| load.get_mut(&h.node)) {
            *count = count.saturating_sub(1);
        }
    }
    Plan::Place(Box::new(Placement {
        name: l.name,
        address: l.address,
        holder_fit: l.holder.as_ref().map(|h| view.fit_of(&h.node)),
        holder_health: l
            .holder
            .as_ref()
            .map(|h| view.node_health(&h.node))
            .unwrap_or(Health::Unknown),
        holder: l.holder,
        foreign: None,
        confirm_target: view.confirm_target(&decision),
        decision,
        target,
        candidates: candidates.len(),
        vip,
        doubt,
    }))
}

/// Why the decision is held, if the controller doubts its own probes: an unplanned move on its
/// evidence alone waits unless an agent confirms the holder is down. The same goes for a fit
/// holder its checks give up on with nowhere to go: what is in doubt is the controller's view,
/// and that is what status must say.
fn held_in_doubt(
    view: &View<'_, '_>,
    l: &Located<'_>,
    decision: &Decision,
    self_doubt: Option<&str>,
) -> Option<String> {
    let h = l.holder.as_ref()?;
    let unplanned = match decision {
        Decision::Move { reason, .. } => *reason == MoveReason::HolderUnhealthy,
        Decision::Stuck { .. } => view.fit_of(&h.node).is_ok(),
        _ => false,
    };
    if !unplanned {
        return None;
    }
    let failing_for = view.node_failing_for(&h.node);
    doubt::hold_reason(self_doubt, &h.node, failing_for, view.picture.peers)
}

/// `floatip attach` claims an unheld address for its node while that node's agent is not
/// ready yet (it is the agent's init container): a fresh claim is left to finish for this long.
fn attach_claim_hold(view: &View<'_, '_>, l: &Located<'_>) -> Option<Duration> {
    let status = l.fip.status.as_ref()?;
    let p = status
        .pending_move
        .as_ref()
        .filter(|p| p.reason == MoveReason::Initial && l.holder.is_none())?;
    let age = view.picture.now.duration_since(p.since.0);
    let waiting_for_agent = view
        .node(&p.to)
        .is_some_and(|n| matches!(view.fitness(n), Err(Unfit::NoAgent)));
    (waiting_for_agent && age.as_secs() < ATTACH_CLAIM_TIMEOUT.as_secs() as i64).then(|| {
        ATTACH_CLAIM_TIMEOUT.saturating_sub(Duration::from_secs(age.as_secs().max(0) as u64))
    })
}

/// EC2 disagrees with what floatip intended: an interrupted move, or a change made outside
/// floatip. The move that puts the address where floatip meant it to be, if that node can
/// still take it.
fn repair(l: &Located<'_>, fit: &BTreeMap<&str, Seat>) -> Option<Decision> {
    let status = l.fip.status.as_ref();
    let pending = status.and_then(|s| s.pending_move.as_ref());
    let intended = pending
        .map(|p| p.to.clone())
        .or_else(|| status?.holder.as_ref().map(|h| h.node.clone()))?;
    if l.holder.as_ref().is_some_and(|h| h.node == intended) || !fit.contains_key(intended.as_str())
    {
        return None;
    }
    Some(Decision::Move {
        to: intended,
        reason: pending.map(|p| p.reason).unwrap_or(MoveReason::Drift),
    })
}

/// Where placement puts the address (the pure rules of [`placement::decide`]).
fn place(
    view: &View<'_, '_>,
    l: &Located<'_>,
    candidates: &[Candidate],
    no_fit_node: &str,
    vip: Option<&VipHealth>,
) -> Decision {
    let fip = l.fip;
    let status = fip.status.as_ref();
    let holder = l.holder.as_ref().map(|h| {
        let health = view.node_health(&h.node);
        // A holder failing its own check takes along every address whose check has started
        // failing too, in this pass: their probes run out of phase, and waiting for each to go
        // Down split one failover into several calls.
        let vip_health = match vip {
            Some(v) if v.suspect && health == Health::Down => Health::Unknown,
            Some(v) => v.health,
            None => Health::Unknown,
        };
        Incumbent {
            node: h.node.clone(),
            since: status
                .and_then(|s| s.holder.as_ref())
                .filter(|sh| sh.node == h.node)
                .map(|sh| sh.since.0)
                .unwrap_or(view.picture.now),
            fit: view.fit_of(&h.node),
            health,
            vip: vip_health,
            vip_failing_for: vip.map(|v| v.failing_for).unwrap_or_default(),
        }
    });
    let hc = fip.spec.health_check.as_ref();
    let d = placement::decide(&placement::Input {
        holder,
        candidates,
        no_fit_node,
        preferred: &fip.spec.preferred_nodes,
        failback: fip.spec.failback,
        min_hold: Duration::from_secs(fip.spec.failover.min_hold_seconds.max(0) as u64),
        now: view.picture.now,
        health_checked: hc.is_some(),
        reensured: view.picture.reensured.get(&l.name).copied(),
        // Assigning the address again makes the VPC route it again too.
        reensure_grace: hc.map(settle).unwrap_or_default(),
        settle: hc.map(settle).unwrap_or_default(),
        holder_check_wait: hc
            .map(|hc| Duration::from_millis(hc.interval_ms.max(0) as u64))
            .unwrap_or_default(),
    });
    // An address that was assigned and vanished comes back as drift.
    match d {
        Decision::Move {
            to,
            reason: MoveReason::Initial,
        } if status.is_some_and(|s| s.holder.is_some()) => Decision::Move {
            to,
            reason: MoveReason::Drift,
        },
        d => d,
    }
}

/// How long a new holder is given before the address's own failing check counts against it:
/// the VPC's routing of a moved address ([`VPC_CONVERGENCE`]) plus the check's way back up.
pub fn settle(hc: &crate::api::HealthCheck) -> Duration {
    VPC_CONVERGENCE + reensure_grace(hc)
}

/// Time AWS may take to route a moved secondary address to its new ENI: typically about
/// 1.2 s, with a margin for slower cases.
pub const VPC_CONVERGENCE: Duration = Duration::from_secs(3);

/// How long a re-ensured address may keep failing before it moves: long enough for the agent
/// to put it back and for the probe to see it pass again.
pub fn reensure_grace(hc: &crate::api::HealthCheck) -> Duration {
    let interval = Duration::from_millis(hc.interval_ms.max(0) as u64);
    (interval * (hc.success_threshold.max(1) as u32 + 1)).max(Duration::from_secs(2))
}

pub fn plan_name(p: &Plan) -> &str {
    match p {
        Plan::Invalid { name, .. }
        | Plan::Conflict { name, .. }
        | Plan::Unsupported { name, .. }
        | Plan::Unusable { name, .. }
        | Plan::Release { name, .. }
        | Plan::Unknown { name } => name,
        Plan::Place(a) => &a.name,
    }
}

pub fn has_finalizer(fip: &FloatingIP) -> bool {
    fip.finalizers().iter().any(|f| f == FINALIZER)
}

/// A FloatingIP being deleted that floatip never acted on only needs its finalizer (if any)
/// released; it must not touch the address, which may belong to another FloatingIP.
fn release_or(fip: &FloatingIP, plan: Plan) -> Plan {
    if fip.metadata.deletion_timestamp.is_some() {
        Plan::Release {
            name: fip.name_any(),
            address: crate::api::parse_address(&fip.spec.address)
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
            from: Vec::new(),
        }
    } else {
        plan
    }
}

/// Whether floatip may put this FloatingIP's address on (or take it off) the ENI.
fn managed(eni: &Eni, fip: &FloatingIP, cluster: &str) -> bool {
    match (fip.spec.mode, fip.spec.interface.unwrap_or_default()) {
        (Mode::SecondaryIP, InterfaceChoice::Dedicated) => eni.is_floating_for(cluster),
        (Mode::SecondaryIP, InterfaceChoice::Primary) => eni.device_index == Some(0),
        _ => false,
    }
}

fn no_interface(fip: &FloatingIP, subnet: &str, cluster: &str) -> String {
    match fip.spec.interface.unwrap_or_default() {
        InterfaceChoice::Dedicated => format!(
            "the node has no floating ENI of cluster {cluster} in {subnet} (floatip attach creates it)"
        ),
        InterfaceChoice::Primary => format!("the node's primary ENI is not in {subnet}"),
    }
}

/// For each address, the FloatingIP that owns it: the oldest, then the first by name.
fn conflict_winners(fips: &[&Arc<FloatingIP>]) -> HashMap<IpAddr, String> {
    let mut winners: HashMap<IpAddr, (Option<Timestamp>, String)> = HashMap::new();
    for f in fips {
        let Some(addr) = crate::api::parse_address(&f.spec.address) else {
            continue;
        };
        let key = (
            f.metadata.creation_timestamp.as_ref().map(|t| t.0),
            f.name_any(),
        );
        winners
            .entry(addr)
            .and_modify(|w| {
                if key < *w {
                    *w = key.clone();
                }
            })
            .or_insert(key);
    }
    winners.into_iter().map(|(a, (_, n))| (a, n)).collect()
}

#[cfg(test)]
mod tests;
