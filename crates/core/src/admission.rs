//! Pure: what the operator checks before it writes anything, shared by the reconciler,
//! `irsa-operator validate` and the validating webhook: the guardrails' decision, then
//! the spec itself.

use std::{
    collections::BTreeMap,
    hash::{DefaultHasher, Hash, Hasher},
};

use kube::ResourceExt;

use crate::{
    config::OperatorConfig,
    desired::{self, DesiredRole},
    guardrail,
    guardrail::Context,
    guardrail::Enforced,
    naming,
    ownership::{Adoption, Owner},
    status::Outcome,
};
use irsa_api::{PodIamRole, PodIamRoleGuardrail, PodIamRoleSpec};

/// The role to converge to, or the outcome that refuses the spec (nothing is written).
pub fn admit(
    decision: Result<Enforced, String>,
    spec: &PodIamRoleSpec,
    owner: Owner,
    config: &OperatorConfig,
) -> Result<DesiredRole, Outcome> {
    let enforced = decision.map_err(Outcome::PolicyNotAllowed)?;
    let mut desired = desired::desired_role(spec, owner, config).map_err(Outcome::InvalidSpec)?;
    if let Some(boundary) = enforced.permissions_boundary {
        desired.permissions_boundary = Some(boundary);
    }
    desired.adoption = match (spec.adopt, enforced.foreign_adoption) {
        (false, _) => Adoption::Never,
        (true, false) => Adoption::Retained,
        (true, true) => Adoption::Foreign,
    };
    Ok(desired)
}

/// The guardrails' decision on one PodIamRole, and a fingerprint of everything the
/// decision read: while it stays the same, so does the decision.
pub struct Verdict {
    pub decision: Result<Enforced, String>,
    pub fingerprint: u64,
}

/// The guardrails' decision on one PodIamRole, given what the cluster (or a set of
/// manifests) holds: the guardrails, its namespace's labels and the PodIamRoles there
/// (for quotas).
pub fn verdict<'a, 'r>(
    role: &PodIamRole,
    guardrails: impl IntoIterator<Item = &'a PodIamRoleGuardrail>,
    namespace_labels: &BTreeMap<String, String>,
    roles: impl IntoIterator<Item = &'r PodIamRole>,
    config: &OperatorConfig,
) -> Verdict {
    let rules = guardrail::rules_for(guardrails, namespace_labels);
    let mut hasher = DefaultHasher::new();
    for rule in &rules {
        (
            rule.name,
            serde_json::to_string(rule.spec).unwrap_or_default(),
        )
            .hash(&mut hasher);
    }
    // The rank matters only under a quota: without one, older objects come and go freely,
    // and the other PodIamRoles are not even looked at.
    let rank = if rules
        .iter()
        .any(|r| r.spec.max_roles_per_namespace.is_some())
    {
        let rank = guardrail::quota_rank(role, roles);
        rank.hash(&mut hasher);
        rank
    } else {
        0
    };
    let namespace = role.namespace().unwrap_or_default();
    let own_prefix =
        naming::namespace_prefix(&config.role_name_prefix, &config.cluster_name, &namespace);
    let context = Context {
        namespace: &namespace,
        own_prefix: &own_prefix,
        rank,
        baseline: &config.baseline,
    };
    Verdict {
        decision: guardrail::decide(&role.spec, &rules, &context),
        fingerprint: hasher.finish(),
    }
}

/// The whole check on one PodIamRole: the guardrails' [`verdict`], then the spec.
pub fn review<'a, 'r>(
    role: &PodIamRole,
    guardrails: impl IntoIterator<Item = &'a PodIamRoleGuardrail>,
    namespace_labels: &BTreeMap<String, String>,
    roles: impl IntoIterator<Item = &'r PodIamRole>,
    config: &OperatorConfig,
) -> Result<DesiredRole, Outcome> {
    let verdict = verdict(role, guardrails, namespace_labels, roles, config);
    admit(
        verdict.decision,
        &role.spec,
        Owner::of(role, &config.cluster_name),
        config,
    )
}
