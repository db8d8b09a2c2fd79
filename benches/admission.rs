//! The pod identity webhook's admission latency and the operator's memory around it, on
//! the test bed (`scripts/testbed up`). Prints numbers and asserts no timing or size (the
//! machine is shared); run it with `cargo bench --bench admission`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{path::Path, process::Command};

use serde_json::json;
use support::{
    tools::BoundedOutput,
    webhook::{WebhookBed, configurations, has_token_volume, localstack_python, pod_of},
};

fn main() {
    // `cargo test --all-targets` runs this without `--bench`: it needs the test bed and
    // measures nothing unoptimised, so it only says how to run it.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!(
            "admission benchmark: run it with `cargo bench --bench admission` (needs the test bed)"
        );
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(admission_latency_and_memory());
}

/// 1,000 AdmissionReviews straight to the webhook over one TLS connection (the webhook's
/// own latency: cache lookup, injection, JSON), then 1,000 dry-run pod creates through the
/// API server (what a user sees), and the operator's resident memory around them.
async fn admission_latency_and_memory() {
    const ROUNDS: usize = 1000;
    let w = WebhookBed::start("webbench").await;
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
        .bounded_output()
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
