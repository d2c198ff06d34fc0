//! The executor against a scripted API server and [`FakeCloud`], as kube-rs's controller-rs
//! tests its reconciler: a mock API service ([`super::mock_api`], as tower-test's) behind a
//! real `kube::Client`, and a scenario task that checks each request the executor sends and
//! answers it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::mock_api::{pair, Handle, SendResponse};
use http::{Method, Response, StatusCode};
use kube::client::Body;
use serde_json::{json, Value};

use super::{Ctx, Outcome};
use crate::api::{FloatingIP, MoveReason};
use crate::cloud::fake::FakeCloud;
use crate::cloud::{CloudError, Eni, ErrorKind};
use crate::controller::plan::{Placement, Plan, FINALIZER};
use crate::placement::Decision;
use crate::probe::Health;
use crate::status::Seat;

type ApiServer = Handle;

const ADDRESS: &str = "10.0.8.100";

fn seat(node: &str) -> Seat {
    Seat {
        node: node.into(),
        instance_id: format!("i-{node}"),
        eni: format!("eni-{node}"),
        mac: None,
        private_ip: None,
    }
}

fn eni(node: &str, holds: &[&str]) -> Eni {
    Eni {
        id: format!("eni-{node}"),
        subnet_id: "subnet-a".into(),
        instance_id: Some(format!("i-{node}")),
        device_index: Some(1),
        mac: None,
        primary_ip: None,
        secondary: holds.iter().map(|a| a.parse().unwrap()).collect(),
        tags: BTreeMap::new(),
        security_groups: Vec::new(),
    }
}

/// "a", held by n1 (status and EC2 agree), at resourceVersion 7.
fn fip() -> Arc<FloatingIP> {
    let f = serde_json::from_value(json!({
        "apiVersion": "floatip.io/v1alpha1", "kind": "FloatingIP",
        "metadata": {"name": "a", "resourceVersion": "7", "generation": 1,
                     "finalizers": [FINALIZER]},
        "spec": {"address": ADDRESS, "subnetId": "subnet-a"},
        "status": {"observedGeneration": 1, "moveCount": 0,
                   "holder": {"node": "n1", "instanceId": "i-n1",
                              "networkInterfaceId": "eni-n1", "since": "2027-01-15T08:00:00Z"}},
    }));
    Arc::new(f.unwrap())
}

/// The plan: move the address from n1 to n2, its holder failing.
fn move_to_n2() -> Plan {
    Plan::Place(Box::new(Placement {
        name: "a".into(),
        address: ADDRESS.parse().unwrap(),
        holder: Some(seat("n1")),
        foreign: None,
        decision: Decision::Move {
            to: "n2".into(),
            reason: MoveReason::HolderUnhealthy,
        },
        target: Some(seat("n2")),
        confirm_target: None,
        holder_fit: Some(Ok(())),
        holder_health: Health::Down,
        doubt: None,
        verdict_pending: false,
        candidates: 1,
        vip: None,
        associate: None,
        public: None,
    }))
}

fn cloud() -> FakeCloud {
    let cloud = FakeCloud::default();
    *cloud.enis.lock().unwrap() = vec![eni("n1", &[ADDRESS]), eni("n2", &[])];
    cloud
}

/// Runs the executor on `plan` against `cloud`, with `scenario` playing the API server.
async fn execute<F>(
    cloud: FakeCloud,
    plan: Plan,
    scenario: impl FnOnce(ApiServer, Arc<Ctx<FakeCloud>>) -> F,
) -> (Outcome, Arc<Ctx<FakeCloud>>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    execute_with(fip(), true, cloud, plan, scenario).await
}

/// [`execute`] on the FloatingIP `fip` as the pass read it.
async fn execute_on<F>(
    fip: Arc<FloatingIP>,
    cloud: FakeCloud,
    plan: Plan,
    scenario: impl FnOnce(ApiServer, Arc<Ctx<FakeCloud>>) -> F,
) -> (Outcome, Arc<Ctx<FakeCloud>>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    execute_with(fip, true, cloud, plan, scenario).await
}

