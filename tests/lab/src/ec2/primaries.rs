//! The primary address EC2 gives a new ENI whose CreateNetworkInterface names none. EC2 picks
//! one of the subnet's free addresses, and an address a FloatingIP floats is free until a node
//! holds it. moto picks at random anywhere in the subnet, so a test that needs EC2's pick to be
//! a given address queues it (`POST /_lab/primaries`), and the proxy names it in the next such
//! request, as if EC2 had picked it.

use std::collections::VecDeque;

use bytes::Bytes;

/// Parameters by which a CreateNetworkInterface names its own primary address.
const NAMES_ITS_ADDRESS: [&str; 3] = [
    "PrivateIpAddress",
    "PrivateIpAddresses.",
    "SecondaryPrivateIpAddressCount",
];

/// Addresses for the next new ENIs that name none, first in first out.
#[derive(Debug, Default)]
pub struct Primaries {
    queued: VecDeque<String>,
}

impl Primaries {
    pub fn queue(&mut self, address: String) {
        self.queued.push_back(address);
    }

    pub fn queued(&self) -> Vec<String> {
        self.queued.iter().cloned().collect()
    }

    /// The request body naming the next queued address, when the request creates an ENI and
    /// names no address of its own; None (and the queue untouched) otherwise.
    pub fn name_next(&mut self, action: Option<&str>, body: &[u8]) -> Option<Bytes> {
        if action != Some("CreateNetworkInterface") || self.queued.is_empty() {
            return None;
        }
        let names_one = url::form_urlencoded::parse(body)
            .any(|(key, _)| NAMES_ITS_ADDRESS.iter().any(|p| key.starts_with(p)));
        if names_one {
            return None;
        }
        let address = self.queued.pop_front()?;
        let mut named = body.to_vec();
        if !named.is_empty() {
            named.push(b'&');
        }
        named.extend(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("PrivateIpAddress", &address)
                .finish()
                .into_bytes(),
        );
        Some(Bytes::from(named))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE: &[u8] = b"Action=CreateNetworkInterface&SubnetId=subnet-1";

    #[test]
    fn only_a_new_eni_naming_no_address_gets_the_queued_one_each_once() {
        let mut p = Primaries::default();
        assert_eq!(p.name_next(Some("CreateNetworkInterface"), CREATE), None);
        p.queue("10.99.8.100".into());
        p.queue("10.99.8.101".into());
        assert_eq!(p.name_next(Some("AssignPrivateIpAddresses"), CREATE), None);
        let named = b"Action=CreateNetworkInterface&PrivateIpAddress=10.99.8.7";
        assert_eq!(p.name_next(Some("CreateNetworkInterface"), named), None);
        let first = p.name_next(Some("CreateNetworkInterface"), CREATE).unwrap();
        assert_eq!(
            &first[..],
            b"Action=CreateNetworkInterface&SubnetId=subnet-1&PrivateIpAddress=10.99.8.100"
        );
        assert_eq!(p.queued(), ["10.99.8.101"]);
        assert!(p
            .name_next(Some("CreateNetworkInterface"), CREATE)
            .is_some());
        assert_eq!(p.name_next(Some("CreateNetworkInterface"), CREATE), None);
    }
}
