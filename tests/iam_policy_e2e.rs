//! End-to-end: the operator's own IAM policy allows every IAM request the operator really
//! sends, and refuses the escalations a permissions boundary is there to stop.
//!
//! The operator runs with `--permissions-boundary` and `--oidc-provider manage` in a fresh
//! LocalStack account (so it creates and manages its own OIDC provider), behind the fault
//! proxy, which records every request with its form fields and the role or provider it
//! acts on as it was just before. Through a whole lifecycle (creates, every kind of update,
//! drift repair, Retain and re-adoption, Delete), each recorded request is evaluated
//! against the policy `irsa-operator iam-policy` renders for the same flags, as IAM would
//! (`support/iam_eval.rs`). LocalStack enforces no policy, so this evaluation is the check.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use irsa_api::ProviderMode;
use irsa_core::{
    iam_policy::{Partition, PolicyTarget, operator_policy},
    policy::{decode_iam_document, semantically_equal},
};
use serde_json::{Value, json};
use support::{
    eventually,
    fault_proxy::{FaultProxy, Outcome},
    fresh_account_id,
    iam_eval::{
        Account, Confinement, Decision, authorizations, authorizations_of, decide, escalations,
    },
    scenario::{DYNAMO_POLICY, Scenario},
};

const BOUNDARY_DOC: &str = include_str!("../config/iam/permissions-boundary.json");

/// Every action the lifecycle below must have made the operator send: if one is missing,
/// the evaluation proved less than it claims.
const EXPECTED_ACTIONS: [&str; 21] = [
    "GetAccountAuthorizationDetails",
    "GetRole",
    "ListRolePolicies",
    "GetRolePolicy",
    "ListAttachedRolePolicies",
    "CreateRole",
    "PutRolePolicy",
    "AttachRolePolicy",
    "UpdateAssumeRolePolicy",
    "UpdateRole",
    "TagRole",
    "UntagRole",
    "PutRolePermissionsBoundary",
    "DeleteRolePolicy",
    "DetachRolePolicy",
    "DeleteRole",
    "GetOpenIDConnectProvider",
    "CreateOpenIDConnectProvider",
    "AddClientIDToOpenIDConnectProvider",
    "RemoveClientIDFromOpenIDConnectProvider",
    "UpdateOpenIDConnectProviderThumbprint",
];

async fn create_policy(iam: &aws_sdk_iam::Client, name: &str, document: &str) -> String {
    let output = iam
        .create_policy()
        .policy_name(name)
        .policy_document(document)
        .send()
        .await
        .expect("CreatePolicy");
    output.policy().unwrap().arn().unwrap().to_string()
}

/// The role as IAM holds it: (boundary, tags, inline policy names, attached ARNs).
#[derive(Debug, Default, PartialEq)]
struct RoleState {
    boundary: Option<String>,
    tags: BTreeMap<String, String>,
    description: String,
    inline: Option<Value>,
    attached: BTreeSet<String>,
    trust: Value,
}

async fn role_state(iam: &aws_sdk_iam::Client, name: &str) -> Option<RoleState> {
    let role = iam
        .get_role()
        .role_name(name)
        .send()
        .await
        .ok()?
        .role()
        .cloned()?;
    let inline = match iam
        .get_role_policy()
        .role_name(name)
        .policy_name("irsa-operator")
        .send()
        .await
    {
        Ok(output) => decode_iam_document(output.policy_document()).ok(),
        Err(_) => None,
    };
    let attached = iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .ok()?
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect();
    Some(RoleState {
        boundary: role
            .permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn())
            .map(str::to_string),
        tags: role
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
        description: role.description().unwrap_or_default().to_string(),
        inline,
        attached,
        trust: role
            .assume_role_policy_document()
            .and_then(|d| decode_iam_document(d).ok())
            .unwrap_or_default(),
    })
}

/// Waits until the role satisfies `accept`.
async fn wait_role(
    iam: &aws_sdk_iam::Client,
    name: &str,
    what: &str,
    accept: impl Fn(&RoleState) -> bool,
) {
    eventually(what, || async {
        role_state(iam, name).await.filter(|r| accept(r)).map(drop)
    })
    .await;
}

/// The provider's (client IDs, thumbprints).
async fn provider_state(
    iam: &aws_sdk_iam::Client,
    arn: &str,
) -> Option<(BTreeSet<String>, Vec<String>)> {
    let output = iam
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(arn)
        .send()
        .await
        .ok()?;
    Some((
        output.client_id_list().iter().cloned().collect(),
        output.thumbprint_list().to_vec(),
    ))
}

