//! The numeric ranges, ID and name formats and list limits of a spec, each read from the
//! generated CRD schema and checked against the Rust rules.

use serde_json::{json, Value};

use super::*;

/// Reads `minimum`/`maximum` of a spec field from the generated CRD schema.
fn schema_bounds(path: &[&str]) -> (i64, i64) {
    let mut node = &schema()["properties"]["spec"];
    for key in path {
        node = &node["properties"][*key];
    }
    let bound = |k: &str| {
        node[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{path:?} has no {k}")) as i64
    };
    (bound("minimum"), bound("maximum"))
}

/// The Rust range checks accept exactly the range the CRD schema declares.
#[test]
fn numeric_ranges_match_the_schema() {
    let cases: [(&[&str], &str); 6] = [
        (&["healthCheck", "port"], "spec.healthCheck.port"),
        (
            &["healthCheck", "intervalMs"],
            "spec.healthCheck.intervalMs",
        ),
        (&["healthCheck", "timeoutMs"], "spec.healthCheck.timeoutMs"),
        (
            &["healthCheck", "failureThreshold"],
            "spec.healthCheck.failureThreshold",
        ),
        (
            &["healthCheck", "successThreshold"],
            "spec.healthCheck.successThreshold",
        ),
        (
            &["failover", "minHoldSeconds"],
            "spec.failover.minHoldSeconds",
        ),
    ];
    for (path, field) in cases {
        let (min, max) = schema_bounds(path);
        for (value, ok) in [(min - 1, false), (min, true), (max, true), (max + 1, false)] {
            // Timeouts are checked against a long interval so only their own range matters.
            let mut spec = with(
                secondary("10.0.8.100"),
                "healthCheck",
                json!({"port": 80, "intervalMs": 60000}),
            );
            spec[path[0]][path[1]] = json!(value);
            if ok {
                assert_rust(spec, &[]);
            } else {
                assert_rust(
                    spec,
                    &[&format!("{field} is {value}, outside {min}..={max}")],
                );
            }
        }
    }
}

fn schema_pattern(path: &[&str]) -> regex::Regex {
    let mut node = &schema()["properties"]["spec"];
    for key in path {
        node = if *key == "items" {
            &node["items"]
        } else {
            &node["properties"][*key]
        };
    }
    regex::Regex::new(node["pattern"].as_str().expect("pattern")).unwrap()
}

/// The Rust ID and name checks accept exactly what the CRD schema's patterns accept.
#[test]
fn id_and_name_formats_match_the_schema() {
    let subnet = schema_pattern(&["subnetId"]);
    for id in [
        "subnet-0123abcd",
        "subnet-0123456789abcdef0",
        "subnet-0123ABCD",
        "subnet-0123abc",
        "subnet-0123456789abcdef",
        "subnet0123abcd",
        "sg-0123abcd",
    ] {
        let errs = rust_messages(validate_spec(&parse(&secondary_in(id))));
        assert_eq!(subnet.is_match(id), errs.is_empty(), "{id}: {errs:?}");
    }
    let rtb = schema_pattern(&["routeTableIds", "items"]);
    for id in [
        "rtb-0123abcd",
        "rtb-0123456789abcdef0",
        "rtb-xyz",
        "rtb-0123abcd ",
    ] {
        let spec = json!({"address": "100.64.0.1", "mode": "RouteTable", "routeTableIds": [id]});
        let errs = rust_messages(validate_spec(&parse(&spec)));
        assert_eq!(rtb.is_match(id), errs.is_empty(), "{id}: {errs:?}");
    }
    let eip = schema_pattern(&["elasticIP", "allocationId"]);
    for id in ["eipalloc-0123abcd", "eipalloc-12", "eipassoc-0123abcd"] {
        let spec = json!({"address": "203.0.113.1", "mode": "ElasticIP", "interface": "Primary", "elasticIP": {"allocationId": id}});
        let errs = rust_messages(validate_spec(&parse(&spec)));
        assert_eq!(eip.is_match(id), errs.is_empty(), "{id}: {errs:?}");
    }
    let node = schema_pattern(&["preferredNodes", "items"]);
    for name in [
        "node-a",
        "ip-10-0-8-11.us-west-2.compute.internal",
        "Node-A",
        "node_a",
        "-node",
        "node-",
        "a..b",
    ] {
        let spec = with(secondary("10.0.8.100"), "preferredNodes", json!([name]));
        let errs = rust_messages(validate_spec(&parse(&spec)));
        assert_eq!(node.is_match(name), errs.is_empty(), "{name}: {errs:?}");
    }
}

fn secondary_in(subnet: &str) -> Value {
    json!({"address": "10.0.8.100", "subnetId": subnet})
}

#[test]
fn lists_refuse_duplicates_and_excess() {
    assert_rust(
        with(
            secondary("10.0.8.100"),
            "preferredNodes",
            json!(["a", "b", "a"]),
        ),
        &["spec.preferredNodes lists \"a\" twice"],
    );
    assert_rust(
        json!({"address": "100.64.0.1", "mode": "RouteTable", "routeTableIds": ["rtb-0123abcd", "rtb-0123abcd"]}),
        &["spec.routeTableIds lists \"rtb-0123abcd\" twice"],
    );
    let many: Vec<String> = (0..33).map(|i| format!("node-{i}")).collect();
    assert_rust(
        with(secondary("10.0.8.100"), "preferredNodes", json!(many)),
        &["spec.preferredNodes has 33 entries, at most 32"],
    );
    let max_tables = schema()["properties"]["spec"]["properties"]["routeTableIds"]["maxItems"]
        .as_u64()
        .unwrap();
    let tables: Vec<String> = (0..=max_tables).map(|i| format!("rtb-{i:08x}")).collect();
    assert_rust(
        json!({"address": "100.64.0.1", "mode": "RouteTable", "routeTableIds": tables}),
        &[&format!(
            "has {} entries, at most {max_tables}",
            max_tables + 1
        )],
    );
}
