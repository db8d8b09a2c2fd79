//! Guardrails: what a namespace's PodIamRoles may grant. The `PodIamRoleGuardrail`
//! resource, which guardrails select a namespace, and the decision on a spec
//! (`grants.rs`): default deny, the built-in deny list, and the strictest guardrail wins.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{
    CustomResource, ResourceExt,
    core::{Selector, SelectorExt},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::{PodIamRole, PodIamRoleSpec};

mod grants;
#[cfg(test)]
mod tests;

pub use grants::evaluate;

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

/// Grants no PodIamRole may hold, whatever a guardrail allows: every action, or every IAM action. Narrower IAM
/// actions are fine unless they are in [`BUILT_IN_DENIED_ACTIONS`].
pub const BUILT_IN_DENIED_GRANTS: [&str; 2] = ["*", "iam:*"];

/// Actions no PodIamRole may be allowed, even through a wildcard: each one lets the
/// role escalate its own privileges or leave the organization's control.
pub const BUILT_IN_DENIED_ACTIONS: [&str; 18] = [
    "organizations:*",
    "iam:PassRole",
    "iam:CreatePolicyVersion",
    "iam:SetDefaultPolicyVersion",
    "iam:AttachRolePolicy",
    "iam:AttachUserPolicy",
    "iam:AttachGroupPolicy",
    "iam:PutRolePolicy",
    "iam:PutUserPolicy",
    "iam:PutGroupPolicy",
    "iam:UpdateAssumeRolePolicy",
    "iam:CreateAccessKey",
    "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile",
    "iam:AddUserToGroup",
    "iam:DeleteRolePermissionsBoundary",
    "iam:PutRolePermissionsBoundary",
    "iam:CreateRole",
];

/// Managed policies no PodIamRole may attach.
pub const BUILT_IN_DENIED_MANAGED_POLICIES: [&str; 2] = [
    "arn:aws*:iam::aws:policy/AdministratorAccess",
    "arn:aws*:iam::aws:policy/IAMFullAccess",
];

/// Case-insensitive glob match where `*` is any run and `?` one character, as IAM matches.
pub use crate::glob::matches_ignoring_case as glob_match;

fn matches_any(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|pattern| glob_match(pattern, text))
}

/// A guardrail with its name, as the evaluation sees it.
pub struct Rule<'a> {
    pub name: &'a str,
    pub spec: &'a PodIamRoleGuardrailSpec,
}

/// What the operator itself imposes before any guardrail: its own flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    /// Nothing is granted that no guardrail grants. Only `--allow-without-guardrail`
    /// turns it off, and with it every unset allow-list reads as "anything".
    pub default_deny: bool,
    /// The boundary put on every role (`--permissions-boundary`), in the role's account.
    pub boundary: Option<String>,
}

impl Default for Baseline {
    /// Secure: default deny, no operator-wide boundary.
    fn default() -> Self {
        Self {
            default_deny: true,
            boundary: None,
        }
    }
}

/// Where a spec is decided: its namespace, what its role names start with, how many
/// older PodIamRoles the namespace has (for the quota), and the operator's baseline.
pub struct Context<'a> {
    pub namespace: &'a str,
    /// The prefix every role name derived in the namespace has.
    pub own_prefix: &'a str,
    pub rank: usize,
    pub baseline: &'a Baseline,
}

/// Which guardrails select a namespace with these labels. A selector that cannot be
/// parsed selects everything: a broken guardrail must fail closed, not open.
pub fn selects(
    spec: &PodIamRoleGuardrailSpec,
    namespace_labels: &BTreeMap<String, String>,
) -> bool {
    Selector::try_from(spec.namespace_selector.clone())
        .map(|selector| selector.matches(namespace_labels))
        .unwrap_or(true)
}

/// The guardrails that select a namespace with these labels, sorted by name.
pub fn rules_for<'a>(
    guardrails: impl IntoIterator<Item = &'a PodIamRoleGuardrail>,
    labels: &BTreeMap<String, String>,
) -> Vec<Rule<'a>> {
    let mut rules: Vec<Rule<'a>> = guardrails
        .into_iter()
        .filter(|g| selects(&g.spec, labels))
        .map(|g| Rule {
            name: g.metadata.name.as_deref().unwrap_or_default(),
            spec: &g.spec,
        })
        .collect();
    rules.sort_by_key(|rule| rule.name);
    rules
}

/// The guardrails' whole decision on a spec: its role name, then everything else.
pub fn decide(
    spec: &PodIamRoleSpec,
    rules: &[Rule<'_>],
    context: &Context<'_>,
) -> Result<Enforced, String> {
    check_role_name(spec, rules, context.own_prefix).and_then(|()| evaluate(spec, rules, context))
}

/// How many PodIamRoles of `object`'s namespace come before it for the quota: older
/// ones first, by creation time then name, ignoring those being deleted.
pub fn quota_rank(object: &PodIamRole, roles: &[Arc<PodIamRole>]) -> usize {
    let key = |role: &PodIamRole| {
        let created = role.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (created, role.name_any())
    };
    let own = key(object);
    roles
        .iter()
        .filter(|role| role.namespace() == object.namespace())
        .filter(|role| role.metadata.deletion_timestamp.is_none())
        .filter(|role| key(role) < own)
        .count()
}

/// What the guardrails impose on, or allow, an accepted spec.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Enforced {
    pub permissions_boundary: Option<String>,
    /// A guardrail lets `spec.roleName` be adopted from outside the cluster.
    pub foreign_adoption: bool,
}

/// An explicit `spec.roleName` must start with `own_prefix`, the prefix every name
/// derived in the object's namespace has, unless a guardrail grants it: otherwise a
/// tenant could take the name another namespace's PodIamRole will derive.
pub fn check_role_name(
    spec: &PodIamRoleSpec,
    rules: &[Rule<'_>],
    own_prefix: &str,
) -> Result<(), String> {
    let Some(name) = spec.role_name.as_deref() else {
        return Ok(());
    };
    if name.starts_with(own_prefix)
        || rules
            .iter()
            .any(|rule| matches_any(&rule.spec.granted_role_names, name))
        || adoptable(spec, rules)
    {
        return Ok(());
    }
    Err(format!(
        "spec.roleName `{name}` must start with `{own_prefix}`, this namespace's prefix; \
         other names need a guardrail's grantedRoleNames"
    ))
}

/// Whether the spec opts in to adoption of a `spec.roleName` some guardrail lets it adopt.
fn adoptable(spec: &PodIamRoleSpec, rules: &[Rule<'_>]) -> bool {
    spec.adopt
        && spec.role_name.as_deref().is_some_and(|name| {
            rules
                .iter()
                .any(|rule| matches_any(&rule.spec.adoptable_role_names, name))
        })
}
