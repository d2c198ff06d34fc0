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
//! A new mode (ElasticIP, IPv6, RouteTable, Interface in later issues) is:
//! - a unit struct in its own file implementing both traits (the address checks of [`usable`]
//!   serve every mode that carries a private address in a subnet);
//! - a variant of `Implementation` and its arm in [`implementation`], the one place that says
//!   which modes this version carries out (`Mode::not_supported` asks [`port`]); the compiler
//!   then asks for its arms in [`port`] and [`carrier`], and `Mode::CARRIED_OUT` must name it
//!   (a test below checks);
//! - what it needs of EC2 that [`Snapshot`] does not hold yet (route tables, Elastic IP
//!   associations) added to [`Snapshot`], read by the controller's observe step as
//!   [`AddressMode::subnets`] is today; and the [`Cloud`] calls it makes, added to the cloud
//!   port and its AWS adapter.

#[cfg(test)]
pub(crate) mod fixtures;
mod secondary_ip;
pub mod usable;

pub use secondary_ip::SecondaryIp;
pub use usable::Unusable;

use std::collections::HashMap;
use std::net::IpAddr;

use futures::future::BoxFuture;

use crate::api::{FloatingIPSpec, Mode};
use crate::cloud::{AddressMove, Cloud, CloudError, Eni, Subnet};
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
}

/// An ENI holding an address, according to EC2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held<'e> {
    pub eni: &'e Eni,
    /// Whether floatip may put this FloatingIP's address on it or take it off.
    pub managed: bool,
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
    ) -> BoxFuture<'a, Result<(), CloudError>>;

    /// Reads the batch back: Ok only when EC2 shows every address on `to` and nowhere else it
    /// was taken from.
    fn verify<'a>(
        &'a self,
        cloud: &'a C,
        to: &'a Seat,
        moves: &'a [AddressMove],
    ) -> BoxFuture<'a, Result<(), CloudError>>;

    /// Takes the address off `eni`. An address already gone is not an error. Gated by the
    /// caller.
    fn release<'a>(
        &'a self,
        cloud: &'a C,
        eni: &'a str,
        address: IpAddr,
    ) -> BoxFuture<'a, Result<(), CloudError>>;
}

/// The implementations, one per mode carried out.
#[derive(Debug, Clone, Copy)]
enum Implementation {
    SecondaryIp,
}

/// Which implementation carries out `mode`: the one place that says which modes this version
/// carries out. [`port`] and [`carrier`] both read it, so they cannot disagree.
fn implementation(mode: Mode) -> Option<Implementation> {
    match mode {
        Mode::SecondaryIP => Some(Implementation::SecondaryIp),
        Mode::ElasticIP | Mode::RouteTable | Mode::Interface => None,
    }
}

/// The reads of `mode`, for the plan; None when this version does not carry it out.
pub fn port(mode: Mode) -> Option<&'static dyn AddressMode> {
    Some(match implementation(mode)? {
        Implementation::SecondaryIp => &SecondaryIp,
    })
}

/// The calls of `mode` through the cloud port `C`, for the executor; None when this version
/// does not carry it out.
pub fn carrier<C: Cloud>(mode: Mode) -> Option<&'static dyn Carrier<C>> {
    Some(match implementation(mode)? {
        Implementation::SecondaryIp => &SecondaryIp,
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
