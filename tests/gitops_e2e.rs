//! End-to-end: what Flux (kstatus) and Argo CD (the health checks under health/) make of
//! live PodIamRoles in every state, computed by their own code.

mod support;

use serde_json::{Value, json};
use support::{
    fault_proxy::{Fault, FaultProxy, Rule},
    gitops::{argo_health, kstatus, raw_object},
    scenario::{Scenario, dynamo_spec},
};

/// A spec whose only statement grants `action`.
fn granting(service_account: &str, action: &str) -> Value {
    json!({"serviceAccountName": service_account, "policy": {"Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kstatus_and_argo_health_read_every_state() {
    let Some(mut s) = Scenario::prepare("kstatus").await else {
        return;
    };
    s.bed.ensure_oidc_provider().await;
    let proxy = FaultProxy::start(&s.bed.vars["AWS_ENDPOINT_URL"], 11).await;
    s.operator_env = vec![("AWS_ENDPOINT_URL".into(), proxy.url().into())];
    for sa in [
        "fresh",
        "invalid",
        "denied",
        "conflict",
        "rejected",
        "unavailable",
    ] {
        s.bed.create_service_account(&s.namespace, sa).await;
    }

    // Applied while no operator runs: nothing may read it as done.
    s.apply("fresh", dynamo_spec("fresh")).await;
    let fresh = raw_object(&s.roles(), "fresh").await;
    assert_eq!(fresh["status"]["observedGeneration"], -1, "{fresh:#}");
    let mut table = vec![(
        "fresh, operator stopped".to_string(),
        kstatus(&fresh),
        argo_health(&fresh),
    )];

    s.bed
        .iam
        .create_role()
        .role_name(s.role_name("conflict"))
        .assume_role_policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
            .to_string(),
        )
        .send()
        .await
        .expect("a role made by hand");
    proxy.set_rules(vec![
        Rule::new(Fault::ServerError)
            .action("CreateRole")
            .role(&s.role_name("unavailable")),
    ]);
    let s = s.with_operator(&[]).await;
    let cases = [
        ("fresh", None, "Synced"),
        ("invalid", Some(granting("invalid", "not an action")), "InvalidSpec"),
        ("denied", Some(granting("denied", "*")), "PolicyNotAllowed"),
        ("conflict", Some(dynamo_spec("conflict")), "RoleConflict"),
        (
            "rejected",
            Some(json!({"serviceAccountName": "rejected",
                "managedPolicyArns": ["arn:aws:iam::000000000000:policy/does-not-exist"]})),
            "IamRejected",
        ),
        ("unavailable", Some(dynamo_spec("unavailable")), "IamUnavailable"),
        // The ServiceAccount of an older PodIamRole.
        ("second", Some(dynamo_spec("fresh")), "ServiceAccountInUse"),
    ];
    for (name, spec, _) in &cases {
        if let Some(spec) = spec {
            s.apply(name, spec.clone()).await;
        }
    }
    for (name, _, reason) in cases {
        s.wait_reason(name, reason).await;
        let object = raw_object(&s.roles(), name).await;
        table.push((reason.to_string(), kstatus(&object), argo_health(&object)));
    }

    for (state, (kstatus, _), (health, message)) in &table {
        eprintln!("{state:<26} kstatus {kstatus:<10} argo {health:<11} {message}");
    }
    let read: Vec<(&str, &str, &str)> = table
        .iter()
        .map(|(state, (k, _), (a, _))| (state.as_str(), k.as_str(), a.as_str()))
        .collect();
    assert_eq!(
        read,
        [
            ("fresh, operator stopped", "InProgress", "Progressing"),
            ("Synced", "Current", "Healthy"),
            ("InvalidSpec", "Failed", "Degraded"),
            ("PolicyNotAllowed", "Failed", "Degraded"),
            ("RoleConflict", "Failed", "Degraded"),
            ("IamRejected", "Failed", "Degraded"),
            ("IamUnavailable", "InProgress", "Progressing"),
            ("ServiceAccountInUse", "Failed", "Degraded"),
        ]
    );
}