/// [`execute`], by a replica that leads or one that does not.
async fn execute_as<F>(
    leading: bool,
    cloud: FakeCloud,
    plan: Plan,
    scenario: impl FnOnce(ApiServer, Arc<Ctx<FakeCloud>>) -> F,
) -> (Outcome, Arc<Ctx<FakeCloud>>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    execute_with(fip(), leading, cloud, plan, scenario).await
}

/// [`execute`] on `fip`, by a replica that leads or one that does not.
async fn execute_with<F>(
    fip: Arc<FloatingIP>,
    leading: bool,
    cloud: FakeCloud,
    plan: Plan,
    scenario: impl FnOnce(ApiServer, Arc<Ctx<FakeCloud>>) -> F,
) -> (Outcome, Arc<Ctx<FakeCloud>>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (service, handle) = pair();
    let client = kube::Client::new(service, "default");
    let gate = move || match leading {
        true => Ok(()),
        false => Err(crate::leader::NotLeader {
            lease: "floatip/floatip-controller".into(),
            holder: Some("other".into()),
        }),
    };
    let ctx = Arc::new(Ctx {
        events: crate::controller::events::Events::new(client.clone(), "test", "floatip-system"),
        client,
        cloud,
        metrics: crate::metrics::Metrics::new(),
        gate: Arc::new(gate),
        backoffs: Default::default(),
    });
    let server = tokio::spawn(scenario(handle, ctx.clone()));
    let out = ctx.execute(&[fip], vec![plan], &BTreeMap::new()).await;
    let wait = std::time::Duration::from_secs(5);
    tokio::time::timeout(wait, server)
        .await
        .expect("scenario done")
        .expect("scenario passed");
    (out, ctx)
}

/// The next request: its method, path and JSON body.
async fn next_request(api: &mut ApiServer) -> (Method, String, Value, SendResponse) {
    let (request, respond) = api.next_request().await.expect("a request");
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (method, path, body, respond)
}

/// Answers with `body`, at `resource_version` when it is an object.
fn answer(respond: SendResponse, mut body: Value, rv: &str) {
    body["metadata"]["resourceVersion"] = json!(rv);
    let bytes = serde_json::to_vec(&body).unwrap();
    respond.send_response(Response::builder().body(Body::from(bytes)).unwrap());
}

fn conflict(respond: SendResponse) {
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "the object has been modified", "reason": "Conflict", "code": 409});
    let bytes = serde_json::to_vec(&status).unwrap();
    let response = Response::builder().status(StatusCode::CONFLICT);
    respond.send_response(response.body(Body::from(bytes)).unwrap());
}

fn condition<'a>(body: &'a Value, type_: &str) -> Option<&'a Value> {
    let all = body["status"]["conditions"].as_array()?;
    all.iter().find(|c| c["type"] == type_)
}

const STATUS_PATH: &str = "/apis/floatip.io/v1alpha1/floatingips/a/status";

/// The claim: pendingMove written with the resourceVersion the plan was made from, before EC2.
async fn expect_claim(api: &mut ApiServer, ctx: &Ctx<FakeCloud>) -> Value {
    let (method, path, body, respond) = next_request(api).await;
    assert_eq!((method, path.as_str()), (Method::PUT, STATUS_PATH));
    assert_eq!(
        body["metadata"]["resourceVersion"], "7",
        "claim checked against what was read"
    );
    assert_eq!(body["status"]["pendingMove"]["to"], "n2");
    assert_eq!(body["status"]["holder"]["node"], "n1", "a claim is no move");
    let calls = ctx.cloud.calls.lock().unwrap().clone();
    assert!(
        calls.is_empty(),
        "EC2 called before the claim was written: {calls:?}"
    );
    answer(respond, body.clone(), "8");
    body
}

