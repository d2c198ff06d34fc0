//! Kubernetes RBAC, evaluated as the API server's authorizer does, over the Roles, ClusterRoles
//! and bindings the chart renders: which recorded request (the lab's `/_lab/audit`) a
//! ServiceAccount could not make, and which granted verb no request needed.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// One request, as the lab's API server records it.
pub use crate::kube::audit::Request;

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group.as_str()
        };
        write!(f, "{} {} {group}/{}", self.user, self.verb, self.resource)?;
        if let Some(s) = &self.subresource {
            write!(f, "/{s}")?;
        }
        if let Some(n) = &self.name {
            write!(f, " {n:?}")?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " in namespace {ns}"),
            None => write!(f, " (cluster-wide)"),
        }
    }
}

/// One PolicyRule of a Role or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
}

impl Rule {
    fn matches(&self, r: &Request) -> bool {
        let any = |list: &[String], want: &str| list.iter().any(|x| x == "*" || x == want);
        any(&self.api_groups, &r.group)
            && any(&self.verbs, &r.verb)
            && self.resources.iter().any(|x| resource_matches(x, r))
            && (self.resource_names.is_empty()
                || r.name
                    .as_ref()
                    .is_some_and(|n| self.resource_names.contains(n)))
    }
}

/// `pods`, `floatingips/status`, `*` and `*/status`, as RBAC matches them.
fn resource_matches(rule: &str, r: &Request) -> bool {
    match &r.subresource {
        None => rule == "*" || rule == r.resource,
        Some(sub) => {
            rule == "*"
                || rule == format!("{}/{sub}", r.resource)
                || rule.strip_prefix("*/") == Some(sub.as_str())
        }
    }
}

/// A role's rule as one user holds it, through one binding.
#[derive(Debug, Clone)]
pub struct Grant {
    /// `ClusterRole/floatip-controller`, `Role/floatip-system/floatip-controller`.
    pub role: String,
    pub index: usize,
    pub rule: Rule,
    /// Where it applies: a RoleBinding's namespace, or everywhere (ClusterRoleBinding).
    pub namespace: Option<String>,
}

/// What each user may do.
#[derive(Debug, Default)]
pub struct Rbac {
    grants: BTreeMap<String, Vec<Grant>>,
}

/// The outcome of checking requests.
#[derive(Debug, Default)]
pub struct Report {
    /// Requests no rule allows.
    pub denied: Vec<Request>,
    /// (role, rule index, verb) that allowed at least one request.
    pub used: BTreeSet<(String, usize, String)>,
}

impl Rbac {
    /// From rendered objects; anything but Roles, ClusterRoles and their bindings is ignored.
    pub fn from_objects(objects: &[Value]) -> Result<Self> {
        let mut roles: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
        for o in objects {
            let kind = o["kind"].as_str().unwrap_or_default();
            if kind != "Role" && kind != "ClusterRole" {
                continue;
            }
            let rules: Vec<Rule> = serde_json::from_value(o["rules"].clone())
                .with_context(|| format!("{kind} {}: rules", o["metadata"]["name"]))?;
            roles.insert(role_key(kind, o)?, rules);
        }
        let mut rbac = Self::default();
        for o in objects {
            let kind = o["kind"].as_str().unwrap_or_default();
            let namespace = match kind {
                "RoleBinding" => Some(str_at(o, "/metadata/namespace")?.to_string()),
                "ClusterRoleBinding" => None,
                _ => continue,
            };
            let ref_kind = str_at(o, "/roleRef/kind")?;
            let ref_name = str_at(o, "/roleRef/name")?;
            let role = match ref_kind {
                "ClusterRole" => format!("ClusterRole/{ref_name}"),
                "Role" => match &namespace {
                    Some(ns) => format!("Role/{ns}/{ref_name}"),
                    None => bail!(
                        "ClusterRoleBinding {} refers to a Role",
                        o["metadata"]["name"]
                    ),
                },
                other => bail!("roleRef kind {other:?}"),
            };
            let rules = roles.get(&role).with_context(|| {
                format!(
                    "{kind} {} refers to {role}, which the chart does not define",
                    o["metadata"]["name"]
                )
            })?;
            for subject in o["subjects"].as_array().into_iter().flatten() {
                let user = match subject["kind"].as_str() {
                    Some("ServiceAccount") => format!(
                        "system:serviceaccount:{}:{}",
                        subject["namespace"]
                            .as_str()
                            .or(namespace.as_deref())
                            .unwrap_or_default(),
                        subject["name"].as_str().unwrap_or_default()
                    ),
                    Some("User") => subject["name"].as_str().unwrap_or_default().to_string(),
                    _ => continue,
                };
                let grants = rbac.grants.entry(user).or_default();
                for (index, rule) in rules.iter().enumerate() {
                    grants.push(Grant {
                        role: role.clone(),
                        index,
                        rule: rule.clone(),
                        namespace: namespace.clone(),
                    });
                }
            }
        }
        Ok(rbac)
    }

