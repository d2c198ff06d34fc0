use super::*;
use crate::cloud::ErrorKind;

/// The lines of `text` that start with `prefix`.
fn lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

fn has(text: &str, want: &str) {
    assert!(
        text.lines().any(|l| l == want),
        "missing {want:?} in\n{text}"
    );
}

/// The moves counter starts with every reason: the match below stops compiling when a
/// reason is added, and MOVE_REASONS must then name as many distinct ones as it has arms.
#[test]
fn every_move_reason_is_listed() {
    use MoveReason::*;
    let _every_variant = |r: MoveReason| match r {
        Initial | HolderUnhealthy | NodeNotReady | NodeCordoned | NodeTainted | NodeDeleted
        | Handover | Failback | Drift | AgentNotReady | NodeIneligible => (),
    };
    let distinct: std::collections::BTreeSet<&str> =
        MOVE_REASONS.iter().map(|r| r.as_str()).collect();
    assert_eq!(distinct.len(), 11, "one per variant in the match");
}

#[test]
fn counts_show_in_the_exposition() {
    let m = Metrics::new();
    m.moved(MoveReason::NodeCordoned, 0.2);
    m.ec2_call("AssignPrivateIpAddresses");
    m.ec2_call_took("AssignPrivateIpAddresses", 0.3);
    m.ec2_error(
        "AssignPrivateIpAddresses",
        &CloudError {
            action: "AssignPrivateIpAddresses",
            code: "UnauthorizedOperation".into(),
            message: String::new(),
            kind: ErrorKind::Permanent,
        },
    );
    m.set_leader(true);
    m.pass(0.004);
    m.failover(2.5);
    m.reconcile_error(ReconcileError::Conflict);
    m.probe_done("TCP", Some(std::time::Duration::from_millis(2)), None);
    m.probe_done("UDP", None, Some("no_reply"));
    m.probe_overrun();
    m.set_probe_targets(7);
    m.probe_detected(1.2);
    let text = m.encode();
    for want in [
        "floatip_moves_total{reason=\"NodeCordoned\"} 1",
        "floatip_move_duration_seconds_count 1",
        "floatip_ec2_calls_total{action=\"AssignPrivateIpAddresses\"} 1",
        "floatip_ec2_call_duration_seconds_count{action=\"AssignPrivateIpAddresses\"} 1",
        "floatip_ec2_call_duration_seconds_bucket{le=\"0.32\",action=\"AssignPrivateIpAddresses\"} 1",
        "floatip_ec2_call_duration_seconds_bucket{le=\"0.16\",action=\"AssignPrivateIpAddresses\"} 0",
        "floatip_ec2_errors_total{action=\"AssignPrivateIpAddresses\",kind=\"permanent\",code=\"UnauthorizedOperation\"} 1",
        "floatip_leader 1",
        "floatip_pass_duration_seconds_count 1",
        "floatip_failover_duration_seconds_count 1",
        "floatip_failover_duration_seconds_bucket{le=\"3.2\"} 1",
        "floatip_failover_duration_seconds_bucket{le=\"1.6\"} 0",
        "floatip_reconcile_errors_total{error=\"conflict\"} 1",
        "floatip_probes_total{protocol=\"TCP\",result=\"pass\"} 1",
        "floatip_probes_total{protocol=\"UDP\",result=\"fail\"} 1",
        "floatip_probe_rtt_seconds_count{protocol=\"TCP\"} 1",
        "floatip_probe_failures_total{protocol=\"UDP\",reason=\"no_reply\"} 1",
        "floatip_probe_overruns_total 1",
        "floatip_probe_targets 7",
        "floatip_probe_detection_seconds_count 1",
    ] {
        has(&text, want);
    }
}

#[test]
fn histogram_buckets_span_what_each_measures() {
    let text = Metrics::new().encode();
    let les = |name: &str| -> Vec<f64> {
        let prefix = format!("{name}_bucket{{le=\"");
        lines(&text, &prefix)
            .iter()
            .filter_map(|l| l[prefix.len()..].split('"').next()?.parse().ok())
            .collect()
    };
    let span = |name: &str| {
        let le = les(name);
        let finite: Vec<f64> = le.into_iter().filter(|v| v.is_finite()).collect();
        (finite[0], *finite.last().unwrap())
    };
    let (lo, hi) = span("floatip_ec2_call_duration_seconds");
    assert!(lo <= 0.005 && hi >= 30.0, "EC2 calls: {lo}..{hi}");
    let (lo, hi) = span("floatip_failover_duration_seconds");
    assert!(
        lo <= 0.05 && (50.0..=120.0).contains(&hi),
        "failovers: {lo}..{hi}"
    );
    let (lo, hi) = span("floatip_pass_duration_seconds");
    assert!(lo <= 0.001 && hi >= 10.0, "passes: {lo}..{hi}");
}

