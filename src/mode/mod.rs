//! The mode port: how one address mode (`spec.mode`) is carried out in EC2, as traits beside the
//! cloud port ([`crate::cloud`]), so that the controller's plan and executor move addresses
//! without knowing which mode they move.
//!
//! A mode is one file here implementing two traits:
//! - [`AddressMode`], pure reads of what EC2 last described: which EC2 reads a FloatingIP needs
//!   ([`AddressMode::subnets`]), whether EC2 would refuse the address before any call
//!   ([`AddressMode::usable`]), which ENIs hold it and whether floatip manages each
//!   ([`AddressMode::holding`]), and what a node needs to be a candidate and where the address
//!   would sit on it ([`AddressMode::seat`]). The plan uses this trait only.
//! - [`Carrier`], the EC2 calls: a batch of moves onto one [`Seat`] in as few calls as the API
//!   allows ([`Carrier::move_to`]), read back ([`Carrier::verify`]), and taking an address off an
//!   ENI ([`Carrier::release`]). The executor uses this trait.
//!
//! Two traits, because the plan is pure and has no cloud: a single trait generic over the cloud
//! port would make the plan name a cloud type it never calls.
//!
//! The modes carried out: [`SecondaryIp`] (IPv4 and IPv6, with or without an Elastic IP, whose
//! checks and association live in [`public`]), [`ElasticIp`], [`RouteTableMode`] (whose
//! route tables and the cluster's ENIs are in [`Reads`]) and [`Interface`] (a whole ENI per
//! address, detached and attached). A new mode is:
//! - a unit struct in its own file implementing both traits (the address checks of [`usable`]
//!   serve every mode that carries a private address in a subnet);
//! - a variant of `Implementation` and its arm in [`implementation`], the one place that says
//!   which modes this version carries out (`Mode::not_supported` asks [`port`]); the compiler
//!   then asks for its arms in [`port`] and [`carrier`], and `Mode::CARRIED_OUT` must name it
//!   (a test below checks);
//! - what it needs of EC2 that [`Snapshot`] does not hold yet (route tables) added to
//!   [`Reads`] and read by the controller's observe step, as the Elastic IP allocations and
//!   the nodes' ENIs are ([`Snapshot::has_read`] then keeps a FloatingIP unplanned until they
//!   are read); and the [`Cloud`] calls it makes, added to the cloud port and its AWS adapter.

mod elastic_ip;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod interface;
pub mod public;
mod route_table;
mod secondary_ip;
pub mod usable;

pub use elastic_ip::ElasticIp;
pub use interface::Interface;
pub use public::Associate;
pub use route_table::RouteTableMode;
pub use secondary_ip::SecondaryIp;
pub use usable::Unusable;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::api::{FloatingIPSpec, Mode};
use crate::cloud::{AddressMove, Allocation, Cloud, CloudError, Eni, RouteTable, Subnet};
use crate::nodes::{NodeView, Unfit};
use crate::status::Seat;

/// What EC2 last described, as one pass read it, and the cluster whose tags mark floatip's ENIs.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    /// ENIs by subnet. A subnet missing here could not be read.
    pub enis: &'a HashMap<String, Vec<Eni>>,
    /// The subnets themselves (their address blocks), read with the ENIs.
    pub subnets: &'a HashMap<String, Subnet>,
    pub cluster: &'a str,
    /// The Elastic IP allocations the FloatingIPs name, by allocation ID; None while unread.
    /// An allocation missing from a read map does not exist.
    pub allocations: Option<&'a HashMap<String, Allocation>>,
    /// Network border group by zone (Region zones and Local Zones); empty while unread.
    pub border_groups: &'a BTreeMap<String, String>,
    /// Every ENI attached to a node's instance, in any subnet; None while unread (read only
    /// when a FloatingIP's mode asks, [`AddressMode::needs_node_enis`]).
    pub node_enis: Option<&'a [Eni]>,
    /// The instances of the cluster's nodes.
    pub node_instances: &'a HashSet<String>,
    /// RouteTable mode: the route tables the FloatingIPs name, by ID; None while unread. A
    /// table missing from a read map does not exist.
    pub route_tables: Option<&'a HashMap<String, RouteTable>>,
    /// RouteTable mode: every ENI tagged for this cluster, in any subnet, attached or not;
    /// None while unread.
    pub cluster_enis: Option<&'a [Eni]>,
}

/// What a pass read of EC2 besides subnets, owned: the maps a [`Snapshot`] borrows.
#[derive(Debug, Clone, Default)]
pub struct Reads {
    /// None while unread.
    pub allocations: Option<HashMap<String, Allocation>>,
    pub border_groups: BTreeMap<String, String>,
    /// None while unread.
    pub node_enis: Option<Vec<Eni>>,
    pub node_instances: HashSet<String>,
    /// None while unread.
    pub route_tables: Option<HashMap<String, RouteTable>>,
    /// None while unread.
    pub cluster_enis: Option<Vec<Eni>>,
}

