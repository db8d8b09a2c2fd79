//! `irsa-operator doctor`, run as a user runs it, on a healthy chain and then on each
//! broken link: it fails exactly that check, says how to fix it, and exits non-zero.
//!
//! The test works in its own LocalStack account (LocalStack takes a 12-digit access key
//! as the account), so it can break the OIDC provider without touching other tests'.

mod support;

use std::{collections::BTreeSet, process::Command};

use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region};
use irsa_core::pod_identity::{InjectionDefaults, identity, inject};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use support::{
    eventually_matches,
    scenario::{Scenario, dynamo_spec},
    tools::BoundedOutput,
};

struct Doctor<'a> {
    s: &'a Scenario,
    account: String,
}

impl Doctor<'_> {
    /// `irsa-operator doctor -n NS TARGET -o json`: (exit code, report).
    fn run(&self, target: &str) -> (i32, Value) {
        let vars = &self.s.bed.vars;
        let output = Command::new(env!("CARGO_BIN_EXE_irsa-operator"))
            .args(["doctor", "-n", &self.s.namespace, target, "-o", "json"])
            .args(["--oidc-ca-file", &vars["TESTBED_CA_FILE"]])
            .env_clear()
            .env("KUBECONFIG", &vars["KUBECONFIG"])
            .env("AWS_ENDPOINT_URL", &vars["AWS_ENDPOINT_URL"])
            .env("AWS_REGION", &vars["AWS_REGION"])
            .env("AWS_ACCESS_KEY_ID", &self.account)
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .bounded_output()
            .expect("run doctor");
        let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
            panic!(
                "doctor printed no JSON: {}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status.code().unwrap_or(-1), report)
    }

    /// The names of the failed checks, asserting the exit code agrees.
    fn failures(&self, target: &str) -> (BTreeSet<String>, Value) {
        let (code, report) = self.run(target);
        let failed: BTreeSet<String> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "fail")
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(code, if failed.is_empty() { 0 } else { 1 }, "{report:#}");
        (failed, report)
    }

    /// Asserts that exactly `check` fails, with a fix that mentions `fix_mentions`.
    fn fails_only(&self, target: &str, check: &str, fix_mentions: &str) {
        let (failed, report) = self.failures(target);
        assert_eq!(failed, BTreeSet::from([check.to_string()]), "{report:#}");
        let failure = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == check)
            .unwrap();
        assert!(
            failure["fix"].as_str().unwrap().contains(fix_mentions),
            "{failure:#}"
        );
    }
}

/// A LocalStack account of this test's own: twelve digits from the namespace's suffix.
fn account_for(namespace: &str) -> String {
    let suffix = namespace.rsplit('-').next().unwrap();
    let number = u64::from_str_radix(suffix, 16).unwrap() % 100_000_000_000;
    format!("9{number:011}")
}

async fn iam_for(s: &Scenario, account: &str) -> aws_sdk_iam::Client {
    let aws = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&s.bed.vars["AWS_ENDPOINT_URL"])
        .region(Region::new(s.bed.vars["AWS_REGION"].clone()))
        .credentials_provider(Credentials::new(account, "test", None, None, "doctor-e2e"))
        .load()
        .await;
    aws_sdk_iam::Client::new(&aws)
}

async fn create_pod(s: &Scenario, pod: &Pod) {
    Api::<Pod>::namespaced(s.bed.kube.clone(), &s.namespace)
        .create(&PostParams::default(), pod)
        .await
        .expect("create pod");
}

