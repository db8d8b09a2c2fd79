//! The operator's IAM policy (`irsa-operator iam-policy`) allows every IAM operation the code
//! calls, on the ARNs the code builds, for several role paths and partitions: a new call
//! without a policy update fails here, not in a customer's account. `existing` mode grants
//! no write to the OIDC provider, and config/iam/operator-policy.json is the rendered policy.

use std::collections::BTreeSet;

use irsa_operator::{
    config::OperatorConfig,
    iam_policy::{Partition, PolicyTarget, operator_policy},
    oidc::ProviderMode,
    policy::validate_identity_policy,
};
use serde_json::Value;

const COMMITTED: &str = include_str!("../config/iam/operator-policy.json");
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

fn called_operations() -> BTreeSet<String> {
    let mut called = quoted_after(AWS_IMPL, "self.call(\"");
    called.extend(quoted_after(PLAN, "=> \""));
    called.extend(quoted_after(OIDC, "=> \""));
    assert!(
        called.len() >= 21,
        "found too few operations, the scan is broken: {called:?}"
    );
    called
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

/// IAM's ARN matching: `*` is any run of characters.
fn glob_matches(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head)
                && (head.len()..=text.len()).any(|i| glob_matches(tail, &text[i..]))
        }
    }
}

/// Whether an Allow statement grants `action` on `arn`.
fn allows(policy: &Value, action: &str, arn: &str) -> bool {
    policy["Statement"].as_array().unwrap().iter().any(|s| {
        s["Effect"] == "Allow"
            && strings(&s["Action"]).iter().any(|a| a == action)
            && strings(&s["Resource"]).iter().any(|r| glob_matches(r, arn))
    })
}

fn provider_write(operation: &str) -> bool {
    operation.contains("OpenIDConnectProvider") && !operation.starts_with("Get")
}

#[test]
fn glob_matching_is_iams() {
    assert!(glob_matches(
        "arn:aws:iam::*:role/irsa/prod/*",
        "arn:aws:iam::1:role/irsa/prod/x"
    ));
    assert!(!glob_matches(
        "arn:aws:iam::*:role/irsa/prod/*",
        "arn:aws:iam::1:role/other/x"
    ));
    assert!(!glob_matches(
        "arn:aws:iam::*:role/*",
        "arn:aws-cn:iam::1:role/x"
    ));
}

#[test]
fn every_iam_call_is_allowed_on_the_arns_the_code_builds() {
    let called = called_operations();
    let cases = [
        (None, Partition::Aws, ProviderMode::Manage),
        (None, Partition::Aws, ProviderMode::Existing),
        (
            Some("/teams/payments/"),
            Partition::AwsUsGov,
            ProviderMode::Existing,
        ),
        (Some("/"), Partition::AwsCn, ProviderMode::Manage),
        (Some("/a/b/c/"), Partition::AwsUsGov, ProviderMode::Manage),
    ];
    for (role_path, partition, mode) in cases {
        let target = PolicyTarget {
            cluster_name: "prod".into(),
            role_path: role_path.map(str::to_string),
            partition,
            provider_mode: mode,
        };
        let policy = operator_policy(&target).unwrap();
        validate_identity_policy(&policy).expect("the rendered policy is itself valid");
        let config = OperatorConfig {
            cluster_name: "prod".into(),
            partition: partition.as_str().into(),
            account_id: "111122223333".into(),
            issuer_host_path: "oidc.eks.us-east-1.amazonaws.com/id/ABC".into(),
            role_path: role_path.unwrap_or("/irsa/prod/").into(),
            role_name_prefix: String::new(),
            baseline: Default::default(),
        };
        for operation in &called {
            let arn = if operation.contains("OpenIDConnectProvider") {
                config.oidc_provider_arn()
            } else {
                config.role_arn("prod.shop.payments")
            };
            let allowed = allows(&policy, &format!("iam:{operation}"), &arn);
            let expected = mode == ProviderMode::Manage || !provider_write(operation);
            assert_eq!(
                allowed, expected,
                "{target:?}: iam:{operation} on {arn} allowed={allowed}\n{policy:#}"
            );
        }
        // Roles outside the path (every role is under `/`) are never written.
        let outside = format!(
            "arn:{}:iam::111122223333:role/elsewhere/x",
            partition.as_str()
        );
        assert_eq!(
            allows(&policy, "iam:DeleteRole", &outside),
            config.role_path == "/",
            "{target:?}"
        );
    }
}

#[test]
fn committed_policy_is_the_rendered_one() {
    let rendered = operator_policy(&PolicyTarget {
        cluster_name: "CLUSTER_NAME".into(),
        role_path: None,
        partition: Partition::Aws,
        provider_mode: ProviderMode::Manage,
    })
    .unwrap();
    let committed: Value = serde_json::from_str(COMMITTED).expect("policy is JSON");
    assert_eq!(
        committed, rendered,
        "config/iam/operator-policy.json is stale: run `scripts/generate-crds`"
    );
}
