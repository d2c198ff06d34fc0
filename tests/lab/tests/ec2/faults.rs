//! Faults as the SDK sees them, the call counters, and the lab's own lifecycle.

use std::time::{Duration, Instant};

use aws_runtime::retries::classifiers::THROTTLING_ERRORS;
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::describe_vpcs::DescribeVpcsError;
use serde_json::json;

use super::{assign, world, VIP};
use floatip_lab::process::{self, Ec2Lab};

type DescribeVpcsResult = Result<(), SdkError<DescribeVpcsError>>;

async fn describe_vpcs(ec2: &aws_sdk_ec2::Client) -> DescribeVpcsResult {
    ec2.describe_vpcs().send().await.map(|_| ())
}

/// The error code and HTTP status of a service error; panics on any other outcome.
fn service_error(result: DescribeVpcsResult) -> (String, u16) {
    match result {
        Err(SdkError::ServiceError(err)) => {
            let code = err.err().code().unwrap_or_default().to_owned();
            (code, err.raw().status().as_u16())
        }
        other => panic!("expected a service error, got {other:?}"),
    }
}

#[tokio::test]
async fn throttling_reaches_the_sdk_as_request_limit_exceeded() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    lab.faults(&json!({"kind": "throttle", "count": 2}).to_string());
    for _ in 0..2 {
        let (code, status) = service_error(describe_vpcs(&ec2).await);
        assert_eq!((code.as_str(), status), ("RequestLimitExceeded", 503));
        assert!(
            THROTTLING_ERRORS.contains(&code.as_str()),
            "the SDK retries it as throttling"
        );
    }
    describe_vpcs(&ec2).await.expect("the fault was used up");

    // With the SDK's standard retries, two throttled attempts are absorbed by the third.
    lab.control_json("DELETE", "/_lab/calls", "");
    lab.faults(&json!({"kind": "throttle", "count": 2}).to_string());
    let retrying = RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(10));
    describe_vpcs(&lab.client_with(retrying))
        .await
        .expect("retried past throttling");
    let calls = lab.control_json("GET", "/_lab/calls", "");
    assert_eq!(calls["actions"]["DescribeVpcs"]["calls"], 3);
    assert_eq!(calls["actions"]["DescribeVpcs"]["faulted"], 2);
}

#[tokio::test]
async fn server_errors_reach_the_sdk_as_5xx() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    lab.faults(&json!({"kind": "internal_error", "count": 1}).to_string());
    lab.faults(&json!({"kind": "unavailable", "count": 1}).to_string());
    let first = service_error(describe_vpcs(&ec2).await);
    assert_eq!(first, ("InternalError".to_owned(), 500));
    let second = service_error(describe_vpcs(&ec2).await);
    assert_eq!(second, ("Unavailable".to_owned(), 503));
    describe_vpcs(&ec2).await.expect("both faults were used up");
}

