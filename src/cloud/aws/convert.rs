//! EC2's types and errors into the cloud port's: pure, so they are tested without EC2.

use std::collections::BTreeMap;
use std::net::IpAddr;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Address, AvailabilityZone, NetworkInterface};

use crate::cloud::{Allocation, Association, CloudError, Eni, ErrorKind, Instance, Subnet};

const THROTTLING_CODES: [&str; 5] = [
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "PriorRequestNotComplete",
];

pub(super) fn classify<E>(action: &'static str, e: &SdkError<E>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (kind, code, message) = match e {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or("Unknown").to_string();
            let message = ctx.err().message().unwrap_or_default().to_string();
            let kind = if THROTTLING_CODES.contains(&code.as_str()) {
                ErrorKind::Throttled
            } else if ctx.raw().status().is_server_error() {
                ErrorKind::Transient
            } else {
                ErrorKind::Permanent
            };
            (kind, code, message)
        }
        SdkError::TimeoutError(_) => (
            ErrorKind::Transient,
            "Timeout".into(),
            "the request timed out".into(),
        ),
        // The SDK signs before it sends: no credentials fail here too, without a request.
        // Still retried: a web identity token or a Pod Identity agent can appear later.
        SdkError::DispatchFailure(_) if names_credentials(&crate::causes::causes(e)) => (
            ErrorKind::Transient,
            crate::cloud::NO_CREDENTIALS.into(),
            format!(
                "no AWS credentials to sign the request with: {}",
                crate::causes::causes(e)
            ),
        ),
        SdkError::DispatchFailure(_) => (
            ErrorKind::Transient,
            "ConnectionError".into(),
            format!("could not reach EC2: {}", crate::causes::causes(e)),
        ),
        SdkError::ResponseError(_) => (
            ErrorKind::Transient,
            "ResponseError".into(),
            format!("unreadable response from EC2: {}", crate::causes::causes(e)),
        ),
        other => (
            ErrorKind::Permanent,
            "ClientError".into(),
            crate::causes::causes(other),
        ),
    };
    CloudError {
        action,
        code,
        message,
        kind,
    }
}

/// Whether the SDK's words say it found no credentials (the credentials chain finding none,
/// or no identity resolver at all); the SDK has no error kind of its own for it.
fn names_credentials(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("credential") || text.contains("identity resolver")
}

/// The addresses as EC2 takes them: IPv4 and IPv6 go to different actions.
pub(super) fn by_family(addresses: &[IpAddr]) -> (Vec<String>, Vec<String>) {
    let (v4, v6): (Vec<&IpAddr>, Vec<&IpAddr>) = addresses.iter().partition(|a| a.is_ipv4());
    let text = |list: Vec<&IpAddr>| list.into_iter().map(ToString::to_string).collect();
    (text(v4), text(v6))
}

pub(super) fn to_eni(ni: &NetworkInterface) -> Option<Eni> {
    let attachment = ni.attachment();
    let mut primary_ip = None;
    let mut secondary = Vec::new();
    for a in ni.private_ip_addresses() {
        let Some(ip) = a
            .private_ip_address()
            .and_then(|s| s.parse::<IpAddr>().ok())
        else {
            continue;
        };
        if a.primary() == Some(true) {
            primary_ip = Some(ip);
        } else {
            secondary.push(ip);
        }
    }
    secondary.extend(
        ni.ipv6_addresses()
            .iter()
            .filter_map(|a| a.ipv6_address()?.parse::<IpAddr>().ok()),
    );
    Some(Eni {
        id: ni.network_interface_id()?.to_string(),
        subnet_id: ni.subnet_id().unwrap_or_default().to_string(),
        instance_id: attachment.and_then(|a| a.instance_id()).map(String::from),
        device_index: attachment.and_then(|a| a.device_index()),
        mac: ni.mac_address().map(String::from),
        primary_ip,
        secondary,
        tags: ni
            .tag_set()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_string(),
                    t.value().unwrap_or_default().to_string(),
                ))
            })
            .collect::<BTreeMap<_, _>>(),
        security_groups: ni
            .groups()
            .iter()
            .filter_map(|g| g.group_id().map(String::from))
            .collect(),
    })
}

