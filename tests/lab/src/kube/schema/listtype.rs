//! x-kubernetes-list-type invariants (apiextensions listtype.ValidateListSetsAndMaps): no
//! duplicate items in a `set`, no duplicate keys in a `map`.

use serde_json::{Map, Value};

use super::field::field_of;
use super::node::Node;
use super::render::{bad_value, json, Num};
use super::FieldError;

pub(super) fn validate(root: &Node, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Value::Object(map) = obj {
        object("", root, map, &mut errs);
    }
    errs
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn object(path: &str, s: &Node, map: &Map<String, Value>, errs: &mut Vec<FieldError>) {
    if let Some(add) = s.additional_schema() {
        for (k, v) in map {
            value(&format!("{path}[{k}]"), add, v, errs);
        }
    }
    for (k, v) in map {
        if let Some(sub) = s.properties.get(k) {
            value(&child(path, k), sub, v, errs);
        }
    }
}

fn value(path: &str, s: &Node, v: &Value, errs: &mut Vec<FieldError>) {
    match v {
        Value::Array(items) => array(path, s, items, errs),
        Value::Object(map) => object(path, s, map, errs),
        _ => {}
    }
}

fn array(path: &str, s: &Node, items: &[Value], errs: &mut Vec<FieldError>) {
    match s.list_type.as_deref() {
        Some("set") => {
            let keys: Vec<Key> = items.iter().map(Key::of).collect();
            for i in non_unique(&keys) {
                errs.push(FieldError::duplicate(
                    field_of(&format!("{path}[{i}]")),
                    &bad_value(&items[i]),
                ));
            }
        }
        Some("map") => errs.extend(list_map(path, s, items)),
        _ => {}
    }
    if let Some(item_schema) = &s.items {
        for (i, item) in items.iter().enumerate() {
            value(&format!("{path}[{i}]"), item_schema, item, errs);
        }
    }
}

/// What Go compares list items by: scalars by type and value, compounds by their JSON.
#[derive(PartialEq)]
enum Key {
    Unspecified,
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(String),
    Compound(String),
}

impl Key {
    fn of(v: &Value) -> Key {
        match v {
            Value::Null => Key::Null,
            Value::Bool(b) => Key::Bool(*b),
            Value::Number(n) => match Num::of(n) {
                Num::Int(i) => Key::Int(i),
                Num::Float(f) => Key::Float(f.to_bits()),
            },
            Value::String(s) => Key::Str(s.clone()),
            other => Key::Compound(json(other)),
        }
    }
}

/// The index of the second appearance of each repeated key.
fn non_unique(keys: &[Key]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        if keys[..i].iter().filter(|p| *p == k).count() == 1 {
            out.push(i);
        }
    }
    out
}

fn list_map(path: &str, s: &Node, items: &[Value]) -> Vec<FieldError> {
    for (i, x) in items.iter().enumerate() {
        if !x.is_null() && !x.is_object() {
            return vec![FieldError::invalid(
                field_of(&format!("{path}[{i}]")),
                &bad_value(x),
                "must be an object for an array of list-type map",
            )];
        }
    }
    if items.len() <= 1 {
        return vec![];
    }
    let dup =
        |i: usize, shown: String| FieldError::duplicate(field_of(&format!("{path}[{i}]")), &shown);
    if let [key_field] = s.list_map_keys.as_slice() {
        let keys: Vec<Key> = items
            .iter()
            .map(|x| match x.get(key_field) {
                Some(k) => Key::of(k),
                None => Key::Unspecified,
            })
            .collect();
        return non_unique(&keys)
            .into_iter()
            .map(|i| match items[i].get(key_field) {
                Some(k) => {
                    let mut m = Map::new();
                    m.insert(key_field.clone(), k.clone());
                    dup(i, json(&Value::Object(m)))
                }
                None => dup(i, "{}".to_string()),
            })
            .collect();
    }
    let key_maps: Vec<Value> = items
        .iter()
        .map(|x| {
            let mut m = Map::new();
            for k in &s.list_map_keys {
                if let Some(v) = x.get(k) {
                    m.insert(k.clone(), v.clone());
                }
            }
            Value::Object(m)
        })
        .collect();
    let keys: Vec<Key> = key_maps.iter().map(Key::of).collect();
    non_unique(&keys)
        .into_iter()
        .map(|i| dup(i, json(&key_maps[i])))
        .collect()
}
