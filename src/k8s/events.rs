//! Events on PodIamRoles. Publishing is best effort: a lost Event must not fail a reconcile.

use kube::{
    Resource,
    runtime::events::{Event, EventType, Recorder},
};

use irsa_api::PodIamRole;
use irsa_core::status::truncated;

/// The most an Event's note may hold: the API server refuses a longer one ("can have at
/// most 1024 characters", counted in bytes).
pub const NOTE_LIMIT: usize = 1024;

/// Every Event the operator records is built here, so every note fits the API server's limit.
pub fn event(type_: EventType, reason: &str, note: &str) -> Event {
    Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncated(note, NOTE_LIMIT)),
        action: reason.to_string(),
        secondary: None,
    }
}

pub async fn publish(
    recorder: &Recorder,
    object: &PodIamRole,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = event(type_, reason, &note);
    if let Err(error) = recorder.publish(&event, &object.object_ref(&())).await {
        tracing::warn!(%error, reason, "could not publish event");
    }
}