/// The Moved Event, accepted.
async fn expect_event(api: &mut ApiServer) {
    let (method, path, body, respond) = next_request(api).await;
    assert_eq!(
        (method, path.as_str()),
        (
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events"
        )
    );
    assert_eq!(body["reason"], "Moved");
    answer(respond, body, "1");
}

/// A Warning Event with `reason`, accepted; its note.
async fn expect_warning(api: &mut ApiServer, reason: &str) -> String {
    let (method, path, body, respond) = next_request(api).await;
    assert_eq!(
        (method, path.as_str()),
        (
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events"
        )
    );
    assert_eq!(
        (&body["type"], &body["reason"]),
        (&json!("Warning"), &json!(reason))
    );
    assert_eq!(body["regarding"]["name"], "a");
    let note = body["note"].as_str().unwrap_or_default().to_string();
    answer(respond, body, "1");
    note
}

/// Nothing more is sent.
async fn expect_silence(api: &mut ApiServer) {
    let wait = std::time::Duration::from_millis(200);
    let more = tokio::time::timeout(wait, api.next_request()).await;
    match more {
        Err(_) | Ok(None) => {}
        Ok(Some((request, _))) => panic!("unexpected {} {}", request.method(), request.uri()),
    }
}

/// "a" as the next pass reads it after `body` (a status write) was accepted.
fn as_written(body: &Value) -> Arc<FloatingIP> {
    let mut f = (*fip()).clone();
    f.status = Some(serde_json::from_value(body["status"].clone()).unwrap());
    Arc::new(f)
}

/// Conflict turning True is one Warning naming the older FloatingIP; the passes after it,
/// which find the same conflict, write nothing and publish nothing.
#[tokio::test]
async fn a_conflict_is_one_warning_event_not_one_per_pass() {
    let plan = || Plan::Conflict {
        name: "a".into(),
        winner: "web".into(),
    };
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let keep = written.clone();
    execute(cloud(), plan(), |mut api, _| async move {
        let (method, path, body, respond) = next_request(&mut api).await;
        assert_eq!((method, path.as_str()), (Method::PUT, STATUS_PATH));
        let conflict = condition(&body, "Conflict").expect("Conflict");
        assert_eq!(conflict["status"], "True");
        *keep.lock().unwrap() = body.clone();
        answer(respond, body, "8");
        let note = expect_warning(&mut api, "Conflict").await;
        assert!(
            note.starts_with("FloatingIP web is older and claims the same address 10.0.8.100"),
            "{note}"
        );
        expect_silence(&mut api).await;
    })
    .await;
    let after = as_written(&written.lock().unwrap());
    execute_on(after, cloud(), plan(), |mut api, _| async move {
        expect_silence(&mut api).await;
    })
    .await;
}

/// No candidate: one Warning saying why no node qualifies and where the address stays.
#[tokio::test]
async fn no_candidates_is_one_warning_event_saying_why() {
    let why = "no node is fit to hold the address (n2: the node is cordoned)";
    let plan = || {
        let Plan::Place(mut p) = move_to_n2() else {
            unreachable!()
        };
        p.decision = Decision::Stuck {
            why: format!("n1 holds the address but fails its health check, but {why}"),
        };
        p.target = None;
        Plan::Place(p)
    };
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let keep = written.clone();
    execute(cloud(), plan(), |mut api, _| async move {
        let (method, path, body, respond) = next_request(&mut api).await;
        assert_eq!((method, path.as_str()), (Method::PUT, STATUS_PATH));
        let stuck = condition(&body, "NoCandidates").expect("NoCandidates");
        assert_eq!(stuck["status"], "True");
        *keep.lock().unwrap() = body.clone();
        answer(respond, body, "8");
        let note = expect_warning(&mut api, "NoCandidates").await;
        assert!(note.contains(why), "{note}");
        assert!(
            note.ends_with("10.0.8.100 stays on n1 until a node qualifies"),
            "{note}"
        );
        expect_silence(&mut api).await;
    })
    .await;
    let after = as_written(&written.lock().unwrap());
    execute_on(after, cloud(), plan(), |mut api, _| async move {
        expect_silence(&mut api).await;
    })
    .await;
}

