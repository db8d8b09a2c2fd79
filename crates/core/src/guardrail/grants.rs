//! Pure: a spec against the operator's baseline, the built-in deny list and the
//! guardrails selecting its namespace. Every kind of grant (actions, resources, managed
//! policies, chain targets, trusted roles, audiences) needs a guardrail that lists it.

use serde_json::Value;

use super::{
    BUILT_IN_DENIED_ACTIONS, BUILT_IN_DENIED_GRANTS, BUILT_IN_DENIED_MANAGED_POLICIES, Baseline,
    Context, Enforced, Rule, glob_match,
};
use crate::chain;
use irsa_api::{
    DEFAULT_AUDIENCE, DEFAULT_MAX_SESSION_DURATION, PodIamRoleGuardrailSpec, PodIamRoleSpec,
};

/// A granted action pattern overlaps a denied one when either could match the other:
/// `*` and `iam:Pass*` both reach `iam:PassRole`.
pub(super) fn overlaps(granted: &str, denied: &str) -> bool {
    glob_match(granted, denied) || glob_match(denied, granted)
}

/// One kind of grant: how a refusal names it, the guardrail field that grants it, and how
/// IAM compares its values (actions ignore case; ARNs and audiences do not, so a table
/// `Payments` is not within a grant of `payments`).
struct Kind {
    what: &'static str,
    field: &'static str,
    list: fn(&PodIamRoleGuardrailSpec) -> Option<&Vec<String>>,
    matches: fn(&str, &str) -> bool,
}

const ACTIONS: Kind = Kind {
    what: "Action",
    field: "allowedActions",
    list: |g| g.allowed_actions.as_ref(),
    matches: glob_match,
};
const RESOURCES: Kind = Kind {
    what: "Resource",
    field: "allowedResources",
    list: |g| g.allowed_resources.as_ref(),
    matches: crate::glob::matches,
};
const MANAGED_POLICIES: Kind = Kind {
    what: "managed policy",
    field: "allowedManagedPolicyArns",
    list: |g| g.allowed_managed_policy_arns.as_ref(),
    matches: crate::glob::matches,
};
const CHAIN_TARGETS: Kind = Kind {
    what: "sts:AssumeRole on",
    field: "allowedChainTargets",
    list: |g| g.allowed_chain_targets.as_ref(),
    matches: crate::glob::matches,
};
const TRUSTED_ROLES: Kind = Kind {
    what: "spec.trustedRoleArns",
    field: "allowedTrustedRoleArns",
    list: |g| g.allowed_trusted_role_arns.as_ref(),
    matches: crate::glob::matches,
};
const AUDIENCES: Kind = Kind {
    what: "spec.audience",
    field: "allowedAudiences",
    list: |g| g.allowed_audiences.as_ref(),
    matches: crate::glob::matches,
};

/// The guardrails of one namespace under the operator's baseline.
struct Grants<'r, 'a> {
    rules: &'r [Rule<'a>],
    default_deny: bool,
}

impl Grants<'_, '_> {
    /// `value` must be granted by some guardrail and be within every guardrail that
    /// lists this kind. Without default deny, a kind no guardrail lists is not limited.
    fn check(&self, value: &str, kind: &Kind) -> Result<(), String> {
        let mut listing = self
            .rules
            .iter()
            .filter_map(|rule| (kind.list)(rule.spec).map(|patterns| (rule.name, patterns)))
            .peekable();
        if listing.peek().is_none() {
            if !self.default_deny {
                return Ok(());
            }
            let names: Vec<&str> = self.rules.iter().map(|rule| rule.name).collect();
            return Err(format!(
                "{} `{value}` is granted by no guardrail: none of those selecting this namespace ({}) \
                 sets {}, and an unset list grants nothing",
                kind.what,
                names.join(", "),
                kind.field
            ));
        }
        for (name, patterns) in listing {
            if !patterns
                .iter()
                .any(|pattern| (kind.matches)(pattern, value))
            {
                return Err(format!(
                    "{} `{value}` is not within guardrail {name}'s {} ({})",
                    kind.what,
                    kind.field,
                    shown(patterns)
                ));
            }
        }
        Ok(())
    }
}

/// A guardrail's patterns, as many as a message can carry.
fn shown(patterns: &[String]) -> String {
    const MOST: usize = 5;
    let mut text = patterns
        .iter()
        .take(MOST)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if patterns.len() > MOST {
        text.push_str(&format!(" and {} more", patterns.len() - MOST));
    }
    text
}

/// Why a namespace that no guardrail selects gets nothing, and what to do about it.
fn no_guardrail(namespace: &str) -> String {
    format!(
        "no PodIamRoleGuardrail selects namespace `{namespace}`, so nothing is granted there \
         (default deny). A cluster admin grants what its roles may use with a guardrail whose \
         namespaceSelector matches it (e.g. matchLabels kubernetes.io/metadata.name: {namespace}) \
         and lists allowedActions and allowedResources, plus allowedManagedPolicyArns, \
         allowedChainTargets or allowedTrustedRoleArns where needed; see docs/security.md"
    )
}

