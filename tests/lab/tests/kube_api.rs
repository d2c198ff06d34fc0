//! kube-rs against the lab's API server: watch semantics (resume, 410, bookmarks), optimistic
//! concurrency, the status subresource, finalizers and injected faults.

use std::time::Duration;

use floatip::api::{FloatingIP, FloatingIPSpec};
use floatip_lab::process::KubeLab;
use futures::{Stream, StreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{CustomResourceExt, ResourceExt};
use serde_json::json;

async fn setup() -> (KubeLab, Api<FloatingIP>) {
    let lab = KubeLab::start();
    let client = lab.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &FloatingIP::crd())
        .await
        .expect("CRD created");
    (lab, Api::all(client))
}

fn fip(name: &str, address: &str) -> FloatingIP {
    let spec: FloatingIPSpec =
        serde_json::from_value(json!({"address": address, "subnetId": "subnet-0a1b2c3d4e5f67890"}))
            .unwrap();
    FloatingIP::new(name, spec)
}

/// The next watcher event, as a short label such as "Apply(b)" or "Error(410)".
async fn next(
    stream: &mut (impl Stream<Item = watcher::Result<Event<FloatingIP>>> + Unpin),
) -> String {
    let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event within 10 s")
        .expect("stream open");
    let ev = match ev {
        Ok(ev) => ev,
        Err(watcher::Error::WatchError(status)) => return format!("Error({})", status.code),
        Err(e) => panic!("unexpected watcher error {e:?}"),
    };
    match ev {
        Event::Init => "Init".into(),
        Event::InitApply(o) => format!("InitApply({})", o.name_any()),
        Event::InitDone => "InitDone".into(),
        Event::Apply(o) => format!("Apply({})", o.name_any()),
        Event::Delete(o) => format!("Delete({})", o.name_any()),
    }
}

#[tokio::test]
async fn watcher_sees_every_event_across_drops_and_relists_after_410() {
    let (lab, api) = setup().await;
    api.create(&PostParams::default(), &fip("a", "10.0.8.10"))
        .await
        .unwrap();
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    assert_eq!(next(&mut events).await, "Init");
    assert_eq!(next(&mut events).await, "InitApply(a)");
    assert_eq!(next(&mut events).await, "InitDone");

    api.create(&PostParams::default(), &fip("b", "10.0.8.11"))
        .await
        .unwrap();
    assert_eq!(next(&mut events).await, "Apply(b)");
    api.delete("b", &DeleteParams::default()).await.unwrap();
    assert_eq!(next(&mut events).await, "Delete(b)");

    // Drop the watch, then write while the client is reconnecting: it resumes from its last
    // version and sees both writes, in order, without a relist.
    lab.control("POST", "/_lab/faults", r#"{"dropWatches": true}"#);
    api.create(&PostParams::default(), &fip("c", "10.0.8.12"))
        .await
        .unwrap();
    let patch = Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}}));
    api.patch("a", &PatchParams::default(), &patch)
        .await
        .unwrap();
    assert_eq!(next(&mut events).await, "Apply(c)");
    assert_eq!(next(&mut events).await, "Apply(a)");

    // Compact the history and drop the watch: resuming gets 410 Gone, so the watcher lists
    // again and reports the whole current state.
    lab.control("POST", "/_lab/compact", "");
    lab.control("POST", "/_lab/faults", r#"{"dropWatches": true}"#);
    assert_eq!(next(&mut events).await, "Error(410)");
    assert_eq!(next(&mut events).await, "Init");
    let mut relisted = vec![next(&mut events).await, next(&mut events).await];
    relisted.sort();
    assert_eq!(relisted, ["InitApply(a)", "InitApply(c)"]);
    assert_eq!(next(&mut events).await, "InitDone");

    // And it watches on from the new list.
    api.delete("c", &DeleteParams::default()).await.unwrap();
    assert_eq!(next(&mut events).await, "Delete(c)");
}

