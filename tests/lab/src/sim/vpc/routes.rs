//! The router's decisions, kept apart from its I/O so they can be tested without namespaces or
//! EC2: which address goes to which wire, given what EC2 has said and since when.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// What the router does after one read of EC2: `ip` batch commands, and the routes they set.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub cmds: Vec<String>,
    /// address -> the wire it goes to once `cmds` ran.
    pub routed: Vec<(Ipv4Addr, String)>,
}

/// The routes the router has and what EC2 said of each address.
#[derive(Debug)]
pub struct Routes {
    delay: Duration,
    /// address -> (router wire EC2 says owns it, since when EC2 says so).
    first_seen: BTreeMap<Ipv4Addr, (String, Instant)>,
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
    /// at least the convergence delay, read at `now`.
    pub fn plan(&mut self, owned: &BTreeMap<Ipv4Addr, String>, now: Instant) -> Plan {
        self.first_seen.retain(|a, (d, _)| owned.get(a) == Some(d));
        for (a, d) in owned {
            self.first_seen.entry(*a).or_insert((d.clone(), now));
        }
        let target: BTreeMap<Ipv4Addr, String> = self
            .first_seen
            .iter()
            .filter(|(_, (_, t))| now.duration_since(*t) >= self.delay)
            .map(|(a, (d, _))| (*a, d.clone()))
            .collect();
        // An address EC2 stopped showing anywhere keeps its old route until it shows up again.
        // A change is made before it is broken, in one `ip -batch`: the new route and the new
        // owner's allowed source first, then the old owner's allowed source goes.
        let mut plan = Plan::default();
        for (a, d) in &target {
            let old = self.effective.get(a);
            if old == Some(d) {
                continue;
            }
            plan.cmds.push(format!("route replace {a}/32 dev {d}"));
            plan.cmds
                .push(format!("rule add iif {d} from {a} lookup main pref 1000"));
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
            self.effective.insert(*a, d.clone());
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
}
