//! End-to-end: the metrics operators alert on. PodIamRoles are counted by their Ready
//! condition, and the normal wait for the caches at start counts no error and logs no warning.

mod support;

use support::{
    eventually,
    scenario::{Scenario, dynamo_spec},
    sum_metric,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn podiamroles_are_counted_by_ready_status_and_reason() {
    let s = Scenario::prepare("metrics").await;
    s.bed.ensure_oidc_provider().await;
    s.bed.create_service_account(&s.namespace, "ready-sa").await;
    // Objects that exist before the operator starts meet its caches while they list.
    s.apply("ready", dynamo_spec("ready-sa")).await;
    s.apply("waiting", dynamo_spec("missing-sa")).await;
    // As installed (the chart requires a boundary): without one the operator warns.
    let boundary = s.create_managed_policy("boundary").await;
    let s = s
        .with_operator(&["--permissions-boundary", boundary.as_str()])
        .await;
    s.wait_reason("ready", "Synced").await;
    s.wait_reason("waiting", "ServiceAccountNotFound").await;

    let operator = s.operator();
    let text = eventually("both PodIamRoles counted", || async {
        let text = operator.metrics().await?;
        let counted = |labels: &str| sum_metric(&text, "irsa_operator_podiamroles{", labels);
        (counted(r#"ready="True",reason="Synced",deleting="false""#) == 1
            && counted(r#"ready="False",reason="ServiceAccountNotFound",deleting="false""#) == 1)
            .then_some(text)
    })
    .await;
    assert_eq!(
        sum_metric(&text, "irsa_operator_reconcile_errors_total", ""),
        0,
        "no reconcile failed, the start-up wait included:\n{text}"
    );
    let log = std::fs::read_to_string(&operator.log).unwrap();
    // The only warning is the one the not-ready PodIamRole deserves.
    let unexpected: Vec<_> = log
        .lines()
        .filter(|line| line.contains("WARN") && !line.contains("ServiceAccountNotFound"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected warnings: {unexpected:#?}"
    );
}
