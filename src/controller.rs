//! Start-up and Controller wiring: resolve the account and issuer, then run one
//! Controller per watched scope until a signal arrives.

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::{StreamExt, future::join_all};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Api, Client, ResourceExt,
    api::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        controller::Config as ControllerConfig,
        events::{Recorder, Reporter},
        predicates, reflector,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::{
    config::{self, RunArgs},
    crd::{DEFAULT_AUDIENCE, PodIamRole},
    guardrail::PodIamRoleGuardrail,
    http,
    iam::{IamApi, aws::AwsIam},
    k8s::{
        FIELD_MANAGER, issuer::discover_issuer, service_account::ROLE_ARN_ANNOTATION,
        watch_list::role_watch_config,
    },
    metrics::Metrics,
    oidc::ProviderMode,
    orphan_monitor::OrphanMonitor,
    orphans::{LiveObject, Scope},
    provider::ProviderMonitor,
    reconciler::{Caches, Context, Shared, error_policy, reconcile},
    undecodable::UndecodableMonitor,
};

/// How often readiness re-checks the caches until they are synced.
const READY_POLL: std::time::Duration = std::time::Duration::from_millis(200);
/// How long the search for PodIamRoles that cannot be decoded waits for the typed caches.
const TYPED_SYNC_GRACE: std::time::Duration = std::time::Duration::from_secs(30);
/// How often PodIamRoles missing from the typed cache are looked for.
const UNDECODABLE_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

pub type StartError = Box<dyn std::error::Error + Send + Sync>;

pub async fn run(args: RunArgs) -> Result<(), StartError> {
    let client = Client::try_default().await?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let identity = aws_sdk_sts::Client::new(&aws)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| {
            format!(
                "STS GetCallerIdentity failed, check the AWS credentials: {}",
                aws_sdk_sts::error::DisplayErrorContext(e)
            )
        })?;
    let issuer = match &args.oidc_issuer {
        Some(issuer) => issuer.clone(),
        None => discover_issuer(&client).await?,
    };
    let config = config::resolve(
        &args,
        &issuer,
        identity.arn().unwrap_or_default(),
        identity.account().unwrap_or_default(),
    )?;
    info!(
        cluster = %config.cluster_name,
        account = %config.account_id,
        oidc_provider = %config.oidc_provider_arn(),
        role_path = %config.role_path,
        "starting"
    );

    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let bound = http::serve(args.metrics_addr, metrics.clone(), ready.clone()).await?;
    info!(address = %bound, "serving /metrics, /livez and /readyz");

    let iam: Arc<dyn IamApi> =
        Arc::new(AwsIam::new(aws_sdk_iam::Client::new(&aws), metrics.clone()));
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let scopes: Vec<Option<String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().cloned().map(Some).collect()
    };
    let (provider_tx, provider_rx) = watch::channel(None);
    let poke = Arc::new(Notify::new());
    let monitor = ProviderMonitor {
        iam: iam.clone(),
        metrics: metrics.clone(),
        mode: args.oidc_provider_mode,
        arn: config.oidc_provider_arn(),
        issuer: issuer.clone(),
        issuer_host_path: config.issuer_host_path.clone(),
        cluster: config.cluster_name.clone(),
        ca_file: args.oidc_ca_file.clone(),
        interval: args.resync_interval,
        poke: poke.clone(),
    };
    let orphans = OrphanMonitor {
        iam: iam.clone(),
        metrics: metrics.clone(),
        scope: Scope {
            cluster: config.cluster_name.clone(),
            role_path: config.role_path.clone(),
            namespaces: (!args.namespaces.is_empty())
                .then(|| args.namespaces.iter().cloned().collect()),
        },
        interval: args.resync_interval,
        delete_after: args.delete_orphans_after,
    };
    let first_scope = scoped::<PartialObjectMeta<PodIamRole>>(&client, scopes[0].as_deref());
    let role_watch = role_watch_config(&first_scope).await;
    let shared = Shared {
        client,
        iam,
        config,
        recorder,
        metrics,
        provider: provider_rx,
        provider_poke: (args.oidc_provider_mode == ProviderMode::Manage).then_some(poke),
    };
    let (controllers, caches): (Vec<_>, Vec<_>) = scopes
        .iter()
        .map(|scope| controller_for(scope.as_deref(), &shared, &args, role_watch.clone()))
        .unzip();
    let role_stores: Vec<Store<PodIamRole>> = caches.iter().map(|c| c.roles.clone()).collect();
    spawn_object_monitors(&shared, &scopes, role_stores.clone(), orphans);
    tokio::spawn(async move {
        for scope in caches {
            let listed = wait_listed(&scope.roles).await
                && wait_listed(&scope.service_accounts).await
                && wait_listed(&scope.namespaces).await
                && wait_listed(&scope.guardrails).await;
            if !listed {
                return;
            }
            scope.synced.store(true, Ordering::Relaxed);
        }
        ready.store(true, Ordering::Relaxed);
        info!("caches synced, ready");
        // Only now are the audiences in use known: an earlier check could drop client IDs.
        monitor
            .run(move || audiences_in_use(&role_stores), provider_tx)
            .await;
    });
    join_all(controllers).await;
    info!("stopped");
    Ok(())
}

