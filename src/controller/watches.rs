//! The Controllers' watches and caches: one Controller per watched scope, woken by its
//! PodIamRoles, the ServiceAccounts they name, guardrails, target accounts and namespace
//! labels.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Api, Client, ResourceExt,
    api::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        controller::Error as ControllerError,
        predicates, reflector,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::{
    config::RunArgs,
    k8s::{
        indexed::{Indexed, keep_indexed},
        listed::{Listed, flag_listed},
        service_account::ROLE_ARN_ANNOTATION,
        trim_for_cache,
    },
    leader::shutdown_requested,
    reconcile::{
        AnnotationValue, Caches, Context, INDEXED_ANNOTATIONS, Shared, SyncGate, error_policy,
        reconcile,
    },
};
use irsa_api::{PodIamRole, PodIamRoleAccount, PodIamRoleGuardrail};

/// How often what is kept per object is checked against the PodIamRole cache, and the
/// Event recorder for Events no series can use any more.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

pub(super) fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Whether each cache of one watched scope has listed.
pub(super) struct Listings {
    pub(super) roles: Listed,
    service_accounts: Listed,
    namespaces: Listed,
    guardrails: Listed,
    accounts: Listed,
}

impl Listings {
    pub(super) fn all(&self) -> [Listed; 5] {
        [
            self.roles.clone(),
            self.service_accounts.clone(),
            self.namespaces.clone(),
            self.guardrails.clone(),
            self.accounts.clone(),
        ]
    }
}

/// One Controller for PodIamRoles in `namespace` (or everywhere), woken also by the
/// ServiceAccounts they name or annotated.
pub(super) fn controller_for(
    namespace: Option<&str>,
    shared: &Shared,
    args: &RunArgs,
    role_watch: watcher::Config,
) -> (impl Future<Output = ()> + use<>, Caches, Listings) {
    let (sa_store, sa_writer) = reflector::store();
    let annotated_service_accounts = Indexed::default();
    let (sa_events, sa_listed) = flag_listed(keep_indexed(
        reflector(
            sa_writer,
            watcher(
                scoped::<PartialObjectMeta<ServiceAccount>>(&shared.client, namespace),
                watcher::Config::default(),
            )
            .modify(trim_for_cache),
        )
        .default_backoff(),
        sa_store.clone(),
        annotated_service_accounts.clone(),
        annotation_values,
    ));
    let service_accounts = sa_events.touched_objects();
    // The Controller's own store is fed here, so its listing can be flagged without
    // waiting on the store (see `k8s::listed`).
    let (roles, role_writer) = reflector::store();
    let roles_by_namespace = Indexed::default();
    let (role_events, roles_listed) = flag_listed(keep_indexed(
        reflector(
            role_writer,
            watcher(scoped::<PodIamRole>(&shared.client, namespace), role_watch)
                .modify(trim_for_cache),
        )
        .default_backoff(),
        roles.clone(),
        roles_by_namespace.clone(),
        |role| (vec![role.namespace().unwrap_or_default()], role.clone()),
    ));

    let synced = SyncGate::default();

    // Guardrails, target accounts and the labels that select namespaces: a change
    // re-evaluates every role.
    let (guardrails, guardrails_listed, guardrail_changes) =
        cluster_wide::<PodIamRoleGuardrail>(&shared.client);
    let (accounts, accounts_listed, account_changes) =
        cluster_wide::<PodIamRoleAccount>(&shared.client);
    let (namespaces, namespace_writer) = reflector::store();
    let namespace_config = match namespace {
        Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
        None => watcher::Config::default(),
    };
    let (namespace_events, namespaces_listed) = flag_listed(
        reflector(
            namespace_writer,
            watcher(
                Api::<PartialObjectMeta<Namespace>>::all(shared.client.clone()),
                namespace_config,
            )
            .modify(trim_for_cache),
        )
        .default_backoff(),
    );
    let namespace_changes = namespace_events
        .touched_objects()
        .predicate_filter(predicates::labels, Default::default());
    let open = synced.clone();
    let policy_changes = futures::stream::select(
        futures::stream::select(guardrail_changes, namespace_changes.map(|_| ())),
        account_changes,
    )
    .filter(move |()| futures::future::ready(open.is_open()));

    let caches = Caches {
        service_accounts: sa_store,
        annotated_service_accounts,
        namespaces,
        guardrails,
        roles: roles.clone(),
        roles_by_namespace: roles_by_namespace.clone(),
        accounts,
        synced: synced.clone(),
    };
    let ctx = Arc::new(Context::new(
        shared.clone(),
        args.resync_interval,
        usize::from(args.concurrency),
        caches.clone(),
    ));
    // What is kept per object goes with it: at its delete event, and at a relist that no
    // longer holds it (deleted while no watch was open).
    let role_events = role_events.inspect({
        let ctx = ctx.clone();
        move |event| match event {
            Ok(watcher::Event::Delete(role)) => {
                if let Some(uid) = &role.metadata.uid {
                    ctx.forget(uid);
                }
            }
            Ok(watcher::Event::InitDone) => ctx.sweep(),
            _ => {}
        }
    });
    // Until the gate opens, triggers are dropped: opening it reconciles every object.
    let open = synced.clone();
    let role_triggers = role_events
        .applied_objects()
        .filter(move |_| futures::future::ready(open.is_open()));
    let controller = Controller::for_stream(role_triggers, roles.clone());
    // A change in the provider's health, at home or in a target account, changes every
    // PodIamRole's status. Counted from the gate's opening, which reconciles everything
    // with the provider as it was then.
    let home_provider = shared.accounts.home().provider.clone();
    let account_changes = shared.accounts.changes();
    let opened = synced.clone();
    let provider_changes = futures::stream::once(async move {
        opened.opened().await;
        futures::stream::select(
            changes_from_now(home_provider),
            changes_from_now(account_changes),
        )
    })
    .flatten();
    let opened = synced.clone();
    let gate_opens = futures::stream::once(async move { opened.opened().await });
    // A reconcile may still write an entry after its object's delete event; the Event
    // recorder keeps what it published until it publishes again.
    let sweeps = {
        let ctx = ctx.clone();
        async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            loop {
                every.tick().await;
                ctx.sweep();
                ctx.shared.recorder.drop_idle();
            }
        }
    };
    let open = synced.clone();
    // kube-runtime's concurrency is left unlimited: the context's gate limits, in order
    // (see `reconcile::gate`).
    let run = controller
        .watches_stream(service_accounts, move |sa| {
            if open.is_open() {
                roles_for_service_account(&roles_by_namespace, &sa)
            } else {
                Vec::new()
            }
        })
        .reconcile_all_on(gate_opens)
        .reconcile_all_on(provider_changes)
        .reconcile_all_on(policy_changes)
        .graceful_shutdown_on(stop_starting_on_shutdown(ctx.clone()))
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                // A retry or resync scheduled for an object deleted since: nothing to do.
                Err(ControllerError::ObjectNotFound(object)) => {
                    debug!(%object, "gone before its scheduled reconcile");
                }
                Err(error) => warn!(%error, "controller error"),
                Ok(_) => {}
            }
        });
    let run = async move {
        tokio::select! {
            () = run => {}
            () = sweeps => {}
        }
    };
    let listings = Listings {
        roles: roles_listed,
        service_accounts: sa_listed,
        namespaces: namespaces_listed,
        guardrails: guardrails_listed,
        accounts: accounts_listed,
    };
    (run, caches, listings)
}

