//! Elastic IP allocations as the cloud port sees them: public addresses and Outposts
//! customer-owned ones (CoIP), with the association that binds each to a private address.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// An Elastic IP allocation (public or customer-owned), as DescribeAddresses shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub allocation_id: String,
    pub public_ip: Option<IpAddr>,
    /// Outposts customer-owned address (CoIP), when the allocation comes from a CoIP pool.
    pub customer_owned_ip: Option<IpAddr>,
    pub customer_owned_pool: Option<String>,
    /// The Region or Local Zone group the address may be used in.
    pub network_border_group: Option<String>,
    pub association: Option<Association>,
}

/// Where an allocation is bound now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    /// `eipassoc-...`, what DisassociateAddress takes.
    pub id: String,
    pub eni: Option<String>,
    pub private_ip: Option<IpAddr>,
    pub instance_id: Option<String>,
}

impl Allocation {
    /// The address clients use: the customer-owned one for a CoIP allocation (reached over
    /// the Outpost's local gateway), else the public one.
    pub fn address(&self) -> Option<IpAddr> {
        self.customer_owned_ip.or(self.public_ip)
    }

    pub fn is_customer_owned(&self) -> bool {
        self.customer_owned_ip.is_some() || self.customer_owned_pool.is_some()
    }

    /// Whether EC2 would let this allocation be associated with an ENI in `zone`, given every
    /// zone's network border group (`Cloud::border_groups`). AWS refuses an association
    /// outside the allocation's border group; an allocation that names none (an EC2 that does
    /// not report it) is taken as usable, a zone missing from the map as not.
    ///
    /// | allocation group | zone's group    | usable |
    /// |------------------|-----------------|--------|
    /// | none             | anything        | yes    |
    /// | G                | G               | yes    |
    /// | G                | H (H != G)      | no     |
    /// | G                | zone not listed | no     |
    pub fn usable_in(&self, zone: &str, border_groups: &BTreeMap<String, String>) -> bool {
        match &self.network_border_group {
            None => true,
            Some(group) => border_groups.get(zone) == Some(group),
        }
    }

    /// Whether it is bound to `private_ip` on `eni` now.
    pub fn is_bound_to(&self, eni: &str, private_ip: IpAddr) -> bool {
        self.association
            .as_ref()
            .is_some_and(|a| a.eni.as_deref() == Some(eni) && a.private_ip == Some(private_ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocation(group: Option<&str>) -> Allocation {
        Allocation {
            allocation_id: "eipalloc-1".into(),
            public_ip: Some("198.51.100.7".parse().unwrap()),
            customer_owned_ip: None,
            customer_owned_pool: None,
            network_border_group: group.map(String::from),
            association: None,
        }
    }

    #[test]
    fn the_customer_owned_address_comes_before_the_public_one() {
        let public = allocation(None);
        assert_eq!(public.address(), public.public_ip);
        assert!(!public.is_customer_owned());
        let coip = Allocation {
            customer_owned_ip: Some("203.0.113.9".parse().unwrap()),
            customer_owned_pool: Some("ipv4pool-coip-0123".into()),
            ..public
        };
        assert_eq!(coip.address(), Some("203.0.113.9".parse().unwrap()));
        assert!(coip.is_customer_owned());
        let none = Allocation {
            public_ip: None,
            ..allocation(None)
        };
        assert_eq!(none.address(), None);
    }

    #[test]
    fn border_groups_follow_the_truth_table() {
        let groups = BTreeMap::from([
            ("us-west-2a".to_string(), "us-west-2".to_string()),
            (
                "us-west-2-lax-1a".to_string(),
                "us-west-2-lax-1".to_string(),
            ),
        ]);
        assert!(allocation(None).usable_in("anywhere-1z", &groups));
        let region = allocation(Some("us-west-2"));
        assert!(region.usable_in("us-west-2a", &groups));
        assert!(!region.usable_in("us-west-2-lax-1a", &groups));
        assert!(!region.usable_in("us-east-1a", &groups));
        let lax = allocation(Some("us-west-2-lax-1"));
        assert!(lax.usable_in("us-west-2-lax-1a", &groups));
        assert!(!lax.usable_in("us-west-2a", &groups));
    }

    #[test]
    fn bound_means_this_eni_and_this_address() {
        let vip: IpAddr = "10.0.1.200".parse().unwrap();
        let mut a = allocation(None);
        assert!(!a.is_bound_to("eni-1", vip));
        a.association = Some(Association {
            id: "eipassoc-1".into(),
            eni: Some("eni-1".into()),
            private_ip: Some(vip),
            instance_id: None,
        });
        assert!(a.is_bound_to("eni-1", vip));
        assert!(!a.is_bound_to("eni-2", vip));
        assert!(!a.is_bound_to("eni-1", "10.0.1.5".parse().unwrap()));
    }
}
