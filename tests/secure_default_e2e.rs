//! End-to-end: secure by default. A namespace no guardrail selects gets nothing; a tenant's
//! attempts to reach the account's data, foreign policies, other roles or another boundary
//! are refused with 0 IAM writes; a guardrail granting one action on one bucket admits
//! exactly that; and the operator-wide permissions boundary is on every role and comes
//! back when removed in IAM.

mod support;

use irsa_core::policy::semantically_equal;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::{eventually, eventually_matches, scenario::Scenario, sum_metric};

const BUCKET_OBJECTS: &str = "arn:aws:s3:::reports/*";

fn allow(action: Value, resource: Value) -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": action, "Resource": resource}]})
}

fn with_policy(policy: Value) -> Value {
    json!({"serviceAccountName": "app", "policy": policy})
}

fn the_one_grant() -> Value {
    with_policy(allow(json!("s3:GetObject"), json!(BUCKET_OBJECTS)))
}

/// Each attempt: its name, its spec (with a ServiceAccount of its own, as one PodIamRole
/// owns a ServiceAccount), and a phrase its refusal must carry.
fn attempts(account: &str, other_boundary: &str) -> Vec<(&'static str, Value, String)> {
    let mut attempts = tenant_attempts(account, other_boundary);
    for (name, spec, _) in &mut attempts {
        spec["serviceAccountName"] = json!(name);
    }
    attempts
}

