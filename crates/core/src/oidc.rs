//! Pure: the cluster's IAM OIDC identity provider. Decides what to write (in `manage`
//! mode, on a provider the operator created) and what is wrong with it, so every
//! PodIamRole can say why its pods would be denied.

use std::collections::{BTreeMap, BTreeSet};

use crate::ownership::TAG_CLUSTER;
use crate::reason::Reason;
use irsa_api::ProviderMode;

/// Marks a provider as created by this operator; only such providers are ever changed.
pub const TAG_MANAGED_BY: &str = "irsa.dev/managed-by";
const MANAGED_BY: &str = "irsa-operator";
/// IAM's limit on client IDs per OIDC provider.
pub const MAX_CLIENT_IDS: usize = 100;

/// A provider as `GetOpenIDConnectProvider` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedProvider {
    /// IAM's spelling: the issuer without `https://`.
    pub url: String,
    pub client_ids: BTreeSet<String>,
    pub thumbprints: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderOp {
    Create {
        url: String,
        client_ids: BTreeSet<String>,
        thumbprints: Vec<String>,
        tags: BTreeMap<String, String>,
    },
    UpdateThumbprints(Vec<String>),
    AddClientId(String),
    RemoveClientId(String),
}

impl ProviderOp {
    pub fn operation(&self) -> &'static str {
        match self {
            ProviderOp::Create { .. } => "CreateOpenIDConnectProvider",
            ProviderOp::UpdateThumbprints(_) => "UpdateOpenIDConnectProviderThumbprint",
            ProviderOp::AddClientId(_) => "AddClientIDToOpenIDConnectProvider",
            ProviderOp::RemoveClientId(_) => "RemoveClientIDFromOpenIDConnectProvider",
        }
    }
}

/// Something that makes `AssumeRoleWithWebIdentity` fail for some or all roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderProblem {
    pub reason: &'static str,
    pub message: String,
}

/// What one provider check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCheck {
    pub ops: Vec<ProviderOp>,
    /// A problem affecting every role, if any.
    pub problem: Option<ProviderProblem>,
    /// Audiences the provider accepts once `ops` are done.
    pub client_ids: BTreeSet<String>,
}

/// Everything the check compares against.
pub struct ProviderInputs<'a> {
    pub mode: ProviderMode,
    pub arn: &'a str,
    pub issuer_host_path: &'a str,
    pub cluster: &'a str,
    /// Audiences the PodIamRoles use.
    pub audiences: &'a BTreeSet<String>,
    /// The issuer's current thumbprint, or why it could not be computed.
    pub thumbprint: Result<&'a str, &'a str>,
}

pub fn check_provider(
    inputs: &ProviderInputs<'_>,
    observed: Option<&ObservedProvider>,
) -> ProviderCheck {
    let Some(observed) = observed else {
        return check_missing(inputs);
    };
    let observed_url = observed
        .url
        .trim_start_matches("https://")
        .trim_end_matches('/');
    if observed_url != inputs.issuer_host_path {
        return problem(
            Reason::OidcProviderUrlMismatch.as_str(),
            format!(
                "IAM OIDC provider {} has URL {observed_url}, but the cluster's issuer is {}",
                inputs.arn, inputs.issuer_host_path
            ),
            observed.client_ids.clone(),
        );
    }
    let ours = observed.tags.get(TAG_CLUSTER).map(String::as_str) == Some(inputs.cluster)
        && observed.tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY);
    if inputs.mode == ProviderMode::Manage && ours {
        return reconcile_owned(inputs, observed);
    }
    verify_foreign(inputs, observed)
}

fn problem(reason: &'static str, message: String, client_ids: BTreeSet<String>) -> ProviderCheck {
    ProviderCheck {
        ops: Vec::new(),
        problem: Some(ProviderProblem { reason, message }),
        client_ids,
    }
}