#[tokio::test]
async fn the_claim_is_written_with_its_resource_version_before_any_ec2_call() {
    let (out, ctx) = execute(cloud(), move_to_n2(), |mut api, ctx| async move {
        expect_claim(&mut api, &ctx).await;
        let (_, _, body, respond) = next_request(&mut api).await;
        answer(respond, body, "9");
        expect_event(&mut api).await;
    })
    .await;
    assert_eq!(out.moved, 1);
    assert_eq!(
        *ctx.cloud.calls.lock().unwrap(),
        vec![("Assign", "eni-n2".to_string())]
    );
}

#[tokio::test]
async fn a_move_ec2_confirmed_is_recorded() {
    let (out, _) = execute(cloud(), move_to_n2(), |mut api, ctx| async move {
        expect_claim(&mut api, &ctx).await;
        let (method, path, body, respond) = next_request(&mut api).await;
        assert_eq!((method, path.as_str()), (Method::PUT, STATUS_PATH));
        // Written over the claim's own write, and only once EC2 has the address on n2; but
        // before the read-back, which the agent on n2 does not wait for.
        assert_eq!(body["metadata"]["resourceVersion"], "8");
        assert_eq!(
            ctx.cloud.holder_of(ADDRESS.parse().unwrap()),
            vec!["eni-n2"]
        );
        assert_eq!(
            ctx.cloud.enis_read.load(Ordering::SeqCst),
            0,
            "read back first"
        );
        let s = &body["status"];
        assert_eq!(s["holder"]["node"], "n2");
        assert_eq!(s["holder"]["networkInterfaceId"], "eni-n2");
        assert_eq!(
            (&s["lastMove"]["from"], &s["lastMove"]["to"]),
            (&json!("n1"), &json!("n2"))
        );
        assert_eq!(s["lastMove"]["reason"], "HolderUnhealthy");
        assert_eq!(s["moveCount"], 1);
        assert_eq!(s.get("pendingMove"), None, "the claim is settled");
        let ready = condition(&body, "Ready").expect("Ready");
        assert_eq!(
            (&ready["status"], &ready["reason"]),
            (&json!("True"), &json!("Assigned"))
        );
        answer(respond, body, "9");
        expect_event(&mut api).await;
    })
    .await;
    assert_eq!((out.moved, out.retry), (1, false));
}

#[tokio::test]
async fn a_conflict_on_the_claim_makes_no_ec2_call_and_asks_for_a_retry() {
    let (out, ctx) = execute(cloud(), move_to_n2(), |mut api, _| async move {
        let (method, path, body, respond) = next_request(&mut api).await;
        assert_eq!((method, path.as_str()), (Method::PUT, STATUS_PATH));
        assert_eq!(body["status"]["pendingMove"]["to"], "n2");
        conflict(respond);
        // Nothing more: the next pass reads the object again and decides again.
        let wait = std::time::Duration::from_millis(200);
        let more = tokio::time::timeout(wait, api.next_request()).await;
        assert!(matches!(more, Err(_) | Ok(None)), "a request after the 409");
    })
    .await;
    assert!(
        ctx.cloud.calls.lock().unwrap().is_empty(),
        "EC2 called after a lost claim"
    );
    assert_eq!((out.moved, out.ec2_mutations, out.retry), (0, 0, true));
}

