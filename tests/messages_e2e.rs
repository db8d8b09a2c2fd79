//! Every status reason's longest message, through the real API server: as a Warning
//! Event built the way the operator builds every Event, and as the status the operator
//! writes. Both must be accepted (an Event note over 1,024 bytes is refused).

mod support;

use std::error::Error;

use irsa_api::PodIamRole;
use irsa_core::{
    account::AccountProblem,
    failure::{Classified, classify},
    oidc::ProviderProblem,
    reason::Reason,
    status::{Outcome, Placement, ProviderHealth, next_status},
};
use irsa_operator::{
    iam::{IamError, aws_error::aws_error_message},
    k8s::events::{NOTE_LIMIT, event},
};
use kube::{
    Resource,
    api::{Patch, PatchParams},
    runtime::events::{EventType, Recorder, Reporter},
};
use serde_json::json;
use support::scenario::{Scenario, dynamo_spec};

/// Longer than any limit: what a user, a field manager or an SDK can put in a message.
fn huge(what: &str) -> String {
    format!("{what} ").repeat(40_000 / (what.len() + 1))
}

/// An SDK error as a credentials provider wraps it: a debug-dump display over a cause.
#[derive(Debug)]
struct Dump;

impl std::fmt::Display for Dump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&huge(
            "ProviderError { source: ServiceError { raw: Response { .. } } }",
        ))
    }
}

impl Error for Dump {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        None
    }
}

/// IAM's failure table on an error whose message is as long as an SDK makes it.
fn iam(operation: &'static str, code: &str, message: &str) -> Classified {
    classify(&IamError::new(operation, code, message))
}

