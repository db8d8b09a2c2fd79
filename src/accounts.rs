//! IO: one connection per target account in use. A connection assumes the account's
//! management role (STS AssumeRole with the external ID; the IAM client's identity cache
//! keeps the credentials and refreshes them before they expire), and owns everything
//! kept apart per account: its IAM client and call budget, its OIDC provider monitor,
//! its bulk listing, and its metrics. A reconcile asks [`Accounts::target`] for the
//! [`Target`] its PodIamRole names; the operator's own account is [`Accounts::home`].

use std::{
    collections::{BTreeSet, HashMap},
    hash::{DefaultHasher, Hash, Hasher},
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use aws_config::{SdkConfig, retry::RetryConfig, sts::AssumeRoleProvider};
use aws_sdk_iam::config::{IdentityCache, ProvideCredentials};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::utils::CancelableJoinHandle,
};
use serde_json::json;
use tokio::sync::{Mutex, Notify, watch};
use tracing::{debug, info, warn};

use crate::{
    iam::{IamApi, aws::AwsIam, budget::Budgeted},
    k8s::FIELD_MANAGER,
    listing::{AccountObserver, AccountRoles, Listing},
    metrics::Metrics,
    provider::ProviderMonitor,
};
use irsa_api::{DEFAULT_AUDIENCE, PodIamRole, ProviderMode};
use irsa_api::{DEFAULT_SESSION_NAME, PodIamRoleAccount};
use irsa_core::account::{AccountProblem, ConnectionState, account_config, next_status};
use irsa_core::{
    config::OperatorConfig,
    desired::DesiredRole,
    oidc::ProviderCheck,
    oidc::problem_for_audience,
    snapshot::{self, Drift, KeptRole, ObservedListing},
    status::ProviderHealth,
};

/// A failed AssumeRole is tried again after this long at the earliest, however many
/// PodIamRoles ask: a broken trust policy must not turn into steady STS traffic.
const ASSUME_RETRY: Duration = Duration::from_secs(60);
/// The assumed credentials are renewed this long before they expire.
const CREDENTIALS_REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// How long a reconcile after a restart waits for the first listing before it reads
/// role by role instead: a few pages, each of 1,000 roles.
const FIRST_LISTING_WAIT: Duration = Duration::from_secs(60);

/// One AWS account as a reconcile works with it.
#[derive(Clone)]
pub struct Target {
    pub iam: Arc<dyn IamApi>,
    /// The operator's settings as seen from this account (its ID and partition).
    pub config: OperatorConfig,
    pub provider: watch::Receiver<Option<ProviderCheck>>,
    /// Wakes the account's provider monitor, in `manage` mode.
    pub provider_poke: Option<Arc<Notify>>,
    /// The latest bulk listing of the account's roles.
    pub account_roles: AccountRoles,
    /// The PodIamRoleAccount's name; `None` for the operator's own account.
    pub account: Option<String>,
    /// Changes when the account's declaration does: what was synced under another
    /// declaration is checked again. 0 for the operator's own account.
    pub fingerprint: u64,
}

impl Target {
    /// The provider's state in this account for `object`'s audience.
    pub fn provider_health(&self, object: &PodIamRole) -> ProviderHealth {
        let audience = object.spec.audience.as_deref().unwrap_or(DEFAULT_AUDIENCE);
        let Some(check) = self.provider.borrow().clone() else {
            return ProviderHealth::Unknown;
        };
        match problem_for_audience(&check, &self.config.oidc_provider_arn(), audience) {
            None => ProviderHealth::Healthy,
            Some(problem) => {
                if let Some(poke) = &self.provider_poke {
                    poke.notify_one();
                }
                ProviderHealth::Unhealthy(problem)
            }
        }
    }

    /// What the latest bulk listing says about `desired`, synced at `synced_at`; `None`
    /// when there is no listing to go by.
    pub fn drift(&self, desired: &DesiredRole, synced_at: Instant) -> Option<Drift> {
        let listing = self.account_roles.borrow();
        (listing.snapshot()).map(|roles| snapshot::drift(roles, desired, synced_at))
    }

    /// Waits until the account's first listing has finished or failed, for a while.
    pub async fn first_listing(&self) {
        let mut listing = self.account_roles.clone();
        let done = listing.wait_for(|listing| !matches!(listing, Listing::Pending));
        if tokio::time::timeout(FIRST_LISTING_WAIT, done)
            .await
            .is_err()
        {
            debug!("no listing yet: reading the role");
        }
    }

    /// The role `name` in the last listing that finished, even if a pass failed since
    /// (`None` without one, `Some(None)` when it has no such role under the role path):
    /// for creates and deletions only (see [`Listing::Failed`]).
    pub fn last_listed_role(&self, name: &str) -> Option<Option<KeptRole>> {
        let listing = self.account_roles.borrow();
        (listing.last_finished()).map(|roles| roles.role(name).cloned())
    }

