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

/// The latest listing, or `None` while there is none to trust.
pub type AccountRoles = watch::Receiver<Option<Arc<Snapshot>>>;

pub struct AccountObserver {
    pub iam: Arc<dyn IamApi>,
    pub role_path: String,
    pub interval: Duration,
    /// `None`: orphans are not looked for (in target accounts).
    pub orphans: Option<OrphanMonitor>,
}

impl AccountObserver {
    /// Lists now, then every interval. `live` lists the PodIamRoles that exist: start this
    /// only once every PodIamRole cache has synced.
    pub async fn run(
        self,
        publish: watch::Sender<Option<Arc<Snapshot>>>,
        live: impl Fn() -> BTreeSet<LiveObject>,
    ) {
        let mut tracker = OrphanTracker::default();
        loop {
            let started = std::time::Instant::now();
            match list_all_roles(self.iam.as_ref()).await {
                Ok(roles) => {
                    if let Some(orphans) = &self.orphans {
                        orphans.review(&mut tracker, &roles, &live()).await;
                    }
                    let snapshot = Snapshot::new(started, roles, &self.role_path);
                    debug!(
                        roles = snapshot.len(),
                        "listed the roles under the role path"
                    );
                    publish.send_replace(Some(Arc::new(snapshot)));
                }
                Err(error) => {
                    // An old listing would hide drift: checks read role by role meanwhile.
                    warn!(%error, "cannot list the account's IAM roles; drift checks read each role until the next listing");
                    publish.send_replace(None);
                }
            }
            tokio::time::sleep(self.interval).await;
        }
    }
}
