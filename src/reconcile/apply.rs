//! Step: bring IAM and the ServiceAccount in line with a live PodIamRole.

use std::time::{Duration, Instant};

use kube::runtime::{controller::Action, events::EventType};
use tracing::{debug, info};

use super::{
    Context, Error, aws_config, guardrails,
    memo::{Memo, SyncedRole},
    observe, owner_of,
    publish::{next_action, publish},
    restart, service_account,
};
use crate::accounts::Target;
use crate::{
    iam::{IamError, IamErrorKind, PoliciesFrom, observe_role_or_listing},
    k8s::events,
};
use irsa_api::{PodIamRole, READY, RoleMode};
use irsa_core::{
    admission,
    desired::DesiredRole,
    failure::{self, Retry},
    guardrail::Enforced,
    plan::{self, IamOp, RoleConflict},
    status::Outcome,
    sync_check::{self, Decision, Facts, Hint, Known},
};

/// How often an object re-checks while its namespace is not cached yet: a normal wait,
/// not an error.
const CACHE_WAIT: Duration = Duration::from_millis(500);

/// The reads of one drift check: the role, its inline policy names and document, and
/// its attached policies.
const DRIFT_CHECK_CALLS: u32 = 4;

/// One reconcile of a live PodIamRole: admit it, sync its role, bind the role to the
/// ServiceAccount, then publish the status once.
pub(super) async fn apply(object: &PodIamRole, ctx: &Context) -> Result<Action, Error> {
    if !ctx.caches.synced.is_open() {
        // Opening the gate reconciles every object.
        debug!("waiting for the caches to list");
        return Ok(Action::await_change());
    }
    let Ok(verdict) = guardrails::verdict(&ctx.caches, &ctx.shared.config, object) else {
        debug!("waiting for the namespace to be cached");
        return Ok(Action::requeue(CACHE_WAIT));
    };
    let (target, ending) = match admit(object, ctx, verdict.decision).await {
        Err((target, outcome)) => {
            ctx.memos.forget(object);
            (target, Ending::of(outcome))
        }
        Ok((target, desired)) if object.spec.mode == RoleMode::Observe => {
            ctx.memos.forget(object);
            let outcome = observe::observe(object, ctx, &target, &desired).await?;
            (Some(target), Ending::of(outcome))
        }
        Ok((target, desired)) => {
            let fingerprint = verdict.fingerprint ^ target.fingerprint;
            let ending = match sync(object, ctx, &target, desired, fingerprint).await {
                Synced::Role(role) => bind(object, ctx, &target, role).await?,
                Synced::Failed(ending) => *ending,
                Synced::Later(action) => return Ok(action),
            };
            (Some(target), ending)
        }
    };
    let counted = ending.stale_pods;
    publish(object, ctx, target.as_ref(), &ending.outcome, counted).await?;
    let action = next_action(&ending.outcome, ending.retry_at, ctx);
    // Only once the status says why: a failed status write retries in full.
    if let Some((fingerprint, memo)) = ending.memo {
        ctx.memos.remember(object, fingerprint, memo);
    }
    Ok(action)
}

/// How a reconcile ends: the outcome the status shows, when to retry without a change,
/// and what the memo learns once the status is written.
struct Ending {
    outcome: Outcome,
    retry_at: Option<Instant>,
    memo: Option<(u64, Memo)>,
    /// The ServiceAccount's pods without the role, when counted.
    stale_pods: Option<i32>,
}

impl Ending {
    fn of(outcome: Outcome) -> Self {
        Self {
            outcome,
            retry_at: None,
            memo: None,
            stale_pods: None,
        }
    }
}

/// What syncing the role came to.
enum Synced {
    /// The role matches the spec.
    Role(SyncedRole),
    /// IAM refused or failed: the status says why.
    Failed(Box<Ending>),
    /// Nothing to do or publish now: look again then.
    Later(Action),
}

