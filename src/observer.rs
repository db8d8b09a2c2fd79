//! IO: one bulk listing of the account's roles per interval: `GetAccountAuthorizationDetails`,
//! up to 1,000 roles a call. Drift checks compare against it instead of reading each role
//! (see `snapshot`), and it is where orphans are found (see `orphan_monitor`).

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use tokio::sync::watch;
use tracing::{debug, warn};

use crate::{
    iam::{IamApi, list_all_roles},
    orphan_monitor::OrphanMonitor,
    orphans::{LiveObject, OrphanTracker},
    snapshot::Snapshot,
};

/// The latest listing of this term (the observer runs while this replica leads).
#[derive(Debug, Clone, Default)]
pub enum Listing {
    /// None has finished yet.
    #[default]
    Pending,
    /// The last pass failed: there is none to trust until the next one.
    Failed,
    Done(Arc<Snapshot>),
}

impl Listing {
    pub fn snapshot(&self) -> Option<&Snapshot> {
        match self {
            Listing::Done(snapshot) => Some(snapshot),
            Listing::Pending | Listing::Failed => None,
        }
    }
}

pub type AccountRoles = watch::Receiver<Listing>;

pub struct AccountObserver {
    pub iam: Arc<dyn IamApi>,
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
                }
                Err(error) => {
                    // An old listing would hide drift: checks read role by role meanwhile.
                    warn!(%error, "cannot list the account's IAM roles; drift checks read each role until the next listing");
                    publish.send_replace(Listing::Failed);
                }
            }
            tokio::time::sleep(self.interval).await;
        }
    }
}
