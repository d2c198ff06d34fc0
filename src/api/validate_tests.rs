//! Every admission rule, checked twice: by the CEL rules in the generated CRD (evaluated with
//! kube-cel, which defaults objects as the API server does) and by the Rust checks. Each case
//! names the exact messages both must produce, so the two cannot drift apart.

use kube::CustomResourceExt;
use serde_json::{json, Value};

use super::*;
use crate::api::{messages as msg, FloatingIP};

// The numeric ranges, ID formats and list limits, each compared with the generated schema.
#[path = "validate_schema_tests.rs"]
mod schema;

fn schema() -> Value {
    let crd = FloatingIP::crd();
    let version = &crd.spec.versions[0];
    let schema = version.schema.as_ref().unwrap().open_api_v3_schema.as_ref();
    serde_json::to_value(schema.unwrap()).unwrap()
}

fn object(spec: &Value) -> Value {
    json!({
        "apiVersion": "floatip.io/v1alpha1",
        "kind": "FloatingIP",
        "metadata": {"name": "web"},
        "spec": spec,
    })
}

/// The messages of the CEL rules that fail, sorted. Panics on a rule that could not be
/// evaluated, which would be a broken rule rather than a rejected object.
fn cel_messages(spec: &Value, old: Option<&Value>) -> Vec<String> {
    let old = old.map(object);
    match kube_cel::Validator::new().validate(&schema(), &object(spec), old.as_ref()) {
        Ok(()) => Vec::new(),
        Err(errors) => {
            let mut out: Vec<String> = errors
                .into_vec()
                .into_iter()
                .map(|e| {
                    assert!(
                        matches!(e.kind, kube_cel::ErrorKind::ValidationFailure),
                        "rule {:?} did not evaluate cleanly: {:?} {}",
                        e.rule,
                        e.kind,
                        e.message
                    );
                    e.message
                })
                .collect();
            out.sort();
            out
        }
    }
}

fn parse(spec: &Value) -> FloatingIPSpec {
    serde_json::from_value(spec.clone()).unwrap_or_else(|e| panic!("{spec}: {e}"))
}

fn rust_messages(result: Result<(), SpecErrors>) -> Vec<String> {
    let mut out: Vec<String> = match result {
        Ok(()) => Vec::new(),
        Err(SpecErrors(errs)) => errs.iter().map(ToString::to_string).collect(),
    };
    out.sort();
    out
}

fn sorted(messages: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = messages.iter().map(|m| m.to_string()).collect();
    out.sort();
    out
}

/// Both validators accept `spec`, or both reject it with exactly `expected`.
fn assert_both(spec: Value, expected: &[&str]) {
    let expected = sorted(expected);
    assert_eq!(cel_messages(&spec, None), expected, "CEL rules on {spec}");
    assert_eq!(
        rust_messages(validate_spec(&parse(&spec))),
        expected,
        "Rust checks on {spec}"
    );
}

fn assert_both_update(old: Value, new: Value, expected: &[&str]) {
    let expected = sorted(expected);
    assert_eq!(
        cel_messages(&new, Some(&old)),
        expected,
        "CEL rules on {old} -> {new}"
    );
    assert_eq!(
        rust_messages(validate_update(&parse(&old), &parse(&new))),
        expected,
        "Rust checks on {old} -> {new}"
    );
}

/// Only the Rust checks: for rules the structural schema enforces (ranges, patterns), which
/// kube-cel does not evaluate. `expected` are substrings, one per error.
fn assert_rust(spec: Value, expected: &[&str]) {
    let got = rust_messages(validate_spec(&parse(&spec)));
    assert_eq!(got.len(), expected.len(), "{spec}: {got:?}");
    for want in expected {
        assert!(
            got.iter().any(|m| m.contains(want)),
            "{spec}: no error mentions {want:?} in {got:?}"
        );
    }
}

const SUBNET: &str = "subnet-0123456789abcdef0";

fn secondary(address: &str) -> Value {
    json!({"address": address, "subnetId": SUBNET})
}

fn with(mut spec: Value, key: &str, value: Value) -> Value {
    spec[key] = value;
    spec
}

