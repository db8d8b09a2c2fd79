//! What GitOps tools make of live objects, computed by their own code: kstatus
//! (sigs.k8s.io/cli-utils, as Flux uses it) and the Argo CD health checks under health/
//! (run by gopher-lua, Argo CD's interpreter). Both are small Go programs under tools/,
//! built and cached by `scripts/go-tool`.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use irsa_operator::crd::PodIamRole;
use kube::{
    Api,
    api::{ApiResource, DynamicObject},
};
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The path of a tool under tools/, built on first use.
fn tool(name: &str) -> PathBuf {
    let output = Command::new(root().join("scripts/go-tool"))
        .arg(name)
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/go-tool");
    assert!(output.status.success(), "scripts/go-tool {name} failed");
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

fn run(binary: &Path, args: &[&str], object: &Value) -> (String, String) {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start checker");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(object.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{} failed", binary.display());
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
