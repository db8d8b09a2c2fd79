//! What the pure steps know about where they run: the cluster, account, issuer, role
//! path and baseline, resolved from the operator's flags at start-up.

use std::time::Duration;

use crate::guardrail::Baseline;

/// Everything the pure steps need to know about where they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorConfig {
    pub cluster_name: String,
    /// The AWS partition (`aws`, `aws-cn`, ...), taken from the caller identity.
    pub partition: String,
    pub account_id: String,
    /// The issuer without its scheme, as IAM names the provider: `oidc.eks.../id/ABC`.
    pub issuer_host_path: String,
    pub role_path: String,
    pub role_name_prefix: String,
    /// Default deny and the operator-wide permissions boundary.
    pub baseline: Baseline,
}

impl OperatorConfig {
    pub fn oidc_provider_arn(&self) -> String {
        format!(
            "arn:{}:iam::{}:oidc-provider/{}",
            self.partition, self.account_id, self.issuer_host_path
        )
    }

    pub fn role_arn(&self, role_name: &str) -> String {
        format!(
            "arn:{}:iam::{}:role{}{}",
            self.partition, self.account_id, self.role_path, role_name
        )
    }
}

/// A boundary must be a managed policy IAM can attach here: in this partition, and
/// AWS-managed or in this account.
pub fn validate_boundary(arn: &str, partition: &str, account_id: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", p, "iam", "", account, resource]
            if *p == partition
                && (*account == "aws" || *account == account_id)
                && resource.len() > "policy/".len()
                && resource.starts_with("policy/") =>
        {
            Ok(())
        }
        _ => Err(format!(
            "--permissions-boundary `{arn}` is not a managed policy ARN in partition {partition}, \
             AWS-managed or of account {account_id}"
        )),
    }
}

/// The boundary `arn` names, as seen from account `account_id` of `partition`: the
/// policy of the same path and name there. AWS-managed policies are the same everywhere.
pub fn boundary_in_account(arn: &str, partition: &str, account_id: &str) -> String {
    match arn.splitn(6, ':').collect::<Vec<_>>().as_slice() {
        ["arn", _, "iam", "", account, resource] if *account != "aws" => {
            format!("arn:{partition}:iam::{account_id}:{resource}")
        }
        ["arn", _, "iam", "", "aws", resource] => format!("arn:{partition}:iam::aws:{resource}"),
        _ => arn.to_string(),
    }
}

/// `https://host/path` -> `host/path`, as IAM writes provider ARNs and condition keys.
pub fn issuer_host_path(issuer: &str) -> Result<String, String> {
    let rest = issuer
        .strip_prefix("https://")
        .ok_or_else(|| format!("the OIDC issuer `{issuer}` must be an https:// URL"))?;
    let trimmed = rest.trim_end_matches('/');
    if trimmed.is_empty() || trimmed.contains(['?', '#', ' ']) {
        return Err(format!(
            "the OIDC issuer `{issuer}` is not a valid issuer URL"
        ));
    }
    Ok(trimmed.to_string())
}

/// Parses `90s`, `10m`, `1h` or a bare number of seconds: the flags' durations.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit_seconds) = match text.char_indices().last() {
        Some((i, 's')) => (&text[..i], 1),
        Some((i, 'm')) => (&text[..i], 60),
        Some((i, 'h')) => (&text[..i], 3600),
        _ => (text, 1),
    };
    let amount: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 30s, 10m or 1h"))?;
    if amount == 0 {
        return Err("the duration must be positive".into());
    }
    Ok(Duration::from_secs(amount * unit_seconds))
}
