//! IO: checks (and in `manage` mode maintains) the cluster's IAM OIDC provider on a
//! timer, and publishes the result for every reconcile to report.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::{iam::IamApi, metrics::Metrics, thumbprint::fetch_thumbprint};
use irsa_api::ProviderMode;
use irsa_core::{account::AccountName, reason::Reason};
use irsa_core::{
    oidc::ProviderCheck, oidc::ProviderInputs, oidc::ProviderProblem, oidc::check_provider,
};

/// A check that could not reach IAM keeps the last definite verdict this long: one IAM
/// hiccup must not turn every PodIamRole in the cluster not-ready.
const KEEP_VERDICT_FOR: Duration = Duration::from_secs(30 * 60);
/// After such a failure, look again soon rather than after a full interval.
const RETRY_FAILED_CHECK: Duration = Duration::from_secs(30);
/// Problems that say the check itself failed, not what is wrong with the provider.
const CHECK_FAILURES: [&str; 2] = [
    Reason::OidcProviderCheckFailed.as_str(),
    Reason::OidcProviderUpdateFailed.as_str(),
];

/// Whether a failed check should be held back, given when the last definite verdict
/// was published.
fn hold_back(check: &ProviderCheck, last_verdict: Option<Instant>, now: Instant) -> bool {
    let failed = check
        .problem
        .as_ref()
        .is_some_and(|p| CHECK_FAILURES.contains(&p.reason));
    failed && last_verdict.is_some_and(|at| now.duration_since(at) < KEEP_VERDICT_FOR)
}

pub struct ProviderMonitor {
    pub iam: Arc<dyn IamApi>,
    pub metrics: Arc<Metrics>,
    pub mode: ProviderMode,
    pub arn: String,
    pub issuer: String,
    pub issuer_host_path: String,
    pub cluster: String,
    pub ca_file: Option<PathBuf>,
    pub interval: Duration,
    /// Wakes the monitor early, e.g. when a PodIamRole uses an audience the provider lacks.
    pub poke: Arc<Notify>,
    /// The account it checks, for its metrics.
    pub account: AccountName,
}

