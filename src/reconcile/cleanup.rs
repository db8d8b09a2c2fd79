//! Step: a PodIamRole is being deleted. Delete what the role holds and the role itself
//! (unless it is retained, or released by annotation), then release the ServiceAccount
//! annotation.

use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Api, ResourceExt,
    runtime::{controller::Action, events::EventType},
};
use tracing::{debug, info, warn};

use super::{
    Context, Error, apply::execute, aws_config, memo::Memo, owner_of, publish::publish,
    service_account::release_others,
};
use crate::accounts::Target;
use crate::{
    iam::{IamError, observe_role},
    k8s::{events, service_account},
};
use irsa_api::{DeletionPolicy, PodIamRole, RELEASE_ANNOTATION, RoleMode};
use irsa_core::{
    desired,
    failure::{self, CodeClass},
    orphans,
    plan::{self, RoleConflict},
    status::Outcome,
};

pub(super) async fn cleanup(object: &PodIamRole, ctx: &Context) -> Result<Action, Error> {
    let namespace = object.namespace().unwrap_or_default();
    let owner = owner_of(object, &ctx.shared.config);
    let status = object.status.clone().unwrap_or_default();
    let reached_target_account = status.account_id.is_some();
    let role_name = status.role_name.unwrap_or_else(|| {
        desired::role_name(
            &object.spec,
            &owner.namespace,
            &owner.name,
            &ctx.shared.config,
        )
    });
    let role_arn = status
        .role_arn
        .unwrap_or_else(|| ctx.shared.config.role_arn(&role_name));

    let policy = object
        .spec
        .deletion_policy
        .unwrap_or(ctx.shared.default_deletion_policy);
    if is_released(object) {
        // The way out when IAM cannot (or must not) be touched: keep the role, say so.
        let note = format!(
            "IAM role {role_name} ({role_arn}) was left in IAM untouched: the PodIamRole carries \
             {RELEASE_ANNOTATION}=true"
        );
        info!(role = %role_name, "released without touching IAM");
        events::publish(
            &ctx.shared.recorder,
            object,
            EventType::Normal,
            "RoleReleased",
            note,
        )
        .await;
    } else if object.spec.mode == RoleMode::Manage && !ctx.memos.cleaned_up(object) {
        // A retry after a failed Kubernetes write, or a stale event after the finalizer
        // went, must not read IAM again. An observed role was never the operator's.
        match ctx.target(object).await {
            Ok(target) => {
                let done = match policy {
                    DeletionPolicy::Delete => delete_role(object, ctx, &target, &role_name).await,
                    DeletionPolicy::Retain => release_role(object, ctx, &target, &role_name).await,
                };
                match done {
                    Ok(Removal::Done) => {}
                    Ok(Removal::LookAgainIn(wait)) => {
                        info!(role = %role_name, ?wait, "no such role yet, but a write of the previous process may still land: looking again");
                        return Err(Error::LookAgainIn(wait));
                    }
                    Err(error) => {
                        // Say why the deletion is stuck, then keep the finalizer and retry.
                        let outcome = Outcome::CleanupBlocked {
                            role_name: role_name.clone(),
                            failure: failure::classify(&error),
                        };
                        publish(object, ctx, Some(&target), &outcome, None).await?;
                        return Err(Error::Iam(error));
                    }
                }
            }
            // The target account never let this object in: it has no role there.
            Err(_) if !reached_target_account => {}
            // Its role's account cannot be reached: keep the finalizer, say why, retry.
            Err(outcome) => {
                publish(object, ctx, None, &outcome, None).await?;
                return Err(Error::Account(outcome.message()));
            }
        }
        ctx.memos.remember(object, 0, Memo::CleanedUp);
    }
    release_others(ctx, &namespace, None, &role_arn).await?;
    let api: Api<ServiceAccount> = Api::namespaced(ctx.shared.client.clone(), &namespace);
    service_account::remove_annotation(&api, &object.spec.service_account_name, &role_arn)
        .await
        .map_err(Error::Kube)?;
    // No garbage collector may run (the test bed has none): the ConfigMap goes here too.
    aws_config::remove(object, ctx, true).await?;
    Ok(Action::await_change())
}

/// How far the cleanup in IAM got.
enum Removal {
    Done,
    /// IAM has no such role, but a write sent by the previous process may still create it.
    LookAgainIn(Duration),
}

/// A write is served by IAM even if its sender was killed after sending it: a CreateRole
/// of the previous process (a restarted container takes its Lease back at once) can land
/// after this term found no role. An absent role is believed only once this long has
/// passed since the term began.
const LATE_WRITE_GRACE: Duration = Duration::from_secs(10);

/// What a cleanup that found no role does.
fn absent(ctx: &Context) -> Removal {
    match LATE_WRITE_GRACE.checked_sub(ctx.started.elapsed()) {
        Some(wait) if !wait.is_zero() => Removal::LookAgainIn(wait),
        _ => Removal::Done,
    }
}

/// Kept on purpose: re-tagged as released, so the orphan scan never deletes it.
async fn release_role(
    object: &PodIamRole,
    ctx: &Context,
    target: &Target,
    role_name: &str,
) -> Result<Removal, IamError> {
    let owner = owner_of(object, &ctx.shared.config);
    let Some(observed) = target.iam.get_role(role_name).await? else {
        return Ok(absent(ctx));
    };
    let ops = orphans::plan_release(&owner, Some(&observed));
    execute(target, role_name, &ops, true).await?;
    Ok(Removal::Done)
}

/// Deletes the role if this object owns it; a role owned by someone else is left alone.
async fn delete_role(
    object: &PodIamRole,
    ctx: &Context,
    target: &Target,
    role_name: &str,
) -> Result<Removal, IamError> {
    let owner = owner_of(object, &ctx.shared.config);
    // The last listing names the role's policies and attachments, and its tags show
    // whose it is: delete without reading. A policy added since makes IAM refuse
    // DeleteRole (DeleteConflict), and the role is then read.
    if let Some(Some(listed)) = target.last_listed_role(role_name)
        && let Ok(ops) = plan::plan_delete(role_name, &owner, Some(&listed.for_deletion()))
    {
        match execute(target, role_name, &ops, true).await {
            Ok(()) => return Ok(deleted(object, ctx, role_name).await),
            Err(error) if error.class() == CodeClass::DeleteConflict => {
                debug!(role = %role_name, "changed since the listing: reading it");
            }
            Err(error) => return Err(error),
        }
    }
    let Some(observed) = observe_role(target.iam.as_ref(), role_name, |s| {
        owner.mismatch(&s.tags).is_none()
    })
    .await?
    else {
        return Ok(absent(ctx));
    };
    match plan::plan_delete(role_name, &owner, Some(&observed)) {
        Ok(ops) => {
            execute(target, role_name, &ops, true).await?;
            Ok(deleted(object, ctx, role_name).await)
        }
        Err(RoleConflict(message)) => {
            warn!(role = %role_name, %message, "not deleting a role this PodIamRole does not own");
            Ok(Removal::Done)
        }
    }
}

async fn deleted(object: &PodIamRole, ctx: &Context, role_name: &str) -> Removal {
    let note = format!("IAM role {role_name} deleted");
    events::publish(
        &ctx.shared.recorder,
        object,
        EventType::Normal,
        "RoleDeleted",
        note,
    )
    .await;
    Removal::Done
}

fn is_released(object: &PodIamRole) -> bool {
    object
        .annotations()
        .get(RELEASE_ANNOTATION)
        .map(String::as_str)
        == Some("true")
}
