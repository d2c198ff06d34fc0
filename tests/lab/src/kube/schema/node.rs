//! The parts of an OpenAPI v3 schema node that admission reads, parsed once per CRD version.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::{Map, Value};

/// Formats the apiserver keeps in CRD schemas (apiextensions formats.go, names without `-`);
/// any other format is dropped before validation, so it neither checks nor rejects anything.
const SUPPORTED_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
];

const TYPES: &[&str] = &["object", "array", "string", "integer", "number", "boolean"];

/// `additionalProperties`: a schema for map values, or a bare boolean.
pub(super) enum Additional {
    Schema(Box<Node>),
    Allows(bool),
}

/// One `x-kubernetes-validations` entry, as far as error reporting needs it.
pub(super) struct Rule {
    pub rule: String,
    pub field_path: Option<String>,
    /// Uses `oldSelf`: never ratcheted, only evaluated on updates.
    pub transition: bool,
}

#[derive(Default)]
pub(super) struct Node {
    /// `type`, or empty.
    pub type_: String,
    pub int_or_string: bool,
    pub nullable: bool,
    /// `format` as written, kept only when the apiserver supports it.
    pub format: String,
    pub enum_: Option<Vec<Value>>,
    pub pattern: Option<(String, Regex)>,
    pub maximum: Option<f64>,
    pub exclusive_maximum: bool,
    pub minimum: Option<f64>,
    pub exclusive_minimum: bool,
    pub multiple_of: Option<f64>,
    pub max_length: Option<i64>,
    pub min_length: Option<i64>,
    pub max_items: Option<i64>,
    pub min_items: Option<i64>,
    pub max_properties: Option<i64>,
    pub min_properties: Option<i64>,
    pub unique_items: bool,
    pub required: Vec<String>,
    pub properties: BTreeMap<String, Node>,
    pub additional: Option<Additional>,
    pub items: Option<Box<Node>>,
    pub preserve_unknown: bool,
    pub embedded: bool,
    pub list_type: Option<String>,
    pub list_map_keys: Vec<String>,
    pub default: Option<Value>,
    pub all_of: Vec<Node>,
    pub any_of: Vec<Node>,
    pub one_of: Vec<Node>,
    pub not: Option<Box<Node>>,
    pub rules: Vec<Rule>,
}

impl Node {
    /// `at` names the node in errors, e.g. `openAPIV3Schema.properties[spec]`.
    pub(super) fn parse(v: &Value, at: &str) -> Result<Node, String> {
        let m = v
            .as_object()
            .ok_or_else(|| format!("{at}: a schema must be an object, not {v}"))?;
        let mut n = Node {
            type_: string(m, "type", at)?.unwrap_or_default(),
            int_or_string: flag(m, "x-kubernetes-int-or-string"),
            nullable: flag(m, "nullable"),
            preserve_unknown: flag(m, "x-kubernetes-preserve-unknown-fields"),
            embedded: flag(m, "x-kubernetes-embedded-resource"),
            unique_items: flag(m, "uniqueItems"),
            exclusive_maximum: flag(m, "exclusiveMaximum"),
            exclusive_minimum: flag(m, "exclusiveMinimum"),
            maximum: number(m, "maximum", at)?,
            minimum: number(m, "minimum", at)?,
            multiple_of: number(m, "multipleOf", at)?,
            max_length: integer(m, "maxLength", at)?,
            min_length: integer(m, "minLength", at)?,
            max_items: integer(m, "maxItems", at)?,
            min_items: integer(m, "minItems", at)?,
            max_properties: integer(m, "maxProperties", at)?,
            min_properties: integer(m, "minProperties", at)?,
            list_type: string(m, "x-kubernetes-list-type", at)?,
            default: m.get("default").cloned(),
            ..Node::default()
        };
        if !n.type_.is_empty() && !TYPES.contains(&n.type_.as_str()) {
            return Err(format!("{at}.type: unsupported type {:?}", n.type_));
        }
        if let Some(format) = string(m, "format", at)? {
            if SUPPORTED_FORMATS.contains(&format.replace('-', "").as_str()) {
                n.format = format;
            }
        }
        if let Some(values) = m.get("enum") {
            let values = values
                .as_array()
                .ok_or_else(|| format!("{at}.enum: must be a list"))?;
            n.enum_ = Some(values.clone());
        }
        if let Some(p) = string(m, "pattern", at)? {
            let re =
                Regex::new(&p).map_err(|e| format!("{at}.pattern: {p:?} does not compile: {e}"))?;
            n.pattern = Some((p, re));
        }
        if let Some(req) = m.get("required") {
            n.required = strings(req, &format!("{at}.required"))?;
        }
        if let Some(keys) = m.get("x-kubernetes-list-map-keys") {
            n.list_map_keys = strings(keys, &format!("{at}.x-kubernetes-list-map-keys"))?;
        }
        if let Some(props) = m.get("properties") {
            let props = props
                .as_object()
                .ok_or_else(|| format!("{at}.properties: must be an object"))?;
            for (k, s) in props {
                n.properties
                    .insert(k.clone(), Node::parse(s, &format!("{at}.properties[{k}]"))?);
            }
        }
        n.additional = match m.get("additionalProperties") {
            None => None,
            Some(Value::Bool(b)) => Some(Additional::Allows(*b)),
            Some(s) => Some(Additional::Schema(Box::new(Node::parse(
                s,
                &format!("{at}.additionalProperties"),
            )?))),
        };
        if let Some(items) = m.get("items") {
            n.items = Some(Box::new(Node::parse(items, &format!("{at}.items"))?));
        }
        n.all_of = junctor(m, "allOf", at)?;
        n.any_of = junctor(m, "anyOf", at)?;
        n.one_of = junctor(m, "oneOf", at)?;
        if let Some(not) = m.get("not") {
            n.not = Some(Box::new(Node::parse(not, &format!("{at}.not"))?));
        }
        if let Some(rules) = m.get("x-kubernetes-validations") {
            let rules = rules
                .as_array()
                .ok_or_else(|| format!("{at}.x-kubernetes-validations: must be a list"))?;
            for (i, r) in rules.iter().enumerate() {
                let rule = r
                    .get("rule")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{at}.x-kubernetes-validations[{i}].rule: required"))?;
                n.rules.push(Rule {
                    rule: rule.to_string(),
                    field_path: r
                        .get("fieldPath")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    transition: uses_old_self(rule),
                });
            }
        }
        Ok(n)
    }