impl<'a> Snapshot<'a> {
    /// A snapshot of the subnets' ENIs and blocks and of `reads`.
    pub fn new(
        enis: &'a HashMap<String, Vec<Eni>>,
        subnets: &'a HashMap<String, Subnet>,
        cluster: &'a str,
        reads: &'a Reads,
    ) -> Self {
        Self {
            enis,
            subnets,
            cluster,
            allocations: reads.allocations.as_ref(),
            border_groups: &reads.border_groups,
            node_enis: reads.node_enis.as_deref(),
            node_instances: &reads.node_instances,
            route_tables: reads.route_tables.as_ref(),
            cluster_enis: reads.cluster_enis.as_deref(),
        }
    }

    /// Whether everything `spec` is planned from has been read.
    pub fn has_read(&self, mode: &dyn AddressMode, spec: &FloatingIPSpec) -> bool {
        mode.subnets(spec).iter().all(|s| self.enis.contains_key(s))
            && (spec.elastic_ip.is_none() || self.allocations.is_some())
            && (!mode.needs_node_enis(spec) || self.node_enis.is_some())
            && (spec.route_table_ids.is_empty()
                || (self.route_tables.is_some() && self.cluster_enis.is_some()))
    }
}

/// An ENI holding an address, according to EC2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held<'e> {
    /// The ENI, as EC2 described it (or as an association names it, when the ENI was not read).
    pub eni: Cow<'e, Eni>,
    /// Whether floatip may put this FloatingIP's address on it or take it off.
    pub managed: bool,
    /// ElasticIP mode: the private address the Elastic IP is associated with.
    pub private_ip: Option<IpAddr>,
}

/// A move's EC2 calls, as the mode made them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    /// IPv6: the longest time an address of the batch was on no ENI, between the
    /// UnassignIpv6Addresses and AssignIpv6Addresses calls.
    pub unassigned_for: Option<Duration>,
    /// Interface: how long EC2 took to show the ENI on no instance after
    /// DetachNetworkInterface, when it was detached.
    pub detach_took: Option<Duration>,
    /// Interface: when AttachNetworkInterface was answered (the ENI is attaching); the
    /// read-back measures the attach from it.
    pub attach_sent: Option<std::time::Instant>,
}

/// One mode's reading of EC2 and the nodes. Pure: no I/O.
pub trait AddressMode: Send + Sync {
    /// The subnets whose ENIs and address blocks the FloatingIP is planned from: read every one
    /// of them before planning it; while one is unread, its EC2 state is unknown.
    fn subnets(&self, spec: &FloatingIPSpec) -> Vec<String>;

    /// Why EC2 would refuse the address, checked before any call: one address EC2 refuses fails
    /// a whole batched call, so it must never ride in one with the others.
    fn usable(
        &self,
        spec: &FloatingIPSpec,
        address: IpAddr,
        ec2: &Snapshot<'_>,
    ) -> Result<(), Unusable>;

    /// The ENIs holding the address according to EC2, in EC2's order.
    fn holding<'e>(
        &self,
        spec: &FloatingIPSpec,
        address: IpAddr,
        ec2: &Snapshot<'e>,
    ) -> Vec<Held<'e>>;

    /// Where the address would sit on a node that is otherwise fit (Ready, selected, agent
    /// ready...), or what the node lacks for this mode.
    fn seat(
        &self,
        spec: &FloatingIPSpec,
        node: &NodeView,
        ec2: &Snapshot<'_>,
    ) -> Result<Seat, Unfit>;

    /// Whether the FloatingIP is planned from the ENIs of every node ([`Snapshot::node_enis`]).
    fn needs_node_enis(&self, _spec: &FloatingIPSpec) -> bool {
        false
    }

    /// The address the FloatingIP's own health check probes, if any: the address clients use,
    /// unless the controller may have no route to it.
    /// `holder_private_ip` is the private address status or EC2 gives the holder, if any.
    fn probed_address(
        &self,
        _spec: &FloatingIPSpec,
        address: IpAddr,
        _holder_private_ip: Option<IpAddr>,
    ) -> Option<IpAddr> {
        Some(address)
    }

    /// An association of the FloatingIP's Elastic IP that is missing where the address is
    /// held, to be made without a move; None when it is in place or the mode has none.
    fn associate(
        &self,
        spec: &FloatingIPSpec,
        address: IpAddr,
        holder: &Seat,
        ec2: &Snapshot<'_>,
    ) -> Option<Associate> {
        public::missing_association(spec, address, holder, ec2)
    }
}

