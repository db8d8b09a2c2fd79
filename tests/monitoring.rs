//! The alerts and the dashboard: Prometheus's own rule parser accepts the rules (built by
//! `scripts/tools rulecheck`), the chart and config/ ship the same rules, and every metric
//! they use is one the operator exports.

mod support;

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use irsa_core::account::AccountName;
use irsa_operator::metrics::Metrics;
use serde_json::Value;
use support::tools::{repo_root, tool};

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const CHART_RULES: &str = "charts/irsa-operator/files/prometheus-rules.yaml";

/// Metric families the operator exports, from the `# TYPE` lines of a registry with a
/// sample in each family (families without samples are not rendered).
fn exported_families() -> BTreeSet<String> {
    let metrics = Metrics::default();
    metrics.record_iam_call(&AccountName::Home, "GetRole", "success");
    metrics.record_reconcile(std::time::Duration::from_millis(5), Some("AccessDenied"));
    metrics.record_oidc_provider(&AccountName::Home, None);
    metrics
        .render()
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .map(str::to_string)
        .collect()
}

/// `irsa_operator_*` names in a PromQL expression, without the sample suffixes.
fn metrics_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("irsa_operator_"))
        .map(|word| {
            ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word)
                .to_string()
        })
        .collect()
}

fn assert_known(exprs: &[String], what: &str) {
    let families = exported_families();
    assert!(families.len() >= 10, "too few families: {families:?}");
    for expr in exprs {
        let used = metrics_in(expr);
        assert!(!used.is_empty(), "{what}: `{expr}` uses no operator metric");
        for metric in used {
            assert!(
                families.contains(&metric),
                "{what}: `{expr}` uses {metric}, which the operator does not export"
            );
        }
    }
}

#[test]
fn rules_pass_prometheus_rule_parser() {
    let checked = Command::new(tool("rulecheck"))
        .arg(repo_root().join(CHART_RULES))
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let summary = String::from_utf8_lossy(&checked.stdout);
    assert!(summary.contains("1 groups, 7 rules"), "{summary}");
}

#[test]
fn a_broken_rule_is_rejected_by_the_parser() {
    let broken = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("broken-rules.yaml");
    std::fs::write(&broken, read(CHART_RULES).replace("> 0.5", "> > 0.5")).unwrap();
    let checked = Command::new(tool("rulecheck"))
        .arg(&broken)
        .output()
        .unwrap();
    assert!(
        !checked.status.success(),
        "the parser accepted a broken expression"
    );
}

#[test]
fn config_and_chart_ship_the_same_rules_on_exported_metrics() {
    let chart: Value = serde_yaml::from_str(&read(CHART_RULES)).unwrap();
    let config: Value =
        serde_yaml::from_str(&read("config/prometheus/prometheusrule.yaml")).unwrap();
    assert_eq!(
        config["spec"]["groups"], chart["groups"],
        "config/prometheus/prometheusrule.yaml differs from {CHART_RULES}"
    );
    let rules = chart["groups"][0]["rules"].as_array().unwrap();
    let alerts: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(
        alerts,
        [
            "IrsaPodIamRolesNotReady",
            "IrsaOidcProviderUnhealthy",
            "IrsaIamWritesInSteadyState",
            "IrsaIamUnavailable",
            "IrsaCleanupBlocked",
            "IrsaOperatorNoLeader",
            "IrsaOperatorWithoutGuardrails"
        ]
    );
    let exprs: Vec<String> = rules
        .iter()
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect();
    assert_known(&exprs, "rule");
}

#[test]
fn dashboard_queries_exported_metrics() {
    let dashboard: Value =
        serde_json::from_str(&read("config/grafana/irsa-operator-dashboard.json")).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap().clone())
        .map(|target| target["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    assert_known(&exprs, "dashboard");
}
