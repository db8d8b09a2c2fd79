//! Pure: the next status of a PodIamRole from the outcome of one reconcile.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub use crate::account::AccountProblem;
use crate::reason::Reason;
use crate::{
    failure::{Classified, Retry},
    oidc::ProviderProblem,
};
use irsa_api::{PodIamRoleStatus, READY, RELEASE_ANNOTATION, ROLE_ARN_ANNOTATION};

/// kstatus's "abnormal-true" condition: the operator is still working towards the spec.
pub const RECONCILING: &str = "Reconciling";
/// kstatus's "abnormal-true" condition: nothing changes until someone acts.
pub const STALLED: &str = "Stalled";
pub const OIDC_PROVIDER_READY: &str = "OidcProviderReady";

/// The reason of a provider problem that a later check may clear by itself.
const PROVIDER_TRANSIENT_REASON: &str = Reason::OidcProviderThumbprintUnavailable.as_str();

/// Where an outcome leaves the object, as GitOps tools read it (kstatus: Current,
/// InProgress, Failed; Argo CD: Healthy, Progressing, Degraded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Done,
    /// The operator retries by itself: creating, IAM unavailable, waiting for the ServiceAccount.
    Reconciling,
    /// Only a change to the object, the guardrails or the AWS account can help.
    Stalled,
}

/// The cluster's OIDC provider as it concerns one PodIamRole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderHealth {
    /// Not checked yet since the operator started.
    Unknown,
    Healthy,
    Unhealthy(ProviderProblem),
}

/// What one reconcile ended with, as the user should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Role, permissions and annotation match the spec.
    Synced { role_name: String, role_arn: String },
    /// The spec cannot be turned into a valid role; nothing was written.
    InvalidSpec(String),
    /// A guardrail forbids what the spec asks for; nothing was written.
    PolicyNotAllowed(String),
    /// A role with that name exists and belongs to someone else; it was not touched.
    RoleConflict { role_name: String, message: String },
    /// The role is in place, but its ServiceAccount does not exist yet.
    ServiceAccountNotFound {
        role_name: String,
        role_arn: String,
        service_account: String,
    },
    /// An IAM call failed; `failure` says why and when it is retried.
    IamFailed {
        role_name: String,
        failure: Classified,
    },
    /// `mode: Observe`: the role to use does not exist; nothing was written.
    ObservedRoleNotFound { role_name: String },
    /// `mode: Observe`: the role exists, but its trust policy does not admit this
    /// ServiceAccount; nothing was written.
    ObservedRoleNotTrusted {
        role_name: String,
        role_arn: String,
        why: String,
    },
    /// The PodIamRole is being deleted, but deleting its role failed; the finalizer
    /// stays until it succeeds or the object is released.
    CleanupBlocked {
        role_name: String,
        failure: Classified,
    },
    /// Another PodIamRole of the namespace, older than this one, names the same
    /// ServiceAccount and owns its annotation; nothing was written.
    ServiceAccountInUse {
        service_account: String,
        owner: String,
    },
    /// The role is in sync, but another field manager owns the ServiceAccount's role
    /// annotation with another value (or none); the operator does not overwrite it.
    ServiceAccountAnnotationConflict {
        role_name: String,
        role_arn: String,
        service_account: String,
        manager: String,
        value: Option<String>,
    },
    /// The role is in sync, but its AWS config file (`spec.roleChain`) could not be
    /// published: the ConfigMap is someone else's, or another field manager owns the
    /// ServiceAccount's config annotation. Nothing of theirs was overwritten.
    AwsConfigConflict {
        role_name: String,
        role_arn: String,
        message: String,
    },
    /// The target account named in `spec.account` cannot be used (see
    /// `accounts::AccountProblem`); nothing was written to IAM.
    AccountUnavailable(AccountProblem),
    /// The role is in sync, but the OIDC provider would make STS reject the pods' tokens.
    OidcProviderUnhealthy {
        role_name: String,
        role_arn: String,
        problem: ProviderProblem,
    },
}