#[tokio::test]
async fn an_ec2_failure_after_the_claim_is_written_and_leaves_the_claim() {
    let cloud = cloud();
    *cloud.fail_with.lock().unwrap() = Some(CloudError {
        action: "AssignPrivateIpAddresses",
        code: "RequestLimitExceeded".into(),
        message: "slow down".into(),
        kind: ErrorKind::Throttled,
    });
    let (out, _) = execute(cloud, move_to_n2(), |mut api, ctx| async move {
        expect_claim(&mut api, &ctx).await;
        let (method, path, body, respond) = next_request(&mut api).await;
        assert_eq!((method, path.as_str()), (Method::PUT, STATUS_PATH));
        let error = condition(&body, "CloudError").expect("CloudError");
        assert_eq!(
            (&error["status"], &error["reason"]),
            (&json!("True"), &json!("RequestLimitExceeded"))
        );
        // The holder fails its check: not Ready, whether or not EC2 lets the address go.
        let ready = condition(&body, "Ready").expect("Ready");
        assert_eq!(
            (&ready["status"], &ready["reason"]),
            (&json!("False"), &json!("HolderUnhealthy"))
        );
        // The claim stays for the next pass, or the next leader, to see.
        assert_eq!(body["status"]["pendingMove"]["to"], "n2");
        assert_eq!(body["status"]["holder"]["node"], "n1");
        assert_eq!(body["status"]["moveCount"], 0);
        answer(respond, body, "9");
        // The error is news: a Warning Event with AWS's code and what to do about it.
        let note = expect_warning(&mut api, "CloudError").await;
        assert!(
            note.starts_with(
                "EC2 AssignPrivateIpAddresses failed: RequestLimitExceeded: slow down; "
            ) && note.contains("retries with backoff"),
            "{note}"
        );
    })
    .await;
    assert_eq!((out.moved, out.retry), (0, true));
}

/// EC2 accepted the move, but reading it back shows the address still on the old ENI: the
/// move is recorded (the agent on n2 was not kept waiting for the read), then the mismatch is
/// a Warning Event and the pass asks to plan again at once, from what EC2 shows.
#[tokio::test]
async fn a_move_ec2_does_not_show_after_the_call_is_recorded_then_planned_again() {
    let cloud = cloud();
    *cloud.also_shows.lock().unwrap() = Some(("eni-n1".into(), ADDRESS.parse().unwrap()));
    let (out, ctx) = execute(cloud, move_to_n2(), |mut api, ctx| async move {
        expect_claim(&mut api, &ctx).await;
        let (method, path, body, respond) = next_request(&mut api).await;
        assert_eq!((method, path.as_str()), (Method::PUT, STATUS_PATH));
        assert_eq!(body["status"]["holder"]["node"], "n2");
        answer(respond, body, "9");
        expect_event(&mut api).await;
        let (method, path, body, respond) = next_request(&mut api).await;
        assert_eq!(
            (method, path.as_str()),
            (
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/default/events"
            )
        );
        assert_eq!(
            (&body["type"], &body["reason"]),
            (&json!("Warning"), &json!("MoveNotVisible"))
        );
        let note = body["note"].as_str().unwrap_or_default();
        assert!(note.contains("planning it again"), "{note}");
        answer(respond, body, "1");
    })
    .await;
    assert_eq!(ctx.cloud.enis_read.load(Ordering::SeqCst), 1);
    assert_eq!((out.moved, out.retry, out.recheck_soon), (1, true, true));
}

#[tokio::test]
async fn a_deleted_floatingip_leaves_its_eni_before_its_finalizer_goes() {
    let release = Plan::Release {
        name: "a".into(),
        address: ADDRESS.parse().unwrap(),
        from: vec!["eni-n1".into()],
    };
    let (out, ctx) = execute(cloud(), release, |mut api, ctx| async move {
        let (method, path, body, respond) = next_request(&mut api).await;
        assert_eq!(
            (method, path.as_str()),
            (Method::PATCH, "/apis/floatip.io/v1alpha1/floatingips/a")
        );
        // Only once EC2 no longer has the address, and against what was read.
        let calls = ctx.cloud.calls.lock().unwrap().clone();
        assert_eq!(calls, vec![("Unassign", "eni-n1".to_string())]);
        assert_eq!(body["metadata"]["resourceVersion"], "7");
        assert_eq!(body["metadata"]["finalizers"], json!([]));
        let mut released = serde_json::to_value(fip().as_ref()).unwrap();
        released["metadata"]["finalizers"] = json!([]);
        answer(respond, released, "8");
    })
    .await;
    assert!(ctx.cloud.holder_of(ADDRESS.parse().unwrap()).is_empty());
    assert_eq!((out.ec2_mutations, out.retry), (1, false));
}

