//! Connection marking with nf_tables, spoken directly over netlink (no `nft` binary, no C
//! library). floatip owns two tables, `ip floatip` and `ip6 floatip`, and replaces each whole in
//! one atomic batch, so a reconcile never leaves a half-written ruleset.
//!
//! Per floating interface (ifindex `i`, mark `v` inside `mask`):
//! - prerouting: `iif i ct direction original ct mark set (ct mark & ~mask) | v`
//! - prerouting and output (type route, so the kernel routes again):
//!   `ct direction reply ct mark & mask == v meta mark set (meta mark & ~mask) | v`
//!
//! Replies of connections that came in on the floating interface, including replies of
//! DNAT-forwarded ones whose source is a pod until POSTROUTING, then carry the mark, and an
//! `ip rule fwmark v/mask` sends them to that interface's table. Bits outside `mask` are never
//! touched, so kube-proxy's and the VPC CNI's marks survive.

use std::io;
use std::time::Duration;

use rtnetlink::sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

/// The name of floatip's tables.
pub const TABLE: &str = "floatip";

/// One interface whose connections are marked, and its mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MarkedIface {
    pub ifindex: u32,
    pub mark: u32,
}

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_APPEND: u16 = 0x800;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;

pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_IPV6: u8 = 10;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;

const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_ACCEPT: u32 = 1;
/// NF_IP_PRI_MANGLE: after conntrack (-200), before DNAT (-100).
const PRIORITY_MANGLE: i32 = -150;

const NFT_REG_1: u32 = 1;
const NFT_META_MARK: u32 = 3;
const NFT_META_IIF: u32 = 4;
const NFT_CT_DIRECTION: u32 = 1;
const NFT_CT_MARK: u32 = 3;
const NFT_CMP_EQ: u32 = 0;
const IP_CT_DIR_ORIGINAL: u8 = 0;
const IP_CT_DIR_REPLY: u8 = 1;

/// Netlink attributes, written into a byte buffer.
#[derive(Default)]
struct Attrs(Vec<u8>);

impl Attrs {
    fn raw(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = 4 + payload.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(payload);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }
    fn str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.raw(kind, &b)
    }
    fn be32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.raw(kind, &v.to_be_bytes())
    }
    fn nested(&mut self, kind: u16, inner: Attrs) -> &mut Self {
        self.raw(kind | NLA_F_NESTED, &inner.0)
    }
    /// NFTA_DATA_VALUE inside a nested data attribute: register contents in host order.
    fn data(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let mut inner = Attrs::default();
        inner.raw(NFTA_DATA_VALUE, value);
        self.nested(kind, inner)
    }
}

/// One expression of a rule.
fn expr(name: &str, data: Attrs) -> Attrs {
    let mut e = Attrs::default();
    e.str(NFTA_EXPR_NAME, name).nested(NFTA_EXPR_DATA, data);
    e
}

fn load_meta(key: u32) -> Attrs {
    let mut d = Attrs::default();
    d.be32(1, NFT_REG_1).be32(2, key); // NFTA_META_DREG, NFTA_META_KEY
    expr("meta", d)
}

fn set_meta(key: u32) -> Attrs {
    let mut d = Attrs::default();
    d.be32(2, key).be32(3, NFT_REG_1); // NFTA_META_KEY, NFTA_META_SREG
    expr("meta", d)
}

fn load_ct(key: u32) -> Attrs {
    let mut d = Attrs::default();
    d.be32(1, NFT_REG_1).be32(2, key); // NFTA_CT_DREG, NFTA_CT_KEY
    expr("ct", d)
}

fn set_ct(key: u32) -> Attrs {
    let mut d = Attrs::default();
    d.be32(2, key).be32(4, NFT_REG_1); // NFTA_CT_KEY, NFTA_CT_SREG
    expr("ct", d)
}

fn cmp_eq(value: &[u8]) -> Attrs {
    let mut d = Attrs::default();
    d.be32(1, NFT_REG_1).be32(2, NFT_CMP_EQ).data(3, value); // SREG, OP, DATA
    expr("cmp", d)
}

/// reg1 = (reg1 & mask) ^ xor, on a 32-bit value.
fn bitwise(mask: u32, xor: u32) -> Attrs {
    let mut d = Attrs::default();
    d.be32(1, NFT_REG_1) // SREG
        .be32(2, NFT_REG_1) // DREG
        .be32(3, 4) // LEN
        .data(4, &mask.to_ne_bytes())
        .data(5, &xor.to_ne_bytes());
    expr("bitwise", d)
}

fn expressions(list: Vec<Attrs>) -> Attrs {
    let mut out = Attrs::default();
    for e in list {
        out.nested(NFTA_LIST_ELEM, e);
    }
    out
}

