//! IAM policy documents: validation before anything reaches IAM, decoding of IAM's
//! URL-encoded answers, and semantic comparison.
//!
//! Two documents are equal when IAM would evaluate them the same way: a lone string and
//! a one-element list are the same, and the order of statements and of list entries does
//! not matter. Comparing raw text instead causes write storms (ACK iam-controller #1869).

use serde_json::{Map, Value};

/// IAM's limit for a role's inline policies, counted without whitespace.
pub const MAX_INLINE_POLICY_CHARS: usize = 10_240;
/// IAM's default limit for a trust policy, counted without whitespace.
pub const MAX_TRUST_POLICY_CHARS: usize = 2_048;

const VERSIONS: [&str; 2] = ["2012-10-17", "2008-10-17"];

/// Keys whose value IAM treats as a set of strings.
const SET_KEYS: [&str; 4] = ["Action", "NotAction", "Resource", "NotResource"];

/// The condition operators IAM knows, before the `IfExists` suffix and set-operator prefixes.
const CONDITION_OPERATORS: [&str; 23] = [
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "DateEquals",
    "DateNotEquals",
    "DateLessThan",
    "DateLessThanEquals",
    "DateGreaterThan",
    "DateGreaterThanEquals",
    "Bool",
    "BinaryEquals",
    "IpAddress",
    "NotIpAddress",
    "ArnEquals",
];
/// Operators that do not fit the table above's naming pattern.
const MORE_CONDITION_OPERATORS: [&str; 4] = ["ArnNotEquals", "ArnLike", "ArnNotLike", "Null"];

/// Decodes a policy document as IAM returns it (URL-encoded JSON).
pub fn decode_iam_document(encoded: &str) -> Result<Value, String> {
    let decoded = percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .map_err(|e| format!("IAM returned a policy that is not UTF-8: {e}"))?;
    serde_json::from_str(&decoded)
        .map_err(|e| format!("IAM returned a policy that is not JSON: {e}"))
}

/// True when IAM would evaluate both documents the same way.
pub fn semantically_equal(a: &Value, b: &Value) -> bool {
    normalize(a) == normalize(b)
}

/// The canonical form used for comparison: every set-like list sorted and deduplicated,
/// lone strings as one-element lists, scalars in conditions as strings.
pub fn normalize(document: &Value) -> Value {
    let Value::Object(top) = document else {
        return document.clone();
    };
    let mut normalized: Map<String, Value> = top.clone();
    if let Some(statements) = top.get("Statement") {
        let mut list: Vec<Value> = as_list(statements)
            .iter()
            .map(normalize_statement)
            .collect();
        sort_dedup(&mut list);
        normalized.insert("Statement".into(), Value::Array(list));
    }
    Value::Object(normalized)
}

fn normalize_statement(statement: &Value) -> Value {
    let Value::Object(fields) = statement else {
        return statement.clone();
    };
    let normalized = fields
        .iter()
        .map(|(key, value)| {
            let value = match key.as_str() {
                k if SET_KEYS.contains(&k) => string_set(value),
                "Principal" | "NotPrincipal" => map_values(value, string_set),
                "Condition" => map_values(value, |keys| map_values(keys, string_set)),
                _ => value.clone(),
            };
            (key.clone(), value)
        })
        .collect();
    Value::Object(normalized)
}

fn map_values(value: &Value, f: impl Fn(&Value) -> Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), f(v))).collect()),
        other => other.clone(),
    }
}

fn string_set(value: &Value) -> Value {
    let mut list: Vec<Value> = as_list(value)
        .iter()
        .map(|v| match v {
            Value::Bool(b) => Value::String(b.to_string()),
            Value::Number(n) => Value::String(n.to_string()),
            other => other.clone(),
        })
        .collect();
    sort_dedup(&mut list);
    Value::Array(list)
}

fn as_list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        single => vec![single.clone()],
    }
}

fn sort_dedup(list: &mut Vec<Value>) {
    list.sort_by_cached_key(|v| v.to_string());
    list.dedup();
}

/// The length IAM checks against its quotas: characters of the compact JSON, whitespace excluded.
pub fn size_without_whitespace(document: &Value) -> usize {
    document
        .to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .count()
}

