//! One FloatingIP's view of the nodes: which may hold it, where it would sit on each, and what
//! its check says of each.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use super::{node_check, vip_check, Picture, Seat, VipHealth};
use crate::api::{FloatingIP, MoveReason};
use crate::mode::{AddressMode, Snapshot};
use crate::nodes::{node_fitness, NodeView, Unfit};
use crate::placement::Decision;
use crate::probe::{Health, Target, TargetState};

pub(super) struct View<'a, 'w> {
    pub picture: &'a Picture<'w>,
    pub fip: &'a FloatingIP,
    pub mode: &'static dyn AddressMode,
    ec2: Snapshot<'w>,
}

impl<'a, 'w> View<'a, 'w> {
    pub fn new(
        picture: &'a Picture<'w>,
        fip: &'a FloatingIP,
        mode: &'static dyn AddressMode,
    ) -> Self {
        View {
            picture,
            fip,
            mode,
            ec2: picture.ec2(),
        }
    }

    /// Where the address would sit on the node, or why the node may not hold it: what the node
    /// object and the agents say first, then what the mode needs of it.
    pub fn fitness(&self, n: &NodeView) -> Result<Seat, Unfit> {
        let picture = self.picture;
        node_fitness(n, &self.fip.spec)?;
        if picture.agents_leaving.contains(&n.name) {
            return Err(Unfit::AgentLeaving);
        }
        if picture
            .agents_ready
            .is_some_and(|ready| !ready.contains(&n.name))
        {
            return Err(Unfit::NoAgent);
        }
        self.mode.seat(&self.fip.spec, n, &self.ec2)
    }

    pub fn node(&self, name: &str) -> Option<&NodeView> {
        self.picture.nodes.iter().find(|n| n.name == name)
    }

    pub fn fit_of(&self, node: &str) -> Result<(), Unfit> {
        match self.node(node) {
            None => Err(Unfit::Gone),
            Some(n) => self.fitness(n).map(|_| ()),
        }
    }

    /// The nodes that may hold the address now (with where it would go on each), and why no
    /// node can when none can.
    pub fn fit_nodes(&self) -> (BTreeMap<&'w str, Seat>, String) {
        let mut fit = BTreeMap::new();
        let mut unfit: Vec<(&str, Unfit)> = Vec::new();
        for n in self.picture.nodes {
            match self.fitness(n) {
                Ok(p) => {
                    fit.insert(n.name.as_str(), p);
                }
                Err(u) => unfit.push((n.name.as_str(), u)),
            }
        }
        (fit, crate::nodes::no_fit_node(&unfit))
    }

    /// The target of this FloatingIP's check on a node, if it has a check and the node an
    /// address.
    fn node_target(&self, name: &str) -> Option<Target> {
        let hc = self.fip.spec.health_check.as_ref()?;
        node_check(hc, self.node(name)?.internal_ip?)
    }

    /// What the probes say of a node on this FloatingIP's check, if they say anything.
    fn node_state(&self, name: &str) -> Option<&TargetState> {
        self.picture.health.get(&self.node_target(name)?)
    }

    pub fn node_health(&self, name: &str) -> Health {
        self.node_state(name)
            .map(|s| s.state)
            .unwrap_or(Health::Unknown)
    }

    /// The holder's own check as an unplanned move weighs it: a holder that is Down but
    /// answered its latest probe (recovering) has no verdict, so it is not moved on the
    /// strength of failures it has stopped having.
    pub fn holder_health(&self, name: &str) -> Health {
        match self.node_state(name) {
            Some(s) if s.recovering() => Health::Unknown,
            _ => self.node_health(name),
        }
    }

    /// How long the node's check has been failing (zero when it passes).
    pub fn node_failing_for(&self, name: &str) -> Duration {
        match self.node_state(name) {
            Some(s) if s.state == Health::Down => s.failing_since.unwrap_or(s.since).elapsed(),
            Some(s) => s.failing_since.map(|f| f.elapsed()).unwrap_or_default(),
            None => Duration::ZERO,
        }
    }

    /// The node's check has started failing but is not Down yet: its confirming probes are
    /// under way.
    pub fn node_suspect(&self, name: &str) -> bool {
        self.node_state(name)
            .is_some_and(|s| s.state != Health::Down && s.failing_since.is_some())
    }

    /// A candidate must answer now: one whose latest probe failed is no candidate yet, even
    /// while it is still Up.
    pub fn fresh_node_health(&self, name: &str) -> Health {
        match self.node_state(name) {
            Some(s) if s.failing_since.is_some() => Health::Unknown,
            _ => self.node_health(name),
        }
    }

    /// What the address's own check says.
    pub fn vip(&self, address: IpAddr) -> Option<VipHealth> {
        let hc = self.fip.spec.health_check.as_ref()?;
        let target = vip_check(hc, address)?;
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
            recovering: state.is_some_and(TargetState::recovering),
            target,
        })
    }

    /// For an unplanned move: the target's check, to probe once more right before it.
    pub fn confirm_target(&self, decision: &Decision) -> Option<Target> {
        let Decision::Move {
            to,
            reason: MoveReason::HolderUnhealthy,
        } = decision
        else {
            return None;
        };
        self.node_target(to)
    }
}
