//! One pass's decisions for every FloatingIP, from snapshots of the cluster and of EC2. Pure:
//! no I/O, so conflicts, drift, candidates and moves are all unit-tested.
//!
//! Written against the mode port ([`crate::mode::AddressMode`]) only: which ENIs hold an address
//! and where it would sit on a node are the mode's to say. In steps: [`locate`] settles what
//! needs no placement (invalid, conflicting, unsupported, unread, unusable, being deleted) and
//! finds the holder; [`view`] is one FloatingIP's view of the nodes and their checks
//! ([`checks`] names the targets); [`decide`] places the address.

mod checks;
mod decide;
mod locate;
mod view;

pub use checks::{checks_of, node_check, vip_check};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;

use super::doubt::{self, PeerReport};
use crate::api::PublicAddress;
use crate::api::{FloatingIP, SpecErrors};
use crate::cloud::{Eni, Subnet};
use crate::mode::{Associate, Reads, Snapshot, Unusable};
use crate::nodes::{NodeView, Unfit};
use crate::placement::Decision;
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
    /// EC2 read beyond the subnets: Elastic IPs, zones, the nodes' ENIs.
    pub reads: &'a Reads,
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
    pub doubt: Option<crate::status::HeldBack>,
    /// A verdict on the holder is moments away: its move waits only for an agent to confirm
    /// it, or its address fails while the holder's own check has started failing too (its
    /// confirming probes are under way). Status is written once that is settled, so that the
    /// writes of many addresses failing together do not stand between the verdict and their
    /// move.
    pub verdict_pending: bool,
    /// An Elastic IP association missing where the address stays, to make this pass.
    pub associate: Option<Associate>,
    /// The FloatingIP's Elastic IP as EC2 described it, for status.
    pub public: Option<PublicAddress>,
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
    /// Still Down, but its latest probe passed.
    pub recovering: bool,
}

/// How long a first-attach claim by `floatip attach` is left alone while its node's agent starts.
pub const ATTACH_CLAIM_TIMEOUT: Duration = Duration::from_secs(120);

/// The finalizer floatip puts on a FloatingIP it acts on.
pub const FINALIZER: &str = "floatip.io/release";

/// Decides, for every FloatingIP in name order, what this pass should do.
pub fn plan(picture: &Picture<'_>) -> Vec<Plan> {
    let mut fips: Vec<&Arc<FloatingIP>> = picture.fips.iter().collect();
    fips.sort_by_key(|f| f.name_any());
    let winners = crate::api::address_owners(fips.iter().map(|f| f.as_ref()));
    let node_ips: HashMap<IpAddr, String> = picture
        .nodes
        .iter()
        .filter_map(|n| Some((n.internal_ip?, n.name.clone())))
        .collect();
    let self_doubt = doubt::self_doubt(&node_ips, picture.health);
    // Addresses per node as EC2 has them now, for spreading.
    let mut load = Load::new();
    let mut out = Vec::new();
    let mut located = Vec::new();
    for fip in &fips {
        match locate::locate(picture, fip, &winners) {
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
        out.push(decide::act(picture, l, &mut load, self_doubt.as_deref()));
    }
    out.sort_by(|a, b| plan_name(a).cmp(plan_name(b)));
    out
}

/// Addresses per node: as EC2 has them, then as the moves decided so far leave them.
type Load = BTreeMap<String, usize>;

impl<'a> Picture<'a> {
    /// What EC2 last described, as a mode reads it.
    fn ec2(&self) -> Snapshot<'a> {
        Snapshot::new(self.enis, self.subnets, self.cluster, self.reads)
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

#[cfg(test)]
mod tests;
