//! Start-up and Controller wiring: resolve the account and issuer, then, while this
//! replica leads (see `leader`), run one Controller per watched scope until a signal arrives.

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use aws_config::{retry::RetryConfig, timeout::TimeoutConfig};

use futures::{StreamExt, future::join_all};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Api, Client, ResourceExt,
    api::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        controller::Error as ControllerError,
        events::{Recorder, Reporter},
        predicates, reflector,
        reflector::{ObjectRef, Store},
        utils::CancelableJoinHandle,
        watcher,
    },
};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use crate::{
    accounts::{
        PodIamRoleAccount,
        registry::{Accounts, Settings as AccountSettings, Target},
    },
    config::{self, OperatorConfig, RunArgs},
    crd::{PodIamRole, RoleMode},
    desired,
    guardrail::PodIamRoleGuardrail,
    http,
    iam::{IamApi, aws::AwsIam, budget::Budgeted},
    k8s::{
        FIELD_MANAGER,
        issuer::discover_issuer,
        listed::{Listed, flag_listed},
        service_account::ROLE_ARN_ANNOTATION,
        trim_for_cache,
        watch_list::role_watch_config,
    },
    leader::{Election, Role, RoleState, shutdown_requested},
    metrics::{Metrics, Readiness},
    observer::{AccountObserver, Listing},
    oidc::ProviderMode,
    orphan_monitor::OrphanMonitor,
    orphans::{LiveObject, Scope},
    provider::ProviderMonitor,
    reconcile::{Caches, Context, Shared, error_policy, guardrails::audiences_in_use, reconcile},
    undecodable::UndecodableMonitor,
    webhook,
};

/// How long the search for PodIamRoles that cannot be decoded waits at most for the typed
/// caches to list: a paged list fails whole on one such object, and never completes.
const TYPED_SYNC_GRACE: Duration = Duration::from_secs(30);
/// How often PodIamRoles missing from the typed cache are looked for.
const UNDECODABLE_CHECK: Duration = Duration::from_secs(5);

pub type StartError = Box<dyn std::error::Error + Send + Sync>;

pub async fn run(args: RunArgs) -> Result<(), StartError> {
    let client = kube_client().await?;
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(aws_timeouts(args.aws_timeout))
        .load()
        .await;
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
    let role = Arc::new(RoleState::new(metrics.clone()));
    let bound = http::serve(args.metrics_addr, metrics.clone(), role.clone()).await?;
    info!(address = %bound, "serving /metrics, /livez and /readyz");
    // Outside `lead()`: every replica admits pods, leader or standby.
    if args.webhook.serves() {
        let bound = webhook::start(
            &args.webhook,
            client.clone(),
            &args.namespaces,
            &config,
            metrics.clone(),
        )
        .await?;
        info!(address = %bound, pods = args.webhook.enabled, podiamroles = args.webhook.validating, "serving the webhooks");
    }

    // The budget retries, one token per attempt: SDK retries would hide throttling from it.
    let iam_client = aws_sdk_iam::Client::from_conf(
        aws_sdk_iam::config::Builder::from(&aws)
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .build(),
    );
    let iam: Arc<dyn IamApi> = Arc::new(Budgeted::new(
        AwsIam::new(iam_client, metrics.clone()),
        args.iam_rate,
        args.iam_burst,
        metrics.clone(),
    ));
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let election = Election::from_args(&args.leader_election, &config.cluster_name).await?;
    let term = Term {
        args: &args,
        client,
        aws,
        iam,
        config,
        recorder,
        metrics,
        issuer,
        role,
    };
    match election {
        Some(election) => election.run(&term.role, || lead(&term)).await,
        None => {
            term.role.set(Role::Leader { synced: false });
            lead(&term).await;
        }
    }
    info!("stopped");
    Ok(())
}

/// What a term as the writing replica starts from: each term builds its Controllers and
/// caches afresh, so a replica that lost the Lease and wins it again starts clean.
struct Term<'a> {
    args: &'a RunArgs,
    client: Client,
    /// The operator's own AWS configuration, which assumes target accounts' management roles.
    aws: aws_config::SdkConfig,
    iam: Arc<dyn IamApi>,
    config: OperatorConfig,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    issuer: String,
    role: Arc<RoleState>,
}

