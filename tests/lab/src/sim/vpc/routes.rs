//! The router's decisions, kept apart from its I/O so they can be tested without namespaces or
//! EC2: which address goes to which wire, given what EC2 has said and since when.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::follow::{Due, Follow};

/// What the router does after one read of EC2: `ip` batch commands, and the routes they set.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub cmds: Vec<String>,
    /// address -> the wire it goes to once `cmds` ran, or None when it goes nowhere.
    pub routed: Vec<(IpAddr, Option<String>)>,
    due: Vec<Due<String>>,
}

/// The routes the router has and what EC2 said of each address (IPv4 and IPv6 alike).
#[derive(Debug)]
pub struct Routes {
    follow: Follow<String>,
}

/// The `ip` option that selects the address's family in a batch line (iproute2 does not guess
/// it for a rule); [`super::batch`] runs each family's lines with it.
pub fn family(a: &IpAddr) -> &'static str {
    if a.is_ipv4() {
        ""
    } else {
        "-6 "
    }
}

/// `address/32` or `address/128`.
pub fn host(a: &IpAddr) -> String {
    format!("{a}/{}", if a.is_ipv4() { 32 } else { 128 })
}

impl Routes {
    /// Routes that follow EC2 once it has said the same thing for `delay`.
    pub fn new(delay: Duration) -> Self {
        Self {
            follow: Follow::new(delay),
        }
    }

    /// The changes that move the router to what EC2 (`owned`: address -> wire) has said for
    /// at least the convergence delay, read at `now`. An address the router routes and EC2
    /// shows on no ENI is dropped from then on, as AWS drops it (silently: a blackhole, no ICMP).
    ///
    /// The router delivers to the ENI's MAC (`macs`: wire -> MAC) without asking, as a VPC
    /// does: with ARP (or neighbour discovery), an address routed to its new ENI a moment
    /// before the node had configured it failed resolution, and the router dropped its traffic
    /// until the next attempt a second later.
    pub fn plan(
        &mut self,
        owned: &BTreeMap<IpAddr, String>,
        macs: &BTreeMap<String, String>,
        now: Instant,
    ) -> Plan {
        // A change is made before it is broken, in one `ip -batch`: the new route and the new
        // owner's allowed source first, then the old owner's allowed source goes.
        let mut plan = Plan::default();
        for d in self.follow.due(owned, now) {
            let (a, f) = (d.address, family(&d.address));
            match &d.new {
                Some(w) => {
                    plan.cmds
                        .push(format!("{f}route replace {} dev {w}", host(&a)));
                    if let Some(mac) = macs.get(w) {
                        plan.cmds.push(format!(
                            "{f}neigh replace {a} lladdr {mac} dev {w} nud permanent"
                        ));
                    }
                    plan.cmds.push(format!(
                        "{f}rule add iif {w} from {a} lookup main pref 1000"
                    ));
                }
                None => plan
                    .cmds
                    .push(format!("{f}route replace blackhole {}", host(&a))),
            }
            if let Some(old) = &d.old {
                plan.cmds.push(format!(
                    "{f}rule del iif {old} from {a} lookup main pref 1000"
                ));
                if d.new.as_ref() != Some(old) {
                    plan.cmds.push(format!("{f}neigh del {a} dev {old}"));
                }
            }
            plan.routed.push((a, d.new.clone()));
            plan.due.push(d);
        }
        plan
    }

    /// Records that `plan`'s commands ran.
    pub fn applied(&mut self, plan: &Plan) {
        self.follow.applied(&plan.due);
    }

    /// A wire was plugged in anew: whatever the router had for the old one is gone with it.
    pub fn forget_wire(&mut self, wire: &str) {
        self.follow.forget(|w| w == wire);
    }