/// `iif i ct direction original ct mark set (ct mark & ~mask) | v`
fn mark_rule(iface: MarkedIface, mask: u32) -> Attrs {
    expressions(vec![
        load_meta(NFT_META_IIF),
        cmp_eq(&iface.ifindex.to_ne_bytes()),
        load_ct(NFT_CT_DIRECTION),
        cmp_eq(&[IP_CT_DIR_ORIGINAL]),
        load_ct(NFT_CT_MARK),
        bitwise(!mask, iface.mark),
        set_ct(NFT_CT_MARK),
    ])
}

/// `ct direction reply ct mark & mask == v meta mark set (meta mark & ~mask) | v`
fn restore_rule(iface: MarkedIface, mask: u32) -> Attrs {
    expressions(vec![
        load_ct(NFT_CT_DIRECTION),
        cmp_eq(&[IP_CT_DIR_REPLY]),
        load_ct(NFT_CT_MARK),
        bitwise(mask, 0),
        cmp_eq(&iface.mark.to_ne_bytes()),
        load_meta(NFT_META_MARK),
        bitwise(!mask, iface.mark),
        set_meta(NFT_META_MARK),
    ])
}

/// A finished batch: its bytes, the sequence numbers that asked for an acknowledgement, and
/// the next sequence number.
type Encoded = (Vec<u8>, Vec<u32>, u32);

/// Netlink messages of one batch.
struct Batch {
    buf: Vec<u8>,
    seq: u32,
    /// Sequence numbers that asked for an acknowledgement.
    acked: Vec<u32>,
}

impl Batch {
    fn new(seq: u32) -> Self {
        let mut b = Self {
            buf: Vec::new(),
            seq,
            acked: Vec::new(),
        };
        b.msg(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            0,
            NFNL_SUBSYS_NFTABLES,
            &Attrs::default(),
        );
        b
    }

    fn msg(&mut self, kind: u16, flags: u16, family: u8, res_id: u16, attrs: &Attrs) {
        let len = 16 + 4 + attrs.0.len();
        self.buf.extend_from_slice(&(len as u32).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        self.buf.extend_from_slice(&attrs.0);
        if flags & NLM_F_ACK != 0 {
            self.acked.push(self.seq);
        }
        self.seq = self.seq.wrapping_add(1);
    }

    fn nft(&mut self, msg: u16, flags: u16, family: u8, attrs: &Attrs) {
        self.msg(
            (NFNL_SUBSYS_NFTABLES << 8) | msg,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            family,
            0,
            attrs,
        );
    }

    fn finish(mut self) -> Encoded {
        self.msg(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            0,
            NFNL_SUBSYS_NFTABLES,
            &Attrs::default(),
        );
        (self.buf, self.acked, self.seq)
    }
}

fn table_attrs() -> Attrs {
    let mut a = Attrs::default();
    a.str(NFTA_TABLE_NAME, TABLE);
    a
}

fn chain(name: &str, kind: &str, hook: u32) -> Attrs {
    let mut h = Attrs::default();
    h.be32(NFTA_HOOK_HOOKNUM, hook)
        .be32(NFTA_HOOK_PRIORITY, PRIORITY_MANGLE as u32);
    let mut a = Attrs::default();
    a.str(NFTA_CHAIN_TABLE, TABLE)
        .str(NFTA_CHAIN_NAME, name)
        .nested(NFTA_CHAIN_HOOK, h)
        .be32(NFTA_CHAIN_POLICY, NF_ACCEPT)
        .str(NFTA_CHAIN_TYPE, kind);
    a
}

fn rule(chain: &str, exprs: Attrs) -> Attrs {
    let mut a = Attrs::default();
    a.str(NFTA_RULE_TABLE, TABLE)
        .str(NFTA_RULE_CHAIN, chain)
        .nested(NFTA_RULE_EXPRESSIONS, exprs);
    a
}

/// The batch that replaces floatip's table of `family` with one marking `marked`; none deletes
/// it. "Create, delete, create" is the atomic replace-or-create idiom of nf_tables.
fn replace_batch(seq: u32, family: u8, marked: &[MarkedIface], mask: u32) -> Encoded {
    let mut b = Batch::new(seq);
    b.nft(NFT_MSG_NEWTABLE, NLM_F_CREATE, family, &table_attrs());
    b.nft(NFT_MSG_DELTABLE, 0, family, &table_attrs());
    if !marked.is_empty() {
        b.nft(NFT_MSG_NEWTABLE, NLM_F_CREATE, family, &table_attrs());
        b.nft(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE,
            family,
            &chain("prerouting", "filter", NF_INET_PRE_ROUTING),
        );
        b.nft(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE,
            family,
            &chain("output", "route", NF_INET_LOCAL_OUT),
        );
        for s in marked {
            b.nft(
                NFT_MSG_NEWRULE,
                NLM_F_CREATE | NLM_F_APPEND,
                family,
                &rule("prerouting", mark_rule(*s, mask)),
            );
            b.nft(
                NFT_MSG_NEWRULE,
                NLM_F_CREATE | NLM_F_APPEND,
                family,
                &rule("prerouting", restore_rule(*s, mask)),
            );
            b.nft(
                NFT_MSG_NEWRULE,
                NLM_F_CREATE | NLM_F_APPEND,
                family,
                &rule("output", restore_rule(*s, mask)),
            );
        }
    }
    b.finish()
}

/// A netfilter netlink socket, in the network namespace it was opened in.
pub struct Nft {
    socket: Socket,
    seq: u32,
}

impl Nft {
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        set_recv_timeout(&socket, Duration::from_secs(2))?;
        Ok(Self { socket, seq: 1 })
    }

