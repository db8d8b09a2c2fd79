//! The shipped samples are valid: under default deny, each PodIamRole passes exactly with
//! the samples' own guardrails and is refused without them, and the guardrail samples parse.

use std::collections::BTreeMap;

use irsa_api::{PodIamRole, PodIamRoleGuardrail};
use irsa_core::{admission, testing::test_config};
use kube::ResourceExt;
use serde::Deserialize;

fn sample(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/config/samples/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn pod_iam_role_samples_build_valid_roles() {
    let config = test_config();
    let guardrails: Vec<PodIamRoleGuardrail> =
        serde_yaml::Deserializer::from_str(&sample("guardrails.yaml"))
            .map(|document| PodIamRoleGuardrail::deserialize(document).unwrap())
            .collect();
    for file in [
        "payments.yaml",
        "cluster-autoscaler.yaml",
        "role-chain.yaml",
    ] {
        let mut role: PodIamRole =
            serde_yaml::from_str(&sample(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        role.metadata.uid = Some("uid".into());
        // The API server labels every namespace with its name.
        let labels = BTreeMap::from([(
            "kubernetes.io/metadata.name".to_string(),
            role.namespace().unwrap(),
        )]);
        let review = |role: &PodIamRole, guardrails: &[PodIamRoleGuardrail]| {
            admission::review(role, guardrails, &labels, &[], &config)
        };
        review(&role, &guardrails).unwrap_or_else(|e| panic!("{file}: {}", e.message()));
        let refused = review(&role, &[]).unwrap_err();
        assert_eq!(refused.reason(), "PolicyNotAllowed", "{file}: default deny");
        // Exactly what they use: one more action is refused.
        if let Some(policy) = role.spec.policy.as_mut() {
            policy["Statement"][0]["Action"] = serde_json::json!("dynamodb:DeleteTable");
            assert!(
                review(&role, &guardrails).is_err(),
                "{file}: granted more than it uses"
            );
        }
    }
}

/// `kubectl apply -k config/samples` works on a fresh cluster: every PodIamRole's namespace
/// is a system one or comes with the samples, and so does its ServiceAccount.
#[test]
fn samples_bring_their_namespaces_and_service_accounts() {
    let mut provided = std::collections::BTreeSet::new();
    for document in serde_yaml::Deserializer::from_str(&sample("namespace.yaml")) {
        let object = serde_yaml::Value::deserialize(document).unwrap();
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let namespace = object["metadata"]["namespace"].as_str().map(str::to_string);
        provided.insert((
            object["kind"].as_str().unwrap().to_string(),
            namespace,
            name,
        ));
    }
    let kustomization = sample("kustomization.yaml");
    assert!(kustomization.contains("namespace.yaml"), "{kustomization}");
    for file in ["payments.yaml", "cluster-autoscaler.yaml"] {
        assert!(
            kustomization.contains(file),
            "{file} is not in the kustomization"
        );
        let role: PodIamRole = serde_yaml::from_str(&sample(file)).unwrap();
        let namespace = role.namespace().unwrap();
        assert!(
            namespace.starts_with("kube-")
                || provided.contains(&("Namespace".into(), None, namespace.clone())),
            "{file}: namespace {namespace} is not in the samples"
        );
        let account = (
            "ServiceAccount".into(),
            Some(namespace),
            role.spec.service_account_name.clone(),
        );
        assert!(
            provided.contains(&account),
            "{file}: {account:?} is not in the samples"
        );
    }
}

#[test]
fn guardrail_sample_parses() {
    let guardrail: PodIamRoleGuardrail =
        serde_yaml::from_str(&sample("guardrail-tenants.yaml")).unwrap();
    assert_eq!(guardrail.spec.max_roles_per_namespace, Some(10));
}
