//! Objects, one increasing resourceVersion, and the recent history that watches resume from.
//!
//! Every write takes the one lock, bumps the version, records an event and publishes it, so a
//! watch that starts from version N sees exactly the writes after N, in order, or gets 410 Gone
//! when they have been compacted away.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use super::errors::ApiError;
use super::resources::{Registry, ResourceType};
use super::schema::{format_strict, invalid_status, Rejection, UnknownFields};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One write, as watches see it.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub resource: String,
    pub namespace: String,
    pub kind: EventType,
    pub object: Value,
    /// The object before this write, so selector watches can turn "stopped matching" into
    /// DELETED and "started matching" into ADDED.
    pub previous: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ObjKey {
    resource: String,
    namespace: String,
    name: String,
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Everything but status, when the kind has a status subresource.
    Main,
    /// Only status.
    Status,
}

/// Namespaces every cluster has.
const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

pub struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Arc<Event>>,
}

pub struct Inner {
    pub rv: u64,
    pub registry: Registry,
    objects: BTreeMap<ObjKey, Value>,
    log: VecDeque<Arc<Event>>,
    history: usize,
    /// Watches from a version below this one get 410 Gone.
    oldest_rv: u64,
    uid_counter: u64,
    uid_prefix: String,
}

/// What a list or watch selects.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: super::selectors::LabelSelector,
    pub fields: super::selectors::FieldSelector,
}

impl Filter {
    pub fn matches(&self, namespace: &str, obj: &Value) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && self.labels.matches(obj)
            && self.fields.matches(obj)
    }
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Store {
    pub fn new(history: usize) -> Arc<Self> {
        let nanos = jiff::Timestamp::now().as_nanosecond();
        let mut inner = Inner {
            rv: 0,
            registry: Registry::with_builtins(),
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            history: history.max(1),
            oldest_rv: 0,
            uid_counter: 0,
            uid_prefix: format!("{:08x}", (nanos as u64) & 0xffff_ffff),
        };
        let ns = inner
            .registry
            .get("", "v1", "namespaces")
            .expect("built-in");
        for name in SYSTEM_NAMESPACES {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
                             "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
            let (tx, _) = broadcast::channel(1);
            inner
                .create(&tx, &ns, "", obj, UnknownFields::Ignore)
                .expect("system namespace");
        }
        let (events, _) = broadcast::channel(8192);
        Arc::new(Self {
            inner: Mutex::new(inner),
            events,
        })
    }

    pub fn lock(&self) -> (MutexGuard<'_, Inner>, &broadcast::Sender<Arc<Event>>) {
        (
            self.inner.lock().unwrap_or_else(|e| e.into_inner()),
            &self.events,
        )
    }

    /// Everything a restart must keep, as etcd keeps it: the objects, the current version and
    /// the UID sequence. Watch history is not kept (a restarted API server's watch cache starts
    /// at the current version).
    pub fn snapshot(&self) -> Value {
        let (inner, _) = self.lock();
        let objects: Vec<Value> = inner
            .objects
            .iter()
            .map(|(k, v)| json!({"resource": k.resource, "namespace": k.namespace, "name": k.name, "object": v}))
            .collect();
        json!({"resourceVersion": inner.rv, "uidCounter": inner.uid_counter,
               "uidPrefix": inner.uid_prefix, "objects": objects})
    }

    /// A store holding what [`Store::snapshot`] saved. CRDs are served again; watches from a
    /// version before the restore get 410 Gone and relist, as after an API server restart.
    pub fn restore(history: usize, snapshot: &Value) -> Result<Arc<Self>, String> {
        let store = Self::new(history);
        {
            let (mut inner, _) = store.lock();
            inner.objects.clear();
            let items = snapshot["objects"]
                .as_array()
                .ok_or("snapshot has no objects list")?;
            for item in items {
                let field = |f: &str| {
                    item[f]
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("snapshot object without {f}"))
                };
                let key = ObjKey {
                    resource: field("resource")?,
                    namespace: field("namespace")?,
                    name: field("name")?,
                };
                let object = item["object"].clone();
                if key.resource == "apiextensions.k8s.io/customresourcedefinitions" {
                    inner
                        .registry
                        .apply_crd(&object)
                        .map_err(|e| format!("CRD {}: {e}", key.name))?;
                }
                inner.objects.insert(key, object);
            }
            inner.rv = snapshot["resourceVersion"]
                .as_u64()
                .ok_or("snapshot without resourceVersion")?;
            inner.oldest_rv = inner.rv;
            inner.uid_counter = snapshot["uidCounter"].as_u64().unwrap_or(0);
            if let Some(p) = snapshot["uidPrefix"].as_str() {
                inner.uid_prefix = p.to_string();
            }
        }
        Ok(store)
    }

    /// Forgets all history, as etcd compaction does: every watch from a version older than
    /// the one returned now gets 410 Gone. The version moves on by one so that even a client
    /// that has seen every write so far is behind it.
    pub fn compact(&self) -> u64 {
        let (mut inner, _) = self.lock();
        inner.log.clear();
        inner.rv += 1;
        inner.oldest_rv = inner.rv;
        inner.rv
    }

    /// Where a watch starts: the events after `from` (or, without `from`, the current objects as
    /// ADDED events), and a receiver for everything later, taken under one lock so that nothing
    /// falls between them.
    pub fn watch(
        &self,
        rt: &ResourceType,
        from: Option<u64>,
        filter: &Filter,
    ) -> Result<WatchStart, ApiError> {
        let (inner, tx) = self.lock();
        let key = rt.storage_key();
        let backlog = match from {
            Some(from) if from < inner.oldest_rv => {
                return Err(ApiError::gone(format!(
                    "too old resource version: {from} ({})",
                    inner.oldest_rv
                )))
            }
            Some(from) => inner
                .log
                .iter()
                .filter(|e| e.rv > from && e.resource == key)
                .cloned()
                .collect(),
            None => {
                let (items, _) = inner.list(rt, filter, None, usize::MAX);
                items
                    .into_iter()
                    .map(|object| {
                        Arc::new(Event {
                            rv: inner.rv,
                            resource: key.clone(),
                            namespace: namespace_of(&object),
                            kind: EventType::Added,
                            object,
                            previous: None,
                        })
                    })
                    .collect()
            }
        };
        Ok(WatchStart {
            backlog,
            events: tx.subscribe(),
            synced_rv: inner.rv,
        })
    }
}

