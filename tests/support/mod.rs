//! Shared helpers for tests against the test bed: a real kube-apiserver and LocalStack IAM,
//! found only through the `.testbed/env` file (see DESIGN.md, "The test bed contract").
#![allow(dead_code)] // each test binary uses a different subset

pub mod fault_proxy;
pub mod gitops;
pub mod iam_eval;
pub mod rbac;
pub mod scenario;
pub mod tcp_switch;
pub mod tools;
pub mod webhook;

use std::{
    collections::HashMap,
    fmt::Debug,
    future::Future,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region};
use base64::Engine;
use k8s_openapi::{
    api::{
        authentication::v1::TokenRequest,
        core::v1::{Namespace, ServiceAccount},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config,
    api::{Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::{Value, json};

/// How long any eventual condition may take on a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(90);

pub struct Testbed {
    pub vars: HashMap<String, String>,
    pub kube: Client,
    pub kube_config: Config,
    pub iam: aws_sdk_iam::Client,
}

fn env_file() -> PathBuf {
    std::env::var_os("TESTBED_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".testbed/env"))
}

/// Parses `export KEY=value` lines, with optional single or double quotes.
pub fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|assignment| assignment.split_once('='))
        .map(|(key, value)| {
            let value = value.trim().trim_matches('"').trim_matches('\'');
            (key.trim().to_string(), value.to_string())
        })
        .collect()
}

/// The test bed. Tests that call this are `#[ignore]`d and run by `scripts/test`
/// (`--include-ignored`), so a missing test bed is a failure, never a silent pass.
pub async fn testbed() -> Testbed {
    let path = env_file();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "no test bed env file at {} ({error}); run `scripts/testbed up`",
            path.display()
        )
    });
    let vars = parse_env(&text);
    let var = |key: &str| {
        vars.get(key)
            .cloned()
            .unwrap_or_else(|| panic!("{} lacks {key}", path.display()))
    };
    let kubeconfig = Kubeconfig::read_from(var("KUBECONFIG")).expect("readable kubeconfig");
    let kube_config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("valid kubeconfig");
    let kube = Client::try_from(kube_config.clone()).expect("kube client");
    let aws = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(var("AWS_ENDPOINT_URL"))
        .region(Region::new(var("AWS_REGION")))
        .credentials_provider(Credentials::new(
            var("AWS_ACCESS_KEY_ID"),
            var("AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "testbed",
        ))
        .load()
        .await;
    Testbed {
        vars,
        kube,
        kube_config,
        iam: aws_sdk_iam::Client::new(&aws),
    }
}

/// A 12-digit account no other test uses: LocalStack creates it, empty, on first use.
pub fn fresh_account_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    // The process ID keeps test binaries started in the same nanosecond apart.
    let salted = nanos ^ (u128::from(std::process::id()) << 40);
    format!("{:012}", 100_000_000_000 + salted % 800_000_000_000)
}

/// Installs rustls' provider once per test process; kube and the AWS SDK both need it.
pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A short unique suffix for names, so runs and tests never collide.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{:x}",
        (nanos ^ (std::process::id() as u128) << 40) & 0xff_ffff_ffff
    )
}

impl Testbed {
    pub async fn create_namespace(&self, name: &str) {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(self.kube.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
    }

    pub async fn create_service_account(&self, namespace: &str, name: &str) {
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<ServiceAccount>::namespaced(self.kube.clone(), namespace)
            .create(&PostParams::default(), &sa)
            .await
            .expect("create service account");
    }

    pub fn issuer_host_path(&self) -> String {
        self.vars["TESTBED_OIDC_ISSUER"]
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_string()
    }

    /// LocalStack's account is always 000000000000.
    pub fn provider_arn(&self) -> String {
        format!(
            "arn:aws:iam::000000000000:oidc-provider/{}",
            self.issuer_host_path()
        )
    }

    /// What EKS users have: a provider for the issuer, created outside the operator.
    pub async fn ensure_oidc_provider(&self) {
        let exists = self
            .iam
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(self.provider_arn())
            .send()
            .await
            .is_ok();
        if !exists {
            // A concurrent test may win the race; either way the provider exists afterwards.
            let _ = self
                .iam
                .create_open_id_connect_provider()
                .url(&self.vars["TESTBED_OIDC_ISSUER"])
                .client_id_list("sts.amazonaws.com")
                .thumbprint_list("0".repeat(40))
                .send()
                .await;
        }
    }

    /// Applies the committed CRDs, as `kubectl apply -f crds/` would, and waits until they are served.
    pub async fn install_crd(&self) {
        let crds: Api<CustomResourceDefinition> = Api::all(self.kube.clone());
        for (_, yaml) in irsa_api::crd_files() {
            let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).expect("CRD YAML");
            let name = crd.metadata.name.clone().unwrap();
            crds.patch(
                &name,
                &PatchParams::apply("irsa-e2e").force(),
                &Patch::Apply(&crd),
            )
            .await
            .expect("apply CRD");
            eventually("CRD established", || async {
                let crd = crds.get(&name).await.ok()?;
                let established = crd
                    .status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(())
            })
            .await;
        }
    }

