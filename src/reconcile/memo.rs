//! What the last reconcile of each object established, so that triggers which cannot
//! have changed IAM (our own status patch, ServiceAccount events, a retried Kubernetes
//! write, a stale event after deletion) cost no IAM call.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use kube::ResourceExt;

use irsa_api::PodIamRole;
use irsa_core::{per_object::PerObject, status::Outcome};

/// A role that matched its spec.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SyncedRole {
    pub name: String,
    pub arn: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Memo {
    /// IAM matched the spec.
    Synced(SyncedRole),
    /// IAM failed; nothing is retried before `retry_at` (never, when `None`) unless
    /// the object or its guardrails change.
    Failed {
        outcome: Outcome,
        retry_at: Option<Instant>,
    },
    /// Cleanup is done in IAM: retries and stale events skip straight to Kubernetes.
    CleanedUp,
}

struct Entry {
    generation: Option<i64>,
    /// Fingerprint of the guardrails that applied: a change to them must be re-evaluated.
    guardrails: u64,
    at: Instant,
    memo: Memo,
}

pub(super) struct Memos {
    /// Dropped with the object (see `Context::forget`), not by age.
    entries: Mutex<PerObject<Entry>>,
    /// A sync is trusted this long; after it the resync reads IAM again to repair drift.
    sync_fresh_for: Duration,
}

impl Memos {
    pub(super) fn new(resync_interval: Duration) -> Self {
        Self {
            entries: Mutex::default(),
            sync_fresh_for: resync_interval / 2,
        }
    }

    /// The memo that still holds for `object` as it is now, if any.
    pub(super) fn lookup(&self, object: &PodIamRole, guardrails: u64) -> Option<Memo> {
        let entries = self.entries.lock().expect("memo lock");
        let entry = entries.get(&object.uid()?)?;
        let still_holds = entry.generation == object.metadata.generation
            && entry.guardrails == guardrails
            && match &entry.memo {
                Memo::Synced(_) => entry.at.elapsed() < self.sync_fresh_for,
                Memo::Failed { retry_at, .. } => retry_at.is_none_or(|at| Instant::now() < at),
                Memo::CleanedUp => false,
            };
        still_holds.then(|| entry.memo.clone())
    }

    /// Whether `object`, as it is now, was last left in sync: a trigger now is a re-check.
    pub(super) fn in_sync(&self, object: &PodIamRole) -> bool {
        let entries = self.entries.lock().expect("memo lock");
        object.metadata.deletion_timestamp.is_none()
            && object
                .uid()
                .and_then(|uid| entries.get(&uid))
                .is_some_and(|entry| {
                    entry.generation == object.metadata.generation
                        && matches!(entry.memo, Memo::Synced(_))
                })
    }

    /// Whether anything is remembered of `object` in this process.
    pub(super) fn knows(&self, object: &PodIamRole) -> bool {
        let entries = self.entries.lock().expect("memo lock");
        object.uid().is_some_and(|uid| entries.contains(&uid))
    }

    /// The synced role and when it was synced, when the only reason to call IAM is the
    /// periodic drift check: nothing the object depends on changed since, and the sync is
    /// no longer fresh.
    pub(super) fn drift_check_due(
        &self,
        object: &PodIamRole,
        guardrails: u64,
    ) -> Option<(SyncedRole, Instant)> {
        let entries = self.entries.lock().expect("memo lock");
        let entry = entries.get(&object.uid()?)?;
        let Memo::Synced(role) = &entry.memo else {
            return None;
        };
        let due = entry.generation == object.metadata.generation
            && entry.guardrails == guardrails
            && entry.at.elapsed() >= self.sync_fresh_for;
        due.then(|| (role.clone(), entry.at))
    }

    /// Whether IAM cleanup already finished for this object (whatever its generation:
    /// deletion itself may bump it).
    pub(super) fn cleaned_up(&self, object: &PodIamRole) -> bool {
        let entries = self.entries.lock().expect("memo lock");
        object
            .uid()
            .and_then(|uid| entries.get(&uid))
            .is_some_and(|entry| entry.memo == Memo::CleanedUp)
    }

