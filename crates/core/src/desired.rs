//! Pure: a PodIamRole plus the operator config become the IAM role that should exist.
//!
//! Every check that can reject user input happens here, before any IAM call, so invalid
//! input never causes an IAM write.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::{
    chain,
    config::OperatorConfig,
    naming,
    ownership::{Adoption, OWNERSHIP_TAG_PREFIX, Owner},
    policy,
};
use irsa_api::{DEFAULT_AUDIENCE, DEFAULT_MAX_SESSION_DURATION, PodIamRoleSpec, RoleMode};

/// The name of the single inline policy that carries `spec.policy`.
pub const INLINE_POLICY_NAME: &str = "irsa-operator";

/// IAM's limit on tags per role.
const MAX_TAGS: usize = 50;
const MAX_TAG_KEY_LEN: usize = 128;
const MAX_TAG_VALUE_LEN: usize = 256;
const MAX_DESCRIPTION_LEN: usize = 1000;
/// IAM's hard limit on managed policies per role (the default quota is 10).
const MAX_MANAGED_POLICIES: usize = 20;

/// The IAM role a PodIamRole asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredRole {
    pub name: String,
    pub path: String,
    pub arn: String,
    pub trust_policy: Value,
    pub inline_policy: Option<Value>,
    pub managed_policy_arns: BTreeSet<String>,
    pub description: String,
    pub max_session_duration: i32,
    pub permissions_boundary: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub owner: Owner,
    /// Which existing roles of this name, tagged for someone else, it may take over.
    pub adoption: Adoption,
}

/// The role name a PodIamRole maps to, even when the rest of its spec is invalid:
/// cleanup needs it.
pub fn role_name(
    spec: &PodIamRoleSpec,
    namespace: &str,
    name: &str,
    config: &OperatorConfig,
) -> String {
    spec.role_name.clone().unwrap_or_else(|| {
        naming::derive_role_name(
            &config.role_name_prefix,
            &config.cluster_name,
            namespace,
            name,
        )
    })
}

/// The trust policy: only `system:serviceaccount:<namespace>:<serviceAccountName>`,
/// presenting a token for `audience`, may assume the role through the cluster's provider.
pub fn trust_policy(
    config: &OperatorConfig,
    namespace: &str,
    service_account: &str,
    audience: &str,
) -> Value {
    let issuer = &config.issuer_host_path;
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": config.oidc_provider_arn()},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{issuer}:sub"): format!("system:serviceaccount:{namespace}:{service_account}"),
                format!("{issuer}:aud"): audience,
            }}
        }]
    })
}

