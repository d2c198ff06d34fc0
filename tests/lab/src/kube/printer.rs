//! meta.k8s.io/v1 Table responses for `kubectl get`, built the way the apiserver's CRD table
//! convertor (apiextensions tableconvertor) builds them:
//!
//! - a Name column first, then the printer columns;
//! - each cell from the *first* value its JSONPath selects (several matches are not joined);
//!   no match gives a null cell, which kubectl prints as nothing;
//! - `string` cells print the value as client-go's jsonpath does (strings bare, numbers and
//!   booleans as text, lists and maps as JSON, a null as `<no value>`); `integer`, `number`
//!   and `boolean` cells keep the JSON value when its type fits, else null;
//! - `date` cells hold a human duration since the timestamp (`5m`, `2d3h`), not the timestamp:
//!   `<unknown>` for an empty one, `<invalid>` for one that is not RFC 3339.

mod duration;
pub mod jsonpath;
#[cfg(test)]
mod tests;

use jiff::Timestamp;
use serde_json::{json, Map, Value};

use super::schema::render::{self, Num};

pub use duration::human_duration;
pub use jsonpath::eval;

/// metav1.ObjectMeta's documentation of `name`, the Name column's description.
const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// metav1.ObjectMeta's documentation of `creationTimestamp`, the default Age column's.
const CREATION_TIMESTAMP_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// One printer column: metav1.TableColumnDefinition plus the JSONPath its cells come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
    pub json_path: String,
}

impl Column {
    /// A CRD version's `additionalPrinterColumns`. A column without a description gets
    /// `Custom resource definition column (in JSONPath format): <jsonPath>`; no columns at all
    /// (absent, null or empty) gives [`default_columns`], as the apiserver serves CRDs.
    pub fn from_crd(additional_printer_columns: &Value) -> Vec<Column> {
        let list = additional_printer_columns
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if list.is_empty() {
            return default_columns();
        }
        list.iter()
            .map(|c| {
                let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                let json_path = text("jsonPath");
                let mut description = text("description");
                if description.is_empty() {
                    description = format!(
                        "Custom resource definition column (in JSONPath format): {json_path}"
                    );
                }
                Column {
                    name: text("name"),
                    type_: text("type"),
                    format: text("format"),
                    description,
                    priority: c
                        .get("priority")
                        .and_then(Value::as_i64)
                        .and_then(|p| i32::try_from(p).ok())
                        .unwrap_or(0),
                    json_path,
                }
            })
            .collect()
    }

    fn definition(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }

    fn cell(&self, obj: &Value, now: Timestamp) -> Value {
        let Some(value) = eval(&self.json_path, obj) else {
            return Value::Null;
        };
        match self.type_.as_str() {
            "string" => Value::String(print_value(&value)),
            "integer" => match &value {
                Value::Number(n) => match n.as_i64() {
                    Some(i) => json!(i),
                    // int64(float64) truncates toward zero.
                    None => n.as_f64().map_or(Value::Null, |f| json!(f.trunc() as i64)),
                },
                _ => Value::Null,
            },
            "number" => match &value {
                Value::Number(n) => n.as_f64().map_or(Value::Null, go_float_json),
                _ => Value::Null,
            },
            "boolean" => match value {
                Value::Bool(b) => Value::Bool(b),
                _ => Value::Null,
            },
            "date" => match &value {
                Value::String(s) => Value::String(age(s, now)),
                _ => Value::Null,
            },
            _ => Value::Null,
        }
    }
}

/// Columns for kinds without printer columns. The table adds Name itself, so this is just
/// Age: a `date` column on `.metadata.creationTimestamp`.
pub fn default_columns() -> Vec<Column> {
    vec![Column {
        name: "Age".into(),
        type_: "date".into(),
        format: String::new(),
        description: CREATION_TIMESTAMP_DESCRIPTION.into(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".into(),
    }]
}

/// How the cell of a `date` column reads: metav1.Time's query-parameter parsing, then
/// ConvertToHumanReadableDateType.
fn age(timestamp: &str, now: Timestamp) -> String {
    if timestamp.is_empty() || timestamp == "null" {
        return "<unknown>".into();
    }
    match timestamp.parse::<Timestamp>() {
        Ok(t) => human_duration(now.duration_since(t)),
        Err(_) => "<invalid>".into(),
    }
}

/// encoding/json writes a whole float64 without a fraction (5, not 5.0).
fn go_float_json(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9e18 {
        json!(f as i64)
    } else {
        json!(f)
    }
}

/// client-go jsonpath PrintResults for one value.
fn print_value(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => Num::of(n).v(),
        Value::Array(_) | Value::Object(_) => render::json(v),
    }
}

/// A meta.k8s.io/v1 Table for `objects` (each a full object as JSON): the Name column first,
/// then `columns`. Each row's `object` is a PartialObjectMetadata (meta.k8s.io/v1) unless
/// `include_object` is "Object" (the full object) or "None" (null); "" and "Metadata" and
/// anything else give metadata (check the parameter first with [`check_include_object`]).
/// Ages are measured from `now`.
pub fn table(
    columns: &[Column],
    objects: &[Value],
    resource_version: &str,
    include_object: &str,
    now: Timestamp,
) -> Value {
    let name = Column {
        name: "Name".into(),
        type_: "string".into(),
        format: "name".into(),
        description: NAME_DESCRIPTION.into(),
        priority: 0,
        json_path: ".metadata.name".into(),
    };
    let definitions: Vec<Value> = std::iter::once(&name)
        .chain(columns)
        .map(Column::definition)
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let mut cells = vec![json!(name)];
            cells.extend(columns.iter().map(|c| c.cell(obj, now)));
            json!({"cells": cells, "object": row_object(obj, include_object)})
        })
        .collect();
    let mut metadata = Map::new();
    if !resource_version.is_empty() {
        metadata.insert("resourceVersion".into(), json!(resource_version));
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

fn row_object(obj: &Value, include_object: &str) -> Value {
    match include_object {
        "Object" => obj.clone(),
        "None" => Value::Null,
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
    }
}

/// The `includeObject` values the apiserver accepts; Err is its 400 message.
pub fn check_include_object(value: &str) -> Result<(), String> {
    match value {
        "" | "None" | "Metadata" | "Object" => Ok(()),
        other => Err(format!(
            "unrecognized includeObject value: {}",
            render::quote(other)
        )),
    }
}
