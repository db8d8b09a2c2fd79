//! One test's world: a namespace, a cluster name and an operator watching only it.

use std::collections::{BTreeMap, BTreeSet};

use irsa_api::{PodIamRole, PodIamRoleGuardrail, PodIamRoleStatus};
use irsa_core::policy::decode_iam_document;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::{Value, json};

use super::{
    Operator, Testbed, eventually, eventually_matches, fault_proxy::FaultProxy, install_crypto,
    testbed, unique,
};

pub const ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// The namespace label a scenario's guardrail selects, so it never applies to other tests.
const SCENARIO_LABEL: &str = "irsa-e2e/scenario";
pub const DYNAMO_POLICY: &str = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
    "Action": ["dynamodb:PutItem", "dynamodb:GetItem"],
    "Resource": "arn:aws:dynamodb:us-east-1:111122223333:table/payments"}]}"#;

/// One test's world: namespace, cluster name and its operator.
pub struct Scenario {
    pub bed: Testbed,
    pub namespace: String,
    pub cluster: String,
    pub operator: Option<Operator>,
    /// Environment set for the operator over the test bed's, on every (re)start.
    pub operator_env: Vec<(String, String)>,
}

impl Scenario {
    /// A scenario with an existing OIDC provider and a default operator.
    pub async fn start(label: &str) -> Self {
        let scenario = Self::prepare(label).await;
        scenario.bed.ensure_oidc_provider().await;
        scenario.with_operator(&[]).await
    }

    /// Namespace and cluster name only: the test decides about the provider and operator.
    /// The operator denies by default, so the namespace gets a guardrail granting every kind
    /// of thing (`*`), as a platform team would write one; the built-in deny list still holds.
    pub async fn prepare(label: &str) -> Self {
        let scenario = Self::prepare_without_grant(label).await;
        scenario.bed.grant_everything(&scenario.namespace).await;
        scenario
    }

    /// Like `prepare`, with no guardrail at all: what a fresh install grants a namespace.
    pub async fn prepare_without_grant(label: &str) -> Self {
        install_crypto();
        let bed = testbed().await;
        bed.install_crd().await;
        let namespace = unique(label);
        let cluster = unique("e2e").replace('-', "");
        bed.create_namespace(&namespace).await;
        Self {
            bed,
            namespace,
            cluster,
            operator: None,
            operator_env: Vec::new(),
        }
    }

    /// A scenario with an existing OIDC provider whose operator, once started, reaches
    /// IAM only through a fault proxy (seeded with `seed`).
    pub async fn prepare_behind_proxy(label: &str, seed: u64) -> (Self, FaultProxy) {
        let mut s = Self::prepare(label).await;
        s.bed.ensure_oidc_provider().await;
        let proxy = FaultProxy::start(&s.bed.vars["AWS_ENDPOINT_URL"], seed).await;
        s.operator_env = vec![("AWS_ENDPOINT_URL".into(), proxy.url().into())];
        (s, proxy)
    }

    /// (Re)starts the operator with these extra flags and waits until it is ready.
    pub async fn with_operator(mut self, extra: &[&str]) -> Self {
        if let Some(old) = self.operator.take() {
            old.stop();
        }
        let operator = Operator::start_with_env(
            &self.bed,
            &self.cluster,
            &self.namespace,
            extra,
            &self.operator_env,
        );
        operator.wait_ready().await;
        self.operator = Some(operator);
        self
    }

    pub fn operator(&self) -> &Operator {
        self.operator.as_ref().expect("operator running")
    }

    pub fn roles(&self) -> Api<PodIamRole> {
        Api::namespaced(self.bed.kube.clone(), &self.namespace)
    }

    pub fn service_accounts(&self) -> Api<ServiceAccount> {
        Api::namespaced(self.bed.kube.clone(), &self.namespace)
    }

    pub fn role_name(&self, name: &str) -> String {
        format!("{}.{}.{}", self.cluster, self.namespace, name)
    }

    pub fn guardrails(&self) -> Api<PodIamRoleGuardrail> {
        Api::all(self.bed.kube.clone())
    }

    /// Applies the guardrail named after this scenario's namespace, selecting only it.
    pub async fn apply_guardrail(&self, spec: Value) {
        self.bed
            .label_namespace(&self.namespace, json!({SCENARIO_LABEL: self.namespace}))
            .await;
        let mut spec = spec;
        spec["namespaceSelector"] = json!({"matchLabels": {SCENARIO_LABEL: self.namespace}});
        let manifest = json!({"apiVersion": "irsa.dev/v1alpha1", "kind": "PodIamRoleGuardrail",
            "metadata": {"name": self.namespace}, "spec": spec});
        self.guardrails()
            .patch(
                &self.namespace,
                &PatchParams::apply("kubectl").force(),
                &Patch::Apply(&manifest),
            )
            .await
            .expect("apply guardrail");
    }

