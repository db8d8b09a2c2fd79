//! The `PodIamRoleAccount` custom resource: another AWS account the operator may create
//! roles in. The decisions about it live in the core crate (`irsa_core::account`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The session name the operator uses in the account unless the spec names one.
pub const DEFAULT_SESSION_NAME: &str = "irsa-operator";

/// Another AWS account the operator creates PodIamRoles' IAM roles in.
///
/// The operator assumes `managementRoleArn` (with `externalId`), checks or creates the
/// cluster's IAM OIDC provider in the account, and there creates the roles of the
/// PodIamRoles that name this object in `spec.account`, if their namespace matches
/// `namespaceSelector`. Declared by the platform team: cluster-scoped.
// clippy mistakes the repeated `type_` keys of separate printcolumns for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "irsa.dev",
    version = "v1alpha1",
    kind = "PodIamRoleAccount",
    plural = "podiamroleaccounts",
    shortname = "pira",
    status = "PodIamRoleAccountStatus",
    derive = "PartialEq",
    doc = "Another AWS account the operator may create PodIamRoles' IAM roles in.",
    printcolumn(name = "Account", type_ = "string", json_path = ".spec.accountId"),
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
    validation = Rule::new("self.managementRoleArn.contains('::' + self.accountId + ':role/')")
        .message("spec.managementRoleArn must be a role in spec.accountId")
)]
#[serde(rename_all = "camelCase")]
pub struct PodIamRoleAccountSpec {
    /// The 12-digit AWS account ID.
    #[schemars(length(min = 12, max = 12), regex(pattern = r"^[0-9]{12}$"))]
    pub account_id: String,

    /// The IAM role in that account the operator assumes to manage roles there
    /// (`arn:aws:iam::<accountId>:role/...`). Its permissions are what
    /// `irsa-operator iam-policy` prints; its trust policy must let the operator's own role
    /// assume it with `externalId` (`irsa-operator iam-policy --management-trust ...`).
    // A role ARN is at most ~620 characters (a 512-character path, a 64-character name);
    // the bound keeps the CEL rule below within the API server's cost budget.
    #[schemars(
        length(max = 640),
        regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$")
    )]
    pub management_role_arn: String,

    /// The external ID the management role's trust policy requires (`sts:ExternalId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1224), regex(pattern = r"^[\w+=,.@:/-]+$"))]
    pub external_id: Option<String>,

    /// The role session name the operator uses there, as CloudTrail shows it.
    /// Default: `irsa-operator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 64), regex(pattern = r"^[\w+=,.@-]+$"))]
    pub session_name: Option<String>,

    /// `Existing` (default): verify the cluster's IAM OIDC provider in this account and
    /// report problems. `Manage`: also create it and keep it right.
    #[serde(default)]
    pub oidc_provider: ProviderMode,

    /// The namespaces whose PodIamRoles may use this account. An empty selector selects
    /// every namespace; one that cannot be parsed selects none.
    #[serde(default)]
    pub namespace_selector: LabelSelector,
}

/// How the operator treats the cluster's IAM OIDC provider in an account: the home
/// account's from the `--oidc-provider` flag, a target account's from its spec.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ProviderMode {
    /// Verify a provider created elsewhere (EKS, eksctl, Terraform); never write to it.
    #[default]
    Existing,
    /// Create the provider and keep its thumbprint and client IDs right.
    Manage,
}

/// The flag's spelling: `existing` or `manage`.
impl std::str::FromStr for ProviderMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "existing" => Ok(ProviderMode::Existing),
            "manage" => Ok(ProviderMode::Manage),
            other => Err(format!("`{other}` is not existing or manage")),
        }
    }
}

/// What the operator last found in the account.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodIamRoleAccountStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The ARN of the cluster's IAM OIDC provider in this account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_provider_arn: Option<String>,
    /// `Ready` is True when the management role could be assumed and the account's OIDC
    /// provider trusts this cluster; its reason says what is wrong otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
