//! The narrow IAM surface the operator uses, behind a trait: the AWS SDK implementation
//! for production and an in-memory fake for unit tests.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Mutex, MutexGuard},
    time::Instant,
};

use async_trait::async_trait;
use serde_json::Value;

pub use irsa_core::failure::{IamError, IamErrorKind};
pub use irsa_core::iam_role::{ListedRole, ObservedRole, RolePage, RoleSummary};
use irsa_core::{oidc::ObservedProvider, oidc::ProviderOp, plan::IamOp, write_log::WriteLog};

pub mod aws;
pub mod aws_error;
pub mod budget;
#[cfg(test)]
pub mod fake;

#[async_trait]
pub trait IamApi: Send + Sync {
    async fn get_role(&self, role: &str) -> Result<Option<RoleSummary>, IamError>;
    async fn list_role_policy_names(&self, role: &str) -> Result<Vec<String>, IamError>;
    async fn get_role_policy(&self, role: &str, policy: &str) -> Result<Value, IamError>;
    async fn list_attached_policy_arns(&self, role: &str) -> Result<BTreeSet<String>, IamError>;
    /// Performs one planned write on `role`. Through [`Writes::execute`], which records it.
    async fn execute(&self, role: &str, op: &IamOp) -> Result<(), IamError>;
    async fn get_oidc_provider(&self, arn: &str) -> Result<Option<ObservedProvider>, IamError>;
    /// Performs one planned write on the OIDC provider `arn`.
    async fn execute_provider(&self, arn: &str, op: &ProviderOp) -> Result<(), IamError>;
    /// One page of every role in the account, with its tags, from `marker` on.
    async fn list_roles_page(&self, marker: Option<&str>) -> Result<RolePage, IamError>;
    /// Whether `calls` IAM calls could start now without waiting for the call budget.
    /// Work that can wait (drift checks) starts only then, so it never delays work that
    /// cannot (creations, changes, deletions).
    fn has_spare_calls(&self, _calls: u32) -> bool {
        true
    }
}

/// Every role in the account, page after page: one pass of `GetAccountAuthorizationDetails`.
/// Each page goes to `keep` as it comes, so no more than one page is held in full.
pub async fn list_all_roles(
    iam: &dyn IamApi,
    mut keep: impl FnMut(Vec<ListedRole>),
) -> Result<(), IamError> {
    let mut marker = None;
    loop {
        let page = iam.list_roles_page(marker.as_deref()).await?;
        keep(page.roles);
        match page.next_marker {
            Some(next) => marker = Some(next),
            None => return Ok(()),
        }
    }
}

/// When this process last wrote to each role of one account (see `irsa_core::write_log`).
pub struct Writes(Mutex<WriteLog>);

impl Default for Writes {
    fn default() -> Self {
        Self(Mutex::new(WriteLog::new(Instant::now())))
    }
}

impl Writes {
    /// Performs one planned write on `role` and records when it ended, or was abandoned:
    /// either way it may have changed the role.
    pub async fn execute(&self, iam: &dyn IamApi, role: &str, op: &IamOp) -> Result<(), IamError> {
        let _recorded = RecordOnDrop { writes: self, role };
        iam.execute(role, op).await
    }

    pub fn last_write(&self, role: &str) -> Instant {
        self.log().last_write(role)
    }

    /// Call once the listing that started at `started` is the one reconciles go by.
    pub fn seen_by_listing(&self, started: Instant) {
        self.log().seen_by_listing(started);
    }

    fn log(&self) -> MutexGuard<'_, WriteLog> {
        self.0.lock().expect("write log lock")
    }
}

struct RecordOnDrop<'a> {
    writes: &'a Writes,
    role: &'a str,
}

impl Drop for RecordOnDrop<'_> {
    fn drop(&mut self) {
        self.writes.log().record(self.role, Instant::now());
    }
}

/// Where an observation took a role's policies from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoliciesFrom {
    Reads,
    Listing,
}

/// Reads a role and its policies. The policy reads are skipped for a role that is not
/// ours: the ownership check only needs `GetRole`.
pub async fn observe_role(
    iam: &dyn IamApi,
    role: &str,
    is_ours: impl FnOnce(&RoleSummary) -> bool,
) -> Result<Option<ObservedRole>, IamError> {
    let observed = observe_role_or_listing(iam, role, is_ours, |_| None).await?;
    Ok(observed.map(|(observed, _)| observed))
}

/// As [`observe_role`], but the policies of a role that is ours come from `listed` when it
/// has them for the role `GetRole` returned.
pub async fn observe_role_or_listing(
    iam: &dyn IamApi,
    role: &str,
    is_ours: impl FnOnce(&RoleSummary) -> bool,
    listed: impl FnOnce(&RoleSummary) -> Option<ObservedRole>,
) -> Result<Option<(ObservedRole, PoliciesFrom)>, IamError> {
    let Some(summary) = iam.get_role(role).await? else {
        return Ok(None);
    };
    if !is_ours(&summary) {
        let foreign = ObservedRole {
            summary,
            inline_policies: BTreeMap::new(),
            managed_policy_arns: BTreeSet::new(),
        };
        return Ok(Some((foreign, PoliciesFrom::Reads)));
    }
    if let Some(observed) = listed(&summary) {
        return Ok(Some((observed, PoliciesFrom::Listing)));
    }
    let mut inline_policies = BTreeMap::new();
    for name in iam.list_role_policy_names(role).await? {
        let document = iam.get_role_policy(role, &name).await?;
        inline_policies.insert(name, document);
    }
    let managed_policy_arns = iam.list_attached_policy_arns(role).await?;
    let observed = ObservedRole {
        summary,
        inline_policies,
        managed_policy_arns,
    };
    Ok(Some((observed, PoliciesFrom::Reads)))
}

