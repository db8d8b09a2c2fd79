//! One reconcile of a PodIamRole, inside kube-runtime's `finalizer()`, as named steps:
//!
//! - apply ([`apply`]): wait for the caches → guardrails ([`guardrails`]) → validate the
//!   spec (desired role) → claim the
//!   ServiceAccount ([`service_account`]) → sync the IAM role (desired, observe, plan,
//!   execute; or, in mode Observe, only check the existing role, [`observe`]) → annotate
//!   the ServiceAccount → publish the AWS config file of a role chain ([`aws_config`]) →
//!   publish the status ([`publish`]);
//! - cleanup ([`cleanup`]): delete what the role holds and the role, then release the
//!   annotations and delete the AWS config ConfigMap.
//!
//! The memo ([`memo`]) lets triggers that cannot have changed IAM skip it; failures are
//! classified by the pure table in `irsa_core::failure`.

mod apply;
mod aws_config;
mod cleanup;
mod context;
mod gate;
pub mod guardrails;
mod memo;
mod observe;
mod publish;
mod restart;
mod service_account;

use std::{sync::Arc, time::Instant};

use kube::{
    Api, ResourceExt,
    runtime::{
        controller::Action,
        finalizer::{self, Event as Finalizer},
        reflector::ObjectRef,
    },
};
use tracing::{debug, instrument, warn};

pub use context::{AnnotationValue, Caches, Context, INDEXED_ANNOTATIONS, Shared, SyncGate};

use self::gate::Priority;
use crate::iam::IamError;
use irsa_api::{FINALIZER, PodIamRole};
use irsa_core::{config::OperatorConfig, failure, ownership::Owner};

/// No single reconcile may hold a worker longer than this, whatever hangs below it;
/// the IAM and Kubernetes clients have shorter timeouts of their own.
const RECONCILE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// Retry after a finalizer patch met a newer object than the cache's.
const STALE_CACHE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Iam(#[from] IamError),
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[source] kube::Error),
    #[error("finalizer handling failed: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    #[error("reconcile did not finish within {RECONCILE_DEADLINE:?}")]
    Deadline,
    /// The target account of a PodIamRole being deleted cannot be used.
    #[error("{0}")]
    Account(String),
    /// Cleanup found no role, too soon after the previous process died to believe it: the
    /// finalizer stays until IAM is read again after this wait.
    #[error("no IAM role found yet, but a write of the previous process may still land")]
    LookAgainIn(std::time::Duration),
}

impl Error {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Iam(e) => failure::classify(e).reason,
            Error::Kube(_) => "kubernetes",
            Error::Finalizer(_) => "finalizer",
            Error::Deadline => "deadline",
            Error::Account(_) => "account",
            Error::LookAgainIn(_) => "late_write_grace",
        }
    }
}

pub(crate) fn owner_of(object: &PodIamRole, config: &OperatorConfig) -> Owner {
    Owner::of(object, &config.cluster_name)
}

#[instrument(skip_all)]
pub async fn reconcile(object: Arc<PodIamRole>, ctx: Arc<Context>) -> Result<Action, Error> {
    let priority = if ctx.memos.in_sync(&object) {
        Priority::Recheck
    } else {
        Priority::Work
    };
    // None: shutting down; what has not started stays for the next process.
    let Some(_slot) = ctx.gate.enter(priority).await else {
        return Ok(Action::await_change());
    };
    // The wait may have been long: go by the object as it is now.
    let Some(object) = ctx.caches.roles.get(&ObjectRef::from_obj(&*object)) else {
        return Ok(Action::await_change());
    };
    // Boxed: a waiting reconcile stays small, however many wait.
    Box::pin(run(object, &ctx)).await
}

async fn run(object: Arc<PodIamRole>, ctx: &Context) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<PodIamRole> = Api::namespaced(ctx.shared.client.clone(), &namespace);
    let run = finalizer::finalizer(&api, FINALIZER, object.clone(), |event| async {
        match event {
            Finalizer::Apply(object) => apply::apply(&object, ctx).await,
            Finalizer::Cleanup(object) => cleanup::cleanup(&object, ctx).await,
        }
    });
    let result = match tokio::time::timeout(RECONCILE_DEADLINE, run).await {
        Err(_elapsed) => Err(Error::Deadline),
        Ok(result) => result.or_else(|error| match error {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => Err(e),
            // A stale event for an object whose finalizer is already gone: done.
            finalizer::Error::RemoveFinalizer(e) if is_gone(&e) => {
                debug!("finalizer already removed");
                Ok(Action::await_change())
            }
            // The cache lags behind the finalizer just added (several triggers fire at start):
            // the watch brings the newer object. A normal wait, not a failure; an object
            // that is gone needs nothing more.
            finalizer::Error::AddFinalizer(e) if is_gone(&e) => {
                debug!("cache behind the server's finalizers, retrying");
                let gone = matches!(&e, kube::Error::Api(status) if status.code == 404);
                Ok(if gone {
                    Action::await_change()
                } else {
                    Action::requeue(STALE_CACHE_RETRY)
                })
            }
            other => Err(Error::Finalizer(Box::new(other))),
        }),
    };
    let failure = result.as_ref().err().map(Error::metric_label);
    ctx.shared
        .metrics
        .record_reconcile(started.elapsed(), failure);
    if result.is_ok() {
        ctx.reset_backoff(&object);
    }
    result
}

/// 404: the object is gone; 409/422: the finalizer test failed, the server's object is
/// newer than the cached one.
fn is_gone(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if [404, 409, 422].contains(&status.code))
}

/// Failures that reach here (Kubernetes writes, cleanup, deadlines) back off per object,
/// jittered and capped low; IAM failures during apply are reported in the status and
/// scheduled by the classification table instead.
pub fn error_policy(object: Arc<PodIamRole>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Error::LookAgainIn(wait) = error {
        debug!(%error, ?wait, "looking again");
        return Action::requeue(*wait);
    }
    let delay = match error {
        Error::Iam(e) => match failure::classify(e).retry {
            failure::Retry::Backoff => ctx.next_backoff(&object),
            // Cleanup cannot wait for a change that may never come: retry slowly.
            failure::Retry::After(_) | failure::Retry::OnChange => failure::ACCESS_DENIED_RETRY,
        },
        _ => ctx.next_backoff(&object),
    };
    warn!(%error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
