//! End-to-end: as the operator's ServiceAccount (a bound token), with exactly the shipped
//! RBAC and the ValidatingAdmissionPolicy of `config/rbac/confinement.yaml`, the API server
//! refuses every write outside the operator's own: `kube-system/aws-auth`, ConfigMaps of
//! others, and ServiceAccount fields other than its two annotations. The writes the
//! operator's code makes still pass.

mod support;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use support::{
    rbac::{self, OPERATOR_NAMESPACE, client_for, forbidden},
    scenario::Scenario,
};

use irsa_api::PodIamRole;
use irsa_core::chain::CONFIG_MAP_ANNOTATION;
use irsa_operator::k8s::{
    FIELD_MANAGER,
    aws_config::{self, Published},
    service_account::{self, Annotation},
};

const MANIFESTS: [&str; 3] = [
    include_str!("../config/rbac/role.yaml"),
    include_str!("../config/webhook/rbac.yaml"),
    include_str!("../config/rbac/confinement.yaml"),
];

fn config_map(name: &str, extra: Value) -> ConfigMap {
    let mut object = json!({"metadata": {"name": name}, "data": {"k": "v"}});
    merge(&mut object, extra);
    serde_json::from_value(object).unwrap()
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(base), Value::Object(extra)) => {
            for (key, value) in extra {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, extra) => *base = extra,
    }
}