#[test]
fn valid_specs_pass_both() {
    let full = json!({
        "address": "10.0.8.100",
        "mode": "SecondaryIP",
        "subnetId": "subnet-0a1b2c3d",
        "interface": "Primary",
        "nodeSelector": {
            "matchLabels": {"floatip.io/edge": "true"},
            "matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-west-2-lax-1a"]}]
        },
        "preferredNodes": ["ip-10-0-8-11.us-west-2.compute.internal", "node-b"],
        "failback": "Always",
        "healthCheck": {"protocol": "TCP", "port": 30080, "intervalMs": 200, "timeoutMs": 200,
                        "failureThreshold": 2, "successThreshold": 3},
        "failover": {"minHoldSeconds": 0}
    });
    for spec in [
        secondary("10.0.8.100"),
        secondary("2600:1f14:abc:de00::10"),
        full,
        json!({"address": "203.0.113.10", "mode": "ElasticIP", "interface": "Primary", "elasticIP": {"allocationId": "eipalloc-0123456789abcdef0"}}),
        json!({"address": "100.64.10.10", "mode": "RouteTable", "routeTableIds": ["rtb-0123abcd", "rtb-0123456789abcdef0"]}),
        json!({"address": "2600:1f14::10", "mode": "RouteTable", "routeTableIds": ["rtb-0123abcd"]}),
        json!({"address": "10.0.8.100", "mode": "Interface", "subnetId": SUBNET}),
        with(
            secondary("10.0.8.100"),
            "healthCheck",
            json!({"protocol": "UDP", "port": 53, "udp": {"payloadBase64": "AAEBAAABAAAAAAAA", "replyRequired": true}}),
        ),
        with(
            secondary("10.0.8.100"),
            "healthCheck",
            json!({"protocol": "UDP", "port": 9000, "udp": {"payload": "ping"}}),
        ),
        // No timeout set: the default is capped at the interval, so a short interval is fine.
        with(
            secondary("10.0.8.100"),
            "healthCheck",
            json!({"port": 80, "intervalMs": 100}),
        ),
    ] {
        assert_both(spec, &[]);
    }
}

#[test]
fn address_must_be_a_plain_ip() {
    for bad in [
        "10.0.8.300",
        "10.0.8.0/24",
        "10.0.8",
        "010.0.8.1",
        "fe80::1%eth0",
        "::ffff:10.0.0.1",
        "web.example.com",
        "",
    ] {
        assert_both(secondary(bad), &[msg::ADDRESS_SYNTAX]);
    }
}

#[test]
fn address_must_be_routable_unicast() {
    for bad in [
        "127.0.0.1",
        "0.0.0.0",
        "169.254.169.254",
        "224.0.0.5",
        "255.255.255.255",
        "::",
        "::1",
        "fe80::1",
        "ff02::1",
    ] {
        assert_both(secondary(bad), &[msg::ADDRESS_NOT_UNICAST]);
    }
}

#[test]
fn each_mode_requires_its_fields() {
    assert_both(
        json!({"address": "10.0.8.100"}),
        &[msg::SUBNET_REQUIRED_SECONDARY],
    );
    assert_both(
        json!({"address": "10.0.8.100", "mode": "SecondaryIP"}),
        &[msg::SUBNET_REQUIRED_SECONDARY],
    );
    assert_both(
        json!({"address": "10.0.8.100", "mode": "Interface"}),
        &[msg::SUBNET_REQUIRED_INTERFACE],
    );
    assert_both(
        json!({"address": "10.0.8.100", "mode": "ElasticIP"}),
        &[msg::ELASTIC_IP_REQUIRED, msg::SUBNET_REQUIRED_ELASTIC],
    );
    let eip = json!({"allocationId": "eipalloc-0123abcd"});
    assert_both(
        json!({"address": "198.51.100.7", "mode": "ElasticIP", "elasticIP": eip, "interface": "Dedicated"}),
        &[msg::SUBNET_REQUIRED_ELASTIC],
    );
    assert_both(
        json!({"address": "100.64.0.1", "mode": "RouteTable"}),
        &[msg::ROUTE_TABLES_REQUIRED],
    );
    assert_both(
        json!({"address": "100.64.0.1", "mode": "RouteTable", "routeTableIds": []}),
        &[msg::ROUTE_TABLES_REQUIRED],
    );
    // Outposts local gateway route tables: not supported yet, said as such (the schema's
    // rtb- pattern refuses them too, with a less helpful message).
    assert_both(
        json!({"address": "100.64.0.1", "mode": "RouteTable", "routeTableIds": ["rtb-0123abcd", "lgw-rtb-0123456789abcdef0"]}),
        &[msg::LOCAL_GATEWAY_ROUTE_TABLE],
    );
}

