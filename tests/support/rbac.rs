//! Running the operator as its ServiceAccount, with exactly the RBAC a manifest grants.

use k8s_openapi::api::{
    authentication::v1::TokenRequest,
    core::v1::{Namespace, ServiceAccount},
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::scenario::Scenario;

/// Where the shipped manifests put the operator.
pub const OPERATOR_NAMESPACE: &str = "irsa-system";

/// Installs the shipped RBAC documents (ClusterRoles, Roles and their bindings, from
/// each of `manifests`) and returns a kubeconfig that authenticates as the operator's
/// ServiceAccount with a bound token.
pub async fn operator_kubeconfig(s: &Scenario, manifests: &[&str]) -> String {
    let client = s.bed.kube.clone();
    let apply = PatchParams::apply("irsa-e2e").force();
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": OPERATOR_NAMESPACE}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .patch(OPERATOR_NAMESPACE, &apply, &Patch::Apply(&namespace))
        .await
        .unwrap();
    let account: ServiceAccount = serde_json::from_value(
        json!({"metadata": {"name": "irsa-operator", "namespace": OPERATOR_NAMESPACE}}),
    )
    .unwrap();
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), OPERATOR_NAMESPACE);
    accounts
        .patch("irsa-operator", &apply, &Patch::Apply(&account))
        .await
        .unwrap();
    let documents = manifests
        .iter()
        .flat_map(|manifest| serde_yaml::Deserializer::from_str(manifest));
    for document in documents {
        let object = Value::deserialize(document).expect("a YAML document");
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        match object["kind"].as_str() {
            Some("ClusterRole") => {
                let role: ClusterRole = serde_json::from_value(object).unwrap();
                Api::<ClusterRole>::all(client.clone())
                    .patch(&name, &apply, &Patch::Apply(&role))
                    .await
                    .unwrap();
            }
            Some("ClusterRoleBinding") => {
                let binding: ClusterRoleBinding = serde_json::from_value(object).unwrap();
                Api::<ClusterRoleBinding>::all(client.clone())
                    .patch(&name, &apply, &Patch::Apply(&binding))
                    .await
                    .unwrap();
            }
            Some("Role") => {
                let role: Role = serde_json::from_value(object).unwrap();
                Api::<Role>::namespaced(client.clone(), OPERATOR_NAMESPACE)
                    .patch(&name, &apply, &Patch::Apply(&role))
                    .await
                    .unwrap();
            }
            Some("RoleBinding") => {
                let binding: RoleBinding = serde_json::from_value(object).unwrap();
                Api::<RoleBinding>::namespaced(client.clone(), OPERATOR_NAMESPACE)
                    .patch(&name, &apply, &Patch::Apply(&binding))
                    .await
                    .unwrap();
            }
            other => panic!("unexpected kind {other:?} in an RBAC manifest"),
        }
    }
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))
            .unwrap();
    let token = accounts
        .create_token_request("irsa-operator", &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .expect("token")
        .token;

    let admin: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&s.bed.vars["KUBECONFIG"]).unwrap()).unwrap();
    let mut kubeconfig = admin.clone();
    kubeconfig["users"] = json!([{"name": "irsa-operator", "user": {"token": token}}]);
    kubeconfig["contexts"] = json!([{"name": "irsa-operator", "context": {
        "cluster": admin["clusters"][0]["name"], "user": "irsa-operator"}}]);
    kubeconfig["current-context"] = json!("irsa-operator");
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{}-kubeconfig", s.namespace));
    std::fs::write(&path, serde_yaml::to_string(&kubeconfig).unwrap()).unwrap();
    path.display().to_string()
}