/// Watches the metadata of PodIamRoles in every scope and, once it and the typed caches
/// have synced, runs the orphan scan and the search for PodIamRoles that cannot be decoded.
fn spawn_object_monitors(
    shared: &Shared,
    scopes: &[Option<String>],
    typed: Vec<Store<PodIamRole>>,
    orphans: OrphanMonitor,
) {
    let metadata: Vec<_> = scopes
        .iter()
        .map(|scope| {
            let (store, drive) = live_objects_cache(&shared.client, scope.as_deref());
            tokio::spawn(drive);
            store
        })
        .collect();
    let undecodable = UndecodableMonitor {
        client: shared.client.clone(),
        recorder: shared.recorder.clone(),
        caches: metadata.iter().cloned().zip(typed).collect(),
        interval: UNDECODABLE_CHECK,
    };
    tokio::spawn(async move {
        // Only a synced cache tells which roles lost their PodIamRole.
        for store in &metadata {
            if !wait_listed(store).await {
                return;
            }
        }
        tokio::spawn(orphans.run(move || live_objects(&metadata)));
        // A typed cache normally syncs as fast; one that does not is what the search is for.
        for (_, typed) in &undecodable.caches {
            let _ = tokio::time::timeout(TYPED_SYNC_GRACE, wait_listed(typed)).await;
        }
        undecodable.run().await;
    });
}

/// Waits until `store` has listed once; false if its watcher is gone.
async fn wait_listed<K>(store: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    // The controller awaits the same one-shot signal and only the latest poller is
    // woken, so poll again periodically rather than wait once.
    loop {
        match tokio::time::timeout(READY_POLL, store.wait_until_ready()).await {
            Ok(result) => return result.is_ok(),
            Err(_) => continue,
        }
    }
}

/// Every audience PodIamRoles use, plus the default so new roles work at once.
fn audiences_in_use(stores: &[Store<PodIamRole>]) -> BTreeSet<String> {
    let mut audiences = BTreeSet::from([DEFAULT_AUDIENCE.to_string()]);
    for store in stores {
        audiences.extend(
            store
                .state()
                .iter()
                .filter_map(|role| role.spec.audience.clone()),
        );
    }
    audiences
}

/// The metadata of the PodIamRoles in `namespace`, and the future that keeps it current.
/// Metadata always decodes, so no spec can hide a PodIamRole from the orphan scan.
fn live_objects_cache(
    client: &Client,
    namespace: Option<&str>,
) -> (
    Store<PartialObjectMeta<PodIamRole>>,
    impl Future<Output = ()> + use<>,
) {
    let (store, writer) = reflector::store();
    let events = reflector(
        writer,
        watcher(
            scoped::<PartialObjectMeta<PodIamRole>>(client, namespace),
            watcher::Config::default(),
        ),
    )
    .default_backoff();
    (store, events.for_each(|_| async {}))
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

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// One Controller for PodIamRoles in `namespace` (or everywhere), woken also by the
/// ServiceAccounts they name or annotated.
fn controller_for(
    namespace: Option<&str>,
    shared: &Shared,
    args: &RunArgs,
    role_watch: watcher::Config,
) -> (impl Future<Output = ()> + use<>, Caches) {
    let (sa_store, sa_writer) = reflector::store();
    let service_accounts = reflector(
        sa_writer,
        watcher(
            scoped::<PartialObjectMeta<ServiceAccount>>(&shared.client, namespace),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let controller = Controller::new(scoped::<PodIamRole>(&shared.client, namespace), role_watch);
    let roles = controller.store();

    // Guardrails and the labels that select namespaces: a change re-evaluates every role.
    let (guardrails, guardrail_writer) = reflector::store();
    let guardrail_changes = reflector(
        guardrail_writer,
        watcher(
            Api::<PodIamRoleGuardrail>::all(shared.client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects()
    .predicate_filter(predicates::generation, Default::default());
    let (namespaces, namespace_writer) = reflector::store();
    let namespace_config = match namespace {
        Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
        None => watcher::Config::default(),
    };
    let namespace_changes = reflector(
        namespace_writer,
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(shared.client.clone()),
            namespace_config,
        ),
    )
    .default_backoff()
    .touched_objects()
    .predicate_filter(predicates::labels, Default::default());
    let policy_changes =
        futures::stream::select(guardrail_changes.map(|_| ()), namespace_changes.map(|_| ()));

    let caches = Caches {
        service_accounts: sa_store,
        namespaces,
        guardrails,
        roles: roles.clone(),
        synced: Arc::new(AtomicBool::new(false)),
    };
    let ctx = Arc::new(Context::new(
        shared.clone(),
        args.resync_interval,
        caches.clone(),
    ));
    // A change in the provider's health changes every PodIamRole's status.
    let provider_changes =
        futures::stream::unfold(shared.provider.clone(), |mut provider| async move {
            provider.changed().await.ok()?;
            Some(((), provider))
        });
    let mapper_roles = roles.clone();
    let run = controller
        .watches_stream(service_accounts, move |sa| {
            roles_for_service_account(&mapper_roles, &sa)
        })
        .reconcile_all_on(provider_changes)
        .reconcile_all_on(policy_changes)
        .with_config(ControllerConfig::default().concurrency(args.concurrency))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "controller error");
            }
        });
    (run, caches)
}

/// The PodIamRoles a ServiceAccount event concerns: those naming it, and those whose
/// role it is annotated with (so a stale annotation gets released).
fn roles_for_service_account(
    roles: &Store<PodIamRole>,
    sa: &PartialObjectMeta<ServiceAccount>,
) -> Vec<ObjectRef<PodIamRole>> {
    let namespace = sa.namespace();
    let name = sa.name_any();
    let annotated = sa.annotations().get(ROLE_ARN_ANNOTATION);
    roles
        .state()
        .iter()
        .filter(|role| role.namespace() == namespace)
        .filter(|role| {
            role.spec.service_account_name == name
                || annotated.is_some()
                    && role.status.as_ref().and_then(|s| s.role_arn.as_ref()) == annotated
        })
        .map(|role| ObjectRef::from_obj(role.as_ref()))
        .collect()
}
