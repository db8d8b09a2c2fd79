//! The AWS accounts the operator works in: its own ("home") and each PodIamRoleAccount's
//! in use. Every one is connected the same way ([`connect`]): its own IAM client, call
//! budget, OIDC provider monitor, bulk listing and metrics. A reconcile asks
//! [`Accounts::target`] for the [`Target`] its PodIamRole names; the operator's own
//! account is [`Accounts::home`].

use std::{
    collections::{BTreeSet, HashMap},
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use aws_config::SdkConfig;
use kube::{Client, ResourceExt, runtime::utils::CancelableJoinHandle};
use tokio::sync::{Mutex, watch};
use tracing::{info, warn};

use crate::metrics::Metrics;
use irsa_api::PodIamRoleAccount;
use irsa_core::account::{AccountName, AccountProblem, ConnectionState, account_config};

mod connect;
mod status;
mod target;

use self::status::{patch_status, status_writer};
pub use self::{
    connect::{Connected, Link, assume, connect},
    target::Target,
};

/// A failed AssumeRole is tried again after this long at the earliest, however many
/// PodIamRoles ask: a broken trust policy must not turn into steady STS traffic.
const ASSUME_RETRY: Duration = Duration::from_secs(60);

/// The audiences the accepted PodIamRoles of an account use.
pub type AudienceSource = Box<dyn Fn(&AccountName) -> BTreeSet<String> + Send + Sync>;

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
            Ok(config) => match assume(&self.settings.aws, &account.spec).await {
                Err(message) => Err(failed(message)),
                Ok(credentials) => {
                    let link = Link::Declared {
                        name: &name,
                        spec: &account.spec,
                        credentials: Box::new(credentials),
                    };
                    Ok(connect(&self.settings, link, config))
                }
            },
        };
        let (result, tasks) = match connected {
            Ok(connected) => {
                info!(account = %name, account_id = %connected.target.config.account_id, "assumed the management role");
                let target = connected.target.clone();
                let tasks = self.run_monitors(account, connected);
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

    /// A declared account's provider monitor, listing (without an orphan scan: orphans are
    /// looked for in the operator's own account only) and status writer.
    fn run_monitors(
        &self,
        account: &PodIamRoleAccount,
        connected: Connected,
    ) -> impl Future<Output = ()> + use<> {
        let Connected {
            target,
            provider,
            provider_tx,
            listing,
            listing_tx,
        } = connected;
        let audiences = self.audiences.clone();
        let name = target.account.clone();
        let audiences = move || {
            audiences
                .get()
                .map(|source| source(&name))
                .unwrap_or_default()
        };
        let status = status_writer(
            self.settings.client.clone(),
            self.settings.metrics.clone(),
            account.clone(),
            target.config.oidc_provider_arn(),
            target.provider.clone(),
            self.changes.clone(),
        );
        async move {
            futures::join!(
                provider.run(audiences, provider_tx),
                listing.run(listing_tx, BTreeSet::new, BTreeSet::new),
                status
            );
        }
    }
}
