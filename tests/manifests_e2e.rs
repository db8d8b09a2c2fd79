//! End-to-end: every kustomization in `config/` (and the example Secret) applies to the
//! test bed with `kubectl`, server-side, with no error and no warning. Namespaces are created
//! for real so that the objects in them can be checked; everything else is a server-side
//! dry run, which runs validation, the CRD schemas and Pod Security admission.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{
    install_crypto, testbed,
    tools::{install_monitoring_crds, kubectl, repo_root, yaml_documents},
};

const FIELD_MANAGER: &str = "irsa-manifests-e2e";

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

fn to_yaml(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| serde_yaml::to_string(o).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn every_manifest_in_config_applies_without_error_or_warning() {
    install_crypto();
    let bed = testbed().await;
    bed.install_crd().await;
    let kubeconfig = bed.vars["KUBECONFIG"].clone();
    let apply = [
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager",
        FIELD_MANAGER,
    ];
    install_monitoring_crds(&kubeconfig);

    let mut dirs = Vec::new();
    kustomizations(&repo_root().join("config"), &mut dirs);
    dirs.sort();
    assert!(dirs.len() >= 10, "too few kustomizations found: {dirs:?}");
    let mut sets: Vec<(String, String)> = dirs
        .iter()
        .map(|dir| {
            let name = dir.strip_prefix(repo_root()).unwrap().display().to_string();
            let rendered = kubectl(&kubeconfig, &["kustomize", &dir.display().to_string()], "");
            (name, rendered)
        })
        .collect();
    let example = "config/components/aws-credentials-secret/secret.example.yaml";
    sets.push((
        example.into(),
        std::fs::read_to_string(repo_root().join(example)).unwrap(),
    ));

    for (name, rendered) in &sets {
        let objects = yaml_documents(rendered);
        assert!(!objects.is_empty(), "{name} renders nothing");
        let (namespaces, rest): (Vec<Value>, Vec<Value>) =
            objects.into_iter().partition(|o| o["kind"] == "Namespace");
        if !namespaces.is_empty() {
            let mut args = apply.to_vec();
            args.extend(["-f", "-"]);
            kubectl(&kubeconfig, &args, &to_yaml(&namespaces));
        }
        let mut args = apply.to_vec();
        args.extend(["--dry-run=server", "-f", "-"]);
        let out = kubectl(&kubeconfig, &args, &to_yaml(&rest));
        eprintln!("{name}: {} objects\n{out}", rest.len());
    }
}
