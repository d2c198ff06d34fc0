//! Leader election against the lab's Kubernetes API: one leader at a time, takeover after a
//! crash, stepping down before a takeover when the API fails or stalls, and release.
//!
//! Timing is never asserted tightly: only generous upper bounds, and orderings that the design
//! guarantees (a follower cannot lead while the old leader still does).

use std::time::{Duration, Instant};

use floatip::leader::{spawn, ConfigError, LeaderConfig, LeaderError, Leadership};
use floatip_lab::process::KubeLab as Lab;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::task::JoinHandle;

const NS: &str = "default";
const LEASE: &str = "floatip-controller";
/// Generous bound for anything that should take a few seconds.
const LIMIT: Duration = Duration::from_secs(20);

type Task = JoinHandle<Result<(), LeaderError>>;

fn config(identity: &str) -> LeaderConfig {
    LeaderConfig::new(NS, LEASE, identity)
}

fn elect(lab: &Lab, cfg: LeaderConfig) -> (Leadership, Task) {
    // The election's own log, shown when a test fails (RUST_LOG=floatip=debug for more).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "floatip=info".into()),
        )
        .with_test_writer()
        .try_init();
    spawn(lab.client(), cfg).expect("valid config")
}

async fn lease(lab: &Lab) -> Lease {
    Api::<Lease>::namespaced(lab.client(), NS)
        .get(LEASE)
        .await
        .expect("the Lease exists")
}

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref()?.holder_identity.clone()
}

