//! The ConfigMap that holds a PodIamRole's rendered AWS config file: server-side applied
//! under the operator's field manager, owned by the PodIamRole, and never written over
//! a ConfigMap of someone else's.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Resource,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
};
use serde_json::json;

use super::FIELD_MANAGER;
use irsa_api::PodIamRole;
use irsa_core::chain::{CONFIG_KEY, CONFIG_MAP_LABEL};

/// What became of the ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    Applied,
    /// A ConfigMap of that name exists and is not this PodIamRole's; left untouched.
    Conflict(String),
}

fn owned_by(config_map: &ConfigMap, uid: &str) -> bool {
    config_map
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|reference| reference.uid == uid)
}

/// Applies the ConfigMap `name` with `text` under `CONFIG_KEY`, owned by `owner`; reads
/// first, and writes only when it differs.
pub async fn publish(
    api: &Api<ConfigMap>,
    name: &str,
    owner: &PodIamRole,
    text: &str,
) -> Result<Published, kube::Error> {
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let reference = owner
        .controller_owner_ref(&())
        .expect("a stored PodIamRole has a name and uid");
    if let Some(existing) = api.get_opt(name).await? {
        if !owned_by(&existing, &uid) {
            return Ok(Published::Conflict(format!(
                "ConfigMap {name} exists and is not owned by this PodIamRole; rename or delete it"
            )));
        }
        let current = existing.data.as_ref().and_then(|d| d.get(CONFIG_KEY));
        if current.map(String::as_str) == Some(text) {
            return Ok(Published::Applied);
        }
    }
    let patch = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "labels": {CONFIG_MAP_LABEL.0: CONFIG_MAP_LABEL.1},
            "ownerReferences": [reference],
        },
        "data": {CONFIG_KEY: text},
    });
    // Without force: a field another manager owns is reported, never overridden.
    match api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(Published::Applied),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Published::Conflict(format!(
            "another field manager owns fields of ConfigMap {name}: {}",
            status.message
        ))),
        Err(e) => Err(e),
    }
}

/// Deletes the ConfigMap `name` if, and only if, it is owned by the object with `uid`.
pub async fn remove(api: &Api<ConfigMap>, name: &str, uid: &str) -> Result<(), kube::Error> {
    let Some(existing) = api.get_opt(name).await? else {
        return Ok(());
    };
    if !owned_by(&existing, uid) {
        return Ok(());
    }
    // The precondition pins the deletion to the ConfigMap just read.
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: existing.meta().uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
