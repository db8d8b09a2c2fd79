//! Pure: what the operator checks before it writes anything, shared by the reconciler
//! and `irsa-operator validate`: the guardrails' decision, then the spec itself.

use crate::{
    config::OperatorConfig,
    crd::PodIamRoleSpec,
    desired::{self, DesiredRole},
    guardrail::Enforced,
    ownership::{Adoption, Owner},
    status::Outcome,
};

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
