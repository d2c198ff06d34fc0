//! The VPC: a router namespace that follows EC2 (moto). When EC2 shows an ENI `attached` to a
//! node's instance (not while it is `attaching`: the EC2 lab says which are, [`crate::ec2`]), an
//! interface with its MAC appears in the node's namespace (as a hot-plugged ENI does), wired to
//! the router; when EC2 no longer shows it attached (a detach is done, not while `detaching`),
//! the interface and its wire go. The router routes every address EC2 says an ENI owns, IPv4 and
//! IPv6, to that ENI's wire once EC2 has said so for the convergence delay, drops what is sent
//! to an address EC2 has shown on no ENI for that long (as AWS does), and enforces the
//! source/dest check: a packet whose source the sending ENI does not own is dropped. At its
//! edge it translates Elastic IPs (and customer-owned IPs) to the private address EC2
//! associates them with, after the same delay ([`nat`]).
//!
//! It follows route tables too ([`tables`]): a /32 or /128 route outside the VPC's CIDRs to
//! an attached ENI whose source/dest check is off delivers that address to the ENI's wire,
//! for the clients (the namespaces at the router's edge, each in a subnet of its own) whose
//! subnet's table has the route, after the same delay; such an ENI may send from any source.
//!
//! The follower reads EC2 when the EC2 lab says a mutating call went through ([`heard`]), and
//! every [`BACKSTOP`] in any case (for changes made to moto directly); between reads it looks
//! every [`TICK`] at what has become due, so the lab adds no delay of its own to the
//! convergence delay beyond a read of EC2 (tens of ms) and `ip` itself.
//!
//! The follower also checks, at every read, that no address is held by two ENIs in EC2, and
//! keeps how long each IPv6 address it saw held was then on no ENI at all.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_ec2::types::Filter;

use heard::Generation;
use nat::{Nat, NatPlan};
use routes::Routes;
use tables::{Overlays, Table, Wired};

mod follow;
mod heard;
mod nat;
mod routes;
mod tables;

/// The subnet's gateway, on every router-side wire.
pub const GATEWAY: &str = "10.99.8.1";
/// The IPv6 gateway on every router-side wire: a link-local address, as a VPC's router
/// advertises itself.
pub const GATEWAY6: &str = "fe80::1";
/// How often EC2 is read when the EC2 lab tells of no change.
pub const BACKSTOP: Duration = Duration::from_millis(500);
/// The longest the router goes without looking at what is due, and without asking the EC2 lab
/// whether EC2 changed.
pub const TICK: Duration = Duration::from_millis(10);

/// A change the router made: `address` now reaches node `node` (1-based). For a public
/// address, the node its translation now leads to.
#[derive(Debug, Clone)]
pub struct Switch {
    pub at: SystemTime,
    pub address: IpAddr,
    pub node: usize,
}

/// How long an IPv6 address was held by no ENI in EC2 after it had been held (a move done as
/// unassign then assign). Seen at the follower's reads, so a gap shorter than one read may
/// go unseen.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Unheld {
    /// Since when it is on no ENI, while it is.
    pub since: Option<SystemTime>,
    /// The longest gap that ended, and when it began.
    pub longest: Duration,
    pub longest_from: Option<SystemTime>,
}

impl Unheld {
    /// The longest gap, counting one still open at `now`.
    pub fn longest_at(&self, now: SystemTime) -> (Duration, Option<SystemTime>) {
        let open = self
            .since
            .map(|s| now.duration_since(s).unwrap_or_default());
        match open {
            Some(d) if d > self.longest => (d, self.since),
            _ => (self.longest, self.longest_from),
        }
    }
}

/// What the follower saw; shared with the simulation.
#[derive(Debug, Default)]
pub struct Seen {
    /// Node index (1-based) -> (instance id, namespace name).
    pub nodes: BTreeMap<usize, (String, String)>,
    pub switches: Vec<Switch>,
    /// Addresses EC2 showed on two ENIs at once: (when, address, ENIs).
    pub double_holders: Vec<(SystemTime, IpAddr, Vec<String>)>,
    /// IPv6 addresses EC2 showed on an ENI at least once, and their gaps.
    pub unheld: BTreeMap<IpAddr, Unheld>,
    /// Completed reads of EC2.
    pub reads: u64,
}

