//! Step, with `--restart-workloads`: once the role is Ready, count the ServiceAccount's
//! pods that run without it and, when the PodIamRole opts in, restart their workloads
//! (see `restart`). Its failures are logged, never the reconcile's.

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, StatefulSet},
    core::v1::{Pod, PodTemplateSpec},
};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::events::EventType,
};
use serde_json::json;
use tracing::{info, warn};

use super::Context;
use crate::{
    crd::PodIamRole,
    k8s::events,
    restart::{self, Workload},
};

/// Its own field manager: the status writer never claims `status.stalePods`.
const FIELD_MANAGER: &str = "irsa-operator-restarts";

pub(super) async fn restart_stale(object: &PodIamRole, ctx: &Context, role_arn: &str) {
    if !ctx.shared.restart_workloads {
        return;
    }
    if let Err(error) = count_and_restart(object, ctx, role_arn).await {
        warn!(%error, "cannot check the ServiceAccount's pods for a stale role");
    }
}

async fn count_and_restart(
    object: &PodIamRole,
    ctx: &Context,
    role_arn: &str,
) -> Result<(), kube::Error> {
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
    if object.status.as_ref().and_then(|s| s.stale_pods) == Some(count) {
        return Ok(());
    }
    let status = json!({
        "apiVersion": PodIamRole::api_version(&()),
        "kind": PodIamRole::kind(&()),
        "status": {"stalePods": count},
    });
    Api::<PodIamRole>::namespaced(client.clone(), &namespace)
        .patch_status(
            &object.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await?;
    if count > 0 && !object.spec.restart_on_role_change {
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
    Ok(())
}

async fn workloads(ctx: &Context, namespace: &str) -> Result<Vec<Workload>, kube::Error> {
    let client = &ctx.shared.client;
    let all = ListParams::default();
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace)
        .list(&all)
        .await?;
    let stateful_sets = Api::<StatefulSet>::namespaced(client.clone(), namespace)
        .list(&all)
        .await?;
    let daemon_sets = Api::<DaemonSet>::namespaced(client.clone(), namespace)
        .list(&all)
        .await?;
    let deployments = deployments.items.into_iter().filter_map(|d| {
        let spec = d.spec;
        Some(workload(
            "Deployment",
            d.metadata.name?,
            spec.selector.match_labels,
            spec.template,
        ))
    });
    let stateful_sets = stateful_sets.items.into_iter().filter_map(|s| {
        let spec = s.spec;
        Some(workload(
            "StatefulSet",
            s.metadata.name?,
            spec.selector.match_labels,
            spec.template,
        ))
    });
    let daemon_sets = daemon_sets.items.into_iter().filter_map(|d| {
        let spec = d.spec;
        Some(workload(
            "DaemonSet",
            d.metadata.name?,
            spec.selector.match_labels,
            spec.template,
        ))
    });
    Ok(deployments
        .chain(stateful_sets)
        .chain(daemon_sets)
        .collect())
}

fn workload(
    kind: &'static str,
    name: String,
    match_labels: Option<std::collections::BTreeMap<String, String>>,
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
    let client = ctx.shared.client.clone();
    let params = PatchParams::default();
    let patch = Patch::Merge(patch);
    match workload.kind {
        "Deployment" => Api::<Deployment>::namespaced(client, namespace)
            .patch(&workload.name, &params, &patch)
            .await
            .map(drop),
        "StatefulSet" => Api::<StatefulSet>::namespaced(client, namespace)
            .patch(&workload.name, &params, &patch)
            .await
            .map(drop),
        _ => Api::<DaemonSet>::namespaced(client, namespace)
            .patch(&workload.name, &params, &patch)
            .await
            .map(drop),
    }
}
