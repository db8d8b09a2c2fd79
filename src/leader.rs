//! Leader election: the replicas of one cluster name share a coordination.k8s.io Lease,
//! and only its holder runs the Controllers and the OIDC provider monitor, the only
//! code that writes. A standby keeps serving `/livez`, `/readyz` and `/metrics`.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use clap::{ArgAction, Args};
use kube::Client;
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseManagerBuilder, LeaseParams};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::{k8s::FIELD_MANAGER, metrics::Metrics};
use irsa_core::config::parse_duration;

/// How long to wait before reading the Lease again after the API server failed us.
const RETRY: Duration = Duration::from_secs(2);
/// The API server rejects longer field manager names.
const MAX_FIELD_MANAGER_LEN: usize = 128;

/// Flags of the leader election.
#[derive(Args, Debug, Clone)]
pub struct LeaderElectionArgs {
    /// Write only while holding the cluster's leader Lease, so that replicas never write at
    /// the same time. `--leader-election=false` is safe only with exactly one replica.
    #[arg(
        long = "leader-election",
        env = "IRSA_LEADER_ELECTION",
        default_value_t = true,
        action = ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub enabled: bool,

    /// Namespace of the Lease `irsa-operator-<cluster-name>`. Default: the pod's namespace,
    /// else the kubeconfig's, else `default`.
    #[arg(long = "leader-election-namespace", env = "POD_NAMESPACE")]
    pub namespace: Option<String>,

    /// How long the Lease stays valid after the leader's last renewal: a standby takes
    /// over at most this long after the leader died without releasing it. 15s, as
    /// client-go's default, keeps failover short without renewing too often.
    #[arg(
        long = "leader-election-lease-duration",
        env = "IRSA_LEADER_ELECTION_LEASE_DURATION",
        default_value = "15s",
        value_parser = parse_duration
    )]
    pub lease_duration: Duration,

    /// How often the leader renews the Lease. The rest of the lease duration is the margin
    /// in which a slow or failed renewal stops this replica's writes before another replica
    /// may start: 5s leaves 10s of a 15s Lease.
    #[arg(
        long = "leader-election-renew-interval",
        env = "IRSA_LEADER_ELECTION_RENEW_INTERVAL",
        default_value = "5s",
        value_parser = parse_duration
    )]
    pub renew_interval: Duration,
}

/// Lease timings in the whole seconds the Lease API counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    pub duration_secs: u64,
    /// Renew this long before the Lease would expire.
    pub grace_secs: u64,
    /// Timeout of each request about the Lease.
    pub request_timeout: Duration,
}

impl LeaseTiming {
    pub fn new(lease_duration: Duration, renew_interval: Duration) -> Result<Self, String> {
        let duration_secs = lease_duration.as_secs();
        let interval_secs = renew_interval.as_secs();
        if interval_secs == 0 || interval_secs >= duration_secs {
            return Err(format!(
                "the leader election renew interval ({interval_secs}s) must be at least 1s and \
                 shorter than the lease duration ({duration_secs}s)"
            ));
        }
        let grace_secs = duration_secs - interval_secs;
        Ok(Self {
            duration_secs,
            grace_secs,
            // A renewal makes two requests (write, then read back). Cutting each off at a
            // quarter of the grace ends a hanging renewal, and with it this replica's writes,
            // with half of the grace left for clock skew between nodes.
            request_timeout: Duration::from_secs(grace_secs) / 4,
        })
    }
}

/// The Lease of one cluster name: `irsa-operator-<cluster-name>` when that is a valid
/// object name, else a lowercase form plus a hash of the original, so that names differing
/// only in case or `_` still get their own Lease. Cluster names have at most 32 characters,
/// so the result stays within 63.
pub fn lease_name(cluster: &str) -> String {
    let valid = cluster
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && cluster.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        return format!("{FIELD_MANAGER}-{cluster}");
    }
    let lowered: String = cluster
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{FIELD_MANAGER}-{lowered}-{}", short_hash(cluster, 8))
}

/// Who holds the Lease: the pod's name (a restarted container takes its own Lease back at
/// once), else the host name and process id (two processes on one host differ).
pub fn identity(pod_name: Option<String>, hostname: Option<String>, pid: u32) -> String {
    match pod_name.filter(|name| !name.is_empty()) {
        Some(name) => name,
        None => format!(
            "{}-{pid}",
            hostname
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "unknown-host".into())
        ),
    }
}

/// The field manager of this replica's Lease writes: it must differ between replicas, as
/// the crate relies on server-side apply conflicts to let only one of them acquire.
pub fn field_manager(identity: &str) -> String {
    let name = format!("{FIELD_MANAGER}-lease-{identity}");
    if name.len() <= MAX_FIELD_MANAGER_LEN {
        name
    } else {
        format!("{FIELD_MANAGER}-lease-{}", short_hash(identity, 40))
    }
}

