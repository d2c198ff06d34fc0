//! The router's decisions, kept apart from its I/O so they can be tested without namespaces or
//! EC2: which address goes to which wire, given what EC2 has said and since when.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// What the router does after one read of EC2: `ip` batch commands, and the routes they set.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub cmds: Vec<String>,
    /// address -> the wire it goes to once `cmds` ran, or None when it goes nowhere.
    pub routed: Vec<(Ipv4Addr, Option<String>)>,
}

/// The routes the router has and what EC2 said of each address.
#[derive(Debug)]
pub struct Routes {
    delay: Duration,
    /// address -> (the router wire EC2 says owns it, None for no ENI; since when EC2 says so).
    first_seen: BTreeMap<Ipv4Addr, (Option<String>, Instant)>,
    /// address -> the router wire the router uses now.
    effective: BTreeMap<Ipv4Addr, String>,
}

impl Routes {
    /// Routes that follow EC2 once it has said the same thing for `delay`.
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            first_seen: BTreeMap::new(),
            effective: BTreeMap::new(),
        }
    }

    /// The changes that move the router to what EC2 (`owned`: address -> wire) has said for
    /// at least the convergence delay, read at `now`. An address the router routes and EC2
    /// shows on no ENI is dropped from then on, as AWS drops it (silently: a blackhole, no ICMP).
    pub fn plan(&mut self, owned: &BTreeMap<Ipv4Addr, String>, now: Instant) -> Plan {
        let gone = self.effective.keys().filter(|a| !owned.contains_key(a));
        let said: BTreeMap<Ipv4Addr, Option<String>> = owned
            .iter()
            .map(|(a, d)| (*a, Some(d.clone())))
            .chain(gone.map(|a| (*a, None)))
            .collect();
        self.first_seen.retain(|a, (d, _)| said.get(a) == Some(d));
        for (a, d) in said {
            self.first_seen.entry(a).or_insert((d, now));
        }
        // A change is made before it is broken, in one `ip -batch`: the new route and the new
        // owner's allowed source first, then the old owner's allowed source goes.
        let mut plan = Plan::default();
        for (a, (d, since)) in &self.first_seen {
            let old = self.effective.get(a);
            if now.duration_since(*since) < self.delay || old == d.as_ref() {
                continue;
            }
            match d {
                Some(d) => {
                    plan.cmds.push(format!("route replace {a}/32 dev {d}"));
                    plan.cmds
                        .push(format!("rule add iif {d} from {a} lookup main pref 1000"));
                }
                None => plan.cmds.push(format!("route replace blackhole {a}/32")),
            }
            if let Some(old) = old {
                plan.cmds
                    .push(format!("rule del iif {old} from {a} lookup main pref 1000"));
            }
            plan.routed.push((*a, d.clone()));
        }
        plan
    }

    /// Records that `plan`'s commands ran.
    pub fn applied(&mut self, plan: &Plan) {
        for (a, d) in &plan.routed {
            match d {
                Some(d) => self.effective.insert(*a, d.clone()),
                None => self.effective.remove(a),
            };
        }
    }

    /// A wire was plugged in anew: whatever the router had for the old one is gone with it.
    pub fn forget_wire(&mut self, wire: &str) {
        self.effective.retain(|_, d| d != wire);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 8, 100);

    fn on(wire: &str) -> BTreeMap<Ipv4Addr, String> {
        BTreeMap::from([(VIP, wire.to_string())])
    }

    /// Plans at `t0 + ms` and records the plan as applied.
    fn step(r: &mut Routes, owned: &BTreeMap<Ipv4Addr, String>, t0: Instant, ms: u64) -> Plan {
        let plan = r.plan(owned, t0 + Duration::from_millis(ms));
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
                "rule add iif r1e1 from 10.99.8.100 lookup main pref 1000",
            ]
        );
        assert_eq!(step(&mut r, &on("r2e1"), t0, 150), Plan::default());
        assert_eq!(
            step(&mut r, &on("r2e1"), t0, 250).cmds,
            [
                "route replace 10.99.8.100/32 dev r2e1",
                "rule add iif r2e1 from 10.99.8.100 lookup main pref 1000",
                "rule del iif r1e1 from 10.99.8.100 lookup main pref 1000",
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
}
