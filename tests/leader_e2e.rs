//! End-to-end: two replicas of the operator share one leader Lease. Only the leader
//! writes; after a SIGKILL of the leader the standby takes over and carries on without
//! repeating a write; a SIGTERM releases the Lease.

mod support;

use std::time::Instant;

use irsa_operator::leader::lease_name;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::MicroTime, jiff::Timestamp};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;
use support::{Operator, eventually, eventually_matches, scenario::Scenario, sum_metric};

/// Shorter than the defaults so that the failover fits the test: the Lease expires 8s after
/// the last renewal, renewed every 2s.
const TIMING: [&str; 4] = [
    "--leader-election-lease-duration",
    "8s",
    "--leader-election-renew-interval",
    "2s",
];
const ROLES: usize = 20;
const AFTER_FAILOVER: usize = 5;
/// Creating a role with an inline policy: CreateRole, PutRolePolicy.
const WRITES_PER_ROLE: u64 = 2;

fn replica(s: &Scenario, pod_name: &str) -> Operator {
    Operator::start_with_env(
        &s.bed,
        &s.cluster,
        &s.namespace,
        &TIMING,
        &[("POD_NAME".into(), pod_name.into())],
    )
}

fn leases(s: &Scenario) -> Api<Lease> {
    Api::namespaced(s.bed.kube.clone(), &s.bed.kube_config.default_namespace)
}

async fn holder(s: &Scenario) -> Option<String> {
    let lease = leases(s)
        .get(&lease_name(&s.cluster))
        .await
        .expect("the Lease exists");
    lease.spec?.holder_identity
}

async fn iam_calls(operator: &Operator) -> u64 {
    let text = operator.metrics().await.expect("metrics are served");
    sum_metric(&text, "irsa_operator_iam_calls_total", "")
}

async fn is_leader(operator: &Operator) -> bool {
    let text = operator.metrics().await.unwrap_or_default();
    text.lines().any(|line| line == "irsa_operator_leader 1")
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("app-{i}")).collect()
}

// Also the regression test for starvation: when drift checks alone asked for more IAM
// calls than the budget allows, some PodIamRoles created after a takeover were never
// reconciled. Drift checks now wait for spare calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn only_the_leader_writes_and_a_standby_takes_over() {
    let s = Scenario::prepare("leader").await;
    s.bed.ensure_oidc_provider().await;
    let first = replica(&s, "replica-a");
    first.wait_ready().await;
    let second = replica(&s, "replica-b");
    eventually("the second replica to stand by, ready", || async {
        second.readyz().await.filter(|body| body == "standby")
    })
    .await;
    assert_eq!(holder(&s).await.as_deref(), Some("replica-a"));

    let before = names(0..ROLES);
    s.create_synced(&before).await;
    let leader_writes = first.iam_writes().await;
    let standby_writes = second.iam_writes().await;
    eprintln!("IAM writes for {ROLES} roles: leader {leader_writes}, standby {standby_writes}");
    assert_eq!(
        leader_writes + standby_writes,
        WRITES_PER_ROLE * ROLES as u64
    );
    assert_eq!(iam_calls(&second).await, 0, "the standby called IAM");
    assert!(is_leader(&first).await && !is_leader(&second).await);

    let killed = Instant::now();
    first.stop();
    eventually("the standby to take the Lease over", || async {
        is_leader(&second).await.then_some(())
    })
    .await;
    let failover = killed.elapsed();
    eprintln!(
        "failover after SIGKILL of the leader: {:.2}s (lease duration 8s, renewed every 2s)",
        failover.as_secs_f64()
    );
    second.wait_ready().await;
    assert_eq!(holder(&s).await.as_deref(), Some("replica-b"));

    let after = names(ROLES..ROLES + AFTER_FAILOVER);
    s.create_synced(&after).await;
    // Taking over the roles in sync re-read them without writing.
    assert_eq!(
        second.iam_writes().await,
        WRITES_PER_ROLE * AFTER_FAILOVER as u64
    );

    for name in before.iter().chain(&after) {
        s.roles()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete PodIamRole");
    }
    eventually_matches(
        "every PodIamRole to be gone",
        || async {
            s.roles()
                .list(&Default::default())
                .await
                .map(|l| l.items.len())
                .ok()
        },
        |left| *left == Some(0),
    )
    .await;
    for name in before.iter().chain(&after) {
        assert!(
            s.role(&s.role_name(name)).await.is_none(),
            "{name} left its role"
        );
    }

    let status = second.terminate().await;
    assert!(status.success(), "SIGTERM exit: {status}");
    assert_eq!(holder(&s).await, None, "SIGTERM did not release the Lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_leader_that_loses_the_lease_stands_by_and_leads_again() {
    let s = Scenario::prepare("lease-lost").await;
    s.bed.ensure_oidc_provider().await;
    let operator = replica(&s, "replica-a");
    operator.wait_ready().await;

    // Another holder appears, as when this replica was paused past its Lease: it must stop.
    let hijack = json!({"spec": {"holderIdentity": "intruder",
        "acquireTime": MicroTime(Timestamp::now()), "renewTime": MicroTime(Timestamp::now()),
        "leaseDurationSeconds": 8}});
    leases(&s)
        .patch(
            &lease_name(&s.cluster),
            &PatchParams::default(),
            &Patch::Merge(&hijack),
        )
        .await
        .expect("hijack the Lease");
    eventually("the leader to notice and stand by", || async {
        let standby = operator.readyz().await.filter(|body| body == "standby");
        let log = std::fs::read_to_string(&operator.log).unwrap_or_default();
        (standby.is_some() && !is_leader(&operator).await && log.contains("lost the leader Lease"))
            .then_some(())
    })
    .await;

    // The intruder never renews: once its Lease expires, the replica leads again and works.
    let name = names(0..1);
    s.create_synced(&name).await;
    assert!(is_leader(&operator).await);
    assert_eq!(holder(&s).await.as_deref(), Some("replica-a"));
    assert_eq!(operator.iam_writes().await, WRITES_PER_ROLE);
}
