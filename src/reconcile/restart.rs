//! Step, with `--restart-workloads`: once the role is Ready, count the ServiceAccount's
//! pods that run without it and, when the PodIamRole opts in, restart their workloads
//! (see `restart`). Its failures are logged, never the reconcile's.

use std::{collections::BTreeMap, fmt::Debug};

use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::{DaemonSet, Deployment, StatefulSet},
        core::v1::{Pod, PodTemplateSpec},
    },
};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::events::EventType,
};
use serde::{Serialize, de::DeserializeOwned};
use tracing::{info, warn};

use super::Context;
use crate::k8s::events;
use irsa_api::PodIamRole;
use irsa_core::restart::{self, Workload};

/// The number of the ServiceAccount's pods that run without `role_arn`, for
/// `status.stalePods`, or `None` when not counted (the flag is off, or listing failed).
pub(super) async fn restart_stale(
    object: &PodIamRole,
    ctx: &Context,
    role_arn: &str,
) -> Option<i32> {
    if !ctx.shared.restart_workloads {
        return None;
    }
    match count_and_restart(object, ctx, role_arn).await {
        Ok(count) => Some(count),
        Err(error) => {
            warn!(%error, "cannot check the ServiceAccount's pods for a stale role");
            None
        }
    }
}

async fn count_and_restart(
    object: &PodIamRole,
    ctx: &Context,
    role_arn: &str,
) -> Result<i32, kube::Error> {
    let client = &ctx.shared.client;
    let namespace = object.namespace().unwrap_or_default();
    let sa = &object.spec.service_account_name;
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default().fields(&format!("spec.serviceAccountName={sa}")))
        .await?;
    let stale = restart::stale_pods(&pods.items, role_arn);
    if object.spec.restart_on_role_change && !stale.is_empty() {
        let workloads = workloads(ctx, &namespace).await?;
        for workload in restart::to_restart(&workloads, &stale, sa, role_arn) {
            let patch = restart::restart_patch(role_arn, jiff::Timestamp::now());
            patch_workload(ctx, &namespace, workload, &patch).await?;
            info!(kind = workload.kind, name = %workload.name, "restarted for the new role");
            let note = format!(
                "restarted {} {}: its pods ran without role {role_arn}",
                workload.kind, workload.name
            );
            let recorder = &ctx.shared.recorder;
            events::publish(
                recorder,
                object,
                EventType::Normal,
                "WorkloadRestarted",
                note,
            )
            .await;
        }
    }
    let count = i32::try_from(stale.len()).unwrap_or(i32::MAX);
    let changed = object.status.as_ref().and_then(|s| s.stale_pods) != Some(count);
    if changed && count > 0 && !object.spec.restart_on_role_change {
        let note = format!(
            "{count} pod(s) of ServiceAccount {sa} run without role {role_arn}: restart them, \
             or set spec.restartOnRoleChange"
        );
        events::publish(
            &ctx.shared.recorder,
            object,
            EventType::Warning,
            "StalePods",
            note,
        )
        .await;
    }
    Ok(count)
}

/// A kind of workload that runs pods from a template.
trait Templated:
    k8s_openapi::Resource
    + Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
{
    fn into_parts(self) -> (Option<BTreeMap<String, String>>, PodTemplateSpec);
}

impl Templated for Deployment {
    fn into_parts(self) -> (Option<BTreeMap<String, String>>, PodTemplateSpec) {
        (self.spec.selector.match_labels, self.spec.template)
    }
}

impl Templated for StatefulSet {
    fn into_parts(self) -> (Option<BTreeMap<String, String>>, PodTemplateSpec) {
        (self.spec.selector.match_labels, self.spec.template)
    }
}

impl Templated for DaemonSet {
    fn into_parts(self) -> (Option<BTreeMap<String, String>>, PodTemplateSpec) {
        (self.spec.selector.match_labels, self.spec.template)
    }
}

async fn workloads(ctx: &Context, namespace: &str) -> Result<Vec<Workload>, kube::Error> {
    let mut workloads = list::<Deployment>(ctx, namespace).await?;
    workloads.extend(list::<StatefulSet>(ctx, namespace).await?);
    workloads.extend(list::<DaemonSet>(ctx, namespace).await?);
    Ok(workloads)
}

async fn list<K: Templated>(ctx: &Context, namespace: &str) -> Result<Vec<Workload>, kube::Error> {
    let api = Api::<K>::namespaced(ctx.shared.client.clone(), namespace);
    let objects = api.list(&ListParams::default()).await?.items;
    Ok(objects
        .into_iter()
        .filter_map(|object| {
            let name = object.meta().name.clone()?;
            let (match_labels, template) = object.into_parts();
            Some(workload(K::KIND, name, match_labels, template))
        })
        .collect())
}

fn workload(
    kind: &'static str,
    name: String,
    match_labels: Option<BTreeMap<String, String>>,
    template: PodTemplateSpec,
) -> Workload {
    Workload {
        kind,
        name,
        service_account: template
            .spec
            .and_then(|s| s.service_account_name)
            .unwrap_or_else(|| "default".into()),
        match_labels: match_labels.unwrap_or_default(),
        template_annotations: template
            .metadata
            .and_then(|m| m.annotations)
            .unwrap_or_default(),
    }
}

async fn patch_workload(
    ctx: &Context,
    namespace: &str,
    workload: &Workload,
    patch: &serde_json::Value,
) -> Result<(), kube::Error> {
    match workload.kind {
        <Deployment as k8s_openapi::Resource>::KIND => {
            patch_as::<Deployment>(ctx, namespace, &workload.name, patch).await
        }
        <StatefulSet as k8s_openapi::Resource>::KIND => {
            patch_as::<StatefulSet>(ctx, namespace, &workload.name, patch).await
        }
        _ => patch_as::<DaemonSet>(ctx, namespace, &workload.name, patch).await,
    }
}

async fn patch_as<K: Templated>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    patch: &serde_json::Value,
) -> Result<(), kube::Error> {
    Api::<K>::namespaced(ctx.shared.client.clone(), namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(drop)
}
