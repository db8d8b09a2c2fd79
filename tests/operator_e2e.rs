//! End-to-end: the operator binary against the real API server and LocalStack IAM,
//! driven the way users drive it (apply, edit, delete manifests). Each test owns a
//! namespace, a cluster name and an operator process watching only that namespace.

mod support;

use std::collections::BTreeSet;

use irsa_core::policy::{decode_iam_document, semantically_equal};
use kube::ResourceExt;
use serde_json::{Value, json};
use support::{
    Operator, eventually,
    scenario::{DYNAMO_POLICY, Scenario, dynamo_spec, tags},
    sum_metric,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn create_then_update_the_policy_with_exactly_one_write() {
    let s = Scenario::start("create").await;
    s.bed.create_service_account(&s.namespace, "payments").await;
    s.apply("payments", dynamo_spec("payments")).await;
    let status = s.wait_reason("payments", "Synced").await;

    let role_name = s.role_name("payments");
    let role = s.role(&role_name).await.expect("role exists in IAM");
    assert_eq!(status.role_name.as_deref(), Some(role_name.as_str()));
    assert_eq!(status.role_arn.as_deref(), Some(role.arn()));
    assert_eq!(role.path(), format!("/irsa/{}/", s.cluster));
    let issuer = s.bed.issuer_host_path();
    let provider_arn = format!("arn:aws:iam::000000000000:oidc-provider/{issuer}");
    assert_eq!(
        status.oidc_provider_arn.as_deref(),
        Some(provider_arn.as_str())
    );
    let trust = decode_iam_document(role.assume_role_policy_document().unwrap()).unwrap();
    let expected_trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Federated": provider_arn}, "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {
            format!("{issuer}:sub"): format!("system:serviceaccount:{}:payments", s.namespace),
            format!("{issuer}:aud"): "sts.amazonaws.com"}}}]});
    assert!(
        semantically_equal(&trust, &expected_trust),
        "trust policy: {trust:#}"
    );
    let policy: Value = serde_json::from_str(DYNAMO_POLICY).unwrap();
    assert!(semantically_equal(
        &s.inline_policy(&role_name).await,
        &policy
    ));
    let role_tags = tags(&role);
    assert_eq!(role_tags.get("team").map(String::as_str), Some("payments"));
    assert_eq!(role_tags.get("irsa.dev/cluster"), Some(&s.cluster));
    assert_eq!(role_tags.get("irsa.dev/namespace"), Some(&s.namespace));
    assert_eq!(
        role_tags.get("irsa.dev/name").map(String::as_str),
        Some("payments")
    );
    let uid = s.roles().get("payments").await.unwrap().uid().unwrap();
    assert_eq!(role_tags.get("irsa.dev/uid"), Some(&uid));
    assert_eq!(s.annotation("payments").await.as_deref(), Some(role.arn()));

    // LocalStack does not evaluate trust, so check the chain by hand: a real token of the
    // ServiceAccount satisfies the stored trust policy, and tokens it must refuse do not.
    let (_, claims) = s
        .bed
        .service_account_token(&s.namespace, "payments", "sts.amazonaws.com")
        .await;
    assert!(
        support::trust_admits(&trust, &claims),
        "trust {trust:#} refuses {claims:#}"
    );
    s.bed.create_service_account(&s.namespace, "intruder").await;
    let (_, other_sa) = s
        .bed
        .service_account_token(&s.namespace, "intruder", "sts.amazonaws.com")
        .await;
    assert!(
        !support::trust_admits(&trust, &other_sa),
        "another ServiceAccount is admitted"
    );
    let (_, other_audience) = s
        .bed
        .service_account_token(&s.namespace, "payments", "vault")
        .await;
    assert!(
        !support::trust_admits(&trust, &other_audience),
        "another audience is admitted"
    );

    // Let the follow-up reconciles (finalizer, status, annotation events) settle.
    let before = settled_writes(s.operator()).await;
    let mut spec = dynamo_spec("payments");
    spec["policy"]["Statement"][0]["Action"] =
        json!(["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query"]);
    s.apply("payments", spec.clone()).await;
    s.wait_reason("payments", "Synced").await;
    let after = settled_writes(s.operator()).await;
    assert_eq!(
        after - before,
        1,
        "a policy edit must cost exactly one IAM write"
    );
    assert!(semantically_equal(
        &s.inline_policy(&role_name).await,
        &spec["policy"]
    ));
    let metrics = s.operator().metrics().await.unwrap();
    assert!(
        metrics.contains(r#"operation="PutRolePolicy",access="write",outcome="success"} 2"#),
        "{metrics}"
    );

    s.delete("payments").await;
    assert!(
        s.role(&role_name).await.is_none(),
        "Delete policy removes the role"
    );
    assert_eq!(
        s.annotation("payments").await,
        None,
        "annotation removed on delete"
    );
}

