//! One AWS account as a reconcile sees it: its IAM client, settings, provider check and
//! latest bulk listing.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{Notify, watch};
use tracing::debug;

use crate::{
    iam::{IamApi, ObservedRole, RoleSummary, Writes},
    listing::{AccountRoles, Listing},
};
use irsa_api::{DEFAULT_AUDIENCE, PodIamRole};
use irsa_core::{
    account::AccountName,
    config::OperatorConfig,
    desired::DesiredRole,
    oidc::{ProviderCheck, problem_for_audience},
    snapshot::{self, Drift, KeptRole, ObservedListing},
    status::ProviderHealth,
};

/// How long a reconcile after a restart waits for the first listing before it reads
/// role by role instead: a few pages, each of 1,000 roles.
const FIRST_LISTING_WAIT: Duration = Duration::from_secs(60);

/// One AWS account as a reconcile works with it.
#[derive(Clone)]
pub struct Target {
    pub iam: Arc<dyn IamApi>,
    /// When this term last wrote to each role: every write to a role goes through it.
    pub writes: Arc<Writes>,
    /// The operator's settings as seen from this account (its ID and partition).
    pub config: OperatorConfig,
    pub provider: watch::Receiver<Option<ProviderCheck>>,
    /// Wakes the account's provider monitor, in `manage` mode.
    pub provider_poke: Option<Arc<Notify>>,
    /// The latest bulk listing of the account's roles.
    pub account_roles: AccountRoles,
    pub account: AccountName,
    /// Changes when the account's declaration does: what was synced under another
    /// declaration is checked again. 0 for the operator's own account.
    pub fingerprint: u64,
}

impl Target {
    /// The provider's state in this account for `object`'s audience.
    pub fn provider_health(&self, object: &PodIamRole) -> ProviderHealth {
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

    /// What the latest bulk listing says about `desired`, synced at `synced_at`; `None`
    /// when there is no listing to go by.
    pub fn drift(&self, desired: &DesiredRole, synced_at: Instant) -> Option<Drift> {
        let listing = self.account_roles.borrow();
        (listing.snapshot()).map(|roles| snapshot::drift(roles, desired, synced_at))
    }

    /// The role `GetRole` just returned (`summary`) with its policies as the latest
    /// listing shows them, when that listing can stand for them (see
    /// `snapshot::observed_from_listing`); `None`: read them.
    pub fn listed_policies(
        &self,
        desired: &DesiredRole,
        summary: &RoleSummary,
    ) -> Option<ObservedRole> {
        let last_write = self.writes.last_write(&desired.name);
        let listing = self.account_roles.borrow();
        snapshot::observed_from_listing(listing.snapshot()?, desired, summary, last_write)
    }

    /// Waits until the account's first listing has finished or failed, for a while.
    pub async fn first_listing(&self) {
        let mut listing = self.account_roles.clone();
        let done = listing.wait_for(|listing| !matches!(listing, Listing::Pending));
        if tokio::time::timeout(FIRST_LISTING_WAIT, done)
            .await
            .is_err()
        {
            debug!("no listing yet: reading the role");
        }
    }

    /// The role `name` in the last listing that finished, even if a pass failed since
    /// (`None` without one, `Some(None)` when it has no such role under the role path):
    /// for creates and deletions only (see [`Listing::Failed`]).
    pub fn last_listed_role(&self, name: &str) -> Option<Option<KeptRole>> {
        let listing = self.account_roles.borrow();
        (listing.last_finished()).map(|roles| roles.role(name).cloned())
    }

    /// The observed role `name` as the latest listing shows it, if it does.
    pub fn observed_role(&self, name: &str) -> Option<ObservedListing> {
        let listing = self.account_roles.borrow();
        listing.snapshot()?.observed(name).cloned()
    }
}
