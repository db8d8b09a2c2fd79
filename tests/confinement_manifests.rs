//! The confinement policy (config/rbac/confinement.yaml) names what the code writes, and
//! the overlays' leader Role names the Lease of their own cluster name. No test bed.

use std::process::Command;

use clap::Parser;
use irsa_api::ROLE_ARN_ANNOTATION;
use irsa_core::chain::{CONFIG_MAP_ANNOTATION, CONFIG_MAP_LABEL, config_map_name};
use irsa_operator::{leader::lease_name, webhook::WebhookArgs};
use serde::Deserialize;
use serde_json::Value;

fn yaml(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| Value::deserialize(document).expect("YAML"))
        .filter(|document| !document.is_null())
        .collect()
}

fn config(path: &str) -> Vec<Value> {
    let path = format!("{}/config/{path}", env!("CARGO_MANIFEST_DIR"));
    yaml(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    webhook: WebhookArgs,
}

#[test]
fn the_policy_names_what_the_operator_writes() {
    let documents = config("rbac/confinement.yaml");
    let policy = &documents[0];
    assert_eq!(policy["kind"], "ValidatingAdmissionPolicy");
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    let binding = &documents[1];
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(binding["spec"]["validationActions"][0], "Deny");

    let account = &config("rbac/service_account.yaml")[0]["metadata"];
    let user = format!(
        "'system:serviceaccount:{}:{}'",
        account["namespace"].as_str().unwrap(),
        account["name"].as_str().unwrap()
    );
    let text = policy["spec"].to_string();
    assert!(text.contains(&user), "not matched on {user}");

    let suffix = config_map_name("x").strip_prefix('x').unwrap().to_string();
    let ca_secret = Flags::parse_from(["x"]).webhook.ca_secret;
    for needle in [
        ROLE_ARN_ANNOTATION,
        CONFIG_MAP_ANNOTATION,
        CONFIG_MAP_LABEL.0,
        CONFIG_MAP_LABEL.1,
        &suffix,
        &ca_secret,
    ] {
        assert!(
            text.contains(&format!("'{needle}'")),
            "the policy does not name {needle}"
        );
    }
    assert!(
        config("rbac/kustomization.yaml")[0]["resources"]
            .as_array()
            .unwrap()
            .contains(&Value::from("confinement.yaml"))
    );
}

/// Every overlay's leader Role may read and patch exactly its cluster's Lease.
#[test]
fn overlays_name_their_clusters_lease() {
    for overlay in ["eks", "self-managed", "kind"] {
        let dir = format!("{}/config/overlays/{overlay}", env!("CARGO_MANIFEST_DIR"));
        let output = Command::new("kubectl")
            .args(["kustomize", &dir])
            .output()
            .expect("kubectl runs");
        assert!(
            output.status.success(),
            "{overlay}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let objects = yaml(&String::from_utf8(output.stdout).unwrap());
        let find = |kind: &str, name: &str| {
            objects
                .iter()
                .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("{overlay}: no {kind} {name}"))
        };
        let env = &find("Deployment", "irsa-operator")["spec"]["template"]["spec"]["containers"][0]
            ["env"];
        let cluster = env
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|e| e["name"] == "IRSA_CLUSTER_NAME")
            .and_then(|e| e["value"].as_str())
            .unwrap();
        let role = find("Role", "irsa-operator-leader-election");
        let named: Vec<&Value> = role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|rule| rule.get("resourceNames"))
            .collect();
        assert_eq!(
            named,
            [&serde_json::json!([lease_name(cluster)])],
            "{overlay}"
        );
    }
}
