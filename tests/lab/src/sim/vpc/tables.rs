//! Route tables: an address outside the VPC's CIDRs reaches the ENI a /32 (or /128) route
//! points at, for the clients of the subnets associated with the table that has the route
//! (issue 18's RouteTable mode). Kept apart from I/O: what one read of EC2 says the router
//! must do, tested without namespaces.
//!
//! As AWS: a subnet without an explicit association uses the VPC's main table; a packet for
//! an ENI whose source/dest check is on and that does not own the destination is dropped, as
//! is one for a route whose ENI is not attached to a running node (a blackhole route); an ENI
//! whose source/dest check is off may send from any source.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::follow::{Due, Follow};
use super::routes::{family, host};

/// The first Linux routing table number the router gives an EC2 route table.
const FIRST_TABLE: u32 = 100;
/// The rule preference of a client wire's table: before the source checks (pref 1000) and
/// the main table, so an overlay address is looked up in the client's table first.
const INGRESS_PREF: u32 = 900;
/// The rule preference that lets any source through from an ENI whose check is off.
const UNCHECKED_PREF: u32 = 1001;

/// One EC2 route table as the router needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub id: String,
    pub main: bool,
    /// Subnets explicitly associated with it.
    pub subnets: Vec<String>,
    /// The destinations of its `local` routes: the VPC's CIDRs.
    pub local: Vec<String>,
    /// Host routes (a /32 or /128) with an ENI target: destination -> ENI id.
    pub to_eni: BTreeMap<IpAddr, String>,
}

/// An ENI the router has a wire for.
#[derive(Debug, Clone, PartialEq)]
pub struct Wired {
    pub wire: String,
    pub source_dest_check: bool,
}

/// Where the router sends packets for an overlay address arriving on a wire of a table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hop {
    To(String),
    Drop,
}

/// What route tables ask of the router after one read.
#[derive(Debug, Default, PartialEq)]
pub struct Said {
    /// Router wire (of a client) -> the table its subnet uses.
    pub ingress: BTreeMap<String, String>,
    /// (table, overlay address) -> where its packets go.
    pub routes: BTreeMap<(String, IpAddr), Hop>,
    /// Wires of ENIs whose source/dest check is off: any source is let through.
    pub unchecked: BTreeSet<String>,
}

/// Reads `tables` for clients on `clients` (router wire -> subnet), the router knowing the
/// attached ENIs `enis` (ENI id -> its wire and check).
pub fn said(
    tables: &[Table],
    clients: &BTreeMap<String, String>,
    enis: &BTreeMap<String, Wired>,
) -> Said {
    let mut out = Said::default();
    for (wire, subnet) in clients {
        let explicit = tables.iter().find(|t| t.subnets.contains(subnet));
        if let Some(t) = explicit.or_else(|| tables.iter().find(|t| t.main)) {
            out.ingress.insert(wire.clone(), t.id.clone());
        }
    }
    for t in tables {
        for (dest, eni) in &t.to_eni {
            if t.local.iter().any(|c| contains(c, dest)) {
                // AWS allows no route more specific than `local` but a whole subnet's.
                continue;
            }
            let hop = match enis.get(eni) {
                Some(w) if !w.source_dest_check => Hop::To(w.wire.clone()),
                _ => Hop::Drop,
            };
            out.routes.insert((t.id.clone(), *dest), hop);
        }
    }
    out.unchecked = enis
        .values()
        .filter(|w| !w.source_dest_check)
        .map(|w| w.wire.clone())
        .collect();
    out
}

/// The router's route-table routes, one Linux table per EC2 table, each followed after the
/// convergence delay as an address's owner is; the client wires' tables and the unchecked
/// ENIs' rules are changed at once.
#[derive(Debug)]
pub struct Overlays {
    follow: Follow<Hop, (String, IpAddr)>,
    numbers: BTreeMap<String, u32>,
    ingress: BTreeMap<String, u32>,
    unchecked: BTreeSet<String>,
}

/// What the router does for route tables after one read.
#[derive(Debug, Default)]
pub struct OverlayPlan {
    pub cmds: Vec<String>,
    /// Overlay addresses whose packets now go to a wire (None: dropped).
    pub routed: Vec<(IpAddr, Option<String>)>,
    due: Vec<Due<Hop, (String, IpAddr)>>,
    ingress: BTreeMap<String, u32>,
    unchecked: BTreeSet<String>,
}

impl Overlays {
    pub fn new(delay: Duration) -> Self {
        Self {
            follow: Follow::new(delay),
            numbers: BTreeMap::new(),
            ingress: BTreeMap::new(),
            unchecked: BTreeSet::new(),
        }
    }

    fn number(&mut self, table: &str) -> u32 {
        let next = FIRST_TABLE + self.numbers.len() as u32;
        *self.numbers.entry(table.to_string()).or_insert(next)
    }

