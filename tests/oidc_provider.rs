//! End-to-end: the cluster's IAM OIDC provider in `existing` and `manage` modes, the
//! thumbprint CLI against openssl, and a CA rotation of the API server.
//!
//! There is one provider per issuer, so the stages run in order in a single test; this
//! binary holds nothing else, and cargo runs test binaries one at a time.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

use aws_sdk_iam::operation::get_open_id_connect_provider::GetOpenIdConnectProviderOutput;
use support::{
    eventually_matches,
    scenario::{Scenario, dynamo_spec},
    tools::BoundedOutput,
};

/// `openssl x509 -fingerprint -sha1` of a PEM file, as IAM wants it: lowercase, no colons.
fn openssl_fingerprint(pem: &str) -> String {
    let output = Command::new("openssl")
        .args(["x509", "-fingerprint", "-sha1", "-noout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(pem.as_bytes())?;
            child.wait_with_output()
        })
        .expect("openssl runs");
    let text = String::from_utf8(output.stdout).unwrap();
    text.trim()
        .split('=')
        .nth(1)
        .expect("a fingerprint")
        .replace(':', "")
        .to_lowercase()
}

/// Seed 001's pipeline: `openssl s_client -showcerts`, keep the last certificate, fingerprint it.
fn openssl_pipeline_thumbprint(host_port: &str) -> String {
    let output = Command::new("openssl")
        .args(["s_client", "-showcerts", "-connect", host_port])
        .bounded_output()
        .expect("openssl s_client runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let start = text
        .rfind("-----BEGIN CERTIFICATE-----")
        .expect("a served certificate");
    let end = text[start..].find("-----END CERTIFICATE-----").unwrap()
        + start
        + "-----END CERTIFICATE-----".len();
    openssl_fingerprint(&text[start..end])
}

fn cli_thumbprint(issuer: &str, ca_file: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_irsa-operator"))
        .args(["thumbprint", issuer, "--ca-file", ca_file])
        .bounded_output()
        .expect("irsa-operator thumbprint runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

async fn provider(s: &Scenario) -> Option<GetOpenIdConnectProviderOutput> {
    s.bed
        .iam
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(s.bed.provider_arn())
        .send()
        .await
        .ok()
}

async fn delete_provider(s: &Scenario) {
    let _ = s
        .bed
        .iam
        .delete_open_id_connect_provider()
        .open_id_connect_provider_arn(s.bed.provider_arn())
        .send()
        .await;
}

fn provider_condition(status: &irsa_api::PodIamRoleStatus) -> (String, String) {
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == "OidcProviderReady")
        .expect("an OidcProviderReady condition");
    (condition.status.clone(), condition.reason.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn oidc_provider_existing_and_manage_modes() {
    let s = Scenario::prepare("oidc").await;
    let issuer = s.bed.vars["TESTBED_OIDC_ISSUER"].clone();
    // scripts/testbed always writes it; without it the manage-mode stages could not run.
    let ca_file = s.bed.vars["TESTBED_CA_FILE"].clone();

    // The CLI matches seed 001's openssl pipeline and the CA's own fingerprint.
    let ca_fingerprint = openssl_fingerprint(&std::fs::read_to_string(&ca_file).unwrap());
    assert_eq!(
        cli_thumbprint(&issuer, &ca_file),
        openssl_pipeline_thumbprint(&s.bed.issuer_host_path())
    );
    assert_eq!(cli_thumbprint(&issuer, &ca_file), ca_fingerprint);

    // existing mode, no provider: reported on the PodIamRole, and in an Event.
    delete_provider(&s).await;
    s.bed.create_service_account(&s.namespace, "app").await;
    let s = s.with_operator(&[]).await;
    s.apply("app", dynamo_spec("app")).await;
    let status = s.wait_reason("app", "OidcProviderNotFound").await;
    assert_eq!(
        provider_condition(&status),
        ("False".into(), "OidcProviderNotFound".into())
    );
    assert!(status.conditions[0].message.contains(&s.bed.provider_arn()));
    assert!(
        s.role(&s.role_name("app")).await.is_some(),
        "the role itself is still created"
    );
    let metrics = s.operator.as_ref().unwrap().metrics().await.unwrap();
    assert!(
        metrics.contains("irsa_operator_oidc_provider_healthy 0"),
        "{metrics}"
    );

    // Someone creates the provider by hand, with a stale thumbprint: existing mode recovers.
    let stale = "0".repeat(40);
    s.bed
        .iam
        .create_open_id_connect_provider()
        .url(&issuer)
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list(&stale)
        .send()
        .await
        .expect("create provider by hand");
    let status = s.wait_reason("app", "Synced").await;
    assert_eq!(
        provider_condition(&status),
        ("True".into(), "Verified".into())
    );

    let manage = [
        "--oidc-provider",
        "manage",
        "--oidc-ca-file",
        ca_file.as_str(),
    ];

    // manage mode never modifies the hand-made provider; it reports the stale thumbprint.
    let s = s.with_operator(&manage).await;
    s.wait_reason("app", "OidcProviderThumbprintStale").await;
    let untouched = provider(&s).await.unwrap();
    assert_eq!(untouched.thumbprint_list(), std::slice::from_ref(&stale));
    assert!(untouched.tags().is_empty());

    // Without a provider, manage mode creates it right.
    delete_provider(&s).await;
    s.wait_reason("app", "Synced").await;
    let created = provider(&s).await.expect("provider created");
    let ca_fingerprint = openssl_fingerprint(&std::fs::read_to_string(&ca_file).unwrap());
    assert_eq!(
        created.thumbprint_list(),
        std::slice::from_ref(&ca_fingerprint)
    );
    assert_eq!(created.client_id_list(), ["sts.amazonaws.com"]);
    assert_eq!(
        created.url().map(|u| u.trim_start_matches("https://")),
        Some(s.bed.issuer_host_path().as_str())
    );
    let tags: BTreeMap<_, _> = created
        .tags()
        .iter()
        .map(|t| (t.key(), t.value()))
        .collect();
    assert_eq!(tags.get("irsa.dev/cluster"), Some(&s.cluster.as_str()));

    // A new audience in use is added as a client ID.
    s.bed.create_service_account(&s.namespace, "vault").await;
    let mut vault = dynamo_spec("vault");
    vault["audience"] = "vault".into();
    s.apply("vault", vault).await;
    s.wait_reason("vault", "Synced").await;
    let client_ids: BTreeSet<String> = provider(&s)
        .await
        .unwrap()
        .client_id_list()
        .iter()
        .cloned()
        .collect();
    assert_eq!(
        client_ids,
        BTreeSet::from(["sts.amazonaws.com".to_string(), "vault".to_string()])
    );
    // A restart with nothing changed writes nothing, not even to the provider: its client
    // IDs are only reconciled once every PodIamRole's audience is known.
    let s = s.with_operator(&manage).await;
    let operator = s.operator.as_ref().unwrap();
    eventually_matches(
        "two provider checks after the restart",
        || async {
            let metrics = operator.metrics().await.unwrap_or_default();
            support::sum_metric(
                &metrics,
                "irsa_operator_oidc_provider_checks_total",
                "result=",
            )
        },
        |checks| *checks >= 2,
    )
    .await;
    assert_eq!(operator.iam_writes().await, 0, "restart wrote to IAM");
    s.delete("vault").await;

    // The API server comes back with a serving chain from a new CA: the thumbprint follows.
    let testbed_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/testbed");
    let rotated = Command::new(&testbed_script)
        .arg("rotate-ca")
        .bounded_output()
        .expect("rotate-ca runs");
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let new_fingerprint = openssl_fingerprint(&std::fs::read_to_string(&ca_file).unwrap());
    assert_ne!(new_fingerprint, ca_fingerprint);
    // The running operator trusted the old CA for the API server too: it loses its leader
    // Lease and stops writing, as it must. Restarted with the new trust, as clients are
    // after a CA rotation, it leads again and fixes the thumbprint.
    let s = s.with_operator(&manage).await;
    let updated = eventually_matches(
        "the provider thumbprint to follow the new CA",
        || async { provider(&s).await.map(|p| p.thumbprint_list().to_vec()) },
        |thumbprints| thumbprints.as_deref() == Some(std::slice::from_ref(&new_fingerprint)),
    )
    .await;
    assert_eq!(updated, Some(vec![new_fingerprint]));
    assert_eq!(
        cli_thumbprint(&issuer, &ca_file),
        openssl_pipeline_thumbprint(&s.bed.issuer_host_path())
    );
}