/// Checks an identity policy (the role's inline permissions) the way IAM would, so that
/// a bad document is reported precisely and never sent.
pub fn validate_identity_policy(document: &Value) -> Result<(), String> {
    let Value::Object(top) = document else {
        return Err("the policy must be an object with Version and Statement".into());
    };
    if let Some(key) = top
        .keys()
        .find(|k| !["Version", "Id", "Statement"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown top-level policy key `{key}`: allowed are Version, Id and Statement"
        ));
    }
    match top.get("Version").and_then(Value::as_str) {
        Some(v) if VERSIONS.contains(&v) => {}
        Some(v) => return Err(format!("Version `{v}` is not one of {VERSIONS:?}")),
        None => return Err("the policy needs `Version: \"2012-10-17\"`".into()),
    }
    let statements = match top.get("Statement") {
        Some(Value::Array(items)) if !items.is_empty() => items.clone(),
        Some(single @ Value::Object(_)) => vec![single.clone()],
        _ => return Err("Statement must be a statement or a non-empty list of statements".into()),
    };
    for (index, statement) in statements.iter().enumerate() {
        validate_statement(statement).map_err(|e| format!("Statement[{index}]: {e}"))?;
    }
    let size = size_without_whitespace(document);
    if size > MAX_INLINE_POLICY_CHARS {
        return Err(format!(
            "the policy is {size} characters without whitespace; IAM allows {MAX_INLINE_POLICY_CHARS}"
        ));
    }
    Ok(())
}

fn validate_statement(statement: &Value) -> Result<(), String> {
    let Value::Object(fields) = statement else {
        return Err("a statement must be an object".into());
    };
    for key in fields.keys() {
        match key.as_str() {
            "Sid" | "Effect" | "Action" | "NotAction" | "Resource" | "NotResource"
            | "Condition" => {}
            "Principal" | "NotPrincipal" => {
                return Err(format!(
                    "`{key}` is not allowed in a permissions policy; the trust policy is managed by the operator"
                ));
            }
            other => return Err(format!("unknown statement key `{other}`")),
        }
    }
    if let Some(sid) = fields.get("Sid") {
        let valid = sid
            .as_str()
            .is_some_and(|s| s.chars().all(|c| c.is_ascii_alphanumeric()));
        if !valid {
            return Err(format!("Sid {sid} must be a string of letters and digits"));
        }
    }
    match fields.get("Effect").and_then(Value::as_str) {
        Some("Allow" | "Deny") => {}
        Some(other) => return Err(format!("Effect `{other}` must be Allow or Deny")),
        None => return Err("Effect is required (Allow or Deny)".into()),
    }
    let actions = exactly_one_of(fields, "Action", "NotAction")?;
    for action in strings(actions.1, actions.0)? {
        validate_action(&action).map_err(|e| format!("{}: {e}", actions.0))?;
    }
    let resources = exactly_one_of(fields, "Resource", "NotResource")?;
    for resource in strings(resources.1, resources.0)? {
        if resource != "*" && !resource.starts_with("arn:") {
            return Err(format!(
                "{} `{resource}` must be `*` or an ARN starting with `arn:`",
                resources.0
            ));
        }
    }
    if let Some(condition) = fields.get("Condition") {
        validate_condition(condition)?;
    }
    Ok(())
}

fn exactly_one_of<'a>(
    fields: &'a Map<String, Value>,
    key: &'static str,
    negated: &'static str,
) -> Result<(&'static str, &'a Value), String> {
    match (fields.get(key), fields.get(negated)) {
        (Some(value), None) => Ok((key, value)),
        (None, Some(value)) => Ok((negated, value)),
        (Some(_), Some(_)) => Err(format!("set either {key} or {negated}, not both")),
        (None, None) => Err(format!("{key} (or {negated}) is required")),
    }
}

fn strings(value: &Value, key: &str) -> Result<Vec<String>, String> {
    let items = as_list(value);
    if items.is_empty() {
        return Err(format!("{key} must not be empty"));
    }
    items
        .into_iter()
        .map(|item| match item {
            Value::String(s) if !s.is_empty() => Ok(s),
            other => Err(format!(
                "{key} entries must be non-empty strings, found {other}"
            )),
        })
        .collect()
}