    /// The schema types a value may have, as the type validator joins them.
    pub(super) fn types(&self) -> Vec<&str> {
        if self.int_or_string {
            vec!["integer", "string"]
        } else if self.type_.is_empty() {
            vec![]
        } else {
            vec![self.type_.as_str()]
        }
    }

    /// Whether any rule sits here or below (hasXValidations: junctors do not count).
    pub(super) fn has_rules(&self) -> bool {
        !self.rules.is_empty()
            || self.items.as_ref().is_some_and(|i| i.has_rules())
            || self.additional_schema().is_some_and(Node::has_rules)
            || self.properties.values().any(Node::has_rules)
    }

    pub(super) fn additional_schema(&self) -> Option<&Node> {
        match &self.additional {
            Some(Additional::Schema(s)) => Some(s),
            _ => None,
        }
    }
}

/// Whether a rule mentions `oldSelf` outside string literals.
fn uses_old_self(rule: &str) -> bool {
    let mut rest = String::with_capacity(rule.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in rule.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                rest.push(' ');
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                rest.push(' ');
            }
            None => rest.push(c),
        }
    }
    rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|w| w == "oldSelf")
}

fn flag(m: &Map<String, Value>, key: &str) -> bool {
    m.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn string(m: &Map<String, Value>, key: &str, at: &str) -> Result<Option<String>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{at}.{key}: must be a string, not {other}")),
    }
}

fn number(m: &Map<String, Value>, key: &str, at: &str) -> Result<Option<f64>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(other) => Err(format!("{at}.{key}: must be a number, not {other}")),
    }
}

fn integer(m: &Map<String, Value>, key: &str, at: &str) -> Result<Option<i64>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            // YAML may write 3.0; the apiserver stores these as int64.
            None => match n.as_f64() {
                Some(f) if f.fract() == 0.0 => Ok(Some(f as i64)),
                _ => Err(format!("{at}.{key}: must be an integer, not {n}")),
            },
        },
        Some(other) => Err(format!("{at}.{key}: must be an integer, not {other}")),
    }
}

fn strings(v: &Value, at: &str) -> Result<Vec<String>, String> {
    v.as_array()
        .and_then(|a| {
            a.iter()
                .map(|s| s.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| format!("{at}: must be a list of strings"))
}

fn junctor(m: &Map<String, Value>, key: &str, at: &str) -> Result<Vec<Node>, String> {
    match m.get(key) {
        None => Ok(vec![]),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, s)| Node::parse(s, &format!("{at}.{key}[{i}]")))
            .collect(),
        Some(_) => Err(format!("{at}.{key}: must be a list")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_self_outside_strings_only() {
        assert!(uses_old_self("self == oldSelf"));
        assert!(uses_old_self("self.x >= oldSelf.x"));
        assert!(!uses_old_self("self.name != 'oldSelf'"));
        assert!(!uses_old_self("self.oldSelfish == 1"));
    }

    #[test]
    fn unsupported_formats_are_dropped() {
        let n = Node::parse(
            &serde_json::json!({"type": "integer", "format": "int32"}),
            "x",
        )
        .unwrap();
        assert_eq!(n.format, "");
        let n = Node::parse(
            &serde_json::json!({"type": "string", "format": "date-time"}),
            "x",
        )
        .unwrap();
        assert_eq!(n.format, "date-time");
    }

    #[test]
    fn bad_pattern_is_named() {
        let err = Node::parse(
            &serde_json::json!({"properties": {"a": {"type": "string", "pattern": "("}}}),
            "openAPIV3Schema",
        )
        .err()
        .unwrap();
        assert!(
            err.starts_with("openAPIV3Schema.properties[a].pattern: \"(\" does not compile"),
            "{err}"
        );
    }
}