#[tokio::test]
async fn outage_is_a_connection_error_until_it_ends() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    describe_vpcs(&ec2).await.unwrap();
    lab.faults(&json!({"kind": "outage", "seconds": 2.0}).to_string());
    let started = Instant::now();
    for _ in 0..2 {
        match describe_vpcs(&ec2).await {
            // The connection closed with no answer: not a timeout, not a service error.
            Err(SdkError::DispatchFailure(failure)) => {
                assert!(!failure.is_timeout(), "{failure:?}");
                assert!(failure.is_io() || failure.is_other(), "{failure:?}");
            }
            other => panic!("expected a dispatch failure, got {other:?}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the failures came at once"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    describe_vpcs(&ec2).await.expect("the outage is over");

    // An outage with no end can be ended through the control endpoint, which stays up.
    lab.faults(&json!({"kind": "outage"}).to_string());
    assert!(describe_vpcs(&ec2).await.is_err());
    assert_eq!(lab.control_json("DELETE", "/_lab/faults", "")["cleared"], 1);
    describe_vpcs(&ec2).await.expect("cleared");

    // The SDK's standard retries treat a dropped connection as transient and try again.
    lab.control_json("DELETE", "/_lab/calls", "");
    lab.faults(&json!({"kind": "outage", "count": 1}).to_string());
    let retrying = RetryConfig::standard().with_initial_backoff(Duration::from_millis(10));
    describe_vpcs(&lab.client_with(retrying))
        .await
        .expect("retried past the outage");
    let calls = lab.control_json("GET", "/_lab/calls", "");
    assert_eq!(calls["actions"]["DescribeVpcs"]["faulted"], 1);
}

#[tokio::test]
async fn latency_is_added_to_every_request() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    describe_vpcs(&ec2).await.unwrap();
    lab.faults(&json!({"kind": "latency", "ms": 600}).to_string());
    for _ in 0..2 {
        let started = Instant::now();
        describe_vpcs(&ec2).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(600),
            "{:?}",
            started.elapsed()
        );
    }
    lab.control_json("DELETE", "/_lab/faults", "");
    let started = Instant::now();
    describe_vpcs(&ec2).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_round_trip_delays_every_call_but_not_the_control_paths() {
    let lab = Ec2Lab::start_with(&["--latency-ms", "300"]);
    assert_eq!(lab.control_json("GET", "/_lab/info", "")["latency_ms"], 300);
    let ec2 = lab.client();
    for clear in [false, true] {
        if clear {
            lab.clear_faults();
        }
        let started = Instant::now();
        describe_vpcs(&ec2).await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300),
            "cleared {clear}: {took:?}"
        );
    }
    let started = Instant::now();
    lab.calls();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(300), "{took:?}");
}

/// `GET /_lab/generation` with this query, on a thread of its own (it may wait); the count
/// and how long the answer took.
fn generation(lab: &Ec2Lab, query: &str) -> std::thread::JoinHandle<(u64, Duration)> {
    let addr = lab.endpoint.trim_start_matches("http://").to_string();
    let path = format!("/_lab/generation{query}");
    std::thread::spawn(move || {
        let started = Instant::now();
        let body = floatip_lab::sim::http(&addr, "GET", &path, "").unwrap();
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        (value["generation"].as_u64().unwrap(), started.elapsed())
    })
}

#[tokio::test]
async fn the_generation_counts_changes_moto_made_and_answers_a_waiter_at_once() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let w = world(&ec2).await;
    let (g0, _) = generation(&lab, "").join().unwrap();
    assert!(g0 >= 3, "the VPC, subnet and instances were changes: {g0}");
    ec2.describe_network_interfaces().send().await.unwrap();
    lab.faults(&json!({"kind": "throttle", "count": 1}).to_string());
    assert!(assign(&ec2, &w.enis[0], VIP, true).await.is_err());
    let outside = assign(&ec2, &w.enis[0], "192.168.50.10", true).await;
    assert_eq!(outside, Err("InvalidParameterValue".into()));
    let (g, _) = generation(&lab, "").join().unwrap();
    assert_eq!(
        g, g0,
        "reads, faulted calls and calls moto refused change nothing"
    );

    let waiter = generation(&lab, &format!("?after={g0}&waitMs=5000"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assign(&ec2, &w.enis[0], VIP, true).await.unwrap();
    let (g, took) = waiter.join().unwrap();
    assert_eq!(g, g0 + 1);
    assert!(
        took < Duration::from_secs(2),
        "answered on the change: {took:?}"
    );

    let (g, took) = generation(&lab, &format!("?after={g}&waitMs=200"))
        .join()
        .unwrap();
    assert_eq!(g, g0 + 1);
    assert!(
        took >= Duration::from_millis(200),
        "no change: waited {took:?}"
    );
}

#[tokio::test]
async fn a_fault_can_target_one_action() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let w = world(&ec2).await;
    lab.faults(&json!({"kind": "throttle", "action": "AssignPrivateIpAddresses"}).to_string());
    describe_vpcs(&ec2).await.expect("other actions pass");
    let refused = assign(&ec2, &w.enis[0], VIP, true).await;
    assert_eq!(refused, Err("RequestLimitExceeded".to_owned()));
    let armed = lab.control_json("GET", "/_lab/faults", "");
    assert_eq!(armed[0]["hits"], 1);
    assert_eq!(armed[0]["action"], "AssignPrivateIpAddresses");
    lab.control_json("DELETE", "/_lab/faults", "");
    assign(&ec2, &w.enis[0], VIP, true)
        .await
        .expect("no fault left");
}

