//! Pure: the next status of a PodIamRole from the outcome of one reconcile.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::PodIamRoleStatus;

pub const READY: &str = "Ready";

/// What one reconcile ended with, as the user should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Role, permissions and annotation match the spec.
    Synced { role_name: String, role_arn: String },
    /// The spec cannot be turned into a valid role; nothing was written.
    InvalidSpec(String),
    /// A role with that name exists and belongs to someone else; it was not touched.
    RoleConflict { role_name: String, message: String },
    /// The role is in place, but its ServiceAccount does not exist yet.
    ServiceAccountNotFound {
        role_name: String,
        role_arn: String,
        service_account: String,
    },
    /// IAM rejected a request; retrying it unchanged cannot help.
    IamRejected { role_name: String, message: String },
    /// IAM could not be reached or failed; the operator retries with backoff.
    IamUnavailable { role_name: String, message: String },
}

impl Outcome {
    pub fn reason(&self) -> &'static str {
        match self {
            Outcome::Synced { .. } => "Synced",
            Outcome::InvalidSpec(_) => "InvalidSpec",
            Outcome::RoleConflict { .. } => "RoleConflict",
            Outcome::ServiceAccountNotFound { .. } => "ServiceAccountNotFound",
            Outcome::IamRejected { .. } => "IamRejected",
            Outcome::IamUnavailable { .. } => "IamUnavailable",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Outcome::Synced { role_arn, .. } => format!("IAM role {role_arn} is in sync"),
            Outcome::InvalidSpec(message) => {
                format!("invalid spec, nothing was written to IAM: {message}")
            }
            Outcome::RoleConflict { message, .. } => message.clone(),
            Outcome::ServiceAccountNotFound {
                role_arn,
                service_account,
                ..
            } => format!(
                "IAM role {role_arn} is ready, but ServiceAccount {service_account} does not exist; \
                 it is annotated as soon as it is created"
            ),
            Outcome::IamRejected { message, .. } => format!("IAM rejected the change: {message}"),
            Outcome::IamUnavailable { message, .. } => {
                format!("IAM call failed, retrying: {message}")
            }
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, Outcome::Synced { .. })
    }
}

/// Computes the status to publish. `lastTransitionTime` only moves when `Ready` flips.
pub fn next_status(
    old: Option<&PodIamRoleStatus>,
    outcome: &Outcome,
    generation: Option<i64>,
    oidc_provider_arn: &str,
    now: Timestamp,
) -> PodIamRoleStatus {
    let old = old.cloned().unwrap_or_default();
    let (role_name, role_arn) = match outcome {
        Outcome::Synced {
            role_name,
            role_arn,
        }
        | Outcome::ServiceAccountNotFound {
            role_name,
            role_arn,
            ..
        } => (Some(role_name.clone()), Some(role_arn.clone())),
        // Someone else's role: never advertise its ARN.
        Outcome::RoleConflict { role_name, .. } => (Some(role_name.clone()), None),
        // The role, if any, is unchanged by a failed reconcile.
        Outcome::IamRejected { role_name, .. } | Outcome::IamUnavailable { role_name, .. } => {
            (Some(role_name.clone()), old.role_arn.clone())
        }
        Outcome::InvalidSpec(_) => (old.role_name.clone(), old.role_arn.clone()),
    };
    let status = if outcome.is_ready() { "True" } else { "False" };
    let previous = old.conditions.iter().find(|c| c.type_ == READY);
    let last_transition_time = match previous {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(now),
    };
    let ready = Condition {
        type_: READY.into(),
        status: status.into(),
        reason: outcome.reason().into(),
        message: outcome.message(),
        observed_generation: generation,
        last_transition_time,
    };
    let mut conditions: Vec<Condition> = old
        .conditions
        .into_iter()
        .filter(|c| c.type_ != READY)
        .collect();
    conditions.insert(0, ready);
    PodIamRoleStatus {
        observed_generation: generation,
        role_name,
        role_arn,
        oidc_provider_arn: Some(oidc_provider_arn.to_string()),
        conditions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROVIDER: &str = "arn:aws:iam::1:oidc-provider/x";

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn synced() -> Outcome {
        Outcome::Synced {
            role_name: "r".into(),
            role_arn: "arn:r".into(),
        }
    }

    fn ready(status: &PodIamRoleStatus) -> &Condition {
        status.conditions.iter().find(|c| c.type_ == READY).unwrap()
    }

    #[test]
    fn first_sync_sets_everything() {
        let status = next_status(None, &synced(), Some(3), PROVIDER, t(10));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.role_arn.as_deref(), Some("arn:r"));
        assert_eq!(status.oidc_provider_arn.as_deref(), Some(PROVIDER));
        let condition = ready(&status);
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("True", "Synced")
        );
        assert_eq!(condition.last_transition_time, Time(t(10)));
    }

    #[test]
    fn unchanged_outcome_is_a_fixed_point() {
        let first = next_status(None, &synced(), Some(3), PROVIDER, t(10));
        let again = next_status(Some(&first), &synced(), Some(3), PROVIDER, t(99));
        assert_eq!(
            first, again,
            "an in-sync object must not cause a status patch"
        );
    }

    #[test]
    fn transition_time_moves_only_when_ready_flips() {
        let first = next_status(
            None,
            &Outcome::InvalidSpec("a".into()),
            Some(1),
            PROVIDER,
            t(10),
        );
        let second = next_status(
            Some(&first),
            &Outcome::InvalidSpec("b".into()),
            Some(2),
            PROVIDER,
            t(20),
        );
        assert_eq!(ready(&second).last_transition_time, Time(t(10)));
        assert_eq!(ready(&second).observed_generation, Some(2));
        let third = next_status(Some(&second), &synced(), Some(3), PROVIDER, t(30));
        assert_eq!(ready(&third).last_transition_time, Time(t(30)));
    }

    #[test]
    fn conflict_hides_the_foreign_arn() {
        let first = next_status(None, &synced(), Some(1), PROVIDER, t(1));
        let conflict = Outcome::RoleConflict {
            role_name: "r".into(),
            message: "taken".into(),
        };
        let status = next_status(Some(&first), &conflict, Some(1), PROVIDER, t(2));
        assert_eq!(status.role_arn, None);
        assert_eq!(ready(&status).reason, "RoleConflict");
        assert_eq!(ready(&status).message, "taken");
    }

    #[test]
    fn failures_keep_the_known_role() {
        let first = next_status(None, &synced(), Some(1), PROVIDER, t(1));
        for outcome in [
            Outcome::InvalidSpec("bad".into()),
            Outcome::IamRejected {
                role_name: "r".into(),
                message: "MalformedPolicyDocument: x".into(),
            },
            Outcome::IamUnavailable {
                role_name: "r".into(),
                message: "Throttling".into(),
            },
        ] {
            let status = next_status(Some(&first), &outcome, Some(2), PROVIDER, t(2));
            assert_eq!(status.role_arn.as_deref(), Some("arn:r"), "{outcome:?}");
            assert_eq!(ready(&status).status, "False");
            assert!(ready(&status).message.contains(&outcome.message()));
        }
    }

    #[test]
    fn other_conditions_are_kept() {
        let mut old = next_status(None, &synced(), Some(1), PROVIDER, t(1));
        old.conditions.push(Condition {
            type_: "OidcProvider".into(),
            ..ready(&old).clone()
        });
        let status = next_status(Some(&old), &synced(), Some(1), PROVIDER, t(2));
        assert_eq!(status.conditions.len(), 2);
    }
}
