//! End-to-end: the operator runs with exactly the shipped RBAC (`config/rbac/`), as it
//! would in a cluster, through a whole create / late ServiceAccount / delete cycle, under
//! the admission policy that confines its writes (`config/rbac/confinement.yaml`).

mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde_json::json;
use support::{
    eventually,
    rbac::{self, OPERATOR_NAMESPACE},
    scenario::{Scenario, dynamo_spec},
};

const RBAC: &str = include_str!("../config/rbac/role.yaml");
const CONFINEMENT: &str = include_str!("../config/rbac/confinement.yaml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn the_operator_works_with_exactly_the_shipped_rbac() {
    let mut s = Scenario::prepare("rbac").await;
    s.bed.ensure_oidc_provider().await;
    let kubeconfig = rbac::operator_kubeconfig(&s, &[RBAC, CONFINEMENT]).await;
    s.bed.vars.insert("KUBECONFIG".into(), kubeconfig);
    // As the Deployment sets POD_NAMESPACE: the leader Lease lives in the operator's namespace.
    let s = s
        .with_operator(&["--leader-election-namespace", OPERATOR_NAMESPACE])
        .await;

    // With a role chain, so the AWS config ConfigMap is written and deleted too.
    let mut spec = dynamo_spec("late");
    spec["roleChain"] = json!([{"profile": "reports",
        "roleArn": "arn:aws:iam::000000000000:role/reports"}]);
    s.apply("app", spec).await;
    s.wait_reason("app", "ServiceAccountNotFound").await;
    s.bed.create_service_account(&s.namespace, "late").await;
    let status = s.wait_reason("app", "Synced").await;
    assert_eq!(s.annotation("late").await, status.role_arn);
    let config_maps: Api<ConfigMap> = Api::namespaced(s.bed.kube.clone(), &s.namespace);
    assert!(
        config_maps
            .get_opt("app-aws-config")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        s.sa_annotation("late", "irsa.dev/aws-config")
            .await
            .as_deref(),
        Some("app-aws-config")
    );
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
    assert!(
        config_maps
            .get_opt("app-aws-config")
            .await
            .unwrap()
            .is_none()
    );

    let log = std::fs::read_to_string(&s.operator.as_ref().unwrap().log).unwrap();
    // kube's errors for a 403 say "forbidden"; ports and timestamps never do.
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator hit an RBAC denial:\n{log}"
    );
}
