//! Target accounts: the `PodIamRoleAccount` resource, which declares another AWS account
//! the operator may create roles in, and the pure decisions about it: whether a namespace
//! may use it, the operator's settings as seen from that account, and the management
//! role's trust policy. The IO (assuming the management role, the account's IAM client,
//! provider monitor and bulk listing) lives in the operator's `accounts` module.

use std::collections::BTreeMap;

use kube::core::{Selector, SelectorExt};
use serde_json::{Value, json};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::{config::OperatorConfig, guardrail::Baseline, oidc::ProviderProblem, reason::Reason};
use irsa_api::{PodIamRoleAccount, PodIamRoleAccountSpec, PodIamRoleAccountStatus, READY};

/// The account a connection works in: the operator's own, or the one a
/// PodIamRoleAccount declares. Both are connected the same way; they differ in where
/// the credentials come from and in their metrics' series.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AccountName {
    Home,
    Declared(String),
}

impl AccountName {
    /// The PodIamRoleAccount's name; `None` for the operator's own account.
    pub fn declared(&self) -> Option<&str> {
        match self {
            Self::Home => None,
            Self::Declared(name) => Some(name),
        }
    }
}

/// Why a PodIamRole cannot use the account it names. Nothing is written to IAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No PodIamRoleAccount of that name exists.
    NotFound,
    /// The account's `namespaceSelector` does not select the PodIamRole's namespace.
    NotAllowed,
}

/// Why a PodIamRole's target account cannot be used, as its status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountProblem {
    NotFound {
        account: String,
    },
    NotAllowed {
        account: String,
        namespace: String,
    },
    /// Assuming the management role failed, or the account is declared wrongly.
    AssumeFailed {
        account: String,
        role_arn: String,
        message: String,
    },
}

impl AccountProblem {
    pub fn new(refusal: Refusal, account: &str, namespace: &str) -> Self {
        let account = account.to_string();
        match refusal {
            Refusal::NotFound => AccountProblem::NotFound { account },
            Refusal::NotAllowed => AccountProblem::NotAllowed {
                account,
                namespace: namespace.to_string(),
            },
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            AccountProblem::NotFound { .. } => Reason::AccountNotFound.as_str(),
            AccountProblem::NotAllowed { .. } => Reason::AccountNotAllowed.as_str(),
            AccountProblem::AssumeFailed { .. } => Reason::AccountAssumeFailed.as_str(),
        }
    }

    pub fn message(&self) -> String {
        match self {
            AccountProblem::NotFound { account } => format!(
                "spec.account names PodIamRoleAccount {account}, which does not exist; nothing was \
                 written to IAM. Fix spec.account, or ask the platform team to declare the account"
            ),
            AccountProblem::NotAllowed { account, namespace } => format!(
                "PodIamRoleAccount {account} does not grant namespace {namespace} (its \
                 namespaceSelector does not select it); nothing was written to IAM. Ask the \
                 platform team for the grant, or remove spec.account"
            ),
            AccountProblem::AssumeFailed {
                account,
                role_arn,
                message,
            } => format!(
                "cannot assume management role {role_arn} of PodIamRoleAccount {account}; nothing \
                 was written to IAM. Check the role's trust policy and external ID \
                 (irsa-operator iam-policy --management-trust). STS said: {message}"
            ),
        }
    }
}

/// Whether a namespace with these labels may use the account: an unparsable selector
/// fails closed.
pub fn grants(spec: &PodIamRoleAccountSpec, namespace_labels: &BTreeMap<String, String>) -> bool {
    Selector::try_from(spec.namespace_selector.clone())
        .is_ok_and(|selector| selector.matches(namespace_labels))
}

/// The account a PodIamRole in a namespace with `labels` may use, looked up by `find`.
pub fn admit<'a>(
    account: &str,
    find: impl FnOnce(&str) -> Option<&'a PodIamRoleAccount>,
    labels: &BTreeMap<String, String>,
) -> Result<&'a PodIamRoleAccount, Refusal> {
    let found = find(account).ok_or(Refusal::NotFound)?;
    if grants(&found.spec, labels) {
        Ok(found)
    } else {
        Err(Refusal::NotAllowed)
    }
}

/// The operator's settings as seen from the account: the same cluster, issuer and role
/// path, that account's ID and partition, so role and provider ARNs name that account.
pub fn account_config(
    home: &OperatorConfig,
    spec: &PodIamRoleAccountSpec,
) -> Result<OperatorConfig, String> {
    let mut parts = spec.management_role_arn.split(':');
    let partition = parts.nth(1).filter(|p| p.starts_with("aws"));
    let account = parts.nth(2);
    match (partition, account) {
        (Some(partition), Some(account))
            if account == spec.account_id
                && spec.account_id.len() == 12
                && spec.account_id.bytes().all(|b| b.is_ascii_digit()) =>
        {
            let boundary =
                home.baseline.boundary.as_deref().map(|arn| {
                    crate::config::boundary_in_account(arn, partition, &spec.account_id)
                });
            Ok(OperatorConfig {
                partition: partition.to_string(),
                account_id: spec.account_id.clone(),
                baseline: Baseline {
                    boundary,
                    ..home.baseline.clone()
                },
                ..home.clone()
            })
        }
        _ => Err(format!(
            "spec.managementRoleArn {} is not a role in account {}",
            spec.management_role_arn, spec.account_id
        )),
    }
}

