//! Pure: whether an existing role's trust policy lets one ServiceAccount assume it
//! through the cluster's OIDC provider, for roles the operator only observes.

use serde_json::Value;

use crate::guardrail::glob_match;

/// Who wants to assume the role, as STS sees the web identity token.
pub struct WebIdentity<'a> {
    pub provider_arn: &'a str,
    /// The issuer without `https://`, the prefix of the condition keys.
    pub issuer_host_path: &'a str,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub subject: &'a str,
    pub audience: &'a str,
}

fn list(value: Option<&Value>) -> Vec<&Value> {
    match value {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single) => vec![single],
        None => Vec::new(),
    }
}

fn strings(value: Option<&Value>) -> Vec<&str> {
    list(value).into_iter().filter_map(Value::as_str).collect()
}

/// `Ok` when some Allow statement admits `identity`; otherwise why none does. Checks
/// the federated principal, the action, and the `sub` and `aud` conditions
/// (StringEquals, StringLike); conditions on other keys are not evaluated.
pub fn admits(trust: &Value, identity: &WebIdentity<'_>) -> Result<(), String> {
    let mut reasons = Vec::new();
    for (index, statement) in list(trust.get("Statement")).into_iter().enumerate() {
        match statement_admits(statement, identity) {
            Ok(()) => return Ok(()),
            Err(why) => reasons.push(format!("Statement[{index}] {why}")),
        }
    }
    if reasons.is_empty() {
        reasons.push("the trust policy has no statements".into());
    }
    Err(format!(
        "its trust policy does not let {} assume it with a token for {} from {}: {}",
        identity.subject,
        identity.audience,
        identity.provider_arn,
        reasons.join("; ")
    ))
}

fn statement_admits(statement: &Value, identity: &WebIdentity<'_>) -> Result<(), String> {
    if statement.get("Effect").and_then(Value::as_str) != Some("Allow") {
        return Err("is not an Allow".into());
    }
    let federated = strings(statement.get("Principal").and_then(|p| p.get("Federated")));
    if !federated.contains(&identity.provider_arn) {
        return Err(format!(
            "does not name the provider (it names {federated:?})"
        ));
    }
    let actions = strings(statement.get("Action"));
    if !actions
        .iter()
        .any(|a| glob_match(a, "sts:AssumeRoleWithWebIdentity"))
    {
        return Err("does not allow sts:AssumeRoleWithWebIdentity".into());
    }
    let claims = [("sub", identity.subject), ("aud", identity.audience)];
    let conditions = statement.get("Condition").and_then(Value::as_object);
    for (operator, entries) in conditions.into_iter().flatten() {
        for (claim, value) in claims {
            let key = format!("{}:{claim}", identity.issuer_host_path);
            let Some(allowed) = entries.get(&key) else {
                continue;
            };
            let allowed = strings(Some(allowed));
            let admitted = match operator.as_str() {
                "StringEquals" => allowed.contains(&value),
                "StringLike" => allowed.iter().any(|pattern| glob_match(pattern, value)),
                other => return Err(format!("uses {other} on {key}, which is not checked")),
            };
            if !admitted {
                return Err(format!(
                    "requires {key} {operator} {allowed:?}, not {value}"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{desired::trust_policy, testing::test_config};

    fn identity<'a>(provider: &'a str, subject: &'a str) -> WebIdentity<'a> {
        WebIdentity {
            provider_arn: provider,
            issuer_host_path: "oidc.eks.us-east-1.amazonaws.com/id/ABC",
            subject,
            audience: "sts.amazonaws.com",
        }
    }

    #[test]
    fn the_operators_own_trust_policy_admits_exactly_its_service_account() {
        let config = test_config();
        let provider = config.oidc_provider_arn();
        let trust = trust_policy(&config, "shop", "payments", "sts.amazonaws.com");
        assert!(
            admits(
                &trust,
                &identity(&provider, "system:serviceaccount:shop:payments")
            )
            .is_ok()
        );
        let other = admits(
            &trust,
            &identity(&provider, "system:serviceaccount:shop:orders"),
        );
        assert!(
            other.unwrap_err().contains("requires"),
            "another ServiceAccount"
        );
        let elsewhere = admits(
            &trust,
            &identity(
                "arn:aws:iam::1:oidc-provider/x",
                "system:serviceaccount:shop:payments",
            ),
        );
        assert!(
            elsewhere
                .unwrap_err()
                .contains("does not name the provider")
        );
    }

    #[test]
    fn eksctl_style_wildcards_and_other_shapes() {
        let provider = test_config().oidc_provider_arn();
        let issuer = "oidc.eks.us-east-1.amazonaws.com/id/ABC";
        let like = json!({"Statement": {"Effect": "Allow", "Principal": {"Federated": [provider]},
            "Action": ["sts:AssumeRoleWith*"],
            "Condition": {"StringLike": {format!("{issuer}:sub"): "system:serviceaccount:shop:*"}}}});
        assert!(
            admits(
                &like,
                &identity(&provider, "system:serviceaccount:shop:payments")
            )
            .is_ok()
        );
        let ec2 = json!({"Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole"}]});
        assert!(
            admits(
                &ec2,
                &identity(&provider, "system:serviceaccount:shop:payments")
            )
            .is_err()
        );
        let unchecked = json!({"Statement": {"Effect": "Allow", "Principal": {"Federated": provider},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringNotEquals": {format!("{issuer}:sub"): "x"}}}});
        let why = admits(
            &unchecked,
            &identity(&provider, "system:serviceaccount:shop:payments"),
        )
        .unwrap_err();
        assert!(why.contains("StringNotEquals"), "{why}");
    }
}
