//! The pod identity webhook, called by the real API server over TLS: pods come back
//! mutated as EKS's webhook mutates them, a real AWS SDK in the admitted pod's
//! environment becomes the role, and pods are still admitted when the webhook is down.
//!
//! Each test registers its own MutatingWebhookConfiguration (by URL, on loopback) scoped
//! to its own namespace, so it never touches pods of tests running alongside.

mod support;

use std::{collections::BTreeMap, path::Path, process::Command};

use base64::Engine;
use irsa_operator::{trust, webhook::certs};
use k8s_openapi::api::{
    admissionregistration::v1::MutatingWebhookConfiguration,
    authentication::v1::TokenRequest,
    core::v1::{Container, Pod, Secret, ServiceAccount},
};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use support::{
    eventually, free_port,
    rbac::{self, OPERATOR_NAMESPACE},
    scenario::{Scenario, dynamo_spec},
    sum_metric,
};

const TOKEN_DIR: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
const TOKEN_PATH: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";
const REGION: &str = "us-east-1";

/// A scenario whose operator serves the webhook, and the configuration pointing at it.
struct WebhookBed {
    s: Scenario,
    configuration: String,
    port: u16,
}

impl WebhookBed {
    async fn start(label: &str) -> Option<Self> {
        let s = Scenario::prepare(label).await?;
        let configuration = format!("irsa-e2e-{}", s.namespace);
        let namespace = s.namespace.clone();
        Some(Self::start_in(s, configuration, &namespace, None, &[]).await)
    }

    /// Registers the shipped configuration under `configuration`, pointing at this test's
    /// port and scoped to its namespace (with `ca_bundle` when the operator does not
    /// write one), and starts an operator living in `operator_namespace` that serves the
    /// webhook.
    async fn start_in(
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

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.s.bed.kube.clone(), &self.s.namespace)
    }

    /// Waits until the operator wrote its CA into the configuration, and the API server
    /// (which reloads configurations asynchronously) calls the webhook with it.
    async fn wait_ca_bundle(&self) {
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

    async fn service_account(&self, name: &str, annotations: &[(&str, &str)]) {
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
    async fn admit(&self, name: &str, mut pod: Value, dry_run: bool) -> Pod {
        pod["metadata"]["name"] = json!(name);
        let pod: Pod = serde_json::from_value(pod).unwrap();
        let params = PostParams {
            dry_run,
            ..PostParams::default()
        };
        self.pods().create(&params, &pod).await.expect("create pod")
    }

    async fn admissions(&self, outcome: &str) -> u64 {
        let text = self.s.operator().metrics().await.expect("metrics");
        sum_metric(
            &text,
            "irsa_operator_webhook_admissions_total",
            &format!("outcome=\"{outcome}\""),
        )
    }

    async fn remove_configuration(&self) {
        configurations(&self.s)
            .delete(&self.configuration, &DeleteParams::default())
            .await
            .expect("delete MutatingWebhookConfiguration");
    }
}

/// `config/webhook/mutating-webhook.yaml`, as shipped.
fn shipped_configuration() -> Value {
    serde_yaml::from_str(include_str!("../config/webhook/mutating-webhook.yaml")).unwrap()
}

fn configurations(s: &Scenario) -> Api<MutatingWebhookConfiguration> {
    Api::all(s.bed.kube.clone())
}

/// A pod of `service_account` with these extra pod fields (metadata and spec merged in).
fn pod_of(service_account: &str, extra: Value) -> Value {
    let mut pod = json!({"metadata": {}, "spec": {
        "serviceAccountName": service_account,
        "containers": [{"name": "app", "image": "app:1"}]
    }});
    merge(&mut pod, extra);
    pod
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                merge(into.entry(key).or_insert(Value::Null), value);
            }
        }
        (into, from) => *into = from,
    }
}

fn has_token_volume(pod: &Pod) -> bool {
    token_volume(pod).is_some()
}

fn token_volume(pod: &Pod) -> Option<Value> {
    let volumes = serde_json::to_value(&pod.spec.as_ref()?.volumes).ok()?;
    volumes
        .as_array()?
        .iter()
        .find(|v| v["name"] == "aws-iam-token")
        .cloned()
}

