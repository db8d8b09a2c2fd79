//! `kubectl irsa`: the operator's binary is kubectl's `irsa` plugin when it is on `PATH` as
//! `kubectl-irsa` (how krew installs it: a link of that name). These tests go through
//! kubectl's own plugin discovery, not through the binary directly.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use support::tools::{OPERATOR_SETTINGS, output_within};

/// A fresh directory holding only `kubectl-irsa`, a link to the binary under test.
fn plugin_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "kubectl-plugin-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_irsa-operator"),
        dir.join("kubectl-irsa"),
    )
    .unwrap();
    dir
}

/// `kubectl ARGS` with `dir` first on `PATH`.
fn kubectl(dir: &Path, args: &[&str]) -> Output {
    let path = std::env::join_paths(std::iter::once(dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let mut command = Command::new("kubectl");
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .env("PATH", path)
        .env_remove("IRSA_CLUSTER_NAME");
    output_within(&mut command, "", Duration::from_secs(60))
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn kubectl_plugin_list_finds_it() {
    let dir = plugin_dir();
    let listed = stdout(&kubectl(&dir, &["plugin", "list", "--name-only"]));
    assert!(
        listed.lines().any(|line| line.trim() == "kubectl-irsa"),
        "{listed}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn kubectl_irsa_help_names_the_plugin_and_its_commands() {
    let dir = plugin_dir();
    let help = stdout(&kubectl(&dir, &["irsa", "--help"]));
    assert!(help.contains("Usage: kubectl irsa <COMMAND>"), "{help}");
    for command in ["doctor", "validate", "thumbprint", "iam-policy"] {
        assert!(
            help.lines()
                .any(|line| line.trim_start().starts_with(command)),
            "{command} missing:\n{help}"
        );
    }
    let help = stdout(&kubectl(&dir, &["irsa", "doctor", "--help"]));
    assert!(
        help.contains("Usage: kubectl irsa doctor [OPTIONS] <TARGET>"),
        "{help}"
    );
    // Started by its own name, the binary is the operator.
    let own = Command::new(env!("CARGO_BIN_EXE_irsa-operator"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(stdout(&own).contains("Usage: irsa-operator <COMMAND>"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn kubectl_irsa_runs_the_commands_with_their_flags() {
    let dir = plugin_dir();
    // kubectl hands every word after `irsa` to the plugin, flags included.
    let through_kubectl = stdout(&kubectl(
        &dir,
        &["irsa", "iam-policy", "--cluster-name", "x"],
    ));
    let direct = Command::new(env!("CARGO_BIN_EXE_irsa-operator"))
        .args(["iam-policy", "--cluster-name", "x"])
        .output()
        .unwrap();
    assert_eq!(through_kubectl, stdout(&direct));
    let policy: serde_json::Value = serde_json::from_str(&through_kubectl).unwrap();
    assert!(
        policy["Statement"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );

    let validated = stdout(&kubectl(
        &dir,
        &[
            &[
                "irsa",
                "validate",
                "-f",
                "tests/manifests/good",
                "--guardrails",
                "tests/manifests/guardrails",
                "-n",
                "tenant",
            ][..],
            &OPERATOR_SETTINGS[..],
        ]
        .concat(),
    ));
    assert!(validated.contains("0 refused"), "{validated}");

    // Exit codes pass through kubectl: a refused manifest fails, a usage error is clap's.
    let refused = kubectl(
        &dir,
        &[
            &[
                "irsa",
                "validate",
                "-f",
                "tests/manifests/bad",
                "-n",
                "shop",
            ][..],
            &OPERATOR_SETTINGS[..],
        ]
        .concat(),
    );
    assert_eq!(refused.status.code(), Some(1));
    let usage = kubectl(&dir, &["irsa", "thumbprint"]);
    assert_eq!(usage.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&usage.stderr);
    assert!(
        stderr.contains("Usage: kubectl irsa thumbprint"),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