/// Builds the desired role, or says precisely why the spec cannot be accepted.
pub fn desired_role(
    spec: &PodIamRoleSpec,
    owner: Owner,
    config: &OperatorConfig,
) -> Result<DesiredRole, String> {
    let name = role_name(spec, &owner.namespace, &owner.name, config);
    naming::validate_role_name(&name).map_err(|e| format!("spec.roleName: {e}"))?;
    validate_service_account_name(&spec.service_account_name)?;

    let audience = spec.audience.as_deref().unwrap_or(DEFAULT_AUDIENCE);
    if audience.is_empty() || audience.contains(['*', '?']) {
        return Err(format!(
            "spec.audience `{audience}` must be a literal audience such as sts.amazonaws.com"
        ));
    }
    let mut trust_policy = trust_policy(
        config,
        &owner.namespace,
        &spec.service_account_name,
        audience,
    );
    if let Some(statement) = chain::trust_statement(&spec.trusted_role_arns)? {
        trust_policy["Statement"]
            .as_array_mut()
            .expect("the trust policy has a statement list")
            .push(statement);
    }
    let trust_size = policy::size_without_whitespace(&trust_policy);
    if trust_size > policy::MAX_TRUST_POLICY_CHARS {
        return Err(format!(
            "the trust policy would be {trust_size} characters; IAM allows {} (shorten the names)",
            policy::MAX_TRUST_POLICY_CHARS
        ));
    }

    if let Some(document) = &spec.policy {
        policy::validate_identity_policy(document).map_err(|e| format!("spec.policy: {e}"))?;
    }
    chain::validate(&spec.role_chain)?;
    let inline_policy = chain::with_grant(spec.policy.as_ref(), &spec.role_chain);
    if let Some(document) = inline_policy
        .as_ref()
        .filter(|_| !spec.role_chain.is_empty())
    {
        policy::validate_identity_policy(document)
            .map_err(|e| format!("spec.policy with the spec.roleChain grant: {e}"))?;
    }
    if spec.mode == RoleMode::Manage
        && inline_policy.is_none()
        && spec.managed_policy_arns.is_empty()
    {
        return Err("set spec.policy, spec.managedPolicyArns, spec.roleChain, or several".into());
    }
    let managed_policy_arns: BTreeSet<String> = spec.managed_policy_arns.iter().cloned().collect();
    if managed_policy_arns.len() > MAX_MANAGED_POLICIES {
        return Err(format!(
            "spec.managedPolicyArns lists {}; IAM attaches at most {MAX_MANAGED_POLICIES} to a role",
            managed_policy_arns.len()
        ));
    }
    for arn in managed_policy_arns.iter().chain(&spec.permissions_boundary) {
        validate_policy_arn(arn)?;
    }

    let max_session_duration = spec
        .max_session_duration
        .unwrap_or(DEFAULT_MAX_SESSION_DURATION);
    if !(3600..=43200).contains(&max_session_duration) {
        return Err(format!(
            "spec.maxSessionDuration {max_session_duration} must be between 3600 and 43200 seconds"
        ));
    }
    let description = spec.description.clone().unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(format!(
            "spec.description must be at most {MAX_DESCRIPTION_LEN} characters"
        ));
    }

    let tags = merged_tags(&spec.tags, &owner)?;
    Ok(DesiredRole {
        arn: config.role_arn(&name),
        name,
        path: config.role_path.clone(),
        trust_policy,
        inline_policy,
        managed_policy_arns,
        description,
        max_session_duration,
        permissions_boundary: spec.permissions_boundary.clone(),
        tags,
        owner,
        adoption: Adoption::Never,
    })
}

fn validate_service_account_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "spec.serviceAccountName `{name}` is not a valid ServiceAccount name"
        ))
    }
}