fn policy(actions: &[&str]) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions,
        "Resource": "arn:aws:dynamodb:us-east-1:111122223333:table/payments"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn every_request_the_operator_sends_is_allowed_and_escalations_are_denied() {
    let mut s = Scenario::prepare("iam-eval").await;
    let account_id = fresh_account_id();
    let iam = s.bed.iam_in(&account_id).await;
    let boundary = create_policy(&iam, &s.cluster, BOUNDARY_DOC).await;
    let other_boundary = create_policy(&iam, &format!("{}-other", s.cluster), BOUNDARY_DOC).await;
    let managed = |label: &str| format!("{}-{label}", s.cluster);
    let read_only = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "s3:GetObject", "Resource": "*"}]}"#;
    let first_managed = create_policy(&iam, &managed("m1"), read_only).await;
    let second_managed = create_policy(&iam, &managed("m2"), read_only).await;

    let proxy = FaultProxy::start(&s.bed.vars["AWS_ENDPOINT_URL"], 20).await;
    proxy.record_resources();
    s.operator_env = vec![
        ("AWS_ENDPOINT_URL".into(), proxy.url().into()),
        ("AWS_ACCESS_KEY_ID".into(), account_id.clone()),
    ];
    let ca_file = s.bed.vars["TESTBED_CA_FILE"].clone();
    let mut s = s
        .with_operator(&[
            "--oidc-provider",
            "manage",
            "--oidc-ca-file",
            &ca_file,
            "--permissions-boundary",
            &boundary,
            "--listing-interval",
            "2s",
        ])
        .await;
    let provider_arn = format!(
        "arn:aws:iam::{account_id}:oidc-provider/{}",
        s.bed.issuer_host_path()
    );
    let role = s.role_name("app");
    for sa in ["app", "app-v2", "kept"] {
        s.bed.create_service_account(&s.namespace, sa).await;
    }

    // Create: trust, inline policy, a managed policy, tags, description; the provider
    // is created for it.
    let dynamo: Value = serde_json::from_str(DYNAMO_POLICY).unwrap();
    let mut spec = json!({"serviceAccountName": "app", "policy": dynamo,
        "managedPolicyArns": [first_managed], "tags": {"team": "payments"},
        "description": "v1", "maxSessionDuration": 3600});
    s.apply("app", spec.clone()).await;
    s.wait_reason("app", "Synced").await;
    wait_role(&iam, &role, "the role with its boundary", |r| {
        r.boundary.as_deref() == Some(boundary.as_str()) && r.inline.is_some()
    })
    .await;
    eventually("the provider", || provider_state(&iam, &provider_arn)).await;

    // Trust: another audience (a client ID is added) and another ServiceAccount.
    spec["audience"] = json!("iam-eval.example.com");
    spec["serviceAccountName"] = json!("app-v2");
    s.apply("app", spec.clone()).await;
    s.wait_reason("app", "Synced").await;
    eventually("the new client ID", || async {
        let (ids, _) = provider_state(&iam, &provider_arn).await?;
        ids.contains("iam-eval.example.com").then_some(())
    })
    .await;

    // Description and session length, tags added and removed, the policy, the attachments.
    spec["description"] = json!("v2");
    spec["maxSessionDuration"] = json!(7200);
    spec["tags"] = json!({"env": "prod"});
    spec["policy"] = policy(&["dynamodb:Query"]);
    spec["managedPolicyArns"] = json!([second_managed]);
    s.apply("app", spec.clone()).await;
    s.wait_reason("app", "Synced").await;
    wait_role(&iam, &role, "the updated role", |r| {
        r.description == "v2"
            && r.tags.get("env").map(String::as_str) == Some("prod")
            && !r.tags.contains_key("team")
            && r.attached == BTreeSet::from([second_managed.clone()])
    })
    .await;

    // Back to the default audience: the client ID nobody uses any more is removed.
    spec.as_object_mut().unwrap().remove("audience");
    s.apply("app", spec.clone()).await;
    s.wait_reason("app", "Synced").await;
    eventually("the unused client ID removed", || async {
        let (ids, _) = provider_state(&iam, &provider_arn).await?;
        (!ids.contains("iam-eval.example.com")).then_some(())
    })
    .await;

    // Drift, all at once: the boundary removed, the inline policy deleted, the attachment
    // gone. The boundary is put back before any policy, so IAM would allow the repair.
    iam.delete_role_permissions_boundary()
        .role_name(&role)
        .send()
        .await
        .expect("remove the boundary behind the operator's back");
    iam.delete_role_policy()
        .role_name(&role)
        .policy_name("irsa-operator")
        .send()
        .await
        .expect("DeleteRolePolicy behind the operator's back");
    iam.detach_role_policy()
        .role_name(&role)
        .policy_arn(&second_managed)
        .send()
        .await
        .expect("DetachRolePolicy behind the operator's back");
    let wanted_policy = policy(&["dynamodb:Query"]);
    wait_role(&iam, &role, "the drift repaired", |r| {
        r.boundary.as_deref() == Some(boundary.as_str())
            && r.inline
                .as_ref()
                .is_some_and(|p| semantically_equal(p, &wanted_policy))
            && r.attached.contains(&second_managed)
    })
    .await;
    // Another boundary in its place, and a stale thumbprint on the provider.
    iam.put_role_permissions_boundary()
        .role_name(&role)
        .permissions_boundary(&other_boundary)
        .send()
        .await
        .expect("replace the boundary behind the operator's back");
    let (_, thumbprints) = provider_state(&iam, &provider_arn).await.unwrap();
    iam.update_open_id_connect_provider_thumbprint()
        .open_id_connect_provider_arn(&provider_arn)
        .thumbprint_list("0".repeat(40))
        .send()
        .await
        .expect("a stale thumbprint behind the operator's back");
    wait_role(&iam, &role, "the boundary restored", |r| {
        r.boundary.as_deref() == Some(boundary.as_str())
    })
    .await;
    eventually("the thumbprint restored", || async {
        let (_, now) = provider_state(&iam, &provider_arn).await?;
        (now == thumbprints).then_some(())
    })
    .await;

    // Managed policies only: the inline policy goes.
    spec.as_object_mut().unwrap().remove("policy");
    s.apply("app", spec.clone()).await;
    s.wait_reason("app", "Synced").await;
    wait_role(&iam, &role, "the inline policy deleted", |r| {
        r.inline.is_none()
    })
    .await;

    // Retain: the role is released (re-tagged), kept; then adopted back, then deleted.
    let kept = s.role_name("kept");
    let kept_spec = json!({"serviceAccountName": "kept", "policy": dynamo,
        "deletionPolicy": "Retain", "adopt": true});
    s.apply("kept", kept_spec.clone()).await;
    s.wait_reason("kept", "Synced").await;
    s.delete("kept").await;
    wait_role(&iam, &kept, "the role released", |r| {
        r.tags.get("irsa.dev/cluster") == Some(&format!("released-from-{}", s.cluster))
    })
    .await;
    s.apply("kept", kept_spec.clone()).await;
    s.wait_reason("kept", "Synced").await;
    wait_role(&iam, &kept, "the role adopted back", |r| {
        r.tags.get("irsa.dev/cluster") == Some(&s.cluster)
    })
    .await;
    let mut delete_spec = kept_spec.clone();
    delete_spec["deletionPolicy"] = json!("Delete");
    s.apply("kept", delete_spec).await;
    s.wait_reason("kept", "Synced").await;
    s.delete("kept").await;
    // Delete: policies and attachments first, then the role.
    s.delete("app").await;
    for name in [&role, &kept] {
        eventually(&format!("{name} deleted"), || async {
            role_state(&iam, name).await.is_none().then_some(())
        })
        .await;
    }

    // Stop sending before judging what was sent.
    s.operator.take().expect("operator running").stop();
    let records = proxy.records();

    let target = PolicyTarget {
        cluster_name: s.cluster.clone(),
        role_path: None,
        partition: Partition::Aws,
        provider_mode: ProviderMode::Manage,
        permissions_boundary: Some(boundary.clone()),
    };
    let rendered = operator_policy(&target).expect("the policy renders");
    let account = Account {
        partition: "aws".into(),
        id: account_id.clone(),
    };
    let mut by_action: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused = Vec::new();
    let mut evaluated = 0;
    for record in &records {
        let authorizations = authorizations_of(record, &account);
        if authorizations.is_empty() {
            continue; // sts:GetCallerIdentity needs no permission
        }
        evaluated += 1;
        *by_action.entry(record.call.action.clone()).or_default() += 1;
        let decision = decide(&rendered, &authorizations);
        if !decision.is_allowed() {
            refused.push(format!(
                "{} ({:?}) -> {decision:?}\n  {authorizations:?}",
                record.call.action, record.outcome
            ));
        }
        // A write to an existing role must have been judged on what the role was.
        let write_on_role = record.call.role.is_some()
            && record.call.action != "CreateRole"
            && !record.call.action.starts_with("Get")
            && !record.call.action.starts_with("List");
        if write_on_role && matches!(record.outcome, Outcome::Served(200)) {
            assert!(
                record.resource.is_some(),
                "{} on {:?} was recorded without its role",
                record.call.action,
                record.call.role
            );
        }
    }
    eprintln!(
        "evaluated {evaluated} recorded IAM requests, {} distinct actions: {by_action:?}",
        by_action.len()
    );
    assert!(
        refused.is_empty(),
        "the rendered policy refuses {} request(s) the operator sent:\n{}\n{rendered:#}",
        refused.len(),
        refused.join("\n")
    );
    let missing: Vec<&str> = EXPECTED_ACTIONS
        .into_iter()
        .filter(|action| !by_action.contains_key(*action))
        .collect();
    assert!(
        missing.is_empty(),
        "the lifecycle never made the operator send {missing:?}: the evaluation proves less than it should"
    );
    assert_eq!(
        proxy.attempts("DeleteRolePermissionsBoundary"),
        0,
        "with a boundary the operator never removes one"
    );

    // The same requests under a policy rendered for another cluster, or another boundary:
    // the writes that depend on the tag, or on the boundary, must now be refused, or the
    // recorded context was not what the evaluation went by.
    let refused_under = |target: PolicyTarget, actions: &[&str]| {
        let policy = operator_policy(&target).expect("the policy renders");
        let judged: Vec<bool> = records
            .iter()
            .filter(|r| actions.contains(&r.call.action.as_str()))
            .map(|r| !decide(&policy, &authorizations_of(r, &account)).is_allowed())
            .collect();
        (
            judged.len(),
            judged.iter().filter(|refused| **refused).count(),
        )
    };
    let tagged_writes = [
        "CreateRole",
        "PutRolePolicy",
        "AttachRolePolicy",
        "UpdateAssumeRolePolicy",
        "UpdateRole",
        "UntagRole",
        "DeleteRolePolicy",
        "DetachRolePolicy",
        "DeleteRole",
        "PutRolePermissionsBoundary",
        "CreateOpenIDConnectProvider",
        "AddClientIDToOpenIDConnectProvider",
        "RemoveClientIDFromOpenIDConnectProvider",
        "UpdateOpenIDConnectProviderThumbprint",
    ];
    let (judged, refused) = refused_under(
        PolicyTarget {
            cluster_name: "another".into(),
            role_path: Some(format!("/irsa/{}/", s.cluster)),
            ..target.clone()
        },
        &tagged_writes,
    );
    assert!(judged >= 20, "{judged} tagged writes recorded");
    assert_eq!(
        refused, judged,
        "another cluster's policy allows some of our writes"
    );
    let bounded_writes = [
        "CreateRole",
        "PutRolePolicy",
        "AttachRolePolicy",
        "PutRolePermissionsBoundary",
    ];
    let (judged, refused) = refused_under(
        PolicyTarget {
            permissions_boundary: Some(other_boundary.clone()),
            ..target.clone()
        },
        &bounded_writes,
    );
    assert!(judged >= 8, "{judged} boundary-conditioned writes recorded");
    assert_eq!(
        refused, judged,
        "another boundary's policy allows some of our writes"
    );

    // The escalations, judged by the same evaluator against the same policy.
    let confinement = Confinement {
        account: &account,
        cluster: &s.cluster,
        role_path: &format!("/irsa/{}/", s.cluster),
        boundary: &boundary,
    };
    for escalation in escalations(&confinement) {
        let decision = decide(
            &rendered,
            &authorizations(&escalation.params, escalation.resource.as_ref(), &account),
        );
        eprintln!("escalation: {} -> {decision:?}", escalation.what);
        let expected = escalation.denied_by.map_or(Decision::ImplicitDeny, |sid| {
            Decision::ExplicitDeny(sid.into())
        });
        assert_eq!(decision, expected, "{}", escalation.what);
    }
}
