//! Guardrails: what a namespace's PodIamRoles may grant. The `PodIamRoleGuardrail`
//! resource, and the pure evaluation of a spec against the built-in deny list and
//! every guardrail selecting its namespace (the strictest wins).

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{
    CustomResource, ResourceExt,
    core::{Selector, SelectorExt},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chain;
use crate::crd::{DEFAULT_AUDIENCE, DEFAULT_MAX_SESSION_DURATION, PodIamRole, PodIamRoleSpec};

/// Limits on the IAM roles that PodIamRoles in the selected namespaces may produce.
///
/// Every guardrail selecting a namespace applies, and the strictest wins: an action,
/// resource or managed policy must be allowed by every guardrail that lists allowed
/// values, and the lowest quota and session duration apply. A violation sets the
/// PodIamRole's `Ready=False` with reason `PolicyNotAllowed`, and nothing is written to IAM.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "irsa.dev",
    version = "v1alpha1",
    kind = "PodIamRoleGuardrail",
    plural = "podiamroleguardrails",
    shortname = "pirg",
    derive = "PartialEq",
    doc = "Limits on the IAM roles that PodIamRoles in the selected namespaces may produce.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PodIamRoleGuardrailSpec {
    /// The namespaces this guardrail applies to. An empty selector selects every namespace.
    #[serde(default)]
    pub namespace_selector: LabelSelector,
    /// Action patterns (`s3:Get*`, `dynamodb:*`) that Allow statements may use. When set,
    /// every allowed action must fall within one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_actions: Option<Vec<String>>,
    /// Action patterns that Allow statements may never grant, on top of the built-in list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_actions: Vec<String>,
    /// Resource ARN patterns that Allow statements may name. When set, every resource must
    /// fall within one of them (`*` only if `*` is listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_resources: Option<Vec<String>>,
    /// Managed policy ARN patterns that `managedPolicyArns` may attach. When set, every
    /// attached policy must match one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_managed_policy_arns: Option<Vec<String>>,
    /// A permissions boundary forced onto every role; a PodIamRole naming another one is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/.+$"))]
    pub required_permissions_boundary: Option<String>,
    /// The most PodIamRoles a namespace may have; the oldest ones are served first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // schemars writes `format: uint32`, which Kubernetes does not know and warns about.
    #[schemars(range(min = 0, max = 4294967295_u32), extend("format" = "int64"))]
    pub max_roles_per_namespace: Option<u32>,
    /// The longest `maxSessionDuration` a PodIamRole may ask for, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 3600, max = 43200))]
    pub max_session_duration: Option<i32>,
    /// Token audience patterns (`sts.amazonaws.com`, `sts.*.amazonaws.com`) that `spec.audience`
    /// may use. When set, the audience must match one of them. Every accepted audience
    /// becomes a client ID of the cluster's shared OIDC provider in `manage` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_audiences: Option<Vec<String>>,
    /// Role name patterns that `spec.roleName` may use beyond the namespace's own prefix
    /// (`<prefix><cluster>.<namespace>.`). Without such a grant, a PodIamRole cannot take
    /// a name that another namespace's PodIamRole would derive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub granted_role_names: Vec<String>,
    /// Role name patterns that PodIamRoles with `spec.adopt: true` may take over although
    /// no PodIamRole of this cluster made them (roles from eksctl, Terraform or by hand),
    /// when `spec.roleName` names them. Such names are granted as `grantedRoleNames` are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adoptable_role_names: Vec<String>,
    /// Role ARN patterns (`arn:aws:iam::444455556666:role/reports-*`) that roles may be
    /// granted `sts:AssumeRole` on, through `spec.roleChain` or an Allow statement of
    /// `spec.policy`. When set, every such target must match one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_chain_targets: Option<Vec<String>>,
    /// Role ARN patterns that `spec.trustedRoleArns` may name, i.e. the roles that may
    /// assume this namespace's roles. When set, every trusted role must match one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_trusted_role_arns: Option<Vec<String>>,
}

/// Grants no PodIamRole may hold: every action, or every IAM action. Narrower IAM
/// actions are fine unless they are in [`BUILT_IN_DENIED_ACTIONS`].
pub const BUILT_IN_DENIED_GRANTS: [&str; 2] = ["*", "iam:*"];