#[tokio::test]
async fn calls_are_counted_per_action_and_split_by_mutation() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let w = world(&ec2).await;
    lab.control_json("DELETE", "/_lab/calls", "");
    lab.faults(
        &json!({"kind": "unavailable", "count": 1, "action": "AssignPrivateIpAddresses"})
            .to_string(),
    );
    assert!(assign(&ec2, &w.enis[0], VIP, true).await.is_err());
    assign(&ec2, &w.enis[0], VIP, true).await.unwrap();
    for _ in 0..2 {
        ec2.describe_network_interfaces().send().await.unwrap();
    }
    let calls = lab.control_json("GET", "/_lab/calls", "");
    assert_eq!(
        (calls["total"].as_u64(), calls["mutating"].as_u64()),
        (Some(4), Some(2))
    );
    let assigns = &calls["actions"]["AssignPrivateIpAddresses"];
    assert_eq!(
        assigns,
        &json!({"calls": 2, "faulted": 1, "mutating": true})
    );
    let describes = &calls["actions"]["DescribeNetworkInterfaces"];
    assert_eq!(
        describes,
        &json!({"calls": 2, "faulted": 0, "mutating": false})
    );
}

#[tokio::test]
async fn the_control_endpoint_refuses_what_it_cannot_do() {
    let lab = Ec2Lab::start();
    let bad = [
        ("POST", "/_lab/faults", r#"{"kind": "latency"}"#),
        ("POST", "/_lab/faults", r#"{"kind": "meteor"}"#),
        (
            "POST",
            "/_lab/faults",
            r#"{"kind": "throttle", "count": 0}"#,
        ),
        ("POST", "/_lab/faults", r#"{"kind": "throttle", "typo": 1}"#),
    ];
    for (method, path, body) in bad {
        assert_eq!(lab.control(method, path, body).0, 400, "{body}");
    }
    assert_eq!(lab.control("GET", "/_lab/nothing", "").0, 404);
    assert_eq!(lab.control("PUT", "/_lab/calls", "").0, 405);
    assert_eq!(lab.control_json("GET", "/_lab/faults", ""), json!([]));
}

#[test]
fn killing_the_lab_outright_still_stops_moto() {
    let lab = Ec2Lab::start();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", lab.moto_pid)).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("launch.py"),
        "moto_pid is moto"
    );
    assert!(process::is_running(lab.moto_pid));
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &lab.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // The lab had no chance to clean up; moto notices its stdin closing.
    assert!(process::wait_until_gone(
        lab.moto_pid,
        Duration::from_secs(20)
    ));
}

#[tokio::test]
async fn two_labs_start_side_by_side() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(Ec2Lab::start);
        let b = s.spawn(Ec2Lab::start);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.endpoint, b.endpoint);
    assert_ne!(a.moto_pid, b.moto_pid);
    let (ec2_a, ec2_b) = (a.client(), b.client());
    ec2_a
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .unwrap();
    let count = |out: aws_sdk_ec2::operation::describe_vpcs::DescribeVpcsOutput| out.vpcs().len();
    let in_a = count(ec2_a.describe_vpcs().send().await.unwrap());
    let in_b = count(ec2_b.describe_vpcs().send().await.unwrap());
    assert_eq!(in_a, in_b + 1, "each lab has its own EC2");
}
