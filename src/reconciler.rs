//! One reconcile: desired -> observe -> plan -> execute -> annotate -> status, inside
//! kube-runtime's `finalizer()`. Thin glue over the pure modules.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{PartialObjectMeta, Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{EventType, Recorder},
        finalizer::{Event as Finalizer, finalizer},
        reflector::{ObjectRef, Store},
    },
};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tracing::{info, instrument, warn};

use crate::{
    config::OperatorConfig,
    crd::{DEFAULT_AUDIENCE, DeletionPolicy, FINALIZER, PodIamRole},
    desired::{self, Owner},
    guardrail::{self, PodIamRoleGuardrail, Rule},
    iam::{IamApi, IamError, IamErrorKind, observe_role},
    k8s::{
        FIELD_MANAGER, events,
        service_account::{self, Annotation, ROLE_ARN_ANNOTATION},
    },
    metrics::Metrics,
    oidc::{ProviderCheck, problem_for_audience},
    orphans,
    plan::{self, IamOp, RoleConflict},
    status::{Outcome, ProviderHealth, next_status},
};

/// First retry delay after a retryable failure; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// Retry delays stop growing here.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Iam(#[from] IamError),
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[source] kube::Error),
    #[error("finalizer handling failed: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("caches not synced yet: guardrails must be known before any IAM write")]
    CachesNotSynced,
}

impl Error {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Iam(e) if e.kind == IamErrorKind::Terminal => "iam_terminal",
            Error::Iam(_) => "iam_retryable",
            Error::Kube(_) => "kubernetes",
            Error::Finalizer(_) => "finalizer",
            Error::CachesNotSynced => "caches_not_synced",
        }
    }
}

/// What the last successful sync of an object established. While it is fresh, triggers
/// that cannot have changed IAM (our own status patch, ServiceAccount events) skip the
/// IAM reads entirely.
#[derive(Debug, Clone)]
struct SyncMemo {
    generation: Option<i64>,
    /// The guardrails that applied: a change to them must be re-evaluated.
    guardrails: u64,
    role_name: String,
    role_arn: String,
    at: Instant,
}

/// The caches one Controller's reconciles read.
#[derive(Clone)]
pub struct Caches {
    /// ServiceAccount metadata in the watched scope, for releasing old annotations.
    pub service_accounts: Store<PartialObjectMeta<ServiceAccount>>,
    /// Namespace labels, for guardrail selectors.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub guardrails: Store<PodIamRoleGuardrail>,
    /// The PodIamRoles in scope, for namespace quotas.
    pub roles: Store<PodIamRole>,
    /// Set once every cache above has listed: no write may happen on an unknown guardrail.
    pub synced: Arc<AtomicBool>,
}

/// What every watched scope's Controller shares.
#[derive(Clone)]
pub struct Shared {
    pub client: Client,
    pub iam: Arc<dyn IamApi>,
    pub config: OperatorConfig,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub provider: watch::Receiver<Option<ProviderCheck>>,
    pub provider_poke: Option<Arc<Notify>>,
}

/// The IO handles a reconcile works with.
pub struct Context {
    pub client: Client,
    pub iam: Arc<dyn IamApi>,
    pub config: OperatorConfig,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub resync_interval: Duration,
    pub caches: Caches,
    /// The latest OIDC provider check, published by the provider monitor.
    pub provider: watch::Receiver<Option<ProviderCheck>>,
    /// Wakes the provider monitor when it can fix something (manage mode only).
    pub provider_poke: Option<Arc<Notify>>,
    failures: Mutex<HashMap<ObjectRef<PodIamRole>, u32>>,
    synced: Mutex<HashMap<String, SyncMemo>>,
}

impl Context {
    pub fn new(shared: Shared, resync_interval: Duration, caches: Caches) -> Self {
        let Shared {
            client,
            iam,
            config,
            recorder,
            metrics,
            provider,
            provider_poke,
        } = shared;
        Self {
            client,
            iam,
            config,
            recorder,
            metrics,
            resync_interval,
            caches,
            provider,
            provider_poke,
            failures: Mutex::default(),
            synced: Mutex::default(),
        }
    }