fn containers(pod: &Pod) -> Vec<Container> {
    let spec = pod.spec.clone().unwrap();
    spec.init_containers
        .into_iter()
        .flatten()
        .chain(spec.containers)
        .collect()
}

fn container<'a>(all: &'a [Container], name: &str) -> &'a Container {
    all.iter().find(|c| c.name == name).unwrap()
}

fn env(container: &Container) -> Vec<(String, String)> {
    container
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The token mount, as `(mountPath, readOnly)`, if the container has it.
fn token_mount(container: &Container) -> Option<(String, Option<bool>)> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "aws-iam-token")
        .map(|m| (m.mount_path.clone(), m.read_only))
}

fn projected(audience: &str, expiration: i64) -> Value {
    json!({"name": "aws-iam-token", "projected": {"defaultMode": 420, "sources": [{
        "serviceAccountToken": {"audience": audience, "expirationSeconds": expiration, "path": "token"}
    }]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_mutated_as_the_eks_webhook_mutates_them() {
    let Some(mut w) = WebhookBed::start("webhook").await else {
        return;
    };
    let endpoint = w.s.bed.vars["AWS_ENDPOINT_URL"].clone();
    let plain_arn = "arn:aws:iam::111122223333:role/plain";
    let custom_arn = "arn:aws:iam::111122223333:role/custom";
    w.service_account("plain", &[("eks.amazonaws.com/role-arn", plain_arn)])
        .await;
    w.service_account(
        "custom",
        &[
            ("eks.amazonaws.com/role-arn", custom_arn),
            ("eks.amazonaws.com/audience", "custom-aud"),
            ("eks.amazonaws.com/token-expiration", "3600"),
            ("eks.amazonaws.com/sts-regional-endpoints", "true"),
        ],
    )
    .await;
    w.service_account("none", &[]).await;

    // Only the role annotation: EKS defaults, init containers and sidecars included,
    // env the containers set is kept.
    let eks = w
        .admit(
            "eks",
            pod_of(
                "plain",
                json!({"spec": {
                    "initContainers": [{"name": "init", "image": "init:1"}],
                    "containers": [
                        {"name": "app", "image": "app:1", "env": [
                            {"name": "A", "value": "1"}, {"name": "AWS_REGION", "value": "eu-west-1"}]},
                        {"name": "sidecar", "image": "proxy:1", "env": [
                            {"name": "AWS_ROLE_ARN", "value": "mine"}]}
                    ]
                }}),
            ),
            false,
        )
        .await;
    let all = containers(&eks);
    let injected = |arn: &str| {
        vec![
            ("AWS_DEFAULT_REGION".to_string(), REGION.to_string()),
            ("AWS_REGION".to_string(), REGION.to_string()),
            ("AWS_ROLE_ARN".to_string(), arn.to_string()),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE".to_string(),
                TOKEN_PATH.to_string(),
            ),
            ("AWS_ENDPOINT_URL".to_string(), endpoint.clone()),
        ]
    };
    assert_eq!(env(container(&all, "init")), injected(plain_arn));
    assert_eq!(
        env(container(&all, "app")),
        pairs(&[
            ("A", "1"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ROLE_ARN", plain_arn),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", TOKEN_PATH),
            ("AWS_ENDPOINT_URL", &endpoint),
        ])
    );
    assert_eq!(
        env(container(&all, "sidecar")),
        pairs(&[
            ("AWS_ROLE_ARN", "mine"),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_REGION", REGION),
            ("AWS_ENDPOINT_URL", &endpoint),
        ])
    );
    for c in &all {
        assert_eq!(
            token_mount(c),
            Some((TOKEN_DIR.to_string(), Some(true))),
            "{}",
            c.name
        );
    }
    let volumes = serde_json::to_value(&eks.spec.as_ref().unwrap().volumes).unwrap();
    assert_eq!(volumes[0], projected("sts.amazonaws.com", 86_400));

    // Every ServiceAccount annotation, the pod's expiration and skip-containers.
    let custom = w
        .admit(
            "custom",
            pod_of(
                "custom",
                json!({
                    "metadata": {"annotations": {
                        "eks.amazonaws.com/skip-containers": "skipped",
                        "eks.amazonaws.com/token-expiration": "7200"}},
                    "spec": {"containers": [{"name": "app", "image": "app:1"},
                                            {"name": "skipped", "image": "tool:1"}]}
                }),
            ),
            false,
        )
        .await;
    let all = containers(&custom);
    let mut regional = vec![(
        "AWS_STS_REGIONAL_ENDPOINTS".to_string(),
        "regional".to_string(),
    )];
    regional.extend(injected(custom_arn));
    assert_eq!(env(container(&all, "app")), regional);
    assert_eq!(env(container(&all, "skipped")), vec![]);
    assert_eq!(token_mount(container(&all, "skipped")), None);
    assert_eq!(token_volume(&custom), Some(projected("custom-aud", 7200)));
    // Without the pod annotation, the ServiceAccount's expiration.
    let sa_expiry = w
        .admit("sa-expiry", pod_of("custom", json!({})), false)
        .await;
    assert_eq!(
        token_volume(&sa_expiry),
        Some(projected("custom-aud", 3600))
    );

    // Another ServiceAccount's pod passes untouched.
    let untouched = w.admit("untouched", pod_of("none", json!({})), false).await;
    assert!(!has_token_volume(&untouched));
    assert_eq!(env(container(&containers(&untouched), "app")), vec![]);

    // A second admission of the admitted pod changes nothing.
    let unchanged_before = w.admissions("unchanged").await;
    let mut again = serde_json::to_value(&eks).unwrap();
    again["metadata"] = json!({"name": "eks-again"});
    let again = w.admit("eks-again", again, true).await;
    let spec = |pod: &Pod| {
        let spec = serde_json::to_value(pod.spec.as_ref().unwrap()).unwrap();
        (
            spec["initContainers"].clone(),
            spec["containers"].clone(),
            spec["volumes"].clone(),
        )
    };
    assert_eq!(spec(&again), spec(&eks));
    assert_eq!(w.admissions("unchanged").await, unchanged_before + 1);
    assert!(w.admissions("mutated").await >= 4);

    // Webhook down: failurePolicy Ignore still admits pods, without an identity.
    w.s.operator.take().unwrap().terminate().await;
    let while_down = w
        .admit("while-down", pod_of("plain", json!({})), false)
        .await;
    assert!(!has_token_volume(&while_down));
    w.remove_configuration().await;
}

/// With exactly the shipped RBAC (`config/rbac` plus `config/webhook`'s additions), the
/// operator in its own namespace creates its CA Secret there, writes the `caBundle` of the
/// shipped configuration, and mutates pods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_works_with_exactly_the_shipped_rbac() {
    let Some(mut s) = Scenario::prepare("webrbac").await else {
        return;
    };
    let manifests = [
        include_str!("../config/rbac/role.yaml"),
        include_str!("../config/webhook/rbac.yaml"),
    ];
    let kubeconfig = rbac::operator_kubeconfig(&s, &manifests).await;
    s.bed.vars.insert("KUBECONFIG".into(), kubeconfig);
    let shipped = shipped_configuration()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let w = WebhookBed::start_in(
        s,
        shipped,
        OPERATOR_NAMESPACE,
        None,
        &["--leader-election-namespace", OPERATOR_NAMESPACE],
    )
    .await;
    let arn = "arn:aws:iam::111122223333:role/rbac";
    w.service_account("app", &[("eks.amazonaws.com/role-arn", arn)])
        .await;
    let pod = w.admit("app", pod_of("app", json!({})), false).await;
    let app = container(&containers(&pod), "app").clone();
    assert!(env(&app).contains(&("AWS_ROLE_ARN".to_string(), arn.to_string())));
    let log = std::fs::read_to_string(&w.s.operator().log).unwrap();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator hit an RBAC denial:\n{log}"
    );
    w.remove_configuration().await;
}

/// `--webhook-cert-dir`: a mounted certificate (as cert-manager writes it) is served, and
/// the operator neither creates a CA Secret nor touches the `caBundle`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mounted_certificate_is_served_as_is() {
    let Some(s) = Scenario::prepare("webcert").await else {
        return;
    };
    let now = time::OffsetDateTime::now_utc();
    let ca = certs::new_ca(now).unwrap();
    let serving = certs::issue_serving(&ca.key, &["127.0.0.1".to_string()], now).unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cert-{}", s.namespace));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tls.crt"), &serving.cert).unwrap();
    std::fs::write(dir.join("tls.key"), &serving.key).unwrap();
    let configuration = format!("irsa-e2e-{}", s.namespace);
    let namespace = s.namespace.clone();
    let cert_dir = dir.display().to_string();
    let flags = ["--webhook-cert-dir", cert_dir.as_str()];
    let w = WebhookBed::start_in(s, configuration, &namespace, Some(&ca.cert), &flags).await;
    // start_in already saw a pod mutated through this certificate.
    let stored = configurations(&w.s).get(&w.configuration).await.unwrap();
    let bundle = stored.webhooks.unwrap()[0].client_config.ca_bundle.clone();
    assert_eq!(bundle.map(|b| b.0), Some(ca.cert.into_bytes()));
    let secrets: Api<Secret> = Api::namespaced(w.s.bed.kube.clone(), &w.s.namespace);
    assert!(
        secrets
            .get_opt("irsa-operator-webhook-ca")
            .await
            .unwrap()
            .is_none()
    );
    std::fs::remove_dir_all(&dir).unwrap();
    w.remove_configuration().await;
}

