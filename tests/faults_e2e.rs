//! End-to-end under IAM faults: the operator talks to LocalStack through the fault proxy
//! (tests/support/fault_proxy.rs), which throttles, fails, hangs or denies on command.

mod support;

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::json;
use support::{
    eventually,
    fault_proxy::{Fault, FaultProxy, Rule},
    scenario::{Scenario, dynamo_spec},
    sum_metric,
};

/// Same seed every run: the faults hit the same share of calls each time.
const SEED: u64 = 9;
/// PodIamRoles per throttling run; `scripts/soak` sets a larger fleet.
fn fleet() -> usize {
    std::env::var("IRSA_FAULTS_FLEET")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(30)
}
/// No periodic re-reads during a test: every IAM call counted is caused by the test.
const NO_RESYNC: [&str; 2] = ["--resync-interval", "10m"];

/// A scenario whose operator reaches IAM only through a fault proxy.
async fn behind_proxy(label: &str, extra: &[&str]) -> (Scenario, FaultProxy) {
    let (s, proxy) = Scenario::prepare_behind_proxy(label, SEED).await;
    (s.with_operator(extra).await, proxy)
}

/// Creates the fleet under `rules` and returns (calls LocalStack served, time to all Synced).
async fn converge_fleet(label: &str, rules: Vec<Rule>) -> (usize, Duration) {
    let (s, proxy) = behind_proxy(label, &NO_RESYNC).await;
    let names: Vec<String> = (0..fleet()).map(|i| format!("app{i}")).collect();
    for name in &names {
        s.bed.create_service_account(&s.namespace, name).await;
    }
    // Start-up calls (STS, the provider check) are not part of the comparison.
    let before = proxy.served_total();
    proxy.set_rules(rules);
    let started = Instant::now();
    for name in &names {
        s.apply(name, dynamo_spec(name)).await;
    }
    eventually(&format!("{} PodIamRoles Synced", names.len()), || async {
        let synced = join_all(names.iter().map(|n| s.reports(n, "Synced"))).await;
        synced.iter().all(|ok| *ok).then_some(())
    })
    .await;
    let elapsed = started.elapsed();
    // Wait for the reconciles the last status writes trigger, so both runs count them.
    let settled = eventually("IAM calls to settle", || async {
        let seen = proxy.served_total();
        tokio::time::sleep(Duration::from_secs(2)).await;
        (proxy.served_total() == seen).then_some(seen)
    })
    .await;
    // Every throttle the proxy made up is one the operator saw and counted.
    let metrics = s.operator().metrics().await.expect("metrics are served");
    assert_eq!(
        sum_metric(&metrics, "irsa_operator_iam_throttles_total", ""),
        proxy.injected_as("Throttling") as u64
    );
    eprintln!(
        "{label}: {} calls served, {} injected, {elapsed:?}",
        settled - before,
        proxy.injected()
    );
    (settled - before, elapsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn throttling_and_server_errors_cost_few_extra_calls() {
    let (clean_calls, clean_time) = converge_fleet("clean", vec![]).await;
    let faults = vec![
        Rule::new(Fault::Throttle).probability(0.30),
        Rule::new(Fault::ServerError).probability(0.05),
    ];
    let (faulty_calls, faulty_time) = converge_fleet("faulty", faults).await;
    let call_ratio = faulty_calls as f64 / clean_calls as f64;
    eprintln!(
        "served calls ratio {call_ratio:.2} ({faulty_calls}/{clean_calls}), time ratio {:.2}",
        faulty_time.as_secs_f64() / clean_time.as_secs_f64()
    );
    assert!(
        call_ratio <= 1.3,
        "{faulty_calls} calls served under faults against {clean_calls} without"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn dropped_connections_and_slow_answers_cost_no_extra_writes() {
    let (s, proxy) = behind_proxy("drops", &NO_RESYNC).await;
    let names = ["a", "b", "c", "d", "e"];
    for name in names {
        s.bed.create_service_account(&s.namespace, name).await;
    }
    proxy.set_rules(vec![
        Rule::new(Fault::Drop).probability(0.2),
        Rule::new(Fault::Delay(Duration::from_millis(300))).probability(0.2),
    ]);
    for name in names {
        s.apply(name, dynamo_spec(name)).await;
    }
    for name in names {
        s.wait_reason(name, "Synced").await;
    }
    assert!(proxy.injected_as("Drop") > 0);
    // A dropped request never reached IAM, so each write is served exactly once.
    assert_eq!(proxy.served("CreateRole"), names.len());
    assert_eq!(proxy.served("PutRolePolicy"), names.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_hung_iam_endpoint_does_not_hold_the_only_worker() {
    let extra = ["--concurrency", "1", "--aws-timeout", "3s"];
    let (s, proxy) = behind_proxy("hung", &extra).await;
    s.bed.create_service_account(&s.namespace, "a").await;
    s.bed.create_service_account(&s.namespace, "b").await;
    proxy.set_rules(vec![Rule::new(Fault::Hang).role(&s.role_name("a"))]);
    s.apply("a", dynamo_spec("a")).await;
    eventually("a request for role a to hang", || async {
        (proxy.attempts("GetRole") > 0).then_some(())
    })
    .await;
    s.apply("b", dynamo_spec("b")).await;
    s.wait_reason("b", "Synced").await;
    assert!(!s.reports("a", "Synced").await);

    proxy.clear();
    s.wait_reason("a", "Synced").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn access_denied_is_reported_and_retried_slowly() {
    let (s, proxy) = behind_proxy("denied", &NO_RESYNC).await;
    let role = s.role_name("payments");
    proxy.set_rules(vec![
        Rule::new(Fault::access_denied("PutRolePolicy", &role)).action("PutRolePolicy"),
    ]);
    s.bed.create_service_account(&s.namespace, "payments").await;
    let created = Instant::now();
    s.apply("payments", dynamo_spec("payments")).await;
    let status = s.wait_reason("payments", "AccessDenied").await;
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains("PutRolePolicy"), "{}", ready.message);
    assert!(
        ready.message.contains("is not authorized to perform"),
        "{}",
        ready.message
    );

    // The pace, measured over a fixed window from the creation.
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(created.elapsed())).await;
    let attempts = proxy.attempts("PutRolePolicy");
    assert!(attempts <= 2, "{attempts} PutRolePolicy attempts in 20 s");

    proxy.clear();
    let mut spec = dynamo_spec("payments");
    spec["tags"]["fixed"] = json!("yes");
    s.apply("payments", spec).await;
    s.wait_reason("payments", "Synced").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_missing_managed_policy_is_rejected_without_retries() {
    let (s, proxy) = behind_proxy("nopolicy", &NO_RESYNC).await;
    s.bed.create_service_account(&s.namespace, "payments").await;
    let mut spec = dynamo_spec("payments");
    spec["managedPolicyArns"] = json!([format!(
        "arn:aws:iam::000000000000:policy/{}-missing",
        s.namespace
    )]);
    let created = Instant::now();
    s.apply("payments", spec).await;
    s.wait_reason("payments", "IamRejected").await;

    tokio::time::sleep(Duration::from_secs(15).saturating_sub(created.elapsed())).await;
    let attempts = proxy.attempts("AttachRolePolicy");
    assert!(
        attempts <= 2,
        "{attempts} AttachRolePolicy attempts in 15 s"
    );
}
