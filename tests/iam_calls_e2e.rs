//! End-to-end: the IAM calls each change costs, counted by operation from the operator's
//! metrics (deterministic, so asserted exactly). A create is CreateRole + PutRolePolicy, an
//! update GetRole then the writes of what changed (the bulk listing names the policies), a
//! delete DeleteRolePolicy and DeleteRole, with no read when the bulk listing already tells;
//! at rest each pass is one listing (`GetAccountAuthorizationDetails`) whatever the number
//! of roles, and drift found in it is repaired with fresh reads; a restart reads no role
//! its first listing shows in sync, and a failed listing does not make creates or deletions
//! read.

mod support;

use irsa_core::policy::semantically_equal;
use kube::api::DeleteParams;
use serde_json::{Value, json};
use support::{
    Operator, eventually,
    fault_proxy::{Fault, Rule},
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

/// Calls of one operation so far.
async fn calls(operator: &Operator, operation: &str) -> u64 {
    sum_metric(
        &operator.metrics().await.unwrap_or_default(),
        "irsa_operator_iam_calls_total",
        &format!("operation=\"{operation}\""),
    )
}

async fn per_role_reads(operator: &Operator) -> u64 {
    let mut total = 0;
    for operation in PER_ROLE_READS {
        total += calls(operator, operation).await;
    }
    total
}

/// Waits until a listing that started after this call is the one reconciles go by: the
/// one under way may have started earlier, and the next is counted a moment before it is
/// published, so three more.
async fn fresh_listing(operator: &Operator) {
    let seen = calls(operator, "GetAccountAuthorizationDetails").await;
    eventually("a fresh listing", || async {
        (calls(operator, "GetAccountAuthorizationDetails").await >= seen + 3).then_some(())
    })
    .await;
}

/// One kind of update: what it changes in a spec, and the writes it costs.
struct Update {
    aspect: &'static str,
    change: fn(&mut Value, &Fixtures),
    writes: &'static [&'static str],
}

/// What the updates refer to.
struct Fixtures {
    managed_policy: String,
}

const UPDATES: [Update; 4] = [
    Update {
        aspect: "inline policy",
        change: |spec, _| spec["policy"]["Statement"][0]["Action"] = json!(["dynamodb:Query"]),
        writes: &["PutRolePolicy"],
    },
    Update {
        aspect: "managed policies",
        change: |spec, fixtures| spec["managedPolicyArns"] = json!([fixtures.managed_policy]),
        writes: &["AttachRolePolicy"],
    },
    Update {
        aspect: "trust (ServiceAccount)",
        change: |spec, _| {
            let renamed = format!("{}-v2", spec["serviceAccountName"].as_str().unwrap());
            spec["serviceAccountName"] = json!(renamed);
        },
        writes: &["UpdateAssumeRolePolicy"],
    },
    Update {
        aspect: "tags",
        change: |spec, _| spec["tags"]["team"] = json!("checkout"),
        writes: &["TagRole"],
    },
];

/// ROLES PodIamRoles, created together, until all are in sync.
async fn create_synced(s: &Scenario) {
    let names: Vec<String> = (0..ROLES).map(|i| format!("app-{i}")).collect();
    s.create_synced(&names).await;
}

/// Drift behind the operator's back: the role loses its inline policy.
async fn remove_inline_policy(s: &Scenario, role_name: &str) {
    s.bed
        .iam
        .delete_role_policy()
        .role_name(role_name)
        .policy_name("irsa-operator")
        .send()
        .await
        .expect("DeleteRolePolicy behind the operator's back");
}

/// Waits until the operator has counted a write since `before`: IAM shows the repair a
/// moment before the operator's metrics do.
async fn repair_counted(operator: &Operator, before: u64) {
    eventually("the repair to be counted", || async {
        (operator.iam_writes().await > before).then_some(())
    })
    .await;
}

/// Deletes the PodIamRoles `names` and waits until they and their roles are gone.
async fn delete_all(s: &Scenario, names: &[String]) {
    for name in names {
        s.roles()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete PodIamRole");
    }
    for name in names {
        eventually(&format!("{name} to be gone"), || async {
            s.roles().get_opt(name).await.ok()?.is_none().then_some(())
        })
        .await;
        assert!(
            s.role(&s.role_name(name)).await.is_none(),
            "{name} left its role"
        );
    }
}

