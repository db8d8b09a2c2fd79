//! End-to-end: the operator runs with exactly the shipped RBAC (`config/rbac/`), as it
//! would in a cluster, through a whole create / late ServiceAccount / delete cycle.

mod support;

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
use support::{
    eventually,
    scenario::{Scenario, dynamo_spec},
};

const RBAC: &str = include_str!("../config/rbac/role.yaml");
const OPERATOR_NAMESPACE: &str = "irsa-system";

/// Installs the shipped ClusterRole, the leader election Role and their bindings, and returns a kubeconfig that
/// authenticates as the operator's ServiceAccount with a bound token.
async fn operator_kubeconfig(s: &Scenario) -> String {
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
    for document in serde_yaml::Deserializer::from_str(RBAC) {
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
            other => panic!("unexpected kind {other:?} in config/rbac/role.yaml"),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_works_with_exactly_the_shipped_rbac() {
    let Some(mut s) = Scenario::prepare("rbac").await else {
        return;
    };
    s.bed.ensure_oidc_provider().await;
    let kubeconfig = operator_kubeconfig(&s).await;
    s.bed.vars.insert("KUBECONFIG".into(), kubeconfig);
    // As the Deployment sets POD_NAMESPACE: the leader Lease lives in the operator's namespace.
    let s = s
        .with_operator(&["--leader-election-namespace", OPERATOR_NAMESPACE])
        .await;

    s.apply("app", dynamo_spec("late")).await;
    s.wait_reason("app", "ServiceAccountNotFound").await;
    s.bed.create_service_account(&s.namespace, "late").await;
    let status = s.wait_reason("app", "Synced").await;
    assert_eq!(s.annotation("late").await, status.role_arn);
    let events =
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(s.bed.kube.clone(), &s.namespace);
    eventually("a RoleCreated event", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("RoleCreated"))
            .map(drop)
    })
    .await;
    s.delete("app").await;
    assert!(s.role(&s.role_name("app")).await.is_none());

    let log = std::fs::read_to_string(&s.operator.as_ref().unwrap().log).unwrap();
    // kube's errors for a 403 say "forbidden"; ports and timestamps never do.
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator hit an RBAC denial:\n{log}"
    );
}