#[test]
fn a_fresh_registry_shows_every_finite_series_at_zero() {
    let text = Metrics::new().encode();
    has(
        &text,
        &format!("floatip_build_info{{version=\"{VERSION}\",commit=\"{COMMIT}\"}} 1"),
    );
    assert!(!COMMIT.is_empty());
    for reason in MOVE_REASONS {
        has(
            &text,
            &format!("floatip_moves_total{{reason=\"{}\"}} 0", reason.as_str()),
        );
    }
    assert_eq!(lines(&text, "floatip_moves_total{").len(), 11);
    for action in crate::cloud::aws::ACTIONS {
        has(
            &text,
            &format!("floatip_ec2_calls_total{{action=\"{action}\"}} 0"),
        );
        has(
            &text,
            &format!("floatip_ec2_call_duration_seconds_count{{action=\"{action}\"}} 0"),
        );
    }
    for protocol in ["TCP", "UDP"] {
        for result in ["pass", "fail"] {
            has(
                &text,
                &format!("floatip_probes_total{{protocol=\"{protocol}\",result=\"{result}\"}} 0"),
            );
        }
        has(
            &text,
            &format!(
                "floatip_probe_failures_total{{protocol=\"{protocol}\",reason=\"timeout\"}} 0"
            ),
        );
    }
    for error in ["not_leader", "conflict", "kube"] {
        has(
            &text,
            &format!("floatip_reconcile_errors_total{{error=\"{error}\"}} 0"),
        );
    }
    for name in [
        "floatip_pass_duration_seconds_count 0",
        "floatip_failover_duration_seconds_count 0",
        "floatip_move_duration_seconds_count 0",
        "floatip_leader 0",
    ] {
        has(&text, name);
    }
    // Open-ended labels: no series until there is something to show.
    assert!(lines(&text, "floatip_ec2_errors_total{").is_empty());
    for family in [
        "floatip_floatingip_ready{",
        "floatip_floatingip_healthy{",
        "floatip_floatingip_holder_info{",
        "floatip_floatingip_moves_total{",
        "floatip_node_agent_ready{",
    ] {
        assert!(
            lines(&text, family).is_empty(),
            "{family} on a fresh registry"
        );
    }
}

fn held(node: &str) -> FloatingIpState {
    FloatingIpState {
        ready: true,
        healthy: true,
        holder: Some(Holding {
            node: node.into(),
            address: "10.0.8.100".into(),
            mode: "SecondaryIP".into(),
        }),
    }
}

#[test]
fn one_holder_series_per_floatingip_and_the_old_one_goes_on_a_move() {
    let m = Metrics::new();
    m.set_leader(true);
    m.floatingip("a", &held("n1"));
    let text = m.encode();
    assert_eq!(
        lines(&text, "floatip_floatingip_holder_info{"),
        ["floatip_floatingip_holder_info{floatingip=\"a\",node=\"n1\",address=\"10.0.8.100\",mode=\"SecondaryIP\"} 1"]
    );
    has(&text, "floatip_floatingip_ready{floatingip=\"a\"} 1");
    has(&text, "floatip_floatingip_healthy{floatingip=\"a\"} 1");
    has(&text, "floatip_floatingip_moves_total{floatingip=\"a\"} 0");

    m.floatingip_moved("a");
    m.floatingip("a", &held("n2"));
    let text = m.encode();
    assert_eq!(
        lines(&text, "floatip_floatingip_holder_info{"),
        ["floatip_floatingip_holder_info{floatingip=\"a\",node=\"n2\",address=\"10.0.8.100\",mode=\"SecondaryIP\"} 1"]
    );
    has(&text, "floatip_floatingip_moves_total{floatingip=\"a\"} 1");

    let nobody = FloatingIpState {
        ready: false,
        healthy: false,
        holder: None,
    };
    m.floatingip("a", &nobody);
    let text = m.encode();
    assert!(
        lines(&text, "floatip_floatingip_holder_info{").is_empty(),
        "{text}"
    );
    has(&text, "floatip_floatingip_ready{floatingip=\"a\"} 0");
    has(&text, "floatip_floatingip_healthy{floatingip=\"a\"} 0");
}

#[test]
fn a_first_sight_does_not_overwrite_what_the_leader_wrote() {
    let m = Metrics::new();
    m.floatingip_seen("a", &held("n1"));
    m.floatingip("a", &held("n2"));
    // A later pass reads a cache that does not have its own write yet.
    m.floatingip_seen("a", &held("n1"));
    let text = m.encode();
    assert_eq!(lines(&text, "floatip_floatingip_holder_info{").len(), 1);
    assert!(text.contains("node=\"n2\""), "{text}");
}

