//! The shipped operator IAM policy must allow every IAM operation the code calls:
//! a new call without a policy update fails here, not in a customer's account.

use std::collections::BTreeSet;

use irsa_operator::policy::validate_identity_policy;
use serde_json::Value;

const POLICY: &str = include_str!("../config/iam/operator-policy.json");
const AWS_IMPL: &str = include_str!("../src/iam/aws.rs");
const PLAN: &str = include_str!("../src/plan.rs");
const OIDC: &str = include_str!("../src/oidc.rs");

/// Operation names quoted right after `marker` in `source`.
fn quoted_after(source: &str, marker: &str) -> BTreeSet<String> {
    source
        .split(marker)
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(str::to_string)
        .collect()
}

fn allowed_actions(policy: &Value) -> BTreeSet<String> {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        })
        .collect()
}

#[test]
fn every_iam_call_in_the_code_is_allowed_by_the_shipped_policy() {
    let policy: Value = serde_json::from_str(POLICY).expect("policy is JSON");
    validate_identity_policy(&policy).expect("the shipped policy is itself valid");
    let allowed = allowed_actions(&policy);
    let mut called = quoted_after(AWS_IMPL, "self.call(\"");
    called.extend(quoted_after(PLAN, "=> \""));
    called.extend(quoted_after(OIDC, "=> \""));
    assert!(
        called.len() >= 21,
        "found too few operations, the scan is broken: {called:?}"
    );
    let missing: Vec<_> = called
        .iter()
        .filter(|op| !allowed.contains(&format!("iam:{op}")))
        .collect();
    assert!(
        missing.is_empty(),
        "config/iam/operator-policy.json does not allow {missing:?}"
    );
}