/// Step: the account the role lives in, the guardrails' decision and the spec's own
/// checks, and the ServiceAccount's single owner. On refusal, the target when known.
async fn admit(
    object: &PodIamRole,
    ctx: &Context,
    decision: Result<Enforced, String>,
) -> Result<(Target, DesiredRole), (Option<Target>, Outcome)> {
    let target = ctx
        .target(object)
        .await
        .map_err(|outcome| (None, outcome))?;
    let owner = owner_of(object, &ctx.shared.config);
    let desired = match admission::admit(decision, &object.spec, owner, &target.config) {
        Ok(desired) => desired,
        Err(outcome) => return Err((Some(target), outcome)),
    };
    match service_account::claim(object, ctx) {
        Some(outcome) => Err((Some(target), outcome)),
        None => Ok((target, desired)),
    }
}

/// Step: bring the IAM role in line with `desired`, with as few calls as what is
/// already known allows (`sync_check`).
async fn sync(
    object: &PodIamRole,
    ctx: &Context,
    target: &Target,
    desired: DesiredRole,
    fingerprint: u64,
) -> Synced {
    let memo = ctx.memos.lookup(object, fingerprint);
    let known = match &memo {
        Some(Memo::Synced(_)) => Known::Synced,
        Some(Memo::Failed { .. }) => Known::Failed,
        Some(Memo::CleanedUp) => Known::CleanedUp,
        None => Known::Nothing,
    };
    let hinted = if memo.is_some() {
        None
    } else if let Some((synced, synced_at)) = ctx.memos.drift_check_due(object, fingerprint) {
        Some((synced, synced_at, Hint::SyncExpired))
    } else {
        synced_before_start(object, ctx, &desired)
            .map(|synced| (synced, ctx.started, Hint::SyncedBeforeStart))
    };
    let listing = match &hinted {
        Some((_, synced_at, hint)) => {
            if *hint == Hint::SyncedBeforeStart {
                target.first_listing().await;
            }
            target.drift(&desired, *synced_at)
        }
        None => None,
    };
    // A new PodIamRole, that never got as far as IAM and adopts nothing.
    let new = object.status.as_ref().is_none_or(|s| s.role_name.is_none()) && !object.spec.adopt;
    let facts = Facts {
        known,
        hint: hinted.as_ref().map(|(_, _, hint)| *hint),
        listing,
        spare_budget: target.iam.has_spare_calls(DRIFT_CHECK_CALLS),
        name_free: new && target.last_listed_role(&desired.name) == Some(None),
    };
    match (sync_check::decide(&facts), memo, hinted) {
        (Decision::InSync { remember: false }, Some(Memo::Synced(role)), _) => Synced::Role(role),
        (Decision::InSync { remember: true }, _, Some((role, _, _))) => {
            ctx.memos
                .remember(object, fingerprint, Memo::Synced(role.clone()));
            Synced::Role(role)
        }
        (Decision::RetryLater, Some(Memo::Failed { outcome, retry_at }), _) => {
            Synced::Later(next_action(&outcome, retry_at, ctx))
        }
        (Decision::DeferCheck, _, _) => {
            debug!("IAM budget busy, drift check deferred");
            Synced::Later(Action::requeue(ctx.drift_check_deferral(object)))
        }
        // Converge; also what any other combination would safely come to.
        (decision, _, _) => {
            let look = match decision {
                Decision::Converge { read_first: false } => Look::Nothing,
                _ => Look::ListingFirst,
            };
            if facts.hint.is_some() {
                debug!("the listing suggests drift, or there is none: reading the role");
            }
            match converge(object, ctx, target, desired, look).await {
                Ok(role) => {
                    ctx.memos
                        .remember(object, fingerprint, Memo::Synced(role.clone()));
                    Synced::Role(role)
                }
                Err(outcome) => {
                    let retry_at = retry_time(object, ctx, &outcome);
                    let memo = Memo::Failed {
                        outcome: outcome.clone(),
                        retry_at,
                    };
                    Synced::Failed(Box::new(Ending {
                        outcome,
                        retry_at,
                        memo: Some((fingerprint, memo)),
                        stale_pods: None,
                    }))
                }
            }
        }
    }
}

