//! The Argo CD health check's test data (health/irsa.dev/PodIamRole) is the status the
//! operator really publishes for every reason, and its expectations are the health each
//! state must have. `scripts/test` runs the Lua against them; this test keeps them in
//! step with `next_status`. Regenerate with `IRSA_UPDATE_TESTDATA=1 cargo test --test health_testdata`.
//! The same states also go through kstatus and Flux's CEL evaluator.

mod support;

use std::{collections::BTreeMap, path::PathBuf};

use irsa_api::PodIamRoleStatus;
use irsa_core::{
    failure::classify,
    oidc::ProviderProblem,
    status::{AccountProblem, Outcome, Placement, Progress, ProviderHealth, next_status},
};
use irsa_operator::iam::IamError;
use serde_json::{Value, json};
use support::gitops::{flux_health, kstatus};

const GENERATION: i64 = 2;
const ROLE: &str = "prod.shop.payments";
const ARN: &str = "arn:aws:iam::111122223333:role/irsa/prod/prod.shop.payments";
const PROVIDER: &str =
    "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC";

fn iam(operation: &'static str, code: &str, message: &str) -> Outcome {
    let error = IamError::new(operation, code, message);
    Outcome::IamFailed {
        role_name: ROLE.into(),
        failure: classify(&error),
    }
}

fn provider(reason: &'static str, message: &str) -> Outcome {
    Outcome::OidcProviderUnhealthy {
        role_name: ROLE.into(),
        role_arn: ARN.into(),
        problem: ProviderProblem {
            reason,
            message: message.into(),
        },
    }
}

/// One outcome for every reason the operator reports, named by that reason.
fn every_reason() -> Vec<Outcome> {
    vec![
        Outcome::Synced {
            role_name: ROLE.into(),
            role_arn: ARN.into(),
        },
        Outcome::ServiceAccountNotFound {
            role_name: ROLE.into(),
            role_arn: ARN.into(),
            service_account: "payments".into(),
        },
        iam("CreateRole", "ServiceUnavailable", "try again"),
        iam("PutRolePolicy", "AccessDenied", "denied by an SCP"),
        iam("CreateRole", "MalformedPolicyDocument", "bad resource"),
        iam(
            "DeleteRole",
            "DeleteConflict",
            "Cannot delete entity, must remove roles from instance profile first.",
        ),
        Outcome::CleanupBlocked {
            role_name: ROLE.into(),
            failure: classify(&IamError::new(
                "DeleteRole",
                "AccessDenied",
                "denied by an SCP",
            )),
        },
        Outcome::ObservedRoleNotFound {
            role_name: "payments-by-terraform".into(),
        },
        Outcome::ObservedRoleNotTrusted {
            role_name: "payments-by-terraform".into(),
            role_arn: "arn:aws:iam::111122223333:role/payments-by-terraform".into(),
            why: "its trust policy does not let system:serviceaccount:shop:payments assume it"
                .into(),
        },
        Outcome::InvalidSpec("spec.policy: Statement is missing".into()),
        Outcome::PolicyNotAllowed("action `*` is never allowed".into()),
        Outcome::RoleConflict {
            role_name: ROLE.into(),
            message: format!("IAM role {ROLE} already exists and is not owned by this PodIamRole"),
        },
        Outcome::ServiceAccountInUse {
            service_account: "payments".into(),
            owner: "older".into(),
        },
        Outcome::ServiceAccountAnnotationConflict {
            role_name: ROLE.into(),
            role_arn: ARN.into(),
            service_account: "payments".into(),
            manager: "argocd-controller".into(),
            value: Some("arn:aws:iam::111122223333:role/payments-by-hand".into()),
        },
        Outcome::AwsConfigConflict {
            role_name: ROLE.into(),
            role_arn: ARN.into(),
            message: "ConfigMap payments-aws-config exists and is not owned by this PodIamRole"
                .into(),
        },
        provider("OidcProviderThumbprintUnavailable", "issuer unreachable"),
        provider("OidcProviderNotFound", "no provider"),
        provider("OidcProviderUrlMismatch", "other URL"),
        provider("OidcProviderThumbprintStale", "old thumbprint"),
        provider("OidcProviderClientIdLimit", "100 client IDs"),
        provider("OidcProviderMissingAudience", "no client ID vault"),
        Outcome::AccountUnavailable(AccountProblem::NotFound {
            account: "data".into(),
        }),
        Outcome::AccountUnavailable(AccountProblem::NotAllowed {
            account: "data".into(),
            namespace: "shop".into(),
        }),
        Outcome::AccountUnavailable(AccountProblem::AssumeFailed {
            account: "data".into(),
            role_arn: "arn:aws:iam::222222222222:role/irsa-management".into(),
            message: "AccessDenied: User is not authorized to perform: sts:AssumeRole".into(),
        }),
    ]
}