fn plain_pod(name: &str) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {
        "serviceAccountName": "app", "containers": [{"name": "app", "image": "app:1"}]}}))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn doctor_passes_a_healthy_chain_and_names_each_broken_link() {
    let mut s = Scenario::prepare("doctor").await;
    let account = account_for(&s.namespace);
    s.operator_env
        .push(("AWS_ACCESS_KEY_ID".into(), account.clone()));
    let ca_file = s.bed.vars["TESTBED_CA_FILE"].clone();
    let mut s = s
        .with_operator(&["--oidc-provider", "manage", "--oidc-ca-file", &ca_file])
        .await;
    let iam = iam_for(&s, &account).await;
    s.bed.create_service_account(&s.namespace, "app").await;
    // Created before its ServiceAccount has a role: it never got the identity.
    create_pod(&s, &plain_pod("early")).await;
    s.apply("app", dynamo_spec("app")).await;
    let status = s.wait_reason("app", "Synced").await;
    let role_arn = status.role_arn.unwrap();
    let role_name = status.role_name.unwrap();
    let provider_arn = status.oidc_provider_arn.unwrap();

    // A pod admitted after the annotation, as a pod identity webhook mutates it.
    let annotations = s
        .service_accounts()
        .get("app")
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap();
    let defaults = InjectionDefaults::default();
    let injected = inject(
        &plain_pod("late"),
        &identity(&annotations, &defaults).unwrap(),
        &defaults,
    );
    create_pod(&s, &injected).await;

    let doctor = Doctor {
        s: &s,
        account: account.clone(),
    };
    // The operator creates the provider (manage) right after its caches sync.
    eventually_matches(
        "doctor to pass the healthy chain",
        || async { doctor.failures("sa/app").0 },
        BTreeSet::is_empty,
    )
    .await;
    assert!(doctor.failures("pir/app").0.is_empty());
    assert!(doctor.failures("pod/late").0.is_empty());
    doctor.fails_only("pod/early", "pod", "restart it");

    // From here on things break behind the operator's back.
    s.operator.take().unwrap().stop();
    let doctor = Doctor {
        s: &s,
        account: account.clone(),
    };

    // No annotation (e.g. removed by a GitOps tool).
    let accounts = s.service_accounts();
    let remove = json!({"metadata": {"annotations": {"eks.amazonaws.com/role-arn": null}}});
    accounts
        .patch("app", &PatchParams::default(), &Patch::Merge(&remove))
        .await
        .unwrap();
    doctor.fails_only("sa/app", "annotation", "operator");
    let restore = json!({"metadata": {"annotations": {"eks.amazonaws.com/role-arn": role_arn}}});
    accounts
        .patch("app", &PatchParams::default(), &Patch::Merge(&restore))
        .await
        .unwrap();

    // A trust policy for another ServiceAccount (wrong `sub`).
    let role = iam.get_role().role_name(&role_name).send().await.unwrap();
    let trust = irsa_core::policy::decode_iam_document(
        role.role().unwrap().assume_role_policy_document().unwrap(),
    )
    .unwrap();
    let wrong_sub = trust.to_string().replace(
        &format!(":{}:app\"", s.namespace),
        &format!(":{}:other\"", s.namespace),
    );
    assert_ne!(wrong_sub, trust.to_string());
    set_trust(&iam, &role_name, &wrong_sub).await;
    doctor.fails_only("sa/app", "trust", "trust policy");
    let (_, report) = doctor.failures("sa/app");
    assert!(report.to_string().contains(":sub wants"), "{report:#}");
    set_trust(&iam, &role_name, &trust.to_string()).await;

    // The provider lacks the audience.
    iam.remove_client_id_from_open_id_connect_provider()
        .open_id_connect_provider_arn(&provider_arn)
        .client_id("sts.amazonaws.com")
        .send()
        .await
        .unwrap();
    doctor.fails_only("sa/app", "audience", "add-client-id");
    iam.add_client_id_to_open_id_connect_provider()
        .open_id_connect_provider_arn(&provider_arn)
        .client_id("sts.amazonaws.com")
        .send()
        .await
        .unwrap();

    // A stale thumbprint (the issuer's certificate was rotated).
    let provider = iam
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(&provider_arn)
        .send()
        .await
        .unwrap();
    let thumbprints = provider.thumbprint_list().to_vec();
    update_thumbprints(&iam, &provider_arn, vec!["f".repeat(40)]).await;
    doctor.fails_only("sa/app", "thumbprint", &thumbprints[0]);
    update_thumbprints(&iam, &provider_arn, thumbprints.clone()).await;

    // No provider at all.
    iam.delete_open_id_connect_provider()
        .open_id_connect_provider_arn(&provider_arn)
        .send()
        .await
        .unwrap();
    doctor.fails_only("sa/app", "provider", "--oidc-provider=manage");
    iam.create_open_id_connect_provider()
        .url(&s.bed.vars["TESTBED_OIDC_ISSUER"])
        .client_id_list("sts.amazonaws.com")
        .set_thumbprint_list(Some(thumbprints))
        .send()
        .await
        .unwrap();
    assert!(doctor.failures("sa/app").0.is_empty());

    // The role deleted behind the operator's back.
    iam.delete_role_policy()
        .role_name(&role_name)
        .policy_name("irsa-operator")
        .send()
        .await
        .unwrap();
    iam.delete_role()
        .role_name(&role_name)
        .send()
        .await
        .unwrap();
    doctor.fails_only("sa/app", "role", "recreates it");

    let usage = Command::new(env!("CARGO_BIN_EXE_irsa-operator"))
        .args(["doctor", "-n", &s.namespace, "nope"])
        .env("KUBECONFIG", &s.bed.vars["KUBECONFIG"])
        .bounded_output()
        .unwrap();
    assert_eq!(
        usage.status.code(),
        Some(2),
        "a bad target is a usage error"
    );
}

async fn set_trust(iam: &aws_sdk_iam::Client, role: &str, document: &str) {
    iam.update_assume_role_policy()
        .role_name(role)
        .policy_document(document)
        .send()
        .await
        .unwrap();
}

async fn update_thumbprints(iam: &aws_sdk_iam::Client, arn: &str, thumbprints: Vec<String>) {
    iam.update_open_id_connect_provider_thumbprint()
        .open_id_connect_provider_arn(arn)
        .set_thumbprint_list(Some(thumbprints))
        .send()
        .await
        .unwrap();
}