fn check_missing(inputs: &ProviderInputs<'_>) -> ProviderCheck {
    if inputs.mode == ProviderMode::Existing {
        return problem(
            Reason::OidcProviderNotFound.as_str(),
            format!(
                "IAM OIDC provider {} does not exist, so no pod can assume its role; create it \
                 (eksctl utils associate-iam-oidc-provider) or run the operator with --oidc-provider=manage",
                inputs.arn
            ),
            BTreeSet::new(),
        );
    }
    let thumbprint = match inputs.thumbprint {
        Ok(thumbprint) => thumbprint,
        Err(why) => {
            let message = format!("cannot create IAM OIDC provider {}: {why}", inputs.arn);
            return problem(
                Reason::OidcProviderThumbprintUnavailable.as_str(),
                message,
                BTreeSet::new(),
            );
        }
    };
    let client_ids = inputs.audiences.clone();
    ProviderCheck {
        ops: vec![ProviderOp::Create {
            url: format!("https://{}", inputs.issuer_host_path),
            client_ids: client_ids.clone(),
            thumbprints: vec![thumbprint.to_string()],
            tags: BTreeMap::from([
                (TAG_CLUSTER.to_string(), inputs.cluster.to_string()),
                (TAG_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
            ]),
        }],
        problem: None,
        client_ids,
    }
}

fn reconcile_owned(inputs: &ProviderInputs<'_>, observed: &ObservedProvider) -> ProviderCheck {
    let mut ops = Vec::new();
    let mut problem = None;
    match inputs.thumbprint {
        Ok(thumbprint) if observed.thumbprints != [thumbprint] => {
            ops.push(ProviderOp::UpdateThumbprints(vec![thumbprint.to_string()]))
        }
        Ok(_) => {}
        // Keep the old thumbprint rather than guess; say why it could not be checked.
        Err(why) => {
            problem = Some(ProviderProblem {
                reason: Reason::OidcProviderThumbprintUnavailable.as_str(),
                message: format!(
                    "cannot verify the thumbprint of IAM OIDC provider {}: {why}",
                    inputs.arn
                ),
            })
        }
    }
    ops.extend(
        inputs
            .audiences
            .difference(&observed.client_ids)
            .map(|id| ProviderOp::AddClientId(id.clone())),
    );
    ops.extend(
        observed
            .client_ids
            .difference(inputs.audiences)
            .map(|id| ProviderOp::RemoveClientId(id.clone())),
    );
    ProviderCheck {
        ops,
        problem,
        client_ids: inputs.audiences.clone(),
    }
}

fn verify_foreign(inputs: &ProviderInputs<'_>, observed: &ObservedProvider) -> ProviderCheck {
    // In manage mode a provider made by someone else is checked like an existing one.
    if let (ProviderMode::Manage, Ok(thumbprint)) = (inputs.mode, inputs.thumbprint)
        && !observed
            .thumbprints
            .iter()
            .any(|t| t.eq_ignore_ascii_case(thumbprint))
    {
        return problem(
            Reason::OidcProviderThumbprintStale.as_str(),
            format!(
                "IAM OIDC provider {} lists thumbprints {:?}, but the issuer now serves {thumbprint}; \
                 it was not created by this operator, so it is left unchanged: update it by hand",
                inputs.arn, observed.thumbprints
            ),
            observed.client_ids.clone(),
        );
    }
    ProviderCheck {
        ops: Vec::new(),
        problem: None,
        client_ids: observed.client_ids.clone(),
    }
}

/// At most [`MAX_CLIENT_IDS`] audiences, `default` always among them and the rest in
/// sorted order, so the provider never hits IAM's limit and the choice is stable.
pub fn within_client_id_limit(audiences: BTreeSet<String>, default: &str) -> BTreeSet<String> {
    let (defaults, others): (BTreeSet<String>, BTreeSet<String>) =
        audiences.into_iter().partition(|a| a == default);
    let room = MAX_CLIENT_IDS.saturating_sub(defaults.len());
    defaults
        .into_iter()
        .chain(others.into_iter().take(room))
        .collect()
}

/// The provider's state as seen by one PodIamRole using `audience`.
pub fn problem_for_audience(
    check: &ProviderCheck,
    arn: &str,
    audience: &str,
) -> Option<ProviderProblem> {
    if let Some(problem) = &check.problem {
        return Some(problem.clone());
    }
    if check.client_ids.len() >= MAX_CLIENT_IDS && !check.client_ids.contains(audience) {
        return Some(ProviderProblem {
            reason: Reason::OidcProviderClientIdLimit.as_str(),
            message: format!(
                "IAM OIDC provider {arn} already has {MAX_CLIENT_IDS} client IDs, IAM's limit, so audience \
                 {audience} cannot be added; use an audience already in use, such as sts.amazonaws.com"
            ),
        });
    }
    (!check.client_ids.contains(audience)).then(|| ProviderProblem {
        reason: Reason::OidcProviderMissingAudience.as_str(),
        message: format!(
            "IAM OIDC provider {arn} does not list client ID {audience}, so STS rejects tokens for this audience; \
             add it to the provider or run the operator with --oidc-provider=manage"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_stay_within_iams_limit_and_keep_the_default() {
        let many: BTreeSet<String> = (0..150)
            .map(|i| format!("aud-{i:03}"))
            .chain(["zz-default".to_string()])
            .collect();
        let kept = within_client_id_limit(many, "zz-default");
        assert_eq!(kept.len(), MAX_CLIENT_IDS);
        assert!(kept.contains("zz-default") && kept.contains("aud-000"));
        assert!(!kept.contains("aud-099"), "sorted, the first 99 others");
        let check = ProviderCheck {
            ops: Vec::new(),
            problem: None,
            client_ids: kept,
        };
        let problem = problem_for_audience(&check, "arn", "aud-120").unwrap();
        assert_eq!(problem.reason, "OidcProviderClientIdLimit");
        assert_eq!(problem_for_audience(&check, "arn", "aud-001"), None);
    }

    const ARN: &str = "arn:aws:iam::1:oidc-provider/issuer.example/id/A";
    const TP: &str = "990f4193972f2becf12ddeda5237f9c952f20d9e";

    fn audiences() -> BTreeSet<String> {
        BTreeSet::from(["sts.amazonaws.com".to_string()])
    }

    fn inputs<'a>(mode: ProviderMode, audiences: &'a BTreeSet<String>) -> ProviderInputs<'a> {
        ProviderInputs {
            mode,
            arn: ARN,
            issuer_host_path: "issuer.example/id/A",
            cluster: "prod",
            audiences,
            thumbprint: Ok(TP),
        }
    }

    fn owned() -> ObservedProvider {
        ObservedProvider {
            url: "issuer.example/id/A".into(),
            client_ids: audiences(),
            thumbprints: vec![TP.into()],
            tags: BTreeMap::from([
                (TAG_CLUSTER.into(), "prod".into()),
                (TAG_MANAGED_BY.into(), MANAGED_BY.into()),
            ]),
        }
    }

    #[test]
    fn manage_creates_a_missing_provider() {
        let audiences = audiences();
        let check = check_provider(&inputs(ProviderMode::Manage, &audiences), None);
        assert_eq!(check.problem, None);
        assert_eq!(
            check.ops,
            [ProviderOp::Create {
                url: "https://issuer.example/id/A".into(),
                client_ids: audiences.clone(),
                thumbprints: vec![TP.into()],
                tags: owned().tags,
            }]
        );
    }

    #[test]
    fn in_sync_provider_needs_nothing() {
        let audiences = audiences();
        let check = check_provider(&inputs(ProviderMode::Manage, &audiences), Some(&owned()));
        assert_eq!(
            check,
            ProviderCheck {
                ops: vec![],
                problem: None,
                client_ids: audiences
            }
        );
    }

    #[test]
    fn owned_provider_follows_thumbprint_and_audiences() {
        let audiences = BTreeSet::from(["sts.amazonaws.com".to_string(), "vault".to_string()]);
        let mut observed = owned();
        observed.thumbprints = vec!["0".repeat(40)];
        observed.client_ids.insert("old".into());
        let check = check_provider(&inputs(ProviderMode::Manage, &audiences), Some(&observed));
        assert_eq!(
            check.ops,
            [
                ProviderOp::UpdateThumbprints(vec![TP.into()]),
                ProviderOp::AddClientId("vault".into()),
                ProviderOp::RemoveClientId("old".into()),
            ]
        );
    }

    #[test]
    fn existing_mode_only_reports() {
        let audiences = audiences();
        let missing = check_provider(&inputs(ProviderMode::Existing, &audiences), None);
        assert_eq!(missing.problem.unwrap().reason, "OidcProviderNotFound");
        let mut stale = owned();
        stale.thumbprints = vec!["0".repeat(40)];
        let check = check_provider(&inputs(ProviderMode::Existing, &audiences), Some(&stale));
        assert!(
            check.ops.is_empty() && check.problem.is_none(),
            "existing mode never writes"
        );
    }

    #[test]
    fn a_foreign_provider_is_never_modified() {
        let audiences = BTreeSet::from(["sts.amazonaws.com".to_string(), "vault".to_string()]);
        let mut foreign = owned();
        foreign.tags.clear();
        foreign.thumbprints = vec!["0".repeat(40)];
        let check = check_provider(&inputs(ProviderMode::Manage, &audiences), Some(&foreign));
        assert!(check.ops.is_empty());
        assert_eq!(
            check.problem.as_ref().unwrap().reason,
            "OidcProviderThumbprintStale"
        );
        foreign.thumbprints = vec![TP.to_uppercase()];
        let check = check_provider(&inputs(ProviderMode::Manage, &audiences), Some(&foreign));
        assert!(check.ops.is_empty() && check.problem.is_none());
        let vault = problem_for_audience(&check, ARN, "vault").unwrap();
        assert_eq!(vault.reason, "OidcProviderMissingAudience");
        assert_eq!(problem_for_audience(&check, ARN, "sts.amazonaws.com"), None);
    }

    #[test]
    fn wrong_url_and_missing_thumbprint_are_reported() {
        let audiences = audiences();
        let mut other = owned();
        other.url = "elsewhere.example".into();
        let check = check_provider(&inputs(ProviderMode::Manage, &audiences), Some(&other));
        assert_eq!(check.problem.unwrap().reason, "OidcProviderUrlMismatch");
        let mut no_tls = inputs(ProviderMode::Manage, &audiences);
        no_tls.thumbprint = Err("connection refused");
        let check = check_provider(&no_tls, None);
        assert!(check.ops.is_empty());
        assert!(
            check
                .problem
                .unwrap()
                .message
                .contains("connection refused")
        );
    }
}
