//! The kernel's view through rtnetlink: links, addresses, floatip's routes and rules, read into
//! the plain types of `want.rs` and changed one object at a time.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressMessage, AddressProtocol, AddressScope,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, IpVersion};

use super::want::{Iface, RouteSpec, RuleSpec, PROTO};

/// Ends the label of IPv4 addresses floatip added (IFNAMSIZ allows 15 characters in all).
const LABEL_SUFFIX: &str = ":fip";

/// A link: index, name, MAC (lower case), administratively up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: String,
    pub up: bool,
    /// Whether the link has carrier (IFF_LOWER_UP): routes through it may be added.
    pub carrier: bool,
}

/// An address as the kernel lists it.
#[derive(Debug, Clone)]
pub struct Addr {
    pub index: u32,
    pub address: IpAddr,
    pub prefix: u8,
    pub ours: bool,
    pub global: bool,
    msg: AddressMessage,
}

fn nl_err(what: &str, e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => {
            let code = m.raw_code();
            io::Error::new(
                io::Error::from_raw_os_error(-code).kind(),
                format!("{what}: {}", io::Error::from_raw_os_error(-code)),
            )
        }
        other => io::Error::other(format!("{what}: {other}")),
    }
}

fn mac_string(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// rtnetlink requests on one connection, in the network namespace it was opened in.
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a connection; its driver runs on the current Tokio runtime.
    pub fn connect() -> io::Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    pub async fn links(&self) -> io::Result<Vec<Link>> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_err("listing links", e))?;
        Ok(msgs
            .into_iter()
            .map(|m| {
                let mut l = Link {
                    index: m.header.index,
                    name: String::new(),
                    mac: String::new(),
                    up: m.header.flags.contains(LinkFlags::Up),
                    carrier: m.header.flags.contains(LinkFlags::LowerUp),
                };
                for a in m.attributes {
                    match a {
                        LinkAttribute::IfName(n) => l.name = n,
                        LinkAttribute::Address(b) => l.mac = mac_string(&b),
                        _ => {}
                    }
                }
                l
            })
            .collect())
    }

    pub async fn set_up(&self, index: u32) -> io::Result<()> {
        let msg = rtnetlink::LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| nl_err("setting the link up", e))
    }

    pub async fn addresses(&self) -> io::Result<Vec<Addr>> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_err("listing addresses", e))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| {
                let mut address = None;
                let mut ours = false;
                for a in &m.attributes {
                    match a {
                        // IFA_LOCAL is the interface's own address on point-to-point links;
                        // IFA_ADDRESS otherwise. Both are equal elsewhere.
                        AddressAttribute::Local(ip) => address = Some(*ip),
                        AddressAttribute::Address(ip) if address.is_none() => address = Some(*ip),
                        AddressAttribute::Protocol(AddressProtocol::Other(p)) => {
                            ours |= *p == PROTO
                        }
                        AddressAttribute::Label(l) => ours |= l.ends_with(LABEL_SUFFIX),
                        _ => {}
                    }
                }
                Some(Addr {
                    index: m.header.index,
                    address: address?,
                    prefix: m.header.prefix_len,
                    ours,
                    global: m.header.scope == AddressScope::Universe,
                    msg: m,
                })
            })
            .collect())
    }

    /// Adds `address/prefix` to the link. `ours` (the link's name) marks it as floatip's, so
    /// only floatip ever removes it: IFA_PROTO (kernel 5.18+), and for IPv4 also the label
    /// `<name>:fip` where it fits, which older kernels keep too. No prefix route: floatip's own
    /// table routes the subnet.
    pub async fn add_address(
        &self,
        index: u32,
        address: IpAddr,
        prefix: u8,
        ours: Option<&str>,
    ) -> io::Result<()> {
        let mut req = self.handle.address().add(index, address, prefix);
        let msg = req.message_mut();
        let mut flags = AddressFlags::Noprefixroute;
        if address.is_ipv6() {
            // A VIP that moves must not wait for duplicate address detection.
            flags |= AddressFlags::Nodad;
        }
        msg.attributes.push(AddressAttribute::Flags(flags));
        if let Some(name) = ours {
            msg.attributes
                .push(AddressAttribute::Protocol(AddressProtocol::Other(PROTO)));
            let label = format!("{name}{LABEL_SUFFIX}");
            if address.is_ipv4() && label.len() < 16 {
                msg.attributes.push(AddressAttribute::Label(label));
            }
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => Ok(()),
            Err(e) => Err(nl_err(&format!("adding {address}/{prefix}"), e)),
        }
    }

    pub async fn del_address(&self, a: &Addr) -> io::Result<()> {
        match self.handle.address().del(a.msg.clone()).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EADDRNOTAVAIL => {
                Ok(())
            }
            Err(e) => Err(nl_err(&format!("removing {}", a.address), e)),
        }
    }

    /// IPv6 default gateways of the main table, by outgoing interface.
    pub async fn v6_gateways(&self) -> io::Result<Vec<(u32, Ipv6Addr)>> {
        let mut filter = RouteMessage::default();
        filter.header.address_family = AddressFamily::Inet6;
        let msgs: Vec<RouteMessage> = self
            .handle
            .route()
            .get(filter)
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_err("listing IPv6 routes", e))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.destination_prefix_length == 0 && table_of(m) == 254)
            .filter_map(|m| {
                let spec = route_spec(m)?;
                match spec.gateway? {
                    IpAddr::V6(gw) => Some((spec.ifindex, gw)),
                    IpAddr::V4(_) => None,
                }
            })
            .collect())
    }

    /// Interfaces with what `want::host_state` needs to know about them.
    pub async fn ifaces(&self) -> io::Result<(Vec<Link>, Vec<Addr>, Vec<Iface>)> {
        let links = self.links().await?;
        let addrs = self.addresses().await?;
        let gw6 = self.v6_gateways().await?;
        let ifaces = links
            .iter()
            .filter(|l| !l.mac.is_empty())
            .map(|l| Iface {
                index: l.index,
                name: l.name.clone(),
                mac: l.mac.clone(),
                v4: addrs
                    .iter()
                    .filter(|a| a.index == l.index && !a.ours && a.global)
                    .find_map(|a| match a.address {
                        IpAddr::V4(v4) if a.prefix < 31 => Some((v4, a.prefix)),
                        _ => None,
                    }),
                v6_gateway: gw6.iter().find(|(i, _)| *i == l.index).map(|(_, g)| *g),
            })
            .collect();
        Ok((links, addrs, ifaces))
    }

    /// floatip's routes (protocol PROTO), in every table, both families.
    pub async fn routes(&self) -> io::Result<Vec<(RouteSpec, RouteMessage)>> {
        let mut out = Vec::new();
        for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut filter = RouteMessage::default();
            filter.header.address_family = fam;
            filter.header.table = RouteHeader::RT_TABLE_UNSPEC;
            let msgs: Vec<RouteMessage> = self
                .handle
                .route()
                .get(filter)
                .execute()
                .try_collect()
                .await
                .map_err(|e| nl_err("listing routes", e))?;
            out.extend(
                msgs.into_iter()
                    .filter(|m| m.header.protocol == RouteProtocol::Other(PROTO))
                    .filter_map(|m| Some((route_spec(&m)?, m))),
            );
        }
        Ok(out)
    }

    pub async fn add_route(&self, r: &RouteSpec) -> io::Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = family(r.dest);
        m.header.destination_prefix_length = r.prefix;
        m.header.table = RouteHeader::RT_TABLE_UNSPEC;
        m.header.protocol = RouteProtocol::Other(PROTO);
        m.header.kind = RouteType::Unicast;
        m.header.scope = if r.gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if r.prefix > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(r.dest)));
        }
        if let Some(gw) = r.gateway {
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
            // The gateway is on the link even when the table has no route to it yet.
            m.header.flags = RouteFlags::Onlink;
        }
        m.attributes.push(RouteAttribute::Oif(r.ifindex));
        m.attributes.push(RouteAttribute::Table(r.table));
        self.handle
            .route()
            .add(m)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                nl_err(
                    &format!("adding route {}/{} to table {}", r.dest, r.prefix, r.table),
                    e,
                )
            })
    }

    pub async fn del_route(&self, m: RouteMessage) -> io::Result<()> {
        match self.handle.route().del(m).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => Ok(()),
            Err(e) => Err(nl_err("removing a route", e)),
        }
    }

    /// floatip's rules (protocol PROTO), both families.
    pub async fn rules(&self) -> io::Result<Vec<(RuleSpec, RuleMessage)>> {
        let mut out = Vec::new();
        for v in [IpVersion::V4, IpVersion::V6] {
            let msgs: Vec<RuleMessage> = self
                .handle
                .rule()
                .get(v)
                .execute()
                .try_collect()
                .await
                .map_err(|e| nl_err("listing rules", e))?;
            out.extend(msgs.into_iter().filter_map(|m| Some((rule_spec(&m)?, m))));
        }
        Ok(out)
    }

    pub async fn add_rule(&self, r: &RuleSpec) -> io::Result<()> {
        let mut req = self.handle.rule().add();
        let m = req.message_mut();
        m.header.family = if r.v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        m.header.action = RuleAction::ToTable;
        m.attributes.push(RuleAttribute::Priority(r.priority));
        m.attributes.push(RuleAttribute::Table(r.table));
        m.attributes
            .push(RuleAttribute::Protocol(RouteProtocol::Other(PROTO)));
        if let Some(src) = r.source {
            m.header.src_len = if src.is_ipv4() { 32 } else { 128 };
            m.attributes.push(RuleAttribute::Source(src));
        }
        if let Some((mark, mask)) = r.fwmark {
            m.attributes.push(RuleAttribute::FwMark(mark));
            m.attributes.push(RuleAttribute::FwMask(mask));
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            Err(e) => Err(nl_err("adding a rule", e)),
        }
    }

    pub async fn del_rule(&self, m: RuleMessage) -> io::Result<()> {
        match self.handle.rule().del(m).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENOENT => Ok(()),
            Err(e) => Err(nl_err("removing a rule", e)),
        }
    }
}

