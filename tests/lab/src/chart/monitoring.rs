//! The chart's monitoring files as Prometheus sees them: the alerts
//! (charts/floatip/files/prometheus-rules.yaml) and the Grafana dashboard
//! (charts/floatip/files/dashboard.json). Every PromQL expression in them, the metric names
//! they read (for a test that a running floatip exports each), and `promtool`, which parses
//! and unit-tests them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use regex::Regex;
use serde_json::Value;

/// The alerting rules, relative to the repository root.
pub const RULES: &str = "charts/floatip/files/prometheus-rules.yaml";
/// The Grafana dashboard, relative to the repository root.
pub const DASHBOARD: &str = "charts/floatip/files/dashboard.json";
/// `promtool test rules` cases for [`RULES`].
pub const RULE_TESTS: &str = "tests/lab/chart/prometheus-rules.test.yaml";

/// One PromQL expression and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// `alert FloatipNoLeader`, `panel "Moves by reason" A`, `variable job`...
    pub origin: String,
    pub expr: String,
}

/// Every rule's expression in a Prometheus rules file (`groups: [{rules: [...]}]`).
pub fn rule_queries(rules_yaml: &str) -> Result<Vec<Query>> {
    let doc: Value = serde_yaml_ng::from_str(rules_yaml).context("a rules file is YAML")?;
    let mut out = Vec::new();
    for group in doc["groups"]
        .as_array()
        .context("the rules file has no groups")?
    {
        for rule in group["rules"].as_array().into_iter().flatten() {
            let name = match (rule["alert"].as_str(), rule["record"].as_str()) {
                (Some(a), _) => format!("alert {a}"),
                (None, Some(r)) => format!("record {r}"),
                (None, None) => bail!("a rule of group {} has no alert or record", group["name"]),
            };
            let expr = rule["expr"]
                .as_str()
                .with_context(|| format!("{name}: no expr"))?;
            out.push(Query {
                origin: name,
                expr: expr.to_string(),
            });
        }
    }
    Ok(out)
}

/// Every PromQL expression of a Grafana dashboard, as Grafana sends it (variables still in):
/// panel targets (rows' nested panels included), annotation queries, and the series selector
/// of each `label_values(SELECTOR, label)` variable query.
pub fn dashboard_queries(dashboard: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    fn panels(list: &Value, out: &mut Vec<Query>) {
        for p in list.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or_default();
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push(Query {
                        origin: format!("panel {title:?} {}", t["refId"].as_str().unwrap_or("")),
                        expr: expr.to_string(),
                    });
                }
            }
            panels(&p["panels"], out);
        }
    }
    panels(&dashboard["panels"], &mut out);
    for a in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(expr) = a["expr"].as_str() {
            out.push(Query {
                origin: format!("annotation {}", a["name"].as_str().unwrap_or_default()),
                expr: expr.to_string(),
            });
        }
    }
    let label_values = Regex::new(r"^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$")
        .expect("a valid regex");
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["type"] != "query" {
            continue;
        }
        let query = v["query"]["query"].as_str().or(v["query"].as_str());
        let Some(query) = query else { continue };
        let origin = format!("variable {}", v["name"].as_str().unwrap_or_default());
        // label_values(SELECTOR, label) is Grafana's; its selector is PromQL. Anything else
        // Grafana sends as a query, so it must be PromQL itself.
        let expr = match label_values.captures(query) {
            Some(c) => c[1].to_string(),
            None => query.to_string(),
        };
        out.push(Query { origin, expr });
    }
    out
}

/// A dashboard expression with Grafana's variables replaced by values Prometheus accepts:
/// range variables (`[$__rate_interval]`, `[$window]`, `[${x}]`) by `5m`, every other
/// `$name`, `${name}` or `${name:format}` (they sit in label matchers) by `x`.
pub fn grafana_to_promql(expr: &str) -> String {
    let range =
        Regex::new(r"\[\$\{?[A-Za-z_][A-Za-z0-9_]*(:[A-Za-z]+)?\}?\]").expect("a valid regex");
    let var = Regex::new(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:[A-Za-z]+)?\}|\$[A-Za-z_][A-Za-z0-9_]*")
        .expect("a valid regex");
    let expr = range.replace_all(expr, "[5m]");
    var.replace_all(&expr, "x").into_owned()
}

/// The floatip metric names the expressions read, as the processes export them: a histogram's
/// `_bucket`, `_count` and `_sum` series count as the histogram's own name. `_count` and
/// `_sum` are taken as histogram series when the same base is read as `_bucket` somewhere or
/// is a duration (`*_seconds`: every floatip histogram measures time, and no counter or gauge
/// name ends in `_seconds_count` or `_seconds_sum`). Recording rules' names (with a colon) are
/// not metrics and are left out.
pub fn metric_names<'a>(exprs: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let name = Regex::new(r"(^|[^A-Za-z0-9_:])(floatip_[A-Za-z0-9_]*)").expect("a valid regex");
    let mut raw = BTreeSet::new();
    for expr in exprs {
        for c in name.captures_iter(expr) {
            raw.insert(c[2].to_string());
        }
    }
    let buckets: BTreeSet<String> = raw
        .iter()
        .filter_map(|n| n.strip_suffix("_bucket").map(str::to_string))
        .collect();
    raw.iter()
        .map(|n| {
            if let Some(base) = n.strip_suffix("_bucket") {
                return base.to_string();
            }
            for suffix in ["_count", "_sum"] {
                if let Some(base) = n.strip_suffix(suffix) {
                    if buckets.contains(base) || base.ends_with("_seconds") {
                        return base.to_string();
                    }
                }
            }
            n.clone()
        })
        .collect()
}

