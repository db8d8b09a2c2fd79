//! The API of irsa-operator: its custom resources (`PodIamRole`, `PodIamRoleGuardrail`,
//! `PodIamRoleAccount`), their schemas and the names users write in manifests. No IO: the
//! core crate decides and the operator crate acts on these types.
//!
//! Doc comments on the fields are user documentation: they become `kubectl explain` output.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod account;
mod guardrail;
mod pod_iam_role;
mod schema;

use kube::CustomResourceExt;

pub use account::*;
pub use guardrail::*;
pub use pod_iam_role::*;

/// Every CRD this operator serves, as committed under `crds/`: (file name, YAML).
pub fn crd_files() -> Vec<(&'static str, String)> {
    let yaml = |crd| serde_yaml::to_string(&crd).expect("a CRD always serializes");
    vec![
        ("podiamroles.irsa.dev.yaml", yaml(PodIamRole::crd())),
        (
            "podiamroleguardrails.irsa.dev.yaml",
            yaml(PodIamRoleGuardrail::crd()),
        ),
        (
            "podiamroleaccounts.irsa.dev.yaml",
            yaml(PodIamRoleAccount::crd()),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_crds_match_the_types() {
        // The repository root, two levels above this crate.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for dir in ["crds", "charts/irsa-operator/files/crds"] {
            for (file, generated) in crd_files() {
                let committed =
                    std::fs::read_to_string(root.join(dir).join(file)).unwrap_or_default();
                assert!(
                    committed == generated,
                    "{dir}/{file} is stale: run `scripts/generate-crds`"
                );
            }
        }
    }

    /// Formats Kubernetes' OpenAPI validation knows; any other draws a warning on every apply.
    const KUBERNETES_FORMATS: &[&str] = &[
        "int32",
        "int64",
        "float",
        "double",
        "byte",
        "date",
        "date-time",
        "duration",
        "password",
    ];

    fn formats(value: &serde_json::Value, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(format)) = map.get("format") {
                    found.push(format.clone());
                }
                map.values().for_each(|v| formats(v, found));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| formats(v, found)),
            _ => {}
        }
    }

    #[test]
    fn crd_schemas_use_only_kubernetes_formats() {
        for (file, yaml) in crd_files() {
            let crd: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
            let mut found = Vec::new();
            formats(&crd["spec"]["versions"], &mut found);
            found.retain(|f| !KUBERNETES_FORMATS.contains(&f.as_str()));
            assert!(
                found.is_empty(),
                "{file} uses formats Kubernetes does not know: {found:?}"
            );
        }
    }

    #[test]
    fn crd_names_and_columns() {
        let crd = PodIamRole::crd();
        assert_eq!(crd.spec.names.plural, "podiamroles");
        assert_eq!(crd.spec.names.short_names, Some(vec!["pir".to_string()]));
        let version = &crd.spec.versions[0];
        let columns: Vec<_> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            ["ServiceAccount", "Role", "Ready", "Reason", "Age"]
        );
        assert!(version.subresources.as_ref().unwrap().status.is_some());
    }

    #[test]
    fn spec_round_trips_from_yaml() {
        let spec: PodIamRoleSpec = serde_yaml::from_str(
            r#"
serviceAccountName: payments
policy:
  Version: "2012-10-17"
  Statement:
    - Effect: Allow
      Action: ["dynamodb:PutItem"]
      Resource: "*"
deletionPolicy: Retain
"#,
        )
        .unwrap();
        assert_eq!(spec.deletion_policy, Some(DeletionPolicy::Retain));
        assert_eq!(spec.policy.unwrap()["Statement"][0]["Effect"], "Allow");
    }
}