fn table_of(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(m.header.table as u32)
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn route_spec(m: &RouteMessage) -> Option<RouteSpec> {
    let v6 = m.header.address_family == AddressFamily::Inet6;
    let mut dest = None;
    let mut gateway = None;
    let mut ifindex = 0;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dest = ip_of(d),
            RouteAttribute::Gateway(g) => gateway = ip_of(g),
            RouteAttribute::Oif(i) => ifindex = *i,
            _ => {}
        }
    }
    let dest = dest.unwrap_or(if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    });
    Some(RouteSpec {
        table: table_of(m),
        dest,
        prefix: m.header.destination_prefix_length,
        gateway,
        ifindex,
    })
}

fn rule_spec(m: &RuleMessage) -> Option<RuleSpec> {
    let mut spec = RuleSpec {
        v6: m.header.family == AddressFamily::Inet6,
        priority: 0,
        table: m.header.table as u32,
        source: None,
        fwmark: None,
    };
    let mut ours = false;
    let (mut mark, mut mask) = (None, u32::MAX);
    for a in &m.attributes {
        match a {
            RuleAttribute::Priority(p) => spec.priority = *p,
            RuleAttribute::Table(t) => spec.table = *t,
            RuleAttribute::Source(s) => spec.source = Some(*s),
            RuleAttribute::FwMark(v) => mark = Some(*v),
            RuleAttribute::FwMask(v) => mask = *v,
            RuleAttribute::Protocol(RouteProtocol::Other(p)) => ours = *p == PROTO,
            _ => {}
        }
    }
    spec.fwmark = mark.map(|m| (m, mask));
    ours.then_some(spec)
}
