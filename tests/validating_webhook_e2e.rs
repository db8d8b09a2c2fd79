//! The validating webhook, called by the real API server over TLS: `kubectl apply` and
//! `kubectl apply --dry-run=server` refuse what the operator's status would refuse,
//! guardrails included, and a guardrail tightened later never blocks a deletion.
//!
//! The test registers the shipped ValidatingWebhookConfiguration by URL on loopback,
//! scoped to its own namespace so it never sees other tests' PodIamRoles, and runs the
//! operator with exactly the shipped RBAC (`config/rbac` plus the component's).

mod support;

use std::process::Command;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::{Value, json};
use support::{
    eventually, free_port,
    gitops::test_manifests,
    rbac::{self, OPERATOR_NAMESPACE},
    scenario::{Scenario, dynamo_spec},
    sum_metric,
};

fn configurations(s: &Scenario) -> Api<ValidatingWebhookConfiguration> {
    Api::all(s.bed.kube.clone())
}

/// `config/components/validating-webhook/validating-webhook.yaml`, pointed at `port` on
/// loopback and scoped to the scenario's namespace; returns its name.
async fn register(s: &Scenario, port: u16) -> String {
    let mut webhook: Value = serde_yaml::from_str(include_str!(
        "../config/components/validating-webhook/validating-webhook.yaml"
    ))
    .unwrap();
    let name = webhook["metadata"]["name"].as_str().unwrap().to_string();
    webhook["webhooks"][0]["clientConfig"] =
        json!({"url": format!("https://127.0.0.1:{port}/validate")});
    webhook["webhooks"][0]["namespaceSelector"] =
        json!({"matchLabels": {"kubernetes.io/metadata.name": s.namespace}});
    let webhook: ValidatingWebhookConfiguration = serde_json::from_value(webhook).unwrap();
    configurations(s)
        .patch(
            &name,
            &PatchParams::apply("irsa-e2e").force(),
            &Patch::Apply(&webhook),
        )
        .await
        .expect("apply ValidatingWebhookConfiguration");
    name
}

fn manifest(s: &Scenario, name: &str, spec: Value) -> String {
    json!({"apiVersion": "irsa.dev/v1alpha1", "kind": "PodIamRole",
        "metadata": {"name": name, "namespace": s.namespace}, "spec": spec})
    .to_string()
}

