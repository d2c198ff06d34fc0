//! Tables for the FloatingIP printer columns and for kinds without columns.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::*;

fn crd_columns() -> Vec<Column> {
    let crd: Value = serde_yaml_ng::from_str(include_str!("../../../../../crds/floatingip.yaml"))
        .expect("crds/floatingip.yaml parses");
    Column::from_crd(&crd["spec"]["versions"][0]["additionalPrinterColumns"])
}

fn now() -> Timestamp {
    "2024-05-03T13:05:00Z".parse().unwrap()
}

fn held() -> Value {
    json!({
        "apiVersion": "floatip.io/v1alpha1",
        "kind": "FloatingIP",
        "metadata": {"name": "web", "uid": "u-1", "resourceVersion": "41", "creationTimestamp": "2024-05-01T10:00:00Z"},
        "spec": {"address": "10.0.8.100", "mode": "SecondaryIP"},
        "status": {
            "holder": {"node": "ip-10-0-8-11", "instanceId": "i-1", "since": "2024-05-01T10:00:05Z"},
            "lastMove": {"to": "ip-10-0-8-11", "reason": "Initial", "at": "2024-05-03T12:55:00Z", "durationMs": 90},
            "conditions": [
                {"type": "Assigned", "status": "True", "reason": "Assigned"},
                {"type": "Ready", "status": "True", "reason": "Assigned"},
                {"type": "Healthy", "status": "Unknown", "reason": "NotChecked"},
            ],
        },
    })
}

fn unheld() -> Value {
    json!({
        "apiVersion": "floatip.io/v1alpha1",
        "kind": "FloatingIP",
        "metadata": {"name": "db", "resourceVersion": "42", "creationTimestamp": "2024-05-03T13:02:00Z"},
        "spec": {"address": "10.0.8.101", "mode": "ElasticIP"},
    })
}

#[test]
fn columns_come_from_the_crd() {
    let columns = crd_columns();
    let names: Vec<(&str, &str, &str)> = columns
        .iter()
        .map(|c| (c.name.as_str(), c.type_.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("Address", "string", ".spec.address"),
            ("Mode", "string", ".spec.mode"),
            ("Holder", "string", ".status.holder.node"),
            (
                "Ready",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].status"
            ),
            (
                "Healthy",
                "string",
                ".status.conditions[?(@.type==\"Healthy\")].status"
            ),
            (
                "Reason",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].reason"
            ),
            ("Last Move", "date", ".status.lastMove.at"),
            ("Public", "string", ".status.publicAddress.address"),
            ("Age", "date", ".metadata.creationTimestamp"),
        ]
    );
    let wide: Vec<&str> = (columns.iter())
        .filter(|c| c.priority == 1)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(wide, ["Healthy", "Reason", "Last Move", "Public"]);
    assert_eq!(
        columns[0].description,
        "Custom resource definition column (in JSONPath format): .spec.address"
    );
    let custom = Column::from_crd(&json!([
        {"name": "Port", "type": "integer", "jsonPath": ".spec.port", "priority": 1, "format": "int32", "description": "The port."}
    ]));
    assert_eq!(
        custom,
        [Column {
            name: "Port".into(),
            type_: "integer".into(),
            format: "int32".into(),
            description: "The port.".into(),
            priority: 1,
            json_path: ".spec.port".into(),
        }]
    );
    assert_eq!(Column::from_crd(&Value::Null), default_columns());
    assert_eq!(Column::from_crd(&json!([])), default_columns());
}

#[test]
fn floatingip_table() {
    let table = table(&crd_columns(), &[held(), unheld()], "42", "", now());
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Name",
            "Address",
            "Mode",
            "Holder",
            "Ready",
            "Healthy",
            "Reason",
            "Last Move",
            "Public",
            "Age"
        ]
    );
    assert_eq!(
        table["columnDefinitions"][0],
        json!({
            "name": "Name",
            "type": "string",
            "format": "name",
            "description": NAME_DESCRIPTION,
            "priority": 0,
        })
    );
    // Healthy, Reason, Last Move and the public address show with -o wide only.
    for wide in 5..=8 {
        assert_eq!(table["columnDefinitions"][wide]["priority"], 1);
    }
    assert_eq!(
        table["columnDefinitions"][9],
        json!({
            "name": "Age",
            "type": "date",
            "format": "",
            "description": "Custom resource definition column (in JSONPath format): .metadata.creationTimestamp",
            "priority": 0,
        })
    );
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(table["metadata"], json!({"resourceVersion": "42"}));
    // Ready, Healthy and Reason from the conditions filter, the last move as an age; an absent
    // holder, condition or public address is a null cell.
    assert_eq!(
        table["rows"][0]["cells"],
        json!([
            "web",
            "10.0.8.100",
            "SecondaryIP",
            "ip-10-0-8-11",
            "True",
            "Unknown",
            "Assigned",
            "10m",
            null,
            "2d3h"
        ])
    );
    assert_eq!(
        table["rows"][1]["cells"],
        json!([
            "db",
            "10.0.8.101",
            "ElasticIP",
            null,
            null,
            null,
            null,
            null,
            null,
            "3m"
        ])
    );
    assert_eq!(
        table["rows"][0]["object"],
        json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"name": "web", "uid": "u-1", "resourceVersion": "41", "creationTimestamp": "2024-05-01T10:00:00Z"},
        })
    );
}

