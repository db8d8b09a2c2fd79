//! Prometheus metrics. Every label takes values from a small fixed set.

use std::{sync::atomic::AtomicU64, time::Duration};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use irsa_core::account::AccountName;

mod ready;

use self::ready::ReadyCollector;
pub use self::ready::{Readiness, ReadySource};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IamCallLabels {
    operation: &'static str,
    /// `read` or `write`: steady state must show no writes.
    access: &'static str,
    outcome: &'static str,
}

/// IAM calls in a target account. `account` is a PodIamRoleAccount's name: the
/// platform team declares them, so the set stays small.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountIamCallLabels {
    account: String,
    operation: &'static str,
    access: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabels {
    account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountResultLabels {
    account: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

pub struct Metrics {
    registry: Registry,
    podiamroles: ReadyCollector,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ReasonLabels, Counter>,
    reconcile_duration: Histogram,
    iam_calls: Family<IamCallLabels, Counter>,
    oidc_provider_healthy: Gauge,
    oidc_provider_checks: Family<ResultLabels, Counter>,
    iam_throttles: Counter,
    iam_budget_wait: Histogram,
    iam_budget_rate: Gauge<f64, AtomicU64>,
    leader: Gauge,
    allow_without_guardrail: Gauge,
    orphan_roles: Gauge,
    orphan_roles_deleted: Counter,
    webhook_admissions: Family<OutcomeLabels, Counter>,
    webhook_admission_duration: Histogram,
    webhook_validations: Family<OutcomeLabels, Counter>,
    account_iam_calls: Family<AccountIamCallLabels, Counter>,
    account_iam_throttles: Family<AccountLabels, Counter>,
    account_ready: Family<AccountLabels, Gauge>,
    account_oidc_provider_checks: Family<AccountResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("irsa_operator");
        let podiamroles = ReadyCollector::default();
        registry.register_collector(Box::new(podiamroles.clone()));
        let reconciles = Family::<ResultLabels, Counter>::default();
        let reconcile_errors = Family::<ReasonLabels, Counter>::default();
        // 5 ms to ~40 s: a reconcile is a handful of IAM round trips.
        let reconcile_duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 40.0,
        ]);
        let iam_calls = Family::<IamCallLabels, Counter>::default();
        let oidc_provider_healthy = Gauge::default();
        let oidc_provider_checks = Family::<ResultLabels, Counter>::default();
        let iam_throttles = Counter::default();
        // 0 for a token at hand, up to ~10 s when a throttled process queues.
        let iam_budget_wait = Histogram::new([0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0]);
        let iam_budget_rate = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "iam_throttles",
            "IAM calls answered with Throttling",
            iam_throttles.clone(),
        );
        registry.register(
            "iam_budget_wait_seconds",
            "Time an IAM call waited for a token of its account's budget",
            iam_budget_wait.clone(),
        );
        registry.register(
            "iam_budget_rate",
            "IAM calls per second the budget allows now: its ceiling, or less after throttling",
            iam_budget_rate.clone(),
        );
        let leader = Gauge::default();
        let allow_without_guardrail = Gauge::default();
        registry.register(
            "allow_without_guardrail",
            "1 when started with --allow-without-guardrail: namespaces no guardrail selects may grant anything outside the built-in deny list",
            allow_without_guardrail.clone(),
        );
        let webhook_admissions = Family::<OutcomeLabels, Counter>::default();
        // 0.1 ms to 1 s: an admission is a cache lookup and a JSON diff; the API server
        // gives up after the webhook's timeoutSeconds.
        let webhook_admission_duration = Histogram::new([
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0,
        ]);
        registry.register(
            "webhook_admissions",
            "Pod admissions by the pod identity webhook, by outcome",
            webhook_admissions.clone(),
        );
        let webhook_validations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "webhook_validations",
            "PodIamRole admissions seen by the validating webhook, by outcome: `allowed`, `denied`, `skipped` (no spec change), `error` (the cluster could not be read; the failure policy decides)",
            webhook_validations.clone(),
        );
        registry.register(
            "webhook_admission_duration_seconds",
            "Time the pod identity webhook spent on one admission",
            webhook_admission_duration.clone(),
        );
        registry.register(
            "reconciles",
            "Reconcile runs by result: `success` ran to the end (the object may still be not Ready, see irsa_operator_podiamroles), `error` failed and is retried with back-off",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile runs that failed and are retried with back-off (the `error` result of irsa_operator_reconciles_total), by the failure's reason",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "iam_calls",
            "IAM API calls by operation, access and outcome",
            iam_calls.clone(),
        );
        registry.register(
            "oidc_provider_healthy",
            "1 when the cluster's IAM OIDC provider was found correct at the last check",
            oidc_provider_healthy.clone(),
        );
        registry.register(
            "oidc_provider_checks",
            "OIDC provider checks by result: healthy or the problem's reason",
            oidc_provider_checks.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica may write: it holds the leader Lease, or runs without leader election",
            leader.clone(),
        );
        let orphan_roles = Gauge::default();
        let orphan_roles_deleted = Counter::default();
        registry.register(
            "orphan_roles",
            "IAM roles tagged for this cluster whose PodIamRole no longer exists, at the last scan",
            orphan_roles.clone(),
        );
        registry.register(
            "orphan_roles_deleted",
            "Orphaned IAM roles deleted after their grace period",
            orphan_roles_deleted.clone(),
        );
        let account_iam_calls = Family::<AccountIamCallLabels, Counter>::default();
        let account_iam_throttles = Family::<AccountLabels, Counter>::default();
        let account_ready = Family::<AccountLabels, Gauge>::default();
        let account_oidc_provider_checks = Family::<AccountResultLabels, Counter>::default();
        registry.register(
            "account_iam_calls",
            "IAM API calls in target accounts (PodIamRoleAccounts), by account, operation, access and outcome",
            account_iam_calls.clone(),
        );
        registry.register(
            "account_iam_throttles",
            "IAM calls in a target account answered with Throttling",
            account_iam_throttles.clone(),
        );
        registry.register(
            "account_ready",
            "1 when the target account's management role was assumed and its OIDC provider found correct",
            account_ready.clone(),
        );
        registry.register(
            "account_oidc_provider_checks",
            "OIDC provider checks in target accounts by result: healthy or the problem's reason",
            account_oidc_provider_checks.clone(),
        );
        Self {
            account_iam_calls,
            account_iam_throttles,
            account_ready,
            account_oidc_provider_checks,
            registry,
            podiamroles,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            iam_calls,
            oidc_provider_healthy,
            oidc_provider_checks,
            iam_throttles,
            iam_budget_wait,
            iam_budget_rate,
            leader,
            allow_without_guardrail,
            orphan_roles,
            orphan_roles_deleted,
            webhook_admissions,
            webhook_admission_duration,
            webhook_validations,
        }
    }
}

