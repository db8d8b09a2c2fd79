//! Step: publish the status of one reconcile, with an Event when the object turns not
//! ready for a new reason, and choose when to look again.

use std::time::Instant;

use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{controller::Action, events::EventType},
};
use serde_json::json;
use tracing::warn;

use super::{Context, Error};
use crate::accounts::Target;
use crate::k8s::{FIELD_MANAGER, events};
use irsa_api::{PodIamRole, PodIamRoleStatus};
use irsa_core::{
    account::AccountProblem,
    failure::{ACCESS_DENIED_RETRY, Retry},
    status::{Outcome, Placement, ProviderHealth, next_status},
};

/// Patches the status for `outcome`, only when it changed: the one writer of a
/// PodIamRole's status. `stale_pods`: the count of the restart step, when it counted.
/// `target` is the account the role lives in, `None` when the one `spec.account` names
/// cannot be used: the status then keeps the provider and account it last showed.
pub(super) async fn publish(
    object: &PodIamRole,
    ctx: &Context,
    target: Option<&Target>,
    outcome: &Outcome,
    stale_pods: Option<i32>,
) -> Result<(), Error> {
    let old = object.status.as_ref();
    // Where this reconcile learned nothing new, the status keeps what it showed.
    let shown = |field: fn(&PodIamRoleStatus) -> Option<&str>| old.and_then(field);
    let (provider, provider_arn) = match target {
        Some(target) => (
            target.provider_health(object),
            target.config.oidc_provider_arn(),
        ),
        None => (
            ProviderHealth::Unknown,
            shown(|s| s.oidc_provider_arn.as_deref())
                .unwrap_or_default()
                .to_string(),
        ),
    };
    let account_id = match target {
        Some(target) => (target.account.declared()).map(|_| target.config.account_id.as_str()),
        None => shown(|s| s.account_id.as_deref()),
    };
    let place = Placement {
        provider: &provider,
        oidc_provider_arn: &provider_arn,
        account_id,
        stale_pods: stale_pods.or(old.and_then(|s| s.stale_pods)),
    };
    let status = next_status(
        old,
        &place,
        outcome,
        object.metadata.generation,
        jiff::Timestamp::now(),
    );
    if old == Some(&status) {
        return Ok(());
    }
    let api: Api<PodIamRole> = Api::namespaced(
        ctx.shared.client.clone(),
        &object.namespace().unwrap_or_default(),
    );
    let patch = json!({
        "apiVersion": PodIamRole::api_version(&()),
        "kind": PodIamRole::kind(&()),
        "status": status,
    });
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::Kube)?;
    let previous_reason = old
        .and_then(|s| s.conditions.first())
        .map(|c| c.reason.as_str());
    if !outcome.is_ready() && previous_reason != Some(outcome.reason()) {
        warn!(reason = outcome.reason(), message = %outcome.message(), "PodIamRole not ready");
        events::publish(
            &ctx.shared.recorder,
            object,
            EventType::Warning,
            outcome.reason(),
            outcome.message(),
        )
        .await;
    }
    Ok(())
}

/// When to look at the object again, if nothing changes before.
pub(super) fn next_action(outcome: &Outcome, retry_at: Option<Instant>, ctx: &Context) -> Action {
    if let Some(at) = retry_at {
        return Action::requeue(at.saturating_duration_since(Instant::now()));
    }
    match outcome {
        // The status says why; only a change to the object can help.
        Outcome::InvalidSpec(_) => Action::await_change(),
        // A broken trust may be fixed in AWS, which sends no event.
        Outcome::AccountUnavailable(AccountProblem::AssumeFailed { .. }) => {
            Action::requeue(ACCESS_DENIED_RETRY)
        }
        // The account, its grant or the namespace's labels must change: all are watched.
        Outcome::AccountUnavailable(_) => Action::await_change(),
        Outcome::IamFailed { failure, .. } if failure.retry == Retry::OnChange => {
            Action::await_change()
        }
        // Resync repairs drift, frees quota when an older PodIamRole goes away, and
        // notices a ServiceAccount's owner that left without ever annotating it.
        _ => Action::requeue(ctx.resync_interval),
    }
}