/// Runs one Controller per watched scope, and the OIDC provider monitor once the caches
/// have synced, until a signal stops the Controllers. Dropping it stops all of them.
async fn lead(term: &Term<'_>) {
    let Term {
        args,
        client,
        aws,
        iam,
        config,
        recorder,
        metrics,
        issuer,
        role,
    } = term;
    let scopes: Vec<Option<String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().cloned().map(Some).collect()
    };
    let listing_interval = args.listing_interval.unwrap_or(args.resync_interval);
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
        account: None,
    };
    let observer = AccountObserver {
        iam: iam.clone(),
        role_path: config.role_path.clone(),
        interval: listing_interval,
        orphans: Some(OrphanMonitor {
            iam: iam.clone(),
            metrics: metrics.clone(),
            scope: Scope {
                cluster: config.cluster_name.clone(),
                namespaces: (!args.namespaces.is_empty())
                    .then(|| args.namespaces.iter().cloned().collect()),
            },
            delete_after: args.delete_orphans_after,
        }),
    };
    let (account_roles_tx, account_roles) = watch::channel(Listing::Pending);
    let first_scope = scoped::<PartialObjectMeta<PodIamRole>>(client, scopes[0].as_deref());
    let role_watch = role_watch_config(&first_scope).await;
    let home = Target {
        iam: iam.clone(),
        config: config.clone(),
        provider: provider_rx,
        provider_poke: (args.oidc_provider_mode == ProviderMode::Manage).then_some(poke),
        account_roles,
        account: None,
        fingerprint: 0,
    };
    let accounts = Arc::new(Accounts::new(
        home,
        AccountSettings {
            client: client.clone(),
            aws: aws.clone(),
            metrics: metrics.clone(),
            iam_rate: args.iam_rate,
            iam_burst: args.iam_burst,
            issuer: issuer.clone(),
            ca_file: args.oidc_ca_file.clone(),
            resync_interval: args.resync_interval,
            listing_interval,
        },
    ));
    let shared = Shared {
        client: client.clone(),
        config: config.clone(),
        recorder: recorder.clone(),
        metrics: metrics.clone(),
        accounts: accounts.clone(),
        default_deletion_policy: args.default_deletion_policy,
        restart_workloads: args.restart_workloads,
    };
    let mut controllers = Vec::new();
    let mut caches = Vec::new();
    let mut listings = Vec::new();
    for scope in &scopes {
        let (controller, cache, listing) =
            controller_for(scope.as_deref(), &shared, args, role_watch.clone());
        controllers.push(controller);
        caches.push(cache);
        listings.push(listing);
    }
    let typed = caches
        .iter()
        .zip(&listings)
        .map(|(cache, listing)| (cache.roles.clone(), listing.roles.clone()))
        .collect();
    let handle = tokio::runtime::Handle::current();
    // Both write (statuses, orphan deletions): they live and die with the term.
    let _object_monitors = CancelableJoinHandle::spawn(
        object_monitors(shared.clone(), scopes, typed, observer, account_roles_tx),
        &handle,
    );
    let _ready_source = ReadySourceGuard::install(metrics, &caches);
    let audience_config = shared.config.clone();
    let (account_caches, account_config) = (caches.clone(), shared.config.clone());
    accounts.set_audiences(Box::new(move |account| {
        audiences_in_use(&account_caches, &account_config, account)
    }));
    let role = role.clone();
    let sync_then_monitor = async move {
        for (scope, listing) in caches.iter().zip(&listings) {
            if !Listed::all(&listing.all()).await {
                return;
            }
            scope.synced.store(true, Ordering::Relaxed);
        }
        role.set(Role::Leader { synced: true });
        info!("caches synced, ready");
        // Only now are the audiences in use known: an earlier check could drop client IDs.
        monitor
            .run(
                move || audiences_in_use(&caches, &audience_config, None),
                provider_tx,
            )
            .await;
    };
    // Dropped when the term ends, which stops the monitor too.
    let _monitor = CancelableJoinHandle::spawn(sync_then_monitor, &handle);
    join_all(controllers).await;
}

