//! The pod identity webhook, called by the real API server over TLS: pods come back
//! mutated as EKS's webhook mutates them, a real AWS SDK in the admitted pod's
//! environment becomes the role, and pods are still admitted when the webhook is down.
//!
//! Each test registers its own MutatingWebhookConfiguration (by URL, on loopback) scoped
//! to its own namespace, so it never touches pods of tests running alongside.

mod support;

use std::{collections::BTreeMap, path::Path, process::Command};

use base64::Engine;
use irsa_api::PodIamRoleGuardrail;
use irsa_core::trust;
use irsa_operator::webhook::certs;
use k8s_openapi::api::{
    authentication::v1::TokenRequest,
    core::v1::{ConfigMap, Container, Pod, Secret},
};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use support::{
    eventually,
    rbac::{self, OPERATOR_NAMESPACE},
    scenario::{Scenario, dynamo_spec},
    tools::BoundedOutput,
    webhook::{
        REGION, WebhookBed, configurations, has_token_volume, localstack_python, pod_of,
        shipped_configuration, token_volume,
    },
};

const TOKEN_DIR: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
const TOKEN_PATH: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";
const CONFIG_FILE: &str = "AWS_CONFIG_FILE";
const CONFIG_ANNOTATION: &str = "irsa.dev/aws-config";

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
#[ignore = "needs the test bed: scripts/test runs it"]
async fn pods_are_mutated_as_the_eks_webhook_mutates_them() {
    let mut w = WebhookBed::start("webhook").await;
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
#[ignore = "needs the test bed: scripts/test runs it"]
async fn the_webhook_works_with_exactly_the_shipped_rbac() {
    let mut s = Scenario::prepare("webrbac").await;
    let manifests = [
        include_str!("../config/rbac/role.yaml"),
        include_str!("../config/webhook/rbac.yaml"),
        include_str!("../config/rbac/confinement.yaml"),
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
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_mounted_certificate_is_served_as_is() {
    let s = Scenario::prepare("webcert").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn botocore_in_the_admitted_pod_becomes_the_role() {
    let w = WebhookBed::start("websdk").await;
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
        .bounded_output()
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
        irsa_core::policy::decode_iam_document(role.assume_role_policy_document().unwrap())
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

/// Role chains (`spec.roleChain`): the operator renders the AWS config file into a
/// ConfigMap, annotates the ServiceAccount, grants `sts:AssumeRole` on exactly the
/// targets and extends a PodIamRole target's trust (`spec.trustedRoleArns`); the webhook
/// mounts the file; botocore, with the pod's env, the file and a kubelet token, becomes
/// each target through its profile. LocalStack does not check trust, so every hop is
/// checked as STS would (`irsa_core::trust`). A guardrail refuses a target outside
/// `allowedChainTargets` with no IAM write, and an object in sync costs none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_role_chain_resolves_with_botocore_through_each_profile() {
    let w = WebhookBed::start("chain").await;
    let s = &w.s;
    for name in ["app", "target"] {
        s.bed.create_service_account(&s.namespace, name).await;
    }
    // A role its owner made by hand, whose own trust admits the source role.
    let source_arn = format!(
        "arn:aws:iam::000000000000:role/irsa/{}/{}",
        s.cluster,
        s.role_name("source")
    );
    let external = support::unique("chain-external");
    let external_trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": source_arn}, "Action": "sts:AssumeRole"}]});
    let created = s
        .bed
        .iam
        .create_role()
        .role_name(&external)
        .assume_role_policy_document(external_trust.to_string())
        .send()
        .await
        .expect("CreateRole");
    let external_arn = created.role().unwrap().arn().to_string();
    let target_arn = format!(
        "arn:aws:iam::000000000000:role/irsa/{}/{}",
        s.cluster,
        s.role_name("target")
    );

    // The API server itself refuses a profile named `default` and a wildcard target.
    for (link, refusal) in [
        (
            json!({"profile": "default", "roleArn": target_arn}),
            "own role",
        ),
        (
            json!({"profile": "any", "roleArn": "arn:aws:iam::000000000000:role/*"}),
            "should match",
        ),
    ] {
        let mut spec = dynamo_spec("app");
        spec["roleChain"] = json!([link]);
        let manifest = json!({"apiVersion": "irsa.dev/v1alpha1", "kind": "PodIamRole",
            "metadata": {"name": "invalid"}, "spec": spec});
        let error = s
            .roles()
            .patch(
                "invalid",
                &PatchParams::apply("kubectl"),
                &Patch::Apply(&manifest),
            )
            .await
            .expect_err("refused by the CRD schema");
        assert!(error.to_string().contains(refusal), "{error}");
    }

    let writes = s.operator().iam_writes().await;
    let mut source = dynamo_spec("app");
    let chain = json!([
        {"profile": "target", "roleArn": target_arn, "sessionName": "chain-e2e", "durationSeconds": 900},
        {"profile": "external", "roleArn": external_arn},
    ]);
    source["roleChain"] = chain.clone();
    s.apply("source", source).await;
    let status = s.wait_reason("source", "Synced").await;
    assert_eq!(status.role_arn.as_deref(), Some(source_arn.as_str()));
    assert_eq!(
        s.operator().iam_writes().await - writes,
        2,
        "CreateRole and one PutRolePolicy, the chain's grant included"
    );
    let mut target = dynamo_spec("target");
    target["trustedRoleArns"] = json!([source_arn]);
    s.apply("target", target).await;
    s.wait_reason("target", "Synced").await;

    // The grant: sts:AssumeRole on exactly the two targets, beside the spec's policy.
    let policy = s.inline_policy(&s.role_name("source")).await;
    let grants: Vec<&Value> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|statement| statement["Action"] == "sts:AssumeRole")
        .collect();
    let mut expected = [target_arn.clone(), external_arn.clone()];
    expected.sort();
    assert_eq!(grants.len(), 1, "{policy}");
    assert_eq!(grants[0]["Resource"], json!(expected));

    // The file, the annotation, and the pod the webhook admits.
    let config_maps: Api<ConfigMap> = Api::namespaced(s.bed.kube.clone(), &s.namespace);
    let config_map = config_maps
        .get("source-aws-config")
        .await
        .expect("ConfigMap");
    let source_uid = s.roles().get("source").await.unwrap().metadata.uid;
    let owner = &config_map.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(Some(&owner.uid), source_uid.as_ref());
    let config = config_map.data.as_ref().unwrap()["config"].clone();
    assert_eq!(
        config,
        format!(
            "# Rendered by irsa-operator for PodIamRole {}/source; edits are overwritten.\n\
             [default]\nrole_arn = {source_arn}\nweb_identity_token_file = {TOKEN_PATH}\n\n\
             [profile target]\nsource_profile = default\nrole_arn = {target_arn}\n\
             role_session_name = chain-e2e\nduration_seconds = 900\n\n\
             [profile external]\nsource_profile = default\nrole_arn = {external_arn}\n",
            s.namespace
        )
    );
    assert_eq!(
        s.sa_annotation("app", CONFIG_ANNOTATION).await.as_deref(),
        Some("source-aws-config")
    );
    eventually("a pod admitted with the config file", || async {
        let pod = w.admit("probe-chain", pod_of("app", json!({})), true).await;
        config_volume(&pod).is_some().then_some(())
    })
    .await;
    let pod = w.admit("chain", pod_of("app", json!({})), false).await;
    assert_eq!(
        config_volume(&pod),
        Some(
            json!({"name": "irsa-aws-config", "configMap": {"name": "source-aws-config", "defaultMode": 420}})
        )
    );
    let app = container(&containers(&pod), "app").clone();
    let pod_env = env(&app);
    assert!(pod_env.contains(&(CONFIG_FILE.to_string(), "/etc/irsa/aws/config".to_string())));
    assert!(
        app.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "irsa-aws-config"
                && m.mount_path == "/etc/irsa/aws"
                && m.read_only == Some(true))
    );

    // The container's filesystem: its paths map to a directory of this test, as the
    // kubelet would fill them: the token, and the ConfigMap's file.
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pod-{}", s.namespace));
    let token = kubelet_token(
        &w,
        &pod,
        "app",
        &root.join(TOKEN_DIR.trim_start_matches('/')),
    )
    .await;
    let in_pod = |path: &str| {
        root.join(path.trim_start_matches('/'))
            .display()
            .to_string()
    };
    let config_file = in_pod("/etc/irsa/aws/config");
    std::fs::create_dir_all(Path::new(&config_file).parent().unwrap()).unwrap();
    std::fs::write(
        &config_file,
        config.replace(TOKEN_PATH, &in_pod(TOKEN_PATH)),
    )
    .unwrap();
    let script = "import sys, botocore.session\n\
                  for profile in sys.argv[1:]:\n\
                  \x20   sts = botocore.session.Session(profile=profile).create_client('sts')\n\
                  \x20   print(profile, sts.get_caller_identity()['Arn'])";
    let output = Command::new(localstack_python())
        .args(["-c", script, "default", "target", "external"])
        .env_clear()
        .envs(pod_env.iter().map(|(name, value)| {
            let value = match name.as_str() {
                "AWS_WEB_IDENTITY_TOKEN_FILE" | CONFIG_FILE => in_pod(value),
                _ => value.clone(),
            };
            (name.clone(), value)
        }))
        .env("AWS_SHARED_CREDENTIALS_FILE", in_pod("/nonexistent"))
        .bounded_output()
        .expect("run botocore");
    assert!(
        output.status.success(),
        "botocore failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let arns: BTreeMap<String, String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(profile, arn)| (profile.to_string(), arn.to_string()))
        .collect();
    let assumed = |arn: &str| {
        let name = arn.rsplit('/').next().unwrap();
        format!("arn:aws:sts::000000000000:assumed-role/{name}/")
    };
    assert!(
        arns["default"].starts_with(&assumed(&source_arn)),
        "{arns:?}"
    );
    assert_eq!(arns["target"], format!("{}chain-e2e", assumed(&target_arn)));
    assert!(
        arns["external"].starts_with(&assumed(&external_arn)),
        "{arns:?}"
    );

    // STS's checks, which LocalStack skips: the token may assume the source role, and
    // the source role may assume each target.
    let trust_of = |role: Option<aws_sdk_iam::types::Role>| {
        irsa_core::policy::decode_iam_document(role.unwrap().assume_role_policy_document().unwrap())
            .unwrap()
    };
    let source_trust = trust_of(s.role(&s.role_name("source")).await);
    assert_eq!(trust::evaluate(&source_trust, &claims(&token)), Ok(()));
    let target_trust = trust_of(s.role(&s.role_name("target")).await);
    assert_eq!(
        trust::evaluate_assume_role(&target_trust, &source_arn, None),
        Ok(())
    );
    assert!(trust::evaluate_assume_role(&target_trust, &external_arn, None).is_err());
    let external_trust = trust_of(s.role(&external).await);
    assert_eq!(
        trust::evaluate_assume_role(&external_trust, &source_arn, None),
        Ok(())
    );

    // Guardrails. One that leaves out the external role: the source reports it (its role
    // is left as it is), which also shows the guardrail reached the operator's cache.
    let writes = s.operator().iam_writes().await;
    s.bed
        .label_namespace(&s.namespace, json!({"irsa-e2e/scenario": s.namespace}))
        .await;
    let guardrails: Api<PodIamRoleGuardrail> = Api::all(s.bed.kube.clone());
    let own_cluster = format!("arn:aws:iam::000000000000:role/irsa/{}/*", s.cluster);
    let guard = move |targets: Value| async move {
        let guardrail = json!({"apiVersion": "irsa.dev/v1alpha1", "kind": "PodIamRoleGuardrail",
            "metadata": {"name": s.namespace}, "spec": {
                "namespaceSelector": {"matchLabels": {"irsa-e2e/scenario": s.namespace}},
                "allowedChainTargets": targets}});
        Api::<PodIamRoleGuardrail>::all(s.bed.kube.clone())
            .patch(
                &s.namespace,
                &PatchParams::apply("kubectl").force(),
                &Patch::Apply(&guardrail),
            )
            .await
            .expect("apply guardrail");
    };
    guard(json!([own_cluster])).await;
    let status = s.wait_reason("source", "PolicyNotAllowed").await;
    let message = &status.conditions[0].message;
    assert!(
        message.contains(&format!(
            "spec.roleChain: sts:AssumeRole on `{external_arn}` is not within guardrail {}'s allowedChainTargets",
            s.namespace
        )),
        "{message}"
    );
    // A new PodIamRole chaining outside the guardrail is refused before IAM.
    let mut refused = dynamo_spec("refused");
    let elsewhere = "arn:aws:iam::000000000000:role/elsewhere";
    refused["roleChain"] = json!([{"profile": "elsewhere", "roleArn": elsewhere}]);
    s.apply("refused", refused).await;
    let status = s.wait_reason("refused", "PolicyNotAllowed").await;
    assert!(
        status.conditions[0]
            .message
            .contains(&format!("sts:AssumeRole on `{elsewhere}`")),
        "{}",
        status.conditions[0].message
    );
    // Relaxed again: the source is back in sync, with no write.
    guard(json!([own_cluster, external_arn])).await;
    s.wait_reason("source", "Synced").await;
    // Several more reconciles (resyncs of every object): none writes.
    let reconciles = s.operator().reconciles().await;
    eventually("more reconciles", || async {
        (s.operator().reconciles().await >= reconciles + 6).then_some(())
    })
    .await;
    assert!(s.reports("refused", "PolicyNotAllowed").await);
    assert_eq!(
        s.operator().iam_writes().await,
        writes,
        "no IAM write for the refusal, nor for objects in sync"
    );
    assert!(s.role(&s.role_name("refused")).await.is_none());

    // Another ServiceAccount: the pointer to the file moves with the role annotation (one
    // write, the trust policy's subject).
    s.bed.create_service_account(&s.namespace, "app2").await;
    let mut moved = dynamo_spec("app2");
    moved["roleChain"] = chain;
    s.apply("source", moved).await;
    s.wait_reason("source", "Synced").await;
    assert_eq!(s.operator().iam_writes().await, writes + 1);
    assert_eq!(
        s.sa_annotation("app2", CONFIG_ANNOTATION).await.as_deref(),
        Some("source-aws-config")
    );
    assert_eq!(s.sa_annotation("app", CONFIG_ANNOTATION).await, None);

    // Without the chain: one PutRolePolicy, and the file and annotation are gone.
    s.apply("source", dynamo_spec("app2")).await;
    s.wait_reason("source", "Synced").await;
    assert_eq!(s.operator().iam_writes().await, writes + 2);
    assert!(
        config_maps
            .get_opt("source-aws-config")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.sa_annotation("app2", CONFIG_ANNOTATION).await, None);

    for name in ["source", "target", "refused"] {
        s.delete(name).await;
    }
    guardrails
        .delete(&s.namespace, &DeleteParams::default())
        .await
        .expect("delete guardrail");
    s.bed
        .iam
        .delete_role()
        .role_name(&external)
        .send()
        .await
        .expect("DeleteRole");
    std::fs::remove_dir_all(&root).unwrap();
    w.remove_configuration().await;
}

fn config_volume(pod: &Pod) -> Option<Value> {
    let volumes = serde_json::to_value(&pod.spec.as_ref()?.volumes).ok()?;
    volumes
        .as_array()?
        .iter()
        .find(|v| v["name"] == "irsa-aws-config")
        .cloned()
}
