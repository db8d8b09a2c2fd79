//! Whether STS would let a web identity token assume a role with this trust policy, for
//! the IRSA shape of policy: an `Allow` of `sts:AssumeRoleWithWebIdentity` to the IAM OIDC
//! provider of the token's issuer, under `StringEquals` / `StringLike` conditions on the
//! issuer-prefixed claim keys (`<issuer>:sub`, `<issuer>:aud`). A matching `Deny` wins.
//! LocalStack accepts any token, so tests and `doctor` ask this instead. Pure.

use serde_json::Value;

use crate::glob;

const ACTION: &str = "sts:AssumeRoleWithWebIdentity";
const ASSUME_ROLE: &str = "sts:AssumeRole";

/// `Ok` when some statement admits the token; otherwise why each statement does not.
pub fn evaluate(trust: &Value, claims: &Value) -> Result<(), String> {
    let issuer = claims["iss"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("https://")
        .trim_end_matches('/');
    if issuer.is_empty() {
        return Err("the token has no `iss` claim".into());
    }
    decide(trust, |s| statement_matches(s, issuer, claims))
}

/// Whether STS would let the role `role_arn` assume a role with this trust policy
/// (`sts:AssumeRole`, role chaining): an `Allow` naming the role, its account (`root` or
/// the bare ID) or `*` as an `AWS` principal. Statements with conditions are not
/// guessed at; a matching `Deny` wins.
pub fn evaluate_assume_role(trust: &Value, role_arn: &str) -> Result<(), String> {
    let account = role_arn.split(':').nth(4).unwrap_or_default();
    let partition = role_arn.split(':').nth(1).unwrap_or_default();
    let root = format!("arn:{partition}:iam::{account}:root");
    decide(trust, |statement| {
        if !names_action(statement, ASSUME_ROLE) {
            return Err(format!("it does not name {ASSUME_ROLE}"));
        }
        let principals = as_list(&statement["Principal"]["AWS"]);
        let admitted = statement["Principal"] == "*"
            || principals
                .iter()
                .filter_map(Value::as_str)
                .any(|p| p == role_arn || p == root || p == account || p == "*");
        if !admitted {
            return Err(format!(
                "its AWS principal {} does not name {role_arn}",
                statement["Principal"]["AWS"]
            ));
        }
        match statement.get("Condition") {
            Some(condition) => Err(format!("its Condition {condition} is not evaluated here")),
            None => Ok(()),
        }
    })
}

/// A matching `Deny` refuses, else a matching `Allow` admits, else every Allow's reason.
fn decide(trust: &Value, matches: impl Fn(&Value) -> Result<(), String>) -> Result<(), String> {
    let statements = as_list(&trust["Statement"]);
    let verdicts: Vec<(String, Result<(), String>)> = statements
        .iter()
        .map(|s| {
            let effect = s["Effect"].as_str().unwrap_or_default().to_string();
            (effect, matches(s))
        })
        .collect();
    if let Some(index) = verdicts
        .iter()
        .position(|(effect, verdict)| effect == "Deny" && verdict.is_ok())
    {
        return Err(format!("statement {index} denies it explicitly"));
    }
    if verdicts
        .iter()
        .any(|(effect, verdict)| effect == "Allow" && verdict.is_ok())
    {
        return Ok(());
    }
    let reasons: Vec<String> = verdicts
        .iter()
        .enumerate()
        .filter(|(_, (effect, _))| effect == "Allow")
        .filter_map(|(i, (_, verdict))| {
            verdict
                .as_ref()
                .err()
                .map(|r| format!("statement {i}: {r}"))
        })
        .collect();
    if reasons.is_empty() {
        return Err("the trust policy has no Allow statement".into());
    }
    Err(reasons.join("; "))
}

/// Whether the statement's actions reach `action`, as IAM matches them (wildcards, any case).
fn names_action(statement: &Value, action: &str) -> bool {
    as_list(&statement["Action"])
        .iter()
        .filter_map(Value::as_str)
        .any(|a| glob::matches_ignoring_case(a, action))
}

fn statement_matches(statement: &Value, issuer: &str, claims: &Value) -> Result<(), String> {
    if !names_action(statement, ACTION) {
        return Err(format!("it does not name {ACTION}"));
    }
    let provider_suffix = format!(":oidc-provider/{issuer}");
    let federated = as_list(&statement["Principal"]["Federated"]);
    if !federated
        .iter()
        .filter_map(Value::as_str)
        .any(|p| p.ends_with(&provider_suffix))
    {
        return Err(format!(
            "its Federated principal {} is not the OIDC provider of the token's issuer {issuer}",
            statement["Principal"]["Federated"]
        ));
    }
    let Some(conditions) = statement["Condition"].as_object() else {
        return Ok(());
    };
    for (operator, entries) in conditions {
        let matcher: fn(&str, &str) -> bool = match operator.as_str() {
            "StringEquals" => |have, want| have == want,
            "StringLike" => |have, want| glob::matches(want, have),
            other => return Err(format!("condition operator {other} is not evaluated here")),
        };
        for (key, wanted) in entries.as_object().into_iter().flatten() {
            let claim = key
                .strip_prefix(issuer)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(|name| &claims[name])
                .filter(|claim| !claim.is_null())
                .ok_or_else(|| {
                    format!("{operator} key {key} is not a claim of the token's issuer")
                })?;
            let have = as_list(claim);
            let want = as_list(wanted);
            let held = have
                .iter()
                .filter_map(Value::as_str)
                .any(|h| want.iter().filter_map(Value::as_str).any(|w| matcher(h, w)));
            if !held {
                return Err(format!(
                    "{operator} {key} wants {wanted}, the token has {claim}"
                ));
            }
        }
    }
    Ok(())
}

fn as_list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISSUER: &str = "oidc.example.com/id/ABC";

    fn trust(conditions: Value) -> Value {
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::1:oidc-provider/{ISSUER}")},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": conditions
        }]})
    }

    fn claims(sub: &str, aud: Value) -> Value {
        json!({"iss": format!("https://{ISSUER}"), "sub": sub, "aud": aud})
    }

    fn irsa() -> Value {
        trust(json!({"StringEquals": {
            format!("{ISSUER}:sub"): "system:serviceaccount:team:app",
            format!("{ISSUER}:aud"): "sts.amazonaws.com"
        }}))
    }

    #[test]
    fn admits_the_matching_token() {
        let token = claims(
            "system:serviceaccount:team:app",
            json!(["sts.amazonaws.com"]),
        );
        assert_eq!(evaluate(&irsa(), &token), Ok(()));
    }

    #[test]
    fn wrong_sub_audience_or_issuer_is_refused_with_the_reason() {
        let other_sa = claims(
            "system:serviceaccount:team:other",
            json!("sts.amazonaws.com"),
        );
        let error = evaluate(&irsa(), &other_sa).unwrap_err();
        assert!(error.contains(":sub wants"), "{error}");
        let other_aud = claims("system:serviceaccount:team:app", json!(["other"]));
        assert!(
            evaluate(&irsa(), &other_aud)
                .unwrap_err()
                .contains(":aud wants")
        );
        let other_issuer = json!({"iss": "https://elsewhere", "sub": "system:serviceaccount:team:app",
            "aud": "sts.amazonaws.com"});
        let error = evaluate(&irsa(), &other_issuer).unwrap_err();
        assert!(error.contains("is not the OIDC provider"), "{error}");
        assert!(evaluate(&irsa(), &json!({})).is_err());
    }

    #[test]
    fn string_like_and_lists() {
        let policy = trust(json!({"StringLike": {
            format!("{ISSUER}:sub"): ["system:serviceaccount:team:*", "x"]
        }}));
        let token = claims("system:serviceaccount:team:any", json!("a"));
        assert_eq!(evaluate(&policy, &token), Ok(()));
        let outside = claims("system:serviceaccount:other:any", json!("a"));
        assert!(evaluate(&policy, &outside).is_err());
    }

    #[test]
    fn assume_role_admits_the_named_role_or_its_account() {
        let source = "arn:aws:iam::111122223333:role/irsa/prod/prod.shop.payments";
        let policy = |principal: Value| {
            json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": principal},
                "Action": "sts:AssumeRole"}]})
        };
        for admitted in [
            json!([source]),
            json!(source),
            json!("arn:aws:iam::111122223333:root"),
            json!("111122223333"),
            json!("*"),
        ] {
            assert_eq!(
                evaluate_assume_role(&policy(admitted.clone()), source),
                Ok(()),
                "{admitted}"
            );
        }
        let other = evaluate_assume_role(
            &policy(json!("arn:aws:iam::111122223333:role/other")),
            source,
        );
        assert!(other.unwrap_err().contains("does not name"));
        assert!(
            evaluate_assume_role(&policy(json!("arn:aws:iam::444455556666:root")), source).is_err()
        );
        // The web identity statement of an IRSA role does not admit a role.
        assert!(
            evaluate_assume_role(&irsa(), source)
                .unwrap_err()
                .contains("does not name sts:AssumeRole")
        );
        let mut conditioned = policy(json!(source));
        conditioned["Statement"][0]["Condition"] = json!({"StringEquals": {"sts:ExternalId": "x"}});
        assert!(
            evaluate_assume_role(&conditioned, source)
                .unwrap_err()
                .contains("not evaluated")
        );
        let mut denied = policy(json!(source));
        denied["Statement"]
            .as_array_mut()
            .unwrap()
            .push(json!({"Effect": "Deny",
            "Principal": {"AWS": "*"}, "Action": "sts:*"}));
        assert!(
            evaluate_assume_role(&denied, source)
                .unwrap_err()
                .contains("denies")
        );
    }

    #[test]
    fn deny_wins_and_other_operators_are_not_guessed() {
        let mut policy = irsa();
        let deny = json!({"Effect": "Deny",
            "Principal": {"Federated": format!("arn:aws:iam::1:oidc-provider/{ISSUER}")},
            "Action": "sts:*"});
        policy["Statement"].as_array_mut().unwrap().push(deny);
        let token = claims("system:serviceaccount:team:app", json!("sts.amazonaws.com"));
        assert!(evaluate(&policy, &token).unwrap_err().contains("denies"));
        let unknown = trust(json!({"ForAllValues:StringEquals": {format!("{ISSUER}:aud"): "a"}}));
        assert!(
            evaluate(&unknown, &token)
                .unwrap_err()
                .contains("not evaluated")
        );
        let wrong_action = json!({"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"Federated": format!("arn:aws:iam::1:oidc-provider/{ISSUER}")}}});
        assert!(
            evaluate(&wrong_action, &token)
                .unwrap_err()
                .contains("does not name")
        );
    }
}