/// An Elastic IP rides on a SecondaryIP address or is the ElasticIP mode's address; both may
/// choose the interface, and ElasticIP with the primary interface needs no subnet.
#[test]
fn elastic_ips_go_with_secondary_and_elastic_ip_modes() {
    let eip = json!({"allocationId": "eipalloc-0123abcd", "allowReassociation": true});
    assert_both(with(secondary("10.0.8.100"), "elasticIP", eip.clone()), &[]);
    assert_both(
        json!({"address": "198.51.100.7", "mode": "ElasticIP", "elasticIP": eip, "interface": "Primary"}),
        &[],
    );
    assert_both(
        json!({"address": "198.51.100.7", "mode": "ElasticIP", "subnetId": SUBNET,
               "elasticIP": {"allocationId": "eipalloc-0123abcd"}}),
        &[],
    );
}

#[test]
fn fields_of_other_modes_are_refused() {
    assert_both(
        json!({"address": "100.64.0.1", "mode": "RouteTable", "routeTableIds": ["rtb-0123abcd"],
               "elasticIP": {"allocationId": "eipalloc-0123abcd"}}),
        &[msg::ELASTIC_IP_NOT_FOR_MODE],
    );
    assert_both(
        with(
            secondary("10.0.8.100"),
            "routeTableIds",
            json!(["rtb-0123abcd"]),
        ),
        &[msg::ROUTE_TABLES_NOT_FOR_MODE],
    );
    assert_both(
        json!({"address": "100.64.0.1", "mode": "RouteTable", "routeTableIds": ["rtb-0123abcd"], "interface": "Dedicated"}),
        &[msg::INTERFACE_NOT_FOR_MODE],
    );
}

#[test]
fn a_given_network_interface_is_for_interface_mode_only() {
    let eni = json!("eni-0123abcd");
    assert_both(
        json!({"address": "10.0.8.100", "mode": "Interface", "subnetId": SUBNET, "networkInterfaceId": eni}),
        &[],
    );
    assert_both(
        with(secondary("10.0.8.100"), "networkInterfaceId", eni.clone()),
        &[msg::NETWORK_INTERFACE_NOT_FOR_MODE],
    );
    assert_both(
        json!({"address": "100.64.0.1", "mode": "RouteTable", "routeTableIds": ["rtb-0123abcd"], "networkInterfaceId": eni}),
        &[msg::NETWORK_INTERFACE_NOT_FOR_MODE],
    );
    assert_rust(
        json!({"address": "10.0.8.100", "mode": "Interface", "subnetId": SUBNET, "networkInterfaceId": "eni-XYZ"}),
        &["spec.networkInterfaceId"],
    );
}

#[test]
fn elastic_ip_and_interface_modes_are_ipv4_only() {
    assert_both(
        json!({"address": "2600:1f14::10", "mode": "ElasticIP", "subnetId": SUBNET, "elasticIP": {"allocationId": "eipalloc-0123abcd"}}),
        &[msg::IPV4_REQUIRED],
    );
    assert_both(
        with(
            secondary("2600:1f14::10"),
            "elasticIP",
            json!({"allocationId": "eipalloc-0123abcd"}),
        ),
        &[msg::ELASTIC_IP_IPV4_ONLY],
    );
    assert_both(
        json!({"address": "2600:1f14::10", "mode": "Interface", "subnetId": SUBNET}),
        &[msg::IPV4_REQUIRED],
    );
}