#[test]
fn a_deleted_floatingip_loses_all_its_series() {
    let m = Metrics::new();
    m.floatingip("a", &held("n1"));
    m.floatingip("b", &held("n2"));
    m.floatingip_moved("b");
    m.retain_floatingips(|name| name == "a");
    let text = m.encode();
    for family in [
        "floatip_floatingip_ready{",
        "floatip_floatingip_healthy{",
        "floatip_floatingip_holder_info{",
        "floatip_floatingip_moves_total{",
    ] {
        let found = lines(&text, family);
        assert_eq!(found.len(), 1, "{family}: {found:?}");
        assert!(found[0].contains("floatingip=\"a\""), "{found:?}");
    }
}

#[test]
fn losing_leadership_drops_every_series_only_the_leader_exports() {
    let m = Metrics::new();
    m.set_leader(true);
    m.floatingip("a", &held("n1"));
    m.floatingip_moved("a");
    let nodes = [("n1".to_string(), true), ("n2".to_string(), false)].into();
    m.set_agents_ready(&nodes);
    m.moved(MoveReason::HolderUnhealthy, 0.1);
    m.backoff("a", Some(1_900_000_000));
    assert_eq!(lines(&m.encode(), "floatip_node_agent_ready{").len(), 2);
    assert_eq!(
        lines(&m.encode(), "floatip_backoff_until_timestamp_seconds{").len(),
        1
    );
    m.set_leader(false);
    let text = m.encode();
    for family in [
        "floatip_floatingip_",
        "floatip_node_agent_ready{",
        "floatip_backoff_until_timestamp_seconds{",
    ] {
        let found: Vec<&str> = lines(&text, family);
        assert!(found.is_empty(), "a non-leader exports {found:?}");
    }
    // What this replica did while it led stays: counters only go up.
    has(&text, "floatip_moves_total{reason=\"HolderUnhealthy\"} 1");
    // Leading again, the FloatingIP starts over from its status.
    m.set_leader(true);
    m.floatingip_seen("a", &held("n1"));
    has(
        &m.encode(),
        "floatip_floatingip_moves_total{floatingip=\"a\"} 0",
    );
}

#[test]
fn agent_ready_follows_the_candidate_nodes() {
    let m = Metrics::new();
    let nodes = [("n1".to_string(), true), ("n2".to_string(), false)].into();
    m.set_agents_ready(&nodes);
    let text = m.encode();
    has(&text, "floatip_node_agent_ready{node=\"n1\"} 1");
    has(&text, "floatip_node_agent_ready{node=\"n2\"} 0");
    let nodes = [("n2".to_string(), true), ("n3".to_string(), false)].into();
    m.set_agents_ready(&nodes);
    let text = m.encode();
    has(&text, "floatip_node_agent_ready{node=\"n2\"} 1");
    has(&text, "floatip_node_agent_ready{node=\"n3\"} 0");
    assert_eq!(lines(&text, "floatip_node_agent_ready{").len(), 2, "{text}");
    assert!(!text.contains("node=\"n1\""), "n1 is gone: {text}");
}

#[test]
fn agent_metrics_start_at_zero_and_count_failed_reconciles() {
    let m = AgentMetrics::new();
    let text = m.encode();
    for want in [
        "floatip_agent_addresses 0",
        "floatip_agent_ready 0",
        "floatip_agent_reconcile_errors_total 0",
        "floatip_agent_reconcile_duration_seconds_count 0",
        "floatip_agent_peer_probes_total{result=\"pass\"} 0",
        "floatip_agent_peer_probes_total{result=\"fail\"} 0",
        &format!("floatip_agent_build_info{{version=\"{VERSION}\",commit=\"{COMMIT}\"}} 1"),
    ] {
        has(&text, want);
    }
    assert!(
        !text.contains("floatip_moves") && !text.contains("floatip_build_info"),
        "no controller metric: {text}"
    );
    m.reconciled(0.002, true, Some(2));
    m.reconciled(0.001, false, Some(1));
    m.reconciled(0.001, false, None);
    m.set_ready(true);
    let text = m.encode();
    for want in [
        "floatip_agent_addresses 1",
        "floatip_agent_ready 1",
        "floatip_agent_reconcile_errors_total 2",
        "floatip_agent_reconcile_duration_seconds_count 3",
    ] {
        has(&text, want);
    }
}

#[test]
fn the_peer_probe_engine_counts_into_the_agent() {
    let agent = AgentMetrics::new();
    let peers = agent.peer_probe_metrics();
    peers.probe_done("TCP", Some(std::time::Duration::from_millis(1)), None);
    peers.probe_done("TCP", None, Some("timeout"));
    peers.probe_done("UDP", None, Some("refused"));
    let text = agent.encode();
    has(&text, "floatip_agent_peer_probes_total{result=\"pass\"} 1");
    has(&text, "floatip_agent_peer_probes_total{result=\"fail\"} 2");
    // A controller's own probes count nowhere else.
    let controller = Metrics::new();
    controller.probe_done("TCP", None, Some("timeout"));
    has(
        &agent.encode(),
        "floatip_agent_peer_probes_total{result=\"fail\"} 2",
    );
}
