//! Events on PodIamRoles. Publishing is best effort: a lost Event must not fail a reconcile.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client, Resource,
    runtime::events::{Event, EventType, Recorder, Reporter},
};

use irsa_api::PodIamRole;
use irsa_core::{per_object::PerObject, status::truncated};

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

/// How long kube's Recorder keeps a published Event to count repeats of it into a series.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// kube's Recorders, one per object (by UID). A Recorder keeps every Event it published
/// for the series window, keyed by object, and drops expired ones only when it publishes
/// again: one for all objects would keep those of deleted objects, and after a burst a
/// quiet operator would keep them for good. So an object's Recorder goes with the object
/// (`forget`), or once idle for the window (`drop_idle`), when nothing in it can count.
#[derive(Clone)]
pub struct Events(Arc<Mutex<Recorders>>);

struct Recorders {
    client: Client,
    reporter: Reporter,
    /// Each with its last publish.
    by_object: PerObject<(Recorder, Instant)>,
}

impl Events {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self(Arc::new(Mutex::new(Recorders {
            client,
            reporter,
            by_object: PerObject::default(),
        })))
    }

    pub async fn publish(
        &self,
        event: &Event,
        reference: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let recorder = {
            let mut recorders = self.0.lock().expect("events lock");
            let Recorders {
                client,
                reporter,
                by_object,
            } = &mut *recorders;
            let uid = reference.uid.as_deref().unwrap_or_default();
            let (recorder, last_publish) = by_object.get_or_insert(uid, || {
                (
                    Recorder::new(client.clone(), reporter.clone()),
                    Instant::now(),
                )
            });
            *last_publish = Instant::now();
            recorder.clone()
        };
        recorder.publish(event, reference).await
    }

    /// The object is gone: no Event of it can join a series any more.
    pub fn forget(&self, uid: &str) {
        self.0.lock().expect("events lock").by_object.remove(uid);
    }

    /// Drops the Recorders of objects with no publish in the series window.
    pub fn drop_idle(&self) {
        self.0
            .lock()
            .expect("events lock")
            .by_object
            .retain(|_, (_, last_publish)| last_publish.elapsed() < SERIES_WINDOW);
    }
}

pub async fn publish(
    recorder: &Events,
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