impl ProviderMonitor {
    /// Checks now, then every interval or poke, publishing each changed result.
    pub async fn run(
        self,
        audiences: impl Fn() -> BTreeSet<String>,
        publish: watch::Sender<Option<ProviderCheck>>,
    ) {
        let mut last_verdict: Option<Instant> = None;
        loop {
            let check = self.check_once(&audiences()).await;
            self.metrics
                .record_oidc_provider(&self.account, check.problem.as_ref().map(|p| p.reason));
            if hold_back(&check, last_verdict, Instant::now()) {
                let problem = check.problem.as_ref().map(|p| p.message.as_str());
                warn!(
                    ?problem,
                    "OIDC provider check failed; keeping the last verdict"
                );
                tokio::select! {
                    () = tokio::time::sleep(RETRY_FAILED_CHECK) => {}
                    () = self.poke.notified() => {}
                }
                continue;
            }
            last_verdict = Some(Instant::now());
            publish.send_if_modified(|current| {
                if current.as_ref() == Some(&check) {
                    return false;
                }
                match &check.problem {
                    Some(problem) => warn!(reason = problem.reason, message = %problem.message, "OIDC provider problem"),
                    None => info!(arn = %self.arn, client_ids = ?check.client_ids, "OIDC provider healthy"),
                }
                *current = Some(check);
                true
            });
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = self.poke.notified() => {}
            }
        }
    }

    async fn check_once(&self, audiences: &BTreeSet<String>) -> ProviderCheck {
        let thumbprint = match self.mode {
            ProviderMode::Manage => fetch_thumbprint(&self.issuer, self.ca_file.as_deref()).await,
            ProviderMode::Existing => Err("not computed in existing mode".to_string()),
        };
        let failed = |reason: &'static str, message: String| ProviderCheck {
            ops: Vec::new(),
            problem: Some(ProviderProblem { reason, message }),
            client_ids: BTreeSet::new(),
        };
        let observed = match self.iam.get_oidc_provider(&self.arn).await {
            Ok(observed) => observed,
            Err(error) => {
                return failed(
                    Reason::OidcProviderCheckFailed.as_str(),
                    format!("cannot read IAM OIDC provider {}: {error}", self.arn),
                );
            }
        };
        let inputs = ProviderInputs {
            mode: self.mode,
            arn: &self.arn,
            issuer_host_path: &self.issuer_host_path,
            cluster: &self.cluster,
            audiences,
            thumbprint: thumbprint.as_deref().map_err(String::as_str),
        };
        let check = check_provider(&inputs, observed.as_ref());
        for op in &check.ops {
            if let Err(error) = self.iam.execute_provider(&self.arn, op).await {
                return failed(
                    Reason::OidcProviderUpdateFailed.as_str(),
                    format!("cannot update IAM OIDC provider {}: {error}", self.arn),
                );
            }
            info!(arn = %self.arn, operation = op.operation(), "OIDC provider updated");
        }
        // The writes are done: what is published describes the provider as it now is.
        ProviderCheck {
            ops: Vec::new(),
            ..check
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::fake::FakeIam;
    use irsa_core::oidc::ProviderOp;

    fn monitor(iam: Arc<FakeIam>, mode: ProviderMode) -> ProviderMonitor {
        ProviderMonitor {
            iam,
            metrics: Arc::new(Metrics::default()),
            mode,
            arn: "arn:aws:iam::1:oidc-provider/127.0.0.1:1".into(),
            // Nothing listens on port 1: the thumbprint cannot be computed.
            issuer: "https://127.0.0.1:1".into(),
            issuer_host_path: "127.0.0.1:1".into(),
            cluster: "prod".into(),
            ca_file: None,
            interval: Duration::from_secs(60),
            poke: Arc::new(Notify::new()),
            account: AccountName::Home,
        }
    }

    #[test]
    fn a_failed_check_keeps_the_last_verdict_for_a_while_only() {
        let failed = ProviderCheck {
            ops: Vec::new(),
            problem: Some(ProviderProblem {
                reason: "OidcProviderCheckFailed",
                message: "Throttling".into(),
            }),
            client_ids: BTreeSet::new(),
        };
        let now = Instant::now();
        assert!(!hold_back(&failed, None, now), "nothing to keep yet");
        assert!(hold_back(&failed, Some(now), now));
        assert!(!hold_back(&failed, Some(now), now + KEEP_VERDICT_FOR));
        let definite = ProviderCheck {
            problem: Some(ProviderProblem {
                reason: "OidcProviderNotFound",
                message: "gone".into(),
            }),
            ..failed
        };
        assert!(
            !hold_back(&definite, Some(now), now),
            "a real problem shows at once"
        );
    }

    #[tokio::test]
    async fn unreachable_issuer_creates_nothing_and_says_why() {
        let iam = Arc::new(FakeIam::default());
        let check = monitor(iam.clone(), ProviderMode::Manage)
            .check_once(&BTreeSet::from(["sts.amazonaws.com".into()]))
            .await;
        assert_eq!(
            check.problem.unwrap().reason,
            "OidcProviderThumbprintUnavailable"
        );
        assert!(iam.providers.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn existing_mode_reads_only() {
        let iam = Arc::new(FakeIam::default());
        let m = monitor(iam.clone(), ProviderMode::Existing);
        let audiences = BTreeSet::from(["sts.amazonaws.com".to_string()]);
        assert_eq!(
            m.check_once(&audiences).await.problem.unwrap().reason,
            "OidcProviderNotFound"
        );
        let create = ProviderOp::Create {
            url: "https://127.0.0.1:1".into(),
            client_ids: audiences.clone(),
            thumbprints: vec!["0".repeat(40)],
            tags: Default::default(),
        };
        iam.execute_provider(&m.arn, &create).await.unwrap();
        let healthy = m.check_once(&audiences).await;
        assert_eq!(healthy.problem, None);
        assert_eq!(healthy.client_ids, audiences);
        assert_eq!(
            iam.writes(),
            [format!("CreateOpenIDConnectProvider {}", m.arn)],
            "only the test wrote"
        );
    }
}