/// Step: annotate the ServiceAccount with the role, publish its AWS config for role
/// chains, and, once it is ready, count (and restart) the pods that run without it.
async fn bind(
    object: &PodIamRole,
    ctx: &Context,
    target: &Target,
    role: SyncedRole,
) -> Result<Ending, Error> {
    let arn = role.arn.clone();
    let outcome = service_account::annotate(object, ctx, target, role.name, role.arn).await?;
    let outcome = aws_config::publish(object, ctx, outcome).await?;
    let stale_pods = if outcome.is_ready() {
        restart::restart_stale(object, ctx, &arn).await
    } else {
        None
    };
    Ok(Ending {
        stale_pods,
        ..Ending::of(outcome)
    })
}

/// The first reconcile of this term of an object whose status says its role was in sync
/// at this generation: the sync the memo would hold, had this process made it. The
/// listing decides whether IAM still matches (description and session duration, which
/// it lacks, come from the spec of that generation).
fn synced_before_start(
    object: &PodIamRole,
    ctx: &Context,
    desired: &DesiredRole,
) -> Option<SyncedRole> {
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
    in_sync.then(|| SyncedRole {
        name: desired.name.clone(),
        arn: desired.arn.clone(),
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

/// What `converge` looks at before it plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    /// Nothing: the last listing has no role of that name, and CreateRole refuses a
    /// name taken since.
    Nothing,
    /// `GetRole` (whose role it is, fresh), and the policies from the listing when it
    /// can stand for them, else read.
    ListingFirst,
    /// `GetRole` and every policy read.
    Reads,
}

/// Converges IAM with `desired`: the synced role, or the reported reason it could not.
async fn converge(
    object: &PodIamRole,
    ctx: &Context,
    target: &Target,
    desired: DesiredRole,
    look: Look,
) -> Result<SyncedRole, Outcome> {
    let role_name = desired.name.clone();
    let iam_failed = |error: IamError| Outcome::IamFailed {
        role_name: role_name.clone(),
        failure: failure::classify(&error),
    };
    let observed = match look {
        Look::Nothing => None,
        Look::ListingFirst | Look::Reads => observe_role_or_listing(
            target.iam.as_ref(),
            &role_name,
            |summary| desired.owner.may_take(&summary.tags, desired.adoption),
            |summary| {
                (look == Look::ListingFirst)
                    .then(|| target.listed_policies(&desired, summary))
                    .flatten()
            },
        )
        .await
        .map_err(iam_failed)?,
    };
    let listed = matches!(observed, Some((_, PoliciesFrom::Listing)));
    let observed = observed.map(|(observed, _)| observed);
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
        Err(error) if look == Look::Nothing && error.kind() == IamErrorKind::AlreadyExists => {
            debug!(role = %role_name, "created since the listing: reading it");
            return Box::pin(converge(object, ctx, target, desired, Look::Reads)).await;
        }
        // Not a passing fault: the listing may be out of date (IAM is eventually
        // consistent), so read rather than guess.
        Err(error) if listed && error.kind() != IamErrorKind::Retryable => {
            debug!(role = %role_name, %error, "planned from the listing: reading the role");
            return Box::pin(converge(object, ctx, target, desired, Look::Reads)).await;
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
    let arn = observed.map_or(desired.arn, |o| o.summary.arn);
    Ok(SyncedRole {
        name: role_name,
        arn,
    })
}

/// Runs `ops` in order. With `missing_is_done`, "already gone" counts as done; an inline
/// policy already gone always counts as deleted.
pub(super) async fn execute(
    target: &Target,
    role_name: &str,
    ops: &[IamOp],
    missing_is_done: bool,
) -> Result<(), IamError> {
    for op in ops {
        let gone_is_done = missing_is_done || matches!(op, IamOp::DeleteInlinePolicy(_));
        match target
            .writes
            .execute(target.iam.as_ref(), role_name, op)
            .await
        {
            Err(error) if gone_is_done && error.kind() == IamErrorKind::NotFound => {}
            result => result?,
        }
    }
    Ok(())
}
