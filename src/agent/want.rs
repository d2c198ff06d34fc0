//! What the node should look like, as data: which addresses go on which interface, and the
//! routes, rules and connection marks that send their replies out through that interface.
//! Pure, so the whole plan is unit-tested without a kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::api::{FloatingIP, Mode};

use super::nft::MarkedIface;

/// Marks routes, rules and addresses floatip added (RTPROT / IFA_PROTO value), so a restarted
/// agent removes exactly those and nothing else. Outside the ranges iproute2 and routing
/// daemons use.
pub const PROTO: u8 = 0xf1;

/// An address this node should carry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Vip {
    pub address: IpAddr,
    /// MAC of the interface, lower case.
    pub mac: String,
    /// The FloatingIP it belongs to, for logs.
    pub name: String,
    /// The interface's own address (ElasticIP mode: the private address the VPC NATs the
    /// Elastic IP to): routed like a floating address, but never added or removed.
    pub own: bool,
    /// Moved to another node and kept here while the VPC converges (the release delay).
    pub departing: bool,
    /// Interface mode: the primary address of a whole ENI that comes and goes with the
    /// address. Its interface is hot-plugged with no address (no DHCP runs for it), so floatip
    /// sets it up and puts the address on it; until it appears (EC2 attaches for seconds) and
    /// once it has gone, its absence is no problem.
    pub whole: bool,
}

/// The addresses whose holder, per status, is `node`. An ElasticIP address is NATed by the VPC
/// to the holder's own private address, which is only routed: replies from it must leave
/// through the ENI that owns it.
pub fn held_by(fips: &[FloatingIP], node: &str) -> Vec<Vip> {
    let mut out: Vec<Vip> = fips
        .iter()
        .filter_map(|f| {
            let holder = f.status.as_ref()?.holder.as_ref()?;
            if holder.node != node {
                return None;
            }
            let own = f.spec.mode == Mode::ElasticIP;
            let whole = f.spec.mode == Mode::Interface;
            let address = if own {
                holder.private_address.as_deref()?.parse().ok()?
            } else {
                crate::api::parse_address(&f.spec.address)?
            };
            Some(Vip {
                address,
                mac: holder.mac_address.as_deref()?.to_ascii_lowercase(),
                name: f.metadata.name.clone().unwrap_or_default(),
                own,
                departing: false,
                whole,
            })
        })
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.address == b.address);
    out
}

/// Routing table numbers, rule priority and mark bits: the tuning of floatip's policy routing,
/// shared by the agent and `floatip attach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutingTuning {
    /// Routing table of an interface: base + ifindex.
    pub table_base: u32,
    /// Priority of the fwmark rules; the from-address rules use the next one.
    pub rule_priority: u32,
    /// Bits of the packet and connection mark floatip may use.
    pub mark_mask: u32,
}

impl RoutingTuning {
    pub fn table(&self, ifindex: u32) -> u32 {
        self.table_base.saturating_add(ifindex)
    }

    /// The mark of an interface: its ifindex shifted into the mask; None when it does not fit.
    pub fn mark(&self, ifindex: u32) -> Option<u32> {
        if self.mark_mask == 0 || ifindex == 0 {
            return None;
        }
        let shift = self.mark_mask.trailing_zeros();
        let v = ifindex.checked_shl(shift)?;
        (v >> shift == ifindex && v & !self.mark_mask == 0).then_some(v)
    }
}

/// An interface as the kernel shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub index: u32,
    pub name: String,
    pub mac: String,
    /// Its own (not floatip's) IPv4 address and prefix: gives the subnet and its gateway.
    pub v4: Option<(Ipv4Addr, u8)>,
    /// The IPv6 default gateway the main table uses through it (from router advertisements).
    pub v6_gateway: Option<Ipv6Addr>,
}

/// A route in one of floatip's tables.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteSpec {
    pub table: u32,
    pub dest: IpAddr,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    pub ifindex: u32,
}

