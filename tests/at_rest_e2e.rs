//! End-to-end: PodIamRoles in sync cost no per-role IAM read at rest. Each resync pass is
//! one bulk listing of the account (`GetAccountAuthorizationDetails`), whatever the number
//! of roles, and drift found in it is repaired with fresh reads.

mod support;

use irsa_operator::policy::{decode_iam_document, semantically_equal};
use serde_json::Value;
use support::{
    eventually,
    scenario::{DYNAMO_POLICY, Scenario, dynamo_spec},
    sum_metric,
};

const ROLES: usize = 10;
/// The reads a drift check without a listing makes for each role.
const PER_ROLE_READS: [&str; 4] = [
    "GetRole",
    "ListRolePolicies",
    "GetRolePolicy",
    "ListAttachedRolePolicies",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_in_sync_cost_one_listing_per_pass_and_no_per_role_read() {
    let Some(s) = Scenario::start("at-rest").await else {
        return;
    };
    let names: Vec<String> = (0..ROLES).map(|i| format!("app-{i}")).collect();
    for name in &names {
        s.bed.create_service_account(&s.namespace, name).await;
        s.apply(name, dynamo_spec(name)).await;
    }
    for name in &names {
        s.wait_reason(name, "Synced").await;
    }
    let operator = s.operator();
    let calls = |filter: String| async move {
        sum_metric(
            &operator.metrics().await.unwrap_or_default(),
            "irsa_operator_iam_calls_total",
            &filter,
        )
    };
    let per_role_reads = || async {
        let mut total = 0;
        for operation in PER_ROLE_READS {
            total += calls(format!("operation=\"{operation}\"")).await;
        }
        total
    };
    let listings = || calls("operation=\"GetAccountAuthorizationDetails\"".into());
    let (reads_before, writes_before, listings_before) = (
        per_role_reads().await,
        operator.iam_writes().await,
        listings().await,
    );

    // Three passes at rest (resync is 5 s), each due drift check included.
    eventually("three more listings", || async {
        (listings().await >= listings_before + 3).then_some(())
    })
    .await;
    assert_eq!(
        per_role_reads().await - reads_before,
        0,
        "per-role reads at rest"
    );
    assert_eq!(
        operator.iam_writes().await - writes_before,
        0,
        "writes at rest"
    );
    eprintln!(
        "{ROLES} roles at rest over {} listings: 0 per-role reads, 0 writes",
        listings().await - listings_before
    );

    // Drift is found in a listing, confirmed by a fresh read, and repaired.
    let role_name = s.role_name("app-0");
    s.bed
        .iam
        .delete_role_policy()
        .role_name(&role_name)
        .policy_name("irsa-operator")
        .send()
        .await
        .expect("DeleteRolePolicy behind the operator's back");
    let policy: Value = serde_json::from_str(DYNAMO_POLICY).unwrap();
    eventually("the inline policy to be restored", || async {
        let output = s
            .bed
            .iam
            .get_role_policy()
            .role_name(&role_name)
            .policy_name("irsa-operator")
            .send()
            .await
            .ok()?;
        let document = decode_iam_document(output.policy_document()).ok()?;
        semantically_equal(&document, &policy).then_some(())
    })
    .await;
    assert_eq!(
        operator.iam_writes().await - writes_before,
        1,
        "the repair is one PutRolePolicy"
    );
}