    /// The guardrail verdict for `object`, and a fingerprint of what it depended on.
    /// Errs while its namespace is not cached yet: guessing its labels could skip a guardrail.
    fn guardrail_verdict(
        &self,
        object: &PodIamRole,
    ) -> Result<(Result<guardrail::Enforced, String>, u64), Error> {
        let namespace = object.namespace().unwrap_or_default();
        let labels = self
            .caches
            .namespaces
            .get(&ObjectRef::new(&namespace))
            .ok_or(Error::CachesNotSynced)?
            .labels()
            .clone();
        let mut applicable: Vec<Arc<PodIamRoleGuardrail>> = self
            .caches
            .guardrails
            .state()
            .into_iter()
            .filter(|g| guardrail::selects(&g.spec, &labels))
            .collect();
        applicable.sort_by_key(|g| g.name_any());
        let names: Vec<String> = applicable.iter().map(|g| g.name_any()).collect();
        let rules: Vec<Rule<'_>> = applicable
            .iter()
            .zip(&names)
            .map(|(g, name)| Rule {
                name,
                spec: &g.spec,
            })
            .collect();
        let rank = guardrail::quota_rank(object, &self.caches.roles.state());
        let mut hasher = DefaultHasher::new();
        for rule in &rules {
            (
                rule.name,
                serde_json::to_string(rule.spec).unwrap_or_default(),
            )
                .hash(&mut hasher);
        }
        if rules
            .iter()
            .any(|r| r.spec.max_roles_per_namespace.is_some())
        {
            rank.hash(&mut hasher);
        }
        Ok((
            guardrail::evaluate(&object.spec, &rules, rank),
            hasher.finish(),
        ))
    }

    /// The provider's state for `object`'s audience.
    fn provider_health(&self, object: &PodIamRole) -> ProviderHealth {
        let audience = object.spec.audience.as_deref().unwrap_or(DEFAULT_AUDIENCE);
        let Some(check) = self.provider.borrow().clone() else {
            return ProviderHealth::Unknown;
        };
        match problem_for_audience(&check, &self.config.oidc_provider_arn(), audience) {
            None => ProviderHealth::Healthy,
            Some(problem) => {
                if let Some(poke) = &self.provider_poke {
                    poke.notify_one();
                }
                ProviderHealth::Unhealthy(problem)
            }
        }
    }

    fn fresh_memo(&self, object: &PodIamRole, guardrails: u64) -> Option<SyncMemo> {
        let synced = self.synced.lock().expect("memo lock");
        synced
            .get(&object.uid()?)
            .filter(|m| {
                m.generation == object.metadata.generation
                    && m.guardrails == guardrails
                    && m.at.elapsed() < self.resync_interval / 2
            })
            .cloned()
    }

    fn remember(&self, object: &PodIamRole, memo: Option<SyncMemo>) {
        let Some(uid) = object.uid() else { return };
        let mut synced = self.synced.lock().expect("memo lock");
        match memo {
            Some(memo) => synced.insert(uid, memo),
            None => synced.remove(&uid),
        };
    }
}

#[instrument(skip_all)]
pub async fn reconcile(object: Arc<PodIamRole>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<PodIamRole> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, object.clone(), |event| async {
        match event {
            Finalizer::Apply(object) => apply(&object, &ctx).await,
            Finalizer::Cleanup(object) => cleanup(&object, &ctx).await,
        }
    })
    .await
    .map_err(|error| match error {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    });
    let failure = result.as_ref().err().map(Error::metric_label);
    ctx.metrics.record_reconcile(started.elapsed(), failure);
    if result.is_ok() {
        ctx.failures
            .lock()
            .expect("failures lock")
            .remove(&ObjectRef::from_obj(&*object));
    }
    result
}

