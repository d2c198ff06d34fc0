//! The admission rules again, in Rust, for whatever reaches the controller: an API server without
//! CEL support, a CRD installed from an older chart, or an object written before a rule existed.
//! An invalid FloatingIP is never acted on; its errors become the InvalidSpec condition.

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Toleration;
use kube::core::Selector;

use super::messages as msg;
use super::spec::bounds;
use super::{FloatingIPSpec, HealthCheck, InterfaceChoice, Mode, Protocol, UdpCheck};

/// One thing wrong with a FloatingIP spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("{}", msg::ADDRESS_SYNTAX)]
    AddressSyntax,
    #[error("{}", msg::ADDRESS_NOT_UNICAST)]
    AddressNotUnicast,
    #[error("{}", msg::ADDRESS_IMMUTABLE)]
    AddressChanged,
    #[error("{}", msg::MODE_IMMUTABLE)]
    ModeChanged,
    #[error("{}", msg::SUBNET_REQUIRED_SECONDARY)]
    SubnetRequiredForSecondaryIp,
    #[error("{}", msg::SUBNET_REQUIRED_INTERFACE)]
    SubnetRequiredForInterface,
    #[error("{}", msg::ELASTIC_IP_REQUIRED)]
    ElasticIpRequired,
    #[error("{}", msg::ROUTE_TABLES_REQUIRED)]
    RouteTablesRequired,
    #[error("{}", msg::SUBNET_REQUIRED_ELASTIC)]
    SubnetRequiredForElasticIp,
    #[error("{}", msg::ELASTIC_IP_NOT_FOR_MODE)]
    ElasticIpNotForMode,
    #[error("{}", msg::ELASTIC_IP_IPV4_ONLY)]
    ElasticIpIpv4Only,
    #[error("{}", msg::ROUTE_TABLES_NOT_FOR_MODE)]
    RouteTablesNotForMode,
    #[error("{}", msg::LOCAL_GATEWAY_ROUTE_TABLE)]
    LocalGatewayRouteTable,
    #[error("{}", msg::INTERFACE_NOT_FOR_MODE)]
    InterfaceNotForMode,
    #[error("{}", msg::NETWORK_INTERFACE_NOT_FOR_MODE)]
    NetworkInterfaceNotForMode,
    #[error("{}", msg::IPV4_REQUIRED)]
    Ipv4Required,
    #[error("{}", msg::TIMEOUT_ABOVE_INTERVAL)]
    TimeoutAboveInterval,
    #[error("{}", msg::IDLE_BELOW_INTERVAL)]
    IdleBelowInterval,
    #[error("{}", msg::UDP_NOT_FOR_PROTOCOL)]
    UdpNotForProtocol,
    #[error("{}", msg::UDP_PAYLOAD_BOTH)]
    UdpPayloadBoth,
    #[error("{field} is {value}, outside {min}..={max}")]
    OutOfRange {
        field: &'static str,
        value: i64,
        min: i64,
        max: i64,
    },
    #[error("{field} {value:?} is not a valid {expected}")]
    BadFormat {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{field} has {count} entries, at most {max} are allowed")]
    TooMany {
        field: &'static str,
        count: usize,
        max: u32,
    },
    #[error("{field} is {len} bytes long, at most {max} are allowed")]
    TooLong {
        field: &'static str,
        len: usize,
        max: u32,
    },
    #[error("{field} lists {value:?} twice")]
    Duplicate { field: &'static str, value: String },
    #[error("spec.nodeSelector is not a valid label selector: {0}")]
    NodeSelector(String),
    #[error("spec.tolerations: {0}")]
    Toleration(String),
}

/// Everything wrong with a spec, in the order the fields appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// Checks a spec on its own. Returns every problem found, not just the first.
pub fn validate_spec(spec: &FloatingIPSpec) -> Result<(), SpecErrors> {
    let mut errs = Vec::new();
    let address = check_address(&spec.address, &mut errs);
    check_mode_fields(spec, address, &mut errs);
    check_ids(spec, &mut errs);
    check_preferred_nodes(&spec.preferred_nodes, &mut errs);
    check_tolerations(&spec.tolerations, &mut errs);
    if let Some(selector) = &spec.node_selector {
        if let Err(e) = Selector::try_from(selector.clone()) {
            errs.push(SpecError::NodeSelector(e.to_string()));
        }
    }
    if let Some(hc) = &spec.health_check {
        check_health(hc, &mut errs);
    }
    range(
        &mut errs,
        "spec.failover.minHoldSeconds",
        spec.failover.min_hold_seconds,
        0,
        bounds::MIN_HOLD_SECONDS_MAX,
    );
    if errs.is_empty() {
        Ok(())
    } else {
        Err(SpecErrors(errs))
    }
}

/// Checks a changed spec: the rules of [`validate_spec`] plus the immutable fields.
pub fn validate_update(old: &FloatingIPSpec, new: &FloatingIPSpec) -> Result<(), SpecErrors> {
    let mut errs = match validate_spec(new) {
        Ok(()) => Vec::new(),
        Err(SpecErrors(errs)) => errs,
    };
    if old.address != new.address {
        errs.insert(0, SpecError::AddressChanged);
    }
    if old.mode != new.mode {
        errs.push(SpecError::ModeChanged);
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(SpecErrors(errs))
    }
}

/// Parses the address the way the API server's `isIP` does: no prefix, no zone, no leading
/// zeros, no IPv4-mapped IPv6.
pub fn parse_address(address: &str) -> Option<IpAddr> {
    match address.parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => None,
        ip => Some(ip),
    }
}

