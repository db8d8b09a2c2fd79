//! Whether STS would let a web identity token assume a role with this trust policy, for
//! the IRSA shape of policy: an `Allow` of `sts:AssumeRoleWithWebIdentity` to the IAM OIDC
//! provider of the token's issuer, under `StringEquals` / `StringLike` conditions on the
//! issuer-prefixed claim keys (`<issuer>:sub`, `<issuer>:aud`). A matching `Deny` wins.
//! LocalStack accepts any token, so tests and `doctor` ask this instead. Pure.
//! [`evaluate_assume_role`] does the same for `sts:AssumeRole` by another role.

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

/// `Ok` when some statement lets `caller_arn` (an IAM role, or a session of one as STS
/// names it: `arn:aws:sts::<account>:assumed-role/<name>/<session>`) call `sts:AssumeRole`,
/// presenting `external_id`; otherwise why not. Principals are matched as STS does: the
/// role's ARN (any path), its account's `root`, the bare account ID, or `*`; the only
/// condition evaluated is `StringEquals` on `sts:ExternalId`. A matching `Deny` wins.
pub fn evaluate_assume_role(
    trust: &Value,
    caller_arn: &str,
    external_id: Option<&str>,
) -> Result<(), String> {
    let caller = Caller::parse(caller_arn)?;
    decide(trust, |statement| {
        assume_role_matches(statement, &caller, external_id)
    })
}

/// The role behind a caller ARN.
struct Caller<'a> {
    partition: &'a str,
    account: &'a str,
    role_name: &'a str,
}

impl<'a> Caller<'a> {
    fn parse(arn: &'a str) -> Result<Self, String> {
        let fields: Vec<&str> = arn.splitn(6, ':').collect();
        let role_name = match fields.as_slice() {
            ["arn", _, "sts", "", _, resource] => resource
                .strip_prefix("assumed-role/")
                .and_then(|rest| rest.split('/').next()),
            ["arn", _, "iam", "", _, resource] => resource
                .strip_prefix("role/")
                .and_then(|rest| rest.rsplit('/').next()),
            _ => None,
        };
        match (fields.get(1), fields.get(4), role_name) {
            (Some(partition), Some(account), Some(role_name)) if !role_name.is_empty() => {
                Ok(Caller {
                    partition,
                    account,
                    role_name,
                })
            }
            _ => Err(format!(
                "`{arn}` is not the ARN of a role or of a role session"
            )),
        }
    }

    fn is(&self, principal: &str) -> bool {
        let prefix = format!("arn:{}:iam::{}:", self.partition, self.account);
        principal == "*"
            || principal == self.account
            || principal.strip_prefix(&prefix).is_some_and(|resource| {
                resource == "root"
                    || resource
                        .strip_prefix("role/")
                        .is_some_and(|path| path.rsplit('/').next() == Some(self.role_name))
            })
    }
}

fn assume_role_matches(
    statement: &Value,
    caller: &Caller<'_>,
    external_id: Option<&str>,
) -> Result<(), String> {
    if !names_action(statement, ASSUME_ROLE) {
        return Err(format!("it does not name {ASSUME_ROLE}"));
    }
    let principal = &statement["Principal"];
    let named = principal == "*"
        || as_list(&principal["AWS"])
            .iter()
            .filter_map(Value::as_str)
            .any(|p| caller.is(p));
    if !named {
        return Err(format!(
            "its principal {principal} is not the role {} of account {}",
            caller.role_name, caller.account
        ));
    }
    let Some(conditions) = statement["Condition"].as_object() else {
        return Ok(());
    };
    for (operator, entries) in conditions {
        for (key, wanted) in entries.as_object().into_iter().flatten() {
            if operator != "StringEquals" || key != "sts:ExternalId" {
                return Err(format!("condition {operator} {key} is not evaluated here"));
            }
            let held = external_id.is_some_and(|id| {
                as_list(wanted)
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|w| w == id)
            });
            if !held {
                return Err(format!(
                    "StringEquals sts:ExternalId wants {wanted}, the caller presents {}",
                    external_id.unwrap_or("none")
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

    #[test]
    fn assume_role_matches_principals_as_sts_does() {
        let session = "arn:aws:sts::111122223333:assumed-role/irsa-operator/pod-1";
        let allow = |principal: Value| {
            json!({"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                "Principal": {"AWS": principal}}]})
        };
        for admitted in [
            json!("arn:aws:iam::111122223333:role/irsa-operator"),
            json!("arn:aws:iam::111122223333:role/platform/irsa-operator"),
            json!("arn:aws:iam::111122223333:root"),
            json!("111122223333"),
            json!([
                "arn:aws:iam::444455556666:root",
                "arn:aws:iam::111122223333:root"
            ]),
        ] {
            assert_eq!(
                evaluate_assume_role(&allow(admitted.clone()), session, None),
                Ok(()),
                "{admitted}"
            );
        }
        for refused in [
            json!("arn:aws:iam::111122223333:role/irsa-operator-2"),
            json!("arn:aws:iam::444455556666:role/irsa-operator"),
            json!("arn:aws-cn:iam::111122223333:root"),
        ] {
            assert!(
                evaluate_assume_role(&allow(refused.clone()), session, None).is_err(),
                "{refused}"
            );
        }
        let mut denied = allow(json!("arn:aws:iam::111122223333:root"));
        denied["Statement"]
            .as_array_mut()
            .unwrap()
            .push(json!({"Effect": "Deny", "Action": "sts:*", "Principal": "*"}));
        assert!(
            evaluate_assume_role(&denied, session, None)
                .unwrap_err()
                .contains("denies")
        );
        let other_condition = json!({"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"AWS": "111122223333"},
            "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}}});
        assert!(
            evaluate_assume_role(&other_condition, session, None)
                .unwrap_err()
                .contains("not evaluated")
        );
        assert!(evaluate_assume_role(&allow(json!("*")), "not-an-arn", None).is_err());
    }
}
