//! The node's network, changed from one thread that lives in the node's network namespace
//! (the agent's own with hostNetwork; another one under test). Every netlink socket is opened
//! on that thread, so all of them see the same namespace.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use tokio::sync::{mpsc, oneshot};

use crate::retry;

use super::netlink::{Addr, Link, Netlink};
use super::nft::{MarkedIface, Nft, NFPROTO_IPV4, NFPROTO_IPV6};
use super::want::{self, HostState, Iface, RoutingTuning, Vip};

/// How the host is changed.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// A network namespace to work in instead of the agent's own (a /run/netns path).
    pub netns: Option<PathBuf>,
    pub tuning: RoutingTuning,
    /// Send gratuitous ARP after adding an IPv4 address.
    pub garp: bool,
}

/// What one reconcile changed and what it could not do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub added: Vec<IpAddr>,
    pub removed: Vec<IpAddr>,
    /// Routes, rules or netfilter tables written or removed.
    pub routing_changes: usize,
    /// Floating addresses the node carries afterwards.
    pub configured: usize,
    pub problems: Vec<String>,
    /// The interfaces as the reconcile found them.
    pub interfaces: Vec<Iface>,
    /// Held addresses whose whole ENI's interface (Interface mode) has not appeared yet.
    pub awaiting: usize,
}

enum Job {
    Apply {
        vips: Vec<Vip>,
        reply: oneshot::Sender<io::Result<Report>>,
    },
    Prepare {
        mac: String,
        address: Option<(Ipv4Addr, u8)>,
        timeout: Duration,
        reply: oneshot::Sender<io::Result<Link>>,
    },
}

/// A handle on the host thread. Dropping every handle stops the thread.
#[derive(Clone)]
pub struct Host {
    tx: mpsc::UnboundedSender<Job>,
}

fn gone() -> io::Error {
    io::Error::other("the network thread stopped")
}

impl Host {
    pub fn spawn(cfg: HostConfig) -> io::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        super::netns::spawn_in("floatip-net", cfg.netns.clone(), move || {
            Worker::open(cfg).map(|w| ((), w.serve(rx)))
        })?;
        Ok(Self { tx })
    }

    /// Makes the host carry exactly `vips` (and floatip's routing for them); removes every
    /// address, route, rule and table floatip added that is not wanted any more.
    pub async fn apply(&self, vips: Vec<Vip>) -> io::Result<Report> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Apply { vips, reply })
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Waits up to `timeout` for the interface with `mac`, sets it up and gives it `address`
    /// (the ENI's own primary address, without a prefix route) unless it has it already.
    pub async fn prepare(
        &self,
        mac: &str,
        address: Option<(Ipv4Addr, u8)>,
        timeout: Duration,
    ) -> io::Result<Link> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Prepare {
                mac: mac.to_ascii_lowercase(),
                address,
                timeout,
                reply,
            })
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

struct Worker {
    cfg: HostConfig,
    nl: Netlink,
    nft: Nft,
    /// The marked interfaces last written to nf_tables; None until the first reconcile.
    written: Option<(Vec<MarkedIface>, Vec<MarkedIface>)>,
}

impl Worker {
    fn open(cfg: HostConfig) -> io::Result<Self> {
        Ok(Self {
            nl: Netlink::connect()?,
            nft: Nft::open()
                .map_err(|e| io::Error::new(e.kind(), format!("opening nf_tables netlink: {e}")))?,
            cfg,
            written: None,
        })
    }

    async fn serve(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = rx.recv().await {
            match job {
                Job::Apply { vips, reply } => {
                    let _ = reply.send(self.apply(&vips).await);
                }
                Job::Prepare {
                    mac,
                    address,
                    timeout,
                    reply,
                } => {
                    let _ = reply.send(self.prepare(&mac, address, timeout).await);
                }
            }
        }
    }