/// What the kubelet does for the projected volume: a TokenRequest bound to the pod, with
/// the volume's audience and expiration, written where the mount would be.
async fn kubelet_token(w: &WebhookBed, pod: &Pod, service_account: &str, dir: &Path) -> String {
    let volume = token_volume(pod).expect("token volume");
    let projection = &volume["projected"]["sources"][0]["serviceAccountToken"];
    let request: TokenRequest = serde_json::from_value(json!({"spec": {
        "audiences": [projection["audience"]],
        "expirationSeconds": projection["expirationSeconds"],
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
            "name": pod.metadata.name, "uid": pod.metadata.uid}
    }}))
    .unwrap();
    let issued =
        w.s.service_accounts()
            .create_token_request(service_account, &PostParams::default(), &request)
            .await
            .expect("TokenRequest");
    let token = issued.status.and_then(|s| s.token).expect("a token");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(projection["path"].as_str().unwrap()), &token).unwrap();
    token
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn localstack_python() -> std::path::PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var("HOME").unwrap()).join(".cache"));
    cache.join("irsa-operator/localstack-venv/bin/python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn botocore_in_the_admitted_pod_becomes_the_role() {
    let Some(w) = WebhookBed::start("websdk").await else {
        return;
    };
    w.s.bed.create_service_account(&w.s.namespace, "app").await;
    w.s.apply("app", dynamo_spec("app")).await;
    let status = w.s.wait_reason("app", "Synced").await;
    let role_arn = status.role_arn.expect("role ARN");
    // The annotation reaches the webhook's cache through its watch.
    eventually("a pod admitted with the role", || async {
        let pod = w.admit("probe-app", pod_of("app", json!({})), true).await;
        has_token_volume(&pod).then_some(())
    })
    .await;
    let pod = w.admit("sdk", pod_of("app", json!({})), false).await;
    let app = container(&containers(&pod), "app").clone();
    let pod_env = env(&app);
    assert!(pod_env.contains(&("AWS_ROLE_ARN".to_string(), role_arn.clone())));

    // The container's filesystem: the mount path maps to a directory of this test.
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pod-{}", w.s.namespace));
    let mount_dir = root.join(TOKEN_DIR.trim_start_matches('/'));
    let token = kubelet_token(&w, &pod, "app", &mount_dir).await;
    let token_file = root.join(TOKEN_PATH.trim_start_matches('/'));

    let script = "import botocore.session\n\
                  sts = botocore.session.get_session().create_client('sts')\n\
                  print(sts.get_caller_identity()['Arn'])";
    let output = Command::new(localstack_python())
        .args(["-c", script])
        .env_clear()
        .envs(pod_env.iter().map(|(name, value)| {
            let value = if name == "AWS_WEB_IDENTITY_TOKEN_FILE" {
                token_file.display().to_string()
            } else {
                value.clone()
            };
            (name.clone(), value)
        }))
        .output()
        .expect("run botocore");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "botocore failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let role_name = role_arn.rsplit('/').next().unwrap();
    assert!(
        stdout.trim().starts_with(&format!(
            "arn:aws:sts::000000000000:assumed-role/{role_name}/"
        )),
        "GetCallerIdentity returned {stdout}"
    );

    // LocalStack accepts any token: STS's own check, against the stored trust policy.
    let role = w.s.role(role_name).await.expect("role in IAM");
    let trust_policy =
        irsa_operator::policy::decode_iam_document(role.assume_role_policy_document().unwrap())
            .unwrap();
    let claims = claims(&token);
    assert_eq!(trust::evaluate(&trust_policy, &claims), Ok(()));
    assert_eq!(
        claims["kubernetes.io"]["pod"]["name"], "sdk",
        "the token is bound to the pod"
    );
    std::fs::remove_dir_all(&root).unwrap();
    w.remove_configuration().await;
}