    /// The users that hold any grant.
    pub fn users(&self) -> impl Iterator<Item = &String> {
        self.grants.keys()
    }

    /// The first grant allowing `r`, if any.
    pub fn allows(&self, r: &Request) -> Option<&Grant> {
        self.grants
            .get(&r.user)?
            .iter()
            .find(|g| g.rule.matches(r) && (g.namespace.is_none() || g.namespace == r.namespace))
    }

    pub fn check(&self, requests: &[Request]) -> Report {
        let mut report = Report::default();
        for r in requests {
            match self.allows(r) {
                Some(g) => {
                    report
                        .used
                        .insert((g.role.clone(), g.index, r.verb.clone()));
                }
                None => report.denied.push(r.clone()),
            }
        }
        report
    }

    /// Every (role, rule index, verb) some user holds.
    pub fn granted(&self) -> BTreeSet<(String, usize, String)> {
        self.grants
            .values()
            .flatten()
            .flat_map(|g| {
                g.rule
                    .verbs
                    .iter()
                    .map(|v| (g.role.clone(), g.index, v.clone()))
            })
            .collect()
    }
}

/// The objects with one verb taken out of one rule (the rule goes when it was its last verb):
/// to show that the check catches each missing grant.
pub fn without(objects: &[Value], role: &str, index: usize, verb: &str) -> Vec<Value> {
    objects
        .iter()
        .map(|o| {
            let kind = o["kind"].as_str().unwrap_or_default();
            if (kind != "Role" && kind != "ClusterRole")
                || role_key(kind, o).ok().as_deref() != Some(role)
            {
                return o.clone();
            }
            let mut o = o.clone();
            if let Some(rules) = o["rules"].as_array_mut() {
                if let Some(verbs) = rules.get_mut(index).and_then(|r| r["verbs"].as_array_mut()) {
                    verbs.retain(|v| v != verb);
                    if verbs.is_empty() {
                        rules.remove(index);
                    }
                }
            }
            o
        })
        .collect()
}

fn role_key(kind: &str, o: &Value) -> Result<String> {
    let name = str_at(o, "/metadata/name")?;
    Ok(match kind {
        "ClusterRole" => format!("ClusterRole/{name}"),
        _ => format!("Role/{}/{name}", str_at(o, "/metadata/namespace")?),
    })
}