    async fn prepare(
        &mut self,
        mac: &str,
        address: Option<(Ipv4Addr, u8)>,
        timeout: Duration,
    ) -> io::Result<Link> {
        let deadline = Instant::now() + timeout;
        let nl = &self.nl;
        let found = retry::poll(retry::INTERFACE_POLL, Some(deadline), move || async move {
            Ok::<_, io::Error>(nl.links().await?.into_iter().find(|l| l.mac == mac))
        })
        .await?;
        let link = found.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no interface with MAC {mac} appeared within {timeout:?}"),
            )
        })?;
        if !link.up {
            self.nl.set_up(link.index).await?;
        }
        self.wait_carrier(&link, deadline, timeout).await?;
        if let Some((ip, prefix)) = address {
            let present = self
                .nl
                .addresses()
                .await?
                .iter()
                .any(|a| a.index == link.index && a.address == IpAddr::V4(ip));
            if !present {
                self.nl
                    .add_address(link.index, IpAddr::V4(ip), prefix, None)
                    .await?;
            }
        }
        Ok(link)
    }

    /// Waits until `link` has carrier: a route through a gateway on a link without one is
    /// refused (EINVAL, "invalid gateway"), as a hot-plugged interface's first routes were
    /// when added a moment too early.
    async fn wait_carrier(
        &self,
        link: &Link,
        deadline: Instant,
        timeout: Duration,
    ) -> io::Result<()> {
        let nl = &self.nl;
        let index = link.index;
        let up = retry::poll(retry::INTERFACE_POLL, Some(deadline), move || async move {
            let links = nl.links().await?;
            let carrier = links.iter().any(|l| l.index == index && l.carrier);
            Ok::<_, io::Error>(carrier.then_some(()))
        })
        .await?;
        up.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{} (MAC {}) got no carrier within {timeout:?}",
                    link.name, link.mac
                ),
            )
        })
    }

    async fn apply(&mut self, vips: &[Vip]) -> io::Result<Report> {
        let (links, addrs, ifaces) = self.nl.ifaces().await?;
        let state = want::host_state(vips, &ifaces, &self.cfg.tuning);
        let mut report = Report {
            problems: state.problems.clone(),
            configured: state.addresses.len(),
            interfaces: ifaces,
            awaiting: state.awaiting,
            ..Report::default()
        };
        self.set_up(&state, &links).await?;
        // Stop answering on addresses that left first, then fix routing, then add.
        for a in addrs.iter().filter(|a| a.ours) {
            if !state.addresses.contains(&(a.index, a.address)) {
                self.nl.del_address(a).await?;
                report.removed.push(a.address);
            }
        }
        report.routing_changes += self
            .sync_routes(&state)
            .await
            .map_err(|e| with_links(e, &links, &addrs))?;
        report.routing_changes += self.sync_rules(&state).await?;
        report.routing_changes += self.sync_marks(&state)?;
        self.add_addresses(&state, &links, &addrs, &mut report)
            .await?;
        Ok(report)
    }

    /// Sets up the whole ENIs' interfaces that are down and waits (briefly) for their carrier:
    /// a route through a gateway on a link without one is refused.
    async fn set_up(&mut self, state: &HostState, links: &[Link]) -> io::Result<()> {
        for link in links.iter().filter(|l| state.up.contains(&l.index)) {
            if !link.up {
                self.nl.set_up(link.index).await?;
            }
            if !link.carrier {
                let wait = Duration::from_secs(2);
                self.wait_carrier(link, Instant::now() + wait, wait).await?;
            }
        }
        Ok(())
    }

    /// Makes floatip's routes exactly the state's; returns how many it wrote or removed.
    async fn sync_routes(&mut self, state: &HostState) -> io::Result<usize> {
        let mut changes = 0;
        let routes = self.nl.routes().await?;
        let have: BTreeSet<_> = routes.iter().map(|(s, _)| s.clone()).collect();
        let missing = state.routes.iter().filter(|r| !have.contains(*r));
        for r in want::in_add_order(missing) {
            self.nl.add_route(r).await?;
            changes += 1;
        }
        for (spec, msg) in routes {
            if !state.routes.contains(&spec) {
                self.nl.del_route(msg).await?;
                changes += 1;
            }
        }
        Ok(changes)
    }

    /// Makes floatip's policy rules exactly the state's; returns how many it wrote or removed.
    async fn sync_rules(&mut self, state: &HostState) -> io::Result<usize> {
        let mut changes = 0;
        let rules = self.nl.rules().await?;
        let have: BTreeSet<_> = rules.iter().map(|(s, _)| s.clone()).collect();
        for r in state.rules.iter().filter(|r| !have.contains(*r)) {
            self.nl.add_rule(r).await?;
            changes += 1;
        }
        for (spec, msg) in rules {
            if !state.rules.contains(&spec) {
                self.nl.del_rule(msg).await?;
                changes += 1;
            }
        }
        Ok(changes)
    }

    /// Rewrites floatip's nf_tables tables when the marked interfaces changed or the tables
    /// vanished; returns 1 when it changed something.
    fn sync_marks(&mut self, state: &HostState) -> io::Result<usize> {
        let want_nft = (state.marked_v4.clone(), state.marked_v6.clone());
        let mut rewrite = self.written.as_ref() != Some(&want_nft);
        if !rewrite {
            // Someone may have flushed the ruleset since: check the tables are still there.
            for (fam, marked) in [(NFPROTO_IPV4, &want_nft.0), (NFPROTO_IPV6, &want_nft.1)] {
                rewrite |= self.nft.table_exists(fam)? == marked.is_empty();
            }
        }
        if !rewrite {
            return Ok(0);
        }
        let mask = self.cfg.tuning.mark_mask;
        for (fam, marked, table) in [
            (NFPROTO_IPV4, &want_nft.0, "ip"),
            (NFPROTO_IPV6, &want_nft.1, "ip6"),
        ] {
            self.nft.replace(fam, marked, mask).map_err(|e| {
                io::Error::new(e.kind(), format!("writing the {table} floatip table: {e}"))
            })?;
        }
        let changed = self.written.is_some() || !want_nft.0.is_empty() || !want_nft.1.is_empty();
        self.written = Some(want_nft);
        Ok(usize::from(changed))
    }

    /// Adds the state's addresses the host does not carry yet, announcing IPv4 ones with
    /// gratuitous ARP when asked to.
    async fn add_addresses(
        &mut self,
        state: &HostState,
        links: &[Link],
        addrs: &[Addr],
        report: &mut Report,
    ) -> io::Result<()> {
        for &(index, address) in &state.addresses {
            let present = addrs
                .iter()
                .any(|a| a.index == index && a.address == address);
            if present {
                continue;
            }
            let prefix = if address.is_ipv4() { 32 } else { 128 };
            let link = links.iter().find(|l| l.index == index);
            let name = link.map_or("", |l| l.name.as_str());
            self.nl
                .add_address(index, address, prefix, Some(name))
                .await?;
            report.added.push(address);
            if let (true, IpAddr::V4(v4)) = (self.cfg.garp, address) {
                if let Some(mac) = link.and_then(|l| super::garp::parse_mac(&l.mac)) {
                    self.announce(index, mac, v4);
                }
            }
        }
        Ok(())
    }

    /// Three gratuitous ARPs, 100 ms apart, without holding up the reconcile.
    fn announce(&self, index: u32, mac: [u8; 6], address: Ipv4Addr) {
        tokio::spawn(async move {
            let waits = retry::GARP_REPEATS.build().map(Some);
            for wait in std::iter::once(None).chain(waits) {
                if let Some(wait) = wait {
                    tokio::time::sleep(wait).await;
                }
                if let Err(e) = super::garp::send(index, mac, address) {
                    tracing::warn!(%address, error = %e, "gratuitous ARP failed (needs CAP_NET_RAW)");
                    return;
                }
            }
            tracing::debug!(%address, "sent gratuitous ARP");
        });
    }
}