/// `kubectl apply [--dry-run=server]`, as a user with this kubeconfig, of a manifest (JSON
/// or YAML) into `namespace`: `Err(stderr)` when the API server refused it.
fn kubectl_apply(
    kubeconfig: &str,
    namespace: &str,
    manifest: &str,
    dry_run: bool,
) -> Result<(), String> {
    let mut command = Command::new("kubectl");
    command
        .env("KUBECONFIG", kubeconfig)
        .args(["apply", "--namespace", namespace, "-f", "-"]);
    if dry_run {
        command.arg("--dry-run=server");
    }
    let output = support::tools::output_with_stdin(command, manifest);
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The spec of tests/manifests/guardrails/tenant.yaml's guardrail.
fn tenant_guardrail() -> Value {
    let text = include_str!("manifests/guardrails/tenant.yaml");
    let guardrail: Value = serde_yaml::from_str(text.split("---\n").nth(1).unwrap()).unwrap();
    guardrail["spec"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn apply_refuses_what_the_operator_would_refuse() {
    let mut s = Scenario::prepare("validating").await;
    s.bed.ensure_oidc_provider().await;
    s.bed.create_service_account(&s.namespace, "app").await;
    let port = free_port();
    let configuration = register(&s, port).await;
    let manifests = [
        include_str!("../config/rbac/role.yaml"),
        include_str!("../config/components/validating-webhook/rbac.yaml"),
    ];
    let kubeconfig = rbac::operator_kubeconfig(&s, &manifests).await;
    let admin = s.bed.vars.insert("KUBECONFIG".into(), kubeconfig).unwrap();
    s.operator_env
        .push(("POD_NAMESPACE".into(), OPERATOR_NAMESPACE.into()));
    let addr = format!("127.0.0.1:{port}");
    let s = s
        .with_operator(&[
            "--validating-webhook",
            "--webhook-addr",
            &addr,
            "--webhook-cert-hosts",
            "127.0.0.1",
            "--leader-election-namespace",
            OPERATOR_NAMESPACE,
        ])
        .await;
    let apply = |manifest: &str, dry_run| kubectl_apply(&admin, &s.namespace, manifest, dry_run);

    // The manifests `irsa-operator validate` is tested on, and the samples, get the same
    // verdicts (tests/validate_cli.rs): first without guardrails, the built-in deny list included
    // (no ValidatingAdmissionPolicy is bound here). The API server calls the webhook once
    // the operator has written its CA into caBundle.
    let manifests = test_manifests(&[
        "tests/manifests/good",
        "tests/manifests/bad",
        "config/samples",
    ]);
    let star = manifests.iter().find(|(n, _)| n == "builtin-star").unwrap();
    eventually("the API server to call the validating webhook", || async {
        apply(&star.1.to_string(), true).err()
    })
    .await;
    for (name, object) in &manifests {
        let verdict = apply(&object.to_string(), true);
        eprintln!("{name:<20} {verdict:?}");
        match name.as_str() {
            "invalid-action" => assert!(verdict.unwrap_err().contains(": InvalidSpec: ")),
            builtin if builtin.starts_with("builtin-") => {
                let refusal = verdict.unwrap_err();
                assert!(
                    refusal.contains("denied the request")
                        && refusal.contains(": PolicyNotAllowed: "),
                    "{refusal}"
                );
            }
            _ => assert_eq!(verdict, Ok(()), "{name}"),
        }
    }

    // Then under the tenant guardrail, applied a moment ago: with and without --dry-run,
    // and nothing is stored.
    s.apply_guardrail(tenant_guardrail()).await;
    let outside = manifests
        .iter()
        .find(|(n, _)| n == "outside-guardrail")
        .unwrap();
    for dry_run in [true, false] {
        let refusal = apply(&outside.1.to_string(), dry_run).unwrap_err();
        assert!(
            refusal.contains(&format!(
                "PolicyNotAllowed: not allowed by the guardrails, nothing was written to IAM: \
                 spec.policy Statement[0]: Action `sqs:SendMessage` is not within guardrail {}'s \
                 allowedActions",
                s.namespace
            )),
            "{refusal}"
        );
    }
    assert!(
        s.roles()
            .get_opt("outside-guardrail")
            .await
            .unwrap()
            .is_none()
    );
    for good in ["reader", "readonly"] {
        let object = &manifests.iter().find(|(n, _)| n == good).unwrap().1;
        assert_eq!(apply(&object.to_string(), true), Ok(()), "{good}");
    }

    // The tenant guardrail requires a boundary LocalStack does not have: a plainer one.
    s.apply_guardrail(json!({"allowedActions": ["dynamodb:*"]}))
        .await;
    // What the guardrails allow goes through and converges.
    apply(&manifest(&s, "app", dynamo_spec("app")), false).expect("allowed");
    s.wait_reason("app", "Synced").await;
    let writes = s.operator().iam_writes().await;
    assert_eq!(writes, 2, "only the allowed PodIamRole reached IAM");

    // A guardrail tightened later: the stored object reports it, its spec can no longer
    // change, but labels can, and its deletion (the operator's finalizer update) finishes.
    s.apply_guardrail(json!({"allowedActions": ["sqs:*"]}))
        .await;
    s.wait_reason("app", "PolicyNotAllowed").await;
    let mut changed = dynamo_spec("app");
    changed["description"] = json!("changed");
    let refusal = apply(&manifest(&s, "app", changed), false).unwrap_err();
    assert!(refusal.contains("PolicyNotAllowed"), "{refusal}");
    s.roles()
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
        )
        .await
        .expect("a label change is not a spec change");
    s.roles()
        .delete("app", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the PodIamRole to be gone", || async {
        s.roles()
            .get_opt("app")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(s.role(&s.role_name("app")).await.is_none());

    let log = std::fs::read_to_string(&s.operator().log).unwrap();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator hit an RBAC denial:\n{log}"
    );
    let metrics = s.operator().metrics().await.unwrap_or_default();
    let validations = "irsa_operator_webhook_validations_total";
    assert!(sum_metric(&metrics, validations, r#"outcome="denied""#) >= 9);
    assert!(sum_metric(&metrics, validations, r#"outcome="allowed""#) >= 1);
    assert!(sum_metric(&metrics, validations, r#"outcome="skipped""#) >= 1);

    s.guardrails()
        .delete(&s.namespace, &DeleteParams::default())
        .await
        .expect("delete guardrail");
    configurations(&s)
        .delete(&configuration, &DeleteParams::default())
        .await
        .expect("delete configuration");
}
