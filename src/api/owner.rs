//! Which FloatingIP owns an address two of them declare. The controller and `floatip attach`
//! apply the same rule, so a first attach never claims an address the controller leaves to
//! another FloatingIP.

use std::collections::HashMap;
use std::net::IpAddr;

use jiff::Timestamp;
use kube::ResourceExt;

use super::{parse_address, FloatingIP};

/// For each address, the FloatingIP that owns it: the oldest, then the first by name. The
/// others declaring it are in Conflict and are not acted on.
pub fn address_owners<'a>(
    fips: impl IntoIterator<Item = &'a FloatingIP>,
) -> HashMap<IpAddr, String> {
    let mut owners: HashMap<IpAddr, (Option<Timestamp>, String)> = HashMap::new();
    for f in fips {
        let Some(addr) = parse_address(&f.spec.address) else {
            continue;
        };
        let key = (
            f.metadata.creation_timestamp.as_ref().map(|t| t.0),
            f.name_any(),
        );
        owners
            .entry(addr)
            .and_modify(|w| {
                if key < *w {
                    *w = key.clone();
                }
            })
            .or_insert(key);
    }
    owners.into_iter().map(|(a, (_, n))| (a, n)).collect()
}

/// Whether `fip` owns its address among `owners` (see [`address_owners`]).
pub fn owns_its_address(owners: &HashMap<IpAddr, String>, fip: &FloatingIP) -> bool {
    parse_address(&fip.spec.address)
        .is_some_and(|a| owners.get(&a).is_some_and(|n| *n == fip.name_any()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fip(name: &str, address: &str, created: &str) -> FloatingIP {
        serde_json::from_value(json!({
            "apiVersion": "floatip.io/v1alpha1", "kind": "FloatingIP",
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"address": address, "subnetId": "subnet-0a1b2c3d"},
        }))
        .unwrap()
    }

    #[test]
    fn the_oldest_owns_an_address_then_the_first_by_name() {
        let web = fip("web", "10.0.8.100", "2026-01-02T00:00:00Z");
        let copy = fip("a-copy", "10.0.8.100", "2026-01-01T00:00:00Z");
        let twin = fip("b-twin", "10.0.8.100", "2026-01-01T00:00:00Z");
        let other = fip("other", "10.0.8.101", "2026-01-03T00:00:00Z");
        let owners = address_owners([&web, &copy, &twin, &other]);
        assert!(owns_its_address(&owners, &copy));
        assert!(!owns_its_address(&owners, &web));
        assert!(!owns_its_address(&owners, &twin));
        assert!(owns_its_address(&owners, &other));
    }
}
