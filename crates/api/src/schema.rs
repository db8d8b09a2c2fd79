//! The CRD schema of `spec.policy` and `spec.tags`: the shape of an IAM policy document
//! with limits the API server enforces. No stored PodIamRole can then be too deep for the
//! operator's decoder (serde_json stops at 128 levels) or larger than these bounds allow.
//!
//! A structural schema cannot say "a string or a list of strings", and CEL cannot see a
//! field that has no type. So those leaves have no type and carry limits that apply by the
//! kind of the value instead: an object must be empty, a list may only hold strings (or
//! scalars in conditions), a string has a maximum length. Their depth is therefore at most
//! one list. What each value means is checked by the operator, which explains it precisely.

use schemars::{Schema, SchemaGenerator, json_schema};

/// More statements than a policy within IAM's 10,240 characters can hold (each takes 40+).
const MAX_STATEMENTS: u32 = 256;
/// More entries than any list in a policy within IAM's 10,240 characters needs in practice.
const MAX_LIST_ITEMS: u32 = 1000;
/// IAM's longest ARN.
const MAX_STRING: u32 = 2048;
/// Condition operators per statement, and keys per operator.
const MAX_CONDITION_ENTRIES: u32 = 64;
/// Principal types (`AWS`, `Service`, `Federated`, `CanonicalUser`), with room to spare.
const MAX_PRINCIPAL_TYPES: u32 = 8;
/// IAM's limit on tags per role, less the operator's 4 ownership tags.
const MAX_USER_TAGS: u32 = 46;
/// IAM's limits on a tag's key and value.
const MAX_TAG_KEY: u32 = 128;
const MAX_TAG_VALUE: u32 = 256;

/// `spec.policy`: an IAM policy document.
pub fn policy_document(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "properties": {
            "Version": {
                "description": "The policy language version: \"2012-10-17\".",
                "type": "string",
                "maxLength": 16,
            },
            "Id": {"type": "string", "maxLength": MAX_STRING},
            "Statement": {
                "description": "The policy's statements.",
                "type": "array",
                "maxItems": MAX_STATEMENTS,
                "items": statement(),
            },
        },
    })
}

fn statement() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "Sid": {"type": "string", "maxLength": MAX_STRING},
            "Effect": {"description": "Allow or Deny.", "type": "string", "maxLength": 16},
            "Action": string_or_list("The actions, such as `s3:GetObject`."),
            "NotAction": string_or_list("The actions not covered."),
            "Resource": string_or_list("The resources: `*` or ARNs."),
            "NotResource": string_or_list("The resources not covered."),
            "Principal": principal(),
            "NotPrincipal": principal(),
            "Condition": {
                "description": "Condition operator (such as `StringEquals` or `ForAnyValue:StringLikeIfExists`) \
                                to condition key to a value or a list of values.",
                "type": "object",
                "maxProperties": MAX_CONDITION_ENTRIES,
                "additionalProperties": {
                    "type": "object",
                    "maxProperties": MAX_CONDITION_ENTRIES,
                    "additionalProperties": condition_value(),
                },
            },
        },
    })
}

/// A string or a list of strings.
fn string_or_list(description: &str) -> serde_json::Value {
    serde_json::json!({
        "description": format!("{description} A string or a list of strings."),
        "x-kubernetes-preserve-unknown-fields": true,
        "maxProperties": 0,
        "maxLength": MAX_STRING,
        "maxItems": MAX_LIST_ITEMS,
        "items": {"type": "string", "maxLength": MAX_STRING},
    })
}

/// Not allowed in a permissions policy; described so the operator can say so.
fn principal() -> serde_json::Value {
    serde_json::json!({
        "description": "Not allowed here: the operator manages the trust policy.",
        "type": "object",
        "maxProperties": MAX_PRINCIPAL_TYPES,
        "additionalProperties": string_or_list("The principals of one type."),
    })
}

/// A string, number or boolean, or a list of them.
fn condition_value() -> serde_json::Value {
    let scalar = |description: &str| {
        serde_json::json!({
            "description": description,
            "x-kubernetes-preserve-unknown-fields": true,
            "maxProperties": 0,
            "maxItems": 0,
            "maxLength": MAX_STRING,
        })
    };
    let mut value = scalar("A string, number or boolean, or a list of them.");
    value["maxItems"] = MAX_LIST_ITEMS.into();
    value["items"] = scalar("A string, number or boolean.");
    value
}

/// `spec.tags`: a map within IAM's limits on tags.
pub fn tag_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": MAX_USER_TAGS,
        "additionalProperties": {"type": "string", "maxLength": MAX_TAG_VALUE},
        "x-kubernetes-validations": [{
            "rule": format!("self.all(key, size(key) <= {MAX_TAG_KEY})"),
            "message": format!("tag keys have at most {MAX_TAG_KEY} characters"),
        }],
    })
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::{Value, json};

    use crate::PodIamRole;

    /// The deepest nesting a value valid for `schema` can have, or `None` when unbounded.
    fn max_depth(schema: &Value) -> Option<usize> {
        let limit = |key: &str| schema.get(key).and_then(Value::as_u64);
        let free_form = schema["x-kubernetes-preserve-unknown-fields"] == true;
        // Unknown fields may nest anything, unless objects must be empty and lists bounded.
        if free_form
            && (limit("maxProperties") != Some(0)
                || (limit("maxItems") != Some(0) && schema.get("items").is_none()))
        {
            return None;
        }
        let mut children: Vec<&Value> = Vec::new();
        if let Some(Value::Object(properties)) = schema.get("properties") {
            children.extend(properties.values());
        }
        children.extend(schema.get("additionalProperties").filter(|s| s.is_object()));
        children.extend(schema.get("items"));
        children
            .into_iter()
            .try_fold(0, |deepest, child| Some(deepest.max(max_depth(child)?)))
            .map(|deepest| deepest + 1)
    }

    fn spec_schema() -> Value {
        let crd = serde_json::to_value(PodIamRole::crd()).unwrap();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
    }

    #[test]
    fn a_valid_spec_nests_only_a_few_levels() {
        // serde_json refuses documents nested 128 levels deep.
        let depth = max_depth(&spec_schema()).expect("the spec's depth is bounded");
        assert!(depth <= 10, "{depth}");
    }

    #[test]
    fn a_free_form_field_would_be_unbounded() {
        let mut spec = spec_schema();
        spec["properties"]["policy"] =
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        assert_eq!(max_depth(&spec), None);
    }
}