    pub(super) fn remember(&self, object: &PodIamRole, guardrails: u64, memo: Memo) {
        let Some(uid) = object.uid() else { return };
        self.entries.lock().expect("memo lock").insert(
            uid,
            Entry {
                generation: object.metadata.generation,
                guardrails,
                at: Instant::now(),
                memo,
            },
        );
    }

    pub(super) fn forget(&self, object: &PodIamRole) {
        if let Some(uid) = object.uid() {
            self.forget_uid(&uid);
        }
    }

    pub(super) fn forget_uid(&self, uid: &str) {
        self.entries.lock().expect("memo lock").remove(uid);
    }

    /// Keeps the memos of the objects `live` holds.
    pub(super) fn retain_live(&self, live: impl FnMut(&str) -> bool) {
        self.entries.lock().expect("memo lock").retain_live(live);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().expect("memo lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use irsa_core::testing::pod_iam_role;

    fn role() -> SyncedRole {
        SyncedRole {
            name: "r".into(),
            arn: "arn:r".into(),
        }
    }

    fn synced() -> Memo {
        Memo::Synced(role())
    }

    #[test]
    fn a_memo_holds_for_the_same_generation_and_guardrails_only() {
        let memos = Memos::new(Duration::from_secs(600));
        let mut object = pod_iam_role("shop", "payments");
        memos.remember(&object, 7, synced());
        assert_eq!(memos.lookup(&object, 7), Some(synced()));
        assert_eq!(memos.lookup(&object, 8), None, "guardrails changed");
        object.metadata.generation = Some(2);
        assert_eq!(memos.lookup(&object, 7), None, "spec changed");
    }

    #[test]
    fn a_sync_expires_for_the_resync() {
        let memos = Memos::new(Duration::ZERO);
        let object = pod_iam_role("shop", "payments");
        memos.remember(&object, 0, synced());
        assert_eq!(
            memos.drift_check_due(&object, 0).map(|(role, _)| role),
            Some(role())
        );
        assert!(
            memos.drift_check_due(&object, 1).is_none(),
            "guardrails changed: not only drift"
        );
        assert_eq!(memos.lookup(&object, 0), None);
    }

    #[test]
    fn failures_hold_until_their_retry_time_or_forever() {
        let memos = Memos::new(Duration::from_secs(600));
        let object = pod_iam_role("shop", "payments");
        let failed = |retry_at| Memo::Failed {
            outcome: Outcome::InvalidSpec("x".into()),
            retry_at,
        };
        memos.remember(&object, 0, failed(None));
        assert!(memos.lookup(&object, 0).is_some());
        memos.remember(&object, 0, failed(Some(Instant::now())));
        assert_eq!(memos.lookup(&object, 0), None, "retry time reached");
    }

    #[test]
    fn cleanup_is_remembered_across_generations() {
        let memos = Memos::new(Duration::from_secs(600));
        let mut object = pod_iam_role("shop", "payments");
        assert!(!memos.cleaned_up(&object));
        memos.remember(&object, 0, Memo::CleanedUp);
        object.metadata.generation = Some(9);
        assert!(memos.cleaned_up(&object));
        assert_eq!(memos.lookup(&object, 0), None);
        memos.forget(&object);
        assert!(!memos.cleaned_up(&object));
    }

    #[test]
    fn memos_go_with_their_objects() {
        let memos = Memos::new(Duration::from_secs(600));
        for cycle in 0..20 {
            let objects: Vec<PodIamRole> = (0..100)
                .map(|i| {
                    let mut object = pod_iam_role("shop", &format!("app-{i}"));
                    object.metadata.uid = Some(format!("{cycle}-{i}"));
                    object
                })
                .collect();
            for object in &objects {
                memos.remember(object, 0, synced());
                memos.remember(object, 0, Memo::CleanedUp);
            }
            let (evented, listed) = objects.split_at(50);
            for object in evented {
                memos.forget_uid(&object.uid().expect("uid"));
            }
            assert_eq!(memos.len(), listed.len());
            // The rest left while no delete event came: the next sweep finds them gone.
            memos.retain_live(|_| false);
            assert_eq!(memos.len(), 0, "cycle {cycle}");
        }
    }
}