fn tenant_attempts(account: &str, other_boundary: &str) -> Vec<(&'static str, Value, String)> {
    let admin = format!("arn:aws:iam::{account}:role/Admin");
    let chain = |arn: &str| json!({"serviceAccountName": "app", "roleChain": [{"profile": "p", "roleArn": arn}]});
    let managed = |arn: &str| json!({"serviceAccountName": "app", "managedPolicyArns": [arn]});
    let data = |action: &str| with_policy(allow(json!(action), json!("*")));
    vec![
        (
            "secrets",
            data("secretsmanager:GetSecretValue"),
            "Action `secretsmanager:GetSecretValue` is not within".into(),
        ),
        (
            "kms",
            data("kms:Decrypt"),
            "Action `kms:Decrypt` is not within".into(),
        ),
        (
            "ssm",
            data("ssm:GetParameter*"),
            "Action `ssm:GetParameter*` is not within".into(),
        ),
        ("s3-all", data("s3:*"), "Action `s3:*` is not within".into()),
        (
            "s3-any-bucket",
            data("s3:GetObject"),
            "Resource `*` is not within".into(),
        ),
        (
            "other-bucket",
            with_policy(allow(
                json!("s3:GetObject"),
                json!("arn:aws:s3:::payroll/*"),
            )),
            "Resource `arn:aws:s3:::payroll/*` is not within".into(),
        ),
        (
            "wider-bucket",
            with_policy(allow(json!("s3:GetObject"), json!("arn:aws:s3:::reports*"))),
            "Resource `arn:aws:s3:::reports*` is not within".into(),
        ),
        (
            "write",
            with_policy(allow(json!("s3:PutObject"), json!(BUCKET_OBJECTS))),
            "Action `s3:PutObject` is not within".into(),
        ),
        (
            "not-resource",
            with_policy(
                json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::payroll/*"}]}),
            ),
            "NotResource reaches every other resource".into(),
        ),
        (
            "not-action",
            with_policy(
                json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": BUCKET_OBJECTS}]}),
            ),
            "NotAction".into(),
        ),
        (
            "pass-role",
            with_policy(allow(
                json!(["s3:GetObject", "iam:PassRole"]),
                json!(BUCKET_OBJECTS),
            )),
            "reaches `iam:PassRole`, denied by the built-in guardrail".into(),
        ),
        (
            "power-user",
            managed("arn:aws:iam::aws:policy/PowerUserAccess"),
            "managed policy `arn:aws:iam::aws:policy/PowerUserAccess` is granted by no guardrail"
                .into(),
        ),
        (
            "platform-admin",
            managed(&format!("arn:aws:iam::{account}:policy/platform-admin")),
            "policy/platform-admin` is granted by no guardrail".into(),
        ),
        (
            "administrator",
            managed("arn:aws:iam::aws:policy/AdministratorAccess"),
            "AdministratorAccess is denied by the built-in guardrail".into(),
        ),
        (
            "chain-admin",
            chain(&admin),
            format!("spec.roleChain: sts:AssumeRole on `{admin}` is granted by no guardrail"),
        ),
        (
            "chain-other-account",
            chain("arn:aws:iam::999999999999:role/deploy"),
            "sts:AssumeRole on `arn:aws:iam::999999999999:role/deploy` is granted by no guardrail"
                .into(),
        ),
        (
            "assume-admin",
            with_policy(allow(json!("sts:AssumeRole"), json!(admin))),
            "Action `sts:AssumeRole` is not within".into(),
        ),
        (
            "assume-other-account",
            with_policy(allow(
                json!("sts:AssumeRole"),
                json!("arn:aws:iam::999999999999:role/deploy"),
            )),
            "Action `sts:AssumeRole` is not within".into(),
        ),
        (
            "assume-any",
            with_policy(allow(json!("sts:AssumeRole"), json!("*"))),
            "may assume any role, denied by the built-in guardrail".into(),
        ),
        (
            "own-boundary",
            json!({"serviceAccountName": "app", "permissionsBoundary": other_boundary, "policy": allow(json!("s3:GetObject"), json!(BUCKET_OBJECTS))}),
            format!("spec.permissionsBoundary {other_boundary} differs from"),
        ),
        (
            "trust-other-account",
            json!({"serviceAccountName": "app", "trustedRoleArns": ["arn:aws:iam::999999999999:role/ci"], "policy": allow(json!("s3:GetObject"), json!(BUCKET_OBJECTS))}),
            "spec.trustedRoleArns `arn:aws:iam::999999999999:role/ci` is granted by no guardrail"
                .into(),
        ),
        (
            "audience",
            json!({"serviceAccountName": "app", "audience": "vault", "policy": allow(json!("s3:GetObject"), json!(BUCKET_OBJECTS))}),
            "spec.audience `vault` is granted by no guardrail".into(),
        ),
        (
            "squat",
            json!({"serviceAccountName": "app", "roleName": "prod.bank.app", "policy": allow(json!("s3:GetObject"), json!(BUCKET_OBJECTS))}),
            "must start with".into(),
        ),
    ]
}

/// `kubectl apply` that the API server may refuse: the error message, or `None` if stored.
async fn try_apply(s: &Scenario, name: &str, spec: Value) -> Option<String> {
    let manifest = json!({"apiVersion": "irsa.dev/v1alpha1", "kind": "PodIamRole",
        "metadata": {"name": name}, "spec": spec});
    s.roles()
        .patch(
            name,
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(&manifest),
        )
        .await
        .err()
        .map(|e| e.to_string())
}

/// Waits until `name` reports `PolicyNotAllowed` with a message containing `expected`.
async fn refusal(s: &Scenario, name: &str, expected: &str) -> String {
    let seen = eventually_matches(
        &format!("{name} to be refused with `{expected}`"),
        || s.status(name),
        |seen| {
            seen.as_ref().is_some_and(|(generation, status)| {
                status.observed_generation == *generation
                    && status.conditions.iter().any(|c| {
                        c.type_ == "Ready"
                            && c.reason == "PolicyNotAllowed"
                            && c.message.contains(expected)
                    })
            })
        },
    )
    .await;
    let (_, status) = seen.unwrap();
    status
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message
}

async fn iam_writes(s: &Scenario) -> u64 {
    s.operator().iam_writes().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_tenant_gets_exactly_what_a_guardrail_grants_and_every_role_carries_the_boundary() {
    let s = Scenario::prepare_without_grant("secure").await;
    s.bed.ensure_oidc_provider().await;
    s.bed.create_service_account(&s.namespace, "app").await;
    let boundary = s.create_managed_policy("irsa-boundary").await;
    let other_boundary = s.create_managed_policy("tenant-own-boundary").await;
    let account = boundary.split(':').nth(4).unwrap().to_string();
    let s = s
        .with_operator(&[
            "--permissions-boundary",
            boundary.as_str(),
            "--resync-interval",
            "2s",
            "--listing-interval",
            "2s",
        ])
        .await;
    let metrics = s.operator().metrics().await.unwrap_or_default();
    assert_eq!(
        sum_metric(&metrics, "irsa_operator_allow_without_guardrail", ""),
        0
    );

    // A fresh install: no guardrail selects the namespace, so even the one grant is refused.
    s.apply("reports", the_one_grant()).await;
    let status = s.wait_reason("reports", "PolicyNotAllowed").await;
    let message = &status.conditions[0].message;
    assert!(
        message.contains(&format!(
            "nothing was written to IAM: no PodIamRoleGuardrail selects namespace `{}`, so nothing is granted there",
            s.namespace
        )) && message.contains("kubernetes.io/metadata.name"),
        "{message}"
    );

    // The tenant's attempts, while the platform team's guardrail grants one action on one bucket.
    for (name, spec, _) in attempts(&account, &other_boundary) {
        assert_eq!(try_apply(&s, name, spec).await, None, "{name} is stored");
    }
    // An account root or `*` as a trusted principal does not even get stored.
    for (name, arn) in [
        ("trust-root", format!("arn:aws:iam::{account}:root")),
        ("trust-any", "*".into()),
    ] {
        let refused = try_apply(
            &s,
            name,
            json!({"serviceAccountName": "app", "trustedRoleArns": [arn], "policy": allow(json!("s3:GetObject"), json!(BUCKET_OBJECTS))}),
        )
        .await
        .unwrap_or_else(|| panic!("{name}: the API server stored it"));
        assert!(refused.contains("trustedRoleArns"), "{name}: {refused}");
        println!("refused at apply: {name}: {refused}");
    }
    for (name, _, _) in attempts(&account, &other_boundary) {
        s.wait_reason(name, "PolicyNotAllowed").await;
    }
    assert_eq!(iam_writes(&s).await, 0, "nothing written before any grant");

    s.apply_guardrail(
        json!({"allowedActions": ["s3:GetObject"], "allowedResources": [BUCKET_OBJECTS]}),
    )
    .await;
    let role_name = s.role_name("reports");
    s.wait_reason("reports", "Synced").await;
    assert!(
        semantically_equal(
            &s.inline_policy(&role_name).await,
            &allow(json!("s3:GetObject"), json!(BUCKET_OBJECTS))
        ),
        "exactly the grant"
    );
    let role = s.role(&role_name).await.expect("the granted role exists");
    let carried = |role: &aws_sdk_iam::types::Role| {
        role.permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn())
            .map(str::to_string)
    };
    assert_eq!(carried(&role).as_deref(), Some(boundary.as_str()));

    for (name, _, expected) in attempts(&account, &other_boundary) {
        // Re-evaluated under the guardrail: the refusal now names what it lacks.
        let message = refusal(&s, name, &expected).await;
        assert!(
            s.role(&s.role_name(name)).await.is_none(),
            "{name}: a role in IAM"
        );
        println!("refused: {name}: {message}");
    }
    assert_eq!(
        iam_writes(&s).await,
        2,
        "the one grant's CreateRole and PutRolePolicy only"
    );

    // Removed in IAM: the next drift check puts it back.
    s.bed
        .iam
        .delete_role_permissions_boundary()
        .role_name(&role_name)
        .send()
        .await
        .expect("remove the boundary");
    eventually("the boundary to be restored", || async {
        let role = s.role(&role_name).await?;
        (carried(&role).as_deref() == Some(boundary.as_str())).then_some(())
    })
    .await;
    assert_eq!(iam_writes(&s).await, 3, "one PutRolePermissionsBoundary");

    // A guardrail naming another boundary is refused: a role has one boundary.
    s.apply_guardrail(
        json!({"allowedActions": ["s3:GetObject"], "allowedResources": [BUCKET_OBJECTS],
        "requiredPermissionsBoundary": other_boundary}),
    )
    .await;
    refusal(
        &s,
        "reports",
        &format!("requires permissions boundary {other_boundary}, but the operator (--permissions-boundary) requires {boundary}"),
    )
    .await;
    assert_eq!(iam_writes(&s).await, 3, "a refusal writes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn allow_without_guardrail_restores_the_old_behaviour_and_says_so() {
    let s = Scenario::prepare_without_grant("unguarded").await;
    s.bed.ensure_oidc_provider().await;
    s.bed.create_service_account(&s.namespace, "app").await;
    let s = s.with_operator(&["--allow-without-guardrail"]).await;
    let metrics = s.operator().metrics().await.unwrap_or_default();
    assert_eq!(
        sum_metric(&metrics, "irsa_operator_allow_without_guardrail", ""),
        1
    );
    s.apply("reports", the_one_grant()).await;
    s.wait_reason("reports", "Synced").await;
    // The built-in deny list still holds.
    s.apply(
        "escalate",
        with_policy(allow(json!("iam:PassRole"), json!("*"))),
    )
    .await;
    s.wait_reason("escalate", "PolicyNotAllowed").await;
}
