//! The caches and IO handles a reconcile works with, and the per-object bookkeeping
//! (memo, consecutive failures) that lives as long as its object.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use tokio::sync::watch;

use kube::{
    Client, ResourceExt,
    api::PartialObjectMeta,
    runtime::reflector::{ObjectRef, Store},
};

use super::{gate::Gate, memo::Memos};
use crate::accounts::{Accounts, Target};
use crate::k8s::{events::Events, indexed::Indexed, service_account::ROLE_ARN_ANNOTATION};
use crate::metrics::Metrics;
use irsa_api::{DeletionPolicy, PodIamRole, PodIamRoleAccount, PodIamRoleGuardrail};
use irsa_core::{
    account,
    account::AccountProblem,
    chain::CONFIG_MAP_ANNOTATION,
    config::OperatorConfig,
    failure::{jitter_for, transient_delay},
    per_object::PerObject,
    status::Outcome,
};

/// The caches one Controller's reconciles read.
#[derive(Clone)]
pub struct Caches {
    /// ServiceAccount metadata in the watched scope, for releasing old annotations.
    pub service_accounts: Store<PartialObjectMeta<ServiceAccount>>,
    /// Namespace labels, for guardrail selectors.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub guardrails: Store<PodIamRoleGuardrail>,
    /// The ServiceAccounts above that carry an annotation of ours, by its value.
    pub annotated_service_accounts: Indexed<AnnotationValue, String>,
    /// The PodIamRoles in scope.
    pub roles: Store<PodIamRole>,
    /// The same PodIamRoles by namespace: for quotas and ServiceAccount ownership.
    pub roles_by_namespace: Indexed<String, Arc<PodIamRole>>,
    /// The target accounts PodIamRoles may name in `spec.account`.
    pub accounts: Store<PodIamRoleAccount>,
    /// Opens once every cache above has listed: no write may happen on an unknown guardrail.
    pub synced: SyncGate,
}

/// The annotations of ours that `annotated_service_accounts` indexes: an annotation left
/// on a ServiceAccount the spec no longer names is found by its value.
pub const INDEXED_ANNOTATIONS: [&str; 2] = [ROLE_ARN_ANNOTATION, CONFIG_MAP_ANNOTATION];

/// An annotation of ours with its value, in a namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AnnotationValue {
    pub namespace: String,
    pub key: &'static str,
    pub value: String,
}

/// Opens once, when a term's caches have listed and its first provider check is in.
/// Reconciles wait for it, and it opens with one reconcile of everything: each object is
/// reconciled once at start, whatever the watches' first lists trigger.
#[derive(Clone)]
pub struct SyncGate(Arc<watch::Sender<bool>>);

impl Default for SyncGate {
    fn default() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }
}

impl SyncGate {
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    pub fn is_open(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when the gate is open.
    pub async fn opened(&self) {
        let mut open = self.0.subscribe();
        // The sender lives in `self`: the wait ends only by opening.
        let _ = open.wait_for(|open| *open).await;
    }
}

/// The shortest wait of a drift check deferred for a busy IAM budget.
const DRIFT_CHECK_MIN_DEFERRAL: Duration = Duration::from_secs(1);

/// What every watched scope's Controller shares.
#[derive(Clone)]
pub struct Shared {
    pub client: Client,
    /// The operator's settings in its own account.
    pub config: OperatorConfig,
    pub recorder: Events,
    pub metrics: Arc<Metrics>,
    /// The operator's own account (IAM, provider, listing) and the target accounts.
    pub accounts: Arc<Accounts>,
    /// For PodIamRoles that set no `spec.deletionPolicy`.
    pub default_deletion_policy: DeletionPolicy,
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
    /// Reconciles running at once, and the order the waiting ones start in.
    pub(super) gate: Gate,
    /// Consecutive failures per object UID, for its own backoff.
    failures: Mutex<PerObject<u32>>,
}

impl Context {
    pub fn new(
        shared: Shared,
        resync_interval: Duration,
        concurrency: usize,
        caches: Caches,
    ) -> Self {
        Self {
            shared,
            started: Instant::now(),
            resync_interval,
            caches,
            memos: Memos::new(resync_interval),
            gate: Gate::new(concurrency),
            failures: Mutex::default(),
        }
    }

    /// The account `object`'s role lives in: the operator's own unless `spec.account`
    /// names a target account, which must exist, grant the object's namespace, and let
    /// the operator assume its management role.
    pub(super) async fn target(&self, object: &PodIamRole) -> Result<Target, Outcome> {
        let Some(account) = &object.spec.account else {
            return Ok(self.shared.accounts.home().clone());
        };
        let namespace = object.namespace().unwrap_or_default();
        let labels = self
            .caches
            .namespaces
            .get(&ObjectRef::new(&namespace))
            .map(|ns| ns.labels().clone())
            .unwrap_or_default();
        let declared = self.caches.accounts.get(&ObjectRef::new(account));
        if declared.is_none() {
            self.shared.accounts.forget(account).await;
        }
        let granted =
            account::admit(account, |_| declared.as_deref(), &labels).map_err(|refusal| {
                Outcome::AccountUnavailable(AccountProblem::new(refusal, account, &namespace))
            })?;
        self.shared
            .accounts
            .target(granted)
            .await
            .map_err(Outcome::AccountUnavailable)
    }

    /// Counts one more consecutive failure of `object` and returns its retry delay.
    /// Each object backs off on its own: a failing one never delays the others.
    pub(super) fn next_backoff(&self, object: &PodIamRole) -> Duration {
        let key = object.uid().unwrap_or_else(|| object.name_any());
        let mut failures = self.failures.lock().expect("failures lock");
        let count = failures.get_or_insert(&key, || 0);
        *count = count.saturating_add(1);
        transient_delay(*count, jitter_for(&key, *count))
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

    /// At shutdown: reconciles waiting for a slot return without running.
    pub fn stop_starting(&self) {
        self.gate.close();
    }

    pub(super) fn reset_backoff(&self, object: &PodIamRole) {
        if let Some(uid) = object.uid() {
            self.failures.lock().expect("failures lock").remove(&uid);
        }
    }

    /// The object with this UID is gone (its delete event): nothing of it stays.
    pub fn forget(&self, uid: &str) {
        self.memos.forget_uid(uid);
        self.shared.recorder.forget(uid);
        self.failures.lock().expect("failures lock").remove(uid);
    }

    /// Drops what is kept of objects the PodIamRole cache no longer holds: those deleted
    /// while no delete event reached this process (operator down, a relist), and entries
    /// a reconcile wrote after its object's delete event.
    pub fn sweep(&self) {
        let roles = self.caches.roles.state();
        let live: HashSet<&str> = roles
            .iter()
            .filter_map(|role| role.metadata.uid.as_deref())
            .collect();
        self.memos.retain_live(|uid| live.contains(uid));
        self.failures
            .lock()
            .expect("failures lock")
            .retain_live(|uid| live.contains(uid));
    }
}
