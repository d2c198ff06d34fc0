//! Which kinds the server serves: a fixed set of built-in kinds stored as plain objects, plus the
//! custom resources of every CustomResourceDefinition created through the API.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::printer::Column;
use super::schema::CrdSchema;

/// One served resource at one group/version.
#[derive(Clone)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub status_subresource: bool,
    /// The openAPIV3Schema of a custom resource version; built-in kinds are not validated.
    pub schema: Option<Arc<CrdSchema>>,
    /// The same schema as JSON, for the OpenAPI documents.
    pub schema_doc: Option<Value>,
    /// Printer columns of a custom resource; empty means the default Name/Age table.
    pub columns: Vec<Column>,
    /// Whether this is a custom resource (defined by a CRD).
    pub custom: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Storage key shared by every version of the resource. events.k8s.io Events are stored
    /// as core Events, as in the API server (see [`super::event_versions`]).
    pub fn storage_key(&self) -> String {
        let group = if super::event_versions::is_event(self) {
            ""
        } else {
            &self.group
        };
        format!("{group}/{}", self.plural)
    }

    /// `Kind.group` as the API server names a kind in messages (`FloatingIP.floatip.io`).
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// `plural.group` as in "floatingips.floatip.io \"web\" not found".
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// (group, version, kind, plural, namespaced, status subresource, short names)
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    bool,
    &'static [&'static str],
);

/// Built-in kinds: what floatip uses, and what its Helm chart installs.
const BUILTINS: &[Builtin] = &[
    ("", "v1", "Namespace", "namespaces", false, true, &["ns"]),
    ("", "v1", "Node", "nodes", false, true, &["no"]),
    ("", "v1", "Pod", "pods", true, true, &["po"]),
    ("", "v1", "Event", "events", true, false, &["ev"]),
    ("", "v1", "Service", "services", true, true, &["svc"]),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        false,
        &["sa"],
    ),
    ("", "v1", "ConfigMap", "configmaps", true, false, &["cm"]),
    ("", "v1", "Secret", "secrets", true, false, &[]),
    (
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        true,
        &["deploy"],
    ),
    ("apps", "v1", "DaemonSet", "daemonsets", true, true, &["ds"]),
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        false,
        &[],
    ),
    (
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        true,
        false,
        &["ev"],
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        true,
        &["pdb"],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        false,
        &[],
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        false,
        &["netpol"],
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        true,
        &["crd", "crds"],
    ),
];

/// Every served group/version/resource.
#[derive(Clone, Default)]
pub struct Registry {
    /// Keyed by (group, version, plural).
    types: BTreeMap<(String, String, String), Arc<ResourceType>>,
}

impl Registry {
    pub fn with_builtins() -> Self {
        let mut reg = Self::default();
        for &(group, version, kind, plural, namespaced, status, short) in BUILTINS {
            reg.insert(ResourceType {
                group: group.into(),
                version: version.into(),
                kind: kind.into(),
                plural: plural.into(),
                singular: kind.to_lowercase(),
                short_names: short.iter().map(|s| s.to_string()).collect(),
                categories: Vec::new(),
                namespaced,
                status_subresource: status,
                schema: None,
                schema_doc: None,
                columns: Vec::new(),
                custom: false,
            });
        }
        reg
    }

    fn insert(&mut self, rt: ResourceType) {
        let key = (rt.group.clone(), rt.version.clone(), rt.plural.clone());
        self.types.insert(key, Arc::new(rt));
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.types.values()
    }

    /// Groups in discovery order (core first), each with its versions.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (group, version, _) in self.types.keys() {
            let versions = groups.entry(group.clone()).or_default();
            if !versions.contains(version) {
                versions.push(version.clone());
            }
        }
        groups
    }

    /// Replaces whatever the named CRD served before with what `crd` serves now.
    pub fn apply_crd(&mut self, crd: &Value) -> Result<(), String> {
        let parsed = parse_crd(crd)?;
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        self.remove_crd(name);
        for rt in parsed {
            self.insert(rt);
        }
        Ok(())
    }

    /// Stops serving the resources of the CRD named `name` (`plural.group`).
    pub fn remove_crd(&mut self, name: &str) {
        self.types
            .retain(|(group, _, plural), rt| !(rt.custom && format!("{plural}.{group}") == name));
    }
}

/// The resource types a CRD defines, one per served version.
pub fn parse_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().ok_or("spec.group: Required value")?;
    let names = &spec["names"];
    let plural = names["plural"]
        .as_str()
        .ok_or("spec.names.plural: Required value")?;
    let kind = names["kind"]
        .as_str()
        .ok_or("spec.names.kind: Required value")?;
    let expected = format!("{plural}.{group}");
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if name != expected {
        return Err(format!(
            "metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"
        ));
    }
    let namespaced = match spec["scope"].as_str() {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        other => {
            return Err(format!(
                "spec.scope: Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""
            ))
        }
    };
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let versions = spec["versions"]
        .as_array()
        .filter(|v| !v.is_empty())
        .ok_or("spec.versions: Required value")?;
    let mut out = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        if v["served"] == Value::Bool(false) {
            continue;
        }
        let version = v["name"]
            .as_str()
            .ok_or_else(|| format!("spec.versions[{i}].name: Required value"))?;
        let schema = match v["schema"].get("openAPIV3Schema") {
            Some(s) => Some(Arc::new(CrdSchema::new(s).map_err(|e| {
                format!("spec.versions[{i}].schema.openAPIV3Schema: {e}")
            })?)),
            None => None,
        };
        out.push(ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: names["singular"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| kind.to_lowercase()),
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            namespaced,
            status_subresource: v["subresources"].get("status").is_some(),
            schema,
            schema_doc: v["schema"].get("openAPIV3Schema").cloned(),
            columns: Column::from_crd(&v["additionalPrinterColumns"]),
            custom: true,
        });
    }
    Ok(out)
}
