//! Step: the AWS config file of `spec.roleChain`. Once the role is in sync, its rendered
//! profiles go into the ConfigMap `<name>-aws-config` and the ServiceAccount is annotated
//! `irsa.dev/aws-config: <that ConfigMap>`, for the pod identity webhook to mount. Without
//! a chain, or when the PodIamRole goes, both are removed again. Kubernetes only: this
//! step never calls IAM.

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::{Api, ResourceExt, runtime::reflector::ObjectRef};

use super::{Context, Error, service_account::release};
use crate::k8s::{
    aws_config::{self, Published},
    service_account::{self, Annotation},
};
use irsa_api::PodIamRole;
use irsa_core::{
    chain::{self, CONFIG_MAP_ANNOTATION},
    pod_identity::{DEFAULT_MOUNT_PATH, TOKEN_FILE},
    status::Outcome,
};

/// The field manager of the config annotation: the role ARN annotation's manager
/// (`irsa-operator`) applies only that one, and an apply drops what it no longer lists.
const CONFIG_FIELD_MANAGER: &str = "irsa-operator-aws-config";

/// Publishes the config file for an object whose role is in place, and says how the
/// object stands then.
pub(super) async fn publish(
    object: &PodIamRole,
    ctx: &Context,
    outcome: Outcome,
) -> Result<Outcome, Error> {
    let (role_name, role_arn, annotate) = match &outcome {
        Outcome::Synced {
            role_name,
            role_arn,
        }
        | Outcome::OidcProviderUnhealthy {
            role_name,
            role_arn,
            ..
        } => (role_name.clone(), role_arn.clone(), true),
        // No ServiceAccount, or one whose role annotation is someone else's: the file is
        // ready for when that changes, the annotation waits.
        Outcome::ServiceAccountNotFound {
            role_name,
            role_arn,
            ..
        }
        | Outcome::ServiceAccountAnnotationConflict {
            role_name,
            role_arn,
            ..
        } => (role_name.clone(), role_arn.clone(), false),
        _ => return Ok(outcome),
    };
    if object.spec.role_chain.is_empty() {
        remove(object, ctx, false).await?;
        return Ok(outcome);
    }
    let namespace = object.namespace().unwrap_or_default();
    let name = chain::config_map_name(&object.name_any());
    let text = chain::render(
        &format!("{namespace}/{}", object.name_any()),
        &role_arn,
        &format!("{DEFAULT_MOUNT_PATH}/{TOKEN_FILE}"),
        &object.spec.role_chain,
    );
    let conflict = |message| Outcome::AwsConfigConflict {
        role_name: role_name.clone(),
        role_arn: role_arn.clone(),
        message,
    };
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.shared.client.clone(), &namespace);
    if let Published::Conflict(message) = aws_config::publish(&config_maps, &name, object, &text)
        .await
        .map_err(Error::Kube)?
    {
        return Ok(conflict(message));
    }
    let service_account = &object.spec.service_account_name;
    // A ServiceAccount the spec named before keeps no pointer to this file.
    release(
        ctx,
        &namespace,
        Some(service_account),
        CONFIG_MAP_ANNOTATION,
        &name,
    )
    .await?;
    if !annotate || cached_annotation(ctx, &namespace, service_account).as_ref() == Some(&name) {
        return Ok(outcome);
    }
    let service_accounts: Api<ServiceAccount> =
        Api::namespaced(ctx.shared.client.clone(), &namespace);
    let annotation = service_account::apply_annotation(
        &service_accounts,
        service_account,
        CONFIG_MAP_ANNOTATION,
        &name,
        CONFIG_FIELD_MANAGER,
    )
    .await
    .map_err(Error::Kube)?;
    Ok(match annotation {
        Annotation::Applied | Annotation::ServiceAccountMissing => outcome,
        Annotation::Conflict { manager, value } => conflict(format!(
            "field manager {manager:?} owns {CONFIG_MAP_ANNOTATION} on ServiceAccount \
             {service_account} (value {}); the operator does not overwrite it. Remove it from \
             {manager:?}'s manifest, or set it to {name}",
            value.as_deref().unwrap_or("none")
        )),
    })
}

/// Removes the annotation and the ConfigMap, when there may be any: the PodIamRole is
/// `deleting` (one read, whatever the spec and cache say), has a chain, or a
/// ServiceAccount names its ConfigMap. Neither is touched when not ours.
pub(super) async fn remove(
    object: &PodIamRole,
    ctx: &Context,
    deleting: bool,
) -> Result<(), Error> {
    let namespace = object.namespace().unwrap_or_default();
    let name = chain::config_map_name(&object.name_any());
    let annotated = release(ctx, &namespace, None, CONFIG_MAP_ANNOTATION, &name).await?;
    if !deleting && annotated == 0 && object.spec.role_chain.is_empty() {
        return Ok(());
    }
    // The cache may not show an annotation applied just now.
    if !object.spec.role_chain.is_empty() {
        let service_accounts: Api<ServiceAccount> =
            Api::namespaced(ctx.shared.client.clone(), &namespace);
        service_account::remove_annotation_value(
            &service_accounts,
            &object.spec.service_account_name,
            CONFIG_MAP_ANNOTATION,
            &name,
        )
        .await
        .map_err(Error::Kube)?;
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.shared.client.clone(), &namespace);
    aws_config::remove(&config_maps, &name, &object.uid().unwrap_or_default())
        .await
        .map_err(Error::Kube)
}

/// The config annotation of a ServiceAccount, as the cache last saw it.
fn cached_annotation(ctx: &Context, namespace: &str, service_account: &str) -> Option<String> {
    let cached =
        (ctx.caches.service_accounts).get(&ObjectRef::new(service_account).within(namespace))?;
    cached.annotations().get(CONFIG_MAP_ANNOTATION).cloned()
}