/// Actions no PodIamRole may be allowed, even through a wildcard: each one lets the
/// role escalate its own privileges or leave the organization's control.
pub const BUILT_IN_DENIED_ACTIONS: [&str; 18] = [
    "organizations:*",
    "iam:PassRole",
    "iam:CreatePolicyVersion",
    "iam:SetDefaultPolicyVersion",
    "iam:AttachRolePolicy",
    "iam:AttachUserPolicy",
    "iam:AttachGroupPolicy",
    "iam:PutRolePolicy",
    "iam:PutUserPolicy",
    "iam:PutGroupPolicy",
    "iam:UpdateAssumeRolePolicy",
    "iam:CreateAccessKey",
    "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile",
    "iam:AddUserToGroup",
    "iam:DeleteRolePermissionsBoundary",
    "iam:PutRolePermissionsBoundary",
    "iam:CreateRole",
];

/// Managed policies no PodIamRole may attach.
pub const BUILT_IN_DENIED_MANAGED_POLICIES: [&str; 2] = [
    "arn:aws*:iam::aws:policy/AdministratorAccess",
    "arn:aws*:iam::aws:policy/IAMFullAccess",
];

/// Case-insensitive glob match where `*` is any run and `?` one character, as IAM matches.
pub use crate::glob::matches_ignoring_case as glob_match;

fn matches_any(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|pattern| glob_match(pattern, text))
}

/// A granted action pattern overlaps a denied one when either could match the other:
/// `*` and `iam:Pass*` both reach `iam:PassRole`.
fn overlaps(granted: &str, denied: &str) -> bool {
    glob_match(granted, denied) || glob_match(denied, granted)
}

/// A guardrail with its name, as the evaluation sees it.
pub struct Rule<'a> {
    pub name: &'a str,
    pub spec: &'a PodIamRoleGuardrailSpec,
}

/// Which guardrails select a namespace with these labels. A selector that cannot be
/// parsed selects everything: a broken guardrail must fail closed, not open.
pub fn selects(
    spec: &PodIamRoleGuardrailSpec,
    namespace_labels: &BTreeMap<String, String>,
) -> bool {
    Selector::try_from(spec.namespace_selector.clone())
        .map(|selector| selector.matches(namespace_labels))
        .unwrap_or(true)
}

/// The guardrails that select a namespace with these labels, sorted by name.
pub fn rules_for<'a>(
    guardrails: impl IntoIterator<Item = &'a PodIamRoleGuardrail>,
    labels: &BTreeMap<String, String>,
) -> Vec<Rule<'a>> {
    let mut rules: Vec<Rule<'a>> = guardrails
        .into_iter()
        .filter(|g| selects(&g.spec, labels))
        .map(|g| Rule {
            name: g.metadata.name.as_deref().unwrap_or_default(),
            spec: &g.spec,
        })
        .collect();
    rules.sort_by_key(|rule| rule.name);
    rules
}

/// The guardrails' whole decision on a spec: its role name, then everything else.
/// `own_prefix` is the prefix every role name derived in its namespace has.
pub fn decide(
    spec: &PodIamRoleSpec,
    rules: &[Rule<'_>],
    rank: usize,
    own_prefix: &str,
) -> Result<Enforced, String> {
    check_role_name(spec, rules, own_prefix).and_then(|()| evaluate(spec, rules, rank))
}

/// How many PodIamRoles of `object`'s namespace come before it for the quota: older
/// ones first, by creation time then name, ignoring those being deleted.
pub fn quota_rank(object: &PodIamRole, roles: &[Arc<PodIamRole>]) -> usize {
    let key = |role: &PodIamRole| {
        let created = role.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (created, role.name_any())
    };
    let own = key(object);
    roles
        .iter()
        .filter(|role| role.namespace() == object.namespace())
        .filter(|role| role.metadata.deletion_timestamp.is_none())
        .filter(|role| key(role) < own)
        .count()
}

/// What the guardrails impose on, or allow, an accepted spec.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Enforced {
    pub permissions_boundary: Option<String>,
    /// A guardrail lets `spec.roleName` be adopted from outside the cluster.
    pub foreign_adoption: bool,
}

