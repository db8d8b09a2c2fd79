//! End-to-end: what Flux (kstatus, and its CEL `healthCheckExprs` as documented) and Argo
//! CD (the health checks under health/) make of live PodIamRoles in every state, computed
//! by their own code.

mod support;

use serde_json::{Value, json};
use support::{
    fault_proxy::{Fault, Rule},
    gitops::{argo_health, flux_health, kstatus, raw_object, test_manifests},
    scenario::{ANNOTATION, Scenario, dynamo_spec},
};

/// A spec whose only statement grants `action`.
fn granting(service_account: &str, action: &str) -> Value {
    json!({"serviceAccountName": service_account, "policy": {"Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn kstatus_flux_cel_and_argo_health_read_every_state() {
    let (s, proxy) = Scenario::prepare_behind_proxy("kstatus", 11).await;
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
        flux_health(&fresh),
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
        (
            "invalid",
            Some(granting("invalid", "not an action")),
            "InvalidSpec",
        ),
        ("denied", Some(granting("denied", "*")), "PolicyNotAllowed"),
        ("conflict", Some(dynamo_spec("conflict")), "RoleConflict"),
        (
            "rejected",
            Some(json!({"serviceAccountName": "rejected",
                "managedPolicyArns": ["arn:aws:iam::000000000000:policy/does-not-exist"]})),
            "IamRejected",
        ),
        (
            "unavailable",
            Some(dynamo_spec("unavailable")),
            "IamUnavailable",
        ),
        // Its ServiceAccount is never created.
        (
            "waiting",
            Some(dynamo_spec("waiting")),
            "ServiceAccountNotFound",
        ),
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
        table.push((
            reason.to_string(),
            kstatus(&object),
            argo_health(&object),
            flux_health(&object),
        ));
    }

    for (state, (kstatus, _), (health, message), (flux, _)) in &table {
        eprintln!(
            "{state:<26} kstatus {kstatus:<10} flux CEL {flux:<10} argo {health:<11} {message}"
        );
        assert_eq!(
            flux, kstatus,
            "{state}: the documented healthCheckExprs and kstatus"
        );
    }
    let read: Vec<(&str, &str, &str)> = table
        .iter()
        .map(|(state, (k, _), (a, _), _)| (state.as_str(), k.as_str(), a.as_str()))
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
            ("ServiceAccountNotFound", "InProgress", "Progressing"),
            ("ServiceAccountInUse", "Failed", "Degraded"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn admission_policy_refuses_the_built_in_denials_at_apply_time() {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    use kube::api::{Api, DeleteParams, Patch, PatchParams};

    let s = Scenario::prepare("vap").await;
    let yaml = include_str!("../config/admission/validating-admission-policy.yaml");
    let mut documents = yaml.split("---\n");
    let policy: ValidatingAdmissionPolicy =
        serde_yaml::from_str(documents.next().unwrap()).unwrap();
    let mut binding: ValidatingAdmissionPolicyBinding =
        serde_yaml::from_str(documents.next().unwrap()).unwrap();
    let apply = PatchParams::apply("irsa-e2e").force();
    Api::<ValidatingAdmissionPolicy>::all(s.bed.kube.clone())
        .patch(
            policy.metadata.name.as_ref().unwrap(),
            &apply,
            &Patch::Apply(&policy),
        )
        .await
        .expect("install the policy");
    // The shipped binding covers every namespace; the test bed is shared, so bind only ours.
    let binding_name = format!("irsa-e2e-{}", s.namespace);
    binding.metadata.name = Some(binding_name.clone());
    binding.spec.match_resources = Some(
        serde_json::from_value(json!({"namespaceSelector": {"matchLabels":
            {"kubernetes.io/metadata.name": s.namespace}}}))
        .unwrap(),
    );
    let bindings = Api::<ValidatingAdmissionPolicyBinding>::all(s.bed.kube.clone());
    bindings
        .patch(&binding_name, &apply, &Patch::Apply(&binding))
        .await
        .expect("bind the policy");

    let dry_run = PatchParams::apply("kubectl").dry_run();
    let roles = s.roles();
    let verdict = |object: Value| {
        let roles = roles.clone();
        let dry_run = dry_run.clone();
        async move {
            let name = object["metadata"]["name"].as_str().unwrap().to_string();
            match roles.patch(&name, &dry_run, &Patch::Apply(&object)).await {
                Ok(_) => None,
                Err(kube::Error::Api(status)) => Some(status.message),
                Err(other) => panic!("dry-run apply of {name}: {other}"),
            }
        }
    };
    let manifests = test_manifests(&[
        "tests/manifests/good",
        "tests/manifests/bad",
        "config/samples",
    ]);
    let star = manifests
        .iter()
        .find(|(n, _)| n == "builtin-star")
        .unwrap()
        .1
        .clone();
    // Policies take effect once the API server has compiled them.
    support::eventually("the policy to refuse builtin-star", || {
        verdict(star.clone())
    })
    .await;
    for (name, object) in &manifests {
        let refusal = verdict(object.clone()).await;
        eprintln!("{name:<20} {}", refusal.as_deref().unwrap_or("accepted"));
        if name.starts_with("builtin-") {
            let message = refusal.unwrap_or_else(|| panic!("{name} was accepted"));
            assert!(message.contains("built-in guardrail"), "{name}: {message}");
            assert!(
                message.contains("ValidatingAdmissionPolicy 'podiamroles.irsa.dev'"),
                "{message}"
            );
        } else {
            assert_eq!(
                refusal, None,
                "{name}: beyond CEL, the operator's status refuses it"
            );
        }
    }
    // Without --dry-run too: nothing is stored.
    let created = roles
        .patch(
            "builtin-star",
            &PatchParams::apply("kubectl"),
            &Patch::Apply(&star),
        )
        .await;
    assert!(created.is_err());
    assert!(roles.get_opt("builtin-star").await.unwrap().is_none());
    bindings
        .delete(&binding_name, &DeleteParams::default())
        .await
        .expect("unbind");
}

/// Reconciles finished so far.
async fn reconciles(s: &Scenario) -> u64 {
    let text = s.operator().metrics().await.expect("metrics are served");
    support::sum_metric(&text, "irsa_operator_reconciles_total", "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_foreign_role_annotation_is_reported_and_never_overwritten() {
    use kube::api::{Patch, PatchParams};

    let s = Scenario::start("fight").await;
    let git = PatchParams::apply("argocd-controller");
    let foreign = "arn:aws:iam::000000000000:role/made-by-hand";
    let from_git = |labels: Value, annotations: Option<Value>| {
        let mut sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "app", "labels": labels}});
        if let Some(annotations) = annotations {
            sa["metadata"]["annotations"] = annotations;
        }
        sa
    };
    let sas = s.service_accounts();
    sas.patch(
        "app",
        &git,
        &Patch::Apply(from_git(
            json!({"sync": "1"}),
            Some(json!({ANNOTATION: foreign})),
        )),
    )
    .await
    .expect("Git applies the ServiceAccount");
    s.apply("app", dynamo_spec("app")).await;

    let status = s
        .wait_reason("app", "ServiceAccountAnnotationConflict")
        .await;
    let ready = &status.conditions[0];
    assert!(
        ready.message.contains("\"argocd-controller\""),
        "{}",
        ready.message
    );
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True")
    );
    let events = kube::Api::<k8s_openapi::api::events::v1::Event>::namespaced(
        s.bed.kube.clone(),
        &s.namespace,
    );
    support::eventually("a ServiceAccountAnnotationConflict event", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("ServiceAccountAnnotationConflict")
                && e.note
                    .as_deref()
                    .is_some_and(|n| n.contains("argocd-controller"))
        })
    })
    .await;
    assert_eq!(s.annotation("app").await.as_deref(), Some(foreign));

    // Git syncs again (a label changed, so the operator is woken): no write from it.
    let synced = sas
        .patch(
            "app",
            &git,
            &Patch::Apply(from_git(
                json!({"sync": "2"}),
                Some(json!({ANNOTATION: foreign})),
            )),
        )
        .await
        .unwrap();
    let version = synced.metadata.resource_version.clone();
    let seen = reconciles(&s).await;
    support::eventually("two more reconciles", || async {
        (reconciles(&s).await >= seen + 2).then_some(())
    })
    .await;
    let after = sas.get("app").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, version,
        "the operator wrote the ServiceAccount"
    );
    assert!(s.reports("app", "ServiceAccountAnnotationConflict").await);

    // Git drops its value: the operator annotates.
    sas.patch(
        "app",
        &git,
        &Patch::Apply(from_git(json!({"sync": "3"}), None)),
    )
    .await
    .unwrap();
    s.wait_reason("app", "Synced").await;
    let role = s.role(&s.role_name("app")).await.expect("role");
    assert_eq!(s.annotation("app").await.as_deref(), role.arn().into());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_blocked_cleanup_is_reported_and_the_release_annotation_lets_it_go() {
    use kube::api::{DeleteParams, Patch, PatchParams};

    let (s, proxy) = Scenario::prepare_behind_proxy("release", 12).await;
    let s = s.with_operator(&[]).await;
    s.bed.create_service_account(&s.namespace, "app").await;
    s.apply("app", dynamo_spec("app")).await;
    s.wait_reason("app", "Synced").await;
    let role_name = s.role_name("app");
    let before = s.role(&role_name).await.expect("role");

    // An SCP denies every deletion step.
    const DELETIONS: [&str; 3] = ["DeleteRolePolicy", "DetachRolePolicy", "DeleteRole"];
    proxy.set_rules(
        DELETIONS
            .iter()
            .map(|action| Rule::new(Fault::access_denied(action, &role_name)).action(action))
            .collect(),
    );
    s.roles()
        .delete("app", &DeleteParams::default())
        .await
        .expect("delete");
    let status = s.wait_reason("app", "CleanupBlocked").await;
    let ready = &status.conditions[0];
    assert!(
        ready.message.contains("(AccessDenied)") && ready.message.contains("irsa.dev/release=true"),
        "{}",
        ready.message
    );
    let events = kube::Api::<k8s_openapi::api::events::v1::Event>::namespaced(
        s.bed.kube.clone(),
        &s.namespace,
    );
    support::eventually("a CleanupBlocked event", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("CleanupBlocked"))
    })
    .await;

    // Released: gone at the next reconcile, with nothing sent to IAM.
    let served_before = proxy.served_total();
    s.roles()
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"irsa.dev/release": "true"}}})),
        )
        .await
        .expect("annotate");
    support::eventually("app to be gone", || async {
        s.roles()
            .get_opt("app")
            .await
            .ok()
            .filter(Option::is_none)
            .map(drop)
    })
    .await;
    let deletions: usize = DELETIONS.iter().map(|a| proxy.served(a)).sum();
    assert_eq!(deletions, 0, "no deletion reached IAM");
    assert_eq!(
        proxy.served_total(),
        served_before,
        "released without any IAM call"
    );
    let kept = s.role(&role_name).await.expect("the role is kept");
    assert_eq!(kept.role_id(), before.role_id());
    assert!(s.inline_policy(&role_name).await.is_object());
    assert_eq!(s.annotation("app").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn the_default_deletion_policy_flag_retains_unset_roles() {
    let s = Scenario::prepare("retain-default").await;
    s.bed.ensure_oidc_provider().await;
    let s = s
        .with_operator(&["--default-deletion-policy", "Retain"])
        .await;
    for name in ["unset", "explicit"] {
        s.bed.create_service_account(&s.namespace, name).await;
    }
    s.apply("unset", dynamo_spec("unset")).await;
    let mut explicit = dynamo_spec("explicit");
    explicit["deletionPolicy"] = json!("Delete");
    s.apply("explicit", explicit).await;
    s.wait_reason("unset", "Synced").await;
    s.wait_reason("explicit", "Synced").await;
    s.delete("unset").await;
    s.delete("explicit").await;
    assert!(
        s.role(&s.role_name("unset")).await.is_some(),
        "kept by the flag"
    );
    assert!(
        s.role(&s.role_name("explicit")).await.is_none(),
        "the spec wins"
    );
}

/// IAM calls of one operation the operator made so far.
async fn iam_calls(s: &Scenario, operation: &str) -> u64 {
    let text = s.operator().metrics().await.expect("metrics are served");
    support::sum_metric(
        &text,
        "irsa_operator_iam_calls_total",
        &format!("operation=\"{operation}\""),
    )
}

fn role_tags(role: &aws_sdk_iam::types::Role) -> std::collections::BTreeMap<String, String> {
    support::scenario::tags(role)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_retained_role_is_readopted_with_its_arn_and_id() {
    let s = Scenario::start("readopt").await;
    s.bed.create_service_account(&s.namespace, "app").await;
    let mut spec = dynamo_spec("app");
    spec["deletionPolicy"] = json!("Retain");
    s.apply("app", spec.clone()).await;
    s.wait_reason("app", "Synced").await;
    let role_name = s.role_name("app");
    let first = s.role(&role_name).await.expect("role");
    s.delete("app").await;
    assert!(s.role(&role_name).await.is_some(), "retained");

    // Re-applied (a restore, a move between Argo CD apps): a new UID, so not ours...
    s.apply("app", spec.clone()).await;
    s.wait_reason("app", "RoleConflict").await;
    let creates = iam_calls(&s, "CreateRole").await;
    // ...until the PodIamRole opts in.
    spec["adopt"] = json!(true);
    s.apply("app", spec).await;
    s.wait_reason("app", "Synced").await;
    let adopted = s.role(&role_name).await.expect("role");
    assert_eq!(adopted.arn(), first.arn());
    assert_eq!(adopted.role_id(), first.role_id());
    assert_eq!(iam_calls(&s, "CreateRole").await, creates, "no CreateRole");
    let uid = s.roles().get("app").await.unwrap().metadata.uid;
    assert_eq!(
        role_tags(&adopted).get("irsa.dev/uid"),
        uid.as_ref(),
        "re-tagged"
    );
    assert_eq!(s.annotation("app").await.as_deref(), Some(first.arn()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_foreign_role_is_adopted_only_with_the_opt_in_and_a_guardrail() {
    use irsa_api::PodIamRoleGuardrail;
    use kube::api::{Api, DeleteParams, Patch, PatchParams};

    let s = Scenario::start("adopt").await;
    // Made by eksctl or Terraform: no ownership tags, another trust policy.
    let adoptable = format!("legacy-{}", s.namespace);
    let protected = format!("legacy-keep-{}", s.namespace);
    let mut by_hand = std::collections::HashMap::new();
    for name in [&adoptable, &protected] {
        let created = s
            .bed
            .iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(
                json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                    "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
                .to_string(),
            )
            .tags(
                aws_sdk_iam::types::Tag::builder()
                    .key("owner")
                    .value("terraform")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("a role made outside the cluster");
        by_hand.insert(name.clone(), created.role().unwrap().clone());
    }
    let guardrail = json!({"apiVersion": "irsa.dev/v1alpha1", "kind": "PodIamRoleGuardrail",
        "metadata": {"name": s.namespace}, "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": s.namespace}},
            "grantedRoleNames": [adoptable, protected],
            "adoptableRoleNames": [adoptable]}});
    let guardrails = Api::<PodIamRoleGuardrail>::all(s.bed.kube.clone());
    guardrails
        .patch(
            &s.namespace,
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(&guardrail),
        )
        .await
        .expect("guardrail");

    for name in ["legacy", "keep"] {
        s.bed.create_service_account(&s.namespace, name).await;
    }
    let spec = |sa: &str, role: &str, adopt: bool| {
        let mut spec = dynamo_spec(sa);
        spec["roleName"] = json!(role);
        spec["adopt"] = json!(adopt);
        spec
    };
    s.apply("legacy", spec("legacy", &adoptable, false)).await;
    s.apply("keep", spec("keep", &protected, true)).await;
    s.wait_reason("legacy", "RoleConflict").await;
    // Opted in, but no guardrail lets this name be adopted.
    s.wait_reason("keep", "RoleConflict").await;

    s.apply("legacy", spec("legacy", &adoptable, true)).await;
    s.wait_reason("legacy", "Synced").await;
    let adopted = s.role(&adoptable).await.expect("role");
    let original = &by_hand[&adoptable];
    assert_eq!(adopted.arn(), original.arn());
    assert_eq!(adopted.role_id(), original.role_id());
    let tags = role_tags(&adopted);
    assert_eq!(tags.get("irsa.dev/namespace"), Some(&s.namespace));
    assert_eq!(tags.get("owner"), None, "converged to the spec's tags");
    let trust: Value = serde_json::from_str(
        &percent_encoding::percent_decode_str(adopted.assume_role_policy_document().unwrap())
            .decode_utf8()
            .unwrap(),
    )
    .unwrap();
    assert!(
        trust.to_string().contains("system:serviceaccount"),
        "{trust}"
    );
    assert!(s.inline_policy(&adoptable).await.is_object());

    let untouched = s.role(&protected).await.expect("role");
    assert_eq!(role_tags(&untouched), role_tags(&by_hand[&protected]));
    guardrails
        .delete(&s.namespace, &DeleteParams::default())
        .await
        .expect("delete guardrail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn observe_mode_uses_an_existing_role_and_never_writes_to_iam() {
    let s = Scenario::start("observe").await;
    let issuer = s.bed.issuer_host_path();
    let trust_for = |service_account: &str| {
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Federated": s.bed.provider_arn()},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{issuer}:sub"): format!("system:serviceaccount:{}:{service_account}", s.namespace),
                format!("{issuer}:aud"): "sts.amazonaws.com"}}}]})
    };
    // Roles from Terraform: one trusting "app", one trusting another ServiceAccount.
    let prefix = format!("{}.{}.", s.cluster, s.namespace);
    let mut arns = Vec::new();
    for (role, trusted) in [("byo", "app"), ("other", "someone-else")] {
        let created = s
            .bed
            .iam
            .create_role()
            .role_name(format!("{prefix}{role}"))
            .assume_role_policy_document(trust_for(trusted).to_string())
            .send()
            .await
            .expect("a role made outside the operator");
        arns.push(created.role().unwrap().arn().to_string());
    }
    for sa in ["app", "wrong", "missing"] {
        s.bed.create_service_account(&s.namespace, sa).await;
    }
    let observe = |sa: &str, role: &str| json!({"serviceAccountName": sa, "mode": "Observe", "roleName": format!("{prefix}{role}")});
    s.apply("app", observe("app", "byo")).await;
    s.apply("wrong", observe("wrong", "other")).await;
    s.apply("missing", observe("missing", "absent")).await;

    let status = s.wait_reason("app", "Synced").await;
    assert_eq!(status.role_arn.as_deref(), Some(arns[0].as_str()));
    assert_eq!(s.annotation("app").await.as_deref(), Some(arns[0].as_str()));
    let wrong = s.wait_reason("wrong", "ObservedRoleNotTrusted").await;
    assert!(
        wrong.conditions[0]
            .message
            .contains("system:serviceaccount"),
        "{}",
        wrong.conditions[0].message
    );
    assert_eq!(s.annotation("wrong").await, None);
    s.wait_reason("missing", "ObservedRoleNotFound").await;

    // Fixing the trust policy outside (as Terraform would) is picked up by the resync.
    s.bed
        .iam
        .update_assume_role_policy()
        .role_name(format!("{prefix}other"))
        .policy_document(trust_for("wrong").to_string())
        .send()
        .await
        .expect("fix the trust policy");
    s.wait_reason("wrong", "Synced").await;

    // At rest, roles the listing shows trusting their ServiceAccounts cost no read; a
    // missing one is read at each resync, before it is reported.
    s.delete("missing").await;
    let listings = || iam_calls(&s, "GetAccountAuthorizationDetails");
    let seen = listings().await;
    support::eventually("a listing started after the last GetRole", || async {
        (listings().await >= seen + 2).then_some(())
    })
    .await;
    let (get_role, seen) = (iam_calls(&s, "GetRole").await, listings().await);
    support::eventually("three more listings (resyncs)", || async {
        (listings().await >= seen + 3).then_some(())
    })
    .await;
    assert_eq!(
        iam_calls(&s, "GetRole").await,
        get_role,
        "observed roles at rest are checked in the listing"
    );

    // A spec change never reaches IAM either, nor does deletion.
    s.apply("app", {
        let mut spec = observe("app", "byo");
        spec["description"] = json!("ignored in Observe");
        spec
    })
    .await;
    s.wait_reason("app", "Synced").await;
    for name in ["app", "wrong"] {
        s.delete(name).await;
    }
    assert!(s.role(&format!("{prefix}byo")).await.is_some(), "kept");
    assert_eq!(
        s.operator().iam_writes().await,
        0,
        "Observe never writes to IAM"
    );
}