/// Checks a spec against the baseline, the built-in deny list and `rules`.
pub fn evaluate(
    spec: &PodIamRoleSpec,
    rules: &[Rule<'_>],
    context: &Context<'_>,
) -> Result<Enforced, String> {
    let baseline = context.baseline;
    if baseline.default_deny && rules.is_empty() {
        return Err(no_guardrail(context.namespace));
    }
    check_limits(spec, rules, context.rank)?;
    let grants = Grants {
        rules,
        default_deny: baseline.default_deny,
    };
    let audience = spec.audience.as_deref().unwrap_or(DEFAULT_AUDIENCE);
    if audience != DEFAULT_AUDIENCE {
        grants.check(audience, &AUDIENCES)?;
    }
    for (index, statement) in allow_statements(spec.policy.as_ref()) {
        check_statement(statement, &grants)
            .map_err(|e| format!("spec.policy Statement[{index}]: {e}"))?;
    }
    for arn in &spec.managed_policy_arns {
        if BUILT_IN_DENIED_MANAGED_POLICIES
            .iter()
            .any(|p| glob_match(p, arn))
        {
            return Err(format!(
                "managed policy {arn} is denied by the built-in guardrail"
            ));
        }
        grants.check(arn, &MANAGED_POLICIES)?;
    }
    // The chain's grant is sts:AssumeRole on exactly its targets: allowedChainTargets
    // decides it, and the built-in deny list still applies.
    if let Some(grant) = chain::grant(&spec.role_chain) {
        check_built_in(&grant).map_err(|e| format!("spec.roleChain: {e}"))?;
        for target in strings(grant.get("Resource")) {
            grants
                .check(&target, &CHAIN_TARGETS)
                .map_err(|e| format!("spec.roleChain: {e}"))?;
        }
    }
    for arn in &spec.trusted_role_arns {
        grants.check(arn, &TRUSTED_ROLES)?;
    }
    Ok(Enforced {
        permissions_boundary: boundary(spec, rules, baseline)?,
        foreign_adoption: super::adoptable(spec, rules),
    })
}

fn check_limits(spec: &PodIamRoleSpec, rules: &[Rule<'_>], rank: usize) -> Result<(), String> {
    let duration = spec
        .max_session_duration
        .unwrap_or(DEFAULT_MAX_SESSION_DURATION);
    for rule in rules {
        if let Some(max) = rule.spec.max_roles_per_namespace
            && rank >= max as usize
        {
            return Err(format!(
                "guardrail {} allows {max} PodIamRoles in this namespace, and {rank} older ones exist",
                rule.name
            ));
        }
        if let Some(max) = rule.spec.max_session_duration
            && duration > max
        {
            return Err(format!(
                "guardrail {} limits maxSessionDuration to {max} seconds, not {duration}",
                rule.name
            ));
        }
    }
    Ok(())
}

/// The boundary every role of this spec carries: the operator's, else the one the
/// guardrails require, else the spec's own. Two different ones are refused.
fn boundary(
    spec: &PodIamRoleSpec,
    rules: &[Rule<'_>],
    baseline: &Baseline,
) -> Result<Option<String>, String> {
    let mut forced: Option<(String, &str)> = baseline
        .boundary
        .clone()
        .map(|arn| (arn, "the operator (--permissions-boundary)"));
    for rule in rules {
        let Some(required) = rule.spec.required_permissions_boundary.as_deref() else {
            continue;
        };
        match &forced {
            Some((arn, by)) if arn != required => {
                return Err(format!(
                    "guardrail {} requires permissions boundary {required}, but {by} requires {arn}; \
                     a role has one boundary",
                    rule.name
                ));
            }
            Some(_) => {}
            None => forced = Some((required.to_string(), "a guardrail")),
        }
    }
    match (forced, &spec.permissions_boundary) {
        (Some((arn, by)), Some(asked)) if &arn != asked => Err(format!(
            "spec.permissionsBoundary {asked} differs from {arn}, which {by} puts on every role; \
             a role has one boundary"
        )),
        (Some((arn, _)), _) => Ok(Some(arn)),
        (None, _) => Ok(None),
    }
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

/// The Allow statements of a policy with their indexes: Deny statements only take
/// permissions away.
fn allow_statements(policy: Option<&Value>) -> Vec<(usize, &Value)> {
    let statements: Vec<&Value> = match policy.and_then(|p| p.get("Statement")) {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single) => vec![single],
        None => Vec::new(),
    };
    statements
        .into_iter()
        .enumerate()
        .filter(|(_, s)| s.get("Effect").and_then(Value::as_str) == Some("Allow"))
        .collect()
}

/// Whether an action pattern can reach `sts:AssumeRole`.
fn assumes_roles(action: &str) -> bool {
    overlaps(action, "sts:AssumeRole")
}

/// The built-in deny list, which no guardrail can lift.
fn check_built_in(statement: &Value) -> Result<(), String> {
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
        if assumes_roles(action) && resources.iter().any(|r| r == "*") {
            return Err(format!(
                "Action `{action}` on Resource `*` may assume any role, denied by the built-in guardrail"
            ));
        }
    }
    if actions.iter().any(|a| assumes_roles(a)) && statement.get("NotResource").is_some() {
        return Err(
            "Allow of sts:AssumeRole with NotResource may assume any other role; list the roles"
                .into(),
        );
    }
    Ok(())
}

fn check_statement(statement: &Value, grants: &Grants<'_, '_>) -> Result<(), String> {
    check_built_in(statement)?;
    let actions = strings(statement.get("Action"));
    for action in &actions {
        for rule in grants.rules {
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
        }
        grants.check(action, &ACTIONS)?;
    }
    if statement.get("NotResource").is_some() {
        // Every resource but a few: only a grant of `*` covers that.
        return grants
            .check("*", &RESOURCES)
            .map_err(|e| format!("Allow with NotResource reaches every other resource: {e}"));
    }
    let resources = strings(statement.get("Resource"));
    for resource in &resources {
        grants.check(resource, &RESOURCES)?;
    }
    if actions.iter().any(|a| assumes_roles(a)) {
        for resource in &resources {
            grants.check(resource, &CHAIN_TARGETS)?;
        }
    }
    Ok(())
}
