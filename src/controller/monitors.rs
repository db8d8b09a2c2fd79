//! What runs beside the Controllers during a term: the bulk listing with its orphan
//! scan, the search for PodIamRoles that cannot be decoded, and the readiness metric.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use futures::{StreamExt, future::join_all};
use kube::{
    Client, ResourceExt,
    api::PartialObjectMeta,
    runtime::{WatchStreamExt, reflector, reflector::Store, watcher},
};
use tokio::sync::watch;

use crate::{
    k8s::{
        listed::{Listed, flag_listed},
        trim_for_cache,
    },
    listing::{AccountObserver, Listing},
    metrics::{Metrics, Readiness},
    reconcile::{Caches, Shared},
    undecodable::UndecodableMonitor,
};
use irsa_api::{PodIamRole, RoleMode};
use irsa_core::{config::OperatorConfig, desired, orphans::LiveObject};

use super::watches::scoped;

/// How long the search for PodIamRoles that cannot be decoded waits at most for the typed
/// caches to list: a paged list fails whole on one such object, and never completes.
const TYPED_SYNC_GRACE: Duration = Duration::from_secs(30);
/// How often PodIamRoles missing from the typed cache are looked for.
const UNDECODABLE_CHECK: Duration = Duration::from_secs(5);

/// Points `irsa_operator_podiamroles` at this term's caches, and away from them when the
/// term ends: only the leader reports, so sums over replicas never double count.
pub(super) struct ReadySourceGuard(Arc<Metrics>);

impl ReadySourceGuard {
    pub(super) fn install(metrics: &Arc<Metrics>, caches: &[Caches]) -> Self {
        let stores: Vec<Store<PodIamRole>> = caches.iter().map(|c| c.roles.clone()).collect();
        metrics.set_ready_source(Some(Box::new(move || {
            stores
                .iter()
                .flat_map(Store::state)
                .map(|role| readiness(&role))
                .collect()
        })));
        Self(metrics.clone())
    }
}

impl Drop for ReadySourceGuard {
    fn drop(&mut self) {
        self.0.set_ready_source(None);
    }
}

/// The Ready condition's status and reason (`Unknown`/`NotReconciled` before the first
/// status), and whether the object waits for its cleanup.
fn readiness(role: &PodIamRole) -> Readiness {
    let (ready, reason) = role
        .status
        .iter()
        .flat_map(|status| &status.conditions)
        .find(|condition| condition.type_ == "Ready")
        .map(|condition| (condition.status.clone(), condition.reason.clone()))
        .unwrap_or_else(|| ("Unknown".into(), "NotReconciled".into()));
    Readiness {
        ready,
        reason,
        deleting: role.metadata.deletion_timestamp.is_some(),
    }
}

/// Watches the metadata of PodIamRoles in every scope and, once it and the typed caches
/// have synced, runs the orphan scan and the search for PodIamRoles that cannot be decoded.
pub(super) async fn object_monitors(
    shared: Shared,
    scopes: Vec<Option<String>>,
    typed: Vec<(Store<PodIamRole>, Listed)>,
    observer: AccountObserver,
    publish: watch::Sender<Listing>,
) {
    let mut metadata = Vec::new();
    let mut metadata_listed = Vec::new();
    let mut drives = Vec::new();
    for scope in &scopes {
        let (store, listed, drive) = live_objects_cache(&shared.client, scope.as_deref());
        metadata.push(store);
        metadata_listed.push(listed);
        drives.push(drive);
    }
    let (typed_stores, typed_listed): (Vec<_>, Vec<_>) = typed.into_iter().unzip();
    let observed_stores = typed_stores.clone();
    let undecodable = UndecodableMonitor {
        client: shared.client.clone(),
        recorder: shared.recorder.clone(),
        caches: metadata.iter().cloned().zip(typed_stores).collect(),
        interval: UNDECODABLE_CHECK,
    };
    let monitors = async move {
        // Only a synced cache tells which roles lost their PodIamRole.
        if !Listed::all(&metadata_listed).await {
            return;
        }
        let config = shared.config.clone();
        let orphan_scan = observer.run(
            publish,
            move || live_objects(&metadata),
            move || observed_role_names(&observed_stores, &config),
        );
        let search = async {
            // A typed cache that never lists is what the search is for.
            let _ = tokio::time::timeout(TYPED_SYNC_GRACE, Listed::all(&typed_listed)).await;
            undecodable.run().await;
        };
        futures::join!(orphan_scan, search);
    };
    futures::join!(join_all(drives), monitors);
}

/// The metadata of the PodIamRoles in `namespace`, and the future that keeps it current.
/// Metadata always decodes, so no spec can hide a PodIamRole from the orphan scan.
fn live_objects_cache(
    client: &Client,
    namespace: Option<&str>,
) -> (
    Store<PartialObjectMeta<PodIamRole>>,
    Listed,
    impl Future<Output = ()> + use<>,
) {
    let (store, writer) = reflector::store();
    let (events, listed) = flag_listed(
        reflector(
            writer,
            watcher(
                scoped::<PartialObjectMeta<PodIamRole>>(client, namespace),
                watcher::Config::default(),
            )
            .modify(trim_for_cache),
        )
        .default_backoff(),
    );
    (store, listed, events.for_each(|_| async {}))
}

/// Every PodIamRole that exists, as the ownership tags of its role name it.
fn live_objects(stores: &[Store<PartialObjectMeta<PodIamRole>>]) -> BTreeSet<LiveObject> {
    stores
        .iter()
        .flat_map(|store| store.state())
        .map(|role| LiveObject {
            namespace: role.namespace().unwrap_or_default(),
            name: role.name_any(),
            uid: role.uid().unwrap_or_default(),
        })
        .collect()
}

/// The roles `mode: Observe` PodIamRoles of the operator's own account use: its listing
/// keeps them too. (In target accounts, observed roles are read with `GetRole`.)
fn observed_role_names(stores: &[Store<PodIamRole>], config: &OperatorConfig) -> BTreeSet<String> {
    stores
        .iter()
        .flat_map(|store| store.state())
        .filter(|role| role.spec.mode == RoleMode::Observe && role.spec.account.is_none())
        .map(|role| {
            let namespace = role.namespace().unwrap_or_default();
            desired::role_name(&role.spec, &namespace, &role.name_any(), config)
        })
        .collect()
}