/// `e` with what the kernel had of each link at the time (state, carrier, addresses): a route
/// the kernel refuses ("Invalid argument") names no interface, and the cause is usually there.
fn with_links(e: io::Error, links: &[Link], addrs: &[Addr]) -> io::Error {
    let shown: Vec<String> = links
        .iter()
        .filter(|l| l.name != "lo")
        .map(|l| {
            let own: Vec<String> = (addrs.iter())
                .filter(|a| a.index == l.index)
                .map(|a| format!("{}/{}", a.address, a.prefix))
                .collect();
            format!(
                "{} (index {}, {}{}, addresses [{}])",
                l.name,
                l.index,
                if l.up { "up" } else { "down" },
                if l.carrier { "" } else { ", no carrier" },
                own.join(" ")
            )
        })
        .collect();
    io::Error::new(
        e.kind(),
        format!("{e}; the links then: {}", shown.join("; ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_route_says_how_each_link_was() {
        let link = |index, name: &str, up, carrier| Link {
            index,
            name: name.into(),
            mac: "02:00:00:00:00:01".into(),
            up,
            carrier,
        };
        let e = io::Error::new(
            io::ErrorKind::InvalidInput,
            "adding route 0.0.0.0/0 to table 20004: Invalid argument",
        );
        let links = [
            link(1, "lo", true, true),
            link(2, "eth0", true, true),
            link(4, "eth1", true, false),
        ];
        let out = with_links(e, &links, &[]).to_string();
        assert!(
            out.starts_with("adding route 0.0.0.0/0 to table 20004"),
            "{out}"
        );
        assert!(
            out.contains("eth1 (index 4, up, no carrier, addresses [])"),
            "{out}"
        );
        assert!(out.contains("eth0 (index 2, up, addresses [])"), "{out}");
        assert!(!out.contains("lo ("), "{out}");
    }
}