/// A move waiting only for an agent's word writes nothing yet: its status follows the
/// decision moments later, and the writes of many addresses failing together would stand
/// between the confirmation and their moves. Without the wait, the same failing holder gets
/// its Ready=False at once.
#[tokio::test]
async fn a_move_awaiting_a_second_opinion_writes_no_status_yet() {
    let plan = |awaiting: bool| {
        let Plan::Place(mut p) = move_to_n2() else {
            unreachable!()
        };
        p.decision = Decision::Hold {
            remaining: std::time::Duration::from_secs(5),
        };
        p.verdict_pending = awaiting;
        Plan::Place(p)
    };
    let (out, ctx) = execute(cloud(), plan(true), |mut api, _| async move {
        let wait = std::time::Duration::from_millis(200);
        let more = tokio::time::timeout(wait, api.next_request()).await;
        assert!(
            matches!(more, Err(_) | Ok(None)),
            "a request while awaiting"
        );
    })
    .await;
    assert!(ctx.cloud.calls.lock().unwrap().is_empty());
    assert_eq!((out.moved, out.retry), (0, false));

    execute(cloud(), plan(false), |mut api, _| async move {
        let (method, path, body, respond) = next_request(&mut api).await;
        assert_eq!((method, path.as_str()), (Method::PUT, STATUS_PATH));
        let ready = condition(&body, "Ready").expect("Ready");
        assert_eq!(
            (&ready["status"], &ready["reason"]),
            (&json!("False"), &json!("HolderUnhealthy"))
        );
        answer(respond, body, "8");
    })
    .await;
}

/// The per-FloatingIP series of `ctx`'s metrics.
fn fip_series(ctx: &Ctx<FakeCloud>) -> Vec<String> {
    (ctx.metrics.encode().lines())
        .filter(|l| l.starts_with("floatip_floatingip_"))
        .map(str::to_string)
        .collect()
}

fn holder_series(ctx: &Ctx<FakeCloud>) -> Vec<String> {
    (fip_series(ctx).into_iter())
        .filter(|l| l.starts_with("floatip_floatingip_holder_info{"))
        .collect()
}

fn holder_on(node: &str) -> String {
    format!("floatip_floatingip_holder_info{{floatingip=\"a\",node=\"{node}\",address=\"{ADDRESS}\",mode=\"SecondaryIP\"}} 1")
}

/// The leader's metrics follow status: the holder it read first, then the one its move wrote
/// (the old series gone), the move counted.
#[tokio::test]
async fn a_move_shows_in_the_leaders_per_floatingip_metrics() {
    let (_, ctx) = execute(cloud(), move_to_n2(), |mut api, ctx| async move {
        expect_claim(&mut api, &ctx).await;
        let (_, _, body, respond) = next_request(&mut api).await;
        // The move's status write is on its way, not answered yet: what was read (and
        // claimed) shows.
        assert_eq!(holder_series(&ctx), vec![holder_on("n1")]);
        let series = fip_series(&ctx);
        assert!(
            series.contains(&"floatip_floatingip_moves_total{floatingip=\"a\"} 0".to_string()),
            "{series:?}"
        );
        answer(respond, body, "9");
        expect_event(&mut api).await;
    })
    .await;
    assert_eq!(holder_series(&ctx), vec![holder_on("n2")]);
    let series = fip_series(&ctx);
    for want in [
        "floatip_floatingip_moves_total{floatingip=\"a\"} 1",
        "floatip_floatingip_ready{floatingip=\"a\"} 1",
    ] {
        assert!(series.contains(&want.to_string()), "{want}: {series:?}");
    }
    // Deleted: every series of it goes.
    ctx.execute(&[], vec![], &BTreeMap::new()).await;
    assert_eq!(fip_series(&ctx), Vec::<String>::new());
}

