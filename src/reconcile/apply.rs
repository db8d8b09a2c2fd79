//! Step: bring IAM and the ServiceAccount in line with a live PodIamRole.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use kube::runtime::{controller::Action, events::EventType};
use tracing::{debug, info};

use super::{
    Context, Error, aws_config, guardrails,
    memo::Memo,
    observe, owner_of,
    publish::{finish, next_action, publish},
    restart, service_account,
};
use crate::{
    accounts::Target,
    iam::{IamError, IamErrorKind, observe_role},
    k8s::events,
};
use irsa_api::{PodIamRole, RoleMode};
use irsa_core::{
    admission,
    desired::DesiredRole,
    failure::{self, Retry},
    plan::{self, IamOp, RoleConflict},
    snapshot::Drift,
    status::{Outcome, READY},
};

/// How often an object re-checks while the caches list at start-up: a normal wait,
/// not an error.
const CACHE_WAIT: Duration = Duration::from_millis(500);

/// IAM's answer to CreateRole for a name that is taken.
const ENTITY_ALREADY_EXISTS: &str = "EntityAlreadyExists";

/// The reads of one drift check: the role, its inline policy names and document, and
/// its attached policies.
const DRIFT_CHECK_CALLS: u32 = 4;

pub(super) async fn apply(object: &PodIamRole, ctx: &Context) -> Result<Action, Error> {
    if !ctx.caches.synced.load(Ordering::Relaxed) {
        debug!("waiting for the caches to list");
        return Ok(Action::requeue(CACHE_WAIT));
    }
    let Ok(verdict) = guardrails::verdict(&ctx.caches, &ctx.shared.config, object) else {
        debug!("waiting for the namespace to be cached");
        return Ok(Action::requeue(CACHE_WAIT));
    };
    let target = match ctx.target(object).await {
        Ok(target) => target,
        Err(outcome) => {
            ctx.memos.forget(object);
            return finish(object, ctx, None, outcome).await;
        }
    };
    let target = &target;
    let fingerprint = verdict.fingerprint ^ target.fingerprint;
    let owner = owner_of(object, &ctx.shared.config);
    let desired = match admission::admit(verdict.decision, &object.spec, owner, &target.config) {
        Ok(desired) => desired,
        Err(outcome) => {
            ctx.memos.forget(object);
            return finish(object, ctx, Some(target), outcome).await;
        }
    };
    if let Some(outcome) = service_account::claim(object, ctx) {
        ctx.memos.forget(object);
        return finish(object, ctx, Some(target), outcome).await;
    }
    if object.spec.mode == RoleMode::Observe {
        ctx.memos.forget(object);
        let outcome = observe::observe(object, ctx, target, &desired).await?;
        return finish(object, ctx, Some(target), outcome).await;
    }
    let mut memo = ctx.memos.lookup(object, fingerprint);
    let check = match memo {
        Some(_) => None,
        None => ctx
            .memos
            .drift_check_due(object, fingerprint)
            .map(|(synced, synced_at)| (synced, synced_at, false))
            .or_else(|| synced_before_start(object, ctx, &desired).map(|s| (s, ctx.started, true))),
    };
    if let Some((synced, synced_at, restarted)) = check {
        if restarted {
            target.first_listing().await;
        }
        match target.drift(&desired, synced_at) {
            // The bulk listing shows no drift, or cannot tell yet after a sync of this
            // term: no per-role reads.
            Some(Drift::None) => memo = Some(synced),
            Some(Drift::Unknown) if !restarted => memo = Some(synced),
            Some(Drift::Suspected | Drift::Unknown) => {
                debug!("the listing suggests drift: reading the role")
            }
            // No listing: read the role, once the budget is not spoken for; a drift check
            // can wait, work that changes IAM cannot.
            None if !target.iam.has_spare_calls(DRIFT_CHECK_CALLS) => {
                debug!("IAM budget busy, drift check deferred");
                return Ok(Action::requeue(ctx.drift_check_deferral(object)));
            }
            None => {}
        }
        if let Some(synced) = &memo {
            ctx.memos.remember(object, fingerprint, synced.clone());
        }
    }
    let (role_name, role_arn) = match memo {
        Some(Memo::Synced {
            role_name,
            role_arn,
        }) => (role_name, role_arn),
        // The status already says why; only the retry time or a change may call IAM.
        Some(Memo::Failed { outcome, retry_at }) => {
            return Ok(next_action(&outcome, retry_at, ctx));
        }
        Some(Memo::CleanedUp) | None => match sync_role(object, ctx, target, desired).await {
            Ok(synced) => {
                let (role_name, role_arn) = synced.clone();
                ctx.memos.remember(
                    object,
                    fingerprint,
                    Memo::Synced {
                        role_name,
                        role_arn,
                    },
                );
                synced
            }
            Err(outcome) => {
                let retry_at = retry_time(object, ctx, &outcome);
                publish(object, ctx, Some(target), &outcome).await?;
                // Only once the status says why: a failed status write retries in full.
                let action = next_action(&outcome, retry_at, ctx);
                ctx.memos
                    .remember(object, fingerprint, Memo::Failed { outcome, retry_at });
                return Ok(action);
            }
        },
    };
    let outcome =
        service_account::annotate(object, ctx, target, role_name, role_arn.clone()).await?;
    let outcome = aws_config::publish(object, ctx, outcome).await?;
    if outcome.is_ready() {
        restart::restart_stale(object, ctx, &role_arn).await;
    }
    finish(object, ctx, Some(target), outcome).await
}