/// Waits until the role's inline policy is the one its PodIamRole asks for again.
async fn wait_restored(s: &Scenario, role_name: &str) {
    let policy: Value = serde_json::from_str(DYNAMO_POLICY).unwrap();
    eventually("the inline policy to be restored", || async {
        let document = s.try_inline_policy(role_name).await?;
        semantically_equal(&document, &policy).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn creates_updates_and_deletes_cost_their_writes_and_only_updates_read() {
    let s = Scenario::prepare("calls").await;
    s.bed.ensure_oidc_provider().await;
    // No drift checks during the test: every call counted is a change's.
    let s = s
        .with_operator(&["--resync-interval", "10m", "--listing-interval", "2s"])
        .await;
    let operator = s.operator();
    let names: Vec<String> = (0..ROLES).map(|i| format!("app-{i}")).collect();
    for name in &names {
        s.bed.create_service_account(&s.namespace, name).await;
        // For the trust update.
        let renamed = format!("{name}-v2");
        s.bed.create_service_account(&s.namespace, &renamed).await;
    }
    // Creates after a listing that has none of these names.
    fresh_listing(operator).await;
    for name in &names {
        s.apply(name, dynamo_spec(name)).await;
    }
    for name in &names {
        s.wait_reason(name, "Synced").await;
    }
    let n = ROLES as u64;
    assert_eq!(calls(operator, "CreateRole").await, n);
    assert_eq!(calls(operator, "PutRolePolicy").await, n);
    assert_eq!(operator.iam_writes().await, 2 * n, "writes per create");
    assert_eq!(per_role_reads(operator).await, 0, "reads per create");

    // Each update, once a listing shows the last write: GetRole (whose role it is, read
    // afresh: a listing is no authority to write) and the writes of what changed; the
    // listing names the policies and attachments.
    let fixtures = Fixtures {
        managed_policy: s.create_managed_policy("calls").await,
    };
    let mut specs: Vec<Value> = names.iter().map(|name| dynamo_spec(name)).collect();
    let mut summary = Vec::new();
    for update in &UPDATES {
        fresh_listing(operator).await;
        let (reads_before, writes_before) =
            (per_role_reads(operator).await, operator.iam_writes().await);
        let mut counted_before = Vec::new();
        for write in update.writes {
            counted_before.push(calls(operator, write).await);
        }
        let get_role_before = calls(operator, "GetRole").await;
        for (name, spec) in names.iter().zip(&mut specs) {
            (update.change)(spec, &fixtures);
            s.apply(name, spec.clone()).await;
        }
        for name in &names {
            s.wait_reason(name, "Synced").await;
        }
        let writes = operator.iam_writes().await - writes_before;
        let reads = per_role_reads(operator).await - reads_before;
        assert_eq!(
            writes,
            update.writes.len() as u64 * n,
            "writes per {} update",
            update.aspect
        );
        for (write, before) in update.writes.iter().zip(counted_before) {
            assert_eq!(
                calls(operator, write).await - before,
                n,
                "{write} per update"
            );
        }
        assert_eq!(reads, n, "reads per {} update", update.aspect);
        assert_eq!(
            calls(operator, "GetRole").await - get_role_before,
            n,
            "the one read is GetRole"
        );
        summary.push(format!(
            "{}: {} write and {} read",
            update.aspect,
            writes / n,
            reads / n
        ));
    }

    // Deletes once a listing has the roles.
    fresh_listing(operator).await;
    let (reads_before, writes_before) =
        (per_role_reads(operator).await, operator.iam_writes().await);
    let deletes_before = calls(operator, "DeleteRole").await;
    delete_all(&s, &names).await;
    assert_eq!(calls(operator, "DeleteRole").await - deletes_before, n);
    let writes = operator.iam_writes().await - writes_before;
    // The inline policy, the managed policy, the role.
    assert_eq!(writes, 3 * n, "writes per delete");
    assert_eq!(
        per_role_reads(operator).await - reads_before,
        0,
        "reads per delete"
    );
    eprintln!(
        "{ROLES} creates: 2 writes and 0 reads each; updates, each: {}; deletes: {} writes \
         (DeleteRolePolicy, DetachRolePolicy, DeleteRole) and 0 reads each; {} listings",
        summary.join(", "),
        writes / n,
        calls(operator, "GetAccountAuthorizationDetails").await
    );
}

/// A listing pass can fail: IAM throttles it, and LocalStack's fails while roles change
/// under it. Creates and deletions then still go by the last listing that finished,
/// without reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn creates_and_deletes_after_a_failed_listing_go_by_the_last_one_that_finished() {
    let (s, proxy) = Scenario::prepare_behind_proxy("failed-listing", 13).await;
    // No drift checks during the test: without a listing they would read every role.
    let s = s
        .with_operator(&["--resync-interval", "10m", "--listing-interval", "2s"])
        .await;
    create_synced(&s).await;
    let operator = s.operator();
    fresh_listing(operator).await;

    // Every pass from now on fails (403: not retried by the SDK).
    let listing = "GetAccountAuthorizationDetails";
    proxy.set_rules(vec![
        Rule::new(Fault::access_denied(listing, "*")).action(listing),
    ]);
    let attempts = proxy.attempts(listing);
    eventually("two failed passes", || async {
        (proxy.attempts(listing) >= attempts + 2).then_some(())
    })
    .await;

    let (reads_before, writes_before) =
        (per_role_reads(operator).await, operator.iam_writes().await);
    let new: Vec<String> = (0..ROLES).map(|i| format!("new-{i}")).collect();
    s.create_synced(&new).await;
    let listed: Vec<String> = (0..ROLES).map(|i| format!("app-{i}")).collect();
    delete_all(&s, &listed).await;
    assert_eq!(
        operator.iam_writes().await - writes_before,
        4 * ROLES as u64,
        "2 writes per create and per delete"
    );
    assert_eq!(
        per_role_reads(operator).await - reads_before,
        0,
        "reads per create and per delete after a failed listing"
    );
    eprintln!(
        "{ROLES} creates and {ROLES} deletes after {} failed listings: 2 writes and 0 reads each",
        proxy.attempts(listing) - attempts
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn roles_in_sync_cost_one_listing_per_pass_and_no_per_role_read() {
    let s = Scenario::start("at-rest").await;
    create_synced(&s).await;
    let operator = s.operator();
    let listings = || calls(operator, "GetAccountAuthorizationDetails");
    let (reads_before, writes_before, listings_before) = (
        per_role_reads(operator).await,
        operator.iam_writes().await,
        listings().await,
    );

    // Three passes at rest (resync is 5 s), each due drift check included.
    eventually("three more listings", || async {
        (listings().await >= listings_before + 3).then_some(())
    })
    .await;
    assert_eq!(
        per_role_reads(operator).await - reads_before,
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
    remove_inline_policy(&s, &role_name).await;
    wait_restored(&s, &role_name).await;
    repair_counted(operator, writes_before).await;
    assert_eq!(
        operator.iam_writes().await - writes_before,
        1,
        "the repair is one PutRolePolicy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_restart_reads_only_the_roles_its_first_listing_shows_drifted() {
    let mut s = Scenario::start("restart-calls").await;
    create_synced(&s).await;
    // Down, one role drifts; then a new process, which remembers nothing.
    s.operator.take().expect("operator running").stop();
    let drifted = s.role_name("app-0");
    remove_inline_policy(&s, &drifted).await;
    // No resync in the test's time: every reconcile counted is one the restart made.
    let s = s
        .with_operator(&["--resync-interval", "10m", "--listing-interval", "2s"])
        .await;
    let operator = s.operator();
    wait_restored(&s, &drifted).await;
    repair_counted(operator, 0).await;
    // Every first reconcile waits for the first listing, and two more listings follow.
    fresh_listing(operator).await;

    let listings = calls(operator, "GetAccountAuthorizationDetails").await;
    let provider_checks = calls(operator, "GetOpenIDConnectProvider").await;
    let all = sum_metric(
        &operator.metrics().await.unwrap_or_default(),
        "irsa_operator_iam_calls_total",
        "operation=",
    );
    // The drifted role only: GetRole (the listing names its policies) before its one
    // write.
    assert_eq!(calls(operator, "GetRole").await, 1, "roles read");
    assert_eq!(per_role_reads(operator).await, 1, "per-role reads");
    assert_eq!(
        operator.iam_writes().await,
        1,
        "the repair is one PutRolePolicy"
    );
    assert_eq!(calls(operator, "PutRolePolicy").await, 1);
    assert_eq!(
        all,
        listings + provider_checks + 1 + 1,
        "listings, provider checks, one role's read and its repair"
    );
    // The watches' first lists and the first provider check trigger nothing of their own.
    assert_eq!(
        operator.reconciles().await,
        ROLES as u64,
        "each PodIamRole is reconciled once after the restart"
    );
    eprintln!(
        "restart with {ROLES} roles, one drifted: {all} IAM calls ({listings} listings, \
         {provider_checks} provider checks, 1 read and 1 write for the drifted role)"
    );
}