fn short_hash(text: &str, hex_len: usize) -> String {
    let mut digest = hex::encode(Sha256::digest(text.as_bytes()));
    digest.truncate(hex_len);
    digest
}

/// This replica's part, as `/readyz` and the `irsa_operator_leader` gauge report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The Lease could not be read yet.
    Campaigning,
    /// Another replica holds the Lease; this one writes nothing.
    Standby,
    /// This replica writes; `synced` once its caches have listed everything.
    Leader { synced: bool },
}

impl Role {
    /// Whether `/readyz` succeeds, and its body. A standby is ready: a rolling update of a
    /// Deployment with `maxUnavailable: 0` waits for new pods to be ready, and a new pod
    /// stays a standby until the old leader leaves.
    pub fn readiness(self) -> (bool, &'static str) {
        match self {
            Role::Campaigning => (false, "waiting for the leader Lease"),
            Role::Standby => (true, "standby"),
            Role::Leader { synced: false } => (false, "caches not synced yet"),
            Role::Leader { synced: true } => (true, "ok"),
        }
    }
}

/// The current [`Role`], shared by the election, the Controllers and `/readyz`.
pub struct RoleState {
    role: Mutex<Role>,
    metrics: Arc<Metrics>,
}

impl RoleState {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        metrics.set_leader(false);
        Self {
            role: Mutex::new(Role::Campaigning),
            metrics,
        }
    }

    pub fn get(&self) -> Role {
        *self
            .role
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn set(&self, role: Role) {
        self.metrics.set_leader(matches!(role, Role::Leader { .. }));
        *self
            .role
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = role;
    }
}

/// One replica's candidacy for the cluster's Lease.
pub struct Election {
    client: Client,
    namespace: String,
    lease: String,
    identity: String,
    timing: LeaseTiming,
}