/// A status written Ready=False shows as 0 at once.
#[tokio::test]
async fn a_failing_holder_shows_not_ready() {
    let mut plan = move_to_n2();
    if let Plan::Place(p) = &mut plan {
        p.decision = Decision::Stay;
    }
    let (_, ctx) = execute(cloud(), plan, |mut api, _| async move {
        let (_, _, body, respond) = next_request(&mut api).await;
        let ready = condition(&body, "Ready").expect("Ready");
        assert_eq!(ready["status"], "False");
        answer(respond, body, "8");
    })
    .await;
    let series = fip_series(&ctx);
    assert!(
        series.contains(&"floatip_floatingip_ready{floatingip=\"a\"} 0".to_string()),
        "{series:?}"
    );
    assert_eq!(holder_series(&ctx), vec![holder_on("n1")]);
}

#[tokio::test]
async fn a_replica_that_does_not_lead_exports_no_per_floatingip_series() {
    let (out, ctx) = execute_as(false, cloud(), move_to_n2(), |mut api, _| async move {
        let wait = std::time::Duration::from_millis(200);
        let more = tokio::time::timeout(wait, api.next_request()).await;
        assert!(
            matches!(more, Err(_) | Ok(None)),
            "a write while not leading"
        );
    })
    .await;
    assert_eq!(out.moved, 0);
    assert_eq!(fip_series(&ctx), Vec::<String>::new());
}

/// Interface mode: "a" names ENI `IFACE`, attached to n1's instance (status: Attached).
const IFACE: &str = "eni-0000000a";

fn interface_fip() -> Arc<FloatingIP> {
    let f = serde_json::from_value(json!({
        "apiVersion": "floatip.io/v1alpha1", "kind": "FloatingIP",
        "metadata": {"name": "a", "resourceVersion": "7", "generation": 1,
                     "finalizers": [FINALIZER]},
        "spec": {"address": ADDRESS, "mode": "Interface", "subnetId": "subnet-a",
                 "networkInterfaceId": IFACE},
        "status": {"observedGeneration": 1, "moveCount": 1,
                   "holder": {"node": "n1", "instanceId": "i-n1",
                              "networkInterfaceId": IFACE, "since": "2027-01-15T08:00:00Z"},
                   "interface": {"phase": "Attached", "since": "2027-01-15T08:00:00Z"}},
    }));
    Arc::new(f.unwrap())
}

/// The plan: move the ENI from n1 to n2, its holder failing.
fn interface_move() -> Plan {
    let on = |node: &str| Seat {
        eni: IFACE.into(),
        ..seat(node)
    };
    let Plan::Place(mut p) = move_to_n2() else {
        unreachable!("move_to_n2 places")
    };
    p.holder = Some(on("n1"));
    p.target = Some(on("n2"));
    Plan::Place(p)
}

/// n1's and n2's instances (m5.large: 3 interfaces), n2 using `n2_slots`, the ENI on n1.
fn interface_cloud(n2_slots: &[i32]) -> FakeCloud {
    let instance = |node: &str, used: &[i32]| crate::cloud::Instance {
        id: format!("i-{node}"),
        instance_type: "m5.large".into(),
        device_indexes: used.to_vec(),
        primary_security_groups: Vec::new(),
    };
    let cloud = FakeCloud::default();
    let mut e = eni("n1", &[]);
    e.id = IFACE.into();
    e.primary_ip = Some(ADDRESS.parse().unwrap());
    *cloud.enis.lock().unwrap() = vec![e];
    *cloud.instances.lock().unwrap() = vec![instance("n1", &[0, 1]), instance("n2", n2_slots)];
    *cloud.max_interfaces.lock().unwrap() = [("m5.large".to_string(), 3)].into();
    cloud
}

