//! Pure: what a failed IAM call means for the PodIamRole, as one table from IAM's
//! error code (and the operation that failed) to a status reason and a retry class.

use std::time::Duration;

use crate::reason::Reason;

/// What an IAM error code means to the operator. [`code_class`] is the one table of
/// codes: everything else asks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeClass {
    /// `NoSuchEntity`.
    NotFound,
    /// `EntityAlreadyExists`.
    AlreadyExists,
    /// `DeleteConflict`: something still holds the role.
    DeleteConflict,
    /// The caller may not make the call.
    AccessDenied,
    /// IAM rejected the request itself; sending it again cannot succeed.
    Rejected,
    /// IAM asking the caller to slow down.
    Throttling,
    /// IAM broken or unreachable before the request ran.
    ServerFault,
    /// A concurrent change, or an attempt that timed out.
    Busy,
    /// Anything else: retried with backoff.
    Other,
}

pub fn code_class(code: &str) -> CodeClass {
    match code {
        "NoSuchEntity" => CodeClass::NotFound,
        "EntityAlreadyExists" => CodeClass::AlreadyExists,
        "DeleteConflict" => CodeClass::DeleteConflict,
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
            CodeClass::AccessDenied
        }
        "MalformedPolicyDocument"
        | "InvalidInput"
        | "LimitExceeded"
        | "ValidationError"
        | "UnmodifiableEntity"
        | "PolicyNotAttachable"
        | "PackedPolicyTooLarge" => CodeClass::Rejected,
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => CodeClass::Throttling,
        // `Unavailable` is the SDK adapter's name for transport errors, which carry no IAM code.
        "ServiceFailure" | "ServiceUnavailable" | "InternalFailure" | "Unavailable" => {
            CodeClass::ServerFault
        }
        "ConcurrentModification" | "Timeout" => CodeClass::Busy,
        _ => CodeClass::Other,
    }
}

/// How an IAM call failed, in the terms the reconciler acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IamErrorKind {
    /// `NoSuchEntity`: for deletions this counts as success.
    NotFound,
    /// `EntityAlreadyExists`: someone else took the name in the meantime.
    AlreadyExists,
    /// IAM rejected the request itself; retrying the same request cannot help.
    Terminal,
    /// Throttling, 5xx, transport errors, `DeleteConflict` races: back off and retry.
    Retryable,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("IAM {operation} failed: {code}: {message}")]
pub struct IamError {
    pub operation: &'static str,
    pub code: String,
    pub message: String,
}

impl IamError {
    pub fn new(
        operation: &'static str,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            operation,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn class(&self) -> CodeClass {
        code_class(&self.code)
    }

    pub fn kind(&self) -> IamErrorKind {
        match self.class() {
            CodeClass::NotFound => IamErrorKind::NotFound,
            CodeClass::AlreadyExists => IamErrorKind::AlreadyExists,
            CodeClass::Rejected => IamErrorKind::Terminal,
            _ => IamErrorKind::Retryable,
        }
    }
}

impl IamErrorKind {
    /// The metric label of a failed call's outcome.
    pub fn label(self) -> &'static str {
        match self {
            IamErrorKind::NotFound => "not_found",
            IamErrorKind::AlreadyExists => "already_exists",
            IamErrorKind::Terminal => "terminal",
            IamErrorKind::Retryable => "retryable",
        }
    }
}

/// First retry after a transient failure; doubles per consecutive failure.
const TRANSIENT_BASE: Duration = Duration::from_secs(1);
/// Transient failures retry within a minute: the account's IAM budget, not this
/// delay, protects the account, so a recovered IAM is used again quickly.
const TRANSIENT_MAX: Duration = Duration::from_secs(60);
/// A permission fix is a human action: retrying every few minutes finds it without
/// turning one denied object into steady IAM traffic. A spec change retries at once.
pub const ACCESS_DENIED_RETRY: Duration = Duration::from_secs(180);

pub fn is_throttling(code: &str) -> bool {
    code_class(code) == CodeClass::Throttling
}

/// Whether the same call may be attempted again at once. A timeout is not: the attempt
/// already waited its full time.
pub fn worth_another_attempt(code: &str) -> bool {
    matches!(
        code_class(code),
        CodeClass::Throttling | CodeClass::ServerFault
    )
}

/// Operations whose `NoSuchEntity` is about an ARN in the spec (a managed policy or
/// boundary that does not exist), not about the role: the spec must change.
const SPEC_REFERENCE_OPERATIONS: [&str; 2] = ["AttachRolePolicy", "PutRolePermissionsBoundary"];

/// When to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Only a change to the object (or the guardrails) can help.
    OnChange,
    /// After this fixed delay, or at once on a change.
    After(Duration),
    /// Exponential backoff per object, jittered and capped low.
    Backoff,
}

/// The user-facing classification of one IAM failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The `Ready` condition's reason.
    pub reason: &'static str,
    /// What happened, with IAM's own message.
    pub message: String,
    pub retry: Retry,
}

