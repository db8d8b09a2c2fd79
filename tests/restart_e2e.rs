//! Restart on role change: a Deployment whose pods were admitted before their
//! ServiceAccount had a role is restarted once (a pod template annotation, as `kubectl
//! rollout restart`) when its PodIamRole opts in; without the opt-in its pods are only
//! counted in the status and reported in an Event. The operator runs with exactly the
//! shipped RBAC.

mod support;

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod, events::v1::Event};
use kube::{Api, api::PostParams};
use serde_json::json;
use support::{
    eventually, eventually_matches,
    rbac::{self, OPERATOR_NAMESPACE},
    scenario::{Scenario, dynamo_spec},
    sum_metric,
};

async fn deploy_with_a_pod(s: &Scenario, name: &str) {
    let labels = json!({"app": name});
    let template = json!({"metadata": {"labels": labels}, "spec": {
        "serviceAccountName": name, "containers": [{"name": "app", "image": "app:1"}]}});
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": labels}, "template": template}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(s.bed.kube.clone(), &s.namespace)
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create Deployment");
    // What its ReplicaSet would have created (the test bed runs no controllers).
    let mut pod = template.clone();
    pod["metadata"]["name"] = json!(format!("{name}-0"));
    let pod: Pod = serde_json::from_value(pod).unwrap();
    Api::<Pod>::namespaced(s.bed.kube.clone(), &s.namespace)
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
}

async fn template_annotations(s: &Scenario, name: &str) -> (i64, serde_json::Value) {
    let deployment = Api::<Deployment>::namespaced(s.bed.kube.clone(), &s.namespace)
        .get(name)
        .await
        .unwrap();
    let annotations = deployment
        .spec
        .template
        .metadata
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    (
        deployment.metadata.generation.unwrap_or_default(),
        serde_json::to_value(annotations).unwrap(),
    )
}

async fn events_with_reason(s: &Scenario, reason: &str) -> usize {
    let events = Api::<Event>::namespaced(s.bed.kube.clone(), &s.namespace)
        .list(&Default::default())
        .await
        .unwrap();
    events
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn opted_in_workloads_restart_once_and_others_are_counted() {
    let mut s = Scenario::prepare("restart").await;
    s.bed.ensure_oidc_provider().await;
    // Exactly the shipped RBAC: the base plus config/restart's additions.
    let manifests = [
        include_str!("../config/rbac/role.yaml"),
        include_str!("../config/restart/rbac.yaml"),
    ];
    let kubeconfig = rbac::operator_kubeconfig(&s, &manifests).await;
    s.bed.vars.insert("KUBECONFIG".into(), kubeconfig);
    let s = s
        .with_operator(&[
            "--restart-workloads",
            "--leader-election-namespace",
            OPERATOR_NAMESPACE,
        ])
        .await;
    for name in ["opted", "plain"] {
        s.bed.create_service_account(&s.namespace, name).await;
        deploy_with_a_pod(&s, name).await;
    }
    let mut opted = dynamo_spec("opted");
    opted["restartOnRoleChange"] = json!(true);
    s.apply("opted", opted).await;
    s.apply("plain", dynamo_spec("plain")).await;
    let role_arn = s.wait_reason("opted", "Synced").await.role_arn.unwrap();
    s.wait_reason("plain", "Synced").await;

    let (generation, annotations) = eventually_matches(
        "the opted-in Deployment to be restarted",
        || template_annotations(&s, "opted"),
        |(_, annotations)| annotations.get("irsa.dev/restarted-for").is_some(),
    )
    .await;
    assert_eq!(annotations["irsa.dev/restarted-for"], role_arn.as_str());
    assert!(annotations["kubectl.kubernetes.io/restartedAt"].is_string());

    // Not restarted again while its old pod is still there: wait for more reconciles.
    let reconciles = |text: &str| sum_metric(text, "irsa_operator_reconciles_total", "");
    let before = reconciles(&s.operator().metrics().await.unwrap());
    eventually("two more reconciles", || async {
        let now = reconciles(&s.operator().metrics().await?);
        (now >= before + 4).then_some(())
    })
    .await;
    assert_eq!(template_annotations(&s, "opted").await.0, generation);
    assert_eq!(events_with_reason(&s, "WorkloadRestarted").await, 1);

    // Without the opt-in: counted and reported, never restarted.
    let status = eventually_matches(
        "the stale pod counted",
        || s.status("plain"),
        |seen| {
            seen.as_ref()
                .is_some_and(|(_, st)| st.stale_pods == Some(1))
        },
    )
    .await;
    assert!(status.is_some());
    eventually("a StalePods Event", || async {
        (events_with_reason(&s, "StalePods").await == 1).then_some(())
    })
    .await;
    let (plain_generation, plain_annotations) = template_annotations(&s, "plain").await;
    assert_eq!(plain_generation, 1);
    assert_eq!(plain_annotations, json!({}));
    let log = std::fs::read_to_string(&s.operator().log).unwrap();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator hit an RBAC denial:\n{log}"
    );
}