fn object(status: Option<Value>) -> Value {
    let mut object = json!({
        "apiVersion": "irsa.dev/v1alpha1",
        "kind": "PodIamRole",
        "metadata": {"name": "payments", "namespace": "shop", "generation": GENERATION},
        "spec": {"serviceAccountName": "payments", "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]},
    });
    if let Some(status) = status {
        object["status"] = status;
    }
    object
}

fn published(outcome: &Outcome) -> PodIamRoleStatus {
    let health = match outcome {
        Outcome::OidcProviderUnhealthy { problem, .. } => {
            ProviderHealth::Unhealthy(problem.clone())
        }
        _ => ProviderHealth::Healthy,
    };
    let now = jiff::Timestamp::from_second(1_767_225_600).unwrap();
    let place = Placement {
        provider: &health,
        oidc_provider_arn: PROVIDER,
        account_id: None,
        stale_pods: None,
    };
    next_status(None, &place, outcome, Some(GENERATION), now)
}

/// (file name, object, Argo CD health, message).
fn cases() -> Vec<(String, Value, &'static str, String)> {
    let waiting = "Waiting for irsa-operator to reconcile this generation".to_string();
    let mut stale = serde_json::to_value(published(&every_reason()[0])).unwrap();
    stale["observedGeneration"] = json!(GENERATION - 1);
    let mut cases = vec![
        (
            "new".to_string(),
            object(None),
            "Progressing",
            waiting.clone(),
        ),
        (
            "new-defaulted".to_string(),
            object(Some(json!({"observedGeneration": -1}))),
            "Progressing",
            waiting.clone(),
        ),
        (
            "stale-generation".to_string(),
            object(Some(stale)),
            "Progressing",
            waiting,
        ),
    ];
    for outcome in every_reason() {
        let (health, message) = match outcome.progress() {
            Progress::Done => ("Healthy", outcome.message()),
            Progress::Reconciling => (
                "Progressing",
                format!("{}: {}", outcome.reason(), outcome.message()),
            ),
            Progress::Stalled => (
                "Degraded",
                format!("{}: {}", outcome.reason(), outcome.message()),
            ),
        };
        let status = serde_json::to_value(published(&outcome)).unwrap();
        cases.push((
            outcome.reason().to_string(),
            object(Some(status)),
            health,
            message,
        ));
    }
    cases
}

#[test]
fn argo_health_testdata_is_what_the_operator_publishes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("health/irsa.dev/PodIamRole");
    let mut files: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut tests = Vec::new();
    for (name, object, health, message) in cases() {
        let path = format!("testdata/{name}.yaml");
        files.insert(dir.join(&path), serde_yaml::to_string(&object).unwrap());
        tests.push(
            json!({"healthStatus": {"status": health, "message": message}, "inputPath": path}),
        );
    }
    let header = "# Generated by tests/health_testdata.rs from the operator's own statuses.\n";
    let tests = format!(
        "{header}{}",
        serde_yaml::to_string(&json!({"tests": tests})).unwrap()
    );
    files.insert(dir.join("health_test.yaml"), tests);
    let update = std::env::var("IRSA_UPDATE_TESTDATA").is_ok_and(|v| v == "1");
    for (path, generated) in files {
        if update {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale: run `IRSA_UPDATE_TESTDATA=1 cargo test --test health_testdata`",
            path.display()
        );
    }
}

/// kstatus, and Flux's own evaluator of the `healthCheckExprs` docs/gitops.md documents,
/// read every state the operator publishes as Argo CD's health check does.
#[test]
fn kstatus_and_the_documented_flux_expressions_read_every_state() {
    for (name, object, health, _) in cases() {
        // The API server defaults `status` on every PodIamRole (observedGeneration -1), so
        // no stored object lacks one; Flux's expressions cannot read such an object.
        if object.get("status").is_none() {
            continue;
        }
        let want = match health {
            "Healthy" => "Current",
            "Progressing" => "InProgress",
            _ => "Failed",
        };
        assert_eq!(kstatus(&object).0, want, "kstatus, {name}");
        assert_eq!(
            flux_health(&object).0,
            want,
            "Flux healthCheckExprs, {name}"
        );
    }
}