    /// Makes floatip's table of `family` exactly `marked` (none: no table).
    pub fn replace(&mut self, family: u8, marked: &[MarkedIface], mask: u32) -> io::Result<()> {
        let (buf, acked, next) = replace_batch(self.seq, family, marked, mask);
        self.seq = next;
        self.socket.send(&buf, 0)?;
        self.wait_acks(&acked)
    }

    /// Whether floatip's table of `family` exists.
    pub fn table_exists(&mut self, family: u8) -> io::Result<bool> {
        let seq = self.seq;
        let mut b = Batch {
            buf: Vec::new(),
            seq,
            acked: Vec::new(),
        };
        b.nft(NFT_MSG_GETTABLE, 0, family, &table_attrs());
        self.seq = b.seq;
        self.socket.send(&b.buf, 0)?;
        match self.wait_acks(&[seq]) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads answers until every `acked` sequence number was acknowledged; the first error
    /// answer fails the whole call (the kernel has then rolled the batch back).
    fn wait_acks(&mut self, acked: &[u32]) -> io::Result<()> {
        let mut pending: Vec<u32> = acked.to_vec();
        let mut buf = vec![0u8; 65536];
        while !pending.is_empty() {
            let n = self.socket.recv(&mut &mut buf[..], 0)?;
            let mut off = 0;
            while off + 16 <= n {
                let len =
                    u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
                let kind = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().expect("2 bytes"));
                let seq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().expect("4 bytes"));
                if len < 16 || off + len > n {
                    break;
                }
                match kind {
                    NLMSG_ERROR => {
                        let code = i32::from_ne_bytes(
                            buf[off + 16..off + 20].try_into().expect("4 bytes"),
                        );
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        pending.retain(|s| *s != seq);
                    }
                    NLMSG_DONE => {}
                    // A GET answers with the object itself and then the acknowledgement.
                    _ => {}
                }
                off += len.next_multiple_of(4);
            }
        }
        Ok(())
    }
}

fn set_recv_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid socket descriptor and a timeval that lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::addr_of!(tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the messages of a batch: (type, flags, seq, nfgen family).
    fn messages(buf: &[u8]) -> Vec<(u16, u16, u32, u8)> {
        let mut out = Vec::new();
        let mut off = 0;
        while off < buf.len() {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
            let flags = u16::from_ne_bytes(buf[off + 6..off + 8].try_into().unwrap());
            let seq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap());
            assert_eq!(len % 4, 0, "messages stay aligned");
            out.push((kind, flags, seq, buf[off + 16]));
            off += len;
        }
        assert_eq!(off, buf.len());
        out
    }

    #[test]
    fn an_empty_ruleset_deletes_the_table_atomically() {
        let (buf, acked, next) = replace_batch(7, NFPROTO_IPV4, &[], 0xff0000);
        let kinds: Vec<u16> = messages(&buf).iter().map(|m| m.0).collect();
        assert_eq!(kinds, [0x10, 0xa00, 0xa02, 0x11]);
        assert_eq!(acked, [8, 9]);
        assert_eq!(next, 11);
    }

    #[test]
    fn each_marked_interface_gets_a_mark_rule_and_two_restore_rules() {
        let marked = [
            MarkedIface {
                ifindex: 3,
                mark: 0x30000,
            },
            MarkedIface {
                ifindex: 4,
                mark: 0x40000,
            },
        ];
        let (buf, acked, _) = replace_batch(1, NFPROTO_IPV6, &marked, 0xff0000);
        let msgs = messages(&buf);
        let rules = msgs.iter().filter(|m| m.0 == 0xa06).count();
        assert_eq!(rules, 6);
        assert!(msgs[1..msgs.len() - 1].iter().all(|m| m.3 == NFPROTO_IPV6));
        assert_eq!(
            acked.len(),
            msgs.len() - 2,
            "everything but begin and end is acked"
        );
    }

    #[test]
    fn attributes_are_padded_and_nested_flagged() {
        let mut a = Attrs::default();
        a.str(1, "ab").be32(2, 1);
        assert_eq!(a.0.len(), 8 + 8);
        assert_eq!(&a.0[0..4], &[7, 0, 1, 0]);
        let mut n = Attrs::default();
        n.nested(4, a);
        assert_eq!(u16::from_ne_bytes([n.0[2], n.0[3]]), 4 | NLA_F_NESTED);
    }
}