fn validate_policy_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let valid = matches!(parts.as_slice(),
        ["arn", partition, "iam", "", account, resource]
            if partition.starts_with("aws")
            && (*account == "aws" || (account.len() == 12 && account.chars().all(|c| c.is_ascii_digit())))
            && resource.strip_prefix("policy/").is_some_and(|rest| !rest.is_empty()));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{arn}` is not an IAM policy ARN (arn:aws:iam::<account>:policy/<name>)"
        ))
    }
}

fn merged_tags(
    user_tags: &BTreeMap<String, String>,
    owner: &Owner,
) -> Result<BTreeMap<String, String>, String> {
    for (key, value) in user_tags {
        if key.starts_with(OWNERSHIP_TAG_PREFIX) {
            return Err(format!(
                "spec.tags: `{key}` is reserved for the operator's ownership tags"
            ));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(format!("spec.tags: `{key}` uses the reserved aws: prefix"));
        }
        let charset_ok = |s: &str| {
            s.chars()
                .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
        };
        if key.is_empty() || key.chars().count() > MAX_TAG_KEY_LEN || !charset_ok(key) {
            return Err(format!(
                "spec.tags: key `{key}` must be 1 to {MAX_TAG_KEY_LEN} letters, digits, spaces or _.:/=+-@"
            ));
        }
        if value.chars().count() > MAX_TAG_VALUE_LEN || !charset_ok(value) {
            return Err(format!(
                "spec.tags: value of `{key}` must be at most {MAX_TAG_VALUE_LEN} letters, digits, spaces or _.:/=+-@"
            ));
        }
    }
    let mut tags = user_tags.clone();
    tags.extend(owner.tags());
    if tags.len() > MAX_TAGS {
        return Err(format!(
            "spec.tags: {} tags plus the operator's 4 exceed IAM's {MAX_TAGS} per role",
            user_tags.len()
        ));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ownership::{TAG_CLUSTER, TAG_UID},
        testing::{chain_link, desired, owner, spec, test_config},
        trust,
    };
    use proptest::prelude::*;

    #[test]
    fn builds_the_role() {
        let role = desired();
        assert_eq!(role.name, "prod.shop.payments");
        assert_eq!(role.path, "/irsa/prod/");
        assert_eq!(
            role.arn,
            "arn:aws:iam::111122223333:role/irsa/prod/prod.shop.payments"
        );
        assert_eq!(role.max_session_duration, 3600);
        assert_eq!(role.tags.get(TAG_UID).map(String::as_str), Some("uid-1"));
        assert_eq!(role.tags.len(), 4);
    }

    #[test]
    fn trust_is_limited_to_the_own_service_account_and_audience() {
        let role = desired();
        let issuer = "oidc.eks.us-east-1.amazonaws.com/id/ABC";
        assert_eq!(
            role.trust_policy,
            json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": format!("arn:aws:iam::111122223333:oidc-provider/{issuer}")},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {
                    format!("{issuer}:sub"): "system:serviceaccount:shop:payments",
                    format!("{issuer}:aud"): "sts.amazonaws.com"}}}]})
        );
    }

    #[test]
    fn role_name_override_is_used_and_validated() {
        let mut spec = spec();
        spec.role_name = Some("custom".into());
        assert_eq!(
            desired_role(&spec, owner(), &test_config()).unwrap().name,
            "custom"
        );
        spec.role_name = Some("bad name".into());
        let err = desired_role(&spec, owner(), &test_config()).unwrap_err();
        assert!(err.starts_with("spec.roleName:"), "{err}");
    }

    #[test]
    fn rejects_bad_input_precisely() {
        let check = |mutate: &dyn Fn(&mut PodIamRoleSpec), expected: &str| {
            let mut spec = spec();
            mutate(&mut spec);
            let err = desired_role(&spec, owner(), &test_config()).unwrap_err();
            assert!(err.contains(expected), "got `{err}`, want `{expected}`");
        };
        check(
            &|s| s.service_account_name = "Bad_SA".into(),
            "not a valid ServiceAccount name",
        );
        check(
            &|s| s.service_account_name = "x:y".into(),
            "not a valid ServiceAccount name",
        );
        check(&|s| s.audience = Some("*".into()), "literal audience");
        check(
            &|s| s.policy = Some(json!({"Version": "2012-10-17"})),
            "spec.policy: Statement",
        );
        check(
            &|s| s.policy = None,
            "set spec.policy, spec.managedPolicyArns",
        );
        check(
            &|s| s.managed_policy_arns = vec!["arn:aws:s3:::bucket".into()],
            "not an IAM policy ARN",
        );
        check(
            &|s| s.permissions_boundary = Some("boundary".into()),
            "not an IAM policy ARN",
        );
        check(
            &|s| s.max_session_duration = Some(60),
            "between 3600 and 43200",
        );
        check(
            &|s| {
                s.managed_policy_arns = (0..21)
                    .map(|i| format!("arn:aws:iam::aws:policy/P{i}"))
                    .collect()
            },
            "at most 20",
        );
        check(&|s| s.description = Some("x".repeat(1001)), "at most 1000");
        check(
            &|s| {
                s.tags.insert("irsa.dev/uid".into(), "x".into());
            },
            "reserved for the operator",
        );
        check(
            &|s| {
                s.tags.insert("aws:foo".into(), "x".into());
            },
            "reserved aws: prefix",
        );
        check(
            &|s| {
                s.tags.insert("bad{key}".into(), "x".into());
            },
            "key `bad{key}`",
        );
        check(
            &|s| {
                s.tags.insert("k".into(), "v".repeat(300));
            },
            "value of `k`",
        );
        check(
            &|s| s.tags = (0..47).map(|i| (format!("k{i}"), "v".into())).collect(),
            "exceed IAM's 50",
        );
    }

    #[test]
    fn a_chain_is_granted_and_trusted_roles_extend_the_trust() {
        let source = "arn:aws:iam::111122223333:role/irsa/prod/prod.bank.api";
        let mut spec = spec();
        spec.role_chain = vec![
            chain_link("reports", "arn:aws:iam::444455556666:role/reports"),
            chain_link("audit", "arn:aws:iam::444455556666:role/audit"),
        ];
        spec.trusted_role_arns = vec![source.into()];
        let role = desired_role(&spec, owner(), &test_config()).unwrap();
        let statements = &role.inline_policy.as_ref().unwrap()["Statement"];
        assert_eq!(statements[0], spec.policy.as_ref().unwrap()["Statement"][0]);
        assert_eq!(
            statements[1],
            json!({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": [
                "arn:aws:iam::444455556666:role/audit", "arn:aws:iam::444455556666:role/reports"]})
        );
        assert_eq!(statements.as_array().unwrap().len(), 2);
        // STS's view: the source role may assume this role, and nobody else may.
        assert_eq!(
            trust::evaluate_assume_role(&role.trust_policy, source, None),
            Ok(())
        );
        let other = "arn:aws:iam::111122223333:role/irsa/prod/prod.bank.other";
        assert!(trust::evaluate_assume_role(&role.trust_policy, other, None).is_err());
        // The web identity statement is unchanged: the ServiceAccount still assumes it.
        assert_eq!(
            role.trust_policy["Statement"][0],
            desired().trust_policy["Statement"][0]
        );

        // A chain alone is permission enough.
        spec.policy = None;
        let role = desired_role(&spec, owner(), &test_config()).unwrap();
        assert_eq!(
            role.inline_policy.unwrap()["Statement"]
                .as_array()
                .unwrap()
                .len(),
            1
        );

        spec.trusted_role_arns = vec!["arn:aws:iam::111122223333:role/*".into()];
        let err = desired_role(&spec, owner(), &test_config()).unwrap_err();
        assert!(err.contains("spec.trustedRoleArns[0]"), "{err}");
        spec.trusted_role_arns.clear();
        spec.role_chain
            .push(chain_link("reports", "arn:aws:iam::444455556666:role/x"));
        let err = desired_role(&spec, owner(), &test_config()).unwrap_err();
        assert!(err.contains("listed twice"), "{err}");
    }

    #[test]
    fn the_chain_grant_counts_towards_the_inline_policy_quota() {
        let mut spec = spec();
        let filler = "x".repeat(9_900);
        spec.policy = Some(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{filler}")}]}),
        );
        assert!(desired_role(&spec, owner(), &test_config()).is_ok());
        spec.role_chain = (0..5)
            .map(|i| {
                chain_link(
                    &format!("p{i}"),
                    &format!("arn:aws:iam::444455556666:role/target-{i}"),
                )
            })
            .collect();
        let err = desired_role(&spec, owner(), &test_config()).unwrap_err();
        assert!(
            err.starts_with("spec.policy with the spec.roleChain grant: the policy is"),
            "{err}"
        );
    }

    #[test]
    fn managed_only_roles_are_valid() {
        let mut spec = spec();
        spec.policy = None;
        spec.managed_policy_arns = vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()];
        let role = desired_role(&spec, owner(), &test_config()).unwrap();
        assert!(role.inline_policy.is_none());
        assert_eq!(role.managed_policy_arns.len(), 1);
    }

    #[test]
    fn ownership_mismatch_names_the_tags() {
        let owner = owner();
        assert_eq!(owner.mismatch(&owner.tags()), None);
        let mut other = owner.tags();
        other.insert(TAG_UID.into(), "uid-2".into());
        other.remove(TAG_CLUSTER);
        let why = owner.mismatch(&other).unwrap();
        assert!(why.contains("irsa.dev/cluster missing"), "{why}");
        assert!(why.contains("irsa.dev/uid=uid-2 (expected uid-1)"), "{why}");
    }

    /// Arbitrary JSON shaped loosely like a spec: right keys, wrong and right values.
    fn arbitrary_spec() -> impl Strategy<Value = serde_json::Value> {
        let text = prop_oneof![
            "[a-z0-9.-]{0,20}",
            "\\PC{0,30}",
            Just("arn:aws:iam::aws:policy/ReadOnlyAccess".to_string()),
            Just("arn:aws:iam::111122223333:policy/x".to_string()),
        ];
        let statement = (
            prop_oneof![Just("Allow"), Just("Deny"), Just("Maybe")],
            prop::collection::vec(prop_oneof!["[a-z0-9]{1,6}:[A-Za-z*?]{1,10}", Just("*".to_string()), "\\PC{0,12}"], 0..4),
            prop::collection::vec(prop_oneof![Just("*".to_string()), "arn:aws:[a-z0-9:/*-]{0,30}", "\\PC{0,12}"], 0..3),
        )
            .prop_map(|(effect, actions, resources)| json!({"Effect": effect, "Action": actions, "Resource": resources}));
        (
            text.clone(),
            proptest::option::of(prop::collection::vec(statement, 0..4)),
            prop::collection::vec(text.clone(), 0..4),
            proptest::option::of(text.clone()),
            proptest::option::of(any::<i32>()),
            prop::collection::btree_map("\\PC{0,20}", "\\PC{0,30}", 0..6),
            proptest::option::of(text),
        )
            .prop_map(|(sa, statements, managed, role_name, duration, tags, audience)| {
                let mut spec = json!({"serviceAccountName": sa, "managedPolicyArns": managed, "tags": tags});
                if let Some(statements) = statements {
                    spec["policy"] = json!({"Version": "2012-10-17", "Statement": statements});
                }
                for (key, value) in [("roleName", json!(role_name)), ("maxSessionDuration", json!(duration)), ("audience", json!(audience))] {
                    if !value.is_null() {
                        spec[key] = value;
                    }
                }
                spec
            })
    }

    proptest! {
        /// Whatever the spec, building the role never panics, and an accepted role is one
        /// IAM accepts: valid name, documents within quota, at most 50 tags.
        #[test]
        fn accepted_specs_are_within_iam_limits(value in arbitrary_spec()) {
            let Ok(spec) = serde_json::from_value::<PodIamRoleSpec>(value) else { return Ok(()) };
            let legacy = crate::guardrail::Baseline { default_deny: false, boundary: None };
            let _ = crate::guardrail::evaluate(&spec, &[], &crate::testing::guardrail_context(&legacy));
            if let Ok(role) = desired_role(&spec, owner(), &test_config()) {
                prop_assert!(naming::validate_role_name(&role.name).is_ok());
                prop_assert!(policy::size_without_whitespace(&role.trust_policy) <= policy::MAX_TRUST_POLICY_CHARS);
                if let Some(document) = &role.inline_policy {
                    prop_assert!(policy::validate_identity_policy(document).is_ok());
                    prop_assert!(policy::size_without_whitespace(document) <= policy::MAX_INLINE_POLICY_CHARS);
                }
                prop_assert!(role.tags.len() <= MAX_TAGS);
                prop_assert!((3600..=43200).contains(&role.max_session_duration));
                prop_assert!(role.managed_policy_arns.len() <= MAX_MANAGED_POLICIES);
            }
        }

        /// No spec field can widen trust beyond the object's own namespace.
        #[test]
        fn trust_never_leaves_the_namespace(
            sa in "\\PC{0,40}", audience in "\\PC{0,20}", role_name in proptest::option::of("\\PC{0,70}"),
        ) {
            let mut spec = spec();
            spec.service_account_name = sa.clone();
            spec.audience = Some(audience);
            spec.role_name = role_name;
            if let Ok(role) = desired_role(&spec, owner(), &test_config()) {
                let condition = &role.trust_policy["Statement"][0]["Condition"]["StringEquals"];
                let subject = condition["oidc.eks.us-east-1.amazonaws.com/id/ABC:sub"].as_str().unwrap();
                prop_assert_eq!(subject, format!("system:serviceaccount:shop:{sa}"));
                prop_assert!(!sa.contains([':', '*', '?']));
                prop_assert_eq!(role.trust_policy["Statement"].as_array().unwrap().len(), 1);
            }
        }
    }
}