#[test]
fn include_object_variants() {
    let columns = crd_columns();
    let objects = [held()];
    let metadata = table(&columns, &objects, "42", "Metadata", now());
    assert_eq!(
        metadata["rows"][0]["object"]["kind"],
        "PartialObjectMetadata"
    );
    let full = table(&columns, &objects, "42", "Object", now());
    assert_eq!(full["rows"][0]["object"], held());
    let none = table(&columns, &objects, "42", "None", now());
    assert_eq!(
        none["rows"][0],
        json!({"cells": none["rows"][0]["cells"], "object": null})
    );
    assert_eq!(check_include_object(""), Ok(()));
    assert_eq!(check_include_object("Object"), Ok(()));
    assert_eq!(
        check_include_object("All"),
        Err("unrecognized includeObject value: \"All\"".to_string())
    );
    let empty = table(&columns, &[], "", "", now());
    assert_eq!(empty["rows"], json!([]));
    assert_eq!(empty["metadata"], json!({}));
}

#[test]
fn kinds_without_columns_show_name_and_age() {
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "floatip-leader", "namespace": "floatip", "creationTimestamp": "2024-05-03T13:04:55Z"},
    });
    let t = table(&default_columns(), &[lease], "7", "None", now());
    assert_eq!(
        t["columnDefinitions"][1],
        json!({
            "name": "Age",
            "type": "date",
            "format": "",
            "description": CREATION_TIMESTAMP_DESCRIPTION,
            "priority": 0,
        })
    );
    assert_eq!(t["rows"][0]["cells"], json!(["floatip-leader", "5s"]));
}

#[test]
fn cells_by_type() {
    let col = |type_: &str, path: &str| Column {
        name: "C".into(),
        type_: type_.into(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        json_path: path.into(),
    };
    let obj = json!({
        "metadata": {"name": "x"},
        "spec": {
            "n": 5, "f": 2.5, "whole": 3.0, "b": true, "s": "text", "list": ["a", "b"], "map": {"k": 1},
            "nothing": null, "when": "2024-05-03T12:00:00Z", "bad": "yesterday", "empty": "",
        },
    });
    let cells = |cols: &[Column]| {
        table(cols, std::slice::from_ref(&obj), "", "None", now())["rows"][0]["cells"].clone()
    };
    assert_eq!(
        cells(&[
            col("string", ".spec.n"),
            col("string", ".spec.f"),
            col("string", ".spec.b"),
            col("string", ".spec.list"),
            col("string", ".spec.list[*]"),
            col("string", ".spec.map"),
            col("string", ".spec.nothing"),
            col("string", ".spec.absent"),
        ]),
        json!([
            "x",
            "5",
            "2.5",
            "true",
            "[\"a\",\"b\"]",
            "a",
            "{\"k\":1}",
            "<no value>",
            null
        ])
    );
    assert_eq!(
        cells(&[
            col("integer", ".spec.n"),
            col("integer", ".spec.f"),
            col("integer", ".spec.s"),
            col("number", ".spec.n"),
            col("number", ".spec.f"),
            col("number", ".spec.whole"),
            col("boolean", ".spec.b"),
            col("boolean", ".spec.s"),
            col("date", ".spec.when"),
            col("date", ".spec.bad"),
            col("date", ".spec.empty"),
            col("date", ".spec.n"),
            col("unknown", ".spec.s"),
        ]),
        json!([
            "x",
            5,
            2,
            null,
            5,
            2.5,
            3,
            true,
            null,
            "65m",
            "<invalid>",
            "<unknown>",
            null,
            null
        ])
    );
}
