//! Route tables, as RouteTable mode reads them: the VPC a table belongs to, its local routes
//! (the VPC's own blocks) and where its route for one address leads.

use std::net::IpAddr;

use super::cidr::Cidr;

/// A route table as floatip sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    pub id: String,
    pub vpc_id: String,
    pub routes: Vec<Route>,
}

/// One route of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The destination block (IPv4 or IPv6), as EC2 writes it.
    pub destination: String,
    /// Where it leads.
    pub target: RouteTarget,
    /// EC2 says `blackhole`: its target is gone (a deleted ENI, a stopped instance).
    pub blackhole: bool,
}

/// Where a route leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// The VPC's own block (gateway `local`).
    Local,
    /// A network interface.
    Eni(String),
    /// Anything else (a gateway, a NAT gateway, a peering...), by its ID.
    Other(String),
}

/// The route floatip keeps for `address`: the single address, /32 or /128.
pub fn host_route(address: IpAddr) -> String {
    match address {
        IpAddr::V4(_) => format!("{address}/32"),
        IpAddr::V6(_) => format!("{address}/128"),
    }
}

impl RouteTable {
    /// The VPC's blocks: the destinations of its local routes.
    pub fn local_blocks(&self) -> Vec<Cidr> {
        (self.routes.iter())
            .filter(|r| r.target == RouteTarget::Local)
            .filter_map(|r| r.destination.parse().ok())
            .collect()
    }

    /// The local block holding `address`, if it lies in the table's VPC.
    pub fn local_block_of(&self, address: IpAddr) -> Option<Cidr> {
        self.local_blocks()
            .into_iter()
            .find(|b| b.contains(address))
    }

    /// The route for exactly `address` (its host route), if the table has one.
    pub fn host_route_of(&self, address: IpAddr) -> Option<&Route> {
        let want: Option<Cidr> = host_route(address).parse().ok();
        (self.routes.iter()).find(|r| r.destination.parse::<Cidr>().ok() == want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let route = |destination: &str, target| Route {
            destination: destination.into(),
            target,
            blackhole: false,
        };
        RouteTable {
            id: "rtb-0a".into(),
            vpc_id: "vpc-0a".into(),
            routes: vec![
                route("10.0.0.0/16", RouteTarget::Local),
                route("2600:1f14::/56", RouteTarget::Local),
                route("0.0.0.0/0", RouteTarget::Other("igw-0a".into())),
                route("100.64.0.10/32", RouteTarget::Eni("eni-1".into())),
                route("fd00::10/128", RouteTarget::Eni("eni-2".into())),
            ],
        }
    }

    #[test]
    fn the_vpc_blocks_are_the_local_routes() {
        let t = table();
        let blocks: Vec<String> = t.local_blocks().iter().map(|b| b.to_string()).collect();
        assert_eq!(blocks, ["10.0.0.0/16", "2600:1f14::/56"]);
        assert!(t.local_block_of("10.0.8.5".parse().unwrap()).is_some());
        assert!(t.local_block_of("2600:1f14::5".parse().unwrap()).is_some());
        assert_eq!(t.local_block_of("100.64.0.10".parse().unwrap()), None);
    }

    #[test]
    fn only_the_host_route_of_the_address_counts() {
        let t = table();
        let of = |a: &str| {
            t.host_route_of(a.parse().unwrap())
                .map(|r| r.target.clone())
        };
        assert_eq!(of("100.64.0.10"), Some(RouteTarget::Eni("eni-1".into())));
        assert_eq!(of("fd00::10"), Some(RouteTarget::Eni("eni-2".into())));
        // Covered by the default route, but that route is not the address's own.
        assert_eq!(of("100.64.0.11"), None);
        assert_eq!(host_route("fd00::10".parse().unwrap()), "fd00::10/128");
    }
}