    /// The observed role `name` as the latest listing shows it, if it does.
    pub fn observed_role(&self, name: &str) -> Option<ObservedListing> {
        let listing = self.account_roles.borrow();
        listing.snapshot()?.observed(name).cloned()
    }
}

/// The audiences the accepted PodIamRoles of an account (`None`: the operator's own) use.
pub type AudienceSource = Box<dyn Fn(Option<&str>) -> BTreeSet<String> + Send + Sync>;

/// What every account connection is built from.
pub struct Settings {
    pub client: Client,
    /// The operator's own AWS configuration: its credentials assume the management roles.
    pub aws: SdkConfig,
    pub metrics: Arc<Metrics>,
    pub iam_rate: f64,
    pub iam_burst: f64,
    pub issuer: String,
    pub ca_file: Option<PathBuf>,
    pub resync_interval: Duration,
    pub listing_interval: Duration,
}

/// The operator's own account, and a connection per target account in use.
pub struct Accounts {
    home: Target,
    settings: Settings,
    connections: Mutex<HashMap<String, Connection>>,
    audiences: Arc<OnceLock<AudienceSource>>,
    /// Bumped whenever a target account's provider check changes: every PodIamRole's
    /// status may change with it.
    changes: Arc<watch::Sender<u64>>,
}

struct Connection {
    account: PodIamRoleAccount,
    result: Result<Target, AccountProblem>,
    opened: Instant,
    /// The account's provider monitor, listing and status writer: stopped when dropped.
    _tasks: Option<CancelableJoinHandle<()>>,
}

impl Accounts {
    pub fn new(home: Target, settings: Settings) -> Self {
        Self {
            home,
            settings,
            connections: Mutex::default(),
            audiences: Arc::default(),
            changes: Arc::new(watch::channel(0).0),
        }
    }

    /// Changes whenever a target account's provider check does.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn home(&self) -> &Target {
        &self.home
    }

    /// Where the provider monitors read the audiences in use from; set once the caches exist.
    pub fn set_audiences(&self, source: AudienceSource) {
        // A second term builds a new registry: the first source is the only one.
        let _ = self.audiences.set(source);
    }

    /// The connection to the account `account` declares, opened (AssumeRole) on first use
    /// and again when its spec changes; a failure is remembered for [`ASSUME_RETRY`].
    pub async fn target(&self, account: &PodIamRoleAccount) -> Result<Target, AccountProblem> {
        let name = account.name_any();
        let mut connections = self.connections.lock().await;
        if let Some(connection) = connections.get(&name)
            && connection.account.spec == account.spec
            && (connection.result.is_ok() || connection.opened.elapsed() < ASSUME_RETRY)
        {
            return connection.result.clone();
        }
        let connection = self.open(account).await;
        let result = connection.result.clone();
        connections.insert(name, connection);
        result
    }

    /// Drops the connection to a PodIamRoleAccount that no longer exists, which stops
    /// its provider monitor and listing.
    pub async fn forget(&self, name: &str) {
        if self.connections.lock().await.remove(name).is_some() {
            info!(account = %name, "PodIamRoleAccount gone: its connection is closed");
        }
    }

    async fn open(&self, account: &PodIamRoleAccount) -> Connection {
        let name = account.name_any();
        let failed = |message: String| AccountProblem::AssumeFailed {
            account: name.clone(),
            role_arn: account.spec.management_role_arn.clone(),
            message,
        };
        let connected = match account_config(&self.home.config, &account.spec) {
            Err(invalid) => Err(failed(invalid)),
            Ok(config) => connect(
                &self.settings,
                account,
                config,
                self.audiences.clone(),
                self.changes.clone(),
            )
            .await
            .map_err(failed),
        };
        let (result, tasks) = match connected {
            Ok((target, tasks)) => {
                info!(account = %name, account_id = %target.config.account_id, "assumed the management role");
                let handle = tokio::runtime::Handle::current();
                (
                    Ok(target),
                    Some(CancelableJoinHandle::spawn(tasks, &handle)),
                )
            }
            Err(problem) => {
                warn!(account = %name, message = %problem.message(), "cannot use the target account");
                self.settings.metrics.set_account_ready(&name, false);
                let connection = ConnectionState::Unavailable(&problem);
                patch_status(&self.settings.client, account, &connection).await;
                (Err(problem), None)
            }
        };
        Connection {
            account: account.clone(),
            result,
            opened: Instant::now(),
            _tasks: tasks,
        }
    }
}