/// One mode's EC2 calls, through the cloud port `C`.
pub trait Carrier<C: Cloud>: AddressMode {
    /// Puts every address of the batch on `to`, taking each off wherever it is, in as few calls
    /// as the API allows. Gated by the caller.
    fn move_to<'a>(
        &'a self,
        cloud: &'a C,
        to: &'a Seat,
        moves: &'a [AddressMove],
    ) -> BoxFuture<'a, Result<Moved, CloudError>>;

    /// [`Carrier::move_to`], for a move whose calls are far apart in time: `leading` is asked
    /// again before each mutating call after the first, since the lease may be lost while EC2
    /// works (Interface: between the detach and the attach). By default the move is
    /// [`Carrier::move_to`], whose calls follow one another at once, under the caller's check.
    fn move_gated<'a>(
        &'a self,
        cloud: &'a C,
        to: &'a Seat,
        moves: &'a [AddressMove],
        _leading: &'a (dyn Fn() -> bool + Send + Sync),
    ) -> BoxFuture<'a, Result<Moved, CloudError>> {
        self.move_to(cloud, to, moves)
    }

    /// Reads the batch back: Ok only when EC2 shows every address on `to` and nowhere else it
    /// was taken from.
    fn verify<'a>(
        &'a self,
        cloud: &'a C,
        to: &'a Seat,
        moves: &'a [AddressMove],
    ) -> BoxFuture<'a, Result<(), CloudError>>;

    /// What EC2 would refuse of a move onto `to`, found by reads before the move is claimed:
    /// a refusal is the FloatingIP's own and nothing is claimed or changed (Interface: a target
    /// with no free device index). Nothing by default.
    fn precheck<'a>(
        &'a self,
        _cloud: &'a C,
        _to: &'a Seat,
    ) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(async { Ok(()) })
    }

    /// Takes the address off `eni`. An address already gone is not an error. Gated by the
    /// caller.
    fn release<'a>(
        &'a self,
        cloud: &'a C,
        spec: &'a FloatingIPSpec,
        eni: &'a str,
        address: IpAddr,
    ) -> BoxFuture<'a, Result<(), CloudError>>;
}

/// The implementations, one per mode carried out.
#[derive(Debug, Clone, Copy)]
enum Implementation {
    SecondaryIp,
    ElasticIp,
    RouteTable,
    Interface,
}

/// Which implementation carries out `mode`: the one place that says which modes this version
/// carries out. [`port`] and [`carrier`] both read it, so they cannot disagree.
fn implementation(mode: Mode) -> Option<Implementation> {
    match mode {
        Mode::SecondaryIP => Some(Implementation::SecondaryIp),
        Mode::ElasticIP => Some(Implementation::ElasticIp),
        Mode::RouteTable => Some(Implementation::RouteTable),
        Mode::Interface => Some(Implementation::Interface),
    }
}

/// The reads of `mode`, for the plan; None when this version does not carry it out.
pub fn port(mode: Mode) -> Option<&'static dyn AddressMode> {
    Some(match implementation(mode)? {
        Implementation::SecondaryIp => &SecondaryIp,
        Implementation::ElasticIp => &ElasticIp,
        Implementation::RouteTable => &RouteTableMode,
        Implementation::Interface => &Interface,
    })
}

/// The calls of `mode` through the cloud port `C`, for the executor; None when this version
/// does not carry it out.
pub fn carrier<C: Cloud>(mode: Mode) -> Option<&'static dyn Carrier<C>> {
    Some(match implementation(mode)? {
        Implementation::SecondaryIp => &SecondaryIp,
        Implementation::ElasticIp => &ElasticIp,
        Implementation::RouteTable => &RouteTableMode,
        Implementation::Interface => &Interface,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::fake::FakeCloud;

    /// Every mode the CRD accepts, read from the schema it is generated from, so that a mode
    /// added later is covered without editing this test.
    fn every_mode() -> Vec<Mode> {
        fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(o) => {
                    for (k, v) in o {
                        match (k.as_str(), v) {
                            ("const", serde_json::Value::String(s)) => out.push(s.clone()),
                            ("enum", serde_json::Value::Array(a)) => {
                                out.extend(a.iter().filter_map(|s| s.as_str().map(str::to_string)))
                            }
                            _ => strings(v, out),
                        }
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
                _ => {}
            }
        }
        let mut names = Vec::new();
        strings(
            &serde_json::to_value(schemars::schema_for!(Mode)).unwrap(),
            &mut names,
        );
        names
            .into_iter()
            .map(|n| serde_json::from_value(serde_json::Value::String(n)).unwrap())
            .collect()
    }

    /// `Mode::CARRIED_OUT` and `Mode::not_supported` (the status message and the decision to
    /// leave a FloatingIP alone) say exactly what the lookup says.
    #[test]
    fn the_lookup_is_what_mode_carried_out_says() {
        let all = every_mode();
        assert!(
            all.contains(&Mode::SecondaryIP) && all.contains(&Mode::Interface),
            "{all:?}"
        );
        for m in all {
            let carried = port(m).is_some();
            assert_eq!(carrier::<FakeCloud>(m).is_some(), carried, "{m}");
            assert_eq!(Mode::CARRIED_OUT.contains(&m), carried, "{m}");
            assert_eq!(m.not_supported().is_none(), carried, "{m}");
        }
    }
}