/// Checks a spec against the built-in deny list and `rules`. `rank` is how many older
/// PodIamRoles its namespace has, for the quota.
pub fn evaluate(
    spec: &PodIamRoleSpec,
    rules: &[Rule<'_>],
    rank: usize,
) -> Result<Enforced, String> {
    for rule in rules {
        if let Some(max) = rule.spec.max_roles_per_namespace
            && rank >= max as usize
        {
            return Err(format!(
                "guardrail {} allows {max} PodIamRoles in this namespace, and {rank} older ones exist",
                rule.name
            ));
        }
        let duration = spec
            .max_session_duration
            .unwrap_or(DEFAULT_MAX_SESSION_DURATION);
        if let Some(max) = rule.spec.max_session_duration
            && duration > max
        {
            return Err(format!(
                "guardrail {} limits maxSessionDuration to {max} seconds, not {duration}",
                rule.name
            ));
        }
    }
    check_audience(spec, rules)?;
    if let Some(policy) = &spec.policy {
        check_statements(policy, rules)?;
    }
    for arn in &spec.managed_policy_arns {
        check_managed_policy(arn, rules)?;
    }
    // The chain's grant is a statement like the policy's own: every rule applies to it.
    if let Some(grant) = chain::grant(&spec.role_chain) {
        check_allow_statement(&grant, rules).map_err(|e| format!("spec.roleChain: {e}"))?;
    }
    for arn in &spec.trusted_role_arns {
        check_listed(arn, rules, "spec.trustedRoleArns", |g| {
            g.allowed_trusted_role_arns.as_ref()
        })?;
    }
    let enforced = Enforced {
        permissions_boundary: required_boundary(rules)?,
        foreign_adoption: adoptable(spec, rules),
    };
    match (&enforced.permissions_boundary, &spec.permissions_boundary) {
        (Some(required), Some(asked)) if required != asked => Err(format!(
            "spec.permissionsBoundary {asked} differs from {required}, which the guardrails require"
        )),
        _ => Ok(enforced),
    }
}

fn check_audience(spec: &PodIamRoleSpec, rules: &[Rule<'_>]) -> Result<(), String> {
    let audience = spec.audience.as_deref().unwrap_or(DEFAULT_AUDIENCE);
    check_listed(audience, rules, "audience", |g| {
        g.allowed_audiences.as_ref()
    })
}

/// An explicit `spec.roleName` must start with `own_prefix`, the prefix every name
/// derived in the object's namespace has, unless a guardrail grants it: otherwise a
/// tenant could take the name another namespace's PodIamRole will derive.
pub fn check_role_name(
    spec: &PodIamRoleSpec,
    rules: &[Rule<'_>],
    own_prefix: &str,
) -> Result<(), String> {
    let Some(name) = spec.role_name.as_deref() else {
        return Ok(());
    };
    if name.starts_with(own_prefix)
        || rules
            .iter()
            .any(|rule| matches_any(&rule.spec.granted_role_names, name))
        || adoptable(spec, rules)
    {
        return Ok(());
    }
    Err(format!(
        "spec.roleName `{name}` must start with `{own_prefix}`, this namespace's prefix; \
         other names need a guardrail's grantedRoleNames"
    ))
}

/// Whether the spec opts in to adoption of a `spec.roleName` some guardrail lets it adopt.
fn adoptable(spec: &PodIamRoleSpec, rules: &[Rule<'_>]) -> bool {
    spec.adopt
        && spec.role_name.as_deref().is_some_and(|name| {
            rules
                .iter()
                .any(|rule| matches_any(&rule.spec.adoptable_role_names, name))
        })
}

fn required_boundary(rules: &[Rule<'_>]) -> Result<Option<String>, String> {
    let mut required: Option<(&str, &str)> = None;
    for rule in rules {
        let Some(boundary) = rule.spec.required_permissions_boundary.as_deref() else {
            continue;
        };
        match required {
            Some((other, existing)) if existing != boundary => {
                return Err(format!(
                    "guardrails {other} and {} require different permissions boundaries ({existing}, {boundary}); \
                     a role can only have one",
                    rule.name
                ));
            }
            _ => required = Some((rule.name, boundary)),
        }
    }
    Ok(required.map(|(_, boundary)| boundary.to_string()))
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn check_statements(policy: &Value, rules: &[Rule<'_>]) -> Result<(), String> {
    let statements = match policy.get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(single) => vec![single.clone()],
        None => Vec::new(),
    };
    for (index, statement) in statements.iter().enumerate() {
        // Deny statements only take permissions away.
        if statement.get("Effect").and_then(Value::as_str) != Some("Allow") {
            continue;
        }
        check_allow_statement(statement, rules)
            .map_err(|e| format!("spec.policy Statement[{index}]: {e}"))?;
    }
    Ok(())
}

fn check_allow_statement(statement: &Value, rules: &[Rule<'_>]) -> Result<(), String> {
    if statement.get("NotAction").is_some() {
        return Err("Allow with NotAction grants every other action, including the denied ones; list the actions".into());
    }
    let actions = strings(statement.get("Action"));
    let resources = strings(statement.get("Resource"));
    for action in &actions {
        if let Some(grant) = BUILT_IN_DENIED_GRANTS
            .iter()
            .find(|g| glob_match(action, g))
        {
            return Err(format!(
                "Action `{action}` grants `{grant}`, denied by the built-in guardrail"
            ));
        }
        if let Some(denied) = BUILT_IN_DENIED_ACTIONS.iter().find(|d| overlaps(action, d)) {
            return Err(format!(
                "Action `{action}` reaches `{denied}`, denied by the built-in guardrail"
            ));
        }
        if overlaps(action, "sts:AssumeRole") && resources.iter().any(|r| r == "*") {
            return Err(format!(
                "Action `{action}` on Resource `*` may assume any role, denied by the built-in guardrail"
            ));
        }
        for rule in rules {
            if let Some(denied) = rule
                .spec
                .denied_actions
                .iter()
                .find(|d| overlaps(action, d))
            {
                return Err(format!(
                    "Action `{action}` reaches `{denied}`, denied by guardrail {}",
                    rule.name
                ));
            }
            if let Some(allowed) = &rule.spec.allowed_actions
                && !matches_any(allowed, action)
            {
                return Err(format!(
                    "Action `{action}` is not within the actions guardrail {} allows ({})",
                    rule.name,
                    allowed.join(", ")
                ));
            }
        }
    }
    if actions.iter().any(|a| overlaps(a, "sts:AssumeRole")) {
        if statement.get("NotResource").is_some() {
            return Err("Allow of sts:AssumeRole with NotResource may assume any other role; list the roles".into());
        }
        for resource in &resources {
            check_listed(resource, rules, "sts:AssumeRole on", |g| {
                g.allowed_chain_targets.as_ref()
            })?;
        }
    }
    for rule in rules {
        let Some(allowed) = &rule.spec.allowed_resources else {
            continue;
        };
        if statement.get("NotResource").is_some() {
            return Err(format!(
                "Allow with NotResource reaches resources outside what guardrail {} allows",
                rule.name
            ));
        }
        if let Some(resource) = resources.iter().find(|r| !matches_any(allowed, r)) {
            return Err(format!(
                "Resource `{resource}` is not within the resources guardrail {} allows ({})",
                rule.name,
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

/// `value` must match a pattern of every guardrail whose `allowed` list is set.
fn check_listed(
    value: &str,
    rules: &[Rule<'_>],
    what: &str,
    allowed: impl Fn(&PodIamRoleGuardrailSpec) -> Option<&Vec<String>>,
) -> Result<(), String> {
    for rule in rules {
        if let Some(patterns) = allowed(rule.spec)
            && !matches_any(patterns, value)
        {
            return Err(format!(
                "{what} `{value}` is not within what guardrail {} allows ({})",
                rule.name,
                patterns.join(", ")
            ));
        }
    }
    Ok(())
}

fn check_managed_policy(arn: &str, rules: &[Rule<'_>]) -> Result<(), String> {
    if BUILT_IN_DENIED_MANAGED_POLICIES
        .iter()
        .any(|p| glob_match(p, arn))
    {
        return Err(format!(
            "managed policy {arn} is denied by the built-in guardrail"
        ));
    }
    for rule in rules {
        if let Some(allowed) = &rule.spec.allowed_managed_policy_arns
            && !matches_any(allowed, arn)
        {
            return Err(format!(
                "managed policy {arn} is not among those guardrail {} allows ({})",
                rule.name,
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::spec;
    use proptest::prelude::*;
    use serde_json::json;

    fn with_statement(statement: Value) -> PodIamRoleSpec {
        PodIamRoleSpec {
            policy: Some(json!({"Version": "2012-10-17", "Statement": [statement]})),
            ..spec()
        }
    }

    fn allow(action: Value, resource: Value) -> PodIamRoleSpec {
        with_statement(json!({"Effect": "Allow", "Action": action, "Resource": resource}))
    }

    fn err(spec: &PodIamRoleSpec, rules: &[Rule<'_>]) -> String {
        evaluate(spec, rules, 0).unwrap_err()
    }

    #[test]
    fn globs() {
        assert!(glob_match("s3:Get*", "s3:GetObject"));
        assert!(
            glob_match("S3:get*", "s3:GetObject"),
            "IAM actions are case-insensitive"
        );
        assert!(glob_match(
            "arn:aws:s3:::team-*/*",
            "arn:aws:s3:::team-a/key"
        ));
        assert!(glob_match("s3:?etObject", "s3:GetObject"));
        assert!(!glob_match("s3:Get*", "s3:PutObject"));
        assert!(!glob_match("s3:Get", "s3:GetObject"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn audiences_must_be_allowed_by_every_guardrail_listing_them() {
        let only_sts = PodIamRoleGuardrailSpec {
            allowed_audiences: Some(vec!["sts.amazonaws.com".into()]),
            ..Default::default()
        };
        let rules = [Rule {
            name: "tenants",
            spec: &only_sts,
        }];
        assert!(evaluate(&spec(), &rules, 0).is_ok(), "the default audience");
        let custom = PodIamRoleSpec {
            audience: Some("vault".into()),
            ..spec()
        };
        assert!(err(&custom, &rules).contains("audience `vault` is not within"));
        assert!(evaluate(&custom, &[], 0).is_ok(), "no guardrail, no limit");
    }

    #[test]
    fn adoption_of_foreign_roles_needs_the_opt_in_and_a_guardrail() {
        let grant = PodIamRoleGuardrailSpec {
            adoptable_role_names: vec!["eksctl-*".into()],
            ..Default::default()
        };
        let rules = [Rule {
            name: "migration",
            spec: &grant,
        }];
        let adopting = |name: &str, adopt: bool| PodIamRoleSpec {
            role_name: Some(name.into()),
            adopt,
            ..spec()
        };
        let decided = |spec: &PodIamRoleSpec| decide(spec, &rules, 0, "prod.shop.");
        assert!(
            decided(&adopting("eksctl-payments", true))
                .unwrap()
                .foreign_adoption
        );
        // Without the opt-in the name is not granted either.
        assert!(decided(&adopting("eksctl-payments", false)).is_err());
        assert!(decided(&adopting("terraform-payments", true)).is_err());
        let own = decided(&adopting("prod.shop.payments", true)).unwrap();
        assert!(
            !own.foreign_adoption,
            "own names adopt only their retained role"
        );
    }

    #[test]
    fn role_names_stay_in_the_namespace_prefix_unless_granted() {
        let named = |name: &str| PodIamRoleSpec {
            role_name: Some(name.into()),
            ..spec()
        };
        let prefix = "prod.shop.";
        assert!(check_role_name(&spec(), &[], prefix).is_ok(), "derived");
        assert!(check_role_name(&named("prod.shop.payments-v2"), &[], prefix).is_ok());
        let squat = check_role_name(&named("prod.bank.payments"), &[], prefix).unwrap_err();
        assert!(squat.contains("must start with `prod.shop.`"), "{squat}");
        let grant = PodIamRoleGuardrailSpec {
            granted_role_names: vec!["legacy-*".into()],
            ..Default::default()
        };
        let rules = [Rule {
            name: "legacy",
            spec: &grant,
        }];
        assert!(check_role_name(&named("legacy-payments"), &rules, prefix).is_ok());
        assert!(check_role_name(&named("prod.bank.payments"), &rules, prefix).is_err());
    }

    #[test]
    fn chain_targets_are_decided_by_every_guardrail() {
        let reports = "arn:aws:iam::444455556666:role/reports-eu";
        let chained = |arns: &[&str]| PodIamRoleSpec {
            role_chain: arns
                .iter()
                .enumerate()
                .map(|(i, arn)| crate::testing::chain_link(&format!("p{i}"), arn))
                .collect(),
            ..spec()
        };
        assert!(
            evaluate(&chained(&[reports]), &[], 0).is_ok(),
            "no guardrail, no limit"
        );
        let team = PodIamRoleGuardrailSpec {
            allowed_chain_targets: Some(vec!["arn:aws:iam::444455556666:role/reports-*".into()]),
            ..Default::default()
        };
        let narrow = PodIamRoleGuardrailSpec {
            allowed_chain_targets: Some(vec!["arn:aws:iam::*:role/*-eu".into()]),
            ..Default::default()
        };
        let rules = [
            Rule {
                name: "team",
                spec: &team,
            },
            Rule {
                name: "narrow",
                spec: &narrow,
            },
        ];
        assert!(evaluate(&chained(&[reports]), &rules, 0).is_ok());
        // Strictest wins: allowed by `team`, not by `narrow`.
        let us = "arn:aws:iam::444455556666:role/reports-us";
        assert_eq!(
            err(&chained(&[reports, us]), &rules),
            format!(
                "spec.roleChain: sts:AssumeRole on `{us}` is not within what guardrail narrow allows (arn:aws:iam::*:role/*-eu)"
            )
        );
        // The same grant written into spec.policy meets the same rule.
        let by_hand = allow(json!("sts:AssumeRole"), json!(us));
        assert!(err(&by_hand, &rules).starts_with("spec.policy Statement[0]: sts:AssumeRole on"));
        let wildcard = allow(
            json!("sts:Assume*"),
            json!(["arn:aws:iam::444455556666:role/admin"]),
        );
        assert!(err(&wildcard, &rules).contains("guardrail team"));
        let not_resource = with_statement(json!({"Effect": "Allow", "Action": "sts:AssumeRole",
            "NotResource": reports}));
        assert!(err(&not_resource, &rules).contains("NotResource"));
        // The grant is an Allow like any other: allowedActions must cover sts:AssumeRole.
        let dynamo_only = PodIamRoleGuardrailSpec {
            allowed_actions: Some(vec!["dynamodb:*".into()]),
            ..Default::default()
        };
        let only = [Rule {
            name: "dynamo",
            spec: &dynamo_only,
        }];
        assert!(
            err(&chained(&[reports]), &only)
                .contains("spec.roleChain: Action `sts:AssumeRole` is not within")
        );
    }

    #[test]
    fn trusted_roles_are_decided_by_every_guardrail() {
        let trusting = |arn: &str| PodIamRoleSpec {
            trusted_role_arns: vec![arn.into()],
            ..spec()
        };
        let own_cluster = PodIamRoleGuardrailSpec {
            allowed_trusted_role_arns: Some(vec![
                "arn:aws:iam::111122223333:role/irsa/prod/*".into(),
            ]),
            ..Default::default()
        };
        let rules = [Rule {
            name: "cluster",
            spec: &own_cluster,
        }];
        assert!(
            evaluate(
                &trusting("arn:aws:iam::111122223333:role/irsa/prod/prod.bank.api"),
                &rules,
                0
            )
            .is_ok()
        );
        assert!(err(&trusting("arn:aws:iam::999999999999:role/outside"), &rules)
            .contains("spec.trustedRoleArns `arn:aws:iam::999999999999:role/outside` is not within what guardrail cluster allows"));
        assert!(evaluate(&trusting("arn:aws:iam::999999999999:role/outside"), &[], 0).is_ok());
    }

    #[test]
    fn the_payments_policy_passes_with_no_guardrail() {
        assert_eq!(evaluate(&spec(), &[], 0), Ok(Enforced::default()));
    }

    #[test]
    fn built_in_denials() {
        for (action, resource, expected) in [
            (json!("*"), json!("*"), "Action `*` grants `*`"),
            (
                json!(["s3:GetObject", "iam:*"]),
                json!("*"),
                "Action `iam:*` grants `iam:*`",
            ),
            (json!("i*"), json!("*"), "grants `iam:*`"),
            (json!("iam:Pass*"), json!("*"), "reaches `iam:PassRole`"),
            (json!("IAM:passrole"), json!("*"), "reaches `iam:PassRole`"),
            (
                json!("iam:CreatePolicyVersion"),
                json!("*"),
                "reaches `iam:CreatePolicyVersion`",
            ),
            (
                json!("organizations:LeaveOrganization"),
                json!("*"),
                "reaches `organizations:*`",
            ),
            (json!("sts:AssumeRole"), json!("*"), "may assume any role"),
            (json!("sts:*"), json!("*"), "may assume any role"),
        ] {
            let message = err(&allow(action.clone(), resource), &[]);
            assert!(message.contains(expected), "{action}: {message}");
            assert!(
                message.starts_with("spec.policy Statement[0]: "),
                "{message}"
            );
        }
        assert!(
            evaluate(
                &allow(json!("sts:AssumeRole"), json!("arn:aws:iam::1:role/x")),
                &[],
                0
            )
            .is_ok()
        );
        assert!(
            evaluate(
                &allow(json!(["iam:GetRole", "iam:List*"]), json!("*")),
                &[],
                0
            )
            .is_ok(),
            "read-only IAM is fine"
        );
        let deny_all = with_statement(json!({"Effect": "Deny", "Action": "*", "Resource": "*"}));
        assert!(
            evaluate(&deny_all, &[], 0).is_ok(),
            "Deny statements only restrict"
        );
        let not_action =
            with_statement(json!({"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}));
        assert!(err(&not_action, &[]).contains("NotAction"));
        let assume_not_resource = with_statement(
            json!({"Effect": "Allow", "Action": "sts:AssumeRole", "NotResource": "arn:aws:iam::1:role/x"}),
        );
        assert!(err(&assume_not_resource, &[]).contains("NotResource may assume any other role"));
        let admin = PodIamRoleSpec {
            managed_policy_arns: vec!["arn:aws:iam::aws:policy/AdministratorAccess".into()],
            ..spec()
        };
        assert!(
            err(&admin, &[]).contains("AdministratorAccess is denied by the built-in guardrail")
        );
    }

    #[test]
    fn each_rule_names_itself() {
        let guardrail = PodIamRoleGuardrailSpec {
            allowed_actions: Some(vec!["dynamodb:*".into()]),
            denied_actions: vec!["dynamodb:Delete*".into()],
            allowed_resources: Some(vec!["arn:aws:dynamodb:*:*:table/payments*".into()]),
            allowed_managed_policy_arns: Some(vec!["arn:aws:iam::aws:policy/ReadOnly*".into()]),
            max_roles_per_namespace: Some(2),
            max_session_duration: Some(7200),
            ..Default::default()
        };
        let rules = [Rule {
            name: "tenants",
            spec: &guardrail,
        }];
        assert_eq!(evaluate(&spec(), &rules, 1), Ok(Enforced::default()));
        let cases = [
            (
                allow(json!("s3:GetObject"), json!("*")),
                "Action `s3:GetObject` is not within the actions guardrail tenants allows (dynamodb:*)",
            ),
            (
                allow(json!("dynamodb:DeleteTable"), json!("*")),
                "Action `dynamodb:DeleteTable` reaches `dynamodb:Delete*`, denied by guardrail tenants",
            ),
            (
                allow(
                    json!("dynamodb:GetItem"),
                    json!("arn:aws:dynamodb:us-east-1:1:table/orders"),
                ),
                "Resource `arn:aws:dynamodb:us-east-1:1:table/orders` is not within the resources guardrail tenants allows",
            ),
            (
                allow(json!("dynamodb:GetItem"), json!("*")),
                "Resource `*` is not within",
            ),
            (
                with_statement(
                    json!({"Effect": "Allow", "Action": "dynamodb:GetItem", "NotResource": "x"}),
                ),
                "NotResource",
            ),
            (
                PodIamRoleSpec {
                    managed_policy_arns: vec!["arn:aws:iam::aws:policy/PowerUserAccess".into()],
                    ..spec()
                },
                "managed policy arn:aws:iam::aws:policy/PowerUserAccess is not among those guardrail tenants allows",
            ),
            (
                PodIamRoleSpec {
                    max_session_duration: Some(43200),
                    ..spec()
                },
                "guardrail tenants limits maxSessionDuration to 7200 seconds, not 43200",
            ),
        ];
        for (spec, expected) in cases {
            let message = err(&spec, &rules);
            assert!(
                message.contains(expected),
                "got `{message}`, want `{expected}`"
            );
        }
        assert!(evaluate(&spec(), &rules, 2).unwrap_err().contains(
            "guardrail tenants allows 2 PodIamRoles in this namespace, and 2 older ones exist"
        ));
    }

    #[test]
    fn boundaries_are_forced_and_must_agree() {
        let boundary = "arn:aws:iam::111122223333:policy/tenant-boundary";
        let a = PodIamRoleGuardrailSpec {
            required_permissions_boundary: Some(boundary.into()),
            ..Default::default()
        };
        let b = PodIamRoleGuardrailSpec {
            required_permissions_boundary: Some("arn:aws:iam::111122223333:policy/other".into()),
            ..Default::default()
        };
        let forced = evaluate(
            &spec(),
            &[Rule {
                name: "a",
                spec: &a,
            }],
            0,
        )
        .unwrap();
        assert_eq!(forced.permissions_boundary.as_deref(), Some(boundary));
        let own = PodIamRoleSpec {
            permissions_boundary: Some("arn:aws:iam::111122223333:policy/mine".into()),
            ..spec()
        };
        assert!(
            err(
                &own,
                &[Rule {
                    name: "a",
                    spec: &a
                }]
            )
            .contains("differs from")
        );
        let both = [
            Rule {
                name: "a",
                spec: &a,
            },
            Rule {
                name: "b",
                spec: &b,
            },
        ];
        assert!(
            err(&spec(), &both)
                .contains("guardrails a and b require different permissions boundaries")
        );
    }

    #[test]
    fn the_strictest_guardrail_wins() {
        let loose = PodIamRoleGuardrailSpec {
            allowed_actions: Some(vec!["dynamodb:*".into(), "s3:*".into()]),
            max_roles_per_namespace: Some(10),
            ..Default::default()
        };
        let strict = PodIamRoleGuardrailSpec {
            allowed_actions: Some(vec!["s3:Get*".into()]),
            max_roles_per_namespace: Some(1),
            ..Default::default()
        };
        let rules = [
            Rule {
                name: "loose",
                spec: &loose,
            },
            Rule {
                name: "strict",
                spec: &strict,
            },
        ];
        assert!(err(&spec(), &rules).contains("guardrail strict"));
        assert!(evaluate(&allow(json!("s3:GetObject"), json!("*")), &rules, 0).is_ok());
        assert!(
            evaluate(&allow(json!("s3:GetObject"), json!("*")), &rules, 1)
                .unwrap_err()
                .contains("strict allows 1")
        );
    }

    #[test]
    fn quota_rank_orders_by_age_then_name() {
        let role = |name: &str, namespace: &str, created: i64, deleting: bool| {
            let mut role = PodIamRole::new(name, spec());
            role.metadata.namespace = Some(namespace.into());
            role.metadata.creation_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    jiff::Timestamp::from_second(created).unwrap(),
                ));
            if deleting {
                role.metadata.deletion_timestamp = role.metadata.creation_timestamp.clone();
            }
            Arc::new(role)
        };
        let roles = vec![
            role("a", "shop", 10, false),
            role("b", "shop", 20, false),
            role("c", "shop", 20, false),
            role("old-but-deleting", "shop", 1, true),
            role("other-namespace", "bank", 1, false),
        ];
        let rank = |i: usize| quota_rank(&roles[i], &roles);
        assert_eq!((rank(0), rank(1), rank(2)), (0, 1, 2));
    }

    #[test]
    fn selectors() {
        let labels = BTreeMap::from([("team".to_string(), "payments".to_string())]);
        let every = PodIamRoleGuardrailSpec::default();
        assert!(selects(&every, &labels));
        let payments: PodIamRoleGuardrailSpec = serde_json::from_value(
            json!({"namespaceSelector": {"matchLabels": {"team": "payments"}}}),
        )
        .unwrap();
        assert!(selects(&payments, &labels));
        assert!(!selects(&payments, &BTreeMap::new()));
        let broken: PodIamRoleGuardrailSpec = serde_json::from_value(json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Bogus"}]}})).unwrap();
        assert!(
            selects(&broken, &BTreeMap::new()),
            "an unparsable selector fails closed"
        );
    }

    proptest! {
        #[test]
        fn glob_never_panics_and_star_matches_all(pattern in "[a-z*?:]{0,12}", text in "[a-z:]{0,12}") {
            let _ = glob_match(&pattern, &text);
            prop_assert!(glob_match("*", &text));
            prop_assert!(glob_match(&text, &text));
        }

        /// Whatever an Allow statement lists, an accepted one never reaches a built-in denied action.
        #[test]
        fn accepted_actions_never_reach_the_deny_list(action in "(\\*|[a-z]{1,4}:[A-Za-z*?]{1,8}|iam:[A-Za-z*]{1,12}|sts:[A-Za-z*]{1,12})") {
            if evaluate(&allow(json!(action.clone()), json!("*")), &[], 0).is_ok() {
                for denied in BUILT_IN_DENIED_ACTIONS {
                    prop_assert!(!overlaps(&action, denied), "{} reaches {}", action, denied);
                }
                for grant in BUILT_IN_DENIED_GRANTS {
                    prop_assert!(!glob_match(&action, grant), "{} grants {}", action, grant);
                }
            }
        }
    }
}
