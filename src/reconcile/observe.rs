//! Step, `mode: Observe` only: use an existing role as it is, never a write to IAM: the
//! role must exist and its trust policy must admit the ServiceAccount. The latest listing
//! keeps observed roles, so confirming costs no call; anything else (not listed, not
//! trusting) is read afresh with one `GetRole` before it is reported.

use kube::ResourceExt;
use serde_json::json;

use super::{Context, Error, service_account};
use crate::accounts::Target;
use irsa_api::{DEFAULT_AUDIENCE, PodIamRole};
use irsa_core::{desired::DesiredRole, failure, status::Outcome, trust};

pub(super) async fn observe(
    object: &PodIamRole,
    ctx: &Context,
    target: &Target,
    desired: &DesiredRole,
) -> Result<Outcome, Error> {
    let role_name = desired.name.clone();
    let config = &target.config;
    let subject = format!(
        "system:serviceaccount:{}:{}",
        object.namespace().unwrap_or_default(),
        object.spec.service_account_name
    );
    let audience = object.spec.audience.as_deref().unwrap_or(DEFAULT_AUDIENCE);
    // The claims of a token the API server would mint for this ServiceAccount.
    let claims = json!({
        "iss": format!("https://{}", config.issuer_host_path),
        "sub": subject,
        "aud": audience,
    });
    if let Some(listed) = target.observed_role(&role_name)
        && trust::evaluate(&listed.trust_policy, &claims).is_ok()
    {
        return service_account::annotate(object, ctx, target, role_name, listed.arn).await;
    }
    let summary = match target.iam.get_role(&role_name).await {
        Ok(Some(summary)) => summary,
        Ok(None) => return Ok(Outcome::ObservedRoleNotFound { role_name }),
        Err(error) => {
            return Ok(Outcome::IamFailed {
                role_name,
                failure: failure::classify(&error),
            });
        }
    };
    if let Err(why) = trust::evaluate(&summary.trust_policy, &claims) {
        return Ok(Outcome::ObservedRoleNotTrusted {
            role_name,
            role_arn: summary.arn,
            why: format!(
                "its trust policy does not let {subject} assume it with a token for {audience} from {}: {why}",
                config.oidc_provider_arn()
            ),
        });
    }
    service_account::annotate(object, ctx, target, role_name, summary.arn).await
}
