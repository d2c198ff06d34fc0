//! The chart's alerts and Grafana dashboard as Prometheus reads them: promtool (Debian's
//! `prometheus` package, which .ci/run installs) checks the rules file, runs its unit tests, and
//! parses every dashboard query; each metric they read is one floatip exports.

use std::collections::BTreeSet;

use std::path::Path;

use floatip_lab::chart::monitoring::{self, Query};
use floatip_lab::chart::{self, Request};
use floatip_lab::repo_root;
use serde_json::Value;

fn promtool() -> std::path::PathBuf {
    monitoring::promtool().unwrap_or_else(|e| panic!("{e:#}"))
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(repo_root().join(monitoring::DASHBOARD)).unwrap();
    serde_json::from_str(&text).expect("dashboard.json is JSON")
}

fn rules() -> Vec<Query> {
    let text = std::fs::read_to_string(repo_root().join(monitoring::RULES)).unwrap();
    monitoring::rule_queries(&text).expect("the rules file")
}

#[test]
fn promtool_accepts_the_rules_file() {
    let file = repo_root().join(monitoring::RULES);
    let out = monitoring::run_promtool(&promtool(), &["check", "rules", file.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let found = format!("SUCCESS: {} rules found", rules().len());
    assert!(out.contains(&found), "{out}");
}

#[test]
fn the_prometheus_rule_the_chart_renders_is_valid_for_prometheus() {
    // Helm re-serializes the file (fromYaml, then toYaml): the expressions and the alert
    // templates in the annotations must come through intact, extra groups included.
    let mut req = Request::new(repo_root().join("charts/floatip"));
    req.values = Some(repo_root().join("tests/lab/chart/values-custom.yaml"));
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("lab-venv");
    let python = std::env::var_os("LAB_PYTHON").unwrap_or_else(|| "python3".into());
    let rendered = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(chart::render(&venv, Path::new(&python), &req))
        .expect("the chart renders with values-custom.yaml");
    let rule = rendered
        .documents
        .iter()
        .find(|d| d.kind() == "PrometheusRule")
        .expect("values-custom.yaml enables the PrometheusRule");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered-rules.yaml");
    std::fs::write(
        &file,
        serde_yaml_ng::to_string(&rule.object["spec"]).unwrap(),
    )
    .unwrap();
    let out = monitoring::run_promtool(&promtool(), &["check", "rules", file.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("{e:#}"));
    // Every alert of the file but the one disabled, plus the recording rule of extraGroups.
    let (disabled, extra) = (1, 1);
    let want = rules().len() - disabled + extra;
    assert!(
        out.contains(&format!("SUCCESS: {want} rules found")),
        "{out}"
    );
}

#[test]
fn every_alert_fires_on_its_failure_and_none_on_a_healthy_install() {
    let tests = repo_root().join(monitoring::RULE_TESTS);
    let out = monitoring::run_promtool(&promtool(), &["test", "rules", tests.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(out.contains("SUCCESS"), "{out}");
    // Each alert is tested both ways: firing (some exp_alerts) and silent (none).
    let cases: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&tests).unwrap()).unwrap();
    let (mut fires, mut silent) = (BTreeSet::new(), BTreeSet::new());
    for case in cases["tests"].as_array().unwrap() {
        for t in case["alert_rule_test"].as_array().unwrap() {
            let name = t["alertname"].as_str().unwrap().to_string();
            if t["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                fires.insert(name);
            } else {
                silent.insert(name);
            }
        }
    }
    for q in rules() {
        let Some(alert) = q.origin.strip_prefix("alert ") else {
            continue;
        };
        assert!(fires.contains(alert), "no test shows {alert} firing");
        assert!(silent.contains(alert), "no test shows {alert} silent");
    }
}

#[test]
fn every_dashboard_query_parses_as_promql() {
    let queries: Vec<Query> = monitoring::dashboard_queries(&dashboard())
        .into_iter()
        .map(|q| Query {
            expr: monitoring::grafana_to_promql(&q.expr),
            ..q
        })
        .collect();
    assert!(queries.len() > 30, "{} queries", queries.len());
    for q in &queries {
        assert!(
            !q.expr.contains('$'),
            "{}: a Grafana variable is left: {}",
            q.origin,
            q.expr
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yaml");
    std::fs::write(&file, monitoring::as_recording_rules(&queries)).unwrap();
    let out = monitoring::run_promtool(&promtool(), &["check", "rules", file.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{out}"
    );
}

#[test]
fn a_broken_query_is_caught() {
    // The check above would pass vacuously if promtool did not parse expressions.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    let broken = Query {
        origin: "broken".into(),
        expr: "sum by (le (rate(floatip_x_bucket[5m]))".into(),
    };
    std::fs::write(&file, monitoring::as_recording_rules(&[broken])).unwrap();
    let err = monitoring::run_promtool(&promtool(), &["check", "rules", file.to_str().unwrap()])
        .expect_err("promtool refuses it");
    assert!(err.to_string().contains("parse error"), "{err:#}");
}

/// The metrics floatip exports (src/metrics.rs): the controller's, then the agent's.
const EXPORTED: &[&str] = &[
    "floatip_build_info",
    "floatip_leader",
    "floatip_floatingip_ready",
    "floatip_floatingip_healthy",
    "floatip_floatingip_holder_info",
    "floatip_floatingip_moves_total",
    "floatip_moves_total",
    "floatip_move_duration_seconds",
    "floatip_failover_duration_seconds",
    "floatip_failover_detection_seconds",
    "floatip_probe_detection_seconds",
    "floatip_ec2_calls_total",
    "floatip_ec2_call_duration_seconds",
    "floatip_ec2_errors_total",
    "floatip_pass_duration_seconds",
    "floatip_reconcile_errors_total",
    "floatip_probes_total",
    "floatip_probe_failures_total",
    "floatip_probe_rtt_seconds",
    "floatip_probe_targets",
    "floatip_probe_overruns_total",
    "floatip_backoff_until_timestamp_seconds",
    "floatip_node_agent_ready",
    "floatip_agent_ready",
    "floatip_agent_build_info",
    "floatip_agent_addresses",
    "floatip_agent_reconcile_errors_total",
    "floatip_agent_reconcile_duration_seconds",
];

#[test]
fn alerts_and_dashboard_read_only_metrics_floatip_exports() {
    let used = monitoring::chart_metric_names(&repo_root()).unwrap();
    let exported: BTreeSet<String> = EXPORTED.iter().map(|s| s.to_string()).collect();
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(unknown.is_empty(), "not exported by floatip: {unknown:?}");
    // The dashboard shows every one of them.
    let unshown: Vec<&String> = exported.difference(&used).collect();
    assert!(
        unshown.is_empty(),
        "on no panel and in no alert: {unshown:?}"
    );
}

#[test]
fn dashboard_is_templated_and_each_panel_explains_itself() {
    let d = dashboard();
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for want in ["datasource", "namespace", "job"] {
        assert!(vars.contains(&want), "no ${want} variable: {vars:?}");
    }
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap();
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "{title}: duplicate id"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        assert!(
            p["description"].as_str().is_some_and(|s| s.len() > 30),
            "{title}: no description"
        );
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            let expr = t["expr"].as_str().unwrap();
            // Controller series are filtered to the chosen namespace and job, agents' to the
            // namespace (they are another job).
            assert!(
                expr.contains("namespace=~\"$namespace\""),
                "{title}: {expr}"
            );
        }
        if p["type"] == "timeseries" {
            assert!(
                p["fieldConfig"]["defaults"]["unit"].is_string(),
                "{title}: no unit"
            );
        }
    }
}