/// A whole-ENI move in status: the claim says Detaching, the arrival Attaching with the
/// detach's time, and once the read-back sees the ENI attached a write over the arrival says
/// Attached with the attach's time. EC2: detach, then attach.
#[tokio::test]
async fn an_interface_move_shows_its_phases_in_status() {
    let (out, ctx) = execute_on(
        interface_fip(),
        interface_cloud(&[0]),
        interface_move(),
        |mut api, _| async move {
            let phase = |b: &Value| b["status"]["interface"]["phase"].clone();
            let (method, path, body, respond) = next_request(&mut api).await;
            assert_eq!((method, path.as_str()), (Method::PUT, STATUS_PATH));
            assert_eq!(body["status"]["pendingMove"]["to"], "n2");
            assert_eq!(phase(&body), "Detaching");
            answer(respond, body, "8");
            let (_, _, body, respond) = next_request(&mut api).await;
            assert_eq!(body["status"]["holder"]["node"], "n2");
            assert_eq!(phase(&body), "Attaching");
            assert!(body["status"]["interface"]["detachMs"].is_i64(), "{body}");
            answer(respond, body, "9");
            expect_event(&mut api).await;
            let (method, path, body, respond) = next_request(&mut api).await;
            assert_eq!((method, path.as_str()), (Method::PUT, STATUS_PATH));
            assert_eq!(body["metadata"]["resourceVersion"], "9", "over the arrival");
            assert_eq!(phase(&body), "Attached");
            assert!(body["status"]["interface"]["attachMs"].is_i64(), "{body}");
            answer(respond, body, "10");
            expect_silence(&mut api).await;
        },
    )
    .await;
    assert_eq!(out.moved, 1);
    let calls: Vec<&str> = (ctx.cloud.calls.lock().unwrap().iter())
        .map(|(a, _)| *a)
        .collect();
    assert_eq!(calls, ["DetachNetworkInterface", "AttachNetworkInterface"]);
}

/// A target with every interface slot taken: the FloatingIP gets the refusal (CloudError
/// NoFreeDeviceIndex, backing off), nothing is claimed, and EC2 is not changed.
#[tokio::test]
async fn a_full_target_is_refused_before_the_claim_with_no_ec2_change() {
    let (out, ctx) = execute_on(
        interface_fip(),
        interface_cloud(&[0, 1, 2]),
        interface_move(),
        |mut api, _| async move {
            let (method, path, body, respond) = next_request(&mut api).await;
            assert_eq!((method, path.as_str()), (Method::PUT, STATUS_PATH));
            assert!(body["status"].get("pendingMove").is_none(), "{body}");
            assert_eq!(body["status"]["interface"]["phase"], "Attached");
            let error = condition(&body, "CloudError").expect("CloudError");
            assert_eq!(
                (&error["status"], &error["reason"]),
                (&json!("True"), &json!("NoFreeDeviceIndex"))
            );
            let message = error["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("i-n2") && message.contains("all 3"),
                "{message}"
            );
            let backing = condition(&body, "BackingOff").expect("BackingOff");
            assert_eq!(backing["status"], "True");
            answer(respond, body, "8");
            expect_warning(&mut api, "CloudError").await;
        },
    )
    .await;
    assert_eq!((out.moved, out.ec2_mutations), (0, 0));
    assert!(ctx.cloud.calls.lock().unwrap().is_empty());
    let a = ctx.cloud.enis.lock().unwrap()[0].instance_id.clone();
    assert_eq!(a.as_deref(), Some("i-n1"), "the ENI stays where it was");
}
