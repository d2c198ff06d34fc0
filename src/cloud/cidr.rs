//! A subnet's address range, for checking an address before EC2 is asked to carry it.

use std::net::IpAddr;
use std::str::FromStr;

/// An address block such as 10.0.8.0/22 or 2600:1f14::/64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a CIDR block such as 10.0.8.0/22");
        let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > bits(ip) {
            return Err(bad());
        }
        Ok(Self {
            network: from_u128(ip, to_u128(ip) & mask(ip, prefix)),
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.network.is_ipv4()
            && to_u128(ip) & mask(ip, self.prefix) == to_u128(self.network)
    }

    /// The block's `n`th address from its start (0 is the network address).
    pub fn nth(&self, n: u128) -> IpAddr {
        from_u128(self.network, to_u128(self.network) + n)
    }

    /// The block's last address.
    pub fn last(&self) -> IpAddr {
        from_u128(
            self.network,
            to_u128(self.network) | !mask(self.network, self.prefix) & all_ones(self.network),
        )
    }

    /// Whether AWS keeps `ip` for itself: the first four addresses of every subnet block
    /// (network, VPC router, DNS, future use) and the last (broadcast for IPv4).
    pub fn aws_reserved(&self, ip: IpAddr) -> bool {
        let offset = to_u128(ip).wrapping_sub(to_u128(self.network));
        self.contains(ip) && (offset < 4 || ip == self.last())
    }
}

fn bits(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn all_ones(ip: IpAddr) -> u128 {
    if ip.is_ipv4() {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    }
}

fn mask(ip: IpAddr, prefix: u8) -> u128 {
    let host_bits = u32::from(bits(ip) - prefix.min(bits(ip)));
    let host = if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    all_ones(ip) & !host
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(like: IpAddr, n: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::from((n as u32).to_be_bytes()),
        IpAddr::V6(_) => IpAddr::from(n.to_be_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_blocks() {
        let c: Cidr = "10.0.8.7/22".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.8.0/22");
        assert!(c.contains(ip("10.0.8.0")) && c.contains(ip("10.0.11.255")));
        assert!(!c.contains(ip("10.0.12.0")) && !c.contains(ip("10.0.7.255")));
        assert!(
            !c.contains(ip("::a00:800")),
            "another family is never inside"
        );
        assert_eq!(c.last(), ip("10.0.11.255"));
        assert_eq!(c.nth(3), ip("10.0.8.3"));
        for reserved in [
            "10.0.8.0",
            "10.0.8.1",
            "10.0.8.2",
            "10.0.8.3",
            "10.0.11.255",
        ] {
            assert!(c.aws_reserved(ip(reserved)), "{reserved}");
        }
        for usable in ["10.0.8.4", "10.0.11.254", "10.0.9.0"] {
            assert!(!c.aws_reserved(ip(usable)), "{usable}");
        }
        assert!(
            !c.aws_reserved(ip("10.0.12.0")),
            "outside is not reserved, it is outside"
        );
    }

    #[test]
    fn ipv6_blocks_and_edges() {
        let c: Cidr = "2600:1f14:abc:de00::/64".parse().unwrap();
        assert!(c.contains(ip("2600:1f14:abc:de00::10")));
        assert!(!c.contains(ip("2600:1f14:abc:de01::10")));
        assert_eq!(c.last(), ip("2600:1f14:abc:de00:ffff:ffff:ffff:ffff"));
        assert!(c.aws_reserved(ip("2600:1f14:abc:de00::3")));
        assert!(!c.aws_reserved(ip("2600:1f14:abc:de00::4")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all6.contains(ip("2600::1")) && !all6.contains(ip("10.0.0.1")));
        let host: Cidr = "10.0.8.9/32".parse().unwrap();
        assert!(host.contains(ip("10.0.8.9")) && !host.contains(ip("10.0.8.8")));
        for bad in ["10.0.8.0", "10.0.8.0/33", "nope/8", "10.0.8.0/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
