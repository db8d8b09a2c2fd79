//! The `PodIamRoleAccount` status writer: the account's `Ready` condition follows its
//! connection and provider checks, through `irsa_core::account::next_status`.

use std::sync::Arc;

use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;
use tokio::sync::watch;
use tracing::warn;

use crate::{k8s::FIELD_MANAGER, metrics::Metrics};
use irsa_api::PodIamRoleAccount;
use irsa_core::{
    account::{ConnectionState, next_status},
    oidc::ProviderCheck,
};

/// Keeps the account's `Ready` condition and `irsa_operator_account_ready` in step with
/// its provider checks.
pub(super) async fn status_writer(
    client: Client,
    metrics: Arc<Metrics>,
    account: PodIamRoleAccount,
    provider_arn: String,
    mut provider: watch::Receiver<Option<ProviderCheck>>,
    changes: Arc<watch::Sender<u64>>,
) {
    let name = account.name_any();
    loop {
        let check = provider.borrow_and_update().clone();
        let connection = match &check {
            None => ConnectionState::Checking {
                provider_arn: &provider_arn,
            },
            Some(check) => ConnectionState::Checked {
                provider_arn: &provider_arn,
                problem: check.problem.as_ref(),
            },
        };
        metrics.set_account_ready(
            &name,
            matches!(connection, ConnectionState::Checked { problem: None, .. }),
        );
        patch_status(&client, &account, &connection).await;
        // PodIamRoles show the check, not that it is pending.
        if check.is_some() {
            changes.send_modify(|count| *count = count.wrapping_add(1));
        }
        if provider.changed().await.is_err() {
            return;
        }
    }
}

/// Writes the account's status; a failure is logged and left to the next change.
pub(super) async fn patch_status(
    client: &Client,
    account: &PodIamRoleAccount,
    connection: &ConnectionState<'_>,
) {
    let status = next_status(
        account.status.as_ref(),
        account.metadata.generation,
        connection,
        jiff::Timestamp::now(),
    );
    let patch = json!({
        "apiVersion": PodIamRoleAccount::api_version(&()),
        "kind": PodIamRoleAccount::kind(&()),
        "status": status,
    });
    let api: Api<PodIamRoleAccount> = Api::all(client.clone());
    if let Err(error) = api
        .patch_status(
            &account.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        warn!(account = %account.name_any(), %error, "cannot write the PodIamRoleAccount's status");
    }
}