/// See [`Store::watch`].
pub struct WatchStart {
    pub backlog: Vec<Arc<Event>>,
    pub events: broadcast::Receiver<Arc<Event>>,
    /// Every write up to this version is in `backlog` or already before `from`.
    pub synced_rv: u64,
}

impl Inner {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(
        &mut self,
        tx: &broadcast::Sender<Arc<Event>>,
        key: &ObjKey,
        kind: EventType,
        object: Value,
        previous: Option<Value>,
    ) {
        let event = Arc::new(Event {
            rv: self.rv,
            resource: key.resource.clone(),
            namespace: key.namespace.clone(),
            kind,
            object,
            previous,
        });
        self.log.push_back(event.clone());
        while self.log.len() > self.history {
            if let Some(old) = self.log.pop_front() {
                self.oldest_rv = old.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = tx.send(event);
    }

    fn key(rt: &ResourceType, namespace: &str, name: &str) -> ObjKey {
        ObjKey {
            resource: rt.storage_key(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Option<Value> {
        let obj = self.objects.get(&Self::key(rt, namespace, name))?;
        Some(present(rt, obj.clone()))
    }

    pub fn get_or_404(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.get(rt, namespace, name)
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// Objects of one resource the filter selects, in name order, after the `continue` key.
    pub fn list(
        &self,
        rt: &ResourceType,
        filter: &Filter,
        after: Option<&(String, String)>,
        limit: usize,
    ) -> (Vec<Value>, Option<(String, String)>) {
        let resource = rt.storage_key();
        let mut items = Vec::new();
        let mut next = None;
        for (k, obj) in self.objects.range(
            ObjKey {
                resource: resource.clone(),
                namespace: String::new(),
                name: String::new(),
            }..,
        ) {
            if k.resource != resource {
                break;
            }
            if after.is_some_and(|(ns, name)| (&k.namespace, &k.name) <= (ns, name)) {
                continue;
            }
            if !filter.matches(&k.namespace, obj) {
                continue;
            }
            if items.len() == limit {
                next = items.last().map(|o: &Value| (namespace_of(o), name_of(o)));
                break;
            }
            items.push(present(rt, obj.clone()));
        }
        (items, next)
    }

    fn check_namespace(&self, rt: &ResourceType, namespace: &str) -> Result<(), ApiError> {
        if !rt.namespaced {
            return Ok(());
        }
        let ns_type = self.registry.get("", "v1", "namespaces").expect("built-in");
        match self.get(&ns_type, "", namespace) {
            Some(ns) if ns["metadata"].get("deletionTimestamp").is_some() => Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{} is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                    rt.qualified_resource()
                ),
            )),
            Some(_) => Ok(()),
            None => Err(ApiError::not_found(&ns_type, namespace)),
        }
    }

    fn admit(
        &self,
        rt: &ResourceType,
        name: &str,
        obj: &mut Value,
        old: Option<&Value>,
        unknown: UnknownFields,
    ) -> Result<Vec<String>, ApiError> {
        let Some(schema) = &rt.schema else {
            return Ok(Vec::new());
        };
        schema.review(obj, old, unknown).map_err(|r| match r {
            Rejection::StrictDecoding(errs) => {
                ApiError::bad_request(format_strict(&rt.kind, &rt.version, &errs))
            }
            Rejection::Invalid(errs) => {
                let status = invalid_status(&rt.group, &rt.kind, name, &errs);
                ApiError {
                    code: 422,
                    reason: "Invalid",
                    message: status["message"].as_str().unwrap_or_default().to_string(),
                    details: Some(status["details"].clone()),
                }
            }
        })
    }

    pub fn create(
        &mut self,
        tx: &broadcast::Sender<Arc<Event>>,
        rt: &ResourceType,
        namespace: &str,
        mut obj: Value,
        unknown: UnknownFields,
    ) -> Result<(Value, Vec<String>), ApiError> {
        check_type(rt, &obj)?;
        self.check_namespace(rt, namespace)?;
        let meta = metadata_mut(&mut obj)?;
        let name = match meta.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    format!("{prefix}{}", suffix(self.uid_counter + self.rv))
                }
                _ => {
                    return Err(ApiError::invalid(
                        rt,
                        "",
                        format!(
                            "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                            rt.qualified_kind()
                        ),
                        vec![json!({"reason": "FieldValueRequired", "message": "Required value: name or generateName is required", "field": "metadata.name"})],
                    ))
                }
            },
        };
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != namespace && rt.namespaced => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
            _ => {}
        }
        let key = Self::key(rt, namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(rt, &name));
        }
        self.uid_counter += 1;
        let uid = format!(
            "{}-0000-4000-8000-{:012x}",
            self.uid_prefix, self.uid_counter
        );
        meta.insert("name".into(), json!(name));
        if rt.namespaced {
            meta.insert("namespace".into(), json!(namespace));
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.insert("generation".into(), json!(1));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        if rt.custom && rt.status_subresource {
            // As the API server does: status is written through /status only.
            obj.as_object_mut().expect("object").remove("status");
        }
        let warnings = self.admit(rt, &name, &mut obj, None, unknown)?;
        super::event_namespace::check(rt, namespace, &name, &obj)?;
        if rt.group == "apiextensions.k8s.io" {
            self.registry.apply_crd(&obj).map_err(|e| {
                ApiError::invalid(
                    rt,
                    &name,
                    format!("{} \"{name}\" is invalid: {e}", rt.qualified_kind()),
                    vec![],
                )
            })?;
            establish_crd(&mut obj);
        }
        let rv = self.next_rv();
        set_rv(&mut obj, rv);
        self.objects.insert(key.clone(), obj.clone());
        self.record(tx, &key, EventType::Added, obj.clone(), None);
        Ok((present(rt, obj), warnings))
    }

    /// Replaces an object (or its status). An empty resourceVersion in `new` means
    /// unconditional, except for custom resources, which require one as the API server does.
    // The arguments are what a write is: where (rt, namespace, name), what, and how.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        tx: &broadcast::Sender<Arc<Event>>,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        mut new: Value,
        part: Part,
        unknown: UnknownFields,
    ) -> Result<(Value, Vec<String>), ApiError> {
        check_type(rt, &new)?;
        let key = Self::key(rt, namespace, name);
        let old = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let body_name = new["metadata"]["name"].as_str().unwrap_or(name);
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        match new["metadata"]["resourceVersion"].as_str() {
            Some(rv)
                if !rv.is_empty()
                    && rv != old["metadata"]["resourceVersion"].as_str().unwrap_or_default() =>
            {
                return Err(ApiError::stale(rt, name));
            }
            Some(rv) if !rv.is_empty() => {}
            _ if rt.custom => {
                return Err(ApiError::invalid(
                    rt,
                    name,
                    format!(
                        "{} \"{name}\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                        rt.qualified_kind()
                    ),
                    vec![json!({"reason": "FieldValueInvalid", "message": "Invalid value: 0x0: must be specified for an update", "field": "metadata.resourceVersion"})],
                ))
            }
            _ => {}
        }
        let mut merged = match part {
            Part::Status => {
                let mut m = old.clone();
                m["status"] = new.get("status").cloned().unwrap_or(Value::Null);
                if m["status"].is_null() {
                    m.as_object_mut().expect("object").remove("status");
                }
                m
            }
            Part::Main => {
                metadata_mut(&mut new)?;
                let server_owned = [
                    "uid",
                    "creationTimestamp",
                    "generation",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "name",
                    "namespace",
                ];
                for f in server_owned {
                    match old["metadata"].get(f) {
                        Some(v) => new["metadata"][f] = v.clone(),
                        None => {
                            new["metadata"].as_object_mut().expect("object").remove(f);
                        }
                    }
                }
                if rt.status_subresource {
                    match old.get("status") {
                        Some(s) => new["status"] = s.clone(),
                        None => {
                            new.as_object_mut().expect("object").remove("status");
                        }
                    }
                }
                new
            }
        };
        if old["metadata"].get("deletionTimestamp").is_some() {
            let before = finalizers(&old);
            if let Some(added) = finalizers(&merged)
                .into_iter()
                .find(|f| !before.contains(f))
            {
                return Err(ApiError::invalid(
                    rt,
                    name,
                    format!("{} \"{name}\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers [\"{added}\"]", rt.qualified_kind()),
                    vec![json!({"reason": "FieldValueForbidden", "field": "metadata.finalizers", "message": "Forbidden: no new finalizers can be added if the object is being deleted"})],
                ));
            }
        }
        let warnings = self.admit(rt, name, &mut merged, Some(&old), unknown)?;
        super::event_namespace::check(rt, namespace, name, &merged)?;
        if spec_changed(&old, &merged) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            merged["metadata"]["generation"] = json!(generation);
        }
        // A write that changes nothing is not a write: no new version, no event.
        let mut unchanged = merged.clone();
        unchanged["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if unchanged == old {
            return Ok((present(rt, old), warnings));
        }
        if rt.group == "apiextensions.k8s.io" {
            self.registry.apply_crd(&merged).map_err(|e| {
                ApiError::invalid(
                    rt,
                    name,
                    format!("{} \"{name}\" is invalid: {e}", rt.qualified_kind()),
                    vec![],
                )
            })?;
            establish_crd(&mut merged);
        }
        if merged["metadata"].get("deletionTimestamp").is_some() && finalizers(&merged).is_empty() {
            self.remove(tx, &key, merged.clone(), old);
            return Ok((present(rt, merged), warnings));
        }
        let rv = self.next_rv();
        set_rv(&mut merged, rv);
        self.objects.insert(key.clone(), merged.clone());
        self.record(tx, &key, EventType::Modified, merged.clone(), Some(old));
        Ok((present(rt, merged), warnings))
    }

    /// Deletes now, or marks for deletion while finalizers remain.
    pub fn delete(
        &mut self,
        tx: &broadcast::Sender<Arc<Event>>,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        preconditions: &Value,
    ) -> Result<Value, ApiError> {
        let key = Self::key(rt, namespace, name);
        let old = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        if let Some(uid) = preconditions["uid"].as_str() {
            if old["metadata"]["uid"].as_str() != Some(uid) {
                return Err(ApiError::conflict(
                    rt,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        old["metadata"]["uid"].as_str().unwrap_or_default()
                    ),
                ));
            }
        }
        if let Some(rv) = preconditions["resourceVersion"].as_str() {
            if old["metadata"]["resourceVersion"].as_str() != Some(rv) {
                return Err(ApiError::conflict(rt, name, &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", old["metadata"]["resourceVersion"].as_str().unwrap_or_default())));
            }
        }
        // Namespaces and CRDs take their contents with them; their own finalizers are
        // the server's, so they go at once.
        let is_namespace = rt.group.is_empty() && rt.plural == "namespaces";
        let is_crd = rt.group == "apiextensions.k8s.io";
        if !finalizers(&old).is_empty() && !is_namespace && !is_crd {
            if old["metadata"].get("deletionTimestamp").is_some() {
                return Ok(present(rt, old));
            }
            let mut marked = old.clone();
            marked["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            let rv = self.next_rv();
            set_rv(&mut marked, rv);
            self.objects.insert(key.clone(), marked.clone());
            self.record(tx, &key, EventType::Modified, marked.clone(), Some(old));
            return Ok(present(rt, marked));
        }
        if is_namespace {
            let inside: Vec<ObjKey> = self
                .objects
                .keys()
                .filter(|k| k.namespace == name)
                .cloned()
                .collect();
            self.remove_keys(tx, inside);
        }
        if is_crd {
            let resource = format!(
                "{}/{}",
                old["spec"]["group"].as_str().unwrap_or_default(),
                old["spec"]["names"]["plural"].as_str().unwrap_or_default()
            );
            let instances: Vec<ObjKey> = self
                .objects
                .keys()
                .filter(|k| k.resource == resource)
                .cloned()
                .collect();
            self.remove_keys(tx, instances);
            self.registry.remove_crd(name);
        }
        let gone = old.clone();
        self.remove(tx, &key, gone.clone(), old);
        Ok(present(rt, gone))
    }

    fn remove_keys(&mut self, tx: &broadcast::Sender<Arc<Event>>, keys: Vec<ObjKey>) {
        for k in keys {
            if let Some(obj) = self.objects.remove(&k) {
                let mut gone = obj.clone();
                let rv = self.next_rv();
                set_rv(&mut gone, rv);
                self.record(tx, &k, EventType::Deleted, gone, Some(obj));
            }
        }
    }

    fn remove(
        &mut self,
        tx: &broadcast::Sender<Arc<Event>>,
        key: &ObjKey,
        mut last: Value,
        previous: Value,
    ) {
        self.objects.remove(key);
        let rv = self.next_rv();
        set_rv(&mut last, rv);
        self.record(tx, key, EventType::Deleted, last, Some(previous));
    }
}

/// The object as served at `rt`'s version.
pub fn present(rt: &ResourceType, mut obj: Value) -> Value {
    obj["apiVersion"] = json!(rt.api_version());
    obj["kind"] = json!(rt.kind);
    obj
}

pub fn name_of(obj: &Value) -> String {
    obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub fn namespace_of(obj: &Value) -> String {
    obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn set_rv(obj: &mut Value, rv: u64) {
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether anything but metadata and status differs: what bumps metadata.generation.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        let mut m = v.as_object().cloned().unwrap_or_default();
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
        m
    };
    strip(old) != strip(new)
}

fn metadata_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let map = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    meta.as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// The body's apiVersion and kind, when given, must be the resource's.
fn check_type(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    if let Some(kind) = obj["kind"].as_str() {
        if kind != rt.kind {
            return Err(ApiError::bad_request(format!(
                "the kind of the provided object ({kind}) does not match the resource {} ({})",
                rt.qualified_resource(),
                rt.kind
            )));
        }
    }
    if let Some(api_version) = obj["apiVersion"].as_str() {
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        if group != rt.group {
            return Err(ApiError::bad_request(format!(
                "the API version of the provided object ({api_version}) does not match {}",
                rt.api_version()
            )));
        }
    }
    Ok(())
}

fn establish_crd(crd: &mut Value) {
    let now = now_rfc3339();
    let condition = |t: &str, reason: &str, msg: &str| json!({"type": t, "status": "True", "reason": reason, "message": msg, "lastTransitionTime": now});
    crd["status"] = json!({
        "acceptedNames": crd["spec"]["names"].clone(),
        "storedVersions": crd["spec"]["versions"].as_array().map(|vs| vs.iter()
            .filter(|v| v["storage"] == json!(true)).map(|v| v["name"].clone()).collect::<Vec<_>>()).unwrap_or_default(),
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
    });
}

/// Five lowercase alphanumerics for generateName, derived from a counter.
fn suffix(mut n: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    n = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}