/// The trust policy of a management role: the operator's own role (`operator_role_arn`)
/// may assume it, presenting `external_id`.
pub fn management_trust_policy(operator_role_arn: &str, external_id: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "TheIrsaOperatorWithItsExternalId",
            "Effect": "Allow",
            "Principal": {"AWS": operator_role_arn},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
        }]
    })
}

/// What the operator knows of its connection to a target account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState<'a> {
    /// The account cannot be used (its management role could not be assumed).
    Unavailable(&'a AccountProblem),
    /// Assumed; the check of the account's OIDC provider has not finished.
    Checking { provider_arn: &'a str },
    /// Assumed; the provider trusts this cluster, or the problem the check found.
    Checked {
        provider_arn: &'a str,
        problem: Option<&'a ProviderProblem>,
    },
}

/// The PodIamRoleAccount's status for `connection`. The `Ready` condition keeps its
/// transition time while its status stays the same.
pub fn next_status(
    old: Option<&PodIamRoleAccountStatus>,
    generation: Option<i64>,
    connection: &ConnectionState<'_>,
    now: Timestamp,
) -> PodIamRoleAccountStatus {
    let (status, reason, message, provider_arn) = match *connection {
        ConnectionState::Unavailable(problem) => {
            ("False", problem.reason(), problem.message(), None)
        }
        ConnectionState::Checking { provider_arn } => (
            "Unknown",
            "Checking",
            format!("management role assumed; checking IAM OIDC provider {provider_arn}"),
            Some(provider_arn),
        ),
        ConnectionState::Checked {
            provider_arn,
            problem: None,
        } => (
            "True",
            "Connected",
            format!(
                "management role assumed; IAM OIDC provider {provider_arn} trusts this cluster"
            ),
            Some(provider_arn),
        ),
        ConnectionState::Checked {
            provider_arn,
            problem: Some(problem),
        } => (
            "False",
            problem.reason,
            problem.message.clone(),
            Some(provider_arn),
        ),
    };
    let since = old
        .and_then(|old| old.conditions.iter().find(|c| c.type_ == READY))
        .filter(|previous| previous.status == status)
        .map_or(Time(now), |previous| previous.last_transition_time.clone());
    PodIamRoleAccountStatus {
        observed_generation: generation,
        oidc_provider_arn: provider_arn.map(str::to_string),
        conditions: vec![Condition {
            type_: READY.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: generation,
            last_transition_time: since,
        }],
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use kube::CustomResourceExt;

    use super::*;
    use crate::{
        desired::desired_role,
        testing::{account, owner, spec, test_config},
        trust,
    };

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_grant_matching_namespaces_only_and_fail_closed() {
        let mut data = account("data", "222222222222");
        data.spec.namespace_selector.match_labels = Some(labels(&[("team", "data")]));
        let find = |name: &str| (name == "data").then_some(&data);
        assert!(admit("data", find, &labels(&[("team", "data")])).is_ok());
        assert_eq!(
            admit("data", find, &labels(&[("team", "web")])),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            admit("other", find, &labels(&[("team", "data")])),
            Err(Refusal::NotFound)
        );
        let mut broken = account("broken", "222222222222");
        broken.spec.namespace_selector.match_expressions = Some(vec![LabelSelectorRequirement {
            key: "team".into(),
            operator: "Near".into(),
            values: None,
        }]);
        assert!(
            !grants(&broken.spec, &labels(&[("team", "data")])),
            "an unparsable selector grants nothing"
        );
        assert!(
            grants(&account("all", "222222222222").spec, &labels(&[])),
            "an empty selector grants every namespace"
        );
    }

    #[test]
    fn roles_and_their_trust_name_the_target_account() {
        let mut target = account("data", "222222222222");
        target.spec.management_role_arn =
            "arn:aws-us-gov:iam::222222222222:role/irsa-management".into();
        let config = account_config(&test_config(), &target.spec).unwrap();
        assert_eq!(
            (config.partition.as_str(), config.account_id.as_str()),
            ("aws-us-gov", "222222222222")
        );
        let desired = desired_role(&spec(), owner(), &config).unwrap();
        let home = desired_role(&spec(), owner(), &test_config()).unwrap();
        assert_eq!(
            desired.name, home.name,
            "the name does not depend on the account"
        );
        assert_eq!(
            desired.arn,
            "arn:aws-us-gov:iam::222222222222:role/irsa/prod/prod.shop.payments"
        );
        assert_eq!(
            desired.trust_policy["Statement"][0]["Principal"]["Federated"],
            "arn:aws-us-gov:iam::222222222222:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC"
        );
    }

    #[test]
    fn a_management_role_outside_the_account_is_refused() {
        let mut other = account("data", "222222222222");
        other.spec.management_role_arn = "arn:aws:iam::333333333333:role/m".into();
        let error = account_config(&test_config(), &other.spec).unwrap_err();
        assert!(
            error.contains("not a role in account 222222222222"),
            "{error}"
        );
        other.spec.management_role_arn = "not-an-arn".into();
        assert!(account_config(&test_config(), &other.spec).is_err());
    }

    #[test]
    fn the_management_trust_admits_the_operator_with_the_external_id_only() {
        let policy =
            management_trust_policy("arn:aws:iam::111122223333:role/irsa-operator", "s3cr3t");
        let operator = "arn:aws:sts::111122223333:assumed-role/irsa-operator/i-1";
        assert_eq!(
            trust::evaluate_assume_role(&policy, operator, Some("s3cr3t")),
            Ok(())
        );
        let wrong_id = trust::evaluate_assume_role(&policy, operator, Some("guess"));
        assert!(wrong_id.unwrap_err().contains("sts:ExternalId"));
        assert!(trust::evaluate_assume_role(&policy, operator, None).is_err());
        let other = "arn:aws:sts::111122223333:assumed-role/someone-else/i-1";
        assert!(trust::evaluate_assume_role(&policy, other, Some("s3cr3t")).is_err());
        let other_account = "arn:aws:sts::444455556666:assumed-role/irsa-operator/i-1";
        assert!(trust::evaluate_assume_role(&policy, other_account, Some("s3cr3t")).is_err());
    }

    #[test]
    fn crd_names() {
        let crd = PodIamRoleAccount::crd();
        assert_eq!(crd.spec.names.plural, "podiamroleaccounts");
        assert_eq!(crd.spec.names.short_names, Some(vec!["pira".to_string()]));
        assert_eq!(crd.spec.scope, "Cluster");
        assert!(
            crd.spec.versions[0]
                .subresources
                .as_ref()
                .unwrap()
                .status
                .is_some()
        );
    }

    #[test]
    fn the_status_follows_the_connection_and_keeps_its_transition_time() {
        let t = |seconds| Timestamp::from_second(seconds).unwrap();
        let arn = "arn:aws:iam::222222222222:oidc-provider/x";
        let checking = next_status(
            None,
            Some(1),
            &ConnectionState::Checking { provider_arn: arn },
            t(1),
        );
        let ready = &checking.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("Unknown", "Checking")
        );
        assert_eq!(ready.last_transition_time, Time(t(1)));
        assert_eq!(checking.oidc_provider_arn.as_deref(), Some(arn));

        let connected = ConnectionState::Checked {
            provider_arn: arn,
            problem: None,
        };
        let first = next_status(Some(&checking), Some(1), &connected, t(2));
        assert_eq!(first.conditions[0].status, "True");
        assert_eq!(first.conditions[0].last_transition_time, Time(t(2)));
        // Still connected later, at a new generation: the transition time stays.
        let again = next_status(Some(&first), Some(2), &connected, t(9));
        assert_eq!(again.conditions[0].last_transition_time, Time(t(2)));
        assert_eq!(again.observed_generation, Some(2));
        assert_eq!(again.conditions[0].observed_generation, Some(2));

        let problem = ProviderProblem {
            reason: Reason::OidcProviderNotFound.as_str(),
            message: "no provider".into(),
        };
        let broken = ConnectionState::Checked {
            provider_arn: arn,
            problem: Some(&problem),
        };
        let failed = next_status(Some(&again), Some(2), &broken, t(10));
        assert_eq!(
            (
                failed.conditions[0].status.as_str(),
                failed.conditions[0].reason.as_str()
            ),
            ("False", "OidcProviderNotFound")
        );
        assert_eq!(failed.conditions[0].last_transition_time, Time(t(10)));

        let refused = AccountProblem::new(Refusal::NotFound, "other", "shop");
        let unavailable = next_status(
            Some(&failed),
            Some(2),
            &ConnectionState::Unavailable(&refused),
            t(11),
        );
        let condition = &unavailable.conditions[0];
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("False", refused.reason())
        );
        assert_eq!(condition.message, refused.message());
        // False before and after: the transition time stays; no provider is known.
        assert_eq!(condition.last_transition_time, Time(t(10)));
        assert_eq!(unavailable.oidc_provider_arn, None);
    }
}
