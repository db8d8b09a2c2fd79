//! docs/troubleshooting.md explains every status reason the code can set.

use std::collections::BTreeSet;

const TROUBLESHOOTING: &str = include_str!("../docs/troubleshooting.md");
const STATUS: &str = include_str!("../crates/core/src/status.rs");
const FAILURE: &str = include_str!("../crates/core/src/failure.rs");
const OIDC: &str = include_str!("../crates/core/src/oidc.rs");
const PROVIDER: &str = include_str!("../src/provider.rs");
const ACCOUNTS: &str = include_str!("../crates/core/src/account.rs");

/// Code without its unit tests.
fn code(source: &str) -> &str {
    source.split("#[cfg(test)]").next().unwrap()
}

/// Alphanumeric string literals right after `marker`.
fn literals_after(source: &str, marker: &str) -> BTreeSet<String> {
    source
        .split(marker)
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|word| !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(str::to_string)
        .collect()
}

/// The reasons the code sets: `Outcome::reason`'s own, the IAM failure table's, and the
/// OIDC provider problems (all named `OidcProvider...`).
fn reasons() -> BTreeSet<String> {
    let mut reasons = BTreeSet::new();
    // `Outcome::reason`'s own, and the target account problems'.
    for source in [STATUS, ACCOUNTS] {
        let reason = source
            .split("pub fn reason(&self)")
            .nth(1)
            .and_then(|rest| rest.split("pub fn message").next())
            .expect("a reason() method");
        reasons.extend(literals_after(reason, "=> \""));
    }
    reasons.extend(literals_after(code(FAILURE), "reason: \""));
    for source in [OIDC, PROVIDER] {
        reasons.extend(
            literals_after(code(source), "\"")
                .into_iter()
                .filter(|literal| literal.starts_with("OidcProvider")),
        );
    }
    reasons
}

#[test]
fn every_status_reason_has_a_troubleshooting_section() {
    let reasons = reasons();
    for expected in [
        "Synced",
        "AccessDenied",
        "OidcProviderNotFound",
        "OidcProviderUpdateFailed",
        "AccountAssumeFailed",
    ] {
        assert!(
            reasons.contains(expected),
            "the scan is broken: {reasons:?}"
        );
    }
    let headings: BTreeSet<&str> = TROUBLESHOOTING
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .collect();
    let missing: Vec<_> = reasons
        .iter()
        .filter(|r| !headings.contains(r.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/troubleshooting.md has no `## <reason>` section for {missing:?}"
    );
}

/// The README's cross-account section shows what `irsa-operator iam-policy` renders.
#[test]
fn readme_shows_the_rendered_management_role_policies() {
    use irsa_api::ProviderMode;
    use irsa_core::{
        account::management_trust_policy,
        iam_policy::{Partition, PolicyTarget, operator_policy, with_management_roles},
    };
    use serde_json::Value;
    let section = include_str!("../README.md")
        .split("## Roles in other AWS accounts")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the README's cross-account section");
    let blocks: Vec<Value> = section
        .split("```json\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .map(|json| serde_json::from_str(json).expect("valid JSON"))
        .collect();
    let trust = management_trust_policy(
        "arn:aws:iam::111122223333:role/irsa-operator",
        "5b1f0c7e-prod",
    );
    let own = operator_policy(&PolicyTarget {
        cluster_name: "prod".into(),
        role_path: None,
        partition: Partition::Aws,
        provider_mode: ProviderMode::Existing,
        permissions_boundary: None,
    })
    .unwrap();
    let management = vec!["arn:aws:iam::222222222222:role/irsa-management".to_string()];
    let with_assume = with_management_roles(own, &management).unwrap();
    let assume = with_assume["Statement"].as_array().unwrap().last().unwrap();
    assert_eq!(blocks, [trust, assume.clone()]);
}
