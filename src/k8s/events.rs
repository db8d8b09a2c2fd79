//! Events on PodIamRoles. Publishing is best effort: a lost Event must not fail a reconcile.

use kube::{
    Resource,
    runtime::events::{Event, EventType, Recorder},
};

use irsa_api::PodIamRole;

pub async fn publish(
    recorder: &Recorder,
    object: &PodIamRole,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: reason.to_string(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &object.object_ref(&())).await {
        tracing::warn!(%error, reason, "could not publish event");
    }
}