/// Assumes the account's management role once (so a broken trust shows now, with STS's
/// message), then builds the account's IAM client, budget, provider monitor and listing.
/// Returns the target and the future that runs the account's background work.
async fn connect(
    settings: &Settings,
    account: &PodIamRoleAccount,
    config: OperatorConfig,
    audiences: Arc<OnceLock<AudienceSource>>,
    changes: Arc<watch::Sender<u64>>,
) -> Result<(Target, impl Future<Output = ()> + use<>), String> {
    let name = account.name_any();
    let spec = &account.spec;
    let mut assume = AssumeRoleProvider::builder(&spec.management_role_arn)
        .session_name(spec.session_name.as_deref().unwrap_or(DEFAULT_SESSION_NAME))
        .configure(&settings.aws);
    if let Some(external_id) = &spec.external_id {
        assume = assume.external_id(external_id);
    }
    let credentials = assume.build().await;
    credentials
        .provide_credentials()
        .await
        .map_err(|e| crate::iam::aws_error::aws_error_message(&e))?;
    // The budget retries, one token per attempt: SDK retries would hide throttling from it.
    let client = aws_sdk_iam::Client::from_conf(
        aws_sdk_iam::config::Builder::from(&settings.aws)
            .credentials_provider(credentials)
            .identity_cache(
                IdentityCache::lazy()
                    .buffer_time(CREDENTIALS_REFRESH_BEFORE)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .build(),
    );
    let iam: Arc<dyn IamApi> = Arc::new(Budgeted::for_account(
        AwsIam::new(client, settings.metrics.clone()).in_account(&name),
        settings.iam_rate,
        settings.iam_burst,
        settings.metrics.clone(),
        &name,
    ));
    let mode = spec.oidc_provider;
    let poke = Arc::new(Notify::new());
    let monitor = ProviderMonitor {
        iam: iam.clone(),
        metrics: settings.metrics.clone(),
        mode,
        arn: config.oidc_provider_arn(),
        issuer: settings.issuer.clone(),
        issuer_host_path: config.issuer_host_path.clone(),
        cluster: config.cluster_name.clone(),
        ca_file: settings.ca_file.clone(),
        interval: settings.resync_interval,
        poke: poke.clone(),
        account: Some(name.clone()),
    };
    let observer = AccountObserver {
        iam: iam.clone(),
        role_path: config.role_path.clone(),
        interval: settings.listing_interval,
        // Orphans are looked for in the operator's own account only.
        orphans: None,
    };
    let (provider_tx, provider) = watch::channel(None);
    let (roles_tx, account_roles) = watch::channel(Listing::Pending);
    let target = Target {
        iam,
        config,
        provider: provider.clone(),
        provider_poke: (mode == ProviderMode::Manage).then_some(poke),
        account_roles,
        account: Some(name.clone()),
        fingerprint: fingerprint(spec),
    };
    let account_name = name.clone();
    let audiences = move || {
        audiences
            .get()
            .map(|source| source(Some(&account_name)))
            .unwrap_or_default()
    };
    let status = status_writer(
        settings.client.clone(),
        settings.metrics.clone(),
        account.clone(),
        target.config.oidc_provider_arn(),
        provider,
        changes,
    );
    let tasks = async move {
        futures::join!(
            monitor.run(audiences, provider_tx),
            observer.run(roles_tx, BTreeSet::new, BTreeSet::new),
            status
        );
    };
    Ok((target, tasks))
}

fn fingerprint(spec: &irsa_api::PodIamRoleAccountSpec) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(spec)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

/// Keeps the account's `Ready` condition and `irsa_operator_account_ready` in step with
/// its provider checks.
async fn status_writer(
    client: Client,
    metrics: Arc<Metrics>,
    account: PodIamRoleAccount,
    provider_arn: String,
    mut provider: watch::Receiver<Option<ProviderCheck>>,
    changes: Arc<watch::Sender<u64>>,
) {
    let name = account.name_any();
    loop {
        let check = provider.borrow_and_update().clone();
        let connection = match &check {
            None => ConnectionState::Checking {
                provider_arn: &provider_arn,
            },
            Some(check) => ConnectionState::Checked {
                provider_arn: &provider_arn,
                problem: check.problem.as_ref(),
            },
        };
        metrics.set_account_ready(
            &name,
            matches!(connection, ConnectionState::Checked { problem: None, .. }),
        );
        patch_status(&client, &account, &connection).await;
        changes.send_modify(|count| *count = count.wrapping_add(1));
        if provider.changed().await.is_err() {
            return;
        }
    }
}

/// Writes the account's status; a failure is logged and left to the next change.
async fn patch_status(
    client: &Client,
    account: &PodIamRoleAccount,
    connection: &ConnectionState<'_>,
) {
    let status = next_status(
        account.status.as_ref(),
        account.metadata.generation,
        connection,
        jiff::Timestamp::now(),
    );
    let patch = json!({
        "apiVersion": PodIamRoleAccount::api_version(&()),
        "kind": PodIamRoleAccount::kind(&()),
        "status": status,
    });
    let api: Api<PodIamRoleAccount> = Api::all(client.clone());
    if let Err(error) = api
        .patch_status(
            &account.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        warn!(account = %account.name_any(), %error, "cannot write the PodIamRoleAccount's status");
    }
}