impl Metrics {
    /// Records one IAM call in `account`.
    pub fn record_iam_call(
        &self,
        account: &AccountName,
        operation: &'static str,
        outcome: &'static str,
    ) {
        let access = access(operation);
        match account {
            AccountName::Home => self.iam_calls.get_or_create(&IamCallLabels {
                operation,
                access,
                outcome,
            }),
            AccountName::Declared(account) => {
                self.account_iam_calls.get_or_create(&AccountIamCallLabels {
                    account: account.clone(),
                    operation,
                    access,
                    outcome,
                })
            }
        }
        .inc();
    }

    /// Records a throttled IAM call in `account`.
    pub fn record_iam_throttle(&self, account: &AccountName) {
        match account {
            AccountName::Home => self.iam_throttles.inc(),
            AccountName::Declared(account) => self
                .account_iam_throttles
                .get_or_create(&AccountLabels {
                    account: account.clone(),
                })
                .inc(),
        };
    }

    pub fn set_account_ready(&self, account: &str, ready: bool) {
        self.account_ready
            .get_or_create(&AccountLabels {
                account: account.to_string(),
            })
            .set(i64::from(ready));
    }

    /// The budget's series are the operator's own account's: target accounts' budgets
    /// report their throttles only.
    pub fn record_iam_budget_wait(&self, account: &AccountName, wait: Duration) {
        if *account == AccountName::Home {
            self.iam_budget_wait.observe(wait.as_secs_f64());
        }
    }

    pub fn set_iam_budget_rate(&self, account: &AccountName, calls_per_second: f64) {
        if *account == AccountName::Home {
            self.iam_budget_rate.set(calls_per_second);
        }
    }

    /// Records a finished reconcile; `failure` is the bounded reason when it did not succeed.
    pub fn record_reconcile(&self, elapsed: Duration, failure: Option<&'static str>) {
        self.reconcile_duration.observe(elapsed.as_secs_f64());
        let result = if failure.is_some() {
            "error"
        } else {
            "success"
        };
        self.reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
        if let Some(reason) = failure {
            self.reconcile_errors
                .get_or_create(&ReasonLabels { reason })
                .inc();
        }
    }

    /// Records one OIDC provider check in `account`; `problem` is its reason when unhealthy.
    pub fn record_oidc_provider(&self, account: &AccountName, problem: Option<&'static str>) {
        let result = problem.unwrap_or("healthy");
        match account {
            AccountName::Home => {
                self.oidc_provider_healthy.set(i64::from(problem.is_none()));
                self.oidc_provider_checks
                    .get_or_create(&ResultLabels { result })
                    .inc();
            }
            AccountName::Declared(account) => {
                self.account_oidc_provider_checks
                    .get_or_create(&AccountResultLabels {
                        account: account.clone(),
                        result,
                    })
                    .inc();
            }
        }
    }

    /// Where `irsa_operator_podiamroles` reads the PodIamRoles from; `None` reports none.
    pub fn set_ready_source(&self, source: Option<ReadySource>) {
        *self.podiamroles.source.write().expect("never poisoned") = source;
    }

