//! IO: what each listing of the account's roles (see `observer`) says about orphans. They
//! are reported in a metric and the log and, when the operator is told to, deleted once
//! orphaned for the grace period.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use tokio::time::Instant;
use tracing::{info, warn};

use crate::{
    iam::{IamApi, Writes, observe_role},
    metrics::Metrics,
};
use irsa_core::{
    orphans::{LiveObject, Orphan, OrphanTracker, Scope},
    plan::{RoleConflict, plan_delete},
    snapshot::Snapshot,
};

pub struct OrphanMonitor {
    pub iam: Arc<dyn IamApi>,
    pub writes: Arc<Writes>,
    pub metrics: Arc<Metrics>,
    pub scope: Scope,
    /// The grace period before an orphan is deleted; `None` only reports.
    pub delete_after: Option<Duration>,
}

impl OrphanMonitor {
    /// Reviews one listing. `live` are the PodIamRoles that exist, read after the listing
    /// (a listed role was then created for an object already known) from caches that
    /// have synced (or every role would look orphaned).
    pub async fn review(
        &self,
        tracker: &mut OrphanTracker,
        roles: &Snapshot,
        live: &BTreeSet<LiveObject>,
    ) {
        let verdict = tracker.scan(
            roles,
            live,
            &self.scope,
            Instant::now().into_std(),
            self.delete_after,
        );
        self.metrics.record_orphan_roles(verdict.orphans.len());
        for orphan in &verdict.orphans {
            warn!(
                role = %orphan.role_name,
                namespace = %orphan.owner.namespace,
                name = %orphan.owner.name,
                uid = %orphan.owner.uid,
                orphaned_for = ?orphan.orphaned_for,
                "orphaned IAM role: its PodIamRole no longer exists"
            );
        }
        for orphan in &verdict.to_delete {
            match self.delete(orphan).await {
                Ok(true) => {
                    self.metrics.record_orphan_deleted();
                    info!(role = %orphan.role_name, "orphaned IAM role deleted");
                }
                Ok(false) => {}
                Err(error) => {
                    warn!(role = %orphan.role_name, %error, "orphaned IAM role not deleted")
                }
            }
        }
    }

    /// Deletes the role the way a PodIamRole's own deletion would; false if it was gone.
    async fn delete(&self, orphan: &Orphan) -> Result<bool, String> {
        let (name, owner) = (&orphan.role_name, &orphan.owner);
        // The role's tags as read now decide, not those of the listing.
        let observed = observe_role(self.iam.as_ref(), name, |summary| {
            owner.mismatch(&summary.tags).is_none()
        })
        .await
        .map_err(|error| error.to_string())?;
        let ops =
            plan_delete(name, owner, observed.as_ref()).map_err(|RoleConflict(message)| message)?;
        for op in &ops {
            self.writes
                .execute(self.iam.as_ref(), name, op)
                .await
                .map_err(|error| error.to_string())?;
        }
        Ok(!ops.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::{fake::FakeIam, list_all_roles};
    use irsa_core::{
        plan::plan_apply,
        testing::{desired, owner},
    };

    fn monitor(iam: Arc<FakeIam>, delete_after: Option<Duration>) -> OrphanMonitor {
        let want = desired();
        OrphanMonitor {
            iam,
            writes: Arc::default(),
            metrics: Arc::new(Metrics::default()),
            scope: Scope {
                cluster: want.owner.cluster.clone(),
                namespaces: None,
            },
            delete_after,
        }
    }

    async fn create(iam: &FakeIam, managed: &str) -> String {
        let mut want = desired();
        want.managed_policy_arns.insert(managed.into());
        for op in plan_apply(&want, None).unwrap() {
            iam.execute(&want.name, &op).await.unwrap();
        }
        want.name
    }

    /// Lists the account, then reviews it with `live`.
    async fn scan(
        m: &OrphanMonitor,
        iam: &FakeIam,
        tracker: &mut OrphanTracker,
        live: BTreeSet<LiveObject>,
    ) {
        let mut roles = Snapshot::new(std::time::Instant::now(), &desired().path, BTreeSet::new());
        list_all_roles(iam, |page| roles.add(page)).await.unwrap();
        m.review(tracker, &roles, &live).await;
    }

    fn live_owner() -> BTreeSet<LiveObject> {
        let owner = owner();
        BTreeSet::from([LiveObject {
            namespace: owner.namespace,
            name: owner.name,
            uid: owner.uid,
        }])
    }

    #[tokio::test]
    async fn an_orphan_is_deleted_policies_first_and_a_live_role_is_untouched() {
        let iam = Arc::new(FakeIam::default());
        let name = create(&iam, "arn:aws:iam::aws:policy/A").await;
        let m = monitor(iam.clone(), Some(Duration::ZERO));
        let mut tracker = OrphanTracker::default();

        iam.calls.lock().unwrap().clear();
        scan(&m, &iam, &mut tracker, live_owner()).await;
        assert!(iam.writes().is_empty(), "{:?}", iam.writes());
        assert!(m.metrics.render().contains("irsa_operator_orphan_roles 0"));

        scan(&m, &iam, &mut tracker, BTreeSet::new()).await;
        assert_eq!(
            iam.writes(),
            [
                format!("DeleteRolePolicy {name}"),
                format!("DetachRolePolicy {name}"),
                format!("DeleteRole {name}"),
            ]
        );
        let text = m.metrics.render();
        assert!(text.contains("irsa_operator_orphan_roles 1"), "{text}");
        assert!(text.contains("irsa_operator_orphan_roles_deleted_total 1"));
    }

    #[tokio::test]
    async fn without_a_grace_period_orphans_are_only_reported() {
        let iam = Arc::new(FakeIam::default());
        create(&iam, "arn:aws:iam::aws:policy/A").await;
        let m = monitor(iam.clone(), None);
        iam.calls.lock().unwrap().clear();
        scan(&m, &iam, &mut OrphanTracker::default(), BTreeSet::new()).await;
        assert_eq!(
            *iam.calls.lock().unwrap(),
            ["GetAccountAuthorizationDetails "]
        );
        assert!(m.metrics.render().contains("irsa_operator_orphan_roles 1"));
    }

    #[tokio::test]
    async fn a_role_adopted_since_the_listing_is_not_deleted() {
        let iam = Arc::new(FakeIam::default());
        let name = create(&iam, "arn:aws:iam::aws:policy/A").await;
        let m = monitor(iam.clone(), Some(Duration::ZERO));
        let orphan = Orphan {
            role_name: name.clone(),
            owner: irsa_core::ownership::Owner {
                uid: "an-older-uid".into(),
                ..owner()
            },
            orphaned_for: Duration::from_secs(3600),
        };
        iam.calls.lock().unwrap().clear();
        let error = m.delete(&orphan).await.unwrap_err();
        assert!(error.contains("not owned"), "{error}");
        assert_eq!(iam.writes(), Vec::<String>::new());
    }
}