/// `*` or `service:Action`, where the action may use `*` and `?` wildcards.
pub fn validate_action(action: &str) -> Result<(), String> {
    if action == "*" {
        return Ok(());
    }
    let valid = action.split_once(':').is_some_and(|(service, name)| {
        !service.is_empty()
            && service
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
    });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{action}` is not an action of the form service:ActionName (e.g. s3:GetObject)"
        ))
    }
}

fn validate_condition(condition: &Value) -> Result<(), String> {
    let Value::Object(operators) = condition else {
        return Err("Condition must map operators to {key: value} objects".into());
    };
    for (operator, keys) in operators {
        if !is_condition_operator(operator) {
            return Err(format!("unknown condition operator `{operator}`"));
        }
        let Value::Object(keys) = keys else {
            return Err(format!(
                "Condition.{operator} must map condition keys to values"
            ));
        };
        for (key, value) in keys {
            let scalars_only = as_list(value)
                .iter()
                .all(|v| matches!(v, Value::String(_) | Value::Bool(_) | Value::Number(_)));
            if !scalars_only {
                return Err(format!(
                    "Condition.{operator}.{key} must be a string, number, boolean or a list of them"
                ));
            }
        }
    }
    Ok(())
}

fn is_condition_operator(operator: &str) -> bool {
    let without_set = operator
        .strip_prefix("ForAllValues:")
        .or_else(|| operator.strip_prefix("ForAnyValue:"))
        .unwrap_or(operator);
    let base = without_set.strip_suffix("IfExists").unwrap_or(without_set);
    CONDITION_OPERATORS.contains(&base) || MORE_CONDITION_OPERATORS.contains(&base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn policy(statement: Value) -> Value {
        json!({"Version": "2012-10-17", "Statement": [statement]})
    }

    #[test]
    fn decodes_url_encoded_documents() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            decode_iam_document(encoded).unwrap(),
            json!({"Version": "2012-10-17", "Statement": []})
        );
        assert_eq!(decode_iam_document("{\"a\":1}").unwrap(), json!({"a": 1}));
        assert!(decode_iam_document("%7Bnot json").is_err());
    }

    #[test]
    fn strings_and_lists_order_and_duplicates_do_not_matter() {
        let a = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": ["arn:aws:s3:::b/*"]},
            {"Effect": "Deny", "Action": ["s3:DeleteObject", "s3:PutObject"], "Resource": "*",
             "Condition": {"Bool": {"aws:SecureTransport": false}}}]});
        let b = json!({"Version": "2012-10-17", "Statement": [
            {"Resource": "*", "Action": ["s3:PutObject", "s3:DeleteObject", "s3:PutObject"], "Effect": "Deny",
             "Condition": {"Bool": {"aws:SecureTransport": ["false"]}}},
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"}]});
        assert!(semantically_equal(&a, &b));
    }

    #[test]
    fn real_differences_are_seen() {
        let a = policy(json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}));
        for b in [
            policy(json!({"Effect": "Deny", "Action": "s3:GetObject", "Resource": "*"})),
            policy(json!({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"})),
            policy(
                json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::x"}),
            ),
            policy(json!({"Effect": "Allow", "NotAction": "s3:GetObject", "Resource": "*"})),
            json!({"Version": "2008-10-17", "Statement": a["Statement"].clone()}),
        ] {
            assert!(!semantically_equal(&a, &b), "{b}");
        }
    }

    #[test]
    fn principal_values_are_sets() {
        let a = policy(
            json!({"Effect": "Allow", "Principal": {"AWS": ["b", "a"]}, "Action": "sts:AssumeRole"}),
        );
        let b = policy(
            json!({"Effect": "Allow", "Principal": {"AWS": ["a", "b"]}, "Action": ["sts:AssumeRole"]}),
        );
        assert!(semantically_equal(&a, &b));
    }

    #[test]
    fn size_ignores_whitespace() {
        assert_eq!(size_without_whitespace(&json!({"a": "b c"})), 10);
    }

    fn error_of(document: Value) -> String {
        validate_identity_policy(&document).unwrap_err()
    }

    #[test]
    fn accepts_a_normal_policy() {
        let doc = policy(json!({"Sid": "Table1", "Effect": "Allow",
            "Action": ["dynamodb:PutItem", "dynamodb:Get*"],
            "Resource": "arn:aws:dynamodb:us-east-1:111122223333:table/payments",
            "Condition": {"ForAnyValue:StringLikeIfExists": {"aws:TagKeys": ["a*"]}, "Bool": {"aws:SecureTransport": true}}}));
        assert_eq!(validate_identity_policy(&doc), Ok(()));
    }

    #[test]
    fn each_defect_has_a_precise_message() {
        let cases = [
            (json!("text"), "must be an object"),
            (
                json!({"Version": "2012-10-17", "Statement": [], "Foo": 1}),
                "unknown top-level policy key `Foo`",
            ),
            (json!({"Statement": []}), "needs `Version"),
            (
                json!({"Version": "2020-01-01", "Statement": []}),
                "Version `2020-01-01`",
            ),
            (
                json!({"Version": "2012-10-17", "Statement": []}),
                "non-empty list",
            ),
            (
                policy(json!("x")),
                "Statement[0]: a statement must be an object",
            ),
            (
                policy(
                    json!({"Effect": "Allow", "Action": "s3:Get", "Resource": "*", "Principal": "*"}),
                ),
                "`Principal` is not allowed",
            ),
            (
                policy(json!({"Effect": "Allow", "Action": "s3:Get", "Resource": "*", "Bogus": 1})),
                "unknown statement key `Bogus`",
            ),
            (
                policy(
                    json!({"Sid": "a-b", "Effect": "Allow", "Action": "s3:Get", "Resource": "*"}),
                ),
                "Sid \"a-b\"",
            ),
            (
                policy(json!({"Effect": "Permit", "Action": "s3:Get", "Resource": "*"})),
                "Effect `Permit`",
            ),
            (
                policy(json!({"Action": "s3:Get", "Resource": "*"})),
                "Effect is required",
            ),
            (
                policy(json!({"Effect": "Allow", "Resource": "*"})),
                "Action (or NotAction) is required",
            ),
            (
                policy(
                    json!({"Effect": "Allow", "Action": "s3:Get", "NotAction": "s3:Put", "Resource": "*"}),
                ),
                "either Action or NotAction",
            ),
            (
                policy(json!({"Effect": "Allow", "Action": "s3GetObject", "Resource": "*"})),
                "Action: `s3GetObject` is not an action",
            ),
            (
                policy(json!({"Effect": "Allow", "Action": [], "Resource": "*"})),
                "Action must not be empty",
            ),
            (
                policy(json!({"Effect": "Allow", "Action": [1], "Resource": "*"})),
                "Action entries must be non-empty strings",
            ),
            (
                policy(json!({"Effect": "Allow", "Action": "s3:Get"})),
                "Resource (or NotResource) is required",
            ),
            (
                policy(json!({"Effect": "Allow", "Action": "s3:Get", "Resource": "bucket"})),
                "Resource `bucket` must be `*` or an ARN",
            ),
            (
                policy(
                    json!({"Effect": "Allow", "Action": "s3:Get", "Resource": "*", "Condition": {"StringEqual": {"a": "b"}}}),
                ),
                "unknown condition operator `StringEqual`",
            ),
            (
                policy(
                    json!({"Effect": "Allow", "Action": "s3:Get", "Resource": "*", "Condition": {"Bool": "true"}}),
                ),
                "Condition.Bool must map",
            ),
            (
                policy(
                    json!({"Effect": "Allow", "Action": "s3:Get", "Resource": "*", "Condition": {"Bool": {"k": {"x": 1}}}}),
                ),
                "Condition.Bool.k must be",
            ),
        ];
        for (document, expected) in cases {
            let error = error_of(document.clone());
            assert!(
                error.contains(expected),
                "{document}: got `{error}`, want `{expected}`"
            );
        }
    }

    #[test]
    fn oversized_policies_are_rejected() {
        let resources: Vec<String> = (0..400)
            .map(|i| format!("arn:aws:s3:::bucket-number-{i}/*"))
            .collect();
        let doc =
            policy(json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": resources}));
        assert!(error_of(doc).contains("IAM allows 10240"));
    }

    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-zA-Z0-9:*?/ -]{0,12}".prop_map(Value::String),
            prop_oneof![
                Just("Version"),
                Just("Statement"),
                Just("Effect"),
                Just("Allow"),
                Just("Action"),
                Just("Resource"),
                Just("Condition"),
                Just("2012-10-17"),
                Just("*"),
                Just("s3:GetObject")
            ]
            .prop_map(|s| Value::String(s.into())),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("Version".to_string()),
                        Just("Statement".to_string()),
                        Just("Effect".to_string()),
                        Just("Action".to_string()),
                        Just("NotAction".to_string()),
                        Just("Resource".to_string()),
                        Just("Condition".to_string()),
                        Just("Sid".to_string()),
                        "[A-Za-z:]{1,8}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn validation_and_normalization_never_panic(doc in arbitrary_json()) {
            let _ = validate_identity_policy(&doc);
            let normalized = normalize(&doc);
            prop_assert_eq!(normalize(&normalized), normalized.clone(), "normalize is idempotent");
            prop_assert!(semantically_equal(&doc, &doc));
        }

        #[test]
        fn encoding_round_trips(doc in arbitrary_json()) {
            let encoded: String = percent_encoding::utf8_percent_encode(&doc.to_string(), percent_encoding::NON_ALPHANUMERIC).collect();
            prop_assert_eq!(decode_iam_document(&encoded).unwrap(), doc);
        }
    }
}