    /// address -> the wire the router uses for it now.
    pub fn effective(&self) -> &BTreeMap<IpAddr, String> {
        self.follow.effective()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 99, 8, 100));

    fn on(wire: &str) -> BTreeMap<IpAddr, String> {
        BTreeMap::from([(VIP, wire.to_string())])
    }

    /// Plans at `t0 + ms` and records the plan as applied.
    fn step(r: &mut Routes, owned: &BTreeMap<IpAddr, String>, t0: Instant, ms: u64) -> Plan {
        let macs = BTreeMap::from([
            ("r1e1".to_string(), "02:00:00:00:01:01".to_string()),
            ("r2e1".to_string(), "02:00:00:00:02:01".to_string()),
        ]);
        let plan = r.plan(owned, &macs, t0 + Duration::from_millis(ms));
        r.applied(&plan);
        plan
    }

    #[test]
    fn a_move_is_routed_once_ec2_has_said_it_for_the_delay() {
        let mut r = Routes::new(Duration::from_millis(100));
        let t0 = Instant::now();
        assert_eq!(step(&mut r, &on("r1e1"), t0, 0), Plan::default());
        assert_eq!(
            step(&mut r, &on("r1e1"), t0, 100).cmds,
            [
                "route replace 10.99.8.100/32 dev r1e1",
                "neigh replace 10.99.8.100 lladdr 02:00:00:00:01:01 dev r1e1 nud permanent",
                "rule add iif r1e1 from 10.99.8.100 lookup main pref 1000",
            ]
        );
        assert_eq!(step(&mut r, &on("r2e1"), t0, 150), Plan::default());
        assert_eq!(
            step(&mut r, &on("r2e1"), t0, 250).cmds,
            [
                "route replace 10.99.8.100/32 dev r2e1",
                "neigh replace 10.99.8.100 lladdr 02:00:00:00:02:01 dev r2e1 nud permanent",
                "rule add iif r2e1 from 10.99.8.100 lookup main pref 1000",
                "rule del iif r1e1 from 10.99.8.100 lookup main pref 1000",
                "neigh del 10.99.8.100 dev r1e1",
            ]
        );
    }

    #[test]
    fn an_address_on_no_eni_stops_being_routed_after_the_delay() {
        let mut r = Routes::new(Duration::from_millis(100));
        let t0 = Instant::now();
        step(&mut r, &on("r1e1"), t0, 0);
        step(&mut r, &on("r1e1"), t0, 100);
        let nowhere = BTreeMap::new();
        assert_eq!(
            step(&mut r, &nowhere, t0, 150),
            Plan::default(),
            "the VPC takes the convergence delay to notice"
        );
        assert_eq!(
            step(&mut r, &nowhere, t0, 250).cmds,
            [
                "route replace blackhole 10.99.8.100/32",
                "rule del iif r1e1 from 10.99.8.100 lookup main pref 1000",
                "neigh del 10.99.8.100 dev r1e1",
            ],
            "AWS drops what is sent to an address no ENI owns, and its old owner may not send from it"
        );
        assert_eq!(step(&mut r, &nowhere, t0, 350), Plan::default());
        assert_eq!(
            step(&mut r, &on("r1e1"), t0, 400),
            Plan::default(),
            "assigned again: routed after the delay, as any move"
        );
        assert_eq!(
            step(&mut r, &on("r1e1"), t0, 500).cmds[0],
            "route replace 10.99.8.100/32 dev r1e1"
        );
    }

    #[test]
    fn an_ipv6_address_is_routed_as_a_host_route_of_its_own_family() {
        let mut r = Routes::new(Duration::ZERO);
        let a: IpAddr = "fd00:99:8::101".parse().unwrap();
        let plan = step(
            &mut r,
            &BTreeMap::from([(a, "r2e1".to_string())]),
            Instant::now(),
            0,
        );
        assert_eq!(
            plan.cmds,
            [
                "-6 route replace fd00:99:8::101/128 dev r2e1",
                "-6 neigh replace fd00:99:8::101 lladdr 02:00:00:00:02:01 dev r2e1 nud permanent",
                "-6 rule add iif r2e1 from fd00:99:8::101 lookup main pref 1000",
            ]
        );
        assert_eq!(r.effective().get(&a).map(String::as_str), Some("r2e1"));
    }
}
