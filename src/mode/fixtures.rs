//! ENIs as EC2 describes them, for the tests of code above the mode port: the plan's tests build
//! EC2's state without spelling out what makes an ENI floatip's.

use crate::cloud::{Eni, TAG_CLUSTER, TAG_NO_MANAGE};

/// The floating ENI of instance `i-{i:017x}` in `cluster` (device index 1), with primary
/// address 10.0.8.(200+i) and holding `holds`.
pub fn floating_eni(i: u8, subnet: &str, cluster: &str, holds: &[&str]) -> Eni {
    Eni {
        id: format!("eni-{i:017x}"),
        subnet_id: subnet.into(),
        instance_id: Some(format!("i-{i:017x}")),
        device_index: Some(1),
        mac: None,
        primary_ip: Some(format!("10.0.8.{}", 200 + u16::from(i)).parse().unwrap()),
        secondary: holds.iter().map(|a| a.parse().unwrap()).collect(),
        tags: [(TAG_CLUSTER, cluster), (TAG_NO_MANAGE, "true")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        security_groups: Vec::new(),
    }
}

/// The primary ENI of the same instance (device index 0, untagged), with primary address
/// 10.0.8.(10+i), and holding `holds`.
pub fn primary_eni(i: u8, subnet: &str, holds: &[&str]) -> Eni {
    Eni {
        id: format!("eni-p{i:016x}"),
        device_index: Some(0),
        primary_ip: Some(format!("10.0.8.{}", 10 + u16::from(i)).parse().unwrap()),
        tags: Default::default(),
        ..floating_eni(i, subnet, "", holds)
    }
}