/// Points `irsa_operator_podiamroles` at this term's caches, and away from them when the
/// term ends: only the leader reports, so sums over replicas never double count.
struct ReadySourceGuard(Arc<Metrics>);

impl ReadySourceGuard {
    fn install(metrics: &Arc<Metrics>, caches: &[Caches]) -> Self {
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

/// The Kubernetes client with bounded connects and reads. Reads may stay idle as long as
/// a watch does: the server ends watches after 290 s and kube's watcher gives up at 295 s.
async fn kube_client() -> Result<Client, StartError> {
    let mut config = kube::Config::infer().await?;
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(300));
    // Count from the request, not from when the pooled connection went idle.
    config.reset_reader_on_write = true;
    Ok(Client::try_from(config)?)
}

/// Every AWS call attempt ends after `attempt`; STS keeps the SDK's three attempts.
fn aws_timeouts(attempt: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(attempt.min(Duration::from_secs(3)))
        .operation_attempt_timeout(attempt)
        .operation_timeout(attempt * 3)
        .build()
}

/// Watches the metadata of PodIamRoles in every scope and, once it and the typed caches
/// have synced, runs the orphan scan and the search for PodIamRoles that cannot be decoded.
async fn object_monitors(
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

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Whether each cache of one watched scope has listed.
struct Listings {
    roles: Listed,
    service_accounts: Listed,
    namespaces: Listed,
    guardrails: Listed,
    accounts: Listed,
}

impl Listings {
    fn all(&self) -> [Listed; 5] {
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
fn controller_for(
    namespace: Option<&str>,
    shared: &Shared,
    args: &RunArgs,
    role_watch: watcher::Config,
) -> (impl Future<Output = ()> + use<>, Caches, Listings) {
    let (sa_store, sa_writer) = reflector::store();
    let (sa_events, sa_listed) = flag_listed(
        reflector(
            sa_writer,
            watcher(
                scoped::<PartialObjectMeta<ServiceAccount>>(&shared.client, namespace),
                watcher::Config::default(),
            )
            .modify(trim_for_cache),
        )
        .default_backoff(),
    );
    let service_accounts = sa_events.touched_objects();
    // The Controller's own store is fed here, so its listing can be flagged without
    // waiting on the store (see `k8s::listed`).
    let (roles, role_writer) = reflector::store();
    let (role_events, roles_listed) = flag_listed(
        reflector(
            role_writer,
            watcher(scoped::<PodIamRole>(&shared.client, namespace), role_watch)
                .modify(trim_for_cache),
        )
        .default_backoff(),
    );
    let controller = Controller::for_stream(role_events.applied_objects(), roles.clone());

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
    let policy_changes = futures::stream::select(
        futures::stream::select(guardrail_changes, namespace_changes.map(|_| ())),
        account_changes,
    );

    let caches = Caches {
        service_accounts: sa_store,
        namespaces,
        guardrails,
        roles: roles.clone(),
        accounts,
        synced: Arc::new(AtomicBool::new(false)),
    };
    let ctx = Arc::new(Context::new(
        shared.clone(),
        args.resync_interval,
        usize::from(args.concurrency),
        caches.clone(),
    ));
    // A change in the provider's health, at home or in a target account, changes every
    // PodIamRole's status.
    let home_provider_changes = futures::stream::unfold(
        shared.accounts.home().provider.clone(),
        |mut provider| async move {
            provider.changed().await.ok()?;
            Some(((), provider))
        },
    );
    let account_provider_changes =
        futures::stream::unfold(shared.accounts.changes(), |mut changes| async move {
            changes.changed().await.ok()?;
            Some(((), changes))
        });
    let provider_changes = futures::stream::select(home_provider_changes, account_provider_changes);
    let mapper_roles = roles.clone();
    // kube-runtime's concurrency is left unlimited: the context's gate limits, in order
    // (see `reconcile::gate`).
    let run = controller
        .watches_stream(service_accounts, move |sa| {
            roles_for_service_account(&mapper_roles, &sa)
        })
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
    let listings = Listings {
        roles: roles_listed,
        service_accounts: sa_listed,
        namespaces: namespaces_listed,
        guardrails: guardrails_listed,
        accounts: accounts_listed,
    };
    (run, caches, listings)
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
