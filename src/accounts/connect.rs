//! The one way to connect to an AWS account, the operator's own included: credentials,
//! the IAM client, its budget and metrics, the OIDC provider monitor and the bulk listing.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
    time::Duration,
};

use aws_config::{SdkConfig, retry::RetryConfig, sts::AssumeRoleProvider};
use aws_sdk_iam::config::{IdentityCache, ProvideCredentials};
use tokio::sync::{Notify, watch};

use super::{Settings, Target};
use crate::{
    iam::{IamApi, Writes, aws::AwsIam, aws_error::aws_error_message, budget::Budgeted},
    listing::{AccountObserver, Listing},
    orphan_monitor::OrphanMonitor,
    provider::ProviderMonitor,
};
use irsa_api::{DEFAULT_SESSION_NAME, PodIamRoleAccountSpec, ProviderMode};
use irsa_core::{
    account::AccountName, config::OperatorConfig, oidc::ProviderCheck, orphans::Scope,
};

/// The assumed credentials are renewed this long before they expire.
const CREDENTIALS_REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// An account to connect to.
pub enum Link<'a> {
    /// The operator's own account, with its own credentials; its listing also looks for
    /// orphaned roles of the PodIamRoles in `scope`, deleted after `delete_orphans_after`.
    Home {
        mode: ProviderMode,
        scope: Scope,
        delete_orphans_after: Option<Duration>,
    },
    /// A PodIamRoleAccount's account, with its management role's credentials ([`assume`]).
    Declared {
        name: &'a str,
        spec: &'a PodIamRoleAccountSpec,
        credentials: Box<AssumeRoleProvider>,
    },
}

/// A connected account: what reconciles use, and the monitors that keep it current,
/// for the caller to run when what they read is ready.
pub struct Connected {
    pub target: Target,
    pub provider: ProviderMonitor,
    pub provider_tx: watch::Sender<Option<ProviderCheck>>,
    pub listing: AccountObserver,
    pub listing_tx: watch::Sender<Listing>,
}

/// Connects to the account `link` names, whose settings seen from there are `config`.
pub fn connect(settings: &Settings, link: Link<'_>, config: OperatorConfig) -> Connected {
    let (account, client, mode, orphans, fingerprint) = match link {
        Link::Home {
            mode,
            scope,
            delete_orphans_after,
        } => {
            let client = iam_client(&settings.aws, None);
            let orphans = (scope, delete_orphans_after);
            (AccountName::Home, client, mode, Some(orphans), 0)
        }
        Link::Declared {
            name,
            spec,
            credentials,
        } => {
            let client = iam_client(&settings.aws, Some(*credentials));
            let account = AccountName::Declared(name.to_string());
            (account, client, spec.oidc_provider, None, fingerprint(spec))
        }
    };
    let metrics = &settings.metrics;
    let iam: Arc<dyn IamApi> = Arc::new(Budgeted::new(
        AwsIam::new(client, metrics.clone(), account.clone()),
        settings.iam_rate,
        settings.iam_burst,
        metrics.clone(),
        account.clone(),
    ));
    let writes = Arc::new(Writes::default());
    let poke = Arc::new(Notify::new());
    let provider = ProviderMonitor {
        iam: iam.clone(),
        metrics: metrics.clone(),
        mode,
        arn: config.oidc_provider_arn(),
        issuer: settings.issuer.clone(),
        issuer_host_path: config.issuer_host_path.clone(),
        cluster: config.cluster_name.clone(),
        ca_file: settings.ca_file.clone(),
        interval: settings.resync_interval,
        poke: poke.clone(),
        account: account.clone(),
    };
    let listing = AccountObserver {
        iam: iam.clone(),
        writes: writes.clone(),
        role_path: config.role_path.clone(),
        interval: settings.listing_interval,
        orphans: orphans.map(|(scope, delete_after)| OrphanMonitor {
            iam: iam.clone(),
            writes: writes.clone(),
            metrics: settings.metrics.clone(),
            scope,
            delete_after,
        }),
    };
    let (provider_tx, provider_rx) = watch::channel(None);
    let (listing_tx, account_roles) = watch::channel(Listing::Pending);
    let target = Target {
        iam,
        writes,
        config,
        provider: provider_rx,
        provider_poke: (mode == ProviderMode::Manage).then_some(poke),
        account_roles,
        account,
        fingerprint,
    };
    Connected {
        target,
        provider,
        provider_tx,
        listing,
        listing_tx,
    }
}

/// The management role's credentials, tried once here so that a broken trust shows now,
/// with STS's message.
pub async fn assume(
    aws: &SdkConfig,
    spec: &PodIamRoleAccountSpec,
) -> Result<AssumeRoleProvider, String> {
    let mut assume = AssumeRoleProvider::builder(&spec.management_role_arn)
        .session_name(spec.session_name.as_deref().unwrap_or(DEFAULT_SESSION_NAME))
        .configure(aws);
    if let Some(external_id) = &spec.external_id {
        assume = assume.external_id(external_id);
    }
    let credentials = assume.build().await;
    credentials
        .provide_credentials()
        .await
        .map_err(|e| aws_error_message(&e))?;
    Ok(credentials)
}

/// An IAM client on the operator's own credentials, or on `assumed` ones (refreshed
/// before they expire). The budget retries, one token per attempt: SDK retries would
/// hide throttling from it.
fn iam_client(aws: &SdkConfig, assumed: Option<AssumeRoleProvider>) -> aws_sdk_iam::Client {
    let mut config = aws_sdk_iam::config::Builder::from(aws)
        .retry_config(RetryConfig::standard().with_max_attempts(1));
    if let Some(credentials) = assumed {
        config = config.credentials_provider(credentials).identity_cache(
            IdentityCache::lazy()
                .buffer_time(CREDENTIALS_REFRESH_BEFORE)
                .build(),
        );
    }
    aws_sdk_iam::Client::from_conf(config.build())
}

/// Changes when the account's declaration does.
fn fingerprint(spec: &PodIamRoleAccountSpec) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(spec)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}