impl Outcome {
    pub fn reason(&self) -> &'static str {
        match self {
            Outcome::Synced { .. } => Reason::Synced.as_str(),
            Outcome::InvalidSpec(_) => Reason::InvalidSpec.as_str(),
            Outcome::PolicyNotAllowed(_) => Reason::PolicyNotAllowed.as_str(),
            Outcome::RoleConflict { .. } => Reason::RoleConflict.as_str(),
            Outcome::ServiceAccountNotFound { .. } => Reason::ServiceAccountNotFound.as_str(),
            Outcome::IamFailed { failure, .. } => failure.reason,
            Outcome::ServiceAccountInUse { .. } => Reason::ServiceAccountInUse.as_str(),
            Outcome::CleanupBlocked { .. } => Reason::CleanupBlocked.as_str(),
            Outcome::ObservedRoleNotFound { .. } => Reason::ObservedRoleNotFound.as_str(),
            Outcome::ObservedRoleNotTrusted { .. } => Reason::ObservedRoleNotTrusted.as_str(),
            Outcome::ServiceAccountAnnotationConflict { .. } => {
                Reason::ServiceAccountAnnotationConflict.as_str()
            }
            Outcome::AwsConfigConflict { .. } => Reason::AwsConfigConflict.as_str(),
            Outcome::OidcProviderUnhealthy { problem, .. } => problem.reason,
            Outcome::AccountUnavailable(problem) => problem.reason(),
        }
    }

    pub fn message(&self) -> String {
        match self {
            Outcome::Synced { role_arn, .. } => format!("IAM role {role_arn} is in sync"),
            Outcome::InvalidSpec(message) => {
                format!("invalid spec, nothing was written to IAM: {message}")
            }
            Outcome::PolicyNotAllowed(message) => {
                format!("not allowed by the guardrails, nothing was written to IAM: {message}")
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
            Outcome::IamFailed { failure, .. } => failure.message.clone(),
            Outcome::ObservedRoleNotFound { role_name } => format!(
                "IAM role {role_name} does not exist; in mode Observe the operator only uses an existing \
                 role: create it, or fix spec.roleName"
            ),
            Outcome::ObservedRoleNotTrusted { role_arn, why, .. } => format!(
                "IAM role {role_arn} cannot be used: {why}. In mode Observe the operator changes nothing \
                 in IAM: fix the role's trust policy"
            ),
            Outcome::CleanupBlocked { role_name, failure } => format!(
                "deleting IAM role {role_name} failed ({}), so the PodIamRole keeps its finalizer and \
                 retries: {} To let it go and keep the role in IAM, annotate it {RELEASE_ANNOTATION}=true",
                failure.reason, failure.message
            ),
            Outcome::ServiceAccountInUse {
                service_account,
                owner,
            } => format!(
                "ServiceAccount {service_account} is already used by PodIamRole {owner}, which is older \
                 and owns its role annotation; nothing was written. Use another ServiceAccount, or delete one \
                 of the two"
            ),
            Outcome::ServiceAccountAnnotationConflict {
                role_arn,
                service_account,
                manager,
                value,
                ..
            } => format!(
                "field manager {manager:?} owns {ROLE_ARN_ANNOTATION} on ServiceAccount {service_account} \
                 ({}); the operator does not overwrite it, so pods do not get {role_arn}. Remove the \
                 annotation from {manager:?}'s manifest, or set it to {role_arn}",
                value
                    .as_deref()
                    .map_or("no value".to_string(), |v| format!("value {v}"))
            ),
            Outcome::AwsConfigConflict {
                role_arn, message, ..
            } => format!(
                "IAM role {role_arn} is in sync, but its AWS config file for spec.roleChain is not \
                 published: {message}"
            ),
            Outcome::AccountUnavailable(problem) => problem.message(),
            Outcome::OidcProviderUnhealthy {
                role_arn, problem, ..
            } => {
                format!(
                    "IAM role {role_arn} is in sync, but pods cannot assume it: {}",
                    problem.message
                )
            }
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, Outcome::Synced { .. })
    }

    pub fn progress(&self) -> Progress {
        match self {
            Outcome::Synced { .. } => Progress::Done,
            Outcome::ServiceAccountNotFound { .. } => Progress::Reconciling,
            Outcome::IamFailed { failure, .. } | Outcome::CleanupBlocked { failure, .. }
                if failure.retry == Retry::Backoff =>
            {
                Progress::Reconciling
            }
            Outcome::OidcProviderUnhealthy { problem, .. }
                if problem.reason == PROVIDER_TRANSIENT_REASON =>
            {
                Progress::Reconciling
            }
            _ => Progress::Stalled,
        }
    }
}