/// A merge patch as the operator's ServiceAccount; the API server's refusal, or a panic if
/// the patch went through.
async fn refused_patch<K>(api: &Api<K>, name: &str, patch: Value) -> String
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let result = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    forbidden(result).unwrap_or_else(|| panic!("patch {patch} of {name} was not refused"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn the_operator_may_write_only_its_own() {
    let s = Scenario::prepare("confine").await;
    let admin = s.bed.kube.clone();
    let kubeconfig = rbac::operator_kubeconfig(&s, &MANIFESTS).await;
    let operator: Client = client_for(&kubeconfig).await;
    let ns = s.namespace.as_str();
    let apply = PatchParams::apply("irsa-e2e").force();

    // What the admin sets up: EKS's aws-auth, someone's ConfigMaps, a ServiceAccount.
    let kube_system: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "kube-system"}})).unwrap();
    Api::<Namespace>::all(admin.clone())
        .patch("kube-system", &apply, &Patch::Apply(&kube_system))
        .await
        .unwrap();
    let aws_auth = config_map(
        "aws-auth",
        json!({"data": {"mapRoles": "- rolearn: arn:aws:iam::111122223333:role/ops\n  groups: [system:masters]\n"}}),
    );
    Api::<ConfigMap>::namespaced(admin.clone(), "kube-system")
        .patch("aws-auth", &apply, &Patch::Apply(&aws_auth))
        .await
        .unwrap();
    let admin_maps = Api::<ConfigMap>::namespaced(admin.clone(), ns);
    for object in [
        config_map("settings", json!({})),
        // Named like the operator's, but nobody labelled it: no taking it over.
        config_map("legacy-aws-config", json!({})),
    ] {
        admin_maps
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
    }
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {
        "name": "app", "labels": {"team": "payments"},
        "annotations": {"owner": "payments"}}}))
    .unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();

    let mut refusals = Vec::new();
    let kube_system = Api::<ConfigMap>::namespaced(operator.clone(), "kube-system");
    refusals.push((
        "patch kube-system/aws-auth",
        refused_patch(
            &kube_system,
            "aws-auth",
            json!({"data": {"mapRoles": "- rolearn: arn:aws:iam::111122223333:role/x\n  groups: [system:masters]\n"}}),
        )
        .await,
    ));
    refusals.push((
        "delete kube-system/aws-auth",
        forbidden(
            kube_system
                .delete("aws-auth", &DeleteParams::default())
                .await,
        )
        .expect("deleting aws-auth was not refused"),
    ));

    let maps = Api::<ConfigMap>::namespaced(operator.clone(), ns);
    let owner = json!({"apiVersion": "irsa.dev/v1alpha1", "kind": "PodIamRole", "name": "app",
        "uid": "00000000-0000-0000-0000-000000000001", "controller": true});
    let ours = json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "irsa-operator"},
        "ownerReferences": [owner]}});
    let create_refusals = [
        (
            "create an unrelated ConfigMap",
            config_map("unrelated", json!({})),
        ),
        (
            "create an unlabelled -aws-config ConfigMap",
            config_map(
                "other-aws-config",
                json!({"metadata": {"ownerReferences": [owner]}}),
            ),
        ),
        (
            "create a labelled ConfigMap of another name",
            config_map("unrelated", ours.clone()),
        ),
        (
            "create a labelled -aws-config ConfigMap no PodIamRole owns",
            config_map(
                "orphan-aws-config",
                json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "irsa-operator"}}}),
            ),
        ),
    ];
    for (what, object) in create_refusals {
        let message = forbidden(maps.create(&PostParams::default(), &object).await)
            .unwrap_or_else(|| panic!("{what}: not refused"));
        refusals.push((what, message));
    }
    refusals.push((
        "delete an unrelated ConfigMap",
        forbidden(maps.delete("settings", &DeleteParams::default()).await)
            .expect("deleting settings was not refused"),
    ));
    refusals.push((
        "patch an unrelated ConfigMap",
        refused_patch(&maps, "settings", json!({"data": {"k": "changed"}})).await,
    ));
    refusals.push((
        "label an unlabelled -aws-config ConfigMap to take it over",
        refused_patch(&maps, "legacy-aws-config", ours.clone()).await,
    ));

    let accounts = Api::<ServiceAccount>::namespaced(operator.clone(), ns);
    let sa_refusals = [
        (
            "add another annotation",
            json!({"metadata": {"annotations": {"example.com/extra": "x"}}}),
        ),
        (
            "change another annotation",
            json!({"metadata": {"annotations": {"owner": "someone-else"}}}),
        ),
        (
            "remove another annotation",
            json!({"metadata": {"annotations": {"owner": null}}}),
        ),
        (
            "add a label",
            json!({"metadata": {"labels": {"admin": "true"}}}),
        ),
        (
            "remove a label",
            json!({"metadata": {"labels": {"team": null}}}),
        ),
        (
            "role ARN together with a label",
            json!({"metadata": {"labels": {"x": "y"}, "annotations": {
                "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/app"}}}),
        ),
        (
            "turn off token automounting",
            json!({"automountServiceAccountToken": false}),
        ),
        (
            "add an image pull secret",
            json!({"imagePullSecrets": [{"name": "regcred"}]}),
        ),
        ("add a secret", json!({"secrets": [{"name": "token"}]})),
    ];
    for (what, patch) in sa_refusals {
        refusals.push((what, refused_patch(&accounts, "app", patch).await));
    }

    // Secrets: the webhook's RBAC lets it create any in its namespace; the policy only its CA.
    let secrets = Api::<Secret>::namespaced(operator.clone(), OPERATOR_NAMESPACE);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let other: Secret =
        serde_json::from_value(json!({"metadata": {"name": "not-the-webhook-ca"}})).unwrap();
    refusals.push((
        "create a Secret other than the webhook CA",
        forbidden(secrets.create(&dry_run, &other).await).expect("the Secret was not refused"),
    ));

    for (what, message) in &refusals {
        eprintln!("refused: {what}: {message}");
    }
    // The RBAC grants each of these verbs: every refusal is the policy's.
    for (what, message) in &refusals {
        assert!(
            message.contains("ValidatingAdmissionPolicy 'irsa-operator-writes'"),
            "{what}: refused, but not by the policy: {message}"
        );
    }

    // Nothing of the above changed anything.
    let sa = Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .get("app")
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&sa.metadata.labels).unwrap(),
        json!({"team": "payments"})
    );
    assert_eq!(
        serde_json::to_value(&sa.metadata.annotations).unwrap(),
        json!({"owner": "payments"})
    );
    let aws_auth = Api::<ConfigMap>::namespaced(admin.clone(), "kube-system")
        .get("aws-auth")
        .await
        .unwrap();
    assert!(aws_auth.data.unwrap()["mapRoles"].contains("role/ops"));
    assert!(admin_maps.get_opt("settings").await.unwrap().is_some());
    assert!(admin_maps.get_opt("unrelated").await.unwrap().is_none());

    // The operator's own writes, through its own code, still pass.
    let arn = "arn:aws:iam::111122223333:role/irsa/app";
    assert_eq!(
        service_account::annotate(&accounts, "app", arn)
            .await
            .unwrap(),
        Annotation::Applied
    );
    assert_eq!(
        service_account::apply_annotation(
            &accounts,
            "app",
            CONFIG_MAP_ANNOTATION,
            "app-aws-config",
            &format!("{FIELD_MANAGER}-aws-config"),
        )
        .await
        .unwrap(),
        Annotation::Applied
    );
    let role: PodIamRole = serde_json::from_value(json!({
        "apiVersion": "irsa.dev/v1alpha1", "kind": "PodIamRole",
        "metadata": {"name": "app", "namespace": ns, "uid": "00000000-0000-0000-0000-000000000002"},
        "spec": {"serviceAccountName": "app"}}))
    .unwrap();
    let uid = role.metadata.uid.clone().unwrap();
    for text in ["[profile a]\n", "[profile b]\n"] {
        // The first creates it, the second patches it.
        assert_eq!(
            aws_config::publish(&maps, "app-aws-config", &role, text)
                .await
                .unwrap(),
            Published::Applied
        );
    }
    let published = admin_maps.get("app-aws-config").await.unwrap();
    assert_eq!(published.data.unwrap()["config"], "[profile b]\n");
    aws_config::remove(&maps, "app-aws-config", &uid)
        .await
        .unwrap();
    assert!(
        admin_maps
            .get_opt("app-aws-config")
            .await
            .unwrap()
            .is_none()
    );
    service_account::remove_annotation(&accounts, "app", arn)
        .await
        .unwrap();
    let sa = Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .get("app")
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&sa.metadata.annotations).unwrap(),
        json!({"owner": "payments", CONFIG_MAP_ANNOTATION: "app-aws-config"})
    );
    assert_eq!(
        serde_json::to_value(&sa.metadata.labels).unwrap(),
        json!({"team": "payments"})
    );
    // Its webhook CA Secret passes the policy (a dry run: another test may own the real one).
    let ca: Secret =
        serde_json::from_value(json!({"metadata": {"name": "irsa-operator-webhook-ca"}})).unwrap();
    let result = secrets.create(&dry_run, &ca).await;
    assert!(
        forbidden(result).is_none(),
        "the webhook CA Secret was refused"
    );
}
