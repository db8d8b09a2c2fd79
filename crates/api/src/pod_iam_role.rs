//! The `PodIamRole` custom resource: spec, status and the CRD schema.
//!
//! Doc comments on the fields are user documentation: they become `kubectl explain` output.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};

use crate::schema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The finalizer that guards IAM cleanup.
pub const FINALIZER: &str = "irsa.dev/cleanup";

/// Set to "true" on a PodIamRole being deleted, lets its finalizer go without touching
/// IAM: the role is kept (and reported in an Event), as when IAM denies the cleanup.
pub const RELEASE_ANNOTATION: &str = "irsa.dev/release";

/// The ServiceAccount annotation the pod identity webhook reads the role ARN from.
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// The condition every irsa.dev resource reports its state in (a PodIamRole also has
/// kstatus's `Reconciling` and `Stalled`).
pub const READY: &str = "Ready";

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
    validation = Rule::new("(has(self.mode) && self.mode == 'Observe') || has(self.policy) || (has(self.managedPolicyArns) && size(self.managedPolicyArns) > 0) || (has(self.roleChain) && size(self.roleChain) > 0)")
        .message("set spec.policy, spec.managedPolicyArns, spec.roleChain, or several: a role without permissions is useless"),
    validation = Rule::new("has(self.roleName) == has(oldSelf.roleName) && (!has(self.roleName) || self.roleName == oldSelf.roleName)")
        .message("spec.roleName is immutable: IAM cannot rename a role; create a new PodIamRole instead"),
    validation = Rule::new("has(self.account) == has(oldSelf.account) && (!has(self.account) || self.account == oldSelf.account)")
        .message("spec.account is immutable: the role cannot move between accounts; create a new PodIamRole instead")
)]
#[serde(rename_all = "camelCase")]
pub struct PodIamRoleSpec {
    /// The ServiceAccount, in this PodIamRole's own namespace, whose pods may assume the role.
    /// The operator annotates it with `eks.amazonaws.com/role-arn`. Pods pick the role up
    /// when they are (re)created.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("must be a valid ServiceAccount name (lowercase DNS subdomain)"))]
    pub service_account_name: String,

    /// An inline IAM policy document, written as YAML or JSON, with `Version` and a list of
    /// `Statement`s. It becomes the role's single inline policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::policy_document")]
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
    #[schemars(
        length(max = 2048),
        regex(pattern = r"^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/.+$")
    )]
    pub permissions_boundary: Option<String>,

    /// Tags to put on the role, beside the operator's own `irsa.dev/*` ownership tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "schema::tag_map")]
    pub tags: BTreeMap<String, String>,

    /// The token audience the trust policy requires (`aud` claim). Defaults to `sts.amazonaws.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub audience: Option<String>,

    /// `Manage` (default): the operator creates and maintains the role. `Observe`: bring
    /// your own role. The operator writes nothing to IAM, ever; it checks that the role
    /// (`spec.roleName`, or the derived name) exists and that its trust policy lets this
    /// ServiceAccount assume it through the cluster's OIDC provider, then annotates the
    /// ServiceAccount. The permission fields are ignored, and deletion keeps the role.
    #[serde(default)]
    pub mode: RoleMode,

    /// Take over an IAM role of this name that already exists instead of reporting
    /// `RoleConflict`: the role this PodIamRole's predecessor (same cluster, namespace and
    /// name) retained, or, where a guardrail's `adoptableRoleNames` allows `spec.roleName`,
    /// a role made outside this cluster (by hand, eksctl, Terraform). The role keeps its
    /// ARN and unique ID; it is re-tagged and then converged to this spec.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,

    /// What happens to the IAM role when this PodIamRole is deleted: `Delete` removes it,
    /// `Retain` keeps it and only removes the ServiceAccount annotation. A kept role is
    /// released: its `irsa.dev/cluster` tag becomes `released-from-<cluster>`, and the
    /// operator never changes or deletes it again unless a PodIamRole adopts it (`adopt`).
    /// Unset, the operator's `--default-deletion-policy` decides (`Delete` unless changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// Restart the Deployments, StatefulSets and DaemonSets whose pods run this
    /// ServiceAccount without the role (created before the annotation) or with an older one,
    /// once the role is Ready, as `kubectl rollout restart` does. Only when the operator runs
    /// with `--restart-workloads`; otherwise, or when false, such pods are only counted in
    /// `status.stalePods` and reported in an Event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_on_role_change: bool,

    /// Roles the pods chain to from this one (role chaining), each a named profile of an
    /// AWS config file the operator renders into the ConfigMap `<name>-aws-config`: its
    /// `default` profile is this role through the pod's web identity token, and each
    /// entry's profile assumes `roleArn` from it (`source_profile = default`). The role
    /// is granted `sts:AssumeRole` on exactly these ARNs, which the guardrails must allow
    /// (`allowedChainTargets`). The target's own trust policy must admit this role (for a
    /// PodIamRole target: its `spec.trustedRoleArns`). The pod identity webhook mounts
    /// the file and sets `AWS_CONFIG_FILE`; pods select a profile with `AWS_PROFILE`.
    /// Ignored in mode Observe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["profile"]))]
    pub role_chain: Vec<ChainLink>,

    /// IAM role ARNs (full ARNs, path included) that may assume this role with
    /// `sts:AssumeRole`, such as the `status.roleArn` of a PodIamRole whose `roleChain`
    /// names this role. Each becomes an `AWS` principal of one extra trust policy
    /// statement; the guardrails may restrict them (`allowedTrustedRoleArns`). IAM
    /// refuses a principal that does not exist yet: create the source role first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[schemars(inner(
        length(max = 2048),
        regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$")
    ))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub trusted_role_arns: Vec<String>,

    /// The PodIamRoleAccount (cluster-scoped) whose AWS account the role is created in,
    /// if this namespace is granted that account. Unset: the operator's own account.
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub account: Option<String>,
}

