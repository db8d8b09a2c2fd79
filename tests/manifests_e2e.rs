//! End-to-end: every kustomization in `config/` (and the example Secret) applies to the
//! test bed with `kubectl`, server-side, with no error and no warning. Namespaces are created
//! for real so that the objects in them can be checked; everything else is a server-side
//! dry run, which runs validation, the CRD schemas and Pod Security admission.

mod support;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use serde::Deserialize;
use serde_json::Value;
use support::{install_crypto, testbed};

const FIELD_MANAGER: &str = "irsa-manifests-e2e";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn kubectl(kubeconfig: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl on PATH");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Runs kubectl and fails on a non-zero exit or on anything written to stderr (warnings).
fn kubectl_clean(kubeconfig: &str, what: &str, args: &[&str], stdin: &str) -> String {
    let output = kubectl(kubeconfig, args, stdin);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "{what}: kubectl {args:?} -> {}\n{stderr}",
        output.status
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Every directory under config/ with a kustomization that is not a Component.
fn kustomizations(dir: &Path, found: &mut Vec<PathBuf>) {
    let file = dir.join("kustomization.yaml");
    if let Ok(text) = std::fs::read_to_string(&file)
        && !text.contains("kind: Component")
    {
        found.push(dir.to_path_buf());
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            kustomizations(&path, found);
        }
    }
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|document| Value::deserialize(document).expect("YAML"))
        .filter(|value| !value.is_null())
        .collect()
}

fn to_yaml(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| serde_yaml::to_string(o).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The Prometheus Operator's CRDs, for config/prometheus, from the Go module proxy.
fn monitoring_crds() -> Vec<PathBuf> {
    let output = Command::new(root().join("scripts/tools"))
        .arg("monitoring-crds")
        .output()
        .expect("scripts/tools runs");
    assert!(
        output.status.success(),
        "scripts/tools monitoring-crds: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
    ["servicemonitors", "prometheusrules"]
        .map(|kind| dir.join(format!("monitoring.coreos.com_{kind}.yaml")))
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_manifest_in_config_applies_without_error_or_warning() {
    install_crypto();
    let Some(bed) = testbed().await else {
        return;
    };
    bed.install_crd().await;
    let kubeconfig = bed.vars["KUBECONFIG"].clone();
    let apply = [
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager",
        FIELD_MANAGER,
    ];
    for crd in monitoring_crds() {
        let file = crd.display().to_string();
        let mut args = apply.to_vec();
        args.extend(["-f", &file]);
        kubectl_clean(&kubeconfig, "Prometheus Operator CRD", &args, "");
    }
    kubectl_clean(
        &kubeconfig,
        "CRDs established",
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/prometheusrules.monitoring.coreos.com",
        ],
        "",
    );

    let mut dirs = Vec::new();
    kustomizations(&root().join("config"), &mut dirs);
    dirs.sort();
    assert!(dirs.len() >= 10, "too few kustomizations found: {dirs:?}");
    let mut sets: Vec<(String, String)> = dirs
        .iter()
        .map(|dir| {
            let name = dir.strip_prefix(root()).unwrap().display().to_string();
            let rendered = kubectl_clean(
                &kubeconfig,
                &name,
                &["kustomize", &dir.display().to_string()],
                "",
            );
            (name, rendered)
        })
        .collect();
    let example = "config/components/aws-credentials-secret/secret.example.yaml";
    sets.push((
        example.into(),
        std::fs::read_to_string(root().join(example)).unwrap(),
    ));

    for (name, rendered) in &sets {
        let objects = documents(rendered);
        assert!(!objects.is_empty(), "{name} renders nothing");
        let (namespaces, rest): (Vec<Value>, Vec<Value>) =
            objects.into_iter().partition(|o| o["kind"] == "Namespace");
        if !namespaces.is_empty() {
            let mut args = apply.to_vec();
            args.extend(["-f", "-"]);
            kubectl_clean(&kubeconfig, name, &args, &to_yaml(&namespaces));
        }
        let mut args = apply.to_vec();
        args.extend(["--dry-run=server", "-f", "-"]);
        let out = kubectl_clean(&kubeconfig, name, &args, &to_yaml(&rest));
        eprintln!("{name}: {} objects\n{out}", rest.len());
    }
}