/// Yields on each change of `value` after the current one.
fn changes_from_now<T: Send + Sync + 'static>(
    mut value: watch::Receiver<T>,
) -> impl futures::Stream<Item = ()> + Send {
    value.borrow_and_update();
    futures::stream::unfold(value, |mut value| async move {
        value.changed().await.ok()?;
        Some(((), value))
    })
}

/// Resolves on SIGTERM or Ctrl-C, once no waiting reconcile will start: the Controller
/// then waits only for the running ones.
async fn stop_starting_on_shutdown(ctx: Arc<Context>) {
    let mut requested = shutdown_requested();
    let _ = requested.wait_for(|requested| *requested).await;
    ctx.stop_starting();
}

/// A cache of every object of a cluster-scoped kind that PodIamRoles are judged by
/// (guardrails, target accounts), whether it has listed, and its spec changes.
fn cluster_wide<K>(
    client: &Client,
) -> (
    Store<K>,
    Listed,
    impl futures::Stream<Item = ()> + Send + use<K>,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let (events, listed) = flag_listed(
        reflector(
            writer,
            watcher(Api::<K>::all(client.clone()), watcher::Config::default())
                .modify(trim_for_cache),
        )
        .default_backoff(),
    );
    let changes = events
        .touched_objects()
        .predicate_filter(predicates::generation, Default::default())
        .map(|_| ());
    (store, listed, changes)
}

/// The PodIamRoles a ServiceAccount event concerns: those naming it, and those whose
/// role it is annotated with (so a stale annotation gets released).
fn roles_for_service_account(
    roles_by_namespace: &Indexed<String, Arc<PodIamRole>>,
    sa: &PartialObjectMeta<ServiceAccount>,
) -> Vec<ObjectRef<PodIamRole>> {
    let name = sa.name_any();
    let annotated = sa.annotations().get(ROLE_ARN_ANNOTATION);
    (roles_by_namespace.read())
        .group(&sa.namespace().unwrap_or_default())
        .filter(|role| {
            role.spec.service_account_name == name
                || annotated.is_some()
                    && role.status.as_ref().and_then(|s| s.role_arn.as_ref()) == annotated
        })
        .map(|role| ObjectRef::from_obj(role.as_ref()))
        .collect()
}

/// Where a ServiceAccount goes in `annotated_service_accounts`: under each annotation of
/// ours it carries.
fn annotation_values(
    sa: &Arc<PartialObjectMeta<ServiceAccount>>,
) -> (Vec<AnnotationValue>, String) {
    let namespace = sa.namespace().unwrap_or_default();
    let values = INDEXED_ANNOTATIONS
        .into_iter()
        .filter_map(|key| {
            let value = sa.annotations().get(key)?;
            Some(AnnotationValue {
                namespace: namespace.clone(),
                key,
                value: value.clone(),
            })
        })
        .collect();
    (values, sa.name_any())
}