/// One profile of the rendered AWS config file: a role assumed from this PodIamRole's role.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainLink {
    /// The profile's name in the AWS config file, selected in the pod with `AWS_PROFILE`
    /// or `--profile`: letters, digits and `_.-`. Not `default`, which is this role.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_.-]+$"))]
    #[x_kube(validation = Rule::new("self != 'default'").message("`default` is the PodIamRole's own role; name the profile otherwise"))]
    pub profile: String,

    /// The ARN of the IAM role to assume (`role_arn`), literal: no wildcards.
    #[schemars(
        length(max = 2048),
        regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$")
    )]
    pub role_arn: String,

    /// The session name (`role_session_name`) that the target's CloudTrail and
    /// `GetCallerIdentity` show; the SDK makes one up when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 64), regex(pattern = r"^[\w+=,.@-]+$"))]
    pub session_name: Option<String>,

    /// How long the chained session lasts (`duration_seconds`): 900 to 3600 seconds, since
    /// AWS caps sessions reached by role chaining at one hour. The SDK's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 900, max = 3600))]
    pub duration_seconds: Option<i32>,
}

/// Whether the operator manages the role or only uses an existing one.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RoleMode {
    /// Create, converge and delete the role.
    #[default]
    Manage,
    /// Use an existing role as it is; write nothing to IAM.
    Observe,
}

/// What happens to the IAM role when the PodIamRole is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the role, its inline policy and its attachments.
    #[default]
    Delete,
    /// Keep the role in IAM, released from the operator; only remove the ServiceAccount annotation.
    Retain,
}

/// What the operator last did with this PodIamRole.
// The defaults make a new object read as in progress (kstatus, Argo CD) before the
// operator has seen it: its observedGeneration (-1) never equals its generation.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(extend("default" = {}))]
#[serde(rename_all = "camelCase")]
pub struct PodIamRoleStatus {
    /// The `metadata.generation` this status describes; -1 until the operator has seen
    /// the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = -1))]
    pub observed_generation: Option<i64>,
    /// The IAM role's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_name: Option<String>,
    /// The IAM role's ARN, as written to the ServiceAccount annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The AWS account the role is in, when `spec.account` names a target account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The ARN of the IAM OIDC provider the role's trust policy federates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_provider_arn: Option<String>,
    /// `Ready` says whether the role, its permissions and the annotation match the spec;
    /// its reason says what is wrong when they do not. `Reconciling` is True while the
    /// operator works towards the spec by itself (creating, IAM unavailable, waiting for
    /// the ServiceAccount); `Stalled` is True when only a change by someone can help.
    /// `OidcProviderReady` says whether STS can trust this cluster's tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Pods of the ServiceAccount that run without the current role and need a restart to
    /// get it (counted when the operator runs with `--restart-workloads`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_pods: Option<i32>,
}
