//! Label and field selectors in their query-string syntax.

use serde_json::Value;

use super::errors::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// `a=b,c!=d,e in (x,y),f notin (z),g,!h`
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<LabelReq>);

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in split_top_level(s) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let bad = || ApiError::bad_request(format!("unable to parse requirement: {term:?}"));
            let req = if let Some(key) = term.strip_prefix('!') {
                LabelReq::NotExists(key.trim().to_string())
            } else if let Some((k, v)) = term.split_once("!=") {
                LabelReq::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = split_set_op(term, " notin ") {
                LabelReq::NotIn(k, parse_set(rest).ok_or_else(bad)?)
            } else if let Some((k, rest)) = split_set_op(term, " in ") {
                LabelReq::In(k, parse_set(rest).ok_or_else(bad)?)
            } else if term.contains([' ', '(', ')']) {
                return Err(bad());
            } else {
                LabelReq::Exists(term.to_string())
            };
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
        })
    }
}

fn split_set_op(term: &str, op: &str) -> Option<(String, String)> {
    let (k, rest) = term.split_once(op)?;
    Some((k.trim().to_string(), rest.trim().to_string()))
}

fn parse_set(s: String) -> Option<Vec<String>> {
    let inner = s.strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// `metadata.name=web,spec.nodeName!=n1`: any dotted path of the object as served, compared as
/// text; and `source` on core/v1 Events (see [`field_text`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, eq, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: {term:?}: expected key=value or key!=value"
                )));
            };
            reqs.push((path.trim().to_string(), eq, value.trim().to_string()));
        }
        Ok(Self(reqs))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0
            .iter()
            .all(|(label, eq, want)| (field_text(obj, label) == *want) == *eq)
    }
}

/// The value a field label selects: the text at its dotted path, except `source` on a core/v1
/// Event, which is the component that reported it: source.component, or reportingComponent
/// when that is empty, as Events written through events.k8s.io/v1 have no source
/// (ToSelectableFields, pkg/registry/core/event/strategy.go).
fn field_text(obj: &Value, label: &str) -> String {
    let at = |path: &str| {
        let mut node = obj;
        for part in path.split('.') {
            node = &node[part];
        }
        match node {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    };
    if label == "source" && obj["apiVersion"] == "v1" && obj["kind"] == "Event" {
        let component = at("source.component");
        return if component.is_empty() {
            at("reportingComponent")
        } else {
            component
        };
    }
    at(label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj() -> Value {
        json!({"metadata": {"name": "n1", "labels": {"zone": "a", "edge": "true"}}, "spec": {"nodeName": "x"}})
    }

    #[test]
    fn label_selector_forms() {
        let cases = [
            ("zone=a", true),
            ("zone==a", true),
            ("zone!=a", false),
            ("zone in (a, b)", true),
            ("zone notin (a,b)", false),
            ("zone notin (c)", true),
            ("edge", true),
            ("!edge", false),
            ("!missing", true),
            ("zone=a,edge=true", true),
            ("zone in (b),edge", false),
            ("", true),
        ];
        for (sel, want) in cases {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&obj()),
                want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("zone in a").is_err());
    }

    #[test]
    fn field_selector_forms() {
        let m = |s: &str| FieldSelector::parse(s).unwrap().matches(&obj());
        assert!(m("metadata.name=n1"));
        assert!(!m("metadata.name!=n1"));
        assert!(m("spec.nodeName==x,metadata.name=n1"));
        assert!(m("metadata.namespace="));
        assert!(FieldSelector::parse("metadata.name").is_err());
    }

    #[test]
    fn event_source_is_the_component_or_else_the_reporting_controller() {
        let m = |s: &str, obj: &Value| FieldSelector::parse(s).unwrap().matches(obj);
        let old = json!({"apiVersion": "v1", "kind": "Event", "source": {"component": "kubelet"},
                         "reportingComponent": ""});
        let new = json!({"apiVersion": "v1", "kind": "Event", "source": {},
                         "reportingComponent": "floatip.io/controller"});
        assert!(m("source=kubelet", &old));
        assert!(m("source=floatip.io/controller", &new));
        assert!(!m("source=kubelet", &new));
        // Any other kind: a plain path.
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "source": "x"});
        assert!(m("source=x", &pod));
    }
}