/// The order to add routes in: on-link routes (no gateway) first. The kernel looks a gateway up
/// in the route's own table, then in main: with the subnet route in floatip's table first, the
/// default route is valid whatever main holds (added first, it failed with "Nexthop has invalid
/// gateway", EINVAL, whenever main had no connected route on that interface).
pub fn in_add_order<'a>(routes: impl IntoIterator<Item = &'a RouteSpec>) -> Vec<&'a RouteSpec> {
    let mut routes: Vec<&RouteSpec> = routes.into_iter().collect();
    routes.sort_by_key(|r| r.gateway.is_some());
    routes
}

/// A policy rule: `from <source> lookup <table>` or `fwmark <mark>/<mask> lookup <table>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleSpec {
    pub v6: bool,
    pub priority: u32,
    pub table: u32,
    pub source: Option<IpAddr>,
    pub fwmark: Option<(u32, u32)>,
}

/// The agent's desired host state: everything floatip should have on the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostState {
    /// (ifindex, address), as /32 or /128.
    pub addresses: BTreeSet<(u32, IpAddr)>,
    pub routes: BTreeSet<RouteSpec>,
    pub rules: BTreeSet<RuleSpec>,
    pub marked_v4: Vec<MarkedIface>,
    pub marked_v6: Vec<MarkedIface>,
    /// Interfaces to set up: whole ENIs' (Interface mode), which the OS leaves down.
    pub up: BTreeSet<u32>,
    /// Held addresses whose whole ENI's interface has not appeared yet: look again soon.
    pub awaiting: usize,
    /// What could not be done, one sentence each.
    pub problems: Vec<String>,
}

/// The first address after the network: the VPC router of an AWS subnet.
pub fn gateway_v4(address: Ipv4Addr, prefix: u8) -> Option<Ipv4Addr> {
    if prefix == 0 || prefix >= 31 {
        return None;
    }
    let mask = u32::MAX << (32 - prefix);
    Some(Ipv4Addr::from((u32::from(address) & mask) + 1))
}

fn network_v4(address: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    Ipv4Addr::from(u32::from(address) & mask)
}

/// The host state that carries `vips` on `ifaces`: each address on the interface with its
/// MAC, and for each such interface its table, rules and connection mark.
pub fn host_state(vips: &[Vip], ifaces: &[Iface], n: &RoutingTuning) -> HostState {
    let mut s = HostState::default();
    let ifaces = &s.whole_networks(vips, ifaces);
    for (index, families) in s.place_addresses(vips, ifaces, n) {
        let iface = ifaces
            .iter()
            .find(|i| i.index == index)
            .expect("used ifaces exist");
        s.route_interface(iface, families, n);
    }
    s
}

/// Which address families an interface carries: (IPv4, IPv6).
type Families = (bool, bool);

impl HostState {
    /// The interfaces, with the subnet of each whole ENI's interface (Interface mode) filled
    /// in: it has no address of its own to give its subnet and gateway, so they are taken
    /// from another interface of the node whose subnet holds the address (on EKS, the
    /// primary interface when spec.subnetId is the nodes' subnet).
    fn whole_networks(&mut self, vips: &[Vip], ifaces: &[Iface]) -> Vec<Iface> {
        let mut out = ifaces.to_vec();
        for v in vips.iter().filter(|v| v.whole) {
            let IpAddr::V4(address) = v.address else {
                continue;
            };
            let Some(i) = out.iter().position(|i| i.mac == v.mac) else {
                continue;
            };
            self.up.insert(out[i].index);
            if out[i].v4.is_some() {
                continue;
            }
            let sibling = ifaces
                .iter()
                .filter_map(|o| o.v4)
                .find(|(own, prefix)| network_v4(*own, *prefix) == network_v4(address, *prefix));
            match sibling {
                Some((_, prefix)) => out[i].v4 = Some((address, prefix)),
                None => self.problems.push(format!(
                    "{} ({}): no other interface of this node is in its subnet, so the subnet's gateway is unknown; replies follow the main table (choose a spec.subnetId the nodes have an interface in)",
                    v.address, v.name
                )),
            }
        }
        out
    }

