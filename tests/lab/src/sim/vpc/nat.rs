//! Elastic IPs at the VPC's edge: traffic to an allocation's public address (or to its
//! customer-owned address, which an Outposts local gateway translates the same way) is
//! translated to the private address EC2 associates it with, once EC2 has said so for the
//! convergence delay, and replies leaving for the internet side are translated back. An
//! allocation with no association is dropped, as AWS drops it.
//!
//! The translation is stateless, one packet at a time, as AWS's one-to-one NAT is: a stateful
//! (conntrack) DNAT kept sending a UDP flow whose ports a new request happened to reuse to
//! the private address of an earlier association, a stale path AWS does not have.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::follow::{Due, Follow};
use super::routes::host;

/// The router's nftables table for the translation (created once, by [`RULESET`]).
const TABLE: &str = "ip vpc_edge";

/// The table, its maps public -> private and back, and the rules that use them: incoming
/// before routing (so the router routes the private address to its ENI), outgoing after it,
/// only towards the internet side (an in-VPC peer of the private address sees it unchanged).
pub const RULESET: &str = "table ip vpc_edge {\n\
       map eip { type ipv4_addr : ipv4_addr; }\n\
       map eip_back { type ipv4_addr : ipv4_addr; }\n\
       chain prerouting {\n\
         type filter hook prerouting priority mangle; policy accept;\n\
         ip daddr set ip daddr map @eip\n\
       }\n\
       chain postrouting {\n\
         type filter hook postrouting priority mangle; policy accept;\n\
         oifname \"rinternet\" ip saddr set ip saddr map @eip_back\n\
       }\n\
     }\n";

/// What one read of EC2 asks of the router's edge.
#[derive(Debug, Default, PartialEq)]
pub struct NatPlan {
    /// One nftables transaction (empty when nothing changes).
    pub nft: String,
    /// `ip` batch lines: a blackhole for every public address not seen before, so an
    /// untranslated packet to it is dropped.
    pub ip: Vec<String>,
    due: Vec<Due<IpAddr>>,
}

/// The translations in effect and the public addresses the router knows.
#[derive(Debug)]
pub struct Nat {
    follow: Follow<IpAddr>,
    known: BTreeSet<IpAddr>,
}

impl Nat {
    pub fn new(delay: Duration) -> Self {
        Self {
            follow: Follow::new(delay),
            known: BTreeSet::new(),
        }
    }

    /// `associated`: public -> private as EC2 says now; `allocated`: every public address.
    pub fn plan(
        &mut self,
        associated: &BTreeMap<IpAddr, IpAddr>,
        allocated: &BTreeSet<IpAddr>,
        now: Instant,
    ) -> NatPlan {
        let mut plan = NatPlan {
            ip: allocated
                .difference(&self.known)
                .map(|a| format!("route replace blackhole {}", host(a)))
                .collect(),
            ..NatPlan::default()
        };
        let v4 = associated
            .iter()
            .filter(|(p, q)| p.is_ipv4() && q.is_ipv4())
            .map(|(p, q)| (*p, *q))
            .collect();
        for d in self.follow.due(&v4, now) {
            let p = d.address;
            if let Some(q) = d.old {
                plan.nft += &format!("delete element {TABLE} eip {{ {p} }}\n");
                plan.nft += &format!("delete element {TABLE} eip_back {{ {q} }}\n");
            }
            if let Some(q) = d.new {
                plan.nft += &format!("add element {TABLE} eip {{ {p} : {q} }}\n");
                plan.nft += &format!("add element {TABLE} eip_back {{ {q} : {p} }}\n");
            }
            plan.due.push(d);
        }
        plan
    }

    /// Records that `plan` was carried out.
    pub fn applied(&mut self, plan: &NatPlan, allocated: &BTreeSet<IpAddr>) {
        self.follow.applied(&plan.due);
        self.known.extend(allocated);
    }

    /// public -> private, as the router translates now.
    pub fn effective(&self) -> &BTreeMap<IpAddr, IpAddr> {
        self.follow.effective()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_reassociation_swaps_the_translation_in_one_transaction_after_the_delay() {
        let mut nat = Nat::new(Duration::from_millis(100));
        let t0 = Instant::now();
        let public = ip("198.51.100.7");
        let all = BTreeSet::from([public]);
        let plan = nat.plan(&BTreeMap::new(), &all, t0);
        assert_eq!(plan.ip, ["route replace blackhole 198.51.100.7/32"]);
        assert_eq!(plan.nft, "", "unassociated: nothing to translate");
        nat.applied(&plan, &all);
        let on_a = BTreeMap::from([(public, ip("10.99.8.11"))]);
        nat.plan(&on_a, &all, t0);
        let plan = nat.plan(&on_a, &all, t0 + Duration::from_millis(100));
        assert_eq!(
            plan.nft,
            "add element ip vpc_edge eip { 198.51.100.7 : 10.99.8.11 }\n\
             add element ip vpc_edge eip_back { 10.99.8.11 : 198.51.100.7 }\n"
        );
        assert!(plan.ip.is_empty(), "the blackhole is there already");
        nat.applied(&plan, &all);
        let on_b = BTreeMap::from([(public, ip("10.99.8.12"))]);
        assert_eq!(
            nat.plan(&on_b, &all, t0 + Duration::from_millis(150)).nft,
            ""
        );
        let plan = nat.plan(&on_b, &all, t0 + Duration::from_millis(250));
        assert_eq!(
            plan.nft,
            "delete element ip vpc_edge eip { 198.51.100.7 }\n\
             delete element ip vpc_edge eip_back { 10.99.8.11 }\n\
             add element ip vpc_edge eip { 198.51.100.7 : 10.99.8.12 }\n\
             add element ip vpc_edge eip_back { 10.99.8.12 : 198.51.100.7 }\n"
        );
        nat.applied(&plan, &all);
        assert_eq!(nat.effective().get(&public), Some(&ip("10.99.8.12")));
    }
}