fn str_at<'a>(o: &'a Value, pointer: &str) -> Result<&'a str> {
    o.pointer(pointer).and_then(Value::as_str).with_context(|| {
        format!(
            "{} {}: no {pointer}",
            o["kind"].as_str().unwrap_or("object"),
            o["metadata"]["name"]
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SA: &str = "system:serviceaccount:floatip-system:floatip-controller";

    fn objects() -> Vec<Value> {
        vec![
            json!({"kind": "Role", "metadata": {"name": "lease", "namespace": "floatip-system"},
                   "rules": [
                       {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
                       {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                        "resourceNames": ["floatip-controller"], "verbs": ["get", "update"]}]}),
            json!({"kind": "RoleBinding", "metadata": {"name": "lease", "namespace": "floatip-system"},
                   "roleRef": {"kind": "Role", "name": "lease"},
                   "subjects": [{"kind": "ServiceAccount", "name": "floatip-controller", "namespace": "floatip-system"}]}),
            json!({"kind": "ClusterRole", "metadata": {"name": "fips"},
                   "rules": [{"apiGroups": ["floatip.io"], "resources": ["floatingips/status"], "verbs": ["update"]}]}),
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": "fips"},
                   "roleRef": {"kind": "ClusterRole", "name": "fips"},
                   "subjects": [{"kind": "ServiceAccount", "name": "floatip-controller", "namespace": "floatip-system"}]}),
        ]
    }

    fn req(
        verb: &str,
        group: &str,
        resource: &str,
        sub: Option<&str>,
        ns: Option<&str>,
        name: Option<&str>,
    ) -> Request {
        Request {
            user: SA.into(),
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.map(String::from),
            namespace: ns.map(String::from),
            name: name.map(String::from),
        }
    }

    #[test]
    fn bound_rules_allow_and_nothing_else_does() {
        let rbac = Rbac::from_objects(&objects()).unwrap();
        let lease = |verb, ns, name| req(verb, "coordination.k8s.io", "leases", None, ns, name);
        let ns = Some("floatip-system");
        assert!(rbac.allows(&lease("create", ns, None)).is_some());
        assert!(rbac
            .allows(&lease("update", ns, Some("floatip-controller")))
            .is_some());
        // resourceNames: another Lease, or no name at all, is not covered.
        assert!(rbac.allows(&lease("update", ns, Some("other"))).is_none());
        assert!(rbac.allows(&lease("list", ns, None)).is_none());
        // A RoleBinding grants in its own namespace only.
        assert!(rbac
            .allows(&lease("create", Some("default"), None))
            .is_none());
        // The status subresource is not the resource, and the reverse.
        let status = req(
            "update",
            "floatip.io",
            "floatingips",
            Some("status"),
            None,
            Some("web"),
        );
        assert!(rbac.allows(&status).is_some());
        assert!(rbac
            .allows(&req(
                "update",
                "floatip.io",
                "floatingips",
                None,
                None,
                Some("web")
            ))
            .is_none());
        // Someone else gets nothing.
        let mut other = status.clone();
        other.user = "system:serviceaccount:floatip-system:floatip-agent".into();
        assert!(rbac.allows(&other).is_none());
    }

    #[test]
    fn a_missing_rule_is_reported_with_the_request_it_denies() {
        let requests = vec![
            req(
                "create",
                "coordination.k8s.io",
                "leases",
                None,
                Some("floatip-system"),
                None,
            ),
            req(
                "update",
                "floatip.io",
                "floatingips",
                Some("status"),
                None,
                Some("web"),
            ),
        ];
        let full = Rbac::from_objects(&objects()).unwrap().check(&requests);
        assert!(full.denied.is_empty(), "{:?}", full.denied);
        assert_eq!(full.used.len(), 2);

        let cut = without(&objects(), "ClusterRole/fips", 0, "update");
        let report = Rbac::from_objects(&cut).unwrap().check(&requests);
        assert_eq!(report.denied, [requests[1].clone()]);
        assert_eq!(
            report.denied[0].to_string(),
            format!("{SA} update floatip.io/floatingips/status \"web\" (cluster-wide)")
        );
    }

    #[test]
    fn unused_grants_are_the_granted_minus_the_used() {
        let rbac = Rbac::from_objects(&objects()).unwrap();
        let report = rbac.check(&[req(
            "get",
            "coordination.k8s.io",
            "leases",
            None,
            Some("floatip-system"),
            Some("floatip-controller"),
        )]);
        let unused: Vec<_> = rbac.granted().difference(&report.used).cloned().collect();
        assert_eq!(
            unused,
            [
                ("ClusterRole/fips".to_string(), 0, "update".to_string()),
                (
                    "Role/floatip-system/lease".to_string(),
                    0,
                    "create".to_string()
                ),
                (
                    "Role/floatip-system/lease".to_string(),
                    1,
                    "update".to_string()
                ),
            ]
        );
    }

    #[test]
    fn wildcards_match_as_rbac_does() {
        let r = req(
            "patch",
            "apps",
            "deployments",
            Some("scale"),
            Some("x"),
            Some("d"),
        );
        let rule = |res: &str| Rule {
            api_groups: vec!["*".into()],
            resources: vec![res.into()],
            verbs: vec!["*".into()],
            resource_names: vec![],
        };
        assert!(rule("*").matches(&r));
        assert!(rule("*/scale").matches(&r));
        assert!(rule("deployments/scale").matches(&r));
        assert!(!rule("deployments").matches(&r));
        assert!(!rule("*/status").matches(&r));
    }

    #[test]
    fn a_binding_to_an_undefined_role_is_an_error() {
        let mut objs = objects();
        objs.remove(0);
        let err = Rbac::from_objects(&objs).unwrap_err().to_string();
        assert!(err.contains("Role/floatip-system/lease"), "{err}");
    }
}