/// Classifies a failed IAM call. `NotFound` and `AlreadyExists` reaching here are
/// races with someone else (IAM is eventually consistent), so they back off.
pub fn classify(error: &IamError) -> Classified {
    let code = error.code.as_str();
    let iam_says = format!("{}: {}", error.code, error.message);
    let action = format!("iam:{}", error.operation);
    let class = code_class(code);
    if class == CodeClass::AccessDenied {
        return Classified {
            reason: Reason::AccessDenied.as_str(),
            message: format!(
                "the operator is not allowed to call {action}; grant it in the operator's IAM policy \
                 (or the SCP / permissions boundary that denies it). IAM said: {iam_says}"
            ),
            retry: Retry::After(ACCESS_DENIED_RETRY),
        };
    }
    if class == CodeClass::NotFound && SPEC_REFERENCE_OPERATIONS.contains(&error.operation) {
        return Classified {
            reason: Reason::IamRejected.as_str(),
            message: format!(
                "{action} failed because a policy named in the spec does not exist; fix the ARN. IAM said: {iam_says}"
            ),
            retry: Retry::OnChange,
        };
    }
    // The operator removed every policy it found before this DeleteRole: what still
    // holds the role is something it never manages, usually an instance profile.
    if class == CodeClass::DeleteConflict {
        return Classified {
            reason: Reason::DeleteConflict.as_str(),
            message: format!(
                "the role is still used by something this operator never manages, usually an instance \
                 profile: remove it (`aws iam remove-role-from-instance-profile`). IAM said: {iam_says}"
            ),
            retry: Retry::After(ACCESS_DENIED_RETRY),
        };
    }
    if class == CodeClass::Rejected {
        return Classified {
            reason: Reason::IamRejected.as_str(),
            message: format!("IAM rejected {action}: {iam_says}"),
            retry: Retry::OnChange,
        };
    }
    let retry = Retry::Backoff;
    if matches!(
        class,
        CodeClass::Throttling | CodeClass::ServerFault | CodeClass::Busy
    ) {
        return Classified {
            reason: Reason::IamUnavailable.as_str(),
            message: format!("IAM is throttling or failing, retrying: {iam_says} ({action})"),
            retry,
        };
    }
    Classified {
        reason: Reason::IamUnavailable.as_str(),
        message: format!("{action} failed, retrying: {iam_says}"),
        retry,
    }
}

/// The delay before retry number `consecutive_failures` (1-based) of a transient
/// failure. `jitter` in [0, 1) spreads objects that failed together.
pub fn transient_delay(consecutive_failures: u32, jitter: f64) -> Duration {
    let exponent = consecutive_failures.saturating_sub(1).min(16);
    let ceiling = TRANSIENT_BASE
        .saturating_mul(1 << exponent)
        .min(TRANSIENT_MAX);
    // Full jitter over the upper half: never less than half the ceiling.
    ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A deterministic jitter in [0, 1) for an object and attempt, so tests can predict it
/// and objects that failed together still spread out.
pub fn jitter_for(key: &str, attempt: u32) -> f64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    (key, attempt).hash(&mut hasher);
    (hasher.finish() % 1_000) as f64 / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(operation: &'static str, code: &str, message: &str) -> IamError {
        IamError::new(operation, code, message)
    }

    #[test]
    fn the_table() {
        let cases = [
            ("GetRole", "Throttling", "IamUnavailable", Retry::Backoff),
            (
                "PutRolePolicy",
                "ServiceFailure",
                "IamUnavailable",
                Retry::Backoff,
            ),
            ("GetRole", "Unavailable", "IamUnavailable", Retry::Backoff),
            (
                "CreateRole",
                "EntityAlreadyExists",
                "IamUnavailable",
                Retry::Backoff,
            ),
            (
                "GetRolePolicy",
                "NoSuchEntity",
                "IamUnavailable",
                Retry::Backoff,
            ),
            (
                "PutRolePolicy",
                "AccessDenied",
                "AccessDenied",
                Retry::After(ACCESS_DENIED_RETRY),
            ),
            (
                "AttachRolePolicy",
                "NoSuchEntity",
                "IamRejected",
                Retry::OnChange,
            ),
            (
                "PutRolePermissionsBoundary",
                "NoSuchEntity",
                "IamRejected",
                Retry::OnChange,
            ),
            (
                "PutRolePolicy",
                "MalformedPolicyDocument",
                "IamRejected",
                Retry::OnChange,
            ),
            (
                "AttachRolePolicy",
                "LimitExceeded",
                "IamRejected",
                Retry::OnChange,
            ),
            ("CreateRole", "InvalidInput", "IamRejected", Retry::OnChange),
            (
                "DeleteRole",
                "DeleteConflict",
                "DeleteConflict",
                Retry::After(ACCESS_DENIED_RETRY),
            ),
        ];
        for (operation, code, reason, retry) in cases {
            let classified = classify(&error(operation, code, "m"));
            assert_eq!(
                (classified.reason, classified.retry),
                (reason, retry),
                "{operation} {code}"
            );
            assert!(
                Reason::parse(classified.reason).is_some(),
                "{reason} is listed"
            );
        }
    }

    #[test]
    fn access_denied_names_the_action_and_keeps_iams_message() {
        let message = "User: arn:aws:sts::1:assumed-role/op/x is not authorized to perform: iam:PutRolePolicy";
        let classified = classify(&error("PutRolePolicy", "AccessDenied", message));
        assert!(classified.message.contains("iam:PutRolePolicy"));
        assert!(classified.message.contains(message));
    }

    #[test]
    fn an_instance_profile_blocking_deletion_says_so() {
        let classified = classify(&error(
            "DeleteRole",
            "DeleteConflict",
            "Cannot delete entity, must remove roles from instance profile first.",
        ));
        assert_eq!(classified.reason, "DeleteConflict");
        assert!(
            classified
                .message
                .contains("remove-role-from-instance-profile")
        );
    }

    #[test]
    fn transient_delays_grow_are_jittered_and_capped_low() {
        assert_eq!(transient_delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(transient_delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(transient_delay(4, 0.0), Duration::from_secs(4));
        assert_eq!(transient_delay(30, 0.999), TRANSIENT_MAX.mul_f64(0.9995));
        assert!(transient_delay(u32::MAX, 1.0) <= TRANSIENT_MAX);
        let a = jitter_for("ns/a", 1);
        assert_eq!(a, jitter_for("ns/a", 1));
        assert!((0.0..1.0).contains(&a));
    }
}