    /// A projected-style token for a ServiceAccount, as the pod identity webhook requests
    /// it: (JWT header, claims).
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audience: &str,
    ) -> (Value, Value) {
        let request: TokenRequest = serde_json::from_value(
            json!({"spec": {"audiences": [audience], "expirationSeconds": 3600}}),
        )
        .unwrap();
        let issued = Api::<ServiceAccount>::namespaced(self.kube.clone(), namespace)
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .expect("TokenRequest");
        let token = issued
            .status
            .and_then(|s| s.token)
            .expect("a token in the TokenRequest status");
        let decode = |part: &str| -> Value {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .expect("base64url");
            serde_json::from_slice(&bytes).expect("JSON")
        };
        let mut parts = token.split('.');
        (decode(parts.next().unwrap()), decode(parts.next().unwrap()))
    }

    /// Adds labels to a namespace, for guardrail selectors.
    /// A guardrail `<namespace>-grants` that grants the namespace every kind of thing, each
    /// written as `*`: default deny then refuses nothing but the built-in deny list.
    pub async fn grant_everything(&self, namespace: &str) {
        let all = json!(["*"]);
        let manifest = json!({"apiVersion": "irsa.dev/v1alpha1", "kind": "PodIamRoleGuardrail",
        "metadata": {"name": format!("{namespace}-grants")},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "allowedActions": all, "allowedResources": all, "allowedManagedPolicyArns": all,
            "allowedChainTargets": all, "allowedTrustedRoleArns": all, "allowedAudiences": all,
        }});
        Api::<irsa_api::PodIamRoleGuardrail>::all(self.kube.clone())
            .patch(
                &format!("{namespace}-grants"),
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&manifest),
            )
            .await
            .expect("apply the namespace's grants");
    }

    /// An IAM client acting in `account_id` straight at LocalStack, which tells accounts
    /// apart by the access key.
    pub async fn iam_in(&self, account_id: &str) -> aws_sdk_iam::Client {
        let aws = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.vars["AWS_ENDPOINT_URL"])
            .region(Region::new(self.vars["AWS_REGION"].clone()))
            .credentials_provider(Credentials::new(account_id, "test", None, None, "account"))
            .load()
            .await;
        aws_sdk_iam::Client::new(&aws)
    }

    pub async fn label_namespace(&self, name: &str, labels: serde_json::Value) {
        let patch = json!({"metadata": {"labels": labels}});
        Api::<Namespace>::all(self.kube.clone())
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("label namespace");
    }
}

/// Whether STS would let a token with these claims assume a role with this trust policy:
/// LocalStack does not check, so the tests do (see `irsa_core::trust`).
pub fn trust_admits(trust: &Value, claims: &Value) -> bool {
    irsa_core::trust::evaluate(trust, claims).is_ok()
}