    /// Records one pod admission; `outcome` is `mutated`, `unchanged`, `no_role` or `invalid`.
    pub fn record_admission(&self, elapsed: Duration, outcome: &'static str) {
        self.webhook_admission_duration
            .observe(elapsed.as_secs_f64());
        self.webhook_admissions
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn record_validation(&self, outcome: &'static str) {
        self.webhook_validations
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn set_allow_without_guardrail(&self, on: bool) {
        self.allow_without_guardrail.set(i64::from(on));
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn record_orphan_roles(&self, count: usize) {
        self.orphan_roles
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn record_orphan_deleted(&self) {
        self.orphan_roles_deleted.inc();
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// `read` or `write`: steady state must show no writes.
fn access(operation: &str) -> &'static str {
    if operation.starts_with("Get") || operation.starts_with("List") {
        "read"
    } else {
        "write"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_iam_calls_with_access() {
        let metrics = Metrics::default();
        let home = &AccountName::Home;
        metrics.record_iam_call(home, "GetRole", "success");
        metrics.record_iam_call(home, "PutRolePolicy", "terminal");
        metrics.record_reconcile(Duration::from_millis(20), Some("RoleConflict"));
        metrics.record_oidc_provider(home, Some("OidcProviderNotFound"));
        metrics.record_iam_throttle(home);
        metrics.record_iam_budget_wait(home, Duration::from_millis(30));
        metrics.set_iam_budget_rate(home, 7.5);
        metrics.record_admission(Duration::from_micros(300), "mutated");
        let text = metrics.render();
        assert!(text.contains(r#"irsa_operator_iam_calls_total{operation="GetRole",access="read",outcome="success"} 1"#), "{text}");
        assert!(text.contains(r#"irsa_operator_iam_calls_total{operation="PutRolePolicy",access="write",outcome="terminal"} 1"#));
        assert!(text.contains(r#"irsa_operator_reconcile_errors_total{reason="RoleConflict"} 1"#));
        assert!(text.contains("irsa_operator_reconcile_duration_seconds_count 1"));
        assert!(text.contains("irsa_operator_oidc_provider_healthy 0"));
        assert!(text.contains(
            r#"irsa_operator_oidc_provider_checks_total{result="OidcProviderNotFound"} 1"#
        ));
        assert!(text.contains("irsa_operator_iam_throttles_total 1"));
        assert!(text.contains("irsa_operator_iam_budget_wait_seconds_count 1"));
        assert!(text.contains("irsa_operator_iam_budget_rate 7.5"));
        assert!(text.contains(r#"irsa_operator_webhook_admissions_total{outcome="mutated"} 1"#));
        assert!(text.contains("irsa_operator_webhook_admission_duration_seconds_count 1"));
    }

    #[test]
    fn target_accounts_are_counted_apart() {
        let metrics = Metrics::default();
        let data = &AccountName::Declared("data".into());
        metrics.record_iam_call(data, "CreateRole", "success");
        metrics.record_iam_throttle(data);
        metrics.record_oidc_provider(data, Some("OidcProviderNotFound"));
        metrics.record_iam_budget_wait(data, Duration::from_millis(30));
        metrics.set_iam_budget_rate(data, 7.5);
        metrics.set_account_ready("data", true);
        let text = metrics.render();
        assert!(text.contains(r#"irsa_operator_account_iam_calls_total{account="data",operation="CreateRole",access="write",outcome="success"} 1"#), "{text}");
        assert!(text.contains(r#"irsa_operator_account_iam_throttles_total{account="data"} 1"#));
        assert!(text.contains(r#"irsa_operator_account_oidc_provider_checks_total{account="data",result="OidcProviderNotFound"} 1"#));
        assert!(text.contains(r#"irsa_operator_account_ready{account="data"} 1"#));
        assert!(
            !text.contains("irsa_operator_iam_calls_total{")
                && text.contains("irsa_operator_iam_throttles_total 0")
                && text.contains("irsa_operator_oidc_provider_healthy 0")
                && text.contains("irsa_operator_iam_budget_wait_seconds_count 0")
                && text.contains("irsa_operator_iam_budget_rate 0"),
            "the operator's own account's series are untouched: {text}"
        );
    }

    #[test]
    fn counts_podiamroles_by_ready_status_and_reason() {
        let metrics = Metrics::default();
        let empty = metrics.render();
        assert!(
            empty.contains("# TYPE irsa_operator_podiamroles gauge"),
            "{empty}"
        );
        assert!(!empty.contains("irsa_operator_podiamroles{"));
        metrics.set_ready_source(Some(Box::new(|| {
            [
                ("True", "Synced", false),
                ("False", "AccessDenied", true),
                ("True", "Synced", false),
            ]
            .map(|(ready, reason, deleting)| Readiness {
                ready: ready.into(),
                reason: reason.into(),
                deleting,
            })
            .to_vec()
        })));
        let text = metrics.render();
        assert!(
            text.contains(
                r#"irsa_operator_podiamroles{ready="True",reason="Synced",deleting="false"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"irsa_operator_podiamroles{ready="False",reason="AccessDenied",deleting="true"} 1"#
        ));
        metrics.set_ready_source(None);
        assert!(!metrics.render().contains("irsa_operator_podiamroles{"));
    }
}
