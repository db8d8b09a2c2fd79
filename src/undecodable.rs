//! PodIamRoles the operator cannot decode, for example stored before the schema bounded
//! policies: the typed watch skips them, so without this they would get no status at all.
//!
//! They are found by comparing the metadata cache, which always decodes, with the typed
//! cache; confirmed by decoding the stored object; and reported on the object itself:
//! `Ready=False` with reason `InvalidSpec`, and a Warning Event.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Client, Resource, ResourceExt,
    api::{PartialObjectMeta, Patch, PatchParams},
    core::{Request, params::GetParams},
    runtime::{
        events::EventType,
        reflector::{ObjectRef, Store},
    },
};
use serde_json::{Value, json};
use tracing::warn;

use crate::k8s::{FIELD_MANAGER, events::Events};
use irsa_api::PodIamRole;

/// The Ready reason the operator uses for a spec it refuses.
const REASON: &str = irsa_core::reason::Reason::InvalidSpec.as_str();

pub struct UndecodableMonitor {
    pub client: Client,
    pub recorder: Events,
    /// Per watched scope: the metadata cache and the typed cache of PodIamRoles.
    pub caches: Vec<(Store<PartialObjectMeta<PodIamRole>>, Store<PodIamRole>)>,
    pub interval: Duration,
}

impl UndecodableMonitor {
    /// Checks every interval; start it once the metadata caches have synced. Until the
    /// typed cache has synced too, every object is missing from it: each generation of each
    /// object is then decoded once, so one that blocks a paged list is still named.
    pub async fn run(self) {
        // The generation last checked, by UID: the status written here changes the
        // resourceVersion but not the generation, so it does not cause another check.
        let mut checked: BTreeMap<String, Option<i64>> = BTreeMap::new();
        loop {
            let mut present = BTreeSet::new();
            for (metadata, typed) in &self.caches {
                for object in metadata.state() {
                    let (uid, generation) =
                        (object.uid().unwrap_or_default(), object.metadata.generation);
                    present.insert(uid.clone());
                    if in_typed_cache(&object, typed) || checked.get(&uid) == Some(&generation) {
                        continue;
                    }
                    match self.check(&object).await {
                        Ok(()) => {
                            checked.insert(uid, generation);
                        }
                        Err(error) => {
                            warn!(name = %object.name_any(), %error, "cannot check a PodIamRole missing from the cache")
                        }
                    }
                }
            }
            checked.retain(|uid, _| present.contains(uid));
            tokio::time::sleep(self.interval).await;
        }
    }

    /// Decodes the stored object, and reports it when that fails.
    async fn check(&self, object: &PartialObjectMeta<PodIamRole>) -> Result<(), kube::Error> {
        let namespace = object.namespace().unwrap_or_default();
        let url = PodIamRole::url_path(&(), Some(&namespace));
        let name = object.name_any();
        let request = Request::new(url)
            .get(&name, &GetParams::default())
            .map_err(kube::Error::BuildRequest)?;
        let stored = self.client.request_text(request).await?;
        let Err(error) = serde_json::from_str::<PodIamRole>(&stored) else {
            return Ok(());
        };
        let message = decode_failure_message(&error);
        warn!(%namespace, %name, %message, "PodIamRole cannot be decoded");
        let generation = object.metadata.generation;
        let patch = status_patch(&name, generation, &message, Time(jiff::Timestamp::now()));
        let request = Request::new(PodIamRole::url_path(&(), Some(&namespace)))
            .patch_subresource(
                "status",
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .map_err(kube::Error::BuildRequest)?;
        self.client.request_text(request).await?;
        let event = crate::k8s::events::event(EventType::Warning, REASON, &message);
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            warn!(%error, "could not publish event");
        }
        Ok(())
    }
}

/// True when the typed cache holds this very version of the object.
fn in_typed_cache(object: &PartialObjectMeta<PodIamRole>, typed: &Store<PodIamRole>) -> bool {
    let key = ObjectRef::<PodIamRole>::new(&object.name_any())
        .within(&object.namespace().unwrap_or_default());
    typed
        .get(&key)
        .is_some_and(|cached| cached.resource_version() == object.resource_version())
}

/// What the tenant reads in the status and the Event.
fn decode_failure_message(error: &serde_json::Error) -> String {
    format!(
        "the operator cannot decode this PodIamRole, so it is not reconciled: {error}. \
         Fix the spec (policies nest only a few levels) or delete the object"
    )
}

/// The status of an object that cannot be decoded, as a server-side apply patch.
fn status_patch(name: &str, generation: Option<i64>, message: &str, now: Time) -> Value {
    json!({
        "apiVersion": "irsa.dev/v1alpha1",
        "kind": "PodIamRole",
        "metadata": {"name": name},
        "status": {
            "observedGeneration": generation,
            "conditions": [{
                "type": "Ready",
                "status": "False",
                "reason": REASON,
                "message": irsa_core::status::truncated(message, irsa_core::status::CONDITION_MESSAGE_LIMIT),
                "observedGeneration": generation,
                "lastTransitionTime": now,
            }],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use irsa_api::PodIamRoleStatus;

    #[test]
    fn a_policy_nested_too_deep_is_explained() {
        let mut policy = json!("x");
        for _ in 0..200 {
            policy = json!([policy]);
        }
        let stored = json!({"apiVersion": "irsa.dev/v1alpha1", "kind": "PodIamRole",
            "metadata": {"name": "deep", "namespace": "shop"},
            "spec": {"serviceAccountName": "app", "policy": {"Statement": policy}}});
        let error = serde_json::from_str::<PodIamRole>(&stored.to_string()).unwrap_err();
        let message = decode_failure_message(&error);
        assert!(message.contains("recursion limit exceeded"), "{message}");
    }

    #[test]
    fn the_status_reads_back_as_invalid_spec_for_the_generation() {
        let now = Time(jiff::Timestamp::UNIX_EPOCH);
        let patch = status_patch("deep", Some(3), "cannot decode", now);
        let status: PodIamRoleStatus = serde_json::from_value(patch["status"].clone()).unwrap();
        assert_eq!(status.observed_generation, Some(3));
        let ready = &status.conditions[0];
        assert_eq!(
            (
                ready.type_.as_str(),
                ready.status.as_str(),
                ready.reason.as_str()
            ),
            ("Ready", "False", REASON)
        );
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(ready.message, "cannot decode");
    }
}
