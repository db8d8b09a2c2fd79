//! Whether the API server streams a watch's initial state instead of a list (WatchList:
//! Kubernetes 1.27 alpha, on by default since 1.32).
//!
//! It matters for PodIamRoles a tenant writes: streamed, each object is decoded on its own,
//! so one the operator cannot decode is skipped and costs only itself. A list page is
//! decoded whole, so one such object fails the list of all of them, again at every retry.

use futures::{StreamExt, pin_mut};
use kube::{
    Api,
    api::{PartialObjectMeta, WatchEvent, WatchParams},
    runtime::watcher,
};
use tracing::{info, warn};

use irsa_api::PodIamRole;

/// The annotation of the bookmark that ends a watch's initial events.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";
/// The probe's watch closes on its own after this many seconds.
const PROBE_TIMEOUT_SECS: u32 = 5;

/// How to watch PodIamRoles: streamed when the API server can, in pages otherwise.
pub async fn role_watch_config(api: &Api<PartialObjectMeta<PodIamRole>>) -> watcher::Config {
    if streams_initial_events(api).await {
        info!("PodIamRoles are streamed: one that cannot be decoded affects only itself");
        watcher::Config::default().streaming_lists()
    } else {
        warn!(
            "the API server does not stream watches (WatchList): \
             one PodIamRole that cannot be decoded stops the list of all"
        );
        watcher::Config::default()
    }
}

/// True when a streamed initial state of `api` ends with its bookmark. Servers with the
/// feature off refuse the request; servers that predate it ignore the parameter and never
/// send that bookmark.
async fn streams_initial_events(api: &Api<PartialObjectMeta<PodIamRole>>) -> bool {
    let params = WatchParams::streaming_lists().timeout(PROBE_TIMEOUT_SECS);
    let Ok(events) = api.watch_metadata(&params, "0").await else {
        return false;
    };
    pin_mut!(events);
    while let Some(Ok(event)) = events.next().await {
        if let WatchEvent::Bookmark(bookmark) = event
            && bookmark
                .metadata
                .annotations
                .contains_key(INITIAL_EVENTS_END)
        {
            return true;
        }
    }
    false
}