/// Retryable failures back off exponentially per object; terminal ones never reach here,
/// they end the reconcile with a status and wait for the next change.
pub fn error_policy(object: Arc<PodIamRole>, error: &Error, ctx: Arc<Context>) -> Action {
    let mut failures = ctx.failures.lock().expect("failures lock");
    let count = failures.entry(ObjectRef::from_obj(&*object)).or_insert(0);
    *count = count.saturating_add(1);
    let delay = backoff_delay(*count);
    warn!(%error, attempt = *count, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn backoff_delay(consecutive_failures: u32) -> Duration {
    let exponent = consecutive_failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_MAX)
}

fn owner_of(object: &PodIamRole, config: &OperatorConfig) -> Owner {
    Owner {
        cluster: config.cluster_name.clone(),
        namespace: object.namespace().unwrap_or_default(),
        name: object.name_any(),
        uid: object.uid().unwrap_or_default(),
    }
}

async fn apply(object: &PodIamRole, ctx: &Context) -> Result<Action, Error> {
    if !ctx.caches.synced.load(Ordering::Relaxed) {
        return Err(Error::CachesNotSynced);
    }
    let (verdict, guardrails) = ctx.guardrail_verdict(object)?;
    let enforced = match verdict {
        Ok(enforced) => enforced,
        Err(message) => {
            ctx.remember(object, None);
            return finish(object, ctx, Outcome::PolicyNotAllowed(message)).await;
        }
    };
    let (role_name, role_arn) = match ctx.fresh_memo(object, guardrails) {
        Some(memo) => (memo.role_name, memo.role_arn),
        None => match sync_role(object, ctx, &enforced).await? {
            Ok(synced) => synced,
            Err(outcome) => return finish(object, ctx, outcome).await,
        },
    };
    let namespace = object.namespace().unwrap_or_default();
    let service_account = &object.spec.service_account_name;
    release_other_service_accounts(ctx, &namespace, Some(service_account), &role_arn).await?;
    let sa_api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    let annotation = service_account::annotate(&sa_api, service_account, &role_arn)
        .await
        .map_err(Error::Kube)?;
    ctx.remember(
        object,
        Some(SyncMemo {
            generation: object.metadata.generation,
            guardrails,
            role_name: role_name.clone(),
            role_arn: role_arn.clone(),
            at: Instant::now(),
        }),
    );
    let outcome = match (annotation, ctx.provider_health(object)) {
        (Annotation::Applied, ProviderHealth::Unhealthy(problem)) => {
            Outcome::OidcProviderUnhealthy {
                role_name,
                role_arn,
                problem,
            }
        }
        (Annotation::Applied, _) => Outcome::Synced {
            role_name,
            role_arn,
        },
        (Annotation::ServiceAccountMissing, _) => Outcome::ServiceAccountNotFound {
            role_name,
            role_arn,
            service_account: service_account.clone(),
        },
    };
    finish(object, ctx, outcome).await
}

/// Brings the IAM role in line with the spec. `Ok(Err(outcome))` is a reported,
/// non-retryable stop; `Err` is a failure to retry.
async fn sync_role(
    object: &PodIamRole,
    ctx: &Context,
    enforced: &guardrail::Enforced,
) -> Result<Result<(String, String), Outcome>, Error> {
    ctx.remember(object, None);
    let owner = owner_of(object, &ctx.config);
    let mut desired = match desired::desired_role(&object.spec, owner, &ctx.config) {
        Ok(desired) => desired,
        Err(message) => return Ok(Err(Outcome::InvalidSpec(message))),
    };
    if let Some(boundary) = &enforced.permissions_boundary {
        desired.permissions_boundary = Some(boundary.clone());
    }
    let role_name = desired.name.clone();
    let observed = observe_role(ctx.iam.as_ref(), &role_name, |summary| {
        desired.owner.mismatch(&summary.tags).is_none()
    })
    .await;
    let observed = match observed {
        Ok(observed) => observed,
        Err(error) => {
            return report_iam_failure(object, ctx, &role_name, error)
                .await
                .map(Err);
        }
    };
    let ops = match plan::plan_apply(&desired, observed.as_ref()) {
        Ok(ops) => ops,
        Err(RoleConflict(message)) => {
            return Ok(Err(Outcome::RoleConflict { role_name, message }));
        }
    };
    if let Err(error) = execute(ctx, &role_name, &ops, false).await {
        return report_iam_failure(object, ctx, &role_name, error)
            .await
            .map(Err);
    }
    if let Some(first) = ops.first() {
        let (reason, verb) = match first {
            IamOp::CreateRole { .. } => ("RoleCreated", "created"),
            _ => ("RoleUpdated", "updated"),
        };
        let changes: Vec<String> = ops.iter().map(IamOp::describe).collect();
        info!(role = %role_name, ?changes, "IAM role {verb}");
        let note = format!("IAM role {role_name} {verb}: {}", changes.join(", "));
        events::publish(&ctx.recorder, object, EventType::Normal, reason, note).await;
    }
    let role_arn = observed.map_or(desired.arn, |o| o.summary.arn);
    Ok(Ok((role_name, role_arn)))
}

/// Terminal IAM errors become a reported outcome; the rest are written to the status
/// and returned for backoff.
async fn report_iam_failure(
    object: &PodIamRole,
    ctx: &Context,
    role_name: &str,
    error: IamError,
) -> Result<Outcome, Error> {
    let message = format!("{}: {} ({})", error.code, error.message, error.operation);
    if error.kind == IamErrorKind::Terminal {
        return Ok(Outcome::IamRejected {
            role_name: role_name.to_string(),
            message,
        });
    }
    let outcome = Outcome::IamUnavailable {
        role_name: role_name.to_string(),
        message,
    };
    finish(object, ctx, outcome).await?;
    Err(Error::Iam(error))
}

async fn execute(
    ctx: &Context,
    role_name: &str,
    ops: &[IamOp],
    missing_is_done: bool,
) -> Result<(), IamError> {
    for op in ops {
        match ctx.iam.execute(role_name, op).await {
            Err(error) if missing_is_done && error.kind == IamErrorKind::NotFound => {}
            result => result?,
        }
    }
    Ok(())
}

/// Removes our annotation from ServiceAccounts of `namespace` that still point at
/// `role_arn`, except `keep`: the ServiceAccount was renamed in the spec, or the
/// PodIamRole is going away.
async fn release_other_service_accounts(
    ctx: &Context,
    namespace: &str,
    keep: Option<&String>,
    role_arn: &str,
) -> Result<(), Error> {
    let stale: Vec<String> = ctx
        .caches
        .service_accounts
        .state()
        .iter()
        .filter(|sa| sa.namespace().as_deref() == Some(namespace) && Some(&sa.name_any()) != keep)
        .filter(|sa| {
            sa.annotations()
                .get(ROLE_ARN_ANNOTATION)
                .map(String::as_str)
                == Some(role_arn)
        })
        .map(|sa| sa.name_any())
        .collect();
    let sa_api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), namespace);
    for name in stale {
        service_account::remove_annotation(&sa_api, &name, role_arn)
            .await
            .map_err(Error::Kube)?;
        info!(service_account = %name, "removed role annotation from a ServiceAccount no longer named by the spec");
    }
    Ok(())
}