pub struct Follower {
    pub seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Follower {
    /// Follows EC2 as `aws` (moto itself) shows it, told of changes by the EC2 lab at
    /// `lab` (its endpoint URL). `clients`: the router's wires to namespaces that are no
    /// node, each with the subnet it stands for (whose route table it follows).
    pub fn start(
        aws: aws_sdk_ec2::Client,
        lab: &str,
        subnet: String,
        router: String,
        nodes: BTreeMap<usize, (String, String)>,
        clients: Vec<(String, String)>,
        delay: Duration,
    ) -> Self {
        let seen = Arc::new(Mutex::new(Seen {
            nodes,
            ..Seen::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let state = State {
            aws,
            lab: lab.to_string(),
            subnet,
            router,
            seen: seen.clone(),
            routes: Routes::new(delay),
            nat: Nat::new(delay),
            overlays: Overlays::new(delay),
            clients: clients.into_iter().collect(),
            reach: BTreeMap::new(),
        };
        let s = stop.clone();
        let thread = std::thread::spawn(move || state.run(&s));
        Self {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// When the router switched `address` to a node, in order.
    pub fn switches(&self, address: IpAddr) -> Vec<SystemTime> {
        let seen = self.seen.lock().unwrap();
        (seen.switches.iter())
            .filter(|s| s.address == address)
            .map(|s| s.at)
            .collect()
    }

    /// Waits for `n` more reads of EC2 (so the router has seen what EC2 says now).
    pub fn wait_reads(&self, n: u64, timeout: Duration) -> bool {
        let start = self.seen.lock().unwrap().reads;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.seen.lock().unwrap().reads >= start + n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    aws: aws_sdk_ec2::Client,
    /// The EC2 lab's endpoint, which tells of changes.
    lab: String,
    subnet: String,
    router: String,
    seen: Arc<Mutex<Seen>>,
    routes: Routes,
    nat: Nat,
    overlays: Overlays,
    /// Router wire -> the subnet of the namespace at its other end.
    clients: BTreeMap<String, String>,
    /// public address -> the node its translation leads to, as last recorded.
    reach: BTreeMap<IpAddr, usize>,
}

/// What one read of EC2 says.
#[derive(Debug, Default)]
struct Read {
    /// address -> router wire of the attached ENI that owns it.
    owned: BTreeMap<IpAddr, String>,
    /// Secondary IPv4 and every IPv6 address -> the ENIs holding it (attached or not).
    holders: BTreeMap<IpAddr, Vec<String>>,
    /// public (or customer-owned) address -> the private address it is associated with.
    associated: BTreeMap<IpAddr, IpAddr>,
    allocated: BTreeSet<IpAddr>,
    /// router wire -> the MAC of the ENI at its other end.
    macs: BTreeMap<String, String>,
    /// Attached ENI id -> its wire and source/dest check.
    enis: BTreeMap<String, Wired>,
    /// The VPC's route tables.
    tables: Vec<Table>,
}

fn ip(ns: &str, args: &str) -> Result<String, String> {
    let mut all = vec!["-n", ns];
    all.extend(args.split_whitespace());
    super::net::run("ip", &all).map_err(|e| e.to_string())
}

/// The router's wire for device `dev` of node `node`.
fn wire(node: usize, dev: i32) -> String {
    format!("r{node}e{dev}")
}

fn node_of_wire(w: &str) -> Option<usize> {
    w.strip_prefix('r')?.split('e').next()?.parse().ok()
}

fn parse(s: Option<&str>) -> Option<IpAddr> {
    s.and_then(|s| s.parse().ok())
}

impl State {
    fn run(mut self, stop: &AtomicBool) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        if let Err(e) = self.edge() {
            eprintln!("router: {e}");
        }
        let generation = rt.block_on(async { Generation::new(&self.lab) });
        // The EC2 lab's count of changes at the last read, and when that read was.
        let mut heard: Option<u64> = None;
        let mut last: Option<(Read, Instant)> = None;
        while !stop.load(Ordering::Relaxed) {
            // Waits up to a tick, less when EC2 changes.
            let now_heard = rt.block_on(generation.after(heard, TICK));
            let changed = now_heard.is_some() && now_heard != heard;
            let stale = last.as_ref().is_none_or(|(_, at)| at.elapsed() >= BACKSTOP);
            if changed || stale {
                match rt.block_on(self.read(&generation)) {
                    Some(read) => {
                        self.check(&read);
                        heard = now_heard;
                        last = Some((read, Instant::now()));
                        self.seen.lock().unwrap().reads += 1;
                    }
                    None => std::thread::sleep(TICK),
                }
            }
            if let Some((read, _)) = &last {
                self.converge(read);
            }
            if now_heard.is_none() {
                // The lab does not answer: no waiting was done, so wait here.
                std::thread::sleep(TICK);
            }
        }
    }

    /// The router's nftables table for Elastic IPs.
    fn edge(&self) -> Result<(), String> {
        nft(&self.router, nat::RULESET)
    }

    /// Reads ENIs and Elastic IPs, plugging in interfaces for newly attached ENIs and
    /// unplugging those of detached ones.
    async fn read(&mut self, lab: &Generation) -> Option<Read> {
        let enis = self
            .aws
            .describe_network_interfaces()
            .filters(
                Filter::builder()
                    .name("subnet-id")
                    .values(&self.subnet)
                    .build(),
            )
            .send()
            .await
            .ok()?;
        let eips = self.aws.describe_addresses().send().await.ok()?;
        // Asked after moto is read: an attach moto shows was begun by then, so the lab lists it
        // unless it is attached by now.
        let attaching = lab.attaching().await.unwrap_or_default();
        let mut read = Read::default();
        let router_links = ip(&self.router, "-o link").unwrap_or_default();
        let mut wired = BTreeSet::new();
        for ni in enis.network_interfaces() {
            holdings(ni, &mut read.holders);
            let attaching = ni
                .network_interface_id()
                .is_some_and(|id| attaching.contains(id));
            if attaching {
                continue;
            }
            if let Some(rdev) = self.plugged(ni, &router_links) {
                wired.insert(rdev.clone());
                if let Some(mac) = ni.mac_address() {
                    read.macs.insert(rdev.clone(), mac.to_string());
                }
                if let Some(id) = ni.network_interface_id() {
                    let wired = Wired {
                        wire: rdev.clone(),
                        // AWS's default, for an answer that leaves it out.
                        source_dest_check: ni.source_dest_check().unwrap_or(true),
                    };
                    read.enis.insert(id.to_string(), wired);
                }
                for a in addresses(ni) {
                    read.owned.insert(a, rdev.clone());
                }
            }
        }
        if let Some(vpc) = enis.network_interfaces().iter().find_map(|n| n.vpc_id()) {
            read.tables = self.tables(vpc).await?;
        }
        self.unplug_all_but(&wired, &router_links);
        for e in eips.addresses() {
            let public = [parse(e.public_ip()), parse(e.customer_owned_ip())];
            read.allocated.extend(public.iter().flatten());
            if let (Some(_), Some(private)) =
                (e.network_interface_id(), parse(e.private_ip_address()))
            {
                for p in public.into_iter().flatten() {
                    read.associated.insert(p, private);
                }
            }
        }
        Some(read)
    }

    /// The route tables of `vpc`, as the router needs them.
    async fn tables(&self, vpc: &str) -> Option<Vec<Table>> {
        let out = self
            .aws
            .describe_route_tables()
            .filters(Filter::builder().name("vpc-id").values(vpc).build())
            .send()
            .await
            .ok()?;
        Some(out.route_tables().iter().map(table).collect())
    }

    /// The router wire of `ni` when it is attached to a node, plugging it in if it is new.
    fn plugged(
        &mut self,
        ni: &aws_sdk_ec2::types::NetworkInterface,
        router_links: &str,
    ) -> Option<String> {
        let att = ni.attachment()?;
        let nodes = self.seen.lock().unwrap().nodes.clone();
        let (idx, (_, ns)) = nodes
            .iter()
            .find(|(_, (inst, _))| att.instance_id() == Some(inst.as_str()))?;
        let dev = att.device_index().unwrap_or(0);
        let rdev = wire(*idx, dev);
        if !router_links.contains(&format!(" {rdev}@")) {
            self.plug(ns, dev, ni, &rdev);
            self.routes.forget_wire(&rdev);
            self.overlays.forget_wire(&rdev);
        }
        Some(rdev)
    }

    /// Removes every node wire not in `wired` (its ENI was detached): deleting the router's end
    /// of the pair takes the node's interface with it.
    fn unplug_all_but(&mut self, wired: &BTreeSet<String>, router_links: &str) {
        let wires = router_links.lines().filter_map(|line| {
            let name = line.split(": ").nth(1)?.split('@').next()?;
            node_of_wire(name).map(|_| name.to_string())
        });
        for w in wires.filter(|w| !wired.contains(w)).collect::<Vec<_>>() {
            if ip(&self.router, &format!("link del {w}")).is_ok() {
                self.routes.forget_wire(&w);
            }
        }
    }

    /// Records addresses on two ENIs, and IPv6 addresses on none.
    fn check(&self, read: &Read) {
        let now = SystemTime::now();
        let mut seen = self.seen.lock().unwrap();
        for (a, enis) in read.holders.iter().filter(|(_, h)| h.len() > 1) {
            seen.double_holders.push((now, *a, enis.clone()));
        }
        for a in read.holders.keys().filter(|a| a.is_ipv6()) {
            seen.unheld.entry(*a).or_default();
        }
        for (a, u) in seen.unheld.iter_mut() {
            match (read.holders.contains_key(a), u.since) {
                (false, None) => u.since = Some(now),
                (true, Some(since)) => {
                    let gap = now.duration_since(since).unwrap_or_default();
                    if gap > u.longest {
                        (u.longest, u.longest_from) = (gap, Some(since));
                    }
                    u.since = None;
                }
                _ => {}
            }
        }
    }

    fn plug(&self, ns: &str, dev: i32, ni: &aws_sdk_ec2::types::NetworkInterface, rdev: &str) {
        let name = format!("eth{dev}");
        let (r, mac) = (&self.router, ni.mac_address().unwrap_or_default());
        if ip(
            ns,
            &format!("link add {name} address {mac} type veth peer name {rdev} netns {r}"),
        )
        .is_err()
        {
            return;
        }
        let _ = ip(r, &format!("link set {rdev} up"));
        // A VPC answers ARP at once; Linux's proxy ARP waits up to 0.8 s at random by default,
        // which made a node's first packets to another (a peer probe of a new holder, the
        // baselines' VRRP adverts) time out.
        let delay = format!("net.ipv4.neigh.{rdev}.proxy_delay=0");
        let _ = super::net::run("ip", &["netns", "exec", r, "sysctl", "-qw", &delay]);
        let _ = ip(r, &format!("addr add {GATEWAY}/32 dev {rdev}"));
        let _ = ip(r, &format!("-6 addr add {GATEWAY6}/64 dev {rdev} nodad"));
        for family in ["", "-6 "] {
            let _ = ip(
                r,
                &format!("{family}rule add iif {rdev} blackhole pref 30000"),
            );
        }
        if dev == 0 {
            // The primary ENI is configured by the OS at boot (IPv6 by DHCPv6 and the
            // router's advertisement).
            let _ = ip(ns, &format!("link set {name} up"));
            if let Some(p) = ni.private_ip_address() {
                let _ = ip(ns, &format!("addr add {p}/22 dev {name}"));
            }
            for a in ni.ipv6_addresses().iter().filter_map(|a| a.ipv6_address()) {
                let _ = ip(ns, &format!("-6 addr add {a}/128 dev {name} nodad"));
            }
            let _ = ip(ns, &format!("route add default via {GATEWAY} dev {name}"));
            let _ = ip(ns, &default6(&name));
        }
    }

    /// Moves the router to what EC2 has said for at least the convergence delay.
    fn converge(&mut self, read: &Read) {
        let now = Instant::now();
        let plan = self.routes.plan(&read.owned, &read.macs, now);
        if !plan.cmds.is_empty() && batch(&self.router, &plan.cmds) {
            self.routes.applied(&plan);
            self.record_routed(&plan.routed);
        }
        let said = tables::said(&read.tables, &self.clients, &read.enis);
        let overlay = self.overlays.plan(&said, &read.macs, now);
        if overlay.cmds.is_empty() || batch(&self.router, &overlay.cmds) {
            self.record_routed(&overlay.routed);
            self.overlays.applied(overlay);
        }
        let edge = self.nat.plan(&read.associated, &read.allocated, now);
        if self.translate(&edge) {
            self.nat.applied(&edge, &read.allocated);
        }
        self.record_public();
    }

    /// Carries out the edge's part of a plan; true when it all ran.
    fn translate(&self, edge: &NatPlan) -> bool {
        (edge.ip.is_empty() || batch(&self.router, &edge.ip))
            && (edge.nft.is_empty() || nft(&self.router, &edge.nft).is_ok())
    }

    /// Records each address now routed to a node's wire.
    fn record_routed(&self, routed: &[(IpAddr, Option<String>)]) {
        let at = SystemTime::now();
        let mut seen = self.seen.lock().unwrap();
        for (address, d) in routed {
            if let Some(node) = d.as_deref().and_then(node_of_wire) {
                seen.switches.push(Switch {
                    at,
                    address: *address,
                    node,
                });
            }
        }
    }

    /// Records each public address whose traffic now leads to another node.
    fn record_public(&mut self) {
        let routed = self.routes.effective();
        let now: BTreeMap<IpAddr, usize> = self
            .nat
            .effective()
            .iter()
            .filter_map(|(p, q)| Some((*p, node_of_wire(routed.get(q)?)?)))
            .collect();
        let at = SystemTime::now();
        let mut seen = self.seen.lock().unwrap();
        for (p, node) in &now {
            if self.reach.get(p) != Some(node) {
                seen.switches.push(Switch {
                    at,
                    address: *p,
                    node: *node,
                });
            }
        }
        self.reach = now;
    }
}

/// The parts of a route table the router follows.
fn table(t: &aws_sdk_ec2::types::RouteTable) -> Table {
    let mut out = Table {
        id: t.route_table_id().unwrap_or_default().to_string(),
        ..Table::default()
    };
    for a in t.associations() {
        out.main |= a.main() == Some(true);
        out.subnets.extend(a.subnet_id().map(str::to_string));
    }
    for r in t.routes() {
        let dest = r
            .destination_cidr_block()
            .or(r.destination_ipv6_cidr_block());
        let Some(dest) = dest else { continue };
        if r.gateway_id() == Some("local") {
            out.local.push(dest.to_string());
        } else if let (Some(a), Some(eni)) = (tables::host_route(dest), r.network_interface_id()) {
            out.to_eni.insert(a, eni.to_string());
        }
    }
    out
}

/// Every address an ENI has: its private IPv4 addresses and its IPv6 addresses.
fn addresses(ni: &aws_sdk_ec2::types::NetworkInterface) -> Vec<IpAddr> {
    let v4 = ni
        .private_ip_addresses()
        .iter()
        .filter_map(|a| parse(a.private_ip_address()));
    let v6 = ni
        .ipv6_addresses()
        .iter()
        .filter_map(|a| parse(a.ipv6_address()));
    v4.chain(v6).collect()
}

/// Adds the addresses that may move (secondary IPv4, every IPv6) of `ni` to `holders`.
fn holdings(
    ni: &aws_sdk_ec2::types::NetworkInterface,
    holders: &mut BTreeMap<IpAddr, Vec<String>>,
) {
    let id = ni.network_interface_id().unwrap_or_default();
    let secondary = ni
        .private_ip_addresses()
        .iter()
        .filter(|a| a.primary() != Some(true))
        .filter_map(|a| parse(a.private_ip_address()));
    let v6 = ni
        .ipv6_addresses()
        .iter()
        .filter_map(|a| parse(a.ipv6_address()));
    for a in secondary.chain(v6) {
        holders.entry(a).or_default().push(id.to_string());
    }
}

/// The `ip` arguments for a node's IPv6 default route through `dev`, as a router
/// advertisement on that interface gives it (each interface its own metric, as AL2023 does).
pub fn default6(dev: &str) -> String {
    let metric = 1024 + dev.trim_start_matches("eth").parse::<u32>().unwrap_or(0);
    format!("-6 route replace default via {GATEWAY6} dev {dev} metric {metric}")
}

/// `nft -f -` in namespace `ns`.
fn nft(ns: &str, ruleset: &str) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let wrote = child
        .stdin
        .take()
        .map(|mut s| s.write_all(ruleset.as_bytes()));
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    match (wrote, out.status.success()) {
        (Some(Ok(())), true) => Ok(()),
        _ => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }
}

/// Runs `cmds` in `ns` with `ip -force -batch -`, IPv6 lines (starting `-6 `) in a batch of
/// their own; true when `ip` could be fed them all.
fn batch(ns: &str, cmds: &[String]) -> bool {
    let (v6, v4): (Vec<&String>, Vec<&String>) = cmds.iter().partition(|c| c.starts_with("-6 "));
    let v6: Vec<&str> = v6.iter().map(|c| c.trim_start_matches("-6 ")).collect();
    let v4: Vec<&str> = v4.iter().map(|c| c.as_str()).collect();
    [("-4", v4), ("-6", v6)]
        .into_iter()
        .filter(|(_, c)| !c.is_empty())
        .all(|(family, c)| batch_of(ns, family, &c))
}

fn batch_of(ns: &str, family: &str, cmds: &[&str]) -> bool {
    let Ok(mut child) = Command::new("ip")
        .args(["-n", ns, family, "-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let input = cmds.join("\n") + "\n";
    let wrote = child
        .stdin
        .take()
        .is_some_and(|mut s| s.write_all(input.as_bytes()).is_ok());
    // "File exists" for a rule that outlived its wire is expected; -force goes on past it.
    let _ = child.wait();
    wrote
}

#[cfg(test)]
mod tests {
    #[test]
    fn wires_name_their_node() {
        assert_eq!(super::wire(3, 1), "r3e1");
        assert_eq!(super::node_of_wire("r3e1"), Some(3));
        assert_eq!(super::node_of_wire("rc"), None);
    }
}