    /// Puts each address on the interface with its MAC, with its from-address rule; returns
    /// the families each interface that got one carries.
    fn place_addresses(
        &mut self,
        vips: &[Vip],
        ifaces: &[Iface],
        n: &RoutingTuning,
    ) -> BTreeMap<u32, Families> {
        let by_mac: BTreeMap<&str, &Iface> = ifaces.iter().map(|i| (i.mac.as_str(), i)).collect();
        let mut used: BTreeMap<u32, Families> = BTreeMap::new();
        for v in vips {
            let Some(iface) = by_mac.get(v.mac.as_str()) else {
                if v.whole {
                    // Not attached yet, or detached already: EC2 takes seconds either way.
                    self.awaiting += usize::from(!v.departing);
                    continue;
                }
                self.problems.push(format!(
                    "{} ({}): no interface has MAC {}; is the ENI attached and was floatip attach run?",
                    v.address, v.name, v.mac
                ));
                continue;
            };
            if !v.own {
                self.addresses.insert((iface.index, v.address));
            }
            self.rules.insert(RuleSpec {
                v6: v.address.is_ipv6(),
                priority: n.rule_priority + 1,
                table: n.table(iface.index),
                source: Some(v.address),
                fwmark: None,
            });
            let fam = used.entry(iface.index).or_default();
            if v.address.is_ipv4() {
                fam.0 = true;
            } else {
                fam.1 = true;
            }
        }
        used
    }

    /// The table of an interface that carries addresses, per family: its routes, and the
    /// fwmark rule and connection mark that steer forwarded replies to it.
    fn route_interface(&mut self, iface: &Iface, (v4, v6): Families, n: &RoutingTuning) {
        let mark = n.mark(iface.index);
        if mark.is_none() {
            self.problems.push(format!(
                "{}: ifindex {} does not fit --fwmark-mask {:#x}; forwarded (DNAT) replies are not steered",
                iface.name, iface.index, n.mark_mask
            ));
        }
        if v4 {
            self.route_v4(iface, n.table(iface.index));
            if let Some(mark) = mark {
                self.mark_replies(false, iface.index, mark, n);
            }
        }
        if v6 {
            self.route_v6(iface, n.table(iface.index));
            if let Some(mark) = mark {
                self.mark_replies(true, iface.index, mark, n);
            }
        }
    }

    /// The interface's subnet and a default route through its gateway, from its own address.
    fn route_v4(&mut self, iface: &Iface, table: u32) {
        let Some((addr, prefix)) = iface.v4 else {
            if self.up.contains(&iface.index) {
                // A whole ENI's: whole_networks said why already.
                return;
            }
            self.problems.push(format!(
                "{}: has no IPv4 address of its own, so its subnet gateway is unknown; replies follow the main table",
                iface.name
            ));
            return;
        };
        self.routes.insert(RouteSpec {
            table,
            dest: IpAddr::V4(network_v4(addr, prefix)),
            prefix,
            gateway: None,
            ifindex: iface.index,
        });
        if let Some(gw) = gateway_v4(addr, prefix) {
            self.routes.insert(RouteSpec {
                table,
                dest: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                prefix: 0,
                gateway: Some(IpAddr::V4(gw)),
                ifindex: iface.index,
            });
        }
    }

    /// A default route through the IPv6 gateway the main table uses on the interface.
    fn route_v6(&mut self, iface: &Iface, table: u32) {
        let Some(gw) = iface.v6_gateway else {
            self.problems.push(format!(
                "{}: no IPv6 default route through it in the main table; IPv6 replies follow the main table",
                iface.name
            ));
            return;
        };
        self.routes.insert(RouteSpec {
            table,
            dest: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            prefix: 0,
            gateway: Some(IpAddr::V6(gw)),
            ifindex: iface.index,
        });
    }

    /// The fwmark rule to the interface's table, and its connection mark in nf_tables.
    fn mark_replies(&mut self, v6: bool, ifindex: u32, mark: u32, n: &RoutingTuning) {
        self.rules.insert(RuleSpec {
            v6,
            priority: n.rule_priority,
            table: n.table(ifindex),
            source: None,
            fwmark: Some((mark, n.mark_mask)),
        });
        let marked = if v6 {
            &mut self.marked_v6
        } else {
            &mut self.marked_v4
        };
        marked.push(MarkedIface { ifindex, mark });
    }
}