/// Polls `probe` until it yields a value; on timeout, fails with what it last saw.
pub async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Like [`eventually`], but reports the last observed value on timeout.
pub async fn eventually_matches<T: Debug, F, Fut>(
    what: &str,
    probe: F,
    accept: impl Fn(&T) -> bool,
) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = T>,
{
    let started = Instant::now();
    loop {
        let seen = probe().await;
        if accept(&seen) {
            return seen;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for: {what}\nlast seen: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A port for a test's own listener, below the kernel's ephemeral range (32768 and up on
/// Linux). A port from `bind(0)` is ephemeral: between the probe and the listener's own
/// bind, an outgoing connection of any process may take it as its local port, and the
/// listener then fails with "address in use".
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Test binaries run one after another; each starts at its own offset.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(7_919) % SPAN;
    // One pass over the span: if none is free, looping again would never end.
    for _ in 0..SPAN {
        let port = (FIRST + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in {FIRST}..{}", FIRST + SPAN);
}

/// The operator binary, run as a user runs it, watching one namespace.
pub struct Operator {
    child: Child,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Operator {
    pub fn start(testbed: &Testbed, cluster: &str, namespace: &str, extra: &[&str]) -> Self {
        Self::start_with_env(testbed, cluster, namespace, extra, &[])
    }

    /// Like [`Operator::start`], with `env` set over the test bed's variables, e.g. an
    /// `AWS_ENDPOINT_URL` pointing at a fault proxy.
    pub fn start_with_env(
        testbed: &Testbed,
        cluster: &str,
        namespace: &str,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Self {
        let metrics_port = free_port();
        let log_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("operator-logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        let log = log_dir.join(format!("{cluster}-{metrics_port}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        // A short resync unless the test sets its own (a flag given twice is an error).
        let resync: &[&str] = if extra.contains(&"--resync-interval") {
            &[]
        } else {
            &["--resync-interval", "5s"]
        };
        let child = Command::new(env!("CARGO_BIN_EXE_irsa-operator"))
            .arg("run")
            .args(["--cluster-name", cluster, "--namespaces", namespace])
            .args(resync)
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(extra)
            .env_clear()
            .envs(testbed.vars.iter())
            .env("RUST_LOG", "info,irsa_operator=debug,kube=warn,aws=warn")
            // One pod name per cluster, as a restarted container keeps its pod's: a restart
            // takes its own leader Lease back at once instead of waiting for it to expire.
            .env("POD_NAME", format!("operator-{cluster}"))
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start irsa-operator");
        eprintln!("operator for {namespace} logs to {}", log.display());
        Self {
            child,
            metrics_port,
            log,
        }
    }

    /// The process id, e.g. to read its memory from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Raw `/metrics` text, or `None` while the server is not up.
    pub async fn metrics(&self) -> Option<String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        http_get(&url).await
    }

    /// Total IAM calls with `access="write"` so far.
    pub async fn iam_writes(&self) -> u64 {
        let text = self.metrics().await.expect("metrics are served");
        sum_metric(&text, "irsa_operator_iam_calls_total", "access=\"write\"")
    }

    /// Reconciles finished so far.
    pub async fn reconciles(&self) -> u64 {
        let text = self.metrics().await.expect("metrics are served");
        sum_metric(&text, "irsa_operator_reconciles_total", "")
    }

    /// The `/readyz` body while it answers 200: `ok` on a synced leader, `standby` on a standby.
    pub async fn readyz(&self) -> Option<String> {
        http_get(&format!("http://127.0.0.1:{}/readyz", self.metrics_port)).await
    }

    /// Waits for `/readyz` to say `ok`; fails at once, with the log's end, if the process
    /// has exited.
    pub async fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            if self.readyz().await.is_some_and(|body| body == "ok") {
                return;
            }
            let exited = !self.is_running();
            assert!(
                !exited && started.elapsed() < DEADLINE,
                "the operator is not ready after {:?}{}; its log ends with:\n{}",
                started.elapsed(),
                if exited { " and has exited" } else { "" },
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Whether the process is alive (not gone, not a zombie), read from /proc.
    fn is_running(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).is_ok_and(|stat| {
            stat.rsplit(") ")
                .next()
                .is_some_and(|rest| !rest.starts_with('Z'))
        })
    }

    /// The last `lines` lines of the operator's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Sends SIGTERM, as the kubelet does, and waits until the process has exited.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("operator status") {
                return status;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "the operator did not exit within {DEADLINE:?} of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sums the samples of `metric` whose labels contain `label`.
pub fn sum_metric(text: &str, metric: &str, label: &str) -> u64 {
    text.lines()
        .filter(|line| line.starts_with(metric) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A minimal HTTP/1.0 GET over loopback: the tests need no HTTP client crate for this.
pub async fn http_get(url: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
    let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}
