//! Running the operator as its ServiceAccount, with exactly the RBAC a manifest grants.

use k8s_openapi::api::{
    admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding},
    authentication::v1::TokenRequest,
    core::v1::{ConfigMap, Namespace, ServiceAccount},
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use kube::{
    Api, Client, Config,
    api::{Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::scenario::Scenario;

/// Where the shipped manifests put the operator.
pub const OPERATOR_NAMESPACE: &str = "irsa-system";

/// The leader Role of config/rbac, which names one cluster's Lease.
const LEADER_ROLE: &str = "irsa-operator-leader-election";

/// Points the leader Role (and its binding) at this scenario's Lease, as an overlay's
/// `replacements` does, under a name of its own: tests running side by side each keep theirs.
fn for_cluster(object: &mut Value, cluster: &str) {
    if object["metadata"]["name"] != LEADER_ROLE {
        return;
    }
    let name = format!("{LEADER_ROLE}-{}", cluster.to_lowercase());
    object["metadata"]["name"] = json!(name);
    if object["kind"] == "RoleBinding" {
        object["roleRef"]["name"] = json!(name);
    }
    for rule in object["rules"].as_array_mut().into_iter().flatten() {
        if rule.get("resourceNames").is_some() {
            rule["resourceNames"] = json!([irsa_operator::leader::lease_name(cluster)]);
        }
    }
}

/// Installs the shipped RBAC documents (ClusterRoles, Roles and their bindings, and the
/// ValidatingAdmissionPolicy confining the operator's writes, from each of `manifests`) and
/// returns a kubeconfig that authenticates as the operator's ServiceAccount with a bound token.
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
        let mut object = Value::deserialize(document).expect("a YAML document");
        for_cluster(&mut object, &s.cluster);
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        match object["kind"].as_str() {
            Some("ValidatingAdmissionPolicy") => {
                let policy: ValidatingAdmissionPolicy = serde_json::from_value(object).unwrap();
                Api::<ValidatingAdmissionPolicy>::all(client.clone())
                    .patch(&name, &apply, &Patch::Apply(&policy))
                    .await
                    .unwrap();
            }
            Some("ValidatingAdmissionPolicyBinding") => {
                let binding: ValidatingAdmissionPolicyBinding =
                    serde_json::from_value(object).unwrap();
                Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
                    .patch(&name, &apply, &Patch::Apply(&binding))
                    .await
                    .unwrap();
            }
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
    let path = path.display().to_string();
    if manifests
        .iter()
        .any(|m| m.contains("kind: ValidatingAdmissionPolicy"))
    {
        wait_until_confined(&client_for(&path).await).await;
    }
    path
}

/// A client for a kubeconfig file, such as the one `operator_kubeconfig` writes.
pub async fn client_for(kubeconfig: &str) -> Client {
    let file = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// The API server's message when it refused `result` with 403, else `None`.
pub fn forbidden<T>(result: Result<T, kube::Error>) -> Option<String> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => Some(status.message),
        _ => None,
    }
}

/// The API server takes a new policy in a moment after it is stored: waits until it
/// refuses the operator a ConfigMap of someone else's (a dry run, nothing is written).
async fn wait_until_confined(operator: &Client) {
    let config_maps = Api::<ConfigMap>::namespaced(operator.clone(), OPERATOR_NAMESPACE);
    let probe: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "irsa-confinement-probe"}})).unwrap();
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    super::eventually(
        "the ValidatingAdmissionPolicy to confine the operator",
        || async {
            let refused = forbidden(config_maps.create(&params, &probe).await)?;
            refused.contains("ValidatingAdmissionPolicy").then_some(())
        },
    )
    .await;
}
