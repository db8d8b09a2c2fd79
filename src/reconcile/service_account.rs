//! Step: the ServiceAccount. One PodIamRole owns its role annotation (see
//! `irsa_core::sa_owner`); the owner applies it, and releases it from ServiceAccounts the
//! spec no longer names.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{Api, ResourceExt, runtime::reflector::ObjectRef};
use tracing::info;

use super::{AnnotationValue, Context, Error};
use crate::accounts::Target;
use crate::k8s::service_account::{self, Annotation, ROLE_ARN_ANNOTATION};
use irsa_api::PodIamRole;
use irsa_core::{
    sa_owner,
    status::{Outcome, ProviderHealth},
};

/// `Some(outcome)` when another PodIamRole owns the ServiceAccount: then this one must
/// write nothing, neither to IAM nor to the ServiceAccount.
pub(super) fn claim(object: &PodIamRole, ctx: &Context) -> Option<Outcome> {
    let roles = ctx.caches.roles_by_namespace.read();
    let namespace = object.namespace().unwrap_or_default();
    let owner = sa_owner::other_owner(object, roles.group(&namespace).map(AsRef::as_ref))?;
    Some(Outcome::ServiceAccountInUse {
        service_account: object.spec.service_account_name.clone(),
        owner,
    })
}

/// Annotates the ServiceAccount with the role and says how the object stands.
pub(super) async fn annotate(
    object: &PodIamRole,
    ctx: &Context,
    target: &Target,
    role_name: String,
    role_arn: String,
) -> Result<Outcome, Error> {
    let namespace = object.namespace().unwrap_or_default();
    let service_account = &object.spec.service_account_name;
    release_others(ctx, &namespace, Some(service_account), &role_arn).await?;
    // Already annotated in the cache: a re-check reads nothing. A change to the
    // ServiceAccount since is on its way to the cache, and reconciles this object again.
    let cached = ctx
        .caches
        .service_accounts
        .get(&ObjectRef::new(service_account).within(&namespace));
    let annotation =
        if cached.is_some_and(|sa| sa.annotations().get(ROLE_ARN_ANNOTATION) == Some(&role_arn)) {
            Annotation::Applied
        } else {
            let api: Api<ServiceAccount> = Api::namespaced(ctx.shared.client.clone(), &namespace);
            service_account::annotate(&api, service_account, &role_arn)
                .await
                .map_err(Error::Kube)?
        };
    Ok(match (annotation, target.provider_health(object)) {
        (Annotation::Applied, ProviderHealth::Unhealthy(problem)) => {
            Outcome::OidcProviderUnhealthy {
                role_name,
                role_arn,
                problem,
            }
        }
        (Annotation::Applied, _) => Outcome::Synced {
            role_name,
            role_arn,
        },
        (Annotation::Conflict { manager, value }, _) => Outcome::ServiceAccountAnnotationConflict {
            role_name,
            role_arn,
            service_account: service_account.clone(),
            manager,
            value,
        },
        (Annotation::ServiceAccountMissing, _) => Outcome::ServiceAccountNotFound {
            role_name,
            role_arn,
            service_account: service_account.clone(),
        },
    })
}

/// Removes our annotation from ServiceAccounts of `namespace` that still point at
/// `role_arn`, except `keep`: the ServiceAccount was renamed in the spec, or the
/// PodIamRole is going away.
pub(super) async fn release_others(
    ctx: &Context,
    namespace: &str,
    keep: Option<&String>,
    role_arn: &str,
) -> Result<(), Error> {
    release(ctx, namespace, keep, ROLE_ARN_ANNOTATION, role_arn)
        .await
        .map(drop)
}

/// Removes the annotation `key` (one of `INDEXED_ANNOTATIONS`) from the cached
/// ServiceAccounts of `namespace` whose value is still `value`, except `keep`; returns how
/// many had it.
pub(super) async fn release(
    ctx: &Context,
    namespace: &str,
    keep: Option<&String>,
    key: &'static str,
    value: &str,
) -> Result<usize, Error> {
    let annotated = AnnotationValue {
        namespace: namespace.to_string(),
        key,
        value: value.to_string(),
    };
    let stale: Vec<String> = (ctx.caches.annotated_service_accounts.read())
        .group(&annotated)
        .filter(|name| Some(*name) != keep)
        .cloned()
        .collect();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.shared.client.clone(), namespace);
    for name in &stale {
        service_account::remove_annotation_value(&api, name, key, value)
            .await
            .map_err(Error::Kube)?;
        info!(service_account = %name, annotation = key, "removed an annotation from a ServiceAccount no longer named by the spec");
    }
    Ok(stale.len())
}