/// Publishes the status for `outcome` (only when it changed) and picks the next action.
async fn finish(object: &PodIamRole, ctx: &Context, outcome: Outcome) -> Result<Action, Error> {
    let old = object.status.as_ref();
    let status = next_status(
        old,
        &ctx.provider_health(object),
        &outcome,
        object.metadata.generation,
        &ctx.config.oidc_provider_arn(),
        jiff::Timestamp::now(),
    );
    if old != Some(&status) {
        let api: Api<PodIamRole> =
            Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
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
                &ctx.recorder,
                object,
                EventType::Warning,
                outcome.reason(),
                outcome.message(),
            )
            .await;
        }
    }
    Ok(match outcome {
        // The status says why; only a change to the object can help.
        Outcome::InvalidSpec(_) | Outcome::IamRejected { .. } => Action::await_change(),
        // Guardrail and namespace changes trigger a reconcile, but a quota frees up
        // when an older PodIamRole goes away: the resync notices.
        // Resync repairs drift, and notices when a conflicting role is removed.
        _ => Action::requeue(ctx.resync_interval),
    })
}

async fn cleanup(object: &PodIamRole, ctx: &Context) -> Result<Action, Error> {
    ctx.remember(object, None);
    let namespace = object.namespace().unwrap_or_default();
    let owner = owner_of(object, &ctx.config);
    let status = object.status.clone().unwrap_or_default();
    let role_name = status.role_name.unwrap_or_else(|| {
        desired::role_name(&object.spec, &owner.namespace, &owner.name, &ctx.config)
    });
    let role_arn = status
        .role_arn
        .unwrap_or_else(|| ctx.config.role_arn(&role_name));

    if object.spec.deletion_policy == DeletionPolicy::Delete {
        let observed = observe_role(ctx.iam.as_ref(), &role_name, |s| {
            owner.mismatch(&s.tags).is_none()
        })
        .await?;
        match plan::plan_delete(&role_name, &owner, observed.as_ref()) {
            Ok(ops) if ops.is_empty() => {}
            Ok(ops) => {
                execute(ctx, &role_name, &ops, true).await?;
                let note = format!("IAM role {role_name} deleted");
                events::publish(
                    &ctx.recorder,
                    object,
                    EventType::Normal,
                    "RoleDeleted",
                    note,
                )
                .await;
            }
            Err(RoleConflict(message)) => {
                warn!(role = %role_name, %message, "not deleting a role this PodIamRole does not own");
            }
        }
    } else {
        // Kept on purpose: released, so that the orphan scan never deletes it.
        let observed = ctx.iam.get_role(&role_name).await?;
        execute(
            ctx,
            &role_name,
            &orphans::plan_release(&owner, observed.as_ref()),
            true,
        )
        .await?;
    }
    release_other_service_accounts(ctx, &namespace, None, &role_arn).await?;
    let sa_api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    service_account::remove_annotation(&sa_api, &object.spec.service_account_name, &role_arn)
        .await
        .map_err(Error::Kube)?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_delay(1), Duration::from_secs(2));
        assert_eq!(backoff_delay(2), Duration::from_secs(4));
        assert_eq!(backoff_delay(5), Duration::from_secs(32));
        assert_eq!(backoff_delay(9), BACKOFF_MAX);
        assert_eq!(backoff_delay(u32::MAX), BACKOFF_MAX);
    }
}