/// The first reconcile of this term of an object whose status says its role was in sync
/// at this generation: the sync the memo would hold, had this process made it. The
/// listing decides whether IAM still matches (description and session duration, which
/// it lacks, come from the spec of that generation).
fn synced_before_start(object: &PodIamRole, ctx: &Context, desired: &DesiredRole) -> Option<Memo> {
    let status = object.status.as_ref()?;
    let in_sync = !ctx.memos.knows(object)
        && status.observed_generation.is_some()
        && status.observed_generation == object.metadata.generation
        && status.role_name.as_deref() == Some(desired.name.as_str())
        && status.role_arn.as_deref() == Some(desired.arn.as_str())
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == READY && c.status == "True");
    in_sync.then(|| Memo::Synced {
        role_name: desired.name.clone(),
        role_arn: desired.arn.clone(),
    })
}

/// When a failed sync may call IAM again without a change to the object.
fn retry_time(object: &PodIamRole, ctx: &Context, outcome: &Outcome) -> Option<Instant> {
    match outcome {
        Outcome::IamFailed { failure, .. } => match failure.retry {
            Retry::OnChange => None,
            Retry::After(delay) => Some(Instant::now() + delay),
            Retry::Backoff => Some(Instant::now() + ctx.next_backoff(object)),
        },
        // The resync notices a conflicting role that went away.
        Outcome::RoleConflict { .. } => Some(Instant::now() + ctx.resync_interval),
        _ => None,
    }
}

/// Brings the IAM role in line with `desired`: `(role name, role ARN)`, or the
/// reported reason it could not.
async fn sync_role(
    object: &PodIamRole,
    ctx: &Context,
    target: &Target,
    desired: DesiredRole,
) -> Result<(String, String), Outcome> {
    // A new PodIamRole (it never got as far as IAM, and adopts nothing) whose name the
    // last listing that finished does not have: the name is most likely free, so create
    // the role without reading it first. If it was taken since, CreateRole says so.
    let new = object.status.as_ref().is_none_or(|s| s.role_name.is_none()) && !object.spec.adopt;
    let read_first = !(new && target.last_listed_role(&desired.name) == Some(None));
    converge(object, ctx, target, desired, read_first).await
}

async fn converge(
    object: &PodIamRole,
    ctx: &Context,
    target: &Target,
    desired: DesiredRole,
    read_first: bool,
) -> Result<(String, String), Outcome> {
    let role_name = desired.name.clone();
    let iam_failed = |error: IamError| Outcome::IamFailed {
        role_name: role_name.clone(),
        failure: failure::classify(&error),
    };
    let observed = if read_first {
        observe_role(target.iam.as_ref(), &role_name, |summary| {
            desired.owner.may_take(&summary.tags, desired.adoption)
        })
        .await
        .map_err(iam_failed)?
    } else {
        None
    };
    let adopted = observed
        .as_ref()
        .is_some_and(|o| desired.owner.mismatch(&o.summary.tags).is_some());
    let ops = plan::plan_apply(&desired, observed.as_ref()).map_err(|RoleConflict(why)| {
        // The details name another tenant's object: they go to the log, not the status.
        info!(role = %role_name, %why, "role name taken by a role this PodIamRole does not own");
        Outcome::RoleConflict {
            role_name: role_name.clone(),
            message: format!(
                "IAM role {role_name} already exists and is not owned by this PodIamRole; it is left \
                 untouched. Choose another spec.roleName; set spec.adopt to take it over if an \
                 earlier PodIamRole of this name retained it (or a guardrail lets this namespace adopt it); \
                 or ask the cluster's administrators"
            ),
        }
    })?;
    match execute(target, &role_name, &ops, false).await {
        Ok(()) => {}
        Err(error) if !read_first && error.code == ENTITY_ALREADY_EXISTS => {
            debug!(role = %role_name, "created since the listing: reading it");
            return Box::pin(converge(object, ctx, target, desired, true)).await;
        }
        Err(error) => return Err(iam_failed(error)),
    }
    if let Some(first) = ops.first() {
        let (reason, verb) = match first {
            IamOp::CreateRole { .. } => ("RoleCreated", "created"),
            _ if adopted => ("RoleAdopted", "adopted"),
            _ => ("RoleUpdated", "updated"),
        };
        let changes: Vec<String> = ops.iter().map(IamOp::describe).collect();
        info!(role = %role_name, ?changes, "IAM role {verb}");
        let note = format!("IAM role {role_name} {verb}: {}", changes.join(", "));
        events::publish(
            &ctx.shared.recorder,
            object,
            EventType::Normal,
            reason,
            note,
        )
        .await;
    }
    let role_arn = observed.map_or(desired.arn, |o| o.summary.arn);
    Ok((role_name, role_arn))
}

/// Runs `ops` in order. With `missing_is_done`, "already gone" counts as done.
pub(super) async fn execute(
    target: &Target,
    role_name: &str,
    ops: &[IamOp],
    missing_is_done: bool,
) -> Result<(), IamError> {
    for op in ops {
        match target.iam.execute(role_name, op).await {
            Err(error) if missing_is_done && error.kind == IamErrorKind::NotFound => {}
            result => result?,
        }
    }
    Ok(())
}