/// Every floatip metric the chart's alerts and dashboard read (see [`metric_names`]).
pub fn chart_metric_names(repo_root: &Path) -> Result<BTreeSet<String>> {
    let rules = read(&repo_root.join(RULES))?;
    let dashboard: Value = serde_json::from_str(&read(&repo_root.join(DASHBOARD))?)
        .with_context(|| format!("{DASHBOARD} is JSON"))?;
    let mut queries = rule_queries(&rules)?;
    queries.extend(dashboard_queries(&dashboard));
    Ok(metric_names(queries.iter().map(|q| q.expr.as_str())))
}

/// A rules file recording each query under its own name, for `promtool check rules` to parse.
pub fn as_recording_rules(queries: &[Query]) -> String {
    let mut out = String::from("groups:\n  - name: parsed\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        let expr = serde_json::to_string(&q.expr).expect("a string serializes");
        out.push_str(&format!(
            "      # {}\n      - record: query_{i}\n        expr: {expr}\n",
            q.origin.replace('\n', " ")
        ));
    }
    out
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// promtool, from the Debian package `prometheus` (.ci/run installs it), or `$PROMTOOL`.
pub fn promtool() -> Result<PathBuf> {
    let program = std::env::var_os("PROMTOOL").unwrap_or_else(|| "promtool".into());
    match Command::new(&program).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(PathBuf::from(program)),
        _ => bail!(
            "{} is not installed: it checks the chart's alerts and dashboard queries. Install \
             it with `apt-get install --no-install-recommends prometheus` (as .ci/run does), or \
             point PROMTOOL at one",
            PathBuf::from(program).display()
        ),
    }
}

/// Runs `promtool ARGS...`; fails with its output unless it succeeds.
pub fn run_promtool(promtool: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(promtool)
        .args(args)
        .output()
        .with_context(|| format!("running {}", promtool.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("promtool {} failed:\n{text}", args.join(" "));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn grafana_variables_become_promql() {
        assert_eq!(
            grafana_to_promql(
                r#"sum by (le) (rate(floatip_x_bucket{namespace=~"$namespace", job=~"${job:regex}"}[$__rate_interval])) and on () vector(1)[${window}]"#
            ),
            r#"sum by (le) (rate(floatip_x_bucket{namespace=~"x", job=~"x"}[5m])) and on () vector(1)[5m]"#
        );
    }

    #[test]
    fn histogram_series_count_as_the_histogram() {
        let names = metric_names([
            "histogram_quantile(0.9, rate(floatip_move_duration_seconds_bucket[5m]))",
            "rate(floatip_pass_duration_seconds_count[5m]) + floatip_pass_duration_seconds_sum",
            "floatip_probe_rtt_seconds_bucket + floatip_probe_rtt_seconds_count",
            "floatip_probes_total + floatip_widgets_count",
            "floatip:floatingips_ready:count + x_floatip_other",
        ]);
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            [
                "floatip_move_duration_seconds",
                "floatip_pass_duration_seconds",
                "floatip_probe_rtt_seconds",
                "floatip_probes_total",
                "floatip_widgets_count",
            ]
        );
    }

    #[test]
    fn dashboard_queries_include_nested_panels_annotations_and_variables() {
        let d = json!({
            "panels": [
                {"title": "a", "targets": [{"refId": "A", "expr": "floatip_a"}]},
                {"type": "row", "title": "r", "panels": [
                    {"title": "b", "targets": [{"refId": "B", "expr": "floatip_b"}, {"refId": "C"}]}
                ]}
            ],
            "annotations": {"list": [{"name": "m", "expr": "floatip_m"}, {"name": "builtin"}]},
            "templating": {"list": [
                {"name": "ns", "type": "query", "query": {"query": "label_values(floatip_c{x=\"1\"}, namespace)"}},
                {"name": "raw", "type": "query", "query": "sum(floatip_d)"},
                {"name": "datasource", "type": "datasource", "query": "prometheus"}
            ]}
        });
        let exprs: Vec<String> = dashboard_queries(&d).into_iter().map(|q| q.expr).collect();
        assert_eq!(
            exprs,
            [
                "floatip_a",
                "floatip_b",
                "floatip_m",
                "floatip_c{x=\"1\"}",
                "sum(floatip_d)"
            ]
        );
    }

    #[test]
    fn rules_files_give_each_expression_with_its_rule() {
        let q = rule_queries(
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n  - record: r:x\n    expr: sum(up)\n",
        )
        .unwrap();
        assert_eq!(
            q,
            [
                Query {
                    origin: "alert A".into(),
                    expr: "up == 0".into()
                },
                Query {
                    origin: "record r:x".into(),
                    expr: "sum(up)".into()
                },
            ]
        );
        assert!(rule_queries("groups:\n- name: g\n  rules:\n  - expr: up\n").is_err());
    }
}
