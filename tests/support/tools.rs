//! Command-line tools the tests drive: kubectl from PATH, and the pinned tools
//! `scripts/tools` builds and caches (helm, rulecheck, cfn-lint, the Prometheus Operator CRDs).

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Output, Stdio},
};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The path `scripts/tools <name>` prints, building the tool on first use.
pub fn tool(name: &str) -> PathBuf {
    let output = Command::new(repo_root().join("scripts/tools"))
        .arg(name)
        .output()
        .expect("scripts/tools runs");
    assert!(
        output.status.success(),
        "scripts/tools {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// Runs `command` with `stdin`, and fails on a non-zero exit or, when `quiet`, on anything
/// written to stderr (kubectl's API warnings go there). Returns stdout.
pub fn run(command: Command, stdin: &str, quiet: bool) -> String {
    let what = format!("{command:?}");
    let Output {
        status,
        stdout,
        stderr,
    } = output_with_stdin(command, stdin);
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(
        status.success() && (!quiet || stderr.trim().is_empty()),
        "{what} -> {status}\n{stderr}"
    );
    String::from_utf8(stdout).unwrap()
}

/// Runs `command` with `stdin` and returns how it ended, whatever its exit code.
pub fn output_with_stdin(mut command: Command, stdin: &str) -> Output {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `kubectl` against the test bed; any warning fails.
pub fn kubectl(kubeconfig: &str, args: &[&str], stdin: &str) -> String {
    let mut command = Command::new("kubectl");
    command.env("KUBECONFIG", kubeconfig).args(args);
    run(command, stdin, true)
}

/// Installs the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs (idempotent).
pub fn install_monitoring_crds(kubeconfig: &str) {
    let dir = tool("monitoring-crds");
    for kind in ["servicemonitors", "prometheusrules"] {
        let file = dir.join(format!("monitoring.coreos.com_{kind}.yaml"));
        kubectl(
            kubeconfig,
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager",
                "irsa-e2e",
                "-f",
                &file.display().to_string(),
            ],
            "",
        );
    }
    kubectl(
        kubeconfig,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/prometheusrules.monitoring.coreos.com",
        ],
        "",
    );
}

/// The documents of a multi-document YAML stream, empty ones left out.
pub fn yaml_documents(yaml: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .map(|document| serde_json::Value::deserialize(document).expect("YAML"))
        .filter(|value| !value.is_null())
        .collect()
}
