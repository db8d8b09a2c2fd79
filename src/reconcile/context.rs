//! The caches and IO handles a reconcile works with, and the per-object bookkeeping
//! (memo, consecutive failures) that lives as long as the process.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::AtomicBool},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Client, ResourceExt,
    api::PartialObjectMeta,
    runtime::{events::Recorder, reflector::Store},
};
use tokio::sync::{Notify, watch};
use tracing::debug;

use super::memo::Memos;
use crate::{
    config::OperatorConfig,
    crd::{DEFAULT_AUDIENCE, DeletionPolicy, PodIamRole},
    desired::DesiredRole,
    failure::{jitter_for, transient_delay},
    guardrail::PodIamRoleGuardrail,
    iam::IamApi,
    metrics::Metrics,
    observer::{AccountRoles, Listing},
    oidc::{ProviderCheck, problem_for_audience},
    snapshot::{self, Drift, KeptRole, ObservedListing},
    status::ProviderHealth,
};

/// The caches one Controller's reconciles read.
#[derive(Clone)]
pub struct Caches {
    /// ServiceAccount metadata in the watched scope, for releasing old annotations.
    pub service_accounts: Store<PartialObjectMeta<ServiceAccount>>,
    /// Namespace labels, for guardrail selectors.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub guardrails: Store<PodIamRoleGuardrail>,
    /// The PodIamRoles in scope, for quotas and ServiceAccount ownership.
    pub roles: Store<PodIamRole>,
    /// Set once every cache above has listed: no write may happen on an unknown guardrail.
    pub synced: Arc<AtomicBool>,
}

/// How long a reconcile after a restart waits for the first listing before it reads
/// role by role instead: a few pages, each of 1,000 roles.
const FIRST_LISTING_WAIT: Duration = Duration::from_secs(60);

/// The shortest wait of a drift check deferred for a busy IAM budget.
const DRIFT_CHECK_MIN_DEFERRAL: Duration = Duration::from_secs(1);

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
    /// For PodIamRoles that set no `spec.deletionPolicy`.
    pub default_deletion_policy: DeletionPolicy,
    /// The latest bulk listing of the account's roles, for drift checks.
    pub account_roles: AccountRoles,
    /// `--restart-workloads`: count pods without their role, restart opted-in workloads.
    pub restart_workloads: bool,
}

/// The IO handles a reconcile works with.
pub struct Context {
    pub shared: Shared,
    /// When this replica's term began: every sync a status reports from before then is
    /// in the listings of the term.
    pub(super) started: Instant,
    pub resync_interval: Duration,
    pub caches: Caches,
    pub(super) memos: Memos,
    /// Consecutive failures per object UID, for its own backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(shared: Shared, resync_interval: Duration, caches: Caches) -> Self {
        Self {
            shared,
            started: Instant::now(),
            resync_interval,
            caches,
            memos: Memos::new(resync_interval),
            failures: Mutex::default(),
        }
    }

    /// The provider's state for `object`'s audience.
    pub(super) fn provider_health(&self, object: &PodIamRole) -> ProviderHealth {
        let audience = object.spec.audience.as_deref().unwrap_or(DEFAULT_AUDIENCE);
        let Some(check) = self.shared.provider.borrow().clone() else {
            return ProviderHealth::Unknown;
        };
        match problem_for_audience(&check, &self.shared.config.oidc_provider_arn(), audience) {
            None => ProviderHealth::Healthy,
            Some(problem) => {
                if let Some(poke) = &self.shared.provider_poke {
                    poke.notify_one();
                }
                ProviderHealth::Unhealthy(problem)
            }
        }
    }

    /// Counts one more consecutive failure of `object` and returns its retry delay.
    /// Each object backs off on its own: a failing one never delays the others.
    pub(super) fn next_backoff(&self, object: &PodIamRole) -> Duration {
        let key = object.uid().unwrap_or_else(|| object.name_any());
        let mut failures = self.failures.lock().expect("failures lock");
        let count = failures.entry(key.clone()).or_insert(0);
        *count = count.saturating_add(1);
        transient_delay(*count, jitter_for(&key, *count))
    }

    /// What the latest bulk listing says about `desired`, synced at `synced_at`; `None`
    /// when there is no listing to go by.
    pub(super) fn drift(&self, desired: &DesiredRole, synced_at: Instant) -> Option<Drift> {
        let listing = self.shared.account_roles.borrow();
        (listing.snapshot()).map(|roles| snapshot::drift(roles, desired, synced_at))
    }

    /// Waits until the first listing of the term has finished or failed, for a while.
    pub(super) async fn first_listing(&self) {
        let mut listing = self.shared.account_roles.clone();
        let done = listing.wait_for(|listing| !matches!(listing, Listing::Pending));
        if tokio::time::timeout(FIRST_LISTING_WAIT, done)
            .await
            .is_err()
        {
            debug!("no listing yet: reading the role");
        }
    }

    /// The role `name` in the latest listing: `None` without a listing, `Some(None)` when
    /// the listing has no such role under the role path.
    pub(super) fn listed_role(&self, name: &str) -> Option<Option<KeptRole>> {
        let listing = self.shared.account_roles.borrow();
        (listing.snapshot()).map(|roles| roles.role(name).cloned())
    }

    /// The observed role `name` as the latest listing shows it, if it does.
    pub(super) fn observed_role(&self, name: &str) -> Option<ObservedListing> {
        let listing = self.shared.account_roles.borrow();
        listing.snapshot()?.observed(name).cloned()
    }

    /// How long a drift check waits when the IAM budget is busy: long enough to let the
    /// waiting work through, jittered so deferred checks do not return together.
    pub(super) fn drift_check_deferral(&self, object: &PodIamRole) -> Duration {
        let spread = (self.resync_interval / 10).max(DRIFT_CHECK_MIN_DEFERRAL);
        let key = object.uid().unwrap_or_else(|| object.name_any());
        // Varies between deferrals of the same object, so it does not always land alike.
        let attempt = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.subsec_millis());
        DRIFT_CHECK_MIN_DEFERRAL + spread.mul_f64(jitter_for(&key, attempt))
    }

    pub(super) fn reset_backoff(&self, object: &PodIamRole) {
        if let Some(uid) = object.uid() {
            self.failures.lock().expect("failures lock").remove(&uid);
        }
    }
}