/// Whether a VPC can route the address: Go's `IsGlobalUnicast`, which `ip().isGlobalUnicast()`
/// in the CRD rules follows (private ranges count as unicast).
fn is_global_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_multicast()
                || v4.is_link_local()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unicast_link_local())
        }
    }
}

fn check_address(address: &str, errs: &mut Vec<SpecError>) -> Option<IpAddr> {
    if address.len() > bounds::ADDRESS_MAX_LEN as usize {
        errs.push(SpecError::TooLong {
            field: "spec.address",
            len: address.len(),
            max: bounds::ADDRESS_MAX_LEN,
        });
        return None;
    }
    let Some(ip) = parse_address(address) else {
        errs.push(SpecError::AddressSyntax);
        return None;
    };
    if !is_global_unicast(ip) {
        errs.push(SpecError::AddressNotUnicast);
    }
    Some(ip)
}

fn check_mode_fields(spec: &FloatingIPSpec, address: Option<IpAddr>, errs: &mut Vec<SpecError>) {
    let mode = spec.mode;
    if mode == Mode::SecondaryIP && spec.subnet_id.is_none() {
        errs.push(SpecError::SubnetRequiredForSecondaryIp);
    }
    if mode == Mode::Interface && spec.subnet_id.is_none() {
        errs.push(SpecError::SubnetRequiredForInterface);
    }
    if mode == Mode::ElasticIP && spec.elastic_ip.is_none() {
        errs.push(SpecError::ElasticIpRequired);
    }
    if mode == Mode::ElasticIP
        && spec.subnet_id.is_none()
        && spec.interface != Some(InterfaceChoice::Primary)
    {
        errs.push(SpecError::SubnetRequiredForElasticIp);
    }
    if mode == Mode::RouteTable && spec.route_table_ids.is_empty() {
        errs.push(SpecError::RouteTablesRequired);
    }
    if !matches!(mode, Mode::ElasticIP | Mode::SecondaryIP) && spec.elastic_ip.is_some() {
        errs.push(SpecError::ElasticIpNotForMode);
    }
    if mode == Mode::SecondaryIP
        && spec.elastic_ip.is_some()
        && matches!(address, Some(IpAddr::V6(_)))
    {
        errs.push(SpecError::ElasticIpIpv4Only);
    }
    if mode != Mode::RouteTable && !spec.route_table_ids.is_empty() {
        errs.push(SpecError::RouteTablesNotForMode);
    }
    if !matches!(mode, Mode::SecondaryIP | Mode::ElasticIP) && spec.interface.is_some() {
        errs.push(SpecError::InterfaceNotForMode);
    }
    if matches!(mode, Mode::ElasticIP | Mode::Interface) && matches!(address, Some(IpAddr::V6(_))) {
        errs.push(SpecError::Ipv4Required);
    }
    if mode != Mode::Interface && spec.network_interface_id.is_some() {
        errs.push(SpecError::NetworkInterfaceNotForMode);
    }
}