    /// The `ip` batch lines (both families, IPv6 ones starting `-6 `) that move the router to
    /// `said`, its routes once said for the delay; `macs`: wire -> the MAC delivered to.
    pub fn plan(
        &mut self,
        said: &Said,
        macs: &BTreeMap<String, String>,
        now: Instant,
    ) -> OverlayPlan {
        let mut plan = OverlayPlan::default();
        for (wire, table) in &said.ingress {
            let n = self.number(table);
            plan.ingress.insert(wire.clone(), n);
        }
        for (wire, old) in &self.ingress {
            if plan.ingress.get(wire) != Some(old) {
                rules(
                    &mut plan.cmds,
                    "del",
                    &format!("iif {wire} lookup {old} pref {INGRESS_PREF}"),
                );
            }
        }
        for (wire, n) in &plan.ingress {
            if self.ingress.get(wire) != Some(n) {
                rules(
                    &mut plan.cmds,
                    "add",
                    &format!("iif {wire} lookup {n} pref {INGRESS_PREF}"),
                );
            }
        }
        plan.unchecked = said.unchecked.clone();
        for wire in self.unchecked.difference(&said.unchecked) {
            rules(
                &mut plan.cmds,
                "del",
                &format!("iif {wire} lookup main pref {UNCHECKED_PREF}"),
            );
        }
        for wire in said.unchecked.difference(&self.unchecked) {
            rules(
                &mut plan.cmds,
                "add",
                &format!("iif {wire} lookup main pref {UNCHECKED_PREF}"),
            );
        }
        for d in self.follow.due(&said.routes, now) {
            let (table, a) = &d.address;
            let (n, f, h) = (self.number(table), family(a), host(a));
            match &d.new {
                Some(Hop::To(w)) => {
                    plan.cmds
                        .push(format!("{f}route replace {h} dev {w} table {n}"));
                    if let Some(mac) = macs.get(w) {
                        plan.cmds.push(format!(
                            "{f}neigh replace {a} lladdr {mac} dev {w} nud permanent"
                        ));
                    }
                    plan.routed.push((*a, Some(w.clone())));
                }
                // No route, or one to nowhere: dropped silently, as AWS does.
                _ => {
                    plan.cmds
                        .push(format!("{f}route replace blackhole {h} table {n}"));
                    plan.routed.push((*a, None));
                }
            }
            plan.due.push(d);
        }
        plan
    }

    /// Records that `plan`'s commands ran.
    pub fn applied(&mut self, plan: OverlayPlan) {
        self.follow.applied(&plan.due);
        self.ingress = plan.ingress;
        self.unchecked = plan.unchecked;
    }

    /// A wire was plugged in anew: its routes went with the old one.
    pub fn forget_wire(&mut self, wire: &str) {
        self.follow.forget(|h| *h == Hop::To(wire.to_string()));
    }
}

/// `ip rule verb rule` for both families.
fn rules(cmds: &mut Vec<String>, verb: &str, rule: &str) {
    cmds.push(format!("rule {verb} {rule}"));
    cmds.push(format!("-6 rule {verb} {rule}"));
}

/// The address of a host route `cidr` ("a/32", "a/128"), None for any other prefix.
pub fn host_route(cidr: &str) -> Option<IpAddr> {
    let (a, len) = cidr.split_once('/')?;
    let a: IpAddr = a.parse().ok()?;
    let full = if a.is_ipv4() { "32" } else { "128" };
    (len == full).then_some(a)
}

