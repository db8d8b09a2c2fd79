//! The `PodIamRole` custom resource: spec, status and the CRD schema.
//!
//! Doc comments on the fields are user documentation: they become `kubectl explain` output.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};

use crate::guardrail::PodIamRoleGuardrail;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The finalizer that guards IAM cleanup.
pub const FINALIZER: &str = "irsa.dev/cleanup";

/// The audience pods present to STS unless the spec says otherwise.
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";

/// IAM's default and minimum role session duration, in seconds.
pub const DEFAULT_MAX_SESSION_DURATION: i32 = 3600;

/// An IAM role for the pods that run as one ServiceAccount of this namespace (IRSA).
///
/// The operator creates and maintains the role, its trust policy (federated to the
/// cluster's OIDC provider and limited to `system:serviceaccount:<namespace>:<serviceAccountName>`),
/// its permissions, and the `eks.amazonaws.com/role-arn` annotation on the ServiceAccount.
// clippy mistakes the repeated `type_` keys of separate printcolumns for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "irsa.dev",
    version = "v1alpha1",
    kind = "PodIamRole",
    plural = "podiamroles",
    shortname = "pir",
    namespaced,
    status = "PodIamRoleStatus",
    derive = "PartialEq",
    doc = "An IAM role for the pods of one ServiceAccount in this namespace (IRSA).",
    printcolumn(
        name = "ServiceAccount",
        type_ = "string",
        json_path = ".spec.serviceAccountName"
    ),
    printcolumn(name = "Role", type_ = "string", json_path = ".status.roleName"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = "1",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.policy) || (has(self.managedPolicyArns) && size(self.managedPolicyArns) > 0)")
        .message("set spec.policy, spec.managedPolicyArns, or both: a role without permissions is useless"),
    validation = Rule::new("has(self.roleName) == has(oldSelf.roleName) && (!has(self.roleName) || self.roleName == oldSelf.roleName)")
        .message("spec.roleName is immutable: IAM cannot rename a role; create a new PodIamRole instead")
)]
#[serde(rename_all = "camelCase")]
pub struct PodIamRoleSpec {
    /// The ServiceAccount, in this PodIamRole's own namespace, whose pods may assume the role.
    /// The operator annotates it with `eks.amazonaws.com/role-arn`. Pods pick the role up
    /// when they are (re)created.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("must be a valid ServiceAccount name (lowercase DNS subdomain)"))]
    pub service_account_name: String,

    /// An inline IAM policy document, written as YAML or JSON, with `Version` and `Statement`.
    /// It becomes the role's single inline policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub policy: Option<serde_json::Value>,

    /// ARNs of managed IAM policies to attach, such as `arn:aws:iam::aws:policy/ReadOnlyAccess`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[schemars(inner(
        length(max = 2048),
        regex(pattern = r"^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/.+$")
    ))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub managed_policy_arns: Vec<String>,

    /// Overrides the role name the operator derives from the cluster, namespace and name.
    /// At most 64 characters from `A-Za-z0-9+=,.@_-`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[\w+=,.@-]+$"))]
    pub role_name: Option<String>,

    /// The role's description in IAM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub description: Option<String>,

    /// The longest session, in seconds, that the role's credentials last: 3600 to 43200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 3600, max = 43200))]
    pub max_session_duration: Option<i32>,

    /// The ARN of a managed policy that bounds the role's permissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/.+$"))]
    pub permissions_boundary: Option<String>,

    /// Tags to put on the role, beside the operator's own `irsa.dev/*` ownership tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 46))]
    pub tags: BTreeMap<String, String>,

    /// The token audience the trust policy requires (`aud` claim). Defaults to `sts.amazonaws.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub audience: Option<String>,

    /// What happens to the IAM role when this PodIamRole is deleted: `Delete` (default)
    /// removes it, `Retain` keeps it and only removes the ServiceAccount annotation.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Restart the Deployments, StatefulSets and DaemonSets whose pods run this
    /// ServiceAccount without the role (created before the annotation) or with an older one,
    /// once the role is Ready, as `kubectl rollout restart` does. Only when the operator runs
    /// with `--restart-workloads`; otherwise, or when false, such pods are only counted in
    /// `status.stalePods` and reported in an Event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_on_role_change: bool,
}

/// What happens to the IAM role when the PodIamRole is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the role, its inline policy and its attachments.
    #[default]
    Delete,
    /// Keep the role in IAM; only remove the ServiceAccount annotation.
    Retain,
}

/// What the operator last did with this PodIamRole.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodIamRoleStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The IAM role's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_name: Option<String>,
    /// The IAM role's ARN, as written to the ServiceAccount annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The ARN of the IAM OIDC provider the role's trust policy federates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_provider_arn: Option<String>,
    /// `Ready` says whether the role, its permissions and the annotation match the spec;
    /// its reason says what is wrong when they do not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Pods of the ServiceAccount that run without the current role and need a restart to
    /// get it (counted when the operator runs with `--restart-workloads`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_pods: Option<u32>,
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Every CRD this operator serves, as committed under `crds/`: (file name, YAML).
pub fn crd_files() -> Vec<(&'static str, String)> {
    let yaml = |crd| serde_yaml::to_string(&crd).expect("a CRD always serializes");
    vec![
        ("podiamroles.irsa.dev.yaml", yaml(PodIamRole::crd())),
        (
            "podiamroleguardrails.irsa.dev.yaml",
            yaml(PodIamRoleGuardrail::crd()),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_crds_match_the_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        for (file, generated) in crd_files() {
            let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            assert!(
                committed == generated,
                "crds/{file} is stale: run `scripts/generate-crds`"
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
        assert_eq!(spec.deletion_policy, DeletionPolicy::Retain);
        assert_eq!(spec.policy.unwrap()["Statement"][0]["Effect"], "Allow");
    }
}