/// An ENI's attachment; None without the ID DetachNetworkInterface needs or an instance.
pub(super) fn to_attachment(
    a: &aws_sdk_ec2::types::NetworkInterfaceAttachment,
) -> Option<crate::cloud::Attachment> {
    Some(crate::cloud::Attachment {
        id: a.attachment_id()?.to_string(),
        instance_id: a.instance_id()?.to_string(),
        device_index: a.device_index(),
        status: crate::cloud::AttachmentStatus::parse(a.status().map_or("", |s| s.as_str())),
    })
}

/// The instance as attach needs it, from its DescribeInstances record.
pub(super) fn to_instance(id: &str, i: &aws_sdk_ec2::types::Instance) -> Instance {
    // Interfaces on network card 0, where floating ENIs go.
    let card0 = || {
        i.network_interfaces().iter().filter(|n| {
            n.attachment()
                .is_some_and(|a| a.network_card_index().unwrap_or(0) == 0)
        })
    };
    let primary = card0().find(|n| n.attachment().and_then(|a| a.device_index()) == Some(0));
    Instance {
        id: id.to_string(),
        instance_type: i
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        device_indexes: card0()
            .filter_map(|n| n.attachment()?.device_index())
            .collect(),
        primary_security_groups: primary
            .map(|n| {
                n.groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

pub(super) fn to_subnet(id: &str, s: &aws_sdk_ec2::types::Subnet) -> Subnet {
    Subnet {
        id: id.to_string(),
        cidr_v4: s.cidr_block().map(String::from),
        cidrs_v6: s
            .ipv6_cidr_block_association_set()
            .iter()
            .filter_map(|a| a.ipv6_cidr_block())
            .map(String::from)
            .collect(),
        zone: s.availability_zone().map(String::from),
    }
}

fn ip(text: Option<&str>) -> Option<IpAddr> {
    text.and_then(|t| t.parse().ok())
}

/// An allocation from its DescribeAddresses record; None without an allocation ID (an
/// EC2-Classic address, which floatip cannot use).
pub(super) fn to_allocation(a: &Address) -> Option<Allocation> {
    let association = a.association_id().map(|id| Association {
        id: id.to_string(),
        eni: a.network_interface_id().map(String::from),
        private_ip: ip(a.private_ip_address()),
        instance_id: a.instance_id().map(String::from),
    });
    Some(Allocation {
        allocation_id: a.allocation_id()?.to_string(),
        public_ip: ip(a.public_ip()),
        customer_owned_ip: ip(a.customer_owned_ip()),
        customer_owned_pool: a.customer_owned_ipv4_pool().map(String::from),
        network_border_group: a.network_border_group().map(String::from),
        association,
    })
}

/// Zone name -> network border group. A zone EC2 lists without a group is left out: nothing
/// can be said about what may be associated there.
pub(super) fn to_border_groups(zones: &[AvailabilityZone]) -> BTreeMap<String, String> {
    zones
        .iter()
        .filter_map(|z| {
            let name = z.zone_name()?;
            let group = z.network_border_group()?;
            Some((name.to_string(), group.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EC2 unreachable: the condition says why in words, not the SDK's Debug structures
    /// (`DispatchFailure { source: ConnectorError { kind: Io, ...`).
    #[test]
    fn an_unreachable_ec2_is_a_sentence_not_a_debug_dump() {
        use aws_sdk_ec2::error::ConnectorError;
        use aws_sdk_ec2::operation::assign_private_ip_addresses::AssignPrivateIpAddressesError;
        let refused = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        let e: SdkError<AssignPrivateIpAddressesError> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(refused)));
        let c = classify("AssignPrivateIpAddresses", &e);
        assert_eq!(c.code, "ConnectionError");
        assert_eq!(c.kind, ErrorKind::Transient);
        assert!(
            c.message.starts_with("could not reach EC2: ")
                && c.message.ends_with("Connection refused (os error 111)"),
            "{}",
            c.message
        );
        assert!(
            !c.message.contains('{') && !c.message.contains("ConnectorError"),
            "{}",
            c.message
        );
    }

    /// No credentials at all (no IRSA token, no Pod Identity, no instance role reachable): the
    /// SDK fails before it sends anything. Said as such, not as EC2 being unreachable.
    #[tokio::test]
    async fn missing_credentials_are_named_as_such() {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new("us-west-2"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let client = aws_sdk_ec2::Client::from_conf(config);
        let e = client
            .describe_network_interfaces()
            .send()
            .await
            .unwrap_err();
        let c = classify("DescribeNetworkInterfaces", &e);
        assert_eq!(c.code, crate::cloud::NO_CREDENTIALS, "{c:?}");
        assert!(c.retryable(), "{c:?}");
        assert!(
            c.message
                .starts_with("no AWS credentials to sign the request with: "),
            "{}",
            c.message
        );
    }

    #[test]
    fn addresses_split_by_family_in_order() {
        let addrs: Vec<IpAddr> = ["10.0.8.1", "2600:1f14::10", "10.0.8.2"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let (v4, v6) = by_family(&addrs);
        assert_eq!(v4, ["10.0.8.1", "10.0.8.2"]);
        assert_eq!(v6, ["2600:1f14::10"]);
        assert_eq!(by_family(&[]), (vec![], vec![]));
    }

    #[test]
    fn an_allocation_keeps_what_describe_addresses_says() {
        let free = Address::builder()
            .allocation_id("eipalloc-1")
            .public_ip("198.51.100.7")
            .network_border_group("us-west-2-lax-1")
            .build();
        let a = to_allocation(&free).unwrap();
        assert_eq!(a.address(), Some("198.51.100.7".parse().unwrap()));
        assert_eq!(a.network_border_group.as_deref(), Some("us-west-2-lax-1"));
        assert_eq!(a.association, None, "no association ID, no association");

        let coip = Address::builder()
            .allocation_id("eipalloc-2")
            .customer_owned_ip("203.0.113.9")
            .customer_owned_ipv4_pool("ipv4pool-coip-1")
            .association_id("eipassoc-2")
            .network_interface_id("eni-2")
            .private_ip_address("10.0.1.200")
            .build();
        let a = to_allocation(&coip).unwrap();
        assert!(a.is_customer_owned());
        assert_eq!(a.address(), Some("203.0.113.9".parse().unwrap()));
        let bound = a.association.unwrap();
        assert_eq!(bound.id, "eipassoc-2");
        assert_eq!(bound.eni.as_deref(), Some("eni-2"));
        assert_eq!(bound.private_ip, Some("10.0.1.200".parse().unwrap()));
        assert_eq!(bound.instance_id, None);

        let classic = Address::builder().public_ip("198.51.100.8").build();
        assert_eq!(to_allocation(&classic), None);
    }

    #[test]
    fn border_groups_map_each_listed_zone() {
        let zone = |name: &str, group: Option<&str>| {
            AvailabilityZone::builder()
                .zone_name(name)
                .set_network_border_group(group.map(String::from))
                .build()
        };
        let groups = to_border_groups(&[
            zone("us-west-2a", Some("us-west-2")),
            zone("us-west-2-lax-1a", Some("us-west-2-lax-1")),
            zone("us-west-2-den-1a", None),
        ]);
        assert_eq!(
            groups,
            BTreeMap::from([
                ("us-west-2-lax-1a".into(), "us-west-2-lax-1".into()),
                ("us-west-2a".into(), "us-west-2".into()),
            ])
        );
    }
}