/// Whether CIDR `cidr` contains `a` (false when it does not parse or the families differ).
pub fn contains(cidr: &str, a: &IpAddr) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u32>()) else {
        return false;
    };
    match (net, a) {
        (IpAddr::V4(n), IpAddr::V4(a)) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            u32::from(n) & mask == u32::from(*a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            u128::from(n) & mask == u128::from(*a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn tables() -> Vec<Table> {
        vec![
            Table {
                id: "rtb-main".into(),
                main: true,
                local: vec!["10.99.0.0/16".into()],
                to_eni: BTreeMap::from([(ip("10.200.0.10"), "eni-2".into())]),
                ..Table::default()
            },
            Table {
                id: "rtb-clients".into(),
                subnets: vec!["subnet-c".into()],
                local: vec!["10.99.0.0/16".into(), "2400:6500::/56".into()],
                to_eni: BTreeMap::from([
                    (ip("10.200.0.10"), "eni-1".into()),
                    (ip("10.99.8.200"), "eni-1".into()),
                    (ip("fd00:200::10"), "eni-1".into()),
                    (ip("10.200.0.11"), "eni-gone".into()),
                    (ip("10.200.0.12"), "eni-checked".into()),
                ]),
                ..Table::default()
            },
        ]
    }

    fn enis() -> BTreeMap<String, Wired> {
        let w = |wire: &str, check| Wired {
            wire: wire.into(),
            source_dest_check: check,
        };
        BTreeMap::from([
            ("eni-1".into(), w("r1e0", false)),
            ("eni-2".into(), w("r2e0", false)),
            ("eni-checked".into(), w("r3e0", true)),
        ])
    }

    #[test]
    fn clients_use_their_subnets_table_or_the_main_one() {
        let clients = BTreeMap::from([
            ("rclient".to_string(), "subnet-c".to_string()),
            ("r1e0".to_string(), "subnet-n".to_string()),
        ]);
        let s = said(&tables(), &clients, &enis());
        assert_eq!(s.ingress["rclient"], "rtb-clients");
        assert_eq!(s.ingress["r1e0"], "rtb-main");
    }

    #[test]
    fn host_routes_outside_the_vpc_go_to_an_unchecked_attached_eni_or_nowhere() {
        let s = said(&tables(), &BTreeMap::new(), &enis());
        let hop = |t: &str, a: &str| s.routes.get(&(t.to_string(), ip(a))).cloned();
        assert_eq!(
            hop("rtb-clients", "10.200.0.10"),
            Some(Hop::To("r1e0".into()))
        );
        assert_eq!(hop("rtb-main", "10.200.0.10"), Some(Hop::To("r2e0".into())));
        assert_eq!(
            hop("rtb-clients", "fd00:200::10"),
            Some(Hop::To("r1e0".into()))
        );
        assert_eq!(hop("rtb-clients", "10.99.8.200"), None, "inside the VPC");
        assert_eq!(
            hop("rtb-clients", "10.200.0.11"),
            Some(Hop::Drop),
            "no wire"
        );
        assert_eq!(
            hop("rtb-clients", "10.200.0.12"),
            Some(Hop::Drop),
            "checked"
        );
        assert_eq!(
            s.unchecked,
            BTreeSet::from(["r1e0".to_string(), "r2e0".to_string()])
        );
    }

    #[test]
    fn the_router_follows_a_route_after_the_delay_in_its_tables_own_linux_table() {
        let mut o = Overlays::new(Duration::from_millis(100));
        let clients = BTreeMap::from([("rclient".to_string(), "subnet-c".to_string())]);
        let macs = BTreeMap::from([("r1e0".to_string(), "02:00:00:00:01:00".to_string())]);
        let s = said(&tables(), &clients, &enis());
        let t0 = Instant::now();
        let first = o.plan(&s, &macs, t0);
        assert!(first
            .cmds
            .contains(&"rule add iif rclient lookup 100 pref 900".to_string()));
        assert!(first
            .cmds
            .contains(&"rule add iif r1e0 lookup main pref 1001".to_string()));
        assert!(
            !first.cmds.iter().any(|c| c.contains("route ")),
            "routes wait for the delay: {:?}",
            first.cmds
        );
        o.applied(first);
        let due = o.plan(&s, &macs, t0 + Duration::from_millis(100));
        let clients_table = |c: &&String| c.contains("table 100");
        let cmds: Vec<&String> = due.cmds.iter().filter(clients_table).collect();
        assert_eq!(
            cmds,
            [
                "route replace 10.200.0.10/32 dev r1e0 table 100",
                "route replace blackhole 10.200.0.11/32 table 100",
                "route replace blackhole 10.200.0.12/32 table 100",
                "-6 route replace fd00:200::10/128 dev r1e0 table 100",
            ]
        );
        assert!(due.cmds.contains(
            &"neigh replace 10.200.0.10 lladdr 02:00:00:00:01:00 dev r1e0 nud permanent".into()
        ));
        o.applied(due);
        let again = o.plan(&s, &macs, t0 + Duration::from_millis(200));
        assert!(again.cmds.is_empty(), "{:?}", again.cmds);
        o.applied(again);

        let mut gone = tables();
        gone[1].to_eni.remove(&ip("10.200.0.10"));
        let s = said(&gone, &clients, &BTreeMap::new());
        let now = o.plan(&s, &macs, t0 + Duration::from_millis(300));
        assert!(now
            .cmds
            .contains(&"rule del iif r1e0 lookup main pref 1001".to_string()));
        o.applied(now);
        let later = o.plan(&s, &macs, t0 + Duration::from_millis(400));
        assert!(later
            .cmds
            .contains(&"route replace blackhole 10.200.0.10/32 table 100".to_string()));
    }

    #[test]
    fn only_host_routes_are_followed() {
        assert_eq!(host_route("10.200.0.10/32"), Some(ip("10.200.0.10")));
        assert_eq!(host_route("fd00:200::10/128"), Some(ip("fd00:200::10")));
        assert_eq!(host_route("10.200.0.0/24"), None);
        assert!(contains("10.99.0.0/16", &ip("10.99.255.1")));
        assert!(!contains("10.99.0.0/16", &ip("10.100.0.1")));
        assert!(!contains("10.99.0.0/16", &ip("fd00::1")));
        assert!(contains("0.0.0.0/0", &ip("10.1.2.3")));
    }
}