#[tokio::test]
async fn raw_watch_gets_410_bookmarks_and_honours_timeout() {
    let lab = KubeLab::start_with(&["--bookmark-interval-ms", "200"]);
    let client = lab.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &FloatingIP::crd())
        .await
        .unwrap();
    let api: Api<FloatingIP> = Api::all(client);
    api.create(&PostParams::default(), &fip("a", "10.0.8.10"))
        .await
        .unwrap();
    let list = api.list(&Default::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();

    // Bookmarks when asked, carrying a version at or after the list's; the stream ends when
    // timeoutSeconds is up.
    let params = kube::api::WatchParams::default().timeout(1);
    let started = std::time::Instant::now();
    let mut stream = api.watch(&params, &rv).await.unwrap().boxed();
    let mut bookmarks = 0;
    while let Some(ev) = stream.next().await {
        match ev.unwrap() {
            kube::api::WatchEvent::Bookmark(b) => {
                assert!(
                    b.metadata.resource_version.parse::<u64>().unwrap()
                        >= rv.parse::<u64>().unwrap()
                );
                bookmarks += 1;
            }
            other => panic!("only bookmarks expected, got {other:?}"),
        }
    }
    let lasted = started.elapsed();
    println!("watch with timeoutSeconds=1 lasted {lasted:?}, {bookmarks} bookmarks");
    assert!(bookmarks >= 2, "{bookmarks} bookmarks in {lasted:?}");

    // A version older than the compacted history: one ERROR event with 410 Expired.
    lab.control("POST", "/_lab/compact", "");
    let mut stream = api
        .watch(&kube::api::WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match stream.next().await.unwrap().unwrap() {
        kube::api::WatchEvent::Error(e) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"), "{e:?}")
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}

#[tokio::test]
async fn stale_replace_conflicts_and_status_stays_separate() {
    let (_lab, api) = setup().await;
    let created = api
        .create(&PostParams::default(), &fip("web", "10.0.8.100"))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.status.is_none(), "status is not written on create");

    // Two writers from the same version: the second gets 409 Conflict.
    let mut first = created.clone();
    first.spec.failover.min_hold_seconds = 5;
    let updated = api
        .replace("web", &PostParams::default(), &first)
        .await
        .unwrap();
    assert_eq!(updated.metadata.generation, Some(2));
    let mut second = created.clone();
    second.spec.failover.min_hold_seconds = 9;
    match api.replace("web", &PostParams::default(), &second).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"), "{e:?}");
            assert!(
                e.message.contains("the object has been modified"),
                "{}",
                e.message
            );
        }
        other => panic!("expected 409, got {other:?}"),
    }

    // A status write cannot change the spec, and does not bump the generation.
    let mut with_status = updated.clone();
    with_status.spec.failover.min_hold_seconds = 600;
    with_status.status = Some(serde_json::from_value(json!({"moveCount": 3})).unwrap());
    let after_status = api
        .replace_status("web", &PostParams::default(), &with_status)
        .await
        .unwrap();
    assert_eq!(after_status.spec.failover.min_hold_seconds, 5);
    assert_eq!(after_status.status.as_ref().unwrap().move_count, 3);
    assert_eq!(after_status.metadata.generation, Some(2));

    // A main write cannot change the status.
    let patch = Patch::Merge(json!({"spec": {"failback": "Always"}, "status": {"moveCount": 99}}));
    let after_main = api
        .patch("web", &PatchParams::default(), &patch)
        .await
        .unwrap();
    assert_eq!(after_main.status.unwrap().move_count, 3);
    assert_eq!(after_main.metadata.generation, Some(3));

    // A write that changes nothing creates no new version.
    let same = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"failback": "Always"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version,
        after_main.metadata.resource_version
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (_lab, api) = setup().await;
    let mut obj = fip("web", "10.0.8.100");
    obj.metadata.finalizers = Some(vec!["floatip.io/cleanup".into()]);
    api.create(&PostParams::default(), &obj).await.unwrap();

    api.delete("web", &DeleteParams::default()).await.unwrap();
    let held = api
        .get("web")
        .await
        .expect("still there while the finalizer is");
    assert!(held.metadata.deletion_timestamp.is_some());

    // No new finalizers on an object being deleted.
    let add = Patch::Merge(json!({"metadata": {"finalizers": ["floatip.io/cleanup", "other"]}}));
    match api.patch("web", &PatchParams::default(), &add).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{e:?}"),
        other => panic!("expected 422, got {other:?}"),
    }

    let remove = Patch::Json::<()>(
        serde_json::from_value(json!([{"op": "remove", "path": "/metadata/finalizers"}])).unwrap(),
    );
    api.patch("web", &PatchParams::default(), &remove)
        .await
        .unwrap();
    match api.get("web").await {
        Err(kube::Error::Api(e)) => assert_eq!((e.code, e.reason.as_str()), (404, "NotFound")),
        other => panic!("expected 404 after the last finalizer went, got {other:?}"),
    }
}

#[tokio::test]
async fn injected_faults_reach_the_client() {
    let (lab, api) = setup().await;
    lab.control(
        "POST",
        "/_lab/faults",
        r#"{"fail": {"status": 500, "count": 1, "method": "GET"}}"#,
    );
    // 500 rather than 503: kube-rs retries 429, 503 and 504 by itself.
    match api.get("web").await {
        Err(kube::Error::Api(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"))
        }
        other => panic!("expected the injected 500, got {other:?}"),
    }
    // Only one request was to fail.
    match api.get("web").await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 404),
        other => panic!("expected 404, got {other:?}"),
    }

    lab.control(
        "POST",
        "/_lab/faults",
        r#"{"stall": {"millis": 700, "count": 1}}"#,
    );
    let started = std::time::Instant::now();
    let _ = api.get("web").await;
    let stalled = started.elapsed();
    assert!(stalled >= Duration::from_millis(700), "stalled {stalled:?}");

    lab.control("POST", "/_lab/faults", r#"{"outageSeconds": 1.5}"#);
    let refused = api.list(&Default::default()).await;
    assert!(
        matches!(
            refused,
            Err(kube::Error::HyperError(_) | kube::Error::Service(_))
        ),
        "expected a connection error during the outage, got {refused:?}"
    );
    // Serving again once the outage is over.
    let mut recovered = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if api.list(&Default::default()).await.is_ok() {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "the server serves again after the outage");
}

