//! Start-up and the term: resolve the account and issuer, then, while this replica leads
//! (see `leader`), run one Controller per watched scope ([`watches`]) and what runs beside
//! them ([`monitors`]) until a signal arrives.

use std::{sync::Arc, time::Duration};

use aws_config::timeout::TimeoutConfig;

use futures::future::join_all;
use kube::{
    Client,
    api::PartialObjectMeta,
    runtime::{events::Reporter, utils::CancelableJoinHandle},
};
use tracing::{info, warn};

use crate::accounts::{Accounts, Connected, Link, Settings as AccountSettings, connect};
use crate::{
    config,
    config::RunArgs,
    http,
    k8s::{
        FIELD_MANAGER, events::Events, issuer::discover_issuer, listed::Listed,
        watch_list::role_watch_config,
    },
    leader::{Election, Role, RoleState},
    metrics::Metrics,
    reconcile::{Shared, guardrails::audiences_in_use},
    webhook,
};
use irsa_api::PodIamRole;
use irsa_core::{config::OperatorConfig, orphans::Scope};

mod monitors;
mod watches;

use self::{
    monitors::{ReadySourceGuard, object_monitors},
    watches::{controller_for, scoped},
};

pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// How long reconciles wait at start for the first OIDC provider check.
const FIRST_CHECK_WAIT: Duration = Duration::from_secs(30);

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
                crate::iam::aws_error::aws_error_message(&e)
            )
        })?;
    let issuer = match &args.oidc_issuer {
        Some(issuer) => issuer.clone(),
        None => discover_issuer(&client).await?,
    };
    let partition = config::partition_of(identity.arn().unwrap_or_default())?;
    let account_id = identity.account().unwrap_or_default();
    let config = config::resolve(&args.roles, &issuer, &partition, account_id)?;
    info!(
        cluster = %config.cluster_name,
        account = %config.account_id,
        oidc_provider = %config.oidc_provider_arn(),
        role_path = %config.role_path,
        "starting"
    );

    let metrics = Arc::new(Metrics::default());
    metrics.set_allow_without_guardrail(!config.baseline.default_deny);
    if !config.baseline.default_deny {
        warn!(
            "--allow-without-guardrail: PodIamRoles in namespaces no guardrail selects may grant \
             anything outside the built-in deny list, and unset guardrail allow-lists mean any; \
             any namespace editor can give their pods the account's data"
        );
    }
    match &config.baseline.boundary {
        Some(boundary) => info!(%boundary, "every role carries this permissions boundary"),
        None => warn!(
            "no --permissions-boundary: nothing in IAM caps what the roles this operator creates may do"
        ),
    }
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

    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let recorder = Events::new(client.clone(), reporter);
    let election = Election::from_args(&args.leader_election, &config.cluster_name).await?;
    let term = Term {
        args: &args,
        client,
        aws,
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
    config: OperatorConfig,
    recorder: Events,
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
    let settings = AccountSettings {
        client: client.clone(),
        aws: aws.clone(),
        metrics: metrics.clone(),
        iam_rate: args.iam_rate,
        iam_burst: args.iam_burst,
        issuer: issuer.clone(),
        ca_file: args.oidc_ca_file.clone(),
        resync_interval: args.resync_interval,
        listing_interval: args.listing_interval.unwrap_or(args.resync_interval),
    };
    let home = Link::Home {
        mode: args.oidc_provider_mode,
        scope: Scope {
            cluster: config.cluster_name.clone(),
            namespaces: (!args.namespaces.is_empty())
                .then(|| args.namespaces.iter().cloned().collect()),
        },
        delete_orphans_after: args.delete_orphans_after,
    };
    let Connected {
        target: home,
        provider,
        provider_tx,
        listing,
        listing_tx,
    } = connect(&settings, home, config.clone());
    let first_scope = scoped::<PartialObjectMeta<PodIamRole>>(client, scopes[0].as_deref());
    let role_watch = role_watch_config(&first_scope).await;
    let accounts = Arc::new(Accounts::new(home, settings));
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
        object_monitors(shared.clone(), scopes, typed, listing, listing_tx),
        &handle,
    );
    let _ready_source = ReadySourceGuard::install(metrics, &caches);
    let audience_config = shared.config.clone();
    let (account_caches, account_config) = (caches.clone(), shared.config.clone());
    accounts.set_audiences(Box::new(move |account| {
        audiences_in_use(&account_caches, &account_config, account.declared())
    }));
    let role = role.clone();
    let mut first_check = accounts.home().provider.clone();
    let sync_then_monitor = async move {
        for listing in &listings {
            if !Listed::all(&listing.all()).await {
                return;
            }
        }
        let open_gates = async {
            // Every status shows the provider's health: reconciling before the first check
            // would mean reconciling everything again when it comes.
            let checked = first_check.wait_for(Option::is_some);
            if tokio::time::timeout(FIRST_CHECK_WAIT, checked)
                .await
                .is_err()
            {
                warn!("no OIDC provider check yet: reconciling without it");
            }
            for scope in &caches {
                scope.synced.open();
            }
            role.set(Role::Leader { synced: true });
            info!("caches synced, ready");
        };
        // Only now are the audiences in use known: an earlier check could drop client IDs.
        let audience_caches = caches.clone();
        let check = provider.run(
            move || audiences_in_use(&audience_caches, &audience_config, None),
            provider_tx,
        );
        futures::join!(check, open_gates);
    };
    // Dropped when the term ends, which stops the monitor too.
    let _monitor = CancelableJoinHandle::spawn(sync_then_monitor, &handle);
    join_all(controllers).await;
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