#[test]
fn health_check_cross_field_rules() {
    let hc = |v: Value| with(secondary("10.0.8.100"), "healthCheck", v);
    assert_both(
        hc(json!({"port": 80, "intervalMs": 200, "timeoutMs": 201})),
        &[msg::TIMEOUT_ABOVE_INTERVAL],
    );
    assert_both(
        hc(json!({"port": 80, "udp": {"payload": "x"}})),
        &[msg::UDP_NOT_FOR_PROTOCOL],
    );
    assert_both(
        hc(
            json!({"protocol": "UDP", "port": 80, "udp": {"payload": "x", "payloadBase64": "eA=="}}),
        ),
        &[msg::UDP_PAYLOAD_BOTH],
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    assert_both(
        json!({"address": "127.0.0.1", "mode": "ElasticIP", "routeTableIds": ["rtb-0123abcd"]}),
        &[
            msg::ADDRESS_NOT_UNICAST,
            msg::ELASTIC_IP_REQUIRED,
            msg::SUBNET_REQUIRED_ELASTIC,
            msg::ROUTE_TABLES_NOT_FOR_MODE,
        ],
    );
}

#[test]
fn address_and_mode_are_immutable() {
    let old = secondary("10.0.8.100");
    assert_both_update(
        old.clone(),
        secondary("10.0.8.101"),
        &[msg::ADDRESS_IMMUTABLE],
    );
    assert_both_update(
        old.clone(),
        with(secondary("10.0.8.100"), "mode", json!("Interface")),
        &[msg::MODE_IMMUTABLE],
    );
    // An omitted mode is the default mode, so spelling it out is no change.
    assert_both_update(
        old.clone(),
        with(secondary("10.0.8.100"), "mode", json!("SecondaryIP")),
        &[],
    );
    // Everything else may change.
    assert_both_update(
        old,
        json!({"address": "10.0.8.100", "subnetId": "subnet-0a1b2c3d", "healthCheck": {"port": 443}, "failback": "Always"}),
        &[],
    );
}

#[test]
fn node_selector_must_be_a_valid_label_selector() {
    let sel = |v: Value| with(secondary("10.0.8.100"), "nodeSelector", v);
    assert_rust(
        sel(json!({"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["a"]}]})),
        &["spec.nodeSelector is not a valid label selector"],
    );
    assert_rust(
        sel(json!({"matchExpressions": [{"key": "zone", "operator": "Exists"}]})),
        &[],
    );
    assert_rust(sel(json!({})), &[]);
}

#[test]
fn udp_payload_is_checked_in_bytes() {
    let udp = |v: Value| {
        with(
            secondary("10.0.8.100"),
            "healthCheck",
            json!({"protocol": "UDP", "port": 53, "udp": v}),
        )
    };
    assert_rust(
        udp(json!({"payloadBase64": "not base64!"})),
        &["spec.healthCheck.udp.payloadBase64 \"not base64!\" is not a valid standard base64 string"],
    );
    // 600 two-byte characters: within the schema's character limit, over the byte limit.
    assert_rust(
        udp(json!({"payload": "é".repeat(600)})),
        &["spec.healthCheck.udp.payload is 1200 bytes long, at most 1024"],
    );
    assert_rust(udp(json!({"payload": "x".repeat(1024)})), &[]);
}

#[test]
fn effective_timeout_is_capped_by_the_interval() {
    let hc: HealthCheck = serde_json::from_value(json!({"port": 80, "intervalMs": 100})).unwrap();
    assert_eq!(hc.effective_timeout_ms(), 100);
    let hc: HealthCheck = serde_json::from_value(json!({"port": 80})).unwrap();
    assert_eq!(hc.interval_ms, 100);
    assert_eq!(hc.effective_timeout_ms(), 100);
    let hc: HealthCheck =
        serde_json::from_value(json!({"port": 80, "intervalMs": 500, "timeoutMs": 400})).unwrap();
    assert_eq!(hc.effective_timeout_ms(), 400);
    let hc: HealthCheck = serde_json::from_value(json!({"port": 80, "intervalMs": 500})).unwrap();
    assert_eq!(hc.effective_timeout_ms(), 250);
}

#[test]
fn idle_candidates_are_probed_less_often_never_more() {
    let hc: HealthCheck = serde_json::from_value(json!({"port": 80})).unwrap();
    assert_eq!(hc.effective_idle_interval_ms(), 1000);
    let hc: HealthCheck = serde_json::from_value(json!({"port": 80, "intervalMs": 2000})).unwrap();
    assert_eq!(
        hc.effective_idle_interval_ms(),
        2000,
        "never below the interval"
    );
    let check = |hc: Value| with(secondary("10.0.8.100"), "healthCheck", hc);
    assert_both(
        check(json!({"port": 80, "intervalMs": 500, "idleIntervalMs": 200})),
        &[msg::IDLE_BELOW_INTERVAL],
    );
    assert_both(
        check(json!({"port": 80, "intervalMs": 500, "idleIntervalMs": 500})),
        &[],
    );
    assert_rust(
        check(json!({"port": 80, "idleIntervalMs": 50})),
        &[
            "spec.healthCheck.idleIntervalMs is 50, outside 100..=60000",
            msg::IDLE_BELOW_INTERVAL,
        ],
    );
}

#[test]
fn tolerations_are_checked() {
    let tol = |v: Value| with(secondary("10.0.8.100"), "tolerations", v);
    assert_rust(
        tol(
            json!([{"key": "edge", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
                   {"operator": "Exists"}]),
        ),
        &[],
    );
    assert_rust(
        tol(json!([{"key": "edge", "operator": "Exists", "value": "x"}])),
        &["spec.tolerations: operator Exists takes no value"],
    );
    assert_rust(
        tol(json!([{"key": "edge", "operator": "Like"}])),
        &["operator \"Like\" is not Exists or Equal"],
    );
    assert_rust(
        tol(json!([{"key": "edge", "effect": "NoRun"}])),
        &["effect \"NoRun\" is not NoSchedule"],
    );
}
