//! The `PodIamRoleGuardrail` custom resource: what the PodIamRoles of the namespaces it
//! selects may grant. Its evaluation lives in the core crate (`irsa_core::guardrail`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the PodIamRoles in the selected namespaces may grant, and limits on their roles.
///
/// Nothing is granted that no guardrail grants: a namespace no guardrail selects gets
/// nothing, and an allow-list left unset grants nothing of its kind (write `["*"]` to
/// grant everything of it). Every guardrail selecting a namespace applies, and the
/// strictest wins: a value must be granted by at least one guardrail and be within every
/// guardrail that sets that list; denials add up; the lowest quota and session duration
/// apply. A violation sets the PodIamRole's `Ready=False` with reason `PolicyNotAllowed`,
/// and nothing is written to IAM.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "irsa.dev",
    version = "v1alpha1",
    kind = "PodIamRoleGuardrail",
    plural = "podiamroleguardrails",
    shortname = "pirg",
    derive = "PartialEq",
    doc = "Limits on the IAM roles that PodIamRoles in the selected namespaces may produce.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PodIamRoleGuardrailSpec {
    /// The namespaces this guardrail applies to. An empty selector selects every namespace.
    #[serde(default)]
    pub namespace_selector: LabelSelector,
    /// Action patterns (`s3:Get*`, `dynamodb:*`) that Allow statements may use: every
    /// allowed action must fall within one of them. Unset grants no action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_actions: Option<Vec<String>>,
    /// Action patterns that Allow statements may never grant, on top of the built-in list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_actions: Vec<String>,
    /// Resource ARN patterns that Allow statements may name: every resource must fall
    /// within one of them (`*`, and `NotResource`, only if `*` is listed). Unset grants none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_resources: Option<Vec<String>>,
    /// Managed policy ARN patterns, AWS-managed and customer-managed alike, that
    /// `managedPolicyArns` may attach: every attached policy must match one of them.
    /// Unset grants none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_managed_policy_arns: Option<Vec<String>>,
    /// A permissions boundary forced onto every role; a PodIamRole naming another one is
    /// rejected, and so is this guardrail where it differs from the operator's own
    /// `--permissions-boundary` (a role has one boundary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/.+$"))]
    pub required_permissions_boundary: Option<String>,
    /// The most PodIamRoles a namespace may have; the oldest ones are served first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // schemars writes `format: uint32`, which Kubernetes does not know and warns about.
    #[schemars(range(min = 0, max = 4294967295_u32), extend("format" = "int64"))]
    pub max_roles_per_namespace: Option<u32>,
    /// The longest `maxSessionDuration` a PodIamRole may ask for, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 3600, max = 43200))]
    pub max_session_duration: Option<i32>,
    /// Token audience patterns (`vault`, `sts.*.amazonaws.com`) that `spec.audience` may
    /// use besides the default `sts.amazonaws.com`, which needs no grant. Every accepted
    /// audience becomes a client ID of the cluster's shared OIDC provider in `manage` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_audiences: Option<Vec<String>>,
    /// Role name patterns that `spec.roleName` may use beyond the namespace's own prefix
    /// (`<prefix><cluster>.<namespace>.`). Without such a grant, a PodIamRole cannot take
    /// a name that another namespace's PodIamRole would derive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub granted_role_names: Vec<String>,
    /// Role name patterns that PodIamRoles with `spec.adopt: true` may take over although
    /// no PodIamRole of this cluster made them (roles from eksctl, Terraform or by hand),
    /// when `spec.roleName` names them. Such names are granted as `grantedRoleNames` are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adoptable_role_names: Vec<String>,
    /// Role ARN patterns (`arn:aws:iam::444455556666:role/reports-*`) that roles may be
    /// granted `sts:AssumeRole` on, through `spec.roleChain` or an Allow statement of
    /// `spec.policy`: every such target must match one of them. Unset grants none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_chain_targets: Option<Vec<String>>,
    /// Role ARN patterns that `spec.trustedRoleArns` may name, i.e. the roles that may
    /// assume this namespace's roles: every trusted role must match one of them. Unset grants none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_trusted_role_arns: Option<Vec<String>>,
}