#[tokio::test]
async fn leases_nodes_and_events_are_stored() {
    let (lab, _) = setup().await;
    let client = lab.client();
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Node;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "floatip-controller"},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 4}
    }))
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    let got = leases.get("floatip-controller").await.unwrap();
    assert_eq!(got.spec.unwrap().holder_identity.as_deref(), Some("pod-a"));

    let nodes: Api<Node> = Api::all(client.clone());
    for (name, zone) in [("n1", "a"), ("n2", "b")] {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"zone": zone}},
            "spec": {"providerID": format!("aws:///us-west-2a/i-{name}")}
        }))
        .unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }
    let selected = nodes
        .list(&kube::api::ListParams::default().labels("zone=b"))
        .await
        .unwrap();
    assert_eq!(
        selected
            .items
            .iter()
            .map(|n| n.name_any())
            .collect::<Vec<_>>(),
        ["n2"]
    );
    let by_field = nodes
        .list(&kube::api::ListParams::default().fields("metadata.name=n1"))
        .await
        .unwrap();
    assert_eq!(by_field.items.len(), 1);

    // A namespaced kind in a namespace that does not exist is refused.
    let missing: Api<Lease> = Api::namespaced(client, "nope");
    match missing.create(&PostParams::default(), &lease).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 404, "{e:?}"),
        other => panic!("expected 404, got {other:?}"),
    }
}

/// The API server's rule for Events about cluster-scoped objects: with an eventTime (every
/// events.k8s.io/v1 Event) only `default` and `kube-system` take them; without one, only
/// `default`. Events about namespaced objects go where the object is.
#[tokio::test]
async fn events_about_cluster_scoped_objects_only_in_default_or_kube_system() {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::events::v1::Event as EventV1;
    let (lab, _) = setup().await;
    let client = lab.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": "floatip-system"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let about = |regarding: serde_json::Value| -> EventV1 {
        serde_json::from_value(json!({
            "metadata": {"generateName": "web."},
            "eventTime": "2026-11-30T09:00:00.000000Z",
            "type": "Warning", "reason": "NoCandidates", "action": "Place", "note": "stuck",
            "regarding": regarding,
            "reportingController": "floatip.io/controller", "reportingInstance": "pod-a",
        }))
        .unwrap()
    };
    let fip = json!({"apiVersion": "floatip.io/v1alpha1", "kind": "FloatingIP", "name": "web"});
    let post = |ns: &str, event: EventV1| {
        let api: Api<EventV1> = Api::namespaced(client.clone(), ns);
        async move { api.create(&PostParams::default(), &event).await }
    };
    for ns in ["default", "kube-system"] {
        post(ns, about(fip.clone()))
            .await
            .unwrap_or_else(|e| panic!("refused in {ns}: {e}"));
    }
    match post("floatip-system", about(fip.clone())).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"), "{e:?}");
            assert!(
                e.message.ends_with(
                    "is invalid: involvedObject.namespace: Invalid value: \"\": does not match event.namespace"
                ) && e.message.starts_with("Event.events.k8s.io \"web."),
                "{}",
                e.message
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }
    // About a namespaced object: anywhere (the API server leaves that one alone).
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "name": "agent-x", "namespace": "floatip-system"});
    post("floatip-system", about(pod)).await.unwrap();

    // core/v1 without an eventTime (the old recorders): default only.
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    let old_style: CoreEvent = serde_json::from_value(json!({
        "metadata": {"generateName": "web."},
        "involvedObject": fip, "reason": "Moved", "message": "moved", "type": "Normal",
    }))
    .unwrap();
    let core = |ns: &str| -> Api<CoreEvent> { Api::namespaced(client.clone(), ns) };
    core("default")
        .create(&PostParams::default(), &old_style)
        .await
        .unwrap();
    let refused = core("kube-system")
        .create(&PostParams::default(), &old_style)
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 422),
        "{refused:?}"
    );
}

#[test]
fn server_uses_a_free_loopback_port_and_leaves_no_process() {
    let a = KubeLab::start();
    let b = KubeLab::start();
    assert!(a.url.starts_with("http://127.0.0.1:") && b.url.starts_with("http://127.0.0.1:"));
    assert_ne!(a.url, b.url, "each server picks its own free port");
    let pids = [a.pid(), b.pid()];
    drop(a);
    drop(b);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "floatip-lab {pid} is still running"
        );
    }
}

#[tokio::test]
async fn lists_page_with_limit_and_continue() {
    let (_lab, api) = setup().await;
    for i in 0..5 {
        api.create(
            &PostParams::default(),
            &fip(&format!("f{i}"), &format!("10.0.8.{}", 20 + i)),
        )
        .await
        .unwrap();
    }
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = kube::api::ListParams::default().limit(2);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        names.extend(page.items.iter().map(|f| f.name_any()));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["f0", "f1", "f2", "f3", "f4"]);
}
