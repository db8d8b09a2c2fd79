//! Pure: what the operator checks before it writes anything, shared by the reconciler,
//! `irsa-operator validate` and the validating webhook: the guardrails' decision, then
//! the spec itself.

use std::{collections::BTreeMap, sync::Arc};

use kube::ResourceExt;

use crate::{
    config::OperatorConfig,
    desired::{self, DesiredRole},
    guardrail,
    guardrail::Context,
    guardrail::Enforced,
    guardrail::Rule,
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

/// The guardrails' decision on one PodIamRole, given the guardrails selecting its
/// namespace and how many older PodIamRoles the namespace has.
pub fn decide(
    role: &PodIamRole,
    rules: &[Rule<'_>],
    rank: usize,
    config: &OperatorConfig,
) -> Result<Enforced, String> {
    let namespace = role.namespace().unwrap_or_default();
    let own_prefix =
        naming::namespace_prefix(&config.role_name_prefix, &config.cluster_name, &namespace);
    let context = Context {
        namespace: &namespace,
        own_prefix: &own_prefix,
        rank,
        baseline: &config.baseline,
    };
    guardrail::decide(&role.spec, rules, &context)
}

/// The whole check on one PodIamRole, given what the cluster (or a set of manifests)
/// holds: the guardrails, its namespace's labels and the PodIamRoles there (for quotas).
pub fn review<'a>(
    role: &PodIamRole,
    guardrails: impl IntoIterator<Item = &'a PodIamRoleGuardrail>,
    namespace_labels: &BTreeMap<String, String>,
    roles: &[Arc<PodIamRole>],
    config: &OperatorConfig,
) -> Result<DesiredRole, Outcome> {
    let rules = guardrail::rules_for(guardrails, namespace_labels);
    let rank = guardrail::quota_rank(role, roles);
    let decision = decide(role, &rules, rank, config);
    admit(
        decision,
        &role.spec,
        Owner::of(role, &config.cluster_name),
        config,
    )
}