/// The longest message the operator can set with `reason`. The match is exhaustive, so
/// a new reason does not compile until it has its case here.
fn longest(reason: Reason) -> Outcome {
    let role_name = "r".repeat(64);
    let role_arn = format!(
        "arn:aws:iam::111122223333:role/{}/{role_name}",
        "p".repeat(510)
    );
    let service_account = "s".repeat(253);
    let sdk = aws_error_message(&Dump);
    let provider = |reason: Reason| Outcome::OidcProviderUnhealthy {
        role_name: role_name.clone(),
        role_arn: role_arn.clone(),
        problem: ProviderProblem {
            reason: reason.as_str(),
            message: huge("provider https://issuer/ thumbprints"),
        },
    };
    let iam_failed = |failure| Outcome::IamFailed {
        role_name: role_name.clone(),
        failure,
    };
    match reason {
        Reason::Synced => Outcome::Synced {
            role_name: role_name.clone(),
            role_arn: role_arn.clone(),
        },
        Reason::InvalidSpec => Outcome::InvalidSpec(huge("spec.policy.Statement[0]")),
        Reason::PolicyNotAllowed => Outcome::PolicyNotAllowed(huge("statement s3:* on *")),
        Reason::RoleConflict => Outcome::RoleConflict {
            role_name: role_name.clone(),
            message: huge("not ours"),
        },
        Reason::ServiceAccountNotFound => Outcome::ServiceAccountNotFound {
            role_name: role_name.clone(),
            role_arn: role_arn.clone(),
            service_account: service_account.clone(),
        },
        Reason::ServiceAccountInUse => Outcome::ServiceAccountInUse {
            service_account: service_account.clone(),
            owner: format!("{}/{}", "n".repeat(63), "o".repeat(253)),
        },
        Reason::ServiceAccountAnnotationConflict => Outcome::ServiceAccountAnnotationConflict {
            role_name: role_name.clone(),
            role_arn: role_arn.clone(),
            service_account: service_account.clone(),
            manager: "m".repeat(128),
            // Annotations may hold 256 KiB.
            value: Some("v".repeat(200_000)),
        },
        Reason::AwsConfigConflict => Outcome::AwsConfigConflict {
            role_name: role_name.clone(),
            role_arn: role_arn.clone(),
            message: huge("ConfigMap is someone else's"),
        },
        Reason::CleanupBlocked => Outcome::CleanupBlocked {
            role_name: role_name.clone(),
            failure: iam("DeleteRole", "AccessDenied", &sdk),
        },
        Reason::ObservedRoleNotFound => Outcome::ObservedRoleNotFound {
            role_name: role_name.clone(),
        },
        Reason::ObservedRoleNotTrusted => Outcome::ObservedRoleNotTrusted {
            role_name: role_name.clone(),
            role_arn: role_arn.clone(),
            why: huge("the trust policy does not admit"),
        },
        Reason::AccessDenied => iam_failed(iam("PutRolePolicy", "AccessDenied", &sdk)),
        Reason::IamRejected => iam_failed(iam("PutRolePolicy", "MalformedPolicyDocument", &sdk)),
        Reason::DeleteConflict => iam_failed(iam(
            "DeleteRole",
            "DeleteConflict",
            &format!("Cannot delete entity, must remove roles from instance profile first. {sdk}"),
        )),
        Reason::IamUnavailable => iam_failed(iam("GetRole", "Throttling", &sdk)),
        Reason::OidcProviderNotFound
        | Reason::OidcProviderUrlMismatch
        | Reason::OidcProviderMissingAudience
        | Reason::OidcProviderClientIdLimit
        | Reason::OidcProviderThumbprintStale
        | Reason::OidcProviderThumbprintUnavailable
        | Reason::OidcProviderCheckFailed
        | Reason::OidcProviderUpdateFailed => provider(reason),
        Reason::AccountNotFound => Outcome::AccountUnavailable(AccountProblem::NotFound {
            account: "a".repeat(253),
        }),
        Reason::AccountNotAllowed => Outcome::AccountUnavailable(AccountProblem::NotAllowed {
            account: "a".repeat(253),
            namespace: "n".repeat(63),
        }),
        Reason::AccountAssumeFailed => Outcome::AccountUnavailable(AccountProblem::AssumeFailed {
            account: "a".repeat(253),
            role_arn: "m".repeat(2048),
            message: sdk,
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn every_reasons_longest_message_is_accepted_as_event_and_status() {
    // No operator: this test alone writes the object's status.
    let s = Scenario::prepare("messages").await;
    s.apply("target", dynamo_spec("app")).await;
    let object = s.roles().get("target").await.unwrap();
    let reference = object.object_ref(&());
    let recorder = Recorder::new(
        s.bed.kube.clone(),
        Reporter {
            controller: "irsa-e2e".into(),
            instance: None,
        },
    );
    for reason in Reason::ALL {
        let outcome = longest(*reason);
        assert_eq!(outcome.reason(), reason.as_str());
        let message = outcome.message();

        let warning = event(EventType::Warning, reason.as_str(), &message);
        let note = warning.note.clone().unwrap();
        assert!(note.len() <= NOTE_LIMIT, "{reason}: {} bytes", note.len());
        recorder
            .publish(&warning, &reference)
            .await
            .unwrap_or_else(|e| panic!("the API server refused the {reason} Event: {e}"));

        let status = next_status(
            None,
            &Placement {
                provider: &ProviderHealth::Healthy,
                oidc_provider_arn: "arn:aws:iam::111122223333:oidc-provider/issuer",
                account_id: None,
                stale_pods: None,
            },
            &outcome,
            object.metadata.generation,
            jiff::Timestamp::now(),
        );
        let patch = json!({
            "apiVersion": PodIamRole::api_version(&()),
            "kind": PodIamRole::kind(&()),
            "status": status,
        });
        let written = s
            .roles()
            .patch_status(
                "target",
                &PatchParams::apply("irsa-operator").force(),
                &Patch::Apply(&patch),
            )
            .await
            .unwrap_or_else(|e| panic!("the API server refused the {reason} status: {e}"));
        let ready = &written.status.unwrap().conditions[0];
        assert_eq!(ready.reason, reason.as_str());
        // Bounded, and still the message: its beginning is kept.
        let kept = ready.message.trim_end_matches('…');
        assert!(message.starts_with(kept) && !kept.is_empty(), "{reason}");
    }
}