impl Election {
    /// The election these flags ask for, or `None` when it is turned off.
    pub async fn from_args(
        args: &LeaderElectionArgs,
        cluster: &str,
    ) -> Result<Option<Self>, Box<dyn std::error::Error + Send + Sync>> {
        if !args.enabled {
            return Ok(None);
        }
        let timing = LeaseTiming::new(args.lease_duration, args.renew_interval)?;
        let mut config = kube::Config::infer().await?;
        // The Lease gets its own client: a renewal must fail in time rather than hang.
        config.connect_timeout = Some(timing.request_timeout);
        config.read_timeout = Some(timing.request_timeout);
        config.write_timeout = Some(timing.request_timeout);
        config.reset_reader_on_write = true;
        let namespace = args
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| config.default_namespace.clone());
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok());
        Ok(Some(Self {
            client: Client::try_from(config)?,
            namespace,
            lease: lease_name(cluster),
            identity: identity(std::env::var("POD_NAME").ok(), hostname, std::process::id()),
            timing,
        }))
    }

    /// Runs `lead` whenever this replica holds the Lease. Losing the Lease drops `lead`
    /// at once, which aborts every write in flight, and campaigns again. Returns when `lead`
    /// returns (the Controllers shut down on a signal), after releasing the Lease so a
    /// standby takes over without waiting for it to expire, or on a signal while standing by.
    pub async fn run<F, Fut>(self, role: &RoleState, mut lead: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut shutdown = shutdown_requested();
        info!(lease = %self.lease, namespace = %self.namespace, identity = %self.identity, "campaigning for the leader Lease");
        while !*shutdown.borrow() {
            role.set(Role::Campaigning);
            let manager = tokio::select! {
                manager = self.manager() => manager,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            let manager = match manager {
                Ok(manager) => manager,
                Err(error) => {
                    warn!(%error, lease = %self.lease, "cannot read the leader Lease");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            role.set(Role::Standby);
            let won = tokio::select! {
                won = acquired(&manager) => won,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            if let Err(error) = won {
                warn!(%error, lease = %self.lease, "cannot campaign for the leader Lease");
                tokio::time::sleep(RETRY).await;
                continue;
            }
            info!(lease = %self.lease, identity = %self.identity, "acquired the leader Lease, starting the controllers");
            role.set(Role::Leader { synced: false });
            let lost = tokio::select! {
                () = lead() => None,
                changed = manager.changed() => Some(changed),
            };
            match lost {
                None => {
                    match manager.release().await {
                        Ok(()) => info!(lease = %self.lease, "released the leader Lease"),
                        Err(error) => {
                            warn!(%error, lease = %self.lease, "cannot release the leader Lease; a standby takes over when it expires")
                        }
                    }
                    return;
                }
                Some(changed) => {
                    role.set(Role::Standby);
                    // A failed renewal counts as lost: the Lease may expire before the next one.
                    let cause = changed.map_or_else(|e| e.to_string(), |_| "taken over".into());
                    error!(lease = %self.lease, %cause, "lost the leader Lease: stopped every write, campaigning again");
                }
            }
        }
    }

    async fn manager(&self) -> Result<LeaseManager, kube_lease_manager::LeaseManagerError> {
        let params = LeaseParams::new(
            self.identity.clone(),
            self.timing.duration_secs,
            self.timing.grace_secs,
        )
        .with_field_manager(field_manager(&self.identity));
        LeaseManagerBuilder::new(self.client.clone(), &self.lease)
            .with_namespace(&self.namespace)
            .with_create_mode(LeaseCreateMode::AutoCreate)
            .with_parameters(params)
            .build()
            .await
    }
}

/// Waits until `manager` holds the Lease. A fresh manager reports holding it as a change,
/// so a restarted replica that still holds its Lease leads again at once.
async fn acquired(manager: &LeaseManager) -> Result<(), kube_lease_manager::LeaseManagerError> {
    while !manager.changed().await? {}
    Ok(())
}

/// Becomes true on SIGTERM or Ctrl-C.
pub(crate) fn shutdown_requested() -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        let _ = sender.send(true);
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn is_dns_label(name: &str) -> bool {
        name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric())
    }

    #[test]
    fn lease_name_is_the_cluster_name_when_valid() {
        assert_eq!(lease_name("prod-eu1"), "irsa-operator-prod-eu1");
    }

    #[test]
    fn lease_names_keep_clusters_apart_that_differ_only_in_case_or_underscore() {
        let names = ["prod", "Prod", "p_rod", "p-rod", "prod-", "prod_"].map(lease_name);
        let distinct: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
        assert!(names[1].starts_with("irsa-operator-prod-"), "{}", names[1]);
    }

    proptest! {
        #[test]
        fn lease_name_is_a_valid_object_name(cluster in "[A-Za-z0-9_-]{1,32}") {
            let name = lease_name(&cluster);
            prop_assert!(is_dns_label(&name), "{name}");
        }
    }

    #[test]
    fn identity_prefers_the_pod_name() {
        assert_eq!(
            identity(Some("op-7d9f-abc".into()), Some("node".into()), 7),
            "op-7d9f-abc"
        );
        assert_eq!(
            identity(Some(String::new()), Some("node\n".into()), 7),
            "node-7"
        );
        assert_eq!(identity(None, None, 42), "unknown-host-42");
    }

    #[test]
    fn field_manager_fits_the_api_limit() {
        assert_eq!(field_manager("pod-a"), "irsa-operator-lease-pod-a");
        let long = field_manager(&"x".repeat(253));
        assert!(long.len() <= MAX_FIELD_MANAGER_LEN, "{long}");
        assert_ne!(long, field_manager(&"y".repeat(253)));
    }

    #[test]
    fn timing_leaves_a_margin_for_renewal_and_skew() {
        let timing = LeaseTiming::new(Duration::from_secs(15), Duration::from_secs(5)).unwrap();
        assert_eq!(
            timing,
            LeaseTiming {
                duration_secs: 15,
                grace_secs: 10,
                request_timeout: Duration::from_millis(2500),
            }
        );
        assert!(LeaseTiming::new(Duration::from_secs(15), Duration::from_secs(15)).is_err());
        assert!(LeaseTiming::new(Duration::from_secs(15), Duration::from_millis(500)).is_err());
    }

    #[test]
    fn leader_election_is_on_unless_turned_off() {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: LeaderElectionArgs,
        }
        let parse = |argv: &[&str]| {
            <Wrapper as clap::Parser>::try_parse_from([&["x"], argv].concat()).map(|w| w.args)
        };
        let defaults = parse(&[]).unwrap();
        assert!(defaults.enabled);
        assert_eq!(
            LeaseTiming::new(defaults.lease_duration, defaults.renew_interval),
            LeaseTiming::new(Duration::from_secs(15), Duration::from_secs(5))
        );
        assert!(!parse(&["--leader-election=false"]).unwrap().enabled);
        assert!(!parse(&["--leader-election", "false"]).unwrap().enabled);
        assert!(parse(&["--leader-election"]).unwrap().enabled);
        assert!(parse(&["--leader-election=maybe"]).is_err());
    }

    #[test]
    fn a_standby_is_ready_but_says_so() {
        assert!(!Role::Campaigning.readiness().0);
        assert_eq!(Role::Standby.readiness(), (true, "standby"));
        assert!(!Role::Leader { synced: false }.readiness().0);
        assert_eq!(Role::Leader { synced: true }.readiness(), (true, "ok"));
    }

    #[test]
    fn the_gauge_follows_the_role() {
        let metrics = Arc::new(Metrics::default());
        let role = RoleState::new(metrics.clone());
        assert!(metrics.render().contains("irsa_operator_leader 0"));
        role.set(Role::Leader { synced: false });
        assert!(metrics.render().contains("irsa_operator_leader 1"));
        role.set(Role::Standby);
        assert!(metrics.render().contains("irsa_operator_leader 0"));
        assert_eq!(role.get(), Role::Standby);
    }
}
