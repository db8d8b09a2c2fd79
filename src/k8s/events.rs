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

/// How long kube's Recorder keeps a published Event to count repeats of it into a series.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// kube's Recorder, renewed once idle: it drops expired Events only when it publishes
/// again, so after a burst a quiet operator would keep them (and their table) for good.
/// Once the last publish is older than the series window nothing in it can count any
/// more, and a fresh Recorder behaves the same.
#[derive(Clone)]
pub struct Events(Arc<Mutex<Current>>);

struct Current {
    client: Client,
    reporter: Reporter,
    recorder: Recorder,
    /// None while the Recorder holds nothing.
    last_publish: Option<Instant>,
}

impl Events {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        let recorder = Recorder::new(client.clone(), reporter.clone());
        Self(Arc::new(Mutex::new(Current {
            client,
            reporter,
            recorder,
            last_publish: None,
        })))
    }

    pub async fn publish(
        &self,
        event: &Event,
        reference: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let recorder = {
            let mut current = self.0.lock().expect("events lock");
            current.renew_if_idle();
            current.last_publish = Some(Instant::now());
            current.recorder.clone()
        };
        recorder.publish(event, reference).await
    }

    /// Drops the Events kept for series once none can join one any more.
    pub fn drop_idle(&self) {
        self.0.lock().expect("events lock").renew_if_idle();
    }
}

impl Current {
    fn renew_if_idle(&mut self) {
        if self
            .last_publish
            .is_some_and(|last| last.elapsed() >= SERIES_WINDOW)
        {
            self.recorder = Recorder::new(self.client.clone(), self.reporter.clone());
            self.last_publish = None;
        }
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