#[cfg(test)]
mod tests {
    use super::{fake::FakeIam, *};
    use irsa_core::{
        plan::{plan_apply, plan_delete},
        snapshot::{Snapshot, observed_from_listing},
        testing::{desired, owner},
    };

    async fn run(iam: &FakeIam, role: &str, ops: &[IamOp]) {
        for op in ops {
            iam.execute(role, op).await.unwrap();
        }
    }

    #[tokio::test]
    async fn apply_converges_and_then_costs_only_reads() {
        let iam = FakeIam::default();
        let want = desired();
        let ours = |s: &RoleSummary| want.owner.mismatch(&s.tags).is_none();
        let observed = observe_role(&iam, &want.name, ours).await.unwrap();
        run(
            &iam,
            &want.name,
            &plan_apply(&want, observed.as_ref()).unwrap(),
        )
        .await;
        assert_eq!(
            iam.writes(),
            [
                "CreateRole prod.shop.payments",
                "PutRolePolicy prod.shop.payments"
            ]
        );

        iam.calls.lock().unwrap().clear();
        let observed = observe_role(&iam, &want.name, ours).await.unwrap();
        assert_eq!(plan_apply(&want, observed.as_ref()), Ok(vec![]));
        assert_eq!(
            *iam.calls.lock().unwrap(),
            [
                "GetRole prod.shop.payments",
                "ListRolePolicies prod.shop.payments",
                "GetRolePolicy prod.shop.payments",
                "ListAttachedRolePolicies prod.shop.payments"
            ]
        );
    }

    #[tokio::test]
    async fn the_listing_names_the_policies_until_the_next_write() {
        let iam = FakeIam::default();
        let writes = Writes::default();
        let want = desired();
        for op in plan_apply(&want, None).unwrap() {
            writes.execute(&iam, &want.name, &op).await.unwrap();
        }
        let mut snapshot = Snapshot::new(Instant::now(), &want.path, BTreeSet::new());
        list_all_roles(&iam, |page| snapshot.add(page))
            .await
            .unwrap();
        let mut changed = want.clone();
        changed.tags.insert("team".into(), "payments".into());
        let observe = || {
            iam.calls.lock().unwrap().clear();
            observe_role_or_listing(
                &iam,
                &changed.name,
                |_| true,
                |summary| {
                    let last_write = writes.last_write(&changed.name);
                    observed_from_listing(&snapshot, &changed, summary, last_write)
                },
            )
        };

        let (observed, from) = observe().await.unwrap().unwrap();
        assert_eq!(from, PoliciesFrom::Listing);
        assert_eq!(*iam.calls.lock().unwrap(), ["GetRole prod.shop.payments"]);
        let ops = plan_apply(&changed, Some(&observed)).unwrap();
        assert!(matches!(ops[..], [IamOp::TagRole(_)]), "{ops:?}");
        writes.execute(&iam, &changed.name, &ops[0]).await.unwrap();

        // The listing started before that write: it cannot stand for the role any more.
        let (_, from) = observe().await.unwrap().unwrap();
        assert_eq!(from, PoliciesFrom::Reads);
        assert_eq!(iam.calls.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_foreign_role_costs_one_read() {
        let iam = FakeIam::default();
        let mut foreign = desired();
        foreign.owner.uid = "someone-else".into();
        foreign.tags = foreign.owner.tags();
        run(&iam, &foreign.name, &plan_apply(&foreign, None).unwrap()).await;
        iam.calls.lock().unwrap().clear();

        let want = desired();
        let observed = observe_role(&iam, &want.name, |s| want.owner.mismatch(&s.tags).is_none())
            .await
            .unwrap();
        assert!(plan_apply(&want, observed.as_ref()).is_err());
        assert!(plan_delete(&want.name, &owner(), observed.as_ref()).is_err());
        assert_eq!(*iam.calls.lock().unwrap(), ["GetRole prod.shop.payments"]);
    }

    #[tokio::test]
    async fn listing_follows_every_page() {
        let iam = FakeIam {
            page_size: Some(2),
            ..FakeIam::default()
        };
        let mut names = Vec::new();
        for index in 0..5 {
            let mut want = desired();
            want.name = format!("role-{index}");
            run(&iam, &want.name, &plan_apply(&want, None).unwrap()).await;
            names.push(want.name);
        }
        iam.calls.lock().unwrap().clear();
        let mut listed = Vec::new();
        list_all_roles(&iam, |page| listed.extend(page))
            .await
            .unwrap();
        let listed_names: Vec<_> = listed.iter().map(|r| r.name.clone()).collect();
        assert_eq!(listed_names, names);
        assert_eq!(listed[0].tags, desired().tags);
        assert_eq!(
            iam.calls.lock().unwrap().len(),
            3,
            "5 roles in pages of 2 take 3 calls"
        );
    }

    #[tokio::test]
    async fn delete_plan_satisfies_iam_ordering() {
        let iam = FakeIam::default();
        let mut want = desired();
        want.managed_policy_arns
            .insert("arn:aws:iam::aws:policy/A".into());
        run(&iam, &want.name, &plan_apply(&want, None).unwrap()).await;
        // DeleteRole before removing policies is refused, as IAM does.
        assert_eq!(
            iam.execute(&want.name, &IamOp::DeleteRole)
                .await
                .unwrap_err()
                .code,
            "DeleteConflict"
        );
        let observed = observe_role(&iam, &want.name, |_| true).await.unwrap();
        run(
            &iam,
            &want.name,
            &plan_delete(&want.name, &owner(), observed.as_ref()).unwrap(),
        )
        .await;
        assert!(iam.roles.lock().unwrap().is_empty());
    }
}
