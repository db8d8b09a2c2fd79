//! Guardrails: what a namespace's PodIamRoles may grant. The `PodIamRoleGuardrail`
//! resource, which guardrails select a namespace, and the decision on a spec
//! (`grants.rs`): default deny, the built-in deny list, and the strictest guardrail wins.

use std::collections::BTreeMap;

use kube::{
    ResourceExt,
    core::{Selector, SelectorExt},
};

use irsa_api::{PodIamRole, PodIamRoleGuardrail, PodIamRoleGuardrailSpec, PodIamRoleSpec};

mod grants;
#[cfg(test)]
mod tests;

pub use grants::evaluate;

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
pub fn quota_rank<'r>(
    object: &PodIamRole,
    roles: impl IntoIterator<Item = &'r PodIamRole>,
) -> usize {
    let key = |role: &PodIamRole| {
        let created = role.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (created, role.name_any())
    };
    let own = key(object);
    roles
        .into_iter()
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