/// Polls every 20 ms until `done` holds; returns how long it took. Panics after [`LIMIT`].
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < LIMIT, "{what}: not within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Samples both every 20 ms until `until` holds, asserting they never lead at the same moment.
async fn never_both_until(a: &Leadership, b: &Leadership, what: &str, until: impl Fn() -> bool) {
    let start = Instant::now();
    loop {
        assert!(
            !(a.is_leader() && b.is_leader()),
            "two leaders at once, {:?} into waiting for {what}",
            start.elapsed()
        );
        if until() {
            return;
        }
        assert!(start.elapsed() < LIMIT, "{what}: not within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `a` leads, `b` follows and has seen the Lease at least once.
async fn leader_and_follower(lab: &Lab) -> ((Leadership, Task), (Leadership, Task)) {
    let a = elect(lab, config("pod-a"));
    wait_for("pod-a leads", || a.0.is_leader()).await;
    let b = elect(lab, config("pod-b"));
    wait_for("pod-b sees the Lease", || b.0.state_known()).await;
    assert!(!b.0.is_leader());
    assert_eq!(b.0.holder().as_deref(), Some("pod-a"));
    ((a.0, a.1), (b.0, b.1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_electors_exactly_one_leader_named_in_the_lease() {
    let lab = Lab::start();
    let (a, _ta) = elect(&lab, config("pod-a"));
    let (b, _tb) = elect(&lab, config("pod-b"));
    wait_for("someone leads", || a.is_leader() || b.is_leader()).await;
    wait_for("both know the lease state", || {
        a.state_known() && b.state_known()
    })
    .await;

    let sampling = Instant::now();
    let mut samples = 0;
    while sampling.elapsed() < Duration::from_secs(3) {
        let leaders: Vec<&str> = [("pod-a", &a), ("pod-b", &b)]
            .into_iter()
            .filter(|(_, l)| l.is_leader())
            .map(|(name, _)| name)
            .collect();
        assert_eq!(leaders.len(), 1, "leaders at sample {samples}: {leaders:?}");
        assert_eq!(holder(&lease(&lab).await).as_deref(), Some(leaders[0]));
        samples += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (leader, follower) = if a.is_leader() { (&a, &b) } else { (&b, &a) };
    assert!(leader.guard().is_ok());
    let leader_name = leader
        .holder()
        .expect("the leader knows it holds the lease");
    assert_eq!(follower.holder(), Some(leader_name.clone()));
    let err = follower.guard().unwrap_err();
    assert!(
        err.to_string().contains(&format!("held by {leader_name}")),
        "{err}"
    );
    assert!(*leader.changes().borrow());
    assert!(!*follower.changes().borrow());
    println!("{samples} samples, one leader each time: {leader_name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_without_overlap() {
    let lab = Lab::start();
    let ((a, ta), (b, _tb)) = leader_and_follower(&lab).await;

    // kill -9: the task stops mid-term and never releases.
    ta.abort();
    let killed = Instant::now();
    never_both_until(&a, &b, "pod-b takes over", || b.is_leader()).await;
    println!(
        "takeover after the leader was killed: {:?}",
        killed.elapsed()
    );

    let spec = lease(&lab).await.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("pod-b"));
    assert_eq!(spec.lease_transitions, Some(1));
    assert_eq!(spec.lease_duration_seconds, Some(4));
    assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
    assert!(!a.is_leader());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_leader_stops_before_the_follower_takes_over() {
    let lab = Lab::start();
    let ((a, _ta), (b, _tb)) = leader_and_follower(&lab).await;
    let cfg = config("pod-a");
    let mut a_changes = a.changes();
    assert!(*a_changes.borrow_and_update());

    // Every Lease call fails for 6 s, longer than the lease: both replicas are cut off.
    lab.faults(
        r#"{"fail": {"status": 500, "pathPrefix": "/apis/coordination.k8s.io", "seconds": 6}}"#,
    );
    let faulted = Instant::now();
    // Its last successful renew was sent before the fault, so by the renew deadline after the
    // fault it must have stopped: is_leader() is judged by the clock and cannot be late.
    tokio::time::sleep(cfg.renew_deadline).await;
    assert!(
        !a.is_leader(),
        "still leader a renew deadline after its last renew"
    );
    assert!(!b.is_leader());
    tokio::time::timeout(Duration::from_secs(2), a_changes.wait_for(|l| !*l))
        .await
        .expect("changes() flips to false at the deadline")
        .expect("the election task is alive");

    never_both_until(&a, &b, "pod-b takes over", || b.is_leader()).await;
    println!(
        "takeover after the Lease API started failing: {:?} (fault lasted 6 s)",
        faulted.elapsed()
    );
    assert_eq!(holder(&lease(&lab).await).as_deref(), Some("pod-b"));
    // The old leader follows and does not come back while the new one renews.
    let settle = Instant::now();
    never_both_until(&a, &b, "the new term to settle", || {
        settle.elapsed() > Duration::from_secs(2)
    })
    .await;
    assert!(b.is_leader() && !a.is_leader());
    assert_eq!(a.holder().as_deref(), Some("pod-b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_leader_steps_down_on_its_own_timer() {
    let lab = Lab::start();
    let ((a, _ta), (b, _tb)) = leader_and_follower(&lab).await;
    let mut a_changes = a.changes();
    assert!(*a_changes.borrow_and_update());

    // Lease calls hang for 10 s (those that arrive within the next 5 s): no answer at all.
    lab.faults(
        r#"{"stall": {"millis": 10000, "pathPrefix": "/apis/coordination.k8s.io", "seconds": 5}}"#,
    );
    let stalled = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), a_changes.wait_for(|l| !*l))
        .await
        .expect("changes() flips to false although no request was answered")
        .expect("the election task is alive");
    println!("stalled leader stepped down after {:?}", stalled.elapsed());
    assert!(!a.is_leader());

    never_both_until(&a, &b, "pod-b takes over", || b.is_leader()).await;
    println!(
        "takeover after the Lease API stalled: {:?}",
        stalled.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_hands_over_well_before_the_lease_runs_out() {
    let lab = Lab::start();
    // A long lease, so a takeover that did not come from release() could not be this quick.
    let long = |identity| LeaderConfig {
        lease_duration: Duration::from_secs(20),
        renew_deadline: Duration::from_secs(15),
        ..config(identity)
    };
    let (a, ta) = elect(&lab, long("pod-a"));
    wait_for("pod-a leads", || a.is_leader()).await;
    let (b, _tb) = elect(&lab, long("pod-b"));
    wait_for("pod-b sees the Lease", || b.state_known()).await;

    let released = Instant::now();
    a.release().await;
    assert!(!a.is_leader(), "not leader once release() returns");
    assert!(a.guard().is_err());
    let took = wait_for("pod-b takes over", || b.is_leader()).await;
    println!("takeover after release(): {took:?}");
    assert!(
        released.elapsed() < Duration::from_secs(10),
        "takeover after release took {:?}, not well before the 20 s lease",
        released.elapsed()
    );
    let spec = lease(&lab).await.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("pod-b"));
    assert_eq!(spec.lease_duration_seconds, Some(20));

    // A released elector never campaigns again, and its task ends once its handles are gone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!a.is_leader());
    a.release().await; // idempotent
    drop(a);
    let ended = tokio::time::timeout(Duration::from_secs(5), ta)
        .await
        .expect("the task ends when its handles are dropped")
        .expect("not panicked");
    assert!(ended.is_ok(), "{ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_lease_access_ends_the_task_with_an_actionable_error() {
    let lab = Lab::start();
    lab.faults(r#"{"fail": {"status": 403, "pathPrefix": "/apis/coordination.k8s.io"}}"#);
    let (a, task) = elect(&lab, config("pod-a"));
    let err = tokio::time::timeout(LIMIT, task)
        .await
        .expect("the task ends")
        .expect("not panicked")
        .expect_err("403 is not retried");
    assert!(matches!(err, LeaderError::Forbidden { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("default/floatip-controller"), "{msg}");
    assert!(msg.contains("leases"), "{msg}");
    assert!(!a.is_leader());
    lab.clear_faults();
}

#[tokio::test]
async fn config_with_renew_deadline_not_shorter_than_the_lease_is_rejected() {
    // No server is needed: the config is checked before anything is sent.
    let client = kube::Client::try_from(kube::Config::new(
        "http://127.0.0.1:9".parse().expect("url"),
    ))
    .expect("client");
    for renew_deadline in [Duration::from_secs(4), Duration::from_secs(5)] {
        let cfg = LeaderConfig {
            renew_deadline,
            ..config("pod-a")
        };
        let err = spawn(client.clone(), cfg).map(|_| ()).unwrap_err();
        assert!(
            matches!(err, ConfigError::RenewDeadlineNotShorter { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("renew deadline"), "{err}");
    }
}
