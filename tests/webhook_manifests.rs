//! The `config/webhook` overlay agrees with the operator's webhook defaults, is safe by
//! default (Ignore, the operator's namespace excluded) and lists every file it ships.

use clap::Parser;
use irsa_operator::webhook::WebhookArgs;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    webhook: WebhookArgs,
}

fn documents(file: &str) -> Vec<Value> {
    let path = format!("{}/config/webhook/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("YAML"))
        .collect()
}

fn defaults() -> WebhookArgs {
    Flags::parse_from(["x"]).webhook
}

#[test]
fn the_configuration_is_safe_and_named_as_the_operator_expects() {
    let defaults = defaults();
    let configuration = &documents("mutating-webhook.yaml")[0];
    assert_eq!(
        configuration["metadata"]["name"],
        defaults.configuration.as_str()
    );
    let webhook = &configuration["webhooks"][0];
    assert_eq!(webhook["failurePolicy"], "Ignore");
    assert_eq!(webhook["sideEffects"], "None");
    assert_eq!(
        webhook["clientConfig"]["service"]["name"],
        defaults.service.as_str()
    );
    let namespace = &documents("../manager/namespace.yaml")[0]["metadata"]["name"];
    assert_eq!(webhook["clientConfig"]["service"]["namespace"], *namespace);
    assert_eq!(
        webhook["namespaceSelector"]["matchExpressions"][0],
        json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [namespace]})
    );
    assert_eq!(webhook["rules"][0]["operations"], json!(["CREATE"]));
    assert_eq!(webhook["rules"][0]["resources"], json!(["pods"]));
}

#[test]
fn rbac_names_exactly_the_ca_secret_and_the_configuration() {
    let defaults = defaults();
    let rbac = documents("rbac.yaml");
    let rules: Vec<&Value> = rbac
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        .flat_map(|d| d["rules"].as_array().unwrap())
        .collect();
    let named: Vec<&Value> = rules
        .iter()
        .filter_map(|rule| rule.get("resourceNames"))
        .collect();
    assert_eq!(
        named,
        [
            &json!([defaults.configuration]),
            &json!([defaults.ca_secret])
        ]
    );
    // Secrets: only creating one and reading the CA.
    let secret_verbs: Vec<&Value> = rules
        .iter()
        .filter(|rule| rule["resources"] == json!(["secrets"]))
        .map(|rule| &rule["verbs"])
        .collect();
    assert_eq!(secret_verbs, [&json!(["create"]), &json!(["get"])]);
}

#[test]
fn the_overlay_lists_every_file_and_turns_the_webhook_on() {
    let kustomization = &documents("kustomization.yaml")[0];
    let mut listed: Vec<String> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .chain(
            kustomization["patches"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| &p["path"]),
        )
        .filter_map(|f| f.as_str())
        .filter(|f| !f.starts_with(".."))
        .map(String::from)
        .collect();
    listed.push("kustomization.yaml".into());
    listed.sort();
    let dir = format!("{}/config/webhook", env!("CARGO_MANIFEST_DIR"));
    let mut present: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    assert_eq!(listed, present);
    let patch = &documents("deployment-patch.yaml")[0];
    let env = &patch["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!({"name": "IRSA_WEBHOOK", "value": "true"}))
    );
}

#[test]
fn restart_rbac_is_only_what_restarts_use() {
    let path = format!("{}/config/restart/rbac.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let role = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .find(|d| d["kind"] == "ClusterRole")
        .unwrap();
    assert_eq!(
        role["rules"],
        json!([
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
            {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"],
             "verbs": ["list", "patch"]}
        ])
    );
}