/// Where the role lives and what the last reconcile counted: the status reports it
/// beside the outcome.
pub struct Placement<'a> {
    pub provider: &'a ProviderHealth,
    pub oidc_provider_arn: &'a str,
    /// The target account's ID; `None` in the operator's own account.
    pub account_id: Option<&'a str>,
    /// The ServiceAccount's pods running without the role, as last counted.
    pub stale_pods: Option<i32>,
}

/// Computes the status to publish. A condition's `lastTransitionTime` only moves when
/// its status flips.
pub fn next_status(
    old: Option<&PodIamRoleStatus>,
    place: &Placement<'_>,
    outcome: &Outcome,
    generation: Option<i64>,
    now: Timestamp,
) -> PodIamRoleStatus {
    let Placement {
        provider,
        oidc_provider_arn,
        account_id,
        stale_pods,
    } = place;
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
        }
        | Outcome::OidcProviderUnhealthy {
            role_name,
            role_arn,
            ..
        }
        | Outcome::ServiceAccountAnnotationConflict {
            role_name,
            role_arn,
            ..
        }
        | Outcome::AwsConfigConflict {
            role_name,
            role_arn,
            ..
        } => (Some(role_name.clone()), Some(role_arn.clone())),
        // Someone else's role, or a role this ServiceAccount cannot use: never advertise its ARN.
        Outcome::RoleConflict { role_name, .. }
        | Outcome::ObservedRoleNotFound { role_name }
        | Outcome::ObservedRoleNotTrusted { role_name, .. } => (Some(role_name.clone()), None),
        // The role, if any, is unchanged by a failed reconcile.
        Outcome::IamFailed { role_name, .. } | Outcome::CleanupBlocked { role_name, .. } => {
            (Some(role_name.clone()), old.role_arn.clone())
        }
        Outcome::InvalidSpec(_)
        | Outcome::PolicyNotAllowed(_)
        | Outcome::ServiceAccountInUse { .. }
        | Outcome::AccountUnavailable(_) => (old.role_name.clone(), old.role_arn.clone()),
    };
    let progress = outcome.progress();
    let [ready, reconciling, stalled] = [
        (READY, progress == Progress::Done),
        (RECONCILING, progress == Progress::Reconciling),
        (STALLED, progress == Progress::Stalled),
    ]
    .map(|(type_, holds)| {
        condition(
            &old.conditions,
            type_,
            if holds { "True" } else { "False" },
            outcome.reason(),
            outcome.message(),
            generation,
            now,
        )
    });
    let (status, reason, message) = match provider {
        ProviderHealth::Unknown => (
            "Unknown",
            "Checking",
            "the IAM OIDC provider has not been checked yet".to_string(),
        ),
        ProviderHealth::Healthy => (
            "True",
            "Verified",
            format!(
                "IAM OIDC provider {oidc_provider_arn} trusts this cluster's issuer for this audience"
            ),
        ),
        ProviderHealth::Unhealthy(problem) => ("False", problem.reason, problem.message.clone()),
    };
    let provider_condition = condition(
        &old.conditions,
        OIDC_PROVIDER_READY,
        status,
        reason,
        message,
        generation,
        now,
    );
    let ours = [READY, RECONCILING, STALLED, OIDC_PROVIDER_READY];
    let mut conditions: Vec<Condition> = old
        .conditions
        .into_iter()
        .filter(|c| !ours.contains(&c.type_.as_str()))
        .collect();
    conditions.splice(0..0, [ready, reconciling, stalled, provider_condition]);
    PodIamRoleStatus {
        observed_generation: generation,
        role_name,
        role_arn,
        oidc_provider_arn: Some(oidc_provider_arn.to_string()),
        account_id: account_id.map(str::to_string),
        conditions,
        stale_pods: *stale_pods,
    }
}

/// The most a condition's message may hold: the API server refuses a status whose
/// `metav1.Condition.message` is longer (32,768 bytes).
pub const CONDITION_MESSAGE_LIMIT: usize = 32_768;

/// `text` cut to at most `limit` bytes on a char boundary, ending in `…` when cut: the
/// API server counts bytes, and a cut inside a UTF-8 character would be invalid.
pub fn truncated(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    const ELLIPSIS: char = '…';
    let mut end = limit.saturating_sub(ELLIPSIS.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &text[..end])
}