/// Problems with interfaces addresses of this node were put on and that carry none now
/// (`macs`): missing, or with neither an IPv4 address of its own nor an IPv6 default route, so
/// an address put on it could not answer. Checked while the node holds nothing, so a node whose
/// floating interface vanished does not look able to take an address the moment its last one
/// moved away.
pub fn idle_problems(macs: &BTreeSet<String>, ifaces: &[Iface]) -> Vec<String> {
    let restart = "restart this agent pod so that floatip attach prepares the node again";
    macs.iter()
        .filter_map(|mac| match ifaces.iter().find(|i| i.mac == *mac) {
            None => Some(format!(
                "no interface has MAC {mac}, which this node's addresses were put on; if its ENI \
                 was detached, {restart}"
            )),
            Some(i) if i.v4.is_none() && i.v6_gateway.is_none() => Some(format!(
                "{} (MAC {mac}), which this node's addresses were put on, has no address of its \
                 own and no IPv6 default route; {restart}",
                i.name
            )),
            Some(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const N: RoutingTuning = RoutingTuning {
        table_base: 10000,
        rule_priority: 100,
        mark_mask: 0x00ff_0000,
    };

    fn fip(name: &str, address: &str, mode: &str, holder: Option<(&str, &str)>) -> FloatingIP {
        let mut status = json!({});
        if let Some((node, mac)) = holder {
            status = json!({"holder": {"node": node, "instanceId": "i-1", "macAddress": mac, "since": "2026-01-01T00:00:00Z"}});
        }
        serde_json::from_value(json!({
            "apiVersion": "floatip.io/v1alpha1", "kind": "FloatingIP",
            "metadata": {"name": name},
            "spec": {"address": address, "mode": mode, "subnetId": "subnet-0a1b2c3d"},
            "status": status,
        }))
        .unwrap()
    }

    fn eth1() -> Iface {
        Iface {
            index: 3,
            name: "eth1".into(),
            mac: "02:aa:00:00:00:01".into(),
            v4: Some(("10.99.8.21".parse().unwrap(), 22)),
            v6_gateway: None,
        }
    }

    #[test]
    fn only_addresses_held_by_this_node_and_not_elastic_ips() {
        let fips = [
            fip(
                "a",
                "10.99.8.100",
                "SecondaryIP",
                Some(("n1", "02:AA:00:00:00:01")),
            ),
            fip(
                "b",
                "10.99.8.101",
                "SecondaryIP",
                Some(("n2", "02:aa:00:00:00:02")),
            ),
            fip("c", "10.99.8.102", "SecondaryIP", None),
            fip(
                "d",
                "10.99.8.103",
                "RouteTable",
                Some(("n1", "02:aa:00:00:00:01")),
            ),
        ];
        let held: Vec<String> = held_by(&fips, "n1")
            .iter()
            .map(|v| format!("{} {}", v.address, v.mac))
            .collect();
        assert_eq!(
            held,
            [
                "10.99.8.100 02:aa:00:00:00:01",
                "10.99.8.103 02:aa:00:00:00:01"
            ]
        );
    }

    #[test]
    fn an_elastic_ip_holder_routes_its_own_private_address_and_adds_nothing() {
        let mut public = fip(
            "public",
            "198.51.100.7",
            "ElasticIP",
            Some(("n1", "02:aa:00:00:00:01")),
        );
        let h = public.status.as_mut().unwrap().holder.as_mut().unwrap();
        h.private_address = Some("10.99.8.21".into());
        let mut unplaced = fip(
            "unknown-private",
            "198.51.100.8",
            "ElasticIP",
            Some(("n1", "02:aa:00:00:00:01")),
        );
        unplaced
            .status
            .as_mut()
            .unwrap()
            .holder
            .as_mut()
            .unwrap()
            .private_address = None;
        let vips = held_by(&[public, unplaced], "n1");
        assert_eq!(vips.len(), 1, "{vips:?}");
        assert_eq!(vips[0].address.to_string(), "10.99.8.21");
        assert!(vips[0].own);
        let p = host_state(&vips, &[eth1()], &N);
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert!(p.addresses.is_empty(), "{:?}", p.addresses);
        let sources: Vec<Option<IpAddr>> = p.rules.iter().map(|r| r.source).collect();
        assert!(
            sources.contains(&Some("10.99.8.21".parse().unwrap())),
            "{sources:?}"
        );
        assert_eq!(p.marked_v4.len(), 1);
        assert_eq!(p.routes.len(), 2, "{:?}", p.routes);
    }

    #[test]
    fn marks_fit_the_mask_or_are_refused() {
        assert_eq!(N.mark(3), Some(0x0003_0000));
        assert_eq!(N.mark(255), Some(0x00ff_0000));
        assert_eq!(N.mark(256), None);
        assert_eq!(N.mark(0), None);
        assert_eq!(
            gateway_v4("10.99.8.21".parse().unwrap(), 22),
            Some("10.99.8.1".parse().unwrap())
        );
        assert_eq!(gateway_v4("10.99.8.21".parse().unwrap(), 32), None);
    }

    #[test]
    fn a_held_vip_gets_address_table_rules_and_a_mark() {
        let vips = [Vip {
            address: "10.99.8.100".parse().unwrap(),
            mac: "02:aa:00:00:00:01".into(),
            name: "web".into(),
            own: false,
            departing: false,
            whole: false,
        }];
        let p = host_state(&vips, &[eth1()], &N);
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(
            p.addresses,
            BTreeSet::from([(3, "10.99.8.100".parse().unwrap())])
        );
        let routes: Vec<String> = p
            .routes
            .iter()
            .map(|r| format!("{} {}/{} {:?}", r.table, r.dest, r.prefix, r.gateway))
            .collect();
        assert_eq!(
            routes,
            ["10003 0.0.0.0/0 Some(10.99.8.1)", "10003 10.99.8.0/22 None"]
        );
        let rules: Vec<String> = p
            .rules
            .iter()
            .map(|r| format!("{} {:?} {:?}", r.priority, r.source, r.fwmark))
            .collect();
        assert_eq!(
            rules,
            [
                "100 None Some((196608, 16711680))",
                "101 Some(10.99.8.100) None"
            ]
        );
        assert_eq!(
            p.marked_v4,
            [MarkedIface {
                ifindex: 3,
                mark: 0x30000
            }]
        );
        assert!(p.marked_v6.is_empty());
    }

    #[test]
    fn nothing_held_plans_nothing_and_a_missing_interface_is_a_problem() {
        assert_eq!(host_state(&[], &[eth1()], &N), HostState::default());
        let vips = [Vip {
            address: "10.99.8.100".parse().unwrap(),
            mac: "02:bb:00:00:00:09".into(),
            name: "web".into(),
            own: false,
            departing: false,
            whole: false,
        }];
        let p = host_state(&vips, &[eth1()], &N);
        assert!(p.addresses.is_empty() && p.rules.is_empty());
        assert!(
            p.problems[0].contains("no interface has MAC 02:bb:00:00:00:09"),
            "{:?}",
            p.problems
        );
    }

    #[test]
    fn an_idle_interface_must_still_be_there_and_addressed() {
        let known = BTreeSet::from(["02:aa:00:00:00:01".to_string()]);
        assert!(idle_problems(&known, &[eth1()]).is_empty());
        assert!(idle_problems(&BTreeSet::new(), &[]).is_empty());
        let gone = idle_problems(&known, &[]);
        assert!(
            gone[0].contains("no interface has MAC 02:aa:00:00:00:01")
                && gone[0].contains("restart this agent pod"),
            "{gone:?}"
        );
        let bare = Iface { v4: None, ..eth1() };
        let bare = idle_problems(&known, &[bare]);
        assert!(
            bare[0].starts_with("eth1 (MAC 02:aa:00:00:00:01)"),
            "{bare:?}"
        );
        let v6_only = Iface {
            v4: None,
            v6_gateway: Some("fe80::1".parse().unwrap()),
            ..eth1()
        };
        assert!(idle_problems(&known, &[v6_only]).is_empty());
    }

    #[test]
    fn the_subnet_route_is_added_before_the_default_route_through_its_gateway() {
        let route = |dest: &str, prefix, gateway: Option<&str>| RouteSpec {
            table: 10004,
            dest: dest.parse().unwrap(),
            prefix,
            gateway: gateway.map(|g| g.parse().unwrap()),
            ifindex: 4,
        };
        let default = route("0.0.0.0", 0, Some("10.99.8.1"));
        let subnet = route("10.99.8.0", 22, None);
        let set = BTreeSet::from([default.clone(), subnet.clone()]);
        assert_eq!(
            set.first(),
            Some(&default),
            "the set alone would add the default first"
        );
        assert_eq!(in_add_order(&set), vec![&subnet, &default]);
    }

    /// A hot-plugged whole ENI (Interface mode): no address of its own.
    fn eth2() -> Iface {
        Iface {
            index: 4,
            name: "eth2".into(),
            mac: "02:aa:00:00:00:02".into(),
            v4: None,
            v6_gateway: None,
        }
    }

    fn whole(departing: bool) -> Vip {
        Vip {
            address: "10.99.8.100".parse().unwrap(),
            mac: "02:aa:00:00:00:02".into(),
            name: "web".into(),
            own: false,
            departing,
            whole: true,
        }
    }

    #[test]
    fn an_interface_mode_holder_carries_a_whole_eni() {
        let fips = [fip(
            "web",
            "10.99.8.100",
            "Interface",
            Some(("n1", "02:AA:00:00:00:02")),
        )];
        let vips = held_by(&fips, "n1");
        assert_eq!(vips.len(), 1);
        assert!(vips[0].whole && !vips[0].own, "{vips:?}");
        assert_eq!(vips[0].mac, "02:aa:00:00:00:02");
        let secondary = fip(
            "s",
            "10.99.8.101",
            "SecondaryIP",
            Some(("n1", "02:aa:00:00:00:01")),
        );
        assert!(!held_by(&[secondary], "n1")[0].whole);
    }

    /// The ENI's interface is set up and gets the address, and its table takes the subnet of
    /// the node's interface in the same subnet: replies from the address leave through it.
    #[test]
    fn a_whole_eni_is_set_up_and_routed_through_its_subnets_gateway() {
        let p = host_state(&[whole(false)], &[eth1(), eth2()], &N);
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(p.up, BTreeSet::from([4]));
        let vip: IpAddr = "10.99.8.100".parse().unwrap();
        assert_eq!(p.addresses, BTreeSet::from([(4, vip)]));
        let routes: Vec<String> = (p.routes.iter())
            .map(|r| {
                format!(
                    "{} {}/{} via {:?} dev {}",
                    r.table, r.dest, r.prefix, r.gateway, r.ifindex
                )
            })
            .collect();
        assert_eq!(
            routes,
            [
                "10004 0.0.0.0/0 via Some(10.99.8.1) dev 4",
                "10004 10.99.8.0/22 via None dev 4"
            ]
        );
        assert!(
            p.rules
                .iter()
                .any(|r| r.source == Some(vip) && r.table == 10004),
            "{:?}",
            p.rules
        );
        assert_eq!(p.marked_v4.len(), 1);
    }

    #[test]
    fn a_whole_eni_not_attached_yet_or_gone_already_is_no_problem() {
        for departing in [false, true] {
            let p = host_state(&[whole(departing)], &[eth1()], &N);
            assert!(p.problems.is_empty(), "{:?}", p.problems);
            assert!(p.addresses.is_empty() && p.routes.is_empty() && p.up.is_empty());
            // Awaited only while it is to come.
            assert_eq!(p.awaiting, usize::from(!departing));
        }
        assert_eq!(
            host_state(&[whole(false)], &[eth1(), eth2()], &N).awaiting,
            0
        );
        // A floating ENI's interface missing is still one.
        let floating = Vip {
            departing: false,
            whole: false,
            ..whole(false)
        };
        assert_eq!(host_state(&[floating], &[eth1()], &N).problems.len(), 1);
    }

    #[test]
    fn a_whole_eni_in_a_subnet_no_other_interface_is_in_says_its_gateway_is_unknown() {
        let elsewhere = Iface {
            v4: Some(("10.50.0.10".parse().unwrap(), 24)),
            ..eth1()
        };
        let p = host_state(&[whole(false)], &[elsewhere, eth2()], &N);
        assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
        assert!(
            p.problems[0].contains("gateway is unknown"),
            "{}",
            p.problems[0]
        );
        // The address is still carried; only the reply routing is missing.
        assert_eq!(p.addresses.len(), 1);
        assert!(p.routes.is_empty(), "{:?}", p.routes);
    }
}