/// Measurement, not an assertion: `cargo test --test webhook_e2e -- --ignored --nocapture`.
/// 1,000 AdmissionReviews straight to the webhook over one TLS connection (the webhook's
/// own latency: cache lookup, injection, JSON), then 1,000 dry-run pod creates through the
/// API server (what a user sees), and the operator's resident memory around them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn admission_latency_and_memory() {
    const ROUNDS: usize = 1000;
    let Some(w) = WebhookBed::start("webbench").await else {
        return;
    };
    w.service_account(
        "bench",
        &[("eks.amazonaws.com/role-arn", "arn:aws:iam::1:role/b")],
    )
    .await;
    let rss_before = resident_kib(w.s.operator().pid());

    let configuration = configurations(&w.s).get(&w.configuration).await.unwrap();
    let ca = configuration.webhooks.unwrap()[0]
        .client_config
        .ca_bundle
        .clone()
        .unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-{}", w.s.namespace));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.crt"), &ca.0).unwrap();
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "bench", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": w.s.namespace, "operation": "CREATE", "userInfo": {},
            "object": pod_of("bench", json!({"metadata": {"name": "bench"}}))}});
    std::fs::write(dir.join("review.json"), review.to_string()).unwrap();
    let script = r#"
import http.client, json, ssl, sys, time
port, directory, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
context = ssl.create_default_context(cafile=directory + "/ca.crt")
connection = http.client.HTTPSConnection("127.0.0.1", port, context=context)
body = open(directory + "/review.json", "rb").read()
seconds = []
for _ in range(rounds):
    started = time.perf_counter()
    connection.request("POST", "/mutate", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = json.loads(response.read())
    seconds.append(time.perf_counter() - started)
    assert response.status == 200 and answer["response"]["patchType"] == "JSONPatch"
seconds.sort()
print("%.3f %.3f" % (seconds[len(seconds) // 2] * 1000, seconds[len(seconds) * 99 // 100] * 1000))
"#;
    let output = Command::new(localstack_python())
        .args(["-c", script, &w.port.to_string(), dir.to_str().unwrap()])
        .arg(ROUNDS.to_string())
        .output()
        .expect("python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "direct to the webhook, {ROUNDS} admissions: p50/p99 ms = {}",
        String::from_utf8_lossy(&output.stdout).trim()
    );

    let mut through_api_server = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let started = std::time::Instant::now();
        let pod = w
            .admit(&format!("bench-{round}"), pod_of("bench", json!({})), true)
            .await;
        through_api_server.push(started.elapsed());
        assert!(has_token_volume(&pod));
    }
    through_api_server.sort();
    eprintln!(
        "dry-run pod creates through the API server, {ROUNDS}: p50 {:?}, p99 {:?}",
        through_api_server[ROUNDS / 2],
        through_api_server[ROUNDS * 99 / 100]
    );
    eprintln!(
        "operator resident memory: {} KiB before, {} KiB after; peak {} KiB",
        rss_before,
        resident_kib(w.s.operator().pid()),
        peak_kib(w.s.operator().pid())
    );
    std::fs::remove_dir_all(&dir).unwrap();
    w.remove_configuration().await;
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn resident_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

fn peak_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM:")
}
