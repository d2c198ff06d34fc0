//! Who asked for what: every resource request, as Kubernetes RBAC would see it (user, verb,
//! group, resource, subresource, namespace, name), counted. The lab does not authenticate; the
//! user is the bearer token as sent, so a client whose kubeconfig carries the token
//! `system:serviceaccount:NS:NAME` is recorded as that ServiceAccount. Served at
//! `GET /_lab/audit`, cleared by `DELETE /_lab/audit`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use http::{header, HeaderMap, Method};
use serde::{Deserialize, Serialize};

use super::server::Target;

/// The user of a request without credentials, as the API server names it.
pub const ANONYMOUS: &str = "system:anonymous";

/// One kind of request; the audit counts how often each was made. The RBAC check
/// (`chart::rbac`) reads these back from `/_lab/audit`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Request {
    pub user: String,
    pub verb: String,
    /// "" for the core group.
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    /// None for list, watch and create (whose name is in the body, not the path).
    pub name: Option<String>,
}

#[derive(Default)]
pub struct Audit {
    seen: Mutex<BTreeMap<Request, u64>>,
}

#[derive(Serialize)]
struct Entry<'a> {
    #[serde(flatten)]
    key: &'a Request,
    count: u64,
}

impl Audit {
    pub fn record(&self, method: &Method, query: Option<&str>, headers: &HeaderMap, t: &Target) {
        let Some(verb) = verb(method, t.name.is_some(), query) else {
            return;
        };
        let key = Request {
            user: user(headers),
            verb: verb.to_string(),
            group: t.group.clone(),
            resource: t.plural.clone(),
            subresource: t.subresource.clone(),
            namespace: t.namespace.clone(),
            name: t.name.clone(),
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        *seen.entry(key).or_default() += 1;
    }

    /// `{"requests": [{user, verb, group, resource, subresource, namespace, name, count}]}`
    pub fn snapshot(&self) -> serde_json::Value {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let requests: Vec<Entry> = seen
            .iter()
            .map(|(key, count)| Entry { key, count: *count })
            .collect();
        serde_json::json!({ "requests": requests })
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The RBAC verb of a resource request (as the API server's request info resolver derives it).
fn verb(method: &Method, named: bool, query: Option<&str>) -> Option<&'static str> {
    let watch = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
    Some(match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => return None,
    })
}

fn user(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|token| token.trim().to_string())
        .filter(|token| !token.is_empty())
        .unwrap_or_else(|| ANONYMOUS.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_follow_method_name_and_watch() {
        assert_eq!(verb(&Method::GET, true, None), Some("get"));
        assert_eq!(verb(&Method::GET, false, None), Some("list"));
        assert_eq!(
            verb(&Method::GET, false, Some("watch=true&resourceVersion=5")),
            Some("watch")
        );
        assert_eq!(verb(&Method::GET, false, Some("watch=1")), Some("watch"));
        assert_eq!(verb(&Method::GET, false, Some("watch=false")), Some("list"));
        assert_eq!(verb(&Method::POST, false, None), Some("create"));
        assert_eq!(verb(&Method::PUT, true, None), Some("update"));
        assert_eq!(verb(&Method::PATCH, true, None), Some("patch"));
        assert_eq!(verb(&Method::DELETE, true, None), Some("delete"));
        assert_eq!(verb(&Method::DELETE, false, None), Some("deletecollection"));
        assert_eq!(verb(&Method::OPTIONS, false, None), None);
    }

    #[test]
    fn user_is_the_bearer_token_or_anonymous() {
        let mut h = HeaderMap::new();
        assert_eq!(user(&h), ANONYMOUS);
        h.insert(
            header::AUTHORIZATION,
            "Bearer system:serviceaccount:ns:sa".parse().unwrap(),
        );
        assert_eq!(user(&h), "system:serviceaccount:ns:sa");
        h.insert(header::AUTHORIZATION, "Basic dTpw".parse().unwrap());
        assert_eq!(user(&h), ANONYMOUS);
    }

    #[test]
    fn requests_are_counted_per_key() {
        let audit = Audit::default();
        let t = Target {
            group: "coordination.k8s.io".into(),
            version: "v1".into(),
            namespace: Some("floatip-system".into()),
            plural: "leases".into(),
            name: Some("floatip-controller".into()),
            subresource: None,
        };
        let h = HeaderMap::new();
        audit.record(&Method::PUT, None, &h, &t);
        audit.record(&Method::PUT, None, &h, &t);
        audit.record(&Method::GET, None, &h, &t);
        let snap = audit.snapshot();
        let requests = snap["requests"].as_array().unwrap();
        assert_eq!(requests.len(), 2);
        let update = requests.iter().find(|r| r["verb"] == "update").unwrap();
        assert_eq!(update["count"], 2);
        assert_eq!(update["resource"], "leases");
        assert_eq!(update["user"], ANONYMOUS);
        audit.clear();
        assert_eq!(audit.snapshot()["requests"].as_array().unwrap().len(), 0);
    }
}
