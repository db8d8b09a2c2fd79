//! IO: one bulk listing of the account's roles per interval: `GetAccountAuthorizationDetails`,
//! up to 1,000 roles a call. Drift checks compare against it instead of reading each role
//! (see `snapshot`), and it is where orphans are found (see `orphan_monitor`).

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use tokio::sync::watch;
use tracing::{debug, warn};

use crate::{
    iam::{IamApi, Writes, list_all_roles},
    orphan_monitor::OrphanMonitor,
};
use irsa_core::{
    orphans::{LiveObject, OrphanTracker},
    snapshot::Snapshot,
};

/// The latest listing of this term (the observer runs while this replica leads).
#[derive(Debug, Clone)]
pub enum Listing {
    /// None has finished yet.
    Pending,
    /// The last pass failed: drift checks have none to trust until the next one. The last
    /// listing that finished, if any, still serves creates and deletions: CreateRole never
    /// overwrites a role that appeared since (`EntityAlreadyExists`), and IAM refuses to
    /// delete a role that gained a policy since (`DeleteConflict`); the role is then read.
    Failed(Option<Arc<Snapshot>>),
    Done(Arc<Snapshot>),
}

impl Listing {
    /// The latest listing, if the latest pass finished.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        match self {
            Listing::Done(snapshot) => Some(snapshot),
            Listing::Pending | Listing::Failed(_) => None,
        }
    }

    /// The last listing that finished, even if a pass failed since.
    pub fn last_finished(&self) -> Option<&Arc<Snapshot>> {
        match self {
            Listing::Done(snapshot) | Listing::Failed(Some(snapshot)) => Some(snapshot),
            Listing::Pending | Listing::Failed(None) => None,
        }
    }

    fn failed(&self) -> Self {
        Listing::Failed(self.last_finished().cloned())
    }
}

/// A failed pass is tried again after this, doubling up to the interval: one refused page
/// (throttling, or a listing racing writes) must not leave drift checks reading role by
/// role for a whole interval.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// How long to wait after `failures` failed passes in a row (0: the last one finished).
fn next_pass_in(interval: Duration, failures: u32) -> Duration {
    match failures {
        0 => interval,
        n => RETRY_AFTER_FAILURE
            .saturating_mul(1 << (n - 1).min(16))
            .min(interval),
    }
}

pub type AccountRoles = watch::Receiver<Listing>;

pub struct AccountObserver {
    pub iam: Arc<dyn IamApi>,
    pub writes: Arc<Writes>,
    pub role_path: String,
    pub interval: Duration,
    /// `None`: orphans are not looked for (in target accounts).
    pub orphans: Option<OrphanMonitor>,
}

impl AccountObserver {
    /// Lists now, then every interval. `live` lists the PodIamRoles that exist: start this
    /// only once every PodIamRole cache has synced. `observed` names the roles that
    /// `mode: Observe` PodIamRoles use.
    pub async fn run(
        self,
        publish: watch::Sender<Listing>,
        live: impl Fn() -> BTreeSet<LiveObject>,
        observed: impl Fn() -> BTreeSet<String>,
    ) {
        let mut tracker = OrphanTracker::default();
        let mut failures = 0;
        loop {
            let started = std::time::Instant::now();
            let mut snapshot = Snapshot::new(started, &self.role_path, observed());
            match list_all_roles(self.iam.as_ref(), |page| snapshot.add(page)).await {
                Ok(()) => {
                    if let Some(orphans) = &self.orphans {
                        orphans.review(&mut tracker, &snapshot, &live()).await;
                    }
                    debug!(
                        roles = snapshot.len(),
                        "listed the roles under the role path"
                    );
                    publish.send_replace(Listing::Done(Arc::new(snapshot)));
                    // Only now: until it is published, reconciles go by an older one.
                    self.writes.seen_by_listing(started);
                    failures = 0;
                }
                Err(error) => {
                    // An old listing would hide drift: checks read role by role meanwhile.
                    warn!(%error, "cannot list the account's IAM roles; drift checks read each role until the next listing");
                    publish.send_modify(|listing| *listing = listing.failed());
                    failures += 1;
                }
            }
            tokio::time::sleep(next_pass_in(self.interval, failures)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_pass_is_retried_sooner_backing_off_to_the_interval() {
        let interval = Duration::from_secs(15);
        let waits: Vec<u64> = (0..6)
            .map(|failures| next_pass_in(interval, failures).as_secs())
            .collect();
        assert_eq!(waits, [15, 2, 4, 8, 15, 15]);
        assert_eq!(next_pass_in(interval, u32::MAX), interval);
    }

    #[test]
    fn a_failed_pass_keeps_the_last_finished_listing_for_deletions_only() {
        let snapshot = Arc::new(Snapshot::new(
            std::time::Instant::now(),
            "/irsa/",
            BTreeSet::new(),
        ));
        let failed = Listing::Done(snapshot).failed();
        assert!(failed.snapshot().is_none());
        assert!(failed.last_finished().is_some());
        let failed_again = failed.failed();
        assert!(failed_again.last_finished().is_some());
        assert!(Listing::Pending.failed().last_finished().is_none());
    }
}
