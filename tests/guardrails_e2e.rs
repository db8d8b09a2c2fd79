//! End-to-end: guardrails stop a PodIamRole before anything reaches IAM, and LocalStack
//! proves it. Each test selects only its own namespace through a unique label.

mod support;

use irsa_core::policy::semantically_equal;
use kube::api::DeleteParams;
use serde_json::{Value, json};
use support::scenario::{Scenario, dynamo_spec};

/// A namespace labelled for its own guardrail, which exists before the operator starts.
async fn guarded(label: &str, guardrail: Value) -> Scenario {
    let s = Scenario::prepare(label).await;
    s.bed.ensure_oidc_provider().await;
    s.apply_guardrail(guardrail).await;
    s.bed.create_service_account(&s.namespace, "app").await;
    s.with_operator(&[]).await
}

fn s3_spec() -> Value {
    json!({"serviceAccountName": "app", "policy": {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::team-a/*"}]}})
}

async fn assert_nothing_written(s: &Scenario, name: &str) {
    assert!(
        s.role(&s.role_name(name)).await.is_none(),
        "no role for {name} in IAM"
    );
    assert_eq!(
        s.operator.as_ref().unwrap().iam_writes().await,
        0,
        "no IAM write at all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn denied_actions_are_reported_and_never_written() {
    let s = guarded("deny", json!({"allowedActions": ["dynamodb:*"]})).await;

    let mut escalation = dynamo_spec("app");
    escalation["policy"]["Statement"][0]["Action"] = json!(["dynamodb:GetItem", "iam:PassRole"]);
    s.apply("escalate", escalation).await;
    let status = s.wait_reason("escalate", "PolicyNotAllowed").await;
    let message = &status.conditions[0].message;
    assert!(
        message.contains("Statement[0]")
            && message.contains("iam:PassRole")
            && message.contains("built-in"),
        "{message}"
    );

    s.apply("s3", s3_spec()).await;
    let status = s.wait_reason("s3", "PolicyNotAllowed").await;
    let message = &status.conditions[0].message;
    assert!(
        message.contains("s3:GetObject") && message.contains(&format!("guardrail {}", s.namespace)),
        "{message}"
    );

    assert_nothing_written(&s, "escalate").await;
    assert_nothing_written(&s, "s3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_disallowed_managed_policy_is_refused() {
    let s = Scenario::prepare("managed-guard").await;
    let allowed = s.create_managed_policy("allowed").await;
    let other = s.create_managed_policy("other").await;
    s.bed.ensure_oidc_provider().await;
    s.apply_guardrail(json!({"allowedManagedPolicyArns": [allowed]}))
        .await;
    s.bed.create_service_account(&s.namespace, "app").await;
    let s = s.with_operator(&[]).await;

    s.apply(
        "app",
        json!({"serviceAccountName": "app", "managedPolicyArns": [allowed, other]}),
    )
    .await;
    let status = s.wait_reason("app", "PolicyNotAllowed").await;
    assert!(
        status.conditions[0].message.contains(&other),
        "{}",
        status.conditions[0].message
    );
    assert_nothing_written(&s, "app").await;

    s.apply(
        "app",
        json!({"serviceAccountName": "app", "managedPolicyArns": [allowed]}),
    )
    .await;
    s.wait_reason("app", "Synced").await;
    assert_eq!(
        s.attached(&s.role_name("app"))
            .await
            .into_iter()
            .collect::<Vec<_>>(),
        [allowed]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_required_boundary_is_forced_onto_the_role() {
    let s = Scenario::prepare("boundary").await;
    let boundary = s.create_managed_policy("boundary").await;
    s.bed.ensure_oidc_provider().await;
    s.apply_guardrail(json!({"requiredPermissionsBoundary": boundary}))
        .await;
    s.bed.create_service_account(&s.namespace, "app").await;
    let s = s.with_operator(&[]).await;

    s.apply("app", dynamo_spec("app")).await;
    s.wait_reason("app", "Synced").await;
    let role = s.role(&s.role_name("app")).await.unwrap();
    let attached = role
        .permissions_boundary()
        .and_then(|b| b.permissions_boundary_arn());
    assert_eq!(attached, Some(boundary.as_str()));

    // Removing it in IAM does not last: the next resync puts it back.
    s.bed
        .iam
        .delete_role_permissions_boundary()
        .role_name(s.role_name("app"))
        .send()
        .await
        .unwrap();
    support::eventually("the boundary to be restored", || async {
        let role = s.role(&s.role_name("app")).await?;
        (role.permissions_boundary()?.permissions_boundary_arn() == Some(boundary.as_str()))
            .then_some(())
    })
    .await;

    let mut own = dynamo_spec("app");
    own["permissionsBoundary"] = json!("arn:aws:iam::000000000000:policy/somewhere-else");
    s.apply("app", own).await;
    let status = s.wait_reason("app", "PolicyNotAllowed").await;
    assert!(
        status.conditions[0]
            .message
            .contains("which a guardrail puts on every role")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn the_namespace_quota_serves_the_oldest_first() {
    let s = guarded("quota", json!({"maxRolesPerNamespace": 1})).await;
    s.apply("first", dynamo_spec("app")).await;
    s.wait_reason("first", "Synced").await;
    s.apply("second", dynamo_spec("app")).await;
    let status = s.wait_reason("second", "PolicyNotAllowed").await;
    assert!(
        status.conditions[0]
            .message
            .contains("allows 1 PodIamRoles in this namespace"),
        "{}",
        status.conditions[0].message
    );
    assert!(s.role(&s.role_name("second")).await.is_none());

    s.delete("first").await;
    s.wait_reason("second", "Synced").await;
    assert!(s.role(&s.role_name("second")).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_guardrail_added_later_reports_and_leaves_the_role_as_it_is() {
    let s = Scenario::start("later").await;
    s.bed.create_service_account(&s.namespace, "app").await;
    s.apply("app", s3_spec()).await;
    s.wait_reason("app", "Synced").await;
    let role_name = s.role_name("app");
    let writes_before = s.operator.as_ref().unwrap().iam_writes().await;

    s.apply_guardrail(json!({"allowedActions": ["dynamodb:*"]}))
        .await;
    let status = s.wait_reason("app", "PolicyNotAllowed").await;
    assert!(status.conditions[0].message.contains("s3:GetObject"));
    assert!(
        status.role_arn.is_some(),
        "the existing role is still reported"
    );
    assert!(
        semantically_equal(&s.inline_policy(&role_name).await, &s3_spec()["policy"]),
        "the role is left as it is"
    );
    assert_eq!(
        s.operator.as_ref().unwrap().iam_writes().await,
        writes_before,
        "no IAM write on a denied spec"
    );

    s.guardrails()
        .delete(&s.namespace, &DeleteParams::default())
        .await
        .unwrap();
    s.wait_reason("app", "Synced").await;
}