/// Write count once it has stopped moving for a few resyncs' worth of reconciles; fails,
/// with the counts seen, if it is still moving at the deadline.
async fn settled_writes(operator: &Operator) -> u64 {
    let started = std::time::Instant::now();
    let mut seen = vec![operator.iam_writes().await];
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        let now = operator.iam_writes().await;
        if seen.last() == Some(&now) {
            return now;
        }
        seen.push(now);
        assert!(
            started.elapsed() < support::DEADLINE,
            "IAM writes still moving after {:?}: {seen:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn changing_the_service_account_moves_trust_and_annotation() {
    let s = Scenario::start("move-sa").await;
    s.bed.create_service_account(&s.namespace, "old").await;
    s.bed.create_service_account(&s.namespace, "new").await;
    s.apply("app", dynamo_spec("old")).await;
    let status = s.wait_reason("app", "Synced").await;
    let arn = status.role_arn.unwrap();
    assert_eq!(s.annotation("old").await.as_ref(), Some(&arn));

    s.apply("app", dynamo_spec("new")).await;
    s.wait_reason("app", "Synced").await;
    assert_eq!(s.annotation("new").await.as_ref(), Some(&arn));
    assert_eq!(
        s.annotation("old").await,
        None,
        "old ServiceAccount released"
    );
    let role = s.role(&s.role_name("app")).await.unwrap();
    let trust = decode_iam_document(role.assume_role_policy_document().unwrap()).unwrap();
    let subject = &trust["Statement"][0]["Condition"]["StringEquals"]
        [format!("{}:sub", s.bed.issuer_host_path())];
    assert_eq!(
        subject,
        &json!(format!("system:serviceaccount:{}:new", s.namespace))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn managed_policies_are_attached_and_detached() {
    let s = Scenario::start("managed").await;
    s.bed.create_service_account(&s.namespace, "app").await;
    let first = s.create_managed_policy("first").await;
    let second = s.create_managed_policy("second").await;
    s.apply(
        "app",
        json!({"serviceAccountName": "app", "managedPolicyArns": [first]}),
    )
    .await;
    s.wait_reason("app", "Synced").await;
    let role_name = s.role_name("app");
    assert_eq!(
        s.attached(&role_name).await,
        BTreeSet::from([first.clone()])
    );

    s.apply(
        "app",
        json!({"serviceAccountName": "app", "managedPolicyArns": [first, second]}),
    )
    .await;
    s.wait_reason("app", "Synced").await;
    assert_eq!(
        s.attached(&role_name).await,
        BTreeSet::from([first.clone(), second.clone()])
    );

    s.apply(
        "app",
        json!({"serviceAccountName": "app", "managedPolicyArns": [second]}),
    )
    .await;
    s.wait_reason("app", "Synced").await;
    assert_eq!(
        s.attached(&role_name).await,
        BTreeSet::from([second.clone()])
    );

    s.delete("app").await;
    assert!(
        s.role(&role_name).await.is_none(),
        "role deleted despite attached policy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn retain_keeps_the_role_and_removes_the_annotation() {
    let s = Scenario::start("retain").await;
    s.bed.create_service_account(&s.namespace, "app").await;
    let mut spec = dynamo_spec("app");
    spec["deletionPolicy"] = json!("Retain");
    s.apply("app", spec).await;
    let status = s.wait_reason("app", "Synced").await;
    s.delete("app").await;
    let role = s
        .role(&s.role_name("app"))
        .await
        .expect("retained role still exists");
    assert_eq!(Some(role.arn()), status.role_arn.as_deref());
    assert_eq!(s.annotation("app").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn an_unowned_role_is_never_touched() {
    let s = Scenario::start("conflict").await;
    s.bed.create_service_account(&s.namespace, "app").await;
    let role_name = s.role_name("app");
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    s.bed
        .iam
        .create_role()
        .role_name(&role_name)
        .assume_role_policy_document(trust.to_string())
        .description("made by hand")
        .send()
        .await
        .expect("create the hand-made role");

    s.apply("app", dynamo_spec("app")).await;
    let status = s.wait_reason("app", "RoleConflict").await;
    let message = &status.conditions[0].message;
    assert!(
        message.contains(&role_name) && message.contains("not owned"),
        "{message}"
    );
    assert_eq!(status.role_arn, None);
    assert_eq!(s.annotation("app").await, None);

    s.delete("app").await;
    let role = s
        .role(&role_name)
        .await
        .expect("the hand-made role survives deletion");
    assert_eq!(role.description(), Some("made by hand"));
    assert!(tags(&role).is_empty());
    let trust_now = decode_iam_document(role.assume_role_policy_document().unwrap()).unwrap();
    assert!(semantically_equal(&trust_now, &trust));
    let inline = s
        .bed
        .iam
        .list_role_policies()
        .role_name(&role_name)
        .send()
        .await
        .unwrap();
    assert!(inline.policy_names().is_empty());
    // A new PodIamRole whose name the latest listing lacks tries CreateRole first; IAM
    // refuses it (EntityAlreadyExists) and nothing else is attempted.
    let metrics = s.operator().metrics().await.unwrap();
    let writes = |outcome: &str| {
        sum_metric(
            &metrics,
            "irsa_operator_iam_calls_total",
            &format!("access=\"write\",outcome=\"{outcome}\""),
        )
    };
    assert_eq!(writes("success"), 0, "no IAM write for a conflicting role");
    assert!(
        s.operator().iam_writes().await <= 1,
        "at most the refused CreateRole"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_service_account_created_later_gets_annotated() {
    let s = Scenario::start("late-sa").await;
    s.apply("app", dynamo_spec("late")).await;
    let status = s.wait_reason("app", "ServiceAccountNotFound").await;
    assert!(
        s.role(&s.role_name("app")).await.is_some(),
        "role is created before the ServiceAccount exists"
    );
    s.bed.create_service_account(&s.namespace, "late").await;
    s.wait_reason("app", "Synced").await;
    assert_eq!(s.annotation("late").await, status.role_arn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn an_invalid_policy_is_reported_and_nothing_is_written() {
    let s = Scenario::start("invalid").await;
    s.bed.create_service_account(&s.namespace, "app").await;
    let spec = json!({"serviceAccountName": "app", "policy": {"Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "dynamodbPutItem", "Resource": "*"}]}});
    s.apply("app", spec).await;
    let status = s.wait_reason("app", "InvalidSpec").await;
    let message = &status.conditions[0].message;
    assert!(
        message.contains("Statement[0]") && message.contains("dynamodbPutItem"),
        "{message}"
    );
    assert!(s.role(&s.role_name("app")).await.is_none());
    assert_eq!(s.operator().iam_writes().await, 0);

    let events = kube::Api::<k8s_openapi::api::events::v1::Event>::namespaced(
        s.bed.kube.clone(),
        &s.namespace,
    );
    let warning = eventually("an InvalidSpec event", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("InvalidSpec"))
    })
    .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));

    // Fixing the manifest recovers without any other action.
    s.apply("app", dynamo_spec("app")).await;
    s.wait_reason("app", "Synced").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_restart_with_nothing_changed_makes_zero_writes_and_drift_is_repaired() {
    let mut s = Scenario::start("restart").await;
    s.bed.create_service_account(&s.namespace, "app").await;
    s.apply("app", dynamo_spec("app")).await;
    s.wait_reason("app", "Synced").await;
    s.operator.take().unwrap().stop();

    let operator = Operator::start(&s.bed, &s.cluster, &s.namespace, &[]);
    operator.wait_ready().await;
    // The restarted operator checks the role, in sync by its status, against its first
    // bulk listing and the next: it reads no role and writes nothing.
    let calls = |operation: &'static str| {
        let operator = &operator;
        async move {
            support::sum_metric(
                &operator.metrics().await.unwrap_or_default(),
                "irsa_operator_iam_calls_total",
                &format!("operation=\"{operation}\""),
            )
        }
    };
    eventually("two listings since", || async {
        (calls("GetAccountAuthorizationDetails").await >= 2).then_some(())
    })
    .await;
    assert_eq!(
        calls("GetRole").await,
        0,
        "restart of an in-sync object read it"
    );
    assert_eq!(
        operator.iam_writes().await,
        0,
        "restart of an in-sync object wrote to IAM"
    );

    // A change made directly in IAM is repaired on the next resync.
    let role_name = s.role_name("app");
    s.bed
        .iam
        .put_role_policy()
        .role_name(&role_name)
        .policy_name("irsa-operator")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    let policy: Value = serde_json::from_str(DYNAMO_POLICY).unwrap();
    eventually("drift repaired", || async {
        semantically_equal(&s.inline_policy(&role_name).await, &policy).then_some(())
    })
    .await;
    // IAM shows the repair a moment before the operator counts it.
    eventually("the repair counted", || async {
        (operator.iam_writes().await > 0).then_some(())
    })
    .await;
    assert_eq!(
        operator.iam_writes().await,
        1,
        "drift repair is one PutRolePolicy"
    );
    s.operator = Some(operator);
}

/// The spec names another ServiceAccount: the new one gets the role, the old one loses
/// the annotation, and a ServiceAccount annotated with another role keeps its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_renamed_service_account_takes_the_annotation_from_the_old_one() {
    let s = Scenario::start("rename-sa").await;
    for name in ["first", "second", "bystander"] {
        s.bed.create_service_account(&s.namespace, name).await;
    }
    s.apply("bystander", dynamo_spec("bystander")).await;
    s.apply("app", dynamo_spec("first")).await;
    let bystander_arn = s.wait_reason("bystander", "Synced").await.role_arn;
    let arn = s.wait_reason("app", "Synced").await.role_arn;
    assert_eq!(s.annotation("first").await, arn);

    s.apply("app", dynamo_spec("second")).await;
    eventually("the old ServiceAccount released", || async {
        (s.annotation("first").await.is_none() && s.annotation("second").await == arn).then_some(())
    })
    .await;
    s.wait_reason("app", "Synced").await;
    assert_eq!(s.annotation("bystander").await, bystander_arn);
}
