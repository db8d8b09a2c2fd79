//! What GitOps tools make of live objects, computed by their own code: kstatus
//! (sigs.k8s.io/cli-utils, as Flux uses it by default), Flux's CEL evaluator of
//! `healthCheckExprs` (github.com/fluxcd/pkg/runtime/cel) on the expressions documented in
//! docs/gitops.md, and the Argo CD health checks under health/ (run by gopher-lua, Argo
//! CD's interpreter). All are small Go programs under tools/, built and cached by
//! `scripts/go-tool`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use irsa_api::PodIamRole;
use kube::{
    Api,
    api::{ApiResource, DynamicObject},
};
use serde::Deserialize;
use serde_json::Value;

use super::tools::{COMMAND_DEADLINE, TOOL_BUILD_DEADLINE, output_within};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The path of a tool under tools/, built on first use.
fn tool(name: &str) -> PathBuf {
    let mut command = Command::new(root().join("scripts/go-tool"));
    command.arg(name);
    let output = output_within(&mut command, "", TOOL_BUILD_DEADLINE);
    assert!(
        output.status.success(),
        "scripts/go-tool {name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

fn run(binary: &Path, args: &[&str], object: &Value) -> (String, String) {
    let mut command = Command::new(binary);
    command.args(args);
    let output = output_within(&mut command, &object.to_string(), COMMAND_DEADLINE);
    assert!(
        output.status.success(),
        "{} failed: {}",
        binary.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let line: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    (
        line["status"].as_str().unwrap().to_string(),
        line["message"].as_str().unwrap().to_string(),
    )
}

/// A PodIamRole exactly as the API server serves it, without a round trip through the
/// Rust types.
pub async fn raw_object(api: &Api<PodIamRole>, name: &str) -> Value {
    let resource = ApiResource::erase::<PodIamRole>(&());
    let namespace = api.namespace().unwrap_or_default().to_string();
    let dynamic: Api<DynamicObject> =
        Api::namespaced_with(api.clone().into_client(), &namespace, &resource);
    serde_json::to_value(dynamic.get(name).await.expect("get PodIamRole")).unwrap()
}

/// kstatus's (status, message) for an object: Current, InProgress, Failed, ...
pub fn kstatus(object: &Value) -> (String, String) {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    run(BINARY.get_or_init(|| tool("kstatus")), &[], object)
}

/// The Kustomization with `healthCheckExprs` that docs/gitops.md tells Flux users to
/// write, as a file for the checker.
fn documented_flux_kustomization() -> PathBuf {
    let docs = std::fs::read_to_string(root().join("docs/gitops.md")).unwrap();
    let start = docs
        .find("apiVersion: kustomize.toolkit.fluxcd.io/v1")
        .expect("docs/gitops.md shows a Flux Kustomization");
    let end = start + docs[start..].find("```").unwrap();
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("flux-health-kustomization.yaml");
    std::fs::write(&path, &docs[start..end]).unwrap();
    path
}

/// Flux's (status, message) for an object under the documented `healthCheckExprs`.
pub fn flux_health(object: &Value) -> (String, String) {
    static SETUP: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    let (binary, kustomization) =
        SETUP.get_or_init(|| (tool("flux-health"), documented_flux_kustomization()));
    run(binary, &[kustomization.to_str().unwrap()], object)
}

/// Argo CD's (health, message) for a PodIamRole: Healthy, Progressing, Degraded.
pub fn argo_health(object: &Value) -> (String, String) {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    let script = root().join("health/irsa.dev/PodIamRole/health.lua");
    run(
        BINARY.get_or_init(|| tool("lua-health")),
        &["eval", script.to_str().unwrap()],
        object,
    )
}

/// The PodIamRoles in the manifests of these directories, without their namespace:
/// (name, object), by name.
pub fn test_manifests(dirs: &[&str]) -> Vec<(String, Value)> {
    let mut manifests = Vec::new();
    for dir in dirs {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for document in serde_yaml::Deserializer::from_str(&text) {
                let mut object = Value::deserialize(document).unwrap();
                if object["kind"] != "PodIamRole" {
                    continue;
                }
                object["metadata"]
                    .as_object_mut()
                    .unwrap()
                    .remove("namespace");
                let name = object["metadata"]["name"].as_str().unwrap().to_string();
                manifests.push((name, object));
            }
        }
    }
    manifests.sort_by(|a, b| a.0.cmp(&b.0));
    manifests
}
