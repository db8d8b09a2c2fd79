//! docs/troubleshooting.md explains every status reason the code can set.

use std::collections::BTreeSet;

use irsa_core::reason::Reason;

const TROUBLESHOOTING: &str = include_str!("../docs/troubleshooting.md");

#[test]
fn every_status_reason_has_a_troubleshooting_section() {
    let headings: BTreeSet<&str> = TROUBLESHOOTING
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .collect();
    let missing: Vec<_> = Reason::ALL
        .iter()
        .filter(|r| !headings.contains(r.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/troubleshooting.md has no `## <reason>` section for {missing:?}"
    );
    // A one-word heading names a reason: one the code can no longer set is stale.
    let stale: Vec<_> = headings
        .iter()
        .filter(|h| !h.contains(' ') && Reason::parse(h).is_none())
        .collect();
    assert!(
        stale.is_empty(),
        "docs/troubleshooting.md explains reasons the code never sets: {stale:?}"
    );
}

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