    /// `kubectl apply` of a PodIamRole manifest with this spec.
    pub async fn apply(&self, name: &str, spec: Value) {
        let manifest = json!({"apiVersion": "irsa.dev/v1alpha1", "kind": "PodIamRole",
            "metadata": {"name": name}, "spec": spec});
        self.roles()
            .patch(
                name,
                &PatchParams::apply("kubectl").force(),
                &Patch::Apply(&manifest),
            )
            .await
            .expect("apply PodIamRole");
    }

    pub async fn status(&self, name: &str) -> Option<(Option<i64>, PodIamRoleStatus)> {
        let object = self.roles().get_opt(name).await.ok()??;
        Some((
            object.metadata.generation,
            object.status.unwrap_or_default(),
        ))
    }

    /// Waits for the current generation to be reported with this Ready reason.
    pub async fn wait_reason(&self, name: &str, reason: &str) -> PodIamRoleStatus {
        let seen = eventually_matches(
            &format!("{name} to report {reason}"),
            || self.status(name),
            |seen| reports(seen, reason),
        )
        .await;
        seen.unwrap().1
    }

    /// Whether `name` reports this Ready reason for its current generation, now.
    pub async fn reports(&self, name: &str, reason: &str) -> bool {
        reports(&self.status(name).await, reason)
    }

    pub async fn annotation(&self, service_account: &str) -> Option<String> {
        self.sa_annotation(service_account, ANNOTATION).await
    }

    /// The annotation `key` of a ServiceAccount of this namespace.
    pub async fn sa_annotation(&self, service_account: &str, key: &str) -> Option<String> {
        let sa = self.service_accounts().get(service_account).await.ok()?;
        sa.annotations().get(key).cloned()
    }

    pub async fn role(&self, role_name: &str) -> Option<aws_sdk_iam::types::Role> {
        let output = self
            .bed
            .iam
            .get_role()
            .role_name(role_name)
            .send()
            .await
            .ok()?;
        output.role().cloned()
    }

    pub async fn inline_policy(&self, role_name: &str) -> Value {
        self.try_inline_policy(role_name)
            .await
            .expect("GetRolePolicy")
    }

    /// The role's inline policy, `None` while IAM has none (or cannot answer).
    pub async fn try_inline_policy(&self, role_name: &str) -> Option<Value> {
        let output = self
            .bed
            .iam
            .get_role_policy()
            .role_name(role_name)
            .policy_name("irsa-operator")
            .send()
            .await
            .ok()?;
        decode_iam_document(output.policy_document()).ok()
    }

    pub async fn attached(&self, role_name: &str) -> BTreeSet<String> {
        let output = self
            .bed
            .iam
            .list_attached_role_policies()
            .role_name(role_name)
            .send()
            .await
            .expect("list attached");
        output
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_string))
            .collect()
    }

    pub async fn create_managed_policy(&self, label: &str) -> String {
        let document = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]});
        let output = self
            .bed
            .iam
            .create_policy()
            .policy_name(unique(label))
            .policy_document(document.to_string())
            .send()
            .await
            .expect("CreatePolicy");
        output.policy().unwrap().arn().unwrap().to_string()
    }

    /// A ServiceAccount and a PodIamRole ([`dynamo_spec`]) for each name, applied
    /// together, then waited for until all are Synced.
    pub async fn create_synced(&self, names: &[String]) {
        for name in names {
            self.bed.create_service_account(&self.namespace, name).await;
            self.apply(name, dynamo_spec(name)).await;
        }
        for name in names {
            self.wait_reason(name, "Synced").await;
        }
    }

    pub async fn delete(&self, name: &str) {
        self.roles()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete PodIamRole");
        eventually(&format!("{name} to be gone"), || async {
            self.roles()
                .get_opt(name)
                .await
                .ok()
                .filter(Option::is_none)
                .map(drop)
        })
        .await;
    }
}

/// Whether `seen` (from [`Scenario::status`]) has this Ready reason for its generation.
fn reports(seen: &Option<(Option<i64>, PodIamRoleStatus)>, reason: &str) -> bool {
    seen.as_ref().is_some_and(|(generation, status)| {
        status.observed_generation == *generation
            && status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.reason == reason)
    })
}

pub fn dynamo_spec(service_account: &str) -> Value {
    json!({"serviceAccountName": service_account, "policy": serde_json::from_str::<Value>(DYNAMO_POLICY).unwrap(),
           "tags": {"team": "payments"}})
}

pub fn tags(role: &aws_sdk_iam::types::Role) -> BTreeMap<String, String> {
    role.tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}
