//! The mutating half of admission, in the apiserver's order: prune fields the schema does not
//! declare, drop nulls that may not be null, then apply `default`s (structural pruning and
//! defaulting in apiextensions-apiserver).

use serde_json::{Map, Value};

use super::node::{Additional, Node};

/// Kept on the resource root and on x-kubernetes-embedded-resource objects; the server owns them.
const META_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

/// Removes unknown fields from the whole object and returns their paths, sorted
/// (`spec.foo`, `spec.list[0].bar`).
pub(super) fn prune(obj: &mut Value, root: &Node) -> Vec<String> {
    let mut unknown = Vec::new();
    let mut path = String::new();
    prune_at(obj, Some(root), true, &mut path, &mut unknown);
    unknown.sort();
    unknown
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

fn record(path: &mut String, key: &str, unknown: &mut Vec<String>) {
    let len = path.len();
    push_key(path, key);
    unknown.push(path.clone());
    path.truncate(len);
}

fn map_value_schema(s: &Node) -> Option<Option<&Node>> {
    match &s.additional {
        Some(Additional::Schema(n)) => Some(Some(n)),
        Some(Additional::Allows(_)) => Some(None),
        None => None,
    }
}

fn prune_at(
    x: &mut Value,
    s: Option<&Node>,
    embedded: bool,
    path: &mut String,
    unknown: &mut Vec<String>,
) {
    if let Some(s) = s {
        if s.preserve_unknown {
            skip_prune(x, s, embedded, path, unknown);
            return;
        }
    }
    match x {
        Value::Object(map) => {
            let Some(s) = s else {
                for k in map.keys() {
                    record(path, k, unknown);
                }
                map.clear();
                return;
            };
            let embedded = embedded || s.embedded;
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let child = if let Some(prop) = s.properties.get(&k) {
                    Some(Some(prop))
                } else {
                    map_value_schema(s)
                };
                match child {
                    Some(child) => descend(map, &k, child, path, unknown),
                    None => {
                        if !META_FIELDS.contains(&k.as_str()) || !path.is_empty() {
                            record(path, &k, unknown);
                        }
                        map.remove(&k);
                    }
                }
            }
        }
        Value::Array(items) => {
            let item_schema = s.and_then(|s| s.items.as_deref());
            for (i, v) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                prune_at(v, item_schema, false, path, unknown);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn descend(
    map: &mut Map<String, Value>,
    k: &str,
    child: Option<&Node>,
    path: &mut String,
    unknown: &mut Vec<String>,
) {
    let len = path.len();
    push_key(path, k);
    if let Some(v) = map.get_mut(k) {
        prune_at(v, child, false, path, unknown);
    }
    path.truncate(len);
}

/// Under x-kubernetes-preserve-unknown-fields unknown keys stay, but declared ones are still
/// pruned by their own schemas.
fn skip_prune(
    x: &mut Value,
    s: &Node,
    embedded: bool,
    path: &mut String,
    unknown: &mut Vec<String>,
) {
    match x {
        Value::Object(map) => {
            let embedded = embedded || s.embedded;
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                if let Some(prop) = s.properties.get(&k) {
                    descend(map, &k, Some(prop), path, unknown);
                } else if let Some(child) = map_value_schema(s) {
                    descend(map, &k, child, path, unknown);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.items.as_deref() {
                for (i, v) in items.iter_mut().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    skip_prune(v, item_schema, false, path, unknown);
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
}

fn field_schema<'a>(s: Option<&'a Node>, key: &str) -> Option<&'a Node> {
    let s = s?;
    s.properties.get(key).or_else(|| s.additional_schema())
}

/// PruneNonNullableNullsWithoutDefaults: a null where the schema forbids null and has no default
/// to put there is treated as absent.
pub(super) fn prune_nulls(x: &mut Value, s: Option<&Node>) {
    match x {
        Value::Object(map) => {
            map.retain(|k, v| {
                let child = field_schema(s, k);
                !(v.is_null() && child.is_some_and(|c| !c.nullable && c.default.is_none()))
            });
            for (k, v) in map.iter_mut() {
                prune_nulls(v, field_schema(s, k));
            }
        }
        Value::Array(items) => {
            let item_schema = s.and_then(|s| s.items.as_deref());
            for v in items {
                prune_nulls(v, item_schema);
            }
        }
        _ => {}
    }
}

fn non_nullable_null(v: &Value, s: &Node) -> bool {
    v.is_null() && !s.nullable
}

/// Structural defaulting: missing properties (and non-nullable nulls) take their `default`,
/// then defaulting continues inside, so a defaulted `{}` parent gets its children's defaults.
pub(super) fn apply_defaults(x: &mut Value, s: &Node) {
    match x {
        Value::Object(map) => {
            for (k, prop) in &s.properties {
                let Some(default) = &prop.default else {
                    continue;
                };
                let missing = match map.get(k) {
                    None => true,
                    Some(v) => non_nullable_null(v, prop),
                };
                if missing {
                    map.insert(k.clone(), default.clone());
                }
            }
            for (k, v) in map.iter_mut() {
                if let Some(prop) = s.properties.get(k) {
                    apply_defaults(v, prop);
                } else if let Some(add) = s.additional_schema() {
                    if non_nullable_null(v, add) {
                        if let Some(d) = &add.default {
                            *v = d.clone();
                        }
                    }
                    apply_defaults(v, add);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.items.as_deref() {
                for v in items {
                    if non_nullable_null(v, item_schema) {
                        if let Some(d) = &item_schema.default {
                            *v = d.clone();
                        }
                    }
                    apply_defaults(v, item_schema);
                }
            }
        }
        _ => {}
    }
}

/// Whole floats become integers, as a trip through the apiserver's JSON leaves them: Go writes
/// float64(80) as `80`, which reads back as an int64. Typed clients then see `80`, not `80.0`.
pub(super) fn normalize_numbers(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() < 9.2e18 {
                    *v = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_numbers),
        Value::Object(map) => map.values_mut().for_each(normalize_numbers),
        _ => {}
    }
}

/// Whole floats where the schema says integer become integers, as the apiserver converts them
/// before CEL sees them (a rule comparing `self.port` with an int then works for `80.0`).
pub(super) fn integers_for_rules(v: &mut Value, s: &Node) {
    match v {
        Value::Number(n) if n.is_f64() && (s.type_ == "integer" || s.int_or_string) => {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() < 9.2e18 {
                    *v = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.items.as_deref() {
                items
                    .iter_mut()
                    .for_each(|i| integers_for_rules(i, item_schema));
            }
        }
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if let Some(prop) = s.properties.get(k).or_else(|| s.additional_schema()) {
                    integers_for_rules(child, prop);
                }
            }
        }
        _ => {}
    }
}