fn condition(
    old: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let last_transition_time = match old.iter().find(|c| c.type_ == type_) {
        Some(previous) if previous.status == status => previous.last_transition_time.clone(),
        _ => Time(now),
    };
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: truncated(&message, CONDITION_MESSAGE_LIMIT),
        observed_generation: generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::Retry;

    const PROVIDER: &str = "arn:aws:iam::1:oidc-provider/x";
    const H: ProviderHealth = ProviderHealth::Healthy;
    const HOME: Placement<'static> = Placement {
        provider: &H,
        oidc_provider_arn: PROVIDER,
        account_id: None,
        stale_pods: None,
    };

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
        let status = next_status(None, &HOME, &synced(), Some(3), t(10));
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
        let first = next_status(None, &HOME, &synced(), Some(3), t(10));
        let again = next_status(Some(&first), &HOME, &synced(), Some(3), t(99));
        assert_eq!(
            first, again,
            "an in-sync object must not cause a status patch"
        );
    }

    #[test]
    fn transition_time_moves_only_when_ready_flips() {
        let first = next_status(
            None,
            &HOME,
            &Outcome::InvalidSpec("a".into()),
            Some(1),
            t(10),
        );
        let second = next_status(
            Some(&first),
            &HOME,
            &Outcome::InvalidSpec("b".into()),
            Some(2),
            t(20),
        );
        assert_eq!(ready(&second).last_transition_time, Time(t(10)));
        assert_eq!(ready(&second).observed_generation, Some(2));
        let third = next_status(Some(&second), &HOME, &synced(), Some(3), t(30));
        assert_eq!(ready(&third).last_transition_time, Time(t(30)));
    }

    #[test]
    fn conflict_hides_the_foreign_arn() {
        let first = next_status(None, &HOME, &synced(), Some(1), t(1));
        let conflict = Outcome::RoleConflict {
            role_name: "r".into(),
            message: "taken".into(),
        };
        let status = next_status(Some(&first), &HOME, &conflict, Some(1), t(2));
        assert_eq!(status.role_arn, None);
        assert_eq!(ready(&status).reason, "RoleConflict");
        assert_eq!(ready(&status).message, "taken");
    }

    #[test]
    fn failures_keep_the_known_role() {
        let first = next_status(None, &HOME, &synced(), Some(1), t(1));
        for outcome in [
            Outcome::InvalidSpec("bad".into()),
            Outcome::IamFailed {
                role_name: "r".into(),
                failure: Classified {
                    reason: "IamRejected",
                    message: "MalformedPolicyDocument: x".into(),
                    retry: Retry::OnChange,
                },
            },
        ] {
            let status = next_status(Some(&first), &HOME, &outcome, Some(2), t(2));
            assert_eq!(status.role_arn.as_deref(), Some("arn:r"), "{outcome:?}");
            assert_eq!(ready(&status).status, "False");
            assert!(ready(&status).message.contains(&outcome.message()));
        }
    }

    #[test]
    fn other_conditions_are_kept() {
        let mut old = next_status(None, &HOME, &synced(), Some(1), t(1));
        old.conditions.push(Condition {
            type_: "Custom".into(),
            ..ready(&old).clone()
        });
        let status = next_status(Some(&old), &HOME, &synced(), Some(1), t(2));
        assert_eq!(status.conditions.len(), 5);
    }

    #[test]
    fn provider_problems_show_in_both_conditions() {
        let problem = ProviderProblem {
            reason: "OidcProviderNotFound",
            message: "no provider".into(),
        };
        let provider = |s: &PodIamRoleStatus| {
            s.conditions
                .iter()
                .find(|c| c.type_ == OIDC_PROVIDER_READY)
                .unwrap()
                .clone()
        };
        let unknown = next_status(
            None,
            &Placement {
                provider: &ProviderHealth::Unknown,
                ..HOME
            },
            &synced(),
            Some(1),
            t(1),
        );
        assert_eq!(provider(&unknown).status, "Unknown");
        let outcome = Outcome::OidcProviderUnhealthy {
            role_name: "r".into(),
            role_arn: "arn:r".into(),
            problem: problem.clone(),
        };
        let unhealthy = ProviderHealth::Unhealthy(problem);
        let status = next_status(
            Some(&unknown),
            &Placement {
                provider: &unhealthy,
                ..HOME
            },
            &outcome,
            Some(1),
            t(2),
        );
        assert_eq!(provider(&status).status, "False");
        assert_eq!(provider(&status).reason, "OidcProviderNotFound");
        assert_eq!(ready(&status).status, "False");
        assert_eq!(ready(&status).reason, "OidcProviderNotFound");
        assert!(
            ready(&status)
                .message
                .contains("pods cannot assume it: no provider")
        );
        assert_eq!(status.role_arn.as_deref(), Some("arn:r"));
        let recovered = next_status(Some(&status), &HOME, &synced(), Some(1), t(3));
        assert_eq!(provider(&recovered).last_transition_time, Time(t(3)));
        assert_eq!(ready(&recovered).status, "True");
    }

    #[test]
    fn truncation_keeps_whole_characters_and_says_it_cut() {
        assert_eq!(truncated("short", 10), "short");
        assert_eq!(truncated("exactly10!", 10), "exactly10!");
        let cut = truncated(&"x".repeat(20), 10);
        assert_eq!(cut, format!("{}…", "x".repeat(7)));
        assert_eq!(cut.len(), 10);
        // A 3-byte character straddling the cut is dropped whole.
        let cut = truncated(&"ab€€€€".repeat(3), 9);
        assert!(cut.len() <= 9 && cut.ends_with('…'), "{cut}");
        assert!(cut.starts_with("ab€"), "{cut}");
        for limit in 3..40 {
            assert!(truncated(&"é€😀".repeat(10), limit).len() <= limit);
        }
    }

    #[test]
    fn kstatus_conditions_follow_the_outcome() {
        let iam = |reason, retry| Outcome::IamFailed {
            role_name: "r".into(),
            failure: Classified {
                reason,
                message: "m".into(),
                retry,
            },
        };
        let provider = |reason| Outcome::OidcProviderUnhealthy {
            role_name: "r".into(),
            role_arn: "arn:r".into(),
            problem: ProviderProblem {
                reason,
                message: "m".into(),
            },
        };
        let cases = [
            (synced(), Progress::Done),
            (
                Outcome::ServiceAccountNotFound {
                    role_name: "r".into(),
                    role_arn: "arn:r".into(),
                    service_account: "sa".into(),
                },
                Progress::Reconciling,
            ),
            (iam("IamUnavailable", Retry::Backoff), Progress::Reconciling),
            (
                provider("OidcProviderThumbprintUnavailable"),
                Progress::Reconciling,
            ),
            (Outcome::InvalidSpec("x".into()), Progress::Stalled),
            (Outcome::PolicyNotAllowed("x".into()), Progress::Stalled),
            (iam("IamRejected", Retry::OnChange), Progress::Stalled),
            (
                iam(
                    "AccessDenied",
                    Retry::After(crate::failure::ACCESS_DENIED_RETRY),
                ),
                Progress::Stalled,
            ),
            (provider("OidcProviderNotFound"), Progress::Stalled),
        ];
        for (outcome, expected) in cases {
            assert_eq!(outcome.progress(), expected, "{outcome:?}");
            let status = next_status(None, &HOME, &outcome, Some(4), t(1));
            let find = |type_: &str| {
                status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == type_)
                    .map(|c| (c.status.clone(), c.reason.clone(), c.observed_generation))
                    .unwrap()
            };
            let holds = |yes: bool| if yes { "True" } else { "False" }.to_string();
            let reason = outcome.reason().to_string();
            assert!(
                crate::reason::Reason::parse(&reason).is_some(),
                "{reason} is listed"
            );
            assert_eq!(
                find(READY),
                (holds(expected == Progress::Done), reason.clone(), Some(4))
            );
            assert_eq!(
                find(RECONCILING),
                (
                    holds(expected == Progress::Reconciling),
                    reason.clone(),
                    Some(4)
                )
            );
            assert_eq!(
                find(STALLED),
                (holds(expected == Progress::Stalled), reason, Some(4))
            );
        }
    }

    #[test]
    fn reports_the_account_and_the_count_it_is_given() {
        let in_data = Placement {
            account_id: Some("444455556666"),
            stale_pods: Some(2),
            ..HOME
        };
        let status = next_status(None, &in_data, &synced(), Some(1), t(1));
        assert_eq!(status.account_id.as_deref(), Some("444455556666"));
        assert_eq!(status.stale_pods, Some(2));
        let home = next_status(Some(&status), &HOME, &synced(), Some(1), t(2));
        assert_eq!((home.account_id, home.stale_pods), (None, None));
    }
}
