//! Command-line tools the tests drive: kubectl from PATH, and the pinned tools
//! `scripts/tools` builds and caches (helm, rulecheck, cfn-lint, the Prometheus Operator CRDs).

use std::{
    io::{Read, Write},
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// How long `scripts/tools` may take to build a tool on first use.
pub const TOOL_BUILD_DEADLINE: Duration = Duration::from_secs(45 * 60);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The path `scripts/tools <name>` prints, building the tool on first use.
pub fn tool(name: &str) -> PathBuf {
    let mut command = Command::new(repo_root().join("scripts/tools"));
    command.arg(name);
    // The first use builds the tool (a Go build, or pip): minutes on a loaded machine.
    let output = output_within(&mut command, "", TOOL_BUILD_DEADLINE);
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

/// The operator's settings `irsa-operator validate` needs, as `run` would resolve them.
pub const OPERATOR_SETTINGS: [&str; 6] = [
    "--cluster-name",
    "prod",
    "--account-id",
    "111122223333",
    "--oidc-issuer",
    "https://oidc.eks.us-east-1.amazonaws.com/id/ABC",
];

/// Runs `command` with `stdin` and returns how it ended, whatever its exit code.
pub fn output_with_stdin(mut command: Command, stdin: &str) -> Output {
    output_within(&mut command, stdin, COMMAND_DEADLINE)
}

/// `Command::output` with [`COMMAND_DEADLINE`]: for commands that talk to the test bed.
pub trait BoundedOutput {
    fn bounded_output(&mut self) -> std::io::Result<Output>;
}

impl BoundedOutput for Command {
    fn bounded_output(&mut self) -> std::io::Result<Output> {
        Ok(output_within(self, "", COMMAND_DEADLINE))
    }
}

/// How long one command of a test may run: kubectl, helm, a checker or an SDK script take
/// seconds even on a loaded test bed, so this only ends a hang.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(300);

/// Runs `command` with `stdin` and returns how it ended, whatever its exit code; kills it
/// and fails, with what it printed so far, if it has not exited after `deadline`.
pub fn output_within(command: &mut Command, stdin: &str, deadline: Duration) -> Output {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    // Pipes are fed and drained on threads, so a full pipe never stops the clock.
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_owned();
    let writer = std::thread::spawn(move || {
        // A command that does not read its input closes the pipe early: not an error.
        let _ = input.write_all(stdin.as_bytes());
    });
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not exit within {deadline:?}; its output so far:\n{}\n{}",
                String::from_utf8_lossy(&stdout.0.lock().unwrap()),
                String::from_utf8_lossy(&stderr.0.lock().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: stdout.finish(),
        stderr: stderr.finish(),
    }
}

/// A pipe read to its end on its own thread, into a buffer readable meanwhile.
struct Drained(Arc<Mutex<Vec<u8>>>, std::thread::JoinHandle<()>);

impl Drained {
    fn finish(self) -> Vec<u8> {
        let _ = self.1.join();
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> Drained {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = buffer.clone();
    let thread = std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(read @ 1..) = pipe.read(&mut chunk) {
            sink.lock().unwrap().extend_from_slice(&chunk[..read]);
        }
    });
    Drained(buffer, thread)
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
