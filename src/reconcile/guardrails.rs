//! Step: the guardrail verdict for one object, read from the caches, and the audiences
//! that may reach the cluster's shared OIDC provider.

use std::{collections::BTreeSet, sync::Arc};

use kube::{ResourceExt, runtime::reflector::ObjectRef};

use super::{Caches, owner_of};
use irsa_api::{DEFAULT_AUDIENCE, PodIamRole};
use irsa_core::{
    account,
    admission::{self, Verdict},
    config::OperatorConfig,
    desired,
    oidc::within_client_id_limit,
};

/// The object's namespace is not cached yet: guessing its labels could skip a guardrail.
#[derive(Debug)]
pub struct NamespaceNotCached;

/// The guardrails' verdict on `object`, from the caches.
pub fn verdict(
    caches: &Caches,
    config: &OperatorConfig,
    object: &PodIamRole,
) -> Result<Verdict, NamespaceNotCached> {
    let namespace = object.namespace().unwrap_or_default();
    let labels = caches
        .namespaces
        .get(&ObjectRef::new(&namespace))
        .ok_or(NamespaceNotCached)?;
    let guardrails = caches.guardrails.state();
    let roles = caches.roles_by_namespace.read();
    Ok(admission::verdict(
        object,
        guardrails.iter().map(Arc::as_ref),
        labels.labels(),
        roles.group(&namespace).map(AsRef::as_ref),
        config,
    ))
}

/// The audience of `object` if its spec is valid and the guardrails accept it: only
/// such audiences may become client IDs of the shared provider, so no tenant can add
/// arbitrary ones (or fill IAM's limit of 100).
fn accepted_audience(
    caches: &Caches,
    config: &OperatorConfig,
    object: &PodIamRole,
) -> Option<String> {
    desired::desired_role(&object.spec, owner_of(object, config), config).ok()?;
    verdict(caches, config, object).ok()?.decision.ok()?;
    Some(
        object
            .spec
            .audience
            .clone()
            .unwrap_or_else(|| DEFAULT_AUDIENCE.into()),
    )
}

/// Whether the target account `account` exists and grants `object`'s namespace: only
/// then may the object's audience reach that account's provider.
fn granted(caches: &Caches, object: &PodIamRole, account: &str) -> bool {
    let namespace = object.namespace().unwrap_or_default();
    let Some(labels) = caches.namespaces.get(&ObjectRef::new(&namespace)) else {
        return false;
    };
    let declared = caches.accounts.get(&ObjectRef::new(account));
    account::admit(account, |_| declared.as_deref(), labels.labels()).is_ok()
}

/// Every accepted audience in these scopes of the PodIamRoles whose role lives in
/// `account` (`None`: the operator's own account), plus the default so new roles work at once.
pub fn audiences_in_use(
    scopes: &[Caches],
    config: &OperatorConfig,
    account: Option<&str>,
) -> BTreeSet<String> {
    let mut audiences = BTreeSet::from([DEFAULT_AUDIENCE.to_string()]);
    for caches in scopes {
        for object in caches.roles.state() {
            if object.metadata.deletion_timestamp.is_none()
                && object.spec.account.as_deref() == account
                && account.is_none_or(|account| granted(caches, &object, account))
                && let Some(audience) = accepted_audience(caches, config, &object)
            {
                audiences.insert(audience);
            }
        }
    }
    within_client_id_limit(audiences, DEFAULT_AUDIENCE)
}

#[cfg(test)]
mod tests {
    use crate::{k8s::indexed::Indexed, reconcile::SyncGate};

    use k8s_openapi::api::core::v1::Namespace;
    use kube::{
        api::{ObjectMeta, PartialObjectMeta},
        runtime::{reflector, watcher},
    };

    use super::*;
    use irsa_api::{PodIamRoleGuardrail, PodIamRoleGuardrailSpec};
    use irsa_core::testing::{account, pod_iam_role, test_config};

    fn cached<K>(objects: Vec<K>) -> reflector::Store<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        let (store, mut writer) = reflector::store();
        for object in objects {
            writer.apply_watcher_event(&watcher::Event::Apply(object));
        }
        store
    }

    fn with_audience(name: &str, audience: &str) -> PodIamRole {
        let mut role = pod_iam_role("shop", name);
        role.spec.audience = Some(audience.into());
        role
    }

    #[test]
    fn only_accepted_audiences_reach_the_shared_provider() {
        let namespace = PartialObjectMeta::<Namespace> {
            metadata: ObjectMeta {
                name: Some("shop".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let guardrail = PodIamRoleGuardrail::new(
            "audiences",
            PodIamRoleGuardrailSpec {
                allowed_audiences: Some(vec!["vault*".into(), "sts.amazonaws.com".into()]),
                allowed_actions: Some(vec!["*".into()]),
                allowed_resources: Some(vec!["*".into()]),
                ..Default::default()
            },
        );
        let mut denied_grant = with_audience("admin", "vault-admin");
        denied_grant.spec.policy = Some(
            serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
        );
        let mut in_data = with_audience("in-data", "vault-data");
        in_data.spec.account = Some("data".into());
        let mut in_closed = with_audience("in-closed", "vault-closed");
        in_closed.spec.account = Some("closed".into());
        let mut closed = account("closed", "444455556666");
        closed.spec.namespace_selector.match_labels =
            Some([("team".to_string(), "other".to_string())].into());
        let caches = Caches {
            service_accounts: cached(vec![]),
            annotated_service_accounts: Indexed::default(),
            namespaces: cached(vec![namespace]),
            guardrails: cached(vec![guardrail]),
            roles: cached(vec![
                with_audience("valid", "vault"),
                with_audience("invalid", "sts.*"),
                with_audience("not-allowed", "other"),
                denied_grant,
                in_data,
                in_closed,
            ]),
            // No quota here: the verdicts need no PodIamRole by namespace.
            roles_by_namespace: Indexed::default(),
            accounts: cached(vec![account("data", "222222222222"), closed]),
            synced: SyncGate::default(),
        };
        let scopes = std::slice::from_ref(&caches);
        let audiences = |account| audiences_in_use(scopes, &test_config(), account);
        assert_eq!(
            audiences(None),
            BTreeSet::from(["sts.amazonaws.com".to_string(), "vault".to_string()]),
            "each account's provider gets the audiences of its own roles"
        );
        assert_eq!(
            audiences(Some("data")),
            BTreeSet::from(["sts.amazonaws.com".to_string(), "vault-data".to_string()])
        );
        assert_eq!(
            audiences(Some("closed")),
            BTreeSet::from(["sts.amazonaws.com".to_string()]),
            "a namespace without the grant adds nothing to the account's provider"
        );
    }
}