/// An AWS resource ID: the prefix, a dash, then 8 or 17 lowercase hex digits.
fn is_aws_id(value: &str, prefix: &str) -> bool {
    value
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| {
            matches!(hex.len(), 8 | 17)
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

fn check_ids(spec: &FloatingIPSpec, errs: &mut Vec<SpecError>) {
    if let Some(subnet) = &spec.subnet_id {
        if !is_aws_id(subnet, "subnet") {
            errs.push(SpecError::BadFormat {
                field: "spec.subnetId",
                value: subnet.clone(),
                expected: "subnet ID (subnet- and 8 or 17 hex digits)",
            });
        }
    }
    if let Some(eip) = &spec.elastic_ip {
        if !is_aws_id(&eip.allocation_id, "eipalloc") {
            errs.push(SpecError::BadFormat {
                field: "spec.elasticIP.allocationId",
                value: eip.allocation_id.clone(),
                expected: "allocation ID (eipalloc- and 8 or 17 hex digits)",
            });
        }
    }
    if let Some(eni) = &spec.network_interface_id {
        if !is_aws_id(eni, "eni") {
            errs.push(SpecError::BadFormat {
                field: "spec.networkInterfaceId",
                value: eni.clone(),
                expected: "network interface ID (eni- and 8 or 17 hex digits)",
            });
        }
    }
    let tables = &spec.route_table_ids;
    if tables.len() > bounds::ROUTE_TABLES_MAX as usize {
        errs.push(SpecError::TooMany {
            field: "spec.routeTableIds",
            count: tables.len(),
            max: bounds::ROUTE_TABLES_MAX,
        });
    }
    if tables.iter().any(|t| t.starts_with("lgw-rtb-")) {
        errs.push(SpecError::LocalGatewayRouteTable);
    }
    for (i, table) in tables.iter().enumerate() {
        if table.starts_with("lgw-rtb-") {
            continue;
        }
        if !is_aws_id(table, "rtb") {
            errs.push(SpecError::BadFormat {
                field: "spec.routeTableIds",
                value: table.clone(),
                expected: "route table ID (rtb- and 8 or 17 hex digits)",
            });
        } else if tables[..i].contains(table) {
            errs.push(SpecError::Duplicate {
                field: "spec.routeTableIds",
                value: table.clone(),
            });
        }
    }
}

/// A DNS-1123 subdomain, which is what node names are.
fn is_dns_subdomain(name: &str) -> bool {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    (1..=253).contains(&name.len()) && name.split('.').all(label_ok)
}

fn check_preferred_nodes(nodes: &[String], errs: &mut Vec<SpecError>) {
    if nodes.len() > bounds::PREFERRED_NODES_MAX as usize {
        errs.push(SpecError::TooMany {
            field: "spec.preferredNodes",
            count: nodes.len(),
            max: bounds::PREFERRED_NODES_MAX,
        });
    }
    for (i, node) in nodes.iter().enumerate() {
        if !is_dns_subdomain(node) {
            errs.push(SpecError::BadFormat {
                field: "spec.preferredNodes",
                value: node.clone(),
                expected: "node name (lowercase DNS subdomain)",
            });
        } else if nodes[..i].contains(node) {
            errs.push(SpecError::Duplicate {
                field: "spec.preferredNodes",
                value: node.clone(),
            });
        }
    }
}

fn check_tolerations(tolerations: &[Toleration], errs: &mut Vec<SpecError>) {
    if tolerations.len() > bounds::TOLERATIONS_MAX as usize {
        errs.push(SpecError::TooMany {
            field: "spec.tolerations",
            count: tolerations.len(),
            max: bounds::TOLERATIONS_MAX,
        });
    }
    for t in tolerations {
        let operator = t.operator.as_deref().unwrap_or("Equal");
        let problem = match (operator, t.value.as_deref()) {
            ("Exists", Some(v)) if !v.is_empty() => {
                Some("operator Exists takes no value".to_string())
            }
            ("Exists" | "Equal", _) => None,
            (other, _) => Some(format!("operator {other:?} is not Exists or Equal")),
        };
        let problem = problem.or_else(|| match t.effect.as_deref() {
            None | Some("" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") => None,
            Some(other) => Some(format!(
                "effect {other:?} is not NoSchedule, PreferNoSchedule or NoExecute"
            )),
        });
        if let Some(problem) = problem {
            errs.push(SpecError::Toleration(problem));
        }
    }
}

/// Checks a health check on its own: the rules [`validate_spec`] applies to
/// spec.healthCheck, and the only ones; the probe spec is built from a check that passes them
/// (`ProbeSpec::from_health_check`).
pub fn validate_health_check(hc: &HealthCheck) -> Result<(), SpecErrors> {
    let mut errs = Vec::new();
    check_health(hc, &mut errs);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(SpecErrors(errs))
    }
}

fn check_health(hc: &HealthCheck, errs: &mut Vec<SpecError>) {
    check_timing(hc, errs);
    let Some(udp) = &hc.udp else { return };
    if hc.protocol != Protocol::UDP {
        errs.push(SpecError::UdpNotForProtocol);
    }
    check_udp_payload(udp, errs);
}

/// The port, the probe timing and the thresholds.
fn check_timing(hc: &HealthCheck, errs: &mut Vec<SpecError>) {
    range(errs, "spec.healthCheck.port", hc.port, 1, 65_535);
    range(
        errs,
        "spec.healthCheck.intervalMs",
        hc.interval_ms,
        bounds::INTERVAL_MS_MIN,
        bounds::INTERVAL_MS_MAX,
    );
    if let Some(timeout) = hc.timeout_ms {
        range(
            errs,
            "spec.healthCheck.timeoutMs",
            timeout,
            bounds::TIMEOUT_MS_MIN,
            bounds::TIMEOUT_MS_MAX,
        );
        if timeout > hc.interval_ms {
            errs.push(SpecError::TimeoutAboveInterval);
        }
    }
    if let Some(idle) = hc.idle_interval_ms {
        range(
            errs,
            "spec.healthCheck.idleIntervalMs",
            idle,
            bounds::INTERVAL_MS_MIN,
            bounds::INTERVAL_MS_MAX,
        );
        if idle < hc.interval_ms {
            errs.push(SpecError::IdleBelowInterval);
        }
    }
    for (field, value) in [
        ("spec.healthCheck.failureThreshold", hc.failure_threshold),
        ("spec.healthCheck.successThreshold", hc.success_threshold),
    ] {
        range(
            errs,
            field,
            value,
            bounds::THRESHOLD_MIN,
            bounds::THRESHOLD_MAX,
        );
    }
}

/// One payload, as text or base64, no longer than a probe sends.
fn check_udp_payload(udp: &UdpCheck, errs: &mut Vec<SpecError>) {
    if udp.payload.is_some() && udp.payload_base64.is_some() {
        errs.push(SpecError::UdpPayloadBoth);
    }
    if let Some(text) = &udp.payload {
        // The schema counts characters; the wire counts bytes, which is what matters here.
        if text.len() > bounds::UDP_PAYLOAD_MAX as usize {
            errs.push(SpecError::TooLong {
                field: "spec.healthCheck.udp.payload",
                len: text.len(),
                max: bounds::UDP_PAYLOAD_MAX,
            });
        }
    }
    if let Some(encoded) = &udp.payload_base64 {
        match base64::engine::general_purpose::STANDARD.decode(encoded) {
            Ok(bytes) if bytes.len() > bounds::UDP_PAYLOAD_MAX as usize => {
                errs.push(SpecError::TooLong {
                    field: "spec.healthCheck.udp.payloadBase64",
                    len: bytes.len(),
                    max: bounds::UDP_PAYLOAD_MAX,
                })
            }
            Ok(_) => {}
            Err(_) => errs.push(SpecError::BadFormat {
                field: "spec.healthCheck.udp.payloadBase64",
                value: encoded.clone(),
                expected: "standard base64 string",
            }),
        }
    }
}

fn range(errs: &mut Vec<SpecError>, field: &'static str, value: i32, min: i32, max: i32) {
    if !(min..=max).contains(&value) {
        errs.push(SpecError::OutOfRange {
            field,
            value: value.into(),
            min: min.into(),
            max: max.into(),
        });
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
