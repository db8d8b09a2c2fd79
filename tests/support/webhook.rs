//! The operator's pod identity webhook on the test bed: a scenario whose operator serves
//! it, registered with the API server by URL on loopback and scoped to the scenario's
//! namespace. Shared by tests/webhook_e2e.rs and benches/admission.rs.

use std::{collections::BTreeMap, path::Path};

use base64::Engine;
use k8s_openapi::api::{
    admissionregistration::v1::MutatingWebhookConfiguration,
    core::v1::{Pod, ServiceAccount},
};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use super::{eventually, free_port, scenario::Scenario, sum_metric};

pub const REGION: &str = "us-east-1";

/// A scenario whose operator serves the webhook, and the configuration pointing at it.
pub struct WebhookBed {
    pub s: Scenario,
    pub configuration: String,
    pub port: u16,
}

impl WebhookBed {
    pub async fn start(label: &str) -> Self {
        let s = Scenario::prepare(label).await;
        let configuration = format!("irsa-e2e-{}", s.namespace);
        let namespace = s.namespace.clone();
        Self::start_in(s, configuration, &namespace, None, &[]).await
    }

    /// Registers the shipped configuration under `configuration`, pointing at this test's
    /// port and scoped to its namespace (with `ca_bundle` when the operator does not
    /// write one), and starts an operator living in `operator_namespace` that serves the
    /// webhook.
    pub async fn start_in(
        mut s: Scenario,
        configuration: String,
        operator_namespace: &str,
        ca_bundle: Option<&str>,
        extra: &[&str],
    ) -> Self {
        s.bed.ensure_oidc_provider().await;
        let port = free_port();
        let mut webhook = shipped_configuration();
        webhook["metadata"]["name"] = json!(configuration);
        webhook["webhooks"][0]["clientConfig"] =
            json!({"url": format!("https://127.0.0.1:{port}/mutate")});
        if let Some(pem) = ca_bundle {
            webhook["webhooks"][0]["clientConfig"]["caBundle"] =
                json!(base64::engine::general_purpose::STANDARD.encode(pem));
        }
        webhook["webhooks"][0]["namespaceSelector"] =
            json!({"matchLabels": {"kubernetes.io/metadata.name": s.namespace}});
        let webhook: MutatingWebhookConfiguration = serde_json::from_value(webhook).unwrap();
        configurations(&s)
            .patch(
                &configuration,
                &PatchParams::apply("irsa-e2e").force(),
                &Patch::Apply(&webhook),
            )
            .await
            .expect("apply MutatingWebhookConfiguration");
        s.operator_env
            .push(("POD_NAMESPACE".into(), operator_namespace.into()));
        let endpoint = format!("AWS_ENDPOINT_URL={}", s.bed.vars["AWS_ENDPOINT_URL"]);
        let addr = format!("127.0.0.1:{port}");
        let mut flags = vec![
            "--webhook",
            "--webhook-addr",
            &addr,
            "--webhook-cert-hosts",
            "127.0.0.1",
            "--webhook-configuration",
            &configuration,
            "--webhook-region",
            REGION,
            "--webhook-extra-env",
            &endpoint,
        ];
        flags.extend_from_slice(extra);
        let s = s.with_operator(&flags).await;
        let bed = Self {
            s,
            configuration,
            port,
        };
        bed.wait_ca_bundle().await;
        bed
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.s.bed.kube.clone(), &self.s.namespace)
    }

    /// Waits until the operator wrote its CA into the configuration, and the API server
    /// (which reloads configurations asynchronously) calls the webhook with it.
    pub async fn wait_ca_bundle(&self) {
        eventually("the operator writes caBundle", || async {
            let configuration = configurations(&self.s)
                .get(&self.configuration)
                .await
                .ok()?;
            configuration.webhooks?[0]
                .client_config
                .ca_bundle
                .as_ref()
                .map(drop)
        })
        .await;
        self.service_account(
            "probe",
            &[("eks.amazonaws.com/role-arn", "arn:aws:iam::1:role/p")],
        )
        .await;
        eventually("the API server calls the webhook", || async {
            let pod = self.admit("probe", pod_of("probe", json!({})), true).await;
            has_token_volume(&pod).then_some(())
        })
        .await;
    }

    pub async fn service_account(&self, name: &str, annotations: &[(&str, &str)]) {
        let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": name, "annotations": annotations}}))
                .unwrap();
        self.s
            .service_accounts()
            .create(&PostParams::default(), &sa)
            .await
            .expect("create ServiceAccount");
    }

    /// Creates the pod (or only admits it, with `dry_run`) and returns it as admitted.
    pub async fn admit(&self, name: &str, mut pod: Value, dry_run: bool) -> Pod {
        pod["metadata"]["name"] = json!(name);
        let pod: Pod = serde_json::from_value(pod).unwrap();
        let params = PostParams {
            dry_run,
            ..PostParams::default()
        };
        self.pods().create(&params, &pod).await.expect("create pod")
    }

    pub async fn admissions(&self, outcome: &str) -> u64 {
        let text = self.s.operator().metrics().await.expect("metrics");
        sum_metric(
            &text,
            "irsa_operator_webhook_admissions_total",
            &format!("outcome=\"{outcome}\""),
        )
    }

    pub async fn remove_configuration(&self) {
        configurations(&self.s)
            .delete(&self.configuration, &DeleteParams::default())
            .await
            .expect("delete MutatingWebhookConfiguration");
    }
}

/// `config/webhook/mutating-webhook.yaml`, as shipped.
pub fn shipped_configuration() -> Value {
    serde_yaml::from_str(include_str!("../../config/webhook/mutating-webhook.yaml")).unwrap()
}

pub fn configurations(s: &Scenario) -> Api<MutatingWebhookConfiguration> {
    Api::all(s.bed.kube.clone())
}

/// A pod of `service_account` with these extra pod fields (metadata and spec merged in).
pub fn pod_of(service_account: &str, extra: Value) -> Value {
    let mut pod = json!({"metadata": {}, "spec": {
        "serviceAccountName": service_account,
        "containers": [{"name": "app", "image": "app:1"}]
    }});
    merge(&mut pod, extra);
    pod
}

pub fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                merge(into.entry(key).or_insert(Value::Null), value);
            }
        }
        (into, from) => *into = from,
    }
}

pub fn has_token_volume(pod: &Pod) -> bool {
    token_volume(pod).is_some()
}

pub fn token_volume(pod: &Pod) -> Option<Value> {
    let volumes = serde_json::to_value(&pod.spec.as_ref()?.volumes).ok()?;
    volumes
        .as_array()?
        .iter()
        .find(|v| v["name"] == "aws-iam-token")
        .cloned()
}

pub fn localstack_python() -> std::path::PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var("HOME").unwrap()).join(".cache"));
    cache.join("irsa-operator/localstack-venv/bin/python")
}
